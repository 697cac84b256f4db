"""Training throughput of ``ltd_hub.train`` against a plain padded ``Trainer`` baseline.

Same base model (SmolLM2-135M-Instruct), same rows (a spread of the ltd-nli pool in the chat
format), same LoRA (r=8 on q,k,v,o), same batch size and number of optimizer steps. Each arm runs in
its own process so its peak memory is its own. Throughput counts real (non-padding) tokens, so
padding costs time but earns nothing.

Arms:
  baseline-static   Trainer, fp32, every row padded to --max-length (the classic recipe)
  baseline-dynamic  Trainer, fp32, padding to the longest row of each random batch
  ltd-fp32          ltd_hub.train with bf16 off: length-grouped padding (the batching gain alone)
  ltd-padding-free  ltd_hub.train with flattened (padding-free) batches, bf16 when supported
  ltd-default       ltd_hub.train as shipped: bf16 when supported, padding-free with flash attention,
                    else length-grouped padding (the CPU case)
  trl-sft           TRL's SFTTrainer/SFTConfig doing what ltd-default does on CPU: prompt-completion
                    chat rows, loss on the completion only, length-grouped padded batches, bf16 when
                    supported (needs `pip install trl`; rows over --max-length are truncated by TRL,
                    skipped by ltd_hub)
  trl-padding-free  the same with SFTConfig(padding_free=True) (flattened batches, as ltd-padding-free)

On a GPU the table adds MFU (6 x parameters x tokens/s over the GPU's dense bf16 peak).

Usage:
    python benchmarks/bench_train.py                      # CPU, 10 steps per arm
    python benchmarks/bench_train.py --steps 30 --batch-size 16 --output results.json
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POOL = REPO.parent / "shared" / "data" / "ltd-nli" / "pool" / "p3_nli_pool.jsonl.gz"
ARMS = ("baseline-static", "baseline-dynamic", "ltd-fp32", "ltd-padding-free", "ltd-default", "trl-sft", "trl-padding-free")
# Dense bf16 peak FLOP/s by GPU name (no sparsity).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def write_rows(path: Path, n: int, every: int = 97) -> Path:
    """Every ``every``-th pool row (the pool is grouped by source and template), up to ``n`` rows."""
    rows = []
    with gzip.open(POOL, "rt", encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            if i % every == 0:
                rows.append(line)
                if len(rows) == n:
                    break
    path.write_text("".join(rows), encoding="utf-8")
    return path


def peak_memory_mb() -> float:
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_baseline(args: argparse.Namespace, data: Path, static: bool) -> dict:
    """The plain recipe: chat-formatted rows, padded, fp32, random batches, transformers Trainer."""
    import datasets
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    rows = datasets.load_dataset("json", data_files=str(data), split="train")

    def encode(row):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": row["inputs"]}], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            [{"role": "user", "content": row["inputs"]}, {"role": "assistant", "content": row["targets"]}], tokenize=False
        )
        n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        ids = tokenizer(full, add_special_tokens=False, truncation=True, max_length=args.max_length)["input_ids"]
        labels = [-100] * n_prompt + ids[n_prompt:]
        if static:
            pad = args.max_length - len(ids)
            return {
                "input_ids": ids + [tokenizer.pad_token_id] * pad,
                "attention_mask": [1] * len(ids) + [0] * pad,
                "labels": labels + [-100] * pad,
            }
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}

    tokenized = rows.map(encode, remove_columns=rows.column_names)
    model = AutoModelForCausalLM.from_pretrained(args.base_model, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"),
    )
    on_gpu = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size, learning_rate=2e-4,
            logging_steps=args.steps, save_strategy="no", report_to="none", seed=0, use_cpu=not on_gpu,
            disable_tqdm=True, include_num_input_tokens_seen="non_padding",
        )  # fmt: skip
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        trainer = Trainer(model=model, args=training_args, train_dataset=tokenized, data_collator=collator)
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - started
    tokens = int(trainer.state.num_input_tokens_seen)
    return {"steps": output.global_step, "seconds": seconds, "tokens": tokens, "loss": output.training_loss}


def run_ltd(args: argparse.Namespace, data: Path, *, bf16: bool | None, padding_free: bool | None) -> dict:
    from ltd_hub import TrainConfig, train

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            dataset=str(data), base_model=args.base_model, output_dir=str(Path(out) / "adapter"), max_steps=args.steps,
            per_device_train_batch_size=args.batch_size, max_length=args.max_length, logging_steps=args.steps,
            warmup_ratio=0.0, bf16=bf16, padding_free=padding_free, group_by_length=True, seed=0,
        )  # fmt: skip
        result = train(config)
    return {"steps": result.steps, "seconds": result.seconds, "tokens": result.train_tokens, "loss": result.train_loss}


def run_trl(args: argparse.Namespace, data: Path, *, padding_free: bool) -> dict:
    """TRL's recipe for the same job: SFTTrainer on prompt-completion chat rows, LoRA through ``peft_config``."""
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from ltd_hub.modeling import bf16_supported

    bf16 = bf16_supported()
    rows = datasets.load_dataset("json", data_files=str(data), split="train")
    chats = rows.map(
        lambda row: {
            "prompt": [{"role": "user", "content": row["inputs"]}],
            "completion": [{"role": "assistant", "content": row["targets"]}],
        },
        remove_columns=rows.column_names,
    )
    model = AutoModelForCausalLM.from_pretrained(args.base_model, dtype=torch.bfloat16 if bf16 else torch.float32)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
    on_gpu = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size, learning_rate=2e-4,
            logging_steps=args.steps, save_strategy="no", report_to="none", seed=0, data_seed=0, use_cpu=not on_gpu,
            disable_tqdm=True, bf16=bf16, max_length=None if padding_free else args.max_length,  # TRL: padding-free does not truncate
            completion_only_loss=True, padding_free=padding_free, gradient_checkpointing=False,  # TRL defaults it on; ltd_hub off
            train_sampling_strategy="random" if padding_free else "group_by_length", dataloader_num_workers=0,
            include_num_input_tokens_seen="all" if padding_free else "non_padding",
        )  # fmt: skip
        trainer = SFTTrainer(model=model, args=config, train_dataset=chats, processing_class=AutoTokenizer.from_pretrained(args.base_model),
                             peft_config=lora)  # fmt: skip
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - started
    return {
        "steps": output.global_step,
        "seconds": seconds,
        "tokens": int(trainer.state.num_input_tokens_seen),
        "loss": output.training_loss,
    }


def run_arm(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    if args.run_arm == "baseline-static":
        stats = run_baseline(args, data, static=True)
    elif args.run_arm == "baseline-dynamic":
        stats = run_baseline(args, data, static=False)
    elif args.run_arm == "ltd-fp32":
        stats = run_ltd(args, data, bf16=False, padding_free=False)
    elif args.run_arm == "ltd-padding-free":
        stats = run_ltd(args, data, bf16=None, padding_free=True)
    elif args.run_arm in ("trl-sft", "trl-padding-free"):
        stats = run_trl(args, data, padding_free=args.run_arm == "trl-padding-free")
    else:
        stats = run_ltd(args, data, bf16=None, padding_free=None)
    from ltd_hub.modeling import bf16_supported

    stats.update(
        arm=args.run_arm,
        tokens_per_second=stats["tokens"] / stats["seconds"],
        peak_memory_mb=peak_memory_mb(),
        device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        bf16=args.run_arm in ("ltd-padding-free", "ltd-default", "trl-sft", "trl-padding-free") and bf16_supported(),
    )
    if torch.cuda.is_available():
        from transformers import AutoConfig, AutoModelForCausalLM

        with torch.device("meta"):  # count the parameters without allocating them
            n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.base_model)).parameters())
        peak = next((v for k, v in PEAK_BF16.items() if k in stats["device"]), None)
        stats["mfu"] = 6 * n_params * stats["tokens_per_second"] / peak if peak else None
    print("RESULT " + json.dumps(stats), flush=True)


def default_base_model() -> str:
    from ltd_hub.hub_server.seed import converted_base_model

    return str(converted_base_model())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", help="model folder or Hub id (default: the offline SmolLM2-135M-Instruct)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    have_trl = importlib.util.find_spec("trl") is not None
    parser.add_argument("--arms", nargs="+", default=[a for a in ARMS if have_trl or not a.startswith("trl")], choices=ARMS,
                        help="arms to run (default: all; the trl arms only when trl is installed)")  # fmt: skip
    parser.add_argument("--output", help="write the results as JSON")
    parser.add_argument("--run-arm", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_arm:
        run_arm(args)
        return 0
    args.base_model = args.base_model or default_base_model()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_rows(Path(tmp) / "rows.jsonl", args.rows)
        for arm in args.arms:
            cmd = [sys.executable, __file__, "--run-arm", arm, "--data", str(data), "--base-model", args.base_model,
                   "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
                   "--threads", str(args.threads)]  # fmt: skip
            env = dict(
                os.environ,
                OMP_NUM_THREADS=str(args.threads),
                PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            )
            print(f"running {arm} ...", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"arm {arm} failed")
            results.append(json.loads(line[len("RESULT ") :]))
    reference = next((r for r in results if r["arm"] == "baseline-static"), results[0])
    dynamic = next((r for r in results if r["arm"] == "baseline-dynamic"), None)
    gpu = any(r.get("mfu") is not None for r in results)
    print(f"\nSmolLM2-135M-Instruct LoRA r=8 (q,k,v,o), {args.steps} steps x batch {args.batch_size}, max_length {args.max_length}, "
          f"{args.threads} threads, device {results[0]['device']}\n")  # fmt: skip
    head = "| arm | bf16 | s/step | real tokens/s | vs static | vs dynamic | peak memory (MB) |" + (" MFU |" if gpu else "")
    print(head)
    print("|---|---|---|---|---|---|---|" + ("---|" if gpu else ""))
    for r in results:
        row = (
            f"| {r['arm']} | {'yes' if r['bf16'] else 'no'} | {r['seconds'] / r['steps']:.2f} | {r['tokens_per_second']:.0f} | "
            f"{r['tokens_per_second'] / reference['tokens_per_second']:.2f}x | "
            f"{(r['tokens_per_second'] / dynamic['tokens_per_second']) if dynamic else float('nan'):.2f}x | {r['peak_memory_mb']:.0f} |"
        )
        if gpu:
            row += f" {r['mfu'] * 100:.1f}% |" if r.get("mfu") else " |"
        print(row)
    if args.output:
        Path(args.output).write_text(json.dumps({"settings": vars(args), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
