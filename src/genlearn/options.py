"""Typed options: one declaration per setting, from which the CLI flags, the validation and the saved config come.

A model family (and the trainer) declares its settings as a dataclass whose fields are made with `option`:

    @dataclass
    class RBMConfig:
        hidden: int = option(16, "number of hidden units", minimum=1)
        gradient: str | None = option(None, "negative phase", choices=(None, "cd", "pcd", "exact"))

`parse(ConfigClass, values, what)` converts and validates a dict of values given from Python, a recipe or the
command line (strings), with one message format: `--flag must be <type>, got <value>` / `--flag must be one of
...` / `--flag does not apply to <what>`. `add_arguments` turns the fields into argparse flags; every flag
reaches the parser as a string (or a boolean switch) and is converted here, so a bad value is a ConfigError
printed on one line by the CLI, never an argparse usage dump. Supported field types: int, float, str, bool,
tuple[int, ...] (written "500,500" on the command line), each optionally `| None`."""
from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing

from genlearn.errors import ConfigError


def option(default, help: str, *, choices: tuple | None = None, minimum: float | None = None,
           cli: bool = True):
    """A dataclass field with its help text, allowed choices, lower bound and whether it is a CLI flag."""
    meta = {"help": help, "choices": choices, "minimum": minimum, "cli": cli}
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=meta)


def flag(name: str) -> str:
    """The command-line spelling of a field name: hidden_bias -> --hidden-bias."""
    return "--" + name.replace("_", "-")


def field_types(cls) -> dict:
    """{field name: (base type, nullable)} with string annotations resolved."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        nullable = False
        if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
            args = [a for a in typing.get_args(t) if a is not type(None)]
            nullable = len(args) < len(typing.get_args(t))
            t = args[0] if len(args) == 1 else str
        out[f.name] = (t, nullable)
    return out


def _type_name(t) -> str:
    if t is int:
        return "an integer"
    if t is float:
        return "a finite number"
    if t is bool:
        return "true or false"
    if typing.get_origin(t) is tuple:
        return "comma-separated integers (e.g. 500 or 500,500)"
    return "a string"


def convert(cls, name: str, value):
    """`value` (a Python value or a command-line string) converted to the type of field `name` of `cls` and
    checked against its choices and minimum; ConfigError naming the flag otherwise."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    t, nullable = field_types(cls)[name]
    meta = f.metadata
    where = flag(name)
    if value is None or (nullable and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if nullable or f.default is None:
            return None
        raise ConfigError(f"{where} needs a value ({_type_name(t)})")
    try:
        value = _coerce(t, value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be {_type_name(t)}, got {value!r}") from None
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        shown = ", ".join(str(c) for c in choices if c is not None)
        raise ConfigError(f"{where} must be one of {shown}, got {value!r}")
    low = meta.get("minimum")
    if low is not None:
        items = value if isinstance(value, tuple) else (value,)
        if any(v < low for v in items):
            shown = ",".join(str(v) for v in items) if isinstance(value, tuple) else repr(value)
            each = " (each entry)" if isinstance(value, tuple) and len(items) > 1 else ""
            raise ConfigError(f"{where} must be >= {low:g}{each}, got {shown}")
    return value


def _coerce(t, value):
    if t is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(value)
    if t is int:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, str):
            value = value.strip()
            return int(value) if value.lstrip("+-").isdigit() else _integral(float(value))
        return _integral(value)
    if t is float:
        if isinstance(value, bool):
            raise TypeError(value)
        out = float(value)
        if not math.isfinite(out):
            raise ValueError(value)
        return out
    if typing.get_origin(t) is tuple:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",")]  # "8 8", "8,,8", ",8": errors, not 88 or (8, 8)
            if not all(parts):
                raise ValueError(value)
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            parts = [value]
        if not parts:
            raise ValueError(value)
        return tuple(_coerce(int, p) for p in parts)
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _integral(value) -> int:
    out = int(value)
    if out != value:
        raise ValueError(value)
    return out


def parse(cls, values: dict | None, what: str):
    """An instance of `cls` from `values` (None entries take the defaults); unknown names are a ConfigError
    that lists the options `what` has."""
    values = {k: v for k, v in (values or {}).items() if v is not None}
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        known = ", ".join(flag(n) for n in names) or "none"
        raise ConfigError(f"{', '.join(flag(u) for u in unknown)} does not apply to {what} (its options: {known})")
    return cls(**{k: convert(cls, k, v) for k, v in values.items()})


def to_dict(instance) -> dict:
    """JSON-ready values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(instance).items()}


def add_arguments(group, cls, dest_prefix: str = "", defaults: dict | None = None, owner: str = "",
                  otherwise: dict | None = None, condition: str = "") -> None:
    """One argparse flag per CLI field of `cls`, into `group`; values stay unset unless given (SUPPRESS), arrive
    as strings (bools as switches, with --no-NAME for those on by default) and are converted by `parse`.
    `defaults`: the defaults of `owner` (a family's own training defaults) that replace the field's in the help;
    `otherwise`: the defaults that hold instead when `condition` does not (e.g. another optimizer), shown beside
    those that differ from them."""
    types_ = field_types(cls)
    defaults = defaults or {}
    otherwise = otherwise if otherwise is not None else defaults
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True) or "help" not in meta:
            continue
        t, _ = types_[f.name]
        default = defaults.get(f.name, f.default)
        text = meta["help"]
        if f.name in defaults and otherwise.get(f.name, f.default) != default:
            instead = otherwise.get(f.name, f.default)
            text += (f" ({owner} default {_shown(default)} {condition}; "
                     f"{'unset' if instead is None else _shown(instead)} otherwise)")
        elif f.name in defaults:
            text += f" ({owner} default {_shown(default)})"
        elif t is bool:
            text += f" (default {'on' if default else 'off'})"
        elif default is not None and "default" not in text:
            text += f" (default {_shown(default)})"
        dest = dest_prefix + f.name
        if t is bool:
            action = argparse.BooleanOptionalAction if default else "store_true"
            group.add_argument(flag(f.name), dest=dest, action=action, default=argparse.SUPPRESS, help=text)
            continue
        choices = meta.get("choices")
        metavar = "{" + ",".join(str(c) for c in choices if c is not None) + "}" if choices else f.name.upper()
        group.add_argument(flag(f.name), dest=dest, type=str, default=argparse.SUPPRESS, metavar=metavar, help=text)


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


__all__ = ["add_arguments", "convert", "field_types", "flag", "option", "parse", "to_dict"]
