"""One-off speed measurements remembered on this machine, across processes.

Some of genlearn's choices rest on a timing taken once per process: which library runs float32 products fastest
(genlearn.products, ~0.2 s), below which density the sums of selected rows beat dense products
(genlearn.binary_kernels.Chooser, ~0.05-0.1 s per shape), and which sigmoid and tanh kernels run
(genlearn.logistic_kernels.sigmoid_speedup, genlearn.numerics.tanh_timings: a few ms each, but near their 1.2x
margin the answer could flip from one process to the next, and with it a run's float32 rounding). Every
`genlearn fit` paid them again in its first epoch (~0.4 s of a ~2.7 s RBM epoch on a 2-core AVX2 EPYC). They
depend on the machine and the software only, so they are kept in small JSON files, one per machine, software and
measuring module:

    key = hash(CPU model, torch's CPU capability, cores, Python, torch, numba, the measuring module's source)

under $GENLEARN_TIMING_CACHE (a directory), else $XDG_CACHE_HOME/genlearn, else ~/.cache/genlearn;
GENLEARN_TIMING_CACHE=off measures in every process. A changed module (new kernels) or another CPU, torch or
numba gets new measurements. Results do not depend on them: every such choice is between paths equal up to float32
summation order. A file that cannot be read or written is ignored (the value is measured, as without the cache).
`record()` says where the values came from, for run records and benchmarks."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ENV = "GENLEARN_TIMING_CACHE"

_VALUES: dict = {}  # file path -> {entry: value}, read once per process
_STATS = {"remembered": 0, "measured": 0}


def directory() -> Path | None:
    """The cache directory, or None when GENLEARN_TIMING_CACHE=off."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() == "off":
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "genlearn"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_MACHINE: list = []


def machine() -> dict:
    """What the measurements depend on besides the measuring code (computed once per process)."""
    if not _MACHINE:
        import torch

        numba = sys.modules.get("numba")
        if numba is None:
            try:
                import numba
            except ImportError:
                numba = None
        _MACHINE.append({"cpu": _cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(),
                         "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                         "numba": getattr(numba, "__version__", None)})
    return _MACHINE[0]


def _file_for(module_file: str) -> Path | None:
    try:
        folder = directory()
        if folder is None:
            return None
        source = hashlib.sha1(Path(module_file).read_bytes()).hexdigest()
    except (OSError, RuntimeError):  # an unreadable module, no home directory: measure, as without the cache
        return None
    key = hashlib.sha1(json.dumps([machine(), Path(module_file).name, source], sort_keys=True).encode()).hexdigest()
    return folder / f"timings-{Path(module_file).stem}-{key[:16]}.json"


_FILES: dict = {}  # module file -> its cache file (or None), hashed once per process


def _value(v):
    """A stored value as a float or a {name: float} dict (ValueError/TypeError for anything else)."""
    if isinstance(v, dict):
        return {str(k): float(x) for k, x in v.items()}
    if isinstance(v, bool):
        raise TypeError("not a number")
    return float(v)


def _values_of(text: str) -> dict:
    values = json.loads(text)["values"]
    return {k: _value(v) for k, v in values.items()}


def _read(path: Path) -> dict:
    if path not in _VALUES:
        try:
            _VALUES[path] = _values_of(path.read_text())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            _VALUES[path] = {}
    return _VALUES[path]


def _write(path: Path, values: dict) -> None:
    """The values merged into the file (another process may have added its own since it was read), atomically."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            merged = _values_of(path.read_text())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            merged = {}
        merged.update(values)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"machine": machine(), "values": merged}, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass


def remembered(module_file: str, entry: str, measure: Callable[[], float | dict]) -> float | dict:
    """The value of `measure()` (a float, or a {name: float} dict of several timings) for this machine and
    software: read from the cache when there, else measured now and stored. `module_file`: the measuring module's
    __file__ (its source is part of the key); `entry`: what was measured (e.g. "rows 100 784 500 threads=1")."""
    if module_file not in _FILES:
        _FILES[module_file] = _file_for(module_file)
    path = _FILES[module_file]
    if path is not None:
        values = _read(path)
        if entry in values:
            _STATS["remembered"] += 1
            return values[entry]
    value = _value(measure())
    _STATS["measured"] += 1
    if path is not None:
        _read(path)[entry] = value
        _write(path, {entry: value})
    return value


def record() -> dict:
    """Where this process's timings came from: the cache directory (or "off") and how many were remembered and
    measured."""
    try:
        folder = directory()
    except RuntimeError:  # no home directory
        folder = None
    return {"timing_cache": "off" if folder is None else str(folder), "timings_remembered": _STATS["remembered"],
            "timings_measured": _STATS["measured"]}


def _reset_for_tests() -> None:
    _VALUES.clear()
    _FILES.clear()
    _STATS.update(remembered=0, measured=0)


__all__ = ["ENV", "directory", "machine", "record", "remembered"]
