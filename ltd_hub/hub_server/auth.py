"""Tokens and access rules: a token's user name is its namespace; read tokens cannot write."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from ltd_hub.hub_server import errors

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


@dataclass(frozen=True)
class User:
    name: str
    role: str  # "write" or "read"


def parse_tokens(specs: list[str] | None) -> dict[str, User]:
    """Parse ``NAME=TOKEN`` / ``NAME=TOKEN:read`` strings into ``{token: User}``.

    Example:
        >>> parse_tokens(["alice=hf_abc", "bob=hf_def:read"])["hf_def"]
        User(name='bob', role='read')
    """
    users = {}
    for spec in specs or []:
        name, sep, token = spec.strip().partition("=")
        role = "write"
        if token.endswith((":read", ":write")):
            token, _, role = token.rpartition(":")
        if not sep or not name or not token:
            raise ValueError("a token must be given as NAME=TOKEN or NAME=TOKEN:read")
        users[token] = User(name, role)
    return users


class Auth:
    def __init__(self, users: dict[str, User]):
        self.users = users

    def user(self, authorization: str | None) -> User | None:
        """The caller, None if anonymous; 401 for a token we do not know."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise errors.HubHTTPError(401, "Unauthorized", INVALID_CREDENTIALS)
        for known, user in self.users.items():
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                return user
        raise errors.HubHTTPError(401, "Unauthorized", INVALID_CREDENTIALS)


def can_read(user: User | None, repo_id: str, private: bool) -> bool:
    return not private or (user is not None and repo_id.split("/")[0] == user.name)


def require_write(user: User | None, namespace: str) -> User:
    """The caller if it may write under ``namespace``; 401 anonymous, 403 read-only or foreign."""
    if user is None:
        raise errors.HubHTTPError(401, "Unauthorized", "You must be authenticated with a write token to do this")
    if user.role != "write":
        raise errors.HubHTTPError(403, "Forbidden", "Your token has read access only; a write token is required")
    if namespace != user.name:
        raise errors.HubHTTPError(403, "Forbidden", f"You don't have the rights to write in the namespace {namespace}")
    return user
