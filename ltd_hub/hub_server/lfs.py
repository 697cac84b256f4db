"""LFS batch API, pre-signed uploads and file downloads (``resolve``) of the embedded Hub."""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
import re
import time
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ltd_hub.hub_server import errors, names
from ltd_hub.hub_server.auth import require_write
from ltd_hub.hub_server.context import endpoint_of, hub_context, load_repo, read_json
from ltd_hub.hub_server.errors import HubHTTPError

UPLOAD_URL_TTL_S = 3600
CHUNK = 1024 * 1024


def _signature(secret: bytes, repo_type: str, repo_id: str, oid: str, size: int, expires: int) -> str:
    message = f"{repo_type}/{repo_id}/{oid}/{size}/{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def signed_upload_url(request: Request, repo, oid: str, size: int) -> str:
    """The upload href: the PUT carries no Authorization, so the URL itself is the credential."""
    expires = int(time.time()) + UPLOAD_URL_TTL_S
    secret = hub_context(request).storage.secret()
    sig = _signature(secret, repo.repo_type, repo.repo_id, oid, size, expires)
    plural = {"model": "models", "dataset": "datasets", "space": "spaces"}[repo.repo_type]
    return f"{endpoint_of(request)}/lfs-upload/{plural}/{repo.repo_id}/{oid}?size={size}&expires={expires}&signature={sig}"


async def batch(request: Request) -> Response:
    repo, user = load_repo(request)
    body = await read_json(request)
    if body.get("operation") != "upload":
        raise errors.bad_request("Only the LFS 'upload' operation is supported; download files through /resolve")
    require_write(user, repo.repo_id.split("/")[0])
    objects = body.get("objects")
    if not isinstance(objects, list):
        raise errors.bad_request("objects must be a list")
    max_size = hub_context(request).limits.max_lfs_file_bytes
    answers = []
    for obj in objects:
        oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
        if not isinstance(oid, str) or not isinstance(size, int):
            raise errors.bad_request("each object needs a string oid and an integer size")
        answer = {"oid": oid, "size": size}
        try:
            names.lfs_oid(oid)
            if not 0 <= size <= max_size:
                raise errors.HubHTTPError(422, "TooLarge", f"size must be between 0 and {max_size} bytes")
        except HubHTTPError as exc:
            answers.append({**answer, "error": {"code": 422, "message": exc.message}})
            continue
        if repo.lfs_size(oid) != size:  # no "actions" means: already stored
            answer["actions"] = {"upload": {"href": signed_upload_url(request, repo, oid, size), "expires_in": UPLOAD_URL_TTL_S}}
        answers.append(answer)
    return JSONResponse({"transfer": "basic", "objects": answers, "hash_algo": "sha256"}, media_type="application/vnd.git-lfs+json")


async def upload(request: Request) -> Response:
    ctx = hub_context(request)
    repo_type = names.repo_type(request.path_params["t"])
    repo_id = names.repo_id(request.path_params["ns"], request.path_params["name"])
    oid = names.lfs_oid(unquote(request.path_params["oid"]))
    query = request.query_params
    size, expires = query.get("size", ""), query.get("expires", "")
    if not (size.isdigit() and expires.isdigit()):
        raise HubHTTPError(403, "Forbidden", "Upload URL is not signed")
    expected = _signature(ctx.storage.secret(), repo_type, repo_id, oid, int(size), int(expires))
    if not hmac.compare_digest(expected, query.get("signature", "")) or int(expires) < time.time():
        raise HubHTTPError(403, "Forbidden", "Upload URL signature is invalid or expired")
    repo = ctx.storage.get(repo_type, repo_id)
    if repo is None:
        raise errors.repo_not_found(repo_id)
    with repo.lfs_writer(oid, int(size)) as write:
        failure: OSError | None = None
        async for chunk in request.stream():
            if failure is None:
                try:
                    write(chunk)
                except OSError as exc:  # disk full: read the rest, so the client hears the 507, not a reset
                    failure = exc
        if failure is not None:
            raise failure
    return Response(status_code=200)


def _byte_range(header: str | None, total: int) -> tuple[int, int] | None:
    """``(first, last)`` of a single ``Range: bytes=`` header; None to send the whole file."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header or "")
    if not match or match.group(1) == match.group(2) == "":
        return None
    if match.group(1) == "":
        first, last = max(0, total - int(match.group(2))), total - 1
    else:
        first = int(match.group(1))
        last = min(int(match.group(2)), total - 1) if match.group(2) else total - 1
    if first > last or first >= total:
        raise HubHTTPError(416, "RangeNotSatisfiable", f"Range {header} outside 0-{total}", headers={"Content-Range": f"bytes */{total}"})
    return first, last


def _locate(request: Request):
    repo, _ = load_repo(request)
    commit = repo.resolve(names.revision(request.path_params["rev"]))
    path = names.url_path(request.path_params["path"])
    oid = repo.snapshot(commit).files.get(path)
    if oid is None:
        raise errors.entry_not_found(path, commit)
    info = repo.blob_info(oid)
    headers = {
        "X-Repo-Commit": commit,
        "Accept-Ranges": "bytes",
        "Content-Type": mimetypes.guess_type(path)[0] or "application/octet-stream",
    }
    if info.lfs:
        # Content-derived etag: the client stores the blob in its cache under this name.
        headers.update({"ETag": f'"{info.lfs[0]}"', "X-Linked-Etag": f'"{info.lfs[0]}"', "X-Linked-Size": str(info.size)})
        return headers, info.size, repo.lfs_path(info.lfs[0])
    headers["ETag"] = f'"{oid}"'
    return headers, info.size, repo.blob_bytes(oid)


def _read_file(path, first: int, last: int):
    with open(path, "rb") as handle:
        handle.seek(first)
        left = last - first + 1
        while left > 0:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


async def resolve(request: Request) -> Response:
    headers, total, source = await run_in_threadpool(_locate, request)
    span = _byte_range(request.headers.get("range"), total)
    status, (first, last) = (206, span) if span else (200, (0, total - 1))
    if span:
        headers["Content-Range"] = f"bytes {first}-{last}/{total}"
    headers["Content-Length"] = str(max(0, last - first + 1))
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    if isinstance(source, bytes):
        return Response(source[first : last + 1], status_code=status, headers=headers)
    return StreamingResponse(_read_file(source, first, last), status_code=status, headers=headers)
