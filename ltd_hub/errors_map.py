"""Turn library exceptions into one actionable line for the CLI edge."""

from __future__ import annotations

import errno


def transport_errors(*names: str) -> tuple[type[BaseException], ...]:
    """The HTTP clients' connection-level exception classes (``TransportError``, or the ``names`` given).

    huggingface_hub 2.x talks through ``httpx2``, older versions and other clients through ``httpx``;
    both are checked so a dropped connection is recognised whichever client raised it.
    """
    import importlib

    found: list[type[BaseException]] = []
    for module_name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found += [getattr(module, n) for n in names or ("TransportError",) if hasattr(module, n)]
    return tuple(found)


def explain(exc: BaseException) -> str:
    """Return a one-line, user-facing explanation of ``exc`` that names the fix."""
    name = type(exc).__name__
    msg = " ".join(str(exc).split())
    first = msg.split(" Request ID")[0][:300]
    try:
        from huggingface_hub import errors as hf_errors
    except Exception:  # noqa: BLE001
        hf_errors = None
    if hf_errors is not None:
        if isinstance(exc, hf_errors.GatedRepoError):
            return f"the repo is gated and this token has no access ({first}); request access or use another token"
        if isinstance(exc, hf_errors.RepositoryNotFoundError):
            return f"repository not found or not visible with this token ({first}); check the repo id, --repo-type and the token"
        if isinstance(exc, hf_errors.RevisionNotFoundError):
            return f"revision not found ({first}); check --revision (a branch, tag or commit sha)"
        if isinstance(exc, hf_errors.EntryNotFoundError):
            return f"file not found in the repo ({first}); check the path and revision"
        if isinstance(exc, hf_errors.HfHubHTTPError):
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status == 401:
                return "the Hub rejected the token (401); log in again with `hf auth login` or set a valid HF_TOKEN"
            if status == 403:
                return f"the token may not write here (403: {first}); use a token with write access to this namespace"
            if status in (409, 412):
                return f"the repo changed while pushing ({status}); re-run the same command to push on top of the new commit"
            if status == 507:
                return (
                    "the Hub's disk is full (507 Insufficient Storage); nothing was pushed. "
                    "Free space on the Hub server, then re-run the same command"
                )
            if status == 429 or (status or 0) >= 500:
                return f"the Hub is unavailable right now ({status}); nothing was pushed, re-run the same command later"
            return f"the Hub refused the request ({status}: {first})"
        if isinstance(exc, hf_errors.OfflineModeIsEnabled):
            return "HF_HUB_OFFLINE=1 is set; unset it to reach the Hub"
    if isinstance(exc, transport_errors("ConnectError", "ConnectTimeout")):
        return "cannot reach the Hub endpoint (connection refused or timed out); check HF_ENDPOINT and the network, or start `ltd-hub hub serve`"
    if isinstance(exc, transport_errors()):
        return f"the connection to the Hub broke ({name}); nothing was pushed, re-run the same command"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" at {exc.filename}" if getattr(exc, "filename", None) else ""
        return f"no space left on the device{where}; free disk space there (or write elsewhere, e.g. another --output-dir) and re-run"
    if isinstance(exc, MemoryError) or "out of memory" in msg.lower():
        return "out of memory; lower --per-device-train-batch-size or --max-length, or enable --gradient-checkpointing"
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or first}; check the path"
    return f"{name}: {first}"
