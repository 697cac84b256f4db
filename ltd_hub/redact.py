"""Keep tokens out of everything we print or write."""

from __future__ import annotations

import os
import re

# Hub user tokens look like hf_ + 30-40 alphanumerics; also mask whatever token is configured.
_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{8,}")


def _known_tokens() -> list[str]:
    tokens = []
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


def redact(text: str, extra: list[str] | None = None) -> str:
    """Return ``text`` with every known token and anything token-shaped replaced by ``***``."""
    for token in sorted(set(_known_tokens() + (extra or [])), key=len, reverse=True):
        text = text.replace(token, "***")
    return _TOKEN_RE.sub("***", text)
