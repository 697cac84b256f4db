"""Validation of repo ids, revisions, file paths and LFS oids.

Everything that comes from a URL or a request body passes through here before it is used to
build a filesystem path, so traversal (``..``, absolute paths, NUL, backslashes, and their
percent-encoded forms, which are decoded before the check) is refused with a 400.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from ltd_hub.hub_server.errors import bad_request

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}

_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_HEX_RE = re.compile(r"^[0-9a-f]{7,40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_REF_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
MAX_PATH_CHARS = 1000


def check_name(part: str, what: str = "repo name") -> str:
    """Return a namespace or repo name if it follows the Hub's rules, else raise 400."""
    if not _NAME_RE.match(part) or "--" in part or ".." in part:
        raise bad_request(f"Invalid {what}: {part!r}")
    return part


def repo_id(namespace: str, name: str) -> str:
    return f"{check_name(unquote(namespace), 'namespace')}/{check_name(unquote(name))}"


def repo_type(plural: str) -> str:
    """``models`` -> ``model``; anything else is a 400."""
    try:
        return REPO_TYPES[plural]
    except KeyError:
        raise bad_request(f"Invalid repo type: {plural!r}") from None


def _utf8_len(text: str) -> int:
    """Length in UTF-8 bytes; a huge number for text that has no UTF-8 form (lone surrogates)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return 1 << 30


def check_ref_name(name: str) -> str:
    """Check a branch/tag/revision name with git's ref-name rules (decoded form)."""
    parts = name.split("/")
    if (
        not name
        or _utf8_len(name) > 1024
        or any(_utf8_len(p) > 255 for p in parts)  # a ref is a file: 255 *bytes* per name, not characters
        or _REF_BAD_CHARS.search(name)
        or "@{" in name
        or any(not p or p.startswith(".") or p.endswith(".lock") for p in parts)
        or name.endswith(".")
    ):
        raise bad_request(f"Invalid revision: {name!r}")
    return name


def revision(raw: str) -> str:
    """Decode a percent-encoded revision from a URL segment (``refs%2Fpr%2F1``) and check it."""
    return check_ref_name(unquote(raw))


def is_hex_prefix(rev: str) -> bool:
    return bool(_HEX_RE.match(rev))


def file_path(path: str, *, allow_empty: bool = False) -> str:
    """Check a path inside a repo: relative, ``/``-separated, no ``.``/``..``/empty parts, no NUL."""
    path = path.strip("/") if allow_empty else path
    if allow_empty and not path:
        return ""
    if (
        not path
        or len(path) > MAX_PATH_CHARS
        or path.startswith("/")
        or "\x00" in path
        or _utf8_len(path) > 4 * MAX_PATH_CHARS  # also refuses lone surrogates (no UTF-8 form)
        or "\\" in path
        or any(part in ("", ".", "..") for part in path.split("/"))
        or path.split("/")[0] == ".git"
    ):
        raise bad_request(f"Invalid path: {path!r}")
    return path


def url_path(raw: str, *, allow_empty: bool = False) -> str:
    return file_path(unquote(raw), allow_empty=allow_empty)


def lfs_oid(oid: str) -> str:
    if not isinstance(oid, str) or not _SHA256_RE.match(oid):
        raise bad_request(f"Invalid LFS oid: {oid!r}")
    return oid
