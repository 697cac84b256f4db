"""One module per ``ltd-hub`` command; options several commands share are defined here once."""

from __future__ import annotations


def add_visibility_arguments(parser, *, what: str, private_when: str) -> None:
    """``--private`` / ``--public`` (mutually exclusive, ``private`` None = inherit from the inputs).

    Args:
        parser: the parser or argument group to add them to.
        what: what is pushed ("the repo", "the Space", "the subset"...).
        private_when: when it is private by default, e.g. "SOURCE is a private Hub dataset".
    """
    visibility = parser.add_mutually_exclusive_group()
    visibility.add_argument("--private", action="store_true", default=None,
                            help=f"create {what} private (default: private when {private_when}, else public)")  # fmt: skip
    visibility.add_argument("--public", dest="private", action="store_false", default=None,
                            help=f"publish {what} even when {private_when} (one line names what becomes visible)")  # fmt: skip
