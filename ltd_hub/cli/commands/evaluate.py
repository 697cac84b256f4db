"""``ltd-hub evaluate``: rank-classification accuracy of an adapter (or its base model) on eval data."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate an adapter by rank classification (and record the results in its card)",
        description=(
            "Score every answer choice of each eval row by its log-likelihood given the prompt (formatted as in "
            "training) and report accuracy per eval set and template: mean and median over templates, the "
            "number of examples and a 95% bootstrap interval. The JSON report (--output, --format json) also holds "
            'every example\'s prediction, gold answer and correctness ("predictions"), for paired comparisons. '
            "--push records the results in the adapter repo's model card (model-index) in a new commit, keeping "
            "the rest of the card."
        ),
    )
    parser.add_argument("--adapter", metavar="REPO_OR_DIR", help="adapter Hub repo id or local folder")
    parser.add_argument(
        "--eval-data",
        nargs="+",
        required=True,
        metavar="PATH_OR_REPO",
        help="eval files/folders/dataset repos with inputs, targets, answer_choices",
    )
    parser.add_argument("--base-only", action="store_true", help="evaluate the base model without the adapter (baseline row)")
    parser.add_argument("--base-model", metavar="HUB_ID", help="base model for --base-only without --adapter")
    parser.add_argument("--revision", help="adapter repo revision (default: its head)")
    parser.add_argument("--templates", type=int, metavar="N", help="keep the first N templates of each eval set")
    parser.add_argument("--max-examples", type=int, metavar="N", help="keep the first N examples of each template")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=16,
        metavar="N",
        help="prompt + answer sequences per forward pass; each prompt runs once and all its answers are scored from its KV cache (default 16)",
    )
    parser.add_argument("--exact-match", action="store_true", help="also generate answers and report exact match")
    parser.add_argument("--max-new-tokens", type=int, default=8, metavar="N", help="generation length for --exact-match (default 8)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples for the interval (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="bf16 weights (default: when supported)")
    parser.add_argument("--push", action="store_true", help="record the results in the adapter repo's card (new commit)")
    parser.add_argument("--no-record", dest="record", action="store_false", help="do not write results into a local adapter folder")
    parser.add_argument("--per-template", action="store_true", help="also print accuracy per template")
    parser.add_argument("--output", metavar="FILE.json", help="write the full report as JSON")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="stdout format (default table)")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ltd_hub.errors import UsageError
    from ltd_hub.evaluation.evaluator import evaluate_adapter
    from ltd_hub.files import atomic_write_json

    if args.output and not Path(args.output).expanduser().resolve().parent.is_dir():
        raise UsageError(f"--output {args.output}: its folder does not exist")
    report = evaluate_adapter(
        args.adapter,
        args.eval_data,
        base_only=args.base_only,
        base_model=args.base_model,
        revision=args.revision,
        templates=args.templates,
        max_examples=args.max_examples,
        batch_size=args.batch_size,
        exact_match=args.exact_match,
        max_new_tokens=args.max_new_tokens,
        bootstrap=args.bootstrap,
        seed=args.seed,
        bf16=args.bf16,
        push=args.push,
        record=args.record,
        token=args.token,
    )
    data = report.to_dict()
    if args.output:
        atomic_write_json(Path(args.output).expanduser(), data)
    if args.format == "json":
        json.dump(data, sys.stdout, indent=2)
        print()
    else:
        print(report.to_markdown(per_template=args.per_template))
        if report.push is not None:
            state = report.push.state
            print(f"results recorded in {args.adapter} ({state})")
            print(report.push.commit_url or report.push.url)
    return 0
