"""Time and throughput of one ``scripts/gpu_reproduce.sh run`` call, as JSON on stdout.

Reads the runs this call finished (``reproduce --format json``'s ``ran``) from their result files:
wall time, training tokens per second over all runs, and MFU = 6 · N · tokens/s / peak, with N the
base model's parameter count (the usual 6N FLOPs per trained token; with LoRA the frozen weights
get no weight gradients, so the true work is nearer 4N and this MFU is an upper estimate) and the
peak the GPU's dense bf16 figure (None on a CPU or an unknown GPU).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

# Dense bf16 tensor-core peaks from the vendors' data sheets (FLOP/s).
PEAK_BF16 = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 125e12}


def parameter_count(base_model: str) -> int | None:
    """Parameters of the base model, counted without loading its weights."""
    try:
        from accelerate import init_empty_weights
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(base_model)
        with init_empty_weights():
            model = AutoModelForCausalLM.from_config(config)
        return sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001 - a figure for the report, never a reason to lose the results
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results-dir", required=True)
    parser.add_argument("--ran", required=True, help="reproduce --format json output of this call")
    parser.add_argument("--started", type=float, required=True, help="epoch seconds when the call started")
    parser.add_argument("--base-model", required=True)
    args = parser.parse_args()

    try:
        report = json.loads(Path(args.ran).read_text())
    except (OSError, ValueError):
        report = {}  # reproduce was stopped before it printed: count the result files written meanwhile
    ran = report.get("ran")
    arms = Path(args.results_dir) / "arms"
    records = []
    for path in sorted(arms.glob("*.json")):
        record = json.loads(path.read_text())
        if (ran is not None and record["run"] in ran) or (ran is None and Path(path).stat().st_mtime >= args.started):
            records.append(record)
    trained = [r["training"] for r in records if r.get("training")]
    tokens = sum(t.get("train_tokens") or 0 for t in trained)
    train_seconds = sum(t.get("seconds") or 0 for t in trained)
    tokens_per_second = tokens / train_seconds if train_seconds else 0.0

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in device), None) if device != "cpu" else None
    n_params = parameter_count(args.base_model)
    mfu = 6 * n_params * tokens_per_second / peak if (peak and n_params and tokens_per_second) else None
    summary = {
        "device": device,
        "seconds": round(time.time() - args.started, 1),
        "runs_done": len(records),
        "runs_left": report.get("left"),
        "runs": {
            r["run"]: {
                "train_seconds": (r.get("training") or {}).get("seconds"),
                "steps": (r.get("training") or {}).get("steps"),
                "tokens_per_second": (r.get("training") or {}).get("tokens_per_second"),
                "eval_seconds": r.get("eval_seconds"),
                "average": r.get("average"),
            }
            for r in records
        },  # fmt: skip
        "train": {
            "tokens": tokens,
            "seconds": round(train_seconds, 1),
            "tokens_per_second": round(tokens_per_second, 1),
            "base_model_parameters": n_params,
            "peak_bf16_flops": peak,
            "mfu": None if mfu is None else round(mfu, 4),
            "mfu_formula": "6 * parameters * tokens/s / peak dense bf16 (an upper estimate for LoRA)",
        },
        "eval_seconds": round(sum(r.get("eval_seconds") or 0 for r in records), 1),
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
