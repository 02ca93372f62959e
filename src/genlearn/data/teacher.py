"""Teacher models: samples from a known random Boltzmann machine, so the exact KL to the truth is reported.

`boltzmann-teacher`: a Sherrington-Kirkpatrick-like machine on n units written in spins s = 2x - 1,

    P(s) ∝ exp(h.s + 1/2 s.J.s),   J_ij = J_ji ~ N(0, scale^2 / n) (i < j),   h_i ~ N(0, field^2),

(scale is the inverse temperature of the SK model: scale < 1 is weakly coupled, scale > 1 glassy). The data
are the 0/1 vectors x = (s + 1)/2. The teacher's parameters come from `teacher_seed` (default: `seed`), the
samples from `seed`, so with a fixed teacher the training sets of different sizes are nested prefixes of one
stream. Sampling is exact (enumeration) up to n = 20 and by 1000 Gibbs sweeps beyond."""
from __future__ import annotations

import math

import torch

from genlearn.data.dataset import Dataset
from genlearn.data.sources import register_source
from genlearn.data.synthetic import from_truth
from genlearn.errors import ConfigError

_TEACHER_SEED_OFFSET = 1_000_003  # keeps the parameter stream apart from the sample stream of the same seed


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"boltzmann-teacher setting {what} must be a positive integer, got {value!r}")
    return value


def _nonnegative(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"boltzmann-teacher setting {what} must be a non-negative number, got {value!r}")
    return float(value)


def teacher_machine(n: int, scale: float = 1.0, field: float = 0.3, seed: int = 0):
    """The random teacher BoltzmannMachine (spins=True) described in the module docstring."""
    from genlearn.models.boltzmann import BoltzmannMachine

    g = torch.Generator().manual_seed(_TEACHER_SEED_OFFSET + int(seed))
    h = torch.randn(n, generator=g, dtype=torch.float64) * field
    upper = torch.triu(torch.randn(n, n, generator=g, dtype=torch.float64), 1) * (scale / math.sqrt(n))
    return BoltzmannMachine(n, spins=True).set_parameters(h, upper + upper.T)


@register_source(
    "boltzmann-teacher",
    "samples from a known random Boltzmann machine (SK couplings N(0, scale^2/n) in spins); truth known",
    {"n": (12, "number of units"), "samples": (1000, "training sample size M"),
     "scale": (1.0, "coupling scale (SK inverse temperature)"), "field": (0.3, "std of the spin fields h_i"),
     "seed": (0, "random seed of the samples"), "teacher_seed": (None, "seed of the teacher (default: seed)"),
     "n_test": (None, "valid and test sizes (default samples // 5)")},
)
def boltzmann_teacher(settings, data_dir=None) -> Dataset:
    n = _positive_int(settings["n"], "n")
    if n < 2:
        raise ConfigError("boltzmann-teacher needs n >= 2 units")
    samples = _positive_int(settings["samples"], "samples")
    scale = _nonnegative(settings["scale"], "scale")
    field = _nonnegative(settings["field"], "field")
    seed = settings["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"boltzmann-teacher seed must be an integer, got {seed!r}")
    teacher_seed = seed if settings.get("teacher_seed") is None else settings["teacher_seed"]
    if isinstance(teacher_seed, bool) or not isinstance(teacher_seed, int):
        raise ConfigError(f"boltzmann-teacher teacher_seed must be an integer, got {teacher_seed!r}")
    truth = teacher_machine(n, scale, field, teacher_seed)
    dataset = from_truth("boltzmann-teacher", truth, {"n": samples, "n_test": settings.get("n_test"), "seed": seed})
    dataset.settings.update({"teacher": {"n": n, "scale": scale, "field": field, "teacher_seed": teacher_seed}})
    return dataset
