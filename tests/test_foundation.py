"""The package itself: CLI startup, package data, card rendering and merging."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from ltd_hub.cli.main import main
from ltd_hub.hub.cards import BLOCK_END, BLOCK_START, merge_card, split_card

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_commands_and_imports_nothing_heavy():
    code = (
        "import sys, contextlib, io\n"
        "from ltd_hub.cli.main import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'sklearn', 'gradio', 'huggingface_hub', 'numpy') if m in sys.modules]\n"
        "print(heavy)\n"
        "print(buf.getvalue())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "[]", out
    # Every command is listed (a command module that fails to register must fail here, not vanish).
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("    ") and not line.startswith("     ")}
    expected = {
        "hub",
        "quickstart",
        "push-subset",
        "rebuild-subset",
        "train",
        "push-adapter",
        "evaluate",
        "push-space",
        "demo",
        "reproduce",
    }
    assert listed == expected, out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: ltd-hub" in capsys.readouterr().out


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("ltd-hub")
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("ltd-hub ")


def test_wheel_ships_cards_and_space_and_renders_from_install(tmp_path):
    """Build the wheel, install it into a bare folder and render a card from there."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO_ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        check=True,
    )
    wheel = next(tmp_path.glob("ltd_hub-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "ltd_hub/card_templates/dataset_card.md.j2" in names
    assert "ltd_hub/card_templates/model_card.md.j2" in names
    assert "ltd_hub/space/app.py" in names
    # Every module of the source tree ships (a package missing from pyproject's list installs without it).
    repo = Path(__file__).resolve().parents[1]
    modules = {p.relative_to(repo).as_posix() for p in (repo / "ltd_hub").rglob("*.py") if p.resolve().is_relative_to(repo / "ltd_hub")}
    assert modules - set(names) == set()
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True)
    code = (
        "import ltd_hub.hub.cards as c, importlib.resources as r\n"
        f"assert str(r.files('ltd_hub.card_templates')).startswith({str(target)!r}), r.files('ltd_hub.card_templates')\n"
        "print(c.load_template('dataset_card.md.j2')[:3])\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("---")


def test_merge_card_keeps_user_text_and_metadata():
    user = "---\nlicense: mit\ntags:\n- mine\n---\n# My notes\n\nKeep me.\n"
    ours = f"---\nlicense: apache-2.0\ntags:\n- ltd-hub\n---\n{BLOCK_START}\nGenerated v1\n{BLOCK_END}\n"
    merged = merge_card(user, ours)
    meta, body = split_card(merged)
    assert meta["tags"] == ["mine", "ltd-hub"]
    assert meta["license"] == "apache-2.0"
    assert "Keep me." in body and "Generated v1" in body
    again = merge_card(merged, ours.replace("v1", "v2"))
    _, body2 = split_card(again)
    assert "Generated v2" in body2 and "Generated v1" not in body2
    assert body2.count(BLOCK_START) == 1 and "Keep me." in body2
    assert merge_card(again, ours.replace("v1", "v2")) == again  # idempotent


def test_merge_card_into_nothing_is_the_new_card():
    ours = f"---\nlicense: mit\n---\n{BLOCK_START}\nx\n{BLOCK_END}\n"
    assert yaml.safe_load(merge_card(None, ours).split("---")[1]) == {"license": "mit"}
    assert merge_card(None, ours).endswith(f"{BLOCK_END}\n")


def test_split_card_rejects_non_mapping_front_matter():
    with pytest.raises(ValueError):
        split_card("---\n- a\n- b\n---\nbody")


def test_a_missing_extra_is_one_line_naming_it(monkeypatch):
    from ltd_hub import extras
    from ltd_hub.errors import UsageError

    monkeypatch.setitem(extras.EXTRAS, "server", ("starlette", "no_such_module_ltd"))
    with pytest.raises(UsageError, match=r"needs the server extra \(no_such_module_ltd not installed\): pip install 'ltd-hub\[server\]'"):
        extras.require("server", "the embedded Hub")
    monkeypatch.setitem(extras.EXTRAS, "server", ("starlette",))
    extras.require("server", "the embedded Hub")  # installed: no error


def test_every_extra_that_code_checks_is_declared_in_pyproject():
    import tomllib

    from ltd_hub.extras import EXTRAS

    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, modules in EXTRAS.items():
        names = " ".join(declared[extra]).lower().replace("-", "_")
        for module in modules:
            assert module.lower() in names, f"extra {extra!r} does not install {module}"
