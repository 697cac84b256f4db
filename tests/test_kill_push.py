"""A push killed (SIGKILL) at any moment leaves the repo at the old commit or the new one, never in
between, and the local outputs intact; re-running the command then finishes the push.

The pushes run as real ``ltd-hub`` subprocesses against the session's embedded Hub. Kill moments
are drawn from a seeded generator, and two are pinned to the riskiest windows with injected
faults: after the LFS upload but before the commit, and after the commit landed but before its
answer reached the client.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import TEST_USER
from helpers import POOL_FILE, faults, history, repo_files, write_lines  # noqa: F401  (faults: a fixture)

from ltd_hub.cli.main import main

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

SUBSET = ["--encoder", "lexical", "--size", "12"]
RNG = random.Random(7)


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not POOL_FILE.is_file():
        pytest.skip(f"shared data not found at {POOL_FILE}")
    return write_lines(POOL_FILE, tmp_path_factory.mktemp("kill-pool") / "pool.jsonl", 3, 200 * 40, 40)


def start(*argv, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ltd_hub.cli", *map(str, argv)],
        env={**os.environ, "LTD_HUB_RETRY_BASE": "0.01", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_after(proc: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL ``proc`` after ``seconds`` unless it ended first; True when it was killed."""
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def kill_when(proc: subprocess.Popen, condition, delay: float = 0.0, timeout: float = 120) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after ``condition()`` first holds; True when it was killed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if condition():
            return kill_after(proc, delay)
        time.sleep(0.01)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        pytest.fail("the condition to kill on never held")
    return False


def assert_old_or_new(repo_id: str, repo_type: str, old: list[str], new_files: dict[str, str], compared: list[str]) -> str:
    """Every commit since ``old`` is a whole push of ``new_files``; returns "old" or "new"."""
    commits = history(repo_id, repo_type)
    assert commits[len(commits) - len(old) :] == old, "history before the push was rewritten"
    added = commits[: len(commits) - len(old)]
    assert len(added) <= 1, f"one push made {len(added)} commits"
    for revision in added:
        tree = repo_files(repo_id, repo_type, revision)
        assert {p: tree.get(p) for p in compared} == {p: new_files[p] for p in compared}, "a commit holds half a push"
    return "new" if added else "old"


# --------------------------------------------------------------------------- push-subset


SUBSET_COMPARED = ["data/train-00000-of-00001.parquet", "selection_manifest.json"]


@pytest.fixture(scope="module")
def subset_versions(pool_file: Path) -> dict[str, dict[str, str]]:
    """The files of the old (seed 0) and new (seed 1) subsets, pushed once to a reference repo each."""
    out = {}
    for name, seed in (("old", 0), ("new", 1)):
        repo_id = f"{TEST_USER}/kill-ref-{name}-{uuid.uuid4().hex[:6]}"
        assert main(["push-subset", str(pool_file), "--repo-id", repo_id, "--seed", str(seed), *SUBSET]) == 0
        out[name] = repo_files(repo_id, "dataset", "main")
    assert out["old"]["data/train-00000-of-00001.parquet"] != out["new"]["data/train-00000-of-00001.parquet"]
    return out


def _subset_repo(pool_file: Path) -> tuple[str, list[str]]:
    repo_id = f"{TEST_USER}/kill-{uuid.uuid4().hex[:8]}"
    assert main(["push-subset", str(pool_file), "--repo-id", repo_id, "--seed", "0", *SUBSET]) == 0
    return repo_id, history(repo_id, "dataset")


def _finish_and_rerun(pool_file: Path, repo_id: str, old: list[str], new_files: dict[str, str]) -> None:
    """Re-running the killed command lands the new subset; once more makes no new commit."""
    argv = ["push-subset", str(pool_file), "--repo-id", repo_id, "--seed", "1", *SUBSET]
    assert main(argv) == 0
    assert assert_old_or_new(repo_id, "dataset", old, new_files, SUBSET_COMPARED) == "new"
    head = history(repo_id, "dataset")
    assert main(argv) == 0
    assert history(repo_id, "dataset") == head


@pytest.mark.parametrize("moment", range(3))
def test_push_subset_killed_at_a_random_moment(pool_file, subset_versions, moment):
    repo_id, old = _subset_repo(pool_file)
    proc = start("push-subset", pool_file, "--repo-id", repo_id, "--seed", "1", *SUBSET)
    # Spread over start-up, selection and the push itself (a whole run takes a few seconds here).
    killed = kill_after(proc, RNG.uniform(0.3, 6.0))
    state = assert_old_or_new(repo_id, "dataset", old, subset_versions["new"], SUBSET_COMPARED)
    assert killed or state == "new", proc.stderr.read()
    _finish_and_rerun(pool_file, repo_id, old, subset_versions["new"])


def test_push_subset_killed_between_upload_and_commit_stays_old(pool_file, subset_versions, faults):
    repo_id, old = _subset_repo(pool_file)
    mark = len(faults.fault_log)
    # The commit is answered 429 + Retry-After: 30, so the client sits between upload and commit.
    faults.set_faults(["commit:429:retry_after=30:times=1"])
    proc = start("push-subset", pool_file, "--repo-id", repo_id, "--seed", "1", *SUBSET)
    assert kill_when(proc, lambda: len(faults.fault_log) > mark, delay=0.2)
    assert assert_old_or_new(repo_id, "dataset", old, subset_versions["new"], SUBSET_COMPARED) == "old"
    faults.set_faults([])
    _finish_and_rerun(pool_file, repo_id, old, subset_versions["new"])


def test_push_subset_killed_after_the_commit_landed_unanswered_is_new(pool_file, subset_versions, faults):
    repo_id, old = _subset_repo(pool_file)
    mark = len(faults.fault_log)
    faults.set_faults(["commit:lost:times=1"])
    # A long backoff keeps the client waiting to retry after the lost answer: it is killed there.
    proc = start("push-subset", pool_file, "--repo-id", repo_id, "--seed", "1", *SUBSET, env={"LTD_HUB_RETRY_BASE": "20"})
    assert kill_when(proc, lambda: len(faults.fault_log) > mark, delay=0.3)
    faults.set_faults([])
    assert assert_old_or_new(repo_id, "dataset", old, subset_versions["new"], SUBSET_COMPARED) == "new"
    head = history(repo_id, "dataset")
    assert main(["push-subset", str(pool_file), "--repo-id", repo_id, "--seed", "1", *SUBSET]) == 0
    assert history(repo_id, "dataset") == head, "the re-run after a lost answer made a duplicate commit"


def test_push_killed_right_after_creating_the_repo_leaves_nothing_to_clean_by_hand(pool_file, subset_versions, faults, capsys):
    """kill -9 between creating a new repo and its first commit leaves a repo holding only .gitattributes.

    No cleanup can run after SIGKILL, so the next run deals with it: a command that reads the repo
    says how to delete it, and the re-run push fills it as if it were new (one commit, no error).
    """
    repo_id = f"{TEST_USER}/kill-fresh-{uuid.uuid4().hex[:8]}"
    mark = len(faults.fault_log)
    faults.set_faults(["commit:429:retry_after=30:times=1"])  # the client waits between creation and commit
    proc = start("push-subset", pool_file, "--repo-id", repo_id, "--seed", "1", *SUBSET)
    assert kill_when(proc, lambda: len(faults.fault_log) > mark, delay=0.2)
    faults.set_faults([])
    assert set(repo_files(repo_id, "dataset")) == {".gitattributes"}, "the kill did not land between creation and commit"
    # A command reading such a repo says how to clean it (here: what a killed push-adapter leaves).
    from huggingface_hub import HfApi

    from ltd_hub.adapters import read_adapter_config
    from ltd_hub.errors import UsageError

    model_id = f"{TEST_USER}/kill-fresh-model-{uuid.uuid4().hex[:8]}"
    HfApi().create_repo(model_id)
    with pytest.raises(UsageError, match=f"hf repos delete {model_id} --repo-type model"):
        read_adapter_config(model_id)
    argv = ["push-subset", str(pool_file), "--repo-id", repo_id, "--seed", "1", *SUBSET]
    assert main(argv) == 0
    assert "interrupted push" in capsys.readouterr().err
    assert len(history(repo_id, "dataset")) == 2  # the creation commit and one push
    tree = repo_files(repo_id, "dataset")
    assert {p: tree.get(p) for p in SUBSET_COMPARED} == {p: subset_versions["new"][p] for p in SUBSET_COMPARED}


# --------------------------------------------------------------------------- push-adapter


ADAPTER_COMPARED = ["adapter_model.safetensors", "adapter_config.json"]


def _make_adapter(base_id: str, folder: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_id)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(folder)
    (folder / "README.md").write_text(f"---\nlibrary_name: peft\nbase_model: {base_id}\n---\nAdapter {seed}.\n", encoding="utf-8")
    return folder


def _digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def adapters(tiny_model_id: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("kill-adapters")
    return {"old": _make_adapter(tiny_model_id, tmp / "old", 1), "new": _make_adapter(tiny_model_id, tmp / "new", 2)}


@pytest.mark.parametrize("moment", range(2))
def test_push_adapter_killed_at_a_random_moment_keeps_folder_and_repo_whole(adapters, moment, faults):
    from ltd_hub.adapters import push_adapter

    repo_id = f"{TEST_USER}/kill-adapter-{uuid.uuid4().hex[:8]}"
    push_adapter(adapters["old"], repo_id)
    old = history(repo_id, "model")
    local = _digest(adapters["new"])
    mark = len(faults.fault_log)
    if moment == 1:  # pin one kill to the window between the LFS upload and the commit
        faults.set_faults(["commit:503:times=1"])
        proc = start("push-adapter", adapters["new"], "--repo-id", repo_id, env={"LTD_HUB_RETRY_BASE": "20"})
        killed = kill_when(proc, lambda: len(faults.fault_log) > mark, delay=RNG.uniform(0.0, 0.5))
    else:
        proc = start("push-adapter", adapters["new"], "--repo-id", repo_id)
        killed = kill_after(proc, RNG.uniform(0.5, 5.0))
    faults.set_faults([])
    assert _digest(adapters["new"]) == local, "the kill damaged the local adapter folder"
    # The command the user re-runs lands the new adapter; its files tell what "new" is.
    assert main(["push-adapter", str(adapters["new"]), "--repo-id", repo_id]) == 0
    new_files = repo_files(repo_id, "model", "main")
    commits = history(repo_id, "model")
    assert commits[len(commits) - len(old) :] == old
    for revision in commits[: len(commits) - len(old)]:
        tree = repo_files(repo_id, "model", revision)
        assert {p: tree.get(p) for p in ADAPTER_COMPARED} == {p: new_files[p] for p in ADAPTER_COMPARED}, "a commit holds half a push"
    assert len(commits) - len(old) == 1, "the killed push and its re-run made more than one commit"
    if moment == 1:
        assert killed
    assert _digest(adapters["new"]) == local
