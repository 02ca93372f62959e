"""Gradient estimators of a fully visible Boltzmann machine, E(x) = -(b.x + 1/2 x.W.x) (genlearn.models.boltzmann).

The gradient of the empirical KL is a difference of moments,

    dD_KL(Q^||P_theta)/dtheta = <dE/dtheta>_Q^ - <dE/dtheta>_P_theta,
    i.e. dD/db_i = <x_i>_P - <x_i>_Q^  and  dD/dW_ij = <x_i x_j>_P - <x_i x_j>_Q^ (i < j).

E is linear in the sufficient statistics (x, x x^T), so <E> under any distribution depends only on its moments
m = <x>, C = <x x^T> (`BoltzmannMachine.mean_energy(m, C)`). Every moment estimator below therefore returns
the surrogate loss

    L(theta) = <E_theta>_{m_data, C_data} - <E_theta>_{m_model, C_model}   (model moments held fixed),

whose autograd gradient is exactly <dE/dtheta>_data - <dE/dtheta>_model with the model moments of the chosen
estimator, so the generic Trainer (any optimizer) runs the learning equation unchanged. The estimators:

- `ExactGradient` (gradient="exact"): model moments by enumeration of {0,1}^n (float64, n <= 24). The loss
  value is the exact batch NLL in nats, mean E(x) + log Z.
- `ContrastiveDivergence` ("gibbs", CD-k): moments of k Gibbs sweeps started at the data batch. Value: the
  energy gap <E>_data - <E>_samples (nats), not a likelihood. Biased (the chains do not reach P).
- `PersistentContrastiveDivergence` ("pcd"): moments of `n_chains` persistent chains advanced by k sweeps per
  step (kept in the model's `chains` buffer, so checkpoints resume exactly). Same value as CD.
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

from genlearn.errors import ConfigError


def data_moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Empirical <x> (n,) and <x x^T> (n, n) of the rows of x, float64."""
    x = x.double()
    return x.mean(0), x.T @ x / x.shape[0]


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


class ContrastiveDivergence:
    """CD-k: model moments from k Gibbs sweeps of chains started at the batch rows."""

    name = "gibbs"
    objective = "maximum likelihood, CD-k gradient (k Gibbs sweeps from the data); loss = energy gap"

    def loss(self, model, x: Tensor, generator=None) -> Tensor:
        samples = model.gibbs(x, model.k, generator)
        return moment_matching_loss(model, x, *data_moments(samples))


class PersistentContrastiveDivergence:
    """PCD-k: model moments from `n_chains` persistent chains (uniform random start), k sweeps per step."""

    name = "pcd"
    objective = "maximum likelihood, PCD gradient (persistent Gibbs chains); loss = energy gap"

    def loss(self, model, x: Tensor, generator=None) -> Tensor:
        with torch.no_grad():
            if not bool(model.chains_ready):
                init = torch.bernoulli(torch.full(model.chains.shape, 0.5, dtype=torch.float32), generator=generator)
                model.chains.copy_(init.to(model.chains.dtype))
                model.chains_ready.fill_(True)
            chains = model.gibbs(model.chains, model.k, generator)
            model.chains.copy_(chains.to(model.chains.dtype))
        return moment_matching_loss(model, x, *data_moments(chains))


@torch.no_grad()
def mean_field_magnetizations(h: Tensor, J: Tensor, init: Tensor, iterations: int = 200, tap: bool = False,
                              damping: float = 0.5, tol: float = 1e-10) -> Tensor:
    """Damped fixed-point iteration of the spin mean-field equations, float64:
    naive  M_i = tanh(h_i + sum_j J_ij M_j);
    TAP    M_i = tanh(h_i + sum_j J_ij M_j - M_i sum_j J_ij^2 (1 - M_j^2))  (Onsager reaction term)."""
    mag = init.clone().double()
    J2 = J * J
    for _ in range(iterations):
        field = h + J @ mag
        if tap:
            field = field - mag * (J2 @ (1 - mag * mag))
        new = torch.tanh(field)
        change = float((new - mag).abs().max()) if mag.numel() else 0.0
        mag = damping * mag + (1 - damping) * new
        if change < tol:
            break
    return mag


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
    """Model moments from (naive or TAP) mean field + linear response; warm-started from the last solution
    (kept in the model's `mf_magnetization` buffer). An approximation of the KL gradient."""

    def __init__(self, tap: bool = False):
        self.tap = tap
        self.name = "tap" if tap else "mean-field"
        self.objective = ("approximate maximum likelihood: " + ("TAP" if tap else "naive") +
                          " mean-field magnetisations with linear-response correlations; loss = energy gap")

    def loss(self, model, x: Tensor, generator=None) -> Tensor:
        with torch.no_grad():
            h, J = (t.detach().double() for t in model.spin_params())
            mag = mean_field_magnetizations(h, J, model.mf_magnetization, model.mf_iterations, self.tap)
            model.mf_magnetization.copy_(mag.to(model.mf_magnetization.dtype))
            m, c = linear_response_moments(h, J, mag, self.tap)
        return moment_matching_loss(model, x, m, c)


class PseudoLikelihood:
    """Negative log pseudo-likelihood, nats per example: -(1/M) sum_m sum_i log P(x_mi | x_m,-i) with
    P(x_i = 1 | x_-i) = sigmoid(b_i + sum_j W_ij x_j) (0/1 form; W has a zero diagonal)."""

    name = "pseudo-likelihood"
    objective = "maximum pseudo-likelihood (a different, consistent objective); loss = -log PL per example"

    def loss(self, model, x: Tensor, generator=None) -> Tensor:
        b, W = model.binary_params()
        x = x.to(b.dtype)
        return F.binary_cross_entropy_with_logits(x @ W + b, x, reduction="none").sum(1).mean()


def make_estimator(model):
    """The estimator object for `model.gradient`."""
    name = model.gradient
    if name == "exact":
        return ExactGradient()
    if name == "gibbs":
        return ContrastiveDivergence()
    if name == "pcd":
        return PersistentContrastiveDivergence()
    if name in ("mean-field", "tap"):
        return MeanFieldGradient(tap=name == "tap")
    if name == "pseudo-likelihood":
        return PseudoLikelihood()
    raise ConfigError(f"unknown Boltzmann-machine gradient {name!r}")


__all__ = ["ContrastiveDivergence", "ExactGradient", "MeanFieldGradient", "PersistentContrastiveDivergence",
           "PseudoLikelihood", "data_moments", "linear_response_moments", "make_estimator",
           "mean_field_magnetizations", "moment_matching_loss"]
