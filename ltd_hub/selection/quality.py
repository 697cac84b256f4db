"""The quality report of a subset: is it more representative of the pool than random rows of the same size?

Every figure is computed for the subset and for a uniform random subset of the same size and
seed, so a user sees before training whether the selection beats random. The figures (see
``shared/specs/selection-notes.md``): rows, distinct examples and the most rows sharing one,
the total-variation distance of the label / source / template mix from the pool's, mean and p90
input length against the pool's, coverage (the mean distance from a fixed, seeded sample of pool
rows to the nearest selected row, in the selection's embedding space) and typicality (the share
of selected rows in the farthest decile of their cluster; 10% is neutral). They are proxies: the
trained comparison decides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Pool rows whose nearest selected row is measured for coverage: enough for a stable mean
# (its standard error is ~1% of the mean at 20,000), cheap beside the selection.
COVERAGE_SAMPLE = 20_000
_BLOCK = 4096


@dataclass
class SubsetFigures:
    """The figures of one subset (a selection, or the random subset it is compared with)."""

    rows: int
    distinct_examples: int
    max_rows_per_example: int
    tv_labels: float | None
    tv_sources: float | None
    tv_templates: float | None
    mean_input_words: float
    p90_input_words: float
    coverage: float
    typicality: float | None


@dataclass
class QualityReport:
    """A subset's figures beside a random subset's, and the pool's reference values.

    Attributes:
        subset, random: the figures.
        pool_mean_input_words, pool_p90_input_words: the filtered pool's input length.
        examples_by: what counts as one example: the ``group_by`` column; without one, a column that
            looks like the example key (see :func:`~ltd_hub.selection.groups.suggest_group_column`);
            else ``"text"`` (exact duplicate texts).
        columns: the columns behind the label / source / template mixes (None where absent).
        coverage_sample, seed: the size of the pool sample for coverage, and the seed of that sample and of the random subset.
    """

    subset: SubsetFigures
    random: SubsetFigures
    pool_mean_input_words: float
    pool_p90_input_words: float
    examples_by: str
    columns: dict[str, str | None] = field(default_factory=dict)
    coverage_sample: int = COVERAGE_SAMPLE
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return _rounded(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityReport:
        return cls(
            **{k: v for k, v in data.items() if k not in ("subset", "random")},
            subset=SubsetFigures(**data["subset"]),
            random=SubsetFigures(**data["random"]),
        )

    def rows(self) -> list[tuple[str, str, str, str]]:
        """``(figure, subset, random, better)`` rows for the CLI summary and the card; ``better`` is
        ``"yes"`` / ``"no"`` / ``"tie"`` for the figures where closer-to-pool or larger has a direction."""
        s, r = self.subset, self.random
        out: list[tuple[str, str, str, str]] = [("rows", f"{s.rows:,}", f"{r.rows:,}", "")]
        out.append(
            (
                f"distinct examples (by {self.examples_by})",
                f"{s.distinct_examples:,}",
                f"{r.distinct_examples:,}",
                _better(s.distinct_examples, r.distinct_examples, higher=True),
            )
        )
        out.append(("most rows sharing one example", str(s.max_rows_per_example), str(r.max_rows_per_example), ""))
        for key, label in (("labels", "label"), ("sources", "source"), ("templates", "template")):
            sv, rv = getattr(s, f"tv_{key}"), getattr(r, f"tv_{key}")
            if sv is not None:
                name = f"{label} mix, TV distance from pool (`{self.columns.get(key)}`)"
                out.append((name, f"{sv:.3f}", f"{rv:.3f}", _better(sv, rv, higher=False)))
        pool = f" (pool {self.pool_mean_input_words:.1f})"
        out.append(
            (
                "mean input words" + pool,
                f"{s.mean_input_words:.1f}",
                f"{r.mean_input_words:.1f}",
                _better(
                    abs(s.mean_input_words - self.pool_mean_input_words),
                    abs(r.mean_input_words - self.pool_mean_input_words),
                    higher=False,
                ),
            )
        )
        out.append((f"p90 input words (pool {self.pool_p90_input_words:.0f})", f"{s.p90_input_words:.0f}", f"{r.p90_input_words:.0f}", ""))
        out.append(
            (
                f"coverage: mean distance of {self.coverage_sample:,} pool rows to the nearest selected row",
                f"{s.coverage:.4f}",
                f"{r.coverage:.4f}",
                _better(s.coverage, r.coverage, higher=False),
            )
        )
        if s.typicality is not None:
            out.append(
                (
                    "rows in the farthest 10% of their cluster (10% neutral)",
                    f"{100 * s.typicality:.1f}%",
                    f"{100 * r.typicality:.1f}%",
                    "",
                )
            )
        return out

    def to_markdown(self) -> str:
        """The figures as the Markdown table of the dataset card."""
        lines = ["| figure | this subset | random, same size | closer to the pool than random? |", "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in self.rows()]
        return "\n".join(lines)

    def to_text(self) -> str:
        """The figures as the aligned text table the CLI prints."""
        width = max(len(r[0]) for r in self.rows())
        head = f"{'quality':<{width}}  {'subset':>10}  {'random':>10}  better"
        return "\n".join([head] + [f"{a:<{width}}  {b:>10}  {c:>10}  {d}" for a, b, c, d in self.rows()])


def _better(ours: float, theirs: float, *, higher: bool) -> str:
    if np.isclose(ours, theirs, rtol=1e-9, atol=1e-12):
        return "tie"
    return "yes" if (ours > theirs) == higher else "no"


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def tv_distance(codes: np.ndarray, subset: np.ndarray, n_codes: int) -> float:
    """Total-variation distance ½ Σ |p_subset(k) − p_pool(k)| between the subset's and the pool's mix.

    Example:
        >>> tv_distance(np.array([0, 0, 1, 1]), np.array([0, 1]), 2)    # subset all label 0
        0.5
    """
    pool = np.bincount(codes, minlength=n_codes) / len(codes)
    sub = np.bincount(codes[subset], minlength=n_codes) / max(len(subset), 1)
    return float(0.5 * np.abs(sub - pool).sum())


def nearest_distances(queries: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Euclidean distance from every query row to its nearest row of ``points``, in blocks."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    p = np.ascontiguousarray(points, dtype=np.float32)
    p_sq = np.einsum("ij,ij->i", p, p)
    out = np.empty(len(q), dtype=np.float32)
    for start in range(0, len(q), _BLOCK):
        block = q[start : start + _BLOCK]
        d2 = np.einsum("ij,ij->i", block, block)[:, None] + p_sq[None, :] - 2.0 * (block @ p.T)
        out[start : start + len(block)] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


@dataclass
class PoolFacts:
    """What the report needs to know of the filtered pool, one entry per row.

    Attributes:
        X: the row embeddings the selection used (coverage is measured in this space).
        examples: example id per row (group codes, or codes of the exact texts).
        input_words: whitespace-separated words of each row's prompt.
        mixes: ``{"labels" | "sources" | "templates": (codes, n_codes, column)}`` for the columns present.
        far: per row, whether it lies in the farthest decile of its cluster (None when unknown).
        examples_by: the name of what makes an example.
    """

    X: np.ndarray
    examples: np.ndarray
    input_words: np.ndarray
    mixes: dict[str, tuple[np.ndarray, int, str]]
    far: np.ndarray | None
    examples_by: str


def farthest_decile(labels: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Per point, whether its distance is in the top 10% of its cluster's (at or above the cluster's 90th percentile)."""
    labels = np.asarray(labels, dtype=np.int64)
    order = np.lexsort((distances, labels))
    sizes = np.bincount(labels)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - np.repeat(starts, sizes)
    # A point is far when fewer than 10% of its cluster's points lie beyond it.
    return (sizes[labels] - rank) <= np.ceil(0.1 * sizes[labels])


def figures(facts: PoolFacts, rows: np.ndarray, coverage_rows: np.ndarray) -> SubsetFigures:
    """The figures of the subset ``rows`` (positions in the filtered pool)."""
    from ltd_hub.selection.engines.bounded import take_rows

    rows = np.asarray(rows, dtype=np.int64)
    _, per_example = np.unique(facts.examples[rows], return_counts=True)
    tv = {key: tv_distance(codes, rows, n) for key, (codes, n, _col) in facts.mixes.items()}
    words = facts.input_words[rows]
    return SubsetFigures(
        rows=len(rows),
        distinct_examples=len(per_example),
        max_rows_per_example=int(per_example.max()) if len(per_example) else 0,
        tv_labels=tv.get("labels"),
        tv_sources=tv.get("sources"),
        tv_templates=tv.get("templates"),
        mean_input_words=float(words.mean()),
        p90_input_words=float(np.percentile(words, 90)),
        coverage=float(nearest_distances(take_rows(facts.X, coverage_rows), take_rows(facts.X, rows)).mean()),
        typicality=None if facts.far is None else float(facts.far[rows].mean()),
    )


def quality_report(facts: PoolFacts, selected: np.ndarray, *, seed: int = 0, coverage_sample: int = COVERAGE_SAMPLE) -> QualityReport:
    """Figures of ``selected`` beside a uniform random subset of the same size.

    The random subset and the coverage sample are drawn with ``seed`` (independent streams), so
    the same selection always gets the same report.

    Example:
        >>> report = quality_report(facts, result_rows, seed=0)
        >>> report.subset.coverage < report.random.coverage
    """
    n = len(facts.X)
    rng_random, rng_sample = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    random_rows = np.sort(rng_random.choice(n, size=len(selected), replace=False))
    sample = np.sort(rng_sample.choice(n, size=min(coverage_sample, n), replace=False))
    return QualityReport(
        subset=figures(facts, selected, sample),
        random=figures(facts, random_rows, sample),
        pool_mean_input_words=float(facts.input_words.mean()),
        pool_p90_input_words=float(np.percentile(facts.input_words, 90)),
        examples_by=facts.examples_by,
        columns={key: col for key, (_c, _n, col) in facts.mixes.items()},
        coverage_sample=len(sample),
        seed=seed,
    )
