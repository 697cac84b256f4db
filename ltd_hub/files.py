"""Files written so an interrupted run never leaves half of one, and the digests the project records.

Every write that a crash, a kill or a full disk could cut short goes beside its target first and is
renamed over it (``os.replace`` is atomic on one filesystem), so a reader sees the old file or the new
one, never a part. Digests are sha256 throughout; :func:`json_digest` is the one way a config or a
payload is hashed (keys sorted, so the same content always has the same digest).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_json", "json_digest", "replace_dir", "sha256_file", "staged_dir", "staged_file"]


@contextlib.contextmanager
def staged_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path``, on an error it is removed.

    For writers that want a path of their own (Parquet writers, ``np.save``, ``Dataset.to_json``)::

        with staged_file(out / "rows.jsonl") as tmp:
            dataset.to_json(str(tmp), lines=True)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | Path, data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` (bytes, or text in ``encoding``) to ``path`` through a temporary file and a rename."""
    with staged_file(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding=encoding)
        else:
            tmp.write_bytes(data)
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 2, **dump_kwargs: Any) -> Path:
    """:func:`atomic_write` of ``obj`` as JSON (with a final newline; ``dump_kwargs`` go to ``json.dumps``)."""
    return atomic_write(path, json.dumps(obj, indent=indent, **dump_kwargs) + "\n")


def replace_dir(staging: str | Path, target: str | Path) -> Path:
    """Move the finished folder ``staging`` to ``target``, replacing what was there.

    The old folder is removed just before the rename, so a crash between the two leaves no target
    (a re-run rebuilds it) rather than a mix of old and new files.
    """
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


@contextlib.contextmanager
def staged_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on a clean exit it becomes ``target`` (:func:`replace_dir`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | Path, *, block: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in blocks (memory stays flat on large weights or data files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


def json_digest(payload: Any, length: int | None = None) -> str:
    """Hex sha256 of ``payload`` as canonical JSON (sorted keys; other objects by ``str``), cut to ``length``."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
