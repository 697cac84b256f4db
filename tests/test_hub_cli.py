"""``ltd-hub hub serve``: foreground server, generated local token, input validation."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ltd_hub.cli import main


def _serve(root: Path, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, str, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ltd_hub.cli", "hub", "serve", "--port", "0", "--root", str(root), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})},
    )  # fmt: skip
    lines, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "export HF_TOKEN" in line:
            endpoint = next(x.split("=", 1)[1].strip() for x in lines if "export HF_ENDPOINT=" in x)
            for _ in range(100):  # the socket is bound before the banner; wait for uvicorn to accept
                try:
                    httpx.get(f"{endpoint}/api/models", timeout=1)
                    return proc, endpoint, lines
                except httpx.HTTPError:
                    time.sleep(0.1)
    proc.terminate()
    raise AssertionError("hub serve did not start:\n" + "".join(lines))


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    rest, _ = proc.communicate(timeout=20)
    return rest


def test_serve_generates_a_private_local_token_and_never_prints_it(tmp_path: Path):
    root = tmp_path / "hub"
    proc, endpoint, lines = _serve(root, env={"LTD_HUB_TOKENS": ""})
    try:
        token = (root / "token").read_text().strip()
        assert stat.S_IMODE((root / "token").stat().st_mode) == 0o600
        assert "export HF_HUB_DISABLE_XET=1\n" in [x.strip() + "\n" for x in lines]
        me = httpx.get(f"{endpoint}/api/whoami-v2", headers={"Authorization": f"Bearer {token}"}).json()
        assert me["name"] == "local" and me["auth"]["accessToken"]["role"] == "write"
    finally:
        output = "".join(lines) + _stop(proc)
    assert token not in output
    proc, endpoint, lines = _serve(root, env={"LTD_HUB_TOKENS": ""})
    try:  # the token is reused across restarts
        assert httpx.get(f"{endpoint}/api/whoami-v2", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        _stop(proc)


def test_serve_takes_tokens_and_faults_from_the_environment(tmp_path: Path):
    root = tmp_path / "hub"
    env = {"LTD_HUB_TOKENS": "alice=hf_aliceTOKEN123456789,bob=hf_bobTOKEN123456789:read", "LTD_HUB_FAULTS": "resolve:503:times=1"}
    proc, endpoint, lines = _serve(root, env=env)
    try:
        assert not (root / "token").exists()
        me = httpx.get(f"{endpoint}/api/whoami-v2", headers={"Authorization": "Bearer hf_bobTOKEN123456789"}).json()
        assert me["name"] == "bob" and me["auth"]["accessToken"]["role"] == "read"
        assert any("resolve:503:times=1" in line for line in lines)
        missing = f"{endpoint}/alice/none/resolve/main/f.txt"
        assert [httpx.get(missing).status_code for _ in range(2)] == [503, 404]
    finally:
        output = "".join(lines) + _stop(proc)
    assert "hf_aliceTOKEN123456789" not in output


@pytest.mark.parametrize("args", [["--token", "no-equals-sign"], ["--fault", "commit:418"], ["--fault", "nowhere:500"]])
def test_serve_rejects_bad_input_with_one_line(tmp_path: Path, capsys, args: list[str]):
    assert main(["hub", "serve", "--root", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
