"""Throughput of the embedded Hub through the real client, against a plain local disk copy.

Pushes one file with ``HfApi.upload_file`` (sha256, preupload, LFS batch, PUT, commit) and downloads
it with ``hf_hub_download`` into an empty cache, and compares both with ``shutil.copy``.

Usage: python benchmarks/bench_hub_transfer.py [--size-mb 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

USER, TOKEN = "bench", "hf_benchTOKEN0123456789abcdefghij"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ltd-hub-bench-"))
    # The Hub client reads these at import time.
    os.environ.update(HF_HOME=str(work / "hf_home"), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    from huggingface_hub import HfApi, hf_hub_download

    from ltd_hub.hub_server.serve import start_hub

    source = work / "payload.bin"
    with open(source, "wb") as handle:
        for _ in range(args.size_mb):
            handle.write(os.urandom(1024 * 1024))
    size_mb = source.stat().st_size / 1e6
    timings: dict[str, list[float]] = {
        "local disk copy (shutil.copy)": [],
        "push (HfApi.upload_file)": [],
        "download (hf_hub_download)": [],
    }
    try:
        with start_hub(work / "hub", tokens=[f"{USER}={TOKEN}"]) as hub:
            api = HfApi(endpoint=hub.endpoint, token=TOKEN)
            for i in range(args.repeat):
                repo_id = f"{USER}/bench-{i}"
                api.create_repo(repo_id)
                timings["local disk copy (shutil.copy)"].append(_timed(lambda: shutil.copy(source, work / f"copy-{i}.bin")))
                timings["push (HfApi.upload_file)"].append(
                    _timed(lambda: api.upload_file(path_or_fileobj=str(source), path_in_repo="payload.bin", repo_id=repo_id))
                )
                target: list[str] = []
                timings["download (hf_hub_download)"].append(
                    _timed(
                        lambda: target.append(hf_hub_download(repo_id, "payload.bin", endpoint=hub.endpoint, cache_dir=work / f"cache-{i}"))
                    )
                )
                assert Path(target[0]).stat().st_size == source.stat().st_size
                (work / f"copy-{i}.bin").unlink()
                shutil.rmtree(work / f"cache-{i}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.size_mb} MiB file ({size_mb:.0f} MB), {args.repeat} run(s), median (min-max), MB/s = 10^6 bytes/s")
    print(f"{'operation':<32} {'seconds':>16} {'MB/s':>8}")
    print("-" * 58)
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"{name:<32} {median:7.2f} ({min(values):.2f}-{max(values):.2f}) {size_mb / median:8.0f}")


if __name__ == "__main__":
    main()
