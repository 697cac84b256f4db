"""``ltd-hub reproduce --config FILE.yaml``: every arm of the LTD comparison, with table and plot."""

from __future__ import annotations

import argparse
import json
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="run the paper's comparison (coreset vs random vs full data) end to end",
        description=(
            "Select, train and evaluate every arm of an experiment config (experiments/*.yaml): base model, "
            "full task data, coreset, random subsets, ratio sweep and ablations. Finished stages are cached "
            "under the output dir, so a re-run resumes. Writes results.json, results.md and a plot."
        ),
    )
    parser.add_argument("--config", required=True, help="experiment YAML (e.g. experiments/nli-cpu.yaml)")
    parser.add_argument("--output-dir", help="override output_dir of the config")
    parser.add_argument("--push", action="store_true", help="publish subsets, adapters and a results dataset (needs push.namespace)")
    parser.add_argument("--only", nargs="+", metavar="KIND", help="run only these arm kinds (base coreset random full sweep sweep-random ablation)")
    parser.add_argument("--dry-run", action="store_true", help="print the planned arms and exit")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="what to print at the end")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ltd_hub.errors import UsageError
    from ltd_hub.reproduce import ReproduceConfig, plan_arms, reproduce, results_table

    config = ReproduceConfig.from_yaml(args.config)
    if args.output_dir:
        config = dataclasses.replace(config, output_dir=args.output_dir)
    arms = plan_arms(config)
    if args.only:
        kinds = {arm.kind for arm in arms}
        unknown = sorted(set(args.only) - kinds)
        if unknown:
            raise UsageError(f"--only {unknown[0]} matches no arm of this config; kinds here: {', '.join(sorted(kinds))}")
    if args.dry_run:
        for arm in arms:
            if not args.only or arm.kind in args.only:
                print(f"{arm.kind:13s} {arm.name}")
        return 0
    started = time.perf_counter()
    results = reproduce(config, push=args.push or None, only=args.only)
    seconds = round(time.perf_counter() - started, 1)
    if args.format == "json":
        print(json.dumps({"output_dir": config.output_dir, "arms": len(results["arms"]), "seconds": seconds}))
    else:
        print(results_table(results))
        print(f"\nwrote {config.output_dir}/results.json, results.md, accuracy_vs_fraction.png ({seconds} s)")
    return 0
