"""Synthetic sources whose true distribution Q(X) is known, so the KL to the truth can be reported.

Each draws `n` training samples and `n_test` (default n // 5, at least 1) validation and test samples,
independently, with `seed`.

The truth of a synthetic source *is* a model (Bernoulli, Categorical, PatternTable, ProductBernoulli, Gaussian;
a BoltzmannMachine in `teacher`): it is what the KL to the truth is computed against and what draws the samples.
So this module and `teacher` depend on `genlearn.models` and sit above it, with the catalogue
(`genlearn.data.registry`) that lists them; the model classes are imported inside the source functions so that
`import genlearn.data` stays light. Nothing below models (files, formats, the Dataset, the empirical
distribution, the source table) imports them."""
from __future__ import annotations

import itertools

import torch

from genlearn.data.dataset import Dataset
from genlearn.data.sources import register_source
from genlearn.errors import ConfigError

_COMMON = {"n": (1000, "training sample size"), "n_test": (None, "valid and test sizes (default n // 5)"),
           "seed": (0, "random seed")}


def _sizes(settings) -> tuple[int, int]:
    n = settings["n"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"sample size n must be a positive integer, got {n!r}")
    n_test = settings.get("n_test") or max(1, n // 5)
    if isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 1:
        raise ConfigError(f"n_test must be a positive integer, got {n_test!r}")
    return n, n_test


def from_truth(name: str, truth, settings: dict, image_shape=None, kind: str = "binary") -> Dataset:
    """Draw train/valid/test samples from a known model `truth` with the settings' seed."""
    n, n_test = _sizes(settings)
    g = torch.Generator().manual_seed(int(settings["seed"]))
    with torch.no_grad():
        train, valid, test = truth.sample(n, g), truth.sample(n_test, g), truth.sample(n_test, g)
    if kind == "binary":
        train, valid, test = (t.to(torch.float32) for t in (train, valid, test))
    return Dataset(
        name=name, kind=kind, train=train, valid=valid, test=test, image_shape=image_shape,
        n_categories=getattr(truth, "n_categories", None) if kind == "categorical" else None,
        truth=truth, settings={"source": "synthetic"},
    )


@register_source("coin", "coin flips from a Bernoulli(p); truth known", {"p": (0.5, "heads probability"), **_COMMON})
def coin(settings, data_dir=None) -> Dataset:
    from genlearn.models.product import Bernoulli

    p = float(settings["p"])
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"coin probability p must be in [0, 1], got {p}")
    return from_truth("coin", Bernoulli(p), settings)


@register_source(
    "die", "rolls of a K-sided die, fair by default; truth known",
    {"k": (6, "number of faces"), "probs": (None, "face probabilities, e.g. probs=0.5/0.1/0.1/0.1/0.1/0.1"), **_COMMON},
)
def die(settings, data_dir=None) -> Dataset:
    from genlearn.models.categorical import Categorical

    probs = settings.get("probs")
    if probs is not None:
        probs = probs if isinstance(probs, list) else [probs]
        k = len(probs)
    else:
        k = settings["k"]
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise ConfigError(f"a die needs k >= 2 faces, got {k!r}")
        probs = [1.0 / k] * k
    return from_truth("die", Categorical(k, probs), settings, kind="categorical")


def bars_and_stripes_patterns(size: int) -> torch.Tensor:
    """All 2^(size+1) - 2 distinct size x size bars-and-stripes images, flattened row-major, float32."""
    rows = []
    for bits in itertools.product((0.0, 1.0), repeat=size):
        line = torch.tensor(bits)
        rows.append(line.repeat(size, 1).T.reshape(-1))  # horizontal stripes: row i is all bits[i]
        rows.append(line.repeat(size, 1).reshape(-1))  # vertical bars: column j is all bits[j]
    return torch.unique(torch.stack(rows), dim=0)


@register_source(
    "bars-and-stripes", "size x size bars-and-stripes, uniform over its 2^(size+1)-2 patterns; truth known",
    {"size": (3, "image side"), **_COMMON},
)
def bars_and_stripes(settings, data_dir=None) -> Dataset:
    from genlearn.models.table import PatternTable

    size = settings["size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 2 <= size <= 7:
        raise ConfigError(f"bars-and-stripes size must be an integer in 2..7, got {size!r}")
    patterns = bars_and_stripes_patterns(size)
    truth = PatternTable(patterns, torch.full((patterns.shape[0],), 1.0 / patterns.shape[0]))
    return from_truth("bars-and-stripes", truth, settings, image_shape=(size, size))


@register_source(
    "product-bernoulli", "independent pixels with given or random probabilities; truth known",
    {"dim": (10, "number of pixels"), "probs": (None, "pixel probabilities p1/p2/...; random if absent"), **_COMMON},
)
def product_bernoulli(settings, data_dir=None) -> Dataset:
    from genlearn.models.product import ProductBernoulli

    probs = settings.get("probs")
    if probs is not None:
        probs = probs if isinstance(probs, list) else [probs]
        dim = len(probs)
    else:
        dim = settings["dim"]
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"dim must be a positive integer, got {dim!r}")
        g = torch.Generator().manual_seed(int(settings["seed"]) + 10_007)
        probs = torch.rand(dim, generator=g).mul(0.9).add(0.05).tolist()
    return from_truth("product-bernoulli", ProductBernoulli(dim, probs), settings)


@register_source(
    "gaussian", "real-valued samples from a Gaussian with diagonal covariance; truth known",
    {"dim": (1, "dimension"), "mean": (0.0, "mean (one number or m1/m2/...)"),
     "std": (1.0, "standard deviation (one number or s1/s2/...)"), **_COMMON},
)
def gaussian(settings, data_dir=None) -> Dataset:
    from genlearn.models.gaussian import Gaussian

    dim = settings["dim"]
    mean, std = settings["mean"], settings["std"]
    for value in (mean, std):
        if isinstance(value, list):
            dim = len(value)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"dim must be a positive integer, got {dim!r}")
    mean = mean if isinstance(mean, list) else [mean] * dim
    std = std if isinstance(std, list) else [std] * dim
    if len(mean) != dim or len(std) != dim or any(not isinstance(s, (int, float)) or s <= 0 for s in std):
        raise ConfigError("gaussian needs dim means and dim positive standard deviations")
    return from_truth("gaussian", Gaussian(dim, "diag", mean=mean, std=std), settings, kind="real")
