"""The embedded Hub answers the real client libraries (huggingface_hub, datasets, transformers, peft)."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import ENDPOINT, OTHER_TOKEN, READ_TOKEN, TEST_TOKEN, TEST_USER
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")


def unique(stem: str) -> str:
    return f"{TEST_USER}/{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def api() -> HfApi:
    return HfApi(endpoint=ENDPOINT, token=TEST_TOKEN)


def test_create_repo_makes_initial_commit_and_honours_exist_ok(api: HfApi):
    repo_id = unique("created")
    url = api.create_repo(repo_id)
    assert url == f"{ENDPOINT}/{repo_id}"
    info = api.repo_info(repo_id)
    assert len(info.sha) == 40 and [s.rfilename for s in info.siblings] == [".gitattributes"]
    assert api.create_repo(repo_id, exist_ok=True) == url
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(repo_id)
    assert err.value.response.status_code == 409
    assert api.repo_exists(repo_id) and not api.repo_exists(unique("never-created"))


def test_dataset_push_to_hub_then_load_dataset(api: HfApi):
    from datasets import Dataset, load_dataset

    repo_id = unique("ds")
    rows = {"premise": [f"p{i}" for i in range(40)], "label": [i % 3 for i in range(40)]}
    Dataset.from_dict(rows).push_to_hub(repo_id, token=TEST_TOKEN)
    loaded = load_dataset(repo_id, split="train")
    assert loaded.to_dict() == rows
    streamed = list(load_dataset(repo_id, split="train", streaming=True))
    assert {k: [r[k] for r in streamed] for k in rows} == rows
    files = api.list_repo_files(repo_id, repo_type="dataset")
    assert any(f.endswith(".parquet") for f in files) and "README.md" in files


def test_upload_folder_then_snapshot_download_is_byte_identical(api: HfApi, tmp_path: Path):
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "model"
    folder.mkdir()
    save_file({"w": torch.randn(64, 64)}, folder / "model.safetensors")
    (folder / "README.md").write_text("---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n# A model\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.txt").write_text("nested file\n")
    repo_id = unique("folder")
    api.create_repo(repo_id)
    api.upload_folder(repo_id=repo_id, folder_path=folder)
    local = Path(snapshot_download(repo_id, cache_dir=tmp_path / "cache"))
    for name in ("model.safetensors", "README.md", "sub/notes.txt"):
        assert (local / name).read_bytes() == (folder / name).read_bytes()
    files = {f.path: f for f in api.list_repo_tree(repo_id, recursive=True) if hasattr(f, "size")}
    assert files["model.safetensors"].lfs is not None and files["README.md"].lfs is None
    assert api.model_info(repo_id).card_data["license"] == "apache-2.0"


def test_old_revisions_download_by_full_and_short_sha(api: HfApi, tmp_path: Path):
    repo_id = unique("revs")
    api.create_repo(repo_id)
    first = api.upload_file(path_or_fileobj=b"version one\n", path_in_repo="v.txt", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"version two\n", path_in_repo="v.txt", repo_id=repo_id)
    assert Path(hf_hub_download(repo_id, "v.txt", cache_dir=tmp_path)).read_bytes() == b"version two\n"
    for rev in (first.oid, first.oid[:7]):
        path = hf_hub_download(repo_id, "v.txt", revision=rev, cache_dir=tmp_path / rev)
        assert Path(path).read_bytes() == b"version one\n"
    titles = [c.title for c in api.list_repo_commits(repo_id)]
    assert titles[-1] == "initial commit" and len(titles) == 3


def test_branches_tags_and_pr_refs_with_encoded_revisions(api: HfApi, tmp_path: Path):
    repo_id = unique("refs")
    api.create_repo(repo_id)
    api.create_branch(repo_id, branch="feature/x")
    api.upload_file(path_or_fileobj=b"on a branch", path_in_repo="b.txt", repo_id=repo_id, revision="feature/x")
    assert Path(hf_hub_download(repo_id, "b.txt", revision="feature/x", cache_dir=tmp_path)).read_bytes() == b"on a branch"
    assert "b.txt" not in api.list_repo_files(repo_id)
    api.create_tag(repo_id, tag="v1.0", revision="feature/x")
    assert "b.txt" in api.list_repo_files(repo_id, revision="v1.0")
    from huggingface_hub import CommitOperationAdd

    head = api.repo_info(repo_id).sha
    pr = api.create_commit(
        repo_id, [CommitOperationAdd("pr.txt", b"proposal")], commit_message="proposal", create_pr=True, parent_commit=head
    )
    assert pr.pr_num == 1 and api.repo_info(repo_id).sha == head
    assert "pr.txt" in api.list_repo_files(repo_id, revision="refs/pr/1")
    refs = api.list_repo_refs(repo_id, include_pull_requests=True)
    assert {b.name for b in refs.branches} == {"main", "feature/x"} and [t.name for t in refs.tags] == ["v1.0"]
    assert [p.ref for p in refs.pull_requests] == ["refs/pr/1"]
    api.delete_branch(repo_id, branch="feature/x")
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_files(repo_id, revision="feature/x")


def test_cards_load_push_load(api: HfApi):
    from huggingface_hub import DatasetCard, ModelCard

    model_id, dataset_id = unique("card-model"), unique("card-ds")
    api.create_repo(model_id)
    api.create_repo(dataset_id, repo_type="dataset")
    ModelCard("---\nlicense: mit\ntags:\n- ltd\n---\n# Model\nHello.\n").push_to_hub(model_id)
    card = ModelCard.load(model_id)
    assert card.data.license == "mit" and "Hello." in card.text
    card.data.tags.append("more")
    card.push_to_hub(model_id)
    assert ModelCard.load(model_id).data.tags == ["ltd", "more"]
    DatasetCard("---\nlicense: cc-by-4.0\n---\n# Data\n").push_to_hub(dataset_id)
    assert DatasetCard.load(dataset_id).data.license == "cc-by-4.0"
    assert api.dataset_info(dataset_id).card_data["license"] == "cc-by-4.0"


def test_validate_yaml_answers_json_for_good_and_bad_metadata():
    import httpx
    from huggingface_hub import ModelCard

    ModelCard("---\nlicense: mit\n---\ntext\n").validate()  # the client's own call: no error
    bad = httpx.post(f"{ENDPOINT}/api/validate-yaml", json={"content": "---\nlicense: [unclosed\n---\n", "repoType": "model"})
    assert bad.status_code == 400 and bad.json()["errors"] and bad.headers["X-Error-Code"]


def test_peft_lora_push_to_hub_then_from_pretrained():
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2
    )
    torch.manual_seed(0)
    base = LlamaForCausalLM(config)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    repo_id = unique("lora")
    model.push_to_hub(repo_id, token=TEST_TOKEN)
    torch.manual_seed(0)
    reloaded = PeftModel.from_pretrained(LlamaForCausalLM(config), repo_id)
    ours = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    theirs = {k: v for k, v in reloaded.state_dict().items() if "lora_" in k}
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_space_repo_with_gradio_sdk(api: HfApi):
    repo_id = unique("space")
    url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio")
    assert url == f"{ENDPOINT}/spaces/{repo_id}"
    api.upload_file(path_or_fileobj=b"import gradio as gr\n", path_in_repo="app.py", repo_id=repo_id, repo_type="space")
    info = api.space_info(repo_id)
    assert info.sdk == "gradio" and "app.py" in [s.rfilename for s in info.siblings]


def test_error_codes_map_to_client_exceptions(api: HfApi, tmp_path: Path):
    repo_id = unique("errors")
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info(repo_id)
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info("no-namespace")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("no-namespace", "config.json", cache_dir=tmp_path)
    api.create_repo(repo_id)
    with pytest.raises(RevisionNotFoundError):
        api.repo_info(repo_id, revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "missing.txt", cache_dir=tmp_path)
    assert not api.file_exists(repo_id, "missing.txt") and api.file_exists(repo_id, ".gitattributes")
    with pytest.raises(EntryNotFoundError):
        api.delete_file("missing.txt", repo_id)


def test_writes_need_a_write_token_in_the_right_namespace():
    with pytest.raises(HfHubHTTPError) as anonymous:
        HfApi(endpoint=ENDPOINT, token=False).create_repo(unique("anon"))
    assert anonymous.value.response.status_code == 401
    reader = HfApi(endpoint=ENDPOINT, token=READ_TOKEN)
    assert reader.whoami()["auth"]["accessToken"]["role"] == "read"
    with pytest.raises(HfHubHTTPError) as read_only:
        reader.create_repo("ltd-reader/nope")
    assert read_only.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as foreign:
        HfApi(endpoint=ENDPOINT, token=TEST_TOKEN).create_repo("ltd-other/not-mine")
    assert foreign.value.response.status_code == 403
    repo_id = unique("guarded")
    HfApi(endpoint=ENDPOINT, token=TEST_TOKEN).create_repo(repo_id)
    with pytest.raises(HfHubHTTPError) as other_writer:
        HfApi(endpoint=ENDPOINT, token=OTHER_TOKEN).upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=repo_id)
    assert other_writer.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as bad:
        HfApi(endpoint=ENDPOINT, token="hf_notAKnownToken1234567890").whoami()
    assert bad.value.response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"


def test_private_repo_is_invisible_to_others(api: HfApi):
    repo_id = unique("secret")
    api.create_repo(repo_id, private=True)
    api.upload_file(path_or_fileobj=b"hidden", path_in_repo="h.txt", repo_id=repo_id)
    assert api.repo_info(repo_id).private
    for token in (OTHER_TOKEN, False):
        other = HfApi(endpoint=ENDPOINT, token=token)
        with pytest.raises(RepositoryNotFoundError):
            other.repo_info(repo_id)
        with pytest.raises(RepositoryNotFoundError):
            other.hf_hub_download(repo_id, "h.txt")
        assert repo_id not in [m.id for m in other.list_models(author=TEST_USER)]
    assert repo_id in [m.id for m in api.list_models(author=TEST_USER)]
    api.update_repo_settings(repo_id, private=False)
    assert HfApi(endpoint=ENDPOINT, token=OTHER_TOKEN).repo_info(repo_id).private is False


def test_stale_parent_commit_is_refused(api: HfApi):
    from huggingface_hub import CommitOperationAdd

    repo_id = unique("stale")
    api.create_repo(repo_id)
    parent = api.repo_info(repo_id).sha
    api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=repo_id)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(repo_id, [CommitOperationAdd("b.txt", b"2")], commit_message="late", parent_commit=parent)
    assert err.value.response.status_code == 412
    assert "b.txt" not in api.list_repo_files(repo_id)


def test_corrupted_lfs_upload_and_unuploaded_lfs_file_are_refused(api: HfApi):
    import hashlib

    import httpx

    repo_id = unique("lfs")
    api.create_repo(repo_id)
    data = b"real content" * 1000
    oid = hashlib.sha256(data).hexdigest()
    auth = {"Authorization": f"Bearer {TEST_TOKEN}"}
    batch = httpx.post(f"{ENDPOINT}/{repo_id}.git/info/lfs/objects/batch", headers=auth,
                       json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]})  # fmt: skip
    href = batch.json()["objects"][0]["actions"]["upload"]["href"]
    corrupted = httpx.put(href, content=b"X" + data[1:])
    assert corrupted.status_code == 400 and corrupted.headers["X-Error-Code"]
    assert httpx.put(href.replace("signature=", "signature=0"), content=data).status_code == 403
    commit = "\n".join(json.dumps(line) for line in [
        {"key": "header", "value": {"summary": "add lfs"}},
        {"key": "lfsFile", "value": {"path": "big.bin", "algo": "sha256", "oid": oid, "size": len(data)}},
    ])  # fmt: skip
    refused = httpx.post(
        f"{ENDPOINT}/api/models/{repo_id}/commit/main", headers={**auth, "Content-Type": "application/x-ndjson"}, content=commit
    )
    assert refused.status_code == 400 and "never uploaded" in refused.headers["X-Error-Message"]
    assert httpx.put(href, content=data).status_code == 200
    assert (
        httpx.post(
            f"{ENDPOINT}/api/models/{repo_id}/commit/main", headers={**auth, "Content-Type": "application/x-ndjson"}, content=commit
        ).status_code
        == 200
    )
    assert api.hf_hub_download(repo_id, "big.bin") and Path(api.hf_hub_download(repo_id, "big.bin")).read_bytes() == data


def test_delete_repo(api: HfApi):
    repo_id = unique("doomed")
    api.create_repo(repo_id, repo_type="dataset")
    api.delete_repo(repo_id, repo_type="dataset")
    assert not api.repo_exists(repo_id, repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo(repo_id, repo_type="dataset")


def test_restart_keeps_data(tmp_path: Path):
    from conftest import HUB_TOKENS

    from ltd_hub.hub_server.serve import start_hub

    root = tmp_path / "hub"
    with start_hub(root, tokens=HUB_TOKENS) as first:
        api = HfApi(endpoint=first.endpoint, token=TEST_TOKEN)
        api.create_repo(f"{TEST_USER}/kept")
        head = api.upload_file(path_or_fileobj=b"persisted", path_in_repo="p.txt", repo_id=f"{TEST_USER}/kept").oid
    with start_hub(root, tokens=HUB_TOKENS) as second:
        api = HfApi(endpoint=second.endpoint, token=TEST_TOKEN)
        assert api.repo_info(f"{TEST_USER}/kept").sha == head
        path = hf_hub_download(f"{TEST_USER}/kept", "p.txt", endpoint=second.endpoint, cache_dir=tmp_path / "c")
        assert Path(path).read_bytes() == b"persisted"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_storage_is_a_valid_git_repository(api: HfApi, hub_root: Path):
    repo_id = unique("gitcheck")
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"\x00" * 5000, path_in_repo="weights/w.bin", repo_id=repo_id)
    head = api.upload_file(path_or_fileobj=b"text\n", path_in_repo="a/b/c.txt", repo_id=repo_id).oid
    git_dir = hub_root / "repos" / "model" / repo_id
    subprocess.run(["git", f"--git-dir={git_dir}", "fsck", "--strict", "--no-dangling"], check=True, capture_output=True)
    assert (
        subprocess.run(["git", f"--git-dir={git_dir}", "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
        == head
    )
    listing = subprocess.run(
        ["git", f"--git-dir={git_dir}", "ls-tree", "-r", "--name-only", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.split()
    assert listing == [".gitattributes", "a/b/c.txt", "weights/w.bin"]
    pointer = subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", "HEAD:weights/w.bin"], check=True, capture_output=True, text=True
    ).stdout
    assert pointer.startswith("version https://git-lfs.github.com/spec/v1\noid sha256:")


def test_concurrent_writers_in_threads_and_another_process_lose_nothing(api: HfApi, hub_root: Path):
    import sys
    from concurrent.futures import ThreadPoolExecutor

    repo_id = unique("concurrent")
    api.create_repo(repo_id)
    script = (
        "import sys\nfrom ltd_hub.hub_server.storage import AddFile, HubStorage\n"
        "repo = HubStorage(sys.argv[1]).get('model', sys.argv[2])\n"
        "for i in range(15):\n"
        "    with repo.write_lock():\n"
        "        repo.commit('refs/heads/main', [AddFile(f'proc/{i}.txt', b'%d' % i)], message=f'direct {i}', author='proc')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(hub_root), repo_id])
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: api.upload_file(path_or_fileobj=b"t%d" % i, path_in_repo=f"thread/{i}.txt", repo_id=repo_id), range(8)))
    assert proc.wait(timeout=120) == 0
    files = set(api.list_repo_files(repo_id))
    assert {f"proc/{i}.txt" for i in range(15)} | {f"thread/{i}.txt" for i in range(8)} <= files
    assert len(api.list_repo_commits(repo_id)) == 1 + 15 + 8


def test_a_writer_killed_mid_commit_leaves_a_consistent_repo(tmp_path: Path):
    import sys
    import time

    from ltd_hub.hub_server.storage import HubStorage

    root = tmp_path / "hub"
    HubStorage(root).create("model", f"{TEST_USER}/crash", author=TEST_USER)
    script = (
        "import hashlib, os, sys\nfrom ltd_hub.hub_server.storage import AddFile, AddLfs, HubStorage\n"
        "repo = HubStorage(sys.argv[1]).get('model', sys.argv[2])\n"
        "for i in range(10_000):\n"
        "    data = os.urandom(300_000)\n"
        "    oid = hashlib.sha256(data).hexdigest()\n"
        "    with repo.lfs_writer(oid, len(data)) as write:\n"
        "        write(data)\n"
        "    with repo.write_lock():\n"
        "        repo.commit('refs/heads/main', [AddFile(f'f{i % 50}/{i}.txt', data[:200_000]), AddLfs(f'w{i}.bin', oid, len(data))], message=str(i), author='w')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(root), f"{TEST_USER}/crash"])
    time.sleep(3)
    proc.kill()  # SIGKILL: no cleanup, possibly mid-write
    proc.wait()
    repo = HubStorage(root).get("model", f"{TEST_USER}/crash")
    head = repo.resolve("main")
    commits = list(repo.history(head))
    assert len(commits) > 1, "the writer made no commit before it was killed"
    for path, oid in repo.snapshot(head).files.items():
        info = repo.blob_info(oid)
        if info.lfs:
            assert repo.lfs_size(info.lfs[0]) == info.size, path
        else:
            assert len(repo.blob_bytes(oid)) == info.size
    if shutil.which("git"):
        subprocess.run(["git", f"--git-dir={repo.path}", "fsck", "--strict", "--no-dangling"], check=True, capture_output=True)
    assert not [p for p in (repo.path / "objects").rglob("*") if p.is_file() and p.stat().st_size == 0]
