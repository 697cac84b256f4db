"""The ``ltd-hub`` command line: :mod:`ltd_hub.cli.main` parses and dispatches, one module per command."""

from __future__ import annotations


def main(argv=None) -> int:
    """Run ``ltd-hub`` (see :func:`ltd_hub.cli.main.main`)."""
    from ltd_hub.cli.main import main as _main

    return _main(argv)
