"""The one error type the embedded Hub raises; the app turns it into a Hub-style response."""

from __future__ import annotations


class HubHTTPError(Exception):
    """An HTTP error answered with ``X-Error-Code`` and ``X-Error-Message`` headers, as the Hub does.

    The client libraries map the error *code* header (not the status) to their exceptions:
    ``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``.
    """

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, body: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.body = body


def bad_request(message: str) -> HubHTTPError:
    return HubHTTPError(400, "BadRequest", message)


def repo_not_found(repo_id: str) -> HubHTTPError:
    return HubHTTPError(404, "RepoNotFound", f"Repository not found: {repo_id}")


def revision_not_found(revision: str) -> HubHTTPError:
    return HubHTTPError(404, "RevisionNotFound", f"Invalid rev id: {revision}")


def entry_not_found(path: str, commit: str | None = None) -> HubHTTPError:
    headers = {"X-Repo-Commit": commit} if commit else None
    return HubHTTPError(404, "EntryNotFound", f"Entry not found: {path}", headers=headers)
