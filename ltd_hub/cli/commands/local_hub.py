"""``ltd-hub hub serve|seed``: run the embedded Hub-compatible server and preload its models."""

from __future__ import annotations

import contextlib
import os
import secrets
import string
import sys
from collections.abc import Iterator
from pathlib import Path

from ltd_hub.errors import UsageError

LOCAL_USER = "local"


def register(subparsers) -> None:
    """Add ``hub serve`` and ``hub seed`` to the ``ltd-hub`` parser."""
    parser = subparsers.add_parser("hub", help="run the embedded Hub-compatible server (offline use and tests)")
    actions = parser.add_subparsers(dest="hub_command", metavar="ACTION", required=True)

    serve = actions.add_parser("serve", help="serve the Hub API in the foreground until Ctrl-C")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8765, help="port (default 8765; 0 = any free port)")
    serve.add_argument("--root", type=Path, help="storage folder (default: ltd-hub cache dir /hub)")
    serve.add_argument("--token-file", type=Path, metavar="PATH",
                       help="accepted tokens, one NAME=TOKEN[:read] per line (# comments); NAME is the namespace "
                            "each may write to. Safer than --token: not visible in `ps` (also $LTD_HUB_TOKENS, comma-separated)")  # fmt: skip
    serve.add_argument("--token", action="append", default=[], metavar="NAME=TOKEN[:read]",
                       help="accepted token (repeatable); visible to other users in `ps`: prefer --token-file or $LTD_HUB_TOKENS")  # fmt: skip
    serve.add_argument("--fault", action="append", default=[], metavar="SPEC",
                       help="inject failures, e.g. commit:503:times=2, lfs-put:drop:p=0.3:seed=1 or commit:enospc (a full disk); also $LTD_HUB_FAULTS")  # fmt: skip
    serve.set_defaults(func=run_serve)

    seed = actions.add_parser("seed", help="put SmolLM2-135M-Instruct and all-MiniLM-L6-v2 into the Hub storage")
    seed.add_argument("--root", type=Path, help="storage folder (default: ltd-hub cache dir /hub)")
    seed.add_argument("--only", choices=["base", "encoder"], help="seed only the base model or only the encoder")
    seed.set_defaults(func=run_seed)


def _root(args) -> Path:
    from ltd_hub.paths import cache_dir

    root = args.root or cache_dir("hub")
    if root.exists() and not root.is_dir():
        raise UsageError(f"--root {root} is a file; pass a folder for the Hub storage")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _port(text: str) -> int:
    """argparse type for --port: a whole number from 0 (any free port) to 65535."""
    import argparse

    if not text.strip().isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"--port takes a number from 0 to 65535 (0 = any free port), not {text!r}")
    return int(text)


def read_token_file(path: Path) -> list[str]:
    """``NAME=TOKEN[:read]`` lines of a token file; blank lines and ``#`` comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise UsageError(f"cannot read --token-file {path} ({reason}); pass a text file with one NAME=TOKEN per line") from None
    specs = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not specs:
        raise UsageError(f"--token-file {path} holds no token; write one NAME=TOKEN[:read] per line")
    return specs


def _split_env(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def local_token(root: Path) -> str:
    """The token of user ``local``, generated once and kept in ``<root>/token`` (mode 0600)."""
    path = root / "token"
    if path.is_file():
        return path.read_text().strip()
    token = "hf_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(34))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


@contextlib.contextmanager
def embedded_hub(root: Path | None) -> Iterator[str]:
    """Serve the embedded Hub on ``root`` (default: the cache dir) as user ``local`` and point the clients at it for the block.

    Seeds the offline base model once. Used by ``demo`` and ``quickstart`` when ``HF_ENDPOINT`` is unset.
    """
    from ltd_hub.hub import gateway as hub
    from ltd_hub.hub_server.seed import BASE_MODEL_ID, seed_hub
    from ltd_hub.hub_server.serve import serve_hub
    from ltd_hub.hub_server.storage import HubStorage
    from ltd_hub.paths import cache_dir

    root = root or cache_dir("hub")
    root.mkdir(parents=True, exist_ok=True)
    token = local_token(root)
    # Pointed before seeding: seeding imports transformers, and the Hub client reads HF_ENDPOINT at import.
    with serve_hub(root, tokens=[f"{LOCAL_USER}={token}"]) as endpoint, hub.pointed_at(endpoint, token):
        print(f"embedded Hub serving {root} at {endpoint}", file=sys.stderr)
        if HubStorage(root).get("model", BASE_MODEL_ID) is None:
            print(f"seeding it with {BASE_MODEL_ID} (once)", file=sys.stderr)
            try:
                seed_hub(root, only="base")
            except FileNotFoundError as exc:
                raise UsageError(str(exc)) from None
        yield endpoint


def run_serve(args) -> int:
    """``hub serve``: check the tokens and faults, then serve in the foreground until Ctrl-C."""
    from ltd_hub.hub_server.auth import parse_tokens
    from ltd_hub.hub_server.faults import Fault
    from ltd_hub.hub_server.serve import serve_forever

    root = _root(args)
    from_file = read_token_file(args.token_file) if args.token_file else []
    tokens = args.token + from_file + _split_env("LTD_HUB_TOKENS")
    faults = args.fault + _split_env("LTD_HUB_FAULTS")
    try:
        parse_tokens(tokens)
    except ValueError as exc:
        raise UsageError(f"{exc} (from --token, --token-file or $LTD_HUB_TOKENS)") from None
    for spec in faults:
        try:
            Fault.parse(spec)
        except ValueError as exc:
            raise UsageError(f"{exc} (from --fault or $LTD_HUB_FAULTS; see `ltd-hub hub serve --help`)") from None
    token_line = 'export HF_TOKEN="<one of the tokens you passed>"'
    if not tokens:
        tokens = [f"{LOCAL_USER}={local_token(root)}"]
        token_line = f'export HF_TOKEN="$(cat {root / "token"})"   # user: {LOCAL_USER}'

    def announce(endpoint: str) -> None:
        print(f"ltd-hub: embedded Hub serving {root} at {endpoint}")
        if args.token:
            print("note: --token values are visible to other users in `ps`; pass them with --token-file or $LTD_HUB_TOKENS instead")
        if faults:
            print(f"Injecting faults: {', '.join(faults)}")
        print("In another shell, point the Hub libraries at it:")
        print(f"  export HF_ENDPOINT={endpoint}")
        print("  export HF_HUB_DISABLE_XET=1")
        print(f"  {token_line}", flush=True)

    serve_forever(root, host=args.host, port=args.port, tokens=tokens, faults=faults, announce=announce)
    return 0


def run_seed(args) -> int:
    """``hub seed``: put the offline models into the storage and print each repo's head."""
    from ltd_hub.hub_server.seed import seed_hub

    root = _root(args)
    try:
        heads = seed_hub(root, only=args.only)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    for repo_id, sha in heads.items():
        print(f"{repo_id}\t{sha}")
    return 0
