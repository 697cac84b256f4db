"""ltd_hub.selection: budgets, k-center greedy, the strategy registry; the lexical encoder."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltd_hub.errors import UsageError
from ltd_hub.selection import (
    SELECTORS,
    allocate_budget,
    budget_from_ratio,
    default_n_clusters,
    fit_kmeans,
    get_selector,
    kcenter_greedy,
)
from ltd_hub.selection import clustering as clustering_module


def _blobs(n_per: int = 60, k: int = 6, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around k well-separated directions, with their true blob ids."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d))
    X = np.concatenate([c + 0.15 * rng.standard_normal((n_per, d)) for c in centers]).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, np.repeat(np.arange(k), n_per)


def _covering_radius(X: np.ndarray, chosen: np.ndarray) -> float:
    d = np.linalg.norm(X[:, None, :] - X[chosen][None, :, :], axis=2)
    return float(d.min(axis=1).max())


# --------------------------------------------------------------------------- budget


def test_budget_from_ratio_rounds_half_up():
    assert budget_from_ratio(503_576, 0.005) == 2518  # the 0.5% of the pool quoted in the method
    assert budget_from_ratio(400, 0.05) == 20
    assert budget_from_ratio(300, 0.005) == 2  # 1.5 -> 2


@pytest.mark.parametrize(
    ("ratio", "message"),
    [(0, "between 0 and 1"), (1, "between 0 and 1"), (-0.1, "between 0 and 1"), (0.001, "selects no row of 400")],
)
def test_budget_from_ratio_rejects(ratio, message):
    with pytest.raises(UsageError, match=message):
        budget_from_ratio(400, ratio)


def test_allocate_budget_is_proportional_by_largest_remainder():
    assert allocate_budget(np.array([10, 5, 1]), 4).tolist() == [2, 1, 1]
    assert allocate_budget(np.array([50, 30, 20]), 10).tolist() == [5, 3, 2]
    # Fewer rows than clusters: the largest clusters get them.
    assert allocate_budget(np.array([1, 9, 5, 0]), 2).tolist() == [0, 1, 1, 0]


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=40), frac=st.floats(0.0, 1.0))
def test_allocate_budget_properties(sizes, frac):
    sizes = np.array(sizes)
    budget = int(round(frac * sizes.sum()))
    shares = allocate_budget(sizes, budget)
    assert shares.sum() == budget
    assert (shares >= 0).all() and (shares <= sizes).all()
    if budget >= (sizes > 0).sum():
        assert (shares[sizes > 0] >= 1).all()
    # Proportional within one row of the exact quota (after the one-per-cluster floor).
    if budget and budget < (sizes > 0).sum():
        quotas = budget * sizes / sizes.sum()
        assert (np.abs(shares - quotas) < 1 + 1e-9).all()


# --------------------------------------------------------------------------- k-center greedy


def _kcenter_reference(X: np.ndarray, n: int, first: int) -> list[int]:
    chosen = [first]
    while len(chosen) < n:
        d = np.array([min(np.linalg.norm(x - X[c]) for c in chosen) for x in X])
        d[chosen] = -1
        chosen.append(int(np.argmax(d)))
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kcenter_greedy_matches_the_textbook_loop(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((80, 5)).astype(np.float32)
    assert kcenter_greedy(X, 12, first=3).tolist() == _kcenter_reference(X, 12, 3)


def test_kcenter_greedy_with_duplicates_never_repeats_a_row():
    X = np.zeros((10, 4), dtype=np.float32)
    X[5] = 1.0
    picked = kcenter_greedy(X, 10, first=0)
    assert sorted(picked.tolist()) == list(range(10)) and picked[1] == 5


def test_kcenter_covers_better_than_random():
    X, _ = _blobs(n_per=80, k=8)
    kc = get_selector("kcenter-global", n_select=16).fit(X).indices_
    rnd = get_selector("random", n_select=16, seed=0).fit(X).indices_
    assert _covering_radius(X, kc) < _covering_radius(X, rnd)


# --------------------------------------------------------------------------- strategies


def test_registry_lists_the_strategies():
    from ltd_hub.selection import DEFAULT_STRATEGY, STRATEGY_NAMES

    expected = ["quantile", "kcenter", "median", "centroid", "random-in-cluster", "kcenter-global", "random"]
    assert list(SELECTORS) == list(STRATEGY_NAMES) == expected
    assert DEFAULT_STRATEGY in SELECTORS
    with pytest.raises(UsageError, match="unknown strategy 'best'; valid strategies: " + ", ".join(expected)):
        get_selector("best", n_select=3)


@pytest.mark.parametrize("name", list(SELECTORS))
def test_every_strategy_selects_distinct_rows_deterministically(name):
    X, _ = _blobs()
    a = get_selector(name, n_select=30, seed=7).fit(X)
    b = get_selector(name, n_select=30, seed=7).fit(X)
    assert len(a.indices_) == 30 and len(set(a.indices_.tolist())) == 30
    assert (np.diff(a.indices_) > 0).all()
    assert a.indices_.tolist() == b.indices_.tolist()
    assert a.cluster_ids_.shape == a.distances_.shape == (30,)
    assert (a.distances_ >= 0).all()
    if a.clustering_ is not None:
        assert (a.cluster_ids_ == a.clustering_.labels[a.indices_]).all()
        expected = np.linalg.norm(X[a.indices_] - a.clustering_.centers[a.cluster_ids_], axis=1)
        np.testing.assert_allclose(a.distances_, expected, rtol=1e-4, atol=1e-5)
        assert a.cluster_budget_.sum() == 30 and np.bincount(a.cluster_ids_, minlength=a.n_clusters_).tolist() == a.cluster_budget_.tolist()
    else:
        assert (a.cluster_ids_ == 0).all() and a.inertia_ is None


@pytest.mark.parametrize("name", ["random", "random-in-cluster"])
def test_random_strategies_depend_on_the_seed(name):
    X, _ = _blobs()
    assert (
        get_selector(name, n_select=30, seed=0).fit(X).indices_.tolist() != get_selector(name, n_select=30, seed=1).fit(X).indices_.tolist()
    )


def test_clustered_strategies_cover_every_blob():
    X, blobs = _blobs(n_per=100, k=6)
    sel = get_selector("kcenter", n_select=12, n_clusters=6, seed=0).fit(X)
    assert set(blobs[sel.indices_].tolist()) == set(range(6))
    assert sel.n_clusters_ == 6 and not sel.n_clusters_auto_ and sel.inertia_ > 0
    assert sorted(sel.cluster_sizes_.tolist()) == [100] * 6


def test_centroid_picks_the_rows_nearest_each_centroid():
    X, _ = _blobs()
    sel = get_selector("centroid", n_select=6, n_clusters=6, seed=0).fit(X)
    c = sel.clustering_
    for row, cluster in zip(sel.indices_, sel.cluster_ids_):
        members = np.flatnonzero(c.labels == cluster)
        d = np.linalg.norm(X[members] - c.centers[cluster], axis=1)
        assert row == members[np.argmin(d)]


def test_kcenter_starts_each_cluster_at_its_most_central_row():
    X, _ = _blobs()
    one = get_selector("kcenter", n_select=6, n_clusters=6, seed=0).fit(X)
    central = get_selector("centroid", n_select=6, n_clusters=6, seed=0).fit(X)
    assert one.indices_.tolist() == central.indices_.tolist()


def test_automatic_k_is_recorded():
    X, _ = _blobs()
    sel = get_selector("kcenter", n_select=30, seed=0).fit(X)
    assert sel.n_clusters_auto_ and sel.n_clusters_ == default_n_clusters(len(X), 30) == 13
    assert default_n_clusters(503_576, 2518) == 502
    assert default_n_clusters(1000, 3) == 3  # never more clusters than selected rows


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("random", {"n_clusters": 5}, "does not apply to strategy 'random'"),
        ("kcenter", {"n_clusters": 0}, "at least 1"),
        ("kcenter", {"n_clusters": 10_000}, "more than the 360 rows"),
        ("kcenter", {"n_select": 361}, "cannot select 361 rows from 360"),
    ],
)
def test_selector_rejects_bad_parameters(name, kwargs, message):
    X, _ = _blobs()
    with pytest.raises(UsageError, match=message):
        get_selector(name, **{"n_select": 10, **kwargs}).fit(X)


def test_large_inputs_use_minibatch_kmeans():
    X, _ = _blobs(n_per=100)
    assert clustering_module.MINIBATCH_THRESHOLD == 20_000
    small = fit_kmeans(X, 6, seed=0, minibatch_threshold=10_000)
    large = fit_kmeans(X, 6, seed=0, minibatch_threshold=100)
    assert small.algorithm == "kmeans" and large.algorithm == "minibatch-kmeans"
    assert large.sizes.sum() == len(X) and fit_kmeans(X, 6, seed=0, minibatch_threshold=100).labels.tolist() == large.labels.tolist()


# --------------------------------------------------------------------------- lexical encoder


def test_lexical_encoder_is_normalised_and_deterministic():
    from ltd_hub.selection.encoders import get_encoder

    texts = [f"the cat sat on mat number {i}" if i % 2 else f"a dog ran in park {i}" for i in range(50)]
    enc = get_encoder("lexical")
    dim = enc.prepare(texts)
    X, truncated = enc.encode_batch(texts)
    assert X.dtype == np.float32 and X.shape == (50, dim) and truncated == 0
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    again = get_encoder("lexical")
    again.prepare(texts)
    np.testing.assert_array_equal(again.encode_batch(texts)[0], X)
    # Texts about the same thing end up closer than texts about different things.
    assert X[1] @ X[3] > X[1] @ X[2]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "word2vec",
            "unknown encoder 'word2vec'; valid encoders: minilm, lexical, sentence-transformers:<hub id>, causal-lm:<hub id>",
        ),
        ("causal-lm:", "unknown encoder"),
        ("causal-lm:not a/valid id", "invalid model id"),
    ],
)
def test_unknown_encoders_list_the_valid_names(spec, message):
    from ltd_hub.selection.encoders import get_encoder

    with pytest.raises(UsageError, match=message):
        get_encoder(spec)
