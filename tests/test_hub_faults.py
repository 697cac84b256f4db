"""Fault injection, size limits and pagination, on a second embedded Hub with small limits."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import ENDPOINT, HUB_TOKENS, TEST_TOKEN, TEST_USER
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from ltd_hub.hub_server.app import Limits
from ltd_hub.hub_server.faults import ENDPOINTS, KINDS, Fault
from ltd_hub.hub_server.serve import running_hub, start_hub

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

KiB = 1024


@pytest.fixture(scope="module")
def side_hub(tmp_path_factory):
    limits = Limits(max_json_bytes=64 * KiB, max_commit_bytes=256 * KiB, max_regular_file_bytes=128 * KiB,
                    max_lfs_file_bytes=1024 * KiB, tree_page_size=2, commits_page_size=2)  # fmt: skip
    with start_hub(tmp_path_factory.mktemp("side-hub"), tokens=HUB_TOKENS, limits=limits) as server:
        yield server


@pytest.fixture
def side_api(side_hub) -> HfApi:
    side_hub.set_faults([])
    yield HfApi(endpoint=side_hub.endpoint, token=TEST_TOKEN)
    side_hub.set_faults([])


def new_repo(api: HfApi) -> str:
    repo_id = f"{TEST_USER}/faults-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo_id)
    return repo_id


def test_fault_spec_parsing_and_seeded_probability():
    fault = Fault.parse("preupload:429:retry_after=3:times=1")
    assert (fault.endpoint, fault.kind, fault.retry_after, fault.times) == ("preupload", "429", 3, 1)
    assert fault.fire() and not fault.fire()
    first, second = Fault.parse("lfs-put:drop:p=0.3:seed=7"), Fault.parse("lfs-put:drop:p=0.3:seed=7")
    fired = [first.fire() for _ in range(50)]
    assert fired == [second.fire() for _ in range(50)] and 5 < sum(fired) < 30
    for bad in ("nowhere:500", "commit:418", "commit:500:often=1", "commit:500:p=2"):
        with pytest.raises(ValueError):
            Fault.parse(bad)


def test_session_hub_handle_changes_faults_at_run_time(tmp_path: Path):
    handle = running_hub(ENDPOINT)
    api = HfApi(endpoint=ENDPOINT, token=TEST_TOKEN)
    repo_id = f"{TEST_USER}/runtime-faults-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo_id)
    handle.set_faults(["commit:503:times=1"])
    try:
        with pytest.raises(HfHubHTTPError):
            api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
    finally:
        handle.set_faults([])
    assert api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id).oid
    assert ("503", "POST", f"/api/models/{repo_id}/commit/main") in handle.fault_log


TRANSIENT = [k for k in KINDS if k != "lost"]


@pytest.mark.parametrize("kind", TRANSIENT)
@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e != "resolve"])
def test_upload_under_fault_recovers_or_leaves_repo_unchanged(side_hub, side_api: HfApi, tmp_path: Path, endpoint: str, kind: str):
    repo_id = new_repo(side_api)
    head = side_api.repo_info(repo_id).sha
    payload = os.urandom(48 * KiB)  # binary: goes through preupload, LFS batch, LFS PUT and commit
    side_hub.set_faults([f"{endpoint}:{kind}:times=1:retry_after=1"])
    try:
        side_api.upload_file(path_or_fileobj=payload, path_in_repo="data/blob.bin", repo_id=repo_id)
        recovered = True
    except Exception:  # noqa: BLE001 - any client error is an acceptable outcome; the state is what we check
        recovered = False
    side_hub.set_faults([])
    assert any(f[0] == kind for f in side_hub.fault_log), "the fault never fired"
    files = side_api.list_repo_files(repo_id)
    if recovered:
        path = hf_hub_download(repo_id, "data/blob.bin", endpoint=side_hub.endpoint, cache_dir=tmp_path)
        assert Path(path).read_bytes() == payload
    else:
        assert side_api.repo_info(repo_id).sha == head and "data/blob.bin" not in files
    if endpoint in ("preupload", "lfs-batch", "lfs-put"):
        assert recovered, f"huggingface_hub retries {endpoint}; one {kind} should not break the upload"


@pytest.mark.parametrize("kind", KINDS)
def test_download_under_fault_recovers_or_raises(side_hub, side_api: HfApi, tmp_path: Path, kind: str):
    repo_id = new_repo(side_api)
    payload = os.urandom(300 * KiB)
    side_api.upload_file(path_or_fileobj=payload, path_in_repo="w.bin", repo_id=repo_id)
    side_hub.set_faults([f"resolve:{kind}:times=1:retry_after=1"])
    try:
        path = hf_hub_download(repo_id, "w.bin", endpoint=side_hub.endpoint, cache_dir=tmp_path)
    except Exception:  # noqa: BLE001
        path = None
    side_hub.set_faults([])
    if path is not None:
        assert Path(path).read_bytes() == payload  # a resumed download must still be byte-exact
    else:
        assert kind not in ("drop", "lost"), "a cut download should be resumed with Range"
        assert Path(hf_hub_download(repo_id, "w.bin", endpoint=side_hub.endpoint, cache_dir=tmp_path)).read_bytes() == payload


def test_lost_commit_response_leaves_the_commit_in_place(side_hub, side_api: HfApi):
    repo_id = new_repo(side_api)
    side_hub.set_faults(["commit:lost:times=1"])
    with pytest.raises(Exception):  # noqa: B017 - the client sees a broken response, whatever its type
        side_api.upload_file(path_or_fileobj=b"landed", path_in_repo="l.txt", repo_id=repo_id)
    side_hub.set_faults([])
    assert "l.txt" in side_api.list_repo_files(repo_id)  # a retry must not blindly commit twice


def test_random_drops_with_seed_keep_repo_consistent(side_hub, side_api: HfApi, tmp_path: Path):
    repo_id = new_repo(side_api)
    folder = tmp_path / "many"
    folder.mkdir()
    contents = {f"part-{i}.bin": os.urandom(20 * KiB) for i in range(4)}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    side_hub.set_faults(["lfs-put:drop:p=0.5:seed=1"])
    try:
        side_api.upload_folder(repo_id=repo_id, folder_path=folder)
        recovered = True
    except Exception:  # noqa: BLE001
        recovered = False
    side_hub.set_faults([])
    files = set(side_api.list_repo_files(repo_id))
    assert files == ({".gitattributes", *contents} if recovered else {".gitattributes"})
    for name in contents if recovered else []:
        assert Path(hf_hub_download(repo_id, name, endpoint=side_hub.endpoint, cache_dir=tmp_path / "c")).read_bytes() == contents[name]


def test_tree_and_commits_are_paginated_with_link_headers(side_hub, side_api: HfApi, tmp_path: Path):
    repo_id = new_repo(side_api)
    for i in range(3):
        side_api.upload_file(path_or_fileobj=f"{i}".encode(), path_in_repo=f"d/f{i}.txt", repo_id=repo_id)
    first_page = httpx.get(f"{side_hub.endpoint}/api/models/{repo_id}/tree/main/d")
    assert len(first_page.json()) == 2 and 'rel="next"' in first_page.headers["Link"]
    assert sorted(side_api.list_repo_files(repo_id)) == [".gitattributes", "d/f0.txt", "d/f1.txt", "d/f2.txt"]
    titles = [c.title for c in side_api.list_repo_commits(repo_id)]
    assert len(titles) == 4 and titles[-1] == "initial commit" and titles[0] == "Upload d/f2.txt with huggingface_hub"
    infos = side_api.get_paths_info(repo_id, ["d/f1.txt", "d", "absent.txt"])
    assert sorted(i.path for i in infos) == ["d", "d/f1.txt"]


def test_size_limits(side_hub, side_api: HfApi):
    repo_id = new_repo(side_api)
    head = side_api.repo_info(repo_id).sha
    with pytest.raises(ValueError, match="LFS batch"):
        side_api.upload_file(path_or_fileobj=os.urandom(1100 * KiB), path_in_repo="huge.bin", repo_id=repo_id)
    big_json = httpx.post(f"{side_hub.endpoint}/api/validate-yaml", json={"content": "x" * 70 * KiB})
    assert big_json.status_code == 413 and big_json.headers["X-Error-Code"] == "PayloadTooLarge"
    auth = {"Authorization": f"Bearer {TEST_TOKEN}", "Content-Type": "application/x-ndjson"}
    lines = [
        {"key": "header", "value": {"summary": "too big"}},
        {"key": "file", "value": {"path": "t.txt", "content": "QUFB" * 70 * KiB, "encoding": "base64"}},
    ]
    too_big = httpx.post(f"{side_hub.endpoint}/api/models/{repo_id}/commit/main", headers=auth, content="\n".join(map(json.dumps, lines)))
    assert too_big.status_code == 413
    lines[1]["value"]["content"] = "QUFB" * 45 * KiB  # 135 KiB decoded: over the regular-file limit
    regular = httpx.post(f"{side_hub.endpoint}/api/models/{repo_id}/commit/main", headers=auth, content="\n".join(map(json.dumps, lines)))
    assert regular.status_code == 400 and "LFS" in regular.headers["X-Error-Message"]
    assert side_api.repo_info(repo_id).sha == head
