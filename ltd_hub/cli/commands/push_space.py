"""``ltd-hub push-space``: publish the full-vs-0.5% comparison as a Gradio Space."""

from __future__ import annotations

import argparse
import sys

from ltd_hub.cli.commands import add_visibility_arguments
from ltd_hub.redact import secret


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push-space",
        help="publish a Gradio Space comparing the full-data and 0.5%%-data adapters",
        description=(
            "Create or update a Gradio Space (app.py, pinned requirements.txt, space_config.json, README "
            "with Spaces front matter) that shows the full-data and 0.5%%-subset adapters side by side, "
            "pushed in one commit. Inputs are checked before anything is pushed."
        ),
    )
    parser.add_argument("--repo-id", required=True, help="the Space repo, NAMESPACE/NAME")
    parser.add_argument("--full", required=True, metavar="ADAPTER_ID", help="adapter trained on the full task data")
    parser.add_argument("--subset", required=True, metavar="ADAPTER_ID", help="adapter trained on the 0.5%% subset")
    parser.add_argument("--random", metavar="ADAPTER_ID", help="optional adapter trained on a random 0.5%% subset")
    parser.add_argument("--base-model", metavar="ID", help="base model Hub id (default: read from the adapters)")
    parser.add_argument(
        "--examples",
        nargs="+",
        default=[],
        metavar="EVAL_DATA",
        help="held-out eval data to bundle examples from: .jsonl[.gz]/.json/.parquet files, folders or Hub dataset ids",
    )
    parser.add_argument("--num-examples", type=int, default=8, help="examples to bundle (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="example sampling seed (default 0)")
    parser.add_argument("--subset-dataset", metavar="ID", help="subset dataset id (default: from the subset adapter's card)")
    parser.add_argument("--full-data", metavar="ID", help="full data id or description (default: from the full adapter's card)")
    parser.add_argument("--title", help="Space title")
    parser.add_argument("--short-description", help="at most 60 characters")
    parser.add_argument("--license", help="Space license (default: the full adapter's, else apache-2.0)")
    parser.add_argument(
        "--hardware", metavar="FLAVOR",
        help="suggested_hardware in the README front matter, e.g. zero-a10g (ZeroGPU: the app then runs its models "
        "under @spaces.GPU) or t4-small; the Space runs on CPU without it",
    )  # fmt: skip
    add_visibility_arguments(parser, what="the Space", private_when="an adapter or the data it shows is private")
    parser.add_argument("--local-dir", metavar="DIR", help="also write the Space files into DIR")
    parser.add_argument("--token", type=secret, help="Hub token (default: HF_TOKEN or the stored login)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ltd_hub.spaces.publish import push_space

    spec, result = push_space(
        args.repo_id,
        full=args.full,
        subset=args.subset,
        random_adapter=args.random,
        base_model=args.base_model,
        examples=args.examples,
        num_examples=args.num_examples,
        seed=args.seed,
        subset_dataset=args.subset_dataset,
        full_data=args.full_data,
        title=args.title,
        short_description=args.short_description,
        license=args.license,
        hardware=args.hardware,
        private=args.private,
        token=args.token,
        local_dir=args.local_dir,
    )
    if spec.dropped_training_rows:
        print(f"skipped {spec.dropped_training_rows} example rows that are training rows", file=sys.stderr)
    if spec.private_repos:
        # The Space process reads adapters with huggingface_hub, which picks up an HF_TOKEN secret;
        # ltd-hub never stores the token anywhere itself, so the user adds it.
        print(
            f"note: {', '.join(spec.private_repos)} {'is' if len(spec.private_repos) == 1 else 'are'} private; "
            "add a read token as the Space secret HF_TOKEN (Space settings > Variables and secrets) "
            "or the Space cannot load them",
            file=sys.stderr,
        )
    state = result.state
    print(f"Space {result.repo_id} ({state}): {len(spec.examples)} examples, base {spec.base_model}")
    print(result.url)
    return 0
