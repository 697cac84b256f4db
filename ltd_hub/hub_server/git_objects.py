"""Git object encoding: blobs, trees, commits and LFS pointers, with ids computed as git does."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

FILE_MODE = b"100644"
TREE_MODE = b"40000"
LFS_POINTER_MAX = 1024
_POINTER_RE = re.compile(rb"^version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize (\d+)\n$")


def object_id(kind: str, body: bytes) -> str:
    """Git object id: sha1 of ``"<kind> <len>\\0" + body`` (``kind`` = blob, tree or commit)."""
    return hashlib.sha1(b"%s %d\x00" % (kind.encode(), len(body)) + body).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    """The pointer text git-lfs stores in the tree in place of a large file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def parse_lfs_pointer(body: bytes) -> tuple[str, int] | None:
    """``(sha256, size)`` if ``body`` is an LFS pointer, else None."""
    if len(body) > LFS_POINTER_MAX:
        return None
    match = _POINTER_RE.match(body)
    return (match.group(1).decode(), int(match.group(2))) if match else None


@dataclass(frozen=True)
class TreeEntry:
    name: str
    mode: bytes
    oid: str

    @property
    def is_dir(self) -> bool:
        return self.mode == TREE_MODE


def _sort_key(entry: TreeEntry) -> bytes:
    # git compares directory names as if they ended with "/"
    return entry.name.encode() + (b"/" if entry.is_dir else b"")


def encode_tree(entries: list[TreeEntry]) -> bytes:
    return b"".join(e.mode + b" " + e.name.encode() + b"\x00" + bytes.fromhex(e.oid) for e in sorted(entries, key=_sort_key))


def decode_tree(body: bytes) -> list[TreeEntry]:
    entries, pos = [], 0
    while pos < len(body):
        space = body.index(b" ", pos)
        nul = body.index(b"\x00", space)
        mode = body[pos:space]
        entries.append(TreeEntry(body[space + 1 : nul].decode(), TREE_MODE if mode == TREE_MODE else mode, body[nul + 1 : nul + 21].hex()))
        pos = nul + 21
    return entries


@dataclass(frozen=True)
class Commit:
    tree: str
    parents: tuple[str, ...]
    author: str
    timestamp: int
    message: str

    @property
    def title(self) -> str:
        return self.message.split("\n", 1)[0]

    def encode(self) -> bytes:
        ident = f"{self.author} <{self.author}@users.noreply.hf.local> {self.timestamp} +0000"
        lines = [f"tree {self.tree}", *(f"parent {p}" for p in self.parents), f"author {ident}", f"committer {ident}"]
        return ("\n".join(lines) + "\n\n" + self.message.rstrip("\n") + "\n").encode()

    @classmethod
    def decode(cls, body: bytes) -> Commit:
        head, _, message = body.decode().partition("\n\n")
        tree, parents, author, timestamp = "", [], "", 0
        for line in head.split("\n"):
            key, _, value = line.partition(" ")
            if key == "tree":
                tree = value
            elif key == "parent":
                parents.append(value)
            elif key == "author":
                author = value.split(" <", 1)[0]
                timestamp = int(value.rsplit(" ", 2)[1])
        return cls(tree, tuple(parents), author, timestamp, message.rstrip("\n"))
