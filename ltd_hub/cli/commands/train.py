"""``ltd-hub train``: LoRA-tune a base model on a subset, save it with a model card, optionally push it.

Every ``TrainConfig`` field is a flag (``--num-train-epochs`` or ``--num_train_epochs``) and a key of
``--config FILE.yaml``; flags given on the command line override the file (:mod:`ltd_hub.configs`).
"""

from __future__ import annotations

import argparse


def secret(value: str) -> str:
    from ltd_hub.redact import secret as remember

    return remember(value)


def register(subparsers: argparse._SubParsersAction) -> None:
    from ltd_hub.configs import add_dataclass_flags
    from ltd_hub.training import TrainConfig

    parser = subparsers.add_parser(
        "train",
        help="train a LoRA adapter on a subset (and push it with a model card)",
        description=(
            "Train a LoRA adapter with transformers' Trainer + peft on a Hub dataset (a pushed subset) or a "
            "local file: chat-template formatting, loss on the answer tokens only, length-grouped (or, with flash "
            "attention, padding-free) batches, bf16 when supported. Runs unchanged under "
            "`accelerate launch -m ltd_hub.cli.main train ...`. With --push-to, the push target is "
            "checked before training and the adapter + card are pushed in one commit at the end."
        ),
    )
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of the options below (keys = option names); flags override it")
    parser.add_argument("--token", type=secret, help="Hub token (default: HF_TOKEN or the stored login)")
    add_dataclass_flags(parser, TrainConfig, metavars={int: "N", float: "X", str: "VALUE", list: "NAME"})
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ltd_hub.configs import parse_config
    from ltd_hub.training import TrainConfig, train

    config = parse_config(TrainConfig, args, config_file=args.config)
    result = train(config, token=args.token)
    if not result.main_process:
        return 0  # under accelerate launch / torchrun only the main rank reports
    print(
        f"trained {result.steps} steps on {result.train_rows} rows in {result.seconds:.1f} s "
        f"({result.tokens_per_second:.0f} tokens/s, final loss {result.train_loss:.4f}); adapter saved to {result.output_dir}"
    )
    if result.push is not None:
        state = result.push.state
        print(f"pushed {result.push.repo_id} ({state})")
        print(result.url)
    return 0
