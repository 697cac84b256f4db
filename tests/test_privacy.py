"""What is derived from a private repo stays private unless the user says ``--public``.

Every derived repo's ``private`` flag is read back through huggingface_hub (``repo_info``) from the
embedded Hub: push-subset from a private Hub dataset, train --push-to on the private subset, push-adapter
of that adapter folder, push-space with a private adapter, through the CLI and the Python API. Pushing
private-derived content into an existing public repo is refused unless ``--public`` was asked; a repo
left empty by an interrupted push is filled like a new one.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from conftest import TEST_USER
from helpers import POOL_FILE, history, one_error_line, write_lines
from huggingface_hub import HfApi

from ltd_hub.cli.main import main

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

SUBSET = ["--encoder", "lexical", "--size", "12"]


def _name(stem: str) -> str:
    return f"{TEST_USER}/{stem}-{uuid.uuid4().hex[:8]}"


def _private(repo_id: str, repo_type: str) -> bool:
    return HfApi().repo_info(repo_id, repo_type=repo_type).private


def _anonymous_sees(repo_id: str, repo_type: str) -> bool:
    return HfApi(token=False).repo_exists(repo_id, repo_type=repo_type)


@pytest.fixture(scope="module")
def private_pool(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A private Hub dataset of 150 pool rows (the source a careless push would publish)."""
    if not POOL_FILE.is_file():
        pytest.skip(f"shared data not found at {POOL_FILE}")
    pool = write_lines(POOL_FILE, tmp_path_factory.mktemp("private-pool") / "train.jsonl", 5, 150 * 40, 40)
    repo_id = _name("private-pool")
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=True)
    api.upload_file(path_or_fileobj=pool, path_in_repo="data/train.jsonl", repo_id=repo_id, repo_type="dataset")
    return repo_id


@pytest.fixture(scope="module")
def public_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lines(POOL_FILE, tmp_path_factory.mktemp("public-pool") / "pool.jsonl", 7, 150 * 40, 40)


# --------------------------------------------------------------------------- push-subset


def test_push_subset_from_a_private_dataset_is_private(private_pool, capsys):
    repo_id = _name("subset-of-private")
    assert main(["push-subset", private_pool, "--repo-id", repo_id, *SUBSET]) == 0
    assert _private(repo_id, "dataset") is True
    assert not _anonymous_sees(repo_id, "dataset")
    assert "--public" not in capsys.readouterr().err


def test_push_subset_from_a_public_file_keeps_the_hub_default(public_pool):
    repo_id = _name("subset-of-public")
    assert main(["push-subset", str(public_pool), "--repo-id", repo_id, *SUBSET]) == 0
    assert _private(repo_id, "dataset") is False


def test_push_subset_public_flag_publishes_and_says_so_in_one_line(private_pool, capsys):
    repo_id = _name("subset-public")
    assert main(["push-subset", private_pool, "--repo-id", repo_id, "--public", *SUBSET]) == 0
    assert _private(repo_id, "dataset") is False
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("--public")]
    assert len(lines) == 1 and repo_id in lines[0] and private_pool in lines[0], lines


def test_push_subset_api_inherits_and_honours_an_explicit_choice(private_pool, capsys):
    from ltd_hub import push_subset

    inherited, public, private = _name("api-inherit"), _name("api-public"), _name("api-private")
    push_subset(private_pool, inherited, encoder="lexical", size=12)
    push_subset(private_pool, public, private=False, encoder="lexical", size=12)
    push_subset(private_pool, private, private=True, encoder="lexical", size=12)
    assert (_private(inherited, "dataset"), _private(public, "dataset"), _private(private, "dataset")) == (True, False, True)
    err = capsys.readouterr().err
    assert err.count("--public:") == 1 and public in err


def test_private_derived_push_into_an_existing_public_repo_is_refused(private_pool, public_pool, capsys):
    repo_id = _name("public-target")
    assert main(["push-subset", str(public_pool), "--repo-id", repo_id, *SUBSET]) == 0
    before = history(repo_id, "dataset")
    capsys.readouterr()
    assert main(["push-subset", private_pool, "--repo-id", repo_id, *SUBSET]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--public" in line and repo_id in line and private_pool in line
    assert history(repo_id, "dataset") == before and _private(repo_id, "dataset") is False
    # --private cannot make what is already public private: refused too, nothing pushed.
    assert main(["push-subset", private_pool, "--repo-id", repo_id, "--private", *SUBSET]) == 2
    assert "public" in one_error_line(capsys.readouterr().err)
    assert history(repo_id, "dataset") == before
    # Asked for explicitly, it goes there.
    assert main(["push-subset", private_pool, "--repo-id", repo_id, "--public", *SUBSET]) == 0
    assert len(history(repo_id, "dataset")) == len(before) + 1


def test_private_and_public_together_is_a_usage_error(public_pool, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["push-subset", str(public_pool), "--repo-id", _name("both"), "--private", "--public", *SUBSET])
    assert exit_.value.code == 2
    assert "--public" in one_error_line(capsys.readouterr().err)


def test_a_repo_left_empty_by_an_interrupted_push_is_filled_like_a_new_one(private_pool, capsys):
    """A public repo holding only .gitattributes (a push killed after creating it) exposes nothing: made private and filled."""
    repo_id = _name("leftover")
    HfApi().create_repo(repo_id, repo_type="dataset", private=False)
    assert main(["push-subset", private_pool, "--repo-id", repo_id, *SUBSET]) == 0
    assert "interrupted push" in capsys.readouterr().err
    assert _private(repo_id, "dataset") is True
    assert "selection_manifest.json" in {s.rfilename for s in HfApi().repo_info(repo_id, repo_type="dataset").siblings}


def test_push_files_refuses_a_public_repo_with_content_when_private_is_required():
    """The gateway checks again at commit time: a public repo created after the pre-flight is not written."""
    from ltd_hub.errors import HubError
    from ltd_hub.hub import gateway as hub

    repo_id = _name("raced")
    hub.push_files(repo_id, {"a.txt": "public"}, repo_type="dataset", commit_message="public", private=False)
    before = history(repo_id, "dataset")
    with pytest.raises(HubError, match="public"):
        hub.push_files(repo_id, {"b.txt": "secret"}, repo_type="dataset", commit_message="private", private=True)
    assert history(repo_id, "dataset") == before


# --------------------------------------------------------------------------- train, push-adapter, push-space


@pytest.fixture(scope="module")
def private_training(private_pool, tiny_model_id, tmp_path_factory):
    """train --push-to on a subset of the private pool, without --private: the adapter repo and folder."""
    tmp = tmp_path_factory.mktemp("private-train")
    subset = _name("private-subset")
    assert main(["push-subset", private_pool, "--repo-id", subset, "--encoder", "lexical", "--size", "16"]) == 0
    adapter_repo = _name("private-lora")
    out = tmp / "adapter"
    argv = ["train", "--dataset", subset, "--base-model", tiny_model_id, "--output-dir", str(out), "--max-steps", "1",
            "--per-device-train-batch-size", "8", "--max-length", "128", "--no-bf16", "--push-to", adapter_repo]  # fmt: skip
    assert main(argv) == 0
    return {"subset": subset, "adapter_repo": adapter_repo, "folder": out, "base": tiny_model_id}


def test_train_push_to_on_private_data_makes_a_private_adapter(private_training):
    assert _private(private_training["subset"], "dataset") is True
    assert _private(private_training["adapter_repo"], "model") is True
    assert not _anonymous_sees(private_training["adapter_repo"], "model")


def test_the_adapter_folder_remembers_its_data_was_private(private_training, private_pool):
    summary = json.loads((private_training["folder"] / "training_summary.json").read_text(encoding="utf-8"))
    assert summary["dataset"]["private_sources"] == [private_training["subset"], private_pool]


def test_push_adapter_of_a_folder_trained_on_private_data(private_training, capsys):
    inherited, public = _name("adapter-inherit"), _name("adapter-public")
    assert main(["push-adapter", str(private_training["folder"]), "--repo-id", inherited]) == 0
    assert _private(inherited, "model") is True
    capsys.readouterr()
    assert main(["push-adapter", str(private_training["folder"]), "--repo-id", public, "--public"]) == 0
    assert _private(public, "model") is False
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("--public")]
    assert len(lines) == 1 and public in lines[0] and private_training["subset"] in lines[0]


def test_push_adapter_api_inherits_even_from_a_local_subset_folder(private_pool, tiny_model_id, tmp_path):
    """Trained on a local dry-run folder of the private pool: the manifest's source makes it private data."""
    from helpers import train_tiny_adapter

    from ltd_hub import TrainConfig, train
    from ltd_hub.adapters import push_adapter

    folder = tmp_path / "subset"
    assert main(["push-subset", private_pool, "--dry-run", "--output-dir", str(folder), *SUBSET]) == 0
    train(TrainConfig(dataset=str(folder), base_model=tiny_model_id, output_dir=str(tmp_path / "adapter"), max_steps=1,
                      per_device_train_batch_size=8, max_length=128, bf16=False))  # fmt: skip
    repo_id = _name("adapter-api")
    push_adapter(tmp_path / "adapter", repo_id)
    assert _private(repo_id, "model") is True
    # The same, trained on public data, keeps the Hub's default.
    (tmp_path / "public").mkdir()
    public_folder = train_tiny_adapter(tiny_model_id, tmp_path / "public", max_steps=1)
    public_repo = _name("adapter-api-public")
    push_adapter(public_folder, public_repo)
    assert _private(public_repo, "model") is False


def test_push_space_with_a_private_adapter_is_private(private_training, tiny_model_id, tmp_path, capsys):
    from helpers import train_tiny_adapter

    from ltd_hub.adapters import push_adapter

    full = _name("space-full-public")
    push_adapter(train_tiny_adapter(tiny_model_id, tmp_path, max_steps=1), full)
    assert _private(full, "model") is False
    space, public_space = _name("space-inherit"), _name("space-public")
    argv = ["push-space", "--full", full, "--subset", private_training["adapter_repo"], "--num-examples", "0"]
    assert main([*argv, "--repo-id", space]) == 0
    assert _private(space, "space") is True and not _anonymous_sees(space, "space")
    capsys.readouterr()
    assert main([*argv, "--repo-id", public_space, "--public"]) == 0
    assert _private(public_space, "space") is False
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if line.startswith("--public")]) == 1


def test_train_refuses_a_public_push_target_before_training(private_training, tmp_path, capsys):
    public_repo = _name("public-model")
    HfApi().create_repo(public_repo, private=False)
    HfApi().upload_file(path_or_fileobj=b"x", path_in_repo="notes.txt", repo_id=public_repo)
    out = tmp_path / "never"
    argv = ["train", "--dataset", private_training["subset"], "--base-model", private_training["base"], "--output-dir", str(out),
            "--max-steps", "1", "--no-bf16", "--push-to", public_repo]  # fmt: skip
    assert main(argv) == 2
    assert "--public" in one_error_line(capsys.readouterr().err)
    assert not out.exists(), "trained although the push was going to be refused"


def test_train_public_flag_pushes_a_public_adapter_and_says_so(private_training, tmp_path, capsys):
    repo_id = _name("train-public")
    argv = ["train", "--dataset", private_training["subset"], "--base-model", private_training["base"], "--output-dir",
            str(tmp_path / "out"), "--max-steps", "1", "--max-length", "128", "--no-bf16", "--push-to", repo_id, "--public"]  # fmt: skip
    assert main(argv) == 0
    assert _private(repo_id, "model") is False
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("--public")]
    assert len(lines) == 1 and repo_id in lines[0], lines
    both = [str(tmp_path / "other") if a == str(tmp_path / "out") else a for a in argv]
    assert main([*both, "--private"]) == 2
    assert "--private and --public" in one_error_line(capsys.readouterr().err)


def test_public_on_an_existing_private_repo_keeps_it_private_without_claiming_otherwise(private_pool, capsys):
    repo_id = _name("stays-private")
    assert main(["push-subset", private_pool, "--repo-id", repo_id, *SUBSET]) == 0
    capsys.readouterr()
    assert main(["push-subset", private_pool, "--repo-id", repo_id, "--public", "--seed", "3", *SUBSET]) == 0
    assert _private(repo_id, "dataset") is True
    assert "visible to everyone" not in capsys.readouterr().err


# --------------------------------------------------------------------------- reproduce --push


def _reproduce_config(pool: str, tmp_path: Path, **push):
    from ltd_hub.pipelines.reproduce import PushSpec, ReproduceConfig

    prefix = f"repro-{uuid.uuid4().hex[:8]}"
    return ReproduceConfig(
        name="privacy", pool=pool, push=PushSpec(namespace=TEST_USER, prefix=prefix, **push),
        output_dir=str(tmp_path / "run"), results_dir=str(tmp_path / "results"),
    )  # fmt: skip


def test_reproduce_push_from_a_private_pool_pushes_private_repos(private_pool, tiny_model_id, tmp_path, capsys):
    """The push step of ``reproduce --push``: subset, adapter and results dataset of a private pool stay private
    without ``push.private`` in the config; ``private: false`` publishes them and says so."""
    from types import SimpleNamespace

    from ltd_hub import TrainConfig, train
    from ltd_hub.pipelines.reproduce import Run, Runner, push_results, write_summary

    folder = tmp_path / "subset"
    assert main(["push-subset", private_pool, "--dry-run", "--output-dir", str(folder), *SUBSET]) == 0
    train(TrainConfig(dataset=str(folder), base_model=tiny_model_id, output_dir=str(tmp_path / "adapter"), max_steps=1,
                      per_device_train_batch_size=8, max_length=128, bf16=False))  # fmt: skip
    run = Run(arm="kcenter", kind="subset", selection={"strategy": "kcenter"}, selection_seed=0, train_seed=0)

    def push(config) -> dict[str, str]:
        planned = SimpleNamespace(run=run, local={"subset_folder": str(folder), "adapter": str(tmp_path / "adapter")})
        push_results(Runner(config, progress=False), [planned], write_summary(config, []))
        ns = f"{TEST_USER}/{config.push.prefix}"
        return {"subset": f"{ns}-kcenter", "adapter": f"{ns}-kcenter-sel0-train0-lora", "results": f"{ns}-results"}

    inherited = push(_reproduce_config(private_pool, tmp_path))
    assert (
        _private(inherited["subset"], "dataset"),
        _private(inherited["adapter"], "model"),
        _private(inherited["results"], "dataset"),
    ) == (True, True, True)
    assert not _anonymous_sees(inherited["results"], "dataset")
    capsys.readouterr()
    public = push(_reproduce_config(private_pool, tmp_path, private=False))
    assert (_private(public["subset"], "dataset"), _private(public["results"], "dataset")) == (False, False)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("--public")]
    assert any(public["results"] in line and private_pool in line for line in lines), lines


def test_reproduce_refuses_a_public_results_repo_for_a_private_pool_before_running(private_pool, tmp_path):
    from ltd_hub.errors import UsageError
    from ltd_hub.pipelines.reproduce import reproduce

    config = _reproduce_config(private_pool, tmp_path)
    results_repo = f"{TEST_USER}/{config.push.prefix}-results"
    HfApi().create_repo(results_repo, repo_type="dataset", private=False)
    HfApi().upload_file(path_or_fileobj=b"x", path_in_repo="notes.txt", repo_id=results_repo, repo_type="dataset")
    with pytest.raises(UsageError, match="private: false") as refused:
        reproduce(config, progress=False)
    assert results_repo in str(refused.value) and private_pool in str(refused.value)
    assert not (tmp_path / "run").exists(), "ran although the push was going to be refused"


def test_evaluate_push_refuses_to_card_private_eval_data_in_a_public_adapter(tiny_model_id, tmp_path, capsys):
    """The adapter card would name the private eval set and its scores: refused before any model loads."""
    from helpers import RTE_FILE, train_tiny_adapter

    from ltd_hub.adapters import push_adapter

    adapter = _name("eval-public-adapter")
    push_adapter(train_tiny_adapter(tiny_model_id, tmp_path, max_steps=1), adapter)
    assert _private(adapter, "model") is False
    head = history(adapter, "model")
    rows = write_lines(RTE_FILE, tmp_path / "rte.jsonl", stop=20)
    private_eval = _name("private-eval")
    api = HfApi()
    api.create_repo(private_eval, repo_type="dataset", private=True)
    api.upload_file(path_or_fileobj=rows, path_in_repo="data/test.jsonl", repo_id=private_eval, repo_type="dataset")
    capsys.readouterr()
    code = main(["evaluate", "--adapter", adapter, "--eval-data", private_eval, "--templates", "1", "--max-examples", "4", "--push"])
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert private_eval in line and "evaluate without --push" in line
    assert history(adapter, "model") == head  # nothing pushed
