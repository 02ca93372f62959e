"""Mixture of Bernoullis [`mixture`]:

    P(x|theta) = sum_{k=1..K} pi_k prod_i p_ki^x_i (1 - p_ki)^(1 - x_i),   x in {0,1}^n,

with pi = softmax(mix_logits) and p_k = sigmoid(logits_k) (the learned parameters). log P(x) is computed as
logsumexp_k [log pi_k + x . l_k + sum_i log sigmoid(-l_ki)] (nats), so it is exact and stable for any K.

Two ways to minimise D_KL(Q^||P_theta) (= the NLL up to the entropy of the data), so users can compare them:
  * gradient descent on -mean log P(x) (the default `loss`, any optimizer of the Trainer);
  * EM (`em=True`, CLI `--em`): each Trainer epoch is one exact EM iteration. `loss(batch)` accumulates the
    E-step statistics of the batch (and returns its NLL, with no gradient, so the optimizer step is a no-op);
    `on_epoch_end(x_train)` applies the closed-form M-step (genlearn.learning.em). The batch size only bounds
    memory. `genlearn.learning.em.fit_em(model, x)` is the same algorithm as a plain function.
Sampling is by component: k ~ pi, then x_i ~ Bernoulli(p_ki) independently.
"""
from __future__ import annotations

import torch
from torch import Tensor

from genlearn.errors import ConfigError
from genlearn.learning import em as em_lib
from genlearn.models.base import GenerativeModel, as_float, check_positive_int
from genlearn.models.registry import ModelSpec, Option, register_model

MAX_COMPONENTS = 100_000


class MixtureOfBernoulli(GenerativeModel):
    """K-component mixture of product-Bernoulli distributions over {0,1}^n.

    n_features: n; components: K >= 1; em: train by EM inside the Trainer instead of by gradients;
    smoothing: Beta pseudo-counts a of the (MAP) EM M-step, p_ki = (S_ki + a) / (N_k + 2a);
    weight_smoothing: Dirichlet pseudo-counts of the mixture weights; reseed: move collapsed components
    (mass below `min_mass` examples) onto the worst-explained example during EM; seed: initial parameters."""

    name = "mixture"
    support = "binary"

    def __init__(self, n_features: int, components: int = 10, em: bool = False, smoothing: float = 0.0,
                 weight_smoothing: float = 0.0, reseed: bool = True, min_mass: float = 1e-3, seed: int = 0):
        super().__init__()
        self.n_features = check_positive_int(n_features, "n_features")
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ConfigError(f"a mixture needs at least one component (--components >= 1), got {components!r}")
        if components > MAX_COMPONENTS:
            raise ConfigError(f"--components {components} is more than {MAX_COMPONENTS}; use fewer components")
        for what, v in (("smoothing", smoothing), ("weight_smoothing", weight_smoothing), ("min_mass", min_mass)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0 or v == float("inf"):
                raise ConfigError(f"--{what.replace('_', '-')} must be a finite number >= 0, got {v!r}")
        self.components = components
        self.em = bool(em)
        self.smoothing = float(smoothing)
        self.weight_smoothing = float(weight_smoothing)
        self.reseed = bool(reseed)
        self.min_mass = float(min_mass)
        self.seed = int(seed)
        g = torch.Generator().manual_seed(self.seed)
        p = 0.25 + 0.5 * torch.rand(components, self.n_features, generator=g)
        self.mix_logits = torch.nn.Parameter(torch.zeros(components))
        self.logits = torch.nn.Parameter(torch.log(p) - torch.log1p(-p))
        self._stats: em_lib.EMStats | None = None
        self.em_history: list = []

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
        """p_k = (1 - blend) x_m + blend mean(x) for K random training examples m (with replacement when
        K > M), equal weights: a spread-out start that breaks the symmetry between components."""
        x = self.check_input(x).double()
        if generator is None:
            generator = torch.Generator().manual_seed(self.seed)
        m = x.shape[0]
        if self.components <= m:
            idx = torch.randperm(m, generator=generator)[: self.components]
        else:
            idx = torch.randint(0, m, (self.components,), generator=generator)
        p = ((1 - blend) * x[idx] + blend * x.mean(0)).clamp(1e-3, 1 - 1e-3)
        self.set_parameters(torch.zeros(self.components, dtype=torch.float64), torch.log(p) - torch.log1p(-p))
        return self

    # -- the interface -------------------------------------------------------------------------------
    def component_log_probs(self, x: Tensor) -> Tensor:
        """log P_k(x_m) (M, K) in nats."""
        return em_lib.component_log_probs(as_float(x).to(self.logits.dtype), self.logits)

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

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Gradient mode: -mean log P(x) (nats). EM mode (training): E-step statistics of the batch are
        accumulated for the M-step of `on_epoch_end`; the returned NLL carries no gradient."""
        if not (self.em and self.training):
            return -self.log_prob(x).mean()
        stats = em_lib.e_step(x, self.log_weights.detach(), self.logits.detach())
        if self._stats is None:
            self._stats = em_lib.EMStats.zeros(self.components, self.n_features)
        self._stats.add(stats)
        return torch.tensor(-stats.log_lik / max(stats.count, 1), requires_grad=True)

    @torch.no_grad()
    def on_epoch_end(self, train: Tensor) -> None:
        """EM mode: the closed-form M-step from the statistics of the epoch (a fresh E-step over `train` if the
        batches did not cover it exactly once), then re-seeding of collapsed components."""
        if not self.em:
            return
        stats, self._stats = self._stats, None
        if stats is None or stats.count != train.shape[0]:
            stats = em_lib.e_step(train, self.log_weights.detach(), self.logits.detach())
        log_w, logits = em_lib.m_step(stats, self.smoothing, self.weight_smoothing,
                                      previous_logits=self.logits.detach(), min_mass=self.min_mass)
        rec = {"train_nll_before": -stats.log_lik / stats.count}
        if self.reseed:
            seeded = em_lib.reseed_collapsed(train, log_w, logits, stats, self.min_mass)
            if seeded:
                rec["reseeded"] = seeded
        self.set_parameters(log_w, logits)
        self.em_history.append(rec)

    def fit_em(self, x: Tensor, **kwargs) -> em_lib.EMResult:
        """Fit by EM (see genlearn.learning.em.fit_em for the settings)."""
        return em_lib.fit_em(self, x, **kwargs)

    def config(self) -> dict:
        return {"n_features": self.n_features, "components": self.components, "em": self.em,
                "smoothing": self.smoothing, "weight_smoothing": self.weight_smoothing, "reseed": self.reseed,
                "min_mass": self.min_mass, "seed": self.seed}


def _build(dataset, o: dict) -> MixtureOfBernoulli:
    model = MixtureOfBernoulli(dataset.n_features, components=o["components"], em=bool(o["em"]),
                               smoothing=o["smoothing"], weight_smoothing=o["weight_smoothing"],
                               seed=o["init_seed"])
    model.init_from_data(dataset.train, torch.Generator().manual_seed(int(o["init_seed"])))
    return model


register_model(ModelSpec(
    "mixture", MixtureOfBernoulli, "mixture of K product-Bernoulli components (EM or gradient descent)",
    ("binary",), _build,
    options={
        "components": Option(int, 10, "number of mixture components K (>= 1)"),
        "em": Option(bool, False, "fit by EM (one closed-form EM iteration per epoch) instead of gradients"),
        "smoothing": Option(float, 0.0, "EM: Beta pseudo-counts a in p = (S + a) / (N + 2a)"),
        "weight_smoothing": Option(float, 0.0, "EM: Dirichlet pseudo-counts of the mixture weights"),
        "init_seed": Option(int, 0, "seed of the initial parameters (K random training examples)"),
    },
    train_defaults={"optimizer": "adam", "lr": 0.05},
))

__all__ = ["MixtureOfBernoulli"]
