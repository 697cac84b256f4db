"""Training progress a person can read: one tqdm bar with ETA, loss and tokens/s, and log lines in words.

transformers' own ``ProgressCallback`` writes every log as a raw dict (``{'loss': '10.9', ...}``,
numbers as strings) to stdout; :func:`install` swaps it for :class:`TrainingProgress`, which keeps
everything on stderr, so ``--format json`` output stays clean.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from transformers import ProgressCallback, TrainerCallback


def format_log(logs: dict[str, Any], max_steps: int | None = None, step: int | None = None) -> str | None:
    """One readable line for a Trainer log dict, or None for logs not worth a line.

    Example:
        >>> format_log({"loss": 1.2345, "grad_norm": 2.1, "learning_rate": 2e-4, "epoch": 0.125}, 30, 10)
        'step 10/30 · epoch 0.125 · loss 1.234 · lr 0.0002 · grad norm 2.1'
        >>> format_log({"train_runtime": 61.5, "train_loss": 1.1, "epoch": 0.25}, 30, 30)
        'trained 30 steps in 61.5 s · epoch 0.25 · mean loss 1.1'
    """
    where = f"step {step}/{max_steps}" if step is not None and max_steps else None
    # The end-of-training log carries train_loss (newer transformers put train_runtime in every log).
    if "train_loss" in logs and "train_runtime" in logs:
        parts = [
            f"trained {step} steps in {logs['train_runtime']:.1f} s" if step is not None else f"trained in {logs['train_runtime']:.1f} s"
        ]
        if "epoch" in logs:
            parts.append(f"epoch {logs['epoch']:.3g}")
        if "train_loss" in logs:
            parts.append(f"mean loss {logs['train_loss']:.4g}")
        return " · ".join(parts)
    if "loss" not in logs:
        return None
    parts = [p for p in (where,) if p]
    if "epoch" in logs:
        parts.append(f"epoch {logs['epoch']:.3g}")
    parts.append(f"loss {logs['loss']:.4g}")
    if "learning_rate" in logs:
        parts.append(f"lr {logs['learning_rate']:.3g}")
    if "grad_norm" in logs:
        parts.append(f"grad norm {logs['grad_norm']:.3g}")
    if logs.get("train_tokens_per_second"):
        parts.append(f"{logs['train_tokens_per_second']:.0f} tokens/s")
    return " · ".join(parts)


class TrainingProgress(TrainerCallback):
    """A tqdm bar over the optimizer steps (ETA from tqdm) showing loss and tokens/s; logs as lines.

    Tokens per second come from ``state.num_input_tokens_seen`` (set when the Trainer counts input
    tokens) over the wall time since training began.
    """

    def __init__(self, stream: Any = None):
        self.stream = stream or sys.stderr
        self.bar = None
        self.started = 0.0
        self.last_loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, desc="training", unit="step", file=self.stream, dynamic_ncols=True)
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is None:
            return
        self.bar.update(state.global_step - self.bar.n)
        postfix = {}
        if self.last_loss is not None:
            postfix["loss"] = f"{self.last_loss:.3g}"
        elapsed = time.perf_counter() - self.started
        tokens = getattr(state, "num_input_tokens_seen", 0) or 0
        if tokens and elapsed > 0:
            postfix["tokens/s"] = f"{tokens / elapsed:.0f}"
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "loss" in logs:
            self.last_loss = float(logs["loss"])
        line = format_log(logs, state.max_steps, state.global_step)
        if line:
            if self.bar is not None:
                self.bar.write(line, file=self.stream)
            else:
                print(line, file=self.stream)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def install(trainer: Any) -> None:
    """Replace the Trainer's ``ProgressCallback`` (raw dicts on stdout) with :class:`TrainingProgress` (stderr).

    Example:
        >>> install(trainer)  # doctest: +SKIP
    """
    trainer.remove_callback(ProgressCallback)
    for callback in list(trainer.callback_handler.callbacks):
        if isinstance(callback, ProgressCallback):  # a subclass (ltd-hub's earlier stderr variant)
            trainer.remove_callback(callback)
    trainer.add_callback(TrainingProgress())
