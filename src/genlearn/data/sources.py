"""The table of named data sources and the `NAME[:key=value,...]` spec syntax: the bottom of the data package.

A source is a function(settings: dict, data_dir: Path | None) -> Dataset, registered under its name with
`register_source`. Source modules (digits, named, synthetic, teacher) import this module to register themselves;
`genlearn.data.registry` imports the source modules and looks names up here. So the dependence points one way,
source modules -> sources <- registry, with no cycle."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from genlearn.errors import ConfigError


@dataclass(frozen=True)
class Source:
    name: str
    build: Callable
    summary: str
    settings: dict  # key -> (default, help); the only keys a spec may set


SOURCES: dict[str, Source] = {}


def register_source(name: str, summary: str, settings: dict):
    """Decorator registering a data source under `name`."""

    def wrap(fn):
        SOURCES[name] = Source(name, fn, summary, settings)
        return fn

    return wrap


def parse_value(text: str):
    """'3' -> 3, '0.5' -> 0.5, '0.1/0.9' -> [0.1, 0.9], 'true' -> True, else the string."""
    if "/" in text and not os.path.exists(text):
        return [parse_value(t) for t in text.split("/") if t]
    low = text.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_spec(spec: str) -> tuple[str, dict]:
    """'coin:p=0.3,n=1000' -> ('coin', {'p': 0.3, 'n': 1000})."""
    if not isinstance(spec, str):
        raise ConfigError(f"a data set is named by a string such as 'coin:p=0.3' or a path, got "
                          f"{type(spec).__name__} {spec!r}"[:300])
    if not spec or not spec.strip():
        raise ConfigError("empty data set name; see `genlearn datasets` for the list")
    name, _, rest = spec.partition(":")
    if not name.strip():
        raise ConfigError(f"no data set name before ':' in {spec!r}; write NAME:key=value (see `genlearn datasets`)")
    settings = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"bad data setting {item!r} in {spec!r}; write NAME:key=value,key=value")
        key = key.strip().replace("-", "_")
        if key in settings:
            raise ConfigError(f"data setting {key} is given twice in {spec!r}; give it once")
        settings[key] = parse_value(value.strip())
    return name.strip(), settings


def default_data_dir(data_dir=None) -> Path | None:
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("GENLEARN_DATA")
    return Path(env) if env else None


__all__ = ["SOURCES", "Source", "default_data_dir", "parse_spec", "parse_value", "register_source"]
