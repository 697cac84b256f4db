"""``ltd-hub rebuild-subset``: re-run a subset's selection from its manifest and compare the ids."""

from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "rebuild-subset",
        help="re-run a subset's selection from its manifest; exit 0 if the ids are identical, 1 if not",
    )
    parser.add_argument(
        "target", metavar="REPO_ID_OR_DIR", help="a Hub dataset made by push-subset, a --dry-run folder, or a manifest file"
    )
    parser.add_argument(
        "--source", nargs="+", metavar="SOURCE", help="the source data, when the recorded local path is not on this machine"
    )
    parser.add_argument("--revision", help="revision of the subset repo to read the manifest from")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login)")
    parser.add_argument("--no-cache", action="store_true", help="re-encode instead of using cached embeddings")
    parser.add_argument("--format", choices=["text", "json"], default="text", help="text (default) or one JSON object")
    from ltd_hub.cli.commands.push_subset import add_engine_arguments

    add_engine_arguments(parser)
    parser.set_defaults(func=run)


def _preview(rows: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, rows[:limit]))
    return shown + (f", ... ({len(rows) - limit} more)" if len(rows) > limit else "")


def run(args) -> int:
    from ltd_hub.cli.commands.push_subset import EngineOptions
    from ltd_hub.configs import parse_config
    from ltd_hub.redact import redact
    from ltd_hub.selection.subset import rebuild_subset

    engine = parse_config(EngineOptions, args)
    source = args.source[0] if args.source and len(args.source) == 1 else args.source
    report = rebuild_subset(
        args.target,
        source=source,
        revision=args.revision,
        token=args.token,
        use_cache=not args.no_cache,
        engine=engine.engine,
        ray_address=engine.ray_address,
        log=lambda msg: print(redact(msg), file=sys.stderr, flush=True),
    )
    if args.format == "json":
        print(json.dumps(report.summary()))
    elif report.identical:
        print(f"identical: the {report.n_rebuilt} selected row ids and their content match the manifest")
    else:
        if report.missing or report.extra:
            print(
                f"different: {len(report.missing)} recorded rows not selected now ({_preview(report.missing)}); "
                f"{len(report.extra)} rows selected now but not recorded ({_preview(report.extra)})"
            )
        for line in report.differences:
            print(f"different: {line}")
    return 0 if report.identical else 1
