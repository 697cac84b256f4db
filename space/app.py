"""Full task data vs a 0.5% coreset: LoRA adapters of one base model, side by side.

This is the Hugging Face Space that ``ltd-hub push-space`` publishes. It runs as ``python app.py``
on Spaces and anywhere else, and imports only gradio, transformers, peft, huggingface_hub, torch
and matplotlib (plus pandas, which gradio ships with), so the Space needs no ltd-hub install.
Prompts are formatted and answer choices scored by ``ltd_scoring.py`` beside this file: the same
module ``ltd-hub evaluate`` scores with, so a column's probabilities are the softmax of the very
scores the evaluation ranks. With the ``spaces`` package (ZeroGPU hardware on Hugging Face),
generation and scoring run under ``@spaces.GPU``; without it everything runs as it is, on CPU or GPU.

Configuration comes from ``space_config.json`` next to this file (written at push time) and is
overridden by the environment: ``LTD_BASE_MODEL``, ``LTD_FULL_ADAPTER``, ``LTD_SUBSET_ADAPTER``,
``LTD_RANDOM_ADAPTER`` (an empty value drops that model), ``LTD_SPACE_CONFIG`` (another config
file). Models load from the Hub that ``HF_ENDPOINT`` names, so the same file runs against
huggingface.co and against ltd-hub's embedded Hub offline.
"""

from __future__ import annotations

import os

# No call home: Gradio reads this at import, the Hub client at import too.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import contextlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator, Mapping  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from huggingface_hub import ModelCard, constants, file_exists, repo_exists  # noqa: E402
from peft import PeftConfig, PeftModel  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

try:  # imported as a package module (by ltd-hub and its tests) or run as `python app.py` beside ltd_scoring.py (the Space)
    from . import ltd_scoring  # noqa: E402
except ImportError:
    import ltd_scoring  # noqa: E402

try:  # ZeroGPU Spaces: a GPU is attached only inside functions decorated with @spaces.GPU
    import spaces  # noqa: E402
except ImportError:
    spaces = None


def on_gpu(function):
    """``spaces.GPU(function)`` when the ``spaces`` package is there (ZeroGPU), else ``function`` unchanged."""
    return spaces.GPU(function) if spaces is not None else function


#: Adapter roles in display order; "base" is the plain base model (adapters disabled).
ADAPTER_ROLES = ("full", "subset", "random")
ROLE_TITLES = {
    "full": "Full task data",
    "subset": "0.5% coreset",
    "random": "0.5% random",
    "base": "Base model",
}
ENV_ADAPTERS = {"full": "LTD_FULL_ADAPTER", "subset": "LTD_SUBSET_ADAPTER", "random": "LTD_RANDOM_ADAPTER"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class SpaceConfig:
    """What the Space shows: the base model, the adapters by role, examples and links.

    Args:
        base_model: Hub id (or local folder) of the base model; when empty, read from the first
            adapter's ``adapter_config.json``.
        adapters: role (``full``, ``subset``, ``random``) -> adapter Hub id or local folder.
        examples: held-out prompts, each ``{"prompt", "choices", "gold", "dataset", "template"}``.
        subset_dataset: Hub id of the subset the 0.5% adapter was trained on (linked).
        full_data: Hub dataset id, URL or description of the full task data (linked or shown).
        title: page title.
        role_titles: role -> column title (default :data:`ROLE_TITLES`); say what the data really is,
            e.g. "Random 2,000 rows (full-data stand-in)".
        role_details: role -> what the adapter's training saw (rows, steps, epochs), shown under the title.
        formatting: role -> ``{"use_chat_template", "system_prompt"}`` as the adapter was trained
            (default: read from its ``training_summary.json``, else the chat template without system prompt).
        max_prompt_tokens: longer prompts keep their last tokens and show a notice.
        max_new_tokens: default of the generation slider.
        dtype: ``auto`` (bf16 on CUDA, fp32 on CPU), ``float32``, ``bfloat16`` or ``float16``.

    Example:
        >>> SpaceConfig(base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        ...             adapters={"full": "me/full", "subset": "me/subset"}).roles
        ['full', 'subset']
    """

    base_model: str | None = None
    adapters: dict[str, str] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    subset_dataset: str | None = None
    full_data: str | None = None
    title: str = "Full data vs 0.5% data: LoRA adapters side by side"
    role_titles: dict[str, str] = field(default_factory=dict)
    role_details: dict[str, str] = field(default_factory=dict)
    formatting: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_prompt_tokens: int = 512
    max_new_tokens: int = 48
    dtype: str = "auto"

    @property
    def roles(self) -> list[str]:
        """Configured adapter roles in display order."""
        return [role for role in ADAPTER_ROLES if self.adapters.get(role)]

    def title_of(self, role: str) -> str:
        """The column title of ``role``: the configured one, else the default."""
        return self.role_titles.get(role) or ROLE_TITLES[role]


def load_config(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> SpaceConfig:
    """Read ``space_config.json`` (if any) and apply the ``LTD_*`` environment overrides.

    Args:
        path: config file; default ``$LTD_SPACE_CONFIG`` or ``space_config.json`` beside this file.
        environ: environment to read (default ``os.environ``).

    Returns:
        The merged :class:`SpaceConfig`.

    Example:
        >>> load_config(environ={"LTD_FULL_ADAPTER": "me/full", "LTD_SUBSET_ADAPTER": "me/sub"}).roles
        ['full', 'subset']
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get("LTD_SPACE_CONFIG") or Path(__file__).with_name("space_config.json")
    data: dict[str, Any] = {}
    if Path(path).is_file():
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    known = set(SpaceConfig.__dataclass_fields__)
    config = SpaceConfig(**{k: v for k, v in data.items() if k in known})
    config.adapters = {role: repo for role, repo in (config.adapters or {}).items() if repo}
    if environ.get("LTD_BASE_MODEL"):
        config.base_model = environ["LTD_BASE_MODEL"]
    for role, var in ENV_ADAPTERS.items():
        if var in environ:
            if environ[var].strip():
                config.adapters[role] = environ[var].strip()
            else:
                config.adapters.pop(role, None)
    return config


def _is_local(ref: str) -> bool:
    return os.path.isdir(ref)


def adapter_problem(ref: str) -> str | None:
    """Return why ``ref`` cannot be loaded as a PEFT adapter, or None when it looks like one."""
    try:
        if _is_local(ref):
            return None if Path(ref, "adapter_config.json").is_file() else "is not a PEFT adapter (no adapter_config.json)"
        if not _REPO_ID.match(ref):
            return "is neither a Hub repo id (namespace/name) nor a local folder"
        if not repo_exists(ref, repo_type="model"):
            return f"was not found on {constants.ENDPOINT} (missing, private, or a typo)"
        if not file_exists(ref, "adapter_config.json", repo_type="model"):
            return "is not a PEFT adapter (no adapter_config.json in the repo)"
    except Exception as exc:  # noqa: BLE001 - the app must start and say what is wrong
        return f"could not be checked ({type(exc).__name__}: {exc})"
    return None


class _StopOnEvent(StoppingCriteria):
    """Ends generation as soon as the event is set (Stop button, or the client went away)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return self.event.is_set()


class _TimedStreamer(TextIteratorStreamer):
    """A TextIteratorStreamer that also records when each generated token arrived."""

    def __init__(self, tokenizer, **kwargs):
        super().__init__(tokenizer, **kwargs)
        self.token_times: list[float] = []
        self._prompt_passed = False

    def put(self, value):
        if self._prompt_passed:
            self.token_times.extend([time.perf_counter()] * int(value.numel()))
        self._prompt_passed = True
        super().put(value)


@dataclass
class GenerationStats:
    """Timing of one streamed generation (filled in by :meth:`ModelBank.stream`)."""

    started: float = 0.0
    first_token_s: float | None = None
    tokens: int = 0
    total_s: float = 0.0

    @property
    def tokens_per_s(self) -> float | None:
        """Decode speed after the first token (the prompt's prefill is in ``first_token_s``)."""
        decode_s = self.total_s - (self.first_token_s or 0.0)
        if self.tokens < 2 or decode_s <= 0:
            return None
        return (self.tokens - 1) / decode_s

    def record(self, token_times: list[float]) -> None:
        """Fill in the counts and times from the streamer's per-token clock readings."""
        self.tokens = len(token_times)
        if token_times:
            self.first_token_s = token_times[0] - self.started
            self.total_s = token_times[-1] - self.started

    def summary(self) -> str:
        if not self.tokens:
            return ""
        speed = f" · {self.tokens_per_s:.1f} tok/s" if self.tokens_per_s else ""
        return f"first token {self.first_token_s:.2f} s{speed} · {self.tokens} tokens"


class ModelBank:
    """One base model in memory with every configured LoRA adapter loaded beside it.

    ``set_adapter`` is shared state, so every forward pass runs under one lock; the plain base
    model is the same weights with the adapters disabled. Adapters that fail to load are listed
    in :attr:`problems` instead of stopping the app.

    Args:
        config: what to load.

    Example:
        >>> bank = ModelBank(load_config())           # doctest: +SKIP
        >>> ids, _ = bank.encode_prompt("Is the sky blue? yes or no", "subset")  # doctest: +SKIP
        >>> bank.choice_probabilities("subset", "Is the sky blue? yes or no", ["yes", "no"])   # doctest: +SKIP
        [0.71, 0.29]
    """

    def __init__(self, config: SpaceConfig):
        self.config = config
        self.problems: dict[str, str] = {}
        self.loaded: list[str] = []
        self.model = None
        self.tokenizer = None
        self.formatters: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._current_stop: threading.Event | None = None
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self._load()

    # ----- loading -----------------------------------------------------------------------
    def _dtype(self) -> torch.dtype:
        if self.config.dtype == "auto":
            return torch.bfloat16 if self.device == "cuda" else torch.float32
        return getattr(torch, self.config.dtype)

    def _load(self) -> None:
        usable: dict[str, str] = {}
        for role in self.config.roles:
            ref = self.config.adapters[role]
            problem = adapter_problem(ref)
            if problem:
                self.problems[role] = f"{self.config.title_of(role)} adapter `{ref}` {problem}."
            else:
                usable[role] = ref
        base = self.config.base_model
        if not base and usable:
            first = next(iter(usable.values()))
            try:
                base = PeftConfig.from_pretrained(first).base_model_name_or_path
            except Exception as exc:  # noqa: BLE001 - shown in the page instead of a crash
                self.problems["base"] = (
                    f"No base model configured, and `{first}` does not name one ({type(exc).__name__}); set LTD_BASE_MODEL."
                )
                return
            self.config.base_model = base
        if not base:
            self.problems["base"] = "No base model configured: set LTD_BASE_MODEL or configure at least one adapter."
            return
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(base)
            model = AutoModelForCausalLM.from_pretrained(base, dtype=self._dtype())
        except Exception as exc:  # noqa: BLE001 - shown in the page instead of a crash
            self.problems["base"] = f"Base model `{base}` could not be loaded ({type(exc).__name__}: {exc})."
            return
        model.to(self.device).eval()
        self.formatters["base"] = self._formatter({})
        for role, ref in usable.items():
            try:
                if isinstance(model, PeftModel):
                    model.load_adapter(ref, adapter_name=role)
                else:
                    model = PeftModel.from_pretrained(model, ref, adapter_name=role)
                self.loaded.append(role)
                self.formatters[role] = self._formatter(self.config.formatting.get(role) or _training_formatting(ref))
                if len(self.loaded) == 1:
                    # The base column is prompted as the adapters were, so it differs by weights only.
                    self.formatters["base"] = self.formatters[role]
            except Exception as exc:  # noqa: BLE001 - e.g. an adapter made for another base model
                self.problems[role] = (
                    f"{self.config.title_of(role)} adapter `{ref}` could not be loaded on `{base}` "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})."
                )
        model.eval()
        self.model = model

    def _formatter(self, formatting: Mapping[str, Any]):
        return ltd_scoring.PromptFormatter(
            self.tokenizer,
            use_chat_template=formatting.get("use_chat_template", True),
            system_prompt=formatting.get("system_prompt"),
        )

    def formatter(self, role: str):
        """The :class:`ltd_scoring.PromptFormatter` ``role`` was trained with (the base column: the first adapter's)."""
        return self.formatters.get(role) or self.formatters["base"]

    @property
    def ready(self) -> bool:
        """Whether the base model loaded (adapters may still be missing)."""
        return self.model is not None

    def available(self, role: str) -> bool:
        """Whether ``role`` (an adapter role or ``base``) can generate."""
        return self.ready and (role == "base" or role in self.loaded)

    @contextlib.contextmanager
    def _activated(self, role: str) -> Iterator[None]:
        with self._lock:
            if role == "base":
                if isinstance(self.model, PeftModel):
                    with self.model.disable_adapter():
                        yield
                else:
                    yield
            else:
                if self.model.active_adapter != role:  # set_adapter walks every LoRA layer: skip it when it is a no-op
                    self.model.set_adapter(role, inference_mode=True)
                yield

    def switch(self, role: str) -> None:
        """Make ``role`` the active adapter (what a column change costs; used by the benchmark)."""
        with self._activated(role):
            pass

    # ----- prompts -----------------------------------------------------------------------
    def prepare_prompt(self, prompt: str) -> tuple[str, str | None]:
        """The prompt text the models see, and a notice if it had to be cut to ``max_prompt_tokens``."""
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        limit = int(self.config.max_prompt_tokens)
        if len(ids) <= limit:
            return prompt, None
        # The question and the answer options of an instruction usually come last: keep the end.
        notice = f"The prompt was {len(ids)} tokens long; only its last {limit} tokens were used."
        return self.tokenizer.decode(ids[-limit:]), notice

    def encode_prompt(self, prompt: str, role: str = "base") -> tuple[list[int], str | None]:
        """Token ids of ``prompt`` formatted as ``role`` was trained (chat template, system prompt), and a truncation notice."""
        text, notice = self.prepare_prompt(prompt)
        formatter = self.formatter(role)
        ids = self.tokenizer(formatter.prompt_text(text), add_special_tokens=not formatter.chat)["input_ids"]
        return ids, notice

    # ----- generation --------------------------------------------------------------------
    def stream(
        self,
        role: str,
        prompt_ids: list[int],
        max_new_tokens: int = 48,
        temperature: float = 0.0,
        stats: GenerationStats | None = None,
        **generate_kwargs: Any,
    ) -> Iterator[str]:
        """Generate with ``role`` and yield the answer so far after each new piece of text.

        Args:
            role: an adapter role or ``base``.
            prompt_ids: from :meth:`encode_prompt`.
            max_new_tokens: generation budget.
            temperature: 0 means greedy decoding.
            stats: filled with first-token time, token count and duration.
            **generate_kwargs: passed on to ``generate`` (e.g. ``min_new_tokens``).

        Returns:
            An iterator of the cumulative answer text.

        Example:
            >>> for text in bank.stream("full", ids, 16): pass   # doctest: +SKIP
        """
        stats = stats if stats is not None else GenerationStats()
        streamer = _TimedStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()
        failure: list[BaseException] = []
        generate = {
            "input_ids": torch.tensor([prompt_ids], device=self.device),
            "max_new_tokens": int(max_new_tokens),
            **({"do_sample": True, "temperature": float(temperature)} if temperature > 0 else {"do_sample": False}),
            **generate_kwargs,
        }
        worker = threading.Thread(
            target=self._generate, args=(role, generate, streamer, stop, stats, failure), name=f"generate-{role}", daemon=True
        )
        text = ""
        worker.start()
        try:
            for piece in streamer:
                text += piece
                if piece:
                    yield text
        finally:
            stop.set()
            worker.join()
            stats.record(streamer.token_times)
        if failure:
            raise failure[0]
        if not text:
            yield text

    def _generate(
        self,
        role: str,
        generate: dict[str, Any],
        streamer: _TimedStreamer,
        stop: threading.Event,
        stats: GenerationStats,
        failure: list[BaseException],
    ) -> None:
        """The generation thread of :meth:`stream`: any exception is handed to the consumer through ``failure``."""
        # The worker, not the consumer, holds the lock: if the consumer is abandoned the
        # worker still ends (stop event or token budget) and releases it.
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        try:
            with self._activated(role), torch.inference_mode():
                self._current_stop = stop
                stats.started = time.perf_counter()
                self.model.generate(
                    attention_mask=torch.ones_like(generate["input_ids"]),
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_StopOnEvent(stop)]),
                    pad_token_id=pad_id,
                    **generate,
                )
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            failure.append(exc)
            streamer.end()
        finally:
            self._current_stop = None

    def stop(self) -> None:
        """Stop the generation in progress, if any."""
        if self._current_stop is not None:
            self._current_stop.set()

    def choice_probabilities(self, role: str, prompt: str, choices: list[str]) -> list[float]:
        """Each choice's probability under ``role``: the softmax of the scores ``ltd-hub evaluate`` ranks.

        Rank classification as in the evaluation, by the same module (``ltd_scoring``): every
        answer choice is formatted as training formats an answer (chat template, end-of-turn
        token) and scored by its summed log-probability after the prompt; the softmax over the
        choices makes them probabilities. ``prompt`` is the text from :meth:`prepare_prompt`.
        """
        row = {"inputs": prompt, "choices": list(choices)}
        with self._activated(role):
            scores = ltd_scoring.score_choices(self.model, self.formatter(role), [row], batch_size=max(len(choices), 1), progress=False)
        return ltd_scoring.choice_probabilities(scores[0])


def _training_formatting(ref: str) -> dict[str, Any]:
    """The ``formatting`` an adapter's ``training_summary.json`` records ({} when it has none)."""
    try:
        if _is_local(ref):
            path = Path(ref, "training_summary.json")
        else:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(ref, "training_summary.json", repo_type="model"))
        return json.loads(path.read_text(encoding="utf-8")).get("formatting") or {}
    except Exception:  # noqa: BLE001 - an adapter made elsewhere: the chat template without a system prompt
        return {}


# ----- scores from the model cards ---------------------------------------------------------
def hub_url(repo_id: str, repo_type: str = "model") -> str:
    """Page of a repo on the Hub that ``HF_ENDPOINT`` names."""
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
    return f"{constants.ENDPOINT.rstrip('/')}/{prefix}{repo_id}"


def _link(ref: str, repo_type: str = "model") -> str:
    if ref.startswith(("http://", "https://")):
        return f"[{ref}]({ref})"
    if _REPO_ID.match(ref) and not _is_local(ref):
        return f"[{ref}]({hub_url(ref, repo_type)})"
    return f"`{ref}`"


@dataclass
class CardScores:
    """Eval results read from the adapters' model cards (``model-index``)."""

    table: pd.DataFrame
    datasets: dict[str, list[str]]
    problems: dict[str, str]


SCORE_COLUMNS = ["Model", "Adapter", "Dataset", "Split", "Metric", "Value", "CI low", "CI high"]
#: A model-index entry without a split: the eval sets ltd-hub records are held-out files.
DEFAULT_SPLIT = "held-out"


def _eval_intervals(ref: str) -> dict[str, tuple[float, float, str | None]]:
    """Eval set name -> (95% CI low, high, split) from the adapter's ``eval_results.json`` ({} if none)."""
    try:
        if _is_local(ref):
            path = Path(ref, "eval_results.json")
        else:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(ref, "eval_results.json", repo_type="model"))
        records = json.loads(path.read_text(encoding="utf-8"))
        return {
            str(r["name"]): (float(r["ci_low"]), float(r["ci_high"]), r.get("split"))
            for r in records
            if isinstance(r, dict) and r.get("ci_low") is not None and r.get("ci_high") is not None
        }
    except Exception:  # noqa: BLE001 - results recorded elsewhere have no intervals: no error bar
        return {}


def read_card_scores(adapters: Mapping[str, str], titles: Mapping[str, str] | None = None) -> CardScores:
    """Collect every ``model-index`` result of the adapters' cards into one table.

    Accuracy rows get their 95% bootstrap interval from the adapter's ``eval_results.json`` when
    ltd-hub recorded one; a result without a split is a held-out set.

    Args:
        adapters: role -> adapter Hub id or local folder.
        titles: role -> the "Model" column's text (default :data:`ROLE_TITLES`).

    Returns:
        The table (one row per result), the ``datasets`` each card names, and cards that could
        not be read.

    Example:
        >>> read_card_scores({"full": "me/full"}).table.columns.tolist()   # doctest: +SKIP
        ['Model', 'Adapter', 'Dataset', 'Split', 'Metric', 'Value', 'CI low', 'CI high']
    """
    titles = {**ROLE_TITLES, **(titles or {})}
    rows, datasets, problems = [], {}, {}
    for role, ref in adapters.items():
        try:
            source = str(Path(ref, "README.md")) if _is_local(ref) else ref
            card = ModelCard.load(source, ignore_metadata_errors=True)
        except Exception as exc:  # noqa: BLE001 - a missing card only empties its rows
            problems[role] = f"no model card ({type(exc).__name__})"
            continue
        named = card.data.datasets or []
        datasets[role] = [named] if isinstance(named, str) else list(named)
        intervals = _eval_intervals(ref) if card.data.eval_results else {}
        for result in card.data.eval_results or []:
            value = result.metric_value
            low, high, split = intervals.get(result.dataset_name, (None, None, None))
            if result.metric_type != "accuracy":
                low = high = None  # the recorded interval is the accuracy's
            rows.append(
                {
                    "Model": titles[role],
                    "Adapter": _link(ref),
                    "Dataset": result.dataset_name or result.dataset_type,
                    "Split": result.dataset_split or split or DEFAULT_SPLIT,
                    "Metric": result.metric_name or result.metric_type,
                    "Value": round(float(value), 4) if isinstance(value, (int, float)) else value,
                    "CI low": None if low is None else round(low, 4),
                    "CI high": None if high is None else round(high, 4),
                }
            )
    return CardScores(pd.DataFrame(rows, columns=SCORE_COLUMNS), datasets, problems)


def score_chart_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Numeric results as bars, one per dataset and model (side by side, not stacked), with their intervals."""
    numeric = table[pd.to_numeric(table["Value"], errors="coerce").notna()].copy()
    numeric["Value"] = numeric["Value"].astype(float)
    numeric["Result"] = numeric["Dataset"].astype(str) + " · " + numeric["Model"]
    return numeric[["Result", "Value", "Model", "Dataset", "Metric", "CI low", "CI high"]]


def score_chart(table: pd.DataFrame):
    """The scores as grouped bars: y from 0 to 1, 95% bootstrap intervals as error bars, legend in bar order.

    Returns a matplotlib figure (None when no result is numeric). Bars are grouped by eval set;
    within a group the models keep the table's order, and the legend lists them in that same order.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on a Space
    import matplotlib.pyplot as plt

    frame = score_chart_frame(table)
    if frame.empty:
        return None
    several_metrics = frame["Metric"].nunique() > 1
    frame = frame.assign(Group=frame["Dataset"].astype(str) + ("\n" + frame["Metric"].astype(str) if several_metrics else ""))
    groups = list(dict.fromkeys(frame["Group"]))
    models = list(dict.fromkeys(frame["Model"]))
    width = 0.8 / len(models)
    figure, axis = plt.subplots(figsize=(max(5.0, 1.3 * len(groups) * len(models) + 1.5), 3.6), layout="constrained")
    for k, model in enumerate(models):
        part = frame[frame["Model"] == model]
        xs = [groups.index(g) - 0.4 + width * (k + 0.5) for g in part["Group"]]
        values = part["Value"].tolist()
        # No recorded interval: no error bar at all (NaN), rather than a zero-width one that looks exact.
        lows = [v - lo if pd.notna(lo) else float("nan") for v, lo in zip(values, part["CI low"])]
        highs = [hi - v if pd.notna(hi) else float("nan") for v, hi in zip(values, part["CI high"])]
        axis.bar(xs, values, width * 0.92, label=model, yerr=[lows, highs], capsize=3, error_kw={"elinewidth": 1})
    axis.set_xticks(range(len(groups)), groups)
    axis.set_ylim(0, 1)
    axis.set_ylabel("score")
    axis.grid(axis="y", alpha=0.3)
    # Above the plot, one entry per model in bar order (left to right), never over a bar.
    axis.legend(loc="lower left", bbox_to_anchor=(0, 1.02), ncols=min(len(models), 3), frameon=False)
    return figure


def links_markdown(config: SpaceConfig, scores: CardScores) -> str:
    """The adapters, the base model, the subset dataset and the full data, as links."""
    lines = ["**Adapters**: " + " · ".join(f"{config.title_of(role)} {_link(config.adapters[role])}" for role in config.roles)]
    if config.base_model:
        lines.append(f"**Base model**: {_link(config.base_model)}")
    data = []
    full = config.full_data or next(iter(scores.datasets.get("full", [])), None)
    if full:
        data.append(f"{config.title_of('full')} {_link(full, 'dataset')}")
    subset = config.subset_dataset or next(iter(scores.datasets.get("subset", [])), None)
    if subset:
        data.append(f"0.5% subset {_link(subset, 'dataset')}")
    if data:
        lines.append("**Training data**: " + " · ".join(data))
    return "  \n".join(lines)


# ----- the page ----------------------------------------------------------------------------
def parse_choices(text: str | None) -> list[str]:
    """Answer choices typed one per line (blank lines and repeats dropped)."""
    seen: list[str] = []
    for line in (text or "").splitlines():
        choice = line.strip()
        if choice and choice not in seen:
            seen.append(choice)
    return seen


def probability_frame(choices: list[str], probabilities: list[float], gold: str | None) -> pd.DataFrame:
    """One bar per answer choice, the gold answer coloured apart."""
    gold = (gold or "").strip()
    return pd.DataFrame(
        {
            "choice": choices,
            "probability": [round(p, 6) for p in probabilities],
            "answer": ["gold" if gold and choice == gold else "other" for choice in choices],
        }
    )


def _problems_markdown(bank: ModelBank, scores: CardScores) -> str:
    lines = [f"⚠️ {message}" for message in bank.problems.values()]
    lines += [
        f"⚠️ {bank.config.title_of(role)}: {message}; its scores are not shown."
        for role, message in scores.problems.items()
        if role not in bank.problems
    ]
    return "\n\n".join(lines)


def intro_markdown(config: SpaceConfig) -> str:
    """What the columns are: each adapter's data as configured (never a claim the config does not make)."""
    lines = [
        "The same base model with LoRA adapters trained on different data (the 0.5% coreset method: embed, "
        "k-means, k-center greedy inside clusters; Chen et al. 2023, *Maybe Only 0.5% Data is Needed*). "
        "Type a prompt or pick a held-out example; give answer choices to see each model's probability "
        "over them, scored exactly as `ltd-hub evaluate` scores them.",
        "",
    ]
    for role in config.roles:
        detail = config.role_details.get(role)
        lines.append(f"- **{config.title_of(role)}**" + (f": {detail}" if detail else ""))
    return "\n".join(lines)


def build_demo(config: SpaceConfig | None = None, bank: ModelBank | None = None) -> gr.Blocks:
    """Build the comparison page (not launched).

    Args:
        config: what to show; default :func:`load_config`.
        bank: an already loaded :class:`ModelBank` (default: load one from ``config``).

    Returns:
        The ``gr.Blocks``; its ``/compare`` endpoint takes (prompt, choices one per line, gold,
        max new tokens, temperature, include base) and returns, per column, the answer, its
        timing and its choice probabilities, then a notice.

    Example:
        >>> build_demo().launch(server_name="127.0.0.1", prevent_thread_lock=True)   # doctest: +SKIP
    """
    config = config or load_config()
    bank = bank or ModelBank(config)
    scores = read_card_scores({role: config.adapters[role] for role in config.roles}, {r: config.title_of(r) for r in config.roles})
    columns = [*config.roles, "base"]
    # Each helper adds its components to the page in the order called: the page reads top-down as here.
    with gr.Blocks(title=config.title, analytics_enabled=False) as demo:
        gr.Markdown(f"# {config.title}")
        gr.Markdown(intro_markdown(config), elem_id="intro")
        gr.Markdown(_problems_markdown(bank, scores), elem_id="problems")
        controls = _controls(config)
        outputs = _OutputColumns([], [], [], {})
        with gr.Row(equal_height=False):
            for role in columns:
                _model_column(config, bank, role, outputs)
        if config.examples:
            gr.Examples(
                examples=[[e["prompt"], "\n".join(e.get("choices") or []), e.get("gold") or ""] for e in config.examples],
                inputs=[controls.prompt, controls.choices, controls.gold],
                example_labels=[_example_label(e) for e in config.examples],
                label="Held-out examples (never used in training)",
            )
        _scores_panel(config, scores)
        _wire(controls, outputs, bank, _compare(bank, columns))
    return demo


@dataclass
class _Controls:
    """The page's inputs and buttons, and the notice line under them."""

    prompt: Any
    choices: Any
    gold: Any
    max_new_tokens: Any
    temperature: Any
    include_base: Any
    compare: Any
    stop: Any
    clear: Any
    notice: Any


@dataclass
class _OutputColumns:
    """Per model column (in column order): its answer box, timing line, probability chart; and each column block."""

    answers: list[Any]
    timings: list[Any]
    plots: list[Any]
    blocks: dict[str, Any]

    @property
    def all(self) -> list[Any]:
        return [*self.answers, *self.timings, *self.plots]


def _controls(config: SpaceConfig) -> _Controls:
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", lines=5, scale=3, elem_id="prompt")
        with gr.Column(scale=2):
            choices = gr.Textbox(label="Answer choices (one per line, optional)", lines=3, elem_id="choices")
            gold = gr.Textbox(label="Gold answer (optional)", elem_id="gold")
    with gr.Row():
        max_new_tokens = gr.Slider(1, 256, value=config.max_new_tokens, step=1, label="Max new tokens")
        temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0 = greedy)")
        include_base = gr.Checkbox(value=False, label="Add the base model")
    with gr.Row():
        compare = gr.Button("Compare", variant="primary", elem_id="compare")
        stop = gr.Button("Stop", variant="stop", elem_id="stop")
        clear = gr.Button("Clear", elem_id="clear")
    notice = gr.Markdown(elem_id="notice")
    return _Controls(prompt, choices, gold, max_new_tokens, temperature, include_base, compare, stop, clear, notice)


def _model_column(config: SpaceConfig, bank: ModelBank, role: str, outputs: _OutputColumns) -> None:
    """One model's column: title, answer, timing and choice probabilities (the base model's hidden until asked for)."""
    with gr.Column(visible=role != "base", elem_id=f"column-{role}") as column:
        outputs.blocks[role] = column
        title = config.title_of(role)
        if role != "base":
            title += f" · `{config.adapters[role]}`"
        gr.Markdown(f"### {title}")
        unavailable = "" if bank.available(role) else bank.problems.get(role) or bank.problems.get("base", "")
        outputs.answers.append(
            gr.Textbox(value=unavailable, label="Answer", lines=6, interactive=False, buttons=["copy"], elem_id=f"answer-{role}")
        )
        outputs.timings.append(gr.Markdown(elem_id=f"timing-{role}"))
        outputs.plots.append(
            gr.BarPlot(
                x="choice",
                y="probability",
                color="answer",
                color_map={"gold": "#16a34a", "other": "#94a3b8"},
                colors_in_legend=["gold", "other"],
                y_lim=[0, 1],
                label="P(choice)",
                show_label=True,
                # The key in words too: a narrow column can squeeze the chart's own legend.
                caption="green: the gold answer · grey: the other choices",
                height=260,
                visible=bank.available(role),
                elem_id=f"probs-{role}",
            )
        )


def _scores_panel(config: SpaceConfig, scores: CardScores) -> None:
    with gr.Accordion("Scores from the adapters' model cards", open=True):
        gr.Dataframe(
            value=scores.table,
            datatype=["str", "markdown", "str", "str", "str", "number", "number", "number"],
            interactive=False,
            elem_id="scores",
        )
        chart = score_chart(scores.table)
        if chart is not None:
            gr.Plot(value=chart, label="Eval results (model-index; bars: 95% bootstrap intervals)", elem_id="scores-chart")
        gr.Markdown(links_markdown(config, scores), elem_id="links")


def _compare(bank: ModelBank, columns: list[str]):
    """The compare handler: per column in turn, stream the answer, then its timing and choice probabilities."""

    def compare(prompt_text, choices_text, gold_text, new_tokens, temp, with_base):
        options = _checked_choices(bank, prompt_text, choices_text)
        prompt_used, truncated = bank.prepare_prompt(prompt_text)
        notes = [truncated] if truncated else []
        if truncated:
            gr.Warning(truncated)
        if options and (gold_text or "").strip() and gold_text.strip() not in options:
            notes.append(f"The gold answer {gold_text.strip()!r} is not one of the choices.")
        active = [role for role in columns if role != "base" or with_base]
        texts = {role: "" if bank.available(role) else (bank.problems.get(role) or bank.problems.get("base", "")) for role in columns}
        stats_md = dict.fromkeys(columns, "")
        probs: dict[str, pd.DataFrame | None] = dict.fromkeys(columns)

        def frame():
            values = [texts[r] for r in columns] + [stats_md[r] for r in columns] + [probs[r] for r in columns]
            return [*values, "\n\n".join(notes)]

        yield frame()
        for role in (r for r in active if bank.available(r)):
            stats = GenerationStats()
            prompt_ids, _ = bank.encode_prompt(prompt_used, role)
            for text in bank.stream(role, prompt_ids, int(new_tokens), float(temp), stats):
                texts[role] = text
                yield frame()
            stats_md[role] = stats.summary()
            if options:
                probs[role] = probability_frame(options, bank.choice_probabilities(role, prompt_used, options), gold_text)
            yield frame()

    return compare


def _checked_choices(bank: ModelBank, prompt_text: str | None, choices_text: str | None) -> list[str]:
    """The answer choices of a compare request; an empty prompt, no base model or a single choice is one error."""
    if not (prompt_text or "").strip():
        raise gr.Error("The prompt is empty: type a prompt or pick an example.")
    if not bank.ready:
        raise gr.Error(bank.problems.get("base", "The base model is not loaded."))
    options = parse_choices(choices_text)
    if len(options) == 1:
        raise gr.Error("Give at least two answer choices (one per line), or none.")
    return options


def _wire(controls: _Controls, outputs: _OutputColumns, bank: ModelBank, compare: Any) -> None:
    """Connect the buttons: compare (also Enter in the prompt), stop, clear, and the base-model checkbox."""
    # The button and Enter in the prompt run the same generation; only the button is a public API.
    compare_wiring = {
        "fn": on_gpu(compare),
        "inputs": [controls.prompt, controls.choices, controls.gold, controls.max_new_tokens, controls.temperature, controls.include_base],
        "outputs": [*outputs.all, controls.notice],
        "concurrency_limit": 1,
        "concurrency_id": "model",
    }
    compare_event = controls.compare.click(**compare_wiring, api_name="compare")
    submit_event = controls.prompt.submit(**compare_wiring, api_visibility="private")
    controls.stop.click(bank.stop, cancels=[compare_event, submit_event], queue=False, api_name="stop")
    n = len(outputs.answers)

    def clear():
        return ["", "", "", *[""] * n, *[""] * n, *[None] * n, ""]

    controls.clear.click(
        clear,
        outputs=[controls.prompt, controls.choices, controls.gold, *outputs.all, controls.notice],
        queue=False,
        api_visibility="private",
    )
    controls.include_base.change(
        lambda show: gr.Column(visible=bool(show)),
        inputs=controls.include_base,
        outputs=outputs.blocks["base"],
        queue=False,
        api_visibility="private",
    )


def _example_label(example: Mapping[str, Any]) -> str:
    prompt = " ".join(str(example["prompt"]).split())
    source = " · ".join(str(example[k]) for k in ("dataset", "template") if example.get(k))
    head = f"[{source}] " if source else ""
    return head + (prompt[:90] + "…" if len(prompt) > 90 else prompt)


def main() -> None:
    """Load the configured models and serve the page (``GRADIO_SERVER_NAME``/``PORT`` apply)."""
    demo = build_demo(load_config())
    demo.queue(default_concurrency_limit=1).launch(theme=gr.themes.Soft())


if __name__ == "__main__":
    main()
