"""The embedded Hub under hostile input (issue 13): YAML and JSON bombs, odd ref names, a full
disk, case-insensitive repo ids, anonymous creates, and expanded tree pages on a long history."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from conftest import ENDPOINT, HUB_TOKENS, TEST_TOKEN, TEST_USER
from helpers import faults  # noqa: F401 - fixture
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from ltd_hub.hub_server import storage as storage_module
from ltd_hub.hub_server.storage import AddFile, HubStorage

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


def unique(stem: str) -> str:
    return f"{TEST_USER}/{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def api() -> HfApi:
    return HfApi(endpoint=ENDPOINT, token=TEST_TOKEN)


def commit_directly(hub_root: Path, repo_id: str, files: dict[str, bytes], message: str = "direct") -> str:
    """Commit to main through the storage layer: what a client's validation would refuse still lands."""
    repo = HubStorage(hub_root).get("model", repo_id)
    with repo.write_lock():
        return repo.commit("refs/heads/main", [AddFile(p, c) for p, c in files.items()], message=message, author=TEST_USER)


def leftovers(hub_root: Path, repo_id: str | None = None) -> list[Path]:
    """Files in the storage's temp folders: the root's ``tmp/`` and ``repo_id``'s (every repo's if None)."""
    repos = [hub_root / "repos" / "model" / repo_id] if repo_id else list(hub_root.glob("repos/*/*/*"))
    folders = [hub_root / "tmp", *(r / "tmp" for r in repos)]
    return [p for folder in folders if folder.is_dir() for p in folder.iterdir()]


# ------------------------------------------------------------------------------------ YAML bombs
def alias_bomb(levels: int) -> str:
    """A "billion laughs" card: each level lists the previous one 9 times (9**levels strings)."""
    lines = ["a: &a [" + ",".join(['"lol"'] * 9) + "]"]
    for i in range(1, levels):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "---\n" + "\n".join(lines) + "\n---\n# bomb\n"


def test_yaml_alias_bomb_card_answer_is_bounded_in_bytes_and_seconds(api: HfApi, hub_root: Path):
    repo_id = unique("yaml-bomb")
    api.create_repo(repo_id)
    card = alias_bomb(6)  # 531,441 strings once expanded: ~3.7 MB of JSON from a 300-byte card
    assert len(card) < 400
    commit_directly(hub_root, repo_id, {"README.md": card.encode()})
    for _ in range(2):  # the second answer comes from the cache
        start = time.monotonic()
        answer = httpx.get(f"{ENDPOINT}/api/models/{repo_id}")  # anonymous: anyone may ask
        elapsed = time.monotonic() - start
        assert answer.status_code == 200
        assert len(answer.content) < 4096 + len(card), f"{len(answer.content)} bytes answered for a {len(card)}-byte card"
        assert elapsed < 5, f"{elapsed:.1f}s"
        assert answer.json()["cardData"] is None  # treated like invalid metadata
    refused = httpx.post(f"{ENDPOINT}/api/validate-yaml", json={"content": card, "repoType": "model"})
    assert refused.status_code == 400 and "alias" in refused.json()["error"]


def test_small_aliases_dates_and_nan_in_a_card_still_answer(api: HfApi, hub_root: Path):
    repo_id = unique("yaml-ok")
    api.create_repo(repo_id)
    card = "---\nlicense: mit\nbase: &b [x, y]\ncopy: *b\ndate: 2024-05-01\nscore: .nan\n2020-01-01: day\n---\ntext\n"
    commit_directly(hub_root, repo_id, {"README.md": card.encode()})
    answer = httpx.get(f"{ENDPOINT}/api/models/{repo_id}")
    assert answer.status_code == 200, answer.text
    data = answer.json()["cardData"]
    assert data == {"license": "mit", "base": ["x", "y"], "copy": ["x", "y"], "date": "2024-05-01", "score": None, "2020-01-01": "day"}
    assert "license:mit" in answer.json()["tags"]


def test_deeply_nested_yaml_is_refused_not_a_crash(api: HfApi, hub_root: Path):
    deep = "---\na: " + "[" * 5000 + "]" * 5000 + "\n---\n"
    answer = httpx.post(f"{ENDPOINT}/api/validate-yaml", json={"content": deep})
    assert answer.status_code == 400 and answer.headers["X-Error-Code"]
    repo_id = unique("yaml-deep")
    api.create_repo(repo_id)
    commit_directly(hub_root, repo_id, {"README.md": ("---\na: " + "[" * 900 + "]" * 900 + "\n---\n").encode()})
    info = httpx.get(f"{ENDPOINT}/api/models/{repo_id}")
    assert info.status_code == 200 and info.json()["cardData"] is None


# ------------------------------------------------------------------------------------ JSON bombs
def test_json_nested_a_thousand_levels_deep_is_400_on_every_route(api: HfApi, hub_root: Path):
    repo_id = unique("json-bomb")
    api.create_repo(repo_id)
    deep = "[" * 1500 + "]" * 1500
    cases = [
        ("POST", "/api/validate-yaml", {}, '{"content": ' + deep + "}"),  # anonymous
        ("POST", "/api/repos/create", AUTH, '{"name": ' + deep + "}"),
        ("POST", f"/{repo_id}.git/info/lfs/objects/batch", AUTH, '{"operation": "upload", "objects": ' + deep + "}"),
        ("POST", f"/api/models/{repo_id}/paths-info/main", {**AUTH, "Content-Type": "application/json"}, '{"paths": ' + deep + "}"),
        ("POST", f"/api/models/{repo_id}/preupload/main", AUTH, '{"files": ' + deep + "}"),
        ("POST", f"/api/models/{repo_id}/branch/b1", AUTH, deep),
        (
            "POST",
            f"/api/models/{repo_id}/commit/main",
            {**AUTH, "Content-Type": "application/x-ndjson"},
            '{"key": "header", "value": ' + deep + "}",
        ),
    ]
    for method, path, headers, body in cases:
        answer = httpx.request(method, f"{ENDPOINT}{path}", headers=headers, content=body)
        assert answer.status_code == 400, f"{path}: {answer.status_code} {answer.text[:200]}"
        assert "nested too deeply" in answer.headers["X-Error-Message"], path
    assert leftovers(hub_root, repo_id) == []


# ------------------------------------------------------------------------------------- ref names
@pytest.mark.parametrize("name", ["é" * 200, "é" * 128, "a/" + "é" * 128])
def test_ref_names_over_255_bytes_are_400_and_leave_no_temp_file(api: HfApi, hub_root: Path, name: str):
    """A ref is a file: a name (or a part between slashes) over 255 bytes cannot be one, whatever its length in characters."""
    repo_id = unique("refs")
    api.create_repo(repo_id)
    assert len(name) <= 255 < len(name.split("/")[-1].encode())
    branch = httpx.post(f"{ENDPOINT}/api/models/{repo_id}/branch/{quote(name, safe='')}", headers=AUTH, json={})
    tag = httpx.post(f"{ENDPOINT}/api/models/{repo_id}/tag/main", headers=AUTH, json={"tag": name})
    for answer in (branch, tag):
        assert answer.status_code == 400 and answer.headers["X-Error-Code"] == "BadRequest", answer.text[:200]
    surrogate = httpx.post(
        f"{ENDPOINT}/api/models/{repo_id}/tag/main", headers={**AUTH, "Content-Type": "application/json"}, content='{"tag": "v\\ud800"}'
    )
    assert surrogate.status_code == 400
    assert leftovers(hub_root, repo_id) == []
    longest = "é" * 127 + "/" + "é" * 127  # parts of 254 bytes: still a valid name
    assert httpx.post(f"{ENDPOINT}/api/models/{repo_id}/tag/main", headers=AUTH, json={"tag": longest}).status_code == 200
    assert httpx.post(f"{ENDPOINT}/api/models/{repo_id}/branch/{quote(longest, safe='')}", headers=AUTH, json={}).status_code == 200
    refs = api.list_repo_refs(repo_id)
    assert longest in [t.name for t in refs.tags] and longest in [b.name for b in refs.branches]


# ------------------------------------------------------------------------------------- disk full
def hub_answer(exc: BaseException) -> httpx.Response:
    """The Hub's answer behind a client exception (an LFS upload failure wraps it in a RuntimeError)."""
    while exc is not None and not isinstance(exc, HfHubHTTPError):
        exc = exc.__cause__
    assert exc is not None, "no Hub answer behind the error"
    return exc.response


def test_disk_full_fault_answers_507_once_and_leaves_nothing(faults, api: HfApi, hub_root: Path):  # noqa: F811
    repo_id = unique("full")
    api.create_repo(repo_id)
    head = api.repo_info(repo_id).sha
    for spec, path, payload in (("commit:enospc", "f.txt", b"small text"), ("lfs-put:enospc", "f.bin", os.urandom(64 * 1024))):
        mark = len(faults.fault_log)
        faults.set_faults([spec])  # no times=: the disk stays full, a retry would fire it again
        with pytest.raises(Exception) as full:  # noqa: B017 - the answer behind it is checked
            api.upload_file(path_or_fileobj=payload, path_in_repo=path, repo_id=repo_id)
        faults.set_faults([])
        answer = hub_answer(full.value)
        assert answer.status_code == 507, spec
        assert answer.headers["X-Error-Code"] == "InsufficientStorage"
        assert "storage is full" in answer.headers["X-Error-Message"]
        assert len(faults.fault_log) - mark == 1, f"{spec}: a full disk was retried"
        assert api.repo_info(repo_id).sha == head and leftovers(hub_root, repo_id) == []
    assert [p for p in (hub_root / "repos" / "model" / repo_id).rglob("lfs/**/*") if p.is_file()] == []  # no partial LFS object


def test_a_push_to_a_full_hub_is_not_retried_and_says_so_in_one_line(faults, hub_root: Path, monkeypatch):  # noqa: F811
    from ltd_hub.errors import HubError
    from ltd_hub.hub.gateway import push_files

    monkeypatch.setenv("LTD_HUB_RETRY_BASE", "2")  # were it retried, five retries would take a minute
    repo_id = unique("full-push")
    HfApi(endpoint=ENDPOINT, token=TEST_TOKEN).create_repo(repo_id)
    mark = len(faults.fault_log)
    faults.set_faults(["commit:enospc"])
    start = time.monotonic()
    with pytest.raises(HubError) as err:
        push_files(repo_id, {"a.txt": b"a"}, repo_type="model", commit_message="full")
    faults.set_faults([])
    assert time.monotonic() - start < 20
    assert len(faults.fault_log) - mark == 1, "a 507 was retried"
    message = str(err.value)
    assert "507" in message and "disk is full" in message and "\n" not in message
    assert leftovers(hub_root, repo_id) == []


def test_a_repo_create_on_a_full_disk_leaves_no_half_made_repo(tmp_path: Path):
    store = HubStorage(tmp_path / "hub")
    token = storage_module.SIMULATE_DISK_FULL.set(True)
    try:
        with pytest.raises(OSError) as full:
            store.create("model", "me/full", author="me")
    finally:
        storage_module.SIMULATE_DISK_FULL.reset(token)
    assert full.value.errno == 28 and store.get("model", "me/full") is None
    assert list((tmp_path / "hub" / "tmp").iterdir()) == []


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 1 MiB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("cannot run mount here")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=20)


def test_a_really_full_disk_answers_507_and_leaves_nothing(small_tmpfs: Path):
    from ltd_hub.hub_server.serve import start_hub

    with start_hub(small_tmpfs / "hub", tokens=HUB_TOKENS) as hub:
        api = HfApi(endpoint=hub.endpoint, token=TEST_TOKEN)
        repo_id = f"{TEST_USER}/full"
        api.create_repo(repo_id)
        head = api.repo_info(repo_id).sha
        with pytest.raises(Exception) as lfs_full:  # noqa: B017 - 2 MiB through LFS on a 1 MiB disk
            api.upload_file(path_or_fileobj=os.urandom(2 * 1024 * 1024), path_in_repo="big.bin", repo_id=repo_id)
        assert hub_answer(lfs_full.value).status_code == 507
        assert api.repo_info(repo_id).sha == head and leftovers(small_tmpfs / "hub") == []
        filler = small_tmpfs / "filler"
        with open(filler, "wb", buffering=0) as handle:  # take what is left, so that even a tiny commit cannot land
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError:
                pass
        with pytest.raises(HfHubHTTPError) as commit_full:
            api.upload_file(path_or_fileobj=b"x" * 8192, path_in_repo="small.txt", repo_id=repo_id)
        assert commit_full.value.response.status_code == 507
        assert api.repo_info(repo_id).sha == head and leftovers(small_tmpfs / "hub") == []


# -------------------------------------------------------------------------------- repo creation
def test_repo_ids_are_unique_regardless_of_case(api: HfApi):
    repo_id = unique("CaseRepo")
    url = api.create_repo(repo_id)
    for other in (repo_id.lower(), repo_id.upper().replace(TEST_USER.upper(), TEST_USER)):
        with pytest.raises(HfHubHTTPError) as taken:
            api.create_repo(other)
        assert taken.value.response.status_code == 409
        assert "already created" in taken.value.response.json()["error"]
        assert api.create_repo(other, exist_ok=True) == url  # names the repo that exists
    assert not api.repo_exists(repo_id.lower())
    api.create_repo(repo_id.lower(), repo_type="dataset")  # another type is another id space


def test_anonymous_create_is_401_with_or_without_organization():
    for body in ({"name": "x"}, {"name": "x", "organization": TEST_USER}, {}):
        answer = httpx.post(f"{ENDPOINT}/api/repos/create", json=body)
        assert answer.status_code == 401 and answer.headers["X-Error-Code"] == "Unauthorized", body


# ------------------------------------------------------------------------ expanded tree on history
def test_expanded_tree_page_walks_a_long_history_once(api: HfApi, hub_root: Path, monkeypatch):
    """A page of ``tree?expand=true`` reads each commit of the history about once, not once per path."""
    repo_id = unique("long-history")
    api.create_repo(repo_id)
    repo = HubStorage(hub_root).get("model", repo_id)
    changed_by = {".gitattributes": repo.read_ref("refs/heads/main")}  # only the initial commit touches it
    with monkeypatch.context() as patch, repo.write_lock():
        patch.setattr(os, "fsync", lambda fd: None)  # 300 commits: durability is not under test here
        files = {f"f{i:02d}.txt": b"0" for i in range(60)}
        changed_by.update(
            dict.fromkeys(files, repo.commit("refs/heads/main", [AddFile(p, c) for p, c in files.items()], message="all", author=TEST_USER))
        )
        for n in range(1, 301):
            path = f"f{n % 60:02d}.txt" if n % 7 else "d/deep/file.txt"
            changed_by[path] = repo.commit("refs/heads/main", [AddFile(path, str(n).encode())], message=f"c{n}", author=TEST_USER)
    commits = 302  # initial + "all" + 300

    def count_reads() -> tuple[list, object]:
        reads, real_read = [], storage_module.Repo.read_object
        return reads, lambda self, oid: reads.append(oid) or real_read(self, oid)

    for cache in (storage_module._snapshots, storage_module._trees, storage_module._last_changes):
        cache.clear()  # cold: nothing learned from the commits above
    reads, counting = count_reads()
    with monkeypatch.context() as patch:
        patch.setattr(storage_module.Repo, "read_object", counting)
        start = time.monotonic()
        plain = httpx.get(f"{ENDPOINT}/api/models/{repo_id}/tree/main")
        plain_s, plain_reads = time.monotonic() - start, len(reads)
        start = time.monotonic()
        page = httpx.get(f"{ENDPOINT}/api/models/{repo_id}/tree/main?expand=true")  # anonymous
        expand_s, expand_reads = time.monotonic() - start, len(reads) - plain_reads
    assert plain.status_code == page.status_code == 200
    assert len(page.json()) == 50 and 'rel="next"' in page.headers["Link"]
    for entry in page.json():  # every entry names the commit that last changed it
        if entry["path"] in changed_by:
            assert entry["lastCommit"]["id"] == changed_by[entry["path"]], entry["path"]
    dirs = {e["path"]: e for e in page.json() if e["type"] == "directory"}
    assert dirs["d"]["lastCommit"]["id"] == changed_by["d/deep/file.txt"]
    # .gitattributes changed only in the first commit, so the walk covers the whole history: one
    # commit and one root tree read per step (the old code re-read whole snapshots per path and step).
    assert expand_reads <= 3 * commits, f"{expand_reads} object reads for {commits} commits"
    print(f"tree page: {plain_s * 1000:.0f} ms ({plain_reads} reads); expanded: {expand_s * 1000:.0f} ms ({expand_reads} reads)")
    reads, counting = count_reads()
    with monkeypatch.context() as patch:
        patch.setattr(storage_module.Repo, "read_object", counting)
        again = httpx.get(f"{ENDPOINT}/api/models/{repo_id}/tree/main?expand=true")
    assert again.json() == page.json() and len(reads) < 10, "a second view of the page is answered from the cache"
