"""The ``ray`` engine: the selection's heavy steps on a Ray cluster, with the local engine's ids.

What runs where:

* Ray Data reads and filters the source, and the driver memory-maps the result (see
  :mod:`ltd_hub.selection.engines.ray_source`; a source Ray cannot read as ``datasets`` does is
  loaded on the driver, saying why);
* the driver (where ``ltd-hub`` runs) builds the texts, fits the lexical encoder when that is the
  encoder (it is fitted on the texts themselves), fits k-means on the seeded sample, shares out the
  budget and pushes the chosen rows in one commit;
* an actor pool (one encoder load per actor, ``num_gpus=1`` per actor when the cluster has GPUs)
  encodes fixed chunks of rows read from a Parquet file of the texts, writing one embedding shard
  per chunk next to the cache entry; finished shards survive a failure, and a re-run encodes only
  the missing ones, then assembles the ordinary cache entry (so ``local`` reuses it);
* ``map_batches`` tasks assign the rows to the nearest centre, chunk by chunk (the local engine's
  chunks, hence its labels);
* each cluster's picking is one independent Ray task reading only that cluster's rows (the
  random rules, which share one random stream over the clusters, run in the driver in cluster
  order: they need no vectors, and this keeps the local engine's ids).

Workers read the embeddings from the cache folder, so on a cluster of several machines the
ltd-hub cache (``LTD_HUB_CACHE``) must be on storage every node mounts.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ltd_hub.errors import UsageError
from ltd_hub.files import staged_file

INSTALL_HINT = "pip install 'ltd-hub[ray]'"


def require_ray() -> None:
    """Raise one UsageError naming the install command when Ray Data is missing."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError(f"{{engine}} ray needs Ray Data, which is not installed; {INSTALL_HINT}", params="engine") from None


def connect(address: str | None = None) -> None:
    """Join the Ray cluster at ``address`` (default ``RAY_ADDRESS``; without either, a local Ray).

    An already initialised Ray (a test fixture, or a ``ray job submit`` entrypoint) is used as it is.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except ConnectionError as exc:
        raise UsageError(
            f"cannot reach the Ray cluster at {address} ({exc}); check {{ray_address}} or RAY_ADDRESS", params="ray_address"
        ) from None


def _cluster_plan() -> tuple[int, float | None]:
    """``(actors, GPUs per actor)``: one actor per GPU when the cluster has GPUs, else one per CPU."""
    import ray

    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus:
        return gpus, 1
    return max(1, int(res.get("CPU", 1))), None


# --------------------------------------------------------------------------- encoding


class _EncodeShards:
    """Ray Data actor: loads the encoder once, then encodes whole chunks into shard files."""

    def __init__(self, encoder, prepared: bool, texts_path: str, shard_dir: str):
        import pyarrow.parquet as pq

        self.encoder = encoder
        if not prepared:  # a neural encoder: one model load per actor, on its GPU when it has one
            self.encoder.prepare([])
        self.texts = pq.ParquetFile(texts_path)
        self.shard_dir = Path(shard_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {"chunk": [], "n_truncated": [], "dim": [], "max_tokens": []}
        for chunk in batch["chunk"].tolist():
            texts = self.texts.read_row_group(chunk, columns=["text"]).column("text").to_pylist()
            emb, n_trunc = self.encoder.encode_batch(texts)
            (self.shard_dir / f"{chunk:07d}.json").write_text(json.dumps({"n_truncated": int(n_trunc)}))
            with staged_file(self.shard_dir / f"{chunk:07d}.npy") as tmp, open(tmp, "wb") as fh:  # last: it marks the shard done
                np.save(fh, np.asarray(emb, dtype=np.float32))
            out["chunk"].append(chunk)
            out["n_truncated"].append(int(n_trunc))
            out["dim"].append(int(emb.shape[1]))
            out["max_tokens"].append(-1 if self.encoder.max_tokens is None else int(self.encoder.max_tokens))
        return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}


def _write_texts(texts: Sequence[str], path: Path, chunk_rows: int) -> None:
    """The texts as Parquet, one row group per encoding chunk (actors read exactly their chunk)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("text", pa.large_string())])
    with staged_file(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, len(texts), chunk_rows):
            writer.write_table(pa.table({"text": list(texts[start : start + chunk_rows])}, schema=schema), row_group_size=chunk_rows)


def encode_cached_ray(
    encoder,
    texts: Sequence[str],
    identity: dict[str, Any],
    *,
    use_cache: bool = True,
    address: str | None = None,
    log=None,
) -> tuple[np.ndarray, Any]:
    """:func:`~ltd_hub.selection.encoders.encode_cached` with the encoding on a Ray actor pool.

    Same cache key and entry as the local engine (either engine reuses the other's embeddings).
    Shards of an interrupted run are kept under the entry's ``ray-shards`` folder and reused.

    Returns:
        ``(memory-mapped float32 embeddings, EncodeStats)``.
    """
    from ltd_hub.selection.encoders import _CHUNK_ROWS, EncodeStats, cache_entry, cached_embeddings, finish_entry

    say = log or (lambda _m: None)
    entry = cache_entry(encoder, texts, identity)
    start = time.perf_counter()
    hit = cached_embeddings(entry, len(texts), use_cache=use_cache, start=start)
    if hit is not None:
        return hit
    work = entry.folder / "ray-shards"
    work.mkdir(parents=True, exist_ok=True)
    entry.meta.unlink(missing_ok=True)
    n_chunks = -(-len(texts) // _CHUNK_ROWS)
    max_tokens = _encode_shards(encoder, texts, work, n_chunks, address, say)
    dim, n_truncated = _assemble_shards(work, entry.partial, len(texts), n_chunks, entry.dtype)
    encoder.max_tokens = max_tokens
    finish_entry(entry, encoder, dim, n_truncated)
    shutil.rmtree(work, ignore_errors=True)
    X = np.load(entry.final, mmap_mode="r")
    return X, EncodeStats(len(texts), dim, n_truncated, max_tokens, time.perf_counter() - start, False, entry.key)


def _encode_shards(encoder, texts: Sequence[str], work: Path, n_chunks: int, address: str | None, say) -> int | None:
    """Encode the chunks that have no shard yet on an actor pool; return the encoder's window (max_tokens)."""
    import ray

    from ltd_hub.selection.encoders import _CHUNK_ROWS, LexicalEncoder

    texts_path = work / "texts.parquet"
    if not texts_path.is_file():
        _write_texts(texts, texts_path, _CHUNK_ROWS)
    # The lexical encoder is fitted on all the texts: once, here, and shipped to the actors. A
    # neural encoder is shipped unloaded; each actor loads the weights once.
    prepared = isinstance(encoder, LexicalEncoder)
    if prepared:
        encoder.prepare(texts)
    todo = [i for i in range(n_chunks) if not (work / f"{i:07d}.npy").is_file()]
    connect(address)
    n_actors, gpus = _cluster_plan()
    say(f"encoding {len(todo)} of {n_chunks} chunks on Ray ({min(n_actors, max(1, len(todo)))} actors{', 1 GPU each' if gpus else ''})")
    max_tokens = encoder.max_tokens
    # The Hub token never travels in the actors' arguments (they can be spilled to disk): a
    # private encoder is read with the token of the workers' own environment (HF_TOKEN).
    shipped = copy.copy(encoder)
    if getattr(shipped, "token", None) is not None:
        shipped.token = None
    if todo:
        ds = ray.data.from_items([{"chunk": i} for i in todo], override_num_blocks=min(len(todo), 4 * n_actors))
        done = ds.map_batches(
            _EncodeShards,
            fn_constructor_kwargs={"encoder": shipped, "prepared": prepared, "texts_path": str(texts_path), "shard_dir": str(work)},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(n_actors, len(todo))),
            **({"num_gpus": gpus} if gpus else {}),
        ).take_all()
        got = {int(r["max_tokens"]) for r in done}
        if got and got != {-1}:
            max_tokens = max(got)
    return max_tokens


def _assemble_shards(work: Path, partial: Path, n_rows: int, n_chunks: int, dtype: str = "float32") -> tuple[int, int]:
    """Write the shards, in order, into ``partial`` (the local engine's entry format); return ``(dim, n_truncated)``."""
    from ltd_hub.selection.encoders import _CHUNK_ROWS
    from ltd_hub.selection.engines.bounded import release

    first = np.load(work / f"{0:07d}.npy", mmap_mode="r")
    dim = first.shape[1]
    del first
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=(n_rows, dim))
    n_truncated = 0
    for i in range(n_chunks):
        out[i * _CHUNK_ROWS : (i + 1) * _CHUNK_ROWS] = np.load(work / f"{i:07d}.npy")
        out.flush()
        release(out)  # written pages leave resident memory: assembling stays bounded
        n_truncated += json.loads((work / f"{i:07d}.json").read_text())["n_truncated"]
    out.flush()
    del out
    return dim, n_truncated


# --------------------------------------------------------------------------- assignment and picking


def _source(X: np.ndarray):
    """How workers read ``X``: the path of its memory-mapped file, else the array in the object store."""
    import ray

    if isinstance(X, np.memmap) and X.filename:
        return {"path": str(X.filename)}
    return {"ref": ray.put(np.ascontiguousarray(X, dtype=np.float32))}


def _open(source) -> np.ndarray:
    import ray

    if "path" in source:
        return np.load(source["path"], mmap_mode="r")
    return ray.get(source["ref"])


def _assign_batch(batch: dict[str, np.ndarray], source, centers: np.ndarray) -> dict[str, np.ndarray]:
    from ltd_hub.selection.engines.bounded import assign_rows

    X = _open(source)
    c2 = np.einsum("ij,ij->i", centers, centers)
    labels, d2s = [], []
    for start, stop in zip(batch["start"].tolist(), batch["stop"].tolist()):
        lab, d2 = assign_rows(X[start:stop], centers, c2)
        labels.append(lab.astype(np.int64).tobytes())
        d2s.append(float(d2.sum(dtype=np.float64)))
    return {"start": batch["start"], "labels": np.array(labels, dtype=object), "d2": np.asarray(d2s)}


def ray_assign(address: str | None = None):
    """``(X, centers) -> (labels, inertia)`` with the chunks assigned by Ray Data ``map_batches`` tasks."""

    def assign(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, float]:
        import ray

        from ltd_hub.selection.engines.bounded import chunk_bounds

        connect(address)
        bounds = chunk_bounds(len(X))
        ds = ray.data.from_items([{"start": s, "stop": e} for s, e in bounds])
        rows = ds.map_batches(_assign_batch, fn_kwargs={"source": _source(X), "centers": centers}, batch_size=8).take_all()
        labels = np.empty(len(X), dtype=np.int64)
        sums = {}
        for r in rows:
            part = np.frombuffer(r["labels"], dtype=np.int64)
            labels[int(r["start"]) : int(r["start"]) + len(part)] = part
            sums[int(r["start"])] = float(r["d2"])
        inertia = 0.0
        for s, _e in bounds:  # the local engine's order of additions
            inertia += sums[s]
        return labels, inertia

    return assign


def _pick_cell(rule: str, seed: int, source, members: np.ndarray, dist: np.ndarray, budget: int) -> np.ndarray:
    from ltd_hub.selection import get_selector
    from ltd_hub.selection.engines.bounded import cell_vectors

    selector = get_selector(rule, n_select=1, seed=seed)
    X = _open(source) if source is not None else np.empty((0, 0), dtype=np.float32)
    return selector._pick(
        cell_vectors(rule, X, members) if source is not None else np.empty((len(members), 0), np.float32), dist, budget, None
    )


def ray_run_cells(address: str | None = None):
    """``run_cells`` for :func:`~ltd_hub.selection.engines.bounded.fit_selector`: one Ray task per cluster (cell)."""

    def run_cells(selector, X: np.ndarray, dist: np.ndarray, jobs) -> list[np.ndarray]:
        import ray

        from ltd_hub.selection.engines.bounded import VECTOR_RULES

        connect(address)
        source = _source(X) if selector.name in VECTOR_RULES else None
        task = ray.remote(num_cpus=1)(_pick_cell)
        refs = [task.remote(selector.name, selector.seed, source, members, dist[members], budget) for _c, members, budget in jobs]
        return [np.asarray(r) for r in ray.get(refs)]

    return run_cells
