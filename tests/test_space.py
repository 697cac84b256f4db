"""The comparison Space: the app through gradio_client, `ltd-hub push-space`, the pushed repo run
as `python app.py`, and `ltd-hub demo` — all against the embedded Hub."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import READ_TOKEN, TEST_TOKEN, TEST_USER

from ltd_hub.cli.main import main

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

# Small eval-like rows so that the adapters' training data and the examples never need the
# shared data (the tests that use the real eval files ask for the `ltd_nli` fixture).
NLI_CHOICES = ["yes", "maybe", "no"]
LONG_PROMPT_WORDS = 400
APP_START_TIMEOUT = 240


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def adapter_card(name: str, base: str, dataset: str, scores: dict[str, float]) -> str:
    """A model card like ltd-hub's, with eval results as `model-index` YAML."""
    results = "".join(
        f"""  - task:
      type: text-classification
      name: Natural language inference
    dataset:
      name: {dataset_name}
      type: {dataset_name.lower().replace(" ", "_")}
      split: validation
    metrics:
    - type: accuracy
      value: {value}
      name: Accuracy
"""
        for dataset_name, value in scores.items()
    )
    return f"""---
library_name: peft
base_model: {base}
datasets:
- {dataset}
license: apache-2.0
pipeline_tag: text-generation
tags:
- ltd-hub
- lora
model-index:
- name: {name}
  results:
{results}---
# {name}

A LoRA adapter made for the Space tests.
"""


def make_adapter(base_id: str, folder: Path, seed: int) -> Path:
    """A LoRA adapter on ``base_id`` with random (non-zero) weights, so every adapter answers differently."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_id)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(folder)
    return folder


def push_adapter(repo_id: str, folder: Path, card: str) -> None:
    from ltd_hub.hub import gateway as hub

    files = {p.name: p for p in folder.iterdir() if p.is_file() and p.name != "README.md"}
    files["README.md"] = card
    hub.push_files(repo_id, files, repo_type="model", commit_message="Add test adapter")


def push_training_rows(repo_id: str, prompts: list[str]) -> None:
    """A subset dataset repo holding ``prompts`` as training rows (parquet, like a pushed subset)."""
    import io

    import pandas as pd

    from ltd_hub.hub import gateway as hub

    frame = pd.DataFrame({"inputs": prompts, "targets": ["yes"] * len(prompts)})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    card = "---\nlicense: apache-2.0\ntags:\n- ltd-hub\n---\nTraining rows for the Space tests.\n"
    hub.push_files(repo_id, {"data/train-00000.parquet": buffer.getvalue(), "README.md": card}, repo_type="dataset", commit_message="rows")


def write_eval_file(path: Path, rows: list[dict]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


def nli_rows(count: int, template: str = "t") -> list[dict]:
    return [
        {
            "dataset": "toy_nli",
            "template_name": f"{template}{i % 3}",
            "inputs": f"Premise: row {i} says the cat sat on mat number {i}.\nHypothesis: a cat sat down. Yes, maybe or no?",
            "targets": NLI_CHOICES[i % 3],
            "answer_choices": NLI_CHOICES,
        }
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def space_repos(tiny_model_id: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two LoRA adapters of the tiny model with model-index cards, their subset dataset, and eval data.

    The subset dataset holds most of the eval file's prompts as training rows, so bundling
    examples without excluding training rows would almost surely pick one.
    """
    tmp = tmp_path_factory.mktemp("space-repos")
    rows = nli_rows(60)
    training = [row["inputs"] for row in rows[:54]]
    names = {
        "full": f"{TEST_USER}/space-full-lora",
        "subset": f"{TEST_USER}/space-subset-lora",
        "dataset": f"{TEST_USER}/space-subset-data",
        "full_data": f"{TEST_USER}/space-full-data",
    }
    push_training_rows(names["dataset"], training)
    push_adapter(
        names["full"],
        make_adapter(tiny_model_id, tmp / "full", seed=1),
        adapter_card("space-full-lora", tiny_model_id, names["full_data"], {"RTE": 0.6137, "SNLI held-out": 0.7012}),
    )
    push_adapter(
        names["subset"],
        make_adapter(tiny_model_id, tmp / "subset", seed=2),
        adapter_card("space-subset-lora", tiny_model_id, names["dataset"], {"RTE": 0.6282, "SNLI held-out": 0.6894}),
    )
    return {
        **names,
        "base": tiny_model_id,
        "eval_file": write_eval_file(tmp / "toy_eval.jsonl.gz", rows),
        "training_prompts": set(training),
        "rows": rows,
    }


def _space_app():
    from ltd_hub.space import app

    return app


@pytest.fixture(scope="module")
def running_app(space_repos: dict):
    """The app built in-process and launched on loopback; yields (url, bank, config)."""
    app = _space_app()
    config = app.SpaceConfig(
        base_model=space_repos["base"],
        adapters={"full": space_repos["full"], "subset": space_repos["subset"], "random": f"{TEST_USER}/no-such-adapter"},
        examples=[
            {
                "prompt": r["inputs"],
                "choices": r["answer_choices"],
                "gold": r["targets"],
                "dataset": r["dataset"],
                "template": r["template_name"],
            }
            for r in space_repos["rows"][-3:]
        ],
        subset_dataset=space_repos["dataset"],
        full_data=space_repos["full_data"],
        max_prompt_tokens=64,
        max_new_tokens=8,
    )
    bank = app.ModelBank(config)
    demo = app.build_demo(config, bank)
    port = _free_port()
    demo.queue(default_concurrency_limit=1).launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", bank, config
    finally:
        demo.close()


@pytest.fixture
def client(running_app):
    from gradio_client import Client

    return Client(running_app[0], analytics_enabled=False, verbose=False)


def _compare(client, prompt: str, choices: list[str] | None = None, gold: str = "", include_base: bool = True, tokens: int = 6):
    return client.predict(prompt, "\n".join(choices or []), gold, tokens, 0.0, include_base, api_name="/compare")


def _columns(result, roles=("full", "subset", "random", "base")) -> dict:
    """The /compare outputs by column: answers, timings and probability plots, then the notice."""
    n = len(roles)
    return {
        "answers": dict(zip(roles, result[:n])),
        "timings": dict(zip(roles, result[n : 2 * n])),
        "plots": dict(zip(roles, result[2 * n : 3 * n])),
        "notice": result[3 * n],
    }


def _probabilities(plot: dict) -> dict[str, float]:
    columns = plot["columns"]
    return {row[columns.index("choice")]: row[columns.index("probability")] for row in plot["data"]}


# ----- the app, in-process, through gradio_client -----------------------------------------------
def test_compare_returns_an_answer_per_model(client, space_repos):
    out = _columns(_compare(client, space_repos["rows"][-1]["inputs"], include_base=True))
    answers = out["answers"]
    # A random tiny model may answer with whitespace only; an answer is any non-empty text.
    assert answers["full"] and answers["subset"] and answers["base"]
    # Three different weight sets (two random adapters, the bare base) give three different answers.
    assert len({answers["full"], answers["subset"], answers["base"]}) == 3
    for role in ("full", "subset", "base"):
        assert out["timings"][role].startswith("first token") and "tokens" in out["timings"][role]
    # The missing adapter does not stop the app; its column says which repo and why.
    assert f"{TEST_USER}/no-such-adapter" in answers["random"] and "not found" in answers["random"]


def test_base_column_is_left_empty_unless_asked(client, space_repos):
    out = _columns(_compare(client, space_repos["rows"][-2]["inputs"], include_base=False))
    assert out["answers"]["base"] == "" and out["answers"]["full"]


def test_choice_probabilities_sum_to_one_and_match_each_adapter(client, running_app, space_repos):
    """The Space's P(choice) is the softmax of what `ltd-hub evaluate` scores: evaluation.score_choices
    on the same row, formatted as training formats it (chat template, end-of-turn token)."""
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    from ltd_hub.evaluation.evaluator import score_choices
    from ltd_hub.modeling import PromptFormatter

    row = space_repos["rows"][-1]
    out = _columns(_compare(client, row["inputs"], row["answer_choices"], row["targets"], include_base=True, tokens=2))
    tokenizer = AutoTokenizer.from_pretrained(space_repos["base"])
    for role in ("full", "subset"):
        probabilities = _probabilities(out["plots"][role])
        assert list(probabilities) == NLI_CHOICES
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        # The column uses its own adapter: an independently loaded copy, scored by `evaluate`'s scorer.
        model = AutoPeftModelForCausalLM.from_pretrained(space_repos[role]).eval()
        scores = score_choices(model, PromptFormatter(tokenizer), [{"inputs": row["inputs"], "choices": NLI_CHOICES}], progress=False)[0]
        expected = torch.softmax(torch.tensor(scores), 0).tolist()
        assert [probabilities[c] for c in NLI_CHOICES] == pytest.approx(expected, abs=1e-4)
    gold_rows = [r for r in out["plots"]["full"]["data"] if r[out["plots"]["full"]["columns"].index("answer")] == "gold"]
    assert [r[0] for r in gold_rows] == [row["targets"]]
    assert _probabilities(out["plots"]["full"]) != _probabilities(out["plots"]["subset"])
    assert out["plots"]["random"] is None


def test_space_formats_like_training(running_app):
    """The module shipped into the Space tokenises a prompt and an answer exactly as training does."""
    from ltd_hub.modeling import PromptFormatter
    from ltd_hub.space import ltd_scoring

    tokenizer = running_app[1].tokenizer
    prompts, answers = ["Is the sky blue? yes or no", "Premise: a.\nHypothesis: b."], ["yes", "maybe so"]
    for options in ({}, {"use_chat_template": False}, {"system_prompt": "Answer with one word."}):
        space = ltd_scoring.PromptFormatter(tokenizer, **options).encode_batch(prompts, answers)
        assert space == PromptFormatter(tokenizer, **options).encode_batch(prompts, answers)


def test_empty_prompt_is_an_error(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="prompt is empty"):
        _compare(client, "   \n")


def test_single_answer_choice_is_an_error(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="at least two answer choices"):
        _compare(client, "Is it raining?", ["yes"])


def test_overlong_prompt_is_truncated_with_a_notice(client, running_app):
    prompt = " ".join(f"word{i}" for i in range(LONG_PROMPT_WORDS))
    out = _columns(_compare(client, prompt, include_base=False, tokens=2))
    assert "only its last 64 tokens were used" in out["notice"]
    assert out["answers"]["full"]
    ids, notice = running_app[1].encode_prompt(prompt)
    assert notice and len(ids) < 64 + 32  # 64 prompt tokens plus the chat template's own


def test_scores_come_from_the_model_cards(running_app, space_repos):
    app = _space_app()
    config = running_app[2]
    scores = app.read_card_scores({"full": space_repos["full"], "subset": space_repos["subset"]})
    table = scores.table
    got = {(row.Model, row.Dataset): row.Value for row in table.itertuples()}
    assert got == {
        ("Full task data", "RTE"): 0.6137,
        ("Full task data", "SNLI held-out"): 0.7012,
        ("0.5% coreset", "RTE"): 0.6282,
        ("0.5% coreset", "SNLI held-out"): 0.6894,
    }
    assert scores.datasets["subset"] == [space_repos["dataset"]]
    links = app.links_markdown(config, scores)
    assert f"/datasets/{space_repos['dataset']})" in links and f"/{space_repos['full']})" in links
    assert f"/datasets/{space_repos['full_data']})" in links
    assert len(app.score_chart_frame(table)) == 4
    assert set(table["Split"]) == {"validation"}
    axis = app.score_chart(table).axes[0]
    assert axis.get_ylim() == (0.0, 1.0)
    # The legend lists the models in the order of their bars (left to right in each group).
    assert [t.get_text() for t in axis.get_legend().get_texts()] == ["Full task data", "0.5% coreset"]


def test_score_chart_draws_bootstrap_intervals_and_fills_the_split():
    import pandas as pd
    from matplotlib.container import ErrorbarContainer

    app = _space_app()
    table = pd.DataFrame(
        [
            ["Random 2,000 rows", "a", "rte", app.DEFAULT_SPLIT, "Accuracy", 0.61, 0.55, 0.67],
            ["0.5% coreset", "b", "rte", app.DEFAULT_SPLIT, "Accuracy", 0.58, 0.52, 0.64],
        ],
        columns=app.SCORE_COLUMNS,
    )
    axis = app.score_chart(table).axes[0]
    bars = [c for c in axis.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2  # one error bar per model
    segments = bars[0].lines[2][0].get_segments()
    assert [round(float(y), 2) for y in (segments[0][0][1], segments[0][1][1])] == [0.55, 0.67]
    assert axis.get_ylim() == (0.0, 1.0)


def test_adapter_problems_name_the_repo_and_the_reason(space_repos, tmp_path):
    app = _space_app()
    assert app.adapter_problem(space_repos["full"]) is None
    assert "not a PEFT adapter" in app.adapter_problem(space_repos["base"])
    assert "not found" in app.adapter_problem(f"{TEST_USER}/missing-adapter")
    assert "not a PEFT adapter" in app.adapter_problem(str(tmp_path))


def test_base_model_is_read_from_the_adapters_when_not_configured(space_repos):
    app = _space_app()
    bank = app.ModelBank(app.SpaceConfig(adapters={"full": space_repos["full"]}))
    assert bank.ready and bank.loaded == ["full"] and not bank.problems
    assert bank.config.base_model == space_repos["base"]


def test_config_file_and_environment_overrides(tmp_path):
    app = _space_app()
    path = tmp_path / "space_config.json"
    path.write_text(
        json.dumps({"base_model": "a/base", "adapters": {"full": "a/full", "subset": "a/sub", "random": "a/rnd"}, "unknown_key": 1})
    )
    config = app.load_config(path, environ={})
    assert config.base_model == "a/base" and config.roles == ["full", "subset", "random"]
    config = app.load_config(path, environ={"LTD_SUBSET_ADAPTER": "b/sub", "LTD_RANDOM_ADAPTER": "", "LTD_BASE_MODEL": "b/base"})
    assert config.adapters == {"full": "a/full", "subset": "b/sub"} and config.base_model == "b/base"


def test_stop_ends_a_generation_early(running_app, space_repos):
    import threading

    app = _space_app()
    bank = running_app[1]
    ids, _ = bank.encode_prompt(space_repos["rows"][0]["inputs"])
    stats = app.GenerationStats()
    threading.Timer(0.3, bank.stop).start()
    for _ in bank.stream("full", ids, max_new_tokens=100_000, stats=stats):
        pass
    assert 0 < stats.tokens < 100_000


# ----- push-space -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pushed_space(space_repos, tmp_path_factory) -> dict:
    repo_id = f"{TEST_USER}/ltd-compare"
    local = tmp_path_factory.mktemp("space-local") / "space"
    code = main(
        [
            "push-space",
            "--repo-id", repo_id,
            "--full", space_repos["full"],
            "--subset", space_repos["subset"],
            "--examples", str(space_repos["eval_file"]),
            "--num-examples", "5",
            "--hardware", "zero-a10g",
            "--local-dir", str(local),
        ]
    )  # fmt: skip
    assert code == 0
    return {"repo_id": repo_id, "local": local}


def _front_matter(text: str) -> dict:
    import yaml

    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_push_space_makes_a_gradio_space_spaces_accepts(pushed_space, space_repos):
    import gradio
    from huggingface_hub import HfApi, snapshot_download

    repo_id = pushed_space["repo_id"]
    info = HfApi().space_info(repo_id)
    assert info.sdk == "gradio"
    folder = Path(snapshot_download(repo_id, repo_type="space"))
    assert {"app.py", "ltd_scoring.py", "requirements.txt", "space_config.json", "README.md"} <= {p.name for p in folder.iterdir()}
    meta = _front_matter((folder / "README.md").read_text(encoding="utf-8"))
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__ and meta["app_file"] == "app.py"
    assert 0 < len(meta["short_description"]) <= 60
    assert meta["models"] == [space_repos["base"], space_repos["full"], space_repos["subset"]]
    assert meta["datasets"] == [space_repos["dataset"], space_repos["full_data"]]
    assert {"title", "emoji", "colorFrom", "colorTo", "license", "tags", "preload_from_hub"} <= set(meta)
    assert meta["suggested_hardware"] == "zero-a10g"  # push-space --hardware
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "<!-- ltd-hub:start -->" in readme and "toy_eval.jsonl.gz" in readme
    assert str(space_repos["eval_file"].parent) not in readme  # no local folder leaks into the Space
    requirements = (folder / "requirements.txt").read_text().split()
    assert f"gradio=={gradio.__version__}" in requirements and any(r.startswith("peft==") for r in requirements)
    # The app is the packaged one, byte for byte, and does not need ltd-hub.
    app_source = (folder / "app.py").read_text(encoding="utf-8")
    assert app_source == (Path(_space_app().__file__)).read_text(encoding="utf-8")
    assert "ltd_hub" not in app_source.replace("ltd-hub", "")
    # The scoring module is the one `ltd-hub evaluate` imports, byte for byte, and imports no ltd_hub either.
    from ltd_hub.space import ltd_scoring

    scoring_source = (folder / "ltd_scoring.py").read_text(encoding="utf-8")
    assert scoring_source == Path(ltd_scoring.__file__).read_text(encoding="utf-8")
    assert "import ltd_hub" not in scoring_source and "from ltd_hub" not in scoring_source
    for path in folder.iterdir():
        if path.is_file():
            assert TEST_TOKEN not in path.read_text(encoding="utf-8", errors="replace")
    assert sorted(p.name for p in pushed_space["local"].iterdir()) == sorted(
        ["app.py", "ltd_scoring.py", "requirements.txt", "space_config.json", "README.md"]
    )


def test_bundled_examples_are_held_out_rows_with_gold_answers(pushed_space, space_repos):
    from huggingface_hub import hf_hub_download

    config = json.loads(Path(hf_hub_download(pushed_space["repo_id"], "space_config.json", repo_type="space")).read_text())
    assert config["adapters"] == {"full": space_repos["full"], "subset": space_repos["subset"]}
    assert config["base_model"] == space_repos["base"] and config["subset_dataset"] == space_repos["dataset"]
    examples = config["examples"]
    assert len(examples) == 5
    eval_prompts = {r["inputs"] for r in space_repos["rows"]}
    for example in examples:
        assert example["prompt"] in eval_prompts
        assert example["prompt"] not in space_repos["training_prompts"]
        assert example["gold"] in example["choices"] == NLI_CHOICES


def test_push_space_again_makes_no_new_commit(pushed_space, space_repos, capsys):
    from huggingface_hub import HfApi

    before = HfApi().space_info(pushed_space["repo_id"]).sha
    code = main(
        [
            "push-space",
            "--repo-id", pushed_space["repo_id"],
            "--full", space_repos["full"],
            "--subset", space_repos["subset"],
            "--examples", str(space_repos["eval_file"]),
            "--num-examples", "5",
            "--hardware", "zero-a10g",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0 and "no new commit" in captured.out
    assert "HF_TOKEN" not in captured.err  # public adapters need no Space secret
    assert HfApi().space_info(pushed_space["repo_id"]).sha == before


def test_push_space_says_private_adapters_need_a_token_secret(space_repos, tmp_path, capsys):
    from huggingface_hub import HfApi, snapshot_download

    private = f"{TEST_USER}/space-private-lora"
    folder = Path(snapshot_download(space_repos["subset"]))
    HfApi().create_repo(private, private=True, exist_ok=True)
    push_adapter(private, folder, (folder / "README.md").read_text(encoding="utf-8"))
    repo_id = f"{TEST_USER}/ltd-compare-private"
    code = main(["push-space", "--repo-id", repo_id, "--full", space_repos["full"], "--subset", private, "--private"])
    err = capsys.readouterr().err
    assert code == 0
    assert f"{private} is private" in err and "HF_TOKEN" in err and space_repos["full"] not in err
    assert TEST_TOKEN not in err


@pytest.mark.parametrize(
    "case",
    ["missing-adapter", "not-an-adapter", "missing-examples", "examples-without-columns", "examples-are-training-data",
     "long-description", "same-adapter-twice", "read-only-token", "base-model-mismatch", "unknown-hardware"],
)  # fmt: skip
def test_push_space_bad_input_pushes_nothing(case, space_repos, tmp_path, capsys):
    from huggingface_hub import HfApi

    repo_id = f"{TEST_USER}/bad-space-{case}"
    args = ["push-space", "--repo-id", repo_id, "--full", space_repos["full"], "--subset", space_repos["subset"]]
    expected = {
        "missing-adapter": "no such model repo",
        "not-an-adapter": "not a PEFT adapter",
        "missing-examples": "no such file",
        "examples-without-columns": "missing column",
        "examples-are-training-data": "training data",
        "long-description": "at most 60",
        "same-adapter-twice": "must differ",
        "read-only-token": "read-only",
        "base-model-mismatch": "was trained on",
        "unknown-hardware": "is not a Spaces hardware flavor",
    }[case]
    if case == "missing-adapter":
        args[args.index("--full") + 1] = f"{TEST_USER}/no-such-adapter"
    elif case == "not-an-adapter":
        args[args.index("--subset") + 1] = space_repos["base"]
    elif case == "missing-examples":
        args += ["--examples", str(tmp_path / "nope.jsonl")]
    elif case == "examples-without-columns":
        args += ["--examples", str(write_eval_file(tmp_path / "bad.jsonl.gz", [{"text": "hello"}]))]
    elif case == "examples-are-training-data":
        args += ["--examples", space_repos["dataset"]]
    elif case == "long-description":
        args += ["--short-description", "x" * 61]
    elif case == "unknown-hardware":
        args += ["--hardware", "zero-gpu"]
    elif case == "same-adapter-twice":
        args[args.index("--subset") + 1] = space_repos["full"]
    elif case == "read-only-token":
        args += ["--token", READ_TOKEN]
    elif case == "base-model-mismatch":
        args += ["--base-model", "HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not HfApi().repo_exists(repo_id, repo_type="space")


def test_examples_from_the_real_eval_data(ltd_nli):
    from ltd_hub.spaces.publish import pick_examples, read_examples

    sources = {name: read_examples(str(ltd_nli / "eval" / f"{name}.jsonl.gz")) for name in ("rte", "anli_r1")}
    assert len(sources["rte"]) == 2770
    picked, dropped = pick_examples(sources, 6, seed=0)
    assert dropped == 0 and len(picked) == 6
    assert {row["dataset"] for row in picked} == {"super_glue/rte", sources["anli_r1"][0]["dataset"]}
    assert len({(row["dataset"], row["template"]) for row in picked}) == 6
    assert all(row["gold"] in row["choices"] and len(row["choices"]) >= 2 for row in picked)


def test_pick_examples_spreads_templates_and_skips_training_rows():
    from ltd_hub.spaces.publish import pick_examples

    rows = [{"prompt": f"p{i}", "gold": "yes", "choices": ["yes", "no"], "dataset": "d", "template": f"t{i % 4}"} for i in range(40)]
    picked, dropped = pick_examples({"a": rows}, 4, seed=3, exclude_prompts={f"p{i}" for i in range(0, 40, 2)})
    assert dropped == 20 and len(picked) == 4
    assert all(int(row["prompt"][1:]) % 2 == 1 for row in picked)
    assert len({row["template"] for row in picked}) == 2  # only t1 and t3 have odd rows
    again, _ = pick_examples({"a": rows}, 4, seed=3, exclude_prompts={f"p{i}" for i in range(0, 40, 2)})
    assert again == picked


# ----- the pushed Space, run from its own repo ---------------------------------------------------
def _wait_for_app(url: str, process: subprocess.Popen, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + APP_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the app did not answer on {url}:\n{log.read_text()[-3000:]}")


def _app_env(port: int) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(port),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _query_pushed_space(url: str, config: dict) -> None:
    from gradio_client import Client

    example = config["examples"][0]
    client = Client(url, analytics_enabled=False, verbose=False)
    result = client.predict(example["prompt"], "\n".join(example["choices"]), example["gold"], 4, 0.0, False, api_name="/compare")
    out = _columns(result, roles=("full", "subset", "base"))
    assert out["answers"]["full"] and out["answers"]["subset"]
    for role in ("full", "subset"):
        assert sum(_probabilities(out["plots"][role]).values()) == pytest.approx(1.0, abs=1e-4)


def test_pushed_space_starts_from_its_own_repo(pushed_space, tmp_path):
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(pushed_space["repo_id"], repo_type="space", local_dir=tmp_path / "space"))
    port = _free_port()
    log = tmp_path / "app.log"
    with open(log, "w") as sink:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=folder, env=_app_env(port), stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_for_app(f"http://127.0.0.1:{port}/", process, log)
        _query_pushed_space(f"http://127.0.0.1:{port}/", json.loads((folder / "space_config.json").read_text()))
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_demo_runs_a_pushed_space(pushed_space, tmp_path):
    port = _free_port()
    log = tmp_path / "demo.log"
    command = [sys.executable, "-m", "ltd_hub.cli", "demo", "--space", pushed_space["repo_id"], "--port", str(port)]
    with open(log, "w") as sink:
        process = subprocess.Popen(command, env=_app_env(port), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_app(f"http://127.0.0.1:{port}/", process, log)
        config = json.loads((pushed_space["local"] / "space_config.json").read_text())
        _query_pushed_space(f"http://127.0.0.1:{port}/", config)
    finally:
        process.terminate()
        process.wait(timeout=30)
    _assert_port_closes(port)  # the demo ended its app too


def _assert_port_closes(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"something still listens on port {port} after the demo ended")


@pytest.mark.parametrize(
    "args, expected",
    [
        ([], "give --space"),
        (["--space", "a/b", "--full", "a/c"], "not both"),
        (["--full", "a/c"], "give --space"),
        (["--space", f"{TEST_USER}/no-such-space"], "no such Space"),
        (["--space", "a/b", "--port", "0"], "not a TCP port"),
    ],
)
def test_demo_bad_input(args, expected, capsys):
    assert main(["demo", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]


# ----- the real base model ------------------------------------------------------------------------
@pytest.mark.slow
def test_space_compares_adapters_of_smollm2(seeded_hub, ltd_nli, tmp_path):
    """SmolLM2-135M-Instruct with two adapters, one RTE prompt: both columns answer, probabilities sum to 1."""
    from gradio_client import Client

    from ltd_hub.spaces.publish import read_examples

    base = "HuggingFaceTB/SmolLM2-135M-Instruct"
    ids = {}
    for role, seed in (("full", 11), ("subset", 12)):
        ids[role] = f"{TEST_USER}/smollm2-{role}-lora"
        push_adapter(ids[role], make_adapter(base, tmp_path / role, seed), adapter_card(ids[role], base, f"{TEST_USER}/x", {"RTE": 0.5}))
    example = read_examples(str(ltd_nli / "eval" / "rte.jsonl.gz"))[0]
    app = _space_app()
    config = app.SpaceConfig(base_model=base, adapters=ids, max_new_tokens=8)
    demo = app.build_demo(config)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", analytics_enabled=False, verbose=False)
        result = client.predict(example["prompt"], "\n".join(example["choices"]), example["gold"], 8, 0.0, True, api_name="/compare")
        out = _columns(result, roles=("full", "subset", "base"))
        assert all(out["answers"][r] for r in ("full", "subset", "base"))
        for role in ("full", "subset", "base"):
            probabilities = _probabilities(out["plots"][role])
            assert list(probabilities) == example["choices"]
            assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    finally:
        demo.close()
