"""Gradient estimators of a fully visible Boltzmann machine, E(x) = -(b.x + 1/2 x.W.x) (genlearn.models.boltzmann).

The gradient of the empirical KL is a difference of moments,

    dD_KL(Q^||P_theta)/dtheta = <dE/dtheta>_Q^ - <dE/dtheta>_P_theta,
    i.e. dD/db_i = <x_i>_P - <x_i>_Q^  and  dD/dW_ij = <x_i x_j>_P - <x_i x_j>_Q^ (i < j).

E is linear in the sufficient statistics (x, x x^T), so <E> under any distribution depends only on its moments
m = <x>, C = <x x^T> (`BoltzmannMachine.mean_energy(m, C)`). Every moment estimator below therefore returns
the surrogate loss

    L(theta) = <E_theta>_{m_data, C_data} - <E_theta>_{m_model, C_model}   (model moments held fixed),

whose autograd gradient is exactly <dE/dtheta>_data - <dE/dtheta>_model with the model moments of the chosen
estimator, so the generic Trainer (any optimizer) runs the learning equation unchanged. The estimators are
objects that hold their settings (k, n_chains, mf_iterations) and their state (persistent chains, the last
mean-field magnetisation); the "boltzmann-moments" rule of genlearn.learning.rules wraps them:

- `ExactGradient` (gradient="exact"): model moments by enumeration of {0,1}^n (float64, n <= 24). The loss
  value is the exact batch NLL in nats, mean E(x) + log Z.
- `ContrastiveDivergence` ("gibbs", CD-k): moments of k Gibbs sweeps started at the data batch. Value: the
  energy gap <E>_data - <E>_samples (nats), not a likelihood. Biased (the chains do not reach P).
- `PersistentContrastiveDivergence` ("pcd"): moments of `n_chains` persistent chains advanced by k sweeps per
  step (kept by the estimator and checkpointed by the "boltzmann-moments" learning rule, so --resume continues
  exactly). Same value as CD.
- `MeanFieldGradient` ("mean-field", "tap"): magnetisations from the naive (or TAP, Onsager-corrected)
  mean-field equations and correlations from linear response; an approximation, exact only as couplings -> 0.
  TAP moments are more accurate at given parameters, but TAP learning is unstable once couplings are strong
  (the TAP-LR moments can match the data at parameters far from the ML, then the fixed point stops
  converging and the couplings run away): use it for weakly coupled data only.
- `PseudoLikelihood` ("pseudo-likelihood"): a different, consistent objective, the negative log
  pseudo-likelihood -(1/M) sum_m sum_i log P(x_mi | x_m,-i) (nats per example), differentiated by autograd.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from genlearn import binary_kernels, products
from genlearn.errors import ConfigError
from genlearn.models.boltzmann import mean_field_magnetizations


def pair_counts(x: Tensor) -> Tensor | None:
    """x^T x for 0/1 rows x (B x n) as float32 counts, or None where x is not such a CPU batch (then the caller
    multiplies in float64). The counts are integers <= B < 2^24, so float32 holds them exactly whatever the order of
    the additions: the sums of selected rows (per unit i, the sum of the rows x_m with x_mi = 1,
    genlearn.binary_kernels) where this CPU runs them faster at the batch's density, else a float32 product; both
    equal the float64 product exactly, in a fraction of its time (float64 products run at half float32's rate)."""
    if x.device.type != "cpu" or x.dim() != 2 or x.shape[0] == 0 or x.shape[0] >= 2 ** 24 \
            or x.dtype not in (torch.float32, torch.float64):
        return None
    x32 = x.detach().to(torch.float32).contiguous()
    index = binary_kernels.indexed(x32)  # None: entries other than 0 and 1, or the sums unavailable
    if index is None:
        return None
    B, n = x32.shape
    out = torch.empty(n, n)
    if binary_kernels.faster_at(index.density(0, B), "stats", B, n, n):
        return index.t_mm(x32, out)
    return products.mm(x32.T, x32, out=out)


def data_moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Empirical <x> (n,) and <x x^T> (n, n) of the rows of x, float64 (for 0/1 rows, x^T x from exact float32
    counts, `pair_counts`)."""
    counts = pair_counts(x)
    x = x.double()
    return x.mean(0), (x.T @ x if counts is None else counts.double()) / x.shape[0]


def moment_matching_loss(model, x: Tensor, m_model: Tensor, c_model: Tensor) -> Tensor:
    """<E>_data - <E>_model with the model moments fixed (float64 scalar): gradient = <dE>_data - <dE>_model."""
    m_data, c_data = data_moments(x)
    return model.mean_energy(m_data, c_data) - model.mean_energy(m_model.detach(), c_model.detach())


class ExactGradient:
    """Exact model moments by enumeration; loss value = batch NLL = mean E(x) + log Z (nats per example)."""

    name = "exact"
    objective = "maximum likelihood, exact gradient (model moments by enumeration)"

    def loss(self, model, x: Tensor, generator=None) -> Tensor:
        log_z, m, c = model.exact_statistics()
        m_data, c_data = data_moments(x)
        e_data, e_model = model.mean_energy(m_data, c_data), model.mean_energy(m, c)
        return e_data - e_model + e_model.detach() + log_z

    def state_tensors(self) -> dict:
        return {}

    def load_state_tensors(self, tensors: dict) -> None:
        _no_state(self, tensors)


def _no_state(estimator, tensors: dict) -> None:
    if tensors:
        raise ConfigError(f"the {estimator.name!r} Boltzmann gradient keeps no state, but the checkpoint holds "
                          f"{', '.join(sorted(tensors))}")


class ContrastiveDivergence:
    """CD-k: model moments from k Gibbs sweeps of chains started at the batch rows."""

    name = "gibbs"
    objective = "maximum likelihood, CD-k gradient (k Gibbs sweeps from the data); loss = energy gap"

    def __init__(self, k: int = 1):
        self.k = k

    def loss(self, model, x: Tensor, generator=None) -> Tensor:
        samples = model.gibbs(x, self.k, generator)
        return moment_matching_loss(model, x, *data_moments(samples))

    def state_tensors(self) -> dict:
        return {}

    def load_state_tensors(self, tensors: dict) -> None:
        _no_state(self, tensors)


class PersistentContrastiveDivergence:
    """PCD-k: model moments from `n_chains` persistent chains, k sweeps per step. The chains (n_chains x n, in
    the parameters' dtype) start uniformly at random, x ~ Bernoulli(1/2), at the first step."""

    name = "pcd"
    objective = "maximum likelihood, PCD gradient (persistent Gibbs chains); loss = energy gap"

    def __init__(self, k: int = 1, n_chains: int = 100):
        self.k, self.n_chains = k, n_chains
        self.chains: Tensor | None = None

    def loss(self, model, x: Tensor, generator=None) -> Tensor:
        with torch.no_grad():
            dtype = model.bias.dtype
            if self.chains is None:
                init = torch.bernoulli(torch.full((self.n_chains, model.n_features), 0.5, dtype=torch.float32),
                                       generator=generator)
                self.chains = init.to(dtype)
            elif self.chains.shape != (self.n_chains, model.n_features):
                raise ConfigError(f"the persistent chains have shape {tuple(self.chains.shape)}, but the rule has "
                                  f"n_chains={self.n_chains} for {model.n_features} units")
            chains = model.gibbs(self.chains.to(dtype), self.k, generator)
            self.chains = chains.to(dtype)
        return moment_matching_loss(model, x, *data_moments(chains))

    def state_tensors(self) -> dict:
        return {} if self.chains is None else {"chains": self.chains}

    def load_state_tensors(self, tensors: dict) -> None:
        unknown = set(tensors) - {"chains"}
        if unknown:
            raise ConfigError(f"unknown PCD state {', '.join(sorted(unknown))} in the checkpoint")
        self.chains = tensors["chains"].clone() if "chains" in tensors else None


@torch.no_grad()
def linear_response_moments(h: Tensor, J: Tensor, mag: Tensor, tap: bool = False) -> tuple[Tensor, Tensor]:
    """0/1 moments (m, C) from magnetisations M and linear-response correlations chi = dM/dh:
    naive (chi^-1)_ij = delta_ij / (1 - M_i^2) - J_ij;
    TAP   (chi^-1)_ij = delta_ij [1/(1 - M_i^2) + sum_k J_ik^2 (1 - M_k^2)] - J_ij - 2 J_ij^2 M_i M_j;
    <s_i s_j> = chi_ij + M_i M_j, then m = (1 + M)/2, C_ij = (1 + M_i + M_j + <s_i s_j>)/4, C_ii = m_i."""
    one_minus = (1 - mag * mag).clamp_min(1e-12)
    inv = -J.clone()
    diag = 1 / one_minus
    if tap:
        J2 = J * J
        diag = diag + J2 @ one_minus
        inv = inv - 2 * J2 * torch.outer(mag, mag)
    inv = inv + torch.diag(diag)
    chi = torch.linalg.solve(inv, torch.eye(h.numel(), dtype=inv.dtype))
    ss = chi + torch.outer(mag, mag)
    m = (1 + mag) / 2
    c = (1 + mag.unsqueeze(0) + mag.unsqueeze(1) + ss) / 4
    c = c - torch.diag(torch.diagonal(c)) + torch.diag(m)
    return m, c


class MeanFieldGradient:
    """Model moments from (naive or TAP) mean field + linear response, at most `iterations` damped fixed-point
    iterations per step (then, where strong couplings lock them in a cycle, at most `iterations` sequential sweeps:
    slower, ~0.3-0.8 s a step for 784 units, but a fixed point), warm-started from the last solution
    (`magnetization`, n spins in the parameters' dtype, starting at 0). An approximation of the KL gradient."""

    def __init__(self, tap: bool = False, iterations: int = 200):
        self.tap, self.iterations = tap, iterations
        self.name = "tap" if tap else "mean-field"
        self.objective = ("approximate maximum likelihood: " + ("TAP" if tap else "naive") +
                          " mean-field magnetisations with linear-response correlations; loss = energy gap")
        self.magnetization: Tensor | None = None

    def loss(self, model, x: Tensor, generator=None) -> Tensor:
        with torch.no_grad():
            if self.magnetization is None:
                self.magnetization = torch.zeros(model.n_features, dtype=model.bias.dtype)
            h, J = (t.detach().double() for t in model.spin_params())
            mag = mean_field_magnetizations(h, J, self.magnetization, self.iterations, self.tap)
            self.magnetization = mag.to(self.magnetization.dtype)
            m, c = linear_response_moments(h, J, mag, self.tap)
        return moment_matching_loss(model, x, m, c)

    def state_tensors(self) -> dict:
        return {} if self.magnetization is None else {"magnetization": self.magnetization}

    def load_state_tensors(self, tensors: dict) -> None:
        unknown = set(tensors) - {"magnetization"}
        if unknown:
            raise ConfigError(f"unknown mean-field state {', '.join(sorted(unknown))} in the checkpoint")
        self.magnetization = tensors["magnetization"].clone() if "magnetization" in tensors else None


class PseudoLikelihood:
    """Negative log pseudo-likelihood, nats per example: -(1/M) sum_m sum_i log P(x_mi | x_m,-i) with
    P(x_i = 1 | x_-i) = sigmoid(b_i + sum_j W_ij x_j) (0/1 form; W has a zero diagonal)."""

    name = "pseudo-likelihood"
    objective = "maximum pseudo-likelihood (a different, consistent objective); loss = -log PL per example"

    def loss(self, model, x: Tensor, generator=None) -> Tensor:
        b, W = model.binary_params()
        x = x.to(b.dtype)
        return F.binary_cross_entropy_with_logits(x @ W + b, x, reduction="none").sum(1).mean()

    def state_tensors(self) -> dict:
        return {}

    def load_state_tensors(self, tensors: dict) -> None:
        _no_state(self, tensors)


#: the estimators (the "boltzmann-moments" rule's `estimator` setting, the CLI's `--gradient`)
ESTIMATORS = ("exact", "gibbs", "pcd", "mean-field", "tap", "pseudo-likelihood")


def make_estimator(name: str, k: int = 1, n_chains: int = 100, mf_iterations: int = 200):
    """A fresh estimator object (no state yet) for `name` in ESTIMATORS."""
    if name == "exact":
        return ExactGradient()
    if name == "gibbs":
        return ContrastiveDivergence(k)
    if name == "pcd":
        return PersistentContrastiveDivergence(k, n_chains)
    if name in ("mean-field", "tap"):
        return MeanFieldGradient(tap=name == "tap", iterations=mf_iterations)
    if name == "pseudo-likelihood":
        return PseudoLikelihood()
    raise ConfigError(f"unknown Boltzmann-machine gradient {name!r}; choose one of {', '.join(ESTIMATORS)}")


__all__ = ["ESTIMATORS", "ContrastiveDivergence", "ExactGradient", "MeanFieldGradient",
           "PersistentContrastiveDivergence", "PseudoLikelihood", "data_moments", "linear_response_moments",
           "make_estimator", "mean_field_magnetizations", "moment_matching_loss"]
