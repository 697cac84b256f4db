"""Run the embedded Hub: uvicorn in a background thread (tests, Space) or in the foreground (CLI)."""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from ltd_hub.errors import UsageError
from ltd_hub.hub_server.app import create_app
from ltd_hub.hub_server.auth import Auth, parse_tokens
from ltd_hub.hub_server.context import Limits
from ltd_hub.hub_server.faults import FaultInjector
from ltd_hub.hub_server.storage import HubStorage

_running: dict[str, HubServer] = {}


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``; a :class:`UsageError` naming the fix if that is impossible."""
    if not 0 <= port <= 65535:
        raise UsageError(f"port {port} is out of range; pick a port from 1024 to 65535, or 0 for any free port")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} on {host} is already in use; stop the program listening there or pick another --port (0 = any free port)"
            ) from None
        if exc.errno == errno.EACCES:
            raise UsageError(f"no permission to listen on port {port}; pick a port from 1024 to 65535, or 0 for any free port") from None
        reason = exc.strerror or str(exc)
        raise UsageError(
            f"cannot listen on --host {host} ({reason}); use an address of this machine such as 127.0.0.1 or 0.0.0.0"
        ) from None
    return sock


class _RedactSignedUrls(logging.Filter):
    """Hide the signature of pre-signed LFS upload URLs in access logs: it is a credential for an hour."""

    _SIGNATURE = re.compile(r"(signature=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._SIGNATURE.sub(r"\1<redacted>", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self._SIGNATURE.sub(r"\1<redacted>", record.msg)
        return True


_REDACT_FILTER = _RedactSignedUrls()


def redact_access_log() -> None:
    """Install the signed-URL redaction on uvicorn's access logger (once; call after uvicorn configured logging)."""
    logger = logging.getLogger("uvicorn.access")
    if _REDACT_FILTER not in logger.filters:
        logger.addFilter(_REDACT_FILTER)


def build_asgi(root: str | os.PathLike, *, tokens: list[str] | None = None, faults=None, limits: Limits | None = None) -> FaultInjector:
    """The Hub ASGI app over ``root``, wrapped in a :class:`FaultInjector`."""
    return FaultInjector(create_app(HubStorage(root), Auth(parse_tokens(tokens)), limits), faults)


class HubServer:
    """A running embedded Hub. ``endpoint`` is its URL; ``set_faults`` changes faults at run time."""

    def __init__(self, root, *, host: str = "127.0.0.1", port: int = 0, tokens=None, faults=None, limits: Limits | None = None):
        import uvicorn

        self.root = Path(root)
        self.app = build_asgi(root, tokens=tokens, faults=faults, limits=limits)
        self._socket = bind_socket(host, port)
        self.port = self._socket.getsockname()[1]
        self.endpoint = _url(host, self.port)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False, timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=f"ltd-hub-{self.port}", daemon=True
        )

    @property
    def fault_log(self) -> list[tuple[str, str, str]]:
        """``(kind, method, path)`` of every fault fired so far."""
        return list(self.app.log)

    def set_faults(self, faults) -> None:
        """Replace the active faults: spec strings like ``"commit:503:times=2"`` (see ``faults.py``)."""
        self.app.set(faults)

    def start(self, timeout: float = 30) -> HubServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._server.started:
                try:
                    if httpx.get(f"{self.endpoint}/api/models", timeout=2).status_code == 200:
                        _running[self.endpoint] = self
                        return self
                except httpx.HTTPError:
                    pass
            if not self._thread.is_alive():
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the embedded Hub did not start on {self.endpoint}")

    def stop(self) -> None:
        _running.pop(self.endpoint, None)
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> HubServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_hub(root, *, host: str = "127.0.0.1", port: int = 0, tokens=None, faults=None, limits: Limits | None = None) -> HubServer:
    """Start the embedded Hub and return its :class:`HubServer` handle (use it as a context manager).

    Example:
        >>> with start_hub(tmp, tokens=["me=hf_x"], faults=["commit:503:times=1"]) as hub:
        ...     hub.set_faults([])
    """
    return HubServer(root, host=host, port=port, tokens=tokens, faults=faults, limits=limits).start()


def running_hub(endpoint: str) -> HubServer:
    """The :class:`HubServer` started in this process that answers at ``endpoint`` (KeyError if none)."""
    return _running[endpoint.rstrip("/")]


@contextmanager
def serve_hub(root, *, host: str = "127.0.0.1", port: int = 0, tokens=None, faults=None, limits: Limits | None = None):
    """Serve the Hub-compatible API over the repos stored in ``root`` while the block runs.

    Args:
        root: folder holding the repositories (created if missing; data survives restarts).
        host, port: where to listen; port 0 picks a free port.
        tokens: ``["NAME=TOKEN", "NAME=TOKEN:read", ...]``; a token writes only under ``NAME/``.
        faults: fault specs such as ``"commit:503:times=2"`` (see :mod:`ltd_hub.hub_server.faults`).
            To change them while the server runs, get the handle with ``running_hub(endpoint)``
            and call ``set_faults``, or use :func:`start_hub`, which returns the handle.
        limits: request/file size limits and page sizes (:class:`Limits`).

    Returns:
        A context manager yielding the endpoint, ``http://{host}:{port}``.

    Example:
        >>> with serve_hub(tmp_path / "hub", tokens=["me=hf_abc"]) as endpoint:
        ...     HfApi(endpoint=endpoint, token="hf_abc").create_repo("me/demo")
    """
    server = start_hub(root, host=host, port=port, tokens=tokens, faults=faults, limits=limits)
    try:
        yield server.endpoint
    finally:
        server.stop()


def serve_forever(
    root, *, host: str = "127.0.0.1", port: int = 8765, tokens=None, faults=None, limits: Limits | None = None, announce=print
) -> None:
    """Serve in the foreground until Ctrl-C (``ltd-hub hub serve``); ``announce(endpoint)`` once bound."""
    import uvicorn

    app = build_asgi(root, tokens=tokens, faults=faults, limits=limits)
    sock = bind_socket(host, port)
    config = uvicorn.Config(app, log_level="info", lifespan="off")  # configures uvicorn's loggers
    redact_access_log()
    announce(_url(host, sock.getsockname()[1]))
    uvicorn.Server(config).run(sockets=[sock])
