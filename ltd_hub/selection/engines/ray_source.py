"""The ``ray`` engine's reading of the source: Ray Data reads and filters it, the driver memory-maps the result.

What runs where:

* the driver resolves the source without reading its rows: it lists and checks the local files
  and hashes them (the fingerprint a manifest records), or pins a Hub dataset's commit and lists
  the Parquet files of its split; it fixes the columns' types as ``datasets`` would (its own
  inference on the first chunk of the first JSON file, the first Parquet file's schema, or the
  card's features), resolves the column mapping and checks the filter, so a bad option fails
  before any Ray work;
* Ray Data read tasks read the files in order (local paths, or a Hub dataset's Parquet files
  through ``huggingface_hub.HfFileSystem``); ``map_batches`` tasks cast each block to those types,
  compute its filter masks with :func:`ltd_hub.data.sources.filter_masks` (the function
  ``apply_filters`` uses) and write the block as an Arrow file into a work folder under the ltd-hub
  cache (``LTD_HUB_CACHE/ray-source/<key>``), returning only the masks;
* the driver memory-maps those files, in order, as one ``datasets.Dataset`` (the whole source) and
  finishes with :func:`ltd_hub.data.sources.apply_filters` on the masks: the same checks, warning,
  row positions and filtered rows as the local engine. A later run with the same source, types and
  filter reuses the folder.

Sources Ray cannot read the way ``datasets`` does are read on the driver as before, with one log
line saying why: SuperNI task files, CSV (``datasets`` reads it with pandas, whose type inference
Ray's CSV reader does not share), JSON arrays, a Hub dataset whose files are not Parquet, an
explicit token that the workers' environment does not hold, and any block whose types differ from
``datasets``' (``datasets`` would then cast or refuse the values differently). On a cluster of
several machines, local SOURCE files and the ltd-hub cache must be on storage every node mounts.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltd_hub.errors import UsageError

if TYPE_CHECKING:
    import datasets
    import numpy as np

    from ltd_hub.data.sources import LoadedSource
    from ltd_hub.selection.subset import SelectionRequest

# Bumped whenever the shard layout changes, so an older work folder is never reused.
_LAYOUT = 1
Log = Callable[[str], None]


class _Fallback(Exception):
    """The source is read on the driver instead; the message says why (one line)."""


@dataclass
class _Plan:
    """A source resolved for Ray: its record (without rows), the files to read, how, and the target types."""

    src: LoadedSource
    reader: str  # "json" or "parquet"
    paths: list[str]
    filesystem: Any  # None (local paths) or a huggingface_hub.HfFileSystem
    features: datasets.Features
    strict: bool  # JSON: a block's own inferred types must agree with datasets'


def load_filtered(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    req: SelectionRequest,
    filters: Sequence[tuple[str, str]],
    tasks: Sequence[str],
    log: Log,
) -> tuple[LoadedSource, datasets.Dataset, np.ndarray] | None:
    """Read and filter ``source`` with Ray Data: what ``load_source`` + ``apply_filters`` give the local engine.

    Args:
        source: SOURCE as given (local files, folders, globs, or a Hub dataset id).
        req: the selection's options (columns, config, split, revision, token, cache, Ray address).
        filters: parsed ``COLUMN=GLOB`` filters.
        tasks: task names (globs) on the task column.
        log: called with short progress lines (and the reason, when the driver reads instead).

    Returns:
        ``(loaded source, filtered rows memory-mapped, their source row positions)``, or None when
        the source must be read on the driver (the reason is logged).

    Raises:
        UsageError: what ``load_source`` and ``apply_filters`` raise for the same input.
    """
    from ltd_hub.data.sources import apply_filters, filter_plan, map_columns
    from ltd_hub.selection.engines.ray_engine import connect

    specs = [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else [os.fspath(s) for s in source]
    try:
        plan = _plan(specs, req)
        names = list(plan.features)
        columns = map_columns(names, req.input_columns, req.target_column, req.task_column)
        by_column = filter_plan(names, columns, filters, tasks)
        connect(req.ray_address)
        dataset, masks = _read(plan, by_column, columns.target, req.use_cache, log)
    except _Fallback as why:
        log(f"reading the source on the driver: {why}")
        return None
    src = plan.src
    src.dataset, src.columns = dataset, columns
    filtered, rows = apply_filters(src, filters, tasks, masks=masks)
    return src, filtered, rows


# --------------------------------------------------------------------------- resolving (driver)


def _plan(specs: list[str], req: SelectionRequest) -> _Plan:
    from ltd_hub.data.sources import is_hub_id

    if len(specs) == 1 and is_hub_id(specs[0]):
        return _hub_plan(specs[0], req)
    if req.config or req.revision:
        raise _Fallback("config and revision apply to Hub datasets only")
    return _local_plan(specs, req.split)


def _local_plan(specs: list[str], split: str | None) -> _Plan:
    from ltd_hub.constants import DATA_BUILDERS
    from ltd_hub.data.sources import data_suffix, local_files, local_source

    paths, superni = local_files(specs)  # the local engine's checks and errors
    if superni:
        raise _Fallback("SuperNI task files are read by ltd-hub's own loader")
    readers = {DATA_BUILDERS[data_suffix(p)] for p in paths}
    if len(readers) > 1:
        raise _Fallback("the files are of mixed types")
    reader = readers.pop()
    if reader == "csv":
        raise _Fallback("datasets reads CSV with pandas, whose type inference Ray's CSV reader does not share")
    if reader == "json":
        arrays = [p.name for p in paths if _first_byte(p) != b"{"]
        if arrays:
            raise _Fallback(f"{arrays[0]} is not JSON Lines (one object a line)")
        features = _json_features(paths[0])
    else:
        import datasets
        import pyarrow.parquet as pq

        # The Parquet builder's own rule: the first file's schema, its datasets features included.
        features = datasets.Features.from_arrow_schema(pq.read_schema(paths[0]))
    src = local_source(specs, paths, False, split)
    # Absolute: Ray workers do not share the driver's working directory.
    return _Plan(src, reader, [str(p.resolve()) for p in paths], None, features, strict=reader == "json")


def _first_byte(path: Path) -> bytes:
    """The first non-blank byte of a (gzipped) file: ``{`` for JSON Lines, ``[`` for a JSON array."""
    from ltd_hub.data.sources import open_bytes

    with open_bytes(path) as fh:
        while chunk := fh.read(4096):
            stripped = chunk.lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()
            if stripped:
                return stripped[:1]
    return b""


def _json_features(path: Path) -> datasets.Features:
    """The features ``datasets`` gives a JSON source: inferred on the first chunk of its first file.

    ``datasets`` casts every later chunk to the types it infers on its first chunk (10 MiB plus
    the rest of the line); loading exactly those bytes with ``datasets`` gives the same features,
    whatever its inference does (mixed types included).
    """
    import dataclasses
    import tempfile

    import datasets
    from datasets.packaged_modules.json.json import JsonConfig

    from ltd_hub.data.sources import no_progress_bars, open_bytes, quiet_datasets_errors

    chunk = next((f.default for f in dataclasses.fields(JsonConfig) if f.name == "chunksize"), 10 << 20)
    with open_bytes(path) as fh:
        head = fh.read(chunk)
        head += fh.readline()
    with tempfile.TemporaryDirectory(prefix="ltd-hub-head-") as tmp:
        (Path(tmp) / "head.jsonl").write_bytes(head)
        try:
            with quiet_datasets_errors(), no_progress_bars():
                ds = datasets.load_dataset("json", data_files=[str(Path(tmp) / "head.jsonl")], split="train", cache_dir=tmp)
        except Exception as exc:  # noqa: BLE001 - the driver's loader reports the problem with the file's name
            raise _Fallback(f"datasets cannot infer the types of {path.name} ({type(exc).__name__})") from None
        features = ds.features
        del ds
    return features


def _hub_plan(repo_id: str, req: SelectionRequest) -> _Plan:
    import datasets
    import pyarrow.parquet as pq
    from huggingface_hub import HfFileSystem, constants, get_token

    from ltd_hub.data.sources import hub_commit, hub_license, hub_source

    split = req.split or "train"
    sha = hub_commit(repo_id, req.revision, req.token)  # the local engine's errors for a bad id or revision
    # The token never travels in Ray's task arguments (they can be spilled to disk): workers read
    # with their own environment's HF_TOKEN, so a different explicit token stays on the driver.
    if req.token and req.token != get_token():
        raise _Fallback("an explicit token is not shipped to Ray workers (give them HF_TOKEN)")
    try:
        builder = datasets.load_dataset_builder(repo_id, name=req.config, revision=sha, token=req.token)
    except Exception as exc:  # noqa: BLE001 - the driver's loader turns it into the local engine's error
        raise _Fallback(f"datasets cannot resolve {repo_id} ({type(exc).__name__})") from None
    data_files = builder.config.data_files or {}
    if builder.name != "parquet":
        raise _Fallback(f"{repo_id}'s data files are read by datasets' {builder.name} builder, not Parquet")
    if split not in data_files:
        raise _Fallback(f"{repo_id} has no split {split!r} among its Parquet files")
    urls = [str(u) for u in data_files[split]]
    if not urls or not all(u.startswith("hf://") for u in urls):
        raise _Fallback(f"{repo_id}'s files are not on the Hub")
    fs = HfFileSystem(endpoint=constants.ENDPOINT)
    features = builder.info.features
    if features is None:
        # The Parquet builder's own rule: the schema of the first file of the first split.
        first = str(next(iter(data_files.values()))[0]).removeprefix("hf://")
        with fs.open(first, "rb") as fh:
            features = datasets.Features.from_arrow_schema(pq.read_schema(fh))
    src = hub_source(repo_id, sha, req.config, split, hub_license(repo_id, sha, req.token))
    return _Plan(src, "parquet", [u.removeprefix("hf://") for u in urls], fs, features, strict=False)


# --------------------------------------------------------------------------- reading (Ray tasks)


def _conform(table, schema, strict: bool):
    """``table`` cast to the target ``schema`` as ``datasets`` casts its chunks; raises _Fallback where values could differ."""
    import pyarrow as pa
    from datasets.table import table_cast

    extra = [n for n in table.column_names if n not in schema.names]
    if extra:
        raise _Fallback(f"column {extra[0]!r} is not among the columns datasets infers from the first rows")
    for field in schema:
        if field.name not in table.column_names:  # datasets adds a column a chunk lacks as nulls
            table = table.append_column(field.name, pa.nulls(table.num_rows, field.type))
            continue
        got = table.schema.field(field.name).type
        # A block inferred as the target type, all null, or integers where datasets has floats
        # holds the values datasets holds; any other type would be cast (or refused) differently.
        if strict and not (got == field.type or pa.types.is_null(got) or (pa.types.is_integer(got) and pa.types.is_floating(field.type))):
            raise _Fallback(f"column {field.name!r} reads as {got} in a block of the source, as {field.type} in datasets")
    try:
        return table_cast(table.select(schema.names), schema)
    except (ValueError, TypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _Fallback(f"a block does not cast to datasets' types ({' '.join(str(exc).split())[:120]})") from None


# What each block's task returns: its Arrow file's name, its rows, its masks (bytes), or the problem.
_OUT = ("shard", "n_rows", "matched", "answered", "problem")


def _write_block(batch, *, schema, strict: bool, by_column: dict[str, list[str]], target: str | None, folder: str) -> dict[str, Any]:
    """Ray ``map_batches`` task: one block cast, checked, masked and written as an Arrow file."""
    import numpy as np
    import pyarrow as pa

    from ltd_hub.data.sources import check_utf8, filter_masks
    from ltd_hub.files import staged_file

    def out(shard: str, n: int, matched: bytes = b"", answered: bytes = b"", problem: str = "") -> dict[str, Any]:
        return {k: np.array([v], dtype=object) for k, v in zip(_OUT, (shard, n, matched, answered, problem))}

    try:
        table = _conform(batch, schema, strict)
        check_utf8(table, "a block of the source")
    except (_Fallback, UsageError) as exc:
        return out("", batch.num_rows, problem=str(exc))
    if table.num_rows == 0:
        return out("", 0)
    matched, answered = filter_masks(table, by_column, target)
    name = f"{uuid.uuid4().hex}.arrow"
    # The IPC stream format datasets memory-maps (Dataset.from_file), with its features in the schema.
    with staged_file(Path(folder) / name) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return out(name, table.num_rows, matched.tobytes(), b"" if answered is None else answered.tobytes())


def _read(plan: _Plan, by_column: dict[str, list[str]], target: str | None, use_cache: bool, log: Log):
    """``(whole source memory-mapped, (matched, answered))``: the work folder's, read now on Ray or earlier."""
    from ltd_hub.files import json_digest
    from ltd_hub.paths import cache_dir

    schema = plan.features.arrow_schema
    key = json_digest(
        {
            "layout": _LAYOUT,
            "fingerprint": plan.src.fingerprint,
            "kind": plan.src.kind,
            "config": plan.src.config,
            "split": plan.src.split,
            "types": schema.to_string(show_schema_metadata=True),
            "filter": by_column,
            "target": target,
        },
        length=24,
    )
    folder = cache_dir("ray-source") / key
    if not (use_cache and (folder / "meta.json").is_file()):
        _read_on_ray(plan, schema, by_column, target, folder, log)
    else:
        log(f"source rows and filter masks from the cache ({folder.name})")
    return _open(folder, target)


def _read_on_ray(plan: _Plan, schema, by_column: dict[str, list[str]], target: str | None, folder: Path, log: Log) -> None:
    """Read, cast, mask and write the source's blocks on Ray, in source order, into ``folder``."""
    import numpy as np
    import ray.data

    from ltd_hub.files import atomic_write_json, staged_dir

    log(f"reading and filtering {len(plan.paths)} {plan.reader} file(s) on Ray")
    ctx = ray.data.DataContext.get_current()
    kept = ctx.execution_options.preserve_order
    # The row positions a manifest records are the source's order: blocks must come back in it.
    ctx.execution_options.preserve_order = True
    try:
        with staged_dir(folder) as work:
            common = {"partitioning": None, "file_extensions": None}
            if plan.reader == "json":
                ds = ray.data.read_json(plan.paths, **common)
            else:
                ds = ray.data.read_parquet(plan.paths, filesystem=plan.filesystem, **common)
            kwargs = {"schema": schema, "strict": plan.strict, "by_column": by_column, "target": target, "folder": str(work)}
            try:
                blocks = ds.map_batches(_write_block, fn_kwargs=kwargs, batch_format="pyarrow", batch_size=None).take_all()
            except Exception as exc:  # noqa: BLE001 - the driver's loader reports a bad file with its name
                detail = " ".join(str(exc).split())[-160:]
                raise _Fallback(f"Ray could not read it ({type(exc).__name__}: {detail})") from None
            problem = next((b["problem"] for b in blocks if b["problem"]), None)
            if problem:
                raise _Fallback(problem)
            n_rows = sum(int(b["n_rows"]) for b in blocks)
            if not n_rows:
                raise _Fallback("Ray read no rows")
            matched = np.concatenate([np.frombuffer(b["matched"], dtype=bool) for b in blocks if b["shard"]])
            parts = [np.frombuffer(b["answered"], dtype=bool) for b in blocks if b["shard"]]
            np.save(work / "matched.npy", matched)
            if target:
                np.save(work / "answered.npy", np.concatenate(parts))
            atomic_write_json(work / "meta.json", {"shards": [b["shard"] for b in blocks if b["shard"]], "n_rows": n_rows})
    finally:
        ctx.execution_options.preserve_order = kept


def _open(folder: Path, target: str | None):
    """The work folder's shards memory-mapped as one ``datasets.Dataset``, and its masks."""
    import datasets
    import numpy as np

    meta = json.loads((folder / "meta.json").read_text())
    parts = [datasets.Dataset.from_file(str(folder / name)) for name in meta["shards"]]
    dataset = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    matched = np.load(folder / "matched.npy")
    answered = np.load(folder / "answered.npy") if target else None
    if len(dataset) != meta["n_rows"] or len(matched) != len(dataset):
        raise UsageError(f"the Ray work folder {folder} is incomplete; delete it and run again")
    return dataset, (matched, answered)
