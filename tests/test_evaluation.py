"""`ltd-hub evaluate`: rank classification, templates, bootstrap intervals, results in the card."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml
from conftest import LTD_NLI, TEST_USER
from helpers import one_error_line, train_tiny_adapter

from ltd_hub.cli.main import main
from ltd_hub.data.eval_sets import load_eval_sets
from ltd_hub.evaluation.evaluator import bootstrap_interval, score_choices
from ltd_hub.modeling import PromptFormatter

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

RTE = LTD_NLI / "eval" / "rte.jsonl.gz"
ANLI_R1 = LTD_NLI / "eval" / "anli_r1.jsonl.gz"


@pytest.fixture(scope="module")
def tiny_adapter_dir(tiny_model_id, tmp_path_factory) -> Path:
    """A LoRA adapter trained for two steps on pool rows (local folder with summary and card)."""
    return train_tiny_adapter(tiny_model_id, tmp_path_factory.mktemp("eval-adapter"))


@pytest.fixture
def small_eval(tmp_path, ltd_nli) -> Path:
    """12 RTE rows: the first 6 examples of the first 2 templates."""
    sets = load_eval_sets([str(RTE)], templates=2, max_examples=6)
    path = tmp_path / "rte.jsonl"
    with gzip.open(RTE, "rt", encoding="utf-8") as handle:
        raw = [json.loads(line) for line in handle]
    keep = {(r["inputs"], r["template"]) for r in sets[0].rows}
    path.write_text("".join(json.dumps(r) + "\n" for r in raw if (r["inputs"], r["template_name"]) in keep), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- data and statistics


def test_eval_sets_are_named_by_file_and_subsampled_per_template(ltd_nli):
    sets = load_eval_sets([str(RTE), str(ANLI_R1)], templates=3, max_examples=5)
    assert [s.name for s in sets] == ["rte", "anli_r1"]
    assert sets[0].dataset_type == "super_glue/rte" and sets[1].dataset_type == "anli"
    for eval_set in sets:
        assert len(eval_set.templates) == 3 and len(eval_set.rows) == 15
        first = [r["inputs"] for r in eval_set.rows if r["template"] == eval_set.templates[0]]
        assert len(first) == 5
        assert all(r["choices"][r["gold"]].strip() == r["target"].strip() for r in eval_set.rows)


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        ([{"inputs": "x", "targets": "Yes"}], "no answer_choices column"),
        ([{"inputs": "x", "targets": "Maybe", "answer_choices": ["Yes", "No"]}], "is not one of answer_choices"),
        ([{"inputs": "x", "targets": "Yes", "answer_choices": ["Yes"]}], "at least 2 answers"),
        ([{"prompt": "x", "targets": "Yes", "answer_choices": ["Yes", "No"]}], "no 'inputs' column"),
        # An empty answer is scored by its end-of-turn tokens alone and would always win.
        ([{"inputs": "x", "targets": "Yes", "answer_choices": ["Yes", ""]}], "holds an empty answer"),
        ([{"inputs": "x", "targets": "Yes", "answer_choices": ["Yes", " "]}], "holds an empty answer"),
        ([{"inputs": "x", "targets": "Yes", "answer_choices": ["Yes", None]}], "holds an empty answer"),
        # A null prompt must not be scored as the text "None".
        (
            [
                {"inputs": "a", "targets": "Yes", "answer_choices": ["Yes", "No"]},
                {"inputs": None, "targets": "Yes", "answer_choices": ["Yes", "No"]},
            ],
            "row 1: inputs is empty or null",
        ),
        ([{"inputs": None, "targets": "None", "answer_choices": ["None", "No"]}], "row 0: inputs is empty or null"),
        ([{"inputs": "x", "targets": None, "answer_choices": ["None", "No"]}], "targets is null"),
    ],
)
def test_bad_eval_data_is_one_line_and_loads_no_model(tmp_path, capsys, monkeypatch, tiny_adapter_dir, rows, needle):
    from ltd_hub import modeling

    monkeypatch.setattr(modeling, "load_base_model", lambda *a, **k: pytest.fail("must not load the model"))
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["evaluate", "--adapter", str(tiny_adapter_dir), "--eval-data", str(path)]) == 2
    assert needle in one_error_line(capsys.readouterr().err)


def test_missing_eval_file_and_non_adapter_repo_are_one_line(tmp_path, capsys, tiny_model_id, tiny_adapter_dir):
    assert main(["evaluate", "--adapter", str(tiny_adapter_dir), "--eval-data", str(tmp_path / "nope.jsonl")]) == 2
    assert "not found" in one_error_line(capsys.readouterr().err)
    # A model repo without adapter_config.json (the base model itself) is not an adapter.
    assert main(["evaluate", "--adapter", tiny_model_id, "--eval-data", str(RTE), "--push"]) == 2
    assert "is not a PEFT adapter" in one_error_line(capsys.readouterr().err)
    assert main(["evaluate", "--adapter", str(tiny_adapter_dir), "--eval-data", str(RTE), "--push"]) == 2
    assert "--push needs --adapter to be a Hub repo id" in one_error_line(capsys.readouterr().err)
    assert main(["evaluate", "--adapter", f"{TEST_USER}/no-such-adapter", "--eval-data", str(RTE)]) == 2
    assert "not found" in one_error_line(capsys.readouterr().err)


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_data():
    import random

    rng = random.Random(0)
    small = [[int(rng.random() < 0.7) for _ in range(20)] for _ in range(3)]
    large = [[int(rng.random() < 0.7) for _ in range(2000)] for _ in range(3)]
    mean_small = sum(sum(t) / len(t) for t in small) / 3
    low, high = bootstrap_interval(small, seed=1)
    assert low <= mean_small <= high
    assert bootstrap_interval(small, seed=1) == (low, high)  # deterministic per seed
    low_l, high_l = bootstrap_interval(large, seed=1)
    assert high_l - low_l < (high - low) / 3
    assert bootstrap_interval([[1, 1, 1]], seed=0) == (1.0, 1.0)


RECORDED = {
    "name": "rte", "dataset_type": "super_glue/rte", "dataset_revision": "a" * 40, "source": "rte.jsonl.gz", "n_examples": 12,
    "n_templates": 2, "accuracy_mean": 0.5, "accuracy_median": 0.5, "ci_low": 0.25, "ci_high": 0.75, "exact_match": 0.25,
    "templates": {"t1": {"n": 6, "accuracy": 0.5, "exact_match": 0.5}, "t2": {"n": 6, "accuracy": 0.5, "exact_match": 0.0}},
    "label_set": ["no", "yes"], "skipped_templates": ["t3"], "settings": {"templates": 2, "seed": 0}, "adapter_revision": None,
    "adapter_sha256": "b" * 64, "split": "validation",
}  # fmt: skip


def test_an_eval_result_writes_back_the_json_it_was_read_from():
    from ltd_hub.evaluation.results import EvalResult

    result = EvalResult.from_dict(RECORDED)
    assert json.dumps(result.to_dict()) == json.dumps(RECORDED)  # same keys, same order: eval_results.json does not churn
    assert result.templates["t2"].exact_match == 0.0 and result.extra == {"split": "validation"}
    measured = {k: v for k, v in RECORDED.items() if k not in ("settings", "adapter_revision", "adapter_sha256", "split")}
    assert json.dumps(EvalResult.from_dict(measured).to_dict()) == json.dumps(measured)


def test_one_table_renders_every_results_table():
    from ltd_hub.evaluation.results import EvalReport, EvalResult, results_table

    with_em = EvalResult.from_dict(RECORDED)
    without = EvalResult.from_dict({**RECORDED, "name": "anli", "exact_match": None, "templates": {}})
    table = results_table([with_em, without]).splitlines()
    assert table[0] == "| Eval set | Examples | Templates | Accuracy (mean) | Median | 95% CI | Exact match |"
    assert table[2] == "| rte | 12 | 2 | 0.5000 | 0.5000 | 0.2500 – 0.7500 | 0.2500 |"
    assert table[3] == "| anli | 12 | 2 | 0.5000 | 0.5000 | 0.2500 – 0.7500 | |"  # no exact match: an empty cell
    assert "Exact match" not in results_table([with_em], exact_match=False)
    report = EvalReport("m", "b", "a", None, [with_em, without], 0.5, 1.0).to_markdown(per_template=True)
    assert report.startswith("\n".join(table)) and "| rte | t2 | 6 | 0.5000 |" in report


def test_metric_modules_load_by_path_offline(monkeypatch):
    from ltd_hub.evaluation.evaluator import _load_metric

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _load_metric("accuracy").compute(predictions=[0, 1, 1, 2], references=[0, 1, 0, 2]) == {"accuracy": 0.75}
    assert _load_metric("exact_match").compute(predictions=["True.", " no"], references=["true", "Yes"]) == {"exact_match": 0.5}


# --------------------------------------------------------------------------- scoring


def _fp32_model(model_id: str, attn: str = "sdpa"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id)
    return AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.float32, attn_implementation=attn).eval(), tokenizer


def _max_abs_diff(a: list[list[float]], b: list[list[float]]) -> float:
    assert [len(r) for r in a] == [len(r) for r in b]
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


@pytest.mark.parametrize("method", ["shared", "separate"])
def test_batched_scores_equal_one_by_one_scores(tiny_model_id, ltd_nli, method):
    """Batching, padding, position ids, logits_to_keep and the shared KV cache must not change any score."""
    import torch

    model, tokenizer = _fp32_model(tiny_model_id)
    formatter = PromptFormatter(tokenizer)
    rows = load_eval_sets([str(RTE)], templates=3, max_examples=2)[0].rows
    batched = score_choices(model, formatter, rows, batch_size=5, progress=False, method=method)
    for row, scores in zip(rows, batched):
        for choice, score in zip(row["choices"], scores):
            prompt_ids, answer_ids = formatter.encode(row["inputs"], choice)
            ids = torch.tensor([prompt_ids + answer_ids])
            with torch.no_grad():
                logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
            expected = sum(logprobs[len(prompt_ids) - 1 + i, t].item() for i, t in enumerate(answer_ids))
            assert score == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(("chat", "attn"), [(True, "sdpa"), (False, "sdpa"), (True, "eager")])
def test_shared_prefix_scores_equal_separate_scores(tiny_model_id, ltd_nli, chat, attn):
    """2- and 3-choice sets, ragged batches, several templates; without the chat template the
    prompts share no prefix (and a one-token prompt goes the separate way); eager attention takes
    the packed choices' mask as an additive one."""
    model, tokenizer = _fp32_model(tiny_model_id, attn)
    formatter = PromptFormatter(tokenizer, use_chat_template=chat)
    rows = (
        load_eval_sets([str(RTE)], templates=3, max_examples=3)[0].rows
        + load_eval_sets([str(ANLI_R1)], templates=2, max_examples=3)[0].rows
    )
    rows.append({"inputs": "\n", "choices": ["no", "maybe so", "yes"], "gold": 2, "template": "t"})  # "\n\n": one token
    separate = score_choices(model, formatter, rows, batch_size=4, progress=False, method="separate")
    for batch_size in (1, 4, 64):
        shared = score_choices(model, formatter, rows, batch_size=batch_size, progress=False, method="shared")
        assert _max_abs_diff(shared, separate) < 1e-4
    with pytest.raises(ValueError, match="method must be one of"):
        score_choices(model, formatter, rows, method="fast")


def test_a_choice_whose_prompt_tokens_differ_is_scored_on_its_own(tiny_model_id, ltd_nli):
    """A formatter that tokenises across the prompt/answer boundary: that choice takes the separate path."""
    model, tokenizer = _fp32_model(tiny_model_id)

    class BoundaryFormatter(PromptFormatter):
        def encode_batch(self, prompts, answers):
            prompt_ids, answer_ids = super().encode_batch(prompts, answers)
            # The second choice's last prompt token is merged into its answer.
            return [p[:-1] if a and i == 1 else p for i, (p, a) in enumerate(zip(prompt_ids, answer_ids))], [
                p[-1:] + a if a and i == 1 else a for i, (p, a) in enumerate(zip(prompt_ids, answer_ids))
            ]

    formatter = BoundaryFormatter(tokenizer)
    rows = load_eval_sets([str(ANLI_R1)], templates=1, max_examples=4)[0].rows
    separate = score_choices(model, formatter, rows, batch_size=3, progress=False, method="separate")
    shared = score_choices(model, formatter, rows, batch_size=3, progress=False, method="shared")
    assert _max_abs_diff(shared, separate) < 1e-4


def test_shared_prefix_scores_a_peft_model_like_separate(tiny_adapter_dir, tiny_model_id, ltd_nli):
    from peft import PeftModel

    model, tokenizer = _fp32_model(tiny_model_id)
    model = PeftModel.from_pretrained(model, str(tiny_adapter_dir)).eval()
    formatter = PromptFormatter(tokenizer)
    rows = load_eval_sets([str(RTE)], templates=2, max_examples=3)[0].rows
    separate = score_choices(model, formatter, rows, batch_size=4, progress=False, method="separate")
    assert _max_abs_diff(score_choices(model, formatter, rows, batch_size=4, progress=False), separate) < 1e-4


@pytest.mark.slow
def test_shared_prefix_scores_equal_separate_scores_on_smollm2(seeded_hub, ltd_nli):
    """The real base model (30 layers, GQA) in fp32: the 1e-4 bound holds there too."""
    from model_fixtures import BASE_MODEL_ID

    model, tokenizer = _fp32_model(BASE_MODEL_ID)
    formatter = PromptFormatter(tokenizer)
    rows = (
        load_eval_sets([str(RTE)], templates=1, max_examples=6)[0].rows
        + load_eval_sets([str(ANLI_R1)], templates=1, max_examples=4)[0].rows
    )
    separate = score_choices(model, formatter, rows, batch_size=8, progress=False, method="separate")
    shared = score_choices(model, formatter, rows, batch_size=8, progress=False, method="shared")
    assert _max_abs_diff(shared, separate) < 1e-4


# --------------------------------------------------------------------------- the command


def test_evaluate_local_adapter_records_results_in_the_folder(tiny_adapter_dir, small_eval, tmp_path, capsys):
    report_file = tmp_path / "report.json"
    assert main(["evaluate", "--adapter", str(tiny_adapter_dir), "--eval-data", str(small_eval), "--exact-match",
                 "--max-new-tokens", "3", "--per-template", "--output", str(report_file)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "| rte | 12 | 2 |" in out and "Average over eval sets" in out
    report = json.loads(report_file.read_text())
    result = report["results"][0]
    assert result["n_examples"] == 12 and result["n_templates"] == 2
    accs = [t["accuracy"] for t in result["templates"].values()]
    assert result["accuracy_mean"] == pytest.approx(sum(accs) / 2)
    assert 0 <= result["ci_low"] <= result["accuracy_mean"] <= result["ci_high"] <= 1
    assert result["exact_match"] is not None
    # Every example's prediction, for paired comparisons between models; not in the card's results.
    records = report["predictions"]["rte"]
    assert [r["index"] for r in records] == list(range(12)) and "predictions" not in result
    assert {r["template"] for r in records} == set(result["templates"])
    assert len({(r["id"], r["template"]) for r in records}) == 12
    for r in records:
        assert r["correct"] == (r["prediction"] == r["gold"]) and len(r["scores"]) == 2
        assert r["prediction"] == max(range(2), key=r["scores"].__getitem__)
    for name, t in result["templates"].items():
        correct = [r["correct"] for r in records if r["template"] == name]
        assert len(correct) == t["n"] and sum(correct) / len(correct) == pytest.approx(t["accuracy"])
    recorded = json.loads((tiny_adapter_dir / "eval_results.json").read_text())["results"]
    assert "predictions" not in recorded[0]
    assert [r["name"] for r in recorded] == ["rte"] and recorded[0]["adapter_sha256"]
    meta = yaml.safe_load((tiny_adapter_dir / "README.md").read_text().split("---")[1])
    metrics = meta["model-index"][0]["results"][0]["metrics"]
    assert metrics[0]["type"] == "accuracy" and metrics[0]["value"] == round(result["accuracy_mean"], 4)


def test_base_only_evaluates_the_base_model_and_refuses_push(tiny_adapter_dir, small_eval, capsys):
    assert main(["evaluate", "--adapter", str(tiny_adapter_dir), "--eval-data", str(small_eval), "--base-only", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["adapter"] is None and data["model"].endswith("(base)") and data["results"][0]["n_examples"] == 12
    assert main(["evaluate", "--adapter", str(tiny_adapter_dir), "--eval-data", str(small_eval), "--base-only", "--push"]) == 2
    assert "drop --push with --base-only" in one_error_line(capsys.readouterr().err)


def test_evaluate_push_adds_results_to_the_card_in_a_new_commit(tiny_adapter_dir, small_eval, tmp_path, capsys):
    from huggingface_hub import HfApi, ModelCard

    from ltd_hub.hub import gateway as hub
    from ltd_hub.hub.cards import BLOCK_END

    repo = f"{TEST_USER}/tiny-adapter-eval"
    assert main(["push-adapter", str(tiny_adapter_dir), "--repo-id", repo]) == 0
    # Someone adds their own text and their own result to the card.
    card = hub.read_card_text(repo, "model")
    meta_text, body = card.split("---", 2)[1:]
    meta = yaml.safe_load(meta_text)
    meta["model-index"] = [{"name": "x", "results": [{"task": {"type": "text-generation"}, "dataset": {"type": "mmlu", "name": "MMLU"},
                                                      "metrics": [{"type": "accuracy", "value": 0.25}]}]}]  # fmt: skip
    user_card = "---\n" + yaml.safe_dump(meta) + "---" + body.replace(BLOCK_END, BLOCK_END + "\n\nMy own notes.")
    HfApi().upload_file(path_or_fileobj=user_card.encode(), path_in_repo="README.md", repo_id=repo, commit_message="user edit")
    before = len(HfApi().list_repo_commits(repo))
    capsys.readouterr()

    anli = tmp_path / "anli_r1.jsonl"
    with gzip.open(ANLI_R1, "rt", encoding="utf-8") as handle:
        anli.write_text("".join(line for _, line in zip(range(4), handle)))
    assert main(["evaluate", "--adapter", repo, "--eval-data", str(small_eval), str(anli), "--push"]) == 0
    assert "results recorded in" in capsys.readouterr().out
    assert len(HfApi().list_repo_commits(repo)) == before + 1
    card = ModelCard(hub.read_card_text(repo, "model"))
    names = {(r.dataset_name, r.metric_type) for r in card.data.eval_results}
    assert {("rte", "accuracy"), ("anli_r1", "accuracy"), ("MMLU", "accuracy")} <= names
    assert "My own notes." in card.text and "| rte | 12 | 2 |" in card.text and "| anli_r1 | 4 | 1 |" in card.text
    assert card.data.base_model and card.data.library_name == "peft"
    recorded = json.loads(hub.download(repo, "eval_results.json", repo_type="model").read_text())["results"]
    assert {r["name"] for r in recorded} == {"rte", "anli_r1"}
    # A second evaluation of one set replaces that set's row and keeps the other.
    assert main(["evaluate", "--adapter", repo, "--eval-data", str(anli), "--push", "--bootstrap", "50"]) == 0
    recorded = json.loads(hub.download(repo, "eval_results.json", repo_type="model").read_text())["results"]
    assert sorted(r["name"] for r in recorded) == ["anli_r1", "rte"]
    assert next(r for r in recorded if r["name"] == "anli_r1")["settings"]["bootstrap"] == 50
