"""LoRA adapters on the Hub: load one in a call, push one with its model card, merge eval results.

An adapter folder (the ``--output-dir`` of ``ltd-hub train``) holds what peft writes
(``adapter_config.json``, ``adapter_model.safetensors``), the card (``README.md``),
``training_summary.json`` (what the card is rendered from) and, once evaluated,
``eval_results.json``. The card's ``model-index`` is always rebuilt from those files plus any
results someone else put in the card.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltd_hub.errors import MissingFileError, MissingRepoError, UsageError
from ltd_hub.files import sha256_file

if TYPE_CHECKING:
    from ltd_hub.evaluation.results import EvalResult

ADAPTER_CONFIG = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
from ltd_hub.constants import SUMMARY_FILE  # noqa: E402 - re-exported: adapters read and push it

EVAL_FILE = "eval_results.json"
TASK_TYPE = "text-classification"
TASK_NAME = "Natural Language Inference (rank classification)"


# --------------------------------------------------------------------------- reading adapters


def is_local(repo_id_or_dir: str | Path) -> bool:
    return Path(repo_id_or_dir).expanduser().is_dir()


def read_adapter_config(repo_id_or_dir: str | Path, *, revision: str | None = None, token: str | None = None) -> dict[str, Any]:
    """Return the adapter's ``adapter_config.json``; a repo or folder that is not a PEFT adapter is a UsageError."""
    from ltd_hub.hub import gateway as hub

    if is_local(repo_id_or_dir):
        path = Path(repo_id_or_dir).expanduser() / ADAPTER_CONFIG
        if not path.is_file():
            raise UsageError(
                f"{repo_id_or_dir} is not a PEFT adapter folder (no {ADAPTER_CONFIG}); pass the --output-dir of `ltd-hub train`"
            )
    else:
        try:
            path = hub.download(str(repo_id_or_dir), ADAPTER_CONFIG, repo_type="model", revision=revision, token=token)
        except MissingFileError:
            hint = hub.empty_repo_hint(str(repo_id_or_dir), "model", token)
            raise UsageError(
                f"{repo_id_or_dir} is not a PEFT adapter repo (no {ADAPTER_CONFIG}){hint}; pass an adapter pushed by `ltd-hub train`"
            ) from None
        except MissingRepoError:
            raise UsageError(
                f"adapter {repo_id_or_dir!r} not found: no such folder and no model repo on the Hub; check {{adapter}}",
                params="adapter",
            ) from None
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError:
        raise UsageError(f"{ADAPTER_CONFIG} of {repo_id_or_dir} is not valid JSON; re-run `ltd-hub train`") from None
    if not isinstance(config, dict) or "peft_type" not in config or not config.get("base_model_name_or_path"):
        raise UsageError(f"{repo_id_or_dir} is not a PEFT adapter ({ADAPTER_CONFIG} lacks peft_type or base_model_name_or_path)")
    return config


def _read_optional_json(repo_id_or_dir: str | Path, filename: str, *, revision: str | None, token: str | None) -> Any:
    from ltd_hub.hub import gateway as hub

    if is_local(repo_id_or_dir):
        path = Path(repo_id_or_dir).expanduser() / filename
        if not path.is_file():
            return None
    else:
        try:
            path = hub.download(str(repo_id_or_dir), filename, repo_type="model", revision=revision, token=token)
        except MissingFileError:
            return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError:
        return None


def read_training_summary(repo_id_or_dir: str | Path, *, revision: str | None = None, token: str | None = None) -> dict[str, Any] | None:
    """The ``training_summary.json`` that ``ltd-hub train`` wrote next to the adapter, or None."""
    return _read_optional_json(repo_id_or_dir, SUMMARY_FILE, revision=revision, token=token)


def read_eval_results(repo_id_or_dir: str | Path, *, revision: str | None = None, token: str | None = None) -> list[EvalResult]:
    """The adapter's recorded eval results (``eval_results.json``), newest version of each eval set.

    An entry that is not a readable result (hand-edited, another tool's) is left out.
    """
    from ltd_hub.evaluation.results import EvalResult

    data = _read_optional_json(repo_id_or_dir, EVAL_FILE, revision=revision, token=token)
    results = []
    for entry in data.get("results", []) if isinstance(data, dict) else []:
        try:
            results.append(EvalResult.from_dict(entry))
        except (AttributeError, KeyError, TypeError):
            continue
    return results


def eval_results_json(results: Sequence[EvalResult]) -> str:
    """The text of ``eval_results.json`` holding ``results``."""
    return json.dumps({"results": [r.to_dict() for r in results]}, indent=2) + "\n"


def load_adapter(
    repo_id_or_dir: str | Path,
    *,
    revision: str | None = None,
    token: str | None = None,
    dtype: Any = None,
    device: str | None = None,
) -> tuple[Any, Any]:
    """Load a LoRA adapter and its base model in one call.

    The base model id comes from the adapter's ``adapter_config.json``; the tokenizer is the base
    model's (it carries the chat template the adapter was trained with).

    Args:
        repo_id_or_dir: a Hub model repo id or a local adapter folder.
        revision: branch, tag or commit of the adapter repo.
        token: Hub token for private repos.
        dtype: torch dtype of the base weights (default: as stored in the checkpoint).
        device: e.g. ``"cuda"``; default CPU.

    Returns:
        ``(peft.PeftModel in eval mode, tokenizer)``.

    Example:
        >>> model, tokenizer = load_adapter("ltd-tester/smollm2-nli-coreset")  # doctest: +SKIP
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ltd_hub.hub import gateway as hub
    from ltd_hub.modeling import load_tokenizer

    config = read_adapter_config(repo_id_or_dir, revision=revision, token=token)
    base_id = config["base_model_name_or_path"]
    tokenizer = load_tokenizer(base_id, token=token)
    try:
        base = hub.load_pretrained(
            AutoModelForCausalLM, base_id, what=f"downloading base model {base_id}", dtype=dtype or "auto", token=token
        )
    except Exception as exc:  # noqa: BLE001
        raise UsageError(
            f"base model {base_id!r} of adapter {repo_id_or_dir} could not be loaded ({' '.join(str(exc).split())[:160]})"
        ) from None
    source = str(Path(repo_id_or_dir).expanduser()) if is_local(repo_id_or_dir) else str(repo_id_or_dir)
    model = hub.load_pretrained(
        partial(PeftModel.from_pretrained, base), source, what=f"downloading adapter {source}", revision=revision, token=token
    )
    if device:
        model.to(device)
    model.eval()
    return model, tokenizer


# --------------------------------------------------------------------------- eval results <-> model-index


def merge_eval_results(old: Sequence[EvalResult], new: Sequence[EvalResult]) -> list[EvalResult]:
    """New results replace old ones of the same eval set (and same adapter weights); order is kept."""
    replaced = {r.name for r in new}
    return [r for r in old if r.name not in replaced] + list(new)


def eval_results_to_card(results: Sequence[EvalResult]) -> list[Any]:
    """Our eval results as huggingface_hub ``EvalResult`` objects (one per eval set and metric)."""
    from huggingface_hub import EvalResult

    out = []
    for r in results:
        common = {
            "task_type": TASK_TYPE,
            "task_name": TASK_NAME,
            "dataset_type": r.dataset_type or r.name,
            "dataset_name": r.name,
            "dataset_split": r.extra.get("split"),
            "dataset_revision": r.dataset_revision,
        }
        out.append(
            EvalResult(
                **common,
                metric_type="accuracy",
                metric_value=round(float(r.accuracy_mean), 4),
                metric_name="Accuracy (mean over templates)",
            )
        )
        if r.exact_match is not None:
            out.append(
                EvalResult(**common, metric_type="exact_match", metric_value=round(float(r.exact_match), 4), metric_name="Exact match")
            )
    return out


def _foreign_eval_results(card_text: str | None, ours: list[Any]) -> list[Any]:
    """Results in an existing card's model-index that ltd-hub did not write (someone else's): kept."""
    if not card_text:
        return []
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from ltd_hub.hub.cards import split_card

    try:
        model_index = split_card(card_text)[0].get("model-index")
        if not model_index:
            return []
        _, existing = model_index_to_eval_results(model_index)
    except Exception:  # noqa: BLE001 - a malformed model-index from elsewhere is replaced, not fatal
        return []
    return [
        e
        for e in existing
        # Entries with our task name are ltd-hub's own: rebuilt from eval_results.json, never kept stale.
        if e.task_name != TASK_NAME and not any(e.is_equal_except_value(o) for o in ours)
    ]


# --------------------------------------------------------------------------- the model card


def _ratio_text(train_rows: int, n_task_rows: Any) -> str:
    try:
        return f"{100 * train_rows / int(n_task_rows):.3g}%"
    except (TypeError, ValueError, ZeroDivisionError):
        return "unknown"


def training_seen(summary: dict[str, Any]) -> dict[str, Any] | None:
    """What the training actually saw: steps, rows per step, rows seen and epochs (None when unknown).

    Rows seen count repeats (``steps`` x the effective batch); ``epochs`` is rows seen over the
    training rows, so a short run on a large file reads as, e.g., 0.12 epochs and ``partial``.

    Example:
        >>> training_seen({"dataset": {"train_rows": 2000}, "training": {"steps": 30, "world_size": 1},
        ...                "hyperparameters": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1}})
        {'steps': 30, 'batch': 8, 'rows_seen': 240, 'epochs': '0.12', 'partial': True}
    """
    hyper, training = summary.get("hyperparameters") or {}, summary.get("training") or {}
    rows = (summary.get("dataset") or {}).get("train_rows")
    try:
        steps = int(training["steps"])
        batch = int(hyper["per_device_train_batch_size"]) * int(hyper.get("gradient_accumulation_steps") or 1)
        batch *= int(training.get("world_size") or 1)
        rows = int(rows)
    except (KeyError, TypeError, ValueError):
        return None
    if rows <= 0:
        return None
    rows_seen = steps * batch
    return {"steps": steps, "batch": batch, "rows_seen": rows_seen, "epochs": f"{rows_seen / rows:.3g}", "partial": rows_seen < rows}


def render_model_card(
    summary: dict[str, Any],
    *,
    repo_id: str | None = None,
    eval_results: Sequence[EvalResult] | None = None,
    existing_card: str | None = None,
) -> str:
    """Render ``cards/model_card.md.j2`` from a training summary and eval results.

    Args:
        summary: the ``training_summary.json`` written by :func:`ltd_hub.train`.
        repo_id: the adapter's Hub repo (used in the load snippet and the model-index name).
        eval_results: our recorded eval results (``eval_results.json`` entries).
        existing_card: the current README of the repo; model-index entries not written by ltd-hub are kept.

    Returns:
        README.md text (YAML front matter + our generated block).

    Example:
        >>> text = render_model_card(summary, repo_id="me/smollm2-nli-coreset")  # doctest: +SKIP
    """
    from huggingface_hub.repocard_data import eval_results_to_model_index

    from ltd_hub.hub.cards import render_card

    eval_results = list(eval_results or [])
    base_model = summary.get("base_model")
    dataset = summary["dataset"]
    selection = dataset.get("selection") or {}
    model_name = (repo_id or "ltd-hub-adapter").split("/")[-1]
    card_data = _card_data(summary)
    all_results = _card_eval_results(eval_results, existing_card)
    if all_results:
        card_data["model-index"] = eval_results_to_model_index(model_name, all_results)
    ratio_text = _ratio_text(dataset.get("train_rows", 0), selection.get("n_task_rows"))
    return render_card(
        "model_card.md.j2",
        card_data,
        title=f"{model_name}: LoRA adapter{' for ' + base_model if base_model else ''}",
        base_model=base_model,
        base_model_path=summary.get("base_model_path"),
        dataset=dataset,
        selection=selection,
        selection_phrase=_selection_phrase(selection, ratio_text),
        ratio_text=ratio_text,
        seen=training_seen(summary),
        formatting=summary.get("formatting") or {},
        hyperparameters=summary.get("hyperparameters") or {},
        training=summary.get("training") or {},
        results=eval_results,
        has_exact_match=any(r.exact_match is not None for r in eval_results),
        load_id=repo_id or "PATH/TO/ADAPTER",
    )


def _card_data(summary: dict[str, Any]) -> dict[str, Any]:
    """The model card's front matter, the model-index aside: library, base model, dataset, license, tags."""
    base_model = summary.get("base_model")
    dataset = summary["dataset"]
    selection = dataset.get("selection") or {}
    strategy, ratio = selection.get("strategy"), selection.get("ratio")
    tags = ["ltd-hub", "lora", "peft", "instruction-tuning"]
    if base_model:
        tags.append(f"base_model:adapter:{base_model}")
    if strategy:
        tags.append(f"ltd-strategy:{strategy}")
    if ratio is not None:
        tags.append(f"ltd-ratio:{ratio}")
    card_data: dict[str, Any] = {"library_name": "peft"}
    if base_model:
        card_data["base_model"] = base_model
        # Without it the Hub guesses the relation from the files; an adapter says so outright.
        card_data["base_model_relation"] = "adapter"
    if dataset.get("repo_id"):
        card_data["datasets"] = [dataset["repo_id"]]
    card_data["pipeline_tag"] = "text-generation"
    if summary.get("license"):
        card_data["license"] = summary["license"]
    card_data["tags"] = tags
    return card_data


def _card_eval_results(eval_results: Sequence[EvalResult], existing_card: str | None) -> list[Any]:
    """What the card's ``model-index`` lists: our results plus those someone else put in the existing card."""
    ours = eval_results_to_card(eval_results)
    return ours + _foreign_eval_results(existing_card, ours)


def _selection_phrase(selection: dict[str, Any], ratio_text: str) -> str:
    strategy = selection.get("strategy")
    phrase = f"{ratio_text} coreset" if selection.get("n_task_rows") else "coreset"
    if strategy in ("random",):
        phrase = phrase.replace("coreset", "uniform random subset")
    return f"{phrase} of its task data chosen by `{strategy}` selection" if strategy else phrase


def card_from_folder_or_repo(
    summary: dict[str, Any] | None, *, repo_id: str, eval_results: Sequence[EvalResult], existing_card: str | None
) -> str:
    """The card for a results update: full card with a summary, else only the model-index + results block."""
    if summary is not None:
        return render_model_card(summary, repo_id=repo_id, eval_results=eval_results, existing_card=existing_card)
    from huggingface_hub.repocard_data import eval_results_to_model_index

    from ltd_hub.evaluation.results import results_table
    from ltd_hub.hub.cards import BLOCK_END, BLOCK_START, join_card

    body = f"{BLOCK_START}\n## Evaluation results (ltd-hub)\n\n{results_table(eval_results, exact_match=False)}\n{BLOCK_END}\n"
    meta = {"model-index": eval_results_to_model_index(repo_id.split("/")[-1], _card_eval_results(eval_results, existing_card))}
    return join_card(meta, body)


# --------------------------------------------------------------------------- pushing


def private_training_data(summary: dict[str, Any] | None, *, token: str | None = None) -> list[str]:
    """The private repos an adapter's training data derives from.

    Those ``ltd-hub train`` recorded in the summary (``dataset.private_sources``: the dataset repo
    and the Hub source its selection manifest names, as they were when training read them), plus
    the dataset repo if it is private now.
    """
    from ltd_hub.hub import gateway as hub

    dataset = (summary or {}).get("dataset") or {}
    recorded = [str(r) for r in dataset.get("private_sources") or [] if r]
    live = hub.private_inputs([(dataset["repo_id"], "dataset")], token=token) if dataset.get("repo_id") else []
    return list(dict.fromkeys(recorded + live))


def weights_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise UsageError(f"{folder} has no adapter weights ({' or '.join(WEIGHT_FILES)}); pass the --output-dir of `ltd-hub train`")


def weights_sha256(folder: Path) -> str:
    return sha256_file(weights_file(folder))


def push_adapter(
    adapter_dir: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
) -> Any:
    """Push a trained adapter folder with its model card to a Hub model repo, in one commit.

    Checks the folder is a PEFT adapter with a Hub base model, pre-flights the push, renders the
    card for ``repo_id`` (keeping eval results already on the Hub for these same weights, and
    results someone else added to the card) and pushes weights, config, card and summaries.
    Re-pushing the same folder makes no new commit.

    Args:
        adapter_dir: the ``--output-dir`` of ``ltd-hub train``.
        repo_id: ``NAMESPACE/NAME`` of the model repo (created if needed).
        token: Hub token (default: the one huggingface_hub finds).
        private: None (default) inherits: private when the training data was private (recorded in
            ``training_summary.json`` by :func:`ltd_hub.train`, and its dataset repo checked again now),
            else the Hub's default (public); True makes it private; False publishes it anyway (one line
            says so). See :func:`ltd_hub.hub.gateway.derived_visibility`.
        commit_message: default "Add LoRA adapter (ltd-hub)".

    Returns:
        :class:`ltd_hub.hub.gateway.PushResult`.

    Example:
        >>> push_adapter("runs/coreset", "me/smollm2-nli-coreset")  # doctest: +SKIP
    """
    from ltd_hub.hub import gateway as hub

    folder = Path(adapter_dir).expanduser()
    config, weights, summary = _check_adapter_folder(folder)
    target = hub.preflight_push(repo_id, "model", token)
    private = hub.derived_visibility(target, private, private_training_data(summary, token=token))
    remote_card = hub.read_card_text(target.repo_id, "model", token=token) if target.exists else None
    results = _results_to_push(folder, target.repo_id if target.exists else None, token)
    files: dict[str, Any] = {ADAPTER_CONFIG: folder / ADAPTER_CONFIG, weights.name: weights}
    if summary is not None:
        files[SUMMARY_FILE] = folder / SUMMARY_FILE
        card = render_model_card(summary, repo_id=target.repo_id, eval_results=results, existing_card=remote_card)
    elif results:
        card = card_from_folder_or_repo(None, repo_id=target.repo_id, eval_results=results, existing_card=remote_card)
    else:
        card = (folder / "README.md").read_text(encoding="utf-8") if (folder / "README.md").is_file() else None
    if card is not None:
        files["README.md"] = card
    if results:
        files[EVAL_FILE] = eval_results_json(results)
    return hub.push_files(
        target.repo_id,
        files,
        repo_type="model",
        commit_message=commit_message or "Add LoRA adapter (ltd-hub)",
        token=token,
        private=private,
    )


def _check_adapter_folder(folder: Path) -> tuple[dict[str, Any], Path, dict[str, Any] | None]:
    """An adapter folder's config, weights file and training summary; one that others could not load is refused."""
    if not folder.is_dir():
        raise UsageError(f"adapter folder {folder} not found; pass the --output-dir of `ltd-hub train`")
    config = read_adapter_config(folder)
    weights = weights_file(folder)
    summary = read_training_summary(folder)
    base_ref = str(config["base_model_name_or_path"])
    if (summary is not None and not summary.get("base_model")) or Path(base_ref).is_absolute() or Path(base_ref).expanduser().exists():
        raise UsageError(
            f"the adapter in {folder} was trained on a local base model folder ({config['base_model_name_or_path']}); "
            "re-train with --base-model set to a Hub id so the pushed adapter can be loaded by others"
        )
    return config, weights, summary


def _results_to_push(folder: Path, repo_id: str | None, token: str | None) -> list[EvalResult]:
    """The folder's eval results, after those already in the repo (``repo_id``; None: a new repo) for these weights."""
    sha = weights_sha256(folder)
    local = [dataclasses.replace(r, adapter_sha256=r.adapter_sha256 or sha) for r in read_eval_results(folder)]
    # Results on the Hub stay only if they were measured on these very weights.
    remote = [r for r in read_eval_results(repo_id, token=token) if r.adapter_sha256 == sha] if repo_id else []
    return merge_eval_results(remote, local)
