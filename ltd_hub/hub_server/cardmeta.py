"""Card metadata (a README's YAML front matter) parsed within bounds.

Anyone may ask for ``GET /api/{type}/{repo}``, whose answer carries the card metadata as JSON.
YAML aliases make a few hundred bytes expand into megabytes once written out as JSON (a
"billion laughs" card), and PyYAML's pure-Python composer overflows the stack on deep nesting.
So the metadata is parsed with libyaml when present (it refuses deep nesting itself), its size
*as expanded* is counted with a budget proportional to the text, and a card over any bound is
treated like invalid YAML: no ``cardData`` in the answer, a 400 from ``/api/validate-yaml``.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from threading import Lock

import yaml

FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
MAX_FRONT_MATTER_BYTES = 1024 * 1024
MAX_DEPTH = 64
# Expanded size allowed, in "units" (one per node plus one per character of text): without
# aliases a document never expands past about its own length, so this only stops alias bombs.
EXPANSION_SLACK = 10_000

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CardMetadataError(ValueError):
    """The front matter is not usable card metadata; the message says why."""


def front_matter(text: str) -> str | None:
    """The YAML text between the leading ``---`` lines of a card, or None if there is none."""
    match = FRONT_MATTER.match(text)
    return match.group(1) if match else None


def _expanded_size(data, budget: int) -> int:
    """Size of ``data`` with every alias written out, counting stops early past ``budget``.

    Iterative, so neither deep nesting nor shared references (aliases) can make it recurse or
    run long: it visits at most ``budget`` nodes.
    """
    used, stack = 0, [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CardMetadataError(f"metadata nests deeper than {MAX_DEPTH} levels")
        used += 1 + (len(item) if isinstance(item, str) else 0)
        if used > budget:
            return used
        if isinstance(item, dict):
            stack.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif isinstance(item, (list, tuple)):
            stack.extend((part, depth + 1) for part in item)
    return used


def parse_metadata(yaml_text: str):
    """Parse card metadata YAML; raise :class:`CardMetadataError` if invalid or over a bound."""
    if len(yaml_text.encode("utf-8", "replace")) > MAX_FRONT_MATTER_BYTES:
        raise CardMetadataError(f"metadata is larger than {MAX_FRONT_MATTER_BYTES} bytes")
    try:
        data = yaml.load(yaml_text, Loader=_Loader)  # noqa: S506 - a safe loader (CSafeLoader/SafeLoader)
    except yaml.YAMLError as exc:
        raise CardMetadataError(f"Invalid YAML in the card metadata: {' '.join(str(exc).split())}") from None
    except RecursionError:  # the pure-Python fallback loader recurses per nesting level
        raise CardMetadataError(f"metadata nests deeper than {MAX_DEPTH} levels") from None
    budget = 2 * len(yaml_text) + EXPANSION_SLACK
    if _expanded_size(data, budget) > budget:
        raise CardMetadataError(
            "metadata aliases expand far beyond the card's size (a YAML alias bomb); write the values out instead of using anchors"
        )
    return _jsonable(data)


def _jsonable(item):
    """``item`` as JSON carries it: dates become strings, ``.nan``/``.inf`` null, keys strings.

    Recursive, but only after :func:`_expanded_size` bounded the depth and the size.
    """
    if isinstance(item, dict):
        return {k if isinstance(k, str) else _key(k): _jsonable(v) for k, v in item.items()}
    if isinstance(item, (list, tuple)):
        return [_jsonable(v) for v in item]
    if isinstance(item, float) and (item != item or item in (float("inf"), float("-inf"))):
        return None
    if item is None or isinstance(item, (str, int, float)):
        return item
    return str(item)


def _key(key) -> str:
    return json.dumps(key) if key is None or isinstance(key, (bool, int, float)) else str(key)


_cache: OrderedDict[str, dict | None] = OrderedDict()
_cache_lock = Lock()
_CACHE_SIZE = 512


def card_metadata(blob_id: str, read_text) -> dict | None:
    """The metadata mapping of the README blob ``blob_id`` (text from ``read_text()``), or None.

    Cached by blob id (content-addressed), so a large card is parsed once, not per request.
    """
    with _cache_lock:
        if blob_id in _cache:
            _cache.move_to_end(blob_id)
            return _cache[blob_id]
    yaml_text = front_matter(read_text())
    try:
        data = parse_metadata(yaml_text) if yaml_text is not None else None
    except CardMetadataError:
        data = None
    data = data if isinstance(data, dict) else None
    with _cache_lock:
        _cache[blob_id] = data
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return data
