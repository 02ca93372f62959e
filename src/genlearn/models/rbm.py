"""Restricted Boltzmann machine with binary units.

    E(v, h) = -v.b - h.c - v^T W h,   P(v, h) = exp(-E(v, h)) / Z,   v in {0,1}^V, h in {0,1}^H
    F(v)    = -log sum_h exp(-E(v, h)) = -v.b - sum_j softplus(c_j + v.W_j)      (free energy, nats)
    P(h_j = 1 | v) = sigmoid(c_j + v.W_j),   P(v_i = 1 | h) = sigmoid(b_i + W_i.h)

The model is the distribution only. Learning follows the KL gradient
dD_KL(Q^||P)/dtheta = <dF/dtheta>_data - <dF/dtheta>_model, with dF/dW = -v sigmoid(c + v W)^T, dF/db = -v,
dF/dc = -sigmoid(c + v W), and the learning rules of genlearn.learning.rules say where the model phase comes
from: "contrastive-divergence" (CD-k from the batch, or PCD-k from persistent chains that the rule owns) or
"rbm-exact-gradient" (exact moments by enumerating the smaller layer, at most 20 units); their kernels are in
genlearn.learning.rbm_gradients. `loss(x)` is the exact NLL mean F(x) + log Z with that exact gradient (for the
generic "maximum-likelihood" rule on small RBMs; IntractableError beyond 20 units).

Likelihood: `log_partition(method="exact")` enumerates the smaller layer (up to 25 units, exact to float64
accumulation), method="ais" runs AIS from the data base rate with reverse AIS for the other side of the
bracket; which one is used ("auto") is decided by the likelihood policy, `genlearn.likelihood`.
`tractable` (exact NLL monitored every epoch by the trainer) is True when the smaller layer has <= 16 units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from genlearn.errors import ConfigError, DataError, IntractableError
from genlearn.models.base import (MATMUL_PRECISIONS, EnergyModel, check_positive_int,  # noqa: F401
                                  reject_learning_settings)
from genlearn.numerics import base_rate_logits, sample_bernoulli, uniform_
from genlearn import search_space as ss
from genlearn.options import option
from genlearn.models.registry import ModelSpec, register_model

GRADIENTS = ("cd", "pcd", "exact")
#: smaller layer size up to which the trainer monitors the exact NLL every epoch
TRACTABLE_LIMIT = 16
#: smaller layer size up to which the exact gradient (loss, the "rbm-exact-gradient" rule) enumerates per step
EXACT_GRADIENT_LIMIT = 20
#: number of training rows kept (in a buffer) to start reverse AIS chains from
REVERSE_ROWS = 100
#: constructor settings of earlier versions that now belong to the learning rule (dropped by `from_config`)
LEGACY_LEARNING_KEYS = ("k", "persistent", "gradient", "n_chains", "matmul_precision")
#: buffers of earlier versions that now belong to the learning rule (dropped when a state dict is loaded)
LEGACY_BUFFERS = ("chains", "chains_ready")


def check_exact_gradient_limit(model: "RBM") -> None:
    """IntractableError unless the exact gradient can enumerate the smaller layer (<= EXACT_GRADIENT_LIMIT)."""
    m = min(model.n_visible, model.n_hidden)
    if m > EXACT_GRADIENT_LIMIT:
        raise IntractableError(
            f"the exact gradient enumerates the smaller layer at every step: 2^{m} states, but it is limited "
            f"to {EXACT_GRADIENT_LIMIT} units. Use --gradient cd or pcd (with --k) instead (the "
            "contrastive-divergence learning rule).")


class RBM(EnergyModel):
    """Binary RBM with V visible and H hidden units (the distribution; how it learns is a learning rule).

    Parameters: `weight` W (V x H), `visible_bias` b (V), `hidden_bias` c (H), initialised W ~ N(0, init_std^2)
    with `seed`, b = c = 0. Buffers (saved in checkpoints), the data statistics of AIS: `base_rate_logits`
    (smoothed training means, the AIS base distribution) and `reverse_rows` (training rows to start reverse AIS
    from), set by `set_training_statistics` (the RBM learning rules call it with the first batch and at the end
    of the first epoch with the whole training set)."""

    name = "rbm"
    support = "binary"
    #: buffers that hold statistics of the training data, not the model: a run started from another run's
    #: parameters (--init-from) computes its own (runs.start_from_run)
    data_buffers = ("base_rate_logits", "base_rate_ready", "reverse_rows")

    def __init__(self, n_visible: int, n_hidden: int = 16, init_std: float = 0.01, seed: int = 0, **legacy):
        super().__init__()
        reject_learning_settings("RBM", legacy, LEGACY_LEARNING_KEYS,
                                 "make_rule('contrastive-divergence', {'k': ..., 'persistent': ..., 'n_chains': ..., "
                                 "'matmul_precision': ...}) or make_rule('rbm-exact-gradient')")
        self.n_features = self.n_visible = check_positive_int(n_visible, "n_visible")
        self.n_hidden = check_positive_int(n_hidden, "the number of hidden units (--hidden)")
        if not (isinstance(init_std, (int, float)) and math.isfinite(init_std) and init_std >= 0):
            raise ConfigError(f"init_std must be a finite number >= 0, got {init_std!r}")
        self.init_std, self.seed = float(init_std), int(seed)
        g = torch.Generator().manual_seed(self.seed)
        self.weight = torch.nn.Parameter(torch.randn(self.n_visible, self.n_hidden, generator=g) * self.init_std)
        self.visible_bias = torch.nn.Parameter(torch.zeros(self.n_visible))
        self.hidden_bias = torch.nn.Parameter(torch.zeros(self.n_hidden))
        self.register_buffer("base_rate_logits", torch.zeros(self.n_visible))
        #: 0: not set, 1: from a batch, 2: from the whole training set
        self.register_buffer("base_rate_ready", torch.zeros((), dtype=torch.uint8))
        self.register_buffer("reverse_rows", torch.zeros(0, self.n_visible))
        self._log_z_cache: tuple | None = None

    # -- configuration -----------------------------------------------------------------------------
    @property
    def tractable(self) -> bool:  # exact NLL monitored by the trainer every epoch
        return min(self.n_visible, self.n_hidden) <= TRACTABLE_LIMIT

    def config(self) -> dict:
        return {"n_visible": self.n_visible, "n_hidden": self.n_hidden, "init_std": self.init_std,
                "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict) -> "RBM":
        """Rebuild from `config()`; configs of earlier versions carry learning settings (k, persistent, gradient,
        n_chains, matmul_precision), which are dropped (genlearn.learning.legacy derives the rule from them)."""
        return cls(**{k: v for k, v in config.items() if k not in LEGACY_LEARNING_KEYS})

    def _apply(self, fn, *args, **kwargs):  # .double(), .float(), .to(): parameters are new tensors
        self._log_z_cache = None
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in LEGACY_BUFFERS:  # PCD chains of earlier versions: the learning rule's state now
            state_dict.pop(prefix + name, None)
        # reverse_rows holds 0..REVERSE_ROWS rows: adopt the saved shape before loading
        key = prefix + "reverse_rows"
        if key in state_dict:
            self.reverse_rows = torch.zeros_like(state_dict[key], dtype=self.reverse_rows.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- energy, conditionals, sampling ----------------------------------------------------------
    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        """E(v, h) = -v.b - h.c - v^T W h per example (nats)."""
        v, h = v.to(self.weight.dtype), h.to(self.weight.dtype)
        return -(v @ self.visible_bias) - (h @ self.hidden_bias) - ((v @ self.weight) * h).sum(-1)

    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = -v.b - sum_j softplus(c_j + v.W_j) per example (nats); P(v) = exp(-F(v)) / Z."""
        v = v.to(self.weight.dtype)
        return -(v @ self.visible_bias) - torch.nn.functional.softplus(
            torch.addmm(self.hidden_bias, v, self.weight)).sum(-1)

    def hidden_probs(self, v: Tensor) -> Tensor:
        """P(h_j = 1 | v) = sigmoid(c + v W), (B x H)."""
        return torch.sigmoid(torch.addmm(self.hidden_bias, v.to(self.weight.dtype), self.weight))

    def visible_probs(self, h: Tensor) -> Tensor:
        """P(v_i = 1 | h) = sigmoid(b + h W^T), (B x V)."""
        return torch.sigmoid(torch.addmm(self.visible_bias, h.to(self.weight.dtype), self.weight.T))

    @torch.no_grad()
    def gibbs(self, v: Tensor, steps: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """`steps` block-Gibbs sweeps v -> h ~ P(h|v) -> v ~ P(v|h) from the rows v; returns the last v."""
        from genlearn.estimators.ais import gibbs_sweeps

        return gibbs_sweeps(self.weight.detach(), self.visible_bias.detach(), self.hidden_bias.detach(),
                            v.to(self.weight.dtype), steps, generator)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, steps: int = 1000) -> Tensor:
        """n draws (approximately) from P(v): `steps` Gibbs sweeps from uniformly random visible states."""
        n = check_positive_int(n, "the number of samples")
        steps = check_positive_int(steps, "the number of Gibbs steps")
        v0 = sample_bernoulli(torch.full((n, self.n_visible), 0.5, dtype=self.weight.dtype), generator)
        return self.gibbs(v0, steps, generator)

    # -- data-dependent state (the statistics AIS starts from) ----------------------------------------------
    @torch.no_grad()
    def set_training_statistics(self, x: Tensor, full: bool = True) -> None:
        """Store the base rate (smoothed training means) for AIS and up to 100 rows to start reverse AIS.
        full=False marks statistics of a first batch only (replaced by those of the whole set later)."""
        self.base_rate_logits.copy_(base_rate_logits(x))
        self.base_rate_ready.fill_(2 if full else 1)
        m = x.shape[0]
        idx = torch.linspace(0, m - 1, min(m, REVERSE_ROWS)).round().long()
        self.reverse_rows = x[idx].to(self.reverse_rows.dtype).clone()

    def check_batch(self, x: Tensor) -> None:
        """Check a training batch's shape (B, V) and, before any statistics are stored, store those of the
        batch (so that AIS has a base rate even within the first epoch)."""
        if x.ndim != 2 or x.shape[1] != self.n_visible:
            raise DataError(f"the RBM expects batches of shape (B, {self.n_visible}), got {tuple(x.shape)}")
        if int(self.base_rate_ready) == 0:
            self.set_training_statistics(x.detach(), full=False)

    @torch.no_grad()
    def init_visible_bias(self, x: Tensor) -> "RBM":
        """b = logit of the smoothed training means (Hinton's practical guide), a good start for training."""
        self.visible_bias.copy_(base_rate_logits(x, smoothing=0.01))
        return self

    # -- the exact NLL ------------------------------------------------------------------------------
    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The exact NLL of the batch, mean F(x) + log Z (nats per example), with the exact gradient
        dF/dtheta averaged over x minus <dF/dtheta>_P (model moments by enumerating the smaller layer, at most
        EXACT_GRADIENT_LIMIT units; IntractableError beyond: learn with the "contrastive-divergence" rule)."""
        from genlearn.estimators.exact_rbm import rbm_exact_moments

        check_exact_gradient_limit(self)
        self.check_batch(x)
        W, b, c = self.weight, self.visible_bias, self.hidden_bias
        log_z, e_vh, e_v, e_h = rbm_exact_moments(W, b, c, limit=EXACT_GRADIENT_LIMIT)
        # d log Z / d(W, b, c) = (E[v h^T], E[v], E[h]): a term with that gradient and the value log Z
        moments = (W * e_vh.to(W.dtype)).sum() + b @ e_v.to(W.dtype) + c @ e_h.to(W.dtype)
        return self.free_energy(x).mean() + (moments - moments.detach() + log_z)

    # -- likelihood --------------------------------------------------------------------------------
    def _cached_log_z(self) -> float | None:
        """The exact log Z computed for exactly the current parameter values, else None. (The values are compared,
        not tensor version counters: fused optimizers update parameters without bumping those.)"""
        if self._log_z_cache is None:
            return None
        saved, value = self._log_z_cache
        current = (self.weight, self.visible_bias, self.hidden_bias)
        same = all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(saved, current))
        return value if same else None

    def exact_partition_size(self) -> tuple[int, int]:
        """(m, n): exact log Z enumerates the 2^m states of the smaller layer (m = min(V, H)) and sums the larger
        one (n units) in closed form, about n 2^m terms (the likelihood policy's cost)."""
        return min(self.n_visible, self.n_hidden), max(self.n_visible, self.n_hidden)

    def log_partition(self, method: str = "exact", steps: int | None = None, chains: int = 100, seed: int = 0,
                      data: Tensor | None = None, reverse: bool = True, burn_in: int = 1000, kernel: str = "auto",
                      progress: bool = False, **unused):
        """log Z in nats as an Estimate, by the named computation (the choice between them, "auto", is the
        likelihood policy's: `genlearn.likelihood.log_partition(model)`).

        method: "exact" (enumerate the 2^m states of the smaller layer, m <= 25 (IntractableError beyond), float64;
        cached for the current parameter values), "ais" (AIS from the data base rate with `steps` temperatures
        (default the published 14,500), `chains` chains and `seed`; with `reverse`, reverse AIS from training rows
        after `burn_in` Gibbs sweeps gives the upper side of the bracket). `data`: training rows for the base
        rate and the reverse starts (else the stored statistics). `progress`: a progress bar over the AIS
        temperatures."""
        from genlearn.estimators import Estimate
        from genlearn.estimators.exact_rbm import check_exact_limit, rbm_log_partition

        if method == "auto":
            raise ConfigError("RBM.log_partition computes log Z by a named method (exact or ais); the automatic "
                              "choice is genlearn.likelihood.log_partition(model, 'auto')")
        if method not in ("exact", "ais"):
            raise ConfigError(f"unknown partition method {method!r} for an RBM; choose exact or ais")
        if method == "exact":
            check_exact_limit(min(self.n_visible, self.n_hidden))
            value = self._cached_log_z()
            if value is None:
                value = rbm_log_partition(self.weight, self.visible_bias, self.hidden_bias, kernel=kernel)
                params = (self.weight, self.visible_bias, self.hidden_bias)
                self._log_z_cache = (tuple(p.detach().clone() for p in params), value)
            return Estimate.exact(value, "exact (enumerating the smaller layer)")
        from genlearn.estimators.ais import ais_log_partition

        if data is not None:
            data = self.check_input(data)
            base, rows = base_rate_logits(data), data
        else:
            base = self.base_rate_logits if int(self.base_rate_ready) else None
            rows = self.reverse_rows
        return ais_log_partition(self.weight, self.visible_bias, self.hidden_bias, base, steps=steps,
                                 chains=chains, seed=seed, reverse=reverse, reverse_start=rows, burn_in=burn_in,
                                 progress=progress)

    def log_prob(self, x: Tensor) -> Tensor:
        """log P(x) = -F(x) - log Z with the exact log Z (IntractableError when the smaller layer is too big).
        Differentiable in the parameters: d log Z/dW = E_P[v h^T], d/db = E_P[v], d/dc = E_P[h], the exact model
        moments by enumerating the smaller layer (genlearn.estimators.exact_rbm.rbm_exact_moments)."""
        log_z = self.log_partition(method="exact").value
        params = (self.weight, self.visible_bias, self.hidden_bias)
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return -self.free_energy(x) - _ExactLogPartition.apply(log_z, *params)
        return -self.free_energy(x) - log_z


class _ExactLogPartition(torch.autograd.Function):
    """log Z(W, b, c) as a differentiable scalar: the forward pass is the (cached) exact value, the backward pass
    the exact model moments, d log Z/dW = E_P[v h^T], d/db = E_P[v], d/dc = E_P[h] (float64 enumeration)."""

    @staticmethod
    def forward(ctx, log_z: float, weight: Tensor, visible_bias: Tensor, hidden_bias: Tensor) -> Tensor:
        ctx.save_for_backward(weight, visible_bias, hidden_bias)
        return torch.tensor(log_z, dtype=torch.float64, device=weight.device)

    @staticmethod
    def backward(ctx, grad: Tensor):
        from genlearn.estimators.exact_rbm import EXACT_LOGZ_LIMIT, rbm_exact_moments

        weight, visible_bias, hidden_bias = ctx.saved_tensors
        _, e_vh, e_v, e_h = rbm_exact_moments(weight, visible_bias, hidden_bias, limit=EXACT_LOGZ_LIMIT)
        g = grad.double()
        return (None, *((g * e).to(p.dtype).to(p.device) for e, p in ((e_vh, weight), (e_v, visible_bias),
                                                                       (e_h, hidden_bias))))


@dataclass(frozen=True)
class RBMConfig:
    """Options of `genlearn fit rbm` (hidden, init_* describe the model; k, persistent, gradient, n_chains and
    matmul_precision the learning rule)."""

    hidden: int = option(16, "number of hidden units", minimum=1)
    k: int = option(1, "Gibbs sweeps per update (CD-k / PCD-k)", minimum=1)
    persistent: bool = option(False, "persistent chains (PCD)")
    gradient: str | None = option(None, "negative phase: cd, pcd or exact (default: pcd with --persistent, else cd)",
                                  choices=(None, "cd", "pcd", "exact"))
    n_chains: int = option(100, "number of persistent chains (PCD)", minimum=1)
    init_std: float = option(0.01, "standard deviation of the initial weights", minimum=0)
    init_seed: int = option(0, "seed of the initial weights")
    init_visible: str = option("data", "initial visible biases: data (logits of the smoothed training means, "
                               "Hinton's practical guide) or zero", choices=("data", "zero"))
    matmul_precision: str = option("auto", "precision of the CD/PCD matrix products: auto (bfloat16 only where "
                                   "this machine runs it faster, measured once per process), full, or bfloat16 "
                                   "(mixed precision: bfloat16 operands, float32 accumulation; ~1.8x faster only "
                                   "on CPUs with AVX512-BF16 or AMX, and on GPUs)", choices=MATMUL_PRECISIONS)

    @property
    def negative_phase(self) -> str:
        """cd, pcd or exact: `gradient`, or pcd/cd from `persistent` when it is not given."""
        if self.gradient is None:
            return "pcd" if self.persistent else "cd"
        if self.persistent and self.gradient != "pcd":
            raise ConfigError(f"--persistent asks for PCD but --gradient is {self.gradient!r}; drop one of them")
        return self.gradient


def _build(dataset, config: RBMConfig) -> RBM:
    # k, persistent, gradient, n_chains and matmul_precision are the learning rule's (see _rule)
    model = RBM(dataset.n_features, n_hidden=config.hidden, init_std=config.init_std, seed=config.init_seed)
    if config.init_visible == "data":
        model.init_visible_bias(dataset.train)
    return model


def _rule(config: RBMConfig) -> tuple[str, dict]:
    """CD-k / PCD-k (the rule owns the persistent chains) or the exact gradient by enumeration."""
    if config.negative_phase == "exact":
        return "rbm-exact-gradient", {}
    return "contrastive-divergence", {"k": config.k, "persistent": config.negative_phase == "pcd",
                                      "n_chains": config.n_chains, "matmul_precision": config.matmul_precision}


register_model(ModelSpec(
    "rbm", RBM, "restricted Boltzmann machine (binary units), trained by CD-k, PCD-k or the exact gradient",
    ("binary",), _build, RBMConfig, _rule,
    train_defaults={"optimizer": "momentum", "lr": 0.05, "batch_size": 100, "momentum": 0.5},
    # small enough for the exact likelihood (selection by the exact valid NLL)
    search_space={"hidden": ss.integer(4, 20), "k": ss.choice(1, 5), "persistent": ss.choice(False, True),
                  "lr": ss.real(1e-3, 0.1, log=True), "batch_size": ss.choice(16, 32, 100),
                  "weight_decay": ss.choice(0.0, 1e-5, 1e-4)},
))


__all__ = ["RBM", "check_exact_gradient_limit", "sample_bernoulli", "uniform_"]
