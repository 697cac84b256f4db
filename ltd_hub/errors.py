"""Errors that reach the user as one actionable line (exit code 2)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


def flag(param: str) -> str:
    """The command-line flag of a library parameter: ``max_tokens`` -> ``--max-tokens``."""
    return "--" + param.replace("_", "-")


class LtdHubError(Exception):
    """A problem the user can fix; the message is one line that names the fix.

    The CLI prints ``error: <message>`` and exits with code 2, with no traceback unless
    ``LTD_HUB_DEBUG=1``. Library callers get the exception as-is.

    A message names the parameters it is about as ``{name}`` placeholders, declared in ``params``
    (the Python parameter name, which is also the CLI flag's argparse ``dest``). ``str(exc)``
    reads as the library is called (``ratio must be in (0, 1]``); the CLI shows the flag
    (``--ratio must be in (0, 1]``) through :meth:`render` with :func:`flag`::

        raise UsageError(f"{{ratio}} must be in (0, 1], got {ratio}", params="ratio")
        raise UsageError("cannot select 9 rows from 3; lower {size} or {ratio}", params=("size", "ratio"))
        # A flag whose library spelling differs: placeholder -> library wording.
        raise UsageError("pass {public} to publish it", params={"public": "private=False"})

    Only the declared names are filled in, so braces in interpolated values are left as they are.
    """

    exit_code = 2

    def __init__(self, message: str = "", *, params: str | Sequence[str] | Mapping[str, str] = ()) -> None:
        super().__init__(message)
        self.template = message
        if isinstance(params, str):
            params = (params,)
        #: placeholder -> how a library caller reads it (the CLI writes ``flag(placeholder)``).
        self.params: dict[str, str] = dict(params) if isinstance(params, Mapping) else {p: p for p in params}

    def render(self, name: Callable[[str], str] | None = None) -> str:
        """The message with each ``{param}`` written as ``name(param)``, or in library wording when ``name`` is None."""
        text = self.template
        for param, wording in self.params.items():
            text = text.replace("{" + param + "}", name(param) if name else wording)
        return text

    def __str__(self) -> str:
        return self.render()


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
        raise UsageError(f"config file not found: {path}; check {{config}}", params="config") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"config file {path} is not valid YAML ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"config file {path} must be a mapping of key: value")
    return loaded
