"""The ``ltd-hub`` command line: one subcommand per module in :mod:`ltd_hub.commands`.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a ``run(args) -> int``. Heavy libraries are imported inside ``run`` so that
``ltd-hub --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from ltd_hub import __version__
from ltd_hub.errors import LtdHubError

# Order is the order of the help listing.
COMMAND_MODULES = (
    "hub",
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


class _ArgumentParser(argparse.ArgumentParser):
    """Bad arguments are one ``error:`` line naming the fix, like every other error (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="ltd-hub",
        description="Low Training Data instruction tuning on the Hugging Face Hub.",
    )
    parser.add_argument("--version", action="version", version=f"ltd-hub {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"ltd_hub.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ltd_hub.commands.{name}":
                continue  # command not built yet in this checkout
            raise
        module.register(subparsers)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 ok, 1 a check failed, 2 bad input or Hub refusal)."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
        print("interrupted: nothing was pushed by the step in progress; re-run the same command to resume", file=sys.stderr)
        return 130
    except LtdHubError as exc:
        if debug:
            raise
        from ltd_hub.redact import redact

        print(f"error: {redact(_one_line(exc))}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the CLI edge turns library errors into one line
        if debug:
            raise
        from ltd_hub.redact import redact
        from ltd_hub.errors_map import explain

        print(f"error: {redact(explain(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
