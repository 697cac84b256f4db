"""LoRA instruction tuning on a (sub)set of instruction data, built on transformers' Trainer + peft.

Rows are formatted with the base model's chat template (prompt = the user turn, answer = the
assistant turn), the loss covers the answer tokens only, and batches are padding-free (the
mini-batch is flattened into one sequence with restarting position ids, which transformers turns
into a block-diagonal attention mask) or padded per batch with length grouping. The same code runs
on CPU, one GPU, or several under ``accelerate launch``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ltd_hub.checkpoints import Checkpointing
from ltd_hub.configs import ConfigMixin
from ltd_hub.constants import SUMMARY_FILE  # noqa: E402 - re-exported: training writes it
from ltd_hub.data.sources import DataSource, drop_rows_without_target, load_instruction_data
from ltd_hub.errors import HubError, UsageError
from ltd_hub.files import replace_dir
from ltd_hub.modeling import FormatError, PromptFormatter, bf16_supported, load_base_model, load_tokenizer, short_error


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass
class TrainConfig(ConfigMixin):
    """Everything one training run needs; the CLI flags and the ``--config`` YAML keys are these names.

    Names follow TRL/transformers (``num_train_epochs``, ``per_device_train_batch_size``,
    ``lora_r`` ...), so a TRL config carries over. Read from flags and YAML by :mod:`ltd_hub.configs`
    (``TrainConfig.from_yaml(path, overrides)``, ``TrainConfig.from_mapping(values)``).

    The fields shared with ``transformers.TrainingArguments`` are copies, not a composed
    ``TrainingArguments``, because composing would change the CLI and the results: its defaults differ
    (learning rate 5e-5, 3 epochs, a log line every 500 steps), its 114 options would all become flags
    of ``ltd-hub train``, three of ours are gone from it in transformers 5 (``warmup_ratio``,
    ``group_by_length``, ``gradient_checkpointing``), building one imports torch and checks the machine
    before the config is validated, and ``reproduce`` hashes these keys to tell which committed
    results are still valid. :meth:`training_arguments` passes the shared ones through by name
    (:data:`TRAINING_ARGUMENTS`), so each mapping is written once.

    Example:
        >>> cfg = TrainConfig(dataset="me/nli-coreset", base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        ...                   output_dir="runs/coreset", max_steps=100)
    """

    config_words: ClassVar[dict[Any, str]] = {int: "a whole number"}
    config_scalar_lists: ClassVar[bool] = True  # `lora_target_modules: all-linear`, as TRL configs write it

    dataset: str = field(
        default="",
        metadata=_help(
            "training data: a Hub dataset repo id (a pushed subset) or a local file/folder (JSONL, JSON, Parquet, CSV); required",
            metavar="REPO_OR_PATH",
        ),
    )
    base_model: str = field(
        default="", metadata=_help("base model: a Hub model id (or a local folder when not pushing); required", metavar="HUB_ID")
    )
    output_dir: str = field(default="", metadata=_help("folder for the adapter, its card and training summary; required", metavar="DIR"))
    push_to: str | None = field(
        default=None, metadata=_help("push the adapter with its model card to this Hub model repo (NAMESPACE/NAME)", metavar="REPO_ID")
    )
    private: bool = field(
        default=False,
        metadata=_help("create the pushed repo private (without --private or --public: private exactly when the training data is)"),
    )
    public: bool = field(
        default=False,
        metadata=_help("push the adapter public even when its training data is private (one line names what becomes visible)"),
    )
    overwrite_output_dir: bool = field(default=False, metadata=_help("replace a non-empty --output-dir"))
    dataset_split: str = field(default="train", metadata=_help("split of the dataset to train on"))
    dataset_revision: str | None = field(default=None, metadata=_help("branch, tag or commit of a Hub dataset"))
    input_column: str | None = field(
        default=None,
        metadata=_help(
            "column(s) with the prompt, comma-separated ones joined by a blank line (default: the subset manifest's input columns, else inputs)"
        ),
    )
    target_column: str | None = field(
        default=None, metadata=_help("column with the answer (default: the subset manifest's target column, else targets)")
    )
    max_train_samples: int | None = field(default=None, metadata=_help("train on the first N rows only"))
    use_chat_template: bool = field(default=True, metadata=_help("format rows with the base model's chat template when it has one"))
    system_prompt: str | None = field(default=None, metadata=_help("system message put before every prompt (default: the template's own)"))
    num_train_epochs: float = field(default=1.0, metadata=_help("number of passes over the data (ignored when --max-steps > 0)"))
    max_steps: int = field(default=-1, metadata=_help("total optimizer steps; overrides --num-train-epochs when > 0"))
    learning_rate: float = field(default=2e-4, metadata=_help("peak learning rate of the LoRA parameters"))
    lr_scheduler_type: str = field(default="linear", metadata=_help("learning-rate schedule (linear, cosine, constant, ...)"))
    warmup_ratio: float = field(default=0.03, metadata=_help("fraction of steps for linear warm-up"))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay"))
    per_device_train_batch_size: int = field(default=8, metadata=_help("rows per batch on each device"))
    gradient_accumulation_steps: int = field(default=1, metadata=_help("batches accumulated per optimizer step"))
    max_length: int = field(default=512, metadata=_help("longest prompt + answer in tokens; longer rows are skipped and counted"))
    lora_r: int = field(default=8, metadata=_help("LoRA rank"))
    lora_alpha: int = field(default=16, metadata=_help("LoRA scaling alpha"))
    lora_dropout: float = field(default=0.05, metadata=_help("dropout on the LoRA input"))
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        metadata=_help("modules that get LoRA layers (names, or all-linear)"),
    )
    seed: int = field(default=42, metadata=_help("random seed (data order, LoRA init, dropout)"))
    report_to: str = field(default="none", metadata=_help("where to report logs: none, tensorboard, wandb, ..."))
    logging_steps: int = field(default=10, metadata=_help("log the loss every N steps"))
    bf16: bool | None = field(default=None, metadata=_help("bf16 base weights + autocast (default: on when the GPU or CPU supports bf16)"))
    gradient_checkpointing: bool = field(default=False, metadata=_help("trade compute for memory (large models / long rows on GPU)"))
    padding_free: bool | None = field(
        default=None,
        metadata=_help(
            "flatten each batch into one sequence, no padding tokens (default: on with flash attention, whose varlen kernel makes it cheapest; else off)"
        ),
    )
    group_by_length: bool = field(
        default=True, metadata=_help("batch rows of similar length together, so padded batches carry little padding")
    )
    attn_implementation: str = field(default="sdpa", metadata=_help("attention kernel: sdpa, eager, flash_attention_2"))

    def validate(self) -> None:
        """Check every value before any download or training; raise UsageError naming the flag."""
        self._check_required()
        self._check_ranges()
        if not self.lora_target_modules:
            raise UsageError("--lora-target-modules needs at least one module name (or all-linear)")
        if self.private and self.public:
            raise UsageError("--private and --public contradict each other; pass one of them")
        if self.push_to and _is_local_path(self.base_model):
            raise UsageError(
                f"--base-model {self.base_model} is a local folder; pass its Hub id when pushing, "
                "so the card and adapter_config.json link a model others can download"
            )
        _check_split(self.dataset, self.dataset_split)
        self._check_output_dir()

    def _check_required(self) -> None:
        for name in ("dataset", "base_model", "output_dir"):
            if not getattr(self, name):
                raise UsageError(f"--{name.replace('_', '-')} is required (flag or key in --config)")

    def _check_ranges(self) -> None:
        positive = ("per_device_train_batch_size", "gradient_accumulation_steps", "lora_r", "lora_alpha", "logging_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_length < 8:
            raise UsageError(f"--max-length must be at least 8 tokens, got {self.max_length}")
        if not self.learning_rate > 0:
            raise UsageError(f"--learning-rate must be > 0, got {self.learning_rate}")
        if self.max_steps <= 0 and not self.num_train_epochs > 0:
            raise UsageError("set --num-train-epochs > 0 or --max-steps > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise UsageError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.lora_dropout < 1:
            raise UsageError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise UsageError(f"--max-train-samples must be at least 1, got {self.max_train_samples}")

    def _check_output_dir(self) -> None:
        out = Path(self.output_dir)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--output-dir {out} is a file; choose a folder")
        if out.is_dir() and any(out.iterdir()) and not self.overwrite_output_dir:
            raise UsageError(f"--output-dir {out} is not empty; choose another folder or pass --overwrite-output-dir")

    def training_arguments(self, *, work_dir: Path, bf16: bool, on_gpu: bool, padding_free: bool, save_steps: int = 0) -> Any:
        """The ``transformers.TrainingArguments`` of this run.

        Checkpoints go to ``work_dir`` every ``save_steps`` steps (0: none on a schedule; a
        :class:`~ltd_hub.checkpoints.Checkpointing` run still saves one when it stops early). The two
        newest are kept: the older one stays until the newer is complete.
        """
        from transformers import TrainingArguments

        return TrainingArguments(
            output_dir=str(work_dir),
            **{name: getattr(self, name) for name in TRAINING_ARGUMENTS},
            warmup_steps=self.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
            logging_first_step=True,
            save_strategy="steps" if save_steps > 0 else "no",
            **({"save_steps": save_steps} if save_steps > 0 else {}),
            save_total_limit=2,
            data_seed=self.seed,
            bf16=bf16,
            use_cpu=not on_gpu,
            activation_checkpointing=self.gradient_checkpointing,
            activation_checkpointing_kwargs={"use_reentrant": False} if self.gradient_checkpointing else None,
            train_sampling_strategy="group_by_length" if self.group_by_length else "random",
            dataloader_num_workers=0,
            disable_tqdm=False,
            # Real tokens per step: a flattened batch has no padding at all; a padded one is counted by its mask.
            include_num_input_tokens_seen="all" if padding_free else "non_padding",
        )

    def visibility(self) -> bool | None:
        """The pushed repo's ``private``: True (--private), False (--public) or None (inherit from the data)."""
        return True if self.private else False if self.public else None

    def hyperparameters(self) -> dict[str, Any]:
        """The knobs that shape the adapter (what a model card reports)."""
        keys = (
            "num_train_epochs", "max_steps", "learning_rate", "lr_scheduler_type", "warmup_ratio", "weight_decay",
            "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "lora_r", "lora_alpha",
            "lora_dropout", "lora_target_modules", "seed", "padding_free", "group_by_length", "use_chat_template",
            "system_prompt",
        )  # fmt: skip
        return {key: getattr(self, key) for key in keys}


#: TrainConfig fields passed to ``transformers.TrainingArguments`` under the same name.
TRAINING_ARGUMENTS = (
    "num_train_epochs", "max_steps", "learning_rate", "lr_scheduler_type", "weight_decay", "per_device_train_batch_size",
    "gradient_accumulation_steps", "logging_steps", "report_to", "seed",
)  # fmt: skip


def _check_split(dataset: str, split: str) -> None:
    """A local dataset must hold the split asked for: never train on ``train`` when ``test`` was named."""
    from ltd_hub.constants import DATA_SUFFIXES as _DATA_SUFFIXES

    path = Path(dataset).expanduser()
    if not split or not path.exists():
        return  # Hub datasets are checked when their files are listed
    if path.is_file():
        if split != "train":
            raise UsageError(
                f"dataset_split {split!r}: {path.name} is a single file with no splits; drop dataset_split or point --dataset at a folder of {split}-* files"
            )
        return
    files = [p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(_DATA_SUFFIXES) and not p.name.startswith(".")]
    named = [p for p in files if p.name.startswith((f"{split}-", f"{split}.", f"{split}_")) or p.parent.name == split]
    if files and not named and split != "train":
        raise UsageError(
            f"dataset_split {split!r}: no {split}-* files in {path} (it has {', '.join(sorted({p.name for p in files})[:3])}); set dataset_split to a split the folder has"
        )


@dataclass
class TrainingStats:
    """How a training run went: the ``training`` section of ``training_summary.json``."""

    steps: int
    train_loss: float
    seconds: float
    train_tokens: int
    tokens_per_second: float
    peak_memory_mb: float
    device: str
    world_size: int
    bf16: bool

    def rounded(self) -> TrainingStats:
        """The figures as the summary file keeps them (a loss to 6 places, seconds to 2, rates to 1)."""
        return dataclasses.replace(
            self, train_loss=round(self.train_loss, 6), seconds=round(self.seconds, 2),
            tokens_per_second=round(self.tokens_per_second, 1), peak_memory_mb=round(self.peak_memory_mb, 1),
        )  # fmt: skip


@dataclass
class SummaryDataset:
    """What the adapter was trained on: the ``dataset`` section of ``training_summary.json``.

    ``name``, ``repo_id``, ``revision``, ``path`` and ``sha256`` are the :class:`DataSource`;
    ``selection`` the subset manifest's facts (:func:`manifest_facts`); ``private_sources`` the private
    Hub repos the rows derive from (a later push of the folder stays private); ``dropped_rows`` rows
    without an answer, never trained on.
    """

    name: str = ""
    repo_id: str | None = None
    revision: str | None = None
    path: str | None = None
    sha256: str | None = None
    split: str = "train"
    input_column: str = "inputs"
    target_column: str = "targets"
    train_rows: int = 0
    skipped_rows: int = 0
    selection: dict[str, Any] = field(default_factory=dict)
    private_sources: list[str] = field(default_factory=list)
    dropped_rows: int = 0


@dataclass
class TrainingSummary:
    """``training_summary.json``: what the model card is rendered from and what later pushes read back.

    The file is :meth:`to_dict` as JSON (keys in this order); :meth:`from_dict` reads one back.
    Readers that still take a dict (cards, Spaces, evaluation) get :meth:`to_dict`.
    """

    ltd_hub_version: str
    base_model: str | None
    base_model_path: str | None
    license: str | None
    dataset: SummaryDataset
    formatting: dict[str, Any]
    hyperparameters: dict[str, Any]
    training: TrainingStats
    versions: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """The summary as ``training_summary.json`` holds it (sections as nested dicts, keys in field order)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSummary:
        """Read a summary dict back: keys this version does not know are ignored, missing ones are None or empty."""
        values = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
        for section in ("formatting", "hyperparameters", "versions"):
            values[section] = dict(values[section] or {})
        values["dataset"] = SummaryDataset(**_known(SummaryDataset, values["dataset"] or {}))
        values["training"] = TrainingStats(**_known(TrainingStats, values["training"] or {}))
        return cls(**values)


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}


@dataclass
class TrainResult:
    """What :func:`train` did and where the adapter is."""

    output_dir: Path
    train_rows: int
    skipped_rows: int
    steps: int
    train_loss: float
    train_tokens: int
    seconds: float
    tokens_per_second: float
    peak_memory_mb: float
    push: Any = None  # ltd_hub.hub.gateway.PushResult when pushed
    url: str | None = None
    main_process: bool = True  # False on the other ranks of a distributed run (they save and push nothing)
    summary: TrainingSummary | None = None  # what training_summary.json holds (None on the other ranks)
    finished: bool = True  # False: stopped at Checkpointing.stop_at; nothing in output_dir, `checkpoint` resumes it
    checkpoint: Path | None = None  # the checkpoint that resumes an unfinished run (None once finished)
    segments: int = 1  # processes that trained it (more than one when it was resumed from a checkpoint)


# --------------------------------------------------------------------------- data


def _is_local_path(value: str) -> bool:
    return Path(value).expanduser().exists()


def check_columns(rows: Any, columns: list[str], source: str, flag_hint: str) -> None:
    """Raise a UsageError when ``rows`` is empty or lacks one of ``columns``."""
    if len(rows) == 0:
        raise UsageError(f"{source} has no rows")
    missing = [c for c in columns if c not in rows.column_names]
    if missing:
        raise UsageError(f"{source} has no column {missing[0]!r} (columns: {', '.join(rows.column_names)}); {flag_hint}")


def manifest_facts(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The selection facts a model card shows, read from a ``selection_manifest.json`` dict.

    Returns:
        A dict with the keys found among strategy, ratio, n_selected, n_task_rows (rows of the task
        after filtering: the "full task data"), n_source_rows, source_id, encoder, n_clusters.
    """
    if not isinstance(manifest, dict):
        return {}
    part = lambda key: manifest.get(key) if isinstance(manifest.get(key), dict) else {}  # noqa: E731
    selection, source, filter_, encoder = part("selection"), part("source"), part("filter"), part("encoder")
    facts = {
        "strategy": selection.get("strategy"),
        "ratio": selection.get("ratio"),
        "n_selected": selection.get("n_selected"),
        "n_task_rows": filter_.get("n_rows", source.get("n_rows")),
        "n_source_rows": source.get("n_rows"),
        "source_id": source.get("id"),
        "encoder": encoder.get("id") or encoder.get("name"),
        "n_clusters": selection.get("n_clusters"),
    }
    return {k: v for k, v in facts.items() if v is not None}


def resolve_columns(config: TrainConfig, manifest: dict[str, Any] | None) -> tuple[list[str], str]:
    """The prompt columns and the answer column: the flags, else the subset manifest's mapping, else P3's."""
    columns = (manifest or {}).get("columns") if isinstance((manifest or {}).get("columns"), dict) else {}
    if config.input_column:
        inputs = [c.strip() for c in config.input_column.split(",") if c.strip()]
    else:
        recorded = columns.get("inputs")
        inputs = [recorded] if isinstance(recorded, str) else list(recorded or ["inputs"])
    target = config.target_column or columns.get("target") or "targets"
    return inputs, str(target)


# --------------------------------------------------------------------------- formatting


# The prompt format itself is ltd_hub.modeling.PromptFormatter (one formatter for training, evaluation
# and the Space); these helpers turn a data row into its prompt and answer.


def _as_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    return "" if value is None else str(value)


def tokenize_for_training(
    rows: Any, formatter: PromptFormatter, config: TrainConfig, input_columns: list[str], target_column: str
) -> tuple[Any, int]:
    """Tokenize rows into input_ids + labels (-100 on the prompt); drop rows over max_length.

    Returns:
        ``(tokenized dataset with input_ids, labels, length; number of rows skipped as too long)``.
    """

    def encode(batch: dict[str, list]) -> dict[str, list]:
        parts = zip(*(batch[c] for c in input_columns))
        prompts = ["\n\n".join(t for t in map(_as_text, row) if t) for row in parts]
        answers = [_as_text(v) for v in batch[target_column]]
        prompt_ids, answer_ids = formatter.encode_batch(prompts, answers)
        input_ids = [p + a for p, a in zip(prompt_ids, answer_ids)]
        labels = [[-100] * len(p) + a for p, a in zip(prompt_ids, answer_ids)]
        return {"input_ids": input_ids, "labels": labels, "length": [len(ids) for ids in input_ids]}

    tokenized = rows.map(
        encode,
        batched=True,
        remove_columns=rows.column_names,
        desc="Tokenizing",
        load_from_cache_file=False,
    )
    lengths = tokenized["length"]
    keep = [i for i, n in enumerate(lengths) if n <= config.max_length]
    if not keep:
        raise UsageError(
            f"--max-length {config.max_length} is smaller than every prompt + answer (the shortest needs {min(lengths)} tokens); "
            "raise --max-length"
        )
    skipped = len(lengths) - len(keep)
    if skipped:
        tokenized = tokenized.select(keep)
    return tokenized, skipped


# --------------------------------------------------------------------------- training


def resolve_padding_free(config: TrainConfig) -> bool:
    """Padding-free only pays with a varlen attention kernel (flash attention).

    With SDPA or eager attention, transformers isolates the flattened rows with a dense
    block-diagonal mask over the whole batch, whose cost grows with the batch's total length
    squared; measured on CPU (benchmarks/bench_train.py), length-grouped padding is faster there.
    """
    if config.padding_free is not None:
        return config.padding_free
    return config.attn_implementation.startswith("flash_attention")


def build_collator(tokenizer: Any, *, padding_free: bool, pad_to_multiple_of: int | None = None, flash_kwargs: bool = False) -> Any:
    """Padding-free flattening (labels keep -100 on prompts) or per-batch padding of inputs and labels.

    Why our tokenization + collator and not TRL's ``SFTTrainer``/``SFTConfig``: measured with
    ``benchmarks/bench_train.py`` (rows trl-sft, trl-padding-free; CPU, SmolLM2-135M, 10 steps x 8 rows,
    one thread, 2026-12-02), TRL trained on the same 6,673 tokens to the same loss (2.747 vs 2.744)
    but at 127 real tokens/s against our 158, with 3.2 GB peak memory against 2.8 GB; padding-free,
    101 against 134 tokens/s. Not measured on a GPU yet: rerun the benchmark there before switching.
    """
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    if padding_free:
        return DataCollatorWithFlattening(return_position_ids=True, separator_id=-100, return_flash_attn_kwargs=flash_kwargs)
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, pad_to_multiple_of=pad_to_multiple_of)


def _peak_memory_mb() -> float:
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    # ru_maxrss is KiB on Linux: the process's peak resident set, loading included.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _base_model_license(model_id: str, token: str | None) -> str | None:
    """The base model's license from its card (Hub) or README (local folder); None when unknown."""
    from ltd_hub.hub import gateway as hub
    from ltd_hub.hub.cards import split_card

    try:
        if _is_local_path(model_id):
            readme = Path(model_id, "README.md")
            text = readme.read_text(encoding="utf-8") if readme.is_file() else None
        else:
            text = hub.read_card_text(model_id, "model", token=token)
        license_ = split_card(text)[0].get("license") if text else None
    except Exception:  # noqa: BLE001 - the license is a nicety for the card, never a reason to fail
        return None
    return str(license_) if license_ else None


def train(config: TrainConfig, *, token: str | None = None, checkpointing: Checkpointing | None = None) -> TrainResult:
    """Train a LoRA adapter on ``config.dataset`` and save (and optionally push) it with its model card.

    Steps: validate the config, pre-flight the push target, load and format the data, train with
    transformers' Trainer on a peft model, write adapter + card + ``training_summary.json`` to a
    temp folder renamed to ``output_dir`` at the end, then push in one commit. A failed push keeps
    the local output and says how to retry with ``ltd-hub push-adapter``.

    Args:
        config: the run's settings.
        token: Hub token (default: the one huggingface_hub finds).
        checkpointing: keep resumable checkpoints (:class:`~ltd_hub.checkpoints.Checkpointing`): the
            run resumes from the newest one in its folder, and stops unfinished at its ``stop_at``
            (``finished`` False, nothing written to ``output_dir``). The checkpoints, the last step's
            included, stay until the caller removes them.

    Returns:
        A :class:`TrainResult`.

    Example:
        >>> result = train(TrainConfig(dataset="data.jsonl", base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        ...                            output_dir="runs/a", max_steps=10))  # doctest: +SKIP
    """
    config.validate()
    from ltd_hub.hub import gateway as hub

    target = hub.preflight_push(config.push_to, "model", token) if config.push_to else None
    data = _load_training_data(config, target, token)
    bf16 = _resolve_bf16(config)
    model = load_base_model(config.base_model, bf16=bf16, attn_implementation=config.attn_implementation, token=token, training=True)
    license_ = _base_model_license(config.base_model, token)
    run, summary = _train_and_save(
        config, data, model, bf16=bf16, license_=license_, repo_id=target.repo_id if target else None, checkpointing=checkpointing
    )
    stats = run.stats
    result = TrainResult(
        output_dir=Path(config.output_dir), train_rows=len(data.tokenized), skipped_rows=data.skipped, steps=stats.steps,
        train_loss=stats.train_loss, train_tokens=stats.train_tokens, seconds=stats.seconds,
        tokens_per_second=stats.tokens_per_second, peak_memory_mb=stats.peak_memory_mb,
        main_process=run.is_main_process, summary=summary, finished=run.finished,
        checkpoint=checkpointing.last() if checkpointing is not None and not run.finished else None, segments=run.segments,
    )  # fmt: skip
    if target is not None and run.is_main_process and run.finished:
        result.push = _push(result.output_dir, target.repo_id, config, token)
        result.url = result.push.url
    return result


@dataclass
class _TrainingData:
    """The rows of a run, tokenized, and what was learnt about them on the way."""

    source: DataSource
    tokenizer: Any
    tokenized: Any
    input_columns: list[str]
    target_column: str
    skipped: int  # longer than max_length
    dropped: int  # no answer
    private_sources: list[str]


def _load_training_data(config: TrainConfig, target: Any, token: str | None) -> _TrainingData:
    """Load, check and tokenize the rows; refuse a push that would expose private data before any training."""
    from ltd_hub.hub import gateway as hub

    rows, source = load_instruction_data(config.dataset, split=config.dataset_split, revision=config.dataset_revision, token=token)
    private_sources = _private_sources(source, token)
    if target is not None:
        # Refused now (an existing public repo, private data, no --public), not after training; the
        # line about a --public push comes once, from push_adapter.
        hub.derived_visibility(target, config.visibility(), private_sources, notify=lambda _line: None)
    input_columns, target_column = resolve_columns(config, source.manifest)
    check_columns(rows, [*input_columns, target_column], f"dataset {config.dataset}", "set --input-column/--target-column")
    # A row without an answer teaches nothing (push-subset drops them the same way, with the same line).
    n_rows = len(rows)
    rows, dropped = drop_rows_without_target(rows, target_column)
    if dropped:
        print(f"dropped {dropped} of {n_rows} rows whose target column {target_column!r} is null or empty", file=sys.stderr)
    if config.max_train_samples is not None:
        rows = rows.select(range(min(config.max_train_samples, len(rows))))
    tokenizer = load_tokenizer(config.base_model, token=token)
    formatter = PromptFormatter(tokenizer, use_chat_template=config.use_chat_template, system_prompt=config.system_prompt)
    try:
        tokenized, skipped = tokenize_for_training(rows, formatter, config, input_columns, target_column)
    except FormatError as exc:
        raise UsageError(str(exc)) from None
    if skipped:
        print(f"skipped {skipped} of {len(rows)} rows longer than --max-length {config.max_length} tokens", file=sys.stderr)
    return _TrainingData(source, tokenizer, tokenized, input_columns, target_column, skipped, dropped, private_sources)


def _resolve_bf16(config: TrainConfig) -> bool:
    bf16 = bf16_supported() if config.bf16 is None else config.bf16
    if bf16 and not bf16_supported():
        raise UsageError("--bf16 was requested but this machine has no bf16 support; drop --bf16")
    return bf16


def _train_and_save(
    config: TrainConfig,
    data: _TrainingData,
    model: Any,
    *,
    bf16: bool,
    license_: str | None,
    repo_id: str | None,
    checkpointing: Checkpointing | None = None,
) -> tuple[TrainerRun, TrainingSummary | None]:
    """Train in a staging folder beside ``output_dir``; the main process writes the adapter there and renames it into place.

    A run stopped unfinished (:class:`Checkpointing`) writes nothing: its checkpoint is what it leaves.

    Not :func:`ltd_hub.files.staged_dir`: the other ranks of a distributed run train in a staging
    folder of their own too, which must be discarded, never renamed over the main process's output.
    """
    output_dir = Path(config.output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    summary = None
    try:
        run = _run_trainer(
            model, data.tokenizer, data.tokenized, config, bf16=bf16, work_dir=staging / "trainer", checkpointing=checkpointing
        )
        shutil.rmtree(staging / "trainer", ignore_errors=True)
        if run.is_main_process and run.finished:
            summary = build_summary(config, data, run, license_=license_)
            _write_adapter(staging, run.model, summary, repo_id=repo_id)
            replace_dir(staging, output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return run, summary


def _write_adapter(folder: Path, model: Any, summary: TrainingSummary, *, repo_id: str | None) -> None:
    """The adapter weights and config, ``training_summary.json`` and the model card, in ``folder``."""
    from ltd_hub.adapters import render_model_card

    model.save_pretrained(folder)
    as_dict = summary.to_dict()
    (folder / SUMMARY_FILE).write_text(json.dumps(as_dict, indent=2) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(render_model_card(as_dict, repo_id=repo_id), encoding="utf-8")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)  # mkdtemp made it private; the output is an ordinary folder


def _push(output_dir: Path, repo_id: str, config: TrainConfig, token: str | None) -> Any:
    """Push the saved adapter; a failure keeps it on disk and names the ``push-adapter`` command that retries."""
    from ltd_hub.adapters import push_adapter

    try:
        return push_adapter(output_dir, repo_id, token=token, private=config.visibility())
    except Exception as exc:  # noqa: BLE001 - whatever broke, the trained adapter is safe on disk
        from ltd_hub.errors_map import explain

        reason = str(exc) if isinstance(exc, (HubError, UsageError)) else explain(exc)
        # The retry is push-adapter, not the whole command: drop the generic "re-run" advice.
        reason = re.sub(r"[,;]\s*re-run the same command.*$", "", reason.rstrip("."))
        raise HubError(
            f"the adapter is saved in {output_dir} but the push failed: {reason.rstrip('.')}; "
            f"retry with `ltd-hub push-adapter {output_dir} --repo-id {repo_id}`"
        ) from exc


def _private_sources(source: DataSource, token: str | None) -> list[str]:
    """The private Hub repos the training rows derive from: the dataset repo, and the Hub source its
    selection manifest names (a subset folder made from a private dataset is private data too)."""
    from ltd_hub.hub import gateway as hub

    refs = [(source.repo_id, "dataset")] if source.repo_id else []
    origin = (source.manifest or {}).get("source") if isinstance(source.manifest, dict) else None
    if isinstance(origin, dict) and origin.get("kind") == "hub" and isinstance(origin.get("id"), str):
        refs.append((origin["id"], "dataset"))
    try:
        return hub.private_inputs(refs, token=token)
    except HubError:
        if source.repo_id:
            raise  # the dataset itself was just read: a failure to read its visibility is real
        return []  # a local folder whose manifest names a repo we cannot reach: nothing private was read from it


def _log_to_stderr(trainer: Any) -> None:
    """Show training as one bar with ETA, loss and tokens/s on stderr (:mod:`ltd_hub.progress`).

    transformers' ProgressCallback ``tqdm.write``s each log dict to stdout, numbers as strings,
    where it would mix into the machine-readable output of ``--format json`` and quickstart.
    """
    from ltd_hub.progress import install

    install(trainer)


@dataclass
class TrainerRun:
    """What :func:`_run_trainer` hands back: the trained model and how the run went."""

    model: Any  # the peft model; the main process saves it
    is_main_process: bool
    stats: TrainingStats
    padding_free: bool  # as resolved (:func:`resolve_padding_free`)
    finished: bool = True  # False when it stopped at Checkpointing.stop_at
    segments: int = 1  # processes that trained it, this one included


def _peft_model(model: Any, config: TrainConfig) -> Any:
    """Wrap ``model`` with LoRA layers (seeded: the A matrices are initialised here)."""
    import torch
    from peft import LoraConfig, get_peft_model

    target_modules: Any = config.lora_target_modules
    if target_modules == ["all-linear"]:
        target_modules = "all-linear"
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=target_modules,
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(config.seed)
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise UsageError(f"--lora-target-modules do not match the base model ({short_error(exc)}); check the module names") from None


def _run_trainer(
    model: Any,
    tokenizer: Any,
    tokenized: Any,
    config: TrainConfig,
    *,
    bf16: bool,
    work_dir: Path,
    checkpointing: Checkpointing | None = None,
) -> TrainerRun:
    import torch
    from transformers import Trainer

    from ltd_hub.checkpoints import progress_callback, read_progress, resumable_trainer

    model = _peft_model(model, config)
    on_gpu = torch.cuda.is_available()
    padding_free = resolve_padding_free(config)
    resume_from = checkpointing.last() if checkpointing is not None else None
    resumed = read_progress(resume_from)
    if checkpointing is not None:
        work_dir = checkpointing.folder  # transformers writes checkpoint-N folders into its output_dir
    args = config.training_arguments(
        work_dir=work_dir, bf16=bf16, on_gpu=on_gpu, padding_free=padding_free, save_steps=checkpointing.save_steps if checkpointing else 0
    )
    collator = build_collator(
        tokenizer, padding_free=padding_free, pad_to_multiple_of=8 if on_gpu else None,
        flash_kwargs=config.attn_implementation.startswith("flash_attention"),
    )  # fmt: skip
    kwargs = {"model": model, "args": args, "train_dataset": tokenized, "data_collator": collator, "processing_class": tokenizer}
    if checkpointing is None:
        trainer = Trainer(**kwargs)
    else:
        trainer = resumable_trainer(resume_from, **kwargs)
        trainer.add_callback(progress_callback(checkpointing, resumed, trainer))
    _log_to_stderr(trainer)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    output = _fit(trainer, config, resume_from=resume_from)
    seconds = time.perf_counter() - started
    tokens = int(trainer.state.num_input_tokens_seen)  # already summed over the ranks, and restored on resume
    loss = float(output.training_loss)
    if resumed is not None:  # transformers reports this call's steps only; the figures are the whole run's
        loss = resumed.combined_loss(int(output.global_step), loss)
        seconds += resumed.seconds
    if not math.isfinite(loss):
        raise UsageError(f"training diverged (loss {loss}); lower --learning-rate")
    stats = TrainingStats(
        steps=int(output.global_step), train_loss=loss, seconds=seconds, train_tokens=tokens,
        tokens_per_second=tokens / seconds if seconds > 0 else 0.0, peak_memory_mb=_peak_memory_mb(),
        device=torch.cuda.get_device_name() if on_gpu else "cpu", world_size=args.world_size, bf16=bf16,
    )  # fmt: skip
    return TrainerRun(
        model=trainer.model, is_main_process=trainer.is_world_process_zero(), stats=stats, padding_free=padding_free,
        finished=int(output.global_step) >= int(trainer.state.max_steps), segments=(resumed.segments if resumed else 0) + 1,
    )  # fmt: skip


def _fit(trainer: Any, config: TrainConfig, *, resume_from: Path | None = None) -> Any:
    """``trainer.train()`` (resumed from a checkpoint when given), with running out of GPU memory as one line naming what to lower."""
    import torch

    try:
        return trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    except torch.OutOfMemoryError:
        raise UsageError(
            f"out of memory on the GPU at --per-device-train-batch-size {config.per_device_train_batch_size} and "
            f"--max-length {config.max_length}; lower them (raise --gradient-accumulation-steps to keep the batch) "
            "or pass --gradient-checkpointing"
        ) from None


def build_summary(config: TrainConfig, data: _TrainingData, run: TrainerRun, *, license_: str | None) -> TrainingSummary:
    """The :class:`TrainingSummary` of a finished run."""
    import peft
    import transformers

    from ltd_hub import __version__

    base_is_hub_id = not _is_local_path(config.base_model)
    source = {k: v for k, v in data.source.to_dict().items() if k != "manifest"}
    dataset = SummaryDataset(
        **source, split=config.dataset_split, input_column=", ".join(data.input_columns), target_column=data.target_column,
        train_rows=len(data.tokenized), skipped_rows=data.skipped, selection=manifest_facts(data.source.manifest),
        private_sources=data.private_sources, dropped_rows=data.dropped,
    )  # fmt: skip
    return TrainingSummary(
        ltd_hub_version=__version__,
        base_model=config.base_model if base_is_hub_id else None,
        base_model_path=None if base_is_hub_id else str(Path(config.base_model).resolve()),
        license=license_,
        dataset=dataset,
        formatting={"use_chat_template": config.use_chat_template, "system_prompt": config.system_prompt},
        hyperparameters={**config.hyperparameters(), "padding_free": run.padding_free},
        training=run.stats.rounded(),
        versions={"transformers": transformers.__version__, "peft": peft.__version__},
    )
