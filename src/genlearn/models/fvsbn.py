"""Fully visible sigmoid belief net [`fvsbn`] (the logistic autoregressive model) for an ordering o:

    P(x|theta) = prod_d P(x_{o_d} | x_{o_<d}),   P(x_i = 1 | x_{<i in o}) = sigmoid(b_i + sum_{j before i} W_ij x_j),

i.e. all n conditionals are one masked matrix product: logits = x (W * M)^T + b with M_ij = 1 iff j comes
before i in the ordering (strictly lower triangular in ordering coordinates). log P(x) in nats is exact;
samples are drawn ancestrally, one dimension at a time in the ordering.

Helpers shared by the autoregressive families (NADE, MADE): `make_ordering`, `check_order`, `bernoulli_log_prob`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from genlearn.errors import ConfigError
from genlearn.models import binary_input
from genlearn.models.base import (
    GenerativeModel,
    as_float,
    check_positive_int,
    column_means,
    logit,
)
from genlearn.models.registry import ModelSpec, register_model
from genlearn import search_space as ss
from genlearn.options import option

ORDERS = ("fixed", "random")


def check_order(order: str) -> str:
    if order not in ORDERS:
        raise ConfigError(f"--order must be one of {', '.join(ORDERS)}, got {order!r}")
    return order


def make_ordering(n: int, order: str, generator: torch.Generator) -> Tensor:
    """The ordering o (a permutation of 0..n-1: o[d] = the dimension predicted at step d): the identity for
    order="fixed", a uniformly random permutation drawn from `generator` for order="random"."""
    if check_order(order) == "fixed":
        return torch.arange(n)
    return torch.randperm(n, generator=generator)


def bernoulli_log_prob(logits: Tensor, x: Tensor) -> Tensor:
    """sum_i [x_i log sigmoid(l_i) + (1 - x_i) log sigmoid(-l_i)] over the last axis (nats)."""
    return -F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none").sum(-1)


def check_int(value, what: str, low: int, high: int | None = None, flag: str | None = None) -> int:
    flag = flag or "--" + what.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{flag} must be an integer {bound}, got {value!r}")
    return value


def init_seed_generator(seed) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


class FVSBN(GenerativeModel):
    """Logistic autoregressive model. n_features: n; order: "fixed" (identity) or "random" (a permutation
    drawn from `seed`); seed: also seeds nothing else (weights start at zero, biases at logit(0.5))."""

    name = "fvsbn"
    support = "binary"

    def __init__(self, n_features: int, order: str = "fixed", seed: int = 0):
        super().__init__()
        self.n_features = n = check_positive_int(n_features, "n_features")
        self.order = check_order(order)
        self.seed = int(seed)
        ordering = make_ordering(n, order, init_seed_generator(seed))
        rank = torch.empty(n, dtype=torch.long)
        rank[ordering] = torch.arange(n)
        self.register_buffer("ordering", ordering)
        self.register_buffer("mask", (rank.unsqueeze(0) < rank.unsqueeze(1)).float())
        # W stored input-major (W^T contiguous), for the sums over 0/1 batches (genlearn.models.binary_input); the
        # module's W and its state_dict entry are unchanged, and loading one keeps this layout
        self.weight = torch.nn.Parameter(torch.zeros(n, n).T.contiguous().T)
        self.bias = torch.nn.Parameter(torch.zeros(n))
        self._mask_t = None

    @torch.no_grad()
    def init_from_data(self, x: Tensor) -> "FVSBN":
        """Biases to the logits of the pixel means (the independent-Bernoulli fit), weights to zero."""
        self.bias.copy_(logit(column_means(self.check_input(x)), 1e-3).to(self.bias.dtype))
        return self

    def conditional_logits(self, x: Tensor, k: int = 0) -> Tensor:
        """l_i(x) = b_i + sum_{j before i} W_ij x_j for every dimension i (B, n), indexed by dimension
        (`k` is accepted for symmetry with the ensembles of NADE and MADE; an FVSBN has one ordering)."""
        x = as_float(x).to(self.weight.dtype)
        rows = binary_input.rows_of(self, x) if self.weight.T.is_contiguous() else None
        if rows is None:
            return F.linear(x, self.weight * self.mask, self.bias)
        # on a 0/1 batch: x (W * M)^T as sums of the rows of (W * M)^T where faster (the same numbers up to float32
        # summation order)
        key = (self.mask.data_ptr(), self.mask._version, self.weight.dtype)
        if self._mask_t is None or self._mask_t[0] != key:
            self._mask_t = (key, self.mask.T.to(self.weight.dtype).contiguous())
        return rows.linear(self.weight.T * self._mask_t[1], self.bias)

    def log_prob(self, x: Tensor) -> Tensor:
        """sum_i log P(x_i | x_{before i}) in nats, per example."""
        return bernoulli_log_prob(self.conditional_logits(x), as_float(x))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Ancestral sampling: x_{o_d} ~ Bernoulli(sigmoid(l_{o_d}(x))) for d = 1..n in the ordering."""
        n = check_positive_int(n, "number of samples")
        w = (self.weight * self.mask).detach()
        x = torch.zeros(n, self.n_features, dtype=w.dtype)
        for i in self.ordering.tolist():
            p = torch.sigmoid(x @ w[i] + self.bias[i])
            x[:, i] = torch.bernoulli(p, generator=generator)
        return x.float()

    def config(self) -> dict:
        return {"n_features": self.n_features, "order": self.order, "seed": self.seed}


@dataclass(frozen=True)
class FVSBNConfig:
    """Options of `genlearn fit fvsbn`."""

    order: str = option("fixed", "ordering of the dimensions: fixed (identity) or random", choices=ORDERS)
    init_seed: int = option(0, "seed of the random ordering")


def _build(dataset, config: FVSBNConfig) -> FVSBN:
    return FVSBN(dataset.n_features, order=config.order, seed=config.init_seed).init_from_data(dataset.train)


register_model(ModelSpec(
    "fvsbn", FVSBN, "fully visible sigmoid belief net (logistic autoregressive model)", ("binary",), _build,
    FVSBNConfig, train_defaults={"optimizer": "adam", "lr": 1e-3, "batch_size": 100},
    search_space={"order": ss.choice("fixed", "random"), "lr": ss.real(1e-4, 3e-2, log=True),
                  "batch_size": ss.choice(16, 32, 64, 128), "weight_decay": ss.choice(0.0, 1e-6, 1e-5, 1e-4, 1e-3),
                  "schedule": ss.choice("constant", "geometric")},
))


__all__ = ["FVSBN", "bernoulli_log_prob", "check_order", "make_ordering"]
