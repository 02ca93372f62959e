"""Validation of user data, once, at the boundary (the models' check_input and the data loaders). Every failure
names the problem, where it is and the fix. Low level: it imports nothing of genlearn but the errors and the
compiled count of non-binary entries (genlearn.binary_kernels), so models and data may both use it without
depending on each other."""
from __future__ import annotations

import torch
from torch import Tensor

from genlearn.errors import DataError


def _first_bad_index(mask: Tensor) -> tuple:
    idx = torch.nonzero(mask, as_tuple=False)[0].tolist()
    return tuple(idx)


def check_finite(x: Tensor, what: str = "data") -> None:
    if torch.is_floating_point(x):
        bad = ~torch.isfinite(x)
        if bad.any():
            where = _first_bad_index(bad)
            raise DataError(
                f"{what} contains {x[where].item()} at index {list(where)} ({int(bad.sum())} non-finite values); "
                "remove or impute NaN/inf entries first"
            )


def check_not_empty(x: Tensor, what: str = "data") -> None:
    if x.numel() == 0 or x.shape[0] == 0:
        raise DataError(f"{what} is empty (shape {tuple(x.shape)}); at least one example is needed")


def check_binary(x, n_features: int | None = None, what: str = "data") -> Tensor:
    """Return x as float32 of shape (M, n) with values in {0, 1}, or raise DataError saying what is wrong."""
    x = torch.as_tensor(x)
    if x.ndim == 1 and n_features == 1:
        x = x.reshape(-1, 1)
    if x.ndim != 2:
        raise DataError(f"{what} must be a 2-D array (examples x features), got shape {tuple(x.shape)}")
    check_not_empty(x, what)
    if n_features is not None and x.shape[1] != n_features:
        raise DataError(
            f"{what} has {x.shape[1]} features per example but the model expects {n_features}; "
            "use data of the dimension the model was trained on"
        )
    if x.is_meta:  # shapes without values: a model built on the meta device to size it (registry.model_size)
        return x.to(torch.float32)
    from genlearn.binary_kernels import count_non_binary

    if count_non_binary(x) == 0:  # every entry 0 or 1 (so finite) in one compiled pass; else the checks below
        return x.to(torch.float32)
    check_finite(x, what)
    bad = (x != 0) & (x != 1)
    if bad.any():
        where = _first_bad_index(bad)
        raise DataError(
            f"{what} must be binary (0/1) for this model but holds {x[where].item()!r} at row {where[0]}, "
            f"column {where[1]} ({int(bad.sum())} such values); binarize it first (command line: --data "
            "NAME:binarize=threshold; Python: (x > 0.5).astype(float))"
        )
    return x.to(torch.float32)


def check_categorical(x, n_categories: int, what: str = "data") -> Tensor:
    """Return x as int64 of shape (M,) with values in {0..K-1}."""
    x = torch.as_tensor(x)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise DataError(f"{what} for a categorical model must be 1-D outcomes, got shape {tuple(x.shape)}")
    check_not_empty(x, what)
    check_finite(x, what)
    fractional = x != torch.round(x) if torch.is_floating_point(x) else torch.zeros_like(x, dtype=torch.bool)
    bad = (x < 0) | (x >= n_categories) | fractional
    if bad.any():
        i = int(torch.nonzero(bad)[0])
        raise DataError(
            f"{what} must hold integer outcomes 0..{n_categories - 1}, but row {i} is {x[i].item()!r}"
        )
    return x.long()


def check_real(x, n_features: int | None = None, what: str = "data") -> Tensor:
    x = torch.as_tensor(x)
    if x.ndim == 1:
        x = x.reshape(-1, 1) if n_features in (None, 1) else x
    if x.ndim != 2:
        raise DataError(f"{what} must be a 2-D array (examples x features), got shape {tuple(x.shape)}")
    check_not_empty(x, what)
    if n_features is not None and x.shape[1] != n_features:
        raise DataError(f"{what} has {x.shape[1]} features per example but the model expects {n_features}")
    x = x.to(torch.float32) if not torch.is_floating_point(x) else x
    if not x.is_meta:  # a meta tensor (registry.model_size) has no values to check
        check_finite(x, what)
    return x


# -- settings of any origin (CLI strings are converted before they get here) -------------------------------------
#: the largest seed torch.Generator.manual_seed takes as a signed 64-bit integer
MAX_SEED = 2**63 - 1


def check_path_argument(value, name: str) -> None:
    """A folder argument (`out`, `data_dir`) must be a path, str or os.PathLike: one ConfigError naming it."""
    import os

    from genlearn.errors import ConfigError

    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{name} must be a folder path (str or pathlib.Path), got {type(value).__name__} "
                          f"{value!r}"[:300])


def check_seed(value, what: str = "--seed") -> int:
    """An integer seed in [0, 2^63 - 1]; ConfigError otherwise (a bool, a float, a string, -1, 2^70)."""
    from genlearn.errors import ConfigError

    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an integer in [0, 2^63 - 1], got {value!r}")
    if not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{what} must be an integer in [0, 2^63 - 1], got {value}")
    return value


def machine_memory() -> int:
    """Memory a new allocation can get, in bytes: MemAvailable of /proc/meminfo (Linux: free memory plus what the
    kernel can reclaim), else the physical memory (os.sysconf), else 16 GiB."""
    import os

    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        return 16 * 2**30


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; binary units up to EiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"


def check_memory(nbytes: float, what: str, fix: str) -> None:
    """Refuse, before allocating, what would need more than the machine's available memory: one ConfigError naming
    the size (`what`), the memory it needs and the fix."""
    from genlearn.errors import ConfigError

    have = machine_memory()
    if nbytes > have:
        raise ConfigError(f"{what} needs about {human_bytes(nbytes)} of memory, more than the "
                          f"{human_bytes(have)} available on this machine; {fix}")
