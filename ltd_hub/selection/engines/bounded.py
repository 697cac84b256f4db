"""Selection in bounded memory: memory-mapped embeddings, k-means on a seeded sample, chunked work.

:func:`fit_selector` runs a :class:`~ltd_hub.selection.strategies.Selector` the way its own
``fit`` does (same budgets, same random stream, same cell order), with three changes that keep
memory independent of the pool's vectors:

* with ``kmeans_sample`` (rows per cluster), k-means is fitted on a seeded sample of
  ``k * kmeans_sample`` rows and every row is then assigned to its nearest centre in chunks
  (:func:`assign_chunks`); a sample covering the pool fits on every row, as ``fit`` does;
* the rules that only need distances or a random stream (centroid, quantile, median, random,
  random-in-cluster) never read vectors; k-center reads one cluster's rows at a time;
* the per-cluster picks go through ``run_cells``, which the Ray engine replaces by one task per
  cluster.

Without ``kmeans_sample`` the result is exactly ``Selector.fit``'s (a test holds it to that).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ltd_hub.errors import UsageError

# Rows per chunk when assigning rows to centres: bounds the (chunk x k) distance block.
ASSIGN_CHUNK = 8192
# Rows per chunk when summing rows into group (example) vectors.
GROUP_CHUNK = 1 << 16
# The rules' use of their inputs: k-center needs the cluster's vectors, the random rules a
# random stream shared by all clusters in order (so they run in the driver, in cell order, to
# give the local engine's ids); the others need only the distances to the centre.
VECTOR_RULES = frozenset({"kcenter", "kcenter-global"})
RANDOM_RULES = frozenset({"random-in-cluster", "random"})
DISTANCE_RULES = frozenset({"centroid", "quantile", "median"})

# One cell's work: (cell id, its rows in row order, rows to pick).
Job = tuple[int, np.ndarray, int]
RunCells = Callable[[Any, np.ndarray, np.ndarray, Sequence[Job]], list[np.ndarray]]


def release(X: np.ndarray) -> None:
    """Drop the pages of a memory-mapped ``X`` from this process's resident memory.

    The file (and the kernel's page cache) keep the data; the next read maps it in again. Without
    this, every chunk read stays resident and a pass over the pool grows the process's memory
    by the whole embedding file. A no-op for in-memory arrays and where ``madvise`` is missing.
    """
    import mmap

    handle = getattr(X, "_mmap", None)
    if handle is None or not hasattr(handle, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        handle.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):
        pass


def take_rows(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``X[rows]`` as an in-memory array; rows of a memory-mapped ``X`` are read with ``pread``.

    Gathering scattered rows through the mapping would fault in (and keep resident) a 64 KiB
    window around every row: a sample of a few rows per page maps the whole embedding file, so
    the process's RSS would grow with the pool. Reading the rows from the file touches only the
    kernel's page cache, which is not this process's memory.

    Example:
        >>> take_rows(np.load("embeddings.npy", mmap_mode="r"), np.array([3, 1, 4]))
    """
    import mmap

    rows = np.asarray(rows, dtype=np.int64)
    if not (isinstance(X, np.memmap) and isinstance(X.base, mmap.mmap) and X.flags.c_contiguous and X.ndim == 2):
        out = np.ascontiguousarray(X[rows])  # in memory already, or a view of a mapping
        release(X)
        return out
    if rows.size and (rows.min() < -len(X) or rows.max() >= len(X)):
        raise IndexError(f"row index out of range for {len(X)} rows")
    rows = rows % max(len(X), 1)
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    got = np.empty((len(rows), X.shape[1]), dtype=X.dtype)
    row_bytes = X.strides[0]
    # One read per run of consecutive rows.
    starts = np.flatnonzero(np.diff(ordered, prepend=-2) != 1)
    stops = np.append(starts[1:], len(ordered))
    with open(X.filename, "rb", buffering=0) as fh:
        for a, b in zip(starts.tolist(), stops.tolist()):
            view, pos = memoryview(got[a:b]).cast("B"), int(X.offset) + int(ordered[a]) * row_bytes
            while len(view):
                n = os.preadv(fh.fileno(), [view], pos)
                if n <= 0:
                    raise OSError(f"short read from {X.filename}")
                view, pos = view[n:], pos + n
    out = np.empty_like(got)
    out[order] = got
    return out


def row_distances(X: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """:func:`~ltd_hub.selection.coreset.distances_to_centers` (same blocks, same values), releasing each block."""
    from ltd_hub.selection.coreset import _BLOCK

    out = np.empty(len(X), dtype=np.float32)
    for start in range(0, len(X), _BLOCK):
        rows = np.asarray(X[start : start + _BLOCK])
        diff = rows - centers[labels[start : start + _BLOCK]]
        out[start : start + len(rows)] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        release(X)
    return out


def sample_rows(n_rows: int, n_sample: int, seed: int) -> np.ndarray:
    """The seeded k-means sample: ``n_sample`` distinct row positions, ascending.

    Drawn from a stream of its own (not the selector's), so sampling never shifts the picks' randomness.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6B6D]))
    return np.sort(rng.choice(n_rows, size=n_sample, replace=False))


def assign_rows(rows: np.ndarray, centers: np.ndarray, center_sq: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of each row: ``(labels int64, squared distances float32)``.

    Example:
        >>> labels, d2 = assign_rows(X[:100], clustering.centers)
    """
    rows = np.asarray(rows, dtype=np.float32)
    c2 = np.einsum("ij,ij->i", centers, centers) if center_sq is None else center_sq
    d2 = np.einsum("ij,ij->i", rows, rows)[:, None] - 2.0 * (rows @ centers.T) + c2[None, :]
    labels = np.argmin(d2, axis=1)
    return labels.astype(np.int64), np.maximum(d2[np.arange(len(rows)), labels], 0).astype(np.float32)


def chunk_bounds(n_rows: int, chunk: int = ASSIGN_CHUNK) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the fixed chunks; the Ray engine uses the same ones (same results)."""
    return [(s, min(s + chunk, n_rows)) for s in range(0, n_rows, chunk)]


def assign_chunks(X: np.ndarray, centers: np.ndarray, *, progress: bool = False) -> tuple[np.ndarray, float]:
    """Assign every row of ``X`` (memory-mapped is fine) to its nearest centre, chunk by chunk: ``(labels, inertia)``."""
    from tqdm.auto import tqdm

    labels = np.empty(len(X), dtype=np.int64)
    c2 = np.einsum("ij,ij->i", centers, centers)
    inertia = 0.0
    for start, stop in tqdm(chunk_bounds(len(X)), desc="assigning rows", unit="chunk", disable=not progress):
        labels[start:stop], d2 = assign_rows(X[start:stop], centers, c2)
        inertia += float(d2.sum(dtype=np.float64))
        release(X)
    return labels, inertia


def sampled_clustering(
    X: np.ndarray, n_clusters: int, seed: int, per_cluster: int, *, progress: bool = False, assign=None, backend: str = "sklearn"
):
    """k-means fitted on ``n_clusters * per_cluster`` seeded sample rows, then every row assigned.

    Returns:
        ``(Clustering, rows in the sample)``. When the sample would cover the pool, the fit is on
        every row (the labels are then k-means' own, exactly as without a sample).
    """
    from tqdm.auto import tqdm

    from ltd_hub.selection.clustering import Clustering, fit_kmeans

    n = len(X)
    n_sample = n_clusters * per_cluster
    if n_sample >= n:
        with tqdm(total=1, desc=f"clustering (k-means, k={n_clusters})", disable=not progress) as bar:
            clustering = fit_kmeans(np.ascontiguousarray(X, dtype=np.float32), n_clusters, seed=seed, backend=backend)
            bar.update()
        return clustering, n
    sample = sample_rows(n, n_sample, seed)
    with tqdm(total=1, desc=f"clustering (k-means, k={n_clusters}, {n_sample} sample rows)", disable=not progress) as bar:
        rows = np.ascontiguousarray(take_rows(X, sample), dtype=np.float32)
        fitted = fit_kmeans(rows, n_clusters, seed=seed, backend=backend)
        del rows
        bar.update()
    labels, inertia = (assign or (lambda X_, c: assign_chunks(X_, c, progress=progress)))(X, fitted.centers)
    clustering = Clustering(
        labels=labels,
        centers=fitted.centers,
        inertia=inertia,
        sizes=np.bincount(labels, minlength=n_clusters),
        algorithm=f"{fitted.algorithm} (sample)",
        seconds=fitted.seconds,
    )
    return clustering, n_sample


def group_vectors_chunked(X: np.ndarray, groups) -> np.ndarray:
    """:func:`~ltd_hub.selection.groups.group_vectors` reading ``X`` in chunks of rows.

    The sums may differ from the one-shot product in the last bits (another order of additions),
    so the bounded engine uses this only with a k-means sample, whose ids are its own anyway.
    """
    from scipy import sparse

    sums = np.zeros((groups.n_groups, X.shape[1]), dtype=np.float32)
    for start in range(0, len(X), GROUP_CHUNK):
        codes = groups.codes[start : start + GROUP_CHUNK]
        present, local = np.unique(codes, return_inverse=True)
        indicator = sparse.csr_matrix(
            (np.ones(len(codes), dtype=np.float32), (local, np.arange(len(codes)))), shape=(len(present), len(codes))
        )
        sums[present] += np.asarray(indicator @ np.asarray(X[start : start + len(codes)], dtype=np.float32))
        release(X)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return sums / np.maximum(norms, 1e-12)


class LazyTexts(Sequence[str]):
    """The texts :func:`~ltd_hub.data.sources.build_texts` returns, built from the Arrow columns a chunk
    of rows at a time whenever they are read, so the pool's texts are never all in memory.

    Reading them all again costs a pass over the columns (seconds per million rows); the
    encoder, the cache digest and the quality report each read them once.

    Example:
        >>> texts = LazyTexts(filtered, ["inputs", "targets"])
        >>> texts[0] == build_texts(filtered, ["inputs", "targets"])[0]
        True
    """

    def __init__(self, dataset, fields: Sequence[str], chunk: int = GROUP_CHUNK):
        from ltd_hub.data.sources import build_texts

        build_texts(dataset.select(range(0)), list(fields))  # the same error for a missing field, now
        self.dataset, self.fields, self.chunk = dataset, list(fields), chunk

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        from ltd_hub.data.sources import build_texts

        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return build_texts(self.dataset.select(range(start, max(start, stop))), self.fields)
        n = len(self)
        if not -n <= key < n:
            raise IndexError(key)
        key %= n
        return build_texts(self.dataset.select([key]), self.fields)[0]

    def __iter__(self):
        for start in range(0, len(self), self.chunk):
            yield from self[start : start + self.chunk]


def column_chunks(dataset, columns: Sequence[str], chunk: int = GROUP_CHUNK) -> Iterator[list[list[Any]]]:
    """The values of ``columns`` a chunk of rows at a time: per chunk, one Python list per column.

    The per-row codes (groups, strata, labels, templates) are built from these, so that no
    column of the pool is ever held whole as Python objects.

    Example:
        >>> for (tasks,) in column_chunks(filtered, ["task"]): ...
    """
    view = dataset.select_columns(list(columns)).with_format("arrow")
    for start in range(0, len(view), chunk):
        table = view[start : start + chunk]
        yield [table.column(c).to_pylist() for c in columns]


def value_chunks(dataset, column: str, chunk: int = GROUP_CHUNK) -> Iterator[list[Any]]:
    """One column's values a chunk of rows at a time (:func:`column_chunks` for a single column)."""
    for (values,) in column_chunks(dataset, [column], chunk):
        yield values


def text_chunks(texts: Sequence[str], chunk: int = GROUP_CHUNK) -> Iterator[Sequence[str]]:
    """``texts`` (a list or :class:`LazyTexts`) a chunk at a time."""
    for start in range(0, len(texts), chunk):
        yield texts[start : start + chunk]


def word_counts(dataset, fields: Sequence[str], chunk: int = GROUP_CHUNK) -> np.ndarray:
    """Words per row of the ``fields`` texts (float64), building the texts a chunk of rows at a time
    instead of holding a second copy of every text at once."""
    from ltd_hub.data.sources import build_texts

    out = np.empty(len(dataset), dtype=np.float64)
    for start in range(0, len(dataset), chunk):
        part = dataset.select(range(start, min(start + chunk, len(dataset))))
        out[start : start + len(part)] = [len(t.split()) for t in build_texts(part, list(fields))]
    return out


def run_cells_local(selector, X: np.ndarray, dist: np.ndarray, jobs: Sequence[Job]) -> list[np.ndarray]:
    """Pick inside each cell in this process, reading a cell's vectors only for the rules that need them."""
    from tqdm.auto import tqdm

    out = []
    for _c, members, budget in tqdm(
        jobs, desc=f"selecting ({selector.name})", unit="cluster", disable=not selector.progress or len(jobs) < 2
    ):
        out.append(selector._pick(cell_vectors(selector.name, X, members), dist[members], budget, None))
    return out


def cell_vectors(rule: str, X: np.ndarray, members: np.ndarray) -> np.ndarray:
    """The cell's rows of ``X`` when the rule reads vectors, else a zero-width stand-in of the same length."""
    if rule in VECTOR_RULES:
        return np.ascontiguousarray(take_rows(X, members), dtype=np.float32)
    return np.empty((len(members), 0), dtype=np.float32)


def fit_selector(
    selector,
    X: np.ndarray,
    strata: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    *,
    kmeans_sample: int | None = None,
    run_cells: RunCells | None = None,
    assign=None,
):
    """Fit ``selector`` on ``X`` like ``selector.fit(X, strata, weights)``, in bounded memory.

    Args:
        selector: an unfitted selector from :func:`~ltd_hub.selection.get_selector`.
        X: float32 (or, with ``kmeans_sample``, float16) embeddings, shape (n, d); a read-only memmap
            is read in chunks, never copied whole.
        strata, weights: as for ``Selector.fit``.
        kmeans_sample: rows per cluster of the seeded k-means sample; None fits on every row.
        run_cells: ``(selector, X, dist, jobs) -> [local picks per job]`` for the rules that do not
            use the shared random stream (default :func:`run_cells_local`).
        assign: ``(X, centers) -> (labels, inertia)`` for the sampled fit (default :func:`assign_chunks`).

    Returns:
        The selector, with the attributes ``fit`` sets, plus ``kmeans_sample_`` (rows per cluster or
        None) and ``kmeans_sample_rows_`` (rows the k-means fit saw).

    Example:
        >>> sel = fit_selector(get_selector("centroid", n_select=25, seed=0), X, kmeans_sample=256)
    """
    from ltd_hub.selection.strategies import partition

    name = selector.name
    X = _checked_inputs(selector, X, strata, kmeans_sample)
    clustering, sample_rows_seen = _fit_clustering(selector, X, kmeans_sample, assign)
    labels, centers, sizes = partition(X, clustering)
    dist = row_distances(X, centers, labels)
    jobs, stratum_budget = selector.cell_jobs(labels, sizes, strata, weights)
    rng = np.random.default_rng(selector.seed)
    if name in RANDOM_RULES:
        # One random stream over the cells in order, as Selector.fit draws it; no vectors read.
        picks = [selector._pick(cell_vectors(name, X, m), dist[m], b, rng) for _c, m, b in jobs]
    else:
        picks = (run_cells or run_cells_local)(selector, X, dist, jobs)
    indices = np.sort(np.concatenate([m[local] for (_c, m, _b), local in zip(jobs, picks)]))
    selector.set_fitted(indices, labels, dist, sizes, clustering, stratum_budget)
    selector.kmeans_sample_ = kmeans_sample if clustering is not None else None
    selector.kmeans_sample_rows_ = sample_rows_seen
    return selector


def _checked_inputs(selector, X: np.ndarray, strata: np.ndarray | None, kmeans_sample: int | None) -> np.ndarray:
    """``X`` as float32, after checking the strategy, the sample size, the shape and the budget."""
    if selector.name not in VECTOR_RULES | RANDOM_RULES | DISTANCE_RULES:
        raise ValueError(f"strategy {selector.name!r} is not classified for the bounded engine")
    if kmeans_sample is not None and kmeans_sample < 1:
        raise UsageError(f"{{kmeans_sample}} must be at least 1 row per cluster, got {kmeans_sample}", params="kmeans_sample")
    # float16 embeddings (``embedding_dtype``) stay as stored when sampled: every reader casts its
    # chunk; the fit on every row works on one float32 copy, as before.
    if X.dtype != np.float32 and not (kmeans_sample is not None and X.dtype == np.float16):
        X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) == 0:
        raise UsageError("selection needs a non-empty 2-D array of embeddings")
    n = len(X)
    if selector.n_select > n:
        raise UsageError(f"cannot select {selector.n_select} rows from {n}; lower {{size}} or {{ratio}}", params=("size", "ratio"))
    if strata is not None and len(strata) != n:
        raise ValueError(f"strata has {len(strata)} entries for {n} rows")
    return X


def _fit_clustering(selector, X: np.ndarray, kmeans_sample: int | None, assign):
    """``(clustering, rows the k-means fit saw)``: None for the unclustered rules, every row, or a seeded sample."""
    from ltd_hub.selection.clustering import default_n_clusters

    n = len(X)
    if not selector.clustered:
        return None, None
    if kmeans_sample is None:
        return selector._cluster(X), n
    k = selector.n_clusters or default_n_clusters(n, selector.n_select)
    if k > n:
        raise UsageError(f"{{n_clusters}} {k} is more than the {n} rows; lower it", params="n_clusters")
    return sampled_clustering(
        X, k, selector.seed, kmeans_sample, progress=selector.progress, assign=assign, backend=selector.kmeans_backend
    )
