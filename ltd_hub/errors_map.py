"""Turn library exceptions into one actionable line: one table, exception -> message.

:data:`_RULES` is read top to bottom and the first entry whose type (or test) matches wins, as in
huggingface_hub's ``CLI_ERROR_MAPPINGS``; subclasses come before their bases. A message is a
``str.format`` template over :func:`_fields` (``{first}``: the exception's first line, ``{status}``,
``{name}``, ``{where}``, ``{filename}``); the parameters it names are ``{{param}}`` placeholders
(see :class:`ltd_hub.errors.LtdHubError`), so the CLI shows ``--revision`` and a library caller ``revision``.
"""

from __future__ import annotations

import errno
import functools
import re
import sys
from collections.abc import Callable

from ltd_hub.errors import LtdHubError, flag

# A rule matches an exception by type (or tuple of types) or by a test of the exception.
Match = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


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


def _status(exc: BaseException) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def _http(test: Callable[[int], bool]) -> Callable[[BaseException], bool]:
    """Matches a Hub HTTP error whose status passes ``test``."""
    from huggingface_hub.errors import HfHubHTTPError

    return lambda exc: isinstance(exc, HfHubHTTPError) and test(_status(exc) or 0)


def dataset_not_found(exc: BaseException) -> bool:
    """Whether ``exc`` is ``datasets``' "no such dataset or revision" (which cuts the Hub error's chain)."""
    module = sys.modules.get("datasets.exceptions")  # not imported: it cannot have raised one
    return module is not None and isinstance(exc, module.DatasetNotFoundError)


def _no_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def _hub_rules() -> list[tuple[Match, str]]:
    """The Hub client's errors (none when huggingface_hub cannot be imported)."""
    try:
        from huggingface_hub import errors as hf
    except Exception:  # noqa: BLE001
        return []
    # fmt: off
    return [
        (hf.GatedRepoError, "the repo is gated and this token has no access ({first}); request access or use another token"),
        (hf.RepositoryNotFoundError, "repository not found or not visible with this token ({first}); check the repo id, {{repo_type}} and the token"),
        (hf.RevisionNotFoundError, "revision not found ({first}); check {{revision}} (a branch, tag or commit sha)"),
        (hf.EntryNotFoundError, "file not found in the repo ({first}); check the path and revision"),
        (_http(lambda s: s == 401), "the Hub rejected the token (401); log in again with `hf auth login` or set a valid HF_TOKEN"),
        (_http(lambda s: s == 403), "the token may not write here (403: {first}); use a token with write access to this namespace"),
        (_http(lambda s: s in (409, 412)), "the repo changed while pushing ({status}); re-run the same command to push on top of the new commit"),
        (_http(lambda s: s == 507), "the Hub's disk is full (507 Insufficient Storage); nothing was pushed. Free space on the Hub server, then re-run the same command"),
        (_http(lambda s: s == 429 or s >= 500), "the Hub is unavailable right now ({status}); nothing was pushed, re-run the same command later"),
        (hf.HfHubHTTPError, "the Hub refused the request ({status}: {first})"),
        (hf.OfflineModeIsEnabled, "HF_HUB_OFFLINE=1 is set; unset it to reach the Hub"),
    ]
    # fmt: on


@functools.cache
def _rules() -> tuple[tuple[Match, str], ...]:
    """Every rule, first match wins; built once, on the first error (the imports stay off ``--help``)."""
    # fmt: off
    return (
        *_hub_rules(),
        (dataset_not_found, "dataset not found or not visible with this token ({first}); check the repo id, {{revision}} and the token"),
        (transport_errors("ConnectError", "ConnectTimeout"), "cannot reach the Hub endpoint (connection refused or timed out); check HF_ENDPOINT and the network, or start `ltd-hub hub serve`"),
        (transport_errors(), "the connection to the Hub broke ({name}); nothing was pushed, re-run the same command"),
        (_no_space, "no space left on the device{where}; free disk space there (or write elsewhere, e.g. another {{output_dir}}) and re-run"),
        (_out_of_memory, "out of memory; lower {{per_device_train_batch_size}} or {{max_length}}, or enable {{gradient_checkpointing}}"),
        (FileNotFoundError, "file not found: {filename}; check the path"),
    )
    # fmt: on


def _matches(match: Match, exc: BaseException) -> bool:
    if isinstance(match, (type, tuple)):
        return isinstance(exc, match)
    return match(exc)


def _fields(exc: BaseException) -> dict[str, object]:
    """What a message template may quote of ``exc``."""
    first = " ".join(str(exc).split()).split(" Request ID")[0][:300]
    filename = getattr(exc, "filename", None)
    return {
        "first": first,
        "name": type(exc).__name__,
        "status": _status(exc),
        "where": f" at {filename}" if filename else "",
        "filename": filename or first,
    }


_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def explanation(exc: BaseException) -> LtdHubError:
    """``exc`` as an :class:`~ltd_hub.errors.LtdHubError` whose one line names the fix (parameters as placeholders)."""
    if isinstance(exc, LtdHubError):
        return exc
    fields = _fields(exc)
    for match, template in _rules():
        if _matches(match, exc):
            # {{param}} stays a placeholder through format(); the values quoted are never parsed.
            return LtdHubError(template.format(**fields), params=_PLACEHOLDER.findall(template))
    return LtdHubError(f"{fields['name']}: {fields['first']}")


def explain(exc: BaseException, name: Callable[[str], str] | None = flag) -> str:
    """Return a one-line, user-facing explanation of ``exc`` that names the fix.

    Parameters are written by ``name``: CLI flags by default (this is the CLI edge's wording);
    None gives the library wording.
    """
    return explanation(exc).render(name)
