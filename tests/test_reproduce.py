"""``ltd-hub reproduce``: config checks, run planning, statistics, result files that survive the session,
and every arm end to end at tiny scale (also through ``scripts/gpu_reproduce.sh``)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TEST_USER
from helpers import one_error_line

from ltd_hub.cli.main import main
from ltd_hub.errors import UsageError
from ltd_hub.pipelines.reproduce import (
    ReproduceConfig,
    check_no_eval_rows,
    mean_sd,
    paired_bootstrap,
    plan_runs,
    run_hash,
    steps_for,
    train_settings,
)

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

POOL_ROWS = 300
EVAL_ROWS = 40
REPO_ROOT = Path(__file__).resolve().parents[1]


def _head_jsonl(src: Path, dst: Path, n: int) -> Path:
    with gzip.open(src, "rt", encoding="utf-8") as fin, open(dst, "w", encoding="utf-8") as fout:
        for i, line in enumerate(fin):
            if i >= n:
                break
            fout.write(line)
    return dst


@pytest.fixture
def tiny_config(tmp_path: Path, ltd_nli: Path) -> dict:
    pool = _head_jsonl(ltd_nli / "pool" / "p3_nli_pool.jsonl.gz", tmp_path / "pool.jsonl", 2000)
    snli = _head_jsonl(ltd_nli / "eval" / "snli_heldout.jsonl.gz", tmp_path / "snli_heldout.jsonl", EVAL_ROWS)
    rte = _head_jsonl(ltd_nli / "eval" / "rte.jsonl.gz", tmp_path / "rte.jsonl", EVAL_ROWS)
    return {
        "name": "nli-tiny",
        "pool": str(pool),
        "pool_limit": POOL_ROWS,
        "base_model": "ltd-tester/tiny-random-llama",
        "encoder": "lexical",
        "train_seeds": [0, 1],
        "compare_to": "random 2%",
        "steps_like_ratio": 0.02,
        "arms": [
            {"name": "base model", "kind": "base"},
            {"name": "random 2%", "selection": {"strategy": "random", "ratio": 0.02}, "selection_seeds": [0, 1]},
            {"name": "kcenter 2%", "selection": {"strategy": "kcenter", "ratio": 0.02}},
            {"name": "random 4%, equal steps", "selection": {"strategy": "random", "ratio": 0.04}, "schedule": "steps", "train_seeds": [0]},
            {"name": "full task data", "kind": "full", "train_seeds": [0]},
        ],
        "train": {"num_train_epochs": 1, "per_device_train_batch_size": 4, "max_length": 192, "logging_steps": 1, "bf16": False},
        "eval": {"data": [str(snli), str(rte)], "templates": 1, "max_examples": 6, "batch_size": 8, "bootstrap": 50},
        "output_dir": str(tmp_path / "run"),
        "results_dir": str(tmp_path / "results"),
    }


def _write(tmp_path: Path, config: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- shipped configs


@pytest.mark.parametrize("name", ["nli-cpu.yaml", "nli-gpu.yaml"])
def test_shipped_config_dry_run_passes(name, capsys):
    # nli-gpu.yaml names its encoder by bare Hub id, which get_encoder used to reject ("unknown encoder").
    assert main(["reproduce", "--config", str(REPO_ROOT / "experiments" / name), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "to run" in out and "base-model" in out


def test_cpu_config_is_issue_12_item_5():
    config = ReproduceConfig.from_yaml(REPO_ROOT / "experiments" / "nli-cpu.yaml")
    runs = plan_runs(config)
    by_arm: dict[str, list] = {}
    for run in runs:
        by_arm.setdefault(run.arm, []).append(run)
    assert [r.kind for r in by_arm["base model"]] == ["base"]
    # Compared arms run >= 3 times; random arms vary the rows and the training seed together.
    for arm, arm_runs in by_arm.items():
        if arm != "base model":
            assert len(arm_runs) >= 3, arm
            assert len({r.train_seed for r in arm_runs}) == 3, arm
    assert {r.selection_seed for r in by_arm["random 0.5%"]} == {0, 1, 2}
    assert by_arm["centroid 0.5%, by source"][0].selection["group_by"] == "source"
    epochs, steps = by_arm["random 2.5%, equal epochs"], by_arm["random 2.5%, equal steps"]
    assert {r.schedule for r in epochs} == {"epochs"} and {r.schedule for r in steps} == {"steps"}
    n_task = 503_576
    s_half = steps_for(config, 2518, train_settings(config, by_arm["random 0.5%"][0]), n_task_rows=n_task)
    s_epochs = steps_for(config, 12589, train_settings(config, epochs[0]), n_task_rows=n_task)
    s_steps = steps_for(config, 12589, train_settings(config, steps[0]), n_task_rows=n_task)
    assert s_half == s_steps == 630 and s_epochs == 3148  # 2 epochs of 8-row batches
    assert config.eval.templates == 1 and config.eval.max_examples == 1000
    assert Path(config.results_dir) == REPO_ROOT / "docs" / "results" / "nli-cpu"


def test_readme_results_table_quotes_the_committed_summary():
    # The README's nli-cpu table is written by hand (its arm labels say more than the generated ones);
    # every figure in it must be one that `reproduce --summary` wrote, so the two cannot drift apart.
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    summary = (REPO_ROOT / "docs" / "results" / "nli-cpu" / "results.md").read_text(encoding="utf-8")
    section = readme[readme.index("### The comparison now: `experiments/nli-cpu.yaml`") :]
    section = section[: section.index("The runs one by one")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| arm")]
    figures = [cell.strip() for row in rows for cell in row.split("|")[3:-1]]
    assert len(rows) >= 10 and figures
    missing = [f for f in figures if f not in summary]
    assert not missing, f"README figures not in docs/results/nli-cpu/results.md: {missing}"


def test_bare_hub_id_is_a_sentence_transformers_encoder():
    from ltd_hub.selection.encoders import SentenceTransformerEncoder, get_encoder

    enc = get_encoder("sentence-transformers/all-MiniLM-L6-v2")
    assert isinstance(enc, SentenceTransformerEncoder) and enc.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert enc.name == get_encoder("sentence-transformers:sentence-transformers/all-MiniLM-L6-v2").name  # one cache key
    with pytest.raises(UsageError, match="invalid model id"):
        get_encoder("not a/valid id")


# --------------------------------------------------------------------------- planning


def test_runs_differ_only_in_data_seed_or_schedule(tmp_path, tiny_config):
    config = ReproduceConfig.from_yaml(_write(tmp_path, tiny_config))
    runs = plan_runs(config)
    ids = [r.run_id for r in runs]
    assert ids == [
        "base-model",
        "random-2--sel0-train0", "random-2--sel1-train1",
        "kcenter-2--sel0-train0", "kcenter-2--sel0-train1",
        "random-4-equal-steps--sel0-train0",
        "full-task-data--train0",
    ]  # fmt: skip
    hashes = {run_hash(config, r) for r in runs}
    assert len(hashes) == len(runs)
    # The hash ignores where things are: the same config elsewhere (other output/results dirs) agrees.
    moved = ReproduceConfig.from_yaml(_write(tmp_path, {**tiny_config, "output_dir": str(tmp_path / "elsewhere")}, "b.yaml"))
    assert [run_hash(moved, r) for r in plan_runs(moved)] == [run_hash(config, r) for r in runs]
    # ...but the training recipe is in it.
    changed = ReproduceConfig.from_yaml(
        _write(tmp_path, {**tiny_config, "train": {**tiny_config["train"], "learning_rate": 5e-4}}, "c.yaml")
    )
    assert run_hash(changed, plan_runs(changed)[1]) != run_hash(config, runs[1])
    assert run_hash(changed, plan_runs(changed)[0]) == run_hash(config, runs[0])  # the base model does not train
    steps_run = runs[5]
    settings = train_settings(config, steps_run)
    assert settings["seed"] == 0 and settings["max_steps"] == {"steps_like_ratio": 0.02}
    assert steps_for(config, 12, settings, n_task_rows=POOL_ROWS) == 2  # 2% of 300 = 6 rows, batches of 4
    assert "max_steps" not in train_settings(config, runs[1])


def test_selection_options_pass_through_to_select_subset(tmp_path, tiny_config):
    tiny_config["arms"][2]["selection"] = {"strategy": "quantile", "ratio": 0.02, "group_by": "source", "stratify_by": ["dataset"]}
    config = ReproduceConfig.from_yaml(_write(tmp_path, tiny_config))
    run = plan_runs(config)[3]
    assert run.selection == {"encoder": "lexical", "strategy": "quantile", "ratio": 0.02, "group_by": "source", "stratify_by": ["dataset"]}


def test_eval_rows_never_reach_training(ltd_nli):
    import datasets

    from ltd_hub.evaluation.evaluator import load_eval_sets

    sets = load_eval_sets([str(ltd_nli / "eval" / "rte.jsonl.gz")], templates=1, max_examples=5)
    prompts = {row["inputs"] for s in sets for row in s.rows}
    clean = datasets.Dataset.from_dict({"inputs": ["an unrelated prompt"], "targets": ["yes"]})
    check_no_eval_rows(clean, prompts)
    leaked = datasets.Dataset.from_dict({"inputs": ["x", next(iter(prompts))], "targets": ["a", "b"]})
    with pytest.raises(UsageError, match="also eval rows"):
        check_no_eval_rows(leaked, prompts)


# --------------------------------------------------------------------------- bad configs (issue 13, items 13 and 14)


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"colour": "blue"}, "unknown key 'colour'"),
        ({"train": {"learning_rat": 1e-3}}, "unknown key 'learning_rat'"),
        ({"eval": {"dataz": []}}, "unknown key 'dataz'"),
        ({"ratio": 1.5}, "ratio must be in (0, 1)"),
        ({"strategy": "kmedoids"}, "unknown strategy 'kmedoids'"),
        ({"schedule": "minutes"}, "schedule must be"),
        ({"train": {"dataset": "x"}}, "set per arm"),
        # wrong types: one line naming the key, never a raw exception
        ({"ratio": "0.5"}, "ratio in exp.yaml must be a number, got '0.5'"),
        ({"pool_limit": "lots"}, "pool_limit in exp.yaml must be an integer, got 'lots'"),
        ({"output_dir": ["a", "b"]}, "output_dir in exp.yaml must be a string (a folder), got ['a', 'b']"),
        ({"train_seeds": "0,1"}, "train_seeds in exp.yaml must be a list of integers"),
        ({"eval": {"data": "x.jsonl"}}, "data in exp.yaml:eval must be a list of strings"),
        (
            {"arms": [{"name": "a", "selection": {"strategy": "random", "ratio": "1%"}}]},
            "selection.ratio must be a number in (0, 1), got '1%'",
        ),
        # wrong values accepted before
        ({"train": {"num_train_epochs": float("inf")}}, "num_train_epochs in train: must be a finite number"),
        ({"train": {"max_steps": float("inf")}}, "max_steps in train: must be a whole number"),
        ({"full_data": True, "arms": None}, "full_data in exp.yaml must be 'all' (every task row) or a number of rows, got True"),
        ({"train": {"dataset_split": "test"}}, "train.dataset_split is set per arm"),
        # arms: every strategy, encoder and selection option is checked
        ({"arms": [{"name": "a", "selection": {"strategy": "kmedoids", "ratio": 0.1}}]}, "unknown strategy 'kmedoids' in arm 'a'"),
        ({"arms": [{"name": "a", "selection": {"ratio": 0.1, "encoder": "word2vec"}}]}, "unknown encoder 'word2vec'"),
        ({"arms": [{"name": "a", "selection": {"ratio": 0.1, "group_bye": "source"}}]}, "unknown selection option 'group_bye'"),
        ({"arms": [{"name": "a", "selection": {"ratio": 0.1, "seed": 3}}]}, "selection.seed is set by reproduce (from selection_seeds)"),
        ({"arms": [{"name": "a", "selection": {"ratio": 0.1}, "selection_seeds": [0, 1], "train_seeds": [0, 1, 2]}]}, "cannot be paired"),
        ({"arms": [{"name": "a", "selection": {"ratio": 0.1}}, {"name": "a", "selection": {"ratio": 0.2}}]}, "two arms are named 'a'"),
        ({"compare_to": "nobody"}, "compare_to 'nobody' names no arm"),
        ({"base_model": "not a model id"}, "base_model 'not a model id' is neither a local model folder nor a Hub id"),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path, tiny_config, capsys, patch, needle):
    config = {**tiny_config, **patch}
    assert main(["reproduce", "--config", str(_write(tmp_path, config)), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert needle in one_error_line(captured.err), captured.err
    assert not (tmp_path / "run").exists() and not (tmp_path / "results").exists()  # nothing half-written


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"num_train_epochs": float("inf")}, "num_train_epochs in train.yaml must be a finite number"),
        ({"learning_rate": float("nan")}, "learning_rate in train.yaml must be a finite number"),
        ({"max_steps": float("inf")}, "max_steps in train.yaml must be a whole number"),
        ({"output_dir": ["a", "b"]}, "output_dir in train.yaml must be a string, got ['a', 'b']"),
        ({"per_device_train_batch_size": "eight"}, "per_device_train_batch_size in train.yaml must be a whole number"),
        ({"dataset_split": "test"}, "dataset_split 'test'"),
    ],
)
def test_bad_train_config_is_one_line_exit_2(tmp_path, ltd_nli, capsys, config, needle):
    data = _head_jsonl(ltd_nli / "pool" / "p3_nli_pool.jsonl.gz", tmp_path / "rows.jsonl", 20)
    values = {"dataset": str(data), "base_model": "ltd-tester/tiny-random-llama", "output_dir": str(tmp_path / "out"), **config}
    assert main(["train", "--config", str(_write(tmp_path, values, "train.yaml"))]) == 2
    captured = capsys.readouterr()
    assert needle in one_error_line(captured.err), captured.err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("[[]*"))  # no folder named "['a', 'b']"


def test_dataset_split_of_a_folder_must_exist(tmp_path, ltd_nli, capsys):
    folder = tmp_path / "subset" / "data"
    folder.mkdir(parents=True)
    _head_jsonl(ltd_nli / "pool" / "p3_nli_pool.jsonl.gz", folder / "train-00000.jsonl", 20)
    args = [
        "train",
        "--dataset",
        str(tmp_path / "subset"),
        "--base-model",
        "x/y",
        "--output-dir",
        str(tmp_path / "o"),
        "--dataset-split",
        "test",
    ]
    assert main(args) == 2
    assert "no test-* files" in one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- statistics


def test_paired_bootstrap_hand_computed():
    # Differences per example [1, 0, 0]: the mean of 3 draws is k/3 with k ~ Binomial(3, 1/3):
    # P(0) = 8/27, P(1/3) = 12/27, P(2/3) = 6/27, P(1) = 1/27. The 5% quantile is 0; the 95% one is
    # 2/3 (cumulative 20/27 = 0.74 below it, 26/27 = 0.96 at it).
    diff, low, high = paired_bootstrap([1, 0, 0], [0, 0, 0], resamples=20000, level=0.9, resample_runs=False)
    assert diff == pytest.approx(1 / 3) and low == 0.0 and high == pytest.approx(2 / 3)
    # Pairing: identical arms differ by exactly 0 in every resample, however noisy each one is.
    same = [1, 0, 1, 1, 0, 0, 1, 0]
    assert paired_bootstrap(same, same) == (0.0, 0.0, 0.0)
    # The same examples, shifted by one right answer: every resample has a difference >= 0.
    diff, low, high = paired_bootstrap([1, 1, 0, 0], [0, 1, 0, 0], resample_runs=False)
    assert diff == 0.25 and low == 0.0 and high == pytest.approx(0.75)
    # Seeds: two runs of arm a (all right / all wrong) against b (always wrong): resampling runs
    # gives 0, 0.5 or 1 with probability 1/4, 1/2, 1/4, so the 95% interval is [0, 1].
    diff, low, high = paired_bootstrap([[1, 1, 1, 1], [0, 0, 0, 0]], [[0, 0, 0, 0]], resamples=4000)
    assert diff == 0.5 and (low, high) == (0.0, 1.0)
    # Several eval sets: the difference is the mean of the per-set differences.
    diff, _, _ = paired_bootstrap([[[1, 1]], [[0, 0]]], [[[0, 0]], [[0, 0]]])
    assert diff == 0.5
    # Seeded: the same call gives the same interval.
    assert paired_bootstrap([1, 0, 1, 0, 1], [0, 0, 1, 1, 0], seed=3) == paired_bootstrap([1, 0, 1, 0, 1], [0, 0, 1, 1, 0], seed=3)
    with pytest.raises(ValueError, match="same"):
        paired_bootstrap([1, 0], [1, 0, 1])


def test_mean_sd_hand_computed():
    assert mean_sd([0.4, 0.5, 0.6]) == (pytest.approx(0.5), pytest.approx(0.1))
    assert mean_sd([0.7]) == (0.7, None)


def test_summary_from_result_files(tmp_path, tiny_config):
    """The summary is built from result files alone (as committed by other sessions): mean ± sd and paired intervals."""
    from ltd_hub.pipelines.reproduce import PlannedRun, results_table, run_states, summarize

    config = ReproduceConfig.from_yaml(_write(tmp_path, tiny_config))
    gold = "0120120120"
    preds = {"random-2--sel0-train0": "0120120120", "random-2--sel1-train1": "0120100000",  # 10/10 and 7/10
             "kcenter-2--sel0-train0": "0000000000", "kcenter-2--sel0-train1": "0000000000"}  # 4/10 each  # fmt: skip
    arms = Path(config.results_dir) / "arms"
    arms.mkdir(parents=True)
    for p in run_states(config):
        if p.run.run_id not in preds:
            continue
        acc = sum(a == b for a, b in zip(preds[p.run.run_id], gold)) / 10
        record = {"format": 1, "hash": p.hash, "run": p.run.run_id, "arm": p.run.arm, "selection": {"n_selected": 6}, "fraction": 0.02,
                  "training": {"steps": 2}, "average": acc,
                  "eval": [{"name": "snli", "n_examples": 10, "accuracy_mean": acc, "examples_sha": "s", "gold": gold, "predictions": preds[p.run.run_id]}]}  # fmt: skip
        (arms / f"{p.run.run_id}.json").write_text(json.dumps(record))
    (arms / "kcenter-2--sel0-train1.json").write_text(
        (arms / "kcenter-2--sel0-train1.json").read_text().replace(run_hash(config, plan_runs(config)[4]), "stale")
    )
    planned = run_states(config)
    states = {p.run.run_id: p.state for p in planned}
    assert states["random-2--sel0-train0"] == "done" and states["kcenter-2--sel0-train1"] == "stale" and states["base-model"] == "todo"
    results = summarize(config, planned)
    rows = {r["arm"]: r for r in results["arms"]}
    assert rows["random 2%"]["eval"]["snli"]["mean"] == pytest.approx(0.85)
    assert rows["random 2%"]["eval"]["snli"]["sd"] == pytest.approx(0.2121320)  # sd of 1.0 and 0.7
    assert rows["kcenter 2%"]["n_runs"] == 1  # the stale file does not count
    paired = {e["arm"]: e for e in results["paired"]}
    kc = paired["kcenter 2%"]["sets"]["snli"]
    assert kc["diff"] == pytest.approx(0.4 - 0.85) and kc["low"] <= kc["diff"] <= kc["high"] < 0
    table = results_table(results)
    assert "| random 2% | 2 of 2 |" in table and "85.0 ± 21.2 (n=2)" in table and "-45.0 [" in table
    assert isinstance(planned[0], PlannedRun)


# --------------------------------------------------------------------------- end to end


def test_every_arm_end_to_end_accumulates_and_pushes(tmp_path, tiny_config, tiny_model_id, capsys):
    tiny_config["push"] = {"namespace": TEST_USER, "prefix": "tiny-repro"}
    path = _write(tmp_path, tiny_config)
    results_dir = Path(tiny_config["results_dir"])

    # A first session runs one arm only (by its slug); its runs leave result files.
    assert main(["reproduce", "--config", str(path), "--only", "random-2", "--format", "json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["ran"] == ["random-2--sel0-train0", "random-2--sel1-train1"] and first["runs_done"] == 2
    assert sorted(p.name for p in (results_dir / "arms").iterdir()) == ["random-2--sel0-train0.json", "random-2--sel1-train1.json"]

    # The dry run sees them as done (by hash), runs nothing, and plans the rest with estimated steps.
    assert main(["reproduce", "--config", str(path), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "done   random-2--sel0-train0" in plan and "todo   kcenter-2--sel0-train1" in plan
    assert "2 done (result file with this hash), 0 stale (config changed: re-run), 5 to run" in plan

    # Another machine with an empty stage cache: done runs are not retrained; shards split the rest.
    shutil.rmtree(tiny_config["output_dir"])
    assert main(["reproduce", "--config", str(path), "--shard", "1/2", "--format", "json"]) == 0
    shard1 = json.loads(capsys.readouterr().out)
    assert shard1["ran"] == ["base-model", "kcenter-2--sel0-train1", "full-task-data--train0"]  # positions 0, 2 (done), 4, 6
    assert main(["reproduce", "--config", str(path), "--push", "--format", "json"]) == 0
    last = json.loads(capsys.readouterr().out)
    assert last["ran"] == ["kcenter-2--sel0-train0", "random-4-equal-steps--sel0-train0"] and last["runs_done"] == 7

    records = {p.stem: json.loads(p.read_text()) for p in (results_dir / "arms").iterdir()}
    assert len(records) == 7
    for run_id, record in records.items():
        assert record["run"] == run_id and len(record["hash"]) == 16
        assert {e["name"] for e in record["eval"]} == {"snli_heldout", "rte"}
        for e in record["eval"]:
            assert e["n_examples"] == 6 and len(e["gold"]) == 6 and e["examples_sha"]
            assert len(e["predictions"]) == 6  # per-example choices, from the eval report
            correct = sum(p == g for p, g in zip(e["predictions"], e["gold"])) / 6
            assert correct == pytest.approx(e["accuracy_mean"])
            assert 0 <= e["ci_low"] <= e["accuracy_mean"] <= e["ci_high"] <= 1
        if record["kind"] != "base":
            assert record["training"]["steps"] >= 1 and record["training"]["tokens_per_second"] > 0
    assert records["full-task-data--train0"]["selection"]["n_selected"] == POOL_ROWS
    assert records["kcenter-2--sel0-train0"]["selection"]["n_selected"] == 6  # 2% of 300
    assert records["kcenter-2--sel0-train1"]["training"]["seed"] == 1 and records["kcenter-2--sel0-train0"]["training"]["seed"] == 0
    # Equal steps: 12 rows get the steps of the 6-row arms (2 batches of 4), not their own 3.
    assert records["random-4-equal-steps--sel0-train0"]["training"]["steps"] == records["random-2--sel0-train0"]["training"]["steps"] == 2
    assert records["random-4-equal-steps--sel0-train0"]["selection"]["n_selected"] == 12
    # Same examples for every run, so any two pair up.
    assert len({e["examples_sha"] for r in records.values() for e in r["eval"] if e["name"] == "rte"}) == 1

    table = (results_dir / "results.md").read_text()
    assert "| random 2% | 2 of 2 |" in table and "±" in table and "Paired difference against **random 2%**" in table
    assert (results_dir / "accuracy_vs_fraction.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((results_dir / "results.json").read_text())
    assert summary["runs_done"] == 7 and {e["arm"] for e in summary["paired"]} == {
        "kcenter 2%",
        "random 4%, equal steps",
        "full task data",
        "base model",
    }
    for entry in summary["paired"]:  # every arm pairs with the reference on the same examples
        assert entry["average"] is not None and entry["average"]["low"] <= entry["average"]["diff"] <= entry["average"]["high"]

    # Pushed: subset + adapter of each run trained in this call, and the results dataset with every result file.
    from huggingface_hub import HfApi

    from ltd_hub.hub.gateway import read_card_text

    api = HfApi()
    assert api.repo_exists(f"{TEST_USER}/tiny-repro-kcenter-2", repo_type="dataset")
    card = read_card_text(f"{TEST_USER}/tiny-repro-kcenter-2-sel0-train0-lora", "model")
    assert f"{TEST_USER}/tiny-repro-kcenter-2" in card and "model-index" in card
    files = api.list_repo_files(f"{TEST_USER}/tiny-repro-results", repo_type="dataset")
    assert "results.json" in files and "arms/random-2--sel0-train0.json" in files

    # Everything done: a re-run trains nothing and leaves the result files as they were.
    before = {p.name: p.read_bytes() for p in (results_dir / "arms").iterdir()}
    assert main(["reproduce", "--config", str(path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["ran"] == []
    assert {p.name: p.read_bytes() for p in (results_dir / "arms").iterdir()} == before

    # A changed recipe makes every trained run stale (the base model stays done).
    changed = _write(tmp_path, {**tiny_config, "train": {**tiny_config["train"], "learning_rate": 1e-3}}, "changed.yaml")
    assert main(["reproduce", "--config", str(changed), "--dry-run"]) == 0
    assert "1 done (result file with this hash), 6 stale" in capsys.readouterr().out


def test_max_minutes_stops_training_at_a_checkpoint_and_the_next_run_resumes_it(tmp_path, tiny_config, tiny_model_id, capsys):
    from ltd_hub.pipelines.reproduce import ReproduceConfig, Runner, checkpoint_folder, run_states

    tiny_config.update(train_seeds=[0], compare_to=None, arms=[{"name": "random 4%", "selection": {"strategy": "random", "ratio": 0.04}}])
    path = _write(tmp_path, tiny_config)
    config = ReproduceConfig.from_yaml(path)
    (planned,) = run_states(config)
    run, folder = planned.run, checkpoint_folder(config, planned)
    assert folder.parent == Path(tiny_config["output_dir"]) / "checkpoints"

    # The deadline has passed when training starts: one step, a checkpoint, and the run is left for later.
    runner = Runner(config, progress=False)
    runner.stop_at = 0.0
    first = runner.run()
    assert first["ran"] == [] and first["left"] == [run.run_id]
    assert first["stopped"] == {run.run_id: {"step": 1, "max_steps": 3, "checkpoint": str(folder / "checkpoint-1")}}
    assert "stopped at step 1 of 3 (--max-minutes); run the same command again to resume" in capsys.readouterr().err
    assert not list(Path(tiny_config["results_dir"]).glob("arms/*.json"))  # no result for an unfinished run

    assert main(["reproduce", "--config", str(path), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert f"resumes from checkpoints: {run.run_id} at step 1 of 3 (training left)" in plan and "2 optimizer steps to run in all" in plan

    # The next call resumes it and finishes training; its evaluation is cut (the session ends) and the
    # next machine has only the checkpoint folder, not the stage cache.
    def cut(self, run, adapter):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Runner, "evaluate", cut)
        assert main(["reproduce", "--config", str(path), "--format", "json"]) == 130
    capsys.readouterr()
    assert (folder / "checkpoint-3").is_dir()  # the last step, kept until the result is written
    shutil.rmtree(Path(tiny_config["output_dir"]) / "cache")
    assert main(["reproduce", "--config", str(path), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert f"{run.run_id} at step 3 of 3 (training done, evaluation left)" in plan and "0 optimizer steps to run in all" in plan

    # The next call resumes at the end of training (nothing retrained), evaluates, records the whole
    # run's figures, and drops the spent checkpoints.
    assert main(["reproduce", "--config", str(path), "--format", "json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["ran"] == [run.run_id] and second["stopped"] == {}
    record = json.loads((Path(tiny_config["results_dir"]) / "arms" / f"{run.run_id}.json").read_text())
    assert record["training"]["steps"] == 3 and record["training"]["segments"] == 3 and record["training"]["seconds"] > 0
    assert not folder.exists()

    # A checkpoint_dir of its own (config key or flag) is where a run keeps them; a file there is refused.
    (tmp_path / "afile").write_text("x")
    assert main(["reproduce", "--config", str(path), "--checkpoint-dir", str(tmp_path / "afile"), "--dry-run"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "checkpoint_dir" in line and "is a file" in line


def test_gpu_script_runs_a_tiny_config(tmp_path, tiny_config, tiny_model_id, hub_root):
    """scripts/gpu_reproduce.sh end to end on CPU: its own Hub seeded with the encoder, MiniLM by bare Hub id,
    results under the results dir, a timing/throughput summary and the results archive in $OUT."""
    from huggingface_hub import snapshot_download

    base = snapshot_download(tiny_model_id)  # the device has no Hub: the script takes a local base model folder
    tiny_config.update(base_model=base, encoder="sentence-transformers/all-MiniLM-L6-v2", train_seeds=[0], compare_to=None)
    tiny_config["arms"] = [
        {"name": "base model", "kind": "base"},
        {"name": "kcenter 2%", "selection": {"strategy": "kcenter", "ratio": 0.02}},
    ]
    config = _write(tmp_path, tiny_config)
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "LTD_GPU_WORK": str(tmp_path / "work"), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    env.pop("HF_ENDPOINT")
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "gpu_reproduce.sh"), "run", "--config", str(config), "--minutes", "5", "--seed", "encoder"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    log = (out / "gpu_reproduce.log").read_text() if (out / "gpu_reproduce.log").exists() else ""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + log[-3000:]
    summary = json.loads((out / "gpu_summary.json").read_text())
    assert summary["runs_done"] == 2 and summary["seconds"] > 0
    assert summary["train"]["tokens_per_second"] > 0 and summary["train"]["mfu"] is None  # no GPU, no peak to compare with
    arms = Path(tiny_config["results_dir"]) / "arms"
    assert sorted(p.name for p in arms.iterdir()) == ["base-model.json", "kcenter-2--sel0-train0.json"]
    record = json.loads((arms / "kcenter-2--sel0-train0.json").read_text())
    assert record["selection"]["encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    import tarfile

    with tarfile.open(out / "results.tgz") as tar:
        assert "arms/kcenter-2--sel0-train0.json" in tar.getnames()
