"""``ltd-hub quickstart``: bad input is one line; the whole loop publishes five carded repos; a re-run commits nothing."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import yaml
from conftest import TEST_USER

from ltd_hub.cli.main import main
from ltd_hub.hub import gateway as hub
from ltd_hub.hub.cards import split_card
from ltd_hub.pipelines.quickstart import REPO_PREFIX, REPOS, slice_pool
from ltd_hub.selection import DEFAULT_STRATEGY

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

REPO_TYPES = {f"{TEST_USER}/{REPO_PREFIX}-{suffix}": repo_type for suffix, repo_type in REPOS.values()}


def _heads() -> dict[str, str | None]:
    """The head commit of every quick-start repo (None where it does not exist)."""
    return {
        repo: hub.repo_head(repo, repo_type=repo_type) if hub.repo_exists(repo, repo_type) else None
        for repo, repo_type in REPO_TYPES.items()
    }


def _tiny_args(ltd_nli: Path, workdir: Path, base_model: str) -> list[str]:
    return [
        "quickstart",
        "--pool", str(ltd_nli / "pool" / "p3_nli_pool.jsonl.gz"),
        "--eval-data", str(ltd_nli / "eval" / "rte.jsonl.gz"), str(ltd_nli / "eval" / "snli_heldout.jsonl.gz"),
        "--rows", "400",
        "--full-rows", "60",
        "--encoder", "lexical",
        "--max-steps", "2",
        "--max-examples", "4",
        "--base-model", base_model,
        "--no-demo",
        "--workdir", str(workdir),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--pool", "no/such/pool.jsonl.gz"], "--pool"),
        (["--rows", "50"], "--rows"),
        (["--full-rows", "500", "--rows", "400"], "--full-rows"),
        (["--max-steps", "0"], "--max-steps"),
        (["--eval-data", "./missing.jsonl"], "--eval-data"),
        (["--encoder", "nope"], "nope"),
        (["--port", "70000"], "--port"),
    ],
)
def test_bad_input_is_one_line_and_pushes_nothing(ltd_nli, tmp_path, capsys, extra, needle):
    before = _heads()
    code = main(_tiny_args(ltd_nli, tmp_path / "work", "ltd-tester/tiny-random-llama") + extra)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and needle in err
    assert _heads() == before


def test_missing_base_model_is_caught_before_any_push(ltd_nli, tmp_path, capsys):
    before = _heads()
    code = main(_tiny_args(ltd_nli, tmp_path / "work", "ltd-tester/no-such-model"))
    err = capsys.readouterr().err
    assert code == 2 and "--base-model" in err
    assert _heads() == before


def test_slice_pool_keeps_the_first_rows_and_the_file(ltd_nli, tmp_path):
    pool = ltd_nli / "pool" / "p3_nli_pool.jsonl.gz"
    path, count = slice_pool(pool, 25, tmp_path)
    with gzip.open(pool, "rt", encoding="utf-8") as handle:
        expected = [next(handle) for _ in range(25)]
    assert count == 25 and path.read_text(encoding="utf-8").splitlines(keepends=True) == expected
    mtime = path.stat().st_mtime_ns
    assert slice_pool(pool, 25, tmp_path) == (path, 25) and path.stat().st_mtime_ns == mtime


def _meta(repo_id: str, repo_type: str) -> dict:
    text = hub.read_card_text(repo_id, repo_type)
    assert text, f"{repo_id} has no README.md"
    return split_card(text)[0]


def test_quickstart_publishes_everything_and_a_rerun_commits_nothing(ltd_nli, tmp_path, tiny_model_id, capsys):
    args = _tiny_args(ltd_nli, tmp_path / "work", tiny_model_id)
    assert main(args) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    out = captured.out
    assert "comparison Space" in out and "average accuracy" in out
    # Every step has its own number: [1/8] ... [8/8], each once (--no-demo: no local Space step).
    steps = [line.split("]")[0] + "]" for line in captured.err.splitlines() if line.startswith("[")]
    assert steps == [f"[{n}/8]" for n in range(1, 9)]
    assert "FutureWarning" not in captured.err

    heads = _heads()
    assert all(heads.values())
    for suffix in ("coreset", "full"):
        meta = _meta(f"{TEST_USER}/{REPO_PREFIX}-{suffix}", "dataset")
        assert "ltd-hub" in meta["tags"] and meta["configs"][0]["data_files"][0]["split"] == "train"
        manifest = hub.download(f"{TEST_USER}/{REPO_PREFIX}-{suffix}", "selection_manifest.json", repo_type="dataset")
        selection = yaml.safe_load(Path(manifest).read_text())["selection"]
        assert selection["n_selected"] == {"coreset": 2, "full": 60}[suffix]
        assert selection["strategy"] == {"coreset": DEFAULT_STRATEGY, "full": "random"}[suffix]
    for suffix in ("coreset", "full"):
        repo = f"{TEST_USER}/{REPO_PREFIX}-{suffix}-lora"
        meta = _meta(repo, "model")
        assert meta["base_model"] == tiny_model_id and meta["datasets"] == [f"{TEST_USER}/{REPO_PREFIX}-{suffix}"]
        results = meta["model-index"][0]["results"]
        assert {r["dataset"]["name"] for r in results} == {"rte", "snli_heldout"}
    space = _meta(f"{TEST_USER}/{REPO_PREFIX}-space", "space")
    assert space["sdk"] == "gradio" and f"{TEST_USER}/{REPO_PREFIX}-coreset-lora" in space["models"]

    # Honest labels: the "full data" arm is a random slice and says so everywhere; what training saw is stated.
    stand_in = "random 60 rows (stand-in for the full 400-row pool)"
    full_card = hub.read_card_text(f"{TEST_USER}/{REPO_PREFIX}-full", "dataset")
    assert stand_in in full_card and "A **15% random subset**" in full_card
    assert "k-means" not in full_card and "## Clusters" not in full_card and "cluster and distance" not in full_card
    model_card = hub.read_card_text(f"{TEST_USER}/{REPO_PREFIX}-full-lora", "model")
    assert _meta(f"{TEST_USER}/{REPO_PREFIX}-full-lora", "model")["base_model_relation"] == "adapter"
    assert "| Rows in the training data | 60 |" in model_card
    assert "| What training saw | 2 steps x 8 rows = 16 rows seen, 0.267 epochs (only part of the data was seen) |" in model_card
    config = yaml.safe_load(Path(hub.download(f"{TEST_USER}/{REPO_PREFIX}-space", "space_config.json", repo_type="space")).read_text())
    assert config["role_titles"]["full"] == "Random 60 rows (full-data stand-in)"
    assert "16 rows (0.267 epochs)" in config["role_details"]["full"]
    space_readme = hub.read_card_text(f"{TEST_USER}/{REPO_PREFIX}-space", "space")
    assert "Random 60 rows (full-data stand-in)" in space_readme and "**all**" not in space_readme
    assert "stand-in for the full 400-row pool" in captured.err

    # Same command again: adapters and eval results are reused, every push is a no-op.
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "reusing the adapter on the 0.5% coreset" in err and "already in" in err
    assert "nothing (all repos unchanged)" in err
    assert _heads() == heads
