"""``ltd-hub quickstart``: coreset + full-data stand-in -> two LoRA adapters -> eval -> Space, in one command.

Without ``HF_ENDPOINT`` it starts the embedded Hub on the local storage (seeded once with the
offline base model and encoder), runs :func:`ltd_hub.pipelines.quickstart.quickstart` against it, then
serves the pushed Space locally (as ``ltd-hub demo --space``) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from ltd_hub.errors import UsageError


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``quickstart`` to the ``ltd-hub`` parser."""
    from ltd_hub.pipelines.quickstart import DEFAULT_BASE_MODEL, DEFAULT_EVAL_DATA, DEFAULT_POOL, QuickstartConfig

    defaults = QuickstartConfig()
    parser = subparsers.add_parser(
        "quickstart",
        help="one command: 0.5%% coreset vs full-data stand-in, two LoRA adapters, eval, comparison Space",
        description=(
            "Push a 0.5% coreset of the first --rows rows of --pool and a random --full-rows stand-in for the "
            "full data, train a LoRA adapter on each, evaluate both (results in their model cards), push the "
            "comparison Space and run it locally. Without HF_ENDPOINT an embedded Hub is started on --hub-root. "
            "Re-running reuses what is done and makes no new commit where nothing changed."
        ),
    )
    data = parser.add_argument_group("data")
    data.add_argument("--pool", default=DEFAULT_POOL, help=f"instruction data to select from (default {DEFAULT_POOL})")
    data.add_argument("--rows", type=int, default=defaults.rows, help=f"use the first N rows of the pool (default {defaults.rows})")
    data.add_argument("--full-rows", type=int, default=defaults.full_rows,
                      help=f"random rows standing in for the full data (default {defaults.full_rows})")  # fmt: skip
    data.add_argument("--encoder", help="selection encoder: minilm (default), lexical, sentence-transformers:<id>, ...")
    train = parser.add_argument_group("training and evaluation")
    train.add_argument("--base-model", default=DEFAULT_BASE_MODEL, help=f"Hub id of the base model (default {DEFAULT_BASE_MODEL})")
    train.add_argument("--max-steps", type=int, default=defaults.max_steps,
                       help=f"optimizer steps per adapter (default {defaults.max_steps})")  # fmt: skip
    train.add_argument("--eval-data", nargs="+", default=list(DEFAULT_EVAL_DATA), metavar="EVAL_DATA",
                       help="held-out eval files or dataset repos (default the ltd-nli rte and snli_heldout files)")  # fmt: skip
    train.add_argument("--max-examples", type=int, default=defaults.max_examples,
                       help=f"examples per eval set (1 template each; default {defaults.max_examples})")  # fmt: skip
    out = parser.add_argument_group("output")
    out.add_argument("--namespace", help="user or organization for the repos (default: the token's user)")
    out.add_argument("--workdir", type=Path, help="local state: pool slice and adapters (default: ltd-hub cache dir /quickstart)")
    out.add_argument("--hub-root", type=Path, help="embedded Hub storage when HF_ENDPOINT is unset (default: ltd-hub cache dir /hub)")
    out.add_argument("--no-demo", action="store_true", help="stop after publishing; do not run the Space locally")
    out.add_argument("--host", default="127.0.0.1", help="address the local Space listens on (default 127.0.0.1)")
    out.add_argument("--port", type=int, default=7860, help="port of the local Space (default 7860)")
    parser.set_defaults(func=run)


def _config(args: argparse.Namespace):
    from ltd_hub.pipelines.quickstart import QuickstartConfig

    return QuickstartConfig(
        pool=args.pool,
        rows=args.rows,
        full_rows=args.full_rows,
        encoder=args.encoder,
        base_model=args.base_model,
        max_steps=args.max_steps,
        eval_data=args.eval_data,
        max_examples=args.max_examples,
        namespace=args.namespace,
        workdir=args.workdir,
    )


def _seed_encoder(root: Path, encoder: str | None) -> None:
    """Put the default encoder into the embedded Hub once (the base model is seeded by the demo helper)."""
    from ltd_hub.hub_server.seed import ENCODER_ID, seed_hub
    from ltd_hub.hub_server.storage import HubStorage
    from ltd_hub.selection.encoders import DEFAULT_ENCODER

    if (encoder or DEFAULT_ENCODER) != DEFAULT_ENCODER or HubStorage(root).get("model", ENCODER_ID) is not None:
        return
    _say(f"seeding it with {ENCODER_ID} (once)")
    try:
        seed_hub(root, only="encoder")
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


def _run_demo(space_repo: str, args: argparse.Namespace) -> int:
    """Serve the pushed Space locally exactly as ``ltd-hub demo --space`` does."""
    from ltd_hub.cli.commands import demo

    parser = argparse.ArgumentParser(prog="ltd-hub")
    demo.register(parser.add_subparsers())
    demo_args = parser.parse_args(["demo", "--space", space_repo, "--host", args.host, "--port", str(args.port)])
    return demo_args.func(demo_args)


def _quiet_libraries() -> None:
    """Keep library chatter (FutureWarnings, transformers' advice) off a newcomer's screen; progress bars stay."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|transformers|peft|accelerate|sentence_transformers)\.")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def _check_args(args: argparse.Namespace) -> None:
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port} is not a TCP port; use 1-65535")
    if args.hub_root and args.hub_root.exists() and not args.hub_root.is_dir():
        raise UsageError(f"--hub-root {args.hub_root} is a file; pass a folder")


def _print_results(result, config) -> None:
    """One line per published repo and per adapter's accuracy on stdout; the summary on stderr."""
    from ltd_hub.pipelines.quickstart import stand_in_label

    stand_in = f"{config.full_rows:,} random rows (full-data stand-in)"
    names = {"coreset": "0.5% coreset", "full": stand_in, "coreset_lora": "adapter on the coreset",
             "full_lora": "adapter on the stand-in", "space": "comparison Space"}  # fmt: skip
    width = max(len(n) for n in names.values())
    for role, url in result.urls.items():
        print(f"{names[role]:{width}s} {url}")
    for role, accuracy in result.accuracy.items():
        print(f"{names[role + '_lora']:{width}s} average accuracy {accuracy:.3f}")
    changed = ", ".join(result.new_commits) if result.new_commits else "nothing (all repos unchanged)"
    _say(f"done in {result.seconds:.0f}s; new commits: {changed}")
    _say(f'note: the "full data" arm is {stand_in_label(config.full_rows, config.rows)}; --full-rows and --rows scale it')


def _serve_command(args: argparse.Namespace, endpoint: str | None) -> str:
    """The URLs name the embedded Hub's port: `hub serve` on the same root and port brings them back."""
    serve = "ltd-hub hub serve" + (f" --root {args.hub_root}" if args.hub_root else "")
    return serve + (f" --port {urlsplit(endpoint).port}" if endpoint else "")


def run(args: argparse.Namespace) -> int:
    """Publish everything (against an embedded Hub when ``HF_ENDPOINT`` is unset), print the links, then run the Space."""
    from ltd_hub.cli.commands.local_hub import embedded_hub
    from ltd_hub.paths import cache_dir
    from ltd_hub.pipelines.quickstart import STEPS_WITH_DEMO, quickstart

    config = _config(args)
    config.validate()
    _check_args(args)
    embedded = not os.environ.get("HF_ENDPOINT")
    endpoint = None
    if not os.environ.get("LTD_HUB_DEBUG"):
        _quiet_libraries()
    with contextlib.ExitStack() as stack:
        if embedded:
            root = args.hub_root or cache_dir("hub")
            endpoint = stack.enter_context(embedded_hub(root))
            _seed_encoder(root, config.encoder)
        result = quickstart(config, log=_say, with_demo=not args.no_demo)
        _print_results(result, config)
        serve = _serve_command(args, endpoint)
        if args.no_demo:
            if embedded:
                again = f"ltd-hub demo --space {result.space_repo}" + (f" --hub-root {args.hub_root}" if args.hub_root else "")
                _say(f"the embedded Hub stops now: the links above work again under `{serve}`; run the Space later with `{again}`")
            return 0
        if embedded:
            _say(f"the links above work while the Space runs (the embedded Hub stops with it); afterwards under `{serve}`")
        _say(f"[{STEPS_WITH_DEMO}/{STEPS_WITH_DEMO}] running the Space locally at http://{args.host}:{args.port} (Ctrl-C to stop)")
        try:
            return _run_demo(result.space_repo, args)
        except KeyboardInterrupt:
            # Everything was published before the demo started; stopping it is the normal way out.
            _say("stopped the Space; everything stays published")
            return 0
