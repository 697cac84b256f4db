"""Vectorised coreset rules used inside a cluster (or over all rows)."""

from __future__ import annotations

import numpy as np

# Rows per block when computing row-to-centroid distances: bounds the temporary memory.
_BLOCK = 1 << 16


def squared_norms(X: np.ndarray) -> np.ndarray:
    """``|x|²`` of each row."""
    return np.einsum("ij,ij->i", X, X)


def distances_to_centers(X: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row to the center of its cluster, in blocks of rows.

    Example:
        >>> distances_to_centers(X, km.cluster_centers_, km.labels_)
    """
    out = np.empty(len(X), dtype=np.float32)
    for start in range(0, len(X), _BLOCK):
        rows = X[start : start + _BLOCK]
        diff = rows - centers[labels[start : start + _BLOCK]]
        out[start : start + len(rows)] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def kcenter_greedy(X: np.ndarray, n_select: int, first: int, sq_norms: np.ndarray | None = None) -> np.ndarray:
    """Farthest-first traversal: start at row ``first``, then repeatedly add the row farthest from the chosen ones.

    One matrix-vector product per pick, so the cost is O(n_select * n * d) with no Python loop
    over rows. Ties go to the lowest row index, which makes the result deterministic.

    Args:
        X: rows to choose from, shape (n, d).
        n_select: rows to choose, 1 <= n_select <= n.
        first: index of the starting row.
        sq_norms: precomputed squared row norms of ``X`` (optional).

    Returns:
        Indices into ``X`` in the order they were picked.

    Example:
        >>> kcenter_greedy(np.eye(3, dtype=np.float32), 2, first=0).tolist()
        [0, 1]
    """
    n = len(X)
    if not 1 <= n_select <= n:
        raise ValueError(f"n_select must be in [1, {n}], got {n_select}")
    sq = squared_norms(X) if sq_norms is None else sq_norms
    picked = np.empty(n_select, dtype=np.int64)
    picked[0] = first
    # Squared distance to the nearest chosen row; chosen rows are set to -inf so they never win again.
    min_sq = sq + sq[first] - 2.0 * (X @ X[first])
    min_sq[first] = -np.inf
    for i in range(1, n_select):
        j = int(np.argmax(min_sq))
        picked[i] = j
        np.minimum(min_sq, sq + sq[j] - 2.0 * (X @ X[j]), out=min_sq)
        min_sq[j] = -np.inf
    return picked


def nearest(distances: np.ndarray, n_select: int) -> np.ndarray:
    """Indices of the ``n_select`` smallest distances (ties by lower index), nearest first."""
    return np.argsort(distances, kind="stable")[:n_select]


def distance_quantiles(distances: np.ndarray, n_select: int) -> np.ndarray:
    """Indices at evenly spaced ranks of distance: ranks ``floor((i + 1/2) * n / n_select)``, i = 0 … n_select-1.

    Spreads the picks over a cluster from its most typical to its most unusual member in
    proportion, as coverage-centric selection does over its strata. The ranks are distinct
    because ``n / n_select >= 1``; ties in distance go to the lower index.

    Example:
        >>> distance_quantiles(np.array([0.4, 0.1, 0.3, 0.2]), 2).tolist()   # ranks 1 and 3
        [3, 0]
    """
    n = len(distances)
    if not 1 <= n_select <= n:
        raise ValueError(f"n_select must be in [1, {n}], got {n_select}")
    ranks = np.floor((np.arange(n_select) + 0.5) * n / n_select).astype(np.int64)
    return np.argsort(distances, kind="stable")[ranks]
