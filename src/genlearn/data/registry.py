"""Named data sets and the `NAME[:key=value,...]` spec the CLI and `load_dataset` accept: the catalogue.

The table and the spec syntax live in `genlearn.data.sources`; this module imports every source module so that
they are registered (the embedded and real data sets, and the synthetic sources whose truth is a model), and
looks names up. A spec that is not a registered name but an existing path is read by
`genlearn.data.files.load_path`.

Layering: the synthetic sources (`synthetic`, `teacher`) build their true distribution Q(X) from model classes,
so they, and this catalogue that lists them, sit above `genlearn.models`; the rest of the data package (files,
formats, binarization, the Dataset, the empirical distribution, the source table) sits below it and imports
nothing from models."""
from __future__ import annotations

import os
from pathlib import Path

import genlearn.data.digits  # noqa: F401  (registers digits)
import genlearn.data.named  # noqa: F401  (registers the real data sets)
import genlearn.data.synthetic  # noqa: F401  (registers coin, die, bars-and-stripes, product-bernoulli, gaussian)
import genlearn.data.teacher  # noqa: F401  (registers boltzmann-teacher)
from genlearn.data.files import load_path, split_files_of
from genlearn.data.sources import SOURCES, Source, default_data_dir, parse_spec, parse_value, register_source
from genlearn.errors import ConfigError, DataError


def load_dataset(spec: str, data_dir=None, **settings):
    """Load a data set by name (`coin:p=0.3,n=1000`, `digits`, `binarized-mnist`) or by path.

    Keyword settings are merged over those in the spec. Named real data sets are looked up in `data_dir`
    (or the GENLEARN_DATA environment variable)."""
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
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
        from genlearn.data.spec_check import check_spec_settings

        check_spec_settings(name, spec_settings, full)  # types, ranges, contradictions, memory: before building
        dataset = source.build(full, default_data_dir(data_dir))
        dataset.settings.setdefault("spec", spec)
        dataset.settings.setdefault("settings", {k: v for k, v in full.items() if _jsonable(v)})
        return dataset
    path = Path(name)
    if path.exists() or split_files_of(path):  # a file, a folder, or the prefix DIR/NAME of NAME.train.EXT ...
        from genlearn.data.spec_check import check_path_settings

        check_path_settings(path, spec_settings)
        dataset = load_path(path, **spec_settings)
        dataset.settings.setdefault("spec", recorded_spec(spec))
        return dataset
    if os.sep in name or "." in name:
        raise DataError(f"no such file or folder: {name}")
    raise ConfigError(
        f"unknown data set {name!r}; known: {', '.join(sorted(SOURCES))} (or give a path to a file or folder)"
    )


def recorded_spec(spec: str) -> str:
    """The spec a run records for its data: a relative path made absolute (settings kept as written), so that
    `genlearn eval`, `refit` and `--resume` find the file from any working folder; a named data set as it is."""
    if not isinstance(spec, str):
        return spec
    name, colon, rest = spec.partition(":")
    path = Path(name.strip())
    if name.strip() in SOURCES or path.is_absolute() or not (path.exists() or split_files_of(path)):
        return spec
    return os.path.abspath(path) + colon + rest


def _jsonable(v) -> bool:
    return isinstance(v, (int, float, str, bool, list, type(None)))


def list_sources() -> list[Source]:
    return [SOURCES[k] for k in sorted(SOURCES)]


__all__ = ["SOURCES", "Source", "default_data_dir", "list_sources", "load_dataset", "parse_spec", "parse_value",
           "recorded_spec",
           "register_source"]
