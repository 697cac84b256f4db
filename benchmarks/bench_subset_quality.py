"""Quality report of every selection strategy, grouped and ungrouped, on the whole NLI pool.

Each configuration runs in its own process (so its peak RSS is its own) through the public
``select_subset`` with the lexical encoder; the embeddings are cached after the first run. The
random baseline of the same size is in every row (the report's "random" column), and the
``random`` strategy itself is a row of its own.

    python benchmarks/bench_subset_quality.py                       # whole pool, 0.5%, all strategies
    python benchmarks/bench_subset_quality.py --strategies quantile,kcenter --group-by source
    python benchmarks/bench_subset_quality.py --json out.json       # also write the figures

Prints a Markdown table: distinct examples, label / source / template TV distance from the pool,
mean input words, coverage and typicality, for the subset and (in brackets) for random rows of
the same size; then seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

POOL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ltd-nli" / "pool" / "p3_nli_pool.jsonl.gz"


def run_one(source: str, strategy: str, group_by: str | None, ratio: float, seed: int, stratify: str) -> dict:
    from ltd_hub.selection.subset import select_subset

    start = time.perf_counter()
    result = select_subset(
        source,
        ratio=ratio,
        strategy=strategy,
        encoder="lexical",
        group_by=group_by,
        stratify_by=None if stratify == "auto" else [s for s in stratify.split(",") if s],
        seed=seed,
        progress=False,
    )
    seconds = time.perf_counter() - start
    return {
        "strategy": strategy,
        "group_by": group_by,
        "stratify_by": result.manifest.selection.stratify_by,
        "seconds": round(seconds, 1),
        "seconds_select": result.stats.seconds_select,
        "cache_hit": result.stats.cache_hit,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "quality": result.quality.to_dict(),
    }


def _cell(q: dict, key: str, fmt: str) -> str:
    s, r = q["subset"][key], q["random"][key]
    if s is None:
        return "—"
    return f"{format(s, fmt)} ({format(r, fmt)})"


def table(rows: list[dict]) -> str:
    head = (
        "| strategy | group by | strata | distinct examples | label TV | source TV | template TV | mean input words "
        "| coverage (lower is better) | farthest decile | seconds | peak RSS MB |"
    )
    lines = [head, "|" + "---|" * 12]
    for row in rows:
        q = row["quality"]
        lines.append(
            f"| `{row['strategy']}` | {row['group_by'] or '—'} | {' x '.join(row['stratify_by']) or '—'} "
            f"| {_cell(q, 'distinct_examples', ',')} | {_cell(q, 'tv_labels', '.3f')} | {_cell(q, 'tv_sources', '.3f')} "
            f"| {_cell(q, 'tv_templates', '.3f')} | {_cell(q, 'mean_input_words', '.1f')} | {_cell(q, 'coverage', '.4f')} "
            f"| {_cell(q, 'typicality', '.1%')} | {row['seconds']} | {row['peak_rss_mb']:,} |"
        )
    return "\n".join(lines)


def main() -> None:
    from ltd_hub.selection import SELECTORS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(POOL.resolve()))
    parser.add_argument("--strategies", default=",".join(SELECTORS))
    parser.add_argument("--group-by", default="none,source", help="comma-separated; 'none' for ungrouped")
    parser.add_argument("--stratify", default="auto", help="'auto' (the default strata) or comma-separated columns, '' for none")
    parser.add_argument("--ratio", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child mode: one configuration
    args = parser.parse_args()
    if args.one:
        group = None if args.group_by == "none" else args.group_by
        print(json.dumps(run_one(args.source, args.strategies, group, args.ratio, args.seed, args.stratify)))
        return
    rows = []
    for group in args.group_by.split(","):
        for strategy in args.strategies.split(","):
            cmd = [sys.executable, __file__, "--one", "--source", args.source, "--strategies", strategy, "--group-by", group,
                   "--ratio", str(args.ratio), "--seed", str(args.seed), "--stratify", args.stratify]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"{strategy} / {group}: {rows[-1]['seconds']} s", file=sys.stderr, flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"Whole pool at ratio {args.ratio}, lexical encoder, seed {args.seed}; each cell: subset (random rows of the same size).")
    print(table(rows))


if __name__ == "__main__":
    main()
