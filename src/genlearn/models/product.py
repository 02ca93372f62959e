"""Independent Bernoulli units: P(x|theta) = prod_i p_i^x_i (1-p_i)^(1-x_i), p_i = sigmoid(theta_i).

`Bernoulli` (the coin) is the one-unit case. The closed-form MLE is p_i = mean of x_i over the data."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from genlearn.errors import ConfigError
from genlearn.models.base import (GenerativeModel, as_float, check_parameter_vector, check_positive_int,
                                  column_means, logit)
from genlearn.models.registry import ModelSpec, lbfgs_to_convergence, register_model
from genlearn import search_space as ss
from genlearn.options import option


class ProductBernoulli(GenerativeModel):
    """n independent Bernoulli pixels with logits theta (the learned parameters)."""

    name = "product-bernoulli"
    support = "binary"
    #: what the constructor's error messages call the probabilities
    _probs_name = "probs"

    def __init__(self, n_features: int, probs=None):
        super().__init__()
        self.n_features = check_positive_int(n_features, "n_features")
        if probs is None:
            init = torch.zeros(self.n_features)
        else:
            init = logit(check_parameter_vector(probs, self.n_features, self._probs_name, 0.0, 1.0))
        self.logits = torch.nn.Parameter(init.clone())

    @property
    def probs(self) -> Tensor:
        return torch.sigmoid(self.logits)

    def log_prob(self, x: Tensor) -> Tensor:
        """sum_i [x_i log p_i + (1-x_i) log(1-p_i)] in nats, computed stably from the logits."""
        x = as_float(x).to(self.logits.dtype)
        return -F.binary_cross_entropy_with_logits(
            self.logits.expand_as(x), x, reduction="none"
        ).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        p = self.probs.detach().expand(n, self.n_features)
        return torch.bernoulli(p, generator=generator)

    def config(self) -> dict:
        return {"n_features": self.n_features}

    @torch.no_grad()
    def fit_closed_form(self, x: Tensor, smoothing: float = 0.0) -> "ProductBernoulli":
        """MLE p_i = (1/M) sum_m x_mi, or with smoothing a > 0 the add-a estimate p_i = (sum_m x_mi + a) / (M + 2a)
        (the posterior mean under a Beta(a, a) prior); clipped to [1e-6, 1-1e-6] so the logits stay finite. x: 0/1
        rows of n_features (check_input: one DataError otherwise)."""
        x = as_float(self.check_input(x))
        m = x.shape[0]
        p = (column_means(x) * m + smoothing) / (m + 2 * smoothing)
        self.logits.copy_(logit(p).to(self.logits.dtype))
        return self


class Bernoulli(ProductBernoulli):
    """The coin: one Bernoulli(p) unit; data are shape (M, 1) in {0, 1}."""

    name = "bernoulli"
    _probs_name = "p"

    def __init__(self, p: float | None = None, n_features: int = 1):
        if n_features != 1:
            raise ConfigError("a Bernoulli (coin) model has exactly one unit; use product-bernoulli for more")
        super().__init__(1, None if p is None else [p])

    @property
    def p(self) -> float:
        return float(self.probs.detach()[0])

    def config(self) -> dict:
        return {}


@dataclass(frozen=True)
class ProductBernoulliConfig:
    """Options of `genlearn fit product-bernoulli` / `bernoulli` (both are the learning rule's)."""

    closed_form: bool = option(False, "fit by the closed-form estimate (one pass over the data) instead of "
                               "gradient descent")
    smoothing: float = option(0.0, "with --closed-form: pseudo-counts a of p = (S + a) / (M + 2a) (0 = the MLE)",
                              minimum=0)


def _rule(config: ProductBernoulliConfig) -> tuple[str, dict]:
    if config.closed_form:
        return "closed-form", {"smoothing": config.smoothing}
    if config.smoothing:
        raise ConfigError("--smoothing applies to the closed-form estimate: add --closed-form")
    return "maximum-likelihood", {}


def _converge(config: ProductBernoulliConfig) -> dict:
    """Gradient fits run to convergence by L-BFGS (registry.LBFGS_TO_CONVERGENCE); the closed form is one epoch: its
    estimate is exact after one pass, and further epochs would only compute it again."""
    return {"epochs": 1} if config.closed_form else lbfgs_to_convergence()


def _coin(dataset, config) -> Bernoulli:
    if dataset.n_features != 1:
        raise ConfigError(f"bernoulli models one binary variable; the data have {dataset.n_features} "
                          "(use product-bernoulli)")
    return Bernoulli()


register_model(ModelSpec("bernoulli", Bernoulli, "a coin: one Bernoulli(p) variable", ("binary",), _coin,
                         ProductBernoulliConfig, _rule, converge=_converge))
register_model(ModelSpec(
    "product-bernoulli", ProductBernoulli, "independent Bernoulli pixels (the baseline for binary images)",
    ("binary",), lambda dataset, config: ProductBernoulli(dataset.n_features), ProductBernoulliConfig, _rule,
    converge=_converge,
    search_space={"closed_form": ss.fixed(True), "smoothing": ss.real(1e-3, 1.0, log=True)},
))
