"""``ltd-hub push-adapter``: push a trained adapter folder with its model card (retries a failed ``train --push-to``)."""

from __future__ import annotations

import argparse

from ltd_hub.cli.commands import add_visibility_arguments
from ltd_hub.redact import secret


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push-adapter",
        help="push a trained adapter folder with its model card",
        description=(
            "Push the --output-dir of `ltd-hub train` (adapter, model card, training summary, eval results) "
            "to a Hub model repo in one commit. Use it to retry a push that failed after training; "
            "re-pushing the same folder makes no new commit."
        ),
    )
    parser.add_argument("adapter_dir", metavar="DIR", help="the adapter folder written by `ltd-hub train`")
    parser.add_argument("--repo-id", required=True, help="the model repo, NAMESPACE/NAME")
    add_visibility_arguments(parser, what="the repo", private_when="the training data was private")
    parser.add_argument("--commit-message", help="commit summary (default: Add LoRA adapter (ltd-hub))")
    parser.add_argument("--token", type=secret, help="Hub token (default: HF_TOKEN or the stored login)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ltd_hub.adapters import push_adapter

    result = push_adapter(args.adapter_dir, args.repo_id, token=args.token, private=args.private, commit_message=args.commit_message)
    state = result.state
    print(f"pushed {result.repo_id} ({state})")
    print(result.url)
    return 0
