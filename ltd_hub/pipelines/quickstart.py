"""The README's quick start: the whole ltd-hub loop in one call, at CPU scale.

From the first rows of an instruction pool it pushes a 0.5% coreset and a random slice that
stands in for the full data (it is not the full pool, and every label says so) as dataset repos, trains a LoRA adapter on each, evaluates both (results go into their
model cards), and publishes the comparison Space. Re-running is cheap and idempotent: embeddings
come from the cache, trained adapters are reused while their recipe and data are unchanged, eval
results already recorded for the same weights are kept, and a push of unchanged files makes no
commit.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ltd_hub.constants import DATA_SUFFIXES, DEFAULT_BASE_MODEL
from ltd_hub.errors import UsageError
from ltd_hub.hub.gateway import display_endpoint

DEFAULT_POOL = "../shared/data/ltd-nli/pool/p3_nli_pool.jsonl.gz"
DEFAULT_EVAL_DATA = ("../shared/data/ltd-nli/eval/rte.jsonl.gz", "../shared/data/ltd-nli/eval/snli_heldout.jsonl.gz")
CORESET_RATIO = 0.005
REPO_PREFIX = "ltd-quickstart"
# Repo name suffix and type of everything the quick start publishes, in push order.
REPOS = {
    "coreset": ("coreset", "dataset"),
    "full": ("full", "dataset"),
    "coreset_lora": ("coreset-lora", "model"),
    "full_lora": ("full-lora", "model"),
    "space": ("space", "space"),
}
Log = Callable[[str], None]


@dataclass
class QuickstartConfig:
    """The quick start's knobs; the ``ltd-hub quickstart`` flags are these names.

    Attributes:
        pool: instruction data to select from (a local JSONL/JSON/Parquet/CSV file, ``.gz`` allowed).
        rows: use the first ``rows`` rows of the pool (the "task data").
        full_rows: size of the random slice that stands in for the full data.
        encoder: selection encoder (``minilm`` default, ``lexical``, ...).
        base_model: Hub id of the model both adapters are trained on.
        max_steps: optimizer steps per adapter.
        max_length: longest training row in tokens.
        eval_data: held-out eval files or dataset repos (``inputs``, ``targets``, ``answer_choices``).
        templates: prompt templates evaluated per eval set.
        max_examples: examples evaluated per template.
        num_examples: examples bundled into the Space.
        namespace: where the repos go (default: the token's user).
        workdir: local state (pool slice, adapters); default ``cache_dir("quickstart")``.
        progress: show progress bars.

    Example:
        >>> cfg = QuickstartConfig(rows=2000, full_rows=200, max_steps=5)
    """

    pool: str | os.PathLike = DEFAULT_POOL
    # A demonstration sized to finish in about ten minutes on 2 CPU cores, not the experiment:
    # scale it with --rows, --full-rows, --max-steps and --max-examples (see the README).
    rows: int = 10000
    full_rows: int = 1000
    encoder: str | None = None
    base_model: str = DEFAULT_BASE_MODEL
    max_steps: int = 20
    max_length: int = 256
    eval_data: Sequence[str] = DEFAULT_EVAL_DATA
    templates: int = 1
    max_examples: int = 40
    num_examples: int = 8
    namespace: str | None = None
    workdir: str | os.PathLike | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.eval_data, (str, os.PathLike)):
            self.eval_data = [os.fspath(self.eval_data)]

    def validate(self) -> None:
        """Check everything that needs no Hub: numbers, local paths, the encoder name."""
        from ltd_hub.selection.encoders import get_encoder

        min_rows = _min_rows_for_ratio()
        if self.rows < min_rows:
            raise UsageError(f"--rows must be at least {min_rows}, so that 0.5% of them is a row; got {self.rows}")
        if self.full_rows < 1:
            raise UsageError(f"--full-rows must be at least 1, got {self.full_rows}")
        if self.full_rows > self.rows:
            raise UsageError(f"--full-rows {self.full_rows} is more than --rows {self.rows}; lower it")
        for flag, value in (("--max-steps", self.max_steps), ("--max-examples", self.max_examples), ("--templates", self.templates)):
            if value < 1:
                raise UsageError(f"{flag} must be at least 1, got {value}")
        if self.num_examples < 0:
            raise UsageError(f"--num-examples must be 0 or more, got {self.num_examples}")
        pool = Path(self.pool).expanduser()
        if not pool.is_file():
            raise UsageError(
                f"--pool {self.pool} not found (from {Path.cwd()}); pass --pool with the ltd-nli pool "
                "(p3_nli_pool.jsonl.gz) or another instruction-data file"
            )
        if not self.eval_data:
            raise UsageError("--eval-data needs at least one held-out file or dataset repo")
        for spec in self.eval_data:
            if not Path(spec).expanduser().exists() and (spec.startswith((".", "/", "~")) or spec.count("/") != 1):
                raise UsageError(f"--eval-data {spec} not found (from {Path.cwd()}); pass held-out eval files or dataset repo ids")
        if self.workdir is not None and Path(self.workdir).exists() and not Path(self.workdir).is_dir():
            raise UsageError(f"--workdir {self.workdir} is a file; pass a folder")
        if self.namespace is not None and (not self.namespace or "/" in self.namespace):
            raise UsageError(f"--namespace {self.namespace!r} must be a user or organization name, without '/'")
        get_encoder(self.encoder)  # an unknown encoder name is a UsageError listing the valid ones

    def work_path(self) -> Path:
        """The folder of the run's local state: ``workdir``, else ``cache_dir("quickstart")``."""
        from ltd_hub.paths import cache_dir

        return Path(self.workdir).expanduser() if self.workdir is not None else cache_dir("quickstart")


@dataclass
class QuickstartResult:
    """What the quick start published.

    Attributes:
        repos: role (``coreset``, ``full``, ``coreset_lora``, ``full_lora``, ``space``) -> repo id.
        urls: role -> repo URL.
        accuracy: ``coreset``/``full`` -> average eval accuracy of its adapter.
        new_commits: the roles whose repo got a new commit in this run (empty on an unchanged re-run).
        reused: what was reused instead of recomputed (``coreset_lora``, ``full_lora``, ``coreset_eval``, ...).
        seconds: wall time.
    """

    repos: dict[str, str]
    urls: dict[str, str] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    new_commits: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def space_repo(self) -> str:
        """The comparison Space's repo id."""
        return self.repos["space"]


def _min_rows_for_ratio() -> int:
    """Fewest pool rows whose 0.5% budget is at least one row (the selection's own rounding decides)."""
    from ltd_hub.selection.budget import budget_from_ratio

    n = 1
    while True:
        try:
            budget_from_ratio(n, CORESET_RATIO)
            return n
        except UsageError:
            n += 1


def _quiet(_message: str) -> None:
    return None


# --------------------------------------------------------------------------- the pool slice


def slice_pool(pool: str | os.PathLike, rows: int, folder: Path) -> tuple[Path, int]:
    """Write the first ``rows`` rows of ``pool`` to ``folder`` as JSON Lines; return the file and its row count.

    The file keeps its name and is rewritten only when its content changes, so subset manifests
    (which record the source path and sha256) stay the same from one run to the next.

    Example:
        >>> slice_pool("pool.jsonl.gz", 20000, Path("work/data"))  # doctest: +SKIP
        (PosixPath('work/data/pool-first-20000.jsonl'), 20000)
    """
    from ltd_hub.data.sources import write_pool_head

    name = Path(pool).name
    stem = next((name[: -len(suffix)] for suffix in DATA_SUFFIXES if name.endswith(suffix)), name)
    target = folder / f"{stem}-first-{rows}.jsonl"
    return target, write_pool_head(Path(pool).expanduser(), rows, target)


# --------------------------------------------------------------------------- adapters


def _train_config(config: QuickstartConfig, dataset_repo: str, revision: str, output_dir: Path) -> Any:
    from ltd_hub.training import TrainConfig

    return TrainConfig(
        dataset=dataset_repo,
        dataset_revision=revision,
        base_model=config.base_model,
        output_dir=str(output_dir),
        overwrite_output_dir=True,
        max_steps=config.max_steps,
        max_length=config.max_length,
        logging_steps=max(1, min(10, config.max_steps // 3)),
    )


def reusable_adapter(folder: Path, train_config: Any) -> bool:
    """True when ``folder`` holds a complete adapter trained with ``train_config``'s recipe and data."""
    from ltd_hub.adapters import ADAPTER_CONFIG, WEIGHT_FILES, read_training_summary

    if not (folder / ADAPTER_CONFIG).is_file() or not any((folder / name).is_file() for name in WEIGHT_FILES):
        return False
    summary = read_training_summary(folder)
    if not summary:
        return False
    dataset = summary.get("dataset") or {}
    wanted = train_config.hyperparameters()
    recorded = summary.get("hyperparameters") or {}
    # padding_free is recorded as resolved (True/False), the config may leave it None (auto).
    same_recipe = all(recorded.get(key) == value for key, value in wanted.items() if key != "padding_free")
    return (
        summary.get("base_model") == train_config.base_model
        and dataset.get("repo_id") == train_config.dataset
        and dataset.get("revision") == train_config.dataset_revision
        and same_recipe
    )


def recorded_accuracy(adapter_repo: str, weights_sha: str, eval_sets: Sequence[Any], config: QuickstartConfig) -> float | None:
    """The average accuracy already recorded in ``adapter_repo`` for these weights and eval settings, or None."""
    from ltd_hub.adapters import read_eval_results

    recorded = read_eval_results(adapter_repo)
    accuracies = []
    for eval_set in eval_sets:
        match = next(
            (
                r
                for r in recorded
                if r.name == eval_set.name
                and r.adapter_sha256 == weights_sha
                and r.n_examples == len(eval_set.rows)
                and (r.settings or {}).get("templates") == config.templates
                and (r.settings or {}).get("max_examples") == config.max_examples
            ),
            None,
        )
        if match is None:
            return None
        accuracies.append(float(match.accuracy_mean))
    return statistics.fmean(accuracies)


# --------------------------------------------------------------------------- the whole loop


STEPS = 8  # check, coreset, stand-in, two trainings, two evaluations, Space
STEPS_WITH_DEMO = 9  # ... and the local run of the Space


class _Steps:
    """Numbers the quick start's steps: ``[3/9] ...``, each number once."""

    def __init__(self, say: Log, total: int):
        self.say, self.total, self.n = say, total, 0

    def __call__(self, text: str) -> None:
        self.n += 1
        self.say(f"[{self.n}/{self.total}] {text}")


def stand_in_label(full_rows: int, pool_rows: int) -> str:
    """What the "full data" arm of the quick start really is, for every label that names it.

    Example:
        >>> stand_in_label(2000, 20000)
        'random 2,000 rows (stand-in for the full 20,000-row pool)'
    """
    return f"random {full_rows:,} rows (stand-in for the full {pool_rows:,}-row pool)"


def _seen_line(folder: Path) -> str:
    """ ", trained on N rows: S steps x B rows = R rows seen (E epochs)" from the adapter's training summary."""
    from ltd_hub.adapters import read_training_summary, training_seen

    summary = read_training_summary(folder) or {}
    seen = training_seen(summary)
    if not seen:
        return ""
    rows = (summary.get("dataset") or {}).get("train_rows")
    return f"; {rows:,} rows, {seen['steps']} steps x {seen['batch']} = {seen['rows_seen']:,} rows seen ({seen['epochs']} epochs)"


def quickstart(config: QuickstartConfig | None = None, *, log: Log | None = None, with_demo: bool = False) -> QuickstartResult:
    """Run the quick start against the Hub that ``HF_ENDPOINT`` names (or huggingface.co).

    Steps: check every input and all five push targets; slice the pool; push the 0.5% coreset
    (selected inside k-means clusters) and a random ``full_rows`` stand-in for the full data; train a
    LoRA adapter on each and push it; evaluate both with the results recorded in their cards;
    push the comparison Space with held-out examples.

    Args:
        config: the settings (default :class:`QuickstartConfig()`).
        log: called with short progress lines (and the URLs as they are created).
        with_demo: a local run of the Space follows (the step count includes it).

    Returns:
        A :class:`QuickstartResult`.

    Raises:
        UsageError, HubError: bad input or a Hub refusal, before anything is pushed where possible.

    Example:
        >>> result = quickstart(QuickstartConfig(rows=2000, full_rows=200, max_steps=5))  # doctest: +SKIP
        >>> result.urls["space"]  # doctest: +SKIP
    """
    config = config or QuickstartConfig()
    started = time.perf_counter()
    config.validate()
    run = _Run(config, log or _quiet, STEPS_WITH_DEMO if with_demo else STEPS)
    run.check_targets()
    pool_file, n_rows = run.slice_pool()
    label = stand_in_label(config.full_rows, n_rows)
    data = run.push_data(pool_file, n_rows, label)
    names = {"coreset": "the 0.5% coreset", "full": label}
    weights = {role: run.train_adapter(role, data[role], names[role]) for role in ("coreset", "full")}
    for role in ("coreset", "full"):
        run.evaluate(role, weights[role], names[role])
    run.publish_space(label)
    run.result.seconds = time.perf_counter() - started
    return run.result


class _Run:
    """One quick start run: its settings, the numbered steps, the push targets and what it published so far."""

    def __init__(self, config: QuickstartConfig, say: Log, total_steps: int):
        self.config, self.say = config, say
        self.step = _Steps(say, total_steps)
        self.workdir = config.work_path()
        self.targets: dict[str, Any] = {}
        self.eval_sets: list[Any] = []
        self.result = QuickstartResult(repos={})

    def record(self, role: str, pushed: Any) -> None:
        """Note a push (its URL, and whether it made a commit) and print it."""
        self.result.urls[role] = pushed.url
        if pushed.created_commit and role not in self.result.new_commits:
            self.result.new_commits.append(role)
        self.say(f"      {pushed.url} ({'new commit ' + pushed.revision[:10] if pushed.created_commit else 'unchanged'})")

    def check_targets(self) -> None:
        """Step 1: every push target is writable, the base model is on the Hub, the eval data loads."""
        from ltd_hub.evaluation.evaluator import load_eval_sets
        from ltd_hub.hub import gateway as hub

        config = self.config
        self.step("checking the Hub, the base model and the eval data")
        for role, (suffix, repo_type) in REPOS.items():
            name = f"{REPO_PREFIX}-{suffix}"
            self.targets[role] = hub.preflight_push(f"{config.namespace}/{name}" if config.namespace else name, repo_type)
        if not hub.repo_exists(config.base_model, "model"):
            raise UsageError(
                f"--base-model {config.base_model} is not on the Hub at {display_endpoint()}; seed it (`ltd-hub hub seed`) or pass another --base-model"
            )
        self.eval_sets = load_eval_sets(list(config.eval_data), templates=config.templates, max_examples=config.max_examples)
        self.result.repos = {role: t.repo_id for role, t in self.targets.items()}

    def slice_pool(self) -> tuple[Path, int]:
        """The pool's first ``rows`` rows as a file of their own, checked against the budget and ``full_rows``."""
        config = self.config
        pool_file, n_rows = slice_pool(config.pool, config.rows, self.workdir / "data")
        if n_rows < _min_rows_for_ratio():
            raise UsageError(f"--pool {config.pool} has only {n_rows} rows; 0.5% of them is no row, use a larger pool")
        if config.full_rows > n_rows:
            raise UsageError(f"--full-rows {config.full_rows} is more than the {n_rows} rows of --pool {config.pool}; lower it")
        return pool_file, n_rows

    def push_data(self, pool_file: Path, n_rows: int, label: str) -> dict[str, Any]:
        """Steps 2-3: push the 0.5% coreset and the random stand-in for the full data; their pushes by role."""
        from ltd_hub.selection.subset import push_subset

        config, targets = self.config, self.targets
        self.step(
            f"selecting a 0.5% coreset of the first {n_rows:,} rows of {Path(config.pool).name} (encode, k-means, select inside the clusters)"
        )
        selection = {"encoder": config.encoder, "progress": config.progress}
        coreset = push_subset(pool_file, targets["coreset"].repo_id, ratio=CORESET_RATIO, log=self.say, **selection)
        self.say(f"      0.5% coreset: {coreset.result.stats.n_selected} rows -> {targets['coreset'].repo_id}")
        self.record("coreset", coreset.push)
        self.step(f"drawing {label}")
        full = push_subset(
            pool_file,
            targets["full"].repo_id,
            strategy="random",
            size=config.full_rows,
            log=self.say,
            pretty_name=f"{targets['full'].repo_id.split('/')[-1]}: {label}",
            **selection,
        )
        self.say(f"      {label} -> {targets['full'].repo_id}")
        self.record("full", full.push)
        return {"coreset": coreset.push, "full": full.push}

    def train_adapter(self, role: str, data: Any, name: str) -> str:
        """Steps 4-5: train (or reuse) the adapter on ``data`` and push it; return its weights' sha256."""
        from ltd_hub.adapters import push_adapter, weights_sha256
        from ltd_hub.training import train

        config, lora = self.config, f"{role}_lora"
        folder = self.workdir / "adapters" / role
        train_config = _train_config(config, data.repo_id, data.revision, folder)
        if reusable_adapter(folder, train_config):
            self.step(f"reusing the adapter on {name} trained earlier in {folder}")
            self.result.reused.append(lora)
        else:
            self.step(f"training a LoRA adapter on {name} ({config.max_steps} steps, base {config.base_model})")
            trained = train(train_config)
            seen = _seen_line(folder)
            self.say(
                f"      loss {trained.train_loss:.3f}, {trained.seconds:.0f}s, {trained.tokens_per_second:.0f} tokens/s{seen} -> {folder}"
            )
        self.record(lora, push_adapter(folder, self.targets[lora].repo_id))
        return weights_sha256(folder)

    def evaluate(self, role: str, weights: str, name: str) -> None:
        """Steps 6-7: the adapter's accuracy, recorded in its card (kept when already there for these weights)."""
        from ltd_hub.evaluation.evaluator import evaluate_adapter

        config = self.config
        repo = self.targets[f"{role}_lora"].repo_id
        accuracy = recorded_accuracy(repo, weights, self.eval_sets, config)
        if accuracy is not None:
            self.step(f"evaluating the adapter on {name}: results for these weights are already in {repo}'s card")
            self.result.reused.append(f"{role}_eval")
        else:
            self.step(
                f"evaluating the adapter on {name} ({repo}) on {', '.join(s.name for s in self.eval_sets)} "
                f"({config.max_examples} examples per template)"
            )
            report = evaluate_adapter(
                repo,
                list(config.eval_data),
                templates=config.templates,
                max_examples=config.max_examples,
                push=True,
                progress=config.progress,
            )
            accuracy = report.average
            self.record(f"{role}_lora", report.push)
        self.result.accuracy[role] = accuracy
        self.say(f"      average accuracy {accuracy:.3f}")

    def publish_space(self, label: str) -> None:
        """Step 8: the comparison Space of the two adapters, with held-out examples."""
        from ltd_hub.spaces.publish import push_space

        config, targets = self.config, self.targets
        self.step(f"publishing the comparison Space {targets['space'].repo_id}")
        _, space = push_space(
            targets["space"].repo_id,
            full=targets["full_lora"].repo_id,
            subset=targets["coreset_lora"].repo_id,
            base_model=config.base_model,
            examples=list(config.eval_data),
            num_examples=config.num_examples,
            title=f"Quick start: 0.5% coreset vs {label}",
            short_description=f"Quick start: 0.5% coreset vs {config.full_rows:,} random rows"[:60],
        )
        self.record("space", space)
