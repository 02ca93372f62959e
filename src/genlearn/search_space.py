"""Hyperparameter search spaces: the ranges `genlearn tune` samples, declared next to each family's config.

A family's `ModelSpec.search_space` maps a setting to a `Param`; a setting is one of the family's options
(hidden, components, ...) or a training field (lr, batch_size, weight_decay, schedule, ...). Kinds:

    integer(low, high, log=False)   an int in [low, high] (log: uniform in log, for sizes)
    real(low, high, log=False)      a float in [low, high] (log: for rates and penalties)
    choice(a, b, ...)               one of the values (numbers, strings, booleans)
    one_of({..}, {..}, ...)         one of several sets of settings, for settings that only make sense together
                                    (e.g. {order = "fixed"} or {order_agnostic = true, orderings = 32}); its
                                    name is a label, not an option
    fixed(value)                    not searched; given to every trial of the family

`check_space` validates a space against the family's config and TrainConfig with their own converters, so a
bad range is one ConfigError naming the setting (e.g. `search space of 'nade': hidden: --hidden must be >= 1,
got 0`). A user's space (TOML, `genlearn tune --space FILE`) is read by `space_from_toml`:
    [nade]
    hidden = {low = 16, high = 256, log = true}   # integer when both bounds are integers, else real
    activation = ["relu", "sigmoid"]              # a list: a choice
    ordering = [{order = "fixed"}, {order_agnostic = true, orderings = 32}]   # a list of tables: one_of
    batch_size = 100                              # a scalar: fixed
This module imports no optimiser library: `genlearn.tune` turns a space into Optuna's suggestions."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from genlearn import options
from genlearn.errors import ConfigError

KINDS = ("int", "float", "choice", "one_of", "fixed")


@dataclass(frozen=True)
class Param:
    """One searched setting: kind int/float with low, high (inclusive) and log; choice with choices; one_of with
    choices, each a tuple of (setting, value) pairs; fixed with value."""

    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    value: object = None

    def describe(self) -> dict:
        if self.kind in ("int", "float"):
            return {"kind": self.kind, "low": self.low, "high": self.high, "log": self.log}
        if self.kind == "choice":
            return {"kind": "choice", "choices": list(self.choices)}
        if self.kind == "one_of":
            return {"kind": "one_of", "choices": [dict(c) for c in self.choices]}
        return {"kind": "fixed", "value": self.value}

    def settings(self) -> set[str]:
        """The options a one_of entry sets (empty for the other kinds, whose name is the option they set)."""
        return {k for c in self.choices for k, _ in c} if self.kind == "one_of" else set()

    def labels(self) -> list[str]:
        """one_of: one label per set of settings, e.g. "order_agnostic=True, orderings=32" (what the optimiser
        chooses among and the trials table shows)."""
        return [option_set_label(c) for c in self.choices]

    def chosen(self, label: str) -> dict:
        """one_of: the settings of the set whose label is `label`."""
        return dict(self.choices[self.labels().index(label)])


def option_set_label(pairs) -> str:
    return ", ".join(f"{k}={v}" for k, v in pairs)


def integer(low: int, high: int, log: bool = False) -> Param:
    return Param("int", int(low), int(high), bool(log))


def real(low: float, high: float, log: bool = False) -> Param:
    return Param("float", float(low), float(high), bool(log))


def choice(*values) -> Param:
    return Param("choice", choices=tuple(values))


def one_of(*option_sets: dict) -> Param:
    """One of several sets of settings ({setting: value} each), searched as one categorical choice."""
    return Param("one_of", choices=tuple(tuple(dict(o).items()) for o in option_sets))


def fixed(value) -> Param:
    return Param("fixed", value=value)


def _check_values(config_cls, name: str, values, where: str) -> None:
    """Each value through the option's own converter (type, choices, minimum)."""
    for v in values:
        try:
            options.convert(config_cls, name, v)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {name}: {exc}") from None


def check_space(space: dict, family_config, train_config, family: str) -> dict:
    """`space` ({setting: Param}) checked against the family's config class and TrainConfig: every setting must be
    an option of one of them, bounds ordered (low > 0 for log), every bound / choice / fixed value valid for the
    option. Returns the space unchanged; ConfigError naming the family and setting otherwise."""
    where = f"search space of {family!r}"
    fam = {f.name for f in dataclasses.fields(family_config)}
    train = {f.name for f in dataclasses.fields(train_config)}
    for name, p in space.items():
        if not isinstance(p, Param) or p.kind not in KINDS:
            raise ConfigError(f"{where}: {name} must be a search_space Param (integer, real, choice, one_of, "
                              f"fixed), got {p!r}")
        if p.kind == "one_of":
            _check_option_sets(space, name, p, family_config, train_config, fam | train, where)
            continue
        if name in fam:
            cls = family_config
        elif name in train:
            cls = train_config
        else:
            known = ", ".join(sorted(fam | train))
            raise ConfigError(f"{where}: {name!r} is neither an option of {family!r} nor a training setting "
                              f"(known: {known})")
        if p.kind in ("int", "float"):
            if p.low is None or p.high is None or not (math.isfinite(p.low) and math.isfinite(p.high)):
                raise ConfigError(f"{where}: {name} needs finite low and high, got {p.low!r}, {p.high!r}")
            if p.low > p.high:
                raise ConfigError(f"{where}: {name} has low {p.low:g} > high {p.high:g}; swap them")
            if p.log and p.low <= 0:
                raise ConfigError(f"{where}: {name} is searched in log scale, so low must be > 0, got {p.low:g}")
            _check_values(cls, name, (p.low, p.high) if p.kind == "float" else (int(p.low), int(p.high)), where)
        elif p.kind == "choice":
            if not p.choices:
                raise ConfigError(f"{where}: {name} is a choice among no values; give at least one")
            _check_values(cls, name, p.choices, where)
        else:
            _check_values(cls, name, (p.value,), where)
    return space


def _check_option_sets(space: dict, name: str, p: Param, family_config, train_config, known: set, where: str):
    """A one_of entry: a label that is no option, at least one non-empty set, distinct sets, every setting an
    option with a valid value, and no setting also searched by another entry of the space."""
    if name in known:
        raise ConfigError(f"{where}: {name} is an option, so it cannot name a list of option sets; give the sets "
                          "another name (e.g. variant = [{...}, {...}])")
    if not p.choices or not all(p.choices):
        raise ConfigError(f"{where}: {name} needs at least one set of settings, each with at least one setting")
    if len(set(p.labels())) != len(p.choices):
        raise ConfigError(f"{where}: {name} lists the same set of settings twice")
    fam = {f.name for f in dataclasses.fields(family_config)}
    for key, value in (kv for c in p.choices for kv in c):
        if key not in known:
            raise ConfigError(f"{where}: {name}: {key!r} is neither an option of the family nor a training setting "
                              f"(known: {', '.join(sorted(known))})")
        _check_values(family_config if key in fam else train_config, key, (value,), f"{where}: {name}")
    for other, q in space.items():
        both = (p.settings() & ({other} if q.kind != "one_of" else q.settings())) if other != name else set()
        if both:
            raise ConfigError(f"{where}: {', '.join(sorted(both))} is set both by {name} and by {other}; "
                              "keep it in one of them")


def param_from_toml(value, where: str) -> Param:
    """A TOML value as a Param: {low, high[, log]} a range (integer when both bounds are integers), a list of
    tables one_of, a list a choice, a scalar fixed."""
    if isinstance(value, dict):
        unknown = set(value) - {"low", "high", "log"}
        if unknown or not {"low", "high"} <= set(value):
            raise ConfigError(f"{where}: a range is {{low = ..., high = ..., log = true|false}}, got {value!r}")
        low, high, log = value["low"], value["high"], value.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"{where}: log must be true or false, got {log!r}")
        for b in (low, high):
            if isinstance(b, bool) or not isinstance(b, (int, float)):
                raise ConfigError(f"{where}: low and high must be numbers, got {value!r}")
        if isinstance(low, int) and isinstance(high, int):
            return integer(low, high, log)
        return real(low, high, log)
    if isinstance(value, list):
        tables = [isinstance(v, dict) for v in value]
        if any(tables) and not all(tables):
            raise ConfigError(f"{where}: a list is either values (a choice) or tables of settings (one of them), "
                              f"not both; got {value!r}")
        return one_of(*value) if value and all(tables) else choice(*value)
    return fixed(value)


def space_from_toml(text: str, source: str = "the search space") -> dict[str, dict[str, Param]]:
    """{family: {setting: Param}} from TOML text with one table per family (see the module docstring)."""
    import tomllib

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML ({exc})") from None
    out = {}
    for family, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {family!r} must be a table [{family}] of settings, got {table!r}")
        out[family] = {k: param_from_toml(v, f"{source} [{family}] {k}") for k, v in table.items()}
    return out


__all__ = ["KINDS", "Param", "check_space", "choice", "fixed", "integer", "one_of", "option_set_label",
           "param_from_toml", "real", "space_from_toml"]
