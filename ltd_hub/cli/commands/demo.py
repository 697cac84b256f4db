"""``ltd-hub demo``: run the comparison Space locally, against the embedded Hub when offline.

The Space runs exactly as on Spaces, as ``python app.py`` in a folder holding its files: either
a pushed Space repo downloaded back (``--space``), or the files ``push-space`` would push, built
from ``--full``/``--subset``. Without ``HF_ENDPOINT`` an embedded Hub is started on the local
storage (seeded with the offline base model if it lacks it) for as long as the demo runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ltd_hub.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the ``ltd-hub`` parser."""
    parser = subparsers.add_parser(
        "demo",
        help="run the full-vs-0.5%% comparison Space locally",
        description=(
            "Run the comparison Space on this machine as `python app.py`. Give a pushed Space "
            "(--space) or the adapters (--full and --subset). Without HF_ENDPOINT, an embedded Hub "
            "is started on --hub-root (seeded with the offline base model if needed)."
        ),
    )
    parser.add_argument("--space", metavar="SPACE_ID", help="a Space pushed with `ltd-hub push-space`")
    parser.add_argument("--full", metavar="ADAPTER_ID", help="adapter trained on the full task data")
    parser.add_argument("--subset", metavar="ADAPTER_ID", help="adapter trained on the 0.5%% subset")
    parser.add_argument("--random", metavar="ADAPTER_ID", help="optional adapter trained on a random 0.5%% subset")
    parser.add_argument("--base-model", metavar="ID", help="base model Hub id (default: read from the adapters)")
    parser.add_argument("--examples", nargs="+", default=[], metavar="EVAL_DATA", help="held-out eval data for the examples")
    parser.add_argument("--num-examples", type=int, default=8, help="examples to show (default 8)")
    parser.add_argument("--host", default="127.0.0.1", help="address the app listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port of the app (default 7860)")
    parser.add_argument("--hub-root", type=Path, help="embedded Hub storage when HF_ENDPOINT is unset (default: ltd-hub cache dir /hub)")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login)")
    parser.set_defaults(func=run)


def _validate(args: argparse.Namespace) -> None:
    adapters_given = bool(args.full or args.subset or args.random)
    if args.space and adapters_given:
        raise UsageError("give either --space or --full/--subset, not both")
    if not args.space and not (args.full and args.subset):
        raise UsageError("give --space SPACE_ID (pushed with `ltd-hub push-space`) or both --full and --subset adapter ids")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port} is not a TCP port; use 1-65535")
    if args.hub_root and args.hub_root.exists() and not args.hub_root.is_dir():
        raise UsageError(f"--hub-root {args.hub_root} is a file; pass a folder")


def _space_folder(args: argparse.Namespace, workdir: Path) -> Path:
    from ltd_hub.hub import gateway as hub
    from ltd_hub.spaces.publish import APP_FILE, build_space_files, plan_space, write_space

    target = workdir / "space"
    if args.space:
        if not hub.repo_exists(args.space, "space", token=args.token):
            raise UsageError(f"--space {args.space}: no such Space on the Hub; push it with `ltd-hub push-space` first")
        snapshot = hub.snapshot(args.space, repo_type="space", token=args.token)
        if not (snapshot / APP_FILE).is_file():
            raise UsageError(f"--space {args.space} has no {APP_FILE}; push it with `ltd-hub push-space`")
        # A private copy: Gradio writes its cache beside the app, and the Hub cache is shared.
        shutil.copytree(snapshot, target)
        return target
    spec = plan_space(
        "local/ltd-hub-demo",
        full=args.full,
        subset=args.subset,
        random_adapter=args.random,
        base_model=args.base_model,
        examples=args.examples,
        num_examples=args.num_examples,
        token=args.token,
    )
    return write_space(build_space_files(spec), target)


def run(args: argparse.Namespace) -> int:
    """Serve the Space until it exits or Ctrl-C (exit code 0); bad arguments are one UsageError line."""
    _validate(args)
    try:
        return _serve(args)
    except KeyboardInterrupt:
        # Ctrl-C is how a demo ends, not a failure: _serve has stopped the app and the embedded Hub.
        print("demo stopped", file=sys.stderr)
        return 0


def _serve(args: argparse.Namespace) -> int:
    from ltd_hub.cli.commands.local_hub import embedded_hub

    with contextlib.ExitStack() as stack:
        if not os.environ.get("HF_ENDPOINT"):
            stack.enter_context(embedded_hub(args.hub_root))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ltd-hub-demo-")))
        folder = _space_folder(args, workdir)
        env = dict(os.environ)
        env.update(
            {
                "GRADIO_SERVER_NAME": args.host,
                "GRADIO_SERVER_PORT": str(args.port),
                "GRADIO_ANALYTICS_ENABLED": "False",
                "HF_HUB_DISABLE_TELEMETRY": "1",
            }
        )
        if args.token:
            env["HF_TOKEN"] = args.token
        print(f"starting the Space from {folder} on http://{args.host}:{args.port} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        app = subprocess.Popen([sys.executable, "app.py"], cwd=folder, env=env)
        with contextlib.suppress(ValueError):  # only the main thread may set handlers
            # A plain `kill` of the demo must also end the app and the embedded Hub.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        try:
            return app.wait()
        finally:
            if app.poll() is None:
                app.terminate()
                try:
                    app.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    app.kill()
                    app.wait()
