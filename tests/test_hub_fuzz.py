"""Hypothesis throws hostile paths, revisions and bodies at every route of the embedded Hub.

Requests go through ``http.client`` (which, unlike httpx, sends ``..`` segments as written).
Every answer must be a non-5xx Hub response, errors must carry ``X-Error-Code``, and nothing
may appear or change outside the storage root.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from conftest import HUB_TOKENS, TEST_TOKEN, TEST_USER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ltd_hub.hub_server.serve import start_hub

TARGET = f"{TEST_USER}/fuzz-target"
NASTY = [
    "..", ".", "%2e%2e", "%2E%2E", "..%2F..%2F..%2Foutside", "%2F", "%2Fetc%2Fpasswd", "/etc/passwd", "%00", "a%00b",
    "..\\..\\outside", "refs%2Fpr%2F1", "refs%2Fheads%2F..%2F..%2F..%2Foutside", "refs/heads/../../x", "main", "~1",
    "%ff%fe", "\u00e9t\u00e9", "\U0001f600", "x" * 300, "ltd-tester", "fuzz-target", "a.lock", ".git", "HEAD", "-", "",
    "%252e%252e", "....//", "%5c..%5c", "secret.txt", "data", "data%2Ffile.txt", "data/file.txt", "v1", "0123456",
]  # fmt: skip
segment = st.one_of(
    st.sampled_from(NASTY),
    st.text(min_size=0, max_size=20).map(lambda s: quote(s, safe="")),
    st.text(st.characters(codec="ascii"), max_size=12),
)


def mostly(valid, weight: int = 3):
    """``valid`` most of the time, so requests get past routing into the handlers' deeper checks."""
    return st.one_of(*[st.just(valid)] * weight, segment)


ROUTES = [
    ("GET", "/api/{t}/{ns}/{name}"), ("GET", "/api/{t}/{ns}/{name}/revision/{rev}"), ("GET", "/api/{t}"),
    ("GET", "/api/{t}/{ns}/{name}/tree/{rev}/{path}"), ("GET", "/api/{t}/{ns}/{name}/tree/{rev}"),
    ("POST", "/api/{t}/{ns}/{name}/paths-info/{rev}"), ("GET", "/api/{t}/{ns}/{name}/refs"),
    ("GET", "/api/{t}/{ns}/{name}/commits/{rev}"), ("POST", "/api/{t}/{ns}/{name}/branch/{rev}"),
    ("DELETE", "/api/{t}/{ns}/{name}/branch/{rev}"), ("POST", "/api/{t}/{ns}/{name}/tag/{rev}"),
    ("DELETE", "/api/{t}/{ns}/{name}/tag/{rev}"), ("POST", "/api/{t}/{ns}/{name}/preupload/{rev}"),
    ("POST", "/api/{t}/{ns}/{name}/commit/{rev}"), ("PUT", "/api/{t}/{ns}/{name}/settings"),
    ("POST", "/{P}{ns}/{name}.git/info/lfs/objects/batch"), ("PUT", "/lfs-upload/{t}/{ns}/{name}/{path}"),
    ("GET", "/{P}{ns}/{name}/resolve/{rev}/{path}"), ("HEAD", "/{P}{ns}/{name}/resolve/{rev}/{path}"),
    ("POST", "/api/repos/create"), ("DELETE", "/api/repos/delete"), ("POST", "/api/validate-yaml"),
    ("GET", "/api/whoami-v2"), ("GET", "/{path}"),
]  # fmt: skip


def _bodies(paths):
    line = st.fixed_dictionaries({"key": st.sampled_from(["header", "file", "lfsFile", "deletedFile", "deletedFolder", "x"]),
                                  "value": st.fixed_dictionaries({"path": paths, "content": st.sampled_from(["aGk=", "!!", ""]),
                                                                  "oid": st.sampled_from(["0" * 64, "../" * 20, "zz"]), "summary": st.text(max_size=5)})})  # fmt: skip
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8) | paths,
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
        max_leaves=6,
    )
    keys = [
        "name",
        "organization",
        "type",
        "private",
        "visibility",
        "sdk",
        "files",
        "objects",
        "operation",
        "tag",
        "startingPoint",
        "content",
        "paths",
        "expand",
        "key",
        "value",
    ]
    return st.one_of(
        st.just(b""),
        st.dictionaries(st.sampled_from(keys), json_values, max_size=5).map(lambda d: json.dumps(d).encode()),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.lists(st.fixed_dictionaries({"key": st.sampled_from(["header", "file", "lfsFile", "deletedFile"]), "value": json_values}), max_size=3).map(lambda ls: "\n".join(map(json.dumps, ls)).encode()),
        st.binary(max_size=64),
        st.lists(line, max_size=4).map(lambda ls: "\n".join(json.dumps(x) for x in ls).encode()),
        st.fixed_dictionaries({"files": st.lists(st.fixed_dictionaries({"path": paths, "sample": st.just("aGk="), "size": st.integers(-5, 10**12)}), max_size=3)}).map(lambda d: json.dumps(d).encode()),
        st.fixed_dictionaries({"name": paths, "organization": paths, "type": st.sampled_from(["model", "dataset", "space", "../x"]), "sdk": st.just("gradio")}).map(lambda d: json.dumps(d).encode()),
        st.fixed_dictionaries({"operation": st.just("upload"), "objects": st.lists(st.fixed_dictionaries({"oid": paths, "size": st.integers(-1, 10**13)}), max_size=2)}).map(lambda d: json.dumps(d).encode()),
        st.builds(lambda p: f"paths={quote(p)}&expand=true".encode(), paths),
        st.fixed_dictionaries({"tag": paths, "startingPoint": paths, "private": st.booleans()}).map(lambda d: json.dumps(d).encode()),
    )  # fmt: skip


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("do not touch")
    with start_hub(base / "hub", tokens=HUB_TOKENS) as server:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=server.endpoint, token=TEST_TOKEN)
        api.create_repo(TARGET)
        api.upload_file(path_or_fileobj=b"hello", path_in_repo="data/file.txt", repo_id=TARGET)
        yield server, base


def _snapshot_outside(base: Path) -> dict[str, bytes]:
    return {str(p.relative_to(base)): p.read_bytes() for p in base.rglob("*") if p.is_file() and not p.is_relative_to(base / "hub")}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    route=st.sampled_from(ROUTES),
    t=st.one_of(st.sampled_from(["models", "models", "datasets", "spaces"]), segment),
    prefix=st.sampled_from(["", "", "datasets/", "spaces/"]),
    ns=mostly(TEST_USER),
    name=mostly("fuzz-target"),
    rev=mostly("main", 2),
    path=st.one_of(st.just("data/file.txt"), segment, st.lists(segment, min_size=1, max_size=4).map("/".join)),
    body=_bodies(st.one_of(segment, st.sampled_from(["data/file.txt", "new/ok.txt", "../escape.txt", "/abs.txt", "a\x00b"]))),
    authed=st.booleans(),
    json_type=st.booleans(),
    query=st.sampled_from(
        ["", "?recursive=true&expand=true", "?cursor=-1&limit=0", "?create_pr=1", "?size=5&expires=99999999999&signature=00"]
    ),
)
def test_no_route_crashes_or_escapes_root(fuzz_hub, route, t, prefix, ns, name, rev, path, body, authed, json_type, query):
    server, base = fuzz_hub
    before = _snapshot_outside(base)
    method, template = route
    target = template.format(t=t, P=prefix, ns=ns, name=name, rev=rev, path=path) + query
    target = quote(target, safe="/%?&=.-_~+:@!$'()*,;")  # http.client refuses raw spaces/control bytes
    host = urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
    headers = {"Authorization": f"Bearer {TEST_TOKEN}"} if authed else {}
    if json_type:
        headers["Content-Type"] = "application/json"
    conn.request(method, target, body=body or None, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status < 300 or 400 <= response.status < 500, f"{method} {target} -> {response.status}"
    if response.status >= 400:
        assert response.getheader("X-Error-Code"), f"{method} {target} -> {response.status} without X-Error-Code"
    assert _snapshot_outside(base) == before
    for item in (base / "hub").rglob("*"):
        assert item.resolve().is_relative_to((base / "hub").resolve())


JSON_ROUTES = [
    ("POST", "/api/repos/create"), ("DELETE", "/api/repos/delete"), ("POST", "/api/validate-yaml"),
    ("PUT", f"/api/models/{TARGET}/settings"), ("POST", f"/api/models/{TARGET}/branch/b"), ("POST", f"/api/models/{TARGET}/tag/main"),
    ("POST", f"/api/models/{TARGET}/preupload/main"), ("POST", f"/api/models/{TARGET}/paths-info/main"),
    ("POST", f"/{TARGET}.git/info/lfs/objects/batch"), ("POST", f"/api/models/{TARGET}/commit/main"),
]  # fmt: skip
json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8) | st.sampled_from(NASTY),
                          lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3), max_leaves=8)  # fmt: skip
FIELDS = ["name", "organization", "type", "private", "visibility", "sdk", "files", "objects", "operation", "tag",
          "startingPoint", "content", "paths", "expand", "path", "sample", "size", "oid", "summary"]  # fmt: skip
json_object = st.dictionaries(
    st.sampled_from(FIELDS), json_value | st.lists(st.dictionaries(st.sampled_from(FIELDS), json_value, max_size=4), max_size=2), max_size=5
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    route=st.sampled_from(JSON_ROUTES),
    body=st.one_of(json_object, json_value),
    ndjson=st.lists(
        st.fixed_dictionaries(
            {"key": st.sampled_from(["header", "file", "lfsFile", "deletedFile", "deletedFolder"]), "value": json_object | json_value}
        ),
        max_size=3,
    ),
)
def test_json_routes_answer_hostile_bodies_with_4xx(fuzz_hub, route, body, ndjson):
    server, _ = fuzz_hub
    method, path = route
    content = "\n".join(map(json.dumps, ndjson)) if path.endswith("/commit/main") else json.dumps(body)
    host = urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
    conn.request(method, path, body=content.encode(), headers={"Authorization": f"Bearer {TEST_TOKEN}", "Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status < 300 or (400 <= response.status < 500 and response.getheader("X-Error-Code")), (
        f"{method} {path} {content[:300]} -> {response.status}"
    )


def test_hostile_lfs_oid_never_reaches_the_filesystem(fuzz_hub):
    server, _ = fuzz_hub
    host = urlsplit(server.endpoint)
    oid = hashlib.sha256(b"x").hexdigest()
    for bad in ("..%2F..%2Foutside", "../../outside", oid[:-1] + "/", base64.b16encode(b"..").decode()):
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
        conn.request("PUT", f"/lfs-upload/models/{TARGET}/{bad}?size=1&expires=99999999999&signature=0", body=b"x")
        response = conn.getresponse()
        response.read()
        assert 400 <= response.status < 500 and response.getheader("X-Error-Code")
