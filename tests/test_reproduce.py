"""``ltd-hub reproduce``: config checks, arm planning, leak guard, and every arm end to end (tiny scale)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml

from conftest import TEST_USER
from ltd_hub.cli import main
from ltd_hub.errors import UsageError
from ltd_hub.reproduce import ReproduceConfig, check_no_eval_rows, plan_arms, train_settings

POOL_ROWS = 300
EVAL_ROWS = 40


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
        "ratio": 0.02,
        "random_seeds": [0, 1],
        "sweep_ratios": [0.01, 0.02],
        "ablation_strategies": ["centroid", "kcenter-global"],
        "ablation_encoders": [],
        "full_data": "all",
        "schedule": "steps",
        "train": {"max_steps": 2, "per_device_train_batch_size": 4, "max_length": 192, "logging_steps": 1, "bf16": False},
        "eval": {"data": [str(snli), str(rte)], "templates": 1, "max_examples": 6, "batch_size": 8, "bootstrap": 50},
        "output_dir": str(tmp_path / "run"),
    }


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_shipped_configs_are_valid():
    root = Path(__file__).resolve().parents[1] / "experiments"
    # The CPU config holds what fits on 2 cores (the CPU scale has no ablations); the GPU one is complete.
    expected = {"nli-cpu.yaml": {"base", "coreset", "random", "full", "sweep"},
                "nli-gpu.yaml": {"base", "coreset", "random", "full", "sweep", "sweep-random", "ablation"}}  # fmt: skip
    for name, kinds in expected.items():
        config = ReproduceConfig.from_yaml(root / name)
        assert kinds <= {arm.kind for arm in plan_arms(config)}, name
        assert len([arm for arm in plan_arms(config) if arm.kind == "random"]) == 3, name
        assert Path(config.pool).name == "p3_nli_pool.jsonl.gz"


def test_arms_differ_only_in_their_training_data(tmp_path, tiny_config):
    config = ReproduceConfig.from_yaml(_write(tmp_path, tiny_config))
    arms = plan_arms(config)
    names = [arm.name for arm in arms]
    assert len(names) == len(set(names))
    from ltd_hub.reproduce import Runner

    runner = Runner(config, progress=False)
    trained = [arm for arm in arms if arm.trains]
    # One shared training recipe; each arm's train key differs only through its selection key.
    settings = train_settings(config)
    assert all(settings == train_settings(config) for _ in trained)
    assert len({runner.selection_key(arm) for arm in trained}) == len(trained)
    assert len({runner.train_key(arm) for arm in trained}) == len(trained)
    assert {arm.ratio for arm in arms if arm.kind in ("coreset", "random")} == {config.ratio}


def test_eval_rows_never_reach_training(ltd_nli):
    import datasets

    from ltd_hub.evaluation import load_eval_sets

    sets = load_eval_sets([str(ltd_nli / "eval" / "rte.jsonl.gz")], templates=1, max_examples=5)
    prompts = {row["inputs"] for s in sets for row in s.rows}
    clean = datasets.Dataset.from_dict({"inputs": ["an unrelated prompt"], "targets": ["yes"]})
    check_no_eval_rows(clean, prompts)
    leaked = datasets.Dataset.from_dict({"inputs": ["x", next(iter(prompts))], "targets": ["a", "b"]})
    with pytest.raises(UsageError, match="also eval rows"):
        check_no_eval_rows(leaked, prompts)


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"colour": "blue"}, "unknown key 'colour'"),
        ({"train": {"max_steps": 2, "learning_rat": 1e-3}}, "unknown key 'learning_rat'"),
        ({"eval": {"dataz": []}}, "unknown key 'dataz'"),
        ({"ratio": 1.5}, "ratio must be in (0, 1)"),
        ({"strategy": "kmedoids"}, "unknown strategy 'kmedoids'"),
        ({"schedule": "minutes"}, "schedule must be"),
        ({"train": {"max_steps": 2, "dataset": "x"}}, "set per arm"),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path, tiny_config, capsys, patch, needle):
    config = {**tiny_config, **patch}
    assert main(["reproduce", "--config", str(_write(tmp_path, config)), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_every_arm_end_to_end_resumes_and_pushes(tmp_path, tiny_config, tiny_model_id, capsys):
    tiny_config["push"] = {"namespace": TEST_USER, "prefix": "tiny-repro"}
    path = _write(tmp_path, tiny_config)
    assert main(["reproduce", "--config", str(path), "--push"]) == 0
    out = Path(tiny_config["output_dir"])
    results = json.loads((out / "results.json").read_text())
    kinds = [row["kind"] for row in results["arms"]]
    assert {"base", "coreset", "random", "full", "sweep", "ablation"} <= set(kinds)
    by_name = {row["arm"]: row for row in results["arms"]}
    assert by_name["full task data"]["n_train_rows"] == POOL_ROWS
    assert by_name["coreset 2%"]["n_train_rows"] == 6  # 2% of 300
    for row in results["arms"]:
        assert {r["name"] for r in row["eval"]} == {"snli_heldout", "rte"}
        for r in row["eval"]:
            assert r["n_examples"] == 6 and 0 <= r["ci_low"] <= r["accuracy_mean"] <= r["ci_high"] <= 1
        if row["kind"] != "base":
            assert row["training"]["steps"] == 2
    # Different training data gives different adapters.
    from safetensors.torch import load_file

    w1 = load_file(Path(by_name["coreset 2%"]["adapter"]) / "adapter_model.safetensors")
    w2 = load_file(Path(by_name["random 2% (seed 0)"]["adapter"]) / "adapter_model.safetensors")
    assert any(not (w1[k] == w2[k]).all() for k in w1)
    assert "| coreset 2% |" in (out / "results.md").read_text()
    assert (out / "accuracy_vs_fraction.png").read_bytes()[:4] == b"\x89PNG"

    # Pushed: subset + adapter per trained arm, results dataset; the adapter card links its subset.
    from huggingface_hub import HfApi

    from ltd_hub.hub import read_card_text

    api = HfApi()
    assert api.repo_exists(f"{TEST_USER}/tiny-repro-coreset-2", repo_type="dataset")
    card = read_card_text(f"{TEST_USER}/tiny-repro-coreset-2-lora", "model")
    assert f"{TEST_USER}/tiny-repro-coreset-2" in card and "model-index" in card
    assert "results.json" in api.list_repo_files(f"{TEST_USER}/tiny-repro-results", repo_type="dataset")

    # A re-run is served from the cache: no stage runs again, no new commit.
    head = api.repo_info(f"{TEST_USER}/tiny-repro-results", repo_type="dataset").sha
    capsys.readouterr()
    assert main(["reproduce", "--config", str(path), "--push", "--format", "json"]) == 0
    assert api.repo_info(f"{TEST_USER}/tiny-repro-results", repo_type="dataset").sha == head
    again = json.loads((out / "results.json").read_text())
    assert [r["average"] for r in again["arms"]] == [r["average"] for r in results["arms"]]
