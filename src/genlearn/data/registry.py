"""Named data sets and the `NAME[:key=value,...]` spec the CLI and `load_dataset` accept.

A source is a function(settings: dict, data_dir: Path | None) -> Dataset registered with `register_source`.
A spec that is not a registered name but an existing path is read by `genlearn.data.files.load_path`."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from genlearn.errors import ConfigError, DataError


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
    if not spec or not spec.strip():
        raise ConfigError("empty data set name; see `genlearn datasets` for the list")
    name, _, rest = spec.partition(":")
    settings = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"bad data setting {item!r} in {spec!r}; write NAME:key=value,key=value")
        settings[key.strip().replace("-", "_")] = parse_value(value.strip())
    return name.strip(), settings


def default_data_dir(data_dir=None) -> Path | None:
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("GENLEARN_DATA")
    return Path(env) if env else None


def load_dataset(spec: str, data_dir=None, **settings):
    """Load a data set by name (`coin:p=0.3,n=1000`, `digits`, `binarized-mnist`) or by path.

    Keyword settings are merged over those in the spec. Named real data sets are looked up in `data_dir`
    (or the GENLEARN_DATA environment variable)."""
    _ensure_sources_loaded()
    name, spec_settings = parse_spec(spec)
    spec_settings.update({k.replace("-", "_"): v for k, v in settings.items()})
    if name in SOURCES:
        source = SOURCES[name]
        unknown = set(spec_settings) - set(source.settings)
        if unknown:
            allowed = ", ".join(sorted(source.settings)) or "none"
            raise ConfigError(
                f"unknown setting(s) {', '.join(sorted(unknown))} for data set {name!r}; allowed: {allowed}"
            )
        full = {k: v[0] for k, v in source.settings.items()}
        full.update(spec_settings)
        dataset = source.build(full, default_data_dir(data_dir))
        dataset.settings.setdefault("spec", spec)
        dataset.settings.setdefault("settings", {k: v for k, v in full.items() if _jsonable(v)})
        return dataset
    path = Path(name)
    if path.exists():
        from genlearn.data.files import load_path

        dataset = load_path(path, **spec_settings)
        dataset.settings.setdefault("spec", spec)
        return dataset
    if os.sep in name or "." in name:
        raise DataError(f"no such file or folder: {name}")
    raise ConfigError(
        f"unknown data set {name!r}; known: {', '.join(sorted(SOURCES))} (or give a path to a file or folder)"
    )


def _jsonable(v) -> bool:
    return isinstance(v, (int, float, str, bool, list, type(None)))


def _ensure_sources_loaded() -> None:
    import genlearn.data.synthetic  # noqa: F401  (registers coin, die, ...)
    import genlearn.data.digits  # noqa: F401
    import importlib

    for module in ("genlearn.data.named", "genlearn.data.teacher"):  # real data sets; teacher models
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def list_sources() -> list[Source]:
    _ensure_sources_loaded()
    return [SOURCES[k] for k in sorted(SOURCES)]
