"""Reading, overriding and writing a run's config, with pydantic's errors as one line each.

:func:`validated` builds any config section (or a sweep's settings) from plain data and turns the
first validation error into an :class:`~deft_ray.errors.InputError` naming the dotted field, the
value and the fix. :func:`load_config` reads YAML, :func:`apply_overrides` sets dotted keys, and
:func:`parse_assignments` reads ``--set key=value`` (the value parsed as YAML).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import pydantic
import yaml

from deft_ray.config.sections import FieldProblem, RunConfig
from deft_ray.errors import InputError

T = TypeVar("T")

_PHRASES = {
    "int_type": ("must be a whole number", "give an integer"),
    "int_parsing": ("must be a whole number", "give an integer"),
    "int_from_float": ("must be a whole number", "give an integer"),
    "float_type": ("must be a number", "give a number such as 1e7"),
    "float_parsing": ("must be a number", "give a number such as 1e7"),
    "finite_number": ("must be a finite number", "give a number such as 1e7"),
    "bool_type": ("must be true or false", "write true or false"),
    "bool_parsing": ("must be true or false", "write true or false"),
    "string_type": ("must be text", "quote it"),
    "tuple_type": ("must be a list", "write it as [a, b, ...]"),
    "list_type": ("must be a list", "write it as [a, b, ...]"),
    "dict_type": ("must be a mapping", "write it as {name: amount}"),
    "dataclass_type": ("must be a mapping", "write it as `key: value` lines"),
    "dataclass_args_type": ("must be a mapping", "write it as `key: value` lines"),
}


def validated(cls: type[T], data: Any, *, where: str = "") -> T:
    """``cls`` (a pydantic dataclass) built from ``data``.

    Raises:
        InputError: the first thing wrong, as ``field = value: problem; fix``; ``where`` prefixes
            the field (``"--config"`` for a whole file that is not a mapping).
    """
    if not isinstance(data, Mapping):
        raise InputError(where or "config", data, "must be a mapping", "write it as `key: value` lines")
    try:
        return pydantic.TypeAdapter(cls).validate_python(dict(data))
    except pydantic.ValidationError as error:
        raise _input_error(cls, data, error.errors(include_url=False)[0], where) from None


def _input_error(cls: type, data: Any, detail: Mapping[str, Any], where: str) -> InputError:
    loc = [part for part in detail["loc"] if part not in ("function-after",)]
    problem = detail.get("ctx", {}).get("error")
    if isinstance(problem, FieldProblem):
        return InputError(_path(where, [*loc, *([problem.field] if problem.field else [])]), problem.value,
                          problem.problem, problem.fix)
    kind, value = detail["type"], detail.get("input")
    if isinstance(value, str) and kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        value = float(value)  # a number YAML 1.1 read as text, as the field parsed it
    if kind == "missing" and loc and isinstance(loc[-1], int):  # a tuple of fixed length came short
        loc = loc[:-1]
        value = _value_at(data, loc)
        return InputError(_path(where, loc), value, "has too few items", "give every item of the list")
    if kind == "missing":
        return InputError(_path(where, loc), None, "missing", f"add {loc[-1]!r} here")
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        section = _section_at(cls, loc[:-1])
        valid = ", ".join(f.name for f in dataclasses.fields(section)) if section else ""
        return InputError(_path(where, loc), value, "unknown key", f"valid keys here: {valid}")
    if kind == "literal_error":
        choices = detail["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        return InputError(_path(where, loc), value, "is not a valid choice", f"use one of {choices}")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = next(iter(detail["ctx"].values()))
        problem, fix = {"greater_than": ("must be positive" if bound == 0 else f"must be above {bound:g}", "give a value above 0" if bound == 0 else f"give a value above {bound:g}"),
                        "greater_than_equal": ("must not be negative" if bound == 0 else f"must be at least {bound:g}", "give 0 or more" if bound == 0 else f"give {bound:g} or more"),
                        "less_than": (f"must be below {bound:g}", f"give a value below {bound:g}"),
                        "less_than_equal": (f"must be at most {bound:g}", f"give {bound:g} or less")}[kind]
        return InputError(_path(where, loc), value, problem, fix)
    if kind == "too_long":
        return InputError(_path(where, loc), value, "has too many items", f"give {detail['ctx'].get('max_length')} items")
    if kind == "value_error" and "bool is not a number" in detail["msg"]:
        return InputError(_path(where, loc), value, "must be a number", "give a number such as 1e7")
    problem, fix = _PHRASES.get(kind, (detail["msg"].lower(), "see docs/configuration.md"))
    return InputError(_path(where, loc), value, problem, fix)


def _path(where: str, loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return f"{where} {text}".strip() if where and text else (text or where or "config")


def _value_at(data: Any, loc: Sequence[Any]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _section_at(cls: type, loc: Sequence[Any]) -> type | None:
    """The section class at ``loc`` below ``cls`` (through tuples of sections)."""
    import typing

    section = cls
    for part in loc:
        if isinstance(part, int):
            continue
        hints = typing.get_type_hints(section)
        hint = hints.get(part)
        while hint is not None and not dataclasses.is_dataclass(hint):
            args = [a for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis]
            hint = args[0] if args else None
        if hint is None:
            return None
        section = hint
    return section


def config_from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Build and validate a :class:`RunConfig` from a (YAML-parsed) mapping."""
    return validated(RunConfig, data or {})


def load_config(path: str | Path | None) -> RunConfig:
    """Read a YAML config (``None`` gives the defaults) and validate it."""
    if path is None:
        return RunConfig()
    file = Path(path)
    if not file.is_file():
        raise InputError("--config", str(path), "no such file", "give the path of a YAML config")
    return config_from_dict(read_yaml(file, option="--config"))


def read_yaml(file: Path, *, option: str) -> Any:
    """A YAML file's data; bad YAML or bytes are one line naming the file's line."""
    try:
        return yaml.safe_load(file.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError as error:
        raise InputError(option, str(file), f"is not UTF-8 text (byte {error.start})", "save it as UTF-8") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InputError(f"{option}{where}", str(file), f"is not valid YAML ({getattr(error, 'problem', error)})",
                         "fix the YAML syntax there") from None


def apply_overrides(config: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    """Set dotted keys (``{"data.task": "sst2", "rounds": 10}``; ``None`` values are skipped) and
    re-validate. A key naming no field is an error listing the valid keys where it points."""
    data = to_dict(config)
    for key, value in overrides.items():
        if value is None:
            continue
        node: Any = data
        *parents, leaf = key.split(".")
        for depth, part in enumerate(parents):
            if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
                section = _section_at(RunConfig, parents[:depth])
                valid = ", ".join(f.name for f in dataclasses.fields(section) if _is_section(section, f.name))
                raise InputError(f"--set {key}", value, f"{'.'.join(parents[:depth + 1])} is not a section",
                                 f"sections here: {valid}" if valid else "set a key of the top level")
            node = node[part]
        node[leaf] = value
    return config_from_dict(data)


def _is_section(cls: type, name: str) -> bool:
    return _section_at(cls, [name]) is not None


def parse_assignments(assignments: Sequence[str]) -> dict[str, Any]:
    """``["network.bandwidth_hz=5e6", "data.batch_size=8"]`` as ``{key: value}``, each value
    parsed as YAML (so ``8`` is a number, ``[a, b]`` a list, ``null`` empty)."""
    overrides = {}
    for assignment in assignments:
        key, equals, text = assignment.partition("=")
        if not equals or not key.strip():
            raise InputError("--set", assignment, "is not KEY=VALUE", "write e.g. --set network.bandwidth_hz=5e6")
        try:
            overrides[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as error:
            raise InputError(f"--set {key.strip()}", text, f"is not a YAML value ({getattr(error, 'problem', error)})",
                             "quote text, e.g. --set model.name_or_path='\"my model\"'") from None
    return overrides


def to_dict(config: Any) -> Any:
    """Plain YAML-ready data (tuples as lists)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(item) for item in config]
    if isinstance(config, Mapping):
        return {k: to_dict(v) for k, v in config.items()}
    return config


def dump_config(config: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
