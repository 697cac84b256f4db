"""`pytest` leaves no session folder behind (it held ~835 MB after a full run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_test_session_removes_its_folder(tmp_path):
    # A private TMPDIR: the nested session's tempfile.mkdtemp lands there, away from other sessions' folders.
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("LTD_HUB_KEEP_TEST_DIR", None)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_progress.py::test_log_lines_are_words_not_dicts"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not list(tmp_path.glob("ltd-hub-tests-*"))
