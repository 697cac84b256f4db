"""What an evaluation returns and records: typed results, their JSON form, and the one result table.

:class:`EvalResult` is one eval set's result (what ``eval_results.json`` holds one entry of and what
the card's ``model-index`` is built from); :class:`EvalReport` is one evaluation run (what
``ltd-hub evaluate --format json`` prints). ``to_dict``/``from_dict`` write and read exactly the
JSON these files have always had, so recorded results of earlier versions read back unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TemplateResult:
    """Accuracy on the rows of one prompt template (and exact match when it was measured)."""

    n: int
    accuracy: float
    exact_match: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``n``, ``accuracy`` and ``exact_match`` when measured."""
        data: dict[str, Any] = {"n": self.n, "accuracy": self.accuracy}
        if self.exact_match is not None:
            data["exact_match"] = self.exact_match
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TemplateResult:
        """Read the JSON form back."""
        return cls(n=data.get("n"), accuracy=data.get("accuracy"), exact_match=data.get("exact_match"))


@dataclass
class Prediction:
    """One scored eval row: what a paired comparison of two models needs.

    ``index`` is the row's position in the eval set (file order after ``templates`` and
    ``max_examples``), ``row`` its line in the source file, ``id`` the example's id across
    templates, ``prediction`` and ``gold`` indices into the answer choices, ``scores`` the
    choices' log-likelihoods (rounded to 4 places).
    """

    index: int
    row: int
    id: str
    template: str
    prediction: int
    gold: int
    correct: bool
    scores: list[float]


# The keys of an eval_results.json entry, in the order they are written.
_MEASURED = (
    "name",
    "dataset_type",
    "dataset_revision",
    "source",
    "n_examples",
    "n_templates",
    "accuracy_mean",
    "accuracy_median",
    "ci_low",
    "ci_high",
    "exact_match",
)
_OPTIONAL = ("label_set", "skipped_templates", "settings", "adapter_revision", "adapter_sha256")


@dataclass
class EvalResult:
    """One eval set's result: accuracy (mean and median over templates), its interval, counts.

    ``predictions`` (one :class:`Prediction` per row) stay out of :meth:`to_dict`: the card and
    ``eval_results.json`` record the figures, :attr:`EvalReport.predictions` the rows.
    ``settings``, ``adapter_revision`` and ``adapter_sha256`` say what was measured; they are set
    when the result is recorded. ``extra`` keeps keys written by someone else, so a re-write
    loses nothing.
    """

    name: str
    dataset_type: str | None
    dataset_revision: str | None
    source: str | None
    n_examples: int
    n_templates: int
    accuracy_mean: float
    accuracy_median: float
    ci_low: float
    ci_high: float
    exact_match: float | None = None
    templates: dict[str, TemplateResult] = field(default_factory=dict)
    #: SuperNI tasks: the answer choices of every row (the distinct outputs of the task's instances).
    label_set: list[str] | None = None
    #: Templates left out because they have no answer_choices.
    skipped_templates: list[str] = field(default_factory=list)
    settings: dict[str, Any] | None = None
    adapter_revision: str | None = None
    adapter_sha256: str | None = None
    predictions: list[Prediction] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``eval_results.json`` entry (without the per-example predictions)."""
        data: dict[str, Any] = {key: getattr(self, key) for key in _MEASURED}
        data["templates"] = {name: t.to_dict() for name, t in self.templates.items()}
        if self.label_set is not None:
            data["label_set"] = self.label_set
        if self.skipped_templates:
            data["skipped_templates"] = self.skipped_templates
        if self.settings is not None or self.adapter_revision is not None:
            data["settings"] = self.settings
            data["adapter_revision"] = self.adapter_revision
        if self.adapter_sha256 is not None:
            data["adapter_sha256"] = self.adapter_sha256
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        """Read an ``eval_results.json`` entry; a KeyError names a missing figure."""
        known = {*_MEASURED, "templates", *_OPTIONAL}
        return cls(
            **{key: data[key] for key in ("name", "n_examples", "n_templates", "accuracy_mean", "accuracy_median", "ci_low", "ci_high")},
            **{key: data.get(key) for key in ("dataset_type", "dataset_revision", "source", "exact_match")},
            templates={name: TemplateResult.from_dict(t) for name, t in (data.get("templates") or {}).items()},
            label_set=data.get("label_set"),
            skipped_templates=list(data.get("skipped_templates") or []),
            settings=data.get("settings"),
            adapter_revision=data.get("adapter_revision"),
            adapter_sha256=data.get("adapter_sha256"),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def same_measurement(self, other: EvalResult) -> bool:
        """Whether two results record the same measurement (the repo head they were read at aside)."""

        def key(result: EvalResult) -> str:
            # Compared as the JSON text eval_results.json records.
            return json.dumps({k: v for k, v in result.to_dict().items() if k != "adapter_revision"}, sort_keys=True, default=str)

        return key(self) == key(other)


@dataclass
class EvalReport:
    """Results of one evaluation run (what ``--format json`` prints and ``--push`` records)."""

    model: str
    base_model: str
    adapter: str | None
    adapter_revision: str | None
    results: list[EvalResult]
    average: float
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    push: Any = None

    @property
    def predictions(self) -> dict[str, list[dict[str, Any]]]:
        """Per eval set name, one record per example (see :class:`Prediction`)."""
        return {r.name: [asdict(p) for p in r.predictions] for r in self.results}

    def to_dict(self) -> dict[str, Any]:
        """What ``ltd-hub evaluate --format json`` prints: the run, its results, the push, the per-example predictions."""
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["results"] = [r.to_dict() for r in self.results]
        data["push"] = (
            None
            if self.push is None
            else {
                "url": self.push.url,
                "commit_url": self.push.commit_url,
                "revision": self.push.revision,
                "unchanged": not self.push.created_commit,  # these results were already recorded: no commit
            }
        )
        data["predictions"] = self.predictions
        return data

    def to_markdown(self, *, per_template: bool = False) -> str:
        """A Markdown table of the results (per eval set; per template when asked)."""
        table = results_table(self.results)
        lines = [table, f"\nAverage over eval sets: {self.average:.4f} ({self.model})"]
        if per_template:
            lines += ["", template_table(self.results)]
        return "\n".join(lines)


# --------------------------------------------------------------------------- the result table


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table: one header line, the separator, one line per row (an empty cell stays empty).

    Example:
        >>> print(markdown_table(["Eval set", "Accuracy"], [["rte", "0.5523"]]))
        | Eval set | Accuracy |
        |---|---|
        | rte | 0.5523 |
    """

    def line(cells: Sequence[Any]) -> str:
        return "|" + "".join(f" {cell} |" if cell != "" else " |" for cell in cells)

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(row) for row in rows)])


def results_table(results: Sequence[EvalResult], *, exact_match: bool | None = None) -> str:
    """The Markdown table of eval results, one row per eval set: what every report and card prints.

    Args:
        results: the eval sets' results.
        exact_match: add the exact-match column (default: when any result has exact match).
    """
    em = any(r.exact_match is not None for r in results) if exact_match is None else exact_match
    header = ["Eval set", "Examples", "Templates", "Accuracy (mean)", "Median", "95% CI"] + (["Exact match"] if em else [])
    rows = []
    for r in results:
        row = [
            r.name,
            r.n_examples,
            r.n_templates,
            f"{r.accuracy_mean:.4f}",
            f"{r.accuracy_median:.4f}",
            f"{r.ci_low:.4f} – {r.ci_high:.4f}",
        ]
        if em:
            row.append(f"{r.exact_match:.4f}" if r.exact_match is not None else "")
        rows.append(row)
    return markdown_table(header, rows)


def template_table(results: Sequence[EvalResult]) -> str:
    """The Markdown table of accuracy per eval set and template."""
    rows = [[r.name, name, t.n, f"{t.accuracy:.4f}"] for r in results for name, t in r.templates.items()]
    return markdown_table(["Eval set", "Template", "Examples", "Accuracy"], rows)
