"""Names and values that several modules share, written once."""

from __future__ import annotations

import re

# The base model of the quick start, the experiment configs and a subset card's "train on it" snippet.
DEFAULT_BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

# What a Hub repo id looks like (NAMESPACE/NAME, as the Hub spells it); used to tell a missing local path from an id.
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# The file `train` writes beside the adapter and pushes with it: what the training saw and did.
SUMMARY_FILE = "training_summary.json"

# Local data files: suffix -> the `datasets.load_dataset` builder that reads it (gzip is read transparently).
DATA_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# Every suffix a data file may have, longest first, so that stripping the first match leaves the stem.
DATA_SUFFIXES = tuple(sorted((*DATA_BUILDERS, *(f"{s}.gz" for s in DATA_BUILDERS if s != ".parquet")), key=len, reverse=True))
