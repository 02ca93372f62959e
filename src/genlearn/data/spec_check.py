"""Declared constraints of data-spec settings: the type and range of each setting of each named source
(`coin:p=abc` -> "data set 'coin': p must be a number in [0, 1], got 'abc'"), the contradictions between
settings (`gaussian:dim=3,mean=1/2`, `die:probs=1`), and the memory a source would allocate (`coin:n=10000000000`
is refused with the memory it needs before torch is asked for it). Also the check of data-file values that are
not 0/1 when no binarization was asked for. Checked by `genlearn.data.registry.load_dataset` before a source is
built; low level: it imports only the errors and genlearn.validate."""
from __future__ import annotations

import math

import numpy as np

from genlearn.errors import ConfigError, DataError
from genlearn.validate import MAX_SEED, check_memory


# -- declared constraints of data-spec settings -----------------------------------------------------------------
class Int:
    """An integer in [low, high] (None: unbounded); `none_ok`: the setting may be left unset (None)."""

    def __init__(self, low=None, high=None, none_ok=False):
        self.low, self.high, self.none_ok = low, high, none_ok

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"an integer in [{self.low}, {self.high}]" if self.high != MAX_SEED else \
                "an integer in [0, 2^63 - 1]"
        return f"an integer >= {self.low}" if self.low is not None else "an integer"

    def ok(self, v) -> bool:
        return (not isinstance(v, bool) and isinstance(v, int) and (self.low is None or v >= self.low)
                and (self.high is None or v <= self.high))


class Num:
    """A finite number in the interval low..high; `open_low` / `open_high` exclude the end."""

    def __init__(self, low=None, high=None, open_low=False, open_high=False, none_ok=False, many=False):
        self.low, self.high, self.open_low, self.open_high = low, high, open_low, open_high
        self.none_ok, self.many = none_ok, many

    def describe(self) -> str:
        if self.low is None and self.high is None:
            what = "a finite number"
        elif self.high is None:
            what = f"a number {'>' if self.open_low else '>='} {self.low:g}"
        else:
            what = (f"a number in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.open_high else ']'}")
        return what + (" (or several separated by /)" if self.many else "")

    def _one(self, v) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        if self.low is not None and (v < self.low or (self.open_low and v == self.low)):
            return False
        return self.high is None or (v < self.high or (not self.open_high and v == self.high))

    def ok(self, v) -> bool:
        if isinstance(v, list):
            return self.many and len(v) > 0 and all(self._one(x) for x in v)
        return self._one(v)


SEED = Int(0, MAX_SEED)
_SYNTHETIC = {"n": Int(1), "n_test": Int(1, none_ok=True), "seed": SEED}
_IMAGES = {"threshold": Num(0, 1, open_high=True), "seed": SEED, "valid": Int(0)}
SPEC_CONSTRAINTS: dict[str, dict] = {
    "coin": {"p": Num(0, 1), **_SYNTHETIC},
    "die": {"k": Int(2), "probs": Num(0, 1, many=True, none_ok=True), **_SYNTHETIC},
    "bars-and-stripes": {"size": Int(2, 7), **_SYNTHETIC},
    "product-bernoulli": {"dim": Int(1), "probs": Num(0, 1, many=True, none_ok=True), **_SYNTHETIC},
    "gaussian": {"dim": Int(1), "mean": Num(many=True), "std": Num(0, open_low=True, many=True), **_SYNTHETIC},
    "boltzmann-teacher": {"n": Int(2), "samples": Int(1), "scale": Num(0), "field": Num(0), "seed": SEED,
                          "teacher_seed": Int(0, MAX_SEED, none_ok=True), "n_test": Int(1, none_ok=True)},
    "digits": {"threshold": Num(0, 1, open_high=True), "seed": SEED},
    "mnist": dict(_IMAGES),
    "fashion-mnist": dict(_IMAGES),
}
#: the settings of a data file or folder given by path (genlearn.data.files.SETTINGS)
PATH_CONSTRAINTS = {"threshold": Num(0, 1, open_high=True), "seed": SEED, "scale": Num(0, open_low=True, none_ok=True),
                    "valid": Num(0, 1, open_high=True), "test": Num(0, 1, open_high=True)}


def _check_declared(constraints: dict, settings: dict, where: str) -> None:
    for key, value in settings.items():
        c = constraints.get(key)
        if c is None or (value is None and c.none_ok):
            continue
        if not c.ok(value):
            shown = "/".join(map(str, value)) if isinstance(value, list) else value
            raise ConfigError(f"{where}: {key} must be {c.describe()}, got {shown!r}")


def check_spec_settings(name: str, given: dict, full: dict) -> None:
    """The settings of data source `name` (`given`: those in the spec, `full`: with the defaults): declared types
    and ranges, contradictions between settings, and the memory the source would allocate."""
    _check_declared(SPEC_CONSTRAINTS.get(name, {}), given, f"data set {name!r}")
    if name in ("die", "product-bernoulli"):
        probs = given.get("probs")
        if probs is not None:
            probs = probs if isinstance(probs, list) else [probs]
            size_key = "k" if name == "die" else "dim"
            if size_key in given and given[size_key] != len(probs):
                raise ConfigError(f"{name}: {size_key}={given[size_key]} contradicts the {len(probs)} probabilities "
                                  f"of probs; give one of them")
            if name == "die":
                if len(probs) < 2:
                    raise ConfigError(f"die: probs needs at least 2 face probabilities separated by / (e.g. "
                                      f"probs=0.5/0.5), got {len(probs)}")
                if abs(sum(probs) - 1) > 1e-6:
                    raise ConfigError(f"die: the face probabilities must sum to 1, they sum to {sum(probs):g}")
    if name == "gaussian":
        lengths = {k: len(given[k]) for k in ("mean", "std") if isinstance(given.get(k), list)}
        if len(set(lengths.values())) > 1:
            raise ConfigError(f"gaussian: mean has {lengths['mean']} values but std has {lengths['std']}; give "
                              "the same number (or one value for every dimension)")
        if lengths and "dim" in given and given["dim"] != next(iter(lengths.values())):
            k, m = next(iter(lengths.items()))
            raise ConfigError(f"gaussian: dim={given['dim']} contradicts the {m} values of {k}; give dim or a "
                              "list of that many values")
    if "binarize" in full:
        check_binarization_settings(given, full["binarize"], f"data set {name!r}")
    estimate = SPEC_MEMORY.get(name)
    if estimate is not None:
        nbytes, what = estimate(full)
        check_memory(nbytes, f"data set {name!r} with {what}", "choose smaller sizes")


def check_path_settings(path, given: dict) -> None:
    _check_declared(PATH_CONSTRAINTS, given, f"data file {path}")
    check_binarization_settings(given, given.get("binarize", "threshold"), f"data file {path}")


#: binarization setting -> the binarize= methods it acts on
BINARIZATION_SETTINGS = {"threshold": ("threshold",), "seed": ("static", "dynamic")}


def check_binarization_settings(given: dict, method, where: str) -> None:
    """threshold= acts on binarize=threshold alone and seed= on the random draws of binarize=static|dynamic (the
    splits of these sources are fixed): one UserWarning for a given setting the binarization ignores (a warning,
    not an error: runs recorded such specs before, and must still evaluate, refit and resume)."""
    import warnings

    method = str(method).lower()
    for key, methods in BINARIZATION_SETTINGS.items():
        if key in given and method not in methods:
            warnings.warn(f"{where}: {key}= applies to binarize={'|'.join(methods)}, and this spec binarizes by "
                          f"{method}: {key}= is ignored (drop it, or set binarize={methods[0]})", UserWarning,
                          stacklevel=2)


def _rows(s: dict, n_key: str = "n") -> int:
    n = s[n_key]
    return n + 2 * (s.get("n_test") or max(1, n // 5))


#: data source -> settings -> (bytes it allocates, the sizes that drive it); a float32 sample and its temporaries
SPEC_MEMORY = {
    "coin": lambda s: (_rows(s) * 4 * 3, f"n={s['n']}"),
    "die": lambda s: (_rows(s) * 8 * 3, f"n={s['n']}"),
    "product-bernoulli": lambda s: (
        _rows(s) * _dim(s) * 4 * 3 + _dim(s) * 40, f"n={s['n']} rows of dim={_dim(s)}"),
    "gaussian": lambda s: (_rows(s) * _dim(s) * 4 * 4, f"n={s['n']} rows of dim={_dim(s)}"),
    "boltzmann-teacher": lambda s: (
        s["n"] ** 2 * 8 * 4 + _rows(s, "samples") * s["n"] * 4 * 3
        + (2 ** s["n"] * (s["n"] + 1) * 8 * 2 if s["n"] <= 20 else 0),
        f"n={s['n']} units (couplings n x n) and samples={s['samples']}"),
}


def _dim(s: dict) -> int:
    for key in ("probs", "mean", "std"):
        if isinstance(s.get(key), list):
            return len(s[key])
    return s["dim"]


#: the settings by which a user declares grey levels (binarize=..., threshold=..., scale=MAX)
DECLARE_GREY = frozenset({"binarize", "threshold", "scale"})
#: formats whose values are grey levels by nature (images): binarized by default without being asked
GREY_FORMATS = ("png-folder", "idx")


def check_binary_values(parts: dict, path, fmt: str, given: dict, files: dict | None = None) -> None:
    """Values of a data file that look like grey levels (in [0, 1] or 0..255) but are not all 0/1, when the user
    did not declare grey levels (none of binarize=, threshold=, scale= in the spec): one DataError naming the
    file, the row and column (1-based, as in the file) and the value. Image formats (PNG folders, IDX) hold grey
    levels by nature and are binarized by default. `parts`: {split or "data": 2-D array}; `files`: {split: the
    file it came from} for pre-split data."""
    if DECLARE_GREY.intersection(given) or fmt in GREY_FORMATS:
        return
    for key, arr in parts.items():
        bad = (arr != 0) & (arr != 1)
        if bad.any():
            r, c = (int(i) for i in np.argwhere(bad)[0])
            where = (files or {}).get(key) or (path if key == "data" else f"{path}[{key}]")
            raise DataError(
                f"{where}: row {r + 1}, column {c + 1} holds {arr[r, c]:g}, but 0/1 data must hold only 0 and 1 "
                f"({int(bad.sum())} such values); if the values are grey levels, say how to binarize them "
                "(PATH:binarize=threshold|static|dynamic, with scale=MAX for levels 0..MAX), or binarize=none to "
                "keep real values")
