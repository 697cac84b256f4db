"""``ltd-hub train``: LoRA-tune a base model on a subset, save it with a model card, optionally push it.

Every ``TrainConfig`` field is a flag (``--num-train-epochs`` or ``--num_train_epochs``) and a key of
``--config FILE.yaml``; flags given on the command line override the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    from ltd_hub.training import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        hint = hints[f.name]
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
        if optional:
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        flags = [f"--{f.name.replace('_', '-')}"]
        if "_" in f.name and hint is not bool:
            flags.append(f"--{f.name}")  # TRL/transformers scripts spell flags with underscores
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        help_text = f.metadata.get("help", "")
        if not f.metadata.get("required") and default not in (None, ""):
            help_text += f" (default: {' '.join(default) if isinstance(default, list) else default})"
        # SUPPRESS keeps unset flags out of the namespace, so they never override the YAML.
        kwargs: dict[str, typing.Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if hint is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(hint) is list:
            parser.add_argument(*flags, nargs="+", metavar="NAME", **kwargs)
        else:
            metavar = {int: "N", float: "X"}.get(hint, "VALUE")
            if f.name in ("dataset", "push_to"):
                metavar = "REPO_OR_PATH" if f.name == "dataset" else "REPO_ID"
            elif f.name in ("base_model",):
                metavar = "HUB_ID"
            elif f.name == "output_dir":
                metavar = "DIR"
            parser.add_argument(*flags, type=hint, metavar=metavar, **kwargs)


def secret(value: str) -> str:
    from ltd_hub.redact import secret as remember

    return remember(value)


def register(subparsers: argparse._SubParsersAction) -> None:
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
    _add_config_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ltd_hub.training import TrainConfig, train

    values = {k: v for k, v in vars(args).items() if k in TrainConfig.field_names()}
    config = TrainConfig.from_yaml(args.config, values) if args.config else TrainConfig.from_mapping(values, source="flags")
    result = train(config, token=args.token)
    if not result.main_process:
        return 0  # under accelerate launch / torchrun only the main rank reports
    print(
        f"trained {result.steps} steps on {result.train_rows} rows in {result.seconds:.1f} s "
        f"({result.tokens_per_second:.0f} tokens/s, final loss {result.train_loss:.4f}); adapter saved to {result.output_dir}"
    )
    if result.push is not None:
        state = f"commit {result.push.revision[:12]}" if result.push.created_commit else "unchanged, no new commit"
        print(f"pushed {result.push.repo_id} ({state})")
        print(result.url)
    return 0
