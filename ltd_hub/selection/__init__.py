"""Coreset selection: k-means plus a sampling rule inside clusters, as a registry of estimators.

The names below load lazily (PEP 562), so that ``ltd-hub --help`` can list the strategies
without importing numpy or scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

# The strategy names in registry order, and the defaults; ``strategies.SELECTORS`` is checked against
# them by the tests. The defaults follow the quality reports measured on the whole NLI pool (README,
# "Choosing a strategy"): over examples (group_by), centroid keeps every example distinct, the pool's
# label/source/template mix and covers the pool better than random rows; over rows, no rule beat
# random on distinct examples (the deterministic rules pile onto templated copies of one example),
# and random-in-cluster (the kMQ sampler) is as random while keeping the label and source mix.
# kcenter is the paper's rule, reproduced; it is not the default (at 0.5% it picks outliers).
STRATEGY_NAMES = ("quantile", "kcenter", "median", "centroid", "random-in-cluster", "kcenter-global", "random")
DEFAULT_STRATEGY = "random-in-cluster"
DEFAULT_GROUPED_STRATEGY = "centroid"


def default_strategy(grouped: bool) -> str:
    """The default strategy: :data:`DEFAULT_GROUPED_STRATEGY` over examples, else :data:`DEFAULT_STRATEGY`."""
    return DEFAULT_GROUPED_STRATEGY if grouped else DEFAULT_STRATEGY


_LAZY = {
    "allocate_budget": "budget",
    "allocate_cells": "budget",
    "allocate_weighted": "budget",
    "budget_from_ratio": "budget",
    "Clustering": "clustering",
    "default_n_clusters": "clustering",
    "fit_kmeans": "clustering",
    "kcenter_greedy": "coreset",
    "distance_quantiles": "coreset",
    "SELECTORS": "strategies",
    "Selector": "strategies",
    "check_strategy": "strategies",
    "get_selector": "strategies",
    "QualityReport": "quality",
    "quality_report": "quality",
}

__all__ = ["DEFAULT_GROUPED_STRATEGY", "DEFAULT_STRATEGY", "STRATEGY_NAMES", "default_strategy", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
