"""Select a coreset of instruction data and publish it: the engine behind ``push-subset`` and ``rebuild-subset``.

``select_subset`` loads and filters the source, embeds the rows (cached), clusters them and
picks the coreset, returning the rows and their manifest without touching the Hub.
``subset_files`` turns that into exactly the files a push commits (Parquet, card, manifest);
``push_subset`` checks the target first, then selects and pushes them in one commit;
``rebuild_subset`` re-runs a manifest and compares the ids.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ltd_hub.constants import DEFAULT_BASE_MODEL
from ltd_hub.errors import MissingFileError, MissingRepoError, UsageError
from ltd_hub.files import staged_dir, staged_file
from ltd_hub.selection.manifest import (
    MANIFEST_FILENAME,
    ColumnMap,
    EncoderRecord,
    FilterRecord,
    SelectedRow,
    SelectionManifest,
    SelectionRecord,
    SourceRecord,
)
from ltd_hub.selection.quality import QualityReport

if TYPE_CHECKING:
    import datasets

    from ltd_hub.data.sources import LoadedSource
    from ltd_hub.hub.gateway import PushResult
    from ltd_hub.selection.encoders import Encoder
    from ltd_hub.selection.groups import Groups

DEFAULT_RATIO = 0.005
# Column names that hold the prompt template in P3 / promptsource-style pools, in order of preference.
TEMPLATE_COLUMNS = ("template_name", "template", "prompt_name", "template_id")
PARQUET_PATH = "data/train-00000-of-00001.parquet"
CARD_TEMPLATE = "dataset_card.md.j2"
# Task names of the ltd-nli data (P3's ``dataset`` column) -> their Hub dataset ids, for the card's source_datasets.
KNOWN_SOURCE_DATASETS = {
    "snli": "stanfordnlp/snli",
    "mnli": "nyu-mll/multi_nli",
    "multi_nli": "nyu-mll/multi_nli",
    "anli": "facebook/anli",
    "glue/mnli": "nyu-mll/glue",
    "glue/rte": "nyu-mll/glue",
}
# Task names that are natural-language inference (the card then says task_ids: natural-language-inference).
NLI_TASK_NAMES = {
    "snli",
    "esnli",
    "e-snli",
    "mnli",
    "multi_nli",
    "glue/mnli",
    "sick",
    "rte",
    "glue/rte",
    "glue_rte",
    "super_glue_rte",
    "anli",
    "anli_r1",
    "anli_r2",
    "anli_r3",
    "cb",
    "wnli",
    "qnli",
}
PAPER = {
    "title": "Maybe Only 0.5% Data is Needed: A Preliminary Exploration of Low Training Data Instruction Tuning",
    "arxiv": "2305.09246",
}
Log = Callable[[str], None]


@dataclass
class SubsetStats:
    """Counts and timings of one selection.

    Attributes:
        n_source_rows, n_filtered_rows, n_selected: rows of the source, after the filter, selected.
        ratio: ``n_selected / n_filtered_rows`` (the share actually selected).
        strategy, group_by, stratify_by, encoder: what ran (``stratify_by`` as resolved).
        seconds_load, seconds_encode, seconds_select, seconds: wall time of each step and in all.
        cache_hit: the embeddings came from the cache.
        n_truncated: texts cut to the encoder's window.
        task_counts: ``{task: [rows after the filter, rows selected]}``, most common first.
        group_hint: a column that looks like the example key, when selecting rows without ``group_by``.
    """

    n_source_rows: int
    n_filtered_rows: int
    n_selected: int
    ratio: float
    strategy: str
    group_by: str | None
    stratify_by: list[str]
    encoder: str
    seconds_load: float
    seconds_encode: float
    seconds_select: float
    seconds: float
    cache_hit: bool
    n_truncated: int
    task_counts: dict[str, list[int]] = field(default_factory=dict)
    group_hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SubsetResult:
    """A selected subset, before anything is written or pushed.

    Attributes:
        dataset: the selected rows with all their original columns, in source order.
        manifest: the rebuild recipe (see :class:`~ltd_hub.selection.manifest.SelectionManifest`).
        stats: counts and timings (:class:`SubsetStats`).
        source_license: the license the source declares, if any.
        quality: the subset's figures beside a random subset of the same size
            (see :class:`~ltd_hub.selection.quality.QualityReport`).
    """

    dataset: datasets.Dataset
    manifest: SelectionManifest
    stats: SubsetStats
    source_license: str | None = None
    quality: QualityReport | None = None

    def summary(self) -> dict[str, Any]:
        """The selection's part of the ``--format json`` object (a push or a dry run adds its own keys)."""
        s = self.stats
        return {
            "n_source_rows": s.n_source_rows,
            "n_filtered_rows": s.n_filtered_rows,
            "n_selected": s.n_selected,
            "ratio": s.ratio,
            "strategy": s.strategy,
            "group_by": s.group_by,
            "stratify_by": s.stratify_by,
            "quality": self.quality.to_dict() if self.quality else None,
        }


@dataclass
class PushSubsetResult:
    """What ``push_subset`` did: the selection and the Hub commit."""

    result: SubsetResult
    push: PushResult
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The ``--format json`` object."""
        return {
            "repo_id": self.push.repo_id,
            "commit_url": self.push.commit_url,
            "revision": self.push.revision,
            "unchanged": not self.push.created_commit,  # the repo already had these files: no commit
            **self.result.summary(),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class RebuildReport:
    """The outcome of re-running a manifest: identical ids and content, or what differs.

    Attributes:
        identical: the same row ids, from the same source data, with the same content as recorded
            (and, where the published rows could be read, the published rows are those rows).
        missing, extra: recorded row ids not selected now, and selected now but not recorded.
        differences: one line per other difference found (source fingerprint, row content,
            published rows).
    """

    identical: bool
    n_expected: int
    n_rebuilt: int
    missing: list[int]
    extra: list[int]
    manifest: SelectionManifest
    seconds: float
    differences: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The ``--format json`` object of ``rebuild-subset``."""
        return {
            "identical": self.identical,
            "n_expected": self.n_expected,
            "n_rebuilt": self.n_rebuilt,
            "missing": self.missing,
            "extra": self.extra,
            "differences": self.differences,
            "seconds": round(self.seconds, 3),
        }


# --------------------------------------------------------------------------- selection


@dataclass
class SelectionRequest:
    """All the knobs of a selection (see :func:`select_subset` for their meaning)."""

    ratio: float | None = None
    size: int | None = None
    strategy: str | None = None
    encoder: str | None = None
    n_clusters: int | None = None
    seed: int = 0
    group_by: str | None = None
    stratify_by: Sequence[str] | None = None
    template_column: str | None = None
    filters: Sequence[str] = ()
    tasks: str | Sequence[str] | None = None
    text_fields: Sequence[str] | None = None
    include_target: bool = True
    input_columns: Sequence[str] | None = None
    target_column: str | None = None
    task_column: str | None = None
    config: str | None = None
    split: str | None = None
    revision: str | None = None
    encoder_revision: str | None = None
    batch_size: int | None = None
    max_tokens: int | None = None
    encoder_dtype: str = "float32"
    embedding_dtype: str = "float32"
    device: str | None = None
    token: str | None = None
    use_cache: bool = True
    progress: bool = True
    engine: str = "local"
    kmeans_sample: int | None = None
    kmeans_backend: str = "sklearn"
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.stratify_by is not None:
            self.stratify_by = tuple(self.stratify_by)

    def validate(self) -> CheckedRequest:
        """Check every cheap option before any loading, encoding or network call.

        Returns:
            The encoder, the parsed filters and the task names; the default ratio and strategy are filled in.
        """
        from ltd_hub.data.sources import parse_filters, read_task_names
        from ltd_hub.selection import check_strategy, default_strategy
        from ltd_hub.selection.encoders import get_encoder

        if self.size is not None and self.ratio is not None:
            raise UsageError("give {ratio} or {size}, not both", params=("ratio", "size"))
        if self.size is not None and self.size < 1:
            raise UsageError(f"{{size}} must be at least 1, got {self.size}", params="size")
        if self.size is None:
            self.ratio = DEFAULT_RATIO if self.ratio is None else float(self.ratio)
            if not 0 < self.ratio < 1:
                raise UsageError(f"{{ratio}} must be between 0 and 1 (exclusive), got {self.ratio}; e.g. 0.005 for 0.5%", params="ratio")
        from ltd_hub.selection.engines import ENGINES

        if self.engine not in ENGINES:
            raise UsageError(f"unknown engine {self.engine!r}; valid engines: {', '.join(ENGINES)}")
        if self.kmeans_sample is not None and self.kmeans_sample < 1:
            raise UsageError(f"{{kmeans_sample}} must be at least 1 row per cluster, got {self.kmeans_sample}", params="kmeans_sample")
        if self.engine == "ray":
            from ltd_hub.selection.engines.ray_engine import require_ray

            require_ray()
        from ltd_hub.selection.clustering import check_kmeans_backend

        check_kmeans_backend(self.kmeans_backend)
        if self.strategy is None:
            self.strategy = default_strategy(grouped=self.group_by is not None)
        selector_cls = check_strategy(self.strategy)
        if self.n_clusters is not None:
            if not selector_cls.clustered:
                raise UsageError(
                    f"{{n_clusters}} does not apply to strategy {self.strategy!r}, which does not cluster; drop it", params="n_clusters"
                )
            if self.n_clusters < 1:
                raise UsageError(f"{{n_clusters}} must be at least 1, got {self.n_clusters}", params="n_clusters")
        encoder = get_encoder(
            self.encoder,
            revision=self.encoder_revision,
            batch_size=self.batch_size,
            max_tokens=self.max_tokens,
            dtype=self.encoder_dtype,
            device=self.device,
            token=self.token,
            storage=self.embedding_dtype,
        )
        return CheckedRequest(encoder, parse_filters(self.filters), read_task_names(self.tasks) if self.tasks else [])


@dataclass
class CheckedRequest:
    """What :meth:`SelectionRequest.validate` resolved, so a push checks once and selects with it."""

    encoder: Encoder
    filters: list[tuple[str, str]]  # (column, glob)
    tasks: list[str]


def select_subset(
    source: str | os.PathLike | Sequence[str | os.PathLike] | LoadedSource,
    *,
    ratio: float | None = None,
    size: int | None = None,
    strategy: str | None = None,
    encoder: str | None = None,
    n_clusters: int | None = None,
    seed: int = 0,
    group_by: str | None = None,
    stratify_by: Sequence[str] | None = None,
    template_column: str | None = None,
    filters: Sequence[str] = (),
    tasks: str | Sequence[str] | None = None,
    text_fields: Sequence[str] | None = None,
    include_target: bool = True,
    input_columns: Sequence[str] | None = None,
    target_column: str | None = None,
    task_column: str | None = None,
    config: str | None = None,
    split: str | None = None,
    revision: str | None = None,
    encoder_revision: str | None = None,
    batch_size: int | None = None,
    max_tokens: int | None = None,
    encoder_dtype: str = "float32",
    embedding_dtype: str = "float32",
    device: str | None = None,
    token: str | None = None,
    use_cache: bool = True,
    progress: bool = True,
    engine: str = "local",
    kmeans_sample: int | None = None,
    kmeans_backend: str = "sklearn",
    ray_address: str | None = None,
    log: Log | None = None,
) -> SubsetResult:
    """Select a coreset of ``source`` without touching the Hub (beyond reading a Hub source/encoder).

    Args:
        source: local file/folder/glob (JSONL, JSON, .gz, Parquet, CSV), SuperNI task files, a Hub
            dataset id, or an already loaded :class:`~ltd_hub.data.sources.LoadedSource`.
        ratio: share of the filtered rows to select (default 0.005); exclusive with ``size``.
        size: number of rows to select.
        strategy: a name in :data:`ltd_hub.selection.SELECTORS`; None (default) is
            :func:`~ltd_hub.selection.default_strategy`: ``centroid`` with ``group_by``, else ``random-in-cluster``.
        encoder: ``minilm`` (default), ``lexical``, ``sentence-transformers:<id>``, ``causal-lm:<id>``.
        n_clusters: k (default automatic, recorded in the manifest).
        seed: seeds k-means and random choices.
        group_by: a column whose rows sharing one value are one example (templated copies in
            P3/FLAN-style pools): selection runs over examples, then each chosen example
            contributes one row, its template chosen so the template mix follows the pool's.
        stratify_by: columns whose value mix the subset keeps exactly (budgets over cluster x stratum);
            ``label`` names the label (the target's position among ``answer_choices``) when the data
            has no ``label`` column. None (default): the label and the task column, where present,
            for the clustered strategies, none for the baselines; ``[]``: no strata.
        template_column: the column naming the prompt template (default detected, e.g. ``template_name``).
        filters: ``COLUMN=GLOB`` strings; same column OR, different columns AND.
        tasks: task names (globs) on the task column: a list, a comma-separated string or a file.
        text_fields: columns embedded (default the input columns, plus the target if ``include_target``).
        include_target: embed the target too (the default, as the method specifies).
        input_columns, target_column, task_column: column mapping for other schemas.
        config, split, revision: for Hub dataset sources.
        encoder_revision: pin the encoder model revision.
        batch_size, max_tokens, encoder_dtype, device: encoder settings.
        embedding_dtype: how the embeddings are stored in the cache: ``float32`` (default) or
            ``float16`` (half the disk and page cache on large pools; recorded with the encoder's
            params, and a different selection in the last bits of the vectors).
        token: Hub token for private sources/encoders.
        use_cache: reuse cached embeddings (False re-encodes).
        progress: tqdm bars on encoding and selection.
        engine: ``local`` (default: this process, embeddings memory-mapped) or ``ray`` (reading and
            filtering the source, encoding, assignment and per-cluster picking on a Ray cluster; same
            ids); see :mod:`ltd_hub.selection.engines`.
        kmeans_sample: fit k-means on a seeded sample of this many rows per cluster (e.g. 256) and
            assign the rows in chunks, so memory stays bounded; None (default) fits on every row.
            Recorded in the manifest; a sample covering the pool gives the same ids as None.
        kmeans_backend: who fits k-means: ``sklearn`` (default) or ``faiss`` (installed separately;
            full Lloyd iterations, multi-threaded or on a GPU). Recorded (the manifest's ``algorithm``); the two give different ids.
        ray_address: the Ray cluster for ``engine="ray"`` (default ``RAY_ADDRESS``, else a local Ray).
        log: called with short progress lines.

    Returns:
        A :class:`SubsetResult`.

    Raises:
        UsageError: any bad input, with one line naming the fix.

    Example:
        >>> result = select_subset("pool.jsonl.gz", ratio=0.005, encoder="lexical", filters=["dataset=snli"])
        >>> len(result.dataset) == result.stats.n_selected
        True
    """
    # Long only by its signature and docstring, the public API: one documented keyword per
    # SelectionRequest field, taken over as they are.
    options = dict(locals())
    source, log = options.pop("source"), options.pop("log")
    return _run_selection(source, SelectionRequest(**options), log=log)


def _run_selection(source, req: SelectionRequest, *, log: Log | None = None, checked: CheckedRequest | None = None) -> SubsetResult:
    """The selection as named steps: load and filter, size the budget, embed, pick, measure, record."""
    checked = checked or req.validate()
    encoder, filters, tasks = checked.encoder, checked.filters, checked.tasks
    say = log or (lambda _msg: None)
    t0 = time.perf_counter()
    src, filtered, rows = _load_filtered(source, req, filters, tasks, say)
    n_select = _budget(req, len(filtered))
    fields = list(req.text_fields) if req.text_fields else [
        *src.columns.inputs, *([src.columns.target] if req.include_target and src.columns.target else [])
    ]  # fmt: skip
    from ltd_hub.data.sources import build_texts

    if req.kmeans_sample is None and req.engine == "local":
        texts = build_texts(filtered, fields)
    else:  # bounded: the same texts, built a chunk at a time whenever they are read
        from ltd_hub.selection.engines.bounded import LazyTexts

        texts = LazyTexts(filtered, fields)
    t_load = time.perf_counter() - t0
    say(f"{len(filtered)} of {len(src.dataset)} rows after the filter; selecting {n_select} with {req.strategy}")
    filter_record = {"filters": [f"{c}={p}" for c, p in filters], "tasks": tasks, "task_column": src.columns.task if tasks else None}
    X, enc_stats = _embed(encoder, texts, src, fields, filter_record, req, say)

    t1 = time.perf_counter()
    units = _selection_units(filtered, src.columns, req, n_select, say)
    picked = _pick_rows(X, units, req, n_select)
    subset = filtered.select(picked.rows)
    say(f"measuring the subset against random rows of the same size (quality report, seed {req.seed})")
    quality = _quality(filtered, src.columns, X, units, picked, texts, req.seed)
    manifest = _manifest(src, filtered, rows, subset, picked, units, quality, encoder, enc_stats, fields, filter_record, req)
    t_select = time.perf_counter() - t1
    stats = SubsetStats(
        n_source_rows=len(src.dataset),
        n_filtered_rows=len(filtered),
        n_selected=len(subset),
        ratio=len(subset) / len(filtered),
        strategy=req.strategy,
        group_by=req.group_by,
        stratify_by=units.stratify_by,
        encoder=encoder.name,
        seconds_load=round(t_load, 3),
        seconds_encode=round(enc_stats.seconds, 3),
        seconds_select=round(t_select, 3),
        seconds=round(time.perf_counter() - t0, 3),
        cache_hit=enc_stats.cache_hit,
        n_truncated=enc_stats.n_truncated,
        task_counts=_task_counts(units.tasks, picked.rows),
        group_hint=units.group_hint,
    )
    say(f"selected {len(subset)} rows in {t_select:.1f}s")
    return SubsetResult(dataset=subset, manifest=manifest, stats=stats, source_license=src.license, quality=quality)


def _load_filtered(source, req: SelectionRequest, filters, tasks, say: Log):
    """``(loaded source, filtered rows, their source row positions)``."""
    from ltd_hub.data.sources import LoadedSource, apply_filters, load_source

    if isinstance(source, LoadedSource):
        src = source
    else:
        say(f"loading {source if isinstance(source, (str, os.PathLike)) else ', '.join(map(str, source))}")
        if req.engine == "ray":
            # Ray Data reads and filters the source itself; None: a source it cannot read as the
            # local engine does (the reason is logged), loaded here instead.
            from ltd_hub.selection.engines.ray_source import load_filtered

            read = load_filtered(source, req, filters, tasks, say)
            if read is not None:
                return read
        src = load_source(
            source,
            config=req.config,
            split=req.split,
            revision=req.revision,
            token=req.token,
            input_columns=req.input_columns,
            target_column=req.target_column,
            task_column=req.task_column,
        )
    filtered, rows = apply_filters(src, filters, tasks)
    return src, filtered, rows


def _budget(req: SelectionRequest, n_filtered: int) -> int:
    """Rows to select: ``size``, or ``ratio`` of the filtered rows."""
    from ltd_hub.selection import budget_from_ratio

    if req.n_clusters is not None and req.n_clusters > n_filtered:
        raise UsageError(
            f"{{n_clusters}} {req.n_clusters} is more than the {n_filtered} rows after the filter; lower it", params="n_clusters"
        )
    if req.size is None:
        return budget_from_ratio(n_filtered, req.ratio)
    if req.size > n_filtered:
        raise UsageError(f"{{size}} {req.size} is larger than the {n_filtered} rows after the filter; lower it", params="size")
    return req.size


def _embed(encoder, texts, src, fields, filter_record, req: SelectionRequest, say: Log):
    """The row embeddings, from the cache when the same encoder saw the same texts of the same source."""
    from ltd_hub.selection.encoders import encode_cached

    identity = {
        "source": src.fingerprint,
        "kind": src.kind,
        "config": src.config,
        "split": src.split,
        "text_fields": fields,
        "filter": filter_record,
    }
    encoder.resolve()
    if req.engine == "ray":
        from ltd_hub.selection.engines.ray_engine import encode_cached_ray

        X, enc_stats = encode_cached_ray(encoder, texts, identity, use_cache=req.use_cache, address=req.ray_address, log=say)
    else:
        # Memory-mapped: the selection reads the vectors in chunks and never holds them all.
        X, enc_stats = encode_cached(encoder, texts, identity, use_cache=req.use_cache, progress=req.progress, mmap=True)
    say(
        f"embeddings {'from the cache' if enc_stats.cache_hit else 'computed'} ({X.shape[0]} x {X.shape[1]}, {enc_stats.seconds:.1f}s)"
        + (f"; {enc_stats.n_truncated} rows truncated to {enc_stats.max_tokens} tokens" if enc_stats.n_truncated else "")
    )
    return X, enc_stats


def _manifest(src, filtered, rows, subset, picked: _Picked, units: _Units, quality, encoder, enc_stats, fields, filter_record, req):
    """The rebuild recipe: source, filter, encoder, selection parameters, every selected row, the quality report."""
    from ltd_hub.data.sources import column_values

    ids = column_values(subset, src.columns.id) if src.columns.id else None
    hashes = row_hashes(subset)
    selected = [
        SelectedRow(
            row=int(r),
            cluster=int(c),
            distance=round(float(d), 6),
            id=None if ids is None or ids[i] is None else str(ids[i]),  # a null id stays null, never "None"
            sha=hashes[i],
        )
        for i, (r, c, d) in enumerate(zip(rows[picked.rows], picked.clusters, picked.distances))
    ]
    return SelectionManifest(
        source=src.to_manifest(),
        filter=FilterRecord(**filter_record, n_rows=len(filtered)),
        columns=src.columns,
        text_fields=fields,
        encoder=EncoderRecord(
            **{**encoder.describe(), "max_tokens": enc_stats.max_tokens}, dim=enc_stats.dim, n_truncated=enc_stats.n_truncated
        ),
        selection=_selection_record(picked.selector, units, req, len(selected)),
        selected=selected,
        # The manifest records the rounded figures: the card is rendered from them, before and after a reload.
        quality=QualityReport.from_dict(quality.to_dict()),
    )


def _selection_record(selector, units: _Units, req: SelectionRequest, n_selected: int) -> SelectionRecord:
    """The manifest's ``selection`` section: the request as resolved, and what the fitted selector found."""
    clustering = selector.clustering_
    return SelectionRecord(
        strategy=req.strategy,
        ratio=req.ratio,
        size=req.size,
        n_selected=n_selected,
        seed=req.seed,
        group_by=req.group_by,
        n_groups=units.groups.n_groups if units.groups else None,
        template_column=units.template_column,
        stratify_by=units.stratify_by,
        strata=units.strata_values,
        stratum_budget=None if selector.stratum_budget_ is None else selector.stratum_budget_.tolist(),
        n_clusters=selector.n_clusters_,
        n_clusters_auto=bool(selector.n_clusters_auto_),
        algorithm=clustering.algorithm if clustering else None,
        inertia=round(clustering.inertia, 4) if clustering else None,
        cluster_sizes=selector.cluster_sizes_.tolist() if clustering else None,
        cluster_budget=selector.cluster_budget_.tolist() if clustering else None,
        # Written only when set (see SelectionRecord), so a default selection's manifest is unchanged.
        kmeans_sample=req.kmeans_sample or None,
        kmeans_sample_rows=selector.kmeans_sample_rows_ if req.kmeans_sample else None,
        engine=req.engine if req.engine != "local" else None,
    )


def _task_counts(tasks: tuple[np.ndarray, list[str]] | None, picked_rows: np.ndarray) -> dict[str, list[int]]:
    """``{task: [rows after the filter, rows selected]}``, most common first (ties: first seen first)."""
    if tasks is None:
        return {}
    codes, names = tasks
    pool = np.bincount(codes, minlength=len(names))
    picked = np.bincount(codes[picked_rows], minlength=len(names))
    order = sorted(range(len(names)), key=lambda i: int(pool[i]), reverse=True)  # stable, as Counter.most_common
    return {names[i]: [int(pool[i]), int(picked[i])] for i in order}


@dataclass
class _Units:
    """What the selector runs over: rows, or examples (groups of templated rows), with optional strata."""

    group_by: str | None
    groups: Groups | None
    stratify_by: list[str]
    strata: np.ndarray | None  # stratum id per row
    strata_values: list[str] | None
    templates: np.ndarray | None  # template id per row (task + template column), for the template mix
    template_column: str | None
    group_hint: str | None
    labels: tuple[np.ndarray, int, str] | None  # label id per row (see _label_codes), read once for strata and report
    tasks: tuple[np.ndarray, list[str]] | None  # task id per row and the task names, read once for the counts and report


def _check_columns(dataset: datasets.Dataset, names: Sequence[str], param: str) -> None:
    """Every column in ``names`` is in the data; else one error naming the parameter ``param`` that gave it."""
    missing = [n for n in names if n not in dataset.column_names]
    if missing:
        columns = ", ".join(dataset.column_names)
        raise UsageError(f"{{{param}}} column {missing[0]!r} is not in the data; available columns: {columns}", params=param)


def _selection_units(filtered: datasets.Dataset, columns: ColumnMap, req: SelectionRequest, n_select: int, say: Log) -> _Units:
    """Resolve ``group_by``, ``stratify_by`` and the template column into per-row codes.

    Every column is read a chunk of rows at a time (:func:`~ltd_hub.selection.engines.bounded.column_chunks`):
    what stays is an integer code per row, so memory does not grow with Python objects per row.
    """
    from ltd_hub.selection.engines.bounded import value_chunks
    from ltd_hub.selection.groups import count_distinct, group_codes, suggest_group_column

    n_rows = len(filtered)

    _check_columns(filtered, [req.group_by] if req.group_by else [], "group_by")
    _check_columns(filtered, [c for c in req.stratify_by or () if c != "label"], "stratify_by")
    if req.template_column:
        _check_columns(filtered, [req.template_column], "template_column")
    template_column = req.template_column or next((c for c in TEMPLATE_COLUMNS if c in filtered.column_names), None)
    groups = None
    if req.group_by:
        groups = group_codes(value_chunks(filtered, req.group_by), n_rows, req.group_by)
    if groups is not None and n_select > groups.n_groups:
        raise UsageError(
            f"{{group_by}} {req.group_by} leaves {groups.n_groups} examples, fewer than the {n_select} rows to select; "
            "lower {ratio}/{size} or drop {group_by}",
            params=("group_by", "ratio", "size"),
        )
    labels = _label_codes(filtered, columns)
    tasks = _text_codes(filtered, [columns.task]) if columns.task else None
    stratify_by, strata, strata_values = _resolve_strata(filtered, columns, labels, req, n_select, say)
    templates = None
    if template_column:
        parts = [columns.task] if columns.task and columns.task != template_column else []
        templates = _text_codes(filtered, [*parts, template_column])[0]
    hint = None
    if groups is None:
        skip = {*columns.inputs, columns.target, columns.task, columns.id, template_column, *stratify_by}
        distinct = {
            c: count_distinct(value_chunks(filtered, c), n_rows)
            for c, feature in filtered.features.items()
            if c not in skip and getattr(feature, "dtype", None) in ("string", "large_string", "int64", "int32")
        }
        found = suggest_group_column(distinct, n_rows)
        if found:
            hint = found[0]
            say(
                f"note: column {found[0]!r} repeats each value {found[1]:.1f} times on average, as templated copies of one "
                f"example do; pass --group-by {found[0]} to select examples instead of copies"
            )
    return _Units(req.group_by, groups, stratify_by, strata, strata_values, templates, template_column, hint, labels, tasks)


def _text_codes(filtered, names: Sequence[str]) -> tuple[np.ndarray, list[Any]]:
    """Codes of the rows' values of ``names`` as text (first seen first), and the distinct values:
    strings for one column, tuples of strings for several."""
    from ltd_hub.selection.engines.bounded import column_chunks, value_chunks
    from ltd_hub.selection.groups import encode_chunks

    if len(names) == 1:
        return encode_chunks((list(map(str, v)) for v in value_chunks(filtered, names[0])), len(filtered))
    keys = (list(zip(*(map(str, v) for v in parts))) for parts in column_chunks(filtered, names))
    return encode_chunks(keys, len(filtered))


def _strata_chunks(filtered, labels, names: Sequence[str]) -> Iterator[list[tuple[str, ...]]]:
    """The stratum key (a tuple of texts, one per name) of every row, a chunk of rows at a time."""
    from ltd_hub.selection.engines.bounded import GROUP_CHUNK, column_chunks

    use_labels = [name == "label" and name not in filtered.column_names for name in names]
    if any(use_labels) and labels is None:
        raise UsageError(
            "{stratify_by} label needs a label: a 'label' column, answer_choices, or a target with few values; "
            f"name a column instead (columns: {', '.join(filtered.column_names)})",
            params="stratify_by",
        )
    read = [n for n, lab in zip(names, use_labels) if not lab]
    chunks = column_chunks(filtered, read, GROUP_CHUNK) if read else None
    for start in range(0, len(filtered), GROUP_CHUNK):
        columns = iter(next(chunks)) if chunks is not None else iter(())
        stop = min(start + GROUP_CHUNK, len(filtered))
        parts = [map(str, labels[0][start:stop].tolist()) if lab else map(str, next(columns)) for lab in use_labels]
        yield list(zip(*parts))


def _resolve_strata(filtered, columns: ColumnMap, labels, req: SelectionRequest, n_select: int, say: Log):
    """``(stratify_by, stratum id per row, stratum names)``; the automatic default drops what the budget cannot serve."""
    from ltd_hub.selection import check_strategy
    from ltd_hub.selection.groups import encode_chunks

    auto = req.stratify_by is None
    if auto:
        clustered = check_strategy(req.strategy).clustered
        names = [n for n in ("label" if labels is not None else None, columns.task) if n and clustered]
    else:
        names = list(req.stratify_by)
    while names:
        strata, distinct = encode_chunks(_strata_chunks(filtered, labels, names), len(filtered))
        if len(distinct) <= n_select:
            return names, strata, [" / ".join(k) for k in distinct]
        if not auto:
            raise UsageError(
                f"{{stratify_by}} {' '.join(names)} makes {len(distinct)} strata, more than the {n_select} rows to select; "
                "stratify by fewer columns or raise {ratio}/{size}",
                params=("stratify_by", "ratio", "size"),
            )
        say(
            f"note: {len(distinct)} strata by {' x '.join(names)} are more than the {n_select} rows to select; not stratifying by {names[-1]}"
        )
        names = names[:-1]
    return [], None, None


@dataclass
class _Picked:
    rows: np.ndarray  # positions in the filtered rows, ascending
    clusters: np.ndarray
    distances: np.ndarray
    selector: Any
    far: np.ndarray  # per filtered row: in the farthest decile of its (row's or example's) cluster


def _pick_rows(X: np.ndarray, units: _Units, req: SelectionRequest, n_select: int) -> _Picked:
    """Run the selector over rows or examples; for examples, then choose one row (template) each."""
    from ltd_hub.selection import get_selector
    from ltd_hub.selection.engines.bounded import fit_selector, group_vectors_chunked
    from ltd_hub.selection.groups import choose_rows, group_strata, group_vectors
    from ltd_hub.selection.quality import farthest_decile

    groups = units.groups
    if req.kmeans_sample is None and X.dtype != np.float32:
        X = np.asarray(X, dtype=np.float32)  # the fit on every row holds the vectors anyway
    if groups is None:
        points = X
    else:  # with a k-means sample the ids are the sample's own: sum the rows in chunks
        points = group_vectors(X, groups) if req.kmeans_sample is None else group_vectors_chunked(X, groups)
    strata = units.strata if groups is None or units.strata is None else group_strata(units.strata, groups)
    if req.n_clusters is not None and req.n_clusters > len(points):
        raise UsageError(
            f"{{n_clusters}} {req.n_clusters} is more than the {len(points)} examples to cluster; lower it", params="n_clusters"
        )
    selector = get_selector(
        req.strategy, n_select=n_select, n_clusters=req.n_clusters, seed=req.seed, progress=req.progress, kmeans_backend=req.kmeans_backend
    )
    run_cells = assign = None
    if req.engine == "ray":
        from ltd_hub.selection.engines.ray_engine import ray_assign, ray_run_cells

        run_cells, assign = ray_run_cells(req.ray_address), ray_assign(req.ray_address)
    fit_selector(
        selector,
        points,
        strata=strata,
        weights=None if groups is None else groups.sizes,
        kmeans_sample=req.kmeans_sample,
        run_cells=run_cells,
        assign=assign,
    )
    far = farthest_decile(selector.labels_, selector.row_distances_)
    if groups is None:
        return _Picked(selector.indices_, selector.cluster_ids_, selector.distances_, selector, far)
    chosen_rows = choose_rows(selector.indices_, groups, units.templates, req.seed, clusters=selector.cluster_ids_, strata=strata)
    order = np.argsort(chosen_rows, kind="stable")
    return _Picked(chosen_rows[order], selector.cluster_ids_[order], selector.distances_[order], selector, far[groups.codes])


def _quality(filtered, columns: ColumnMap, X, units: _Units, picked: _Picked, texts: Sequence[str], seed: int) -> QualityReport:
    """The quality report of the picked rows against random rows of the same size."""
    from ltd_hub.selection.engines.bounded import text_chunks, value_chunks, word_counts
    from ltd_hub.selection.groups import encode_chunks, hashed_codes
    from ltd_hub.selection.quality import PoolFacts, quality_report

    n_rows = len(filtered)
    if units.groups is not None:
        examples, examples_by = units.groups.codes, units.group_by
    elif units.group_hint:
        # Not grouped, but a column looks like the example key: count by it, so the report shows
        # what selecting rows did to examples (templated copies have different texts).
        examples = encode_chunks(value_chunks(filtered, units.group_hint), n_rows)[0]
        examples_by = units.group_hint
    else:  # nearly every text is distinct: hash them rather than hold them all
        examples, examples_by = hashed_codes(text_chunks(texts), n_rows), "text"
    words = word_counts(filtered, list(columns.inputs))  # chunk by chunk: no second copy of every text
    mixes: dict[str, tuple[np.ndarray, int, str]] = {}
    if units.labels is not None:
        mixes["labels"] = units.labels
    if units.tasks is not None:
        mixes["sources"] = (units.tasks[0], len(units.tasks[1]), columns.task)
    if units.templates is not None:
        mixes["templates"] = (units.templates, int(units.templates.max()) + 1, units.template_column)
    facts = PoolFacts(X=X, examples=examples, input_words=words, mixes=mixes, far=picked.far, examples_by=examples_by)
    return quality_report(facts, picked.rows, seed=seed)


# Above this many distinct targets (and without answer_choices) the target is free text, not a label.
_MAX_LABELS = 100


def _label_codes(filtered, columns: ColumnMap) -> tuple[np.ndarray, int, str] | None:
    """Label id per row: the target's position among ``answer_choices`` when the data has them
    (so "True" / "yes" / "Entailment" under different templates are one label), else the target
    text when it takes few values; None for free-text targets."""
    from ltd_hub.selection.engines.bounded import column_chunks, value_chunks
    from ltd_hub.selection.groups import encode_chunks

    if not columns.target or columns.target not in filtered.column_names:
        return None
    if "answer_choices" in filtered.column_names:
        keys = (
            [c.index(t) if isinstance(c, list) and t in c else -1 for t, c in zip(targets, choices)]
            for targets, choices in column_chunks(filtered, [columns.target, "answer_choices"])
        )
        codes, distinct = encode_chunks(keys, len(filtered))
        return codes, len(distinct), f"{columns.target} in answer_choices"
    found = encode_chunks((list(map(str, t)) for t in value_chunks(filtered, columns.target)), len(filtered), max_distinct=_MAX_LABELS)
    return None if found is None else (found[0], len(found[1]), columns.target)


def row_hashes(dataset: datasets.Dataset) -> list[str]:
    """A short sha256 of each row's content (all columns, canonical JSON), so a rebuild can tell
    whether the published rows are the selected ones."""
    import hashlib
    import json

    # Not files.json_digest: it escapes non-ASCII text, which would change every hash manifests record.
    return [
        hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")).hexdigest()[:16] for row in dataset
    ]


# --------------------------------------------------------------------------- files


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]
    return next((label for bound, label in bounds if n < bound), "10M<n<100M")


def _card_context(result: SubsetResult, repo_id: str, license_id: str, pretty_name: str) -> dict[str, Any]:
    """The values the dataset card template shows: what was selected, how, from where."""
    m, s = result.manifest, result.stats
    sel, enc = m.selection, m.encoder
    counts = s.task_counts or {}
    task_rows = [{"task": t, "filtered": n, "selected": k} for t, (n, k) in list(counts.items())[:40]]
    return {
        "repo_id": repo_id,
        "pretty_name": pretty_name,
        "license": license_id,
        "n_selected": s.n_selected,
        "n_filtered": s.n_filtered_rows,
        "n_source": s.n_source_rows,
        "ratio_pct": f"{100 * s.ratio:.3g}%",
        "requested": f"ratio {sel.ratio}" if sel.ratio is not None else f"size {sel.size}",
        "strategy": sel.strategy,
        "strategy_description": _strategy_description(sel.strategy),
        "clustered": sel.n_clusters is not None,
        "group_by": sel.group_by,
        "n_groups": sel.n_groups,
        "template_column": sel.template_column,
        "stratify_by": sel.stratify_by or [],
        "n_strata": len(sel.strata or []),
        "quality_md": m.quality.to_markdown() if m.quality else "",
        "quality_examples_by": m.quality.examples_by if m.quality else None,
        "encoder_name": enc.name,
        "encoder_id": enc.id,
        "encoder_revision": enc.revision,
        "encoder_dim": enc.dim,
        "max_tokens": enc.max_tokens,
        "n_truncated": enc.n_truncated,
        "seed": sel.seed,
        "n_clusters": sel.n_clusters,
        "n_clusters_auto": sel.n_clusters_auto,
        "algorithm": sel.algorithm,
        "inertia": sel.inertia,
        **_cluster_facts(sel),
        "source_line": _source_line(m.source),
        "filter_line": _filter_line(m.filter),
        "task_column": m.columns.task,
        "task_rows": task_rows,
        "n_more_tasks": max(0, len(counts) - len(task_rows)),
        "input_columns_md": " + ".join(f"`{c}`" for c in m.columns.inputs),
        "text_fields_md": " + ".join(f"`{c}`" for c in m.text_fields),
        "target_column": m.columns.target,
        "train_base_model": DEFAULT_BASE_MODEL,
        "paper": PAPER,
        "manifest_file": MANIFEST_FILENAME,
        "versions": m.versions,
    }


def _cluster_facts(sel: SelectionRecord) -> dict[str, Any]:
    """The smallest, median and largest cluster, and how many clusters gave rows (None without clusters)."""
    sizes, budget = sel.cluster_sizes or [], sel.cluster_budget or []
    return {
        "cluster_min": min(sizes) if sizes else None,
        "cluster_median": statistics.median(sizes) if sizes else None,
        "cluster_max": max(sizes) if sizes else None,
        "clusters_selected": sum(1 for b in budget if b) if budget else None,
    }


def _source_line(src: SourceRecord) -> str:
    """The card's one line on the source: the Hub dataset at its commit, or the local files and their sha256."""
    if src.kind == "hub":
        line = f"[{src.id}](https://huggingface.co/datasets/{src.id}) at commit `{src.revision}`"
        line += f", config `{src.config}`" if src.config else ""
        return line + f", split `{src.split}`"
    files = src.files or []
    names = ", ".join(f"`{Path(f['path']).name}` (sha256 `{f['sha256'][:12]}`)" for f in files[:10])
    more = f" and {len(files) - 10} more files" if len(files) > 10 else ""
    return f"local {'SuperNI task files' if src.kind == 'superni' else 'files'} {names}{more}"


def _filter_line(filt: FilterRecord) -> str:
    """The card's one line on the filter."""
    parts = [f"`{f}`" for f in filt.filters]
    if filt.tasks:
        parts.append(f"tasks {', '.join(f'`{t}`' for t in filt.tasks)} (column `{filt.task_column}`)")
    return ", ".join(parts) if parts else "none (all rows)"


def _strategy_description(name: str) -> str:
    """The registry's one-line description of a strategy."""
    from ltd_hub.selection import SELECTORS

    return SELECTORS[name].description


def render_dataset_card(
    result: SubsetResult,
    repo_id: str,
    *,
    license: str | None = None,
    language: Sequence[str] = ("en",),
    pretty_name: str | None = None,
    log: Log | None = None,
) -> str:
    """Render ``README.md`` for the subset (YAML metadata the Hub reads, then the generated body).

    The license is the source's when it declares one, else ``license``, else ``unknown``.

    Example:
        >>> text = render_dataset_card(result, "me/nli-coreset")
    """
    from ltd_hub.hub.cards import render_card

    license_id = result.source_license or license or "unknown"
    if result.source_license and license and license != result.source_license and log:
        log(f"note: the source is licensed {result.source_license}; the card keeps that license, not --license {license}")
    strategy = result.manifest.selection.strategy
    pretty = pretty_name or f"{repo_id.split('/')[-1]} ({result.stats.n_selected} rows, ltd-hub {strategy})"
    src = result.manifest.source
    tasks = [str(t) for t in (result.stats.task_counts or {})]
    if src.kind == "hub":
        source_datasets = [src.id]
    else:
        # The Hub validates source_datasets as dataset ids: local task names are given only when
        # they are known datasets (the ltd-nli sources), by their Hub id.
        source_datasets = list(dict.fromkeys(KNOWN_SOURCE_DATASETS[t.lower()] for t in tasks if t.lower() in KNOWN_SOURCE_DATASETS))
    nli = bool(tasks) and all(t.lower() in NLI_TASK_NAMES for t in tasks)
    card_data: dict[str, Any] = {
        "license": license_id,
        "language": list(language),
        # natural-language-inference is a task id of text-classification (the Hub's task taxonomy).
        "task_categories": ["text-generation", "text-classification"] if nli else ["text-generation"],
        **({"task_ids": ["natural-language-inference"]} if nli else {}),
        "size_categories": [_size_category(result.stats.n_selected)],
    }
    if source_datasets:
        card_data["source_datasets"] = source_datasets
    card_data.update(
        {
            "pretty_name": pretty,
            "tags": ["ltd-hub", "data-selection", "instruction-tuning", strategy],
            "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": PARQUET_PATH}]}],
        }
    )
    return render_card(CARD_TEMPLATE, card_data, **_card_context(result, repo_id, license_id, pretty))


def subset_files(
    result: SubsetResult,
    repo_id: str,
    *,
    license: str | None = None,
    language: Sequence[str] = ("en",),
    pretty_name: str | None = None,
    log: Log | None = None,
) -> dict[str, bytes]:
    """Exactly the files a push commits: the Parquet rows, ``README.md`` and ``selection_manifest.json``.

    Example:
        >>> sorted(subset_files(result, "me/nli-coreset"))
        ['README.md', 'data/train-00000-of-00001.parquet', 'selection_manifest.json']
    """
    from ltd_hub.data.sources import no_progress_bars

    buffer = io.BytesIO()
    with no_progress_bars():  # a bar for a few-thousand-row write is noise next to the encoding and selection bars
        result.dataset.to_parquet(buffer)
    card = render_dataset_card(result, repo_id, license=license, language=language, pretty_name=pretty_name, log=log)
    return {
        PARQUET_PATH: buffer.getvalue(),
        "README.md": card.encode("utf-8"),
        MANIFEST_FILENAME: result.manifest.to_json().encode("utf-8"),
    }


def write_subset_files(result: SubsetResult, out_dir: str | os.PathLike, repo_id: str = "local/subset", **card_kwargs: Any) -> list[Path]:
    """Write the files a push would commit under ``out_dir``, all or nothing.

    Files are written to a temporary folder next to ``out_dir`` first and moved into place at
    the end, so an interrupt never leaves a half-written subset.

    Returns:
        The written paths.

    Example:
        >>> write_subset_files(result, "out/", repo_id="me/nli-coreset")
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{{output_dir}} {out} is a file; give a folder", params={"output_dir": "out_dir"})
    files = subset_files(result, repo_id, **card_kwargs)
    if not out.exists():
        with staged_dir(out) as staging:  # the whole folder appears at once
            for name, data in files.items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                (staging / name).write_bytes(data)
    else:
        # An existing folder may hold other files: each of ours is staged beside its target, and
        # only when all are written are they renamed into place.
        with contextlib.ExitStack() as stack:
            for name, data in files.items():
                stack.enter_context(staged_file(out / name)).write_bytes(data)
    return [out / name for name in files]


# --------------------------------------------------------------------------- push


def push_subset(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    repo_id: str,
    *,
    private: bool | None = None,
    license: str | None = None,
    language: Sequence[str] = ("en",),
    pretty_name: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    log: Log | None = None,
    **select_kwargs: Any,
) -> PushSubsetResult:
    """Select a coreset and push it (Parquet, card, manifest) to a Hub dataset repo in one commit.

    The push target is checked (token, write access, repo type) before anything is loaded or
    encoded. The card is merged into the repo's existing README.

    Args:
        source: as for :func:`select_subset`.
        repo_id: ``namespace/name`` of the dataset repo.
        private: None (default) inherits: private when the source is a private Hub dataset, else the
            Hub's default (public); True makes it private; False publishes it even when the source is
            private (one line says so). See :func:`ltd_hub.hub.gateway.derived_visibility`.
        license: license when the source declares none.
        language: card ``language``.
        pretty_name: card ``pretty_name``.
        commit_message: default "Add ltd-hub subset (...)".
        token: Hub token (default: the one huggingface_hub finds).
        log: called with short progress lines.
        **select_kwargs: the options of :func:`select_subset` (``ratio``, ``strategy``, ``encoder``, ...).

    Returns:
        A :class:`PushSubsetResult`.

    Example:
        >>> out = push_subset("pool.jsonl.gz", "me/nli-coreset", encoder="lexical")  # doctest: +SKIP
        >>> out.push.commit_url  # doctest: +SKIP
    """
    from ltd_hub.hub import gateway as hub

    start = time.perf_counter()
    try:
        request = SelectionRequest(token=token, **select_kwargs)
    except TypeError as exc:
        raise UsageError(f"push_subset got an unknown option ({exc})") from None
    checked = request.validate()
    target = hub.preflight_push(repo_id, "dataset", token=token)
    if log:
        log(f"target {target.repo_id} ({'existing' if target.exists else 'new'} dataset repo) is writable")
    result = _run_selection(source, request, log=log, checked=checked)
    # The pushed rows are the source's rows verbatim: a private source keeps the subset private.
    src = result.manifest.source
    sources = hub.private_inputs([(src.id, "dataset")] if src.kind == "hub" else [], token=token)
    private = hub.derived_visibility(target, private, sources)
    files = subset_files(result, target.repo_id, license=license, language=language, pretty_name=pretty_name, log=log)
    s = result.stats
    message = commit_message or f"Add ltd-hub subset ({s.n_selected} of {s.n_filtered_rows} rows, {s.strategy})"
    pushed = hub.push_files(target.repo_id, files, repo_type="dataset", commit_message=message, token=token, private=private)
    return PushSubsetResult(result=result, push=pushed, seconds=time.perf_counter() - start)


# --------------------------------------------------------------------------- rebuild


def load_manifest(repo_id_or_dir: str | os.PathLike, *, revision: str | None = None, token: str | None = None) -> SelectionManifest:
    """Read the manifest of a subset folder, a manifest file, or a Hub dataset repo."""
    from ltd_hub.hub import gateway as hub

    path = Path(os.path.expanduser(os.fspath(repo_id_or_dir)))
    if path.is_dir():
        return SelectionManifest.load(path / MANIFEST_FILENAME)
    if path.is_file():
        return SelectionManifest.load(path)
    try:
        local = hub.download(os.fspath(repo_id_or_dir), MANIFEST_FILENAME, repo_type="dataset", revision=revision, token=token)
    except MissingFileError:
        # A repo an interrupted push left empty says so, with how to clean it up.
        hint = hub.empty_repo_hint(os.fspath(repo_id_or_dir), "dataset", token)
        raise UsageError(
            f"dataset {repo_id_or_dir} has no {MANIFEST_FILENAME}{hint or '; it was not made by ltd-hub push-subset'}"
        ) from None
    except MissingRepoError:
        raise UsageError(f"{repo_id_or_dir} is neither a local folder nor a Hub dataset; check the path or repo id") from None
    return SelectionManifest.load(local)


def _manifest_source(manifest: SelectionManifest, override: str | Sequence[str] | None) -> tuple[Any, dict[str, Any]]:
    """The SOURCE argument and loader options that reproduce the manifest's source."""
    from ltd_hub.files import sha256_file

    src = manifest.source
    if src.kind == "hub" and not override:
        return src.id, {"config": src.config, "split": src.split, "revision": src.revision}
    paths = [override] if isinstance(override, str) else list(override) if override else [f["path"] for f in src.files or []]
    if not override:
        for rec in src.files or []:
            # Manifests record a relative path as given (resolved from the cwd here) or, for a path
            # that was absolute, only the file name: then the data's location must be given.
            p = Path(rec["path"])
            if not p.is_file():
                where = f" (looked for it from {Path.cwd()})" if not p.is_absolute() and p.parent != Path(".") else ""
                raise UsageError(
                    f"the source file {rec['path']} is not on this machine{where}; pass {{source}} PATH with the same data "
                    f"(sha256 {rec['sha256'][:12]}, {rec.get('size', '?')} bytes)",
                    params="source",
                )
            if sha256_file(p) != rec["sha256"]:
                raise UsageError(
                    f"the source file {p} changed since the subset was made (sha256 differs); pass {{source}} with the original data",
                    params="source",
                )
    return paths, {"split": src.split}


def rebuild_subset(
    repo_id_or_dir: str | os.PathLike,
    *,
    source: str | Sequence[str] | None = None,
    revision: str | None = None,
    token: str | None = None,
    use_cache: bool = True,
    progress: bool = True,
    engine: str = "local",
    ray_address: str | None = None,
    log: Log | None = None,
) -> RebuildReport:
    """Re-run the selection recorded in a subset's manifest and compare the selected row ids.

    Args:
        repo_id_or_dir: a subset folder (from ``--dry-run --output-dir``), a manifest file, or a Hub dataset id.
        source: the source data, when the recorded local path is not on this machine.
        revision: revision of the subset repo to read the manifest from.
        token: Hub token.
        use_cache: reuse cached embeddings; False re-encodes.
        progress: tqdm bars.
        engine, ray_address: where to re-run (see :func:`select_subset`); any engine gives the same ids.
        log: called with short progress lines.

    Returns:
        A :class:`RebuildReport`.

    Example:
        >>> rebuild_subset("me/nli-coreset").identical  # doctest: +SKIP
        True
    """
    start = time.perf_counter()
    manifest = load_manifest(repo_id_or_dir, revision=revision, token=token)
    src_arg, loader = _manifest_source(manifest, source)
    sel, enc = manifest.selection, manifest.encoder
    if log:
        log(f"re-running {sel.strategy} on {manifest.source.id} with encoder {enc.name} @ {enc.revision}")
    result = select_subset(
        src_arg,
        **_recorded_options(manifest),
        token=token,
        use_cache=use_cache,
        progress=progress,
        engine=engine,
        ray_address=ray_address,
        log=log,
        **loader,
    )
    differences = _content_differences(manifest, result.manifest)
    published = _published_rows(repo_id_or_dir, revision=revision, token=token)
    if published is not None:
        differences += _published_differences(manifest, published)
    return _compare(manifest, result.manifest, differences, start)


def _compare(recorded: SelectionManifest, rebuilt: SelectionManifest, differences: list[str], start: float) -> RebuildReport:
    """The report: identical when the same row ids were selected and nothing else differs."""
    expected, now = recorded.row_indices, rebuilt.row_indices
    return RebuildReport(
        identical=expected == now and not differences,
        n_expected=len(expected),
        n_rebuilt=len(now),
        missing=sorted(set(expected) - set(now)),
        extra=sorted(set(now) - set(expected)),
        manifest=recorded,
        seconds=time.perf_counter() - start,
        differences=differences,
    )


def _recorded_options(manifest: SelectionManifest) -> dict[str, Any]:
    """The :func:`select_subset` options that re-run the selection a manifest records."""
    sel, enc, cols, filt = manifest.selection, manifest.encoder, manifest.columns, manifest.filter
    encoder_params = enc.params or {}
    return {
        "ratio": sel.ratio if sel.size is None else None,
        "size": sel.size,
        "strategy": sel.strategy,
        "encoder": enc.name,
        "encoder_revision": enc.revision,
        "encoder_dtype": encoder_params.get("dtype", "float32"),
        "embedding_dtype": encoder_params.get("storage", "float32"),
        "max_tokens": encoder_params.get("max_tokens"),
        "n_clusters": None if sel.n_clusters_auto else sel.n_clusters,
        "seed": sel.seed,
        "group_by": sel.group_by,
        # Manifests from before strata existed selected without them.
        "stratify_by": sel.stratify_by or [],
        "template_column": sel.template_column,
        "filters": filt.filters,
        "tasks": filt.tasks or None,
        "text_fields": manifest.text_fields,
        "input_columns": list(cols.inputs) or None,
        "target_column": cols.target,
        "task_column": filt.task_column or cols.task,
        # Manifests from before the bounded engine fitted k-means on every row.
        "kmeans_sample": sel.kmeans_sample,
        # The algorithm names the backend ("faiss-kmeans ..."); every other one is scikit-learn's.
        "kmeans_backend": "faiss" if (sel.algorithm or "").startswith("faiss") else "sklearn",
    }


def _content_differences(recorded: SelectionManifest, rebuilt: SelectionManifest) -> list[str]:
    """What differs between the recorded and the re-run selection beyond the row ids."""
    out = []
    was, now = recorded.source.fingerprint, rebuilt.source.fingerprint
    if was and now and was != now:
        out.append(f"the source data differs from the recorded one (fingerprint {now[:12]} now, {was[:12]} recorded)")
    now_sha = {r.row: r.sha for r in rebuilt.selected}
    changed = [r.row for r in recorded.selected if r.sha and r.row in now_sha and now_sha[r.row] != r.sha]
    if changed:
        out.append(f"{len(changed)} selected rows have other content now than recorded (rows {_first(changed)})")
    return out


def _published_differences(recorded: SelectionManifest, published: datasets.Dataset) -> list[str]:
    """Whether the published Parquet holds exactly the recorded rows' content, in order."""
    hashes = [r.sha for r in recorded.selected]
    if not all(hashes):
        return []  # a manifest from before per-row hashes: nothing to compare the rows with
    if len(published) != len(hashes):
        return [f"the published data has {len(published)} rows, the manifest records {len(hashes)}"]
    now = row_hashes(published)
    changed = [r.row for r, h in zip(recorded.selected, now) if h != r.sha]
    if changed:
        return [f"{len(changed)} published rows differ from the selected rows' recorded content (rows {_first(changed)})"]
    return []


def _first(rows: list[int], limit: int = 5) -> str:
    return ", ".join(map(str, rows[:limit])) + (f", ... ({len(rows) - limit} more)" if len(rows) > limit else "")


def _published_rows(repo_id_or_dir, *, revision: str | None, token: str | None) -> datasets.Dataset | None:
    """The rows a subset folder or Hub repo publishes, or None when there are none to read (a bare manifest)."""
    import datasets

    from ltd_hub.data.sources import no_progress_bars
    from ltd_hub.hub import gateway as hub

    path = Path(os.path.expanduser(os.fspath(repo_id_or_dir)))
    if path.is_file():
        return None
    if path.is_dir():
        local = path / PARQUET_PATH
        if not local.is_file():
            return None
    else:
        try:
            local = Path(hub.download(os.fspath(repo_id_or_dir), PARQUET_PATH, repo_type="dataset", revision=revision, token=token))
        except MissingFileError:
            return None
    with no_progress_bars():
        return datasets.Dataset.from_parquet(str(local), keep_in_memory=True)
