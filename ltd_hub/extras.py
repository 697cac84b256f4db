"""Optional dependencies, per block of the pipeline (like datatrove's): each extra of ``pyproject.toml``
and the modules it provides, checked where a block starts so a missing extra is one line naming it."""

from __future__ import annotations

import importlib.util

from ltd_hub.errors import UsageError

# extra -> modules it installs (keep in step with [project.optional-dependencies] in pyproject.toml).
EXTRAS: dict[str, tuple[str, ...]] = {
    "server": ("starlette", "uvicorn", "httpx", "gguf"),
    "reproduce": ("matplotlib",),
    "space": ("gradio", "matplotlib"),
    "ray": ("ray",),
}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that are not installed."""
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require(extra: str, what: str) -> None:
    """Raise one UsageError line naming ``pip install 'ltd-hub[extra]'`` when ``extra`` is not installed."""
    absent = missing(extra)
    if absent:
        raise UsageError(f"{what} needs the {extra} extra ({', '.join(absent)} not installed): pip install 'ltd-hub[{extra}]'")
