"""Rank-classification speed: today's scorer, the shared-prefix scorer and lm-evaluation-harness.

Same model (SmolLM2-135M-Instruct, the offline copy the embedded Hub is seeded with), same rows
(the first N examples of one template of an eval file), same dtype, same batch size. Times are the fastest of ``--repeat`` interleaved rounds (lm_eval: one round), wall
and process CPU seconds (the steadier figure on a shared machine). Arms:

  separate         ltd_hub's original scorer: every prompt + choice is one sequence
                   (``score_choices(method="separate")``)
  shared           ltd_hub's scorer as shipped: each prompt once, every choice from its KV cache
                   (``score_choices(method="shared")``)
  lm_eval-chat     lm-evaluation-harness, ``multiple_choice`` task from a local YAML over the same rows,
                   ``apply_chat_template=True`` and the choices as ltd_hub formats them (answer +
                   end-of-turn tokens): the same text is scored, so accuracy should match ltd_hub's
  lm_eval-plain    lm-evaluation-harness as usually run: the raw prompt, no chat template, the bare
                   choice after a space (a different formatting, so a different accuracy is expected)

Both ltd_hub arms format the prompt with the model's chat template (system turn, user turn,
assistant header) and score the answer followed by ``<|im_end|>\\n``, exactly as training formats
it. lm_eval moves the context's trailing newline into the continuation, so its log-likelihoods
differ from ltd_hub's by the same constant for every choice of a row (predictions do not change).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_eval.py --rows 150
    python benchmarks/bench_eval.py --data ../shared/data/ltd-nli/eval/anli_r1.jsonl.gz --rows 100 --arms separate shared
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RTE = REPO.parent / "shared" / "data" / "ltd-nli" / "eval" / "rte.jsonl.gz"
ARMS = ("separate", "shared", "lm_eval-chat", "lm_eval-plain")


def default_base_model() -> str:
    from ltd_hub.hub_server.seed import converted_base_model

    return str(converted_base_model())


class Timer:
    """Wall and CPU seconds of a block. On a shared machine the process's CPU time (one thread) is
    the steadier figure: other processes' load stretches wall time, much less CPU time."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def run_ltd(model, formatter, rows, method: str, batch_size: int) -> dict:
    from ltd_hub.evaluation.evaluator import score_choices

    with Timer() as t:
        scores = score_choices(model, formatter, rows, batch_size=batch_size, progress=False, method=method)
    predictions = [max(range(len(s)), key=s.__getitem__) for s in scores]
    return {"seconds": t.wall, "cpu_seconds": t.cpu, "scores": scores, "predictions": predictions}


def run_lm_eval(model, tokenizer, formatter, rows, *, chat: bool, batch_size: int, folder: Path) -> dict:
    """lm-evaluation-harness on a local YAML multiple_choice task over ``rows`` (offline)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    name = f"ltd_bench_{'chat' if chat else 'plain'}"
    data = folder / f"{name}.jsonl"
    with data.open("w", encoding="utf-8") as out:
        for row in rows:
            # chat: the choices exactly as ltd_hub scores them (answer + end-of-turn tokens).
            choices = [formatter.answer_text(row["inputs"], c) for c in row["choices"]] if chat else row["choices"]
            out.write(json.dumps({"inputs": row["inputs"], "choices": choices, "gold": row["gold"]}) + "\n")
    task = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{inputs}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{gold}}",
        "target_delimiter": " ",  # lm_eval drops it under apply_chat_template
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
    import yaml

    (folder / f"{name}.yaml").write_text(yaml.safe_dump(task), encoding="utf-8")
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    with Timer() as t:
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=[name],
            task_manager=TaskManager(include_path=str(folder)),
            apply_chat_template=chat,
            log_samples=True,
            num_fewshot=0,
            verbosity="WARNING",
        )
    samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
    scores = [[float(r[0][0]) for r in s["resps"]] for s in samples]
    predictions = [max(range(len(s)), key=s.__getitem__) for s in scores]
    return {"seconds": t.wall, "cpu_seconds": t.cpu, "scores": scores, "predictions": predictions, "acc": out["results"][name]["acc,none"]}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(RTE), help="eval file with inputs, targets, answer_choices (default RTE)")
    parser.add_argument("--rows", type=int, default=150, help="examples of the first template (default 150)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--base-model", help="model folder (default: the offline SmolLM2-135M-Instruct)")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--repeat", type=int, default=2, help="rounds of the ltd_hub arms, interleaved; the fastest counts (default 2)")
    parser.add_argument("--output", help="also write the figures as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ltd_hub.data.eval_sets import load_eval_sets
    from ltd_hub.files import atomic_write_json
    from ltd_hub.modeling import PromptFormatter

    base = args.base_model or default_base_model()
    rows = load_eval_sets([args.data], templates=1, max_examples=args.rows)[0].rows
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, args.dtype)).eval()
    formatter = PromptFormatter(tokenizer)
    print(f"{len(rows)} rows of {Path(args.data).name}, template {rows[0]['template']!r}, {args.dtype}, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}", file=sys.stderr)  # fmt: skip
    results = _run_arms(args, model, tokenizer, formatter, rows)
    print("\n" + _table(results, len(rows)))
    if args.output:
        summary = {
            "data": args.data, "rows": len(rows), "dtype": args.dtype, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
            "arms": {arm: {k: r[k] for k in ("seconds", "cpu_seconds", "accuracy")} for arm, r in results.items()},
        }  # fmt: skip
        atomic_write_json(args.output, summary)
    return 0


def _run_arms(args: argparse.Namespace, model: Any, tokenizer: Any, formatter: Any, rows: list[dict]) -> dict[str, dict]:
    """Each arm's scores, predictions, accuracy and times (the fastest of the --repeat rounds)."""
    golds = [r["gold"] for r in rows]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # The ltd_hub arms alternate for --repeat rounds so a burst of load elsewhere hits both.
        plan = [a for _ in range(args.repeat) for a in args.arms if a in ("separate", "shared")]
        plan += [a for a in args.arms if a.startswith("lm_eval")]
        for arm in plan:
            print(f"running {arm} ...", file=sys.stderr)
            if arm in ("separate", "shared"):
                r = run_ltd(model, formatter, rows, arm, args.batch_size)
            else:
                r = run_lm_eval(model, tokenizer, formatter, rows, chat=arm == "lm_eval-chat", batch_size=args.batch_size, folder=Path(tmp))
            r["accuracy"] = sum(p == g for p, g in zip(r["predictions"], golds)) / len(rows)
            print(f"  {arm}: {r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU, accuracy {r['accuracy']:.4f}", file=sys.stderr)
            if arm in results:
                assert r["predictions"] == results[arm]["predictions"]
                r["seconds"] = min(r["seconds"], results[arm]["seconds"])
                r["cpu_seconds"] = min(r["cpu_seconds"], results[arm]["cpu_seconds"])
            results[arm] = r
    return results


FORMATS = {
    "separate": "chat template; answer + <|im_end|>\\n",
    "shared": "chat template; answer + <|im_end|>\\n",
    "lm_eval-chat": "chat template; answer + <|im_end|>\\n (lm_eval adds the context's last \\n)",
    "lm_eval-plain": "raw prompt; ' ' + answer",
}


def _table(results: dict[str, dict], n_rows: int) -> str:
    """The comparison table: accuracy, times, speed-up and agreement against the separate scorer."""
    from ltd_hub.evaluation.results import markdown_table

    reference = results.get("separate")
    lines = []
    for arm in [a for a in ARMS if a in results]:
        r = results[arm]
        speed = agree = diff = "–"
        if reference is not None:
            speed = f"{reference['cpu_seconds'] / r['cpu_seconds']:.2f}×, {reference['seconds'] / r['seconds']:.2f}×"
            agree = f"{sum(a == b for a, b in zip(r['predictions'], reference['predictions'])) / n_rows:.3f}"
            if arm in ("separate", "shared"):
                diff = f"{max(abs(x - y) for a, b in zip(r['scores'], reference['scores']) for x, y in zip(a, b)):.1e}"
        lines.append([arm, FORMATS[arm], f"{r['accuracy']:.4f}", f"{r['seconds']:.1f}", f"{r['cpu_seconds']:.1f}", speed, agree, diff])
    header = ["Scorer", "Formatting", "Accuracy", "Wall s", "CPU s", "Speed-up vs separate (CPU, wall)", "Same predictions as separate",
              "Max abs Δ log-lik vs separate"]  # fmt: skip
    return markdown_table(header, lines)


if __name__ == "__main__":
    sys.exit(main())
