"""Per-request plumbing shared by the routes: server context, caller, repo lookup, bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.requests import Request

from ltd_hub.hub_server import errors, names
from ltd_hub.hub_server.auth import Auth, User, can_read, require_write
from ltd_hub.hub_server.errors import HubHTTPError, bad_request
from ltd_hub.hub_server.storage import HubStorage, Repo

MiB = 1024 * 1024


@dataclass
class Limits:
    """Request and file size limits (bytes) and page sizes."""

    max_json_bytes: int = 16 * MiB
    max_commit_bytes: int = 512 * MiB
    max_regular_file_bytes: int = 10 * MiB
    max_lfs_file_bytes: int = 50 * 1024 * MiB
    tree_page_size: int = 1000
    commits_page_size: int = 50


@dataclass
class HubContext:
    storage: HubStorage
    auth: Auth
    limits: Limits


# ---------------------------------------------------------------------------------------- helpers
def hub_context(request: Request) -> HubContext:
    return request.app.state.hub


def endpoint_of(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def repo_url(request: Request, repo: Repo) -> str:
    return f"{endpoint_of(request)}/{names.URL_PREFIX[repo.repo_type]}{repo.repo_id}"


def caller(request: Request) -> User | None:
    return hub_context(request).auth.user(request.headers.get("authorization"))


def url_repo_type(request: Request) -> str:
    if "t" in request.path_params:
        return names.repo_type(request.path_params["t"])
    first = request.scope["path"].split("/")[1]
    return {"datasets": "dataset", "spaces": "space"}.get(first, "model")


def load_repo(request: Request, *, write: bool = False) -> tuple[Repo, User | None]:
    """The repo named in the URL if the caller may see it (404 RepoNotFound otherwise)."""
    repo_id = names.repo_id(request.path_params["ns"], request.path_params["name"])
    user = caller(request)
    repo = hub_context(request).storage.get(url_repo_type(request), repo_id)
    if repo is None or not can_read(user, repo_id, repo.meta["private"]):
        raise errors.repo_not_found(repo_id)
    if write:
        require_write(user, repo_id.split("/")[0])
    return repo, user


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HubHTTPError(413, "PayloadTooLarge", f"Request body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HubHTTPError(413, "PayloadTooLarge", f"Request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def loads_json(raw: bytes | str, what: str = "Request body"):
    """``json.loads`` that answers 400 for invalid or too deeply nested JSON (never a 500).

    The stdlib parser recurses once per nesting level and raises RecursionError near 1,000
    levels; no Hub payload nests more than a few levels, so that is a client error.
    """
    try:
        return json.loads(raw)
    except RecursionError:
        raise bad_request(f"{what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise bad_request(f"{what} is not valid JSON") from None


async def read_json(request: Request) -> dict:
    data = loads_json(await read_body(request, hub_context(request).limits.max_json_bytes) or b"{}")
    if not isinstance(data, dict):
        raise bad_request("Request body must be a JSON object")
    return data


def field(body: dict, key: str, kind: type | tuple[type, ...], default=None):
    """``body[key]`` if it is a ``kind`` (400 otherwise); ``default`` when absent or null."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise bad_request(f"{key} has the wrong type")
    return value
