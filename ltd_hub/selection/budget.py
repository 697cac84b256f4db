"""How many rows to select, and how to share them between clusters."""

from __future__ import annotations

import numpy as np

from ltd_hub.errors import UsageError


def budget_from_ratio(n_rows: int, ratio: float) -> int:
    """Rows selected by ``ratio`` of ``n_rows``, rounded half up (0.5% of 503,576 is 2,518).

    Raises:
        UsageError: ratio outside (0, 1), or so small that it selects no row.

    Example:
        >>> budget_from_ratio(503_576, 0.005)
        2518
    """
    if not 0 < ratio < 1:
        raise UsageError(f"{{ratio}} must be between 0 and 1 (exclusive), got {ratio}; e.g. 0.005 for 0.5%", params="ratio")
    size = int(np.floor(ratio * n_rows + 0.5))
    if size < 1:
        raise UsageError(
            f"{{ratio}} {ratio} selects no row of {n_rows}; use at least {1 / n_rows:.2g} or {{size}} N", params=("ratio", "size")
        )
    return size


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer shares of ``total`` proportional to ``weights``; ties go to the larger weight, then the lower index."""
    weights = np.asarray(weights, dtype=np.float64)
    if total == 0 or weights.sum() == 0:
        return np.zeros(len(weights), dtype=np.int64)
    quotas = total * weights / weights.sum()
    shares = np.floor(quotas).astype(np.int64)
    remaining = total - int(shares.sum())
    if remaining:
        fractions = quotas - shares
        # lexsort sorts by the last key first: fraction desc, then weight desc, then index asc.
        order = np.lexsort((np.arange(len(weights)), -weights, -fractions))
        shares[order[:remaining]] += 1
    return shares


def allocate_budget(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Share ``budget`` between clusters proportionally to their sizes (largest remainder).

    Every non-empty cluster gets at least one row when the budget allows it; no cluster gets
    more rows than it has.

    Args:
        sizes: rows per cluster.
        budget: rows to select in total, at most ``sizes.sum()``.

    Returns:
        Rows to select per cluster (int64, sums to ``budget``).

    Example:
        >>> allocate_budget(np.array([10, 5, 1]), 4).tolist()
        [2, 1, 1]
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if budget > sizes.sum():
        raise UsageError(f"cannot select {budget} rows from {int(sizes.sum())}")
    nonempty = sizes > 0
    n_nonempty = int(nonempty.sum())
    if budget < n_nonempty:
        return _largest_remainder(sizes, budget)
    # One row each first, then the rest in proportion to what each cluster has left.
    return nonempty.astype(np.int64) + _largest_remainder(np.where(nonempty, sizes - 1, 0), budget - n_nonempty)


def allocate_weighted(weights: np.ndarray, counts: np.ndarray, budget: int) -> np.ndarray:
    """Share ``budget`` points between bins in proportion to ``weights``, never more than a bin's ``counts``.

    The weighted form of :func:`allocate_budget`, for selection over examples: a bin's weight is
    the pool rows its examples stand for, its count the examples it has. One point per non-empty
    bin first when the budget allows; a bin that would get more than it has is filled and the
    rest is shared again among the others.

    Example:
        >>> allocate_weighted(np.array([90, 10]), np.array([3, 5]), 6).tolist()   # the first bin has only 3
        [3, 3]
    """
    weights = np.asarray(weights, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    if budget > counts.sum():
        raise UsageError(f"cannot select {budget} from {int(counts.sum())}")
    nonempty = counts > 0
    shares = nonempty.astype(np.int64) if budget >= int(nonempty.sum()) else np.zeros(len(counts), dtype=np.int64)
    remaining = budget - int(shares.sum())
    active = counts > shares
    while remaining > 0:
        extra = _largest_remainder(np.where(active, weights, 0.0), remaining)
        if not extra.any():  # only zero-weight bins have room left: share by their counts
            extra = _largest_remainder(np.where(active, counts - shares, 0), remaining)
        room = counts - shares
        over = extra > room
        if not over.any():
            shares += extra
            break
        shares[over] = counts[over]
        remaining = budget - int(shares.sum())
        active &= ~over
    return shares


def allocate_cells(
    clusters: np.ndarray, strata: np.ndarray, budget: int, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Share ``budget`` over cluster x stratum cells so the strata keep their share of the pool exactly.

    First each stratum gets its proportional share of ``budget`` (largest remainder), so the
    selection's stratum mix is the pool's up to one point per stratum; then each stratum's share
    is spread over the clusters it occurs in, in proportion (one point per cluster first when the
    share allows).

    Args:
        clusters: cluster id per point (int, ``0 … k-1``).
        strata: stratum id per point (int, ``0 … s-1``).
        budget: points to select in total.
        weights: what each point stands for (pool rows per example); shares follow the weights
            instead of the point counts, never exceeding the points a cell has.

    Returns:
        ``(cells, cell_budget, stratum_budget)``: the cell id of every point
        (``cluster * n_strata + stratum``), points to select per cell, and per stratum.

    Raises:
        UsageError: more non-empty strata than the budget, so some stratum could not be served.

    Example:
        >>> cells, per_cell, per_stratum = allocate_cells(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), 2)
        >>> per_stratum.tolist()
        [1, 1]
    """
    clusters = np.asarray(clusters, dtype=np.int64)
    strata = np.asarray(strata, dtype=np.int64)
    n_clusters = int(clusters.max()) + 1 if clusters.size else 0
    n_strata = int(strata.max()) + 1 if strata.size else 0
    stratum_counts = np.bincount(strata, minlength=n_strata)
    n_nonempty = int((stratum_counts > 0).sum())
    if budget < n_nonempty:
        raise UsageError(
            f"stratify_by makes {n_nonempty} strata but only {budget} rows are selected, so some strata "
            "could not be served; stratify by fewer columns or select more rows"
        )
    cells = clusters * n_strata + strata
    cell_counts = np.bincount(cells, minlength=n_clusters * n_strata).reshape(n_clusters, n_strata)
    if weights is None:
        stratum_budget = _largest_remainder(stratum_counts, budget)
        cell_weights = cell_counts
    else:
        stratum_budget = allocate_weighted(np.bincount(strata, weights=weights, minlength=n_strata), stratum_counts, budget)
        cell_weights = np.bincount(cells, weights=weights, minlength=n_clusters * n_strata).reshape(n_clusters, n_strata)
    cell_budget = np.zeros_like(cell_counts)
    for s in np.flatnonzero(stratum_budget):
        if weights is None:
            cell_budget[:, s] = allocate_budget(cell_counts[:, s], int(stratum_budget[s]))
        else:
            cell_budget[:, s] = allocate_weighted(cell_weights[:, s], cell_counts[:, s], int(stratum_budget[s]))
    return cells, cell_budget.reshape(-1), stratum_budget
