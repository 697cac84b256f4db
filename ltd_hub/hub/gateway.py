"""The one gateway between ltd-hub and the Hugging Face Hub (or the embedded Hub).

Every other module asks this one to check, push or fetch, and loads models and datasets through
:func:`load_pretrained` and :func:`load_dataset`; nothing else imports ``huggingface_hub``'s network
API. Online and offline differ only by ``HF_ENDPOINT`` (:func:`pointed_at` switches it for a block).
Errors come out as :class:`~ltd_hub.errors.HubError` with one actionable line, "not there" as a
typed :class:`~ltd_hub.errors.NotFoundError`; transient failures (429, 5xx, dropped connections)
are retried with backoff honouring ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ltd_hub.errors import HubError, InvalidRepoIdError, MissingFileError, MissingRepoError, MissingRevisionError, UsageError
from ltd_hub.hub.cards import merge_card

REPO_TYPES = ("model", "dataset", "space")
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
logger = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = [
    "PushResult",
    "PushTarget",
    "derived_visibility",
    "download",
    "empty_repo_hint",
    "load_dataset",
    "load_pretrained",
    "merge_card",
    "pointed_at",
    "preflight_push",
    "private_inputs",
    "push_files",
    "read_card_text",
    "repo_exists",
    "repo_head",
    "repo_private",
    "require_token",
    "resolve_token",
    "snapshot",
    "with_retries",
]


@dataclass(frozen=True)
class PushTarget:
    """Where a push will land, as checked by :func:`preflight_push`."""

    repo_id: str
    repo_type: str
    exists: bool
    head: str | None
    user: str
    private: bool | None = None  # the existing repo's visibility; None when it does not exist
    empty: bool = False  # exists but holds only .gitattributes (e.g. left by a push killed after creating it)


@dataclass(frozen=True)
class PushResult:
    """What a push did; every push (subset, adapter, Space, ``train --push-to``) returns one.

    ``url`` is the repo's page, ``commit_url`` the new commit's (None when nothing was committed),
    ``revision`` the repo's head after the push. ``created_commit`` is False when the repo already
    had these files. URLs never carry ``HF_ENDPOINT``'s ``user:password@``.
    """

    repo_id: str
    repo_type: str
    url: str
    commit_url: str | None
    revision: str
    created_commit: bool

    @property
    def state(self) -> str:
        """What the CLI prints of the push: ``commit <sha12>``, or ``unchanged, no new commit``."""
        return f"commit {self.revision[:12]}" if self.created_commit else "unchanged, no new commit"


def display_endpoint() -> str:
    """The Hub endpoint the clients talk to, fit to print (never with HF_ENDPOINT's ``user:password@``)."""
    from huggingface_hub import constants

    from ltd_hub.redact import safe_url

    return safe_url(constants.ENDPOINT)


def resolve_token(token: str | None = None) -> str | None:
    """Return the explicit token, else the one huggingface_hub finds (HF_TOKEN, stored login)."""
    if token:
        from ltd_hub.redact import remember_token

        remember_token(token)  # a token of any shape is masked in every message from now on
        return token
    from huggingface_hub import get_token

    return get_token()


def require_token(token: str | None = None) -> str:
    """Return a token or raise a HubError that says how to provide one."""
    found = resolve_token(token)
    if not found:
        raise HubError("no Hugging Face token found; run `hf auth login` or set HF_TOKEN to a token with write access")
    return found


def _api(token: str | None):
    from huggingface_hub import HfApi

    return HfApi(token=token)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _transient_cause(exc: BaseException) -> BaseException | None:
    """The transient failure (429/5xx, dropped or refused connection) behind ``exc``, or None.

    huggingface_hub wraps some of them: an LFS upload failure is a RuntimeError raised from the
    HTTP error, and a download whose HEAD failed is a LocalEntryNotFoundError raised from it (which
    must not pass for "the file does not exist"). The chain of causes is followed to find them.
    """
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    from ltd_hub.errors import LtdHubError
    from ltd_hub.errors_map import transport_errors

    for _ in range(8):
        if exc is None or isinstance(exc, (OfflineModeIsEnabled, LtdHubError)):
            return None  # offline mode: retrying cannot help; ours: already final
        if isinstance(exc, HfHubHTTPError):
            return exc if _status(exc) in TRANSIENT_STATUS else None
        if isinstance(exc, (*transport_errors(), ConnectionError, TimeoutError)):
            return exc
        exc = exc.__cause__
    return None


def _is_transient(exc: BaseException) -> bool:
    return _transient_cause(exc) is not None


def _give_up_message(what: str, cause: BaseException, attempts: int, pushing: bool) -> str:
    from huggingface_hub import constants

    from ltd_hub.errors_map import transport_errors

    if isinstance(cause, transport_errors("ConnectError", "ConnectTimeout")):
        from ltd_hub.redact import safe_url

        return (
            f"{what} failed: cannot reach the Hub at {safe_url(constants.ENDPOINT)} (connection refused or timed out); "
            "check HF_ENDPOINT and the network, then re-run the same command"
        )
    left = "the repo was left as it was, " if pushing else ""
    return f"{what} failed after {attempts} attempts ({_status(cause) or type(cause).__name__}); {left}re-run the same command to retry"


def _retry_after(exc: BaseException, attempt: int) -> float:
    response = getattr(exc, "response", None)
    header = response.headers.get("Retry-After") if response is not None else None
    if header:
        try:
            return min(float(header), 60.0)
        except ValueError:
            pass
    base = float(os.environ.get("LTD_HUB_RETRY_BASE", "0.5"))
    return min(base * 2**attempt, 20.0) * (0.5 + random.random() / 2)


def with_retries(call: Callable[[], T], what: str, *, pushing: bool = False) -> T:
    """Run ``call``, retrying transient Hub failures; give up with one line saying what to re-run.

    ``what`` names the operation in messages ("downloading X"); ``pushing`` adds that the repo was left as it was.
    """
    attempts = int(os.environ.get("LTD_HUB_MAX_RETRIES", "5"))
    for attempt in range(attempts + 1):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - classified just below
            cause = _transient_cause(exc)
            if cause is None:
                raise
            if attempt == attempts:
                # Chained to the transient cause, so callers never mistake it for "file not found".
                raise HubError(_give_up_message(what, cause, attempts + 1, pushing)) from cause
            delay = _retry_after(cause, attempt)
            logger.warning("%s: transient failure (%s), retrying in %.1fs", what, _status(cause) or type(cause).__name__, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _translate(exc: BaseException, repo_id: str, repo_type: str) -> HubError:
    """One line for the user, typed: a not-found answer becomes the matching :class:`NotFoundError`."""
    from huggingface_hub.errors import HFValidationError, RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    from ltd_hub.errors_map import dataset_not_found, explanation
    from ltd_hub.redact import safe_url

    kind = HubError
    if isinstance(exc, HFValidationError):
        kind = InvalidRepoIdError
    elif isinstance(exc, RepositoryNotFoundError):  # gated repos too: not visible with this token
        kind = MissingRepoError
    elif isinstance(exc, RevisionNotFoundError):
        kind = MissingRevisionError
    elif isinstance(exc, RemoteEntryNotFoundError):
        kind = MissingFileError
    elif dataset_not_found(exc):
        kind = MissingRevisionError if str(exc).startswith("Revision ") else MissingRepoError
    line = explanation(exc)
    # Client errors quote request URLs, which carry HF_ENDPOINT's user:password@ when it has one.
    return kind(safe_url(f"{repo_type} repo {repo_id}: {line.template}"), params=line.params)


def _not_found_cause(exc: BaseException) -> BaseException | None:
    """The Hub's "not found" (or invalid id) answer behind ``exc``, or None.

    transformers and PEFT re-raise the Hub client's errors as their own ``OSError`` from the
    original, so the chain of causes is followed to find it; ``datasets`` cuts the chain, and its
    ``DatasetNotFoundError`` is the answer itself.
    """
    from huggingface_hub.errors import HFValidationError, RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    from ltd_hub.errors_map import dataset_not_found

    for _ in range(8):
        if exc is None:
            return None
        if isinstance(exc, (HFValidationError, RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError)):
            return exc
        if dataset_not_found(exc):
            return exc
        exc = exc.__cause__
    return None


def _load(call: Callable[[], T], what: str, repo_id: str, repo_type: str) -> T:
    """Run a library loader with retries; the Hub's "not found" becomes a typed error, anything else stays as it is."""
    try:
        return with_retries(call, what)
    except HubError:
        raise
    except Exception as exc:
        cause = _not_found_cause(exc)
        if cause is None:
            raise  # the caller knows best what a loader's own error means (bad file, not a model, ...)
        raise _translate(cause, repo_id, repo_type) from exc


def load_pretrained(factory: Any, repo_id: str, *, what: str | None = None, **kwargs: Any) -> Any:
    """``factory.from_pretrained(repo_id, **kwargs)`` with the gateway's retries and typed not-found errors.

    Args:
        factory: a class with ``from_pretrained`` (``AutoTokenizer``, ``AutoModelForCausalLM``, ...),
            or a callable taking ``(repo_id, **kwargs)`` (e.g. ``functools.partial(PeftModel.from_pretrained, base)``).
        repo_id: a Hub model id or a local folder.
        what: names the download in messages (default ``"loading REPO_ID"``).
        **kwargs: passed on (``revision``, ``token``, ``dtype``, ...).

    Raises:
        MissingRepoError, MissingRevisionError, MissingFileError: the Hub has no such repo, revision or file.
        HubError: transient failures persisted; the message says to re-run.
        Exception: the loader's own errors (not a model, bad weights) as it raised them.

    Example:
        >>> tokenizer = load_pretrained(AutoTokenizer, "HuggingFaceTB/SmolLM2-135M", token=token)  # doctest: +SKIP
    """
    load = getattr(factory, "from_pretrained", factory)
    return _load(lambda: load(repo_id, **kwargs), what or f"loading {repo_id}", repo_id, "model")


def load_dataset(path: str, *, what: str | None = None, **kwargs: Any) -> Any:
    """``datasets.load_dataset(path, **kwargs)`` with the gateway's retries and typed not-found errors.

    ``path`` is a Hub dataset id or a packaged builder (``"json"``, ``"parquet"``, ... with
    ``data_files``); errors other than the Hub's "not found" are raised as ``datasets`` raised them.

    Example:
        >>> ds = load_dataset("me/nli-pool", split="train", revision=sha)  # doctest: +SKIP
    """
    import datasets

    return _load(lambda: datasets.load_dataset(path, **kwargs), what or f"loading dataset {path}", path, "dataset")


@contextlib.contextmanager
def pointed_at(endpoint: str, token: str) -> Iterator[str]:
    """Point this process's Hub clients, and the processes it starts, at ``endpoint`` for the block.

    Sets ``HF_ENDPOINT`` and ``HF_TOKEN`` (children inherit them) and, because huggingface_hub reads
    ``HF_ENDPOINT`` once at import, its already-imported constants too. Xet is off (the embedded Hub
    speaks plain LFS) and so is telemetry. Everything is put back when the block ends.

    Example:
        >>> with serve_hub(root) as endpoint, pointed_at(endpoint, token):  # doctest: +SKIP
        ...     seed_hub(root)
    """
    names = ("HF_ENDPOINT", "HF_TOKEN", "HF_HUB_DISABLE_XET", "HF_HUB_DISABLE_TELEMETRY")
    saved_env = {name: os.environ.get(name) for name in names}
    saved_client = _client_endpoint()
    os.environ.update({"HF_ENDPOINT": endpoint, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"})
    _set_client_endpoint(endpoint, disable_xet=True)
    try:
        yield endpoint
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if saved_client is None:  # imported inside the block: back to what the environment now says
            from huggingface_hub import constants

            default = os.environ.get("HF_ENDPOINT", constants._HF_DEFAULT_ENDPOINT).rstrip("/")
            saved_client = (default, constants._is_true(os.environ.get("HF_HUB_DISABLE_XET")))
        _set_client_endpoint(*saved_client)


def _client_endpoint() -> tuple[str, bool] | None:
    """huggingface_hub's endpoint and Xet switch as it read them at import; None when not imported yet."""
    if "huggingface_hub" not in sys.modules:
        return None
    from huggingface_hub import constants

    return constants.ENDPOINT, constants.HF_HUB_DISABLE_XET


def _set_client_endpoint(endpoint: str, disable_xet: bool) -> None:
    if "huggingface_hub" not in sys.modules:
        return  # it reads the environment when imported
    from huggingface_hub import constants, hf_api

    constants.ENDPOINT = endpoint
    constants.HUGGINGFACE_CO_URL_TEMPLATE = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    hf_api.api.endpoint = endpoint
    constants.HF_HUB_DISABLE_XET = disable_xet


def _check_repo_type(repo_type: str) -> None:
    if repo_type not in REPO_TYPES:
        raise UsageError(f"unknown repo type {repo_type!r}; use one of: {', '.join(REPO_TYPES)}")


def preflight_push(repo_id: str, repo_type: str = "dataset", token: str | None = None) -> PushTarget:
    """Check, before any expensive work, that a push to ``repo_id`` can succeed.

    Checks a token is present and valid, has write access to the namespace, the repo id is
    valid, and the repo either does not exist yet or exists with this type.

    Args:
        repo_id: ``namespace/name``; a bare ``name`` goes to the token's user namespace.
        repo_type: ``"model"``, ``"dataset"`` or ``"space"``.
        token: explicit token; default the one huggingface_hub finds.

    Returns:
        The resolved :class:`PushTarget` (use its ``repo_id`` for the push).

    Example:
        >>> target = preflight_push("me/nli-coreset", "dataset")  # doctest: +SKIP
    """
    from ltd_hub.redact import looks_like_token

    _check_repo_type(repo_type)
    token = require_token(token)
    if looks_like_token(repo_id, token):
        # A pasted token would become a repo name: public, in the card, in every printed URL.
        raise UsageError("the repo id looks like a Hub token (hf_...); pass NAMESPACE/NAME, and revoke the token if it was shared")
    api = _api(token)
    me = _whoami(api, repo_id, repo_type)
    user = me.get("name", "")
    full_id = _writable_repo_id(repo_id, me)
    existing = _existing_target(api, full_id, repo_type, user)
    if existing is not None:
        return existing
    for other in REPO_TYPES:
        if other != repo_type and api.repo_exists(full_id, repo_type=other):
            raise HubError(f"{full_id} already exists as a {other} repo, not a {repo_type}; choose another {{repo_id}}", params="repo_id")
    return PushTarget(full_id, repo_type, exists=False, head=None, user=user)


def _whoami(api, repo_id: str, repo_type: str) -> dict[str, Any]:
    """The token's account (name, orgs, role); a rejected token or an unreachable Hub is one line."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        me = with_retries(lambda: api.whoami(), "checking the token")
    except HfHubHTTPError as exc:
        if _status(exc) == 401:
            raise HubError("the Hub rejected the token (401); log in again with `hf auth login` or set a valid HF_TOKEN") from exc
        raise _translate(exc, repo_id, repo_type) from exc
    except HubError:
        raise
    except Exception as exc:  # noqa: BLE001 - connection errors and the like
        raise _translate(exc, repo_id, repo_type) from exc
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise HubError(f"the token of '{me.get('name', '')}' is read-only; create a token with write access and set HF_TOKEN")
    return me


def _writable_repo_id(repo_id: str, me: dict[str, Any]) -> str:
    """``repo_id`` as ``namespace/name`` (a bare name goes to the user), valid and in a namespace the token may write."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    user = me.get("name", "")
    full_id = repo_id if "/" in repo_id else f"{user}/{repo_id}"
    try:
        validate_repo_id(full_id)
    except HFValidationError as exc:
        raise UsageError(
            f"invalid repo id {repo_id!r}; use NAMESPACE/NAME with letters, digits, '-', '_' or '.' (at most 96 characters)"
        ) from exc
    if full_id.count("/") != 1:
        raise UsageError(f"invalid repo id {repo_id!r}; use NAMESPACE/NAME")
    namespace, name = full_id.split("/")
    orgs = {org.get("name") for org in me.get("orgs") or []}
    if namespace != user and namespace not in orgs:
        raise HubError(
            f"the token of '{user}' cannot write to namespace '{namespace}'; use {{repo_id}} {user}/{name} or a token of that namespace",
            params="repo_id",
        )
    return full_id


def _existing_target(api, full_id: str, repo_type: str, user: str) -> PushTarget | None:
    """The :class:`PushTarget` of ``full_id`` when a repo of this type exists, else None."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        info = with_retries(lambda: api.repo_info(full_id, repo_type=repo_type), "reading the repo")
    except RepositoryNotFoundError:
        return None
    except HubError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _translate(exc, full_id, repo_type) from exc
    empty = _only_gitattributes(info)
    if empty:
        # What a push killed right after creating the repo leaves; this push fills it like a new one.
        print(f"note: {full_id} holds no files yet (left by an interrupted push?); this push fills it", file=sys.stderr)
    return PushTarget(full_id, repo_type, exists=True, head=info.sha, user=user, private=bool(info.private), empty=empty)


def _only_gitattributes(info) -> bool:
    """A repo as the Hub creates it: nothing but ``.gitattributes`` (nothing in it to expose or keep)."""
    return {s.rfilename for s in info.siblings or []} <= {".gitattributes"}


def empty_repo_hint(repo_id: str, repo_type: str, token: str | None = None) -> str:
    """For an error about a repo that lacks a file: how to clean up when it is an empty leftover, else "".

    A push killed right after creating its repo leaves one holding only ``.gitattributes``; every
    command that reads it says so instead of only "not an adapter" or "no data".
    """
    try:
        info = _api(resolve_token(token)).repo_info(repo_id, repo_type=repo_type)
    except Exception:  # noqa: BLE001 - only a hint: the caller's own error stands
        return ""
    if not _only_gitattributes(info):
        return ""
    return (
        f" (it holds no files: a push was interrupted after creating it; re-run that push, "
        f"or delete it with `hf repos delete {repo_id} --repo-type {repo_type}`)"
    )


def private_inputs(refs: Iterable[tuple[str, str]], token: str | None = None) -> list[str]:
    """The repos among ``refs`` (``(repo_id, repo_type)`` pairs) that are private, in order, each once.

    A repo not visible with this token is not counted: nothing of it can have been read.
    """
    found: list[str] = []
    for repo_id, repo_type in refs:
        if repo_id and repo_id not in found and repo_private(repo_id, repo_type, token=token):
            found.append(repo_id)
    return found


def derived_visibility(
    target: PushTarget,
    private: bool | None,
    private_sources: Sequence[str],
    *,
    notify: Callable[[str], None] | None = None,
) -> bool | None:
    """The one rule for what a push may make visible: what is derived from a private repo stays private.

    Every push of derived content (a subset, an adapter, a Space) asks this before pushing.

    Args:
        target: the pre-flighted push target (:func:`preflight_push`).
        private: the user's choice: True (``--private``), False (``--public``, an explicit choice) or
            None (inherit: private when any source is private, else the Hub's default, public).
        private_sources: the private repos the pushed content derives from (:func:`private_inputs`).
        notify: where the one line about a ``--public`` push of private-derived content goes
            (default: stderr).

    Returns:
        The ``private`` to pass to :func:`push_files` (None: the Hub's default for a new repo).

    Raises:
        UsageError: an existing public repo with content would receive private-derived content without
            ``--public``, or ``--private`` names an existing public repo with content (a push cannot make
            what is already there private).

    Example:
        >>> derived_visibility(target, None, ["me/private-pool"])  # doctest: +SKIP
        True
    """
    public_repo = target.exists and not target.empty and target.private is False
    names = ", ".join(private_sources)
    if private is None and private_sources:
        if public_repo:
            raise UsageError(
                f"{target.repo_id} is public and this push derives from private {names}; "
                "pass {public} to publish it there, or choose another {repo_id} (a new repo is created private)",
                params={"public": "private=False", "repo_id": "repo_id"},
            )
        return True
    if private and public_repo:
        raise UsageError(
            f"{target.repo_id} already exists and is public, so {{private}} cannot keep this push private; "
            "choose another {repo_id}, or make the repo private in its settings first",
            params={"private": "private=True", "repo_id": "repo_id"},
        )
    if private is False and private_sources and not (target.exists and target.private):  # an existing private repo stays so
        line = f"--public: {target.repo_id} will be visible to everyone, with content derived from private {names}"
        (notify or (lambda text: print(text, file=sys.stderr)))(line)
    return private


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _same_as_remote(sibling, data: bytes) -> bool:
    if sibling is None:
        return False
    lfs = getattr(sibling, "lfs", None)
    if lfs is not None:
        remote_sha = getattr(lfs, "sha256", None) or (lfs.get("sha256") if isinstance(lfs, dict) else None)
        return remote_sha == hashlib.sha256(data).hexdigest()
    return getattr(sibling, "blob_id", None) == _git_blob_sha1(data)


def _as_bytes(value: bytes | str | Path) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, Path):
        return value.read_bytes()
    return value.encode("utf-8")


def push_files(
    repo_id: str,
    files: Mapping[str, bytes | str | Path],
    *,
    repo_type: str,
    commit_message: str,
    token: str | None = None,
    private: bool | None = None,
    commit_description: str | None = None,
    space_sdk: str | None = None,
) -> PushResult:
    """Push ``files`` to ``repo_id`` in one commit, creating the repo if needed.

    A ``README.md`` among the files is merged into the repo's current card (see
    :func:`ltd_hub.hub.cards.merge_card`). Files identical to the remote ones are skipped, and when
    nothing differs no commit is made. The commit names its parent, so a concurrent push can
    never be overwritten: on a conflict the card is re-merged on the new head and the commit
    retried. Transient failures are retried; either the new commit lands or the repo is unchanged
    (a repo this push created is deleted again). A commit that landed but whose answer was lost
    is recognised on the retry: no duplicate commit, and the result still reports it.

    Args:
        repo_id: ``namespace/name``.
        files: path in repo -> content (bytes, text, or a local file path).
        repo_type: ``"model"``, ``"dataset"`` or ``"space"``.
        commit_message: the commit summary.
        token: explicit token; default the one huggingface_hub finds.
        private: True: the repo must be private (created private; an empty one is made private; one
            that is public with content is refused). False/None: create it public / with the Hub's
            default; an existing repo keeps its visibility. Decide it with :func:`derived_visibility`.
        commit_description: optional longer commit text.
        space_sdk: the Space SDK (``"gradio"``) when creating a Space.

    Returns:
        A :class:`PushResult`.

    Example:
        >>> push_files("me/subset", {"README.md": card}, repo_type="dataset", commit_message="Add card")  # doctest: +SKIP
    """
    _check_repo_type(repo_type)
    api = _api(require_token(token))
    push = _Push(
        api,
        repo_id,
        repo_type,
        payload={path: _as_bytes(value) for path, value in files.items()},
        private=private,
        space_sdk=space_sdk or ("gradio" if repo_type == "space" else None),
    )
    try:
        return _with_conflict_retries(lambda: push.attempt(commit_message, commit_description), repo_id, repo_type)
    except Exception:
        _remove_if_untouched(api, repo_id, repo_type, push.created_head)
        raise


def _with_conflict_retries(attempt: Callable[[], PushResult], repo_id: str, repo_type: str) -> PushResult:
    """Run ``attempt`` with the transient retries, re-running it on a concurrent commit (409/412) up to 3 times."""
    from huggingface_hub.errors import HfHubHTTPError

    for conflict in range(3):
        try:
            return with_retries(attempt, f"pushing to {repo_id}", pushing=True)
        except HfHubHTTPError as exc:
            # 412: someone committed since we read the head. Re-read, re-merge, try again.
            if _status(exc) in (409, 412) and conflict < 2:
                continue
            raise _translate(exc, repo_id, repo_type) from exc
        except HubError:
            raise
        except Exception as exc:  # noqa: BLE001 - connection errors and the like
            if type(exc).__module__.startswith(("httpx", "huggingface_hub")):
                raise _translate(exc, repo_id, repo_type) from exc
            raise
    raise AssertionError("unreachable")


class _Push:
    """One push's attempts; what earlier attempts did is kept to make the next one safe.

    ``created_head``: the head of the repo when this push created it (None if it existed), known
    once an attempt has opened the repo. ``sent_on``: the parent of the last commit sent, to
    recognise a commit that landed although its answer was lost.
    """

    def __init__(self, api, repo_id: str, repo_type: str, *, payload: dict[str, bytes], private: bool | None, space_sdk: str | None):
        self.api, self.repo_id, self.repo_type = api, repo_id, repo_type
        self.payload, self.private, self.space_sdk = payload, private, space_sdk
        self.opened = False
        self.created_head: str | None = None
        self.sent_on: str | None = None

    def attempt(self, commit_message: str, commit_description: str | None) -> PushResult:
        """Read the repo, commit what differs on its head (or recognise an earlier attempt's commit)."""
        from ltd_hub.redact import safe_url

        repo_url, info = self._open_repo()
        head = info.sha
        operations = self._operations(info, head)
        url = safe_url(str(repo_url))  # URLs are printed and returned: never with HF_ENDPOINT's user:password@.
        if not operations:
            if self.sent_on not in (None, head):
                # An earlier attempt's commit landed but its answer was lost on the way back: it is ours.
                return PushResult(self.repo_id, self.repo_type, url, _commit_url(self.repo_id, self.repo_type, head), head, True)
            return PushResult(self.repo_id, self.repo_type, url, None, head, created_commit=False)
        self.sent_on = head
        commit = self.api.create_commit(
            self.repo_id,
            operations,
            commit_message=commit_message,
            commit_description=commit_description,
            repo_type=self.repo_type,
            parent_commit=head,  # a concurrent push is never overwritten: it is a 412, re-merged by the caller
        )
        return PushResult(self.repo_id, self.repo_type, url, safe_url(commit.commit_url), commit.oid, created_commit=True)

    def _open_repo(self):
        """Create the repo if needed and make sure its visibility allows this push; returns (repo URL, files-metadata info)."""
        api, repo_id, repo_type = self.api, self.repo_id, self.repo_type
        fresh = not self.opened and not api.repo_exists(repo_id, repo_type=repo_type)
        repo_url = api.create_repo(repo_id, repo_type=repo_type, private=self.private, exist_ok=True, space_sdk=self.space_sdk)
        info = api.repo_info(repo_id, repo_type=repo_type, files_metadata=True)
        if self.private and info.private is False:
            # Checked here too, not only in the pre-flight: someone may have created the repo since.
            if not _only_gitattributes(info):
                raise HubError(
                    f"{repo_type} repo {repo_id} is public; refusing to push content that must stay private; choose another repo id"
                )
            api.update_repo_settings(repo_id, private=True, repo_type=repo_type)  # nothing in it yet to expose
        if not self.opened:
            self.opened, self.created_head = True, (info.sha if fresh else None)
        return repo_url, info

    def _operations(self, info, head: str) -> list:
        """One add per file that differs from the remote one; README.md merged into the current card first."""
        from huggingface_hub import CommitOperationAdd

        remote = {sibling.rfilename: sibling for sibling in info.siblings or []}
        operations = []
        for path, data in self.payload.items():
            if path == "README.md":
                data = self._merged_card(data, head, present="README.md" in remote)
            if not _same_as_remote(remote.get(path), data):
                operations.append(CommitOperationAdd(path_in_repo=path, path_or_fileobj=data))
        return operations

    def _merged_card(self, card: bytes, head: str, *, present: bool) -> bytes:
        from huggingface_hub.errors import RemoteEntryNotFoundError

        existing = None
        if present:
            try:
                local = self.api.hf_hub_download(self.repo_id, "README.md", repo_type=self.repo_type, revision=head)
                existing = Path(local).read_text(encoding="utf-8")
            except RemoteEntryNotFoundError:  # deleted since repo_info; a failed download is retried
                existing = None
        where = f"{self.repo_type} {self.repo_id}: README.md"
        return merge_card(existing, card.decode("utf-8"), where=where).encode("utf-8")


def _commit_url(repo_id: str, repo_type: str, revision: str) -> str:
    from huggingface_hub import constants

    from ltd_hub.redact import safe_url

    return f"{safe_url(constants.ENDPOINT)}/{constants.REPO_TYPES_URL_PREFIXES.get(repo_type, '')}{repo_id}/commit/{revision}"


def _remove_if_untouched(api, repo_id: str, repo_type: str, created_head: str | None) -> None:
    """Delete a repo this push created and nobody committed to, so a failed push leaves no empty repo."""
    if created_head is None:
        return
    try:
        if api.repo_info(repo_id, repo_type=repo_type).sha == created_head:
            api.delete_repo(repo_id, repo_type=repo_type, missing_ok=True)
    except Exception:  # noqa: BLE001 - best effort: the push already failed with its own message
        logger.warning("could not remove the empty repo %s created by the failed push", repo_id)


def read_card_text(repo_id: str, repo_type: str, revision: str | None = None, token: str | None = None) -> str | None:
    """Return the repo's README.md text, or None when it has none."""
    try:
        return download(repo_id, "README.md", repo_type=repo_type, revision=revision, token=token).read_text(encoding="utf-8")
    except MissingFileError:
        return None


def _read(call: Callable[[], T], what: str, repo_id: str, repo_type: str) -> T:
    """Run a read call with retries; anything that is not already a HubError becomes one line."""
    _check_repo_type(repo_type)
    try:
        return with_retries(call, what)
    except HubError:
        raise
    except Exception as exc:  # noqa: BLE001 - the gateway turns every client error into one line
        raise _translate(exc, repo_id, repo_type) from exc


def download(repo_id: str, filename: str, *, repo_type: str, revision: str | None = None, token: str | None = None) -> Path:
    """Download one file (cached) and return its local path."""
    from huggingface_hub import hf_hub_download

    call = lambda: hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision, token=resolve_token(token))  # noqa: E731
    return Path(_read(call, f"downloading {filename} from {repo_id}", repo_id, repo_type))


def snapshot(
    repo_id: str,
    *,
    repo_type: str,
    revision: str | None = None,
    token: str | None = None,
    allow_patterns: list[str] | str | None = None,
) -> Path:
    """Download a repo snapshot (cached) and return its local folder."""
    from huggingface_hub import snapshot_download

    call = lambda: snapshot_download(  # noqa: E731
        repo_id, repo_type=repo_type, revision=revision, token=resolve_token(token), allow_patterns=allow_patterns
    )
    return Path(_read(call, f"downloading {repo_id}", repo_id, repo_type))


def repo_head(repo_id: str, *, repo_type: str, revision: str | None = None, token: str | None = None) -> str:
    """Return the commit sha that ``revision`` (default the main branch) points at."""
    api = _api(resolve_token(token))
    return _read(lambda: api.repo_info(repo_id, repo_type=repo_type, revision=revision).sha, f"reading {repo_id}", repo_id, repo_type)


def repo_exists(repo_id: str, repo_type: str, token: str | None = None) -> bool:
    """Return whether the repo exists and is visible with this token."""
    api = _api(resolve_token(token))
    return _read(lambda: api.repo_exists(repo_id, repo_type=repo_type), f"checking {repo_id}", repo_id, repo_type)


def repo_private(repo_id: str, repo_type: str, token: str | None = None) -> bool | None:
    """Return whether the repo is private, or None when no repo is visible with this token.

    One request answers both "does it exist" and "is it private" (what :func:`repo_exists` and a
    second ``repo_info`` would ask separately).
    """
    from huggingface_hub.errors import RepositoryNotFoundError

    api = _api(resolve_token(token))

    def private() -> bool | None:
        try:
            return bool(api.repo_info(repo_id, repo_type=repo_type).private)
        except RepositoryNotFoundError:  # also what the Hub answers for another user's private repo
            return None

    return _read(private, f"checking {repo_id}", repo_id, repo_type)
