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
        raise UsageError(f"--ratio must be between 0 and 1 (exclusive), got {ratio}; e.g. 0.005 for 0.5%")
    size = int(np.floor(ratio * n_rows + 0.5))
    if size < 1:
        raise UsageError(f"--ratio {ratio} selects no row of {n_rows}; use at least {1 / n_rows:.2g} or --size N")
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
