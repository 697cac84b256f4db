"""Resumable training: a run that stops at a time budget (or is killed) continues from its last checkpoint.

A checkpoint is transformers' own (``checkpoint-N``: adapter, optimizer, scheduler, RNG states,
``trainer_state.json``; without the tokenizer files, which a resume never reads) plus what
transformers does not carry across a resume, so that a resumed run takes the same steps on the same
batches as one that never stopped, and reports figures for the whole run:

- ``ltd_hub_progress.json``: the wall-clock seconds and the summed loss of the steps so far
  (transformers' ``train()`` reports both for its own call only);
- ``ltd_hub_epoch_rng.pt``: the torch RNG state the current epoch's batch order was drawn from.
  transformers restores the RNG state of the checkpoint *after* drawing the order of a resumed
  epoch, so an epoch after the first, resumed mid-way, would get a new order: some rows trained twice
  in that epoch, others never (the class of bug of huggingface/accelerate#4233 and
  modelscope/ms-swift#10050). :func:`resumable_trainer` draws it again from the recorded state.

Only :func:`progress_callback` and :func:`resumable_trainer` import transformers and torch; the rest is
read by ``reproduce --dry-run``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PROGRESS_FILE = "ltd_hub_progress.json"
EPOCH_RNG_FILE = "ltd_hub_epoch_rng.pt"
_PREFIX = "checkpoint-"


@dataclass
class Checkpointing:
    """Where a training run keeps its checkpoints and when it stops to save one.

    Attributes:
        folder: the run's checkpoint folder; ``checkpoint-N`` folders go inside (the two newest are
            kept; a run stopped at ``stop_at`` keeps only the one it stopped at), and a run whose folder
            already holds a complete one resumes from the newest.
        save_steps: also save every N optimizer steps (0: only when stopping at ``stop_at``), so a
            killed process loses at most N steps.
        stop_at: a ``time.time()`` after which training saves a checkpoint at the end of the current
            step and stops, unfinished; None runs to the end. The last step is always saved (resuming
            from it trains nothing and saves the adapter): the caller removes the folder once the
            run's outcome is safe.
    """

    folder: Path
    save_steps: int = 0
    stop_at: float | None = None

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if self.save_steps < 0:
            raise ValueError(f"save_steps must be 0 or more, got {self.save_steps}")

    def last(self) -> Path | None:
        """The newest complete checkpoint in :attr:`folder` (None when there is none)."""
        return last_checkpoint(self.folder)


@dataclass
class Progress:
    """How far a checkpointed run got: ``ltd_hub_progress.json``.

    ``loss_sum`` is the summed training loss of steps 1..``step``, from transformers' log history (each
    entry the mean since the previous one, kept to 4 decimals); ``seconds`` the training time of all
    segments so far; ``segments`` how many processes trained it.
    """

    step: int
    max_steps: int
    seconds: float
    loss_sum: float
    segments: int

    def combined_loss(self, final_step: int, segment_loss: float) -> float:
        """Mean loss of a run resumed from here: these steps' sum plus the resumed call's own mean."""
        return (self.loss_sum + segment_loss * (final_step - self.step)) / max(final_step, 1)


def last_checkpoint(folder: str | Path) -> Path | None:
    """The highest-numbered ``checkpoint-N`` in ``folder`` that holds its progress file (written last)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(_PREFIX) and p.name[len(_PREFIX) :].isdigit()]
    complete = [p for p in found if (p / PROGRESS_FILE).is_file()]
    return max(complete, key=lambda p: int(p.name[len(_PREFIX) :]), default=None)


def read_progress(checkpoint: str | Path | None) -> Progress | None:
    """The :class:`Progress` saved with ``checkpoint`` (None when there is none or it is unreadable)."""
    if checkpoint is None:
        return None
    try:
        data = json.loads((Path(checkpoint) / PROGRESS_FILE).read_text(encoding="utf-8"))
        return Progress(**{key: data[key] for key in ("step", "max_steps", "seconds", "loss_sum", "segments")})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def logged_loss_sum(log_history: list[dict[str, Any]], up_to: int) -> float:
    """Summed loss of steps 1..``up_to`` from a Trainer's log history (each ``loss`` the mean since the previous log)."""
    total, previous = 0.0, 0
    for entry in log_history:
        step = entry.get("step", 0)
        if "loss" in entry and previous < step <= up_to:
            total += float(entry["loss"]) * (step - previous)
            previous = step
    return total


def tokenizer_file_names(tokenizer: Any) -> set[str]:
    """The names of the files ``tokenizer.save_pretrained`` writes (it returns their paths)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return {Path(path).name for path in tokenizer.save_pretrained(tmp)}


def resumable_trainer(resume_from: Path | None, **kwargs: Any) -> Any:
    """A ``transformers.Trainer`` (``kwargs`` as for it) whose batch order survives a resume mid-epoch.

    Its training sampler records the torch RNG state each epoch's order is drawn from; resumed from
    ``resume_from`` in the middle of an epoch, it draws that epoch's order from the state recorded in
    the checkpoint (transformers then restores the checkpoint's own RNG state, as it always does).
    The recording reads the state and never draws from it, so a run that never stops is unchanged.
    """
    import torch
    from torch.utils.data import Sampler
    from transformers import Trainer

    class _EpochOrder(Sampler):
        def __init__(self, inner: Any):
            self.inner = inner
            self.restore: Any = None  # set when resuming mid-epoch: the state to draw this epoch's order from
            self.drawn_from: Any = None

        def __len__(self) -> int:
            return len(self.inner)

        def __iter__(self) -> Any:
            if self.restore is not None:
                torch.set_rng_state(self.restore)
                self.restore = None
            self.drawn_from = torch.get_rng_state()
            return iter(self.inner)

    class _ResumableTrainer(Trainer):
        epoch_order: _EpochOrder | None = None

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            sampler = super()._get_train_sampler(train_dataset)
            if sampler is not None:
                self.epoch_order = _EpochOrder(sampler)
                return self.epoch_order
            return sampler

    trainer = _ResumableTrainer(**kwargs)
    trainer.resume_epoch_rng = (
        torch.load(resume_from / EPOCH_RNG_FILE) if resume_from and (resume_from / EPOCH_RNG_FILE).is_file() else None
    )
    return trainer


def progress_callback(checkpointing: Checkpointing, resumed: Progress | None, trainer: Any) -> Any:
    """A ``TrainerCallback`` that stops at ``checkpointing.stop_at`` and writes the progress file of each checkpoint.

    It also saves the last step, leaves the tokenizer files out of each checkpoint, and after a stop
    keeps only the checkpoint it stopped at.

    ``trainer`` is a :func:`resumable_trainer`: the callback saves its epoch's RNG state with each
    checkpoint, and hands a resumed mid-epoch run the state its epoch's order was drawn from.
    """
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        stopping = False  # this step stops at stop_at
        tokenizer_files: set[str] | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()
            order, saved = trainer.epoch_order, trainer.resume_epoch_rng
            loader = kwargs.get("train_dataloader")
            if order is not None and saved is not None and loader is not None and state.global_step > 0:
                # transformers resumes mid-epoch when the step is not a multiple of the epoch's optimizer steps.
                per_epoch = max(-(-len(loader) // args.gradient_accumulation_steps), 1)
                if state.global_step % per_epoch:
                    order.restore = saved

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            stop_at = checkpointing.stop_at
            self.stopping = stop_at is not None and time.time() >= stop_at and state.global_step < state.max_steps
            if self.stopping:
                control.should_save = True
                control.should_training_stop = True
            if state.global_step >= state.max_steps:
                # The last step is saved too: a finished run whose evaluation is cut before its result is
                # written resumes here, on any machine that has the folder, instead of training again.
                control.should_save = True
            if control.should_save:
                # Log at every checkpoint, so the log history holds the loss of every step before it
                # (the loss a resumed run reports for the whole run is summed from it).
                control.should_log = True

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            progress = Progress(
                step=state.global_step,
                max_steps=state.max_steps,
                seconds=(resumed.seconds if resumed else 0.0) + time.perf_counter() - self.started,
                loss_sum=logged_loss_sum(state.log_history, state.global_step),
                segments=(resumed.segments if resumed else 0) + 1,
            )
            folder = Path(args.output_dir) / f"{_PREFIX}{state.global_step}"
            # transformers writes the tokenizer into every checkpoint (3.5 MB of SmolLM2's 15); a resume
            # never reads it (the run loads its tokenizer from the base model), and a checkpoint copied
            # between machines should hold only what resuming reads.
            tokenizer = trainer.processing_class or getattr(trainer.data_collator, "tokenizer", None)
            if tokenizer is not None:
                if self.tokenizer_files is None:
                    self.tokenizer_files = tokenizer_file_names(tokenizer)
                for name in self.tokenizer_files:
                    (folder / name).unlink(missing_ok=True)
            order = trainer.epoch_order
            if order is not None and order.drawn_from is not None:
                import torch

                torch.save(order.drawn_from, folder / EPOCH_RNG_FILE)
            # Written last: a checkpoint without it is incomplete (see last_checkpoint).
            (folder / PROGRESS_FILE).write_text(json.dumps(asdict(progress), indent=1) + "\n", encoding="utf-8")
            if self.stopping:
                # Stopped on purpose: this complete checkpoint is all a resume needs, and the one folder
                # is what gets carried to the next machine (the older one is kept only against a kill mid-save).
                for other in Path(args.output_dir).glob(f"{_PREFIX}*"):
                    if other != folder and other.is_dir():
                        shutil.rmtree(other, ignore_errors=True)

    return _Progress()
