"""``ltd-hub reproduce --config FILE.yaml``: every arm of the LTD comparison, with table and plot.

The experiment is the YAML file (:class:`ltd_hub.pipelines.reproduce.ReproduceConfig`); the command's
own options are :class:`ReproduceOptions`, flags built by :mod:`ltd_hub.configs` like every command's.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Literal

from ltd_hub.configs import ConfigMixin


@dataclass
class ReproduceOptions(ConfigMixin):
    """What to do with an experiment config: run it (all, some arms, a shard), plan it, or summarize it."""

    config: str = field(metadata={"help": "experiment YAML (e.g. experiments/nli-cpu.yaml)", "metavar": "FILE.yaml"})
    output_dir: str | None = field(
        default=None, metadata={"help": "override output_dir of the config (the local stage cache)", "metavar": "DIR"}
    )
    results_dir: str | None = field(
        default=None,
        metadata={"help": "override results_dir of the config (where result files and the summary go)", "metavar": "DIR"},
    )
    checkpoint_dir: str | None = field(
        default=None,
        metadata={
            "help": "override checkpoint_dir of the config (training checkpoints that --max-minutes leaves to resume)",
            "metavar": "DIR",
        },
    )
    push: bool = field(default=False, metadata={"help": "publish subsets, adapters and a results dataset (needs push.namespace)"})
    only: list[str] | None = field(
        default=None,
        metadata={
            "help": "run only these: arm kinds (base, full, subset, coreset, random, ...), arm names or their slugs, or run ids (see --dry-run)",
            "metavar": "ARM",
        },
    )
    shard: str | None = field(
        default=None,
        metadata={"help": "run only the I-th of N interleaved shares of the plan (one per machine or session)", "metavar": "I/N"},
    )
    max_minutes: float | None = field(
        default=None,
        metadata={
            "help": "stop after M minutes: no run starts later, and a run still training saves a checkpoint and stops "
            "(the next reproduce resumes it; an evaluation under way finishes)",
            "metavar": "M",
        },
    )
    dry_run: bool = field(
        default=False, metadata={"help": "validate the whole config and print the run plan (done / to run, est. steps); run nothing"}
    )
    summary: bool = field(default=False, metadata={"help": "rebuild results.md/json and the plot from the result files; run nothing"})
    format: Literal["table", "json"] = field(default="table", metadata={"help": "what to print at the end"})


def register(subparsers: argparse._SubParsersAction) -> None:
    from ltd_hub.configs import add_dataclass_flags

    parser = subparsers.add_parser(
        "reproduce",
        help="run the paper's comparison (coreset vs random vs full data) end to end",
        description=(
            "Select, train and evaluate every run (arm x selection seed x training seed) of an experiment config "
            "(experiments/*.yaml). Each finished run writes a small result file under <results_dir>/arms/ "
            "(default docs/results/<name>/arms/, meant to be committed); a run whose result file matches its "
            "hash is done and is not trained again, so a comparison can be split over sessions and machines. "
            "The summary (results.md with mean ± sd and paired bootstrap differences, results.json, a plot) "
            "is rebuilt from the result files. Local stages are cached under output_dir, so a re-run resumes."
        ),
    )
    add_dataclass_flags(parser, ReproduceOptions, negations=False)  # no options file: nothing to turn off
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import os
    from pathlib import Path

    from ltd_hub.configs import parse_config
    from ltd_hub.errors import UsageError
    from ltd_hub.pipelines.reproduce import ReproduceConfig, dry_run, parse_shard, reproduce, results_table, write_summary

    args = parse_config(ReproduceOptions, args)
    config = ReproduceConfig.from_yaml(args.config)
    overrides = {}
    if args.output_dir:
        overrides["output_dir"] = os.path.abspath(args.output_dir)
    if args.results_dir:
        overrides["results_dir"] = os.path.abspath(args.results_dir)
    if args.checkpoint_dir:
        overrides["checkpoint_dir"] = os.path.abspath(args.checkpoint_dir)
    if overrides:
        config = dataclasses.replace(config, **overrides)
        config.validate()
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise UsageError(f"--max-minutes must be > 0, got {args.max_minutes}")
    shard = parse_shard(args.shard) if args.shard else None
    if args.dry_run:
        print(dry_run(config, only=args.only, shard=shard))
        return 0
    if args.summary:
        results = write_summary(config)
        print(results_table(results))
        return 0
    started = time.perf_counter()
    results = reproduce(config, push=args.push or None, only=args.only, shard=shard, max_minutes=args.max_minutes)
    seconds = round(time.perf_counter() - started, 1)
    folder = Path(config.results_dir or config.output_dir)
    if args.format == "json":
        print(json.dumps({"results_dir": str(folder), "ran": results["ran"], "left": results["left"], "stopped": results["stopped"],
                          "runs_done": results["runs_done"], "runs_planned": results["runs_planned"], "seconds": seconds}))  # fmt: skip
    else:
        print(results_table(results))
        stopped = f", {len(results['stopped'])} of them stopped at a checkpoint" if results["stopped"] else ""
        left = f"; {len(results['left'])} left for later (--max-minutes){stopped}" if results["left"] else ""
        print(f"\nran {len(results['ran'])} runs in {seconds} s{left}; wrote {folder}/arms/*.json, results.md, results.json")
    return 0
