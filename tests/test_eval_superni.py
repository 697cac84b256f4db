"""`evaluate` reads what users have: SuperNI task files (rank classification over the task's label
set) and P3 files in which one template has no answer_choices (that template is skipped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import LTD_NLI
from helpers import train_tiny_adapter

from ltd_hub.cli.main import main
from ltd_hub.data.eval_sets import load_eval_sets

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

ANLI_R1 = LTD_NLI / "superni_format" / "eval" / "task1385_anli_r1_entailment.json"  # ~600 KB


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_id, tmp_path_factory) -> Path:
    return train_tiny_adapter(tiny_model_id, tmp_path_factory.mktemp("superni-adapter"))


def test_a_superni_task_file_is_an_eval_set_over_its_label_set(ltd_nli):
    task = json.loads(ANLI_R1.read_text(encoding="utf-8"))
    (eval_set,) = load_eval_sets([str(ANLI_R1)], max_examples=5)
    assert eval_set.name == "task1385_anli_r1_entailment"
    # The label set is the distinct outputs of the task's instances.
    assert eval_set.label_set == sorted({i["output"][0].strip() for i in task["Instances"]}) == ["Contradiction", "Entailment", "Neutral"]
    first = task["Instances"][0]
    definition = task["Definition"][0] if isinstance(task["Definition"], list) else task["Definition"]
    row = eval_set.rows[0]
    # The prompt as training builds it from SuperNI rows: the definition, a blank line, the input.
    assert row["inputs"] == f"{definition}\n\n{first['input']}"
    assert row["choices"] == eval_set.label_set and row["choices"][row["gold"]] == first["output"][0]
    assert len(eval_set.rows) == 5


def test_evaluate_scores_a_superni_file_and_records_the_label_set(ltd_nli, adapter_dir, tmp_path, capsys):
    code = main(["evaluate", "--adapter", str(adapter_dir), "--eval-data", str(ANLI_R1), "--max-examples", "4", "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (result,) = json.loads(captured.out)["results"]
    assert result["label_set"] == ["Contradiction", "Entailment", "Neutral"] and result["n_examples"] == 4
    assert 0.0 <= result["accuracy_mean"] <= 1.0


def test_a_template_without_answer_choices_is_skipped_with_one_line(tmp_path, capsys):
    rows = [
        {"inputs": f"Premise {i}. Hypothesis {i}. True or False?", "targets": "True" if i % 2 else "False",
         "answer_choices": ["True", "False"], "template_name": "gpt3", "dataset": "rte"}
        for i in range(4)
    ] + [
        {"inputs": f"How similar are {i} and {i + 1}?", "targets": "3.5", "answer_choices": None,
         "template_name": "similarity score", "dataset": "rte"}
        for i in range(3)
    ]  # fmt: skip
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    lines: list[str] = []
    (eval_set,) = load_eval_sets([str(path)], log=lines.append)
    assert [r["template"] for r in eval_set.rows] == ["gpt3"] * 4
    assert eval_set.skipped_templates == ["similarity score"]
    assert lines == [
        "eval data mixed.jsonl: skipping template 'similarity score', which has no answer_choices (not a classification template)"
    ]
    # Only such templates: nothing left to score is still an error.
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[4:]), encoding="utf-8")
    with pytest.raises(Exception, match="no answer_choices in any row"):
        load_eval_sets([str(path)], log=lines.append)


def test_space_examples_are_the_rows_evaluate_scores(ltd_nli):
    """One reader: the Space bundles exactly the prompts and choices `evaluate` scores."""
    from ltd_hub.spaces.publish import read_examples

    examples = read_examples(str(ANLI_R1))
    (eval_set,) = load_eval_sets([str(ANLI_R1)])
    assert [e["prompt"] for e in examples] == [r["inputs"] for r in eval_set.rows]
    assert all(e["choices"] == eval_set.label_set and e["gold"] in e["choices"] for e in examples)
