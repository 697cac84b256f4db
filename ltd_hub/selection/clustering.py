"""K-means (scikit-learn, MiniBatchKMeans for large inputs; or faiss) and the default number of clusters."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

# Above this many rows, full-batch KMeans costs minutes on a 2-core machine; MiniBatchKMeans seconds.
MINIBATCH_THRESHOLD = 20_000
# Who fits k-means. The choice is explicit and recorded (the manifest's ``algorithm``), never taken
# from what happens to be installed: the two give different centres, so a selection's ids depend on it.
KMEANS_BACKENDS = ("sklearn", "faiss")
FAISS_HINT = "pip install faiss-cpu (or faiss-gpu on a GPU machine)"
# faiss' k-means iterations (faiss' own default).
FAISS_NITER = 20


@dataclass
class Clustering:
    """A fitted k-means partition of the rows."""

    labels: np.ndarray  # (n,) int64 cluster id per row
    centers: np.ndarray  # (k, d) float32
    inertia: float
    sizes: np.ndarray  # (k,) rows per cluster
    algorithm: str  # "kmeans", "minibatch-kmeans" or "faiss-kmeans"
    seconds: float

    @property
    def n_clusters(self) -> int:
        """k."""
        return len(self.centers)


def default_n_clusters(n_rows: int, n_select: int) -> int:
    """The automatic k: sqrt(n/2) (the usual rule of thumb), at most one cluster per selected row.

    Example:
        >>> default_n_clusters(503_576, 2518)
        502
    """
    return max(1, min(n_select, n_rows, round(math.sqrt(n_rows / 2))))


def check_kmeans_backend(backend: str) -> str:
    """``backend`` if it is a known k-means backend whose library is installed; else one UsageError naming the fix."""
    from ltd_hub.errors import UsageError

    if backend not in KMEANS_BACKENDS:
        raise UsageError(f"unknown {{kmeans_backend}} {backend!r}; valid: {', '.join(KMEANS_BACKENDS)}", params="kmeans_backend")
    if backend == "faiss":
        try:
            import faiss  # noqa: F401
        except ImportError:
            raise UsageError(
                f"{{kmeans_backend}} faiss needs faiss, which is not installed; {FAISS_HINT}", params="kmeans_backend"
            ) from None
    return backend


def fit_kmeans(
    X: np.ndarray, n_clusters: int, seed: int = 0, minibatch_threshold: int = MINIBATCH_THRESHOLD, backend: str = "sklearn"
) -> Clustering:
    """Cluster the rows of ``X`` with k-means, deterministically for ``seed``.

    Args:
        X: float32 rows, shape (n, d).
        n_clusters: k, 1 <= k <= n.
        seed: random state of the initialisation and the mini-batches.
        minibatch_threshold: scikit-learn: use MiniBatchKMeans above this many rows.
        backend: ``sklearn`` (k-means++ initialisation) or ``faiss`` (``faiss.Kmeans``: random
            initialisation, full Lloyd iterations over every row, multi-threaded; on GPUs with
            faiss-gpu). On one CPU thread faiss took 2.3x scikit-learn's MiniBatchKMeans time for
            slightly better centres (``benchmarks/bench_kmeans.py``); it pays off with many cores or a GPU.

    Returns:
        A :class:`Clustering`.

    Example:
        >>> fit_kmeans(X, 8, seed=0).sizes.sum() == len(X)
        True
    """
    if check_kmeans_backend(backend) == "faiss":
        return _fit_faiss(X, n_clusters, seed)
    from sklearn.cluster import KMeans, MiniBatchKMeans

    start = time.perf_counter()
    if len(X) > minibatch_threshold:
        batch = max(4096, 4 * n_clusters)
        model = MiniBatchKMeans(
            n_clusters=n_clusters,
            batch_size=batch,
            init_size=min(len(X), max(3 * batch, 3 * n_clusters)),
            n_init=1,
            random_state=seed,
        )
        algorithm = "minibatch-kmeans"
    else:
        model = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed)
        algorithm = "kmeans"
    model.fit(X)
    labels = model.labels_.astype(np.int64)
    return Clustering(
        labels=labels,
        centers=model.cluster_centers_.astype(np.float32),
        inertia=float(model.inertia_),
        sizes=np.bincount(labels, minlength=n_clusters),
        algorithm=algorithm,
        seconds=time.perf_counter() - start,
    )


def _fit_faiss(X: np.ndarray, n_clusters: int, seed: int) -> Clustering:
    """k-means by ``faiss.Kmeans`` on every row of ``X`` (faiss' own subsampling is switched off)."""
    import faiss

    start = time.perf_counter()
    X = np.ascontiguousarray(X, dtype=np.float32)
    model = faiss.Kmeans(X.shape[1], n_clusters, niter=FAISS_NITER, seed=seed, max_points_per_centroid=max(1, len(X)), verbose=False)
    model.train(X)
    d2, labels = model.index.search(X, 1)
    labels = labels[:, 0].astype(np.int64)
    return Clustering(
        labels=labels,
        centers=np.asarray(model.centroids, dtype=np.float32),
        inertia=float(d2.sum(dtype=np.float64)),
        sizes=np.bincount(labels, minlength=n_clusters),
        algorithm="faiss-kmeans",
        seconds=time.perf_counter() - start,
    )
