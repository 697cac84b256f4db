"""ltd_hub.hub.gateway, the gateway, against the embedded Hub through the real client."""

from __future__ import annotations

import pytest
from conftest import OTHER_TOKEN, READ_TOKEN, TEST_USER
from huggingface_hub import HfApi

from ltd_hub.errors import HubError, UsageError
from ltd_hub.hub import gateway as hub
from ltd_hub.hub.cards import BLOCK_END, BLOCK_START

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")


def _card(text: str) -> str:
    return f"---\nlicense: mit\ntags:\n- ltd-hub\n---\n{BLOCK_START}\n{text}\n{BLOCK_END}\n"


def test_push_files_is_one_commit_and_idempotent():
    repo_id = f"{TEST_USER}/gateway-idempotent"
    first = hub.push_files(repo_id, {"README.md": _card("v1"), "data.bin": b"\x00" * 2048}, repo_type="dataset", commit_message="first")
    assert first.created_commit and len(first.revision) == 40
    api = HfApi()
    commits = api.list_repo_commits(repo_id, repo_type="dataset")
    again = hub.push_files(repo_id, {"README.md": _card("v1"), "data.bin": b"\x00" * 2048}, repo_type="dataset", commit_message="again")
    assert not again.created_commit and again.revision == first.revision
    assert len(api.list_repo_commits(repo_id, repo_type="dataset")) == len(commits)
    assert sorted(api.list_repo_files(repo_id, repo_type="dataset")) == [".gitattributes", "README.md", "data.bin"]


def test_push_files_merges_into_an_existing_card():
    repo_id = f"{TEST_USER}/gateway-merge"
    api = HfApi()
    api.create_repo(repo_id, repo_type="model")
    api.upload_file(
        path_or_fileobj=b"---\nlicense: mit\ntags:\n- mine\n---\n# Hand written\n",
        path_in_repo="README.md",
        repo_id=repo_id,
        repo_type="model",
    )
    hub.push_files(repo_id, {"README.md": _card("ours")}, repo_type="model", commit_message="card")
    text = hub.read_card_text(repo_id, "model")
    assert "# Hand written" in text and "ours" in text
    assert "- mine" in text and "- ltd-hub" in text


def test_read_card_text_none_when_missing():
    repo_id = f"{TEST_USER}/gateway-nocard"
    HfApi().create_repo(repo_id, repo_type="dataset")
    assert hub.read_card_text(repo_id, "dataset") is None


def test_preflight_resolves_namespace_and_reports_state():
    target = hub.preflight_push("gateway-fresh", "dataset")
    assert target.repo_id == f"{TEST_USER}/gateway-fresh" and not target.exists and target.user == TEST_USER
    hub.push_files(target.repo_id, {"a.txt": "a"}, repo_type="dataset", commit_message="a")
    again = hub.preflight_push(target.repo_id, "dataset")
    assert again.exists and len(again.head) == 40


@pytest.mark.parametrize(
    ("repo_id", "token", "error", "needle"),
    [
        ("x/y", None, HubError, "no Hugging Face token"),
        (f"{TEST_USER}/ok", "hf_not_a_valid_token_at_all_000000", HubError, "rejected the token"),
        (f"{TEST_USER}/ok", READ_TOKEN, HubError, "read-only"),
        (f"{TEST_USER}/ok", OTHER_TOKEN, HubError, "cannot write to namespace"),
        (f"{TEST_USER}/bad--name..", None, UsageError, "invalid repo id"),
    ],
)
def test_preflight_refusals(monkeypatch, repo_id, token, error, needle):
    if token is None and needle == "no Hugging Face token":
        monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(error, match=needle):
        hub.preflight_push(repo_id, "dataset", token=token)


def test_preflight_refuses_repo_of_another_type():
    repo_id = f"{TEST_USER}/gateway-is-a-model"
    HfApi().create_repo(repo_id, repo_type="model")
    with pytest.raises(HubError, match="already exists as a model repo"):
        hub.preflight_push(repo_id, "dataset")


def test_push_lands_on_top_of_a_concurrent_commit(monkeypatch):
    """A commit that lands between our read of the head and our commit is kept, not clobbered."""
    repo_id = f"{TEST_USER}/gateway-race"
    hub.push_files(repo_id, {"README.md": _card("v1")}, repo_type="dataset", commit_message="v1")
    api = HfApi()
    real_create_commit = HfApi.create_commit
    raced = []

    def racing_create_commit(self, *args, **kwargs):
        if not raced:
            raced.append(True)
            api.upload_file(path_or_fileobj=b"theirs", path_in_repo="theirs.txt", repo_id=repo_id, repo_type="dataset")
        return real_create_commit(self, *args, **kwargs)

    monkeypatch.setattr(HfApi, "create_commit", racing_create_commit)
    result = hub.push_files(repo_id, {"README.md": _card("v2")}, repo_type="dataset", commit_message="v2")
    assert result.created_commit
    files = api.list_repo_files(repo_id, repo_type="dataset")
    assert "theirs.txt" in files
    assert "v2" in hub.read_card_text(repo_id, "dataset")


def test_loaders_say_not_found_by_type_and_pass_other_errors_through():
    """from_pretrained / load_dataset go through the gateway: the Hub's "not found" is a typed error."""
    from transformers import AutoConfig

    from ltd_hub.errors import MissingRepoError, MissingRevisionError

    with pytest.raises(MissingRepoError, match="no-such-model"):
        hub.load_pretrained(AutoConfig, f"{TEST_USER}/no-such-model")
    repo_id = f"{TEST_USER}/gateway-config-only"
    hub.push_files(repo_id, {"config.json": '{"model_type": "gpt2"}'}, repo_type="model", commit_message="config")
    assert hub.load_pretrained(AutoConfig, repo_id).model_type == "gpt2"
    with pytest.raises(MissingRevisionError):
        hub.load_pretrained(AutoConfig, repo_id, revision="no-such-branch")
    with pytest.raises(MissingRepoError, match="no-such-dataset"):
        hub.load_dataset(f"{TEST_USER}/no-such-dataset", split="train")
    data_id = f"{TEST_USER}/gateway-rows"
    hub.push_files(data_id, {"rows.jsonl": '{"a": 1}\n{"a": 2}\n'}, repo_type="dataset", commit_message="rows")
    assert hub.load_dataset(data_id, split="train")["a"] == [1, 2]
    with pytest.raises(MissingRevisionError, match="no-such-branch"):
        hub.load_dataset(data_id, split="train", revision="no-such-branch")
    with pytest.raises(TypeError):  # the loader's own errors are not the gateway's to reword
        hub.load_pretrained(lambda repo, **kwargs: (_ for _ in ()).throw(TypeError("bad argument")), repo_id)


def test_pointed_at_switches_the_clients_for_the_block_and_puts_them_back(monkeypatch):
    import os

    from huggingface_hub import constants, hf_api

    before = (os.environ.get("HF_ENDPOINT"), os.environ.get("HF_TOKEN"), constants.ENDPOINT, hf_api.api.endpoint)
    with hub.pointed_at("http://127.0.0.1:9", "hf_block_token") as endpoint:
        assert endpoint == "http://127.0.0.1:9"
        assert os.environ["HF_ENDPOINT"] == constants.ENDPOINT == hf_api.api.endpoint == endpoint
        assert os.environ["HF_TOKEN"] == "hf_block_token" and constants.HF_HUB_DISABLE_XET
    assert (os.environ.get("HF_ENDPOINT"), os.environ.get("HF_TOKEN"), constants.ENDPOINT, hf_api.api.endpoint) == before
