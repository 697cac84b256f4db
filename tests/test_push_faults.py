"""Every push path against every injected fault at every Hub endpoint, on the session's embedded Hub.

A push must end with the new commit (transient faults are retried, a response lost after the
commit landed makes no duplicate) or, when the fault persists, with the repo exactly as before
and one ``error:`` line saying what to re-run. Repo state is read back with the real clients.
Re-running a push that landed makes no new commit; two pushes at once both land or one fails
with a conflict message.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import TEST_USER
from helpers import POOL_FILE, RTE_FILE, faults, history, repo_files, write_lines  # noqa: F401  (faults: a fixture)
from huggingface_hub import HfApi

from ltd_hub.cli.main import main
from ltd_hub.hub_server.faults import ENDPOINTS, KINDS
from ltd_hub.hub_server.serve import running_hub

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

POOL_ROWS = 200
SUBSET_SIZE = 12
USER_NOTE = "Notes written by hand on the Hub, kept by every push."
_real_sleep = time.sleep


class FastClock:
    """Stands in for the ``time`` module of the retry loops: records each requested delay, waits ~0."""

    def __init__(self) -> None:
        self.requested: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.requested.append(float(seconds))
        _real_sleep(min(float(seconds), 0.005))

    def __getattr__(self, name: str):
        return getattr(time, name)


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> FastClock:
    """Backoff in milliseconds: ours through LTD_HUB_RETRY_BASE, huggingface_hub's through its clock."""
    import huggingface_hub.file_download as hf_download
    import huggingface_hub.utils._http as hf_http

    import ltd_hub.hub.gateway as gateway

    clock = FastClock()
    monkeypatch.setenv("LTD_HUB_RETRY_BASE", "0.01")
    monkeypatch.setenv("LTD_HUB_MAX_RETRIES", "3")
    for module in (hf_http, hf_download, gateway):
        monkeypatch.setattr(module, "time", clock)
    return clock


# --------------------------------------------------------------------------- data and repo helpers


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 rows spread over the real pool, so several source datasets appear."""
    if not POOL_FILE.is_file():
        pytest.skip(f"shared data not found at {POOL_FILE}")
    return write_lines(POOL_FILE, tmp_path_factory.mktemp("faults-pool") / "pool.jsonl", 0, POOL_ROWS * 50, 50)


def new_id(prefix: str) -> str:
    return f"{TEST_USER}/{prefix}-{uuid.uuid4().hex[:8]}"


def seed_repo(repo_id: str, repo_type: str) -> str:
    """Create ``repo_id`` holding only a hand-written README (so a push must read and merge it); returns the head."""
    api = HfApi()
    api.create_repo(repo_id, repo_type=repo_type, space_sdk="gradio" if repo_type == "space" else None)
    card = f"---\nlicense: apache-2.0\n---\n# {repo_id}\n\n{USER_NOTE}\n"
    return api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo_id, repo_type=repo_type).oid


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def fired(handle, since: int) -> set[tuple[str, str]]:
    """``(endpoint, kind)`` of the faults fired since log position ``since``."""
    out = set()
    for kind, method, path in handle.fault_log[since:]:
        for name, (methods, pattern) in ENDPOINTS.items():
            if method in methods and pattern.search(path):
                out.add((name, kind))
    return out


def assert_landed(repo_id: str, repo_type: str, before: list[str], files: list[str]) -> str:
    """Exactly one new commit, holding ``files`` and the hand-written note of the README."""
    after = history(repo_id, repo_type)
    assert after[1:] == before, f"expected exactly one new commit on top of {before[:1]}, got {after}"
    assert set(files) <= set(repo_files(repo_id, repo_type))
    readme = HfApi().hf_hub_download(repo_id, "README.md", repo_type=repo_type, revision=after[0])
    assert USER_NOTE in Path(readme).read_text(encoding="utf-8")
    return after[0]


def assert_unchanged(repo_id: str, repo_type: str, before: list[str], err: str) -> None:
    """The repo is exactly as before and stderr has one error line saying what to re-run."""
    assert history(repo_id, repo_type) == before
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert "re-run" in lines[0] or "retry" in lines[0], lines[0]
    assert "Traceback" not in err


SUBSET_FILES = ["README.md", "selection_manifest.json", "data/train-00000-of-00001.parquet"]


def push_subset_args(pool: Path, repo_id: str, seed: int = 0) -> list:
    return ["push-subset", pool, "--repo-id", repo_id, "--encoder", "lexical", "--size", SUBSET_SIZE, "--seed", seed, "--format", "json"]


# --------------------------------------------------------------------------- push-subset: every endpoint x every kind


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_push_subset_recovers_from_one_fault(capsys, faults, pool_file, endpoint, kind):
    repo_id = new_id(f"pf-{endpoint}-{kind}")
    seed_repo(repo_id, "dataset")
    before = history(repo_id, "dataset")
    mark = len(faults.fault_log)
    faults.set_faults([f"{endpoint}:{kind}:times=1:retry_after=0"])
    code, out, err = cli(capsys, *push_subset_args(pool_file, repo_id))
    faults.set_faults([])
    assert code == 0, err
    assert (endpoint, kind) in fired(faults, mark), "the fault never fired: this push does not use the endpoint"
    head = assert_landed(repo_id, "dataset", before, SUBSET_FILES)
    assert json.loads(out)["revision"] == head
    if kind == "lost":  # the commit (or upload) landed but the answer was cut: the re-run sees it, no duplicate
        code, out, err = cli(capsys, *push_subset_args(pool_file, repo_id))
        assert code == 0 and history(repo_id, "dataset")[0] == head, err
        assert json.loads(out)["revision"] == head


PERSISTENT = [
    ("preupload", "503"),
    ("lfs-batch", "500"),
    ("lfs-put", "drop"),
    ("commit", "429"),
    ("commit", "drop"),
    ("resolve", "500"),
]


@pytest.mark.parametrize(("endpoint", "kind"), PERSISTENT)
def test_push_subset_gives_up_cleanly_on_a_persistent_fault(capsys, faults, pool_file, endpoint, kind):
    repo_id = new_id(f"pf-down-{endpoint}-{kind}")
    seed_repo(repo_id, "dataset")
    before = history(repo_id, "dataset")
    faults.set_faults([f"{endpoint}:{kind}:retry_after=0"])
    code, _, err = cli(capsys, *push_subset_args(pool_file, repo_id))
    faults.set_faults([])
    assert code == 2
    assert_unchanged(repo_id, "dataset", before, err)
    # The line said to re-run: doing so now lands the subset.
    code, out, err = cli(capsys, *push_subset_args(pool_file, repo_id))
    assert code == 0, err
    assert_landed(repo_id, "dataset", before, SUBSET_FILES)


def test_persistent_fault_on_a_new_repo_leaves_no_repo_behind(capsys, faults, pool_file):
    repo_id = new_id("pf-new")
    faults.set_faults(["commit:503"])
    code, _, err = cli(capsys, *push_subset_args(pool_file, repo_id))
    faults.set_faults([])
    assert code == 2 and len(error_lines(err)) == 1, err
    assert not HfApi().repo_exists(repo_id, repo_type="dataset")


def test_retry_after_is_honoured(capsys, faults, pool_file, fast_retries):
    repo_id = new_id("pf-retry-after")
    seed_repo(repo_id, "dataset")
    faults.set_faults(["preupload:429:retry_after=3:times=1", "commit:429:retry_after=4:times=1"])
    code, _, err = cli(capsys, *push_subset_args(pool_file, repo_id))
    faults.set_faults([])
    assert code == 0, err
    assert any(s >= 3 for s in fast_retries.requested), fast_retries.requested
    assert 4 in fast_retries.requested, "the commit retry did not wait the Retry-After seconds"


def test_rerun_of_a_landed_push_makes_no_new_commit(capsys, pool_file):
    repo_id = new_id("pf-rerun")
    code, out, err = cli(capsys, *push_subset_args(pool_file, repo_id))
    assert code == 0, err
    first = history(repo_id, "dataset")
    code, out2, err = cli(capsys, *push_subset_args(pool_file, repo_id))
    assert code == 0, err
    assert history(repo_id, "dataset") == first
    assert json.loads(out2)["revision"] == json.loads(out)["revision"] == first[0]


# --------------------------------------------------------------------------- two pushes at once


def _push_in_threads(pool: Path, repo_id: str, seeds: tuple[int, int], barrier_on_commit: bool):
    """Run two library pushes of different selections at once; optionally both commit on the same parent."""
    from huggingface_hub import HfApi as Api

    from ltd_hub.selection.subset import push_subset

    barrier = threading.Barrier(2, timeout=60)
    original = Api.create_commit
    calls = {"n": 0}
    lock = threading.Lock()

    def create_commit(self, *args, **kwargs):
        with lock:
            calls["n"] += 1
            first_round = calls["n"] <= 2
        if barrier_on_commit and first_round:
            barrier.wait()  # both read the same head before either commits
        return original(self, *args, **kwargs)

    outcomes: dict[int, object] = {}

    def run(seed: int) -> None:
        try:
            outcomes[seed] = push_subset(str(pool), repo_id, encoder="lexical", size=SUBSET_SIZE, seed=seed, progress=False)
        except Exception as exc:  # noqa: BLE001 - the outcome is checked by the test
            outcomes[seed] = exc

    Api.create_commit = create_commit
    try:
        threads = [threading.Thread(target=run, args=(seed,)) for seed in seeds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        Api.create_commit = original
    return outcomes


@pytest.mark.parametrize("same_parent", [True, False], ids=["same-parent", "free-running"])
def test_two_pushes_at_once_both_land(pool_file, same_parent):
    from ltd_hub.errors import HubError

    repo_id = new_id("pf-race")
    seed_repo(repo_id, "dataset")
    before = history(repo_id, "dataset")
    outcomes = _push_in_threads(pool_file, repo_id, (1, 2), barrier_on_commit=same_parent)
    landed = [o for o in outcomes.values() if not isinstance(o, Exception)]
    failed = [o for o in outcomes.values() if isinstance(o, Exception)]
    for exc in failed:  # a clean failure is a one-line conflict message, nothing else
        assert isinstance(exc, HubError) and "re-run" in str(exc), repr(exc)
    assert landed, outcomes
    commits = history(repo_id, "dataset")
    assert commits[len(commits) - len(before) :] == before
    assert len(commits) == len(before) + len(landed), "every push that reported success has its own commit"
    # Each commit is a whole push: its manifest describes exactly the rows of its Parquet file.
    for revision in commits[: len(landed)]:
        _assert_consistent_subset(repo_id, revision)
    if same_parent:
        assert len(landed) == 2, "the loser of the race re-reads the head and commits on top"


def _assert_consistent_subset(repo_id: str, revision: str) -> None:
    import pandas as pd

    api = HfApi()
    manifest = json.loads(Path(api.hf_hub_download(repo_id, "selection_manifest.json", repo_type="dataset", revision=revision)).read_text())
    rows = pd.read_parquet(api.hf_hub_download(repo_id, "data/train-00000-of-00001.parquet", repo_type="dataset", revision=revision))
    assert len(rows) == manifest["selection"]["n_selected"] == SUBSET_SIZE
    readme = Path(api.hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=revision)).read_text()
    assert USER_NOTE in readme


def test_a_push_that_keeps_losing_the_race_fails_with_a_conflict_line(capsys, pool_file, monkeypatch):
    """Someone commits before each of our attempts: after a few re-reads we stop with one clear line."""
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub import HfApi as Api

    repo_id = new_id("pf-conflict")
    seed_repo(repo_id, "dataset")
    original = Api.create_commit
    intruder = {"n": 0}

    def create_commit(self, repo, operations, **kwargs):
        intruder["n"] += 1
        change = [CommitOperationAdd(path_in_repo="other.txt", path_or_fileobj=f"{intruder['n']}\n".encode())]
        original(Api(), repo_id, change, commit_message="someone else", repo_type="dataset")
        return original(self, repo, operations, **kwargs)

    monkeypatch.setattr(Api, "create_commit", create_commit)
    before_ours = history(repo_id, "dataset")
    code, _, err = cli(capsys, *push_subset_args(pool_file, repo_id))
    monkeypatch.setattr(Api, "create_commit", original)
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and "changed while pushing" in lines[0] and "re-run" in lines[0], err
    commits = history(repo_id, "dataset")
    assert len(commits) == len(before_ours) + intruder["n"], "only the intruder's commits landed"
    assert "selection_manifest.json" not in repo_files(repo_id, "dataset")


# --------------------------------------------------------------------------- train --push-to, push-adapter, evaluate --push, push-space

ALL_ENDPOINTS_ONCE = {kind: [f"{endpoint}:{kind}:times=1:retry_after=0" for endpoint in ENDPOINTS] for kind in KINDS}
ADAPTER_FILES = ["README.md", "adapter_config.json", "adapter_model.safetensors", "training_summary.json"]


@pytest.fixture(scope="module")
def eval_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six RTE rows of one template (inputs, targets, answer_choices)."""
    return write_lines(RTE_FILE, tmp_path_factory.mktemp("faults-eval") / "rte.jsonl", stop=6)


@pytest.fixture(scope="module")
def trained(hub: str, tiny_model_id: str, pool_file: Path, tmp_path_factory: pytest.TempPathFactory):
    """``train --push-to`` once, with the Hub refusing every commit: the adapter must survive on disk."""
    import huggingface_hub.file_download as hf_download
    import huggingface_hub.utils._http as hf_http

    import ltd_hub.hub.gateway as gateway

    out = tmp_path_factory.mktemp("faults-train") / "adapter"
    repo_id = new_id("pf-train")
    handle = running_hub(hub)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LTD_HUB_RETRY_BASE", "0.01")
        patch.setenv("LTD_HUB_MAX_RETRIES", "3")
        for module in (hf_http, hf_download, gateway):
            patch.setattr(module, "time", FastClock())
        handle.set_faults(["commit:503", "preupload:429:retry_after=0:times=1"])
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                code = main(["train", "--dataset", str(pool_file), "--base-model", tiny_model_id, "--output-dir", str(out),
                             "--max-steps", "2", "--max-train-samples", "16", "--per-device-train-batch-size", "8",
                             "--max-length", "128", "--no-bf16", "--push-to", repo_id])  # fmt: skip
        finally:
            handle.set_faults([])
    return {"dir": out, "repo_id": repo_id, "code": code, "err": err.getvalue()}


def _digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_train_push_to_that_cannot_push_keeps_the_adapter_and_names_the_retry(trained, capsys, faults):
    assert trained["code"] == 2
    err = trained["err"]
    lines = error_lines(err)
    assert len(lines) == 1, err
    retry = f"ltd-hub push-adapter {trained['dir']} --repo-id {trained['repo_id']}"
    assert retry in lines[0] and "saved in" in lines[0]
    assert "re-run the same command" not in lines[0], "re-running train would train again: the line must name push-adapter only"
    assert not HfApi().repo_exists(trained["repo_id"]), "the failed push left a repo behind"
    local = _digest(trained["dir"])
    assert set(ADAPTER_FILES) <= set(local)
    # The command the line names lands the adapter, through one fault at every endpoint.
    faults.set_faults(ALL_ENDPOINTS_ONCE["503"])
    code, out, err = cli(capsys, "push-adapter", trained["dir"], "--repo-id", trained["repo_id"])
    faults.set_faults([])
    assert code == 0, err
    assert set(ADAPTER_FILES) <= set(repo_files(trained["repo_id"], "model"))
    assert len(history(trained["repo_id"], "model")) == 2  # the initial commit + the adapter
    assert _digest(trained["dir"]) == local, "pushing changed the local output"


@pytest.mark.parametrize("kind", KINDS)
def test_push_adapter_recovers_from_a_fault_at_every_endpoint(capsys, faults, trained, kind):
    repo_id = new_id(f"pf-adapter-{kind}")
    seed_repo(repo_id, "model")
    before = history(repo_id, "model")
    mark = len(faults.fault_log)
    faults.set_faults(ALL_ENDPOINTS_ONCE[kind])
    code, out, err = cli(capsys, "push-adapter", trained["dir"], "--repo-id", repo_id)
    faults.set_faults([])
    assert code == 0, err
    assert {e for e, _ in fired(faults, mark)} == set(ENDPOINTS)
    head = assert_landed(repo_id, "model", before, ADAPTER_FILES)
    assert head[:12] in out
    code, out, err = cli(capsys, "push-adapter", trained["dir"], "--repo-id", repo_id)
    assert code == 0 and "no new commit" in out, err
    assert history(repo_id, "model")[0] == head


def test_push_adapter_gives_up_cleanly(capsys, faults, trained):
    repo_id = new_id("pf-adapter-down")
    seed_repo(repo_id, "model")
    before = history(repo_id, "model")
    faults.set_faults(["lfs-put:503"])
    code, _, err = cli(capsys, "push-adapter", trained["dir"], "--repo-id", repo_id)
    faults.set_faults([])
    assert code == 2
    assert_unchanged(repo_id, "model", before, err)


@pytest.fixture(scope="module")
def pushed_adapters(trained) -> dict[str, str]:
    """The trained adapter on the Hub under two names (full and subset roles of the Space)."""
    from ltd_hub.adapters import push_adapter

    names = {"full": new_id("pf-full"), "subset": new_id("pf-subset")}
    for repo_id in names.values():
        push_adapter(trained["dir"], repo_id)
    return names


def _fresh_adapter_repo(trained) -> str:
    """A new adapter repo with the hand-written note in its card, for a run that records results."""
    from ltd_hub.adapters import push_adapter

    repo_id = new_id("pf-eval")
    seed_repo(repo_id, "model")
    push_adapter(trained["dir"], repo_id)
    return repo_id


@pytest.mark.parametrize("kind", KINDS)
def test_evaluate_push_recovers_from_a_fault_at_every_endpoint(capsys, faults, trained, eval_file, kind):
    repo_id = _fresh_adapter_repo(trained)
    before = history(repo_id, "model")
    mark = len(faults.fault_log)
    faults.set_faults(ALL_ENDPOINTS_ONCE[kind])
    argv = ["evaluate", "--adapter", repo_id, "--eval-data", eval_file, "--batch-size", "8", "--bootstrap", "50", "--push"]
    code, out, err = cli(capsys, *argv)
    faults.set_faults([])
    assert code == 0, err
    assert {"preupload", "commit", "resolve"} <= {e for e, _ in fired(faults, mark)}
    head = assert_landed(repo_id, "model", before, ADAPTER_FILES + ["eval_results.json"])
    card = Path(HfApi().hf_hub_download(repo_id, "README.md", revision=head)).read_text()
    assert "model-index" in card
    if kind == "lost":
        code, out, err = cli(capsys, *argv)
        assert code == 0 and "no new commit" in out, err
        assert history(repo_id, "model")[0] == head


def test_evaluate_push_gives_up_cleanly(capsys, faults, trained, eval_file):
    repo_id = _fresh_adapter_repo(trained)
    before = history(repo_id, "model")
    faults.set_faults(["commit:500"])
    code, _, err = cli(capsys, "evaluate", "--adapter", repo_id, "--eval-data", eval_file, "--bootstrap", "50", "--push")
    faults.set_faults([])
    assert code == 2
    assert_unchanged(repo_id, "model", before, err)


SPACE_FILES = ["README.md", "app.py", "requirements.txt", "space_config.json"]


def _push_space_args(repo_id: str, adapters: dict[str, str], eval_file: Path, local: Path | None = None) -> list:
    argv = ["push-space", "--repo-id", repo_id, "--full", adapters["full"], "--subset", adapters["subset"],
            "--examples", eval_file, "--num-examples", "3"]  # fmt: skip
    return argv + (["--local-dir", local] if local else [])


@pytest.mark.parametrize("kind", KINDS)
def test_push_space_recovers_from_a_fault_at_every_endpoint(capsys, faults, pushed_adapters, eval_file, kind):
    repo_id = new_id(f"pf-space-{kind}")
    seed_repo(repo_id, "space")
    before = history(repo_id, "space")
    mark = len(faults.fault_log)
    faults.set_faults(ALL_ENDPOINTS_ONCE[kind])
    code, out, err = cli(capsys, *_push_space_args(repo_id, pushed_adapters, eval_file))
    faults.set_faults([])
    assert code == 0, err
    assert {"preupload", "commit", "resolve"} <= {e for e, _ in fired(faults, mark)}
    head = assert_landed(repo_id, "space", before, SPACE_FILES)
    if kind == "lost":
        code, out, err = cli(capsys, *_push_space_args(repo_id, pushed_adapters, eval_file))
        assert code == 0 and "no new commit" in out, err
        assert history(repo_id, "space")[0] == head


def test_push_space_gives_up_cleanly_and_keeps_the_local_copy(capsys, faults, pushed_adapters, eval_file, tmp_path):
    repo_id = new_id("pf-space-down")
    seed_repo(repo_id, "space")
    before = history(repo_id, "space")
    faults.set_faults(["preupload:drop"])
    code, _, err = cli(capsys, *_push_space_args(repo_id, pushed_adapters, eval_file, tmp_path / "space"))
    faults.set_faults([])
    assert code == 2
    assert_unchanged(repo_id, "space", before, err)
    assert set(SPACE_FILES) <= {p.name for p in (tmp_path / "space").iterdir()}
