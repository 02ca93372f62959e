"""Gaussian for continuous data: N(x|mu, Sigma) with Sigma diagonal or full.

log N(x|mu, Sigma) = -d/2 log(2 pi) - log|L| - 1/2 ||L^-1 (x - mu)||^2 with Sigma = L L^T.
The diagonal of L is parametrised by its log so that it stays positive.
Closed-form MLE: mu = mean, Sigma = (1/M) sum (x - mu)(x - mu)^T (the biased covariance)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from genlearn.errors import ConfigError
from genlearn.models.base import GenerativeModel, as_float, check_parameter_vector, check_positive_int
from genlearn.models.registry import ModelSpec, lbfgs_to_convergence, register_model
from genlearn.options import option


class Gaussian(GenerativeModel):
    """d-dimensional Gaussian; covariance "diag" (default) or "full". d = 1 is the 1-D normal."""

    name = "gaussian"
    support = "real"

    def __init__(self, n_features: int = 1, covariance: str = "diag", mean=None, std=None):
        super().__init__()
        self.n_features = check_positive_int(n_features, "n_features")
        if covariance not in ("diag", "full"):
            raise ConfigError(f"covariance must be 'diag' or 'full', got {covariance!r}")
        self.covariance = covariance
        d = self.n_features
        start = torch.zeros(d) if mean is None else check_parameter_vector(mean, d, "mean").clone()
        self.mean = torch.nn.Parameter(start)
        if std is None:
            log_std = torch.zeros(d)
        else:
            log_std = torch.log(check_parameter_vector(std, d, "std", 0.0, low_open=True))
        self.log_diag = torch.nn.Parameter(log_std.clone())
        if covariance == "full":
            self.off_diag = torch.nn.Parameter(torch.zeros(d * (d - 1) // 2))

    def scale_tril(self) -> Tensor:
        """L, lower triangular with positive diagonal, Sigma = L L^T."""
        d = self.n_features
        L = torch.diag_embed(torch.exp(self.log_diag))
        if self.covariance == "full" and d > 1:
            rows, cols = torch.tril_indices(d, d, offset=-1)
            L = L.index_put((rows, cols), self.off_diag)
        return L

    @property
    def covariance_matrix(self) -> Tensor:
        L = self.scale_tril()
        return L @ L.T

    def log_prob(self, x: Tensor) -> Tensor:
        x = as_float(x).to(self.mean.dtype).reshape(-1, self.n_features)
        diff = x - self.mean
        if self.covariance == "diag":
            z = diff * torch.exp(-self.log_diag)
        else:
            z = torch.linalg.solve_triangular(self.scale_tril(), diff.T, upper=False).T
        return -0.5 * self.n_features * math.log(2 * math.pi) - self.log_diag.sum() - 0.5 * (z**2).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, self.n_features, generator=generator, dtype=self.mean.dtype)
        return (self.mean + z @ self.scale_tril().T).detach()

    def config(self) -> dict:
        return {"n_features": self.n_features, "covariance": self.covariance}

    @torch.no_grad()
    def fit_closed_form(self, x: Tensor) -> "Gaussian":
        """The MLE: the rows' mean and their covariance (1/M) sum_m (x_m - mu)(x_m - mu)^T (diagonal or full, as the
        model's); x: finite rows of n_features (check_input: one DataError otherwise)."""
        x = as_float(self.check_input(x)).double().reshape(-1, self.n_features)
        mu = x.mean(0)
        diff = x - mu
        cov = diff.T @ diff / x.shape[0]
        self.mean.copy_(mu.to(self.mean.dtype))
        if self.covariance == "diag":
            self.log_diag.copy_((0.5 * torch.log(torch.diagonal(cov).clamp_min(1e-12))).to(self.mean.dtype))
        else:
            L = torch.linalg.cholesky(cov + 1e-12 * torch.eye(self.n_features, dtype=cov.dtype))
            self.log_diag.copy_(torch.log(torch.diagonal(L)).to(self.mean.dtype))
            if self.n_features > 1:
                rows, cols = torch.tril_indices(self.n_features, self.n_features, offset=-1)
                self.off_diag.copy_(L[rows, cols].to(self.mean.dtype))
        return self


@dataclass(frozen=True)
class GaussianConfig:
    """Options of `genlearn fit gaussian`."""

    covariance: str = option("diag", "Gaussian covariance: diag or full", choices=("diag", "full"))


register_model(ModelSpec(
    "gaussian", Gaussian, "Gaussian for real data, diagonal or full covariance", ("real",),
    lambda dataset, config: Gaussian(dataset.n_features, config.covariance), GaussianConfig,
    converge=lbfgs_to_convergence,
))
