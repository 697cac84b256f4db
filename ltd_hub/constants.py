"""Names and values that several modules share, written once."""

from __future__ import annotations

# The base model of the quick start, the experiment configs and a subset card's "train on it" snippet.
DEFAULT_BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

# Local data files: suffix -> the `datasets.load_dataset` builder that reads it (gzip is read transparently).
DATA_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# Every suffix a data file may have, longest first, so that stripping the first match leaves the stem.
DATA_SUFFIXES = tuple(sorted((*DATA_BUILDERS, *(f"{s}.gz" for s in DATA_BUILDERS if s != ".parquet")), key=len, reverse=True))
