"""One table of bad inputs across every command: exit code 2, one ``error:`` line naming the fix,
no traceback (unless LTD_HUB_DEBUG=1), nothing pushed and nothing half-written.

"Nothing pushed" is checked on the whole embedded Hub: the branch heads of every repo of every
type are the same before and after the command, and no repo appeared.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import LTD_NLI, OTHER_TOKEN, OTHER_USER, READ_TOKEN, TEST_USER
from helpers import POOL_FILE, RTE_FILE, faults, write_lines  # noqa: F401  (faults: a fixture)

from ltd_hub.cli.main import main

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")


@dataclass(frozen=True)
class Case:
    """A bad command line; ``{name}`` placeholders are filled from the ``ctx`` fixture."""

    id: str
    argv: tuple[str, ...]
    needle: str  # must appear in the error line: the part that names the problem or the fix
    env: dict[str, str | None] = field(default_factory=dict)
    setup: str | None = None


def C(case_id: str, argv: str, needle: str, *, env: dict | None = None, setup: str | None = None) -> Case:
    return Case(case_id, tuple(argv.split()), needle, env or {}, setup)


PS = "push-subset {pool} --encoder lexical --size 4"
TRAIN = "train --dataset {pool} --base-model {tiny} --output-dir {out} --max-steps 2 --max-length 128 --no-bf16"
SPACE = "push-space --repo-id {new_space} --full {adapter_repo} --subset {adapter_repo2} --examples {eval} --local-dir {out}"

CASES = [
    # push-subset
    C("subset-missing-source", "push-subset {tmp}/nope.jsonl --encoder lexical --repo-id {new_dataset}", "nope.jsonl"),
    C("subset-ratio-zero", PS.replace("--size 4", "--ratio 0") + " --repo-id {new_dataset}", "--ratio"),
    C("subset-size-zero", PS.replace("--size 4", "--size 0") + " --repo-id {new_dataset}", "--size"),
    C("subset-bad-repo-id", PS + " --repo-id bad/repo!!/x", "invalid repo id"),
    C("subset-other-namespace", PS + f" --repo-id {OTHER_USER}/mine", f"--repo-id {TEST_USER}/mine"),
    C("subset-no-token", PS + " --repo-id {new_dataset}", "HF_TOKEN", env={"HF_TOKEN": None}),
    C("subset-read-only-token", PS + f" --repo-id {{new_dataset}} --token {READ_TOKEN}", "write access"),
    C("subset-invalid-token", PS + " --repo-id {new_dataset} --token hf_notAValidTokenAtAll000000000000", "hf auth login"),
    C("subset-unknown-strategy", PS + " --strategy best --repo-id {new_dataset}", "kcenter"),
    C("subset-unknown-encoder", "push-subset {pool} --encoder magic --size 4 --repo-id {new_dataset}", "lexical"),
    C("subset-bad-filter", PS + " --filter nocolumn --repo-id {new_dataset}", "COLUMN=VALUE"),
    C("subset-output-dir-without-dry-run", PS + " --repo-id {new_dataset} --output-dir {out}", "--dry-run"),
    C("subset-repo-is-a-model", PS + " --repo-id {model_repo}", "choose another --repo-id"),
    C(
        "subset-revision-missing",
        "push-subset {dataset_repo} --revision no-such-branch --encoder lexical --dry-run --output-dir {out}",
        "--revision",
    ),
    C("subset-private-source-of-other", "push-subset {other_private} --encoder lexical --dry-run --output-dir {out}", "check the"),
    C("subset-disk-full", PS + " --dry-run --output-dir {out}", "no space left", setup="disk-full"),
    C("subset-same-source-twice", PS.replace("{pool}", "{pool} {pool}") + " --dry-run --output-dir {out}", "given twice in SOURCE"),
    # rebuild-subset
    C("rebuild-missing-target", "rebuild-subset {tmp}/nothing-here", "check the path or repo id"),
    C("rebuild-not-an-ltd-subset", "rebuild-subset {plain_dataset}", "push-subset"),
    # train
    C("train-config-unknown-key", "train --config {bad_train_yaml}", "unknown key 'learning_rat'", setup="bad-train-yaml"),
    C("train-config-missing", "train --config {tmp}/nope.yaml", "check --config"),
    C("train-output-not-empty", TRAIN, "--overwrite-output-dir", setup="non-empty-out"),
    C("train-missing-dataset", TRAIN.replace("{pool}", "{tmp}/nope.jsonl"), "nope.jsonl"),
    C("train-push-to-other-namespace", TRAIN + f" --push-to {OTHER_USER}/adapter", "namespace"),
    C("train-push-read-only-token", TRAIN + f" --push-to {{new_model}} --token {READ_TOKEN}", "write access"),
    C("train-missing-base-model", TRAIN.replace("{tiny}", f"{TEST_USER}/no-such-model"), "--base-model"),
    C("train-no-steps", TRAIN.replace("--max-steps 2", "--max-steps 0 --num-train-epochs 0"), "--max-steps"),
    C("train-dropout-out-of-range", TRAIN + " --lora-dropout 1.5", "--lora-dropout"),
    C("train-disk-full", TRAIN, "no space left", setup="disk-full"),
    C("train-base-download-interrupted", TRAIN.replace("{tiny}", "{tiny_copy}"), "re-run", setup="download-fails"),
    # push-adapter
    C("adapter-missing-folder", "push-adapter {tmp}/no-adapter --repo-id {new_model}", "--output-dir of `ltd-hub train`"),
    C("adapter-not-an-adapter", "push-adapter {tmp} --repo-id {new_model}", "adapter_config.json"),
    C("adapter-read-only-token", f"push-adapter {{adapter_dir}} --repo-id {{new_model}} --token {READ_TOKEN}", "write access"),
    # evaluate
    C("evaluate-missing-eval-file", "evaluate --adapter {adapter_dir} --eval-data {tmp}/nope.jsonl", "nope.jsonl"),
    C("evaluate-push-local-folder", "evaluate --adapter {adapter_dir} --eval-data {eval} --push", "push-adapter"),
    C("evaluate-missing-adapter-repo", f"evaluate --adapter {TEST_USER}/no-such-adapter --eval-data {{eval}}", "--adapter"),
    C("evaluate-revision-missing", "evaluate --adapter {adapter_repo} --revision no-such-branch --eval-data {eval}", "--revision"),
    C("evaluate-private-adapter-of-other", "evaluate --adapter {other_private_model} --eval-data {eval}", "--adapter"),
    C("evaluate-output-folder-missing", "evaluate --adapter {adapter_dir} --eval-data {eval} --output {tmp}/no/dir/r.json", "--output"),
    # push-space
    C("space-same-adapter-twice", SPACE.replace("{adapter_repo2}", "{adapter_repo}"), "must differ"),
    C("space-missing-adapter", SPACE.replace("{adapter_repo2}", f"{TEST_USER}/no-such-adapter"), "--subset"),
    C("space-missing-examples", SPACE.replace("{eval}", "{tmp}/nope.jsonl"), "--examples"),
    C("space-private-adapter-of-other", SPACE.replace("{adapter_repo2}", "{other_private_model}"), "--subset"),
    # arguments argparse itself refuses: the same one line
    C("subset-ratio-and-size", PS + " --ratio 0.1 --repo-id {new_dataset}", "--ratio: not allowed with argument --size"),
    C("adapter-repo-id-missing", "push-adapter {adapter_dir}", "required: --repo-id"),
    C("train-steps-not-a-number", TRAIN.replace("--max-steps 2", "--max-steps two"), "invalid int value: 'two'"),
    C("quickstart-missing-pool", "quickstart --pool {tmp}/nope.jsonl --no-demo --workdir {out}", "--pool"),
    # reproduce, demo, hub
    C("reproduce-config-unknown-key", "reproduce --config {bad_reproduce_yaml}", "unknown", setup="bad-reproduce-yaml"),
    C("reproduce-config-missing", "reproduce --config {tmp}/nope.yaml", "nope.yaml"),
    C("demo-space-and-adapters", "demo --space {adapter_repo} --full {adapter_repo}", "not both"),
    C("hub-serve-root-is-a-file", "hub serve --root {pool}", "pass a folder"),
]


def test_the_table_covers_every_command_with_at_least_30_cases():
    from ltd_hub.cli.main import build_parser

    commands = {case.argv[0] for case in CASES}
    assert len(CASES) >= 30 and len({case.id for case in CASES}) == len(CASES)
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(subparsers.choices) <= commands, set(subparsers.choices) - commands


# --------------------------------------------------------------------------- context


def hub_state(hub_root: Path) -> dict[tuple[str, str], dict[str, str]]:
    """Branch heads of every repo on the embedded Hub (read from its storage, all users' repos)."""
    from ltd_hub.hub_server.storage import HubStorage

    storage = HubStorage(hub_root)
    return {(kind, repo.repo_id): repo.list_refs("heads") for kind in ("model", "dataset", "space") for repo in storage.list(kind)}


def _make_adapter(base_id: str, folder: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_id)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ctx(tiny_model_id: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Repos and files the bad inputs point at (all made before any case runs)."""
    from huggingface_hub import HfApi

    from ltd_hub.hub import gateway as hub

    if not LTD_NLI.is_dir():
        pytest.skip("shared data not found")
    tmp = tmp_path_factory.mktemp("bad-inputs")
    pool = write_lines(POOL_FILE, tmp / "pool.jsonl", 0, 200 * 20, 20)
    eval_file = write_lines(RTE_FILE, tmp / "rte.jsonl", stop=4)
    suffix = uuid.uuid4().hex[:6]
    names = {
        "dataset_repo": f"{TEST_USER}/bi-subset-{suffix}",
        "plain_dataset": f"{TEST_USER}/bi-plain-{suffix}",
        "model_repo": f"{TEST_USER}/bi-model-{suffix}",
        "adapter_repo": f"{TEST_USER}/bi-adapter-{suffix}",
        "adapter_repo2": f"{TEST_USER}/bi-adapter2-{suffix}",
        "other_private": f"{OTHER_USER}/bi-private-data-{suffix}",
        "other_private_model": f"{OTHER_USER}/bi-private-adapter-{suffix}",
        "tiny_copy": f"{TEST_USER}/bi-tiny-copy-{suffix}",
    }
    assert main(["push-subset", str(pool), "--encoder", "lexical", "--size", "4", "--repo-id", names["dataset_repo"]]) == 0
    hub.push_files(names["plain_dataset"], {"data.jsonl": pool.read_bytes()}, repo_type="dataset", commit_message="rows")
    hub.push_files(names["model_repo"], {"README.md": "A model repo.\n"}, repo_type="model", commit_message="card")
    adapter_dir = _make_adapter(tiny_model_id, tmp / "adapter")
    for repo_id in (names["adapter_repo"], names["adapter_repo2"]):
        hub.push_files(repo_id, {p.name: p for p in adapter_dir.iterdir()}, repo_type="model", commit_message="adapter")
    hub.push_files(names["other_private"], {"data.jsonl": pool.read_bytes()}, repo_type="dataset",
                   commit_message="rows", token=OTHER_TOKEN, private=True)  # fmt: skip
    hub.push_files(names["other_private_model"], {p.name: p for p in adapter_dir.iterdir()}, repo_type="model",
                   commit_message="adapter", token=OTHER_TOKEN, private=True)  # fmt: skip
    # A copy of the base model nobody downloaded yet, so its download really goes over the wire.
    base = Path(HfApi().snapshot_download(tiny_model_id))
    hub.push_files(names["tiny_copy"], {p.name: p for p in base.iterdir() if p.is_file()}, repo_type="model", commit_message="copy")
    return {**names, "tmp": str(tmp), "pool": str(pool), "eval": str(eval_file), "tiny": tiny_model_id, "adapter_dir": str(adapter_dir)}


def _prepare(case: Case, ctx: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faults) -> dict[str, str]:
    values = {**ctx, "out": str(tmp_path / "out"), "new_dataset": f"{TEST_USER}/bi-new-{uuid.uuid4().hex[:8]}"}
    values["new_model"] = values["new_dataset"].replace("bi-new", "bi-new-model")
    values["new_space"] = values["new_dataset"].replace("bi-new", "bi-new-space")
    if case.setup == "disk-full":

        def full(self, *args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

        monkeypatch.setattr(Path, "write_bytes", full)
        monkeypatch.setattr(Path, "write_text", full)
    elif case.setup == "non-empty-out":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "keep.txt").write_text("mine\n")
    elif case.setup == "bad-train-yaml":
        values["bad_train_yaml"] = str(tmp_path / "train.yaml")
        Path(values["bad_train_yaml"]).write_text(
            f"dataset: {ctx['pool']}\nbase_model: {ctx['tiny']}\noutput_dir: {values['out']}\nlearning_rat: 0.001\n"
        )
    elif case.setup == "bad-reproduce-yaml":
        values["bad_reproduce_yaml"] = str(tmp_path / "exp.yaml")
        Path(values["bad_reproduce_yaml"]).write_text(
            Path(__file__).resolve().parents[1].joinpath("experiments", "nli-cpu.yaml").read_text() + "\nsurprise_key: 1\n"
        )
    elif case.setup == "download-fails":
        faults.set_faults(["resolve:503"])
        monkeypatch.setenv("LTD_HUB_RETRY_BASE", "0.01")
        _fast_library_sleep(monkeypatch)
    for key, value in case.env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    return values


def _fast_library_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub's own backoff (1, 2, 4, 8 s) cut to milliseconds."""
    import time
    import types

    import huggingface_hub.file_download as hf_download
    import huggingface_hub.utils._http as hf_http

    fast = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time) if not n.startswith("_")})
    real_sleep = time.sleep
    fast.sleep = lambda seconds: real_sleep(min(seconds, 0.005))
    for module in (hf_http, hf_download):
        monkeypatch.setattr(module, "time", fast)


def _tree(folder: Path) -> dict[str, bytes] | None:
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case: Case, ctx, hub_root, tmp_path, monkeypatch, capsys, faults):
    values = _prepare(case, ctx, tmp_path, monkeypatch, faults)
    argv = [part.format(**values) for part in case.argv]
    out_dir = Path(values["out"])
    out_before = _tree(out_dir)
    hub_before = hub_state(hub_root)
    capsys.readouterr()

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse refusals exit like the console script does
        code = exc.code
    faults.set_faults([])
    err = capsys.readouterr().err

    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert err.rstrip().splitlines()[-1] == lines[0], "the error line must be the last thing printed"
    assert "Traceback" not in err
    assert case.needle in lines[0], lines[0]
    assert hub_state(hub_root) == hub_before, "something was pushed or a repo was created"
    assert _tree(out_dir) == out_before, "the output folder was written to"


# --------------------------------------------------------------------------- outside the table


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


def _subprocess(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ltd_hub.cli", *argv], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_unreachable_hub_endpoint_is_one_line_naming_hf_endpoint(ctx, tmp_path):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    result = _subprocess("push-subset", ctx["pool"], "--encoder", "lexical", "--size", "4", "--repo-id", f"{TEST_USER}/x",
                         env={"HF_ENDPOINT": endpoint, "LTD_HUB_RETRY_BASE": "0.01"})  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert endpoint in lines[0] and "HF_ENDPOINT" in lines[0], lines[0]


def test_debug_mode_shows_the_traceback(ctx, tmp_path):
    result = _subprocess("train", "--config", str(tmp_path / "nope.yaml"), env={"LTD_HUB_DEBUG": "1"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "UsageError" in result.stderr and "nope.yaml" in result.stderr


def test_interrupted_base_model_download_resumes(ctx, faults, monkeypatch, capsys):
    """The model download cut again and again (drop) resumes where it stopped and completes."""
    from huggingface_hub import HfApi

    _fast_library_sleep(monkeypatch)
    repo_id = f"{TEST_USER}/bi-resume-{uuid.uuid4().hex[:6]}"
    from ltd_hub.hub import gateway as hub

    base = Path(HfApi().snapshot_download(ctx["tiny"]))
    hub.push_files(repo_id, {p.name: p for p in base.iterdir() if p.is_file()}, repo_type="model", commit_message="copy")
    mark = len(faults.fault_log)
    faults.set_faults(["resolve:drop:times=8"])
    code = main(["evaluate", "--base-only", "--base-model", repo_id, "--eval-data", ctx["eval"], "--bootstrap", "20"])
    faults.set_faults([])
    err = capsys.readouterr().err
    assert code == 0, err
    assert len(faults.fault_log) - mark == 8, "the download was not cut as often as asked"
    local = Path(HfApi().snapshot_download(repo_id))
    assert {p.name: p.read_bytes() for p in local.iterdir() if p.is_file()} == {
        p.name: p.read_bytes() for p in base.iterdir() if p.is_file()
    }
