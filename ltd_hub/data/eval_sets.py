"""Eval rows, read once: what ``evaluate`` scores and what the comparison Space bundles as examples.

An eval row is ``inputs`` (the prompt), ``targets`` and ``answer_choices`` (P3 style), or one
instance of a SuperNI task file (prompt = definition + input, choices = the task's label set).
:func:`load_eval_sets` reads classification data into :class:`EvalSet` objects;
:func:`read_prompt_files` reads data without answer choices (generation) as plain rows. Both read
local files, folders and Hub dataset repos.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from ltd_hub.constants import DATA_SUFFIXES
from ltd_hub.errors import UsageError

REQUIRED_COLUMNS = ("inputs", "targets", "answer_choices")
# A SuperNI task is scored by rank classification over its label set (the distinct outputs of its
# instances); a task with more distinct outputs than this is generation, not classification.
MAX_SUPERNI_LABELS = 20
_SUFFIX_TEXT = "/".join(dict.fromkeys(s.removesuffix(".gz") for s in DATA_SUFFIXES))


class EvalRow(TypedDict):
    """One eval row: the shape :func:`ltd_hub.space.ltd_scoring.score_choices` scores.

    A dict rather than a dataclass because the scorer ships inside the Space, which imports nothing
    from ltd_hub and scores rows it builds itself.
    """

    inputs: str  # the prompt
    target: str
    choices: list[str]
    gold: int  # the index of the target among the choices
    template: str
    row: int  # its line in the source
    id: str  # the example's id across templates


@dataclass
class EvalSet:
    """The rows of one eval set (one file or repo, or one ``dataset`` value inside it)."""

    name: str
    dataset_type: str
    source: str
    revision: str | None
    rows: list[EvalRow]
    #: SuperNI tasks: the answer choices of every row (the distinct outputs of the task's instances).
    label_set: list[str] | None = None
    #: Templates left out because they have no answer_choices (e.g. a regression template).
    skipped_templates: list[str] = field(default_factory=list)

    @property
    def templates(self) -> list[str]:
        return list(OrderedDict.fromkeys(r["template"] for r in self.rows))


def load_eval_sets(
    specs: list[str],
    *,
    templates: int | None = None,
    max_examples: int | None = None,
    split: str = "validation",
    token: str | None = None,
    log: Callable[[str], Any] | None = None,
) -> list[EvalSet]:
    """Read eval data (local files/folders or Hub dataset repos) into eval sets.

    A file is one eval set named after it (``rte.jsonl.gz`` -> ``rte``); a file holding several
    values of the ``dataset`` column is split by them. SuperNI task files (``Definition``,
    ``Instances``) are read as training reads them (prompt = definition + input) and scored over
    the task's label set: the distinct outputs of its instances (:attr:`EvalSet.label_set`). A
    P3-style template without ``answer_choices`` (e.g. a regression template) is skipped with one
    line; the other templates are scored. ``templates`` keeps the first N templates of
    each set, ``max_examples`` the first N rows of each template (file order, so every template
    sees the same examples when the file is ordered by template).

    Args:
        specs: paths or repo ids.
        templates: keep the first N templates per set (default all).
        max_examples: keep the first N rows per template (default all).
        split: preferred split name inside folders/repos with several.
        token: Hub token for private repos.
        log: called with one line per skipped template (default: printed to stderr).

    Returns:
        A list of :class:`EvalSet`.

    Example:
        >>> sets = load_eval_sets(["../shared/data/ltd-nli/eval/rte.jsonl.gz"], templates=1, max_examples=50)  # doctest: +SKIP
    """
    if not specs:
        raise UsageError("{eval_data} needs at least one file, folder or dataset repo", params="eval_data")
    if templates is not None and templates < 1:
        raise UsageError(f"{{templates}} must be at least 1, got {templates}", params="templates")
    if max_examples is not None and max_examples < 1:
        raise UsageError(f"{{max_examples}} must be at least 1, got {max_examples}", params="max_examples")
    say = log or (lambda message: print(message, file=sys.stderr))
    sets: list[EvalSet] = []
    for spec in specs:
        superni = _superni_files(spec)
        if superni:
            sets.extend(_superni_eval_sets(spec, superni, templates, max_examples))
        else:
            sets.extend(_p3_eval_sets(spec, split=split, token=token, say=say, templates=templates, max_examples=max_examples))
    names = [s.name for s in sets]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise UsageError(f"two eval sets are both named {duplicate!r}; give the files distinct names")
    return sets


def set_name(spec: str) -> str:
    """An eval set's name: its file name without the data suffix (``rte.jsonl.gz`` -> ``rte``), or a repo's name."""
    name = Path(spec).name if Path(spec).expanduser().exists() else spec.split("/")[-1]
    for suffix in DATA_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _public(spec: str) -> str:
    from ltd_hub.data.sources import public_path

    return public_path(spec) if Path(spec).expanduser().exists() else spec


def _subsample(items: list[EvalRow], templates: int | None, max_examples: int | None) -> list[EvalRow]:
    """The first ``templates`` templates, and of each the first ``max_examples`` rows (file order)."""
    keep = list(OrderedDict.fromkeys(i["template"] for i in items))[: templates or None]
    counts: dict[str, int] = {}
    out = []
    for item in items:
        if item["template"] in keep and counts.get(item["template"], 0) < (max_examples or float("inf")):
            counts[item["template"]] = counts.get(item["template"], 0) + 1
            out.append(item)
    return out


# --------------------------------------------------------------------------- P3-style rows


def _p3_eval_sets(
    spec: str, *, split: str, token: str | None, say: Callable[[str], Any], templates: int | None, max_examples: int | None
) -> list[EvalSet]:
    """The eval sets of one file/folder/repo of rows with inputs, targets, answer_choices."""
    from ltd_hub.data.sources import load_instruction_data

    try:
        rows, source = load_instruction_data(spec, split=split, token=token)
    except UsageError as exc:
        raise UsageError(f"eval data: {exc.template}", params=exc.params) from None
    _check_columns(spec, rows)
    template_of = _template_reader(rows.column_names)
    skipped = _templates_without_choices(spec, rows, template_of)
    for template in skipped:
        say(f"eval data {_public(spec)}: skipping template {template!r}, which has no answer_choices (not a classification template)")
    has_dataset = "dataset" in rows.column_names
    groups: OrderedDict[str, list[EvalRow]] = OrderedDict()
    for index, row in enumerate(rows):
        template = template_of(row)
        if template not in skipped:
            group = str(row["dataset"]) if has_dataset and row["dataset"] else set_name(spec)
            groups.setdefault(group, []).append(_eval_row(spec, index, row, template))
    return [
        EvalSet(
            name=set_name(spec) if len(groups) == 1 else f"{set_name(spec)}:{dataset_type}",
            dataset_type=source.repo_id or dataset_type,
            source=spec,
            revision=source.revision,
            rows=_subsample(items, templates, max_examples),
            skipped_templates=skipped,
        )
        for dataset_type, items in groups.items()
    ]


def _check_columns(spec: str, rows: Any) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.column_names]
    if "answer_choices" in missing:
        raise UsageError(
            f"eval data {spec} has no answer_choices column, which rank classification needs "
            "(P3-style rows: inputs, targets, answer_choices)"
        )
    if missing:
        raise UsageError(f"eval data {spec} has no {missing[0]!r} column (columns: {', '.join(rows.column_names)})")
    if len(rows) == 0:
        raise UsageError(f"eval data {spec} has no rows")


def _template_reader(columns: Sequence[str]) -> Callable[[dict[str, Any]], str]:
    if "template_name" not in columns:
        return lambda row: "default"
    return lambda row: str(row["template_name"]) if row["template_name"] else "default"


def _templates_without_choices(spec: str, rows: Any, template_of: Callable[[dict[str, Any]], str]) -> list[str]:
    """Templates none of whose rows has answer choices: not classification templates, so skipped."""
    with_choices: dict[str, bool] = {}
    for row in rows:
        choices = row["answer_choices"]
        has = isinstance(choices, (list, tuple)) and len(choices) > 0
        with_choices[template_of(row)] = with_choices.get(template_of(row), False) or has
    skipped = [t for t, has in with_choices.items() if not has]
    if skipped and len(skipped) == len(with_choices):
        raise UsageError(f"eval data {spec} has no answer_choices in any row, which rank classification needs")
    return skipped


def _eval_row(spec: str, index: int, row: dict[str, Any], template: str) -> EvalRow:
    """One validated P3 row as an eval row; a row rank classification cannot score is refused."""
    where = f"eval data {spec} row {index}"
    choices = row["answer_choices"]
    if not isinstance(choices, (list, tuple)) or len(choices) < 2:
        raise UsageError(f"{where}: answer_choices must be a list of at least 2 answers")
    # An empty answer is scored by the end-of-turn tokens alone, which nearly always win: the
    # accuracy would be that of a constant guess, so such data is refused, not measured.
    if any(c is None or not str(c).strip() for c in choices):
        raise UsageError(
            f"{where}: answer_choices {list(choices)!r} holds an empty answer, which rank "
            "classification would always pick; fix or drop that row (or template)"
        )
    if row["inputs"] is None or not str(row["inputs"]).strip():
        # A null prompt would be scored as the text "None".
        raise UsageError(f"{where}: inputs is empty or null; fix or drop that row")
    target = row["targets"][0] if isinstance(row["targets"], (list, tuple)) else row["targets"]
    if target is None:
        raise UsageError(f"{where}: targets is null; fix or drop that row")
    choices = [str(c) for c in choices]
    stripped = [c.strip() for c in choices]
    if str(target).strip() not in stripped:
        raise UsageError(f"{where}: target {target!r} is not one of answer_choices {choices}")
    return {
        "inputs": str(row["inputs"]),
        "target": str(target),
        "choices": choices,
        "gold": stripped.index(str(target).strip()),
        "template": template,
        "row": index,
        # The example's id across templates (P3 rows carry it in ``source``; else an ``id`` column).
        "id": next((str(row[c]) for c in ("id", "source") if row.get(c) is not None), str(index)),
    }


# --------------------------------------------------------------------------- SuperNI task files


def _superni_files(spec: str) -> list[Path]:
    """The SuperNI task files ``spec`` names (a task file or a folder of them), else []."""
    from ltd_hub.data.sources import _is_superni_file

    path = Path(spec).expanduser()
    if path.is_file():
        return [path] if _is_superni_file(path) else []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(".json"))
        superni = [p for p in files if _is_superni_file(p)]
        return superni if superni and len(superni) == len(files) else []
    return []


def _superni_eval_sets(spec: str, files: list[Path], templates: int | None, max_examples: int | None) -> list[EvalSet]:
    """One eval set per SuperNI task: prompt as training builds it, choices = the task's label set."""
    from ltd_hub.data.sources import _combined_fingerprint, _file_records, _load_superni

    by_task: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
    for index, row in enumerate(_load_superni(files)):
        by_task.setdefault(row["task_name"], []).append({**row, "row": index})
    fingerprint = _combined_fingerprint(_file_records(files))
    sets = []
    for task, instances in by_task.items():
        labels = _task_labels(spec, task, instances)
        sets.append(
            EvalSet(
                name=task if len(by_task) > 1 else set_name(spec),
                dataset_type=task,
                source=spec,
                revision=fingerprint,
                rows=_subsample(_superni_rows(instances, labels), templates, max_examples),
                label_set=labels,
            )
        )
    return sets


def _task_labels(spec: str, task: str, instances: list[dict[str, Any]]) -> list[str]:
    """A task's label set (its distinct outputs); a task with too few or too many is refused."""
    labels = sorted({str(r["output"]).strip() for r in instances if str(r["output"]).strip()})
    if len(labels) < 2:
        raise UsageError(
            f"eval data {_public(spec)}: task {task} has {len(labels)} distinct output(s); rank classification needs at least 2 labels"
        )
    if len(labels) > MAX_SUPERNI_LABELS:
        raise UsageError(
            f"eval data {_public(spec)}: task {task} has {len(labels)} distinct outputs, not a label set "
            f"(at most {MAX_SUPERNI_LABELS}); rank classification scores classification tasks only"
        )
    return labels


def _superni_rows(instances: list[dict[str, Any]], labels: list[str]) -> list[EvalRow]:
    items = []
    for r in instances:
        gold = str(r["output"]).strip()
        if not gold:
            continue
        # The prompt exactly as training joins SuperNI columns: definition, blank line, input.
        prompt = "\n\n".join(t for t in (str(r["instruction"] or ""), str(r["input"] or "")) if t)
        items.append(
            {"inputs": prompt, "target": gold, "choices": labels, "gold": labels.index(gold), "template": "definition", "row": r["row"], "id": str(r["id"])}
        )  # fmt: skip
    return items


# --------------------------------------------------------------------------- plain rows (no answer choices)


def data_files(source: str, token: str | None = None, *, param: str = "examples") -> list[Path]:
    """The data files ``source`` names: a file, the data files under a folder, or those of a Hub dataset repo.

    Args:
        source: a local file or folder, or a Hub dataset id.
        token: Hub token for a dataset id.
        param: the parameter ``source`` came from, which errors name.
    """
    from ltd_hub.constants import REPO_ID_RE

    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = _files_under(path)
        if not files:
            raise UsageError(f"{{{param}}} {source}: no {_SUFFIX_TEXT} files in that folder", params=param)
        return files
    if REPO_ID_RE.match(source) and not source.startswith((".", "/")):
        files = _files_under(hub_data_folder(source, token))
        if not files:
            raise UsageError(f"{{{param}}} {source}: the dataset repo has no {_SUFFIX_TEXT} files", params=param)
        return files
    raise UsageError(f"{{{param}}} {source}: no such file or folder (or Hub dataset id); name held-out eval data", params=param)


def hub_data_folder(dataset_id: str, token: str | None = None) -> Path:
    """A local snapshot of a Hub dataset repo's data files."""
    from ltd_hub.hub import gateway as hub

    return hub.snapshot(dataset_id, repo_type="dataset", token=token, allow_patterns=[f"*{suffix}" for suffix in DATA_SUFFIXES])


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(DATA_SUFFIXES))


def read_frame(path: Path, columns: Sequence[str] | None = None):
    """One data file as a pandas DataFrame (only ``columns`` that it has, when given); unreadable is a UsageError."""
    import pandas as pd

    try:
        if path.name.endswith(".parquet"):
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
            return pd.read_parquet(path, columns=[c for c in columns if c in names] if columns else None)
        if path.name.endswith((".csv", ".csv.gz")):
            frame = pd.read_csv(path, compression="infer")
        else:
            frame = pd.read_json(path, lines=".jsonl" in path.name, compression="infer")
    except ValueError as exc:
        raise UsageError(f"{path}: cannot read it as {_SUFFIX_TEXT} ({' '.join(str(exc).split())[:120]})") from exc
    return frame[[c for c in columns if c in frame.columns]] if columns else frame


def read_prompt_files(source: str, token: str | None = None, *, param: str = "examples") -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """The rows of eval data that need not have answer choices (generation data), file by file, as read.

    Yields:
        ``(file, rows)``: each row a dict with at least ``inputs`` and ``targets``.
    """
    for path in data_files(source, token, param=param):
        frame = read_frame(path)
        missing = [c for c in ("inputs", "targets") if c not in frame.columns]
        if missing:
            raise UsageError(
                f"{{{param}}} {path}: missing column(s) {', '.join(missing)}; use eval data with inputs, targets "
                "(and answer_choices), as in ltd-nli/eval",
                params=param,
            )
        yield path, frame.to_dict("records")
