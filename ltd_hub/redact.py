"""Keep tokens and endpoint credentials out of everything we print or write."""

from __future__ import annotations

import os
import re

# Hub user tokens look like hf_ + 30-40 alphanumerics; also mask whatever token is configured.
_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{8,}")
# A repo name this long after hf_ is a pasted token, not a name anyone picks (real ones: hf_ + 34).
_TOKEN_NAME_RE = re.compile(r"hf_[A-Za-z0-9]{30,}")
# user:password@ (or a bare token@) in a URL such as HF_ENDPOINT=http://user:pass@host.
_URL_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^\s/@]+@")

# Tokens this process was given explicitly (``--token``, ``token=``): whatever their shape, they are
# secrets too, and neither the environment nor the stored login would name them.
_IN_USE: set[str] = set()


def remember_token(token: str | None) -> None:
    """Mark ``token`` as a secret in use, so :func:`redact` masks it whatever it looks like."""
    if token and len(token) >= 4:
        _IN_USE.add(token)


def _known_tokens() -> list[str]:
    tokens = list(_IN_USE)
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = os.environ.get(var)
        if value and len(value) >= 4:
            tokens.append(value)
    try:
        from huggingface_hub import get_token

        stored = get_token()
        if stored and len(stored) >= 4:
            tokens.append(stored)
    except Exception:  # noqa: BLE001 - redaction must never fail
        pass
    return tokens


def safe_url(url: str) -> str:
    """``url`` without credentials: ``http://user:pass@host/x`` becomes ``http://***@host/x``."""
    return _URL_USERINFO_RE.sub(r"\g<scheme>***@", url)


def looks_like_token(text: str, token: str | None = None) -> bool:
    """Whether ``text`` (a repo id, a name) holds a Hub token: ``hf_`` + 30 or more alphanumerics, or ``token`` itself."""
    if _TOKEN_NAME_RE.search(text):
        return True
    return any(t in text for t in {*_known_tokens(), *([token] if token and len(token) >= 8 else [])} if len(t) >= 8)


def redact(text: str, extra: list[str] | None = None) -> str:
    """Return ``text`` with every known token, anything token-shaped and URL credentials replaced by ``***``."""
    for token in sorted(set(_known_tokens() + [t for t in extra or [] if t and len(t) >= 4]), key=len, reverse=True):
        text = text.replace(token, "***")
    return safe_url(_TOKEN_RE.sub("***", text))


def secret(value: str) -> str:
    """argparse ``type=`` for ``--token``: the value is masked in every message, even errors raised before it is used."""
    remember_token(value)
    return value
