"""Evaluate an adapter (or its base model) by rank classification on held-out instruction data.

Every ``answer_choices`` entry is scored by its log-likelihood given ``inputs``, formatted exactly
as in training (same chat template, same answer suffix); the best-scoring choice is the
prediction. Accuracy is reported per eval set and template, with the mean and median over
templates, the number of examples and a bootstrap interval of the mean; optionally the exact match
of greedy-generated answers. Metrics are computed by ``evaluate`` with metric modules shipped in
``ltd_hub/evaluation/metrics`` (loaded by path, so nothing is fetched from the Hub).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ltd_hub.constants import DATA_SUFFIXES
from ltd_hub.errors import MissingFileError, UsageError
from ltd_hub.files import atomic_write, sha256_file

# Formatting and scoring live in the module the comparison Space ships beside app.py, so the
# Space's choice probabilities are the softmax of exactly these scores (one implementation).
from ltd_hub.space.ltd_scoring import SCORING_METHODS, FormatError, PromptFormatter, score_choices  # noqa: F401

METRICS_DIR = Path(__file__).parent / "metrics"
REQUIRED_COLUMNS = ("inputs", "targets", "answer_choices")
# A SuperNI task is scored by rank classification over its label set (the distinct outputs of its
# instances); a task with more distinct outputs than this is generation, not classification.
MAX_SUPERNI_LABELS = 20


@dataclass
class EvalSet:
    """The rows of one eval set (one file or repo, or one ``dataset`` value inside it)."""

    name: str
    dataset_type: str
    source: str
    revision: str | None
    rows: list[dict[str, Any]]
    #: SuperNI tasks: the answer choices of every row (the distinct outputs of the task's instances).
    label_set: list[str] | None = None
    #: Templates left out because they have no answer_choices (e.g. a regression template).
    skipped_templates: list[str] = field(default_factory=list)

    @property
    def templates(self) -> list[str]:
        return list(OrderedDict.fromkeys(r["template"] for r in self.rows))


@dataclass
class EvalReport:
    """Results of one evaluation run (what ``--format json`` prints and ``--push`` records)."""

    model: str
    base_model: str
    adapter: str | None
    adapter_revision: str | None
    results: list[dict[str, Any]]
    average: float
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    push: Any = None
    #: Per eval set name, one record per example (index, row, id, template, prediction, gold,
    #: correct, scores; see :func:`prediction_records`): what a paired bootstrap between two models
    #: needs. Kept out of ``results``, which go into the card and ``eval_results.json``.
    predictions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["push"] = (
            None
            if self.push is None
            else {
                "url": self.push.url,
                "commit_url": self.push.commit_url,
                "revision": self.push.revision,
                "unchanged": not self.push.created_commit,  # these results were already recorded: no commit
            }
        )
        return data

    def to_markdown(self, *, per_template: bool = False) -> str:
        """A Markdown table of the results (per eval set; per template when asked)."""
        em = any(r.get("exact_match") is not None for r in self.results)
        head = "| Eval set | Examples | Templates | Accuracy (mean) | Median | 95% CI |" + (" Exact match |" if em else "")
        lines = [head, "|---|---|---|---|---|---|" + ("---|" if em else "")]
        for r in self.results:
            row = (
                f"| {r['name']} | {r['n_examples']} | {r['n_templates']} | {r['accuracy_mean']:.4f} | "
                f"{r['accuracy_median']:.4f} | {r['ci_low']:.4f} – {r['ci_high']:.4f} |"
            )
            if em:
                row += f" {r['exact_match']:.4f} |" if r.get("exact_match") is not None else " |"
            lines.append(row)
        lines.append(f"\nAverage over eval sets: {self.average:.4f} ({self.model})")
        if per_template:
            lines += ["", "| Eval set | Template | Examples | Accuracy |", "|---|---|---|---|"]
            for r in self.results:
                for name, t in r["templates"].items():
                    lines.append(f"| {r['name']} | {name} | {t['n']} | {t['accuracy']:.4f} |")
        return "\n".join(lines)


# --------------------------------------------------------------------------- eval data


def _set_name(spec: str) -> str:
    name = Path(spec).name if Path(spec).expanduser().exists() else spec.split("/")[-1]
    for suffix in DATA_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def load_eval_sets(
    specs: list[str],
    *,
    templates: int | None = None,
    max_examples: int | None = None,
    split: str = "validation",
    token: str | None = None,
    log: Any = None,
) -> list[EvalSet]:
    """Read eval data (local files/folders or Hub dataset repos) into eval sets.

    A file is one eval set named after it (``rte.jsonl.gz`` -> ``rte``); a file holding several
    values of the ``dataset`` column is split by them. SuperNI task files (``Definition``,
    ``Instances``) are read as training reads them (prompt = definition + input) and scored over
    the task's label set: the distinct outputs of its instances (:attr:`EvalSet.label_set`). A
    P3-style template without ``answer_choices`` (e.g. a regression template) is skipped with one
    line; the other templates are scored. ``templates`` keeps the first N templates of
    each set, ``max_examples`` the first N rows of each template (file order, so every template
    sees the same examples when the file is ordered by template).

    Args:
        specs: paths or repo ids.
        templates: keep the first N templates per set (default all).
        max_examples: keep the first N rows per template (default all).
        split: preferred split name inside folders/repos with several.
        token: Hub token for private repos.
        log: called with one line per skipped template (default: printed to stderr).

    Returns:
        A list of :class:`EvalSet`.

    Example:
        >>> sets = load_eval_sets(["../shared/data/ltd-nli/eval/rte.jsonl.gz"], templates=1, max_examples=50)  # doctest: +SKIP
    """
    from ltd_hub.data.sources import load_instruction_data

    if not specs:
        raise UsageError("--eval-data needs at least one file, folder or dataset repo")
    if templates is not None and templates < 1:
        raise UsageError(f"--templates must be at least 1, got {templates}")
    if max_examples is not None and max_examples < 1:
        raise UsageError(f"--max-examples must be at least 1, got {max_examples}")
    say = log or (lambda message: print(message, file=sys.stderr))
    sets: list[EvalSet] = []
    for spec in specs:
        superni = _superni_files(spec)
        if superni:
            sets.extend(_superni_eval_sets(spec, superni, templates, max_examples))
            continue
        try:
            rows, source = load_instruction_data(spec, split=split, token=token)
        except UsageError as exc:
            raise UsageError(f"eval data: {exc}") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in rows.column_names]
        if "answer_choices" in missing:
            raise UsageError(
                f"eval data {spec} has no answer_choices column, which rank classification needs "
                "(P3-style rows: inputs, targets, answer_choices)"
            )
        if missing:
            raise UsageError(f"eval data {spec} has no {missing[0]!r} column (columns: {', '.join(rows.column_names)})")
        if len(rows) == 0:
            raise UsageError(f"eval data {spec} has no rows")
        groups: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        has_dataset = "dataset" in rows.column_names
        has_template = "template_name" in rows.column_names
        template_of = (
            (lambda row: str(row["template_name"]) if row["template_name"] else "default") if has_template else (lambda row: "default")
        )  # noqa: E731
        # A template none of whose rows has answer choices is not a classification template: skipped.
        with_choices: dict[str, bool] = {}
        for row in rows:
            choices = row["answer_choices"]
            has = isinstance(choices, (list, tuple)) and len(choices) > 0
            with_choices[template_of(row)] = with_choices.get(template_of(row), False) or has
        skipped = [t for t, has in with_choices.items() if not has]
        if skipped and len(skipped) == len(with_choices):
            raise UsageError(f"eval data {spec} has no answer_choices in any row, which rank classification needs")
        for template in skipped:
            say(f"eval data {_public(spec)}: skipping template {template!r}, which has no answer_choices (not a classification template)")
        for index, row in enumerate(rows):
            if template_of(row) in skipped:
                continue
            choices = row["answer_choices"]
            if not isinstance(choices, (list, tuple)) or len(choices) < 2:
                raise UsageError(f"eval data {spec} row {index}: answer_choices must be a list of at least 2 answers")
            # An empty answer is scored by the end-of-turn tokens alone, which nearly always win: the
            # accuracy would be that of a constant guess, so such data is refused, not measured.
            if any(c is None or not str(c).strip() for c in choices):
                raise UsageError(
                    f"eval data {spec} row {index}: answer_choices {list(choices)!r} holds an empty answer, which rank "
                    "classification would always pick; fix or drop that row (or template)"
                )
            if row["inputs"] is None or not str(row["inputs"]).strip():
                # A null prompt would be scored as the text "None".
                raise UsageError(f"eval data {spec} row {index}: inputs is empty or null; fix or drop that row")
            target = row["targets"][0] if isinstance(row["targets"], (list, tuple)) else row["targets"]
            if target is None:
                raise UsageError(f"eval data {spec} row {index}: targets is null; fix or drop that row")
            choices = [str(c) for c in choices]
            if str(target).strip() not in [c.strip() for c in choices]:
                raise UsageError(f"eval data {spec} row {index}: target {target!r} is not one of answer_choices {choices}")
            item = {
                "inputs": str(row["inputs"]),
                "target": str(target),
                "choices": choices,
                "gold": [c.strip() for c in choices].index(str(target).strip()),
                "template": template_of(row),
                "row": index,
                # The example's id across templates (P3 rows carry it in ``source``; else an ``id`` column).
                "id": next((str(row[c]) for c in ("id", "source") if row.get(c) is not None), str(index)),
            }
            groups.setdefault(str(row["dataset"]) if has_dataset and row["dataset"] else _set_name(spec), []).append(item)
        for dataset_type, items in groups.items():
            name = _set_name(spec) if len(groups) == 1 else f"{_set_name(spec)}:{dataset_type}"
            sets.append(
                EvalSet(
                    name=name,
                    dataset_type=source.repo_id or dataset_type,
                    source=spec,
                    revision=source.revision,
                    rows=_subsample(items, templates, max_examples),
                    skipped_templates=skipped,
                )
            )
    names = [s.name for s in sets]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise UsageError(f"two eval sets are both named {duplicate!r}; give the files distinct names")
    return sets


def _public(spec: str) -> str:
    from ltd_hub.data.sources import public_path

    return public_path(spec) if Path(spec).expanduser().exists() else spec


def _superni_files(spec: str) -> list[Path]:
    """The SuperNI task files ``spec`` names (a task file or a folder of them), else []."""
    from ltd_hub.data.sources import _is_superni_file

    path = Path(spec).expanduser()
    if path.is_file():
        return [path] if _is_superni_file(path) else []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(".json"))
        superni = [p for p in files if _is_superni_file(p)]
        return superni if superni and len(superni) == len(files) else []
    return []


def _superni_eval_sets(spec: str, files: list[Path], templates: int | None, max_examples: int | None) -> list[EvalSet]:
    """One eval set per SuperNI task: prompt as training builds it, choices = the task's label set."""
    from ltd_hub.data.sources import _combined_fingerprint, _file_records, _load_superni

    rows = _load_superni(files)
    by_task: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
    for index, row in enumerate(rows):
        by_task.setdefault(row["task_name"], []).append({**row, "row": index})
    fingerprint = _combined_fingerprint(_file_records(files))
    sets = []
    for task, instances in by_task.items():
        labels = sorted({str(r["output"]).strip() for r in instances if str(r["output"]).strip()})
        if len(labels) < 2:
            raise UsageError(
                f"eval data {_public(spec)}: task {task} has {len(labels)} distinct output(s); rank classification needs at least 2 labels"
            )
        if len(labels) > MAX_SUPERNI_LABELS:
            raise UsageError(
                f"eval data {_public(spec)}: task {task} has {len(labels)} distinct outputs, not a label set "
                f"(at most {MAX_SUPERNI_LABELS}); rank classification scores classification tasks only"
            )
        items = []
        for r in instances:
            gold = str(r["output"]).strip()
            if not gold:
                continue
            # The prompt exactly as training joins SuperNI columns: definition, blank line, input.
            prompt = "\n\n".join(t for t in (str(r["instruction"] or ""), str(r["input"] or "")) if t)
            items.append(
                {
                    "inputs": prompt,
                    "target": gold,
                    "choices": labels,
                    "gold": labels.index(gold),
                    "template": "definition",
                    "row": r["row"],
                    "id": str(r["id"]),
                }  # fmt: skip
            )
        sets.append(
            EvalSet(
                name=task if len(by_task) > 1 else _set_name(spec),
                dataset_type=task,
                source=spec,
                revision=fingerprint,
                rows=_subsample(items, templates, max_examples),
                label_set=labels,
            )
        )
    return sets


def _subsample(items: list[dict[str, Any]], templates: int | None, max_examples: int | None) -> list[dict[str, Any]]:
    keep = list(OrderedDict.fromkeys(i["template"] for i in items))[: templates or None]
    counts: dict[str, int] = {}
    out = []
    for item in items:
        if item["template"] in keep and counts.get(item["template"], 0) < (max_examples or float("inf")):
            counts[item["template"]] = counts.get(item["template"], 0) + 1
            out.append(item)
    return out


# --------------------------------------------------------------------------- scoring
# score_choices and PromptFormatter: ltd_hub/space/ltd_scoring.py (imported above).


def generate_answers(
    model: Any, formatter: Any, rows: list[dict[str, Any]], *, batch_size: int = 16, max_new_tokens: int = 8, progress: bool = True
) -> list[str]:
    """Greedy answers to each row's prompt (for exact match), batched with left padding."""
    import torch
    from tqdm.auto import tqdm

    tok = formatter.tokenizer
    prompt_ids, _ = formatter.encode_batch([r["inputs"] for r in rows], [""] * len(rows))
    order = sorted(range(len(rows)), key=lambda i: len(prompt_ids[i]))
    answers = [""] * len(rows)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), batch_size), desc="Generating", disable=not progress, unit="batch"):
            idx = order[start : start + batch_size]
            width = max(len(prompt_ids[i]) for i in idx)
            input_ids = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for b, i in enumerate(idx):
                input_ids[b, width - len(prompt_ids[i]) :] = torch.tensor(prompt_ids[i])
                mask[b, width - len(prompt_ids[i]) :] = 1
            output = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
            for b, i in enumerate(idx):
                answers[i] = tok.decode(output[b, width:], skip_special_tokens=True).strip()
    return answers


def bootstrap_interval(
    correct_by_template: list[list[int]], *, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean-over-templates accuracy (examples resampled within each template)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    means = np.zeros(resamples)
    for correct in correct_by_template:
        values = np.asarray(correct, dtype=float)
        draws = rng.integers(0, len(values), size=(resamples, len(values)))
        means += values[draws].mean(axis=1)
    means /= len(correct_by_template)
    low, high = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(low), float(high)


def _load_metric(name: str) -> Any:
    import evaluate

    return evaluate.load(str(METRICS_DIR / f"{name}.py"))


def evaluate_model(
    model: Any,
    formatter: Any,
    eval_sets: list[EvalSet],
    *,
    batch_size: int = 16,
    exact_match: bool = False,
    max_new_tokens: int = 8,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
    method: str = "shared",
) -> list[dict[str, Any]]:
    """Rank-classification accuracy (and optional exact match) of a loaded model on eval sets.

    ``method`` is the scorer of :func:`score_choices` (``"shared"`` prefix, or ``"separate"``).

    Returns:
        One dict per eval set: name, dataset_type, n_examples, n_templates, accuracy_mean,
        accuracy_median, ci_low, ci_high, exact_match (or None), per-template results and
        ``predictions``: one record per example (see :func:`prediction_records`).
    """
    accuracy = _load_metric("accuracy")
    em_metric = _load_metric("exact_match") if exact_match else None
    results = []
    for eval_set in eval_sets:
        try:
            scores = score_choices(model, formatter, eval_set.rows, batch_size=batch_size, progress=progress, method=method)
        except FormatError as exc:
            raise UsageError(str(exc)) from None
        predictions = [max(range(len(s)), key=s.__getitem__) for s in scores]
        generated = (
            generate_answers(model, formatter, eval_set.rows, batch_size=batch_size, max_new_tokens=max_new_tokens, progress=progress)
            if em_metric is not None  # an evaluate module is falsy (it has a zero __len__)
            else None
        )
        per_template: dict[str, dict[str, Any]] = {}
        correct_by_template = []
        for template in eval_set.templates:
            idx = [i for i, r in enumerate(eval_set.rows) if r["template"] == template]
            preds = [predictions[i] for i in idx]
            golds = [eval_set.rows[i]["gold"] for i in idx]
            entry = {"n": len(idx), "accuracy": accuracy.compute(predictions=preds, references=golds)["accuracy"]}
            if generated is not None:
                entry["exact_match"] = em_metric.compute(
                    predictions=[generated[i] for i in idx], references=[eval_set.rows[i]["target"] for i in idx]
                )["exact_match"]
            per_template[template] = entry
            correct_by_template.append([int(p == g) for p, g in zip(preds, golds)])
        accs = [t["accuracy"] for t in per_template.values()]
        low, high = bootstrap_interval(correct_by_template, resamples=bootstrap, seed=seed)
        results.append(
            {
                "name": eval_set.name,
                "dataset_type": eval_set.dataset_type,
                "dataset_revision": eval_set.revision,
                "source": eval_set.source,
                "n_examples": len(eval_set.rows),
                "n_templates": len(per_template),
                "accuracy_mean": statistics.fmean(accs),
                "accuracy_median": statistics.median(accs),
                "ci_low": low,
                "ci_high": high,
                "exact_match": statistics.fmean(t["exact_match"] for t in per_template.values()) if generated is not None else None,
                "templates": per_template,
                **({"label_set": eval_set.label_set} if eval_set.label_set is not None else {}),
                **({"skipped_templates": eval_set.skipped_templates} if eval_set.skipped_templates else {}),
                "predictions": prediction_records(eval_set.rows, scores),
            }
        )
    return results


def prediction_records(rows: list[dict[str, Any]], scores: list[list[float]]) -> list[dict[str, Any]]:
    """One record per eval row: what a paired comparison of two models needs.

    ``index`` is the row's position in the eval set (file order after ``--templates`` and
    ``--max-examples``; two runs with the same eval settings list the same rows in the same order),
    ``row`` its line in the source file, ``id`` the example's id across templates (``source`` or
    ``id`` column, else the row number), ``template``, ``prediction`` and ``gold`` (indices into the
    answer choices), ``correct`` and the choices' log-likelihoods ``scores``.
    """
    records = []
    for index, (row, row_scores) in enumerate(zip(rows, scores)):
        prediction = max(range(len(row_scores)), key=row_scores.__getitem__)
        records.append(
            {
                "index": index,
                "row": row.get("row", index),
                "id": row.get("id", str(index)),
                "template": row["template"],
                "prediction": prediction,
                "gold": row["gold"],
                "correct": prediction == row["gold"],
                "scores": [round(v, 4) for v in row_scores],
            }
        )
    return records


# --------------------------------------------------------------------------- the entry point


def evaluate_adapter(
    adapter: str | None = None,
    eval_data: list[str] | tuple[str, ...] = (),
    *,
    base_only: bool = False,
    base_model: str | None = None,
    revision: str | None = None,
    templates: int | None = None,
    max_examples: int | None = None,
    batch_size: int = 16,
    exact_match: bool = False,
    max_new_tokens: int = 8,
    bootstrap: int = 1000,
    seed: int = 0,
    bf16: bool | None = None,
    push: bool = False,
    record: bool = True,
    token: str | None = None,
    progress: bool = True,
) -> EvalReport:
    """Evaluate an adapter (or, with ``base_only``, its base model) on eval data.

    Everything is validated before the model is loaded; with ``push`` the results go into the
    adapter repo's card (``model-index``) and ``eval_results.json`` in one new commit, keeping the
    rest of the card. A local adapter folder gets its ``eval_results.json`` and card updated
    instead (unless ``record`` is False), so a later ``push-adapter`` carries them.

    Args:
        adapter: Hub repo id or local folder of a PEFT adapter (optional with ``base_only`` + ``base_model``).
        eval_data: files, folders or dataset repos with ``inputs``, ``targets``, ``answer_choices``.
        base_only: evaluate the base model without the adapter (the baseline row).
        base_model: base model id for ``base_only`` when no adapter is given.
        revision: adapter repo revision (default: its current head, recorded in the results).
        templates: keep the first N templates per eval set.
        max_examples: keep the first N examples per template.
        batch_size: sequences per forward pass.
        exact_match: also generate answers and report exact match.
        max_new_tokens: generation length for exact match.
        bootstrap: number of bootstrap resamples for the interval.
        seed: bootstrap seed.
        bf16: run the model in bf16 (default: when the machine supports it).
        push: record the results in the adapter repo's card (Hub repo ids only).
        record: for a local adapter folder, write the results into it.
        token: Hub token.
        progress: show progress bars.

    Returns:
        An :class:`EvalReport`.

    Example:
        >>> report = evaluate_adapter("me/smollm2-nli-coreset", ["rte.jsonl.gz"], templates=1, max_examples=100)  # doctest: +SKIP
        >>> print(report.to_markdown())  # doctest: +SKIP
    """
    from ltd_hub.adapters import is_local, read_adapter_config, read_training_summary
    from ltd_hub.hub import gateway as hub

    if adapter is None and not (base_only and base_model):
        raise UsageError("pass --adapter REPO_OR_DIR (or --base-only with --base-model ID)")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if push and base_only:
        raise UsageError("--push records an adapter's results in its card; drop --push with --base-only")
    if push and (adapter is None or is_local(adapter)):
        raise UsageError(
            f"--push needs --adapter to be a Hub repo id; push the folder first with `ltd-hub push-adapter {adapter} --repo-id ...`"
        )
    summary = None
    adapter_revision = None
    if adapter is not None:
        config = read_adapter_config(adapter, revision=revision, token=token)
        if not is_local(adapter):
            adapter_revision = hub.repo_head(adapter, repo_type="model", revision=revision, token=token)
        summary = read_training_summary(adapter, revision=adapter_revision, token=token)
        base_id = base_model or config["base_model_name_or_path"]
    else:
        base_id = base_model
    eval_sets = load_eval_sets(list(eval_data), templates=templates, max_examples=max_examples, token=token)
    if push:
        target = hub.preflight_push(adapter, "model", token)
        # The card will name the eval sets and their scores: a private eval dataset keeps them out of a public repo.
        from ltd_hub.data.sources import is_hub_id

        private_sets = hub.private_inputs([(e.source, "dataset") for e in eval_sets if is_hub_id(str(e.source))], token=token)
        if private_sets and target.private is False:
            raise UsageError(
                f"{adapter} is public and the eval data {', '.join(private_sets)} is private, so its name and scores "
                "would become visible; evaluate without --push, or make the adapter repo private first"
            )

    import torch

    from ltd_hub.modeling import bf16_supported, load_base_model, load_tokenizer

    started = time.perf_counter()
    use_bf16 = bf16_supported() if bf16 is None else bf16
    tokenizer = load_tokenizer(base_id, token=token)
    model = load_base_model(base_id, bf16=use_bf16, token=token)
    if not base_only:
        from peft import PeftModel

        model = PeftModel.from_pretrained(
            model, str(Path(adapter).expanduser()) if is_local(adapter) else adapter, revision=adapter_revision, token=token
        )
    if torch.cuda.is_available():
        model.to("cuda")
    model.eval()
    formatting = (summary or {}).get("formatting") or {}
    formatter = PromptFormatter(
        tokenizer, use_chat_template=formatting.get("use_chat_template", True), system_prompt=formatting.get("system_prompt")
    )
    results = evaluate_model(
        model, formatter, eval_sets, batch_size=batch_size, exact_match=exact_match, max_new_tokens=max_new_tokens,
        bootstrap=bootstrap, seed=seed, progress=progress,
    )  # fmt: skip
    settings = {
        "method": "rank classification (sum of answer-token log-probs)",
        "templates": templates,
        "max_examples": max_examples,
        "bootstrap": bootstrap,
        "seed": seed,
        "bf16": use_bf16,
    }
    predictions = {r["name"]: r.pop("predictions") for r in results}
    for r in results:
        r["settings"] = settings
        r["adapter_revision"] = adapter_revision
    report = EvalReport(
        model=f"{base_id} (base)" if base_only else str(adapter),
        base_model=base_id,
        adapter=None if base_only else str(adapter),
        adapter_revision=adapter_revision,
        results=results,
        average=statistics.fmean(r["accuracy_mean"] for r in results),
        seconds=time.perf_counter() - started,
        settings=settings,
        predictions=predictions,
    )
    if base_only:
        return report
    if push:
        report.push = _push_results(adapter, results, summary, revision=adapter_revision, token=token)
    elif record and is_local(adapter):
        _record_locally(Path(adapter).expanduser(), results, summary)
    return report


def _tag_with_weights(results: list[dict[str, Any]], sha: str) -> list[dict[str, Any]]:
    return [dict(r, adapter_sha256=sha) for r in results]


def _same_measurement(old: dict[str, Any], new: dict[str, Any]) -> bool:
    def key(result: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in result.items() if k != "adapter_revision"}, sort_keys=True, default=str)

    return key(old) == key(new)


def _push_results(
    repo_id: str, results: list[dict[str, Any]], summary: dict[str, Any] | None, *, revision: str | None, token: str | None
) -> Any:

    from ltd_hub.adapters import EVAL_FILE, WEIGHT_FILES, card_from_folder_or_repo, merge_eval_results, read_eval_results
    from ltd_hub.hub import gateway as hub

    weights = None
    for name in WEIGHT_FILES:
        try:
            weights = hub.download(repo_id, name, repo_type="model", revision=revision, token=token)
            break
        except MissingFileError:
            continue  # try the next weight file name; any other HubError stops: never record results against unknown weights
    sha = sha256_file(weights) if weights else None
    existing = [r for r in read_eval_results(repo_id, revision=revision, token=token) if r.get("adapter_sha256") == sha]
    # A re-run that measures the same thing keeps the recorded entry, so re-pushing makes no new commit
    # (only the repo head it was read at differs, and that moved because of the previous push).
    new = [next((old for old in existing if _same_measurement(old, r)), r) for r in _tag_with_weights(results, sha)]
    merged = merge_eval_results(existing, new)
    card_text = hub.read_card_text(repo_id, "model", token=token)
    card = card_from_folder_or_repo(summary, repo_id=repo_id, eval_results=merged, existing_card=card_text)
    return hub.push_files(
        repo_id,
        {"README.md": card, EVAL_FILE: json.dumps({"results": merged}, indent=2) + "\n"},
        repo_type="model",
        commit_message="Add evaluation results (ltd-hub)",
        token=token,
    )


def _record_locally(folder: Path, results: list[dict[str, Any]], summary: dict[str, Any] | None) -> None:
    from ltd_hub.adapters import EVAL_FILE, merge_eval_results, read_eval_results, render_model_card, weights_sha256
    from ltd_hub.hub.cards import merge_card

    sha = weights_sha256(folder)
    existing = [r for r in read_eval_results(folder) if r.get("adapter_sha256") == sha]
    merged = merge_eval_results(existing, _tag_with_weights(results, sha))
    updates = {EVAL_FILE: json.dumps({"results": merged}, indent=2) + "\n"}
    if summary is not None:
        readme = folder / "README.md"
        existing_card = readme.read_text(encoding="utf-8") if readme.is_file() else None
        updates["README.md"] = merge_card(existing_card, render_model_card(summary, eval_results=merged, existing_card=existing_card))
    for name, text in updates.items():
        atomic_write(folder / name, text)
