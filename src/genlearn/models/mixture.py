"""Mixture of Bernoullis [`mixture`]:

    P(x|theta) = sum_{k=1..K} pi_k prod_i p_ki^x_i (1 - p_ki)^(1 - x_i),   x in {0,1}^n,

with pi = softmax(mix_logits) and p_k = sigmoid(logits_k) (the learned parameters). log P(x) is computed as
logsumexp_k [log pi_k + x . l_k + sum_i log sigmoid(-l_ki)] (nats), so it is exact and stable for any K.

The model is the distribution only. Two learning rules minimise D_KL(Q^||P_theta) (= the NLL up to the entropy
of the data), so users can compare them:
  * "maximum-likelihood": gradient descent on `loss` = -mean log P(x) (any optimizer of the Trainer);
  * "em" (CLI `--em`): each Trainer epoch is one exact EM iteration, E-step statistics accumulated per batch and
    the closed-form M-step at the end of the epoch (genlearn.learning.rules.EM, genlearn.learning.em);
    `genlearn.learning.em.fit_em(model, x)` is the same algorithm as a plain function.
Sampling is by component: k ~ pi, then x_i ~ Bernoulli(p_ki) independently.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from genlearn.errors import ConfigError
from genlearn.models.base import GenerativeModel, as_float, check_positive_int, reject_learning_settings
from genlearn.models.registry import ModelSpec, register_model
from genlearn import search_space as ss
from genlearn.options import option

MAX_COMPONENTS = 100_000
#: constructor settings of earlier versions that now belong to the "em" learning rule (dropped by `from_config`)
LEGACY_LEARNING_KEYS = ("em", "smoothing", "weight_smoothing", "reseed", "min_mass")


def component_log_probs(x: Tensor, logits: Tensor) -> Tensor:
    """log P_k(x_m) = x_m . l_k + sum_i log sigmoid(-l_ki), shape (M, K), in the dtype of `logits`."""
    x = x.to(logits.dtype)
    return x @ logits.T + torch.nn.functional.logsigmoid(-logits).sum(-1)


def mixture_log_prob(x: Tensor, log_weights: Tensor, logits: Tensor) -> Tensor:
    """log P(x_m) = logsumexp_k [log pi_k + log P_k(x_m)], shape (M,)."""
    return torch.logsumexp(component_log_probs(x, logits) + log_weights, dim=-1)


def _warn_repeated_components(k: int, distinct: int | None, rows: int, stacklevel: int) -> None:
    """A warning when K exceeds the distinct training rows that start the components: the extra ones start as
    copies, and copies stay equal (EM and gradient descent move equal components alike), so the model has fewer
    different components than asked, at K times the cost."""
    import warnings

    def count(n: int, what: str) -> str:
        return f"{n} {what}" + ("" if n == 1 else "s")

    have = f"{count(distinct, 'distinct row')} among the {count(rows, 'training row')}" if distinct is not None \
        else count(rows, "training row")
    warnings.warn(f"{k} mixture components (--components) but only {have}: the components beyond them start as "
                  "copies of others and stay equal to them; use at most that many components", UserWarning,
                  stacklevel=stacklevel)  # attributed to init_from_data


def _distinct_rows(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Indices of the first k rows of x with distinct values in a random order (then random rows with replacement
    when x has fewer than k distinct rows)."""
    idx, seen = [], set()
    for i in torch.randperm(x.shape[0], generator=generator, device=x.device).tolist():
        key = x[i].numpy().tobytes()
        if key not in seen:
            seen.add(key)
            idx.append(i)
            if len(idx) == k:
                break
    if len(idx) < k:
        _warn_repeated_components(k, len(idx), x.shape[0], stacklevel=3)
        idx += torch.randint(0, x.shape[0], (k - len(idx),), generator=generator, device=x.device).tolist()
    return torch.tensor(idx, device=x.device)


class MixtureOfBernoulli(GenerativeModel):
    """K-component mixture of product-Bernoulli distributions over {0,1}^n.

    n_features: n; components: K >= 1; seed: initial parameters p_ki ~ U(0.25, 0.75), pi uniform. (The EM
    settings of earlier versions, em, smoothing, weight_smoothing, reseed, min_mass, are the "em" rule's.)"""

    name = "mixture"
    support = "binary"

    def __init__(self, n_features: int, components: int = 10, seed: int = 0, **legacy):
        super().__init__()
        reject_learning_settings("MixtureOfBernoulli", legacy, LEGACY_LEARNING_KEYS,
                                 "make_rule('em', {'smoothing': ..., 'weight_smoothing': ..., 'reseed': ..., "
                                 "'min_mass': ...})")
        self.n_features = check_positive_int(n_features, "n_features")
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ConfigError(f"a mixture needs at least one component (--components >= 1), got {components!r}")
        if components > MAX_COMPONENTS:
            raise ConfigError(f"--components {components} is more than {MAX_COMPONENTS}; use fewer components")
        self.components = components
        self.seed = int(seed)
        g = torch.Generator().manual_seed(self.seed)
        p = 0.25 + 0.5 * torch.rand(components, self.n_features, generator=g)
        self.mix_logits = torch.nn.Parameter(torch.zeros(components))
        self.logits = torch.nn.Parameter(torch.log(p) - torch.log1p(-p))

    # -- parameters ----------------------------------------------------------------------------------
    @property
    def log_weights(self) -> Tensor:
        """log pi_k (K,)."""
        return torch.log_softmax(self.mix_logits, -1)

    @property
    def weights(self) -> Tensor:
        return torch.softmax(self.mix_logits, -1)

    @property
    def probs(self) -> Tensor:
        """p_ki (K, n)."""
        return torch.sigmoid(self.logits)

    @torch.no_grad()
    def set_parameters(self, log_weights: Tensor, logits: Tensor) -> None:
        self.mix_logits.copy_(log_weights.to(self.mix_logits.dtype))
        self.logits.copy_(logits.to(self.logits.dtype))

    @torch.no_grad()
    def init_from_data(self, x: Tensor, generator: torch.Generator | None = None, blend: float = 0.5):
        """p_k = (1 - blend) x_m + blend mean(x) for K random training examples m with distinct values (the first K
        distinct rows in a random order; with replacement when there are fewer than K distinct rows), equal weights:
        a spread-out start that breaks the symmetry between components. Two equal rows would start two equal
        components, which EM and gradient descent keep equal up to rounding: a stationary point that is not the
        maximum (binary data with few pixels repeats rows often)."""
        x = self.check_input(x).double()
        if generator is None:
            generator = torch.Generator().manual_seed(self.seed)
        m = x.shape[0]
        if self.components <= m and x.is_meta:  # a skeleton built on the meta device: no values to compare
            idx = torch.randperm(m, generator=generator)[: self.components]
        elif self.components <= m:
            idx = _distinct_rows(x, self.components, generator)
        else:
            if not x.is_meta:  # a skeleton sized for its memory is not fitted
                _warn_repeated_components(self.components, None, m, stacklevel=2)
            idx = torch.randint(0, m, (self.components,), generator=generator)
        p = ((1 - blend) * x[idx] + blend * x.mean(0)).clamp(1e-3, 1 - 1e-3)
        self.set_parameters(torch.zeros(self.components, dtype=torch.float64), torch.log(p) - torch.log1p(-p))
        return self

    # -- the interface -------------------------------------------------------------------------------
    def component_log_probs(self, x: Tensor) -> Tensor:
        """log P_k(x_m) (M, K) in nats."""
        return component_log_probs(as_float(x).to(self.logits.dtype), self.logits)

    def log_prob(self, x: Tensor) -> Tensor:
        """log P(x) = logsumexp_k [log pi_k + log P_k(x)] in nats, per example."""
        return torch.logsumexp(self.component_log_probs(x) + self.log_weights, dim=-1)

    def responsibilities(self, x: Tensor) -> Tensor:
        """r_mk = P(k | x_m) (M, K)."""
        return torch.softmax(self.component_log_probs(x) + self.log_weights, dim=-1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """k ~ pi, then x_i ~ Bernoulli(p_ki): returns (n, n_features) float32 0/1."""
        n = check_positive_int(n, "number of samples")
        k = torch.multinomial(self.weights.detach().float(), n, replacement=True, generator=generator)
        return torch.bernoulli(self.probs.detach().float()[k], generator=generator)

    def config(self) -> dict:
        return {"n_features": self.n_features, "components": self.components, "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict) -> "MixtureOfBernoulli":
        """Rebuild from `config()`; configs of earlier versions carry the EM settings, which are dropped
        (genlearn.learning.legacy derives the "em" rule from them)."""
        return cls(**{k: v for k, v in config.items() if k not in LEGACY_LEARNING_KEYS})


@dataclass(frozen=True)
class MixtureConfig:
    """Options of `genlearn fit mixture` (the last four are the EM rule's)."""

    components: int = option(10, "number of mixture components K", minimum=1)
    init_seed: int = option(0, "seed of the initial parameters (K random training examples)")
    em: bool = option(False, "fit by EM (one closed-form EM iteration per epoch) instead of gradients")
    smoothing: float = option(0.0, "EM: Beta pseudo-counts a in p = (S + a) / (N + 2a)", minimum=0)
    weight_smoothing: float = option(0.0, "EM: Dirichlet pseudo-counts of the mixture weights", minimum=0)
    reseed: bool = option(True, "EM: move a collapsed component onto the worst-explained training example")
    min_mass: float = option(1e-3, "EM: responsibility mass (examples) below which a component has collapsed",
                             minimum=0)


def _build(dataset, config: MixtureConfig) -> MixtureOfBernoulli:
    # em, smoothing, weight_smoothing, reseed and min_mass are the learning rule's (see _rule)
    model = MixtureOfBernoulli(dataset.n_features, components=config.components, seed=config.init_seed)
    model.init_from_data(dataset.train, torch.Generator().manual_seed(config.init_seed))
    return model


def _rule(config: MixtureConfig) -> tuple[str, dict]:
    """EM (closed-form M-step) with --em, else gradient descent on the exact NLL."""
    if not config.em:
        return "maximum-likelihood", {}
    return "em", {"smoothing": config.smoothing, "weight_smoothing": config.weight_smoothing,
                  "reseed": config.reseed, "min_mass": config.min_mass}


def _converge(config: MixtureConfig) -> dict:
    """EM runs until the train NLL changes by at most 1e-7 relative per iteration (at most 1000 iterations); the
    gradient fit (a non-convex problem) keeps its fixed epochs."""
    return {"epochs": 1000, "rel_tol": 1e-7} if config.em else {}


register_model(ModelSpec(
    "mixture", MixtureOfBernoulli, "mixture of K product-Bernoulli components (EM or gradient descent)",
    ("binary",), _build, MixtureConfig, _rule, train_defaults={"optimizer": "adam", "lr": 0.05},
    # EM: K from a single product up to a few hundred components; Beta smoothing of the component pixels
    search_space={"em": ss.fixed(True), "components": ss.integer(1, 256, log=True),
                  "smoothing": ss.real(1e-3, 1.0, log=True)},
    converge=_converge,
))


__all__ = ["MixtureOfBernoulli", "component_log_probs", "mixture_log_prob"]
