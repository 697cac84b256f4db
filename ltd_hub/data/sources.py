"""Load instruction data (local files, SuperNI task files, Hub datasets) into a ``datasets.Dataset``.

A source is resolved once into a :class:`LoadedSource`: the rows with all their original
columns, which columns hold the prompt, the target and the task name, and a fingerprint
that changes whenever the data can have changed (sha256 of local files, commit sha of a
Hub dataset). Filters (``COLUMN=GLOB``, task names) keep the rows of the target task type and
return their positions in the source, which are the row ids a selection manifest records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import glob
import gzip
import hashlib
import io
import json
import logging
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltd_hub.constants import DATA_BUILDERS, DATA_SUFFIXES, REPO_ID_RE
from ltd_hub.errors import HubError, InvalidRepoIdError, MissingRepoError, MissingRevisionError, NotFoundError, UsageError
from ltd_hub.files import atomic_write, sha256_file
from ltd_hub.selection.manifest import MANIFEST_FILENAME, ColumnMap, SourceRecord

if TYPE_CHECKING:
    import datasets
    import numpy as np  # imported where used: `ltd-hub --help` reaches this module through training

# Builder name of `datasets.load_dataset` for each local file type, and every data-file suffix.
_DATA_SUFFIXES = DATA_SUFFIXES
_GLOB_CHARS = set("*?[")
# Owner/name as the Hub spells it; used only to tell "a local path that is missing" from "a repo id".

# Column layouts recognised without flags, tried in order: (inputs, target).
_KNOWN_LAYOUTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("inputs",), "targets"),  # P3 / promptsource
    (("instruction", "input"), "output"),  # SuperNI as loaded here, Alpaca
    (("prompt",), "completion"),
    (("prompt",), "response"),
    (("question",), "answer"),
    (("input",), "output"),
)
_TASK_COLUMNS = ("dataset", "task_name", "task", "category")
# Error placeholders of the column parameters: the CLI flag is --input-column (repeatable), the library's input_columns.
_COLUMN_PARAMS = {"input_column": "input_columns", "target_column": "target_column", "task_column": "task_column"}
_ID_COLUMNS = ("id", "idx", "example_id")
logger = logging.getLogger(__name__)


@dataclass
class LoadedSource:
    """A source resolved to rows plus the facts a manifest needs to find it again.

    Attributes:
        dataset: every row of the source, with its original columns.
        kind: ``"files"`` (JSONL/JSON/Parquet/CSV), ``"superni"`` (SuperNI task files) or ``"hub"``.
        id: the Hub dataset id, or the paths/globs as given.
        files: for local sources, ``[{"path", "sha256", "size"}]`` in load order.
        revision: the commit sha of a Hub dataset.
        config: the Hub dataset config, if any.
        split: the split that was loaded.
        fingerprint: sha256 over the file hashes, or the Hub commit sha.
        license: the source's license when its card declares one.
        columns: the column mapping in use.
        specs: the local SOURCE arguments as given (the manifest publishes their public form).
    """

    dataset: datasets.Dataset
    kind: str
    id: str
    files: list[dict[str, Any]] = field(default_factory=list)
    revision: str | None = None
    config: str | None = None
    split: str | None = None
    fingerprint: str = ""
    license: str | None = None
    columns: ColumnMap = ColumnMap(inputs=(), target=None)
    specs: list[str] = field(default_factory=list)

    def to_manifest(self) -> SourceRecord:
        """The manifest's record of this source."""
        return SourceRecord(
            kind=self.kind,
            # Local SOURCE arguments are published as relative paths or file names only.
            id=self.id if self.kind == "hub" else ",".join(public_path(spec) for spec in self.specs or [self.id]),
            revision=self.revision,
            config=self.config,
            split=self.split,
            files=self.files,
            fingerprint=self.fingerprint,
            n_rows=len(self.dataset),
        )


@dataclass
class DataSource:
    """Where training or evaluation rows came from (what a card and a manifest can point at)."""

    name: str
    repo_id: str | None = None
    revision: str | None = None
    path: str | None = None
    sha256: str | None = None
    manifest: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- resolving


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or text.lower().endswith(_DATA_SUFFIXES) or text.count("/") > 1 or bool(_GLOB_CHARS & set(text))


def is_hub_id(spec: str | os.PathLike) -> bool:
    """Whether :func:`load_source` reads ``spec`` as a Hub dataset id (nothing local by that name, no path shape)."""
    text = os.fspath(spec)
    return not os.path.exists(os.path.expanduser(text)) and not _looks_like_path(text)


def _expand(spec: str) -> list[Path]:
    """Files named by one SOURCE argument (file, folder, or glob), in sorted order."""
    expanded = os.path.expanduser(spec)
    if _GLOB_CHARS & set(expanded):
        matches = sorted(Path(p) for p in glob.glob(expanded, recursive=True) if Path(p).is_file())
        if not matches:
            raise UsageError(f"no file matches {spec!r}; check the glob pattern")
        return matches
    path = Path(expanded)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(_DATA_SUFFIXES))
        if not files:
            raise UsageError(f"folder {spec} holds no JSONL/JSON/Parquet/CSV file")
        return files
    if path.is_file():
        return [path]
    raise UsageError(f"file not found: {spec}; check the path")


def data_suffix(path: Path) -> str:
    """The data suffix of a file name, under its .gz: ``pool.jsonl.gz`` -> ``.jsonl`` (a key of DATA_BUILDERS)."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return os.path.splitext(name)[1]


def _open_text(path: Path):
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8")


def _is_superni_file(path: Path) -> bool:
    """A SuperNI task file is a JSON object with ``Definition`` and ``Instances``."""
    if data_suffix(path) != ".json":
        return False
    try:
        with _open_text(path) as fh:
            head = fh.read(1 << 16)
    except (OSError, UnicodeDecodeError, EOFError):
        return False  # the real loader reports the problem with the file's name
    return head.lstrip().startswith("{") and ('"Definition"' in head or '"Instances"' in head)


def _check_readable(path: Path) -> None:
    if path.stat().st_size == 0:
        raise UsageError(f"{path} is empty (no rows); give a file with rows")
    if path.name.lower().endswith(".gz"):
        try:
            with gzip.open(path, "rb") as fh:
                first = fh.read(1)
        except (OSError, EOFError, zlib.error) as exc:
            raise UsageError(f"{path} is not a readable gzip file ({exc}); re-create or re-download it") from None
        if not first:
            raise UsageError(f"{path} is empty (no rows); give a file with rows")


def public_path(path: str | os.PathLike) -> str:
    """How a local path may be published (manifest, training summary): as given when relative, else its name.

    An absolute path (or one under ``~``) would publish the user's folders, home directory
    included; a relative one is what the user typed and what a rebuild resolves from its cwd.

    Example:
        >>> public_path("../data/pool.jsonl.gz"), public_path("/home/ada/data/pool.jsonl.gz")
        ('../data/pool.jsonl.gz', 'pool.jsonl.gz')
    """
    text = os.fspath(path)
    if text.startswith("~") or os.path.isabs(text):
        return Path(text).name
    return os.path.normpath(text)


def _file_records(paths: Sequence[Path]) -> list[dict[str, Any]]:
    # Name, sha256 and size identify the file; the path is the public one (never an absolute path).
    return [{"path": public_path(p), "name": p.name, "sha256": sha256_file(p), "size": p.stat().st_size} for p in paths]


def _combined_fingerprint(records: Sequence[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for rec in records:
        digest.update(rec["sha256"].encode())
    return digest.hexdigest()


def _load_error(path_desc: str, exc: BaseException) -> UsageError:
    """Turn a loader exception into one line naming the file and the fix."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, UnicodeDecodeError):
            return UsageError(
                f"{path_desc} is not UTF-8 text (byte {cause.object[cause.start : cause.start + 1]!r} at offset "
                f"{cause.start}); re-encode it as UTF-8"
            )
        cause = cause.__cause__ or cause.__context__
    detail = " ".join(str(exc.__cause__ or exc).split())[:200] or type(exc).__name__
    return UsageError(f"cannot read {path_desc}: {detail}; check that the file is valid and complete")


# --------------------------------------------------------------------------- loaders


def _load_superni(paths: Sequence[Path]) -> datasets.Dataset:
    """One row per instance: task_name, id, instruction (the Definition), input, output (first), all_outputs."""
    import datasets

    columns: dict[str, list[Any]] = {k: [] for k in ("task_name", "id", "instruction", "input", "output", "all_outputs")}
    for path in paths:
        try:
            with _open_text(path) as fh:
                task = json.load(fh)
        except UnicodeDecodeError as exc:
            raise _load_error(str(path), exc) from None
        except (json.JSONDecodeError, EOFError, OSError) as exc:
            raise UsageError(f"cannot read {path}: {exc}; check that the file is valid and complete") from None
        if not isinstance(task, dict) or "Instances" not in task or "Definition" not in task:
            raise UsageError(f"{path} is not a SuperNI task file (needs 'Definition' and 'Instances')")
        definition = _superni_definition(path, task["Definition"])
        if not isinstance(task["Instances"], list):
            raise UsageError(f"{path}: 'Instances' is {_json_kind(task['Instances'])}, not a list of instances; fix the task file")
        name = path.name.split(".")[0]
        for i, inst in enumerate(task["Instances"]):
            text, outputs, row_id = _superni_instance(path, i, inst)
            columns["task_name"].append(name)
            columns["id"].append(row_id or f"{name}-{i}")
            columns["instruction"].append(definition)
            columns["input"].append(text)
            columns["output"].append(outputs[0] if outputs else "")
            columns["all_outputs"].append(outputs)
    return datasets.Dataset.from_dict(columns)


def _json_kind(value: Any) -> str:
    """How a JSON value reads in an error message: "null", "a number", "a list"..."""
    if value is None:
        return "null"
    names = {bool: "true/false", str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _superni_definition(path: Path, value: Any) -> str:
    """The task definition as text; a null, empty or non-text Definition is refused (never the text "None")."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = "\n".join(value)
    if not isinstance(value, str) or not value.strip():
        found = "empty" if isinstance(value, (str, list)) else _json_kind(value)
        raise UsageError(f"{path}: 'Definition' is {found}; a SuperNI task needs its definition as a string or a list of strings")
    return value


def _superni_instance(path: Path, index: int, inst: Any) -> tuple[str, list[str], str | None]:
    """``(input, outputs, id)`` of one instance; a null input is empty text and null outputs are left out."""
    where = f"{path}: instance {index}"
    if not isinstance(inst, dict):
        raise UsageError(f"{where} is {_json_kind(inst)}, not an object with 'input' and 'output'; fix or remove it")
    text = inst.get("input")
    if text is None:
        text = ""
    elif isinstance(text, (str, int, float)):
        text = str(text)
    else:
        raise UsageError(f"{where}: 'input' is {_json_kind(text)}; give the input as a string")
    raw = inst.get("output")
    raw = [] if raw is None else [raw] if isinstance(raw, (str, int, float)) else raw
    if not isinstance(raw, list) or not all(o is None or isinstance(o, (str, int, float)) for o in raw):
        raise UsageError(f"{where}: 'output' is {_json_kind(inst.get('output'))}; give a string or a list of strings")
    outputs = [str(o) for o in raw if o is not None]
    row_id = inst.get("id")
    if row_id is not None and not isinstance(row_id, (str, int)):
        raise UsageError(f"{where}: 'id' is {_json_kind(row_id)}; give a string id or leave it out")
    return text, outputs, None if row_id is None else str(row_id)


@contextlib.contextmanager
def quiet_datasets_errors():
    """datasets logs a parse failure with its traceback before raising; we report it in one line instead."""
    logger = logging.getLogger("datasets")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def no_progress_bars():
    """``datasets``' progress bars off inside the block (a short read or write), as they were after it."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _load_files(paths: Sequence[Path]) -> datasets.Dataset:
    import datasets

    kinds = {DATA_BUILDERS[data_suffix(p)] for p in paths}
    if len(kinds) > 1:
        raise UsageError(f"data files of mixed types ({', '.join(sorted(kinds))}); give files of one type")
    builder = kinds.pop()
    desc = str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} files)"
    try:
        with quiet_datasets_errors():
            ds = datasets.load_dataset(builder, data_files=[str(p) for p in paths], split="train")
    except StopIteration:
        raise UsageError(f"{desc} holds no rows; give a file with rows") from None
    except Exception as exc:  # noqa: BLE001 - every loader failure becomes one line naming the file
        raise _load_error(desc, exc) from None
    check_utf8(ds.data.table, desc)
    return ds


def check_utf8(table, desc: str) -> None:
    """Arrow's JSON reader stores invalid UTF-8 as is; reject it now rather than at first access.

    Raises:
        UsageError: a column of the pyarrow ``table`` read from ``desc`` holds invalid UTF-8.
    """
    import pyarrow as pa

    for name, column in zip(table.column_names, table.columns):
        try:
            column.validate(full=True)
        except pa.ArrowInvalid as exc:
            detail = " ".join(str(exc).split())[:120]
            raise UsageError(f"{desc} is not UTF-8 text (column {name!r}: {detail}); re-encode it as UTF-8") from None


def _load_hub(repo_id: str, *, config, split, revision, token) -> tuple[datasets.Dataset, str, str | None]:
    from ltd_hub.hub import gateway as hub

    sha = hub_commit(repo_id, revision, token)
    try:
        ds = hub.load_dataset(repo_id, name=config, split=split, revision=sha, token=token)
    except HubError:
        raise  # the dataset went missing since repo_head, or the Hub kept failing: the gateway's line says so
    except ValueError as exc:
        text = " ".join(str(exc).split())[:200]
        if "split" in text.lower():
            raise UsageError(f"dataset {repo_id} has no split {split!r} ({text}); check {{split}}", params="split") from None
        if "config" in text.lower():
            raise UsageError(f"dataset {repo_id} has no config {config!r} ({text}); check {{config}}", params="config") from None
        raise _load_error(f"dataset {repo_id}", exc) from None
    except Exception as exc:  # noqa: BLE001
        raise _load_error(f"dataset {repo_id}", exc) from None
    return ds, sha, hub_license(repo_id, sha, token)


def hub_commit(repo_id: str, revision: str | None, token: str | None) -> str:
    """The commit sha ``revision`` (default the main branch) of a Hub dataset points at: what a source is pinned to.

    Raises:
        UsageError: not a valid id, no such dataset, or no such revision.
    """
    from ltd_hub.hub import gateway as hub

    try:
        return hub.repo_head(repo_id, repo_type="dataset", revision=revision, token=token)
    except InvalidRepoIdError:
        raise UsageError(f"{repo_id!r} is neither a local file nor a valid Hub dataset id; check SOURCE") from None
    except MissingRevisionError:
        raise UsageError(f"revision {revision!r} not found in dataset {repo_id}; check {{revision}}", params="revision") from None
    except MissingRepoError:
        raise UsageError(f"{repo_id!r} is not a local file and no Hub dataset has that id; check the path or repo id") from None


def hub_source(repo_id: str, sha: str, config: str | None, split: str, license_id: str | None, dataset=None) -> LoadedSource:
    """The :class:`LoadedSource` of a Hub dataset pinned to commit ``sha`` (its fingerprint) around ``dataset``."""
    return LoadedSource(
        dataset=dataset, kind="hub", id=repo_id, revision=sha, config=config, split=split, fingerprint=sha, license=license_id
    )


def hub_license(repo_id: str, sha: str, token: str | None) -> str | None:
    """The license a Hub dataset's card declares at commit ``sha``; None without a card or a license."""
    from huggingface_hub import DatasetCard

    from ltd_hub.hub import gateway as hub

    card_text = hub.read_card_text(repo_id, "dataset", revision=sha, token=token)
    if not card_text:
        return None
    try:
        value = DatasetCard(card_text).data.license
    except Exception:  # noqa: BLE001 - a malformed card only costs us the license
        return None
    return value[0] if isinstance(value, list) and value else value


# --------------------------------------------------------------------------- columns


def map_columns(
    names: Sequence[str],
    inputs: Sequence[str] | None,
    target: str | None,
    task: str | None,
) -> ColumnMap:
    """Which of ``names`` hold the inputs, target and task (defaults found by name); UsageError naming the parameter."""
    available = list(names)
    shown = ", ".join(available)

    def need(col: str, param: str) -> str:
        if col not in available:
            raise UsageError(f"column {col!r} ({{{param}}}) not in the data; available columns: {shown}", params=_COLUMN_PARAMS)
        return col

    if inputs:
        inputs = tuple(need(c, "input_column") for c in inputs)
    if target:
        need(target, "target_column")
    if task:
        need(task, "task_column")
    if not inputs:
        for layout_inputs, layout_target in _KNOWN_LAYOUTS:
            if layout_inputs[0] in available and (target or layout_target in available):
                inputs = tuple(c for c in layout_inputs if c in available)
                target = target or layout_target
                break
    elif not target:
        target = next((t for _, t in _KNOWN_LAYOUTS if t in available and t not in inputs), None)
    if not inputs:
        # A known prompt column without its target column: the target is what is missing, say so.
        half = next((layout for layout in _KNOWN_LAYOUTS if layout[0][0] in available), None)
        if half is not None:
            raise UsageError(
                f"the data has the prompt column {half[0][0]!r} but no target column {half[1]!r}; pass {{target_column}} "
                f"COLUMN naming the column with the answers (available columns: {shown})",
                params="target_column",
            )
        raise UsageError(
            f"cannot tell which column holds the prompt; pass {{input_column}} (available columns: {shown})", params=_COLUMN_PARAMS
        )
    if not target:
        raise UsageError(
            f"cannot tell which column holds the target; pass {{target_column}} (available columns: {shown})", params="target_column"
        )
    if task is None:
        task = next((c for c in _TASK_COLUMNS if c in available), None)
    id_col = next((c for c in _ID_COLUMNS if c in available), None)
    return ColumnMap(inputs=tuple(inputs), target=target, task=task, id=id_col)


# --------------------------------------------------------------------------- public API


def load_source(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    config: str | None = None,
    split: str | None = None,
    revision: str | None = None,
    token: str | None = None,
    input_columns: Sequence[str] | None = None,
    target_column: str | None = None,
    task_column: str | None = None,
) -> LoadedSource:
    """Load SOURCE and resolve its column mapping.

    Args:
        source: a local file, folder or glob (JSONL, JSON, ``.gz``, Parquet, CSV), SuperNI task
            files (or a folder of them), a list of any of these, or a Hub dataset id.
        config: Hub dataset config name.
        split: split to load (Hub datasets; default ``"train"``).
        revision: Hub dataset branch, tag or commit.
        token: Hub token for private datasets.
        input_columns: columns that make up the prompt (default: detected, e.g. ``inputs``).
        target_column: column with the answer (default: detected, e.g. ``targets``).
        task_column: column naming the task or source dataset (default: detected).

    Returns:
        A :class:`LoadedSource`.

    Raises:
        UsageError: missing, empty, corrupt or non-UTF-8 files, unknown Hub ids, missing columns.

    Example:
        >>> src = load_source("pool.jsonl.gz")
        >>> src.columns.inputs, src.columns.target
        (('inputs',), 'targets')
    """
    specs = [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else [os.fspath(s) for s in source]
    if not specs:
        raise UsageError("no SOURCE given; pass a file, folder, glob or Hub dataset id")
    if len(specs) == 1 and is_hub_id(specs[0]):
        split = split or "train"
        ds, sha, license_id = _load_hub(specs[0], config=config, split=split, revision=revision, token=token)
        loaded = hub_source(specs[0], sha, config, split, license_id, ds)
    else:
        if config or revision:
            raise UsageError("{config} and {revision} apply to Hub dataset ids only, not to local files", params=("config", "revision"))
        loaded = _load_local(specs, split)
    if len(loaded.dataset) == 0:
        raise UsageError(f"{loaded.id} holds no rows; point SOURCE at data with rows")
    loaded.columns = map_columns(loaded.dataset.column_names, input_columns, target_column, task_column)
    return loaded


def write_pool_head(
    pool: str | os.PathLike, rows: int, target: str | os.PathLike, *, token: str | None = None, keep_existing: bool = False
) -> int:
    """Write the first ``rows`` rows of ``pool`` to ``target`` as JSON Lines; return how many it holds.

    A local JSONL file's lines are copied verbatim (20k lines of a 500k-row pool take a fraction
    of a second); any other source (Parquet, CSV, a Hub dataset) is loaded by :func:`load_source`
    and its head written by ``datasets``. ``target`` is rewritten only when its content changes,
    so the manifests of subsets selected from it (which record its sha256) stay the same from one
    run to the next; with ``keep_existing`` a file already there is kept as it is.

    Example:
        >>> write_pool_head("pool.jsonl.gz", 20000, "work/data/pool-first-20000.jsonl")  # doctest: +SKIP
        20000
    """
    target = Path(target)
    if keep_existing and target.is_file():
        return _count_lines(target)
    local = Path(pool).expanduser()
    if local.is_file() and local.name.lower().endswith((".jsonl", ".jsonl.gz")):
        data, count = _head_lines(local, rows)
    else:
        dataset = load_source(pool, token=token).dataset
        head = dataset.select(range(min(rows, len(dataset))))
        buffer = io.BytesIO()
        head.to_json(buffer, lines=True, force_ascii=False)
        data, count = buffer.getvalue(), len(head)
    if not (target.is_file() and target.read_bytes() == data):
        atomic_write(target, data)
    return count


def _head_lines(path: Path, rows: int) -> tuple[bytes, int]:
    """The first ``rows`` non-blank lines of a (gzipped) JSONL file, each ending in a newline, and their count."""
    lines: list[bytes] = []
    try:
        with open_bytes(path) as handle:
            for line in handle:
                if line.strip():
                    lines.append(line if line.endswith(b"\n") else line + b"\n")
                    if len(lines) == rows:
                        break
    except (OSError, EOFError, zlib.error) as exc:
        raise UsageError(f"{{pool}} {path}: cannot read it ({' '.join(str(exc).split())[:120]})", params="pool") from None
    return b"".join(lines), len(lines)


def jsonl_rows(path: str | os.PathLike) -> int | None:
    """Rows of a local JSONL(.gz) file, by counting its non-blank lines (a second for 500k rows); None when
    ``path`` is not a local JSONL file.

    Example:
        >>> jsonl_rows("pool.jsonl.gz")  # doctest: +SKIP
        503576
    """
    path = Path(path).expanduser()
    if not path.is_file() or not path.name.lower().endswith((".jsonl", ".jsonl.gz")):
        return None
    return _count_lines(path)


def _count_lines(path: Path) -> int:
    """Non-blank lines of a (gzipped) text file."""
    with open_bytes(path) as handle:
        return sum(1 for line in handle if line.strip())


def open_bytes(path: Path):
    """A local data file opened for reading bytes, decompressed when it is .gz."""
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _load_local(specs: Sequence[str], split: str | None) -> LoadedSource:
    """Local files (or SuperNI task files) named by the SOURCE arguments, fingerprinted by their sha256."""
    paths, superni = local_files(specs)
    return local_source(specs, paths, superni, split, _load_superni(paths) if superni else _load_files(paths))


def local_files(specs: Sequence[str]) -> tuple[list[Path], bool]:
    """The files the SOURCE arguments name, checked (type, not empty, readable), and whether they are SuperNI task files.

    Raises:
        UsageError: a missing, empty, unreadable or unsupported file, a file named twice, or SuperNI
            task files mixed with other data files.
    """
    paths = _source_files(specs)
    for path in paths:
        _check_data_file(path)
    superni = [_is_superni_file(p) for p in paths]
    if any(superni) and not all(superni):
        raise UsageError("SOURCE mixes SuperNI task files with other data files; give one kind")
    return paths, all(superni)


def local_source(specs: Sequence[str], paths: Sequence[Path], superni: bool, split: str | None, dataset=None) -> LoadedSource:
    """The :class:`LoadedSource` of local files: their records and fingerprint (every file hashed) around ``dataset``."""
    records = _file_records(paths)
    return LoadedSource(
        dataset=dataset,
        kind="superni" if superni else "files",
        id=specs[0] if len(specs) == 1 else ",".join(specs),
        specs=list(specs),
        files=records,
        split=split,
        fingerprint=_combined_fingerprint(records),
    )


def _source_files(specs: Sequence[str]) -> list[Path]:
    """The files the SOURCE arguments name, in order; a file named twice is refused (its rows would count twice)."""
    paths: list[Path] = []
    named_by: dict[Path, str] = {}  # resolved file -> the SOURCE argument that named it
    for spec in specs:
        for path in _expand(spec):
            first = named_by.get(path.resolve())
            if first is not None:
                also = "" if first == spec else f" (by {first} and by {spec})"
                raise UsageError(f"{path} is given twice in SOURCE{also}; its rows would count twice, give each file once")
            named_by[path.resolve()] = spec
            paths.append(path)
    return paths


def _check_data_file(path: Path) -> None:
    """A supported data file type, not empty, and (if gzipped) readable."""
    if data_suffix(path) not in DATA_BUILDERS:
        raise UsageError(f"unsupported file type: {path}; use JSONL, JSON, Parquet or CSV (optionally .gz)")
    _check_readable(path)


def _split_files(folder: Path, split: str) -> list[Path]:
    """Data files under a dataset folder, those of ``split`` when the folder names splits."""
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.name.lower().endswith(_DATA_SUFFIXES) and p.name != MANIFEST_FILENAME
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )  # fmt: skip
    named = [p for p in files if p.name.startswith((f"{split}-", f"{split}.", f"{split}_")) or p.parent.name == split]
    return named or files


def load_instruction_data(
    source: str, *, split: str = "train", revision: str | None = None, token: str | None = None
) -> tuple[datasets.Dataset, DataSource]:
    """Load a dataset as pushed: a file, a dataset folder or a Hub dataset repo, with its selection manifest.

    Unlike :func:`load_source` (which reads a selection *pool*), this reads a dataset the way it
    was published: ``data/<split>-*.parquet`` beside ``selection_manifest.json``, so a pushed
    subset trains with the facts of how it was selected.

    Args:
        source: a local file (JSONL, JSON, ``.gz``, Parquet, CSV), a folder of such files, or a Hub
            dataset repo id.
        split: files named ``<split>-*`` (or under ``<split>/``) are preferred when a folder has several.
        revision: branch, tag or commit of a Hub dataset.
        token: Hub token for private repos.

    Returns:
        ``(datasets.Dataset, DataSource)``; the source carries the selection manifest when there is one.

    Example:
        >>> rows, src = load_instruction_data("ltd-tester/nli-coreset")  # doctest: +SKIP
    """
    from ltd_hub.hub import gateway as hub

    local = Path(source).expanduser()
    if local.is_file():
        files, folder, repo_id, commit = [local], local.parent, None, None
    elif local.is_dir():
        files, folder, repo_id, commit = _split_files(local, split), local, None, None
    elif REPO_ID_RE.match(source) and not source.startswith((".", "/", "~")):
        repo_id = source
        commit, folder = _dataset_snapshot(repo_id, revision, token)
        files = _split_files(folder, split)
    else:
        raise UsageError(f"dataset {source!r} not found: no such file or folder (and not a NAMESPACE/NAME repo id)")
    if not files:
        # A repo an interrupted push left empty says so, with how to clean it up.
        hint = hub.empty_repo_hint(repo_id, "dataset", token) if repo_id else ""
        raise UsageError(
            f"no data files ({', '.join(_DATA_SUFFIXES)}) in {source}{hint}; point {{dataset}} at a file or a pushed subset",
            params={"dataset": "source"},
        )
    for path in files:
        _check_data_file(path)
    rows = _load_files(files)
    info = DataSource(
        name=repo_id or public_path(source),
        repo_id=repo_id,
        revision=commit,
        path=None if repo_id else public_path(source),
        sha256=None if repo_id else _combined_fingerprint(_file_records(files)),
        manifest=_read_manifest_json(folder),
    )
    return rows, info


def _dataset_snapshot(repo_id: str, revision: str | None, token: str | None) -> tuple[str, Path]:
    """``(commit, local folder)`` of a Hub dataset's data files and selection manifest."""
    from ltd_hub.hub import gateway as hub

    try:
        commit = hub.repo_head(repo_id, repo_type="dataset", revision=revision, token=token)
    except NotFoundError as exc:  # any other HubError (unreachable, refused) says so itself
        raise UsageError(f"dataset {repo_id!r} not found: no such local path and no dataset repo on the Hub ({exc})") from None
    patterns = [f"*{s}" for s in _DATA_SUFFIXES] + [MANIFEST_FILENAME]
    return commit, hub.snapshot(repo_id, repo_type="dataset", revision=commit, token=token, allow_patterns=patterns)


def _read_manifest_json(folder: Path) -> dict[str, Any] | None:
    """The selection manifest beside the data, as JSON; None when there is none or it is broken
    (a broken manifest does not stop training; the card just lacks its facts)."""
    if not (folder / MANIFEST_FILENAME).is_file():
        return None
    try:
        return json.loads((folder / MANIFEST_FILENAME).read_text(encoding="utf-8"))
    except ValueError:
        return None


def parse_filters(specs: Sequence[str] | None) -> list[tuple[str, str]]:
    """Parse ``COLUMN=GLOB`` filter strings.

    Example:
        >>> parse_filters(["dataset=snli*"])
        [('dataset', 'snli*')]
    """
    parsed = []
    for spec in specs or ():
        column, sep, pattern = spec.partition("=")
        if not sep or not column.strip():
            raise UsageError(f"bad filter {spec!r}; use COLUMN=VALUE (glob values allowed), e.g. dataset=snli*")
        parsed.append((column.strip(), pattern))
    return parsed


def read_task_names(value: str | Sequence[str] | None) -> list[str]:
    """Task names from a comma-separated string, a list, or a file with one name a line (``#`` comments).

    Example:
        >>> read_task_names("task190_snli_classification, task199_*")
        ['task190_snli_classification', 'task199_*']
    """
    if value is None:
        return []
    if isinstance(value, str):
        path = Path(os.path.expanduser(value))
        if path.is_file():
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError:
                raise UsageError(f"task list {path} is not UTF-8 text; re-encode it as UTF-8") from None
            names = [ln.split("#", 1)[0].strip() for ln in lines]
        else:
            names = [n.strip() for n in value.split(",")]
    else:
        names = [str(n).strip() for n in value]
    names = [n for n in names if n]
    if not names:
        raise UsageError("{tasks} is empty; give task names (comma-separated) or a file with one name a line", params="tasks")
    return names


def _arrow_column(dataset: datasets.Dataset, column: str):
    """One column as a pyarrow array, with any row selection of ``dataset`` applied."""
    return dataset.select_columns([column]).with_format("arrow")[:].column(0)


def column_values(dataset: datasets.Dataset, column: str) -> list[Any]:
    """The values of one column as a Python list (fast, through Arrow)."""
    return _arrow_column(dataset, column).to_pylist()


def _glob_mask(arrow, patterns: Sequence[str]) -> np.ndarray:
    """Rows whose value in ``arrow`` (a pyarrow column, as text) matches any glob in ``patterns``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type)):
        try:
            arrow = pc.cast(arrow, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            arrow = pa.chunked_array([pa.array([None if v is None else str(v) for v in arrow.to_pylist()], pa.string())])
    # Match each distinct value once, then mark rows with a vectorised membership test.
    distinct = [v for v in pc.unique(arrow).to_pylist() if v is not None]
    keep = [v for v in distinct if any(fnmatch.fnmatchcase(v, p) for p in patterns)]
    mask = pc.is_in(arrow, value_set=pa.array(keep, pa.string()))
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def filter_plan(
    column_names: Sequence[str], columns: ColumnMap, filters: Sequence[tuple[str, str]] = (), tasks: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """The globs each filtered column must match (``filters`` and ``tasks`` on the task column), checked.

    Checked before any row is read, so a bad filter fails the same way wherever the rows are
    filtered (here, or in Ray tasks).

    Raises:
        UsageError: a filter column not in the data, or task names without a task column.

    Example:
        >>> filter_plan(["dataset", "inputs"], ColumnMap(("inputs",), None), [("dataset", "snli*")])
        {'dataset': ['snli*']}
    """
    names = list(column_names)
    by_column: dict[str, list[str]] = {}
    for column, pattern in filters:
        if column not in names:
            raise UsageError(f"filter column {column!r} not in the data; available columns: {', '.join(names)}")
        by_column.setdefault(column, []).append(pattern)
    if tasks:
        if not columns.task:
            raise UsageError(
                f"{{tasks}} needs a task column and none was found; pass {{task_column}} (columns: {', '.join(names)})",
                params=("tasks", "task_column"),
            )
        by_column.setdefault(columns.task, []).extend(tasks)
    return by_column


def filter_masks(table, by_column: dict[str, list[str]], target: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(matched, answered)`` of each row of a pyarrow Table (a whole source, or one block of it).

    ``matched``: the row matches every filtered column of :func:`filter_plan`'s ``by_column``
    (globs on one column OR, different columns AND). ``answered``: the ``target`` column holds
    some text (:func:`has_text`); None without a target. The table needs only those columns.
    """
    import numpy as np

    matched = np.ones(table.num_rows, dtype=bool)
    for column, patterns in by_column.items():
        matched &= _glob_mask(table.column(column), patterns)
    return matched, (_has_text_arrow(table.column(target)) if target else None)


def filter_rows(matched: np.ndarray, answered: np.ndarray | None, by_column: dict[str, list[str]], target: str | None) -> np.ndarray:
    """The source row positions :func:`apply_filters` keeps, from the masks of :func:`filter_masks`.

    Rows whose target is null, empty or blank are dropped too, with one warning that counts them.

    Raises:
        UsageError: the filter keeps no row, or no kept row has a target.
    """
    import numpy as np

    rows = np.flatnonzero(matched).astype(np.int64)
    if by_column and rows.size == 0:
        described = "; ".join(f"{c} in {p}" for c, p in by_column.items())
        raise UsageError(f"no rows left after the filter ({described}); check the column values and patterns")
    if answered is not None:
        # A row without an answer teaches nothing and would be pushed and trained on as is.
        n_empty = int((matched & ~answered).sum())
        if n_empty:
            if n_empty == rows.size:
                raise UsageError(f"every row's target column {target!r} is null or empty; check {{target_column}}", params="target_column")
            logger.warning("dropped %d of %d rows whose target column %r is null or empty", n_empty, rows.size, target)
            rows = np.flatnonzero(matched & answered).astype(np.int64)
    return rows


def apply_filters(
    source: LoadedSource,
    filters: Sequence[tuple[str, str]] = (),
    tasks: Sequence[str] | None = None,
    *,
    masks: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> tuple[datasets.Dataset, np.ndarray]:
    """Keep the rows that match every filtered column and, if given, the task names.

    Globs on the same column are alternatives (OR); different columns must all match (AND).
    Task names are globs on the source's task column. Rows whose target is null, empty or blank
    are dropped too, with one warning that counts them. ``masks``: :func:`filter_masks` of every
    row, already computed where the rows were read (Ray tasks); None computes them here.

    Returns:
        The filtered dataset and the source row positions of its rows (int64, ascending).

    Example:
        >>> ds, rows = apply_filters(src, [("dataset", "snli")])
    """
    import numpy as np

    dataset = source.dataset
    by_column = filter_plan(dataset.column_names, source.columns, filters, tasks)
    target = source.columns.target
    needed = list(dict.fromkeys([*by_column, *([target] if target else [])]))
    if masks is not None:
        matched, answered = masks
    elif needed:
        matched, answered = filter_masks(dataset.select_columns(needed).with_format("arrow")[:], by_column, target)
    else:
        matched, answered = np.ones(len(dataset), dtype=bool), None
    rows = filter_rows(matched, answered, by_column, target)
    filtered = dataset if rows.size == len(dataset) else dataset.select(rows)
    return filtered, rows


def _as_text(value: Any) -> str:
    """A cell as text: null is empty (never "None"), lists are their non-empty items joined by ", "."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(t for t in map(_as_text, value) if t)
    return str(value)


def has_text(dataset: datasets.Dataset, column: str) -> np.ndarray:
    """Rows whose ``column`` holds some text: not null, not empty or blank (a list: one such item).

    Example:
        >>> has_text(ds, "targets").all()
        True
    """
    return _has_text_arrow(_arrow_column(dataset, column))


def _has_text_arrow(arrow) -> np.ndarray:
    """:func:`has_text` of a pyarrow column."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type):
        filled = pc.fill_null(pc.not_equal(pc.utf8_trim_whitespace(arrow), ""), False)
        return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)
    return np.fromiter((bool(_as_text(v).strip()) for v in arrow.to_pylist()), dtype=bool, count=len(arrow))


def drop_rows_without_target(dataset: datasets.Dataset, column: str) -> tuple[datasets.Dataset, int]:
    """Drop the rows whose ``column`` is null, empty or blank; return the rest and how many were dropped.

    Raises:
        UsageError: every row lacks a target.

    Example:
        >>> rows, n_dropped = drop_rows_without_target(rows, "targets")
    """
    import numpy as np

    keep = has_text(dataset, column)
    n_dropped = int((~keep).sum())
    if n_dropped == len(dataset) and n_dropped:
        raise UsageError(f"every row's target column {column!r} is null or empty; check {{target_column}}", params="target_column")
    return (dataset.select(np.flatnonzero(keep)) if n_dropped else dataset), n_dropped


def build_texts(dataset: datasets.Dataset, fields: Sequence[str]) -> list[str]:
    """The text embedded for each row: the non-empty ``fields`` joined by newlines (lists by ", ").

    Example:
        >>> build_texts(ds, ["inputs", "targets"])[0]
        'Premise ... True, False, or Neither?\\nNeither'
    """
    missing = [f for f in fields if f not in dataset.column_names]
    if missing:
        raise UsageError(f"text field(s) {', '.join(missing)} not in the data; available columns: {', '.join(dataset.column_names)}")

    columns = [_arrow_column(dataset, f).to_pylist() for f in fields]
    return ["\n".join(t for t in map(_as_text, parts) if t) for parts in zip(*columns)]
