"""``ltd-hub reproduce``: the paper's comparison end to end (select → train → evaluate every arm).

Arms (``ltd-method.md``'s protocol): the base model; the full task data (or, at CPU scale, a clearly
labelled random slice standing in for it); the coreset at the configured ratio; uniform random
subsets of the same size with several seeds; a ratio sweep; other strategies and encoders as
ablations. Every arm trains the same base model with the same hyperparameters and schedule; only
the training rows differ. Each stage (subset, adapter, eval) is cached under its config hash, so a
re-run skips what is done and an interrupt loses at most the stage in progress.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ltd_hub.errors import UsageError

RESULTS_FILE = "results.json"
TABLE_FILE = "results.md"
PLOT_FILE = "accuracy_vs_fraction.png"


@dataclass
class EvalSpec:
    """Evaluation settings shared by every arm."""

    data: list[str] = field(default_factory=list)
    templates: int | None = None
    max_examples: int | None = None
    batch_size: int = 16
    bootstrap: int = 1000


@dataclass
class PushSpec:
    """Where ``--push`` publishes subsets, adapters and the results dataset."""

    namespace: str = ""
    prefix: str = "ltd"
    private: bool = False


@dataclass
class ReproduceConfig:
    """An experiment: the pool, the arms and the shared training and eval settings.

    Example:
        >>> cfg = ReproduceConfig.from_yaml("experiments/nli-cpu.yaml")  # doctest: +SKIP
    """

    name: str = "experiment"
    pool: str = ""
    pool_limit: int | None = None
    filters: list[str] = field(default_factory=list)
    text_fields: list[str] = field(default_factory=lambda: ["inputs", "targets"])
    base_model: str = "HuggingFaceTB/SmolLM2-135M-Instruct"
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
    schedule: str = "epochs"
    train: dict[str, Any] = field(default_factory=dict)
    eval: EvalSpec = field(default_factory=EvalSpec)
    output_dir: str = "runs/experiment"
    push: PushSpec | None = None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> ReproduceConfig:
        """Read a config; unknown keys, wrong types and bad values are one-line UsageErrors."""
        from ltd_hub.errors import read_yaml_mapping

        path = Path(path)
        raw = read_yaml_mapping(path)
        config = _build(cls, raw, path.name)
        # Relative paths in a config are relative to the config file, so configs run from anywhere.
        base = path.resolve().parent
        config.pool = _resolve(config.pool, base)
        config.eval.data = [_resolve(p, base) for p in config.eval.data]
        if not os.path.isabs(config.output_dir):
            config.output_dir = str(Path.cwd() / config.output_dir)
        config.validate()
        return config

    def validate(self) -> None:
        from ltd_hub.selection import SELECTORS
        from ltd_hub.training import TrainConfig

        if not self.pool:
            raise UsageError("the config needs `pool:` (the instruction data to select from)")
        if not 0 < self.ratio < 1:
            raise UsageError(f"ratio must be in (0, 1), got {self.ratio}")
        for r in self.sweep_ratios:
            if not 0 < r < 1:
                raise UsageError(f"sweep_ratios must be in (0, 1), got {r}")
        valid = list(SELECTORS)
        for name in [self.strategy, *self.ablation_strategies]:
            if name not in valid:
                raise UsageError(f"unknown strategy {name!r} in the config; valid: {', '.join(valid)}")
        if self.schedule not in ("epochs", "steps"):
            raise UsageError(f"schedule must be 'epochs' (equal epochs per arm) or 'steps' (equal optimizer steps), got {self.schedule!r}")
        if self.schedule == "steps" and int(self.train.get("max_steps", -1)) <= 0:
            raise UsageError("schedule: steps needs train.max_steps > 0")
        if not (self.full_data == "all" or (isinstance(self.full_data, int) and self.full_data > 0)):
            raise UsageError(f"full_data must be 'all' or a number of rows, got {self.full_data!r}")
        reserved = {"dataset", "output_dir", "push_to", "base_model"} & set(self.train)
        if reserved:
            raise UsageError(f"train.{sorted(reserved)[0]} is set per arm by reproduce; remove it from the config")
        TrainConfig.from_mapping({**self.train, "dataset": "x", "base_model": "x", "output_dir": "x"}, source="train:")
        if not self.eval.data:
            raise UsageError("the config needs eval.data (held-out files or dataset repos)")
        missing = [p for p in self.eval.data if "/" in p and os.path.isabs(p) and not os.path.exists(p)]
        if missing:
            raise UsageError(f"eval data not found: {missing[0]}; check eval.data in the config")
        if self.push is not None and not self.push.namespace:
            raise UsageError("push.namespace is required to publish (your user or org name)")


def _resolve(value: str, base: Path) -> str:
    if not value or os.path.isabs(value):
        return value
    candidate = (base / value).resolve()
    return str(candidate) if candidate.exists() or value.startswith(".") else value


def _build(cls: type, raw: dict[str, Any], source: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise UsageError(f"unknown key {unknown[0]!r} in {source}; valid keys: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        hint = hints[key]
        if dataclasses.is_dataclass(_first_class(hint)) and value is not None:
            if not isinstance(value, dict):
                raise UsageError(f"{key} in {source} must be a mapping")
            value = _build(_first_class(hint), value, f"{source}:{key}")
        values[key] = value
    return cls(**values)


def _first_class(hint: Any) -> Any:
    for arg in (hint, *typing.get_args(hint)):
        if isinstance(arg, type):
            return arg
    return None


# --------------------------------------------------------------------------- arms


@dataclass(frozen=True)
class Arm:
    """One row of the comparison: how its training rows are chosen."""

    name: str
    kind: str  # base | full | coreset | random | sweep | ablation
    strategy: str | None = None
    encoder: str | None = None
    ratio: float | None = None
    size: int | None = None
    seed: int = 0

    @property
    def trains(self) -> bool:
        return self.kind != "base"


def plan_arms(config: ReproduceConfig) -> list[Arm]:
    """Every arm of the protocol, in the order they run (cheap and central ones first)."""
    pct = lambda r: f"{r * 100:g}%"  # noqa: E731
    arms = [Arm("base model", "base")]
    arms.append(Arm(f"coreset {pct(config.ratio)}", "coreset", config.strategy, config.encoder, config.ratio, seed=config.selection_seed))
    for seed in config.random_seeds:
        arms.append(Arm(f"random {pct(config.ratio)} (seed {seed})", "random", "random", config.encoder, config.ratio, seed=seed))
    if config.full_data == "all":
        arms.append(Arm("full task data", "full"))
    else:
        arms.append(Arm(f"full-data proxy: random {config.full_data} rows", "full", "random", config.encoder, size=int(config.full_data), seed=12345))
    for ratio in config.sweep_ratios:
        if ratio != config.ratio:
            arms.append(Arm(f"coreset {pct(ratio)}", "sweep", config.strategy, config.encoder, ratio, seed=config.selection_seed))
        for seed in config.sweep_random_seeds:
            if ratio != config.ratio or seed not in config.random_seeds:
                arms.append(Arm(f"random {pct(ratio)} (seed {seed})", "sweep-random", "random", config.encoder, ratio, seed=seed))
    for strategy in config.ablation_strategies:
        if strategy != config.strategy:
            arms.append(Arm(f"{strategy} {pct(config.ratio)}", "ablation", strategy, config.encoder, config.ratio, seed=config.selection_seed))
    for encoder in config.ablation_encoders:
        if encoder != config.encoder:
            arms.append(Arm(f"{config.strategy} {pct(config.ratio)}, {encoder} encoder", "ablation", config.strategy, encoder, config.ratio, seed=config.selection_seed))
    return arms


def check_no_eval_rows(train_rows: Any, eval_prompts: set[str], column: str = "inputs") -> None:
    """Raise if any training row's prompt is an eval prompt (evaluation rows never go into training)."""
    if column not in train_rows.column_names:
        return
    leaked = [text for text in train_rows[column] if text in eval_prompts]
    if leaked:
        raise UsageError(
            f"{len(leaked)} training rows are also eval rows (first: {leaked[0][:60]!r}); remove the eval data from the pool"
        )


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_settings(config: ReproduceConfig) -> dict[str, Any]:
    """The training knobs every arm shares (the schedule decides epochs vs steps)."""
    settings = dict(config.train)
    if config.schedule == "epochs":
        settings.pop("max_steps", None)
    return settings


# --------------------------------------------------------------------------- stages


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
        final = self.path(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=final.parent))
        try:
            info = work(tmp)
            (tmp / "done.json").write_text(json.dumps(info, indent=2, default=str))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return info


class Runner:
    """Runs the arms of one config; see :func:`reproduce`."""

    def __init__(self, config: ReproduceConfig, *, token: str | None = None, progress: bool = True, only: list[str] | None = None):
        self.config = config
        self.only = only
        self.token = token
        self.progress = progress
        self.out = Path(config.output_dir)
        self.cache = StageCache(self.out)
        self._pool: Any = None
        self._eval_prompts: set[str] | None = None

    # -- selection
    def selection_key(self, arm: Arm) -> str:
        c = self.config
        return _hash(
            {
                "pool": c.pool, "pool_limit": c.pool_limit, "filters": c.filters, "text_fields": c.text_fields,
                "encoder": arm.encoder, "strategy": arm.strategy, "ratio": arm.ratio, "size": arm.size,
                "seed": arm.seed, "n_clusters": c.n_clusters, "kind": "all" if arm.kind == "full" and arm.strategy is None else "subset",
            }
        )  # fmt: skip

    def pool_source(self) -> str:
        """The pool file; with ``pool_limit``, its first rows written once to a file of their own,
        so manifests name (and hash) exactly the rows selection saw."""
        c = self.config
        if not c.pool_limit:
            return c.pool
        path = self.out / "data" / f"pool-first-{c.pool_limit}.jsonl"
        if not path.exists():
            from ltd_hub.sources import load_source

            pool = load_source(c.pool).dataset
            rows = pool.select(range(min(c.pool_limit, len(pool))))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            rows.to_json(str(tmp), lines=True, force_ascii=False)
            os.replace(tmp, path)
        return str(path)

    def loaded_pool(self) -> Any:
        if self._pool is None:
            from ltd_hub.sources import load_source

            self._pool = load_source(self.pool_source())
        return self._pool

    def select(self, arm: Arm) -> dict[str, Any]:
        from ltd_hub.sources import apply_filters, parse_filters
        from ltd_hub.subset import select_subset, write_subset_files

        c = self.config
        key = self.selection_key(arm)

        def work(folder: Path) -> dict[str, Any]:
            if arm.strategy is None:  # the full task data: every filtered row, no selection
                rows, _ = apply_filters(self.loaded_pool(), parse_filters(c.filters))
                (folder / "data").mkdir()
                rows.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
                return {"n_selected": len(rows), "n_filtered": len(rows)}
            result = select_subset(
                self.loaded_pool(), ratio=None if arm.size else arm.ratio, size=arm.size, strategy=arm.strategy,
                encoder=arm.encoder, n_clusters=c.n_clusters, seed=arm.seed, filters=c.filters,
                text_fields=c.text_fields, progress=self.progress,
            )  # fmt: skip
            check_no_eval_rows(result.dataset, self.eval_prompts())
            write_subset_files(result, folder, repo_id=self.subset_repo(arm))
            return {"n_selected": len(result.dataset), "n_filtered": result.stats["n_filtered_rows"]}

        info = self.cache.run("selection", key, work)
        info["folder"] = str(self.cache.path("selection", key))
        return info

    def subset_repo(self, arm: Arm) -> str:
        spec = self.config.push
        return f"{spec.namespace}/{spec.prefix}-{_slug(arm.name)}" if spec else f"local/{_slug(arm.name)}"

    def eval_prompts(self) -> set[str]:
        """Every prompt of the eval data, to prove none of them reaches training."""
        if self._eval_prompts is None:
            from ltd_hub.evaluation import load_eval_sets

            sets = load_eval_sets(list(self.config.eval.data))
            self._eval_prompts = {row["inputs"] for s in sets for row in s.rows}
        return self._eval_prompts

    # -- training
    def train_key(self, arm: Arm) -> str:
        return _hash({"selection": self.selection_key(arm), "base": self.config.base_model, "train": train_settings(self.config)})

    def train(self, arm: Arm, subset_folder: str) -> dict[str, Any]:
        from ltd_hub.training import TrainConfig, train

        def work(folder: Path) -> dict[str, Any]:
            cfg = TrainConfig.from_mapping(
                {**train_settings(self.config), "dataset": subset_folder, "base_model": self.config.base_model,
                 "output_dir": str(folder / "adapter")},
                source="train:",
            )  # fmt: skip
            result = train(cfg, token=self.token)
            return {"steps": result.steps, "train_rows": result.train_rows, "train_loss": result.train_loss,
                    "seconds": result.seconds, "tokens_per_second": result.tokens_per_second}  # fmt: skip

        info = self.cache.run("train", self.train_key(arm), work)
        info["adapter"] = str(self.cache.path("train", self.train_key(arm)) / "adapter")
        return info

    # -- evaluation
    def eval_key(self, arm: Arm) -> str:
        upstream = self.train_key(arm) if arm.trains else _hash({"base": self.config.base_model})
        return _hash({"upstream": upstream, "eval": dataclasses.asdict(self.config.eval)})

    def evaluate(self, arm: Arm, adapter: str | None) -> dict[str, Any]:
        from ltd_hub.evaluation import evaluate_adapter

        e = self.config.eval

        def work(folder: Path) -> dict[str, Any]:
            report = evaluate_adapter(
                adapter, e.data, base_only=adapter is None, base_model=self.config.base_model if adapter is None else None,
                templates=e.templates, max_examples=e.max_examples, batch_size=e.batch_size, bootstrap=e.bootstrap,
                record=adapter is not None, token=self.token, progress=self.progress,
            )  # fmt: skip
            return {"results": report.results, "average": report.average, "seconds": report.seconds}

        return self.cache.run("eval", self.eval_key(arm), work)

    # -- everything
    def run(self) -> dict[str, Any]:
        from tqdm.auto import tqdm

        arms = [arm for arm in plan_arms(self.config) if not self.only or arm.kind in self.only]
        self.out.mkdir(parents=True, exist_ok=True)
        rows = []
        with tqdm(total=len(arms), desc="arms", unit="arm", disable=not self.progress, file=sys.stderr) as bar:
            for arm in arms:
                bar.set_postfix_str(arm.name)
                row: dict[str, Any] = {"arm": arm.name, "kind": arm.kind, "strategy": arm.strategy, "encoder": arm.encoder,
                                       "ratio": arm.ratio, "seed": arm.seed}  # fmt: skip
                adapter = None
                if arm.trains:
                    selection = self.select(arm)
                    training = self.train(arm, selection["folder"])
                    adapter = training["adapter"]
                    row.update(n_train_rows=selection["n_selected"], n_task_rows=selection["n_filtered"],
                               fraction=selection["n_selected"] / max(selection["n_filtered"], 1), training=training,
                               subset_folder=selection["folder"], adapter=adapter)  # fmt: skip
                else:
                    row.update(n_train_rows=0, fraction=0.0)
                evaluation = self.evaluate(arm, adapter)
                row.update(eval=evaluation["results"], average=evaluation["average"])
                rows.append(row)
                bar.update(1)
        results = {
            "name": self.config.name,
            "config": dataclasses.asdict(self.config),
            "schedule": "equal epochs per arm" if self.config.schedule == "epochs" else "equal optimizer steps per arm",
            "arms": rows,
        }
        (self.out / RESULTS_FILE).write_text(json.dumps(results, indent=2, default=str) + "\n")
        (self.out / TABLE_FILE).write_text(results_table(results) + "\n")
        plot_results(results, self.out / PLOT_FILE)
        if self.config.push is not None:
            results["pushed"] = push_results(self, results)
            (self.out / RESULTS_FILE).write_text(json.dumps(results, indent=2, default=str) + "\n")
        return results


def reproduce(
    config: ReproduceConfig,
    *,
    push: bool | None = None,
    only: list[str] | None = None,
    token: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every arm of ``config`` (cached), write ``results.json``, ``results.md`` and the plot.

    Args:
        config: the experiment (see ``experiments/*.yaml``).
        push: publish subsets, adapters and a results dataset (default: when the config has ``push:``).
        only: run only the arms of these kinds (``base``, ``coreset``, ``random``, ...).
        token: Hub token.
        progress: show per-arm progress with an ETA.

    Returns:
        The results dict written to ``results.json``.

    Example:
        >>> results = reproduce(ReproduceConfig.from_yaml("experiments/nli-cpu.yaml"))  # doctest: +SKIP
    """
    if push is False:
        config = dataclasses.replace(config, push=None)
    elif push and config.push is None:
        raise UsageError("--push needs a `push:` section with `namespace:` in the config")
    if config.push is not None:
        from ltd_hub import hub

        hub.preflight_push(f"{config.push.namespace}/{config.push.prefix}-results", "dataset", token)
    return Runner(config, token=token, progress=progress, only=only).run()


# --------------------------------------------------------------------------- reporting


def _eval_names(results: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for row in results["arms"]:
        for r in row["eval"]:
            if r["name"] not in names:
                names.append(r["name"])
    return names


def results_table(results: dict[str, Any]) -> str:
    """Markdown: one row per arm, accuracy (mean over templates) with its 95% bootstrap CI per eval set."""
    names = _eval_names(results)
    head = "| Arm | Train rows | Fraction | " + " | ".join(names) + " | Average |"
    lines = [head, "|" + "---|" * (len(names) + 4)]
    for row in results["arms"]:
        by_name = {r["name"]: r for r in row["eval"]}
        cells = []
        for name in names:
            r = by_name.get(name)
            cells.append(f"{r['accuracy_mean'] * 100:.1f} ({r['ci_low'] * 100:.1f}–{r['ci_high'] * 100:.1f})" if r else "")
        fraction = f"{row['fraction'] * 100:.2f}%" if row["n_train_rows"] else "—"
        lines.append(f"| {row['arm']} | {row['n_train_rows']:,} | {fraction} | " + " | ".join(cells) + f" | {row['average'] * 100:.1f} |")
    n = {r["name"]: r["n_examples"] for row in results["arms"] for r in row["eval"]}
    lines.append("")
    lines.append(
        "Accuracy in % by rank classification, mean over templates, 95% bootstrap CI in brackets; "
        + ", ".join(f"{k}: {v} examples" for k, v in n.items())
        + f"; {results['schedule']}."
    )
    return "\n".join(lines)


def plot_results(results: dict[str, Any], path: Path) -> None:
    """Accuracy vs training-data fraction per eval set: coreset sweep, random band, full and base lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = _eval_names(results)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        def acc(row: dict[str, Any]) -> dict[str, Any] | None:
            return next((r for r in row["eval"] if r["name"] == name), None)

        coreset = sorted(
            (row["fraction"], acc(row)) for row in results["arms"] if row["kind"] in ("coreset", "sweep") and acc(row)
        )
        if coreset:
            xs = [x for x, _ in coreset]
            ys = [r["accuracy_mean"] for _, r in coreset]
            err = [[y - r["ci_low"] for (_, r), y in zip(coreset, ys)], [r["ci_high"] - y for (_, r), y in zip(coreset, ys)]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label="coreset")
        randoms: dict[float, list[float]] = {}
        for row in results["arms"]:
            if row["kind"] in ("random", "sweep-random") and acc(row):
                randoms.setdefault(row["fraction"], []).append(acc(row)["accuracy_mean"])
        if randoms:
            xs = sorted(randoms)
            lows, highs = [min(randoms[x]) for x in xs], [max(randoms[x]) for x in xs]
            means = [statistics.fmean(randoms[x]) for x in xs]
            dodged = [x * 1.07 for x in xs]  # beside the coreset point at the same fraction, not on it
            if len(xs) > 1:  # a band needs two fractions; the bars below show the spread at each one
                ax.fill_between(dodged, lows, highs, alpha=0.2, color="gray")
            ax.errorbar(dodged, means, yerr=[[m - lo for m, lo in zip(means, lows)], [hi - m for m, hi in zip(means, highs)]],
                        fmt="s", color="gray", capsize=3, label="random (mean, min–max over seeds)")  # fmt: skip
        for kind, style, label in (("full", "-", "full data"), ("base", ":", "base model")):
            row = next((r for r in results["arms"] if r["kind"] == kind), None)
            if row and acc(row):
                ax.axhline(acc(row)["accuracy_mean"], linestyle=style, color="black", label=row["arm"] if kind == "full" else label)
        ax.set_xscale("log")
        fractions = sorted({row["fraction"] for row in results["arms"] if row["kind"] != "base" and acc(row) and row.get("fraction")})
        ax.set_xticks(fractions, [f"{f * 100:.2g}%" for f in fractions])
        ax.minorticks_off()
        ax.set_title(name)
        ax.set_xlabel("fraction of task data")
        ax.set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(results["name"])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def push_results(runner: Runner, results: dict[str, Any]) -> dict[str, Any]:
    """Publish every subset and adapter (eval results in their cards) and a results dataset repo."""
    from ltd_hub import hub
    from ltd_hub.adapters import push_adapter

    spec = runner.config.push
    assert spec is not None
    pushed: dict[str, Any] = {}
    for row in results["arms"]:
        if row["kind"] == "base":
            continue
        subset_repo = f"{spec.namespace}/{spec.prefix}-{_slug(row['arm'])}"
        adapter_repo = f"{subset_repo}-lora"
        folder = Path(row["subset_folder"])
        files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file() and p.name != "done.json"}
        subset = hub.push_files(
            subset_repo, files, repo_type="dataset", commit_message=f"Add {row['arm']} subset (ltd-hub)",
            token=runner.token, private=spec.private,
        )  # fmt: skip
        # The adapter card must name the subset repo, so the adapter's training summary records it.
        _point_adapter_at(row["adapter"], subset_repo, subset.revision)
        adapter = push_adapter(row["adapter"], adapter_repo, token=runner.token, private=spec.private)
        pushed[row["arm"]] = {"subset": subset.url, "adapter": adapter.url}
        row.update(subset_repo=subset_repo, adapter_repo=adapter_repo)
    out = runner.out
    files = {name: out / name for name in (RESULTS_FILE, TABLE_FILE, PLOT_FILE)}
    card = (
        f"---\nlicense: other\ntags:\n- ltd-hub\n- data-selection\npretty_name: {results['name']} results\n---\n"
        f"<!-- ltd-hub:start -->\n# {results['name']}: LTD instruction tuning results\n\n{results_table(results)}\n\n"
        f"![accuracy vs fraction]({PLOT_FILE})\n<!-- ltd-hub:end -->\n"
    )
    files["README.md"] = card.encode()
    result = hub.push_files(
        f"{spec.namespace}/{spec.prefix}-results", files, repo_type="dataset", commit_message="Add reproduce results (ltd-hub)",
        token=runner.token, private=spec.private,
    )  # fmt: skip
    pushed["results"] = result.url
    return pushed


def _point_adapter_at(adapter_dir: str, subset_repo: str, revision: str) -> None:
    from ltd_hub.training import SUMMARY_FILE

    path = Path(adapter_dir) / SUMMARY_FILE
    summary = json.loads(path.read_text())
    summary.setdefault("dataset", {}).update({"name": subset_repo, "repo_id": subset_repo, "revision": revision, "path": None})
    path.write_text(json.dumps(summary, indent=2) + "\n")


def _slug(text: str) -> str:
    out = "".join(ch if ch.isalnum() else "-" for ch in text.lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")[:80]
