"""Binarization of grey levels in [0, 1].

threshold: x = [intensity > t] (t = 0.5 by default, "half intensity");
static:    x ~ Bernoulli(intensity), drawn once with a seed (the "fixed stochastic" binarization);
dynamic:   x ~ Bernoulli(intensity), redrawn every epoch by the trainer (valid/test are drawn once, static)."""
from __future__ import annotations

import torch
from torch import Tensor

from genlearn.errors import ConfigError

METHODS = ("threshold", "static", "dynamic")


def binarize(intensity: Tensor, method: str = "threshold", threshold: float = 0.5, seed: int = 0) -> Tensor:
    """Return a float32 0/1 tensor from intensities in [0, 1]."""
    if method not in METHODS:
        raise ConfigError(f"unknown binarization {method!r}; choose one of {', '.join(METHODS)}")
    intensity = intensity.to(torch.float32)
    if method == "threshold":
        if not 0.0 <= threshold < 1.0:
            raise ConfigError(f"threshold must be in [0, 1), got {threshold}")
        return (intensity > threshold).to(torch.float32)
    g = torch.Generator().manual_seed(int(seed))
    return torch.bernoulli(intensity.clamp(0, 1), generator=g)
