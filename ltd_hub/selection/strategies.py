"""Selection strategies as small estimators: ``fit(X)`` sets ``indices_``, ``cluster_ids_``, ``distances_``.

Clustered strategies run k-means, share the budget between clusters in proportion to their
sizes, and pick inside each cluster by their rule. The two baselines treat all rows as one
cluster (id 0, centred on the mean row) and pick without k-means.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ltd_hub.errors import UsageError
from ltd_hub.selection import DEFAULT_STRATEGY as _DEFAULT
from ltd_hub.selection import STRATEGY_NAMES
from ltd_hub.selection.budget import allocate_budget, allocate_cells, allocate_weighted
from ltd_hub.selection.clustering import Clustering, check_kmeans_backend, default_n_clusters, fit_kmeans
from ltd_hub.selection.coreset import distance_quantiles, distances_to_centers, kcenter_greedy, nearest, squared_norms


class Selector:
    """Base estimator. Subclasses set ``name``, ``clustered`` and implement :meth:`_pick`.

    Args:
        n_select: rows to select.
        n_clusters: k for clustered strategies; None picks :func:`default_n_clusters`.
        seed: seeds k-means and any random choice.
        progress: show a tqdm bar over clusters.

    Attributes (after ``fit``):
        indices_: selected row indices, ascending.
        cluster_ids_: cluster of each selected row.
        distances_: distance of each selected row to its cluster centre.
        n_clusters_: k used; n_clusters_auto_: whether it was chosen automatically.
        cluster_sizes_, cluster_budget_: rows and selected rows per cluster.
        stratum_budget_: selected rows per stratum (None without strata).
        inertia_: k-means inertia (None for the baselines).
        clustering_: the :class:`Clustering` (None for the baselines).
    """

    name: ClassVar[str]
    clustered: ClassVar[bool] = True
    description: ClassVar[str] = ""

    def __init__(
        self, n_select: int, *, n_clusters: int | None = None, seed: int = 0, progress: bool = False, kmeans_backend: str = "sklearn"
    ):
        if n_clusters is not None and not self.clustered:
            raise UsageError(
                f"{{n_clusters}} does not apply to strategy {self.name!r}, which does not cluster; drop it", params="n_clusters"
            )
        if n_clusters is not None and n_clusters < 1:
            raise UsageError(f"{{n_clusters}} must be at least 1, got {n_clusters}", params="n_clusters")
        if n_select < 1:
            raise UsageError(f"the selection size must be at least 1, got {n_select}")
        self.n_select, self.n_clusters, self.seed, self.progress = n_select, n_clusters, seed, progress
        self.kmeans_backend = check_kmeans_backend(kmeans_backend) if self.clustered else kmeans_backend

    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters (scikit-learn's estimator convention)."""
        return {"n_select": self.n_select, "n_clusters": self.n_clusters, "seed": self.seed, "kmeans_backend": self.kmeans_backend}

    def _pick(self, X: np.ndarray, dist: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
        """Choose ``budget`` local indices of the cluster's rows ``X`` (``dist``: distance to its centre)."""
        raise NotImplementedError

    def _cluster(self, X: np.ndarray) -> Clustering | None:
        from tqdm.auto import tqdm

        if not self.clustered:
            return None
        k = self.n_clusters or default_n_clusters(len(X), self.n_select)
        if k > len(X):
            raise UsageError(f"{{n_clusters}} {k} is more than the {len(X)} rows; lower it", params="n_clusters")
        # scikit-learn reports no progress; a one-step bar still shows what runs and for how long.
        with tqdm(total=1, desc=f"clustering (k-means, k={k})", disable=not self.progress) as bar:
            clustering = fit_kmeans(X, k, seed=self.seed, backend=self.kmeans_backend)
            bar.update()
        return clustering

    def fit(self, X: np.ndarray, strata: np.ndarray | None = None, weights: np.ndarray | None = None) -> Selector:
        """Select ``n_select`` rows of ``X`` (float32, shape (n, d)); returns self.

        Args:
            X: the embeddings.
            strata: optional stratum id per row (int, ``0 … s-1``). The budget is then shared over
                cluster x stratum cells so each stratum keeps its share of the rows exactly
                (see :func:`~ltd_hub.selection.budget.allocate_cells`), and the rule picks inside
                each cell by the distance to its cluster's centre.
            weights: optional weight per row: the pool rows it stands for when the rows of ``X``
                are examples. Budgets then follow the weights (never more points than a cell has).

        Example:
            >>> get_selector("kcenter", n_select=10, seed=0).fit(X).indices_
        """
        from tqdm.auto import tqdm

        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or len(X) == 0:
            raise UsageError("selection needs a non-empty 2-D array of embeddings")
        if self.n_select > len(X):
            raise UsageError(f"cannot select {self.n_select} rows from {len(X)}; lower {{size}} or {{ratio}}", params=("size", "ratio"))
        if strata is not None and len(strata) != len(X):
            raise ValueError(f"strata has {len(strata)} entries for {len(X)} rows")
        clustering = self._cluster(X)
        labels, centers, sizes = partition(X, clustering)
        dist = distances_to_centers(X, centers, labels)
        jobs, stratum_budget = self.cell_jobs(labels, sizes, strata, weights)
        rng = np.random.default_rng(self.seed)
        chosen = [
            members[self._pick(X[members], dist[members], budget, rng)]
            for _cell, members, budget in tqdm(
                jobs, desc=f"selecting ({self.name})", unit="cluster", disable=not self.progress or len(jobs) < 2
            )
        ]
        return self.set_fitted(np.sort(np.concatenate(chosen)), labels, dist, sizes, clustering, stratum_budget)

    def cell_jobs(
        self, labels: np.ndarray, sizes: np.ndarray, strata: np.ndarray | None, weights: np.ndarray | None
    ) -> tuple[list[tuple[int, np.ndarray, int]], np.ndarray | None]:
        """The budget over clusters (or cluster x stratum cells): ``[(cell, member rows, rows to pick)]``
        for every cell with a budget, in cell order, and the budget per stratum (None without strata)."""
        if strata is None:
            if weights is None:
                budget = allocate_budget(sizes, self.n_select)
            else:
                budget = allocate_weighted(np.bincount(labels, weights=weights, minlength=len(sizes)), sizes, self.n_select)
            cells, stratum_budget = labels, None
        else:
            cells, budget, stratum_budget = allocate_cells(labels, strata, self.n_select, weights=weights)
        # Rows of each cell, in row order, from one stable sort instead of one boolean scan per cell.
        order = np.argsort(cells, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(cells, minlength=len(budget)))])
        jobs = [(int(c), order[bounds[c] : bounds[c + 1]], int(budget[c])) for c in np.flatnonzero(budget)]
        return jobs, stratum_budget

    def set_fitted(self, indices, labels, dist, sizes, clustering, stratum_budget) -> Selector:
        """Set the fitted attributes from the selected rows and the partition they were picked in."""
        self.indices_ = indices
        self.cluster_ids_ = labels[indices]
        self.distances_ = dist[indices]
        self.clustering_ = clustering
        self.n_clusters_ = len(sizes) if clustering is not None else None
        self.n_clusters_auto_ = clustering is not None and self.n_clusters is None
        self.cluster_sizes_ = sizes
        self.cluster_budget_ = np.bincount(labels[indices], minlength=len(sizes))
        self.stratum_budget_ = stratum_budget
        self.inertia_ = clustering.inertia if clustering is not None else None
        # Kept for the quality report: the typicality of any subset is judged in this partition.
        self.labels_, self.row_distances_ = labels, dist
        return self


def partition(X: np.ndarray, clustering: Clustering | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, centers, sizes)`` of a clustering; without one, all rows are cluster 0, centred on the mean row."""
    if clustering is None:
        return np.zeros(len(X), dtype=np.int64), np.asarray(X.mean(axis=0, keepdims=True), dtype=np.float32), np.array([len(X)])
    return clustering.labels, clustering.centers, clustering.sizes


class KCenterSelector(Selector):
    name = "kcenter"
    description = (
        "k-means, then k-center greedy (farthest-first) inside each cluster starting at the row nearest the "
        "centroid: the paper's coreset sampling, reproduced faithfully; at a few rows per cluster it favours outliers"
    )

    def _pick(self, X, dist, budget, rng):
        return kcenter_greedy(X, budget, first=int(np.argmin(dist)))


class CentroidSelector(Selector):
    name = "centroid"
    description = "k-means, then the rows nearest each centroid"

    def _pick(self, X, dist, budget, rng):
        return nearest(dist, budget)


class QuantileSelector(Selector):
    name = "quantile"
    description = (
        "k-means, then picks spread evenly over each cluster's ranks of distance to its centroid "
        "(coverage-centric): typical and unusual rows in proportion"
    )

    def _pick(self, X, dist, budget, rng):
        return distance_quantiles(dist, budget)


class MedianSelector(Selector):
    name = "median"
    description = "k-means, then the rows whose distance to the centroid is nearest the cluster's median distance (moderate coreset)"

    def _pick(self, X, dist, budget, rng):
        return nearest(np.abs(dist - np.median(dist)), budget)


class RandomInClusterSelector(Selector):
    name = "random-in-cluster"
    description = "k-means, then uniform random rows inside each cluster"

    def _pick(self, X, dist, budget, rng):
        return rng.choice(len(X), size=budget, replace=False)


class KCenterGlobalSelector(Selector):
    name = "kcenter-global"
    clustered = False
    description = "k-center greedy over all rows, starting at the row nearest the mean (no clustering)"

    def _pick(self, X, dist, budget, rng):
        return kcenter_greedy(X, budget, first=int(np.argmin(dist)), sq_norms=squared_norms(X))


class RandomSelector(Selector):
    name = "random"
    clustered = False
    description = "uniform random rows (no clustering)"

    def _pick(self, X, dist, budget, rng):
        return rng.choice(len(X), size=budget, replace=False)


SELECTORS: dict[str, type[Selector]] = {
    cls.name: cls
    for cls in (
        KCenterSelector,
        QuantileSelector,
        MedianSelector,
        CentroidSelector,
        RandomInClusterSelector,
        KCenterGlobalSelector,
        RandomSelector,
    )
}
SELECTORS = {name: SELECTORS[name] for name in STRATEGY_NAMES}  # registry order = the documented order
DEFAULT_STRATEGY = _DEFAULT


def check_strategy(name: str) -> type[Selector]:
    """Return the selector class for ``name``, or raise UsageError listing the valid names."""
    try:
        return SELECTORS[name]
    except KeyError:
        raise UsageError(f"unknown strategy {name!r}; valid strategies: {', '.join(SELECTORS)}") from None


def get_selector(name: str = DEFAULT_STRATEGY, **kwargs: Any) -> Selector:
    """Build the selector registered as ``name``.

    Args:
        name: a key of :data:`SELECTORS`: ``kcenter``, ``quantile``, ``median``, ``centroid``,
            ``random-in-cluster``, ``kcenter-global``, ``random`` (default :data:`DEFAULT_STRATEGY`).
        **kwargs: ``n_select`` (required), ``n_clusters``, ``seed``, ``progress``, ``kmeans_backend``
            (``sklearn``, the default, or ``faiss``; see :func:`~ltd_hub.selection.clustering.fit_kmeans`).

    Returns:
        An unfitted :class:`Selector`.

    Example:
        >>> sel = get_selector("centroid", n_select=25, n_clusters=5, seed=0).fit(X)
        >>> len(sel.indices_)
        25
    """
    return check_strategy(name)(**kwargs)
