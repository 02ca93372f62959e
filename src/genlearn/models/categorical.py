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

    def log_prob(self, x: Tensor) -> Tensor:
        """log softmax(theta)[x] in nats."""
        return torch.log_softmax(self.logits, -1)[torch.as_tensor(x).long().reshape(-1)]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.multinomial(self.probs.detach(), n, replacement=True, generator=generator)

    def config(self) -> dict:
        return {"n_categories": self.n_categories}

    @torch.no_grad()
    def fit_closed_form(self, x: Tensor) -> "Categorical":
        """MLE: p_k = (number of k) / M; empty categories get probability 1e-12 so the logits stay finite."""
        counts = torch.bincount(torch.as_tensor(x).long().reshape(-1), minlength=self.n_categories).double()
        self.logits.copy_(torch.log((counts / counts.sum()).clamp_min(1e-12)).to(self.logits.dtype))
        return self


register_model(ModelSpec(
    "categorical", Categorical, "a die: K outcomes with probabilities softmax(theta)", ("categorical",),
    lambda dataset, config: Categorical(dataset.n_categories), converge=lbfgs_to_convergence,
))
