"""Build and publish the comparison Space: app, pinned requirements, config and README, one commit.

The Space is the self-contained Gradio app in ``space/app.py``, the formatting-and-scoring module
``space/ltd_scoring.py`` that ``ltd-hub evaluate`` scores with (so the Space's choice probabilities
are those scores), a ``space_config.json`` written here (base model, adapters by role with what
each was trained on and how it formats prompts, links, held-out examples) and a README whose
front matter Spaces accepts and whose ``models``/``datasets`` make the Hub link the Space to them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from ltd_hub.constants import REPO_ID_RE
from ltd_hub.errors import MissingFileError, UsageError
from ltd_hub.hub import gateway as hub

SPACE_PACKAGE = "ltd_hub.space"
APP_FILE = "app.py"
SCORING_FILE = "ltd_scoring.py"
CONFIG_FILE = "space_config.json"
# Role -> the plan_space/push_space parameter that names its adapter; the role is the CLI flag's dest (--random).
ROLE_PARAMS = {"full": "full", "subset": "subset", "random": "random_adapter"}
ROLE_TITLES = {"full": "Full task data", "subset": "0.5% coreset", "random": "0.5% random", "base": "Base model"}
DEFAULT_TITLE = "Full data vs 0.5% data"
DEFAULT_SHORT_DESCRIPTION = "LoRA adapters on full data vs a 0.5% coreset, side by side"
MAX_SHORT_DESCRIPTION = 60
SPACE_TAGS = ["ltd-hub", "lora", "peft", "instruction-tuning", "data-selection", "coreset"]


@dataclass
class SpaceSpec:
    """Everything the Space files are built from, validated against the Hub.

    Args:
        repo_id: the Space repo (``namespace/name``).
        base_model: Hub id of the base model the adapters were trained on.
        adapters: role (``full``, ``subset``, optional ``random``) -> adapter Hub id.
        subset_dataset: Hub id of the 0.5% subset dataset, if known.
        full_data: Hub id (or description) of the full task data, if known.
        examples: held-out examples ``{"prompt", "choices", "gold", "dataset", "template"}``.
        examples_sources: where the examples came from (paths or Hub ids), for the README.
        title: the Space title.
        short_description: at most 60 characters (a Spaces limit).
        license: the Space license.
        role_titles: role -> column title saying what the data really is (from the training summaries).
        role_details: role -> what the adapter's training saw (rows, steps, rows seen, epochs).
        formatting: role -> the prompt formatting the adapter was trained with.
        hardware: the README's ``suggested_hardware`` (e.g. ``zero-a10g``), if any.

    Example:
        >>> spec = plan_space("me/ltd-demo", full="me/full", subset="me/subset")  # doctest: +SKIP
    """

    repo_id: str
    base_model: str
    adapters: dict[str, str]
    subset_dataset: str | None = None
    full_data: str | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    examples_sources: list[str] = field(default_factory=list)
    title: str = DEFAULT_TITLE
    short_description: str = DEFAULT_SHORT_DESCRIPTION
    license: str = "apache-2.0"
    dropped_training_rows: int = 0
    private_repos: list[str] = field(default_factory=list)
    role_titles: dict[str, str] = field(default_factory=dict)
    role_details: dict[str, str] = field(default_factory=dict)
    formatting: dict[str, dict[str, Any]] = field(default_factory=dict)
    hardware: str | None = None


# ----- adapters ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AdapterFacts:
    """What an adapter repo says about itself (adapter_config.json and model card)."""

    repo_id: str
    base_model: str | None
    datasets: list[str]
    license: str | None
    private: bool = False
    summary: dict[str, Any] | None = None


def describe_training(role: str, summary: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """A column title that says what the adapter's data really is, and what its training saw.

    The "full" role of a demonstration is often a random slice standing in for the full data:
    its title then says so ("Random 2,000 rows (full-data stand-in)") instead of "Full task data".

    Args:
        role: ``full``, ``subset`` or ``random``.
        summary: the adapter's ``training_summary.json`` (None: nothing is known, defaults apply).

    Returns:
        (title or None for the default, detail or None).

    Example:
        >>> describe_training("full", {"dataset": {"train_rows": 2000, "repo_id": "me/full",
        ...     "selection": {"strategy": "random", "n_task_rows": 20000}},
        ...     "training": {"steps": 30}, "hyperparameters": {"per_device_train_batch_size": 8}})[0]
        'Random 2,000 rows (full-data stand-in)'
    """
    from ltd_hub.adapters import training_seen

    if not summary:
        return None, None
    dataset = summary.get("dataset") or {}
    selection = dataset.get("selection") or {}
    rows, strategy, n_task = dataset.get("train_rows"), selection.get("strategy"), selection.get("n_task_rows")
    if not isinstance(rows, int) or rows <= 0:
        return None, None
    share = f"{100 * rows / n_task:.3g}%" if isinstance(n_task, int) and n_task > 0 else None
    if role == "full":
        if strategy == "random":
            title = f"Random {rows:,} rows (full-data stand-in)"
        elif strategy:
            title = f"{rows:,} rows by `{strategy}` (full-data stand-in)"
        else:
            title = f"Full task data ({rows:,} rows)"
    elif strategy == "random":
        title = f"{share + ' ' if share else ''}random ({rows:,} rows)"
        title = title[0].upper() + title[1:]
    else:
        title = f"{share + ' ' if share else ''}coreset ({rows:,} rows)"
    where = f" of `{dataset['repo_id']}`" if dataset.get("repo_id") else ""
    parts = [f"{rows:,} rows{where}" + (f", a {share} `{strategy}` selection from {n_task:,} task rows" if strategy and share else "")]
    seen = training_seen(summary)
    if seen:
        parts.append(f"training saw {seen['steps']} steps x {seen['batch']} rows = {seen['rows_seen']:,} rows ({seen['epochs']} epochs)")
    return title, "; ".join(parts)


def inspect_adapter(repo_id: str, role: str, token: str | None = None) -> AdapterFacts:
    """Check that ``repo_id`` is a PEFT adapter on the Hub and read its base model and datasets.

    Args:
        repo_id: the adapter's Hub id.
        role: ``full``, ``subset`` or ``random``: errors name the parameter the adapter came from.
        token: Hub token (default the one huggingface_hub finds).

    Returns:
        The adapter's :class:`AdapterFacts`.

    Example:
        >>> inspect_adapter("me/nli-subset-lora", "subset").base_model  # doctest: +SKIP
        'HuggingFaceTB/SmolLM2-135M-Instruct'
    """
    from ltd_hub.hub.cards import split_card

    named_by = {role: ROLE_PARAMS.get(role, role)}
    if not REPO_ID_RE.match(repo_id or ""):
        raise UsageError(f"{{{role}}} {repo_id!r} is not a Hub model id; give the NAMESPACE/NAME of a pushed adapter", params=named_by)
    private = hub.repo_private(repo_id, "model", token=token)
    if private is None:
        raise UsageError(
            f"{{{role}}} {repo_id}: no such model repo on {hub.display_endpoint()}; check the id (an adapter pushed by `ltd-hub train --push-to`)",
            params=named_by,
        )
    try:
        config_path = hub.download(repo_id, "adapter_config.json", repo_type="model", token=token)
    except MissingFileError as exc:
        hint = hub.empty_repo_hint(repo_id, "model", token)
        raise UsageError(
            f"{{{role}}} {repo_id} is not a PEFT adapter (no adapter_config.json){hint}; give an adapter repo", params=named_by
        ) from exc
    adapter_config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    meta, _ = split_card(hub.read_card_text(repo_id, "model", token=token))
    card_base = meta.get("base_model")
    card_base = card_base[0] if isinstance(card_base, list) and card_base else card_base
    base = card_base or adapter_config.get("base_model_name_or_path")
    named = meta.get("datasets") or []
    datasets = [named] if isinstance(named, str) else [str(d) for d in named]
    from ltd_hub.adapters import read_training_summary

    return AdapterFacts(
        repo_id,
        base if base and REPO_ID_RE.match(str(base)) else None,
        datasets,
        meta.get("license"),
        private=private,
        summary=read_training_summary(repo_id, token=token),
    )


def _resolve_base(facts: Mapping[str, AdapterFacts], base_model: str | None, token: str | None) -> str:
    bases = {role: f.base_model for role, f in facts.items() if f.base_model}
    if base_model:
        for role, base in bases.items():
            if base != base_model:
                raise UsageError(
                    f"{{{role}}} {facts[role].repo_id} was trained on {base}, not {{base_model}} {base_model}; "
                    "use adapters of one base model or drop {base_model}",
                    params={role: ROLE_PARAMS[role], "base_model": "base_model"},
                )
    else:
        distinct = sorted(set(bases.values()))
        if len(distinct) > 1:
            raise UsageError(f"the adapters have different base models ({', '.join(distinct)}); compare adapters of one base model")
        if not distinct:
            raise UsageError("no adapter names its base model as a Hub id; pass {base_model} NAMESPACE/NAME", params="base_model")
        base_model = distinct[0]
    if not REPO_ID_RE.match(base_model):
        raise UsageError(f"{{base_model}} {base_model!r} is not a Hub model id; give NAMESPACE/NAME", params="base_model")
    if not hub.repo_exists(base_model, "model", token=token):
        raise UsageError(f"base model {base_model} is not on {hub.display_endpoint()}; push or seed it first (`ltd-hub hub seed` offline)")
    return base_model


# ----- examples ---------------------------------------------------------------------------------
def _as_choices(value: Any) -> list[str]:
    if value is None or isinstance(value, float):
        return []
    return [str(choice) for choice in list(value)]


def read_examples(source: str, token: str | None = None) -> list[dict[str, Any]]:
    """Read the rows of eval data (the ltd-nli format: ``inputs``, ``targets``, ``answer_choices``).

    Classification data is read by the evaluation's own reader (:func:`ltd_hub.data.eval_sets.load_eval_sets`),
    so a bundled example is the very row ``evaluate`` scores: same prompt (SuperNI task files: definition +
    input, as training builds it), same choices (SuperNI: the task's label set). Data without
    ``answer_choices`` gives prompt-only examples.

    Args:
        source: a local file (.jsonl[.gz], .json[.gz], .parquet), a folder of them, a SuperNI task
            file, or a Hub dataset id.
        token: Hub token for a dataset id.

    Returns:
        One dict per row: ``prompt``, ``gold``, ``choices`` (may be empty), ``dataset``, ``template``.

    Example:
        >>> read_examples("../shared/data/ltd-nli/eval/rte.jsonl.gz")[0]["choices"]  # doctest: +SKIP
        ['True', 'False']
    """
    sets = _classification_sets(source, token)
    if sets is not None:
        return [
            {
                "prompt": row["inputs"],
                "gold": row["target"],
                "choices": list(row["choices"]),
                "dataset": eval_set.dataset_type,
                "template": "" if row["template"] == "default" else row["template"],
            }
            for eval_set in sets
            for row in eval_set.rows
        ]
    from ltd_hub.data.eval_sets import read_prompt_files

    return [
        {
            "prompt": str(record["inputs"]),
            "gold": str(record["targets"]),
            "choices": _as_choices(record.get("answer_choices")),
            "dataset": str(record.get("dataset") or path.name.split(".")[0]),
            "template": str(record.get("template_name") or ""),
        }
        for path, records in read_prompt_files(source, token, param="examples")
        for record in records
    ]


def _classification_sets(source: str, token: str | None) -> list[Any] | None:
    """The eval sets of ``source`` as ``evaluate`` reads them, or None for data without answer choices."""
    import datasets

    from ltd_hub.data.eval_sets import load_eval_sets

    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # a bad file must stay one error line, not progress bars and a line
    try:
        return load_eval_sets([source], token=token, log=lambda _message: None)
    except UsageError as exc:
        if "answer_choices" not in str(exc):
            message = exc.template.removeprefix("eval data: ")
            raise UsageError(f"{{examples}} {source}: {message}", params={**exc.params, "examples": "examples"}) from None
        return None  # generation data: prompt-only examples
    finally:
        if not quiet:
            datasets.enable_progress_bars()


def pick_examples(
    sources: Mapping[str, list[dict[str, Any]]],
    n: int,
    *,
    seed: int = 0,
    exclude_prompts: Iterable[str] = (),
    max_prompt_chars: int = 1500,
) -> tuple[list[dict[str, Any]], int]:
    """Pick ``n`` examples spread over the sources and their templates, never an excluded prompt.

    Args:
        sources: source name -> its rows (from :func:`read_examples`).
        n: how many to keep.
        seed: shuffling seed (the same seed gives the same examples).
        exclude_prompts: training prompts; rows with these prompts are dropped.
        max_prompt_chars: longer prompts are skipped (they make poor demo examples).

    Returns:
        The picked examples and how many rows were dropped for being training rows.

    Example:
        >>> picked, dropped = pick_examples({"rte": rows}, 6, exclude_prompts=train_prompts)  # doctest: +SKIP
    """
    excluded = set(exclude_prompts)
    rng = random.Random(seed)
    queues, dropped = [], 0
    for name in sorted(sources):
        rows = []
        for row in sources[name]:
            if row["prompt"] in excluded:
                dropped += 1
                continue
            if len(row["prompt"]) > max_prompt_chars or (row["choices"] and row["gold"] not in row["choices"]):
                continue
            rows.append(row)
        rng.shuffle(rows)
        # Distinct (dataset, template) pairs first, so six examples show six prompt styles.
        seen, first, rest = set(), [], []
        for row in rows:
            key = (row["dataset"], row["template"])
            (rest if key in seen else first).append(row)
            seen.add(key)
        queues.append(first + rest)
    picked: list[dict[str, Any]] = []
    while len(picked) < n and any(queues):
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    return picked, dropped


def training_prompts(dataset_ids: Iterable[str], token: str | None = None) -> set[str]:
    """The ``inputs`` of every row of the given Hub datasets (the adapters' training data)."""
    from ltd_hub.constants import DATA_SUFFIXES
    from ltd_hub.data.eval_sets import hub_data_folder, read_frame

    prompts: set[str] = set()
    for dataset_id in dataset_ids:
        if not REPO_ID_RE.match(dataset_id) or not hub.repo_exists(dataset_id, "dataset", token=token):
            continue
        folder = hub_data_folder(dataset_id, token)
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name.endswith(DATA_SUFFIXES) and "manifest" not in path.name:
                frame = read_frame(path, columns=["inputs"])
                if "inputs" in frame.columns:
                    prompts.update(str(p) for p in frame["inputs"])
    return prompts


# ----- planning and building ---------------------------------------------------------------------
# Over 60 lines only by its keyword signature and Args docstring (the public API's reference, read
# whole); the body is a short sequence of named steps.
def plan_space(
    repo_id: str,
    *,
    full: str,
    subset: str,
    random_adapter: str | None = None,
    base_model: str | None = None,
    examples: Sequence[str] = (),
    num_examples: int = 8,
    seed: int = 0,
    subset_dataset: str | None = None,
    full_data: str | None = None,
    title: str | None = None,
    short_description: str | None = None,
    license: str | None = None,
    hardware: str | None = None,
    token: str | None = None,
) -> SpaceSpec:
    """Validate every input against the Hub and collect what the Space needs.

    Raises :class:`UsageError` with one line naming the fix for a missing or non-adapter repo,
    mismatched base models, unreadable or training-row examples, or a too-long description.

    Args:
        repo_id: the Space repo, ``namespace/name``.
        full: the full-task-data adapter's Hub id.
        subset: the 0.5%-subset adapter's Hub id.
        random_adapter: optional random-0.5% adapter's Hub id.
        base_model: the base model's Hub id (default: read from the adapters).
        examples: held-out eval data (files, folders or Hub dataset ids) to bundle examples from.
        num_examples: how many examples to bundle.
        seed: example sampling seed.
        subset_dataset: the subset dataset id (default: the subset adapter card's ``datasets``).
        full_data: the full data's id or description (default: the full adapter card's ``datasets``).
        title: Space title.
        short_description: at most 60 characters.
        license: Space license (default: the full adapter's, else apache-2.0).
        hardware: the README's ``suggested_hardware`` (e.g. ``zero-a10g`` for ZeroGPU).
        token: Hub token.

    Returns:
        The :class:`SpaceSpec` to build the files from.

    Example:
        >>> spec = plan_space("me/ltd-demo", full="me/full-lora", subset="me/subset-lora",
        ...                   examples=["../shared/data/ltd-nli/eval/rte.jsonl.gz"])  # doctest: +SKIP
    """
    short_description = short_description or DEFAULT_SHORT_DESCRIPTION
    _check_space_options(short_description, num_examples, hardware)
    roles = {"full": full, "subset": subset, **({"random": random_adapter} if random_adapter else {})}
    if len(set(roles.values())) != len(roles):
        raise UsageError("the same adapter repo is given for two roles; {full}, {subset} and {random} must differ", params=ROLE_PARAMS)
    facts = {role: inspect_adapter(ref, role, token) for role, ref in roles.items()}
    base = _resolve_base(facts, base_model, token)
    described = {role: describe_training(role, f.summary) for role, f in facts.items()}
    subset_dataset = subset_dataset or next(iter(facts["subset"].datasets), None)
    full_data = full_data or next(iter(facts["full"].datasets), None)
    trained_on = {d for f in facts.values() for d in f.datasets} | {d for d in (subset_dataset, full_data) if d}
    picked, dropped = _held_out_examples(examples, trained_on, num_examples, seed, token)
    return SpaceSpec(
        repo_id=repo_id,
        base_model=base,
        adapters=roles,
        subset_dataset=subset_dataset,
        full_data=full_data,
        examples=picked,
        examples_sources=list(examples),
        title=title or DEFAULT_TITLE,
        short_description=short_description,
        license=license or facts["full"].license or "apache-2.0",
        dropped_training_rows=dropped,
        private_repos=sorted(f.repo_id for f in facts.values() if f.private),
        role_titles={r: t for r, (t, _) in described.items() if t},
        role_details={r: d for r, (_, d) in described.items() if d},
        formatting={r: dict(f.summary["formatting"]) for r, f in facts.items() if f.summary and f.summary.get("formatting")},
        hardware=hardware,
    )


def _check_space_options(short_description: str, num_examples: int, hardware: str | None) -> None:
    if len(short_description) > MAX_SHORT_DESCRIPTION:
        raise UsageError(
            f"{{short_description}} is {len(short_description)} characters; Spaces allow at most {MAX_SHORT_DESCRIPTION}",
            params="short_description",
        )
    if num_examples < 0:
        raise UsageError("{num_examples} must be 0 or more", params="num_examples")
    if hardware is not None:
        from huggingface_hub import SpaceHardware

        flavors = [h.value for h in SpaceHardware]
        if hardware not in flavors:
            raise UsageError(
                f"{{hardware}} {hardware!r} is not a Spaces hardware flavor; use one of {', '.join(flavors)}", params="hardware"
            )


def _held_out_examples(
    examples: Sequence[str], trained_on: set[str], num_examples: int, seed: int, token: str | None
) -> tuple[list[dict[str, Any]], int]:
    """The examples to bundle from ``examples`` (never a training row), and how many training rows were dropped."""
    for source in examples:
        if source in trained_on:
            raise UsageError(f"{{examples}} {source} is training data of an adapter; name held-out eval data instead", params="examples")
    rows = {source: read_examples(source, token) for source in examples}
    if not (rows and num_examples):
        return [], 0
    picked, dropped = pick_examples(rows, num_examples, seed=seed, exclude_prompts=training_prompts(sorted(trained_on), token))
    if not picked:
        raise UsageError("no usable held-out example left (all are training rows or malformed); name other {examples}", params="examples")
    return picked, dropped


def _space_file(name: str) -> bytes:
    return (resources.files(SPACE_PACKAGE) / name).read_bytes()


def pinned_requirements() -> str:
    """``space/requirements.txt`` with each package pinned to the version installed here."""
    from packaging.requirements import Requirement

    lines = []
    for line in _space_file("requirements.txt").decode("utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        requirement = Requirement(text)
        try:
            version = metadata.version(requirement.name).split("+", 1)[0]
        except metadata.PackageNotFoundError:
            lines.append(text)
            continue
        lines.append(f"{requirement.name}=={version}")
    return "\n".join(lines) + "\n"


def space_config(spec: SpaceSpec) -> dict[str, Any]:
    """The ``space_config.json`` the app reads at start."""
    return {
        "title": spec.title,
        "base_model": spec.base_model,
        "adapters": spec.adapters,
        "subset_dataset": spec.subset_dataset,
        "full_data": spec.full_data,
        "role_titles": spec.role_titles,
        "role_details": spec.role_details,
        "formatting": spec.formatting,
        "examples": spec.examples,
    }


def card_metadata(spec: SpaceSpec) -> dict[str, Any]:
    """The README front matter: what Spaces needs to build it and what links it on the Hub."""
    from huggingface_hub import SpaceCardData

    models = [spec.base_model, *spec.adapters.values()]
    datasets = [d for d in (spec.subset_dataset, spec.full_data) if d and REPO_ID_RE.match(d)]
    data = SpaceCardData(
        title=spec.title,
        emoji="⚖️",
        colorFrom="indigo",
        colorTo="green",
        sdk="gradio",
        sdk_version=metadata.version("gradio"),
        app_file=APP_FILE,
        pinned=False,
        short_description=spec.short_description,
        license=spec.license,
        models=models,
        datasets=datasets or None,
        tags=SPACE_TAGS,
        # Spaces download these at build time, so the first visitor does not wait for them.
        preload_from_hub=list(models),
        **({"suggested_hardware": spec.hardware} if spec.hardware else {}),
    )
    return data.to_dict()


def _public_name(source: str) -> str:
    return source if REPO_ID_RE.match(source) and not Path(source).exists() else Path(source).name


def build_space_files(spec: SpaceSpec) -> dict[str, bytes]:
    """Render the Space repo's files: app.py, ltd_scoring.py, requirements.txt, space_config.json, README.md.

    Example:
        >>> sorted(build_space_files(spec))  # doctest: +SKIP
        ['README.md', 'app.py', 'ltd_scoring.py', 'requirements.txt', 'space_config.json']
    """
    import jinja2
    import yaml

    full_data_link = None
    if spec.full_data:
        full_data_link = f"[`{spec.full_data}`](/datasets/{spec.full_data})" if REPO_ID_RE.match(spec.full_data) else f"`{spec.full_data}`"
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    template = env.from_string(_space_file("README.md.j2").decode("utf-8"))
    readme = template.render(
        card_data=yaml.safe_dump(card_metadata(spec), sort_keys=False, allow_unicode=True, width=1000).strip(),
        title=spec.title,
        base_model=spec.base_model,
        adapters=spec.adapters,
        role_titles={**ROLE_TITLES, **spec.role_titles},
        role_details=spec.role_details,
        subset_dataset=spec.subset_dataset,
        full_data=spec.full_data,
        full_data_link=full_data_link,
        examples_count=len(spec.examples),
        # Local paths are shown by file name only: the README must not reveal this machine's folders.
        examples_sources=", ".join(f"`{_public_name(s)}`" for s in spec.examples_sources),
    )
    return {
        APP_FILE: _space_file(APP_FILE),
        SCORING_FILE: _space_file(SCORING_FILE),
        "requirements.txt": pinned_requirements().encode("utf-8"),
        CONFIG_FILE: (json.dumps(space_config(spec), indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
        "README.md": readme.encode("utf-8"),
    }


def write_space(files: Mapping[str, bytes], folder: str | Path) -> Path:
    """Write the Space files into ``folder`` atomically (a temp folder renamed at the end)."""
    from ltd_hub.files import staged_dir

    target = Path(folder)
    with staged_dir(target) as staging:
        for name, data in files.items():
            (staging / name).write_bytes(data)
    return target


def space_private_sources(spec: SpaceSpec, token: str | None = None) -> list[str]:
    """The private repos a Space derives from: its adapters, the Hub datasets its examples come from
    (rows bundled verbatim) and the subset / full-data datasets it names."""
    named = [s for s in (*spec.examples_sources, spec.subset_dataset, spec.full_data) if s]
    datasets = [(s, "dataset") for s in named if REPO_ID_RE.match(s) and not Path(s).exists()]
    return list(dict.fromkeys([*spec.private_repos, *hub.private_inputs(datasets, token=token)]))


def push_space(
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    local_dir: str | Path | None = None,
    **space_options: Any,
) -> tuple[SpaceSpec, hub.PushResult]:
    """Create or update a Gradio Space comparing the full-data and 0.5%-data adapters.

    Checks the target and every input first (nothing is pushed on bad input), then pushes
    app.py, requirements.txt, space_config.json and README.md in one commit.

    Args:
        repo_id: the Space repo, ``namespace/name``.
        private: None (default) inherits: private when an adapter, the example data or a dataset the
            Space names is a private repo, else the Hub's default (public); True makes it private; False
            publishes it anyway (one line says so). See :func:`ltd_hub.hub.gateway.derived_visibility`.
        token: Hub token.
        local_dir: also write the Space files into this folder.
        **space_options: what the Space shows, as for :func:`plan_space` (``full`` and ``subset``
            are required; ``random_adapter``, ``base_model``, ``examples``, ``num_examples``, ``seed``,
            ``subset_dataset``, ``full_data``, ``title``, ``short_description``, ``license``).

    Returns:
        The validated :class:`SpaceSpec` and the :class:`ltd_hub.hub.gateway.PushResult`.

    Example:
        >>> spec, result = push_space("me/ltd-demo", full="me/full-lora", subset="me/subset-lora")  # doctest: +SKIP
        >>> result.url  # doctest: +SKIP
        'https://huggingface.co/spaces/me/ltd-demo'
    """
    target = hub.preflight_push(repo_id, repo_type="space", token=token)
    spec = plan_space(target.repo_id, token=token, **space_options)
    private = hub.derived_visibility(target, private, space_private_sources(spec, token=token))
    files = build_space_files(spec)
    if local_dir:
        write_space(files, local_dir)
    result = hub.push_files(
        target.repo_id,
        files,
        repo_type="space",
        commit_message="Update the ltd-hub comparison Space" if target.exists else "Add the ltd-hub comparison Space",
        commit_description=f"Compares {', '.join(f'{r}={a}' for r, a in spec.adapters.items())} on {spec.base_model}.",
        token=token,
        private=private,
        space_sdk="gradio",
    )
    return spec, result
