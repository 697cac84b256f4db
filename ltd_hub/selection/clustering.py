"""K-means from scikit-learn (MiniBatchKMeans for large inputs) and the default number of clusters."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

# Above this many rows, full-batch KMeans costs minutes on a 2-core machine; MiniBatchKMeans seconds.
MINIBATCH_THRESHOLD = 20_000


@dataclass
class Clustering:
    """A fitted k-means partition of the rows."""

    labels: np.ndarray  # (n,) int64 cluster id per row
    centers: np.ndarray  # (k, d) float32
    inertia: float
    sizes: np.ndarray  # (k,) rows per cluster
    algorithm: str  # "kmeans" or "minibatch-kmeans"
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


def fit_kmeans(X: np.ndarray, n_clusters: int, seed: int = 0, minibatch_threshold: int = MINIBATCH_THRESHOLD) -> Clustering:
    """Cluster the rows of ``X`` with k-means++ initialisation, deterministically for ``seed``.

    Args:
        X: float32 rows, shape (n, d).
        n_clusters: k, 1 <= k <= n.
        seed: random state of the initialisation and the mini-batches.
        minibatch_threshold: use MiniBatchKMeans above this many rows.

    Returns:
        A :class:`Clustering`.

    Example:
        >>> fit_kmeans(X, 8, seed=0).sizes.sum() == len(X)
        True
    """
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
