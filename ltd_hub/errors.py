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
