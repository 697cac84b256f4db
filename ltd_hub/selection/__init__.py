"""Coreset selection: k-means plus a sampling rule inside clusters, as a registry of estimators."""

from ltd_hub.selection.budget import allocate_budget, budget_from_ratio
from ltd_hub.selection.clustering import Clustering, default_n_clusters, fit_kmeans
from ltd_hub.selection.coreset import kcenter_greedy
from ltd_hub.selection.strategies import DEFAULT_STRATEGY, SELECTORS, Selector, check_strategy, get_selector

__all__ = [
    "DEFAULT_STRATEGY",
    "SELECTORS",
    "Clustering",
    "Selector",
    "allocate_budget",
    "budget_from_ratio",
    "check_strategy",
    "default_n_clusters",
    "fit_kmeans",
    "get_selector",
    "kcenter_greedy",
]
