"""Errors that reach the user as one actionable line (exit code 2)."""

from __future__ import annotations


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
