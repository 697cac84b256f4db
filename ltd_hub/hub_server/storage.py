"""On-disk repositories: git loose objects, refs, content-addressed LFS objects and metadata.

Layout under the root (one bare-git-like folder per repo)::

    repos/<model|dataset|space>/<namespace>/<name>/
        HEAD, meta.json               git's HEAD (so `git --git-dir=...` reads it); private flag, SDK
        objects/<2 hex>/<38 hex>      zlib-compressed git objects (as `git` writes them)
        refs/heads/main, refs/tags/<tag>, refs/pr/<n>
        lfs/objects/<2>/<2>/<sha256>  LFS file contents
        tmp/                          in-flight writes, renamed into place when complete
        .lock                         file lock that serialises writers across processes

Every file is written to ``tmp/``, fsynced, renamed into place and its directory fsynced, and a
ref moves only after all the objects it points to are durable, so neither a killed process nor
a power cut leaves a ref pointing at missing or partial data.
"""

from __future__ import annotations

import contextvars
import errno
import fcntl
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ltd_hub.hub_server import errors, names
from ltd_hub.hub_server.git_objects import (
    FILE_MODE,
    TREE_MODE,
    Commit,
    TreeEntry,
    decode_tree,
    encode_tree,
    lfs_pointer,
    object_id,
    parse_lfs_pointer,
)

DEFAULT_BRANCH = "main"
_GITATTRIBUTES_LFS = [
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*", "*.mlmodel",
    "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt",
    "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm",
    "*.xz", "*.zip", "*.zst", "*tfevents*", "*.gguf", "*.mp3", "*.wav", "*.png", "*.jpg", "*.jpeg", "*.webp",
]  # fmt: skip
DEFAULT_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in _GITATTRIBUTES_LFS).encode()

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextmanager
def file_lock(lock_file: Path):
    """Hold a per-path thread lock and an exclusive ``flock`` (other processes, e.g. ``hub seed``)."""
    with _thread_locks_guard:
        lock = _thread_locks.setdefault(str(lock_file), threading.Lock())
    with lock:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_file, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


# Set by the ``enospc`` fault (faults.py) for one request: every storage write then fails the
# way it does on a full disk, so the real error path (cleanup, 507 answer) is what gets tested.
SIMULATE_DISK_FULL: contextvars.ContextVar[bool] = contextvars.ContextVar("ltd_hub_simulate_disk_full", default=False)


def check_space(path: Path) -> None:
    """Raise ENOSPC, as a write on a full disk would, while the ``enospc`` fault is active."""
    if SIMULATE_DISK_FULL.get():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def atomic_write(path: Path, data: bytes, tmp_dir: Path) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the whole new file.

    On any failure (disk full, name too long) the temporary file is removed: nothing is left behind.
    """
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"w-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as handle:
            check_space(tmp)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after a successful replace there is nothing to unlink
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (it lives in the directory entry, not the file)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class BlobInfo:
    size: int  # size of the file as users see it (the LFS object's size for LFS files)
    blob_size: int  # size of the git blob (the pointer for LFS files)
    lfs: tuple[str, int] | None  # (sha256, size) for LFS files


@dataclass(frozen=True)
class Snapshot:
    """The flattened tree of one commit: file path -> blob id, directory path -> tree id."""

    files: dict[str, str]
    dirs: dict[str, str]


@dataclass
class AddFile:
    path: str
    content: bytes


@dataclass
class AddLfs:
    path: str
    oid: str
    size: int | None = None


@dataclass
class Delete:
    path: str
    folder: bool = False


class _LRU(OrderedDict):
    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.lock = threading.Lock()

    def get_or(self, key, compute):
        with self.lock:
            if key in self:
                self.move_to_end(key)
                return self[key]
        value = compute()
        self.put(key, value)
        return value

    def peek(self, key):
        with self.lock:
            return OrderedDict.get(self, key)

    def put(self, key, value) -> None:
        with self.lock:
            self[key] = value
            while len(self) > self.capacity:
                self.popitem(last=False)


# Keyed by object id: ids are content hashes, so entries are valid for every repo.
_snapshots = _LRU(256)
_blob_infos = _LRU(100_000)
_trees = _LRU(4096)  # tree id -> {name: child id}, for path lookups that touch one tree per level
_last_changes = _LRU(100_000)  # (commit, path) -> (commit that last changed path, its Commit)


class Repo:
    """One repository on disk. Reads need no lock; every write goes through :meth:`write_lock`."""

    def __init__(self, path: Path, repo_type: str, repo_id: str):
        self.path, self.repo_type, self.repo_id = path, repo_type, repo_id
        self.tmp = path / "tmp"

    # -- metadata -------------------------------------------------------------------------------
    @property
    def meta(self) -> dict:
        return json.loads((self.path / "meta.json").read_text())

    def write_meta(self, meta: dict) -> None:
        atomic_write(self.path / "meta.json", json.dumps(meta).encode(), self.tmp)

    @contextmanager
    def write_lock(self):
        with file_lock(self.path / ".lock"):
            yield

    # -- git objects ----------------------------------------------------------------------------
    def _object_path(self, oid: str) -> Path:
        return self.path / "objects" / oid[:2] / oid[2:]

    def write_object(self, kind: str, body: bytes) -> str:
        oid = object_id(kind, body)
        path = self._object_path(oid)
        if not path.exists():  # content-addressed: an existing object is the same bytes
            atomic_write(path, zlib.compress(b"%s %d\x00" % (kind.encode(), len(body)) + body, 1), self.tmp)
        return oid

    def read_object(self, oid: str) -> tuple[str, bytes]:
        try:
            raw = zlib.decompress(self._object_path(oid).read_bytes())
        except FileNotFoundError:
            raise KeyError(oid) from None
        header, _, body = raw.partition(b"\x00")
        return header.split(b" ")[0].decode(), body

    def object_kind(self, oid: str) -> str | None:
        try:
            with open(self._object_path(oid), "rb") as handle:
                return zlib.decompressobj().decompress(handle.read(64)).split(b" ", 1)[0].decode()
        except (FileNotFoundError, zlib.error):
            return None

    def read_commit(self, oid: str) -> Commit:
        return Commit.decode(self.read_object(oid)[1])

    def blob_bytes(self, oid: str) -> bytes:
        return self.read_object(oid)[1]

    def blob_info(self, oid: str) -> BlobInfo:
        def compute() -> BlobInfo:
            body = self.blob_bytes(oid)
            lfs = parse_lfs_pointer(body)
            return BlobInfo(lfs[1] if lfs else len(body), len(body), lfs)

        return _blob_infos.get_or(oid, compute)

    # -- LFS objects ----------------------------------------------------------------------------
    def lfs_path(self, oid: str) -> Path:
        oid = names.lfs_oid(oid)
        return self.path / "lfs" / "objects" / oid[:2] / oid[2:4] / oid

    def lfs_size(self, oid: str) -> int | None:
        try:
            return self.lfs_path(oid).stat().st_size
        except FileNotFoundError:
            return None

    @contextmanager
    def lfs_writer(self, oid: str, expected_size: int):
        """Yield a ``write(chunk)`` callable; on exit keep the object only if sha256 and size match (else 400)."""
        final = self.lfs_path(oid)
        self.tmp.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp / f"lfs-{uuid.uuid4().hex}"
        digest, size = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as handle:

                def write(chunk: bytes) -> None:
                    nonlocal size
                    size += len(chunk)
                    if size > expected_size:
                        raise errors.bad_request(f"LFS upload is larger than the announced {expected_size} bytes")
                    check_space(tmp)
                    digest.update(chunk)
                    handle.write(chunk)

                yield write
                handle.flush()
                os.fsync(handle.fileno())
            if size != expected_size or digest.hexdigest() != oid:
                raise errors.bad_request(
                    f"LFS upload does not match its oid/size: expected {oid} ({expected_size} bytes), got {digest.hexdigest()} ({size} bytes)"
                )
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            fsync_dir(final.parent)
        finally:
            tmp.unlink(missing_ok=True)

    # -- refs -----------------------------------------------------------------------------------
    def _ref_path(self, ref: str) -> Path:
        names.check_ref_name(ref)
        path = (self.path / ref).resolve()
        if not path.is_relative_to((self.path / "refs").resolve()):
            raise errors.bad_request(f"Invalid ref: {ref!r}")
        return path

    def read_ref(self, ref: str) -> str | None:
        try:
            path = self._ref_path(ref)
            return path.read_text().strip() if path.is_file() else None
        except (NotADirectoryError, OSError):
            return None

    def write_ref(self, ref: str, oid: str) -> None:
        path = self._ref_path(ref)
        refs_dir = (self.path / "refs").resolve()
        if path.is_dir() or any(p.is_file() for p in path.parents if p.is_relative_to(refs_dir)):
            raise errors.HubHTTPError(409, "RefConflict", f"Ref {ref} conflicts with an existing ref")
        atomic_write(path, oid.encode() + b"\n", self.tmp)

    def delete_ref(self, ref: str) -> None:
        self._ref_path(ref).unlink(missing_ok=True)

    def list_refs(self, kind: str) -> dict[str, str]:
        """``{name: commit}`` for ``heads``, ``tags`` or ``pr``."""
        base = self.path / "refs" / kind
        if not base.is_dir():
            return {}
        return {str(p.relative_to(base)): p.read_text().strip() for p in sorted(base.rglob("*")) if p.is_file()}

    def resolve(self, revision: str) -> str:
        """Commit id for a branch, tag, ``refs/...`` name, full sha or unique 7+ hex prefix."""
        names.check_ref_name(revision)
        candidates = [revision] if revision.startswith("refs/") else [f"refs/heads/{revision}", f"refs/tags/{revision}"]
        for ref in candidates:
            if oid := self.read_ref(ref):
                return oid
        if names.is_hex_prefix(revision):
            if len(revision) == 40:
                if self.object_kind(revision) == "commit":
                    return revision
            else:
                folder = self.path / "objects" / revision[:2]
                found = [revision[:2] + p.name for p in folder.glob(revision[2:] + "*")] if folder.is_dir() else []
                commits = [oid for oid in found if self.object_kind(oid) == "commit"]
                if len(commits) == 1:
                    return commits[0]
        raise errors.revision_not_found(revision)

    def branch_ref(self, revision: str) -> str:
        """The ref a commit to ``revision`` moves: a branch or a PR ref (404 if neither)."""
        if revision.startswith(("refs/pr/", "refs/heads/")):
            ref = revision
        else:
            ref = f"refs/heads/{revision}"
        if self.read_ref(ref) is None:
            raise errors.revision_not_found(revision)
        return ref

    # -- trees and history ----------------------------------------------------------------------
    def snapshot(self, commit: str) -> Snapshot:
        tree = self.read_commit(commit).tree

        def compute() -> Snapshot:
            files, dirs = {}, {}
            stack = [("", tree)]
            while stack:
                prefix, oid = stack.pop()
                for entry in decode_tree(self.read_object(oid)[1]):
                    path = prefix + entry.name
                    if entry.is_dir:
                        dirs[path] = entry.oid
                        stack.append((path + "/", entry.oid))
                    else:
                        files[path] = entry.oid
            return Snapshot(dict(sorted(files.items())), dirs)

        return _snapshots.get_or(tree, compute)

    def history(self, commit: str):
        """Yield ``(oid, Commit)`` following first parents, newest first."""
        oid: str | None = commit
        while oid:
            item = self.read_commit(oid)
            yield oid, item
            oid = item.parents[0] if item.parents else None

    def _tree_entries(self, tree: str) -> dict[str, str]:
        return _trees.get_or(tree, lambda: {e.name: e.oid for e in decode_tree(self.read_object(tree)[1])})

    def path_oid(self, tree: str, path: str) -> str | None:
        """The blob or tree id at ``path`` under the tree ``tree`` (None if absent): one tree per level."""
        oid: str | None = tree
        for part in path.split("/"):
            entries = self._tree_entries(oid)
            oid = entries.get(part)
            if oid is None:
                return None
        return oid

    def last_changes(self, commit: str, paths: list[str]) -> dict[str, tuple[str, Commit]]:
        """For each path, ``(oid, Commit)`` of the newest first-parent commit that changed it.

        One walk down the history for all paths together. A commit whose root tree equals its
        parent's changed nothing and is skipped without reading any tree; otherwise only the
        trees along the pending paths are read (decoded trees are cached by id, and unchanged
        subtrees keep their id, so most lookups hit the cache). Answers are cached by
        ``(commit, path)``: commits are immutable, so they never go stale.
        """
        found: dict[str, tuple[str, Commit]] = {}
        pending = []
        for path in paths:
            cached = _last_changes.peek((commit, path))
            if cached is not None:
                found[path] = cached
            else:
                pending.append(path)
        if not pending:
            return found
        oid: str | None = commit
        item = self.read_commit(commit)
        here = {path: self.path_oid(item.tree, path) for path in pending}
        while oid and pending:
            parent = item.parents[0] if item.parents else None
            parent_item = self.read_commit(parent) if parent else None
            if parent_item is not None and parent_item.tree == item.tree:
                before = here
            else:
                before = {p: (self.path_oid(parent_item.tree, p) if parent_item else None) for p in pending}
                for path in [p for p in pending if before[p] != here[p]]:
                    found[path] = (oid, item)
                    _last_changes.put((commit, path), (oid, item))
                    pending.remove(path)
            oid, item, here = parent, parent_item, before
        return found

    def _write_tree(self, files: dict[str, str]) -> str:
        children: dict[str, dict[str, str]] = {}
        entries = []
        for path, oid in files.items():
            head, sep, rest = path.partition("/")
            if sep:
                children.setdefault(head, {})[rest] = oid
            else:
                entries.append(TreeEntry(head, FILE_MODE, oid))
        entries += [TreeEntry(name, TREE_MODE, self._write_tree(sub)) for name, sub in children.items()]
        return self.write_object("tree", encode_tree(entries))

    def commit(
        self,
        ref: str,
        operations: list,
        *,
        message: str,
        author: str,
        parent: str | None = None,
        base: str | None = None,
        skip_if_unchanged: bool = False,
    ) -> str:
        """Apply ``operations`` on top of ``ref`` (or ``base``) in one commit and move ``ref``.

        Raises 412 when ``parent`` is given and is not the current head (optimistic concurrency).
        Call under :meth:`write_lock`.
        """
        head = self.read_ref(ref)
        start = base or head
        if parent is not None and parent != head:
            raise errors.HubHTTPError(412, "PreconditionFailed", "A commit has happened since. Please refresh and try again.")
        files = dict(self.snapshot(start).files) if start else {}
        for op in operations:
            if isinstance(op, AddFile):
                files[op.path] = self.write_object("blob", op.content)
            elif isinstance(op, AddLfs):
                stored = self.lfs_size(op.oid)
                if stored is None:
                    raise errors.bad_request(f"LFS object {op.oid} for {op.path} was never uploaded")
                if op.size is not None and op.size != stored:
                    raise errors.bad_request(f"LFS object {op.oid} has size {stored}, not {op.size}")
                files[op.path] = self.write_object("blob", lfs_pointer(op.oid, stored))
            elif op.folder:
                inside = [p for p in files if p.startswith(op.path.rstrip("/") + "/")]
                if not inside:
                    raise errors.entry_not_found(op.path, head)
                for path in inside:
                    del files[path]
            elif files.pop(op.path, None) is None:
                raise errors.entry_not_found(op.path, head)
        for path in files:
            parts = path.split("/")
            if any("/".join(parts[:i]) in files for i in range(1, len(parts))):
                raise errors.bad_request(f"{path} is inside a path that is a file")
        tree = self._write_tree(files)
        if skip_if_unchanged and head and self.read_commit(head).tree == tree:
            return head
        commit = Commit(tree, (start,) if start else (), author, int(time.time()), message)
        oid = self.write_object("commit", commit.encode())
        self.write_ref(ref, oid)
        return oid


class HubStorage:
    """All repositories under one root folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        (self.root / "repos").mkdir(parents=True, exist_ok=True)
        self.tmp = self.root / "tmp"
        self._secret: bytes | None = None

    def _repo_path(self, repo_type: str, repo_id: str) -> Path:
        namespace, _, name = repo_id.partition("/")
        if repo_type not in names.URL_PREFIX:
            raise errors.bad_request(f"Invalid repo type: {repo_type!r}")
        return self.root / "repos" / repo_type / names.check_name(namespace, "namespace") / names.check_name(name)

    def get(self, repo_type: str, repo_id: str) -> Repo | None:
        path = self._repo_path(repo_type, repo_id)
        return Repo(path, repo_type, repo_id) if (path / "meta.json").is_file() else None

    def secret(self) -> bytes:
        """Per-root HMAC key for pre-signed LFS upload URLs (kept across restarts)."""
        if self._secret is None:
            path = self.root / "secret"
            with file_lock(self.root / ".create.lock"):
                if not path.exists():
                    atomic_write(path, os.urandom(32).hex().encode(), self.tmp)
                    path.chmod(0o600)
            self._secret = bytes.fromhex(path.read_text())
        return self._secret

    def create(self, repo_type: str, repo_id: str, *, author: str, private: bool = False, sdk: str | None = None) -> Repo:
        """Create a repo with an initial commit holding ``.gitattributes``; FileExistsError if taken."""
        final = self._repo_path(repo_type, repo_id)
        with file_lock(self.root / ".create.lock"):
            taken = repo_id if final.exists() else self.find_case_insensitive(repo_type, repo_id)
            if taken is not None:  # the Hub's repo ids are unique regardless of case
                raise FileExistsError(taken)
            staging = self.tmp / f"repo-{uuid.uuid4().hex}"
            try:
                repo = Repo(staging, repo_type, repo_id)
                repo.write_meta({"private": bool(private), "sdk": sdk, "createdAt": time.time()})
                atomic_write(staging / "HEAD", f"ref: refs/heads/{DEFAULT_BRANCH}\n".encode(), repo.tmp)  # a bare repo for `git`
                repo.commit(
                    f"refs/heads/{DEFAULT_BRANCH}",
                    [AddFile(".gitattributes", DEFAULT_GITATTRIBUTES)],
                    message="initial commit",
                    author=author,
                )
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(staging, final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)  # e.g. disk full: no half-made repo left in tmp/
                raise
        return Repo(final, repo_type, repo_id)

    def find_case_insensitive(self, repo_type: str, repo_id: str) -> str | None:
        """The id of an existing repo of ``repo_type`` equal to ``repo_id`` ignoring case, or None."""
        namespace, _, name = repo_id.lower().partition("/")
        base = self.root / "repos" / repo_type
        if not base.is_dir():
            return None
        for ns_dir in base.iterdir():
            if ns_dir.name.lower() != namespace or not ns_dir.is_dir():
                continue
            for repo_dir in ns_dir.iterdir():
                if repo_dir.name.lower() == name and (repo_dir / "meta.json").is_file():
                    return f"{ns_dir.name}/{repo_dir.name}"
        return None

    def delete(self, repo_type: str, repo_id: str) -> bool:
        path = self._repo_path(repo_type, repo_id)
        with file_lock(self.root / ".create.lock"):
            if not path.exists():
                return False
            trash = self.tmp / f"trash-{uuid.uuid4().hex}"
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def list(self, repo_type: str) -> list[Repo]:
        base = self.root / "repos" / repo_type
        return [Repo(p.parent, repo_type, f"{p.parent.parent.name}/{p.parent.name}") for p in sorted(base.glob("*/*/meta.json"))]
