"""Helpers shared by several test modules: slices of the shared data, Hub read-backs, CLI error checks.

``faults`` is a pytest fixture: a test module uses it by importing it (``from helpers import faults``).
"""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import pytest
from conftest import LTD_NLI

POOL_FILE = LTD_NLI / "pool" / "p3_nli_pool.jsonl.gz"
RTE_FILE = LTD_NLI / "eval" / "rte.jsonl.gz"


def read_lines(source: Path, start: int = 0, stop: int | None = None, step: int = 1) -> list[str]:
    """Lines ``start:stop:step`` of a gzipped JSONL file, newlines kept."""
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        return list(itertools.islice(handle, start, stop, step))


def write_lines(source: Path, dest: Path, start: int = 0, stop: int | None = None, step: int = 1) -> Path:
    """Write lines ``start:stop:step`` of a gzipped JSONL file to ``dest`` (plain JSONL); returns ``dest``."""
    dest.write_text("".join(read_lines(source, start, stop, step)), encoding="utf-8")
    return dest


def one_error_line(err: str) -> str:
    """The single ``error:`` line of a CLI's stderr; fails on none, several, or a traceback."""
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def repo_files(repo_id: str, repo_type: str, revision: str | None = None) -> dict[str, str]:
    """``{path: blob id or LFS sha256}`` of a revision, read through huggingface_hub."""
    from huggingface_hub import HfApi

    info = HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision, files_metadata=True)
    return {s.rfilename: (s.lfs.sha256 if s.lfs else s.blob_id) for s in info.siblings}


def history(repo_id: str, repo_type: str) -> list[str]:
    """Commit ids of the main branch, newest first, read through huggingface_hub."""
    from huggingface_hub import HfApi

    return [c.commit_id for c in HfApi().list_repo_commits(repo_id, repo_type=repo_type)]


def train_tiny_adapter(base_model: str, folder: Path, **overrides) -> Path:
    """Train a LoRA adapter for two steps on the first 16 pool rows; returns ``folder / "adapter"``."""
    from ltd_hub import TrainConfig, train

    pool = write_lines(POOL_FILE, folder / "pool.jsonl", stop=16)
    settings = {"max_steps": 2, "per_device_train_batch_size": 8, "max_length": 256, "bf16": False, **overrides}
    train(TrainConfig(dataset=str(pool), base_model=base_model, output_dir=str(folder / "adapter"), **settings))
    return folder / "adapter"


@pytest.fixture
def faults(hub: str):
    """The session Hub's handle; faults are cleared after each test whatever happens."""
    from ltd_hub.hub_server.serve import running_hub

    handle = running_hub(hub)
    handle.set_faults([])
    yield handle
    handle.set_faults([])
