"""Errors that reach the user as one actionable line (exit code 2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class LtdHubError(Exception):
    """A problem the user can fix; the message is one line that names the fix.

    The CLI prints ``error: <message>`` and exits with code 2, with no traceback unless
    ``LTD_HUB_DEBUG=1``. Library callers get the exception as-is.
    """

    exit_code = 2


class UsageError(LtdHubError):
    """Bad arguments or bad input data."""


class HubError(LtdHubError):
    """The Hub refused or could not complete a request (auth, missing repo, conflict, network)."""


class NotFoundError(HubError):
    """What was asked for is not on the Hub, or not visible with this token.

    Raised by :mod:`ltd_hub.hub.gateway` in place of huggingface_hub's not-found errors (which stay
    the ``__cause__``), so callers tell "absent" from "failed" by type: a read that may find nothing
    catches the subclass it expects and lets every other :class:`HubError` through.
    """


class MissingRepoError(NotFoundError):
    """No such repo, or a private or gated one this token cannot see."""


class InvalidRepoIdError(MissingRepoError):
    """The id is not a valid ``namespace/name`` repo id, so it names no repo."""


class MissingRevisionError(NotFoundError):
    """The repo exists but has no such branch, tag or commit."""


class MissingFileError(NotFoundError):
    """The repo and revision exist but hold no such file (answered by the Hub, not a cache miss)."""


def read_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file that must be a mapping; any problem is a one-line UsageError."""
    import yaml

    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}; check --config") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"config file {path} is not valid YAML ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"config file {path} must be a mapping of key: value")
    return loaded
