"""Fault injection: make chosen endpoints fail the way a flaky network or an overloaded Hub does.

A fault is written ``ENDPOINT:KIND[:key=value...]``:

* ENDPOINT: ``preupload``, ``lfs-batch``, ``lfs-put``, ``commit``, ``resolve`` (or ``*``)
* KIND: ``500``, ``503``, ``429`` (sent with ``Retry-After``) or ``drop``: the connection closes
  mid-body. For a download the real response is cut after half its bytes (clients resume with
  ``Range``); for an upload half the request body is read, the request never reaches the Hub,
  and a response is started that promises more bytes than it sends. ``lost``: the Hub does the
  work (e.g. the commit lands) but the response is cut mid-body, so the client cannot tell.
  ``enospc``: the disk is full: the request reaches the Hub, every storage write fails with
  ENOSPC as on a full disk (temporary files removed), and the Hub answers 507.
* keys: ``times=N`` (fire N times, then never), ``p=0.3`` (fire with probability), ``seed=1``,
  ``retry_after=SECONDS``

Examples: ``commit:503:times=2``, ``lfs-put:drop:p=0.3:seed=1``, ``preupload:429:retry_after=1:times=1``,
``commit:enospc``.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
from dataclasses import dataclass, field

from ltd_hub.hub_server.storage import SIMULATE_DISK_FULL

ENDPOINTS = {
    "preupload": ({"POST"}, re.compile(r"^/api/[^/]+/[^/]+/[^/]+/preupload/")),
    "lfs-batch": ({"POST"}, re.compile(r"\.git/info/lfs/objects/batch$")),
    "lfs-put": ({"PUT"}, re.compile(r"^/lfs-upload/")),
    "commit": ({"POST"}, re.compile(r"^/api/[^/]+/[^/]+/[^/]+/commit/")),
    "resolve": ({"GET", "HEAD"}, re.compile(r"^/(?:datasets/|spaces/)?[^/]+/[^/]+/resolve/")),
}
KINDS = ("500", "503", "429", "drop", "lost")  # what a client should recover from
FINAL_KINDS = ("enospc",)  # what it should report at once, not retry
_OPTIONS = {
    "times": (int, "a whole number >= 0"),
    "p": (float, "a number from 0 to 1"),
    "seed": (int, "a whole number"),
    "retry_after": (int, "whole seconds >= 0"),
}


@dataclass
class Fault:
    """One fault rule; see the module docstring for the text form."""

    endpoint: str
    kind: str
    times: int | None = None
    p: float | None = None
    seed: int | None = None
    retry_after: int = 1
    fired: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self):
        if self.endpoint != "*" and self.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown fault endpoint {self.endpoint!r}; use one of {', '.join(ENDPOINTS)} or *")
        if self.kind not in KINDS + FINAL_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {', '.join(KINDS + FINAL_KINDS)}")
        if self.p is not None and not 0 <= self.p <= 1:
            raise ValueError("fault probability p must be between 0 and 1")
        if (self.times is not None and self.times < 0) or self.retry_after < 0:
            raise ValueError("fault times= and retry_after= must not be negative")
        self._rng = random.Random(self.seed)

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """Parse ``ENDPOINT:KIND[:key=value...]``.

        Example:
            >>> Fault.parse("commit:503:times=2").times
            2
        """
        endpoint, _, rest = spec.strip().partition(":")
        kind, *options = rest.split(":")
        values: dict = {}
        for option in options:
            key, sep, value = option.partition("=")
            if not sep or key not in _OPTIONS:
                raise ValueError(f"bad fault option {option!r} in {spec!r}; use times=, p=, seed=, retry_after=")
            cast, expected = _OPTIONS[key]
            try:
                values[key] = cast(value)
            except ValueError:
                values[key] = None
            if values[key] is None or (cast is float and not math.isfinite(values[key])):
                raise ValueError(f"bad fault option {option!r} in {spec!r}: {key}= takes {expected}, e.g. commit:503:times=2")
        return cls(endpoint, kind, **values)

    def matches(self, method: str, path: str) -> bool:
        names = ENDPOINTS if self.endpoint == "*" else {self.endpoint: ENDPOINTS[self.endpoint]}
        hit = any(method in methods and pattern.search(path) for methods, pattern in names.values())
        return hit and not (self.kind in ("drop", "lost") and method == "HEAD")  # a HEAD has no body to cut

    def fire(self) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.p is not None and self._rng.random() >= self.p:
            return False
        self.fired += 1
        return True


class FaultInjector:
    """ASGI middleware that applies the current faults before the Hub app sees a request."""

    def __init__(self, app, faults=None):
        self.app = app
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, str]] = []  # (kind, method, path) of every fault fired
        self.set(faults)

    def set(self, faults) -> None:
        """Replace the active faults (spec strings or :class:`Fault` objects)."""
        parsed = [f if isinstance(f, Fault) else Fault.parse(f) for f in faults or []]
        with self.lock:
            self.faults = parsed

    def _pick(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path) and fault.fire():
                    self.log.append((fault.kind, method, path))
                    return fault
        return None

    async def __call__(self, scope, receive, send):
        fault = self._pick(scope["method"], scope.get("path", "")) if scope["type"] == "http" else None
        if fault is None:
            return await self.app(scope, receive, send)
        if fault.kind == "enospc":
            token = SIMULATE_DISK_FULL.set(True)  # copied into the worker threads that write
            try:
                return await self.app(scope, receive, send)
            finally:
                SIMULATE_DISK_FULL.reset(token)
        if fault.kind == "lost" or (fault.kind == "drop" and scope["method"] == "GET"):
            return await _cut_response(self.app, scope, receive, send)
        if fault.kind == "drop":
            return await _drop_request(scope, receive, send)
        await _drain(receive)
        body = json.dumps({"error": f"Injected fault {fault.kind}"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"x-error-code", b"InjectedFault"), (b"x-error-message", f"Injected fault {fault.kind}".encode())]  # fmt: skip
        if fault.kind == "429":
            headers.append((b"retry-after", str(fault.retry_after).encode()))
        await send({"type": "http.response.start", "status": int(fault.kind), "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _drain(receive, limit: int | None = None) -> None:
    seen = 0
    while limit is None or seen < limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body"):
            return


async def _drop_request(scope, receive, send) -> None:
    declared = dict(scope["headers"]).get(b"content-length", b"0")
    await _drain(receive, limit=int(declared) // 2 if declared.isdigit() else 0)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1048576")]})
    await send({"type": "http.response.body", "body": b"{", "more_body": True})
    # Returning now leaves the response incomplete: uvicorn closes the connection mid-body.


async def _cut_response(app, scope, receive, send) -> None:
    """Let the app answer, but stop forwarding after half of a successful response's body."""
    state = {"budget": None, "cut": False}

    async def cutting_send(message):
        if state["cut"]:
            return
        if message["type"] == "http.response.start":
            length = dict(message.get("headers", [])).get(b"content-length", b"0")
            if message["status"] in (200, 206) and length.isdigit() and int(length) > 1:
                state["budget"] = int(length) // 2
        elif message["type"] == "http.response.body" and state["budget"] is not None:
            body = message.get("body", b"")
            if len(body) >= state["budget"]:
                state["cut"] = True
                message = {"type": "http.response.body", "body": body[: state["budget"]], "more_body": True}
            state["budget"] -= len(body)
        await send(message)

    await app(scope, receive, cutting_send)
