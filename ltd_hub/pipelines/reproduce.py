"""``ltd-hub reproduce``: the paper's comparison end to end (select → train → evaluate every arm).

An experiment config (``experiments/*.yaml``) names the pool, the shared training and eval settings
and the arms: the base model, the full task data (or a labelled random slice standing in for it),
coresets, uniform random subsets, other strategies and encoders. Every arm trains the same base
model with the same recipe; only the training rows (and, for ``schedule: steps`` arms, the number
of optimizer steps) differ. Each arm runs once per (selection seed, training seed): a *run*.

Results survive the session: every finished run writes a small JSON file under
``<results_dir>/arms/`` (by default ``docs/results/<name>/arms/``, meant to be committed) holding
the hash of everything that determines it (pool and eval data content, selection, base model,
training and eval settings), its metrics, per-example predictions and training figures. A run
whose file is there with the same hash is done and is not trained again, so a comparison can be
split over sessions and machines (``--only``, ``--shard i/n``) and accumulate in git. The summary
(``results.md``: mean ± sd over seeds, paired bootstrap differences against a reference arm;
``results.json``; a plot) is rebuilt from whatever run files are there.

Local stages (subset, adapter, eval) are also cached under ``output_dir`` by config hash, so an
interrupted run loses at most the stage in progress.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ltd_hub.configs import ConfigMixin
from ltd_hub.constants import DEFAULT_BASE_MODEL
from ltd_hub.errors import UsageError
from ltd_hub.files import atomic_write, json_digest, staged_dir

RESULTS_FILE = "results.json"
TABLE_FILE = "results.md"
PLOT_FILE = "accuracy_vs_fraction.png"
ARMS_DIR = "arms"
RESULT_FORMAT = 1
# select_subset arguments that reproduce sets itself (per run or at the top of the config).
_RESERVED_SELECTION = {"source": "the config's pool", "seed": "selection_seeds", "filters": "filters", "text_fields": "text_fields",
                       "token": "--token", "progress": None, "log": None}  # fmt: skip
# Per-arm keys of an `arms:` entry.
_ARM_KEYS = ("name", "kind", "selection", "selection_seeds", "train_seeds", "seed_pairing", "schedule")


@dataclass
class EvalSpec(ConfigMixin):
    """Evaluation settings shared by every arm (the config's ``eval:`` section)."""

    data: list[str] = field(default_factory=list)
    templates: int | None = None
    max_examples: int | None = None
    batch_size: int = 16
    bootstrap: int = 1000


@dataclass
class PushSpec(ConfigMixin):
    """Where ``--push`` publishes subsets, adapters and the results dataset.

    ``private`` is the config's ``--private``/``--public``: ``true`` keeps every pushed repo private,
    ``false`` publishes them even when the pool is a private Hub dataset (one line says so), and left
    out (None) they inherit: private when the pool is private, else the Hub's default (public).
    See :func:`ltd_hub.hub.gateway.derived_visibility`.
    """

    namespace: str = ""
    prefix: str = "ltd"
    private: bool | None = None


@dataclass
class ReproduceConfig(ConfigMixin):
    """An experiment: the pool, the arms and the shared training and eval settings.

    Arms come from ``arms:`` (a list of ``{name, kind, selection, selection_seeds, train_seeds,
    seed_pairing, schedule}``; ``selection`` holds :func:`ltd_hub.selection.subset.select_subset` keyword
    arguments, so new selection options need no change here), or, without it, from the legacy keys
    (``strategy``, ``random_seeds``, ``sweep_ratios``, ``ablation_*``, ``full_data``).

    Example:
        >>> cfg = ReproduceConfig.from_yaml("experiments/nli-cpu.yaml")  # doctest: +SKIP
    """

    # What a key takes, where its type alone says too little (error lines of ltd_hub.configs).
    config_words: ClassVar[dict[Any, str]] = {
        "full_data": "'all' (every task row) or a number of rows",
        "output_dir": "a string (a folder)",
        "results_dir": "a string (a folder)",
        "checkpoint_dir": "a string (a folder)",
        "save_steps": "a whole number (0: checkpoint only when --max-minutes stops a run)",
    }

    name: str = "experiment"
    pool: str = ""
    pool_limit: int | None = None
    filters: list[str] = field(default_factory=list)
    text_fields: list[str] = field(default_factory=lambda: ["inputs", "targets"])
    base_model: str = DEFAULT_BASE_MODEL
    encoder: str = "sentence-transformers/all-MiniLM-L6-v2"
    strategy: str = "kcenter"
    n_clusters: int | None = None
    ratio: float = 0.005
    selection_seed: int = 0
    random_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    sweep_ratios: list[float] = field(default_factory=lambda: [0.001, 0.005, 0.01, 0.05])
    sweep_random_seeds: list[int] = field(default_factory=list)
    ablation_strategies: list[str] = field(default_factory=lambda: ["centroid", "random-in-cluster", "kcenter-global"])
    ablation_encoders: list[str] = field(default_factory=lambda: ["lexical"])
    full_data: str | int = "all"
    arms: list[dict[str, Any]] | None = None
    train_seeds: list[int] | None = None
    schedule: str = "epochs"
    steps_like_ratio: float | None = None
    compare_to: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    eval: EvalSpec = field(default_factory=EvalSpec)
    output_dir: str = "runs/experiment"
    results_dir: str | None = None
    # Resumable training: each training run keeps transformers checkpoints under
    # <checkpoint_dir>/<run id>-<run hash>/ (default <output_dir>/checkpoints), every save_steps steps
    # and when --max-minutes stops it; the next reproduce resumes it. Not part of any hash.
    checkpoint_dir: str | None = None
    save_steps: int = 100
    push: PushSpec | None = None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> ReproduceConfig:
        """Read a config; unknown keys, wrong types and bad values are one-line UsageErrors."""
        from ltd_hub.errors import read_yaml_mapping

        path = Path(path)
        config = cls.from_mapping(read_yaml_mapping(path), source=path.name)
        # Relative paths in a config are relative to the config file, so configs run from anywhere.
        base = path.resolve().parent
        config.pool = _resolve(config.pool, base)
        config.eval.data = [_resolve(p, base) for p in config.eval.data]
        for key in ("output_dir", "checkpoint_dir"):  # working folders: relative to where reproduce runs
            value = getattr(config, key)
            if value is not None and not os.path.isabs(value):
                setattr(config, key, str(Path.cwd() / value))
        # Results are committed beside the code: docs/results/<name> of the repo holding experiments/.
        results = config.results_dir or f"../docs/results/{config.name}"
        config.results_dir = results if os.path.isabs(results) else str((base / results).resolve())
        config.validate()
        return config

    def validate(self) -> None:
        """Check every value that needs no model or data loaded; raise a one-line UsageError naming the key."""
        self._check_selection_keys()
        self._check_train_section()
        self._check_eval_and_folders()
        runs = plan_runs(self)  # checks every arm entry
        names = {run.arm for run in runs}
        if self.compare_to is not None and self.compare_to not in names:
            raise UsageError(f"compare_to {self.compare_to!r} names no arm; arms: {', '.join(dict.fromkeys(r.arm for r in runs))}")

    def _check_selection_keys(self) -> None:
        from ltd_hub.selection import SELECTORS

        if not self.pool:
            raise UsageError("the config needs `pool:` (the instruction data to select from)")
        if not self.name.strip() or "/" in self.name or self.name.startswith("."):
            raise UsageError(f"name must be a plain folder name (it names docs/results/<name>), got {self.name!r}")
        if not 0 < self.ratio < 1:
            raise UsageError(f"ratio must be in (0, 1), got {self.ratio}")
        for r in self.sweep_ratios:
            if not 0 < r < 1:
                raise UsageError(f"sweep_ratios must be in (0, 1), got {r}")
        if self.steps_like_ratio is not None and not 0 < self.steps_like_ratio < 1:
            raise UsageError(
                f"steps_like_ratio must be in (0, 1) (the ratio whose steps `schedule: steps` arms get), got {self.steps_like_ratio}"
            )
        valid = list(SELECTORS)
        for name in [self.strategy, *self.ablation_strategies]:
            if name not in valid:
                raise UsageError(f"unknown strategy {name!r} in the config; valid: {', '.join(valid)}")
        _check_schedule(self.schedule, "schedule")
        if isinstance(self.full_data, bool) or not (self.full_data == "all" or (isinstance(self.full_data, int) and self.full_data > 0)):
            raise UsageError(f"full_data must be 'all' (every task row) or a number of rows, got {self.full_data!r}")

    def _check_train_section(self) -> None:
        """``train:`` holds TrainConfig keys (checked as ``ltd-hub train`` checks them) but none reproduce sets per arm."""
        from ltd_hub.training import TrainConfig

        if self.train_seeds is not None and (not self.train_seeds or len(set(self.train_seeds)) != len(self.train_seeds)):
            raise UsageError(f"train_seeds must be a non-empty list of distinct seeds, got {self.train_seeds}")
        reserved = {"dataset", "output_dir", "push_to", "base_model", "dataset_split", "overwrite_output_dir"} & set(self.train)
        if reserved:
            raise UsageError(f"train.{sorted(reserved)[0]} is set per arm by reproduce; remove it from the config")
        if "seed" in self.train and self.train_seeds is not None:
            raise UsageError("train.seed and train_seeds both set; keep train_seeds (one run per training seed)")
        try:
            trial = TrainConfig.from_mapping(
                {**self.train, "dataset": "x", "base_model": "x", "output_dir": str(Path(tempfile.gettempdir()) / "ltd-hub-no-such-dir")},
                source="train:",
            )  # fmt: skip
            trial.validate()
        except UsageError as exc:
            raise UsageError(f"train section: {exc}") from None

    def _check_eval_and_folders(self) -> None:
        if not self.eval.data:
            raise UsageError("the config needs eval.data (held-out files or dataset repos)")
        for key in ("templates", "max_examples"):
            value = getattr(self.eval, key)
            if value is not None and value < 1:
                raise UsageError(f"eval.{key} must be at least 1 (or left out for all), got {value}")
        if self.eval.batch_size < 1 or self.eval.bootstrap < 1:
            raise UsageError("eval.batch_size and eval.bootstrap must be at least 1")
        missing = [p for p in self.eval.data if "/" in p and os.path.isabs(p) and not os.path.exists(p)]
        if missing:
            raise UsageError(f"eval data not found: {missing[0]}; check eval.data in the config")
        for key in ("output_dir", "results_dir", "checkpoint_dir"):
            value = Path(getattr(self, key) or ".")
            if value.exists() and not value.is_dir():
                raise UsageError(f"{key} {value} is a file; choose a folder")
        if isinstance(self.save_steps, bool) or self.save_steps < 0:
            raise UsageError(f"save_steps must be 0 or more (0: checkpoint only when --max-minutes stops a run), got {self.save_steps}")
        if self.push is not None and not self.push.namespace:
            raise UsageError("push.namespace is required to publish (your user or org name)")


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return -1


def _check_schedule(value: Any, key: str) -> None:
    if value not in ("epochs", "steps"):
        raise UsageError(f"{key} must be 'epochs' (equal epochs per arm) or 'steps' (equal optimizer steps), got {value!r}")


def _resolve(value: str, base: Path) -> str:
    if not value or os.path.isabs(value):
        return value
    candidate = (base / value).resolve()
    return str(candidate) if candidate.exists() or value.startswith(".") else value


# --------------------------------------------------------------------------- arms and runs


@dataclass
class Run:
    """One trained (or evaluated) model of the comparison: an arm at one selection and training seed.

    ``selection`` holds the :func:`~ltd_hub.selection.subset.select_subset` keyword arguments (None for the
    base model and the full task data); ``kind`` is ``base``, ``full`` or the arm's group
    (``coreset``, ``random``, ``sweep``, ``ablation``, or ``subset`` for arms listed in ``arms:``).
    """

    arm: str
    kind: str
    selection: dict[str, Any] | None = None
    selection_seed: int | None = None
    train_seed: int | None = None
    schedule: str = "epochs"
    multi_selection: bool = False
    multi_train: bool = False

    @property
    def trains(self) -> bool:
        return self.kind != "base"

    @property
    def run_id(self) -> str:
        """File-name-safe id, unique within a config (``random-0-5--sel1-train1``)."""
        parts = []
        if self.selection is not None and self.selection_seed is not None:
            parts.append(f"sel{self.selection_seed}")
        if self.trains and self.train_seed is not None:
            parts.append(f"train{self.train_seed}")
        return _slug(self.arm) + ("--" + "-".join(parts) if parts else "")

    @property
    def label(self) -> str:
        seeds = []
        if self.multi_selection:
            seeds.append(f"selection seed {self.selection_seed}")
        if self.multi_train:
            seeds.append(f"training seed {self.train_seed}")
        return self.arm + (f" ({', '.join(seeds)})" if seeds else "")

    # Kept for callers of the former Arm type.
    @property
    def name(self) -> str:
        return self.label

    @property
    def strategy(self) -> str | None:
        return None if self.selection is None else self.selection.get("strategy")

    @property
    def ratio(self) -> float | None:
        return None if self.selection is None else self.selection.get("ratio")

    @property
    def seed(self) -> int | None:
        return self.selection_seed


def _legacy_arms(config: ReproduceConfig) -> list[dict[str, Any]]:
    """The arms the legacy keys describe, as ``arms:`` entries."""
    pct = lambda r: f"{r * 100:g}%"  # noqa: E731
    sel = lambda strategy, ratio, encoder=None: {"strategy": strategy, "ratio": ratio, "encoder": encoder or config.encoder}  # noqa: E731
    arms: list[dict[str, Any]] = [{"name": "base model", "kind": "base"}]
    arms.append(
        {
            "name": f"coreset {pct(config.ratio)}",
            "kind": "coreset",
            "selection": sel(config.strategy, config.ratio),
            "selection_seeds": [config.selection_seed],
        }
    )
    if config.random_seeds:
        arms.append(
            {
                "name": f"random {pct(config.ratio)}",
                "kind": "random",
                "selection": sel("random", config.ratio),
                "selection_seeds": list(config.random_seeds),
            }
        )
    if config.full_data == "all":
        arms.append({"name": "full task data", "kind": "full"})
    else:
        arms.append({"name": f"full-data proxy: random {config.full_data} rows", "kind": "full",
                     "selection": {"strategy": "random", "size": int(config.full_data), "encoder": config.encoder}, "selection_seeds": [12345]})  # fmt: skip
    for ratio in config.sweep_ratios:
        if ratio != config.ratio:
            arms.append(
                {
                    "name": f"coreset {pct(ratio)}",
                    "kind": "sweep",
                    "selection": sel(config.strategy, ratio),
                    "selection_seeds": [config.selection_seed],
                }
            )
        seeds = [s for s in config.sweep_random_seeds if ratio != config.ratio or s not in config.random_seeds]
        if seeds:
            arms.append({"name": f"random {pct(ratio)}" + (" (sweep)" if ratio == config.ratio else ""), "kind": "sweep-random",
                         "selection": sel("random", ratio), "selection_seeds": seeds})  # fmt: skip
    for strategy in config.ablation_strategies:
        if strategy != config.strategy:
            arms.append(
                {
                    "name": f"{strategy} {pct(config.ratio)}",
                    "kind": "ablation",
                    "selection": sel(strategy, config.ratio),
                    "selection_seeds": [config.selection_seed],
                }
            )
    for encoder in config.ablation_encoders:
        if encoder != config.encoder:
            arms.append({"name": f"{config.strategy} {pct(config.ratio)}, {encoder} encoder", "kind": "ablation",
                         "selection": sel(config.strategy, config.ratio, encoder), "selection_seeds": [config.selection_seed]})  # fmt: skip
    return arms


def _check_selection(options: Any, where: str, config: ReproduceConfig) -> dict[str, Any]:
    """Validate an arm's ``selection:`` against :func:`select_subset`'s signature (no data is read)."""
    from ltd_hub.selection import SELECTORS, default_strategy
    from ltd_hub.selection.encoders import get_encoder
    from ltd_hub.selection.subset import select_subset

    if not isinstance(options, dict):
        raise UsageError(f"{where}.selection must be a mapping of select_subset options (strategy, ratio, ...), got {options!r}")
    params = inspect.signature(select_subset).parameters
    for key in options:
        if key in _RESERVED_SELECTION:
            hint = _RESERVED_SELECTION[key]
            raise UsageError(
                f"{where}.selection.{key} is set by reproduce" + (f" (from {hint})" if hint else "") + "; remove it from the arm"
            )
        if key not in params:
            valid = [p for p in params if p not in _RESERVED_SELECTION]
            raise UsageError(f"unknown selection option {key!r} in {where}; select_subset takes: {', '.join(valid)}")
    options = {"encoder": config.encoder, **options}
    # An arm without a strategy gets push-subset's default (over examples or rows), recorded explicitly.
    strategy = options.get("strategy") or default_strategy(grouped=options.get("group_by") is not None)
    if strategy not in SELECTORS:
        raise UsageError(f"unknown strategy {strategy!r} in {where}; valid: {', '.join(SELECTORS)}")
    options["strategy"] = strategy
    ratio, size = options.get("ratio"), options.get("size")
    if (ratio is None) == (size is None):
        raise UsageError(f"{where}.selection needs exactly one of ratio (e.g. 0.005) or size (rows)")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1):
        raise UsageError(f"{where}.selection.ratio must be a number in (0, 1), got {ratio!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise UsageError(f"{where}.selection.size must be a positive number of rows, got {size!r}")
    if "group_by" in options and options["group_by"] is not None and not isinstance(options["group_by"], str):
        raise UsageError(f"{where}.selection.group_by must be a column name, got {options['group_by']!r}")
    if "stratify_by" in options and not (
        isinstance(options["stratify_by"], list) and all(isinstance(c, str) for c in options["stratify_by"])
    ):
        raise UsageError(f"{where}.selection.stratify_by must be a list of column names, got {options['stratify_by']!r}")
    try:
        get_encoder(str(options["encoder"]))  # names only: no weights are loaded
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    return options


def _seed_list(value: Any, key: str) -> list[int]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in value)
        or len(set(value)) != len(value)
    ):
        raise UsageError(f"{key} must be a non-empty list of distinct integer seeds, got {value!r}")
    return value


def plan_runs(config: ReproduceConfig) -> list[Run]:
    """Every run of the experiment, in the order they run (cheap and central arms first).

    Seeds: an arm runs at each of its ``selection_seeds`` and ``train_seeds`` (default: the config's
    ``train_seeds``, else ``train.seed``). ``seed_pairing: zip`` (default) pairs them one to one (a
    list of one is repeated), so three runs vary both; ``product`` runs every combination.
    """
    entries = config.arms if config.arms is not None else _legacy_arms(config)
    if not entries:
        raise UsageError("arms: is empty; list at least one arm (or drop the key to use the legacy arm keys)")
    runs: list[Run] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        runs += _arm_runs(config, entry, f"arms[{index}]", seen)
    ids = [r.run_id for r in runs]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise UsageError(f"two runs would both be {duplicate!r}; give their arms distinct names or seeds")
    return runs


def _arm_name(entry: Any, where: str, seen: set[str]) -> str:
    """The arm's name, once the entry is a mapping of known keys and no other arm has that name (``seen`` grows)."""
    if not isinstance(entry, dict):
        raise UsageError(f"{where} must be a mapping (name, selection, ...), got {entry!r}")
    unknown = sorted(set(entry) - set(_ARM_KEYS), key=str)
    if unknown:
        raise UsageError(f"unknown key {unknown[0]!r} in {where}; valid keys: {', '.join(_ARM_KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"{where} needs a name (a string)")
    if name in seen or _slug(name) in {_slug(n) for n in seen}:
        raise UsageError(f"two arms are named {name!r} (or alike once made a file name); give them distinct names")
    seen.add(name)
    return name


def _arm_runs(config: ReproduceConfig, entry: Any, where: str, seen: set[str]) -> list[Run]:
    """The runs of one ``arms:`` entry, every key of it checked."""
    name = _arm_name(entry, where, seen)
    where = f"arm {name!r}"
    selection = entry.get("selection")
    kind = entry.get("kind", "base" if selection is None and name == "base model" else "subset")
    if kind not in ("base", "full", "subset", "coreset", "random", "sweep", "sweep-random", "ablation"):
        raise UsageError(f"{where}: kind must be base, full or subset, got {kind!r}")
    schedule = entry.get("schedule", config.schedule)
    _check_schedule(schedule, f"{where}: schedule")
    if kind == "base":
        if selection is not None or "train_seeds" in entry:
            raise UsageError(f"{where}: the base model trains on nothing; remove selection/train_seeds")
        return [Run(name, "base")]
    if selection is None and kind != "full":
        raise UsageError(f"{where} needs selection: {{strategy: ..., ratio: ...}} (or kind: full / kind: base)")
    options = _check_selection(selection, where, config) if selection is not None else None
    default_train = list(config.train_seeds) if config.train_seeds is not None else [None]
    sel_seeds = _seed_list(entry.get("selection_seeds", [config.selection_seed]), f"{where}: selection_seeds") if options else [None]
    train_seeds = _seed_list(entry["train_seeds"], f"{where}: train_seeds") if "train_seeds" in entry else default_train
    pairs = _seed_pairs(sel_seeds, train_seeds, entry.get("seed_pairing", "zip"), where)
    multi_sel = len({s for s, _ in pairs}) > 1
    multi_train = len({t for _, t in pairs}) > 1
    return [Run(name, kind, options, sel_seed, train_seed, schedule, multi_sel, multi_train) for sel_seed, train_seed in pairs]


def _seed_pairs(sel_seeds: list[Any], train_seeds: list[Any], pairing: Any, where: str) -> list[tuple[Any, Any]]:
    """(selection seed, training seed) of each run: ``zip`` pairs the lists (one seed repeats), ``product`` crosses them."""
    if pairing == "product":
        return [(s, t) for s in sel_seeds for t in train_seeds]
    if pairing != "zip":
        raise UsageError(f"{where}: seed_pairing must be zip or product, got {pairing!r}")
    n = max(len(sel_seeds), len(train_seeds))
    if len(sel_seeds) not in (1, n) or len(train_seeds) not in (1, n):
        raise UsageError(f"{where}: {len(sel_seeds)} selection seeds and {len(train_seeds)} training seeds cannot be paired; "
                         "give lists of equal length (or one of them a single seed), or seed_pairing: product")  # fmt: skip
    return [(sel_seeds[i % len(sel_seeds)], train_seeds[i % len(train_seeds)]) for i in range(n)]


def plan_arms(config: ReproduceConfig) -> list[Run]:
    """Alias of :func:`plan_runs` (every run of every arm)."""
    return plan_runs(config)


def check_no_eval_rows(train_rows: Any, eval_prompts: set[str], column: str = "inputs") -> None:
    """Raise if any training row's prompt is an eval prompt (evaluation rows never go into training)."""
    if column not in train_rows.column_names:
        return
    leaked = [text for text in train_rows[column] if text in eval_prompts]
    if leaked:
        raise UsageError(f"{len(leaked)} training rows are also eval rows (first: {leaked[0][:60]!r}); remove the eval data from the pool")


def _hash(payload: Any) -> str:
    return json_digest(payload, 16)


_FINGERPRINTS: dict[str, str] = {}


def fingerprint(spec: str) -> str:
    """What identifies data across machines: a local file's name + sha256 (a folder's files), else the id as given."""
    path = Path(spec).expanduser()
    if not path.exists():
        return spec
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if key not in _FINGERPRINTS:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.relative_to(path).as_posix().encode() if path.is_dir() else b"")
            with open(file, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        _FINGERPRINTS[key] = f"{path.name}:sha256:{digest.hexdigest()[:16]}"
    return _FINGERPRINTS[key]


def train_settings(config: ReproduceConfig, run: Run | None = None) -> dict[str, Any]:
    """The training knobs of a run: the shared recipe, its training seed and its schedule.

    Equal epochs drop ``max_steps``; equal steps keep ``train.max_steps`` when set, else record
    ``{"steps_like_ratio": r}`` (resolved at run time to the steps an ``r`` slice of the task rows
    takes at the configured epochs, so the hash needs no data).
    """
    settings = dict(config.train)
    schedule = run.schedule if run is not None else config.schedule
    if run is not None and run.train_seed is not None:
        settings["seed"] = run.train_seed
    if schedule == "epochs":
        settings.pop("max_steps", None)
    elif _int(settings.get("max_steps", -1)) <= 0:
        settings["max_steps"] = {"steps_like_ratio": config.steps_like_ratio or config.ratio}
    return settings


def steps_for(config: ReproduceConfig, n_rows: int, settings: dict[str, Any] | None = None, *, n_task_rows: int | None = None) -> int:
    """Optimizer steps of a run on ``n_rows`` rows, counted as transformers' Trainer does (before over-long rows are skipped).

    With equal steps (``max_steps: {steps_like_ratio: r}``) it is the steps of ``r`` of ``n_task_rows``.
    """
    from ltd_hub.selection.budget import budget_from_ratio

    settings = settings if settings is not None else train_settings(config)
    max_steps = settings.get("max_steps")
    if isinstance(max_steps, dict):
        if n_task_rows is None:
            raise ValueError("equal-steps runs need n_task_rows")
        reference = budget_from_ratio(n_task_rows, max_steps["steps_like_ratio"])
        return steps_for(config, reference, {**settings, "max_steps": -1})
    if _int(max_steps) > 0:
        return int(max_steps)
    batches = math.ceil(n_rows / int(settings.get("per_device_train_batch_size", 8)))
    per_epoch = max(math.ceil(batches / int(settings.get("gradient_accumulation_steps", 1))), 1)
    return max(1, math.ceil(per_epoch * float(settings.get("num_train_epochs", 1.0))))


def run_hash(config: ReproduceConfig, run: Run) -> str:
    """The hash that says whether a committed result is this run's: every input that decides it, machine-independent."""
    payload: dict[str, Any] = {
        "format": RESULT_FORMAT,
        "base_model": config.base_model,
        "eval": {
            "data": [fingerprint(p) for p in config.eval.data],
            "templates": config.eval.templates,
            "max_examples": config.eval.max_examples,
        },  # fmt: skip
    }
    if run.trains:
        payload["data"] = {"pool": fingerprint(config.pool), "pool_limit": config.pool_limit, "filters": config.filters,
                           "text_fields": config.text_fields}  # fmt: skip
        payload["selection"] = (
            None if run.selection is None else {**run.selection, "seed": run.selection_seed, "n_clusters_default": config.n_clusters}
        )
        payload["train"] = train_settings(config, run)
    return _hash(payload)


def _selection_options(config: ReproduceConfig, run: Run) -> dict[str, Any]:
    options = dict(run.selection or {})
    if config.n_clusters is not None:
        options.setdefault("n_clusters", config.n_clusters)
    return options


# --------------------------------------------------------------------------- result files


def _predictions_of(result: dict[str, Any]) -> list[int] | None:
    """Per-example predicted choice indices of one eval set's result, in the eval set's row order.

    The adapter between :func:`ltd_hub.evaluation.evaluator.evaluate_model`'s per-set result and the result
    files: it reads ``predictions`` (a list of choice indices) or ``examples`` (dicts with
    ``prediction``/``pred``), whichever the evaluation report carries; None when it has neither.
    """
    preds = result.get("predictions")
    if preds is None and isinstance(result.get("examples"), list):
        preds = [e.get("prediction", e.get("pred")) if isinstance(e, dict) else e for e in result["examples"]]
    if preds is None or not isinstance(preds, list):
        return None
    try:
        return [int(p) for p in preds]
    except (TypeError, ValueError):
        return None


def _encode_digits(values: list[int]) -> str | list[int]:
    """Choice indices as a string of digits (compact in git) when every index is a single digit."""
    return "".join(map(str, values)) if all(0 <= v < 10 for v in values) else list(values)


def _decode_digits(value: str | list[int] | None) -> list[int] | None:
    if value is None:
        return None
    return [int(c) for c in value] if isinstance(value, str) else [int(v) for v in value]


def examples_sha(rows: list[dict[str, Any]]) -> str:
    """A hash of an eval set's examples (prompt, choices, gold) in order: two runs pair only if theirs match."""
    return _hash([[r["inputs"], r["choices"], r["gold"]] for r in rows])


def read_result(path: Path) -> dict[str, Any] | None:
    """A run's result file, or None when missing or unreadable (then the run is simply not done)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == RESULT_FORMAT else None


@dataclass
class PlannedRun:
    """A run with its hash, its result file and whether that file already holds it."""

    run: Run
    hash: str
    path: Path
    state: str  # done | stale | todo
    result: dict[str, Any] | None


def run_states(config: ReproduceConfig) -> list[PlannedRun]:
    """Every run of ``config`` with its state per the result files under ``results_dir/arms``."""
    arms_dir = Path(config.results_dir or ".") / ARMS_DIR
    out = []
    for run in plan_runs(config):
        h = run_hash(config, run)
        path = arms_dir / f"{run.run_id}.json"
        found = read_result(path)
        state = "todo" if found is None else ("done" if found.get("hash") == h else "stale")
        out.append(PlannedRun(run, h, path, state, found if state == "done" else None))
    return out


def select_runs(planned: list[PlannedRun], only: list[str] | None = None, shard: tuple[int, int] | None = None) -> list[PlannedRun]:
    """The runs named by ``only`` (arm kinds, arm names, or run ids) and falling in ``shard`` (i, n)."""
    chosen = planned
    if only:
        keys = set(only)
        known = (
            {p.run.kind for p in planned}
            | {p.run.arm for p in planned}
            | {_slug(p.run.arm) for p in planned}
            | {p.run.run_id for p in planned}
        )
        unknown = sorted(keys - known)
        if unknown:
            arms = ", ".join(dict.fromkeys(p.run.arm for p in planned))
            raise UsageError(f"--only {unknown[0]!r} matches no arm kind, arm or run of this config; arms: {arms}")
        chosen = [p for p in planned if keys & {p.run.kind, p.run.arm, _slug(p.run.arm), p.run.run_id}]
    if shard is not None:
        i, n = shard
        # Shards deal out the whole plan by position, so every machine computes the same split.
        position = {id(p): k for k, p in enumerate(planned)}
        chosen = [p for p in chosen if position[id(p)] % n == i - 1]
    return chosen


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/3"`` -> (2, 3); a one-line UsageError otherwise."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like I/N (e.g. 1/3), got {text!r}") from None
    if not 1 <= i <= n:
        raise UsageError(f"--shard I/N needs 1 <= I <= N, got {text!r}")
    return i, n


# --------------------------------------------------------------------------- statistics


def paired_bootstrap(
    a: Any,
    b: Any,
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    resample_runs: bool = True,
) -> tuple[float, float, float]:
    """Paired bootstrap interval of accuracy(a) - accuracy(b) on the same examples.

    ``a`` and ``b`` are per-example correctness (0/1) of two arms: one eval set as an array of
    shape (examples,) or (runs, examples), or a list of such arrays, one per eval set (then the
    difference is the mean of the per-set differences, as the "Average" column). Each resample
    draws the examples once for both arms (that is the pairing: an example's difficulty cancels)
    and, with ``resample_runs``, also draws each arm's runs (seeds) with replacement, so the
    interval carries the seed-to-seed spread as well.

    Returns:
        ``(difference, low, high)``: the observed difference and the percentile interval.

    Example:
        >>> paired_bootstrap([1, 0, 0], [0, 0, 0], level=0.9, resamples=20000)[0]
        0.3333333333333333
    """
    import numpy as np

    sa, sb = _eval_sets(a), _eval_sets(b)
    if len(sa) != len(sb):
        raise ValueError("a and b must hold the same eval sets")
    for xa, xb in zip(sa, sb):
        if xa.shape[1] != xb.shape[1] or xa.shape[1] == 0:
            raise ValueError("paired arms must be scored on the same (non-empty) examples")
    rng = np.random.default_rng(seed)
    observed = float(np.mean([xa.mean() - xb.mean() for xa, xb in zip(sa, sb)]))
    diffs = np.zeros(resamples)
    chunk = 500
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        total = sum(_resampled_difference(xa, xb, rng, size, resample_runs) for xa, xb in zip(sa, sb))
        diffs[start : start + size] = total / len(sa)
    low, high = np.quantile(diffs, [(1 - level) / 2, 1 - (1 - level) / 2])
    return observed, float(low), float(high)


def _eval_sets(x: Any) -> list[Any]:
    """Per-example correctness as a list of (runs, examples) arrays, one per eval set."""
    import numpy as np

    numbers = (int, float, np.integer, np.floating)
    if isinstance(x, list) and x and not isinstance(x[0], numbers):
        if isinstance(x[0], list) and x[0] and isinstance(x[0][0], numbers):
            return [np.atleast_2d(np.asarray(x, dtype=float))]  # a list of lists of numbers: one set with several runs
        return [np.atleast_2d(np.asarray(s, dtype=float)) for s in x]
    return [np.atleast_2d(np.asarray(x, dtype=float))]


def _resampled_difference(xa: Any, xb: Any, rng: Any, size: int, resample_runs: bool) -> Any:
    """``size`` bootstrap draws of accuracy(a) - accuracy(b) on one eval set: examples drawn once for both arms."""
    import numpy as np

    n = xa.shape[1]
    if resample_runs:
        wa = rng.multinomial(xa.shape[0], np.full(xa.shape[0], 1 / xa.shape[0]), size=size) / xa.shape[0]
        wb = rng.multinomial(xb.shape[0], np.full(xb.shape[0], 1 / xb.shape[0]), size=size) / xb.shape[0]
        per_example = wa @ xa - wb @ xb  # (size, n): each resample's seed-averaged difference per example
    else:
        per_example = np.broadcast_to(xa.mean(0) - xb.mean(0), (size, n))
    counts = rng.multinomial(n, np.full(n, 1 / n), size=size)  # the same examples for both arms
    return (counts * per_example).sum(1) / n


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _fmt_mean_sd(values: list[float]) -> str:
    if not values:
        return ""
    mean, sd = mean_sd([v * 100 for v in values])
    return f"{mean:.1f}" + (f" ± {sd:.1f}" if sd is not None else "") + (f" (n={len(values)})" if len(values) > 1 else "")


def checkpoint_folder(config: ReproduceConfig, planned: PlannedRun) -> Path:
    """Where a training run keeps its checkpoints: ``<checkpoint_dir>/<run id>-<run hash>`` (a changed run never resumes an old one)."""
    root = Path(config.checkpoint_dir) if config.checkpoint_dir else Path(config.output_dir) / "checkpoints"
    return root / f"{planned.run.run_id}-{planned.hash}"


class TrainingStopped(Exception):
    """A training run stopped at the ``--max-minutes`` deadline; its checkpoint resumes it."""

    def __init__(self, run_id: str, progress: Any, checkpoint: Path | None):
        super().__init__(run_id)
        self.run_id, self.progress, self.checkpoint = run_id, progress, checkpoint

    def to_dict(self) -> dict[str, Any]:
        p = self.progress
        return {
            "step": p.step if p else None,
            "max_steps": p.max_steps if p else None,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
        }

    def message(self) -> str:
        d = self.to_dict()
        at = f"at step {d['step']:,} of {d['max_steps']:,}" if d["step"] is not None else "unfinished"
        return f"{self.run_id}: stopped {at} (--max-minutes); run the same command again to resume from {d['checkpoint']}"


class StageCache:
    """Finished stages under ``<output_dir>/cache/<stage>/<hash>/``; a stage is done once ``done.json`` exists."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, stage: str, key: str) -> Path:
        return self.root / "cache" / stage / key

    def done(self, stage: str, key: str) -> dict[str, Any] | None:
        marker = self.path(stage, key) / "done.json"
        return json.loads(marker.read_text()) if marker.exists() else None

    def run(self, stage: str, key: str, work: typing.Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        """Run ``work(tmp_dir)`` unless cached; the folder appears only when the stage finished."""
        cached = self.done(stage, key)
        if cached is not None:
            return cached
        with staged_dir(self.path(stage, key)) as tmp:
            info = work(tmp)
            (tmp / "done.json").write_text(json.dumps(info, indent=2, default=str))
        return info


class Runner:
    """Runs the runs of one config; see :func:`reproduce`."""

    def __init__(
        self,
        config: ReproduceConfig,
        *,
        token: str | None = None,
        progress: bool = True,
        only: list[str] | None = None,
        shard: tuple[int, int] | None = None,
        max_minutes: float | None = None,
    ):
        self.config = config
        self.only = only
        self.shard = shard
        self.max_minutes = max_minutes
        # Training still going at the deadline saves a checkpoint and stops (resumed by the next reproduce).
        self.stop_at = time.time() + max_minutes * 60 if max_minutes is not None else None
        self.token = token
        self.progress = progress
        self.out = Path(config.output_dir)
        self.results_dir = Path(config.results_dir or self.out)
        self.cache = StageCache(self.out)
        self._pool: Any = None
        self._eval_sets: list[Any] | None = None
        self._task_rows: int | None = None

    # -- selection
    def selection_key(self, run: Run) -> str:
        c = self.config
        return _hash(
            {"pool": fingerprint(c.pool), "pool_limit": c.pool_limit, "filters": c.filters, "text_fields": c.text_fields,
             "selection": _selection_options(c, run) if run.selection is not None else "all", "seed": run.selection_seed}
        )  # fmt: skip

    def pool_source(self) -> str:
        """The pool file; with ``pool_limit``, its first rows written once to a file of their own,
        so manifests name (and hash) exactly the rows selection saw."""
        c = self.config
        if not c.pool_limit:
            return c.pool
        from ltd_hub.data.sources import write_pool_head

        path = self.out / "data" / f"pool-first-{c.pool_limit}.jsonl"
        write_pool_head(c.pool, c.pool_limit, path, token=self.token, keep_existing=True)  # a resumed run keeps its file
        return str(path)

    def loaded_pool(self) -> Any:
        if self._pool is None:
            from ltd_hub.data.sources import load_source

            self._pool = load_source(self.pool_source(), token=self.token)
        return self._pool

    def task_rows(self) -> int:
        """Rows of the task after the config's filters (what ratios are shares of)."""
        if self._task_rows is None:
            from ltd_hub.data.sources import apply_filters, parse_filters

            rows, _ = apply_filters(self.loaded_pool(), parse_filters(self.config.filters))
            self._task_rows = len(rows)
        return self._task_rows

    def select(self, run: Run) -> dict[str, Any]:
        from ltd_hub.data.sources import apply_filters, parse_filters
        from ltd_hub.selection.subset import select_subset, write_subset_files

        c = self.config
        key = self.selection_key(run)

        def work(folder: Path) -> dict[str, Any]:
            if run.selection is None:  # the full task data: every filtered row, no selection
                rows, _ = apply_filters(self.loaded_pool(), parse_filters(c.filters))
                (folder / "data").mkdir()
                rows.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
                return {"n_selected": len(rows), "n_filtered": len(rows)}
            result = select_subset(
                self.loaded_pool(), **_selection_options(c, run), seed=run.selection_seed, filters=c.filters,
                text_fields=c.text_fields, token=self.token, progress=self.progress,
            )  # fmt: skip
            check_no_eval_rows(result.dataset, self.eval_prompts())
            write_subset_files(result, folder, repo_id=self.subset_repo(run))
            return {"n_selected": len(result.dataset), "n_filtered": result.stats.n_filtered_rows}

        info = self.cache.run("selection", key, work)
        info["folder"] = str(self.cache.path("selection", key))
        return info

    def subset_repo(self, run: Run) -> str:
        spec = self.config.push
        name = _slug(run.arm) + (f"-sel{run.selection_seed}" if run.multi_selection else "")
        return f"{spec.namespace}/{spec.prefix}-{name}" if spec else f"local/{name}"

    def eval_sets(self) -> list[Any]:
        """The eval sets exactly as every arm is scored on (same templates and examples)."""
        if self._eval_sets is None:
            from ltd_hub.evaluation.evaluator import load_eval_sets

            e = self.config.eval
            self._eval_sets = load_eval_sets(list(e.data), templates=e.templates, max_examples=e.max_examples, token=self.token)
        return self._eval_sets

    def eval_prompts(self) -> set[str]:
        """Every prompt of the eval data (all templates, all rows), to prove none of them reaches training."""
        from ltd_hub.evaluation.evaluator import load_eval_sets

        if not hasattr(self, "_eval_prompts"):
            sets = load_eval_sets(list(self.config.eval.data), token=self.token)
            self._eval_prompts = {row["inputs"] for s in sets for row in s.rows}
        return self._eval_prompts

    # -- training
    def resolved_train_settings(self, run: Run) -> dict[str, Any]:
        settings = train_settings(self.config, run)
        if isinstance(settings.get("max_steps"), dict):
            settings["max_steps"] = steps_for(self.config, 0, settings, n_task_rows=self.task_rows())
        return settings

    def train_key(self, run: Run) -> str:
        return _hash({"selection": self.selection_key(run), "base": self.config.base_model, "train": train_settings(self.config, run)})

    def train(self, planned: PlannedRun, subset_folder: str) -> dict[str, Any]:
        """Train the run's adapter (resuming its checkpoint, if any); raise :class:`TrainingStopped` at the deadline."""
        from ltd_hub.checkpoints import Checkpointing, read_progress
        from ltd_hub.training import TrainConfig, train

        run = planned.run
        checkpointing = Checkpointing(checkpoint_folder(self.config, planned), save_steps=self.config.save_steps, stop_at=self.stop_at)

        def work(folder: Path) -> dict[str, Any]:
            cfg = TrainConfig.from_mapping(
                {**self.resolved_train_settings(run), "dataset": subset_folder, "base_model": self.config.base_model,
                 "output_dir": str(folder / "adapter")},
                source="train:",
            )  # fmt: skip
            result = train(cfg, token=self.token, checkpointing=checkpointing)
            if not result.finished:
                raise TrainingStopped(run.run_id, read_progress(result.checkpoint), result.checkpoint)
            return {"steps": result.steps, "train_rows": result.train_rows, "skipped_rows": result.skipped_rows,
                    "train_loss": result.train_loss, "train_tokens": result.train_tokens, "seconds": result.seconds,
                    "tokens_per_second": result.tokens_per_second, "peak_memory_mb": result.peak_memory_mb,
                    "seed": cfg.seed, "max_steps": cfg.max_steps, "num_train_epochs": cfg.num_train_epochs,
                    "segments": result.segments}  # fmt: skip

        info = self.cache.run("train", self.train_key(run), work)
        info["adapter"] = str(self.cache.path("train", self.train_key(run)) / "adapter")
        return info

    # -- evaluation
    def eval_key(self, run: Run) -> str:
        upstream = self.train_key(run) if run.trains else _hash({"base": self.config.base_model})
        return _hash({"upstream": upstream, "eval": dataclasses.asdict(self.config.eval), "per_example": 2})

    def evaluate(self, run: Run, adapter: str | None) -> dict[str, Any]:
        from ltd_hub.evaluation.evaluator import evaluate_adapter

        e = self.config.eval

        def work(folder: Path) -> dict[str, Any]:
            report = evaluate_adapter(
                adapter, e.data, base_only=adapter is None, base_model=self.config.base_model if adapter is None else None,
                templates=e.templates, max_examples=e.max_examples, batch_size=e.batch_size, bootstrap=e.bootstrap,
                record=adapter is not None, token=self.token, progress=self.progress,
            )  # fmt: skip
            results = [r.to_dict() for r in report.results]
            per_example = getattr(report, "predictions", None) or {}  # EvalReport.predictions: {set name: records}
            for r in results:
                if r["name"] in per_example:
                    r["examples"] = [{"prediction": e["prediction"], "gold": e["gold"]} for e in per_example[r["name"]]]
            return {"results": results, "average": report.average, "seconds": report.seconds}

        return self.cache.run("eval", self.eval_key(run), work)

    def result_record(self, planned: PlannedRun, selection: dict[str, Any] | None, training: dict[str, Any] | None,
                      evaluation: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        """The committed result of one run: hash, metrics, per-example predictions, training figures."""
        import platform

        run = planned.run
        sets = {s.name: s for s in self.eval_sets()}
        evals = []
        for r in evaluation["results"]:
            rows = sets[r["name"]].rows if r["name"] in sets else None
            preds = _predictions_of(r)
            entry = {k: r.get(k) for k in ("name", "n_examples", "n_templates", "accuracy_mean", "accuracy_median", "ci_low", "ci_high")}
            if rows is not None:
                entry["examples_sha"] = examples_sha(rows)
                entry["gold"] = _encode_digits([row["gold"] for row in rows])
                golds = [e.get("gold") for e in r.get("examples") or []]
                if preds is not None and (len(preds) != len(rows) or (golds and golds != [row["gold"] for row in rows])):
                    # Not the rows this file pairs on (another order or subsample): keep no predictions rather than wrong pairs.
                    preds = None
            entry["predictions"] = _encode_digits(preds) if preds is not None else None
            entry["templates"] = {name: {"n": t.get("n"), "accuracy": t.get("accuracy")} for name, t in (r.get("templates") or {}).items()}
            evals.append(entry)
        record: dict[str, Any] = {
            "format": RESULT_FORMAT,
            "config": self.config.name,
            "arm": run.arm,
            "run": run.run_id,
            "label": run.label,
            "kind": run.kind,
            "hash": planned.hash,
            "base_model": self.config.base_model,
            "selection": None if run.selection is None and run.kind == "base" else {
                **(run.selection or {"strategy": None, "all_task_rows": True}), "seed": run.selection_seed,
                "n_selected": (selection or {}).get("n_selected"), "n_task_rows": (selection or {}).get("n_filtered"),
            },
            "fraction": ((selection or {}).get("n_selected", 0) / max((selection or {}).get("n_filtered", 1), 1)) if run.trains else 0.0,
            "training": None if training is None else {k: v for k, v in training.items() if k != "adapter"} | {"schedule": run.schedule},
            "eval": evals,
            "average": evaluation["average"],
            "eval_seconds": evaluation.get("seconds"),
            "machine": {"python": platform.python_version(), "platform": platform.platform(terse=True), "device": _device_name()},
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }  # fmt: skip
        return record

    # -- everything
    def run(self) -> dict[str, Any]:
        """Run every selected run that is not done; write its result file; rebuild the summary."""
        from tqdm.auto import tqdm

        planned = run_states(self.config)
        chosen = select_runs(planned, self.only, self.shard)
        todo = [p for p in chosen if p.state != "done"]
        self.out.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        skipped: list[str] = []
        stopped: dict[str, dict[str, Any]] = {}
        with tqdm(total=len(todo), desc="runs", unit="run", disable=not self.progress, file=sys.stderr) as bar:
            for p in todo:
                if self.max_minutes is not None and time.monotonic() - started > self.max_minutes * 60:
                    skipped.append(p.run.run_id)  # out of time: left for the next session
                    continue
                bar.set_postfix_str(p.run.run_id)
                run = p.run
                selection = training = None
                adapter = None
                if run.trains:
                    selection = self.select(run)
                    try:
                        training = self.train(p, selection["folder"])
                    except TrainingStopped as stop:
                        skipped.append(run.run_id)
                        stopped[run.run_id] = stop.to_dict()
                        print(stop.message(), file=sys.stderr)
                        continue
                    adapter = training["adapter"]
                evaluation = self.evaluate(run, adapter)
                record = self.result_record(p, selection, training, evaluation)
                atomic_write(p.path, json.dumps(record, indent=1) + "\n")
                if run.trains:
                    # Spent only now: until the result is written, the last checkpoint lets an evaluation
                    # cut on a fresh machine resume at the end of training instead of training again.
                    shutil.rmtree(checkpoint_folder(self.config, p), ignore_errors=True)
                p.state, p.result = "done", record
                p.local = {"subset_folder": (selection or {}).get("folder"), "adapter": adapter}  # type: ignore[attr-defined]
                bar.update(1)
        results = write_summary(self.config, planned)
        results["ran"] = [p.run.run_id for p in todo if p.run.run_id not in skipped]
        results["left"] = skipped
        results["stopped"] = stopped
        if self.config.push is not None:
            results["pushed"] = push_results(self, [p for p in todo if getattr(p, "local", None)], results)
        return results


def _device_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - a label only
        pass
    return "cpu"


def reproduce(
    config: ReproduceConfig,
    *,
    push: bool | None = None,
    only: list[str] | None = None,
    shard: tuple[int, int] | None = None,
    max_minutes: float | None = None,
    token: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every run of ``config`` that has no matching result file; write its result and the summary.

    Args:
        config: the experiment (see ``experiments/*.yaml``).
        push: publish subsets, adapters and a results dataset (default: when the config has ``push:``).
        only: run only these arm kinds, arm names (or their slugs) or run ids.
        shard: ``(i, n)``: run only the i-th of n interleaved shares of the plan (for several machines).
        max_minutes: start no new run after this many minutes (finished runs are kept).
        token: Hub token.
        progress: show per-run progress with an ETA.

    Returns:
        The summary dict written to ``<results_dir>/results.json`` plus ``ran`` and ``left`` run ids.

    Example:
        >>> results = reproduce(ReproduceConfig.from_yaml("experiments/nli-cpu.yaml"), only=["base"])  # doctest: +SKIP
    """
    if push is False:
        config = dataclasses.replace(config, push=None)
    elif push and config.push is None:
        raise UsageError("--push needs a `push:` section with `namespace:` in the config")
    if config.push is not None:
        from ltd_hub.hub import gateway as hub

        target = hub.preflight_push(f"{config.push.namespace}/{config.push.prefix}-results", "dataset", token)
        # Refused now, not after hours of training: private-derived results into an existing public repo.
        _push_visibility(config, target, token, notify=lambda _line: None)
    return Runner(config, token=token, progress=progress, only=only, shard=shard, max_minutes=max_minutes).run()


# --------------------------------------------------------------------------- dry run


def dry_run(config: ReproduceConfig, *, only: list[str] | None = None, shard: tuple[int, int] | None = None) -> str:
    """Validate everything that can be checked without loading a model; return the run plan as text.

    Checks: every strategy (the selection registry), every encoder (``get_encoder``, no weights),
    every selection option (``select_subset``'s signature), the training recipe, the pool and eval
    paths and the base model id. Estimated steps count the pool's rows (before filters).
    """
    c = config
    _check_inputs_exist(c)
    planned = run_states(c)
    chosen = select_runs(planned, only, shard)
    from ltd_hub.data.sources import jsonl_rows

    n_pool = jsonl_rows(c.pool)
    n_task = min(n_pool, c.pool_limit) if (n_pool and c.pool_limit) else n_pool
    approx = "≈" if c.filters else ""
    lines = [
        f"config {c.name}: {len(planned)} runs in {len(dict.fromkeys(p.run.arm for p in planned))} arms; "
        f"results: {Path(c.results_dir or '.') / ARMS_DIR}",
        f"pool: {c.pool} ({approx}{n_task:,} task rows)" if n_task else f"pool: {c.pool}",
        f"{'state':6s} {'run':44s} {'kind':12s} {'rows':>9s} {'steps':>7s}",
    ]
    from ltd_hub.checkpoints import last_checkpoint, read_progress

    total_steps = 0
    resumes = []
    for p in chosen:
        rows_text = steps_text = "-"
        if p.run.trains and n_task:
            n_rows, steps = _planned_size(c, p.run, n_task)
            rows_text, steps_text = f"{approx}{n_rows:,}", f"{approx}{steps:,}"
            if p.state != "done":
                progress = read_progress(last_checkpoint(checkpoint_folder(c, p)))
                total_steps += steps - (progress.step if progress else 0)
                if progress:
                    # A run whose evaluation was cut has trained to its last step: only the evaluation is left.
                    left = "training done, evaluation left" if progress.step >= progress.max_steps else "training left"
                    resumes.append(f"{p.run.run_id} at step {progress.step:,} of {progress.max_steps:,} ({left})")
        lines.append(f"{p.state:6s} {p.run.run_id:44s} {p.run.kind:12s} {rows_text:>9s} {steps_text:>7s}")
    counts = {s: sum(1 for p in chosen if p.state == s) for s in ("done", "stale", "todo")}
    lines.append(
        f"{counts['done']} done (result file with this hash), {counts['stale']} stale (config changed: re-run), "
        f"{counts['todo']} to run; {total_steps:,} optimizer steps to run in all"
    )
    if resumes:
        lines.append(f"resumes from checkpoints: {'; '.join(resumes)}")
    few = [arm for arm in dict.fromkeys(p.run.arm for p in planned)
           if next(p.run.kind for p in planned if p.run.arm == arm) != "base" and sum(1 for p in planned if p.run.arm == arm) < 3]  # fmt: skip
    if few:
        lines.append(f"note: {len(few)} arms have fewer than 3 runs (seeds), so no sd or seed-resampled interval: {'; '.join(few)}")
    if c.compare_to:
        lines.append(f"paired differences against: {c.compare_to}")
    return "\n".join(lines)


def _check_inputs_exist(config: ReproduceConfig) -> None:
    """The pool and eval data are local files or Hub ids, and the base model a local folder or a Hub id."""
    from ltd_hub.constants import REPO_ID_RE

    for label, spec in [("pool", config.pool), *[("eval.data", p) for p in config.eval.data]]:
        if not Path(spec).expanduser().exists() and (not REPO_ID_RE.match(spec) or spec.startswith((".", "/", "~"))):
            raise UsageError(f"{label} {spec} not found: no such file and not a NAMESPACE/NAME dataset id; fix the path in the config")
    if not Path(config.base_model).expanduser().is_dir():
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        try:
            validate_repo_id(config.base_model)
        except HFValidationError:
            raise UsageError(f"base_model {config.base_model!r} is neither a local model folder nor a Hub id (NAMESPACE/NAME)") from None


def _planned_size(config: ReproduceConfig, run: Run, n_task: int) -> tuple[int, int]:
    """(training rows, optimizer steps) of a run, estimated from the pool's task rows."""
    from ltd_hub.selection.budget import budget_from_ratio

    sel = run.selection or {}
    try:
        n_rows = sel["size"] if sel.get("size") else (budget_from_ratio(n_task, sel["ratio"]) if sel.get("ratio") else n_task)
    except UsageError as exc:
        raise UsageError(f"arm {run.arm!r}: {exc}") from None
    return n_rows, steps_for(config, n_rows, train_settings(config, run), n_task_rows=n_task)


# --------------------------------------------------------------------------- reporting


def _correct(entry: dict[str, Any]) -> list[int] | None:
    preds, gold = _decode_digits(entry.get("predictions")), _decode_digits(entry.get("gold"))
    if preds is None or gold is None or len(preds) != len(gold):
        return None
    return [int(p == g) for p, g in zip(preds, gold)]


def summarize(config: ReproduceConfig, planned: list[PlannedRun], *, resamples: int = 2000) -> dict[str, Any]:
    """Aggregate the done runs per arm (mean ± sd over seeds) and pair every arm with ``compare_to``."""
    done = [p for p in planned if p.state == "done" and p.result]
    set_names: list[str] = []
    n_examples: dict[str, int] = {}
    for p in done:
        for e in p.result["eval"]:
            if e["name"] not in set_names:
                set_names.append(e["name"])
            n_examples[e["name"]] = e["n_examples"]
    arms = [_arm_row(arm, planned, done, set_names) for arm in dict.fromkeys(p.run.arm for p in planned)]
    ref = config.compare_to
    ref_runs = [p.result for p in done if p.run.arm == ref] if ref is not None else []
    paired = [
        _paired_entry(row["arm"], [p.result for p in done if p.run.arm == row["arm"]], ref, ref_runs, set_names, resamples)
        for row in arms
        if ref is not None and row["arm"] != ref and row["n_runs"] and ref_runs
    ]
    return {
        "name": config.name,
        "base_model": config.base_model,
        "eval_sets": n_examples,
        "eval_settings": {"templates": config.eval.templates, "max_examples": config.eval.max_examples},
        "compare_to": ref,
        "arms": arms,
        "paired": paired,
        "runs_done": sum(1 for p in planned if p.state == "done"),
        "runs_planned": len(planned),
    }


def _arm_row(arm: str, planned: list[PlannedRun], done: list[PlannedRun], set_names: list[str]) -> dict[str, Any]:
    """One arm of the summary: what it is, its runs, and accuracy mean ± sd over them per eval set."""
    runs = [p for p in done if p.run.arm == arm]
    planned_n = sum(1 for p in planned if p.run.arm == arm)
    first = next(p.run for p in planned if p.run.arm == arm)
    row: dict[str, Any] = {"arm": arm, "kind": first.kind, "schedule": first.schedule, "selection": first.selection,
                           "runs": [p.run.run_id for p in runs], "n_runs": len(runs), "n_planned": planned_n}  # fmt: skip
    if not runs:
        return row
    results = [p.result for p in runs]
    row["n_train_rows"] = statistics.fmean(((r.get("selection") or {}).get("n_selected") or 0) for r in results)
    row["fraction"] = statistics.fmean(r.get("fraction") or 0.0 for r in results)
    steps = [r["training"]["steps"] for r in results if r.get("training")]
    row["steps"] = statistics.fmean(steps) if steps else 0
    row["eval"] = {}
    for name in set_names:
        values = [e["accuracy_mean"] for r in results for e in r["eval"] if e["name"] == name]
        if values:
            mean, sd = mean_sd(values)
            row["eval"][name] = {"mean": mean, "sd": sd, "values": values}
    mean, sd = mean_sd([r["average"] for r in results])
    row["average"] = {"mean": mean, "sd": sd, "values": [r["average"] for r in results]}
    return row


def _paired_entry(
    arm: str, runs: list[dict[str, Any]], ref: str, ref_runs: list[dict[str, Any]], set_names: list[str], resamples: int
) -> dict[str, Any]:
    """Paired bootstrap differences of ``arm`` against ``ref`` per eval set, and of their average."""
    entry: dict[str, Any] = {"arm": arm, "vs": ref, "n_runs": len(runs), "n_runs_ref": len(ref_runs), "sets": {}}
    per_set_a, per_set_b = [], []
    for name in set_names:
        a, b = _correct_matrix(runs, name), _correct_matrix(ref_runs, name)
        if a is None or b is None or len(a[1] | b[1]) != 1:
            entry["sets"][name] = None  # no per-example predictions, or not the same examples
            continue
        diff, low, high = paired_bootstrap(a[0], b[0], resamples=resamples, seed=0)
        entry["sets"][name] = {"diff": diff, "low": low, "high": high}
        per_set_a.append(a[0])
        per_set_b.append(b[0])
    if per_set_a and len(per_set_a) == len(set_names):
        diff, low, high = paired_bootstrap(per_set_a, per_set_b, resamples=resamples, seed=0)
        entry["average"] = {"diff": diff, "low": low, "high": high}
    else:
        entry["average"] = None
    return entry


def _correct_matrix(results: list[dict[str, Any]], name: str) -> tuple[list[list[int]], set[str]] | None:
    """Per-run, per-example correctness on eval set ``name`` and the examples' hashes; None when a run lacks it."""
    rows, shas = [], set()
    for r in results:
        e = next((e for e in r["eval"] if e["name"] == name), None)
        correct = _correct(e) if e else None
        if correct is None:
            return None
        rows.append(correct)
        shas.add(e.get("examples_sha"))
    return rows, shas


def results_table(results: dict[str, Any]) -> str:
    """Markdown: per arm, accuracy mean ± sd over seeds per eval set; then paired differences against ``compare_to``."""
    from ltd_hub.evaluation.results import markdown_table

    names = list(results["eval_sets"])
    sizes = ", ".join(f"{k}: {v} examples" for k, v in results["eval_sets"].items())
    lines = [
        f"Accuracy (%) by rank classification, mean ± sd over runs (seeds); {results['runs_done']} of "
        f"{results['runs_planned']} planned runs done. {sizes}.",
        "",
        markdown_table(
            ["Arm", "Runs", "Schedule", "Train rows", "Fraction", "Steps", *names, "Average"], map(_arm_cells(names), results["arms"])
        ),
    ]
    if results["paired"]:
        lines += [
            "",
            f"Paired difference against **{results['compare_to']}** in percentage points, with a 95% paired bootstrap "
            "interval (the same examples drawn for both arms, runs drawn within each arm); an interval that holds 0 "
            "cannot tell the two arms apart.",
            "",
            markdown_table(["Arm", "Runs", *names, "Average"], (_paired_cells(entry, names) for entry in results["paired"])),
        ]
    return "\n".join(lines)


def _arm_cells(names: list[str]) -> typing.Callable[[dict[str, Any]], list[str]]:
    """One arm's row of the results table: runs, schedule, data, steps, then mean ± sd per eval set and on average."""

    def cells(row: dict[str, Any]) -> list[str]:
        if not row["n_runs"]:
            return [row["arm"], f"0 of {row['n_planned']}", row["schedule"], *[""] * (len(names) + 4)]
        scores = [_fmt_mean_sd(row["eval"][n]["values"]) if n in row["eval"] else "" for n in names]
        average = _fmt_mean_sd(row["average"]["values"])
        if row["kind"] == "base":
            return [row["arm"], str(row["n_runs"]), "—", "0", "—", "0", *scores, average]
        runs = f"{row['n_runs']} of {row['n_planned']}"
        data = [f"{round(row['n_train_rows']):,}", f"{row['fraction'] * 100:.2f}%", f"{round(row['steps']):,}"]
        return [row["arm"], runs, row["schedule"], *data, *scores, average]

    return cells


def _paired_cells(entry: dict[str, Any], names: list[str]) -> list[str]:
    """One arm's row of the paired-difference table: difference [95% interval] per eval set and on average."""

    def cell(d: dict[str, Any] | None) -> str:
        return f"{d['diff'] * 100:+.1f} [{d['low'] * 100:+.1f}, {d['high'] * 100:+.1f}]" if d else "—"

    runs = f"{entry['n_runs']} vs {entry['n_runs_ref']}"
    return [entry["arm"], runs, *(cell(entry["sets"].get(n)) for n in names), cell(entry["average"])]


def plot_results(results: dict[str, Any], path: Path) -> None:
    """Accuracy vs training-data fraction per eval set: one point per arm (mean, sd bars), base as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["eval_sets"]) + ["Average"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    rows = [r for r in results["arms"] if r["n_runs"]]
    markers = "os^Dv<>pP*Xh"
    for ax, name in zip(axes[0], names):

        def stat(row: dict[str, Any]) -> dict[str, Any] | None:
            return row["average"] if name == "Average" else row.get("eval", {}).get(name)

        for i, row in enumerate(r for r in rows if r["kind"] != "base"):
            s = stat(row)
            if not s:
                continue
            ax.errorbar([row["fraction"]], [s["mean"]], yerr=[[s["sd"] or 0], [s["sd"] or 0]], marker=markers[i % len(markers)],
                        capsize=3, linestyle="none", fillstyle="none" if row["schedule"] == "steps" else "full",
                        label=f"{row['arm']} (n={row['n_runs']})")  # fmt: skip
        base = next((r for r in rows if r["kind"] == "base"), None)
        if base and stat(base):
            ax.axhline(stat(base)["mean"], linestyle=":", color="black", label="base model")
        fractions = sorted({r["fraction"] for r in rows if r["kind"] != "base" and r.get("fraction")})
        if fractions:
            ax.set_xscale("log")
            ax.set_xticks(fractions, [f"{f * 100:.2g}%" for f in fractions])
            ax.minorticks_off()
        ax.set_title(name)
        ax.set_xlabel("fraction of task data (hollow: equal steps)")
        ax.set_ylabel("accuracy (mean ± sd over seeds)")
    axes[0][0].legend(fontsize=6)
    fig.suptitle(results["name"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_summary(config: ReproduceConfig, planned: list[PlannedRun] | None = None) -> dict[str, Any]:
    """Rebuild ``results.json``, ``results.md`` and the plot in ``results_dir`` from the result files."""
    planned = planned if planned is not None else run_states(config)
    results = summarize(config, planned)
    folder = Path(config.results_dir or config.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / RESULTS_FILE, json.dumps(results, indent=1, default=str) + "\n")
    atomic_write(folder / TABLE_FILE, f"# {config.name}\n\n" + results_table(results) + f"\n\n![accuracy vs fraction]({PLOT_FILE})\n")
    if any(r["n_runs"] for r in results["arms"]):
        plot_results(results, folder / PLOT_FILE)
    return results


def pool_private_sources(config: ReproduceConfig, token: str | None = None) -> list[str]:
    """``[pool]`` when the pool is a private Hub dataset (every subset, adapter and result derives from it), else ``[]``."""
    from ltd_hub.data.sources import is_hub_id
    from ltd_hub.hub import gateway as hub

    return hub.private_inputs([(config.pool, "dataset")], token) if is_hub_id(config.pool) else []


def _push_visibility(config: ReproduceConfig, target: Any, token: str | None, notify: Any = None) -> bool | None:
    """The ``private`` for a push of ``--push`` (:func:`ltd_hub.hub.gateway.derived_visibility`), its refusal worded for the config."""
    from ltd_hub.hub import gateway as hub

    assert config.push is not None
    try:
        return hub.derived_visibility(target, config.push.private, pool_private_sources(config, token), notify=notify)
    except UsageError as exc:
        if config.push.private is not None:
            raise UsageError(f"{exc} (push.private: {str(config.push.private).lower()} in the config)") from None
        raise UsageError(
            f"{target.repo_id} is public and would receive results derived from the private pool {config.pool}; "
            "set `private: false` under push: in the config to publish there, or change push.prefix (new repos are created private)"
        ) from None


def push_results(runner: Runner, runs: list[PlannedRun], results: dict[str, Any]) -> dict[str, Any]:
    """Publish the subset and adapter of every run trained here (eval results in their cards) and a results dataset repo.

    Each subset and the results dataset are private when the pool is a private Hub dataset, unless
    ``push.private`` says otherwise; each adapter inherits from its subset (see :class:`PushSpec`).
    """
    from ltd_hub.adapters import push_adapter
    from ltd_hub.hub import gateway as hub

    spec = runner.config.push
    assert spec is not None
    pushed: dict[str, Any] = {}
    for p in runs:
        local = getattr(p, "local", None) or {}
        if not p.run.trains or not local.get("adapter"):
            continue
        subset_repo = runner.subset_repo(p.run)
        adapter_repo = f"{spec.namespace}/{spec.prefix}-{_slug(p.run.run_id)}-lora"
        folder = Path(local["subset_folder"])
        files = {q.relative_to(folder).as_posix(): q for q in folder.rglob("*") if q.is_file() and q.name != "done.json"}
        target = hub.preflight_push(subset_repo, "dataset", runner.token)
        subset = hub.push_files(
            target.repo_id, files, repo_type="dataset", commit_message=f"Add {p.run.arm} subset (ltd-hub)",
            token=runner.token, private=_push_visibility(runner.config, target, runner.token),
        )  # fmt: skip
        # The adapter card must name the subset repo, so the adapter's training summary records it.
        _point_adapter_at(local["adapter"], subset_repo, subset.revision)
        adapter = push_adapter(local["adapter"], adapter_repo, token=runner.token, private=spec.private)
        pushed[p.run.run_id] = {"subset": subset.url, "adapter": adapter.url}
    folder = runner.results_dir
    files: dict[str, Any] = {name: folder / name for name in (RESULTS_FILE, TABLE_FILE, PLOT_FILE) if (folder / name).exists()}
    for q in sorted((folder / ARMS_DIR).glob("*.json")):
        files[f"{ARMS_DIR}/{q.name}"] = q
    card = (
        f"---\nlicense: other\ntags:\n- ltd-hub\n- data-selection\npretty_name: {results['name']} results\n---\n"
        f"<!-- ltd-hub:start -->\n# {results['name']}: LTD instruction tuning results\n\n{results_table(results)}\n\n"
        f"![accuracy vs fraction]({PLOT_FILE})\n<!-- ltd-hub:end -->\n"
    )
    files["README.md"] = card.encode()
    target = hub.preflight_push(f"{spec.namespace}/{spec.prefix}-results", "dataset", runner.token)
    result = hub.push_files(
        target.repo_id, files, repo_type="dataset", commit_message="Add reproduce results (ltd-hub)",
        token=runner.token, private=_push_visibility(runner.config, target, runner.token),
    )  # fmt: skip
    pushed["results"] = result.url
    return pushed


def _point_adapter_at(adapter_dir: str, subset_repo: str, revision: str) -> None:
    """Make the adapter's training summary (and so its card) name the pushed subset instead of the local folder."""
    from ltd_hub.files import atomic_write_json
    from ltd_hub.training import SUMMARY_FILE, TrainingSummary

    path = Path(adapter_dir) / SUMMARY_FILE
    summary = TrainingSummary.from_dict(json.loads(path.read_text()))
    summary.dataset = dataclasses.replace(summary.dataset, name=subset_repo, repo_id=subset_repo, revision=revision, path=None)
    atomic_write_json(path, summary.to_dict())


def _slug(text: str) -> str:
    out = "".join(ch if ch.isalnum() else "-" for ch in text.lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")[:80]
