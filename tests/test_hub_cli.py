"""``ltd-hub hub serve``: foreground server, generated local token, input validation."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ltd_hub.cli.main import main

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")


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


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--fault", "commit:503:times=x"], "times= takes a whole number"),
        (["--fault", "commit:503:retry_after=1e9"], "retry_after= takes whole seconds"),
        (["--fault", "commit:503:seed="], "seed= takes a whole number"),
        (["--fault", "commit:503:p=nan"], "p= takes a number from 0 to 1"),
        (["--fault", "commit:503:times=-1"], "must not be negative"),
        (["--fault", "commit"], "unknown fault kind"),
        (["--port", "70000"], "--port takes a number from 0 to 65535"),
        (["--port", "-1"], "--port takes a number from 0 to 65535"),
    ],
)
def test_serve_bad_fault_or_port_is_one_line_naming_the_fix(tmp_path: Path, capsys, args: list[str], names: str):
    try:
        code = main(["hub", "serve", "--root", str(tmp_path), *args])
    except SystemExit as exc:  # argparse (--port) exits; the command's own checks return
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and names in err, err
    assert "invalid literal" not in err and "Traceback" not in err


def test_serve_on_a_port_in_use_is_one_line_naming_the_fix(tmp_path: Path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "ltd_hub.cli", "hub", "serve", "--port", str(port), "--root", str(tmp_path / "hub")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    assert f"port {port}" in lines[0] and "already in use" in lines[0] and "--port" in lines[0]


def test_serve_reads_tokens_from_a_file_and_keeps_them_out_of_ps(tmp_path: Path):
    token_file = tmp_path / "tokens"
    token_file.write_text("# who may write\ncarol=hf_carolTOKEN123456789\n\ndave=hf_daveTOKEN123456789:read\n")
    proc, endpoint, lines = _serve(tmp_path / "hub", "--token-file", str(token_file), env={"LTD_HUB_TOKENS": ""})
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode() if Path(f"/proc/{proc.pid}").exists() else " ".join(proc.args)
        assert "hf_carolTOKEN" not in cmdline and "hf_daveTOKEN" not in cmdline
        me = httpx.get(f"{endpoint}/api/whoami-v2", headers={"Authorization": "Bearer hf_daveTOKEN123456789"}).json()
        assert me["name"] == "dave" and me["auth"]["accessToken"]["role"] == "read"
        assert httpx.get(f"{endpoint}/api/whoami-v2", headers={"Authorization": "Bearer hf_carolTOKEN123456789"}).json()["name"] == "carol"
        assert not any("visible" in line for line in lines)  # the `ps` note is only for --token
    finally:
        output = "".join(lines) + _stop(proc)
    assert "hf_carolTOKEN" not in output


def test_serve_notes_that_token_on_the_command_line_is_visible(tmp_path: Path):
    proc, _, lines = _serve(tmp_path / "hub", "--token", "erin=hf_erinTOKEN123456789", env={"LTD_HUB_TOKENS": ""})
    _stop(proc)
    assert any("--token-file" in line and "ps" in line for line in lines), "".join(lines)


@pytest.mark.parametrize("content", [None, "# nothing but a comment\n"])
def test_serve_bad_token_file_is_one_line(tmp_path: Path, capsys, content: str | None):
    token_file = tmp_path / "tokens"
    if content is not None:
        token_file.write_text(content)
    assert main(["hub", "serve", "--root", str(tmp_path / "hub"), "--token-file", str(token_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "--token-file" in err


def test_serve_access_log_hides_signed_upload_urls(tmp_path: Path):
    token = "hf_frankTOKEN123456789"
    proc, endpoint, lines = _serve(tmp_path / "hub", env={"LTD_HUB_TOKENS": f"frank={token}"})
    try:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=endpoint, token=token)
        api.create_repo("frank/logged")
        payload = os.urandom(4096)
        batch = httpx.post(
            f"{endpoint}/frank/logged.git/info/lfs/objects/batch", headers={"Authorization": f"Bearer {token}"},
            json={"operation": "upload", "objects": [{"oid": hashlib.sha256(payload).hexdigest(), "size": len(payload)}]},
        ).json()  # fmt: skip
        href = batch["objects"][0]["actions"]["upload"]["href"]
        signature = href.split("signature=")[1]
        assert httpx.put(href, content=payload).status_code == 200
    finally:
        output = "".join(lines) + _stop(proc)
    assert "PUT /lfs-upload/" in output, output  # the access log is on
    assert signature not in output and "signature=<redacted>" in output
