"""Where ltd-hub keeps its local state (embedding cache, Hub root, converted models)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """Return ``$LTD_HUB_CACHE/<parts>`` (default ``~/.cache/ltd-hub``), created on demand."""
    base = os.environ.get("LTD_HUB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "ltd-hub"
    )
    path = Path(base, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
