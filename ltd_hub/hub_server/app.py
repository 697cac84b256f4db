"""Starlette routes of the embedded Hub: the HTTP API the huggingface_hub/datasets clients call.

Routing is done on the *raw* (still percent-encoded) path, because revisions arrive encoded
with no safe characters (``refs%2Fpr%2F1``); each parameter is decoded and validated in
:mod:`ltd_hub.hub_server.names` before use.
"""

from __future__ import annotations

import base64
import errno
import re
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ltd_hub.hub_server import errors, lfs, names
from ltd_hub.hub_server.auth import INVALID_CREDENTIALS, Auth, User, can_read, require_write
from ltd_hub.hub_server.cardmeta import CardMetadataError, card_metadata, front_matter, parse_metadata
from ltd_hub.hub_server.context import (
    HubContext,
    Limits,
    caller,
    endpoint_of,
    field,
    hub_context,
    load_repo,
    loads_json,
    read_body,
    read_json,
    repo_url,
)
from ltd_hub.hub_server.errors import HubHTTPError, bad_request
from ltd_hub.hub_server.storage import AddFile, AddLfs, Delete, HubStorage, Repo, Snapshot


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _page(request: Request, items: list, page_size: int) -> tuple[list, dict[str, str]]:
    """One page of ``items`` and its GitHub-style ``Link: <...>; rel="next"`` header."""
    cursor = request.query_params.get("cursor", "0")
    start = int(cursor) if cursor.isdigit() else 0
    limit = request.query_params.get("limit", "")
    size = min(int(limit), page_size) if limit.isdigit() and int(limit) > 0 else page_size
    headers = {}
    if start + size < len(items):
        headers["Link"] = f'<{request.url.include_query_params(cursor=start + size)}>; rel="next"'
    return items[start : start + size], headers


def _paginate(request: Request, items: list, page_size: int) -> JSONResponse:
    page, headers = _page(request, items, page_size)
    return JSONResponse(page, headers=headers)


def card_data(repo: Repo, commit: str) -> dict | None:
    """The YAML front matter of README.md at ``commit``, or None (also when over a bound, see cardmeta)."""
    oid = repo.snapshot(commit).files.get("README.md")
    if oid is None:
        return None
    return card_metadata(oid, lambda: repo.blob_bytes(oid).decode("utf-8", "replace"))


def _entry(repo: Repo, path: str, snap: Snapshot, *, is_dir: bool, last_commit: dict | None = None) -> dict:
    if is_dir:
        item = {"type": "directory", "oid": snap.dirs[path], "size": 0, "path": path}
    else:
        info = repo.blob_info(snap.files[path])
        item = {"type": "file", "oid": snap.files[path], "size": info.size, "path": path}
        if info.lfs:
            item["lfs"] = {"oid": info.lfs[0], "size": info.lfs[1], "pointerSize": info.blob_size}
    if last_commit is not None:
        item["lastCommit"] = last_commit  # no securityFileStatus: nothing is scanned here
    return item


def _last_commits(repo: Repo, commit: str, paths: list[str]) -> dict[str, dict]:
    """For each path, the newest commit (first-parent history) that changed it."""
    return {
        path: {"id": oid, "title": item.title, "date": _iso(item.timestamp)}
        for path, (oid, item) in repo.last_changes(commit, paths).items()
    }


def _entries(repo: Repo, commit: str, paths: list[tuple[str, bool]], expand: bool) -> list[dict]:
    last = _last_commits(repo, commit, [p for p, _ in paths]) if expand else {}
    snap = repo.snapshot(commit)  # once per page: it reads the commit object
    return [_entry(repo, p, snap, is_dir=d, last_commit=last.get(p) if expand else None) for p, d in paths]


# ------------------------------------------------------------------------------- account routes
async def whoami(request: Request) -> Response:
    user = caller(request)
    if user is None:
        raise HubHTTPError(401, "Unauthorized", INVALID_CREDENTIALS)
    return JSONResponse(
        {
            "type": "user",
            "name": user.name,
            "fullname": user.name,
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "ltd-hub", "role": user.role}},
        }
    )


async def validate_yaml(request: Request) -> Response:
    body = await read_json(request)
    yaml_text = front_matter(str(body.get("content", "")))
    try:
        data = await run_in_threadpool(parse_metadata, yaml_text) if yaml_text is not None else {}
        problem = None if isinstance(data, (dict, type(None))) else "metadata must be a YAML mapping"
    except CardMetadataError as exc:
        problem = str(exc)
    if problem:
        raise HubHTTPError(400, "InvalidYaml", problem, body={"error": problem, "errors": [{"message": problem}], "warnings": []})
    return JSONResponse({"errors": [], "warnings": []})


# ----------------------------------------------------------------------------------- repo routes
def _named_repo(body: dict, user: User | None) -> tuple[str, str]:
    """``(repo_type, repo_id)`` from a create/delete body: ``{name, organization?, type?}``."""
    repo_type = field(body, "type", str, "model")
    if repo_type not in names.URL_PREFIX:
        raise bad_request(f"Invalid repo type: {repo_type!r}")
    namespace = field(body, "organization", str) or (user.name if user else "")
    if namespace in ("api", "datasets", "spaces", "lfs-upload"):  # would shadow URL prefixes
        raise bad_request(f"{namespace!r} is a reserved namespace")
    return repo_type, f"{names.check_name(namespace, 'namespace')}/{names.check_name(field(body, 'name', str, ''))}"


def _is_private(body: dict) -> bool:
    return bool(field(body, "private", bool)) or field(body, "visibility", str) in ("private", "protected")


async def create_repo(request: Request) -> Response:
    user = caller(request)
    if user is None:  # the Hub answers 401 before looking at the body (not 400 "Invalid namespace")
        require_write(user, "")
    body = await read_json(request)
    repo_type, repo_id = _named_repo(body, user)
    require_write(user, repo_id.split("/")[0])
    sdk = field(body, "sdk", str)
    if repo_type == "space" and sdk not in ("gradio", "docker", "static", "streamlit"):
        raise bad_request("A Space needs sdk: gradio, docker, static or streamlit")
    storage = hub_context(request).storage
    try:
        repo = await run_in_threadpool(
            storage.create, repo_type, repo_id, author=user.name, private=_is_private(body), sdk=sdk if repo_type == "space" else None
        )
    except FileExistsError as exc:  # also when only the case differs: the Hub's ids are case-insensitive
        message = f"You already created this {repo_type} repo"
        url = f"{endpoint_of(request)}/{names.URL_PREFIX[repo_type]}{exc.args[0] if exc.args else repo_id}"
        raise HubHTTPError(409, "RepoExists", message, body={"error": message, "url": url}) from None
    return JSONResponse({"url": repo_url(request, repo), "name": repo_id, "id": repo_id})


async def delete_repo(request: Request) -> Response:
    body = await read_json(request)
    user = caller(request)
    repo_type, repo_id = _named_repo(body, user)
    repo = hub_context(request).storage.get(repo_type, repo_id)
    if repo is None or not can_read(user, repo_id, repo.meta["private"]):
        raise errors.repo_not_found(repo_id)
    require_write(user, repo_id.split("/")[0])
    await run_in_threadpool(hub_context(request).storage.delete, repo_type, repo_id)
    return Response(status_code=200)


async def repo_settings(request: Request) -> Response:
    repo, _ = load_repo(request, write=True)
    body = await read_json(request)
    _is_private(body)  # type-check before taking the lock

    def update() -> dict:
        with repo.write_lock():
            meta = repo.meta
            if "private" in body or "visibility" in body:
                meta["private"] = _is_private(body)
            repo.write_meta(meta)
        return meta

    meta = await run_in_threadpool(update)
    return JSONResponse({"private": meta["private"]})


def repo_info(request: Request) -> Response:
    repo, _ = load_repo(request)
    rev = names.revision(request.path_params.get("rev", "main"))
    commit = repo.resolve(rev)
    meta, head = repo.meta, repo.read_commit(commit)
    data = card_data(repo, commit)
    siblings = []
    for path, oid in repo.snapshot(commit).files.items():
        info = repo.blob_info(oid)
        sibling = {"rfilename": path, "size": info.size, "blobId": oid}
        if info.lfs:
            sibling["lfs"] = {"sha256": info.lfs[0], "size": info.lfs[1], "pointerSize": info.blob_size}
        siblings.append(sibling)
    tags = [str(t) for t in (data or {}).get("tags") or [] if isinstance(t, (str, int, float))]
    if data and isinstance(data.get("license"), str):
        tags.append(f"license:{data['license']}")
    info = {
        "_id": commit[:24], "id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit,
        "lastModified": _iso(head.timestamp), "createdAt": _iso(meta["createdAt"]), "private": meta["private"],
        "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": tags, "cardData": data,
        "siblings": siblings,
    }  # fmt: skip
    if repo.repo_type == "model":
        info.update(modelId=repo.repo_id, library_name=(data or {}).get("library_name"), pipeline_tag=(data or {}).get("pipeline_tag"))
    if repo.repo_type == "space":
        info.update(
            sdk=meta.get("sdk"),
            runtime={
                "stage": "NO_APP_FILE" if "app.py" not in repo.snapshot(commit).files else "BUILDING",
                "hardware": {"current": None, "requested": None},
            },
        )
    return JSONResponse(info)


def list_repos(request: Request) -> Response:
    user = caller(request)
    repo_type = names.repo_type(request.path_params["t"])
    author = request.query_params.get("author")
    search = request.query_params.get("search", "").lower()
    items = []
    for repo in hub_context(request).storage.list(repo_type):
        meta = repo.meta
        if (
            not can_read(user, repo.repo_id, meta["private"])
            or (author and repo.repo_id.split("/")[0] != author)
            or search not in repo.repo_id.lower()
        ):
            continue
        head = repo.read_ref("refs/heads/main")
        items.append(
            {
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "private": meta["private"],
                "sha": head,
                "lastModified": _iso(repo.read_commit(head).timestamp) if head else None,
                "tags": [],
                "downloads": 0,
                "likes": 0,
            }
        )
    return _paginate(request, items, 1000)


def tree(request: Request) -> Response:
    repo, _ = load_repo(request)
    commit = repo.resolve(names.revision(request.path_params["rev"]))
    path = names.url_path(request.path_params.get("path", ""), allow_empty=True)
    snap = repo.snapshot(commit)
    if path and path not in snap.dirs:
        raise errors.entry_not_found(path, commit)
    prefix = f"{path}/" if path else ""
    recursive = _truthy(request.query_params.get("recursive"))
    found = [(p, True) for p in snap.dirs if p.startswith(prefix)] + [(p, False) for p in snap.files if p.startswith(prefix)]
    if not recursive:
        found = [(p, d) for p, d in found if "/" not in p[len(prefix) :]]
    found.sort()
    expand = _truthy(request.query_params.get("expand"))
    limits = hub_context(request).limits
    page, headers = _page(request, found, 50 if expand else limits.tree_page_size)
    return JSONResponse(_entries(repo, commit, page, expand), headers=headers)


async def paths_info(request: Request) -> Response:
    repo, _ = load_repo(request)
    commit = repo.resolve(names.revision(request.path_params["rev"]))
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await read_json(request)
        paths, expand = field(body, "paths", list, []), bool(field(body, "expand", bool, False))
    else:  # what huggingface_hub sends: a form with repeated ``paths`` fields
        form = parse_qs((await read_body(request, hub_context(request).limits.max_json_bytes)).decode("utf-8", "replace"))
        paths, expand = form.get("paths", []), _truthy((form.get("expand") or [""])[0])
    snap = repo.snapshot(commit)
    wanted = []
    for path in paths:
        if not isinstance(path, str):
            raise bad_request("paths must be strings")
        path = names.file_path(path.strip("/"), allow_empty=True)
        if path in snap.files or path in snap.dirs:
            wanted.append((path, path in snap.dirs))
    return JSONResponse(await run_in_threadpool(_entries, repo, commit, wanted, expand))


def refs(request: Request) -> Response:
    repo, _ = load_repo(request)

    def listing(kind: str, prefix: str) -> list[dict]:
        return [{"name": n, "ref": f"{prefix}{n}", "targetCommit": c} for n, c in repo.list_refs(kind).items()]

    result = {"branches": listing("heads", "refs/heads/"), "tags": listing("tags", "refs/tags/"), "converts": []}
    if _truthy(request.query_params.get("include_prs")):
        result["pullRequests"] = listing("pr", "refs/pr/")
    return JSONResponse(result)


def commits(request: Request) -> Response:
    repo, _ = load_repo(request)
    commit = repo.resolve(names.revision(request.path_params["rev"]))
    items = [
        {"id": oid, "title": c.title, "message": c.message, "authors": [{"user": c.author, "avatar": None}], "date": _iso(c.timestamp)}
        for oid, c in repo.history(commit)
    ]
    return _paginate(request, items, hub_context(request).limits.commits_page_size)


def _set_ref(repo: Repo, ref: str, target: str | None, what: str) -> None:
    """Create (409 if it exists) or, with ``target`` None, delete (404 if missing) a ref."""
    with repo.write_lock():
        exists = repo.read_ref(ref) is not None
        if target is None:
            if not exists:
                raise errors.revision_not_found(ref)
            repo.delete_ref(ref)
        elif exists:
            raise HubHTTPError(409, "Conflict", f"{what} already exists")
        else:
            repo.write_ref(ref, target)


async def branch(request: Request) -> Response:
    repo, _ = load_repo(request, write=True)
    name = names.revision(request.path_params["branch"])
    target = None
    if request.method == "DELETE":
        if name == "main":
            raise HubHTTPError(403, "Forbidden", "Cannot delete the default branch")
    else:
        body = await read_json(request)
        target = repo.resolve(names.check_ref_name(field(body, "startingPoint", str, "main")))
    await run_in_threadpool(_set_ref, repo, f"refs/heads/{name}", target, f"Branch {name}")
    return JSONResponse({})


async def tag(request: Request) -> Response:
    repo, _ = load_repo(request, write=True)
    if request.method == "DELETE":
        name, target = names.revision(request.path_params["rev"]), None
    else:
        body = await read_json(request)
        target = repo.resolve(names.revision(request.path_params["rev"]))
        name = names.check_ref_name(field(body, "tag", str, ""))
    await run_in_threadpool(_set_ref, repo, f"refs/tags/{name}", target, f"Tag {name}")
    return JSONResponse({})


# --------------------------------------------------------------------------------- write routes
_LFS_PATTERN_CACHE: dict[str, list[str]] = {}


def _lfs_patterns(repo: Repo, commit: str) -> list[str]:
    oid = repo.snapshot(commit).files.get(".gitattributes")
    if oid is None:
        return []
    if oid not in _LFS_PATTERN_CACHE:
        lines = repo.blob_bytes(oid).decode("utf-8", "replace").splitlines()
        _LFS_PATTERN_CACHE[oid] = [line.split()[0] for line in lines if "filter=lfs" in line and line.split()]
    return _LFS_PATTERN_CACHE[oid]


def _matches(pattern: str, path: str) -> bool:
    """gitattributes matching: a pattern without ``/`` matches the file name at any depth."""
    if "/" in pattern:
        return fnmatchcase(path, pattern.replace("**/", "*"))
    return fnmatchcase(path.rsplit("/", 1)[-1], pattern)


async def preupload(request: Request) -> Response:
    repo, _ = load_repo(request, write=True)
    commit = repo.resolve(names.revision(request.path_params["rev"]))
    body = await read_json(request)
    files = body.get("files")
    if not isinstance(files, list):
        raise bad_request("files must be a list")
    snap, patterns, result = repo.snapshot(commit), _lfs_patterns(repo, commit), []
    for item in files:
        if not isinstance(item, dict):
            raise bad_request("each file must be an object")
        path, size = names.file_path(field(item, "path", str, "")), field(item, "size", int, 0)
        try:
            sample = base64.b64decode(field(item, "sample", str, ""), validate=True)
        except ValueError:
            raise bad_request(f"Invalid base64 sample for {path}") from None
        lfs_mode = (
            size >= hub_context(request).limits.max_regular_file_bytes or b"\x00" in sample or any(_matches(p, path) for p in patterns)
        )
        entry = {"path": path, "uploadMode": "lfs" if lfs_mode else "regular", "shouldIgnore": False}
        if path in snap.files:
            info = repo.blob_info(snap.files[path])
            entry["oid"] = info.lfs[0] if info.lfs else snap.files[path]
        result.append(entry)
    return JSONResponse({"files": result, "commitOid": commit})


def _parse_commit(raw: bytes, limits: Limits) -> tuple[str, str | None, list]:
    """``(message, parentCommit, operations)`` from the NDJSON body of a commit."""
    header, operations = None, []
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            item = loads_json(line, "A commit payload line")
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                content = (
                    base64.b64decode(value["content"], validate=True)
                    if value.get("encoding", "base64") == "base64"
                    else str(value["content"]).encode()
                )
                if len(content) > limits.max_regular_file_bytes:
                    raise bad_request(f"{value['path']} is larger than {limits.max_regular_file_bytes} bytes: upload it with LFS")
                operations.append(AddFile(names.file_path(value["path"]), content))
            elif key == "lfsFile":
                size = value.get("size")
                operations.append(
                    AddLfs(names.file_path(value["path"]), names.lfs_oid(value["oid"]), int(size) if size is not None else None)
                )
            elif key in ("deletedFile", "deletedFolder"):
                operations.append(Delete(names.file_path(str(value["path"]).rstrip("/")), folder=key == "deletedFolder"))
            else:
                raise bad_request(f"Unknown commit operation: {key!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise bad_request(f"Malformed commit payload line: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(header, dict):
        raise bad_request("The commit payload needs a header line with a summary")
    summary = field(header, "summary", str) or "Upload files"
    description = field(header, "description", str)
    message = summary + (f"\n\n{description}" if description else "")
    return message, field(header, "parentCommit", str), operations


async def commit(request: Request) -> Response:
    repo, user = load_repo(request, write=True)
    rev = names.revision(request.path_params["rev"])
    limits = hub_context(request).limits
    raw = await read_body(request, limits.max_commit_bytes)
    message, parent, operations = await run_in_threadpool(_parse_commit, raw, limits)
    create_pr = _truthy(request.query_params.get("create_pr"))

    def apply() -> tuple[str, int | None]:
        with repo.write_lock():
            if create_pr:  # a new refs/pr/N branching from the revision; parentCommit is checked against it
                base = repo.resolve(rev)
                if parent is not None and parent != base:
                    raise HubHTTPError(412, "PreconditionFailed", "A commit has happened since. Please refresh and try again.")
                number = 1 + max((int(n) for n in repo.list_refs("pr") if n.isdigit()), default=0)
                return repo.commit(f"refs/pr/{number}", operations, message=message, author=user.name, base=base), number
            return repo.commit(repo.branch_ref(rev), operations, message=message, author=user.name, parent=parent), None

    oid, pr = await run_in_threadpool(apply)
    url = repo_url(request, repo)
    result = {"success": True, "commitOid": oid, "commitUrl": f"{url}/commit/{oid}", "hookOutput": ""}
    if pr is not None:
        result["pullRequestUrl"] = f"{url}/discussions/{pr}"
    return JSONResponse(result)


# ---------------------------------------------------------------------------------------- routes
def create_app(storage: HubStorage, auth: Auth, limits: Limits | None = None) -> Starlette:
    """Build the ASGI app serving ``storage``."""
    api = "/api/{t}/{ns}/{name}"
    routes = [
        Route("/api/whoami-v2", whoami),
        Route("/api/validate-yaml", validate_yaml, methods=["POST"]),
        Route("/api/repos/create", create_repo, methods=["POST"]),
        Route("/api/repos/delete", delete_repo, methods=["DELETE"]),
        Route("/api/{t}", list_repos),
        Route(api, repo_info),
        Route(api + "/revision/{rev}", repo_info),
        Route(api + "/settings", repo_settings, methods=["PUT"]),
        Route(api + "/tree/{rev}", tree),
        Route(api + "/tree/{rev}/{path:path}", tree),
        Route(api + "/paths-info/{rev}", paths_info, methods=["POST"]),
        Route(api + "/refs", refs),
        Route(api + "/commits/{rev}", commits),
        Route(api + "/branch/{branch}", branch, methods=["POST", "DELETE"]),
        Route(api + "/tag/{rev}", tag, methods=["POST", "DELETE"]),
        Route(api + "/preupload/{rev}", preupload, methods=["POST"]),
        Route(api + "/commit/{rev}", commit, methods=["POST"]),
        Route("/lfs-upload/{t}/{ns}/{name}/{oid}", lfs.upload, methods=["PUT"]),
        *(
            Route(f"/{prefix}{{ns}}/{{name}}{suffix}", handler, methods=methods)
            for prefix in ("datasets/", "spaces/", "")
            for suffix, handler, methods in (
                (".git/info/lfs/objects/batch", lfs.batch, ["POST"]),
                ("/resolve/{rev}/{path:path}", lfs.resolve, ["GET", "HEAD"]),
            )
        ),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HubHTTPError: _hub_error, HTTPException: _http_error, OSError: _os_error, Exception: _internal_error},
    )
    app.router.redirect_slashes = False  # a trailing slash is a different (invalid) path, not a redirect
    app.state.hub = HubContext(storage, auth, limits or Limits())
    return RawPathRouting(app)


def _header_safe(text: str) -> str:
    return " ".join(text.split()).encode("ascii", "backslashreplace").decode()[:500]


def error_response(status: int, code: str, message: str, headers: dict | None = None, body: dict | None = None) -> Response:
    all_headers = {"X-Error-Code": code, "X-Error-Message": _header_safe(message), **(headers or {})}
    return JSONResponse(body or {"error": message}, status_code=status, headers=all_headers)


async def _hub_error(request: Request, exc: HubHTTPError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.headers, exc.body)


_REPO_PATH = re.compile(r"^/api/(?:models|datasets|spaces)/|/resolve/")


async def _http_error(request: Request, exc: HTTPException) -> Response:
    code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    if exc.status_code == 404 and _REPO_PATH.search(request.scope["path"]):
        # e.g. an id without namespace ("gpt2"): clients expect RepoNotFound, as the Hub answers
        return error_response(404, "RepoNotFound", "Repository not found")
    return error_response(exc.status_code, code, str(exc.detail))


def insufficient_storage() -> HubHTTPError:
    """507: the Hub's disk is full. Final for clients (not retried): waiting does not free space."""
    message = "The Hub's storage is full (no space left on device); nothing was written. Free disk space on the Hub server, then retry."
    return HubHTTPError(507, "InsufficientStorage", message)


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


async def _os_error(request: Request, exc: OSError) -> Response:
    if exc.errno in _DISK_FULL:
        return await _hub_error(request, insufficient_storage())
    raise exc  # any other OSError is a bug: the 500 handler answers it and logs the traceback


async def _internal_error(request: Request, exc: Exception) -> Response:
    return error_response(500, "InternalError", f"Internal error: {type(exc).__name__}")


class RawPathRouting:
    """Route on the undecoded path so ``%2F`` inside a revision stays inside one segment."""

    def __init__(self, app: Starlette):
        self.app = app
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("raw_path"):
            scope = dict(scope, path=scope["raw_path"].decode("latin-1").split("?", 1)[0])
        await self.app(scope, receive, send)
