"""Session fixtures that put models into the embedded Hub (a pytest plugin loaded by conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest

BASE_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"
TINY_MODEL_ID = "ltd-tester/tiny-random-llama"


@pytest.fixture(scope="session")
def seeded_hub(hub: str, hub_root: Path) -> str:
    """The embedded Hub with the real offline base model and encoder under their Hub ids."""
    from ltd_hub.hub_server.seed import seed_hub

    seed_hub(hub_root)
    return hub


@pytest.fixture(scope="session")
def tiny_model_id(seeded_hub: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random Llama with SmolLM2's tokenizer and chat template, pushed to the embedded Hub.

    Fast enough for training and evaluation tests on CPU while exercising the real tokenizer.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ltd_hub.hub import gateway as hub

    tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL_ID)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text(
        "---\nlicense: apache-2.0\nlibrary_name: transformers\npipeline_tag: text-generation\n---\n"
        "A tiny randomly initialised Llama for ltd-hub's tests.\n",
        encoding="utf-8",
    )
    files = {p.name: p for p in folder.iterdir() if p.is_file()}
    hub.push_files(TINY_MODEL_ID, files, repo_type="model", commit_message="Add tiny random Llama")
    return TINY_MODEL_ID
