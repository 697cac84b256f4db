"""Evaluate an adapter (or its base model) by rank classification on held-out instruction data.

Every ``answer_choices`` entry is scored by its log-likelihood given ``inputs``, formatted exactly
as in training (same chat template, same answer suffix); the best-scoring choice is the
prediction. Accuracy is reported per eval set and template, with the mean and median over
templates, the number of examples and a bootstrap interval of the mean; optionally the exact match
of greedy-generated answers. Metrics are computed by ``evaluate`` with metric modules shipped in
``ltd_hub/evaluation/metrics`` (loaded by path, so nothing is fetched from the Hub).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

# Eval rows are read in ltd_hub.data.eval_sets (the Space's examples are read there too); the names
# stay importable from here for the callers that evaluate.
from ltd_hub.data.eval_sets import MAX_SUPERNI_LABELS, REQUIRED_COLUMNS, EvalRow, EvalSet, load_eval_sets  # noqa: F401
from ltd_hub.errors import MissingFileError, UsageError
from ltd_hub.evaluation.results import EvalReport, EvalResult, Prediction, TemplateResult
from ltd_hub.files import atomic_write, sha256_file

# Formatting and scoring live in the module the comparison Space ships beside app.py, so the
# Space's choice probabilities are the softmax of exactly these scores (one implementation).
from ltd_hub.space.ltd_scoring import SCORING_METHODS, FormatError, PromptFormatter, score_choices  # noqa: F401

METRICS_DIR = Path(__file__).parent / "metrics"
SCORING_METHOD = "rank classification (sum of answer-token log-probs)"


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
) -> list[EvalResult]:
    """Rank-classification accuracy (and optional exact match) of a loaded model on eval sets.

    ``method`` is the scorer of :func:`score_choices` (``"shared"`` prefix, or ``"separate"``).

    Returns:
        One :class:`EvalResult` per eval set, with per-template results and one
        :class:`Prediction` per example.
    """
    accuracy = _load_metric("accuracy")
    em_metric = _load_metric("exact_match") if exact_match else None
    results = []
    for eval_set in eval_sets:
        try:
            scores = score_choices(model, formatter, eval_set.rows, batch_size=batch_size, progress=progress, method=method)
        except FormatError as exc:
            raise UsageError(str(exc)) from None
        generated = (
            generate_answers(model, formatter, eval_set.rows, batch_size=batch_size, max_new_tokens=max_new_tokens, progress=progress)
            if em_metric is not None  # an evaluate module is falsy (it has a zero __len__)
            else None
        )
        predictions = prediction_records(eval_set.rows, scores)
        templates = _template_results(eval_set, predictions, generated, accuracy, em_metric)
        results.append(_set_result(eval_set, templates, predictions, bootstrap=bootstrap, seed=seed))
    return results


def _template_results(
    eval_set: EvalSet, predictions: list[Prediction], generated: list[str] | None, accuracy: Any, em_metric: Any
) -> dict[str, TemplateResult]:
    """Accuracy (and exact match) of the rows of each template, in template order."""
    per_template = {}
    for template in eval_set.templates:
        idx = [i for i, r in enumerate(eval_set.rows) if r["template"] == template]
        result = TemplateResult(
            n=len(idx),
            accuracy=accuracy.compute(predictions=[predictions[i].prediction for i in idx], references=[predictions[i].gold for i in idx])[
                "accuracy"
            ],
        )
        if generated is not None:
            result.exact_match = em_metric.compute(
                predictions=[generated[i] for i in idx], references=[eval_set.rows[i]["target"] for i in idx]
            )["exact_match"]
        per_template[template] = result
    return per_template


def _set_result(
    eval_set: EvalSet, templates: dict[str, TemplateResult], predictions: list[Prediction], *, bootstrap: int, seed: int
) -> EvalResult:
    """One eval set's figures: mean and median over templates, the bootstrap interval of the mean."""
    accs = [t.accuracy for t in templates.values()]
    correct_by_template = [[int(p.correct) for p in predictions if p.template == template] for template in templates]
    low, high = bootstrap_interval(correct_by_template, resamples=bootstrap, seed=seed)
    has_em = any(t.exact_match is not None for t in templates.values())
    return EvalResult(
        name=eval_set.name,
        dataset_type=eval_set.dataset_type,
        dataset_revision=eval_set.revision,
        source=eval_set.source,
        n_examples=len(eval_set.rows),
        n_templates=len(templates),
        accuracy_mean=statistics.fmean(accs),
        accuracy_median=statistics.median(accs),
        ci_low=low,
        ci_high=high,
        exact_match=statistics.fmean(t.exact_match for t in templates.values()) if has_em else None,
        templates=templates,
        label_set=eval_set.label_set,
        skipped_templates=list(eval_set.skipped_templates),
        predictions=predictions,
    )


def prediction_records(rows: list[EvalRow], scores: list[list[float]]) -> list[Prediction]:
    """One :class:`Prediction` per eval row: the best-scoring choice, the gold one, the scores.

    ``index`` is the row's position in the eval set (file order after ``--templates`` and
    ``--max-examples``; two runs with the same eval settings list the same rows in the same order),
    ``row`` its line in the source file, ``id`` the example's id across templates (``source`` or
    ``id`` column, else the row number).
    """
    records = []
    for index, (row, row_scores) in enumerate(zip(rows, scores)):
        prediction = max(range(len(row_scores)), key=row_scores.__getitem__)
        records.append(
            Prediction(
                index=index,
                row=row.get("row", index),
                id=row.get("id", str(index)),
                template=row["template"],
                prediction=prediction,
                gold=row["gold"],
                correct=prediction == row["gold"],
                scores=[round(v, 4) for v in row_scores],
            )
        )
    return records


# --------------------------------------------------------------------------- the entry point


# Over 60 lines only by its keyword signature and Args docstring (the public API's reference, read
# whole); the body is a short sequence of named steps.
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
    _check_options(adapter, base_only=base_only, base_model=base_model, batch_size=batch_size, push=push)
    base_id, adapter_revision, summary = _resolve_adapter(adapter, base_model=base_model, revision=revision, token=token)
    eval_sets = load_eval_sets(list(eval_data), templates=templates, max_examples=max_examples, token=token)
    if push:
        _check_push_target(adapter, eval_sets, token)
    started = time.perf_counter()
    use_bf16 = _bf16(bf16)
    model, formatter = _load_model(base_id, None if base_only else adapter, adapter_revision, summary, bf16=use_bf16, token=token)
    results = evaluate_model(
        model, formatter, eval_sets, batch_size=batch_size, exact_match=exact_match, max_new_tokens=max_new_tokens,
        bootstrap=bootstrap, seed=seed, progress=progress,
    )  # fmt: skip
    settings = {
        "method": SCORING_METHOD,
        "templates": templates,
        "max_examples": max_examples,
        "bootstrap": bootstrap,
        "seed": seed,
        "bf16": use_bf16,
    }
    for r in results:
        r.settings, r.adapter_revision = settings, adapter_revision
    report = EvalReport(
        model=f"{base_id} (base)" if base_only else str(adapter),
        base_model=base_id,
        adapter=None if base_only else str(adapter),
        adapter_revision=adapter_revision,
        results=results,
        average=statistics.fmean(r.accuracy_mean for r in results),
        seconds=time.perf_counter() - started,
        settings=settings,
    )
    if push and not base_only:
        report.push = _push_results(adapter, results, summary, revision=adapter_revision, token=token)
    elif record and not base_only and _is_local(adapter):
        _record_locally(Path(adapter).expanduser(), results, summary)
    return report


def _is_local(adapter: str) -> bool:
    from ltd_hub.adapters import is_local

    return is_local(adapter)


def _check_options(adapter: str | None, *, base_only: bool, base_model: str | None, batch_size: int, push: bool) -> None:
    """Refuse option combinations that cannot work, before anything is read."""
    if adapter is None and not (base_only and base_model):
        raise UsageError("pass {adapter} REPO_OR_DIR (or {base_only} with {base_model} ID)", params=("adapter", "base_only", "base_model"))
    if batch_size < 1:
        raise UsageError(f"{{batch_size}} must be at least 1, got {batch_size}", params="batch_size")
    if push and base_only:
        raise UsageError("{push} records an adapter's results in its card; drop {push} with {base_only}", params=("push", "base_only"))
    if push and (adapter is None or _is_local(adapter)):
        raise UsageError(
            f"{{push}} needs {{adapter}} to be a Hub repo id; push the folder first with `ltd-hub push-adapter {adapter} --repo-id ...`",
            params=("push", "adapter"),
        )


def _resolve_adapter(
    adapter: str | None, *, base_model: str | None, revision: str | None, token: str | None
) -> tuple[str, str | None, dict[str, Any] | None]:
    """The base model id, the adapter repo's commit (None for a folder) and its training summary."""
    if adapter is None:
        return base_model, None, None
    from ltd_hub.adapters import read_adapter_config, read_training_summary
    from ltd_hub.hub import gateway as hub

    config = read_adapter_config(adapter, revision=revision, token=token)
    adapter_revision = None if _is_local(adapter) else hub.repo_head(adapter, repo_type="model", revision=revision, token=token)
    summary = read_training_summary(adapter, revision=adapter_revision, token=token)
    return base_model or config["base_model_name_or_path"], adapter_revision, summary


def _check_push_target(adapter: str, eval_sets: list[EvalSet], token: str | None) -> None:
    """The adapter repo can take the results, and no private eval set is named in a public card."""
    from ltd_hub.data.sources import is_hub_id
    from ltd_hub.hub import gateway as hub

    target = hub.preflight_push(adapter, "model", token)
    private_sets = hub.private_inputs([(e.source, "dataset") for e in eval_sets if is_hub_id(str(e.source))], token=token)
    if private_sets and target.private is False:
        raise UsageError(
            f"{adapter} is public and the eval data {', '.join(private_sets)} is private, so its name and scores "
            "would become visible; evaluate without {push}, or make the adapter repo private first",
            params="push",
        )


def _bf16(bf16: bool | None) -> bool:
    from ltd_hub.modeling import bf16_supported

    return bf16_supported() if bf16 is None else bf16


def _load_model(
    base_id: str, adapter: str | None, adapter_revision: str | None, summary: dict[str, Any] | None, *, bf16: bool, token: str | None
) -> tuple[Any, PromptFormatter]:
    """The base model (with the adapter unless ``adapter`` is None) in eval mode, and the prompt formatter it was trained with."""
    import torch

    from ltd_hub.modeling import load_base_model, load_tokenizer

    tokenizer = load_tokenizer(base_id, token=token)
    model = load_base_model(base_id, bf16=bf16, token=token)
    if adapter is not None:
        import functools

        from peft import PeftModel

        from ltd_hub.hub import gateway as hub

        source = str(Path(adapter).expanduser()) if _is_local(adapter) else adapter
        load = functools.partial(PeftModel.from_pretrained, model)
        model = hub.load_pretrained(load, source, what=f"downloading adapter {source}", revision=adapter_revision, token=token)
    if torch.cuda.is_available():
        model.to("cuda")
    model.eval()
    formatting = (summary or {}).get("formatting") or {}
    formatter = PromptFormatter(
        tokenizer, use_chat_template=formatting.get("use_chat_template", True), system_prompt=formatting.get("system_prompt")
    )
    return model, formatter


# --------------------------------------------------------------------------- recording results


def _tag_with_weights(results: list[EvalResult], sha: str | None) -> list[EvalResult]:
    return [dataclasses.replace(r, adapter_sha256=sha) for r in results]


def _weights_sha(repo_id: str, revision: str | None, token: str | None) -> str | None:
    from ltd_hub.adapters import WEIGHT_FILES
    from ltd_hub.hub import gateway as hub

    for name in WEIGHT_FILES:
        try:
            return sha256_file(hub.download(repo_id, name, repo_type="model", revision=revision, token=token))
        except MissingFileError:
            continue  # try the next weight file name; any other HubError stops: never record results against unknown weights
    return None


def _push_results(
    repo_id: str, results: list[EvalResult], summary: dict[str, Any] | None, *, revision: str | None, token: str | None
) -> Any:
    """Record ``results`` in the adapter repo's card and eval_results.json, in one commit."""
    from ltd_hub.adapters import EVAL_FILE, card_from_folder_or_repo, eval_results_json, merge_eval_results, read_eval_results
    from ltd_hub.hub import gateway as hub

    sha = _weights_sha(repo_id, revision, token)
    existing = [r for r in read_eval_results(repo_id, revision=revision, token=token) if r.adapter_sha256 == sha]
    # A re-run that measures the same thing keeps the recorded entry, so re-pushing makes no new commit
    # (only the repo head it was read at differs, and that moved because of the previous push).
    new = [next((old for old in existing if old.same_measurement(r)), r) for r in _tag_with_weights(results, sha)]
    merged = merge_eval_results(existing, new)
    card_text = hub.read_card_text(repo_id, "model", token=token)
    card = card_from_folder_or_repo(summary, repo_id=repo_id, eval_results=merged, existing_card=card_text)
    return hub.push_files(
        repo_id,
        {"README.md": card, EVAL_FILE: eval_results_json(merged)},
        repo_type="model",
        commit_message="Add evaluation results (ltd-hub)",
        token=token,
    )


def _record_locally(folder: Path, results: list[EvalResult], summary: dict[str, Any] | None) -> None:
    """Write ``results`` into a local adapter folder's eval_results.json and card."""
    from ltd_hub.adapters import EVAL_FILE, eval_results_json, merge_eval_results, read_eval_results, render_model_card, weights_sha256
    from ltd_hub.hub.cards import merge_card

    sha = weights_sha256(folder)
    existing = [r for r in read_eval_results(folder) if r.adapter_sha256 == sha]
    merged = merge_eval_results(existing, _tag_with_weights(results, sha))
    updates = {EVAL_FILE: eval_results_json(merged)}
    if summary is not None:
        readme = folder / "README.md"
        existing_card = readme.read_text(encoding="utf-8") if readme.is_file() else None
        updates["README.md"] = merge_card(existing_card, render_model_card(summary, eval_results=merged, existing_card=existing_card))
    for name, text in updates.items():
        atomic_write(folder / name, text)
