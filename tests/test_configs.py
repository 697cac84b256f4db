"""ltd_hub.configs: one config mechanism (dataclass fields -> flags via HfArgumentParser, YAML keys, checked values)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Literal

import pytest

from ltd_hub.configs import ConfigMixin, add_dataclass_flags, check_value, parse_config
from ltd_hub.errors import UsageError


@dataclass
class Section(ConfigMixin):
    size: int = 1


@dataclass
class Options(ConfigMixin):
    name: str = field(default="", metadata={"help": "a name", "metavar": "NAME"})
    steps: int = field(default=10, metadata={"help": "optimizer steps"})
    rate: float = field(default=0.1, metadata={"help": "a rate"})
    modules: list[str] = field(default_factory=lambda: ["q"], metadata={"help": "module names"})
    bf16: bool | None = field(default=None, metadata={"help": "bf16 (default: the machine decides)"})
    grouped: bool = field(default=True, metadata={"help": "group rows"})
    mode: Literal["a", "b"] = field(default="a", metadata={"help": "a mode"})


@dataclass
class Nested(ConfigMixin):
    section: Section = field(default_factory=Section)
    extra: Section | None = None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_dataclass_flags(parser, Options)
    return parser


def test_flags_not_given_stay_out_of_the_namespace():
    args = _parser().parse_args(["--steps", "3", "--modules", "a", "b"])
    assert vars(args) == {"steps": 3, "modules": ["a", "b"]}
    options = parse_config(Options, args)
    assert (options.steps, options.modules, options.rate, options.bf16, options.grouped) == (3, ["a", "b"], 0.1, None, True)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--bf16"], True),
        (["--no-bf16"], False),
        (["--no_bf16"], False),
        (["--no-grouped"], False),
    ],
)
def test_every_switch_turns_on_and_off(argv, expected):
    assert vars(_parser().parse_args(argv)) == {argv[0].removeprefix("--").removeprefix("no-").removeprefix("no_"): expected}


def test_a_switch_takes_no_value_so_positionals_stay_positional():
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("source", nargs="+")
    add_dataclass_flags(parser, Options)
    assert vars(parser.parse_args(["--bf16", "a.jsonl", "b.jsonl", "--no-grouped"])) == {
        "source": ["a.jsonl", "b.jsonl"], "bf16": True, "grouped": False
    }  # fmt: skip


@dataclass
class Repeatable(ConfigMixin):
    filters: list[str] = field(default_factory=list, metadata={"help": "repeatable", "action": "append", "aliases": ["--filter"]})
    ratio: float | None = None
    size: int | None = None


def test_append_fields_repeat_and_exclusive_flags_exclude():
    from ltd_hub.configs import exclusive

    parser = argparse.ArgumentParser(exit_on_error=False)
    add_dataclass_flags(parser, Repeatable)
    exclusive(parser, "ratio", "size")
    assert parser.parse_args(["--filter", "a=1", "--filter", "b=2"]).filters == ["a=1", "b=2"]
    with pytest.raises(argparse.ArgumentError, match="not allowed with argument"):
        parser.parse_args(["--ratio", "0.1", "--size", "3"])


def test_both_spellings_and_choices():
    parser = _parser()
    assert parser.parse_args(["--no-grouped"]).grouped is False
    assert vars(parser.parse_args(["--steps", "2"])) == vars(parser.parse_args(["--steps=2"]))
    with pytest.raises(argparse.ArgumentError, match="invalid choice"):
        parser.parse_args(["--mode", "c"])


def test_yaml_then_flags(tmp_path):
    path = tmp_path / "options.yaml"
    path.write_text("steps: 5\nrate: 1\nbf16: true\nmodules: [x]\n")
    args = _parser().parse_args(["--steps", "7", "--no-bf16"])
    options = parse_config(Options, args, config_file=str(path))
    assert (options.steps, options.rate, options.bf16, options.modules) == (7, 1.0, False, ["x"])


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"stepz": 1}, "unknown key 'stepz' in t.yaml; valid keys: name, steps, rate, modules, bf16, grouped, mode"),
        ({"steps": "many"}, "steps in t.yaml must be an integer, got 'many'"),
        ({"steps": 2.5}, "steps in t.yaml must be an integer, got 2.5"),
        ({"steps": True}, "steps in t.yaml must be an integer, got True"),
        ({"rate": float("inf")}, "rate in t.yaml must be a finite number, got inf"),
        ({"name": ["a"]}, "name in t.yaml must be a string, got ['a']"),
        ({"modules": "q"}, "modules in t.yaml must be a list of strings, got 'q'"),
        ({"bf16": "yes"}, "bf16 in t.yaml must be true or false, got 'yes'"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(values, needle):
    with pytest.raises(UsageError) as info:
        Options.from_mapping(values, source="t.yaml")
    assert str(info.value).startswith(needle) and "\n" not in str(info.value)


def test_values_are_read_as_their_type():
    options = Options.from_mapping({"steps": 4.0, "rate": 2, "name": 2024})
    assert (options.steps, options.rate, options.name) == (4, 2.0, "2024")
    assert check_value("k", 5, int | str, "s") == 5  # a number is a string only when nothing else takes it
    assert check_value("k", "all", int | str, "s") == "all"


def test_nested_sections_name_their_keys():
    nested = Nested.from_mapping({"section": {"size": 3}, "extra": None})
    assert nested.section == Section(3) and nested.extra is None
    with pytest.raises(UsageError, match=r"unknown key 'sise' in c.yaml:section"):
        Nested.from_mapping({"section": {"sise": 3}}, source="c.yaml")
    with pytest.raises(UsageError, match=r"section in c.yaml must be a mapping"):
        Nested.from_mapping({"section": 3}, source="c.yaml")


def test_scalar_lists_read_a_bare_name_as_one_item():
    from ltd_hub.training import TrainConfig

    config = TrainConfig.from_mapping({"lora_target_modules": "all-linear", "lora_r": 4.0})
    assert config.lora_target_modules == ["all-linear"] and config.lora_r == 4


def test_flag_building_does_not_import_transformers():
    code = (
        "import sys, argparse\n"
        "from ltd_hub.configs import add_dataclass_flags\n"
        "from ltd_hub.training import TrainConfig\n"
        "add_dataclass_flags(argparse.ArgumentParser(), TrainConfig)\n"
        "print('transformers' in sys.modules)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_push_subset_reads_its_options_from_a_yaml_file_flags_win(tmp_path):
    from ltd_hub.cli.commands.push_subset import parse_options, selection_kwargs
    from ltd_hub.cli.main import build_parser

    path = tmp_path / "subset.yaml"
    path.write_text("source: [pool.jsonl]\nencoder: lexical\nsize: 6\nfilters: ['dataset=snli']\nconfig: plain_text\ndry_run: true\n")
    parser = build_parser()
    from_file = parse_options(parser.parse_args(["push-subset", "--config", str(path), "--size", "8", "--no-dry-run"]))
    from_flags = parse_options(
        parser.parse_args(
            ["push-subset", "pool.jsonl", "--encoder", "lexical", "--size", "8", "--filter", "dataset=snli", "--config", "plain_text"]
        )
    )
    assert selection_kwargs(*from_file[:5]) == selection_kwargs(*from_flags[:5])
    assert selection_kwargs(*from_file[:5])["config"] == "plain_text"  # --config NAME is still the Hub dataset config
    assert from_file[0].source == ["pool.jsonl"] and from_file[5].dry_run is False and from_flags[5].dry_run is False


def test_push_subset_config_file_errors_are_one_line(tmp_path):
    from ltd_hub.cli.commands.push_subset import parse_options
    from ltd_hub.cli.main import build_parser

    path = tmp_path / "subset.yaml"
    path.write_text("sise: 3\n")
    with pytest.raises(UsageError, match=r"unknown key 'sise' in subset.yaml; valid keys: source, config, "):
        parse_options(build_parser().parse_args(["push-subset", "pool.jsonl", "--config", str(path)]))
    path.write_text("ratio: lots\n")
    with pytest.raises(UsageError, match=r"ratio in subset.yaml must be a number, got 'lots'"):
        parse_options(build_parser().parse_args(["push-subset", "pool.jsonl", "--config", str(path)]))
