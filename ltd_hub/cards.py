"""Render and merge Hub cards (README.md with YAML front matter).

Templates live in ``cards/`` (installed as ``ltd_hub.card_templates``), start with
``---\n{{ card_data }}\n---`` like huggingface_hub's templates, and put everything they generate
between the markers below so a later push can replace our block and keep the user's text.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

BLOCK_START = "<!-- ltd-hub:start -->"
BLOCK_END = "<!-- ltd-hub:end -->"

# Keys whose values are lists the Hub links on (tags, datasets...): merged as ordered unions.
_UNION_KEYS = ("tags", "datasets", "language", "models", "source_datasets", "task_categories", "base_model")


def _yaml_dump(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000).strip()


def load_template(template_name: str) -> str:
    """Return the text of ``cards/<template_name>`` from the installed package."""
    path = resources.files("ltd_hub.card_templates") / template_name
    if not path.is_file():
        names = sorted(p.name for p in resources.files("ltd_hub.card_templates").iterdir() if p.name.endswith(".j2"))
        raise ValueError(f"unknown card template {template_name!r}; available: {', '.join(names)}")
    return path.read_text(encoding="utf-8")


def render_card(template_name: str, card_data: dict[str, Any], **context: Any) -> str:
    """Render a card template with strict Jinja (a missing variable is an error).

    Args:
        template_name: file name inside ``cards/``, e.g. ``"dataset_card.md.j2"``.
        card_data: the YAML metadata; dumped into ``{{ card_data }}``.
        **context: the variables the template body uses.

    Returns:
        The README.md text.

    Example:
        >>> text = render_card("dataset_card.md.j2", {"license": "mit"}, **ctx)  # doctest: +SKIP
    """
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    template = env.from_string(load_template(template_name))
    return template.render(card_data=_yaml_dump(card_data), **context)


def split_card(text: str | None) -> tuple[dict[str, Any], str]:
    """Split a README into (metadata dict, body). Text without front matter has empty metadata."""
    import yaml

    if not text:
        return {}, ""
    if text.startswith("---"):
        parts = text.split("\n")
        for end in range(1, len(parts)):
            if parts[end].strip() == "---":
                meta = yaml.safe_load("\n".join(parts[1:end])) or {}
                if not isinstance(meta, dict):
                    raise ValueError("the card's YAML front matter is not a mapping")
                return meta, "\n".join(parts[end + 1 :])
    return {}, text


def join_card(metadata: dict[str, Any], body: str) -> str:
    """Assemble front matter and body into README text."""
    if not metadata:
        return body
    return f"---\n{_yaml_dump(metadata)}\n---\n{body.lstrip(chr(10)) if body.strip() else ''}"


def _union(old: Any, new: Any) -> list[Any]:
    as_list = lambda v: v if isinstance(v, list) else ([] if v is None else [v])  # noqa: E731
    out: list[Any] = []
    for item in as_list(old) + as_list(new):
        if item not in out:
            out.append(item)
    return out


def merge_card(existing: str | None, new: str) -> str:
    """Merge a freshly rendered card into an existing one, keeping what the user wrote.

    Metadata: the new values win, list-valued linking keys (tags, datasets, ...) are unioned,
    keys only the user set are kept. Body: our block between the ltd-hub markers replaces the
    previous one; a card without our block keeps its text and gets ours appended.

    Args:
        existing: the current README text, or None when the repo has none.
        new: the rendered card.

    Returns:
        The merged README text.

    Example:
        >>> merge_card("---\\ntags: [mine]\\n---\\nHello", "---\\ntags: [ltd-hub]\\n---\\nBody")  # doctest: +SKIP
    """
    old_meta, old_body = split_card(existing)
    new_meta, new_body = split_card(new)
    meta = dict(old_meta)
    for key, value in new_meta.items():
        if key in _UNION_KEYS and key in old_meta and isinstance(value, list):
            meta[key] = _union(old_meta[key], value)
        else:
            meta[key] = value
    block = _extract_block(new_body)
    if block is None:
        body = new_body if not old_body.strip() else old_body
    elif BLOCK_START in old_body and BLOCK_END in old_body:
        head, rest = old_body.split(BLOCK_START, 1)
        tail = rest.split(BLOCK_END, 1)[1]
        body = head + block + tail
    elif old_body.strip():
        body = old_body.rstrip("\n") + "\n\n" + block + "\n"
    else:
        body = new_body
    return join_card(meta, body)


def _extract_block(body: str) -> str | None:
    if BLOCK_START in body and BLOCK_END in body:
        start = body.index(BLOCK_START)
        end = body.index(BLOCK_END) + len(BLOCK_END)
        return body[start:end]
    return None
