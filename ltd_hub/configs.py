"""One config mechanism, in the TRL style: options are dataclass fields with ``help`` metadata.

A command's options are a dataclass (:class:`ltd_hub.training.TrainConfig`, the ``reproduce`` and
``push-subset`` options); each field is at once

- a flag, built by ``transformers.HfArgumentParser`` (``--num-train-epochs`` and ``--num_train_epochs``;
  a switch also takes ``--no-...``), see :func:`add_dataclass_flags`;
- a key of a ``--config FILE.yaml``, read by :meth:`ConfigMixin.from_yaml`, where flags given on the
  command line override the file (:func:`parse_config`).

Every value is checked against its field's type before anything runs: an unknown key is one
:class:`~ltd_hub.errors.UsageError` line naming the valid keys, a value of the wrong type one line
naming the key, what it takes and what it got. Nested dataclasses (``reproduce``'s ``eval:`` and
``push:`` sections) are read the same way, their keys reported as ``key in FILE:section``.

Example:
    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Options(ConfigMixin):
    ...     steps: int = field(default=10, metadata={"help": "optimizer steps"})
    >>> Options.from_mapping({"steps": 3}).steps
    3
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ltd_hub.errors import UsageError

T = TypeVar("T")

#: What a ``--config`` options file is called.
CONFIG_SUFFIXES = (".yaml", ".yml")

#: How a type is named in an error line ("lora_r in train.yaml must be <word>, got 'eight'").
WORDS: dict[Any, str] = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a mapping"}


class ConfigMixin:
    """Reading a dataclass of options from a mapping or a YAML file, every value checked.

    Class attributes a config may set:
        config_words: per field name or per type, what an error line says the value must be
            (``{"full_data": "'all' or a number of rows", int: "a whole number"}``).
        config_scalar_lists: a bare value is read as a one-item list (``lora_target_modules: all-linear``,
            as TRL configs write it).
    """

    config_words: ClassVar[dict[Any, str]] = {}
    config_scalar_lists: ClassVar[bool] = False

    @classmethod
    def field_names(cls) -> list[str]:
        """The config's keys (= its flags' ``dest``), in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_mapping(cls: type[T], values: Mapping[str, Any], *, source: str = "config") -> T:
        """Build the config from ``values``; an unknown key or a wrong type is a one-line UsageError.

        Args:
            values: key -> value, as YAML parsed it (numbers and booleans already typed).
            source: where the values come from, named in error lines (a file name, ``flags``).
        """
        return _build(cls, values, source)

    @classmethod
    def from_yaml(cls: type[T], path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> T:
        """Read a YAML file of keys (``-`` and ``_`` alike), then apply ``overrides`` (the flags given)."""
        from ltd_hub.errors import read_yaml_mapping

        path = Path(path)
        loaded = {str(k).replace("-", "_"): v for k, v in read_yaml_mapping(path).items()}
        return cls.from_mapping({**loaded, **(overrides or {})}, source=path.name)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- values


def _build(cls: type[T], values: Mapping[str, Any], source: str) -> T:
    """``cls(**values)`` once every key is known and every value has its field's type."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(names), key=str)
    if unknown:
        raise UsageError(f"unknown key {unknown[0]!r} in {source}; valid keys: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    checked = {key: _field_value(cls, key, value, hints[key], source) for key, value in values.items()}
    return cls(**checked)


def _field_value(cls: type, key: str, value: Any, hint: Any, source: str) -> Any:
    section = _dataclass_in(hint)
    if section is not None and value is not None:
        if not isinstance(value, dict):
            raise UsageError(f"{key} in {source} must be a mapping of key: value")
        return _build(section, value, f"{source}:{key}")
    words = {**WORDS, **getattr(cls, "config_words", {})}
    return check_value(key, value, hint, source, words=words, scalar_lists=getattr(cls, "config_scalar_lists", False))


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a field holds (``EvalSpec``, ``PushSpec | None``), else None."""
    for arg in (hint, *typing.get_args(hint)):
        if isinstance(arg, type) and dataclasses.is_dataclass(arg):
            return arg
    return None


def describe(hint: Any, words: Mapping[Any, str] = WORDS) -> str:
    """What a value of type ``hint`` is, in words: ``list[int]`` -> "a list of integers"."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a, words) for a in typing.get_args(hint) if a is not type(None))
    if origin is list:
        (inner,) = typing.get_args(hint) or (Any,)
        return f"a list of {describe(inner, words).removeprefix('a ').removeprefix('an ')}s" if inner is not Any else "a list"
    if origin is dict:
        return words[dict]
    return words.get(hint) or getattr(hint, "__name__", str(hint))


def check_value(key: str, value: Any, hint: Any, source: str, *, words: Mapping[Any, str] = WORDS, scalar_lists: bool = False) -> Any:
    """``value`` read as type ``hint`` (YAML already parsed it), else a one-line UsageError naming ``key``.

    Whole floats are read as integers, numbers as strings; ``.inf`` and ``.nan`` are refused where a
    number is asked for (an infinite epoch count would train forever).
    """
    try:
        return _read(value, hint, scalar_lists)
    except _NotFinite:
        raise UsageError(f"{key} in {source} must be a finite number, got {value!r}; fix its value") from None
    except (TypeError, ValueError, OverflowError):
        expected = words.get(key) or describe(hint, words)
        raise UsageError(f"{key} in {source} must be {expected}, got {value!r}; fix its value") from None


class _NotFinite(Exception):
    pass


def _read(value: Any, hint: Any, scalar_lists: bool) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _read_union(value, typing.get_args(hint), scalar_lists)
    if origin is list or hint is list:
        (inner,) = typing.get_args(hint) or (Any,)
        if scalar_lists and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list):
            raise TypeError
        return [_read(item, inner, scalar_lists) for item in value]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise TypeError
        return value
    return _read_scalar(value, hint)


def _read_union(value: Any, members: tuple[Any, ...], scalar_lists: bool) -> Any:
    if value is None and type(None) in members:
        return None
    # str last: a number is a string only when nothing else takes it (`full_data: 5` is a row count).
    for member in sorted((m for m in members if m is not type(None)), key=lambda m: m is str):
        try:
            return _read(value, member, scalar_lists)
        except (TypeError, ValueError, OverflowError):
            continue
    raise TypeError


def _read_scalar(value: Any, hint: Any) -> Any:
    if isinstance(value, bool) and hint is not bool:
        raise TypeError  # YAML's yes/no are booleans, never 1/0 or "True"
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError
        return value
    if hint is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        if not isinstance(value, (int, float)):
            raise TypeError
        return int(value)
    if hint is float:
        if not isinstance(value, (int, float)):
            raise TypeError
        if not math.isfinite(value):
            raise _NotFinite
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)):
            raise TypeError  # a list or mapping would be stringified (a folder named "['a', 'b']")
        return str(value)
    return value


# --------------------------------------------------------------------------- flags


def _hf_argument_parser() -> type:
    """``transformers.HfArgumentParser``, without importing all of transformers when that can be avoided.

    ``ltd-hub --help`` builds every command's parser and must stay instant; ``import transformers``
    takes ~0.6 s (and pulls torch's metadata). ``transformers/hf_argparser.py`` needs only the standard
    library and PyYAML, so it is loaded from its file; should a transformers release change that, the
    ordinary (slower) import is used.
    """
    import importlib.util
    import sys

    name = "ltd_hub._hf_argparser"
    if name in sys.modules:
        return sys.modules[name].HfArgumentParser
    try:
        package = importlib.util.find_spec("transformers")
        location = Path(next(iter(package.submodule_search_locations)), "hf_argparser.py")  # type: ignore[union-attr]
        spec = importlib.util.spec_from_file_location(name, location)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - any surprise: the regular import is always right
        from transformers import HfArgumentParser

        return HfArgumentParser
    sys.modules[name] = module
    return module.HfArgumentParser


def add_dataclass_flags(
    parser: argparse.ArgumentParser,
    *classes: type,
    negations: bool = True,
    metavars: Mapping[type, str] | None = None,
) -> None:
    """Add one flag per field of each of ``classes`` to ``parser``, as ``HfArgumentParser(classes)`` defines them.

    ``HfArgumentParser`` gives ``--name`` and ``--name_with_underscores``, extra ``aliases``, the field's
    help and ``add_argument`` keywords from its metadata, its type and choices (a ``Literal``), a list
    as ``nargs="+"``, an argument group per dataclass (its ``_argument_group_name``). On top, so that
    the command line reads as every ltd-hub command's:

    - a flag not given leaves its field out of the namespace (default ``SUPPRESS``), so it never
      overrides a ``--config`` file; the field's default is shown in the help instead;
    - a switch takes no value (``--dry-run SOURCE`` must not read SOURCE as true/false) and, with
      ``negations``, has ``--no-name`` to turn off what a YAML file turned on (HfArgumentParser adds it
      only for switches defaulting to true); a switch defaulting to None (``--bf16``: decided by the
      machine) is set by ``--bf16`` / ``--no-bf16`` alike;
    - a list field with ``action="append"`` is a repeatable flag (``--filter a=1 --filter b=2``);
    - a field whose ``dest`` the parser already has (a flag shared by several commands, such as
      ``--private``/``--public``) keeps the parser's own flag.

    Args:
        parser: the command's parser.
        classes: the options dataclasses.
        negations: add ``--no-name`` to every switch.
        metavars: placeholder per type (``{int: "N", list: "NAME"}``) for fields without a ``metavar``
            (default: argparse's, the option name in capitals).
    """
    source = _hf_argument_parser()(list(classes), add_help=False)
    own = {action.dest for action in parser._actions}
    _adopt_actions(parser, source, skip=own)
    kinds = dict(metavars or {})
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            actions = [a for a in parser._actions if a.dest == f.name]
            if f.name in own:
                for action in actions:
                    action.default = argparse.SUPPRESS
            else:
                _adapt_flag(parser, actions, f, hints[f.name], kinds, negate=negations)


def _adopt_actions(parser: argparse.ArgumentParser, source: argparse.ArgumentParser, *, skip: set[str]) -> None:
    """Add ``source``'s actions to ``parser``, each in the argument group of the same title (what ``parents=`` does)."""
    groups = {group.title: group for group in parser._action_groups}
    for group in source._action_groups:
        if group.title not in groups:
            groups[group.title] = parser.add_argument_group(group.title, group.description)
        for action in group._group_actions:
            if action.dest not in skip:
                groups[group.title]._add_action(action)


def _adapt_flag(
    parser: argparse.ArgumentParser,
    actions: list[argparse.Action],
    f: dataclasses.Field,
    hint: Any,
    kinds: Mapping[type, str],
    *,
    negate: bool,
) -> None:
    main, negations = actions[0], actions[1:]
    aliases = f.metadata.get("aliases") or []
    aliases = [aliases] if isinstance(aliases, str) else aliases
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
    if default is not False and default not in (None, "", [], dataclasses.MISSING) and main.help is not argparse.SUPPRESS:
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        main.help = f"{main.help or ''} (default: {shown})".strip()
    for action in actions:
        if not action.required:
            action.default = argparse.SUPPRESS
        # The house spelling first in help and errors: an alias (--filter for filters), then dashes.
        action.option_strings.sort(key=lambda option: (option not in aliases, "_" in option))
    base = _strip_optional(hint)
    if base is bool:
        _as_switch(parser, main, negations, f.name, negate=negate)
    elif isinstance(main, argparse._AppendAction):
        main.nargs = None  # one value per --flag, repeated
    if main.metavar is None and main.choices is None and base is not bool:
        item = typing.get_args(base)[0] if typing.get_origin(base) is list else base
        main.metavar = kinds.get(list) if typing.get_origin(base) is list and main.nargs == "+" else kinds.get(item)


def _as_switch(
    parser: argparse.ArgumentParser, main: argparse.Action, negations: list[argparse.Action], name: str, *, negate: bool
) -> None:
    # HfArgumentParser's `--name [true|false]` made a store action with an optional value; a store-const
    # action with no value is what `--name` alone means here.
    main.__class__ = argparse._StoreConstAction
    main.nargs, main.const, main.type, main.metavar = 0, True, None, None
    flag = f"--{name.replace('_', '-')}"
    if negate and not negations and not name.startswith("no_"):  # --no-cache has no --no-no-cache
        group = next((g for g in parser._action_groups if main in g._group_actions), parser)
        negations = [group.add_argument(f"--no-{flag[2:]}", f"--no_{name}", dest=name, action="store_false", default=argparse.SUPPRESS)]
    for action in negations:
        action.help = f"turn off {flag}"
        _move_after(parser, action, main)


def exclusive(parser: argparse.ArgumentParser, *dests: str) -> None:
    """Make the flags of ``dests`` exclude each other (argparse's mutually exclusive group, added afterwards)."""
    group = parser.add_mutually_exclusive_group()
    group._group_actions.extend(a for a in parser._actions if a.dest in dests and a.option_strings)


def _move_after(parser: argparse.ArgumentParser, action: argparse.Action, anchor: argparse.Action) -> None:
    """List ``--no-name`` right after ``--name`` in the usage and help."""
    for container in (parser._actions, *(g._group_actions for g in parser._action_groups)):
        if action in container and anchor in container:
            container.remove(action)
            container.insert(container.index(anchor) + 1, action)


def _strip_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        return members[0] if len(members) == 1 else hint
    return hint


def given_flags(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line (flags not given are not in ``args``)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in vars(args).items() if key in names}


def parse_config(cls: type[T], args: argparse.Namespace, *, config_file: str | None = None) -> T:
    """The options of a command: ``config_file`` (YAML) if given, overridden by the flags given."""
    return parse_configs([cls], args, config_file=config_file)[0]


def parse_configs(classes: list[type], args: argparse.Namespace, *, config_file: str | None = None) -> list[Any]:
    """One instance per class: the keys of ``config_file`` (YAML, one flat mapping as in TRL) that are its
    fields, overridden by the flags given. A key no class has is a one-line UsageError naming the valid keys."""
    from ltd_hub.errors import read_yaml_mapping

    loaded = {str(k).replace("-", "_"): v for k, v in read_yaml_mapping(config_file).items()} if config_file else {}
    source = Path(config_file).name if config_file else "flags"
    valid = [f.name for cls in classes for f in dataclasses.fields(cls)]
    unknown = sorted(set(loaded) - set(valid), key=str)
    if unknown:
        raise UsageError(f"unknown key {unknown[0]!r} in {source}; valid keys: {', '.join(valid)}")
    configs = []
    for cls in classes:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {**{k: v for k, v in loaded.items() if k in names}, **given_flags(args, cls)}
        configs.append(cls.from_mapping(values, source=source))  # type: ignore[attr-defined]
    return configs
