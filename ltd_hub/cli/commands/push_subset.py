"""``ltd-hub push-subset``: select a coreset of instruction data and push it as a Hub dataset."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from ltd_hub.cli.commands import add_visibility_arguments
from ltd_hub.configs import CONFIG_SUFFIXES, ConfigMixin, add_dataclass_flags, exclusive, parse_configs
from ltd_hub.errors import UsageError
from ltd_hub.selection import DEFAULT_GROUPED_STRATEGY, DEFAULT_STRATEGY, STRATEGY_NAMES


def _say(message: str) -> None:
    from ltd_hub.redact import redact

    # Progress lines echo paths and ids the user typed; a token pasted there must not show.
    print(redact(message), file=sys.stderr, flush=True)


def _opt(help: str, **extra: Any) -> dict[str, Any]:
    return {"help": help, **extra}


@dataclass
class SourceOptions(ConfigMixin):
    """Where the rows come from (the SOURCE arguments are positional, or ``source:`` in ``--config``)."""

    _argument_group_name: ClassVar[str] = "source"

    source: list[str] = field(
        default_factory=list,
        metadata=_opt("local file, folder or glob (JSONL, JSON, .gz, Parquet, CSV), SuperNI task files, or a Hub dataset id"),
    )
    config: str | None = field(
        default=None,
        metadata=_opt(
            f"Hub dataset config name (a file ending in {' or '.join(CONFIG_SUFFIXES)} is read as this command's options instead)"
        ),
    )
    split: str | None = field(default=None, metadata=_opt("Hub dataset split (default train)"))
    revision: str | None = field(default=None, metadata=_opt("Hub dataset branch, tag or commit"))
    input_columns: list[str] | None = field(
        default=None,
        metadata=_opt(
            "column(s) holding the prompt (repeatable; default detected, e.g. inputs)",
            action="append",
            aliases=["--input-column"],
            metavar="COLUMN",
        ),
    )
    target_column: str | None = field(default=None, metadata=_opt("column holding the answer (default detected, e.g. targets)"))
    task_column: str | None = field(default=None, metadata=_opt("column naming the task or source dataset (default detected)"))


@dataclass
class FilterOptions(ConfigMixin):
    """Which rows of the source are the task (task specialisation)."""

    _argument_group_name: ClassVar[str] = "task specialisation"

    filters: list[str] = field(
        default_factory=list,
        metadata=_opt(
            "keep rows whose COLUMN matches VALUE (glob); repeatable: same column OR, different columns AND",
            action="append", aliases=["--filter"], metavar="COLUMN=VALUE",
        ),
    )  # fmt: skip
    tasks: str | None = field(
        default=None, metadata=_opt("task names (comma-separated globs) or a file with one name a line", metavar="NAMES|FILE")
    )


@dataclass
class SelectionOptions(ConfigMixin):
    """How many rows and how they are chosen."""

    _argument_group_name: ClassVar[str] = "selection"

    ratio: float | None = field(default=None, metadata=_opt("share of the filtered rows to select (default 0.005)", metavar="RATIO"))
    size: int | None = field(default=None, metadata=_opt("number of rows to select", metavar="SIZE"))
    strategy: str | None = field(
        default=None,
        metadata=_opt(
            f"in-cluster rule: {', '.join(STRATEGY_NAMES)} (default {DEFAULT_GROUPED_STRATEGY} with --group-by, "
            f"else {DEFAULT_STRATEGY}; the README says how to choose)",
            metavar="STRATEGY",
        ),
    )
    n_clusters: int | None = field(
        default=None, metadata=_opt("k for k-means (default automatic: sqrt(n/2), recorded)", metavar="N_CLUSTERS")
    )
    seed: int = field(default=0, metadata=_opt("seed of k-means and random choices", metavar="SEED"))
    group_by: str | None = field(
        default=None,
        metadata=_opt(
            "rows sharing COLUMN's value are one example (templated copies, e.g. source in P3-style pools): "
            "select examples, then one row each with the pool's template mix",
            metavar="COLUMN",
        ),
    )
    stratify_by: list[str] | None = field(
        default=None,
        metadata=_opt(
            "keep this column's mix exactly (repeatable; 'label' = the target's answer choice). "
            "Default: label and the task column for clustered strategies",
            action="append", metavar="COLUMN",
        ),
    )  # fmt: skip
    no_stratify: bool = field(default=False, metadata=_opt("no strata, not even the default ones"))
    template_column: str | None = field(
        default=None, metadata=_opt("column naming the prompt template (default detected, e.g. template_name)", metavar="COLUMN")
    )
    kmeans_sample: int | None = field(
        default=None,
        metadata=_opt(
            "fit k-means on a seeded sample of ROWS rows per cluster (e.g. 256) and assign the rows in "
            "chunks: bounded memory on large pools; recorded (default: every row)",
            metavar="ROWS",
        ),
    )
    kmeans_backend: Literal["sklearn", "faiss"] = field(
        default="sklearn",
        metadata=_opt(
            "who fits k-means: sklearn (mini-batches), or faiss (full Lloyd iterations, multi-threaded, GPUs with faiss-gpu; pip install faiss-cpu); "
            "recorded, and the two select different rows"
        ),
    )


@dataclass
class EncoderOptions(ConfigMixin):
    """The model that embeds the rows for clustering."""

    _argument_group_name: ClassVar[str] = "encoder"

    encoder: str | None = field(
        default=None, metadata=_opt("minilm (default), lexical, sentence-transformers:<hub id>, causal-lm:<hub id>")
    )
    encoder_revision: str | None = field(default=None, metadata=_opt("pin the encoder model revision"))
    encoder_dtype: str = field(default="float32", metadata=_opt("float32, bfloat16 or float16 weights"))
    embedding_dtype: Literal["float32", "float16"] = field(
        default="float32",
        metadata=_opt("embeddings in the cache: float32, or float16 (half the disk on large pools; recorded, a different selection)"),
    )
    batch_size: int | None = field(
        default=None, metadata=_opt("rows per forward pass (default 64; 16 for causal LMs)", metavar="BATCH_SIZE")
    )
    max_tokens: int | None = field(
        default=None, metadata=_opt("encoder window; longer rows are truncated and counted", metavar="MAX_TOKENS")
    )
    device: str | None = field(default=None, metadata=_opt("torch device for the encoder (default CUDA when available)"))
    text_fields: str | None = field(
        default=None, metadata=_opt("comma-separated columns to embed (default the prompt columns and the target)")
    )
    no_target: bool = field(default=False, metadata=_opt("embed the prompt only, not the target"))
    no_cache: bool = field(default=False, metadata=_opt("re-encode even when cached embeddings exist"))


@dataclass
class EngineOptions(ConfigMixin):
    """Where the selection runs (shared by push-subset and rebuild-subset)."""

    _argument_group_name: ClassVar[str] = "engine"

    engine: Literal["local", "ray"] = field(
        default="local",
        metadata=_opt(
            "local (this process, embeddings memory-mapped) or ray (reading the source, encoding, assignment and "
            "per-cluster picking on a Ray cluster; same ids; needs pip install 'ltd-hub[ray]')"
        ),
    )
    ray_address: str | None = field(
        default=None, metadata=_opt("Ray cluster for --engine ray (default RAY_ADDRESS, else a local Ray)", metavar="ADDRESS")
    )


@dataclass
class OutputOptions(ConfigMixin):
    """Where the subset goes and how its card reads (``--token`` is a flag only: never put it in a file)."""

    _argument_group_name: ClassVar[str] = "output"

    repo_id: str | None = field(default=None, metadata=_opt("NAMESPACE/NAME of the dataset repo (required unless --dry-run)"))
    private: bool | None = None  # --private / --public (add_visibility_arguments)
    license: str | None = field(default=None, metadata=_opt("card license when the source declares none (e.g. cc-by-4.0)"))
    language: list[str] | None = field(default=None, metadata=_opt("card language code (repeatable; default en)", action="append"))
    pretty_name: str | None = field(default=None, metadata=_opt("card pretty_name"))
    commit_message: str | None = field(default=None, metadata=_opt("commit summary"))
    dry_run: bool = field(default=False, metadata=_opt("push nothing; with --output-dir, write exactly the files it would push"))
    output_dir: str | None = field(default=None, metadata=_opt("with --dry-run: folder for the files", metavar="OUTPUT_DIR"))
    format: Literal["text", "json"] = field(default="text", metadata=_opt("final output: text or one JSON object"))


#: push-subset's options, one dataclass per help section; a ``--config`` YAML file holds their keys in one mapping.
OPTION_CLASSES = (SourceOptions, FilterOptions, SelectionOptions, EncoderOptions, EngineOptions, OutputOptions)


def add_engine_arguments(parser) -> None:
    """``--engine`` and ``--ray-address`` (:class:`EngineOptions`), shared by push-subset and rebuild-subset."""
    add_dataclass_flags(parser, EngineOptions, negations=False)


def selection_kwargs(source: SourceOptions, filters: FilterOptions, sel: SelectionOptions, enc: EncoderOptions, eng: EngineOptions) -> dict:
    """The ``select_subset`` keyword arguments from parsed options."""
    return {
        "ratio": sel.ratio, "size": sel.size, "strategy": sel.strategy, "encoder": enc.encoder, "n_clusters": sel.n_clusters,
        "seed": sel.seed, "group_by": sel.group_by, "stratify_by": [] if sel.no_stratify else sel.stratify_by,
        "template_column": sel.template_column, "filters": filters.filters, "tasks": filters.tasks,
        "text_fields": [f.strip() for f in enc.text_fields.split(",") if f.strip()] if enc.text_fields else None,
        "include_target": not enc.no_target, "input_columns": source.input_columns, "target_column": source.target_column,
        "task_column": source.task_column, "config": source.config, "split": source.split, "revision": source.revision,
        "encoder_revision": enc.encoder_revision, "batch_size": enc.batch_size, "max_tokens": enc.max_tokens,
        "encoder_dtype": enc.encoder_dtype, "embedding_dtype": enc.embedding_dtype, "device": enc.device, "use_cache": not enc.no_cache, "engine": eng.engine,
        "kmeans_sample": sel.kmeans_sample, "kmeans_backend": sel.kmeans_backend, "ray_address": eng.ray_address,
    }  # fmt: skip


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "push-subset",
        help="select a ~0.5%% coreset of instruction data and push it with a dataset card and manifest",
        description="Select a coreset (embed, k-means, coreset sampling inside clusters) and push it to a Hub "
        "dataset repo as Parquet + README.md + selection_manifest.json in one commit. Every option is also a key "
        f"of a --config FILE{CONFIG_SUFFIXES[0]} (flags override it).",
    )
    groups = {cls._argument_group_name: parser.add_argument_group(cls._argument_group_name) for cls in OPTION_CLASSES}
    groups["source"].add_argument(
        "source",
        nargs="*",
        metavar="SOURCE",
        help="local file, folder or glob (JSONL, JSON, .gz, Parquet, CSV), SuperNI task files, or a Hub dataset id",
    )
    out = groups["output"]
    add_visibility_arguments(out, what="the repo", private_when="SOURCE is a private Hub dataset")
    add_dataclass_flags(parser, *OPTION_CLASSES)
    out.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login)")
    exclusive(parser, "ratio", "size")
    exclusive(parser, "stratify_by", "no_stratify")
    parser.set_defaults(func=run, argument_error=parser.error)


def parse_options(args) -> tuple[SourceOptions, FilterOptions, SelectionOptions, EncoderOptions, EngineOptions, OutputOptions]:
    """push-subset's options: a ``--config`` YAML file (when ``--config`` names one), overridden by the flags given.

    ``--config`` is also the Hub dataset config name (``load_dataset``'s ``name``), as it always was;
    a value ending in .yaml/.yml that names a file is read as the options file instead.
    """
    config = getattr(args, "config", None)
    options_file = config if config and config.lower().endswith(CONFIG_SUFFIXES) and Path(config).is_file() else None
    if options_file:
        del args.config  # the file, not the Hub dataset config name: `config:` in the file names that
    options = parse_configs(list(OPTION_CLASSES), args, config_file=options_file)
    if not options[0].source:
        # An argparse error, as when SOURCE was a required argument (the usage line and --help follow).
        args.argument_error(f"the following arguments are required: SOURCE (or source: in a --config FILE{CONFIG_SUFFIXES[0]})")
    return tuple(options)  # type: ignore[return-value]


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from ltd_hub.redact import looks_like_token

    if looks_like_token(repo_id):
        # As in hub.preflight_push: a dry run writes the repo id into the card and prints it.
        raise UsageError("the repo id looks like a Hub token (hf_...); pass NAMESPACE/NAME, and revoke the token if it was shared")
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise UsageError(f"invalid repo id {repo_id!r}; use NAMESPACE/NAME with letters, digits, '-', '_' or '.'") from None
    if repo_id.count("/") != 1:
        raise UsageError(f"invalid repo id {repo_id!r}; use NAMESPACE/NAME")


def run(args) -> int:
    source, filters, selection, encoder, engine, out = parse_options(args)
    card = {"license": out.license, "language": tuple(out.language or ("en",)), "pretty_name": out.pretty_name}
    kwargs = selection_kwargs(source, filters, selection, encoder, engine)
    if out.output_dir and not out.dry_run:
        raise UsageError("--output-dir is for --dry-run; drop it, or add --dry-run to write the files instead of pushing")
    if out.dry_run:
        return _dry_run(source.source, out, card, kwargs, token=args.token)
    from ltd_hub.selection.subset import push_subset

    if not out.repo_id:
        raise UsageError("--repo-id NAMESPACE/NAME is required (or use --dry-run --output-dir DIR)")
    pushed = push_subset(source.source, out.repo_id, private=out.private, commit_message=out.commit_message,
                         token=args.token, log=_say, **card, **kwargs)  # fmt: skip
    summary = pushed.summary()
    if out.format == "json":
        print(json.dumps(summary))
    else:
        print(pushed.result.quality.to_text())
        state = "pushed" if pushed.push.created_commit else "unchanged (the repo already had these files)"
        print(f"{summary['n_selected']} of {summary['n_filtered_rows']} rows ({100 * summary['ratio']:.3g}%) {state}: "
              f"{pushed.push.commit_url or pushed.push.url}")  # fmt: skip
    return 0


def _dry_run(sources: list[str], out: OutputOptions, card: dict, kwargs: dict, *, token: str | None) -> int:
    """Select without pushing; with --output-dir, write the files a push would commit."""
    import time

    from ltd_hub.selection.subset import select_subset, write_subset_files

    start = time.perf_counter()
    repo_id = out.repo_id or "local/subset"
    _check_repo_id(repo_id)
    output_dir = Path(out.output_dir) if out.output_dir else None
    if output_dir and output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output-dir {output_dir} is a file; give a folder")
    result = select_subset(sources, token=token, log=_say, **kwargs)
    written = write_subset_files(result, output_dir, repo_id=repo_id, log=_say, **card) if output_dir else []
    s = result.stats
    summary = {
        "repo_id": out.repo_id,
        "commit_url": None,
        "revision": None,
        **result.summary(),
        "seconds": round(time.perf_counter() - start, 3),
        "dry_run": True,
        "output_dir": str(output_dir) if output_dir else None,
    }
    if out.format == "json":
        print(json.dumps(summary))
    else:
        print(result.quality.to_text())
        where = f"written to {output_dir} ({', '.join(p.name for p in written)})" if written else "nothing written (no --output-dir)"
        print(f"dry run: {s.n_selected} of {s.n_filtered_rows} rows ({100 * s.ratio:.3g}%) selected, nothing pushed; {where}")
    return 0
