"""The die: P(x = k|theta) = softmax(theta)_k for k in {0..K-1}. Closed-form MLE: p_k = count_k / M."""
from __future__ import annotations

import torch
from torch import Tensor

from genlearn.models.base import GenerativeModel, check_positive_int, check_probability_vector
from genlearn.models.registry import ModelSpec, lbfgs_to_convergence, register_model


class Categorical(GenerativeModel):
    """K outcomes with logits theta; data are integer outcomes of shape (M,)."""

    name = "categorical"
    support = "categorical"
    n_features = 1

    def __init__(self, n_categories: int, probs=None):
        super().__init__()
        self.n_categories = check_positive_int(n_categories, "n_categories")
        if probs is None:
            init = torch.zeros(self.n_categories)
        else:
            p = check_probability_vector(probs, "probs")
            if p.numel() != self.n_categories:
                from genlearn.errors import ConfigError

                raise ConfigError(f"probs has {p.numel()} entries, expected {self.n_categories}")
            init = torch.log(p.clamp_min(1e-12)).float()
        self.logits = torch.nn.Parameter(init.clone())

    @property
    def probs(self) -> Tensor:
        return torch.softmax(self.logits, -1)

    def outcomes(self, x) -> Tensor:
        """x as integer outcomes (M,) in {0..K-1}; DataError for another value (a negative index would silently
        pick a category from the end, a fraction would be truncated)."""
        from genlearn.errors import DataError

        x = torch.as_tensor(x).reshape(-1)
        if x.is_floating_point() and not bool(torch.all(x == torch.round(x))):  # NaN fails too
            bad = ", ".join(f"{v:g}" for v in x[x != torch.round(x)][:3].tolist())
            raise DataError(f"outcomes of the categorical model must be integers 0..{self.n_categories - 1}, got "
                            f"{bad}")
        x = x.long()
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.n_categories):
            bad = ", ".join(str(v) for v in x[(x < 0) | (x >= self.n_categories)][:3].tolist())
            raise DataError(f"outcomes of the categorical model must be 0..{self.n_categories - 1} "
                            f"({self.n_categories} categories), got {bad}")
        return x

    def log_prob(self, x: Tensor) -> Tensor:
        """log softmax(theta)[x] in nats."""
        return torch.log_softmax(self.logits, -1)[self.outcomes(x)]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.multinomial(self.probs.detach(), n, replacement=True, generator=generator)

    def config(self) -> dict:
        return {"n_categories": self.n_categories}

    @torch.no_grad()
    def fit_closed_form(self, x: Tensor) -> "Categorical":
        """MLE: p_k = (number of k) / M; empty categories get probability 1e-12 so the logits stay finite."""
        counts = torch.bincount(self.outcomes(x), minlength=self.n_categories).double()
        self.logits.copy_(torch.log((counts / counts.sum()).clamp_min(1e-12)).to(self.logits.dtype))
        return self


register_model(ModelSpec(
    "categorical", Categorical, "a die: K outcomes with probabilities softmax(theta)", ("categorical",),
    lambda dataset, config: Categorical(dataset.n_categories), converge=lbfgs_to_convergence,
))
