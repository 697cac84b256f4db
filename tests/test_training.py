"""`ltd-hub train`: formatting, answer-only loss, padding-free batches, config handling, pushes, bad input."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest
import yaml
from conftest import LTD_NLI, OTHER_USER, TEST_USER
from helpers import one_error_line

from ltd_hub.cli.main import main
from ltd_hub.modeling import PromptFormatter
from ltd_hub.training import TrainConfig, TrainingSummary

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")


def _pool_rows(n: int) -> list[dict]:
    rows = []
    with gzip.open(LTD_NLI / "pool" / "p3_nli_pool.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def pool_file(tmp_path: Path, ltd_nli: Path) -> Path:
    return _write_jsonl(tmp_path / "pool.jsonl", _pool_rows(32))


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_id: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_id)


def _train_args(dataset: Path | str, model_id: str, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--dataset", str(dataset), "--base-model", model_id, "--output-dir", str(out),
        "--max-steps", "2", "--per-device-train-batch-size", "4", "--max-length", "256", "--logging-steps", "1",
        *extra,
    ]  # fmt: skip


# --------------------------------------------------------------------------- formatting and batching


def test_formatter_masks_the_prompt_and_matches_the_rendered_chat(tiny_tokenizer):
    fmt = PromptFormatter(tiny_tokenizer)
    prompt_ids, answer_ids = fmt.encode("Is the sky blue? Yes or No?", "Yes")
    full = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "Is the sky blue? Yes or No?"}, {"role": "assistant", "content": "Yes"}], tokenize=False
    )
    assert prompt_ids + answer_ids == tiny_tokenizer(full, add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.decode(answer_ids) == "Yes<|im_end|>\n"
    assert tiny_tokenizer.decode(prompt_ids).endswith("<|im_start|>assistant\n")

    plain = PromptFormatter(tiny_tokenizer, use_chat_template=False)
    p, a = plain.encode("Q?", "Yes")
    assert a[-1] == tiny_tokenizer.eos_token_id and "<|im_start|>" not in tiny_tokenizer.decode(p)


def test_padding_free_batches_give_the_same_loss_as_padded_ones(tiny_model_id, tiny_tokenizer):
    """The flattened batch with restarting position ids must be attention-isolated per row."""
    import torch

    from ltd_hub.modeling import load_base_model
    from ltd_hub.training import build_collator

    fmt = PromptFormatter(tiny_tokenizer)
    rows = [("short?", "Yes"), ("a much longer prompt " * 6, "No"), ("medium prompt here", "Maybe"), ("x", "True")]
    prompt_ids, answer_ids = fmt.encode_batch([r[0] for r in rows], [r[1] for r in rows])
    features = [{"input_ids": p + a, "labels": [-100] * len(p) + a} for p, a in zip(prompt_ids, answer_ids)]
    # Loaded as train() loads it: with a KV cache, transformers would let packed rows attend to each other.
    model = load_base_model(tiny_model_id, bf16=False, training=True).eval()
    packed = build_collator(tiny_tokenizer, padding_free=True)(features)
    padded = build_collator(tiny_tokenizer, padding_free=False)(features)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    assert padded["input_ids"].shape[0] == 4
    # Same supervised tokens: only answers count.
    assert (packed["labels"] != -100).sum() == (padded["labels"] != -100).sum() == sum(len(a) for a in answer_ids)
    with torch.no_grad():
        loss_packed = model(**packed).loss
        loss_padded = model(**padded).loss
    assert torch.allclose(loss_packed, loss_padded, atol=1e-5), (loss_packed, loss_padded)


# --------------------------------------------------------------------------- config


def test_yaml_config_is_overridden_by_flags(tmp_path):
    config_file = tmp_path / "train.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "dataset": "a.jsonl",
                "base_model": "m/x",
                "output_dir": "out",
                "learning_rate": 1e-3,
                "lora_r": 4,
                "lora_target_modules": ["q_proj"],
            }
        )
    )
    config = TrainConfig.from_yaml(config_file, {"lora_r": 16})
    assert config.learning_rate == 1e-3 and config.lora_r == 16 and config.lora_target_modules == ["q_proj"]
    assert config.num_train_epochs == 1.0  # dataclass default where neither sets it


def test_cli_flags_only_override_what_was_given(tmp_path, monkeypatch):
    from ltd_hub import training

    seen = {}

    def fake_train(config, token=None):
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr(training, "train", fake_train)
    config_file = tmp_path / "train.yaml"
    config_file.write_text("dataset: a.jsonl\nbase_model: m/x\noutput_dir: out\nlearning_rate: 0.001\nbf16: false\n")
    with pytest.raises(SystemExit):
        main(
            [
                "train",
                "--config",
                str(config_file),
                "--lora-r",
                "4",
                "--per_device_train_batch_size",
                "2",
                "--lora-target-modules",
                "q_proj",
                "v_proj",
            ]
        )
    config = seen["config"]
    assert config.learning_rate == 0.001 and config.bf16 is False
    assert config.lora_r == 4 and config.per_device_train_batch_size == 2 and config.lora_target_modules == ["q_proj", "v_proj"]


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("dataset: a\nbase_model: m/x\noutput_dir: o\nlearning_rat: 0.1\n", "unknown key 'learning_rat'"),
        ("dataset: a\nbase_model: m/x\noutput_dir: o\nlora_r: eight\n", "lora_r in train.yaml must be a whole number"),
        ("- just\n- a list\n", "must be a mapping"),
        ("dataset: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_file_is_one_line(tmp_path, capsys, yaml_text, needle):
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml_text)
    assert main(["train", "--config", str(config_file)]) == 2
    assert needle in one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- training runs


def test_train_local_file_writes_adapter_card_and_summary(tmp_path, pool_file, tiny_model_id, capsys):
    out = tmp_path / "adapter"
    assert main(_train_args(pool_file, tiny_model_id, out)) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "trained 2 steps on 32 rows" in printed and str(out) in printed
    # Training logs go to stderr in words (ltd_hub.progress), never as raw Trainer dicts.
    assert "{'" not in printed + captured.err and "'loss'" not in captured.err
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "training_summary.json"} <= names
    assert not list(tmp_path.glob(".adapter.tmp-*")), "the staging folder must be gone"
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["base_model"] == tiny_model_id
    assert summary["dataset"]["train_rows"] == 32 and summary["dataset"]["sha256"]
    assert summary["training"]["steps"] == 2 and summary["training"]["train_tokens"] > 0
    # Resolved, not "auto": on CPU with SDPA attention, length-grouped padding is the faster choice.
    assert summary["hyperparameters"]["padding_free"] is False and summary["hyperparameters"]["group_by_length"] is True
    assert list(summary) == ["ltd_hub_version", "base_model", "base_model_path", "license", "dataset", "formatting",
                             "hyperparameters", "training", "versions"]  # fmt: skip
    assert list(summary["dataset"])[-3:] == ["selection", "private_sources", "dropped_rows"]
    assert TrainingSummary.from_dict(summary).to_dict() == summary  # the typed summary reads back what it wrote
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == tiny_model_id
    assert adapter_config["peft_type"] == "LORA" and adapter_config["r"] == 8
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "peft" and meta["base_model"] == tiny_model_id
    assert meta["license"] == "apache-2.0"  # from the base model's card
    assert f"base_model:adapter:{tiny_model_id}" in meta["tags"]


def test_train_changes_only_lora_weights_and_learns(tmp_path, pool_file, tiny_model_id):
    import torch
    from safetensors.torch import load_file

    from ltd_hub import train

    config = TrainConfig(
        dataset=str(pool_file), base_model=tiny_model_id, output_dir=str(tmp_path / "a"), max_steps=6,
        learning_rate=5e-3, per_device_train_batch_size=8, warmup_ratio=0.0, logging_steps=1, bf16=False, padding_free=True,
    )  # fmt: skip
    result = train(config)
    assert json.loads((tmp_path / "a" / "training_summary.json").read_text())["hyperparameters"]["padding_free"] is True
    assert result.steps == 6 and result.train_tokens > 0 and result.tokens_per_second > 0
    tensors = load_file(tmp_path / "a" / "adapter_model.safetensors")
    assert tensors and all("lora_" in name for name in tensors)
    # lora_B starts at zero: after training it must have moved.
    assert any(t.abs().sum() > 0 for name, t in tensors.items() if "lora_B" in name)
    assert torch.isfinite(torch.tensor(result.train_loss))


def test_a_run_stopped_at_each_step_and_resumed_equals_one_that_never_stopped(tmp_path, tiny_model_id):
    """Resumed from transformers checkpoints (mid-epoch and at an epoch boundary), with dropout and
    length-grouped batches on: the same adapter, and figures for the whole run."""
    from safetensors.torch import load_file

    from ltd_hub import train
    from ltd_hub.checkpoints import Checkpointing, read_progress

    data = _write_jsonl(tmp_path / "pool.jsonl", _pool_rows(24))  # 3 steps an epoch at batch 8

    def config(out: str) -> TrainConfig:
        return TrainConfig(dataset=str(data), base_model=tiny_model_id, output_dir=str(tmp_path / out), num_train_epochs=2,
                           learning_rate=5e-3, per_device_train_batch_size=8, logging_steps=2, lora_dropout=0.1, seed=3)  # fmt: skip

    whole = train(config("whole"))
    assert whole.steps == 6 and whole.segments == 1 and whole.checkpoint is None

    # stop_at in the past: each call trains one step, saves a checkpoint and stops, unfinished.
    checkpointing = Checkpointing(tmp_path / "ckpt", stop_at=0.0)
    for step in range(1, 6):
        part = train(config("resumed"), checkpointing=checkpointing)
        assert not part.finished and part.steps == step and part.checkpoint == tmp_path / "ckpt" / f"checkpoint-{step}"
        assert not (tmp_path / "resumed").exists()  # nothing half-written where the adapter goes
        progress = read_progress(part.checkpoint)
        assert (progress.step, progress.max_steps, progress.segments) == (step, 6, step) and progress.seconds > 0
        # Only what resuming reads: transformers' tokenizer files are left out (resuming equal below shows none is needed).
        saved = {f.name for f in part.checkpoint.iterdir()}
        assert {"adapter_model.safetensors", "optimizer.pt", "trainer_state.json"} <= saved
        assert not saved & {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}, saved
        assert [c.name for c in (tmp_path / "ckpt").glob("checkpoint-*")] == [f"checkpoint-{step}"]  # a stop keeps its own only
    resumed = train(config("resumed"), checkpointing=checkpointing)
    assert resumed.finished and resumed.steps == 6 and resumed.segments == 6

    a, b = load_file(tmp_path / "whole" / "adapter_model.safetensors"), load_file(tmp_path / "resumed" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), "a resumed run must train exactly like one that never stopped"
    assert resumed.train_tokens == whole.train_tokens
    assert resumed.train_loss == pytest.approx(whole.train_loss, abs=1e-4)  # the log history keeps 4 decimals
    assert resumed.seconds > 0 and resumed.summary.training.steps == 6

    # The last step is kept as a checkpoint too: resumed from it (an evaluation cut on another machine),
    # a run trains nothing more and saves the same adapter.
    assert checkpointing.last() == tmp_path / "ckpt" / "checkpoint-6"
    again = train(config("again"), checkpointing=checkpointing)
    assert again.finished and again.steps == 6 and again.segments == 7
    c = load_file(tmp_path / "again" / "adapter_model.safetensors")
    assert all(a[k].equal(c[k]) for k in a)
    assert again.train_loss == pytest.approx(whole.train_loss, abs=1e-4) and again.train_tokens == whole.train_tokens


def test_train_from_a_hub_subset_and_push_in_one_commit(tmp_path, tiny_model_id, ltd_nli, capsys):
    import pandas as pd
    from huggingface_hub import HfApi

    from ltd_hub.hub import gateway as hub
    from ltd_hub.selection.manifest import SelectedRow, SelectionManifest

    rows = _pool_rows(64)
    buffer = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buffer, index=False)
    manifest = SelectionManifest(
        source={"kind": "local", "id": "p3_nli_pool.jsonl.gz", "n_rows": 12800},
        filter={"filters": [], "n_rows": 12800},
        columns={"inputs": "inputs", "target": "targets"},
        text_fields=["inputs", "targets"],
        encoder={"name": "lexical", "id": "lexical"},
        selection={"strategy": "kcenter", "ratio": 0.005, "n_selected": 64, "seed": 0, "n_clusters": 8},
        selected=[SelectedRow(row=i, cluster=i % 8, distance=0.0) for i in range(64)],
    )
    subset = f"{TEST_USER}/train-subset"
    hub.push_files(
        subset,
        {"data/train-00000-of-00001.parquet": buffer.getvalue(), "selection_manifest.json": manifest.to_json()},
        repo_type="dataset",
        commit_message="subset",
    )
    repo = f"{TEST_USER}/tiny-adapter-pushed"
    out = tmp_path / "adapter"
    assert main(_train_args(subset, tiny_model_id, out, "--push-to", repo)) == 0
    printed = capsys.readouterr().out
    assert f"pushed {repo}" in printed
    api = HfApi()
    commits = api.list_repo_commits(repo)
    assert len(commits) == 2  # the repo's initial commit + ours, everything in one
    files = set(api.list_repo_files(repo))
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "training_summary.json"} <= files
    card = hub.read_card_text(repo, "model")
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["datasets"] == [subset] and meta["pipeline_tag"] == "text-generation"
    assert {"ltd-hub", "lora", "ltd-strategy:kcenter", "ltd-ratio:0.005"} <= set(meta["tags"])
    assert "0.5% of 12800 rows" in card and "kcenter" in card
    assert f'AutoPeftModelForCausalLM.from_pretrained("{repo}")' in card
    # Pushing the same folder again is a no-op.
    assert main(["push-adapter", str(out), "--repo-id", repo]) == 0
    assert "unchanged, no new commit" in capsys.readouterr().out
    assert len(api.list_repo_commits(repo)) == 2


def test_a_local_subset_folder_with_superni_columns_uses_the_manifest_mapping(tmp_path, tiny_model_id, tiny_tokenizer):
    """A subset of SuperNI tasks keeps instruction/input/output; its manifest says which is which."""
    import pandas as pd

    from ltd_hub import train
    from ltd_hub.data.sources import load_instruction_data
    from ltd_hub.training import resolve_columns

    folder = tmp_path / "subset"
    (folder / "data").mkdir(parents=True)
    rows = [
        {"task_name": "task190", "instruction": "Decide entailment.", "input": f"Premise {i}. Hypothesis {i}.", "output": "yes"}
        for i in range(12)
    ]
    pd.DataFrame(rows).to_parquet(folder / "data" / "train-00000-of-00001.parquet")
    (folder / "selection_manifest.json").write_text(json.dumps({"columns": {"inputs": ["instruction", "input"], "target": "output"},
                                                                "selection": {"strategy": "random", "ratio": 0.01}, "filter": {"n_rows": 1200}}))  # fmt: skip
    loaded, source = load_instruction_data(str(folder))
    assert len(loaded) == 12 and source.sha256 and source.manifest["columns"]["target"] == "output"
    assert resolve_columns(TrainConfig(), source.manifest) == (["instruction", "input"], "output")
    assert resolve_columns(TrainConfig(input_column="input", target_column="task_name"), source.manifest) == (["input"], "task_name")
    out = tmp_path / "adapter"
    train(TrainConfig(dataset=str(folder), base_model=tiny_model_id, output_dir=str(out), max_steps=1, bf16=False))
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["dataset"]["input_column"] == "instruction, input" and summary["dataset"]["target_column"] == "output"
    assert summary["dataset"]["selection"] == {"strategy": "random", "ratio": 0.01, "n_task_rows": 1200}
    assert "1% of 1200 rows" in (out / "README.md").read_text()


def test_trains_on_what_push_subset_writes_and_cards_its_selection(tmp_path, tiny_model_id, ltd_nli):
    """Integration with selection: a real coreset (lexical encoder) written as a push would commit it."""
    from ltd_hub import train
    from ltd_hub.selection.subset import select_subset, write_subset_files

    pool = _write_jsonl(tmp_path / "pool.jsonl", _pool_rows(200))
    result = select_subset(str(pool), ratio=0.1, encoder="lexical", seed=0)
    write_subset_files(result, tmp_path / "subset")
    out = tmp_path / "adapter"
    train(TrainConfig(dataset=str(tmp_path / "subset"), base_model=tiny_model_id, output_dir=str(out), max_steps=1, bf16=False))
    summary = json.loads((out / "training_summary.json").read_text())
    selection = summary["dataset"]["selection"]
    assert summary["dataset"]["train_rows"] == 20
    assert selection["strategy"] == "random-in-cluster" and selection["ratio"] == 0.1 and selection["n_task_rows"] == 200
    assert selection["encoder"] and selection["n_clusters"] >= 1
    card = (out / "README.md").read_text()
    assert "10% of 200 rows" in card and "ltd-strategy:random-in-cluster" in card


def test_failed_push_keeps_the_adapter_and_push_adapter_retries(tmp_path, pool_file, tiny_model_id, monkeypatch, capsys):
    from huggingface_hub import HfApi

    from ltd_hub.errors import HubError
    from ltd_hub.hub import gateway as hub

    real_push = hub.push_files

    def broken_push(*args, **kwargs):
        raise HubError("pushing to the repo failed after 6 attempts (503)")

    monkeypatch.setattr(hub, "push_files", broken_push)
    repo = f"{TEST_USER}/tiny-adapter-retry"
    out = tmp_path / "adapter"
    assert main(_train_args(pool_file, tiny_model_id, out, "--push-to", repo)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"ltd-hub push-adapter {out} --repo-id {repo}" in line and "saved in" in line
    assert (out / "adapter_model.safetensors").is_file()
    monkeypatch.setattr(hub, "push_files", real_push)
    assert main(["push-adapter", str(out), "--repo-id", repo]) == 0
    assert "adapter_model.safetensors" in HfApi().list_repo_files(repo)


def test_the_same_command_runs_distributed_on_two_processes(tmp_path, pool_file, tiny_model_id):
    """What `accelerate launch` does on several GPUs, with two CPU processes (torchrun, gloo)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "adapter"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "ltd_hub.cli",
           *_train_args(pool_file, tiny_model_id, out, "--no-bf16")]  # fmt: skip
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))
    )
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("adapter saved to") == 1  # only the main rank reports
    training = json.loads((out / "training_summary.json").read_text())["training"]
    assert training["world_size"] == 2 and training["steps"] == 2
    # Two ranks x batch 4 x 2 steps = 16 rows seen; tokens are summed over the ranks.
    assert training["train_tokens"] > 16 * 30
    assert not list(tmp_path.glob(".adapter.tmp-*"))


# --------------------------------------------------------------------------- bad input


def test_preflight_fails_before_any_training(tmp_path, pool_file, tiny_model_id, capsys, monkeypatch):
    from ltd_hub import training

    monkeypatch.setattr(training, "load_base_model", lambda *a, **k: pytest.fail("must not load the model"))
    out = tmp_path / "adapter"
    assert main(_train_args(pool_file, tiny_model_id, out, "--push-to", f"{OTHER_USER}/not-mine")) == 2
    assert "cannot write to namespace" in one_error_line(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing_dataset", "not found"),
        ("missing_repo", "not found"),
        ("missing_column", "no column 'targets'"),
        ("empty_dataset", "no rows"),
        ("corrupt_dataset", "cannot read"),
        ("missing_base_model", "base model 'ltd-tester/no-such-model' not found"),
        ("max_length_too_small", "raise --max-length"),
        ("bad_learning_rate", "--learning-rate must be > 0"),
        ("non_empty_output", "is not empty"),
        ("local_base_with_push", "is a local folder"),
        ("bad_target_modules", "--lora-target-modules do not match"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, pool_file, tiny_model_id, capsys, case, needle):
    out = tmp_path / "adapter"
    dataset, model, extra = str(pool_file), tiny_model_id, []
    if case == "missing_dataset":
        dataset = str(tmp_path / "nope.jsonl")
    elif case == "missing_repo":
        dataset = f"{TEST_USER}/no-such-dataset"
    elif case == "missing_column":
        dataset = str(_write_jsonl(tmp_path / "bad.jsonl", [{"inputs": "x", "answer": "y"}]))
    elif case == "empty_dataset":
        dataset = str(tmp_path / "empty.jsonl")
        Path(dataset).write_text("")
    elif case == "corrupt_dataset":
        dataset = str(tmp_path / "corrupt.parquet")
        Path(dataset).write_bytes(b"PAR1 this is not parquet")
    elif case == "missing_base_model":
        model = f"{TEST_USER}/no-such-model"
    elif case == "max_length_too_small":
        extra = ["--max-length", "10"]
    elif case == "bad_learning_rate":
        extra = ["--learning-rate", "0"]
    elif case == "non_empty_output":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "local_base_with_push":
        model = str(tmp_path)
        extra = ["--push-to", f"{TEST_USER}/never-created"]
    elif case == "bad_target_modules":
        extra = ["--lora-target-modules", "no_such_proj"]
    assert main(_train_args(dataset, model, out, *extra)) == 2
    assert needle in one_error_line(capsys.readouterr().err)
    if case == "non_empty_output":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert not out.exists()
    assert not list(tmp_path.glob(".adapter.tmp-*"))


def test_out_of_memory_names_what_to_lower(tmp_path, pool_file, tiny_model_id, capsys, monkeypatch):
    import torch
    from transformers import Trainer

    def oom(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "train", oom)
    out = tmp_path / "adapter"
    assert main(_train_args(pool_file, tiny_model_id, out)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "out of memory" in line and "--per-device-train-batch-size" in line and "--gradient-checkpointing" in line
    assert not out.exists()
