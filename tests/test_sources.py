"""ltd_hub.data.sources: loading local files, SuperNI tasks and Hub datasets; column mapping; filters."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
from pathlib import Path

import pytest
from conftest import TEST_USER

from ltd_hub.data.sources import apply_filters, build_texts, column_values, load_source, parse_filters, read_task_names
from ltd_hub.errors import UsageError, flag

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

N_ROWS = 400


@pytest.fixture
def pool_rows(ltd_nli: Path) -> list[dict]:
    """The first rows of the real pool (several source datasets are interleaved later on, so take a spread)."""
    with gzip.open(ltd_nli / "pool" / "p3_nli_pool.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in itertools.islice(fh, N_ROWS)]


@pytest.fixture
def pool_jsonl(tmp_path: Path, pool_rows: list[dict]) -> Path:
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in pool_rows), encoding="utf-8")
    return path


def _mixed_rows() -> list[dict]:
    """P3-style rows from three source datasets, for filter tests."""
    rows = []
    for i in range(30):
        dataset = ("snli", "anli_r1", "rte")[i % 3]
        rows.append(
            {
                "id": f"r{i}",
                "dataset": dataset,
                "inputs": f"premise {i} hypothesis {dataset}",
                "targets": "yes",
                "answer_choices": ["yes", "no"],
            }
        )
    return rows


def test_p3_jsonl_is_detected_and_fingerprinted(pool_jsonl: Path, pool_rows: list[dict]):
    src = load_source(pool_jsonl)
    assert src.kind == "files" and len(src.dataset) == N_ROWS
    assert src.columns.inputs == ("inputs",) and src.columns.target == "targets"
    assert src.columns.task == "dataset" and src.columns.id == "id"
    assert set(src.dataset.column_names) == set(pool_rows[0])  # rows keep all their columns
    assert src.files[0]["sha256"] == hashlib.sha256(pool_jsonl.read_bytes()).hexdigest()
    assert src.dataset[7]["inputs"] == pool_rows[7]["inputs"]


def test_fingerprint_changes_with_the_data(pool_jsonl: Path, tmp_path: Path):
    first = load_source(pool_jsonl).fingerprint
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(pool_jsonl.read_bytes())
    assert load_source(copy).fingerprint == first  # content, not path
    lines = pool_jsonl.read_text().splitlines()[:-1]
    copy.write_text("\n".join(lines) + "\n")
    assert load_source(copy).fingerprint != first


@pytest.mark.parametrize("fmt", ["jsonl.gz", "parquet", "csv", "json"])
def test_other_file_types_give_the_same_rows(fmt: str, tmp_path: Path):
    import pandas as pd

    rows = _mixed_rows()
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "answer_choices"} for r in rows])
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl.gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    elif fmt == "parquet":
        frame.to_parquet(path)
    elif fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        path.write_text(json.dumps(rows), encoding="utf-8")
    src = load_source(path)
    assert column_values(src.dataset, "inputs") == [r["inputs"] for r in rows]
    assert src.columns.target == "targets"


def test_pool_head_is_the_first_rows_of_any_format_and_rewritten_only_on_change(tmp_path: Path):
    import pandas as pd

    from ltd_hub.data.sources import write_pool_head

    rows = _mixed_rows()
    pd.DataFrame([{k: v for k, v in r.items() if k != "answer_choices"} for r in rows]).to_parquet(tmp_path / "pool.parquet")
    target = tmp_path / "head.jsonl"
    assert write_pool_head(tmp_path / "pool.parquet", 12, target) == 12
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == [r["id"] for r in rows[:12]]
    mtime = target.stat().st_mtime_ns
    assert write_pool_head(tmp_path / "pool.parquet", 12, target) == 12 and target.stat().st_mtime_ns == mtime
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert write_pool_head(tmp_path / "pool.jsonl", 12, target, keep_existing=True) == 12
    assert target.stat().st_mtime_ns == mtime  # kept as it is, though the bytes would differ
    assert write_pool_head(tmp_path / "pool.jsonl", 50, target) == 30  # a short pool gives all its rows
    assert target.read_text().splitlines() == [json.dumps(r) for r in rows]


def test_glob_and_folder_load_every_file(tmp_path: Path):
    rows = _mixed_rows()
    for part in range(3):
        (tmp_path / f"part-{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[part * 10 : part * 10 + 10]))
    by_glob = load_source(str(tmp_path / "part-*.jsonl"))
    by_folder = load_source(tmp_path)
    assert len(by_glob.dataset) == len(by_folder.dataset) == 30
    assert [f["path"] for f in by_glob.files] == sorted(f["path"] for f in by_glob.files)
    assert by_glob.fingerprint == by_folder.fingerprint


def test_superni_task_files_give_one_row_per_instance(ltd_nli: Path):
    folder = ltd_nli / "superni_format" / "train"
    task_file = folder / "task199_mnli_classification.json"
    task = json.loads(task_file.read_text(encoding="utf-8"))
    src = load_source(task_file)
    assert src.kind == "superni" and len(src.dataset) == len(task["Instances"])
    row = src.dataset[0]
    assert row["task_name"] == "task199_mnli_classification"
    assert row["instruction"] == task["Definition"][0]
    assert row["input"] == task["Instances"][0]["input"] and row["output"] == task["Instances"][0]["output"][0]
    assert src.columns.inputs == ("instruction", "input") and src.columns.target == "output" and src.columns.task == "task_name"


def test_superni_folder_with_task_names_from_a_file(ltd_nli: Path, tmp_path: Path):
    src = load_source(ltd_nli / "superni_format" / "train")
    names = tmp_path / "tasks.txt"
    names.write_text("# NLI tasks\ntask190_snli_classification\ntask199_*  # globs work\n\n", encoding="utf-8")
    filtered, rows = apply_filters(src, tasks=read_task_names(str(names)))
    kept = set(column_values(filtered, "task_name"))
    assert kept == {"task190_snli_classification", "task199_mnli_classification"}
    assert len(rows) == len(filtered) and (rows[1:] > rows[:-1]).all()


def test_filters_or_within_a_column_and_across_columns(tmp_path: Path):
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _mixed_rows()))
    src = load_source(path)
    ds, rows = apply_filters(src, parse_filters(["dataset=snli", "dataset=anli*"]))
    assert set(column_values(ds, "dataset")) == {"snli", "anli_r1"} and len(ds) == 20
    ds, rows = apply_filters(src, parse_filters(["dataset=snli", "id=r1*"]))
    assert column_values(ds, "id") == ["r12", "r15", "r18"]
    assert rows.tolist() == [12, 15, 18]
    ds, rows = apply_filters(src, [], tasks=["rte"])
    assert set(column_values(ds, "dataset")) == {"rte"}


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (["dataset=nothing*"], "no rows left after the filter"),
        (["nosuch=x"], "filter column 'nosuch' not in the data"),
    ],
)
def test_bad_filters(tmp_path: Path, filters, message):
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _mixed_rows()))
    with pytest.raises(UsageError, match=message):
        apply_filters(load_source(path), parse_filters(filters))


def test_filter_syntax_is_checked():
    with pytest.raises(UsageError, match="use COLUMN=VALUE"):
        parse_filters(["dataset"])


def test_custom_columns_by_flag_and_missing_ones(tmp_path: Path):
    path = tmp_path / "custom.jsonl"
    path.write_text("".join(json.dumps({"q": f"question {i}", "a": "x", "topic": "t"}) + "\n" for i in range(5)))
    with pytest.raises(UsageError, match="cannot tell which column holds the prompt"):
        load_source(path)
    src = load_source(path, input_columns=["q"], target_column="a", task_column="topic")
    assert src.columns.inputs == ("q",) and src.columns.target == "a" and src.columns.task == "topic"
    with pytest.raises(UsageError, match=r"column 'nope' \(target_column\) not in the data; available columns: q, a, topic") as info:
        load_source(path, input_columns=["q"], target_column="nope")
    assert info.value.render(flag) == "column 'nope' (--target-column) not in the data; available columns: q, a, topic"  # the CLI's line
    with pytest.raises(UsageError, match=r"column 'nope' \(input_columns\)") as info:
        load_source(path, input_columns=["nope"])
    assert "(--input-column)" in info.value.render(flag)


def test_build_texts_joins_fields_and_lists(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"inputs": "Is it?", "targets": "yes", "answer_choices": ["yes", "no"]}) + "\n")
    ds = load_source(path).dataset
    assert build_texts(ds, ["inputs", "targets"]) == ["Is it?\nyes"]
    assert build_texts(ds, ["inputs", "answer_choices"]) == ["Is it?\nyes, no"]
    with pytest.raises(UsageError, match="text field"):
        build_texts(ds, ["missing"])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "file not found"),
        ("empty.jsonl", b"", "is empty"),
        ("empty.jsonl.gz", gzip.compress(b""), "is empty"),
        ("broken.jsonl.gz", b"\x1f\x8b\x08\x00not gzip at all", "not a readable gzip"),
        ("corrupt.jsonl", b'{"inputs": "a", "targets": "b"}\n{"inputs": broken\n', "cannot read"),
        ("latin1.jsonl", '{"inputs": "caf\xe9", "targets": "b"}\n'.encode("latin-1"), "not UTF-8"),
        ("data.txt", b"hello\n", "unsupported file type"),
        ("nomatch-*.jsonl", None, "no file matches"),
    ],
)
def test_bad_files_fail_with_one_line(tmp_path: Path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError, match=message) as info:
        load_source(str(path))
    assert "\n" not in str(info.value)


def test_hub_dataset_source_pins_the_commit_and_reads_the_license():
    import datasets

    from ltd_hub.hub import gateway as hub

    repo_id = f"{TEST_USER}/sources-hub-pool"
    rows = _mixed_rows()
    buffer = io.BytesIO()
    datasets.Dataset.from_list(rows).to_parquet(buffer)
    card = "---\nlicense: cc-by-sa-4.0\n---\nA pool.\n"
    first = hub.push_files(
        repo_id,
        {"data/train-00000-of-00001.parquet": buffer.getvalue(), "README.md": card},
        repo_type="dataset",
        commit_message="pool",
    )
    src = load_source(repo_id)
    assert src.kind == "hub" and src.revision == first.revision and src.fingerprint == first.revision
    assert src.license == "cc-by-sa-4.0" and src.split == "train"
    assert column_values(src.dataset, "id") == [r["id"] for r in rows]
    # A later commit moves main; the old revision still loads the old rows.
    buffer = io.BytesIO()
    datasets.Dataset.from_list(rows[:10]).to_parquet(buffer)
    hub.push_files(repo_id, {"data/train-00000-of-00001.parquet": buffer.getvalue()}, repo_type="dataset", commit_message="shrink")
    assert len(load_source(repo_id).dataset) == 10
    assert len(load_source(repo_id, revision=first.revision).dataset) == 30


@pytest.mark.parametrize(
    ("source", "kwargs", "message"),
    [
        (f"{TEST_USER}/no-such-dataset", {}, "no Hub dataset has that id"),
        (f"{TEST_USER}/sources-hub-split", {"split": "validation"}, "no split 'validation'"),
        (f"{TEST_USER}/sources-hub-split", {"revision": "nope"}, "revision 'nope' not found"),
    ],
)
def test_bad_hub_sources(source, kwargs, message):
    import datasets

    from ltd_hub.hub import gateway as hub

    buffer = io.BytesIO()
    datasets.Dataset.from_list(_mixed_rows()).to_parquet(buffer)
    hub.push_files(
        f"{TEST_USER}/sources-hub-split",
        {"data/train-00000-of-00001.parquet": buffer.getvalue()},
        repo_type="dataset",
        commit_message="d",
    )
    with pytest.raises(UsageError, match=message):
        load_source(source, **kwargs)
