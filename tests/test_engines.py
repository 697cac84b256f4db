"""Selection engines: the bounded local engine (memory-mapped vectors, k-means on a sample, chunked
assignment) and the Ray engine (actor-pool encoding, map_batches assignment, one task per cluster).

The Ray tests use a local Ray (2 CPUs, a small object store) started once per session; they are
skipped, saying so, only when Ray is not installed (``pip install 'ltd-hub[ray]'``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import one_error_line
from test_grouped_selection import write_pool

from ltd_hub.cli.main import main
from ltd_hub.errors import UsageError
from ltd_hub.selection import SELECTORS, get_selector
from ltd_hub.selection.engines import bounded
from ltd_hub.selection.engines.bounded import DISTANCE_RULES, RANDOM_RULES, VECTOR_RULES, fit_selector, group_vectors_chunked
from ltd_hub.selection.groups import Groups, group_vectors
from ltd_hub.selection.subset import select_subset

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")


def _vectors(n: int = 1500, d: int = 12, seed: int = 1) -> np.ndarray:
    X = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.fixture
def pool(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return write_pool(Path("pool.jsonl"), n_examples=300)


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- bounded local engine


def test_every_strategy_is_classified_for_the_bounded_engine():
    assert set(SELECTORS) == VECTOR_RULES | RANDOM_RULES | DISTANCE_RULES


@pytest.mark.parametrize("name", list(SELECTORS))
def test_bounded_fit_gives_selector_fit_ids_without_a_sample(name):
    X = _vectors()
    rng = np.random.default_rng(2)
    strata, weights = rng.integers(0, 3, len(X)), rng.integers(1, 4, len(X)).astype(float)
    for s, w in [(None, None), (strata, None), (None, weights), (strata, weights)]:
        want = get_selector(name, n_select=30, seed=3).fit(X, strata=s, weights=w)
        got = fit_selector(get_selector(name, n_select=30, seed=3), X, strata=s, weights=w)
        assert np.array_equal(want.indices_, got.indices_), (name, s is not None, w is not None)
        assert np.array_equal(want.cluster_budget_, got.cluster_budget_)
        # A sample covering the pool is the pool: the same ids.
        covering = fit_selector(get_selector(name, n_select=30, seed=3), X, strata=s, weights=w, kmeans_sample=len(X))
        assert np.array_equal(want.indices_, covering.indices_)


def test_kmeans_sees_only_the_seeded_sample_and_every_row_is_assigned(monkeypatch):
    import ltd_hub.selection.clustering as clustering

    seen = []
    real = clustering.fit_kmeans
    monkeypatch.setattr(clustering, "fit_kmeans", lambda X, k, seed=0, **kw: seen.append(len(X)) or real(X, k, seed=seed, **kw))
    X = _vectors(3000)
    sel = fit_selector(get_selector("centroid", n_select=40, n_clusters=10, seed=0), X, kmeans_sample=20)
    assert seen == [200] and sel.kmeans_sample_rows_ == 200 and sel.kmeans_sample_ == 20
    assert sel.clustering_.sizes.sum() == 3000 and len(sel.indices_) == 40
    # Every row sits with its nearest centre.
    d2 = ((X[:, None, :] - sel.clustering_.centers[None]) ** 2).sum(-1)
    assert np.array_equal(sel.labels_, d2.argmin(1))
    again = fit_selector(get_selector("centroid", n_select=40, n_clusters=10, seed=0), X, kmeans_sample=20)
    assert np.array_equal(again.indices_, sel.indices_)


def test_the_picking_never_reads_vectors_for_rules_that_do_not_need_them():
    class Guarded(np.ndarray):
        def __getitem__(self, key):
            if isinstance(key, np.ndarray) and len(self) == 2000:  # a fancy (gathering) read of the pool's rows
                raise AssertionError("gathered vectors")
            return super().__getitem__(key)

    X = _vectors(2000).view(Guarded)
    for name in sorted(RANDOM_RULES | DISTANCE_RULES):
        k = 5 if SELECTORS[name].clustered else None
        fit_selector(get_selector(name, n_select=20, n_clusters=k, seed=0), X, kmeans_sample=2000)
    with pytest.raises(AssertionError, match="gathered"):
        fit_selector(get_selector("kcenter", n_select=20, n_clusters=5, seed=0), X, kmeans_sample=2000)


def test_chunked_group_vectors_match_the_one_shot_product(monkeypatch):
    monkeypatch.setattr(bounded, "GROUP_CHUNK", 97)
    X = _vectors(1000)
    groups = Groups.from_codes(np.random.default_rng(0).integers(0, 150, 1000))
    assert np.allclose(group_vectors_chunked(X, groups), group_vectors(X, groups), atol=1e-6)


def test_encode_cached_can_return_the_cache_file_memory_mapped(tmp_path):
    from ltd_hub.selection.encoders import encode_cached, get_encoder

    texts = [f"the {w} and the {v}" for w in "cat dog bird fish cow".split() for v in "sun moon star".split()] * 5
    first, _ = encode_cached(get_encoder("lexical"), texts, {"source": "t"}, progress=False, mmap=True)
    assert isinstance(first, np.memmap) and not first.flags.writeable
    again, stats = encode_cached(get_encoder("lexical"), texts, {"source": "t"}, progress=False, mmap=True)
    plain, _ = encode_cached(get_encoder("lexical"), texts, {"source": "t"}, progress=False)
    assert stats.cache_hit and isinstance(again, np.memmap) and np.array_equal(np.asarray(again), plain)


def test_select_subset_with_a_covering_sample_gives_todays_ids_and_records_it(pool):
    kw = {"encoder": "lexical", "size": 60, "progress": False}
    today = select_subset(pool, **kw)
    covering = select_subset(pool, kmeans_sample=10_000, **kw)
    assert covering.manifest.row_indices == today.manifest.row_indices
    assert "kmeans_sample" not in today.manifest.to_dict()["selection"] and "engine" not in today.manifest.to_dict()["selection"]
    assert covering.manifest.selection.kmeans_sample == 10_000
    assert covering.manifest.selection.kmeans_sample_rows == covering.stats.n_filtered_rows


def test_a_sampled_selection_is_recorded_and_rebuilt_identically(pool, tmp_path, capsys):
    code, _, err = cli(capsys, "push-subset", pool, "--dry-run", "--output-dir", tmp_path / "out", "--encoder", "lexical",
                       "--size", "40", "--n-clusters", "8", "--kmeans-sample", "5", "--group-by", "source")  # fmt: skip
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / "selection_manifest.json").read_text())
    sel = manifest["selection"]
    assert sel["kmeans_sample"] == 5 and sel["kmeans_sample_rows"] == 40 and sel["algorithm"] == "kmeans (sample)"
    rows = [r["row"] for r in manifest["selected"]]
    sources = [json.loads(line)["source"] for line in Path(pool).read_text().splitlines()]
    assert len({sources[r] for r in rows}) == 40  # group-aware: one row per example
    code, out, err = cli(capsys, "rebuild-subset", tmp_path / "out")
    assert code == 0 and out.startswith("identical"), out + err
    unsampled = select_subset(pool, encoder="lexical", size=40, n_clusters=8, group_by="source", progress=False)
    assert unsampled.manifest.row_indices != rows  # the sample made its own selection


def test_strata_hold_with_a_sample(pool):
    from collections import Counter

    res = select_subset(pool, encoder="lexical", size=90, kmeans_sample=4, stratify_by=["dataset"], progress=False)
    lines = [json.loads(line) for line in Path(pool).read_text().splitlines()]
    pool_mix = Counter(r["dataset"] for r in lines)
    got = Counter(lines[r]["dataset"] for r in res.manifest.row_indices)
    share = {k: 90 * v / len(lines) for k, v in pool_mix.items()}
    assert all(abs(got[k] - share[k]) < 1 for k in share)


def test_bad_engine_options_are_one_error_line(pool, capsys):
    with pytest.raises(UsageError, match="unknown engine 'spark'; valid engines: local, ray"):
        select_subset(pool, encoder="lexical", engine="spark")
    code, _, err = cli(capsys, "push-subset", pool, "--dry-run", "--encoder", "lexical", "--kmeans-sample", "0")
    assert code == 2 and one_error_line(err) == "error: --kmeans-sample must be at least 1 row per cluster, got 0"


def test_faiss_kmeans_is_deterministic_and_its_labels_are_the_nearest_centres():
    pytest.importorskip("faiss", reason="faiss is not installed (pip install faiss-cpu)")
    from ltd_hub.selection.clustering import fit_kmeans

    X = _vectors(900, 8)
    a, b = fit_kmeans(X, 12, seed=3, backend="faiss"), fit_kmeans(X, 12, seed=3, backend="faiss")
    assert a.algorithm == "faiss-kmeans" and np.array_equal(a.labels, b.labels) and np.array_equal(a.centers, b.centers)
    labels, d2 = bounded.assign_rows(X, a.centers)
    assert np.array_equal(labels, a.labels) and a.sizes.sum() == 900
    assert a.inertia == pytest.approx(float(d2.sum()), rel=1e-4)
    assert not np.array_equal(fit_kmeans(X, 12, seed=4, backend="faiss").labels, a.labels)


def test_a_faiss_selection_is_recorded_and_rebuilt_on_both_engines_paths(pool, tmp_path, capsys):
    pytest.importorskip("faiss", reason="faiss is not installed (pip install faiss-cpu)")
    code, _, err = cli(capsys, "push-subset", pool, "--dry-run", "--output-dir", tmp_path / "out", "--encoder", "lexical",
                       "--size", "40", "--n-clusters", "8", "--kmeans-sample", "5", "--kmeans-backend", "faiss")  # fmt: skip
    assert code == 0, err
    sel = json.loads((tmp_path / "out" / "selection_manifest.json").read_text())["selection"]
    assert sel["algorithm"] == "faiss-kmeans (sample)" and sel["kmeans_sample_rows"] == 40
    code, out, err = cli(capsys, "rebuild-subset", tmp_path / "out")  # the backend comes back from the algorithm
    assert code == 0 and out.startswith("identical"), out + err
    whole = select_subset(pool, encoder="lexical", size=40, n_clusters=8, kmeans_backend="faiss", progress=False)
    assert whole.manifest.selection.algorithm == "faiss-kmeans"
    assert whole.manifest.row_indices != select_subset(pool, encoder="lexical", size=40, n_clusters=8, progress=False).manifest.row_indices


def test_bad_kmeans_backends_are_one_error_line(pool, capsys, monkeypatch):
    import sys

    with pytest.raises(SystemExit) as exc:  # argparse's choices
        cli(capsys, "push-subset", pool, "--dry-run", "--encoder", "lexical", "--kmeans-backend", "cuml")
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--kmeans-backend" in one_error_line(err) and "'sklearn', 'faiss'" in err
    with pytest.raises(UsageError, match="unknown kmeans_backend 'cuml'; valid: sklearn, faiss"):
        select_subset(pool, encoder="lexical", kmeans_backend="cuml")
    monkeypatch.setitem(sys.modules, "faiss", None)  # as if not installed
    code, _, err = cli(capsys, "push-subset", pool, "--dry-run", "--encoder", "lexical", "--kmeans-backend", "faiss")
    assert code == 2 and one_error_line(err) == (
        "error: --kmeans-backend faiss needs faiss, which is not installed; pip install faiss-cpu (or faiss-gpu on a GPU machine)"
    )


def test_float16_embeddings_are_stored_recorded_and_rebuilt(pool, tmp_path, capsys, monkeypatch):
    from ltd_hub.paths import cache_dir

    def stored_dtypes() -> list[str]:
        return sorted(np.load(f, mmap_mode="r").dtype.name for f in cache_dir("embeddings").glob("*/embeddings.npy"))

    monkeypatch.setenv("LTD_HUB_CACHE", str(tmp_path / "cache"))  # a cache of its own: each entry is this test's
    kw = {"encoder": "lexical", "size": 40, "n_clusters": 8, "kmeans_sample": 5, "progress": False}
    wide = select_subset(pool, **kw)
    assert stored_dtypes() == ["float32"]
    half = select_subset(pool, embedding_dtype="float16", **kw)
    assert stored_dtypes() == ["float16", "float32"]  # a second entry, stored as float16
    assert "storage" not in (wide.manifest.encoder.params or {})  # float32 manifests (and cache keys) as before
    assert half.manifest.encoder.params["storage"] == "float16"
    code, _, err = cli(capsys, "push-subset", pool, "--dry-run", "--output-dir", tmp_path / "out", "--encoder", "lexical",
                       "--size", "40", "--n-clusters", "8", "--kmeans-sample", "5", "--embedding-dtype", "float16")  # fmt: skip
    assert code == 0, err
    assert [r["row"] for r in _manifest(tmp_path / "out")["selected"]] == half.manifest.row_indices
    code, out, err = cli(capsys, "rebuild-subset", tmp_path / "out")
    assert code == 0 and out.startswith("identical"), out + err
    every_row = select_subset(pool, embedding_dtype="float16", **{**kw, "kmeans_sample": None})  # one float32 copy, as before
    assert len(every_row.manifest.row_indices) == 40
    with pytest.raises(UsageError, match="unknown embedding_dtype 'int8'; use one of: float32, float16"):
        select_subset(pool, encoder="lexical", embedding_dtype="int8")


def test_engine_ray_without_ray_names_the_extra(pool, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(UsageError, match=r"pip install 'ltd-hub\[ray\]'"):
        select_subset(pool, encoder="lexical", engine="ray")


# --------------------------------------------------------------------------- Ray engine


# local_ray: the session's local Ray (conftest.py).


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "selection_manifest.json").read_text())


def test_push_subset_on_ray_gives_the_local_engines_ids_in_one_commit(local_ray, pool, tmp_path, capsys):
    from conftest import TEST_USER
    from helpers import history

    opts = ["--encoder", "lexical", "--size", "40", "--n-clusters", "8", "--kmeans-sample", "6", "--strategy", "kcenter"]
    code, _, err = cli(capsys, "push-subset", pool, "--dry-run", "--output-dir", tmp_path / "local", *opts)
    assert code == 0, err
    repo_id = f"{TEST_USER}/ray-coreset"
    # --no-cache: the Ray actors encode anew (and rewrite the shared cache entry).
    code, out, err = cli(capsys, "push-subset", pool, "--repo-id", repo_id, "--engine", "ray", "--no-cache", "--format", "json", *opts)
    assert code == 0, err
    assert len(history(repo_id, "dataset")) == 2  # the repo's creation and the one subset commit
    from ltd_hub.selection.subset import load_manifest

    pushed = load_manifest(repo_id)
    assert pushed.row_indices == [r["row"] for r in _manifest(tmp_path / "local")["selected"]]
    assert pushed.selection.engine == "ray" and pushed.selection.kmeans_sample == 6
    code, out, err = cli(capsys, "rebuild-subset", repo_id, "--engine", "ray")
    assert code == 0 and out.startswith("identical"), out + err


@pytest.mark.parametrize("strategy", ["centroid", "random-in-cluster", "quantile"])
def test_ray_matches_local_over_examples_with_strata(local_ray, pool, strategy):
    kw = {"encoder": "lexical", "size": 45, "group_by": "source", "strategy": strategy, "progress": False}
    for sample in (None, 4):
        local = select_subset(pool, kmeans_sample=sample, **kw)
        on_ray = select_subset(pool, engine="ray", kmeans_sample=sample, **kw)
        assert on_ray.manifest.row_indices == local.manifest.row_indices, (strategy, sample)
        assert on_ray.manifest.selection.stratify_by == local.manifest.selection.stratify_by != []


def test_ray_matches_local_with_float16_embeddings_and_faiss(local_ray, pool):
    kw = {"encoder": "lexical", "size": 40, "n_clusters": 8, "strategy": "kcenter", "kmeans_sample": 5, "progress": False}
    kw["embedding_dtype"] = "float16"
    if importlib.util.find_spec("faiss"):
        kw["kmeans_backend"] = "faiss"
    local = select_subset(pool, **kw)
    on_ray = select_subset(pool, engine="ray", use_cache=False, **kw)  # encoded on Ray, assembled as float16
    assert on_ray.manifest.row_indices == local.manifest.row_indices
    assert on_ray.manifest.encoder.params["storage"] == "float16"


def test_ray_encoding_equals_local_and_reuses_finished_shards(local_ray, monkeypatch):
    import ltd_hub.selection.encoders as encoders
    from ltd_hub.paths import cache_dir
    from ltd_hub.selection.engines.ray_engine import encode_cached_ray

    monkeypatch.setattr(encoders, "_CHUNK_ROWS", 50)  # several shards from a few hundred texts
    words = "cat dog bird fish cow sheep goat lion bear wolf".split()
    texts = [f"the {a} sees the {b} near {c}" for a in words for b in words for c in words[:3]]
    local, _ = encoders.encode_cached(encoders.get_encoder("lexical"), texts, {"source": "shards"}, use_cache=False, progress=False)
    on_ray, stats = encode_cached_ray(encoders.get_encoder("lexical"), texts, {"source": "shards"}, use_cache=False)
    assert not stats.cache_hit and np.allclose(np.asarray(on_ray), local, atol=1e-6)
    # An interrupted run left shard 1 behind: the next run keeps it and encodes only the others.
    enc = encoders.get_encoder("lexical")
    enc.resolve()
    key = encoders.cache_key(enc, {"source": "shards", "n_rows": len(texts), "texts_sha256": encoders.texts_digest(texts)})
    work = cache_dir("embeddings") / key / "ray-shards"
    for name in ("embeddings.npy", "meta.json"):
        (work.parent / name).unlink()
    work.mkdir()
    np.save(work / "0000001.npy", np.full((50, local.shape[1]), 0.5, dtype=np.float32))
    (work / "0000001.json").write_text('{"n_truncated": 0}')
    resumed, stats = encode_cached_ray(enc, texts, {"source": "shards"})
    resumed = np.asarray(resumed)
    assert not stats.cache_hit and (resumed[50:100] == 0.5).all() and np.allclose(resumed[100:], local[100:], atol=1e-6)
    assert not work.exists()  # assembled into the ordinary cache entry, shards removed


def test_the_hashing_encoder_is_fitted_on_nothing_and_chunk_independent():
    from ltd_hub.selection.encoders import get_encoder

    words = "cat dog bird fish cow sheep goat lion bear wolf".split()
    texts = [f"the {a} chases the {b}" for a in words for b in words]
    enc = get_encoder("hashing")
    assert enc.prepare(texts[:1]) == 256
    whole, _ = enc.encode_batch(texts)
    parts = np.concatenate([get_encoder("hashing").encode_batch(texts[i : i + 7])[0] for i in range(0, len(texts), 7)])
    assert np.array_equal(whole, parts) and np.allclose(np.linalg.norm(whole, axis=1), 1, atol=1e-5)
    same, other = whole[texts.index("the cat chases the dog")], whole[texts.index("the fish chases the wolf")]
    assert whole[texts.index("the cat chases the bird")] @ same > other @ same


def _rss_file_kb() -> int:
    """This process's resident pages of mapped files (Linux), in KiB; skips the test elsewhere."""
    status = Path("/proc/self/status")
    if not status.is_file() or "RssFile" not in status.read_text():
        pytest.skip("needs Linux's /proc/self/status (RssFile)")
    line = next(x for x in status.read_text().splitlines() if x.startswith("RssFile:"))
    return int(line.split()[1])


def test_release_drops_a_memory_mapped_file_from_resident_memory(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((16384, 1024), dtype=np.float32))  # 64 MiB
    X = np.load(tmp_path / "x.npy", mmap_mode="r")
    before = _rss_file_kb()
    assert float(X.sum()) == 16384 * 1024
    touched = _rss_file_kb()
    bounded.release(X)
    assert touched - before > 40_000 and _rss_file_kb() - before < 10_000


def test_word_counts_chunk_by_chunk_match_the_whole_texts():
    import datasets

    from ltd_hub.data.sources import build_texts

    ds = datasets.Dataset.from_dict({"inputs": [f"{'w ' * i}end" for i in range(11)], "more": ["a b"] * 11})
    whole = [len(t.split()) for t in build_texts(ds, ["inputs", "more"])]
    assert bounded.word_counts(ds, ["inputs", "more"], chunk=3).tolist() == whole


def test_lazy_texts_are_build_texts_read_a_chunk_at_a_time():
    import datasets

    from ltd_hub.data.sources import build_texts
    from ltd_hub.selection.encoders import texts_digest

    ds = datasets.Dataset.from_dict({"inputs": [f"row {i}" for i in range(10)], "targets": ["yes", "no"] * 5}).select([9, 1, 4, 5, 6, 0])
    want = build_texts(ds, ["inputs", "targets"])
    lazy = bounded.LazyTexts(ds, ["inputs", "targets"], chunk=4)
    assert list(lazy) == want and len(lazy) == 6 and lazy[2:5] == want[2:5] and lazy[-1] == want[-1] and lazy[::2] == want[::2]
    assert texts_digest(lazy) == texts_digest(want)
    with pytest.raises(UsageError, match="text field"):
        bounded.LazyTexts(ds, ["nope"])


def test_take_rows_reads_scattered_rows_without_mapping_the_file(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((65536, 256)).astype(np.float32))  # 64 MiB
    X = np.load(tmp_path / "x.npy", mmap_mode="r")
    rows = np.concatenate([rng.choice(len(X), 4000, replace=False), [5, 5, 6, 7, -1, 0]])  # unsorted, repeats, runs, negative
    before = _rss_file_kb()
    got = bounded.take_rows(X, rows)
    grew = _rss_file_kb() - before
    assert got.dtype == np.float32 and np.array_equal(got, np.asarray(X[rows]))
    assert grew < 8_000  # one row in 16 gathered through the mapping would map most of the 64 MiB
    assert np.array_equal(bounded.take_rows(np.asarray(X), rows[:10]), np.asarray(X[rows[:10]]))  # in memory: plain indexing
    assert bounded.take_rows(X, np.array([], dtype=np.int64)).shape == (0, 256)
    with pytest.raises(IndexError):
        bounded.take_rows(X, np.array([len(X)]))


def test_per_row_codes_read_in_chunks_equal_the_whole_column():
    import datasets

    from ltd_hub.selection.groups import count_distinct, encode_chunks, encode_values, group_codes, hashed_codes

    values = ["b", "a", "b", None, "c", "a", "d", "b"]
    ds = datasets.Dataset.from_dict({"v": values}).select([7, 0, 1, 2, 3, 4, 5, 6])
    chunks = [v for (v,) in bounded.column_chunks(ds, ["v"], chunk=3)]
    assert [len(c) for c in chunks] == [3, 3, 2] and sum(chunks, []) == ds["v"]
    want_codes, want_distinct = encode_values(ds["v"])
    codes, distinct = encode_chunks(chunks, len(ds))
    assert codes.tolist() == want_codes.tolist() and distinct == want_distinct
    assert hashed_codes(chunks, len(ds)).tolist() == want_codes.tolist()
    assert count_distinct(chunks, len(ds)) == 5 and count_distinct([[-1, -2, -1]], 3) == 2  # Python hashes -1 and -2 alike
    assert encode_chunks([["x", "y"], ["z"]], 3, max_distinct=2) is None
    with pytest.raises(UsageError, match="empty in 1 rows"):
        group_codes(iter(chunks), len(ds), "v")
    assert group_codes([["p", "q"], ["p"]], 3, "v").codes.tolist() == [0, 1, 0]
