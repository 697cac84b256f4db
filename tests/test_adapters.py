"""Adapters: one-call loading, push-adapter checks, the model card, and the end-to-end flow on SmolLM2."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ENDPOINT, REPO_ROOT, TEST_TOKEN, TEST_USER
from helpers import POOL_FILE, RTE_FILE, one_error_line, read_lines, train_tiny_adapter, write_lines

from ltd_hub.adapters import render_model_card
from ltd_hub.cli.main import main
from ltd_hub.evaluation.results import EvalResult

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

BASE_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def tiny_adapter_dir(tiny_model_id, tmp_path_factory) -> Path:
    return train_tiny_adapter(tiny_model_id, tmp_path_factory.mktemp("adapters"), learning_rate=1e-2)


SUMMARY = {
    "base_model": "org/base",
    "base_model_path": None,
    "license": "apache-2.0",
    "dataset": {
        "name": "me/subset", "repo_id": "me/subset", "revision": "a" * 40, "path": None, "sha256": None, "split": "train",
        "input_column": "inputs", "target_column": "targets", "train_rows": 2518, "skipped_rows": 0,
        "selection": {"strategy": "kcenter", "ratio": 0.005, "n_selected": 2518, "n_task_rows": 503576, "encoder": "sentence-transformers/all-MiniLM-L6-v2", "n_clusters": 50},
    },
    "formatting": {"use_chat_template": True, "system_prompt": None},
    "hyperparameters": {"learning_rate": 0.0002, "lora_r": 8},
    "training": {"steps": 315, "train_loss": 0.41, "seconds": 600.0, "train_tokens": 1, "tokens_per_second": 500.0, "peak_memory_mb": 1.0, "device": "cpu", "world_size": 1, "bf16": True},
}  # fmt: skip
RESULT = EvalResult.from_dict({
    "name": "rte", "dataset_type": "super_glue/rte", "n_examples": 277, "n_templates": 1, "accuracy_mean": 0.5523,
    "accuracy_median": 0.5523, "ci_low": 0.49, "ci_high": 0.61, "exact_match": None, "templates": {},
})  # fmt: skip


# --------------------------------------------------------------------------- the card


def test_model_card_fields_and_model_index(artifacts_dir):
    from huggingface_hub import ModelCard

    text = render_model_card(SUMMARY, repo_id="me/smollm2-coreset", eval_results=[RESULT])
    (artifacts_dir / "model_card.md").write_text(text, encoding="utf-8")
    card = ModelCard(text)
    data = card.data
    assert data.library_name == "peft" and data.base_model == "org/base" and data.datasets == ["me/subset"]
    assert data.pipeline_tag == "text-generation" and data.license == "apache-2.0"
    assert {"ltd-hub", "lora", "base_model:adapter:org/base", "ltd-strategy:kcenter", "ltd-ratio:0.005"} <= set(data.tags)
    (result,) = data.eval_results
    assert (result.dataset_type, result.dataset_name, result.metric_type, result.metric_value) == (
        "super_glue/rte",
        "rte",
        "accuracy",
        0.5523,
    )
    assert "0.5% of 503576 rows" in text and "| rte | 277 | 1 | 0.5523 |" in text
    assert 'AutoPeftModelForCausalLM.from_pretrained("me/smollm2-coreset")' in text
    assert 'ltd_hub.load_adapter("me/smollm2-coreset")' in text and "arXiv:2305.09246" in text
    assert "## Limitations" in text


def test_model_card_without_results_or_selection_still_renders():
    summary = json.loads(json.dumps(SUMMARY))
    summary["dataset"].update(repo_id=None, name="/data/pool.jsonl", sha256="b" * 64, selection={})
    summary["license"] = None
    text = render_model_card(summary)
    meta = yaml.safe_load(text.split("---")[1])
    assert "datasets" not in meta and "license" not in meta and "model-index" not in meta
    assert "Not evaluated yet" in text and "local file `/data/pool.jsonl`" in text


def test_foreign_model_index_entries_survive_a_re_render():
    existing = render_model_card(SUMMARY, repo_id="me/a", eval_results=[RESULT])
    meta_text, body = existing.split("---", 2)[1:]
    meta = yaml.safe_load(meta_text)
    meta["model-index"][0]["results"].append(
        {"task": {"type": "text-generation"}, "dataset": {"type": "mmlu", "name": "MMLU"}, "metrics": [{"type": "accuracy", "value": 0.3}]}
    )
    edited = "---\n" + yaml.safe_dump(meta) + "---" + body
    newer = dataclasses.replace(RESULT, accuracy_mean=0.6)
    text = render_model_card(SUMMARY, repo_id="me/a", eval_results=[newer], existing_card=edited)
    from huggingface_hub import ModelCard

    values = {(r.dataset_name, r.metric_value) for r in ModelCard(text).data.eval_results}
    assert values == {("rte", 0.6), ("MMLU", 0.3)}


# --------------------------------------------------------------------------- loading


def test_load_adapter_from_folder_and_hub_reads_the_base_from_its_config(tiny_adapter_dir, tiny_model_id):
    import torch
    from peft import PeftModel

    from ltd_hub import load_adapter

    model, tokenizer = load_adapter(tiny_adapter_dir)
    assert isinstance(model, PeftModel) and not model.training
    assert model.peft_config["default"].base_model_name_or_path == tiny_model_id
    repo = f"{TEST_USER}/tiny-adapter-load"
    assert main(["push-adapter", str(tiny_adapter_dir), "--repo-id", repo]) == 0
    hub_model, _ = load_adapter(repo)
    ids = tokenizer("Hello", return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**ids).logits, hub_model(**ids).logits)
        # The adapter changes the output (it is really applied).
        with model.disable_adapter():
            base_logits = model(**ids).logits
    assert not torch.allclose(base_logits, hub_model(**ids).logits)


@pytest.mark.parametrize("case", ["not_a_folder", "no_adapter_config", "no_weights", "local_base"])
def test_push_adapter_refuses_what_is_not_a_pushable_adapter(tmp_path, tiny_adapter_dir, capsys, case):
    import shutil

    from huggingface_hub import HfApi

    folder = tmp_path / "adapter"
    if case != "not_a_folder":
        shutil.copytree(tiny_adapter_dir, folder)
    if case == "no_adapter_config":
        (folder / "adapter_config.json").unlink()
    elif case == "no_weights":
        (folder / "adapter_model.safetensors").unlink()
    elif case == "local_base":
        config = json.loads((folder / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = str(tmp_path)
        (folder / "adapter_config.json").write_text(json.dumps(config))
    repo = f"{TEST_USER}/never-pushed-{case.replace('_', '-')}"
    assert main(["push-adapter", str(folder), "--repo-id", repo]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert {
        "not_a_folder": "not found",
        "no_adapter_config": "not a PEFT adapter",
        "no_weights": "no adapter weights",
        "local_base": "local base model",
    }[case] in line
    assert not HfApi().repo_exists(repo)


# --------------------------------------------------------------------------- end to end on the real base model


@pytest.mark.slow
def test_end_to_end_subset_train_push_evaluate_and_load_in_a_fresh_process(seeded_hub, tmp_path, capsys):
    import pandas as pd
    from huggingface_hub import HfApi, ModelCard

    from ltd_hub.hub import gateway as hub

    rows = [json.loads(line) for line in read_lines(POOL_FILE, stop=64)]
    buffer = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buffer, index=False)
    manifest = {
        "format_version": 1, "tool": "ltd-hub",
        "source": {"kind": "local", "id": "p3_nli_pool.jsonl.gz", "n_rows": 12800},
        "filter": {"filters": [], "n_rows": 12800}, "columns": {"inputs": "inputs", "target": "targets"},
        "text_fields": ["inputs", "targets"], "encoder": {"name": "lexical", "id": "lexical"},
        "selection": {"strategy": "kcenter", "ratio": 0.005, "n_selected": 64, "seed": 0, "n_clusters": 8},
        "selected": [{"row": i, "cluster": i % 8, "distance": 0.0} for i in range(64)],
    }  # fmt: skip
    subset = f"{TEST_USER}/e2e-nli-subset"
    hub.push_files(
        subset,
        {"data/train-00000-of-00001.parquet": buffer.getvalue(), "selection_manifest.json": json.dumps(manifest)},
        repo_type="dataset",
        commit_message="Add subset",
    )
    repo = f"{TEST_USER}/smollm2-e2e-adapter"
    out = tmp_path / "adapter"
    argv = ["train", "--dataset", subset, "--base-model", BASE_MODEL_ID, "--output-dir", str(out), "--push-to", repo,
            "--max-steps", "3", "--per-device-train-batch-size", "4", "--max-length", "256", "--logging-steps", "1"]  # fmt: skip
    assert main(argv) == 0
    assert repo in capsys.readouterr().out

    card = ModelCard(hub.read_card_text(repo, "model"))
    assert card.data.base_model == BASE_MODEL_ID and card.data.library_name == "peft"
    assert card.data.datasets == [subset] and card.data.pipeline_tag == "text-generation"
    assert card.data.license == "apache-2.0"  # the base model's
    assert f"base_model:adapter:{BASE_MODEL_ID}" in card.data.tags and "ltd-strategy:kcenter" in card.data.tags

    eval_file = write_lines(RTE_FILE, tmp_path / "rte.jsonl", stop=6)
    commits = len(HfApi().list_repo_commits(repo))
    assert main(["evaluate", "--adapter", repo, "--eval-data", str(eval_file), "--push"]) == 0
    assert len(HfApi().list_repo_commits(repo)) == commits + 1
    card = ModelCard(hub.read_card_text(repo, "model"))
    assert [(r.dataset_name, r.metric_type) for r in card.data.eval_results] == [("rte", "accuracy")]

    code = f"""
import torch
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer
import ltd_hub
torch.set_num_threads(1)
plain = AutoPeftModelForCausalLM.from_pretrained({repo!r})
model, tokenizer = ltd_hub.load_adapter({repo!r})
assert plain.peft_config["default"].base_model_name_or_path == {BASE_MODEL_ID!r}
messages = [{{"role": "user", "content": "Is water wet? Yes or No?"}}]
ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
out = model.generate(**ids, max_new_tokens=4, do_sample=False)
text = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
assert out.shape[1] > ids["input_ids"].shape[1]
print("GENERATED:", text)
"""
    env = {
        "PATH": "/usr/bin:/bin",
        "HF_ENDPOINT": ENDPOINT,
        "HF_TOKEN": TEST_TOKEN,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(tmp_path / "fresh_hf_home"),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO_ROOT),
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GENERATED:" in result.stdout
