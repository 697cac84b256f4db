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
    parser = _ArgumentParser(
        prog="ltd-hub",
        description="Low Training Data instruction tuning on the Hugging Face Hub.",
    )
    parser.add_argument("--version", action="version", version=f"ltd-hub {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"ltd_hub.cli.commands.{name}").register(subparsers)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


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
    from ltd_hub.redact import remember_token

    # Every command's --token is a secret whatever its shape: masked in every message from here on.
    # (`hub serve --token NAME=TOKEN[:read]` gives a list; each token is masked, not just the whole entry.)
    given = getattr(args, "token", None)
    for value in given if isinstance(given, list) else [given]:
        if isinstance(value, str):
            remember_token(value.partition("=")[2].removesuffix(":read") if isinstance(given, list) else value)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = os.environ.get("LTD_HUB_DEBUG") == "1"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if getattr(args, "command", None) == "hub" and getattr(args, "hub_command", None) == "serve":
            # Ctrl-C is how a server is stopped; nothing was being pushed.
            print("stopped the embedded Hub; its data stays in its --root", file=sys.stderr)
            return 0
        print("interrupted: nothing was pushed by the step in progress; re-run the same command to resume", file=sys.stderr)
        return 130
    except LtdHubError as exc:
        if debug:
            raise
        from ltd_hub.redact import redact

        _emit_error(redact(_one_line(exc)), exc.exit_code, _ARGV)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the CLI edge turns library errors into one line
        if debug:
            raise
        from ltd_hub.errors_map import explain
        from ltd_hub.redact import redact

        _emit_error(redact(explain(exc)), 2, _ARGV)
        return 2


if __name__ == "__main__":
    sys.exit(main())
