"""Robustness of the embedding cache, the input readers and the cards (issue 13, items 2, 3, 7, 9, 13, 14).

Each test failed before its fix: a full disk under the cache (SIGBUS, a raw OSError naming
``--output-dir``), damaged cache entries (JSONDecodeError forever), rows without a target (pushed as
is), a SuperNI ``Definition: null`` (the instruction "None"), front matter split at an indented
``---`` (ScannerError), hand-edited manifests and malformed task files (raw exceptions), the same
SOURCE twice (every row doubled) and a BERT accepted as a causal LM.
"""

from __future__ import annotations

import builtins
import errno
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_USER
from helpers import one_error_line

from ltd_hub.cli.main import main
from ltd_hub.errors import UsageError

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

_WORDS = "cat dog bird fish tree rock river cloud stone field lamp door".split()


def _rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "id": f"r{i}",
            "inputs": " ".join(f"{rng.choice(_WORDS)}{rng.randrange(40)}" for _ in range(12)),
            "targets": rng.choice(["yes", "no", "maybe"]),
        }
        for i in range(n)
    ]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private embedding cache for the test (LTD_HUB_CACHE)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("LTD_HUB_CACHE", str(root))
    return root


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --------------------------------------------------------------------------- item 2: a full disk under the cache


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    """A 64 KiB tmpfs (needs root and a kernel that lets us mount); unmounted afterwards."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_under_the_cache_is_one_line_naming_it_and_leaves_no_partial_file(tiny_tmpfs: Path, tmp_path: Path):
    """A real full disk: the memmap write used to die of SIGBUS (exit -7) and leave partial.npy."""
    pool = _jsonl(tmp_path / "pool.jsonl", _rows(600))  # 600 x 256 float32 = 600 KiB of embeddings > 64 KiB
    env = {**os.environ, "LTD_HUB_CACHE": str(tiny_tmpfs)}
    result = subprocess.run(
        [sys.executable, "-m", "ltd_hub.cli", "push-subset", str(pool), "--encoder", "lexical", "--size", "4", "--dry-run"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    line = one_error_line(result.stderr)
    assert "no space left" in line and str(tiny_tmpfs) in line and "LTD_HUB_CACHE" in line, line
    assert "--output-dir" not in line
    assert _files(tiny_tmpfs) == [], "the failed run left files in the cache"


def _fail_writes(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    """ENOSPC for every write to a file whose name starts with ``prefix`` (whichever way it is written),
    or to the temporary file an atomic write stages it in (``.<prefix>.*.tmp``, see ltd_hub.files)."""
    real_open, real_write_text = builtins.open, Path.write_text
    names = (prefix, f".{prefix}.")

    def full(path) -> OSError:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    def fake_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and Path(os.fspath(file)).name.startswith(names):
            raise full(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_write_text(self, *args, **kwargs):
        if self.name.startswith(names):
            raise full(self)
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(Path, "write_text", fake_write_text)


@pytest.mark.parametrize("prefix", ["meta.json", "partial.json"])
def test_full_disk_on_a_cache_json_names_the_cache_and_the_next_run_succeeds(prefix, cache_root, monkeypatch):
    from ltd_hub.selection.encoders import encode_cached, get_encoder

    texts = [r["inputs"] for r in _rows(80)]
    with monkeypatch.context() as patch:
        _fail_writes(patch, prefix)
        with pytest.raises(UsageError) as info:
            encode_cached(get_encoder("lexical"), texts, {"test": prefix}, progress=False)
    message = str(info.value)
    assert "no space left" in message and str(cache_root / "embeddings") in message and "LTD_HUB_CACHE" in message
    assert "--output-dir" not in message
    assert _files(cache_root) == [], "the failed run left files in the cache"
    X, stats = encode_cached(get_encoder("lexical"), texts, {"test": prefix}, progress=False)
    assert not stats.cache_hit and X.shape[0] == 80
    again, stats = encode_cached(get_encoder("lexical"), texts, {"test": prefix}, progress=False)
    assert stats.cache_hit and np.array_equal(again, X)


def test_full_disk_when_reserving_the_embeddings_file_is_one_line(cache_root, monkeypatch):
    """Where no tmpfs can be mounted: the allocation of partial.npy fails as a full disk does."""
    from ltd_hub.selection import encoders

    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(encoders.os, "posix_fallocate", no_room, raising=False)
    with pytest.raises(UsageError, match="no space left on the device for the embedding cache"):
        encoders.encode_cached(encoders.get_encoder("lexical"), [r["inputs"] for r in _rows(50)], {"t": 1}, progress=False)
    assert _files(cache_root) == []


# --------------------------------------------------------------------------- item 3: damaged cache entries


def _damage(folder: Path, how: str) -> None:
    if how == "meta-empty":
        (folder / "meta.json").write_text("")
    elif how == "meta-truncated":
        text = (folder / "meta.json").read_text()
        (folder / "meta.json").write_text(text[: len(text) // 2])
    elif how == "meta-not-an-object":
        (folder / "meta.json").write_text("[1, 2]")
    elif how == "embeddings-truncated":
        data = (folder / "embeddings.npy").read_bytes()
        (folder / "embeddings.npy").write_bytes(data[: len(data) // 2])
    elif how == "embeddings-empty":
        (folder / "embeddings.npy").write_bytes(b"")
    elif how == "embeddings-missing":
        (folder / "embeddings.npy").unlink()


@pytest.mark.parametrize(
    "how", ["meta-empty", "meta-truncated", "meta-not-an-object", "embeddings-truncated", "embeddings-empty", "embeddings-missing"]
)
def test_a_damaged_cache_entry_is_discarded_with_one_line_and_rebuilt(how, cache_root, caplog):
    from ltd_hub.selection.encoders import encode_cached, get_encoder

    texts = [r["inputs"] for r in _rows(60)]
    first, stats = encode_cached(get_encoder("lexical"), texts, {"test": how}, progress=False)
    folder = cache_root / "embeddings" / stats.cache_key
    _damage(folder, how)
    with caplog.at_level(logging.WARNING, logger="ltd_hub.selection.encoders"):
        X, stats = encode_cached(get_encoder("lexical"), texts, {"test": how}, progress=False)
    assert not stats.cache_hit and np.allclose(X, first, atol=1e-6)
    warnings = [r.getMessage() for r in caplog.records if "discarded" in r.getMessage()]
    assert len(warnings) == 1 and str(folder) in warnings[0], caplog.text
    again, stats = encode_cached(get_encoder("lexical"), texts, {"test": how}, progress=False)
    assert stats.cache_hit and np.array_equal(again, X)


def _interrupted_entry(cache_root: Path, monkeypatch, texts: list[str], tag: str) -> Path:
    """Encode in chunks of 20 rows and stop with Ctrl-C in the second chunk; returns the entry folder."""
    from ltd_hub.selection import encoders

    monkeypatch.setattr(encoders, "_CHUNK_ROWS", 20)
    original = encoders.LexicalEncoder.encode_batch
    calls = []

    def stop_second(self, chunk):
        calls.append(len(chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, chunk)

    with monkeypatch.context() as patch:
        patch.setattr(encoders.LexicalEncoder, "encode_batch", stop_second)
        with pytest.raises(KeyboardInterrupt):
            encoders.encode_cached(encoders.get_encoder("lexical"), texts, {"test": tag}, progress=False)
    (folder,) = (cache_root / "embeddings").iterdir()
    assert {"partial.npy", "partial.json"} <= set(_files(folder))
    return folder


@pytest.mark.parametrize("how", ["state-empty", "state-garbage", "state-missing", "partial-npy-empty"])
def test_a_damaged_partial_entry_restarts_the_encoding(how, cache_root, monkeypatch, caplog):
    from ltd_hub.selection.encoders import encode_cached, get_encoder

    texts = [r["inputs"] for r in _rows(60, seed=3)]
    folder = _interrupted_entry(cache_root, monkeypatch, texts, how)
    if how == "state-empty":
        (folder / "partial.json").write_text("")
    elif how == "state-garbage":
        (folder / "partial.json").write_text('{"rows_done": "many"}')
    elif how == "state-missing":  # interrupted before the first checkpoint was written
        (folder / "partial.json").unlink()
    elif how == "partial-npy-empty":
        (folder / "partial.npy").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="ltd_hub.selection.encoders"):
        X, stats = encode_cached(get_encoder("lexical"), texts, {"test": how}, progress=False)
    fresh, _ = encode_cached(get_encoder("lexical"), texts, {"test": how + "-fresh"}, progress=False)
    assert not stats.cache_hit and np.allclose(X, fresh, atol=1e-6)
    warned = [r.getMessage() for r in caplog.records if "discarded" in r.getMessage()]
    assert len(warned) == (0 if how == "state-missing" else 1), caplog.text
    assert _files(folder) == ["embeddings.npy", "meta.json"]


def test_a_damaged_cache_entry_does_not_block_push_subset(cache_root, tmp_path, capsys, caplog):
    pool = _jsonl(tmp_path / "pool.jsonl", _rows(120))
    args = ("push-subset", pool, "--encoder", "lexical", "--size", "4", "--dry-run")
    code, _, err = _cli(capsys, *args)
    assert code == 0, err
    (entry,) = (cache_root / "embeddings").iterdir()
    (entry / "meta.json").write_text("")  # what a full disk while writing it used to leave
    with caplog.at_level(logging.WARNING, logger="ltd_hub.selection.encoders"):
        code, _, err = _cli(capsys, *args)
    assert code == 0, err
    assert f"discarded a damaged embedding cache entry in {entry}" in caplog.text


# --------------------------------------------------------------------------- item 7: rows without a target


def test_rows_with_null_or_empty_targets_are_dropped_with_a_count(tmp_path, caplog):
    from ltd_hub.selection.subset import select_subset

    rows = _rows(40)
    for i, bad in zip((3, 7, 11, 19), (None, "", "   ", None)):
        rows[i]["targets"] = bad
    pool = _jsonl(tmp_path / "pool.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="ltd_hub.data.sources"):
        result = select_subset(pool, encoder="lexical", size=36, progress=False)
    assert "dropped 4 of 40 rows whose target column 'targets' is null or empty" in caplog.text
    assert result.stats.n_filtered_rows == 36
    assert all(isinstance(t, str) and t.strip() for t in result.dataset["targets"])
    assert not {3, 7, 11, 19} & set(result.manifest.row_indices), "row ids must stay source positions"


def test_push_subset_says_how_many_rows_it_dropped_and_pushes_none_of_them(tmp_path):
    """In a real process: the warning is one plain line on stderr (pytest would capture the log record)."""
    import pandas as pd

    rows = _rows(30)
    rows[0]["targets"] = None
    rows[1]["targets"] = ""
    pool = _jsonl(tmp_path / "pool.jsonl", rows)
    out = tmp_path / "subset"
    argv = ["push-subset", str(pool), "--encoder", "lexical", "--size", "28", "--dry-run", "--output-dir", str(out)]
    done = subprocess.run([sys.executable, "-m", "ltd_hub.cli", *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "\ndropped 2 of 30 rows whose target column 'targets' is null or empty\n" in done.stderr, done.stderr
    table = pd.read_parquet(next(out.rglob("*.parquet")))
    assert len(table) == 28 and table["targets"].str.strip().astype(bool).all()


def test_train_drops_rows_without_a_target_and_says_so(tiny_model_id, tmp_path, capsys):
    from ltd_hub import TrainConfig, train

    rows = _rows(12)
    rows[4]["targets"] = ""
    rows[9]["targets"] = None
    data = _jsonl(tmp_path / "train.jsonl", rows)
    result = train(TrainConfig(dataset=str(data), base_model=tiny_model_id, output_dir=str(tmp_path / "adapter"), max_steps=1,
                               per_device_train_batch_size=4, max_length=128, bf16=False))  # fmt: skip
    err = capsys.readouterr().err
    assert "dropped 2 of 12 rows whose target column 'targets' is null or empty" in err, err
    assert result.skipped_rows == 0 and result.train_rows == 10
    summary = json.loads((tmp_path / "adapter" / "training_summary.json").read_text(encoding="utf-8"))
    assert (summary["dataset"]["train_rows"], summary["dataset"]["dropped_rows"]) == (10, 2)


def test_reading_a_dataset_repo_an_interrupted_push_left_empty_says_how_to_clean_it(capsys):
    """train --dataset and rebuild-subset on a repo holding only .gitattributes (item 11): the fix in one line."""
    from huggingface_hub import HfApi

    repo_id = f"{TEST_USER}/robust-empty-{uuid.uuid4().hex[:8]}"
    HfApi().create_repo(repo_id, repo_type="dataset")
    fix = f"hf repos delete {repo_id} --repo-type dataset"
    from ltd_hub.data.sources import load_instruction_data

    with pytest.raises(UsageError, match="no data files") as no_data:
        load_instruction_data(repo_id)
    assert fix in str(no_data.value)
    code, _, err = _cli(capsys, "rebuild-subset", repo_id)
    line = one_error_line(err)
    assert code == 2 and fix in line and "not made by" not in line, line


def test_every_target_empty_is_one_error_line(tmp_path, capsys):
    rows = [{**r, "targets": ""} for r in _rows(10)]
    code, _, err = _cli(capsys, "push-subset", _jsonl(tmp_path / "p.jsonl", rows), "--encoder", "lexical", "--size", "2", "--dry-run")
    assert code == 2 and "--target-column" in one_error_line(err)


def _superni(path: Path, definition, instances) -> Path:
    path.write_text(json.dumps({"Definition": definition, "Positive Examples": [], "Instances": instances}), encoding="utf-8")
    return path


def test_superni_nulls_never_become_the_text_none(tmp_path, caplog):
    from ltd_hub.data.sources import apply_filters, build_texts, load_source

    instances = [
        {"id": "a", "input": None, "output": ["yes"]},
        {"id": None, "input": "Is it so?", "output": [None, "no"]},
        {"id": "c", "input": "And this?", "output": None},
        {"id": "d", "input": "Last one.", "output": "maybe"},
    ]
    src = load_source(_superni(tmp_path / "task001_x.json", ["Say yes", "or no."], instances))
    with caplog.at_level(logging.WARNING, logger="ltd_hub.data.sources"):
        filtered, rows = apply_filters(src)
    texts = build_texts(filtered, ["instruction", "input", "output", "all_outputs"])
    assert not any("None" in t for t in texts), texts
    assert list(rows) == [0, 1, 3] and "dropped 1 of 4 rows" in caplog.text
    assert src.dataset["input"][0] == "" and src.dataset["all_outputs"][1] == ["no"] and src.dataset["id"][1] == "task001_x-1"


@pytest.mark.parametrize("definition", [None, "", [], 5])
def test_superni_without_a_definition_is_one_line(definition, tmp_path):
    from ltd_hub.data.sources import load_source

    path = _superni(tmp_path / "task002_y.json", definition, [{"input": "x", "output": ["y"]}])
    with pytest.raises(UsageError, match=r"task002_y\.json: 'Definition' is"):
        load_source(path)


def test_build_texts_leaves_nulls_out_of_lists():
    import datasets

    from ltd_hub.data.sources import build_texts

    ds = datasets.Dataset.from_dict({"a": ["x", None], "b": [["p", None, "q"], None]})
    assert build_texts(ds, ["a", "b"]) == ["x\np, q", ""]


# --------------------------------------------------------------------------- item 9: card front matter


VALID_README = """---
license: mit
description: |
  First paragraph.
  ---
  Second paragraph, after a rule.
tags:
- mine
---
# My dataset

Text the user wrote.
"""


def test_an_indented_dash_line_does_not_end_the_front_matter():
    from huggingface_hub import DatasetCard

    from ltd_hub.hub.cards import merge_card, split_card

    meta, body = split_card(VALID_README)
    assert meta == DatasetCard(VALID_README).data.to_dict()
    assert meta["description"].endswith("Second paragraph, after a rule.\n") and body.startswith("# My dataset")
    merged = merge_card(VALID_README, "---\ntags: [ltd-hub]\n---\n<!-- ltd-hub:start -->\nours\n<!-- ltd-hub:end -->\n")
    card = DatasetCard(merged)
    assert card.data.description == meta["description"] and card.data.tags == ["mine", "ltd-hub"]
    assert "Text the user wrote." in card.text and "ours" in card.text


def test_a_pretty_name_with_a_dash_line_reads_back(tmp_path):
    from huggingface_hub import DatasetCard

    from ltd_hub.hub.cards import merge_card
    from ltd_hub.selection.subset import render_dataset_card, select_subset

    result = select_subset(_jsonl(tmp_path / "pool.jsonl", _rows(40)), encoder="lexical", size=3, progress=False)
    pretty = "Part one\n---\nPart two"
    card = merge_card(None, render_dataset_card(result, "me/x", pretty_name=pretty))
    assert DatasetCard(card).data.pretty_name == pretty


def _seed_readme(repo_id: str, text: str) -> str:
    """Commit ``text`` as README.md, past huggingface_hub's client-side YAML check (the server keeps any bytes)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HfApi, "_validate_yaml", lambda self, *args, **kwargs: None)
        commit = api.upload_file(path_or_fileobj=text.encode(), path_in_repo="README.md", repo_id=repo_id, repo_type="dataset")
    return commit.oid


def test_push_subset_onto_a_valid_readme_with_an_indented_dash_line(tmp_path, capsys):
    from huggingface_hub import DatasetCard, HfApi

    repo_id = f"{TEST_USER}/robust-card-{uuid.uuid4().hex[:8]}"
    _seed_readme(repo_id, VALID_README)
    pool = _jsonl(tmp_path / "pool.jsonl", _rows(40))
    code, _, err = _cli(capsys, "push-subset", pool, "--encoder", "lexical", "--size", "4", "--repo-id", repo_id)
    assert code == 0, err
    card = DatasetCard(Path(HfApi().hf_hub_download(repo_id, "README.md", repo_type="dataset")).read_text())
    assert "Second paragraph" in card.data.description and "mine" in card.data.tags and "Text the user wrote." in card.text


def test_push_subset_onto_a_readme_with_invalid_yaml_is_one_line_and_pushes_nothing(tmp_path, capsys):
    from huggingface_hub import HfApi

    repo_id = f"{TEST_USER}/robust-bad-card-{uuid.uuid4().hex[:8]}"
    head = _seed_readme(repo_id, "---\nlicense: [mit\n---\n# Broken\n")
    pool = _jsonl(tmp_path / "pool.jsonl", _rows(40))
    code, _, err = _cli(capsys, "push-subset", pool, "--encoder", "lexical", "--size", "4", "--repo-id", repo_id)
    assert code == 2, err
    line = one_error_line(err)
    assert "README.md" in line and "invalid YAML front matter" in line, line
    assert f"dataset {repo_id}: README.md" in line, line  # names the repo whose card to fix
    assert HfApi().repo_info(repo_id, repo_type="dataset").sha == head


# --------------------------------------------------------------------------- item 13: one line instead of a raw exception


@pytest.fixture
def subset_folder(tmp_path, capsys) -> Path:
    """A subset written by push-subset --dry-run (its manifest is what the cases below edit)."""
    pool = _jsonl(tmp_path / "pool.jsonl", _rows(60))
    out = tmp_path / "subset"
    code, _, err = _cli(capsys, "push-subset", pool, "--encoder", "lexical", "--size", "5", "--dry-run", "--output-dir", out)
    assert code == 0, err
    return out


def _edit(data: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data[part]
    if value is KeyError:
        del data[last]
    else:
        data[last] = value


MANIFEST_EDITS = [
    ("selection.seed", KeyError),
    ("selection.seed", "abc"),
    ("selection.seed", True),
    ("selection.size", "5"),
    ("source", "a string"),
    ("source.kind", None),
    ("text_fields", "inputs"),
    ("text_fields", [1, 2]),
    ("encoder.params", [1]),
    ("encoder.revision", KeyError),
    ("columns.inputs", None),
    ("filter.filters", {"a": 1}),
    ("source.files", [{"path": 3}]),
]


@pytest.mark.parametrize("field,value", MANIFEST_EDITS, ids=[f"{f}={v!r}" for f, v in MANIFEST_EDITS])
def test_a_hand_edited_manifest_is_one_line_naming_the_file_and_the_field(field, value, subset_folder, capsys):
    path = subset_folder / "selection_manifest.json"
    data = json.loads(path.read_text())
    _edit(data, field, value)
    path.write_text(json.dumps(data))
    code, _, err = _cli(capsys, "rebuild-subset", subset_folder)
    assert code == 2, err
    line = one_error_line(err)
    assert str(path) in line and f"field '{field}" in line, line


@pytest.mark.parametrize(
    "instances,needle",
    [
        ("not a list", "'Instances' is a string"),
        (["just text"], "instance 0 is a string"),
        ([{"input": "x", "output": ["y"]}, 7], "instance 1 is a number"),
        ([{"input": {"a": 1}, "output": ["y"]}], "'input' is an object"),
        ([{"input": "x", "output": {"a": 1}}], "'output' is an object"),
        ([{"input": "x", "output": [["nested"]]}], "'output' is a list"),
        ([{"id": [1], "input": "x", "output": "y"}], "'id' is a list"),
    ],
)
def test_a_malformed_superni_task_is_one_line_naming_the_file(instances, needle, tmp_path, capsys):
    path = _superni(tmp_path / "task003_z.json", "Answer.", instances)
    code, _, err = _cli(capsys, "push-subset", path, "--encoder", "lexical", "--size", "1", "--dry-run")
    assert code == 2, err
    line = one_error_line(err)
    assert "task003_z.json" in line and needle in line, line


def test_a_missing_target_column_is_named_with_the_flag(tmp_path, capsys):
    rows = [{"inputs": r["inputs"], "label": 1} for r in _rows(10)]
    code, _, err = _cli(capsys, "push-subset", _jsonl(tmp_path / "p.jsonl", rows), "--encoder", "lexical", "--size", "2", "--dry-run")
    assert code == 2, err
    line = one_error_line(err)
    assert "'targets'" in line and "--target-column" in line and "cannot tell which column holds the prompt" not in line, line


# --------------------------------------------------------------------------- item 14: wrong values accepted


def test_the_same_source_twice_is_refused(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    pool = _jsonl(tmp_path / "data" / "pool.jsonl", _rows(20))
    for argv in ([pool, pool], [pool, tmp_path / "data"], [pool, tmp_path / "data" / ".." / "data" / "pool.jsonl"]):
        code, _, err = _cli(capsys, "push-subset", *argv, "--encoder", "lexical", "--size", "2", "--dry-run")
        assert code == 2, err
        line = one_error_line(err)
        assert "pool.jsonl is given twice in SOURCE" in line, line


def _push_config(config) -> str:
    from ltd_hub.hub import gateway as hub

    repo_id = f"{TEST_USER}/robust-{config.model_type}-{uuid.uuid4().hex[:8]}"
    hub.push_files(repo_id, {"config.json": config.to_json_string()}, repo_type="model", commit_message="config only")
    return repo_id


def test_an_encoder_only_model_is_refused_as_a_causal_lm_encoder(tmp_path, capsys):
    from transformers import BertConfig, LlamaConfig, T5Config

    from ltd_hub.selection.encoders import get_encoder

    bert = _push_config(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    pool = _jsonl(tmp_path / "pool.jsonl", _rows(20))
    code, _, err = _cli(capsys, "push-subset", pool, "--encoder", f"causal-lm:{bert}", "--size", "2", "--dry-run")
    assert code == 2, err
    line = one_error_line(err)
    assert "encoder-only" in line and f"--encoder sentence-transformers:{bert}" in line, line
    t5 = _push_config(T5Config(vocab_size=64, d_model=16, num_layers=1, num_heads=2, d_ff=32))
    with pytest.raises(UsageError, match="encoder-decoder"):
        get_encoder(f"causal-lm:{t5}").resolve()
    # A decoder passes the check (only its config.json is read: this repo has no weights at all).
    llama = _push_config(LlamaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    encoder = get_encoder(f"causal-lm:{llama}")
    encoder.resolve()
    assert len(encoder.revision) == 40
