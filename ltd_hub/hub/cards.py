"""Render and merge Hub cards (README.md with YAML front matter).

Templates live in ``cards/`` (installed as ``ltd_hub.card_templates``), start with
``---\n{{ card_data }}\n---`` like huggingface_hub's templates, and put everything they generate
between the markers below so a later push can replace our block and keep the user's text.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from ltd_hub.errors import UsageError


class InvalidCardError(UsageError, ValueError):
    """A README whose front matter is not valid YAML or not a mapping (a ValueError, as huggingface_hub raises)."""


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
    text = template.render(card_data=_yaml_dump(card_data), **context)
    # What the Hub will read back must be what we meant (a value must never end the block early).
    meta, _ = split_card(text, where=f"the card rendered from {template_name}")
    wanted = {k: v for k, v in card_data.items() if v is not None}
    if set(meta) != set(wanted):
        raise ValueError(f"card template {template_name}: the front matter reads back as keys {sorted(meta)}, not {sorted(wanted)}")
    return text


def split_card(text: str | None, *, where: str = "the README.md") -> tuple[dict[str, Any], str]:
    """Split a README into (metadata dict, body) by the Hub's own front-matter rules.

    The block is found with huggingface_hub's ``REGEX_YAML_BLOCK`` (the Hub server's regex: the
    closing ``---`` starts a line, so an indented ``---`` inside a YAML value does not end it) and
    parsed by :class:`huggingface_hub.RepoCard`. Text without front matter has empty metadata.

    Args:
        text: the README text, or None.
        where: what the text is (``"dataset me/x: README.md"``), named in errors.

    Raises:
        InvalidCardError: (a UsageError and a ValueError) the front matter is not valid YAML, or not a mapping.

    Example:
        >>> split_card("---\nlicense: mit\n---\n# Hi\n")
        ({'license': 'mit'}, '# Hi\n')
    """
    import yaml
    from huggingface_hub import RepoCard
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    if not text:
        return {}, ""
    if not REGEX_YAML_BLOCK.search(text):
        return {}, text  # (RepoCard would log a warning for every card without metadata)
    try:
        card = RepoCard(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        # The mark counts lines of the YAML block; +2 makes it a line of the README (after the opening ---).
        at = f" at line {mark.line + 2}" if mark is not None else ""
        detail = " ".join(str(getattr(exc, "problem", None) or exc).split())[:120]
        raise InvalidCardError(
            f"{where} has invalid YAML front matter ({detail}{at}); fix the block between the first two '---' lines or remove it"
        ) from None
    except (ValueError, TypeError):  # a list or a scalar instead of a mapping, or keys that are not strings
        raise InvalidCardError(f"{where} has front matter that is not a mapping of key: value; fix or remove it") from None
    return card.data.to_dict(), card.text


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


def merge_card(existing: str | None, new: str, *, where: str = "the repo's README.md") -> str:
    """Merge a freshly rendered card into an existing one, keeping what the user wrote.

    Metadata: the new values win, list-valued linking keys (tags, datasets, ...) are unioned,
    keys only the user set are kept. Body: our block between the ltd-hub markers replaces the
    previous one; a card without our block keeps its text and gets ours appended.

    Args:
        existing: the current README text, or None when the repo has none.
        new: the rendered card.
        where: names the existing card in errors (``"dataset me/x: README.md"``).

    Returns:
        The merged README text.

    Raises:
        UsageError: the existing card's front matter is not valid YAML (the message names ``where``).

    Example:
        >>> merge_card("---\\ntags: [mine]\\n---\\nHello", "---\\ntags: [ltd-hub]\\n---\\nBody")  # doctest: +SKIP
    """
    old_meta, old_body = split_card(existing, where=where)
    new_meta, new_body = split_card(new, where="the rendered card")
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
