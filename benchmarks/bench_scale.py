"""Benchmark of the selection engines as the pool grows: seconds and peak memory per engine and size.

Pools of 0.5M, 2M and 5M rows are the real NLI pool (503,576 rows) followed by seeded perturbed
copies of it: copy ``j`` swaps a few word pairs in each row's input and gets its own ``id`` and
``source`` (so an example of a copy is a new example). Every run is a cold end-to-end selection
(``select_subset``: load, filter, encode with the ``hashing`` encoder, cluster, pick, quality
report) in a fresh process with its own embedding cache, at ratio 0.5%, for three engines:

* ``today``: the code before the engines existed (commit ``BASELINE``, extracted with
  ``git archive``): every vector in memory, k-means on every row;
* ``bounded``: ``engine="local", kmeans_sample=256``: memory-mapped vectors, k-means on 256 rows
  per cluster, chunked assignment, per-cluster picks;
* ``ray``: ``engine="ray", kmeans_sample=256`` on a local Ray with this machine's CPUs (same ids
  as ``bounded``).

Peak memory is reported twice: the driver's own peak RSS (``ru_maxrss``), and the peak of the
RSS summed over the driver and every process it started (Ray's raylet, workers and object store
pages are counted there; pages shared between processes are counted once per process).

The growth is a least-squares slope over the sizes run: seconds per million rows and MB per
million rows.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py --rows 500000 [--rows 2000000 --rows 5000000]
        [--engines today,bounded,ray] [--workdir /tmp/ltd-scale] [--json results.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
POOL = REPO.parent / "shared" / "data" / "ltd-nli" / "pool" / "p3_nli_pool.jsonl.gz"
BASELINE = "9f2dac7"  # the last commit before the bounded engine (today's engine, its old module layout)
ENGINES = ("today", "bounded", "ray")
KMEANS_SAMPLE = 256


# --------------------------------------------------------------------------- pools


def _perturb(text: str, rng) -> str:
    words = text.split(" ")
    for _ in range(max(1, len(words) // 10)):
        i, j = rng.integers(len(words), size=2)
        words[i], words[j] = words[j], words[i]
    return " ".join(words)


def make_pool(n_rows: int, path: Path) -> Path:
    """The real pool, then seeded perturbed copies, up to ``n_rows`` rows of JSONL (written once)."""
    import numpy as np

    if path.is_file():
        return path
    tmp = path.with_suffix(".tmp")
    written, copy = 0, 0
    with open(tmp, "w", encoding="utf-8") as out:
        while written < n_rows:
            rng = np.random.default_rng(copy)
            with gzip.open(POOL, "rt", encoding="utf-8") as fh:
                for line in fh:
                    if written >= n_rows:
                        break
                    if copy:
                        row = json.loads(line)
                        row["inputs"] = _perturb(row["inputs"], rng)
                        row["id"] = f"{row['id']}-c{copy}"
                        row["source"] = f"{row['source']} (copy {copy})"
                        line = json.dumps(row, ensure_ascii=False) + "\n"
                    out.write(line)
                    written += 1
            copy += 1
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- one run (child process)


def _anon_bytes() -> int:
    """This process's anonymous resident memory (``RssAnon``): what it holds itself, not file pages."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


class _PeakSampler(threading.Thread):
    """Samples the RSS summed over this process and its descendants every 0.2 s; keeps the peak,
    and the peak of this process's anonymous memory."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = 0
        self.peak_anon = 0
        self._halt = threading.Event()

    def run(self):
        import psutil

        me = psutil.Process()
        while not self._halt.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self.peak_anon = max(self.peak_anon, _anon_bytes())
            self._halt.wait(0.2)

    def stop(self):
        self._halt.set()
        self.join()


def _baseline_tree(workdir: Path) -> Path:
    """Today's engine: the package as of ``BASELINE``, extracted read-only from git."""
    root = workdir / f"baseline-{BASELINE}"
    if not (root / "ltd_hub").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", BASELINE, "ltd_hub"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


def _today_module(name: str, path: str, needs: Sequence[str]) -> Any:
    """Today's ``ltd_hub/<path>`` loaded as module ``name`` beside the baseline's package.

    The ``ltd_hub.<need>`` modules it imports are today's while it loads (the baseline lacks some
    of them, or their newer names); the baseline's own modules are put back afterwards.
    """
    import importlib.util

    def load(module: str, file: Path) -> Any:
        spec = importlib.util.spec_from_file_location(module, file)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[module] = loaded  # dataclasses look their module up there
        spec.loader.exec_module(loaded)
        return loaded

    saved = {f"ltd_hub.{n}": sys.modules.get(f"ltd_hub.{n}") for n in needs}
    try:
        for need in needs:
            load(f"ltd_hub.{need}", REPO / "ltd_hub" / f"{need}.py")
        return load(name, REPO / "ltd_hub" / path)
    finally:
        for module, was in saved.items():
            if was is None:
                sys.modules.pop(module, None)
            else:
                sys.modules[module] = was


def child(args) -> None:
    sampler = _PeakSampler()
    sampler.start()
    start = time.perf_counter()
    if args.engine == "today":
        sys.path.insert(0, str(args.baseline))

        import ltd_hub.encoders as old  # the baseline's layout

        assert str(args.baseline) in old.__file__, old.__file__
        # The baseline has no hashing encoder: lend it today's (same vectors, a stateless encoder).
        new = _today_module("_ltd_new_encoders", "selection/encoders.py", needs=("errors", "files", "paths"))
        real_get = old.get_encoder
        old.get_encoder = lambda name=None, **kw: new.HashingEncoder(name) if name == "hashing" else real_get(name, **kw)
        kwargs = {}
        from ltd_hub.subset import select_subset  # the baseline's layout
    else:
        sys.path.insert(0, str(REPO))
        kwargs = {"kmeans_sample": KMEANS_SAMPLE}
        if args.engine == "ray":
            import ray

            ray.init(num_cpus=os.cpu_count(), object_store_memory=1 << 30, include_dashboard=False, log_to_driver=False)
            import ray.data

            ray.data.DataContext.get_current().enable_progress_bars = False
            kwargs["engine"] = "ray"
        from ltd_hub.selection.subset import select_subset

    result = select_subset(str(args.pool), encoder="hashing", ratio=0.005, seed=0, progress=False, **kwargs)
    seconds = time.perf_counter() - start
    sampler.stop()
    # The baseline (engine "today") records plain dicts; today's code the typed SubsetStats and SelectionRecord.
    s = result.stats if isinstance(result.stats, dict) else result.stats.to_dict()
    sel = result.manifest.selection if isinstance(result.manifest.selection, dict) else result.manifest.selection.to_dict()
    print(
        json.dumps(
            {
                "engine": args.engine,
                "rows": s["n_filtered_rows"],
                "selected": s["n_selected"],
                "seconds": round(seconds, 1),
                "seconds_load": s["seconds_load"],
                "seconds_encode": s["seconds_encode"],
                "seconds_select": s["seconds_select"],
                "peak_rss_driver_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "peak_rss_all_mb": round(sampler.peak / 2**20),
                "peak_anon_driver_mb": round(sampler.peak_anon / 2**20),
                "n_clusters": sel["n_clusters"],
                "kmeans_sample_rows": sel.get("kmeans_sample_rows"),
                "ids_head": result.manifest.row_indices[:5],
            }
        ),
        flush=True,
    )


# --------------------------------------------------------------------------- driver


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys over xs (None with fewer than two sizes)."""
    if len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="pool sizes (repeatable; default 500000)")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated subset of {','.join(ENGINES)}")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ltd-scale")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--pool", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    sizes = args.rows or [500_000]
    engines = [e for e in args.engines.split(",") if e]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        parser.error(f"unknown engines {sorted(unknown)}; choose from {', '.join(ENGINES)}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    baseline = _baseline_tree(args.workdir)
    results = []
    for n in sizes:
        pool = make_pool(n, args.workdir / f"pool-{n}.jsonl")
        for engine in engines:
            run_dir = Path(tempfile.mkdtemp(prefix=f"{engine}-{n}-", dir=args.workdir))
            env = {
                **os.environ,
                "LTD_HUB_CACHE": str(run_dir / "cache"),  # cold: each run encodes
                "HF_DATASETS_CACHE": str(run_dir / "datasets"),  # cold: each run parses the JSONL
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                "PYTHONPATH": "",
            }
            cmd = [sys.executable, __file__, "--child", "--engine", engine, "--pool", str(pool), "--baseline", str(baseline)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=run_dir)
            if proc.returncode:
                print(f"{engine} at {n} rows failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                results.append({"engine": engine, "rows": n, "error": proc.stderr.strip().splitlines()[-1][:200]})
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            subprocess.run(["rm", "-rf", str(run_dir)])
    print(table(results, engines))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def table(results: list[dict], engines: list[str]) -> str:
    lines = [
        "| engine | rows | seconds (load / encode / select) | peak RSS driver (MB) | of it anonymous (MB) | peak RSS all processes (MB) | k | k-means rows |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['engine']} | {r['rows']:,} | failed: {r['error']} | | | | | |")
            continue
        lines.append(
            f"| {r['engine']} | {r['rows']:,} | {r['seconds']:.0f} ({r['seconds_load']:.0f} / {r['seconds_encode']:.0f} / "
            f"{r['seconds_select']:.0f}) | {r['peak_rss_driver_mb']:,} | {r['peak_anon_driver_mb']:,} | {r['peak_rss_all_mb']:,} | {r['n_clusters']} | "
            f"{r['kmeans_sample_rows'] or 'all'} |"
        )
    lines.append("")
    for engine in engines:
        ok = [r for r in results if r["engine"] == engine and "error" not in r]
        xs = [r["rows"] / 1e6 for r in ok]
        s_time = slope(xs, [r["seconds"] for r in ok])
        s_mem = slope(xs, [r["peak_rss_driver_mb"] for r in ok])
        s_anon = slope(xs, [r["peak_anon_driver_mb"] for r in ok])
        if s_time is None:
            lines.append(f"{engine}: one size run, no slope")
        else:
            lines.append(f"{engine}: {s_time:.0f} s, {s_mem:.0f} MB driver peak RSS and {s_anon:.0f} MB of it anonymous, per million rows")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
