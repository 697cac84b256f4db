"""Benchmark of the k-means backends (``--kmeans-backend``): scikit-learn against faiss, on the bounded engine's samples.

The rows are the real NLI pool (503,576 rows) embedded by the ``hashing`` encoder (256 dimensions,
from the embedding cache when present). For each k the bounded engine uses at 0.5M, 2M and 5M rows
(its automatic k: 500, 1,000 and 1,581), k-means is fitted on a seeded sample of 256 rows per
cluster (``--kmeans-sample 256``, the engine's own sample) by each backend through
:func:`ltd_hub.selection.clustering.fit_kmeans`, then every pool row is assigned to its nearest
centre. Reported: the fit's seconds, and the mean squared distance of the pool's rows to their
centre (lower is better: the centres' quality, measured on all rows, not just the sample).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_kmeans.py [--ks 500,1000,1581] [--backends sklearn,faiss]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POOL = REPO.parent / "shared" / "data" / "ltd-nli" / "pool" / "p3_nli_pool.jsonl.gz"
PER_CLUSTER = 256


def pool_embeddings():
    """The pool's hashing-encoder embeddings, memory-mapped from the ltd-hub embedding cache (computed once)."""
    from ltd_hub.data.sources import build_texts, load_source
    from ltd_hub.selection.encoders import encode_cached, get_encoder

    src = load_source(str(POOL))
    texts = build_texts(src.dataset, [*src.columns.inputs, src.columns.target])
    identity = {"source": src.fingerprint, "bench": "bench_kmeans"}
    X, _stats = encode_cached(get_encoder("hashing"), texts, identity, progress=False, mmap=True)
    return X


def main() -> None:
    import numpy as np

    from ltd_hub.selection.clustering import fit_kmeans
    from ltd_hub.selection.engines.bounded import assign_chunks, sample_rows, take_rows

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", default="500,1000,1581", help="comma-separated k (the bounded engine's k at 0.5M, 2M, 5M rows)")
    parser.add_argument("--backends", default="sklearn,faiss")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    X = pool_embeddings()
    print(
        f"pool: {X.shape[0]:,} rows x {X.shape[1]} (hashing encoder); threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    lines = ["| k | sample rows | backend | fit seconds | pool rows' mean squared distance to their centre |", "|---:|---:|---|---:|---:|"]
    for k in (int(x) for x in args.ks.split(",")):
        n_sample = min(len(X), k * PER_CLUSTER)
        sample = np.ascontiguousarray(take_rows(X, sample_rows(len(X), n_sample, args.seed)), dtype=np.float32)
        for backend in args.backends.split(","):
            start = time.perf_counter()
            fitted = fit_kmeans(sample, k, seed=args.seed, backend=backend)
            seconds = time.perf_counter() - start
            _labels, inertia = assign_chunks(X, fitted.centers)
            lines.append(f"| {k:,} | {n_sample:,} | {fitted.algorithm} | {seconds:.1f} | {inertia / len(X):.4f} |")
            print(lines[-1], flush=True)
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
