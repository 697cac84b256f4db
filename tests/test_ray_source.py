"""The ``ray`` engine's reading of the source: Ray Data reads and filters the files (local JSONL.gz and
Parquet, a Hub dataset's Parquet files through HfFileSystem) and the driver gets what the local
engine loads: the same source record, filter record, rows and selected ids.

The tests use the session's local Ray (conftest.py: 2 CPUs, started once); they are skipped, saying
so, only when Ray is not installed.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_USER
from test_grouped_selection import write_pool

from ltd_hub.errors import UsageError
from ltd_hub.selection.subset import SelectionRequest, row_hashes, select_subset

# The Hub dataset test pushes to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

OPTIONS = {"encoder": "lexical", "size": 30, "n_clusters": 6, "strategy": "centroid", "progress": False}


def _rows(n_examples: int = 120) -> list[dict]:
    """write_pool's rows (two tasks, several templates) plus rows whose target is empty, blank or null."""
    path = write_pool(Path("rows.jsonl"), n_examples=n_examples)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.unlink()
    # Rows the tests' filters keep (snli, a template name with an "e"): they are dropped for their target alone.
    kept = [i for i, r in enumerate(rows) if r["dataset"] == "snli" and "e" in r["template_name"]]
    for i, target in zip(kept, ["", "  ", None]):
        rows[i]["targets"] = target
    return rows


def _jsonl_gz(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def _parquet_bytes(rows: list[dict]) -> bytes:
    import datasets

    buffer = io.BytesIO()
    datasets.Dataset.from_list(rows).to_parquet(buffer)
    return buffer.getvalue()


def _both(source, **kw):
    """``(local result, ray result, the ray run's log lines)``."""
    lines: list[str] = []
    local = select_subset(source, **OPTIONS, **kw)
    on_ray = select_subset(source, engine="ray", log=lines.append, **OPTIONS, **kw)
    return local, on_ray, lines


def _assert_same(local, on_ray) -> None:
    want, got = local.manifest.to_dict(), on_ray.manifest.to_dict()
    assert got["source"] == want["source"] and got["filter"] == want["filter"]
    assert on_ray.manifest.row_indices == local.manifest.row_indices
    assert row_hashes(on_ray.dataset) == row_hashes(local.dataset)
    assert on_ray.dataset.features == local.dataset.features
    assert on_ray.stats.n_source_rows == local.stats.n_source_rows and on_ray.stats.n_filtered_rows == local.stats.n_filtered_rows


def _read_by_ray(lines: list[str]) -> bool:
    return any("on Ray" in line for line in lines) and not any("on the driver" in line for line in lines)


@pytest.fixture
def here(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # relative SOURCE paths, as a user types them (the manifest records them)
    return tmp_path


def test_local_jsonl_gz_with_filter_tasks_and_empty_targets_is_read_by_ray(local_ray, here, caplog):
    rows = _rows()
    # Two files (a folder): the rows come back in file order, then line order.
    _jsonl_gz(Path("pool/a.jsonl.gz"), rows[:250])
    _jsonl_gz(Path("pool/b.jsonl.gz"), rows[250:])
    kw = {"filters": ["template_name=*e*"], "tasks": ["snli*"]}
    local, on_ray, lines = _both("pool", **kw)
    assert _read_by_ray(lines), lines
    _assert_same(local, on_ray)
    assert local.manifest.to_dict()["filter"]["tasks"] == ["snli*"]
    # The empty, blank and null targets were dropped on both paths, with the warning that counts them.
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 2 and dropped[0] == dropped[1] and dropped[0].startswith("dropped 3 of ")


def test_the_driver_gets_what_load_source_and_apply_filters_give(local_ray, here):
    from ltd_hub.data.sources import apply_filters, load_source, parse_filters
    from ltd_hub.paths import cache_dir
    from ltd_hub.selection.engines.ray_source import load_filtered

    path = _jsonl_gz(Path("pool.jsonl.gz"), _rows())
    filters, tasks = parse_filters(["dataset=*nli"]), ["mnli"]
    src = load_source(str(path))
    filtered, rows = apply_filters(src, filters, tasks)
    lines: list[str] = []
    got_src, got_filtered, got_rows = load_filtered(str(path), SelectionRequest(), filters, tasks, lines.append)
    assert _read_by_ray(lines), lines
    assert got_src.to_manifest() == src.to_manifest() and got_src.columns == src.columns and got_src.fingerprint == src.fingerprint
    assert got_rows.dtype == np.int64 and np.array_equal(got_rows, rows)
    assert got_filtered.features == filtered.features and got_filtered.to_list() == filtered.to_list()
    # Memory-mapped from the work folder under the ltd-hub cache.
    work = cache_dir("ray-source")
    assert got_src.dataset.cache_files and all(Path(f["filename"]).is_relative_to(work) for f in got_src.dataset.cache_files)
    # The same source, types and filter: the folder is reused.
    again: list[str] = []
    _, reread, reread_rows = load_filtered(str(path), SelectionRequest(), filters, tasks, again.append)
    assert any("from the cache" in line for line in again) and np.array_equal(reread_rows, rows)
    assert reread.to_list() == filtered.to_list()


def test_a_parquet_file_is_read_by_ray(local_ray, here):
    Path("pool.parquet").write_bytes(_parquet_bytes(_rows()))
    local, on_ray, lines = _both("pool.parquet", filters=["dataset=snli"])
    assert _read_by_ray(lines), lines
    _assert_same(local, on_ray)


def test_a_hub_datasets_parquet_files_are_read_by_ray_through_hffilesystem(local_ray):
    from ltd_hub.hub import gateway as hub

    repo_id = f"{TEST_USER}/ray-source-pool"
    rows = _rows()
    files = {
        "data/train-00000-of-00002.parquet": _parquet_bytes(rows[:200]),
        "data/train-00001-of-00002.parquet": _parquet_bytes(rows[200:]),
        "README.md": "---\nlicense: cc-by-4.0\n---\nA pool.\n",
    }
    pushed = hub.push_files(repo_id, files, repo_type="dataset", commit_message="pool")
    local, on_ray, lines = _both(repo_id, tasks="mnli")
    assert _read_by_ray(lines), lines
    _assert_same(local, on_ray)
    source = on_ray.manifest.to_dict()["source"]
    assert source["kind"] == "hub" and source["revision"] == pushed.revision and on_ray.source_license == "cc-by-4.0"


def test_json_whose_types_ray_would_infer_differently_is_read_on_the_driver(local_ray, here):
    rows = _rows()
    for i, r in enumerate(rows):
        r["score"] = i % 4 if i < 200 else float(i % 4)  # datasets: int64 from the first file; Ray: double in the second
    _jsonl_gz(Path("pool/a.jsonl.gz"), rows[:200])
    _jsonl_gz(Path("pool/b.jsonl.gz"), rows[200:])
    local, on_ray, lines = _both("pool")
    assert any("on the driver: column 'score' reads as double" in line for line in lines), lines
    _assert_same(local, on_ray)


def test_csv_is_read_on_the_driver_saying_why(local_ray, here):
    import datasets

    datasets.Dataset.from_list([{k: v for k, v in r.items() if k != "answer_choices"} for r in _rows()]).to_csv("pool.csv")
    local, on_ray, lines = _both("pool.csv")
    assert any("on the driver: datasets reads CSV with pandas" in line for line in lines), lines
    _assert_same(local, on_ray)


def test_a_bad_filter_fails_before_any_ray_work_as_on_the_local_engine(local_ray, here):
    _jsonl_gz(Path("pool.jsonl.gz"), _rows(30))
    for engine in ("local", "ray"):
        with pytest.raises(UsageError, match="filter column 'nope' not in the data; available columns: dataset, template_name"):
            select_subset("pool.jsonl.gz", engine=engine, filters=["nope=x"], **OPTIONS)
