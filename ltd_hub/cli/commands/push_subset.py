"""``ltd-hub push-subset``: select a coreset of instruction data and push it as a Hub dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ltd_hub.cli.commands import add_visibility_arguments
from ltd_hub.errors import UsageError
from ltd_hub.selection import DEFAULT_GROUPED_STRATEGY, DEFAULT_STRATEGY, STRATEGY_NAMES


def _say(message: str) -> None:
    from ltd_hub.redact import redact

    # Progress lines echo paths and ids the user typed; a token pasted there must not show.
    print(redact(message), file=sys.stderr, flush=True)


def add_selection_arguments(parser) -> None:
    """Source, filter, selection and encoder options shared by commands that select subsets."""
    src = parser.add_argument_group("source")
    src.add_argument("source", nargs="+", metavar="SOURCE",
                     help="local file, folder or glob (JSONL, JSON, .gz, Parquet, CSV), SuperNI task files, or a Hub dataset id")  # fmt: skip
    src.add_argument("--config", help="Hub dataset config name")
    src.add_argument("--split", help="Hub dataset split (default train)")
    src.add_argument("--revision", help="Hub dataset branch, tag or commit")
    src.add_argument("--input-column", action="append", dest="input_columns", metavar="COLUMN",
                     help="column(s) holding the prompt (repeatable; default detected, e.g. inputs)")  # fmt: skip
    src.add_argument("--target-column", help="column holding the answer (default detected, e.g. targets)")
    src.add_argument("--task-column", help="column naming the task or source dataset (default detected)")
    flt = parser.add_argument_group("task specialisation")
    flt.add_argument("--filter", action="append", dest="filters", default=[], metavar="COLUMN=VALUE",
                     help="keep rows whose COLUMN matches VALUE (glob); repeatable: same column OR, different columns AND")  # fmt: skip
    flt.add_argument("--tasks", metavar="NAMES|FILE", help="task names (comma-separated globs) or a file with one name a line")
    sel = parser.add_argument_group("selection")
    size = sel.add_mutually_exclusive_group()
    size.add_argument("--ratio", type=float, help="share of the filtered rows to select (default 0.005)")
    size.add_argument("--size", type=int, help="number of rows to select")
    sel.add_argument("--strategy",
                     help=f"in-cluster rule: {', '.join(STRATEGY_NAMES)} (default {DEFAULT_GROUPED_STRATEGY} with --group-by, "
                          f"else {DEFAULT_STRATEGY}; the README says how to choose)")  # fmt: skip
    sel.add_argument("--n-clusters", type=int, help="k for k-means (default automatic: sqrt(n/2), recorded)")
    sel.add_argument("--seed", type=int, default=0, help="seed of k-means and random choices (default 0)")
    sel.add_argument("--group-by", metavar="COLUMN",
                     help="rows sharing COLUMN's value are one example (templated copies, e.g. source in P3-style pools): "
                          "select examples, then one row each with the pool's template mix")  # fmt: skip
    strata = sel.add_mutually_exclusive_group()
    strata.add_argument("--stratify-by", action="append", metavar="COLUMN",
                        help="keep this column's mix exactly (repeatable; 'label' = the target's answer choice). "
                             "Default: label and the task column for clustered strategies")  # fmt: skip
    strata.add_argument("--no-stratify", action="store_true", help="no strata, not even the default ones")
    sel.add_argument("--template-column", metavar="COLUMN", help="column naming the prompt template (default detected, e.g. template_name)")
    enc = parser.add_argument_group("encoder")
    enc.add_argument("--encoder", default=None,
                     help="minilm (default), lexical, sentence-transformers:<hub id>, causal-lm:<hub id>")  # fmt: skip
    enc.add_argument("--encoder-revision", help="pin the encoder model revision")
    enc.add_argument("--encoder-dtype", default="float32", help="float32 (default), bfloat16 or float16 weights")
    enc.add_argument("--batch-size", type=int, help="rows per forward pass (default 64; 16 for causal LMs)")
    enc.add_argument("--max-tokens", type=int, help="encoder window; longer rows are truncated and counted")
    enc.add_argument("--device", help="torch device for the encoder (default CUDA when available)")
    enc.add_argument("--text-fields", help="comma-separated columns to embed (default the prompt columns and the target)")
    enc.add_argument("--no-target", action="store_true", help="embed the prompt only, not the target")
    enc.add_argument("--no-cache", action="store_true", help="re-encode even when cached embeddings exist")
    eng = add_engine_arguments(parser)
    eng.add_argument("--kmeans-sample", type=int, metavar="ROWS",
                     help="fit k-means on a seeded sample of ROWS rows per cluster (e.g. 256) and assign the rows in "
                          "chunks: bounded memory on large pools; recorded (default: every row)")  # fmt: skip


def add_engine_arguments(parser):
    """``--engine`` and ``--ray-address``, shared by push-subset and rebuild-subset; returns the group."""
    eng = parser.add_argument_group("engine")
    eng.add_argument("--engine", choices=["local", "ray"], default="local",
                     help="local (default: this process, embeddings memory-mapped) or ray (encoding, assignment and "
                          "per-cluster picking on a Ray cluster; same ids; needs pip install 'ltd-hub[ray]')")  # fmt: skip
    eng.add_argument("--ray-address", metavar="ADDRESS",
                     help="Ray cluster for --engine ray (default RAY_ADDRESS, else a local Ray)")  # fmt: skip
    return eng


def selection_kwargs(args) -> dict:
    """The ``select_subset`` keyword arguments from parsed options."""
    return {
        "ratio": args.ratio,
        "size": args.size,
        "strategy": args.strategy,
        "encoder": args.encoder,
        "n_clusters": args.n_clusters,
        "seed": args.seed,
        "group_by": args.group_by,
        "stratify_by": [] if args.no_stratify else args.stratify_by,
        "template_column": args.template_column,
        "filters": args.filters,
        "tasks": args.tasks,
        "text_fields": [f.strip() for f in args.text_fields.split(",") if f.strip()] if args.text_fields else None,
        "include_target": not args.no_target,
        "input_columns": args.input_columns,
        "target_column": args.target_column,
        "task_column": args.task_column,
        "config": args.config,
        "split": args.split,
        "revision": args.revision,
        "encoder_revision": args.encoder_revision,
        "batch_size": args.batch_size,
        "max_tokens": args.max_tokens,
        "encoder_dtype": args.encoder_dtype,
        "device": args.device,
        "use_cache": not args.no_cache,
        "engine": args.engine,
        "kmeans_sample": args.kmeans_sample,
        "ray_address": args.ray_address,
    }


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "push-subset",
        help="select a ~0.5%% coreset of instruction data and push it with a dataset card and manifest",
        description="Select a coreset (embed, k-means, coreset sampling inside clusters) and push it to a Hub "
        "dataset repo as Parquet + README.md + selection_manifest.json in one commit.",
    )
    add_selection_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--repo-id", help="NAMESPACE/NAME of the dataset repo (required unless --dry-run)")
    add_visibility_arguments(out, what="the repo", private_when="SOURCE is a private Hub dataset")
    out.add_argument("--license", help="card license when the source declares none (e.g. cc-by-4.0)")
    out.add_argument("--language", action="append", help="card language code (repeatable; default en)")
    out.add_argument("--pretty-name", help="card pretty_name")
    out.add_argument("--commit-message", help="commit summary")
    out.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login)")
    out.add_argument("--dry-run", action="store_true", help="push nothing; with --output-dir, write exactly the files it would push")
    out.add_argument("--output-dir", type=Path, help="with --dry-run: folder for the files")
    out.add_argument("--format", choices=["text", "json"], default="text", help="final output: text (default) or one JSON object")
    parser.set_defaults(func=run)


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
    import time

    from ltd_hub.selection.subset import push_subset, select_subset, write_subset_files

    log = _say
    card = {"license": args.license, "language": tuple(args.language or ("en",)), "pretty_name": args.pretty_name}
    kwargs = selection_kwargs(args)
    if args.output_dir and not args.dry_run:
        raise UsageError("--output-dir is for --dry-run; drop it, or add --dry-run to write the files instead of pushing")
    if not args.dry_run:
        if not args.repo_id:
            raise UsageError("--repo-id NAMESPACE/NAME is required (or use --dry-run --output-dir DIR)")
        out = push_subset(args.source, args.repo_id, private=args.private, commit_message=args.commit_message,
                          token=args.token, log=log, **card, **kwargs)  # fmt: skip
        summary = out.summary()
        if args.format == "json":
            print(json.dumps(summary))
        else:
            print(out.result.quality.to_text())
            state = "pushed" if out.push.created_commit else "unchanged (the repo already had these files)"
            print(f"{summary['n_selected']} of {summary['n_filtered_rows']} rows ({100 * summary['ratio']:.3g}%) {state}: "
                  f"{out.push.commit_url or out.push.url}")  # fmt: skip
        return 0

    start = time.perf_counter()
    repo_id = args.repo_id or "local/subset"
    _check_repo_id(repo_id)
    if args.output_dir and args.output_dir.exists() and not args.output_dir.is_dir():
        raise UsageError(f"--output-dir {args.output_dir} is a file; give a folder")
    result = select_subset(args.source, token=args.token, log=log, **kwargs)
    written = write_subset_files(result, args.output_dir, repo_id=repo_id, log=log, **card) if args.output_dir else []
    s = result.stats
    summary = {
        "repo_id": args.repo_id,
        "commit_url": None,
        "revision": None,
        "n_source_rows": s["n_source_rows"],
        "n_filtered_rows": s["n_filtered_rows"],
        "n_selected": s["n_selected"],
        "ratio": s["ratio"],
        "strategy": s["strategy"],
        "group_by": s["group_by"],
        "stratify_by": s["stratify_by"],
        "quality": result.quality.to_dict(),
        "seconds": round(time.perf_counter() - start, 3),
        "dry_run": True,
        "output_dir": str(args.output_dir) if args.output_dir else None,
    }
    if args.format == "json":
        print(json.dumps(summary))
    else:
        print(result.quality.to_text())
        where = f"written to {args.output_dir} ({', '.join(p.name for p in written)})" if written else "nothing written (no --output-dir)"
        print(f"dry run: {s['n_selected']} of {s['n_filtered_rows']} rows ({100 * s['ratio']:.3g}%) selected, nothing pushed; {where}")
    return 0
