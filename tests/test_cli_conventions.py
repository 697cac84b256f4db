"""Conventions every ``ltd-hub`` command shares: both flag spellings, suggestions for a mistyped
flag, JSON errors under ``--format json``, ``"unchanged": true`` for a push that changed nothing,
and Ctrl-C on ``hub serve``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import LTD_NLI, TEST_USER

from ltd_hub.cli.main import build_parser, main

# These tests talk to the session's embedded Hub (HF_ENDPOINT points at it).
pytestmark = pytest.mark.usefixtures("hub")


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _subparsers(parser):
    """Every (prog, parser) pair, nested ones (`hub serve`) included."""
    found = []
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for sub in action.choices.values():
            found.append((sub.prog, sub))
            found += _subparsers(sub)
    return found


def test_every_flag_of_every_command_takes_the_underscore_spelling():
    parsers = _subparsers(build_parser())
    assert len(parsers) >= 10
    checked = 0
    for prog, parser in parsers:
        for flag in parser._option_string_actions:
            if flag.startswith("--") and "-" in flag[2:]:
                underscored = "--" + flag[2:].replace("-", "_")
                actions = parser._option_string_actions
                # Either spelling ends at the same action (some commands define both spellings themselves).
                normalized = parser._normalize([underscored, "x"])
                assert actions.get(normalized[0]) is actions[flag] and normalized[1] == "x", (prog, flag)
                assert actions.get(parser._normalize([f"{underscored}=x"])[0].partition("=")[0]) is actions[flag], (prog, flag)
                checked += 1
    assert checked > 50


def test_underscore_flags_parse_like_dashed_ones():
    parser = build_parser()
    dashed = parser.parse_args(["train", "--dataset", "d", "--base-model", "b", "--output-dir", "o", "--max-steps", "3"])
    underscored = parser.parse_args(["train", "--dataset", "d", "--base_model", "b", "--output_dir", "o", "--max_steps", "3"])
    assert vars(dashed) == vars(underscored)


def test_a_mistyped_flag_gets_a_suggestion_and_the_command_help(capsys):
    code, out, err = _cli(capsys, "rebuild-subset", "local/x", "--formt", "json")
    assert code == 2 and out == ""
    assert err.strip() == ("error: unrecognized arguments: --formt (did you mean --format?) json; see `ltd-hub rebuild-subset --help`")


def test_format_json_errors_are_json_too(capsys, tmp_path):
    code, out, err = _cli(capsys, "rebuild-subset", tmp_path / "missing", "--format", "json")
    assert code == 2 and err.startswith("error: ")
    assert json.loads(out) == {"error": err.strip().removeprefix("error: "), "exit_code": 2}
    # An argparse error, too (argparse exits with code 2 itself).
    with pytest.raises(SystemExit) as exited:
        main(["push-subset", "--format", "json"])
    out = capsys.readouterr().out
    assert exited.value.code == 2 and "SOURCE" in json.loads(out)["error"]


def test_an_unchanged_push_says_unchanged(capsys, tmp_path):
    pool = LTD_NLI / "eval" / "rte.jsonl.gz"
    if not pool.is_file():
        pytest.skip(f"shared data not found at {pool}")
    args = ["push-subset", pool, "--repo-id", f"{TEST_USER}/cli-unchanged", "--encoder", "lexical", "--size", "5",
            "--strategy", "random", "--format", "json"]  # fmt: skip
    code, out, err = _cli(capsys, *args)
    assert code == 0, err
    assert json.loads(out)["unchanged"] is False
    code, out, err = _cli(capsys, *args)
    assert code == 0, err
    assert json.loads(out)["unchanged"] is True


def test_ctrl_c_on_hub_serve_just_stops(capsys, tmp_path, monkeypatch):
    from ltd_hub.hub_server import serve

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(serve, "serve_forever", interrupted)
    code, _, err = _cli(capsys, "hub", "serve", "--root", tmp_path / "hub", "--port", "0")
    assert code == 0 and "stopped the embedded Hub" in err and "pushed" not in err


def test_an_unreachable_hub_is_not_a_missing_repo(capsys, tmp_path, monkeypatch):
    """A dataset id on a Hub nobody listens on: the message says the Hub cannot be reached, not "not found"."""
    import socket

    from huggingface_hub import constants

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", dead)
    monkeypatch.setenv("LTD_HUB_MAX_RETRIES", "0")
    code, _, err = _cli(capsys, "train", "--dataset", f"{TEST_USER}/no-such-data", "--base-model", "x/y", "--output-dir", tmp_path / "out")
    assert code == 2 and "cannot reach the Hub" in err and "not found" not in err


def test_the_readme_install_says_how_to_get_a_cpu_torch():
    """The CI block pins torch (the CI machines hold its CPU wheel locally, and PyTorch's index is not
    reachable from them); the text before it must not claim that line gives a CPU build everywhere,
    and must name the CPU index for ordinary machines."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    before, after = readme.split("<!-- ci:install -->", 1)
    install = after.split("```", 2)[1]
    torch_line = next(line for line in install.splitlines() if line.startswith("pip install torch"))
    assert "torch==" in torch_line
    intro = before.rsplit("## Install", 1)[1]
    if "--index-url https://download.pytorch.org/whl/cpu" not in torch_line:
        assert "--index-url https://download.pytorch.org/whl/cpu" in intro and "CUDA build" in intro


def test_an_evaluate_push_that_changed_nothing_says_unchanged():
    from types import SimpleNamespace

    from ltd_hub.evaluation.evaluator import EvalReport

    def report(created: bool) -> dict:
        push = SimpleNamespace(url="u", commit_url=None, revision="r", created_commit=created)
        return EvalReport("m", "b", "a", None, [], 0.5, 1.0, push=push).to_dict()["push"]

    assert report(False)["unchanged"] is True and report(True)["unchanged"] is False


def test_library_errors_name_parameters_and_the_cli_shows_flags(monkeypatch, capsys):
    """A library error reads `ratio` to a library caller; the CLI's error edge writes it as `--ratio`."""
    from ltd_hub.cli.commands import demo
    from ltd_hub.errors import UsageError, flag

    exc = UsageError(f"{{max_tokens}} must be at least 8, got {4} ({{not_a_param}})", params="max_tokens")
    assert str(exc) == "max_tokens must be at least 8, got 4 ({not_a_param})"
    assert exc.render(flag) == "--max-tokens must be at least 8, got 4 ({not_a_param})"
    both = UsageError("pass {public} or another {repo_id}", params={"public": "private=False", "repo_id": "repo_id"})
    assert str(both) == "pass private=False or another repo_id" and both.render(flag) == "pass --public or another --repo-id"

    def refuse(args):
        raise UsageError("{hub_root} is a file; pass a folder", params="hub_root")

    monkeypatch.setattr(demo, "_validate", refuse)
    assert main(["demo", "--space", "x/y"]) == 2
    assert capsys.readouterr().err.strip() == "error: --hub-root is a file; pass a folder"
