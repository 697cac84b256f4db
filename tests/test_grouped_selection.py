"""Example-aware, stratified, representative selection and the quality report (synthetic pools with known groups)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import one_error_line

from ltd_hub.cli.main import main
from ltd_hub.errors import UsageError
from ltd_hub.selection import allocate_cells, allocate_weighted, distance_quantiles, get_selector
from ltd_hub.selection.groups import Groups, choose_rows, group_strata, group_vectors, suggest_group_column
from ltd_hub.selection.quality import PoolFacts, farthest_decile, figures, nearest_distances, tv_distance

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

TEMPLATES = {
    "snli": ["gpt3", "does_this_imply", "must_be_true", "can_we_infer"],
    "mnli": ["based_on", "guaranteed"],
}
CHOICES = ["yes", "maybe", "no"]
WORDS = "cat dog bird fish horse cow sheep goat mouse lion tiger bear wolf fox deer owl".split()


def write_pool(path: Path, n_examples: int = 120, seed: int = 0) -> Path:
    """Each example rendered under every template of its dataset; labels and topics known."""
    rng = np.random.default_rng(seed)
    lines = []
    for e in range(n_examples):
        dataset = "snli" if e % 3 else "mnli"
        label = int(rng.integers(3)) if e % 5 else 0
        topic = rng.choice(WORDS, size=4)
        premise = f"The {topic[0]} and the {topic[1]} sit near the {topic[2]}."
        hypothesis = f"A {topic[3]} is {'' if label == 0 else 'not '}there {e % 7}."
        for t in TEMPLATES[dataset]:
            lines.append(
                {
                    "dataset": dataset,
                    "template_name": t,
                    "inputs": f"[{t}] {premise} Question: {hypothesis}",
                    "targets": CHOICES[label],
                    "answer_choices": CHOICES,
                    "source": f"{dataset}-{e}",
                    "id": f"row-{len(lines)}",
                }
            )
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return path


@pytest.fixture
def pool(tmp_path: Path, monkeypatch) -> Path:
    # Relative, as a user types it: the manifest records it so and a rebuild finds it from the cwd.
    monkeypatch.chdir(tmp_path)
    return write_pool(Path("pool.jsonl"))


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _select(pool: Path, **kwargs):
    from ltd_hub.selection.subset import select_subset

    return select_subset(str(pool), encoder="lexical", progress=False, **kwargs)


# --------------------------------------------------------------------------- in-cluster rules


def test_quantile_picks_evenly_spaced_distance_ranks():
    dist = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0])  # ranks: index of the k-th smallest
    # 10 members, 2 picks: ranks floor(0.5*5)=2 and floor(1.5*5)=7 -> distances 0.2 and 0.7
    assert dist[distance_quantiles(dist, 2)].tolist() == [0.2, 0.7]
    assert dist[distance_quantiles(dist, 5)].tolist() == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert sorted(distance_quantiles(dist, 10).tolist()) == list(range(10))


def test_quantile_and_median_on_a_hand_built_cluster():
    # One cluster on a line: the centroid is at 0, members at known distances.
    xs = np.array([-5.0, -1.0, 0.5, 2.0, 3.0, 4.0, 6.0], dtype=np.float32)
    X = np.stack([xs - xs.mean(), np.zeros_like(xs)], axis=1)
    dist = np.abs(X[:, 0])
    med = get_selector("median", n_select=2, n_clusters=1).fit(X).indices_
    expected = np.argsort(np.abs(dist - np.median(dist)), kind="stable")[:2]
    assert sorted(med.tolist()) == sorted(expected.tolist())
    q = get_selector("quantile", n_select=3, n_clusters=1).fit(X).indices_
    order = np.argsort(dist, kind="stable")
    assert sorted(q.tolist()) == sorted(order[[1, 3, 5]].tolist())  # ranks floor((i+.5)*7/3) = 1, 3, 5
    # kcenter, by contrast, goes to the extremes after its first pick.
    kc = get_selector("kcenter", n_select=3, n_clusters=1).fit(X).indices_
    assert {int(np.argmax(dist))} <= set(kc.tolist())


# --------------------------------------------------------------------------- budgets


def test_strata_budgets_are_exact_largest_remainder_shares():
    clusters = np.repeat([0, 1, 2], [50, 30, 20])
    strata = np.tile([0, 0, 1, 2, 2], 20)  # 40% / 20% / 40%
    cells, per_cell, per_stratum = allocate_cells(clusters, strata, 10)
    assert per_stratum.tolist() == [4, 2, 4]
    assert per_cell.sum() == 10
    # Every cell's share sums back to its stratum's.
    assert per_cell.reshape(3, 3).sum(axis=0).tolist() == [4, 2, 4]
    with pytest.raises(UsageError, match="makes 3 strata but only 2 rows"):
        allocate_cells(clusters, strata, 2)


def test_weighted_allocation_never_exceeds_what_a_bin_has():
    assert allocate_weighted(np.array([90, 10]), np.array([3, 5]), 6).tolist() == [3, 3]
    shares = allocate_weighted(np.array([25.0, 25.0, 5.0, 1.0]), np.array([10, 10, 10, 10]), 12)
    assert shares.sum() == 12 and (shares >= 1).all() and shares[0] >= shares[2] >= shares[3]


# --------------------------------------------------------------------------- groups


def test_group_vectors_and_strata():
    groups = Groups.from_codes(np.array([0, 0, 1, 2, 2, 2]))
    X = np.array([[1, 0], [0, 1], [3, 4], [1, 0], [1, 0], [0, 1]], dtype=np.float32)
    V = group_vectors(X, groups)
    np.testing.assert_allclose(V, [[0.70710677, 0.70710677], [0.6, 0.8], [0.8944272, 0.4472136]], rtol=1e-6)
    assert group_strata(np.array([1, 0, 2, 1, 0, 0]), groups).tolist() == [0, 2, 0]  # ties -> lower id


def test_choose_rows_follows_the_template_mix():
    n_groups, n_templates = 40, 4
    codes = np.repeat(np.arange(n_groups), n_templates)
    templates = np.tile(np.arange(n_templates), n_groups)
    chosen = np.arange(0, n_groups, 2)  # 20 groups, each offering every template
    rows = choose_rows(chosen, Groups.from_codes(codes), templates, seed=3)
    assert codes[rows].tolist() == chosen.tolist()  # one row per chosen group, from that group
    assert sorted(Counter(templates[rows].tolist()).values()) == [5, 5, 5, 5]  # the pool's mix exactly
    assert choose_rows(chosen, Groups.from_codes(codes), templates, seed=3).tolist() == rows.tolist()


def test_suggest_group_column():
    assert suggest_group_column({"source": 2, "id": 4}, 4) == ("source", 2.0)
    assert suggest_group_column({"id": 4}, 4) is None
    assert suggest_group_column({"dataset": 1}, 1000) is None  # a category, not an example key


# --------------------------------------------------------------------------- quality figures, by hand


def test_quality_figures_on_a_hand_computed_case():
    X = np.array([[0, 0], [1, 0], [0, 1], [5, 5]], dtype=np.float32)
    assert nearest_distances(X, X[[0]]).tolist() == pytest.approx([0, 1, 1, np.sqrt(50)])
    assert tv_distance(np.array([0, 0, 1, 1]), np.array([0, 1]), 2) == 0.5
    assert tv_distance(np.array([0, 1, 0, 1]), np.array([0, 1]), 2) == 0.0
    far = farthest_decile(np.zeros(10, dtype=int), np.arange(10.0))
    assert far.tolist() == [False] * 9 + [True]
    facts = PoolFacts(
        X=X,
        examples=np.array([0, 0, 1, 2]),
        input_words=np.array([2.0, 4.0, 6.0, 8.0]),
        mixes={"labels": (np.array([0, 0, 1, 1]), 2, "label")},
        far=np.array([False, False, False, True]),
        examples_by="source",
    )
    f = figures(facts, np.array([0, 1]), coverage_rows=np.arange(4))
    assert (f.rows, f.distinct_examples, f.max_rows_per_example) == (2, 1, 2)
    assert f.tv_labels == 0.5 and f.tv_sources is None
    assert f.mean_input_words == 3.0 and f.typicality == 0.0
    assert f.coverage == pytest.approx((0 + 0 + 1 + np.hypot(4, 5)) / 4)


# --------------------------------------------------------------------------- through select_subset


def test_grouped_selection_never_repeats_an_example_and_keeps_the_template_mix(pool):
    result = _select(pool, size=30, group_by="source", strategy="quantile", seed=1, stratify_by=["dataset"])
    sources = result.dataset["source"]
    assert len(sources) == 30 and len(set(sources)) == 30
    pool_rows = [json.loads(line) for line in pool.read_text().splitlines()]
    pool_mix = Counter(r["template_name"] for r in pool_rows)
    sub_mix = Counter(result.dataset["template_name"])
    tv = 0.5 * sum(abs(sub_mix[t] / 30 - pool_mix[t] / len(pool_rows)) for t in pool_mix)
    # Within two rows of the pool's template mix (templates are nested in datasets, whose shares
    # come from the dataset strata by largest remainder); a random draw of 30 is ~0.15 off.
    assert tv <= 2 / 30 + 1e-9
    sel = result.manifest.selection
    assert sel.group_by == "source" and sel.n_groups == 120 and sel.template_column == "template_name"
    q = result.quality
    assert q.subset.distinct_examples == 30 and q.subset.max_rows_per_example == 1
    assert q.examples_by == "source"


def test_default_strata_keep_the_label_and_source_mix_exactly(pool):
    result = _select(pool, size=40, group_by="source")
    sel = result.manifest.selection
    assert sel.strategy == "centroid" and sel.stratify_by == ["label", "dataset"]  # the defaults over examples
    assert _select(pool, size=40).manifest.selection.strategy == "random-in-cluster"  # ...and over rows
    pool_rows = [json.loads(line) for line in pool.read_text().splitlines()]
    # Row-weighted: the subset follows the pool's rows, not its examples (snli has 4 templates, mnli 2).
    for column in ("targets", "dataset"):
        pool_mix = Counter(r[column] for r in pool_rows)
        sub_mix = Counter(result.dataset[column])
        for value, n in pool_mix.items():
            assert abs(sub_mix[value] - 40 * n / len(pool_rows)) <= len(sel.strata), (column, value)
    assert result.quality.subset.tv_labels <= 0.05


def test_explicit_strata_and_no_strata(pool):
    by_label = _select(pool, size=24, stratify_by=["targets"], strategy="median")
    assert by_label.manifest.selection.stratify_by == ["targets"]
    n = Counter(r["targets"] for r in map(json.loads, pool.read_text().splitlines()))
    total = sum(n.values())
    got = Counter(by_label.dataset["targets"])
    assert all(abs(got[k] - 24 * v / total) < 1 for k, v in n.items())
    plain = _select(pool, size=24, stratify_by=[])
    assert plain.manifest.selection.stratify_by == [] and plain.manifest.selection.stratum_budget is None
    assert _select(pool, size=24, strategy="random").manifest.selection.stratify_by == []  # baselines stay uniform


def test_quality_report_is_in_the_manifest_card_and_json(pool, tmp_path, capsys):
    out = tmp_path / "subset"
    code, stdout, err = cli(capsys, "push-subset", pool, "--dry-run", "--output-dir", out, "--encoder", "lexical",
                            "--size", "20", "--group-by", "source", "--format", "json")  # fmt: skip
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["group_by"] == "source" and summary["quality"]["subset"]["distinct_examples"] == 20
    manifest = json.loads((out / "selection_manifest.json").read_text())
    assert manifest["quality"] == summary["quality"]
    assert all(len(r["sha"]) == 16 for r in manifest["selected"])
    card = (out / "README.md").read_text()
    assert "## Is it representative?" in card and "distinct examples (by source)" in card
    assert "rows sharing `source` are one example (120 examples)" in card


def test_text_summary_prints_the_quality_table_and_the_group_hint(pool, tmp_path, capsys):
    code, stdout, err = cli(capsys, "push-subset", pool, "--dry-run", "--encoder", "lexical", "--size", "20")
    assert code == 0, err
    # Not grouped, but the detected example key counts the examples (templated copies differ in text).
    assert "coverage: mean distance" in stdout and "distinct examples (by source)" in stdout
    hints = [line for line in err.splitlines() if "--group-by source" in line]
    assert len(hints) == 1 and "column 'source' repeats each value 3.3 times" in hints[0]
    code, _, err = cli(capsys, "push-subset", pool, "--dry-run", "--encoder", "lexical", "--size", "20", "--group-by", "source")
    assert code == 0 and "--group-by source" not in err.replace("--group-by source leaves", "")


@pytest.mark.parametrize(
    ("options", "strategy"),
    [
        (["--group-by", "source"], "quantile"),
        (["--group-by", "source", "--stratify-by", "targets"], "median"),
        (["--stratify-by", "dataset", "--stratify-by", "targets"], "kcenter"),
        (["--no-stratify"], "quantile"),
    ],
)
def test_rebuild_gives_the_same_ids_for_every_new_option(pool, tmp_path, capsys, options, strategy):
    out = tmp_path / "subset"
    code, _, err = cli(capsys, "push-subset", pool, "--dry-run", "--output-dir", out, "--encoder", "lexical",
                       "--size", "18", "--strategy", strategy, "--seed", "4", *options)  # fmt: skip
    assert code == 0, err
    code, stdout, err = cli(capsys, "rebuild-subset", out, "--format", "json")
    assert code == 0, (stdout, err)
    assert json.loads(stdout)["identical"] is True


def test_rebuild_detects_replaced_rows_and_another_source(pool, tmp_path, capsys):
    import pyarrow.parquet as pq

    out = tmp_path / "subset"
    assert cli(capsys, "push-subset", pool, "--dry-run", "--output-dir", out, "--encoder", "lexical", "--size", "12")[0] == 0
    other = write_pool(tmp_path / "other.jsonl", seed=9)  # same shape and size, other content
    code, stdout, _ = cli(capsys, "rebuild-subset", out, "--source", other)
    assert code == 1 and "the source data differs from the recorded one" in stdout
    parquet = out / "data" / "train-00000-of-00001.parquet"
    table = pq.read_table(parquet)
    pq.write_table(table.set_column(table.schema.get_field_index("targets"), "targets", [["no"] * len(table)]), parquet)
    code, stdout, _ = cli(capsys, "rebuild-subset", out)
    assert code == 1 and "published rows differ from the selected rows' recorded content" in stdout


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--group-by", "example"], "--group-by column 'example' is not in the data; available columns: dataset, template_name"),
        (["--stratify-by", "labels"], "--stratify-by column 'labels' is not in the data; available columns:"),
        (["--group-by", "source", "--size", "200"], "--group-by source leaves 120 examples, fewer than the 200 rows"),
        (["--stratify-by", "id"], "--stratify-by id makes 400 strata, more than the 20 rows to select"),
        (["--group-by", "maybe_null"], "group_by column 'maybe_null' is empty in 1 rows"),
    ],
)
def test_bad_group_and_strata_options(pool, tmp_path, capsys, options, message):
    rows = pool.read_text().splitlines()
    rows = [json.dumps({**json.loads(r), "maybe_null": None if i == 3 else f"g{i // 2}"}) for i, r in enumerate(rows)]
    pool.write_text("\n".join(rows) + "\n")
    out = tmp_path / "subset"
    size = [] if "--size" in options else ["--size", "20"]
    code, _, err = cli(capsys, "push-subset", pool, "--dry-run", "--output-dir", out, "--encoder", "lexical", *size, *options)
    assert code == 2
    assert message in one_error_line(err)
    assert not out.exists()
