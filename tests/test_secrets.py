"""The token never leaks, and ``--private`` repos stay private through every command that touches them.

One full flow runs on the embedded Hub (push-subset, train --push-to, push-adapter, evaluate --push,
rebuild-subset, push-space), every repo private. Then every byte it produced is searched for the
token: stdout and stderr at the file-descriptor level, every log record (DEBUG and up), every file
written (outputs, cards, manifests, Space files, the Hub and ltd-hub caches) and every file of the
pushed repos, downloaded back. Errors that would echo user input are checked too.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import uuid
from pathlib import Path

import pytest
from conftest import LTD_NLI, OTHER_TOKEN, TEST_TOKEN, TEST_USER
from helpers import POOL_FILE, RTE_FILE, one_error_line, write_lines
from huggingface_hub import HfApi

from ltd_hub.cli.main import main

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

TOKEN_BYTES = TEST_TOKEN.encode()


def _files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def _leaks(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        data = path.read_bytes()
        if TOKEN_BYTES in data or (path.suffix == ".gz" and TOKEN_BYTES in gzip.decompress(data)):
            found.append(str(path))
    return found


def _visible_to(token, repo_id: str, repo_type: str) -> bool:
    return HfApi(token=token).repo_exists(repo_id, repo_type=repo_type)


@pytest.fixture(scope="module")
def flow(tiny_model_id: str, tmp_path_factory: pytest.TempPathFactory):
    """Run the whole flow once with private repos; yield what it printed, logged and wrote."""
    if not LTD_NLI.is_dir():
        pytest.skip("shared data not found")
    tmp = tmp_path_factory.mktemp("secrets")
    pool = write_lines(POOL_FILE, tmp / "pool.jsonl", 1, 200 * 30, 30)
    eval_file = write_lines(RTE_FILE, tmp / "rte.jsonl", stop=6)
    suffix = uuid.uuid4().hex[:6]
    repos = {
        "dataset": (f"{TEST_USER}/secret-subset-{suffix}", "dataset"),
        "coreset": (f"{TEST_USER}/secret-coreset-lora-{suffix}", "model"),
        "full": (f"{TEST_USER}/secret-full-lora-{suffix}", "model"),
        "space": (f"{TEST_USER}/secret-space-{suffix}", "space"),
    }
    out = tmp / "adapter"
    space_dir = tmp / "space"
    steps = [
        # (argv, repos that must exist after it)
        (["push-subset", pool, "--encoder", "lexical", "--size", "16", "--repo-id", repos["dataset"][0], "--private", "--token", TEST_TOKEN], ["dataset"]),
        (["rebuild-subset", repos["dataset"][0], "--source", pool], ["dataset"]),
        (["train", "--dataset", repos["dataset"][0], "--base-model", tiny_model_id, "--output-dir", out, "--max-steps", "2",
          "--per-device-train-batch-size", "8", "--max-length", "128", "--no-bf16", "--push-to", repos["coreset"][0], "--private"], ["coreset"]),
        (["push-adapter", out, "--repo-id", repos["full"][0], "--private", "--token", TEST_TOKEN], ["full"]),
        (["evaluate", "--adapter", repos["coreset"][0], "--eval-data", eval_file, "--bootstrap", "50", "--push"], ["coreset"]),
        # Re-pushing without --private must not make a private repo public.
        (["push-adapter", out, "--repo-id", repos["full"][0]], ["full"]),
        (["push-space", "--repo-id", repos["space"][0], "--full", repos["full"][0], "--subset", repos["coreset"][0],
          "--examples", eval_file, "--num-examples", "3", "--private", "--local-dir", space_dir], ["space"]),
    ]  # fmt: skip
    visibility = []
    log_text = io.StringIO()
    handler = logging.StreamHandler(log_text)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    codes = []
    try:
        for argv, touched in steps:
            codes.append(main([str(a) for a in argv]))
            for name in repos:
                repo_id, repo_type = repos[name]
                if HfApi().repo_exists(repo_id, repo_type=repo_type):
                    visibility.append((argv[0], name, HfApi().repo_info(repo_id, repo_type=repo_type).private,
                                       _visible_to(OTHER_TOKEN, repo_id, repo_type), _visible_to(False, repo_id, repo_type)))  # fmt: skip
                else:
                    assert name not in touched, f"{argv[0]} did not create {repo_id}"
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    return {"codes": codes, "repos": repos, "tmp": tmp, "logs": log_text.getvalue(), "visibility": visibility, "steps": steps}


def test_the_flow_ran(flow):
    assert flow["codes"] == [0] * len(flow["steps"])


def test_private_repos_stay_private_through_every_command(flow):
    assert flow["visibility"], "no repo was checked"
    for command, name, private, other_sees, anonymous_sees in flow["visibility"]:
        assert private, f"{name} is public after {command}"
        assert not other_sees and not anonymous_sees, f"{name} is visible to others after {command}"
    # Every repo was checked after every later command, so none was flipped to public along the way.
    assert {name for _, name, *_ in flow["visibility"]} == set(flow["repos"])


def test_token_absent_from_logs(flow):
    assert flow["logs"], "no log record was captured"
    assert TEST_TOKEN not in flow["logs"]


def test_token_absent_from_every_file_written(flow):
    from ltd_hub.paths import cache_dir

    hf_home = Path(os.environ["HF_HOME"])
    files = _files_under(flow["tmp"], hf_home, cache_dir())
    names = {p.name for p in files}
    # The scan reached the outputs, the card, the manifest, the Space files and the Hub cache.
    assert {"README.md", "training_summary.json", "adapter_model.safetensors", "app.py", "space_config.json",
            "selection_manifest.json"} <= names  # fmt: skip
    assert not _leaks(files)


def test_token_absent_from_every_pushed_file(flow, tmp_path):
    api = HfApi()
    for repo_id, repo_type in flow["repos"].values():
        folder = Path(api.snapshot_download(repo_id, repo_type=repo_type, local_dir=tmp_path / repo_type / repo_id))
        pushed = _files_under(folder)
        assert any(p.name == "README.md" for p in pushed), repo_id
        assert not _leaks(pushed), repo_id
        for commit in api.list_repo_commits(repo_id, repo_type=repo_type):
            assert TEST_TOKEN not in f"{commit.title} {commit.message}"


def test_token_absent_from_stdout_and_stderr(flow, capfd):
    """The flow's output, re-run at the file-descriptor level (no new commit: everything is in place)."""
    repos = flow["repos"]
    for argv, _ in flow["steps"]:
        if argv[0] in ("push-subset", "push-adapter", "push-space", "rebuild-subset"):
            assert main([str(a) for a in argv]) == 0
    out, err = capfd.readouterr()
    assert out and "no new commit" in out
    assert TEST_TOKEN not in out and TEST_TOKEN not in err
    assert HfApi().repo_info(repos["space"][0], repo_type="space").private


@pytest.mark.parametrize(
    "argv",
    [
        ["push-subset", "/no/such/dir/{token}.jsonl", "--encoder", "lexical", "--repo-id", f"{TEST_USER}/x"],
        ["push-adapter", "/tmp/{token}", "--repo-id", f"{TEST_USER}/x", "--token", "{token}"],
        ["push-subset", "/no/such.jsonl", "--repo-id", "ltd-other/x", "--token", "{token}", "--encoder", "lexical"],
        ["evaluate", "--adapter", f"{TEST_USER}/{{token}}", "--eval-data", "/no/such.jsonl"],
        ["train", "--config", "/no/such/{token}.yaml"],
    ],
    ids=["path", "adapter-path", "explicit-token", "repo-id", "config-path"],
)
def test_token_absent_from_error_messages(argv, capfd):
    code = main([a.format(token=TEST_TOKEN) for a in argv])
    out, err = capfd.readouterr()
    assert code == 2 and "error:" in err
    assert TEST_TOKEN not in out + err


# --------------------------------------------------------------------------- tokens of any shape, tokens as names, endpoint credentials

ODD_TOKEN = "mysecret-NOT-hf-shaped-42"  # a token given with --token that does not look like hf_...


@pytest.mark.parametrize(
    "argv",
    [
        ["push-adapter", "/tmp/{token}", "--repo-id", f"{TEST_USER}/x", "--token", "{token}"],
        ["push-space", "--repo-id", f"{TEST_USER}/x", "--full", "a/{token}", "--subset", "b/c", "--token", "{token}"],
    ],
    ids=["before-any-hub-call", "rejected-by-the-hub"],
)
def test_a_token_of_any_shape_is_redacted_from_errors(argv, capfd):
    code = main([a.format(token=ODD_TOKEN) for a in argv])
    out, err = capfd.readouterr()
    assert code == 2 and "error:" in err
    assert ODD_TOKEN not in out + err


@pytest.mark.parametrize(
    "argv",
    [
        ["push-subset", "/no/such/{token}.jsonl", "--encoder", "lexical", "--dry-run", "--output-dir", "{tmp}/out", "--token", "{token}"],
        ["evaluate", "--adapter", f"{TEST_USER}/{{token}}", "--eval-data", "/no/such.jsonl", "--token", "{token}"],
        ["rebuild-subset", "/no/such/{token}", "--token", "{token}"],
    ],
    ids=["push-subset-dry-run", "evaluate", "rebuild-subset"],
)
def test_every_commands_token_of_any_shape_is_redacted(argv, tmp_path, capfd):
    """cli.main remembers --token of every command, not only those whose parser marks it secret: a dry run
    fails before anything reads the token, and its message still masks it."""
    import uuid

    token = f"odd-{uuid.uuid4().hex}"  # new to this process: nothing else has marked it secret yet
    code = main([a.format(token=token, tmp=tmp_path) for a in argv])
    out, err = capfd.readouterr()
    assert code == 2 and "error:" in err, err
    assert token not in out + err, err


def test_redact_masks_tokens_in_use_and_url_credentials():
    from ltd_hub.hub import gateway as hub
    from ltd_hub.redact import redact

    hub.resolve_token("api-token-of-odd-shape")  # an explicit token through the Python API
    text = redact("token api-token-of-odd-shape at http://alice:s3cr3t@hub.example:8080/api and https://tok@h/x")
    assert "api-token-of-odd-shape" not in text and "s3cr3t" not in text and "alice" not in text and "tok@" not in text
    assert "http://***@hub.example:8080/api" in text


@pytest.mark.parametrize(
    "repo_id",
    [f"{TEST_USER}/{TEST_TOKEN}", TEST_TOKEN, f"{TEST_USER}/hf_{'A1b2' * 9}", f"{TEST_USER}/{ODD_TOKEN}"],
    ids=["namespaced-token", "bare-token", "token-shaped", "the-token-in-use"],
)
def test_a_token_given_as_repo_id_is_refused(repo_id, tmp_path, capfd):
    pool = write_lines(POOL_FILE, tmp_path / "pool.jsonl", stop=40)
    token = ["--token", ODD_TOKEN] if ODD_TOKEN in repo_id else []
    code = main(["push-subset", str(pool), "--encoder", "lexical", "--size", "4", "--repo-id", repo_id, *token])
    out, err = capfd.readouterr()
    assert code == 2 and "looks like a Hub token" in err, err
    assert TEST_TOKEN not in out + err and ODD_TOKEN not in out + err
    names = [r.id for r in HfApi().list_datasets(author=TEST_USER)]
    assert not any(TEST_TOKEN in n or ODD_TOKEN in n or "A1b2A1b2" in n for n in names)


@pytest.mark.parametrize(
    "repo_id",
    [f"{TEST_USER}/{TEST_TOKEN}", TEST_TOKEN, f"{TEST_USER}/hf_{'C3d4' * 9}"],
    ids=["namespaced-token", "bare-token", "token-shaped"],
)
def test_a_token_given_as_repo_id_is_refused_by_a_dry_run(repo_id, tmp_path, capfd):
    """--dry-run writes the repo id into the card and prints it: refused before any work, nothing written."""
    pool = write_lines(POOL_FILE, tmp_path / "pool.jsonl", stop=40)
    out_dir = tmp_path / "out"
    code = main(
        ["push-subset", str(pool), "--encoder", "lexical", "--size", "4", "--dry-run", "--output-dir", str(out_dir), "--repo-id", repo_id]
    )
    out, err = capfd.readouterr()
    assert code == 2 and "looks like a Hub token" in one_error_line(err), err
    assert not out_dir.exists()


def test_endpoint_credentials_are_not_echoed(monkeypatch, capfd):
    """HF_ENDPOINT=http://user:password@host: the host may be named in an error, the credentials never."""
    import socket

    from huggingface_hub import constants

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://carol:pa55w0rd@127.0.0.1:{closed}")
    monkeypatch.setenv("LTD_HUB_MAX_RETRIES", "0")
    code = main(["push-space", "--repo-id", f"{TEST_USER}/x", "--full", "a/b", "--subset", "c/d"])
    out, err = capfd.readouterr()
    assert code == 2 and "error:" in err and f"127.0.0.1:{closed}" in err, err
    assert "pa55w0rd" not in out + err and "carol" not in out + err

    from ltd_hub.hub import gateway as hub

    assert "pa55w0rd" not in hub._commit_url(f"{TEST_USER}/x", "dataset", "0" * 40)


def test_endpoint_credentials_stay_out_of_api_messages(monkeypatch):
    """Library errors that name the Hub (an unknown encoder, the quick start's base model) show its host only."""
    from huggingface_hub import constants

    from ltd_hub.errors import UsageError
    from ltd_hub.hub import gateway as hub
    from ltd_hub.selection.encoders import get_encoder

    monkeypatch.setenv("HF_ENDPOINT", f"http://erin:hunter22@{constants.ENDPOINT.split('://', 1)[1]}")
    with pytest.raises(UsageError, match="not found on the Hub") as missing:
        get_encoder(f"sentence-transformers:{TEST_USER}/no-such-encoder").resolve()
    assert "hunter22" not in str(missing.value) and "erin" not in str(missing.value)
    assert constants.ENDPOINT.split("://", 1)[1] in str(missing.value)
    monkeypatch.setattr(constants, "ENDPOINT", "http://erin:hunter22@hub.example")
    assert hub.display_endpoint() == "http://***@hub.example"
