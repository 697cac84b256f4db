"""The ``ltd-hub`` command line: one subcommand per module in :mod:`ltd_hub.cli.commands`.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a ``run(args) -> int``. Heavy libraries are imported inside ``run`` so that
``ltd-hub --help`` stays instant.

Conventions every command shares: ``--flag-name`` and ``--flag_name`` are the same flag (TRL
and ``hf`` users type both); a mistyped flag gets the closest real one and ``ltd-hub COMMAND
--help``; with ``--format json`` an error is a JSON object on stdout too; Ctrl-C on a server
(``hub serve``) just stops it.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from ltd_hub import __version__
from ltd_hub.errors import LtdHubError

# Order is the order of the help listing.
COMMAND_MODULES = (
    "local_hub",
    "quickstart",
    "push_subset",
    "rebuild_subset",
    "train",
    "push_adapter",
    "evaluate",
    "push_space",
    "demo",
    "reproduce",
)


#: The argv being parsed, so that an argparse error knows whether ``--format json`` was asked for.
_ARGV: list[str] = []


def _wants_json(argv: list[str]) -> bool:
    return any(a in ("--format=json",) for a in argv) or any(a == "--format" and b == "json" for a, b in zip(argv, argv[1:]))


def _emit_error(message: str, code: int, argv: list[str]) -> None:
    """``error: ...`` on stderr; with ``--format json`` also ``{"error": ..., "exit_code": ...}`` on stdout."""
    from ltd_hub.redact import redact

    message = redact(message)  # argparse errors quote arguments, which may be a mistyped --token's value
    print(f"error: {message}", file=sys.stderr)
    if _wants_json(argv):
        print(json.dumps({"error": message, "exit_code": code}))


class _ArgumentParser(argparse.ArgumentParser):
    """Bad arguments are one ``error:`` line naming the fix, like every other error (exit code 2).

    ``--flag_name`` is read as ``--flag-name`` (and the other way round) when only the other
    spelling is defined, so both spellings work for every flag of every command.
    """

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._normalize(args), namespace)

    def _normalize(self, args: list[str]) -> list[str]:
        known = self._option_string_actions
        out = []
        for i, arg in enumerate(args):
            if arg == "--":
                return out + args[i:]
            if arg.startswith("--") and len(arg) > 2:
                flag, eq, value = arg.partition("=")
                if flag not in known:
                    for other in (flag[:2] + flag[2:].replace("_", "-"), flag[:2] + flag[2:].replace("-", "_")):
                        if other in known:
                            arg = other + eq + value
                            break
            out.append(arg)
        return out

    def error(self, message: str) -> NoReturn:
        _emit_error(f"{message}; see `{self.prog} --help`", 2, _ARGV)
        self.exit(2)


def _unknown_flags_message(parser: argparse.ArgumentParser, command: str | None, extras: list[str]) -> str:
    """One line for unrecognized arguments: the closest real flag of the command, and its --help."""
    sub = parser._subparsers._group_actions[0].choices.get(command) if command and parser._subparsers else None
    target = sub or parser
    flags = [o for o in target._option_string_actions if o.startswith("--")]
    shown = []
    for arg in extras:
        flag = arg.partition("=")[0]
        close = difflib.get_close_matches(flag.replace("_", "-"), flags, n=1, cutoff=0.6) if flag.startswith("-") else []
        shown.append(f"{arg} (did you mean {close[0]}?)" if close else arg)
    return f"unrecognized argument{'s' if len(extras) > 1 else ''}: {' '.join(shown)}; see `{target.prog} --help`"


def build_parser() -> argparse.ArgumentParser:
    """The ``ltd-hub`` parser with one subcommand per module of :data:`COMMAND_MODULES` (imported, not run)."""
    parser = _ArgumentParser(
        prog="ltd-hub",
        description="Low Training Data instruction tuning on the Hugging Face Hub.",
    )
    parser.add_argument("--version", action="version", version=f"ltd-hub {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"ltd_hub.cli.commands.{name}").register(subparsers)
    return parser


@dataclass(frozen=True)
class _Exit:
    """How the CLI ends on an exception: the exit code and one line on stderr."""

    code: int
    message: str
    error: bool = True  # an `error:` line (also JSON with --format json); False: a plain note, never a traceback


def _stopped_or_interrupted(exc: BaseException, args: argparse.Namespace) -> _Exit:
    if getattr(args, "command", None) == "hub" and getattr(args, "hub_command", None) == "serve":
        # Ctrl-C is how a server is stopped; nothing was being pushed.
        return _Exit(0, "stopped the embedded Hub; its data stays in its --root", error=False)
    return _Exit(130, "interrupted: nothing was pushed by the step in progress; re-run the same command to resume", error=False)


def _library_error(exc: BaseException, args: argparse.Namespace) -> _Exit:
    from ltd_hub.errors import flag

    return _Exit(exc.exit_code, " ".join(exc.render(flag).split()) or type(exc).__name__)


def _unexpected_error(exc: BaseException, args: argparse.Namespace) -> _Exit:
    from ltd_hub.errors_map import explain

    return _Exit(2, explain(exc))


#: The CLI's error edge: exception type -> how the command ends. First match wins (subclasses first).
#: Library errors render their parameters as flags; anything else is explained by :mod:`ltd_hub.errors_map`.
_EXITS: tuple[tuple[type[BaseException], Callable[[BaseException, argparse.Namespace], _Exit]], ...] = (
    (KeyboardInterrupt, _stopped_or_interrupted),
    (LtdHubError, _library_error),
    (Exception, _unexpected_error),
)


def _exit_for(exc: BaseException, args: argparse.Namespace) -> _Exit | None:
    return next((outcome(exc, args) for kind, outcome in _EXITS if isinstance(exc, kind)), None)


def _remember_tokens(args: argparse.Namespace) -> None:
    """Every command's --token is a secret whatever its shape: masked in every message from here on."""
    from ltd_hub.redact import remember_token

    # (`hub serve --token NAME=TOKEN[:read]` gives a list; each token is masked, not just the whole entry.)
    given = getattr(args, "token", None)
    for value in given if isinstance(given, list) else [given]:
        if isinstance(value, str):
            remember_token(value.partition("=")[2].removesuffix(":read") if isinstance(given, list) else value)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 ok, 1 a check failed, 2 bad input or Hub refusal)."""
    global _ARGV
    argv = list(sys.argv[1:] if argv is None else argv)
    _ARGV = [str(a) for a in argv]
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        _emit_error(_unknown_flags_message(parser, getattr(args, "command", None), extras), 2, _ARGV)
        return 2
    _remember_tokens(args)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BaseException as exc:  # noqa: BLE001 - the CLI edge: _EXITS turns each kind into one line
        outcome = _exit_for(exc, args)
        if outcome is None or (outcome.error and os.environ.get("LTD_HUB_DEBUG") == "1"):
            raise  # SystemExit and the like; or a traceback asked for with LTD_HUB_DEBUG=1
        if outcome.error:
            _emit_error(outcome.message, outcome.code, _ARGV)  # redacted there
        else:
            print(outcome.message, file=sys.stderr)
        return outcome.code


if __name__ == "__main__":
    sys.exit(main())
