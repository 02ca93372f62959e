"""Expectation-maximisation for the mixture of Bernoullis, with a closed-form M-step.

Model: P(x|theta) = sum_k pi_k prod_i p_ki^x_i (1 - p_ki)^(1 - x_i), x in {0,1}^n.

E-step (log-sum-exp, float64): log r_mk = log pi_k + log P_k(x_m) - log P(x_m), with
    log P_k(x) = sum_i x_i l_ki + sum_i log(1 - p_ki),   l_ki = logit(p_ki) = log p_ki - log(1 - p_ki),
so that the sufficient statistics are N_k = sum_m r_mk and S_ki = sum_m r_mk x_mi (one matrix product).

M-step (closed form, optionally MAP under a Beta(1 + a, 1 + a) prior on every p_ki, i.e. `smoothing` = a
pseudo-counts of each value, and a symmetric Dirichlet(1 + a_pi) prior on pi):
    p_ki = (S_ki + a) / (N_k + 2a),     pi_k = (N_k + a_pi) / (M + K a_pi).
Without smoothing each iteration never decreases the log-likelihood sum_m log P(x_m) (Dempster et al. 1977);
with smoothing it never decreases the log posterior  log-likelihood + a sum_ki [log p_ki + log(1 - p_ki)]
+ a_pi sum_k log pi_k  (the `objective` recorded in the history). Probabilities are kept in [eps, 1 - eps]
(eps = 1e-10) so the logits stay finite; this costs at most ~1e-10 nats per example.

Collapsing components: a component whose responsibility mass N_k falls below `min_mass` (in examples) explains
almost nothing. With `reseed=True` it is moved onto the training example that the mixture explains worst
(p_k = (1 - w) x_m + w * mean(x), w = 0.25) with weight pi_k = max(pi_k, 1/M) taken from the largest component.
Removing a component of mass N_k changes the log-likelihood by at most sum_m -log(1 - r_mk), about N_k nats, so
a re-seed may lower the objective by about min_mass; every re-seed is recorded in the history, and every
EM step itself (E + M) is monotone. With `reseed=False` such a component keeps its previous Bernoulli means.

Units: log-likelihoods in nats; `nll` = mean negative log-likelihood per example.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from genlearn import binary_kernels
from genlearn.errors import ConfigError, DataError
from genlearn.models.mixture import component_log_probs, mixture_log_prob
from genlearn.numerics import column_means

EPS = 1e-10
DEFAULT_CHUNK = 10_000


@dataclass
class EMStats:
    """Sufficient statistics of an E-step: N_k = sum_m r_mk, S_ki = sum_m r_mk x_mi, total log-likelihood."""

    mass: Tensor  # (K,) float64
    sums: Tensor  # (K, n) float64
    log_lik: float = 0.0
    count: int = 0

    @classmethod
    def zeros(cls, k: int, n: int, device=None) -> "EMStats":
        return cls(torch.zeros(k, dtype=torch.float64, device=device),
                   torch.zeros(k, n, dtype=torch.float64, device=device))

    def add(self, other: "EMStats") -> None:
        self.mass += other.mass
        self.sums += other.sums
        self.log_lik += other.log_lik
        self.count += other.count


@torch.no_grad()
def e_step(x: Tensor, log_weights: Tensor, logits: Tensor, chunk: int = DEFAULT_CHUNK) -> EMStats:
    """Responsibilities r_mk (softmax over k of log pi_k + log P_k(x_m)) reduced to sufficient statistics,
    in float64, `chunk` examples at a time so memory stays at chunk x K.

    On 0/1 rows (numba installed) the two products with the data are sums of selected rows where this CPU runs
    them faster at the chunk's density (genlearn.binary_kernels): x_m . l_k as the sum of the rows of l^T at x_m's
    active pixels, and S = r^T x as, per pixel, the sum of the rows r_m with x_mi = 1; the same values as the float64
    products up to the order of their additions."""
    log_weights, logits = log_weights.double(), logits.double()
    stats = EMStats.zeros(*logits.shape, device=logits.device)
    K, n = logits.shape
    logits_t = zeros = None
    for start in range(0, x.shape[0], chunk):
        xb = x[start : start + chunk].double().contiguous()
        B = xb.shape[0]
        index = binary_kernels.indexed(xb)  # None: not 0/1, or the sums unavailable
        density = index.density(0, B) if index is not None else 1.0
        if index is not None and binary_kernels.faster_at(density, "rows", B, n, K):
            if logits_t is None:
                logits_t, zeros = logits.T.contiguous(), torch.zeros(K, dtype=torch.float64)
            lin = index.addmm(0, B, logits_t, zeros, torch.empty(B, K, dtype=torch.float64))
            joint = lin + torch.nn.functional.logsigmoid(-logits).sum(-1)
        else:
            joint = component_log_probs(xb, logits)
        joint += log_weights
        lp = torch.logsumexp(joint, dim=-1, keepdim=True)
        r = torch.exp(joint - lp)
        stats.mass += r.sum(0)
        if index is not None and binary_kernels.faster_at(density, "stats", B, n, K):
            stats.sums += index.t_mm(r, torch.empty(n, K, dtype=torch.float64)).T
        else:
            stats.sums += r.T @ xb
        stats.log_lik += float(lp.sum())
        stats.count += B
    return stats


def m_step(stats: EMStats, smoothing: float = 0.0, weight_smoothing: float = 0.0,
           previous_logits: Tensor | None = None, min_mass: float = 0.0) -> tuple[Tensor, Tensor]:
    """Closed-form (MAP) M-step: returns (log pi, logits) in float64.

    p_ki = (S_ki + a) / (N_k + 2a) clipped to [EPS, 1 - EPS]; pi_k = (N_k + a_pi) / (M + K a_pi).
    Components with N_k <= min_mass (and a = 0, where p would be 0/0) keep `previous_logits`."""
    mass, sums = stats.mass, stats.sums
    k = mass.shape[0]
    p = (sums + smoothing) / (mass + 2 * smoothing).clamp_min(1e-300).unsqueeze(-1)
    p = p.clamp(EPS, 1 - EPS)
    logits = torch.log(p) - torch.log1p(-p)
    if previous_logits is not None:
        dead = mass <= max(min_mass, 0.0) if smoothing == 0 else mass <= 0
        if dead.any():
            logits[dead] = previous_logits.double()[dead]
    weights = (mass + weight_smoothing) / (mass.sum() + k * weight_smoothing)
    log_weights = torch.log(weights.clamp_min(1e-300))
    return log_weights, logits


def log_prior(log_weights: Tensor, logits: Tensor, smoothing: float, weight_smoothing: float) -> float:
    """a sum_ki [log p_ki + log(1 - p_ki)] + a_pi sum_k log pi_k (unnormalised log prior of the MAP M-step)."""
    out = 0.0
    if smoothing:
        logits = logits.double()
        out += smoothing * float((torch.nn.functional.logsigmoid(logits)
                                  + torch.nn.functional.logsigmoid(-logits)).sum())
    if weight_smoothing:
        out += weight_smoothing * float(log_weights.double().sum())
    return out


@torch.no_grad()
def reseed_collapsed(x: Tensor, log_weights: Tensor, logits: Tensor, stats: EMStats, min_mass: float,
                     chunk: int = DEFAULT_CHUNK) -> list[int]:
    """Move every component with N_k < min_mass onto the worst-explained training example (in place on the
    float64 parameter tensors). Returns the indices of the re-seeded components."""
    dead = torch.nonzero(stats.mass < min_mass).flatten().tolist()
    if not dead:
        return []
    m = x.shape[0]
    lp = torch.cat([mixture_log_prob(x[s : s + chunk].double(), log_weights, logits)
                    for s in range(0, m, chunk)])
    worst = torch.argsort(lp)[: len(dead)]
    mean = column_means(x)
    weights = torch.exp(log_weights)
    for k, idx in zip(dead, worst.tolist()):
        p = (0.75 * x[idx].double() + 0.25 * mean).clamp(EPS, 1 - EPS)
        logits[k] = torch.log(p) - torch.log1p(-p)
        need = max(1.0 / m - float(weights[k]), 0.0)
        big = int(torch.argmax(weights))
        weights[k] += need
        weights[big] -= need
    log_weights.copy_(torch.log(weights.clamp_min(1e-300)))
    return dead


@dataclass
class EMResult:
    """history: one record per iteration with the train NLL (nats per example) of the parameters *before* that
    iteration's M-step, the objective, the valid NLL when given, and re-seeded components."""

    history: list = field(default_factory=list)
    converged: bool = False
    iterations: int = 0
    best_iteration: int | None = None
    seconds: float = 0.0


def _check(model, x: Tensor, what: str) -> Tensor:
    x = model.check_input(x)
    if x.shape[0] < 1:
        raise DataError(f"{what} is empty")
    return x


def _final_record(result, stats, log_w, logits, a, a_pi, m, valid, chunk, best, iteration) -> None:
    """Append the record of the final parameters (no M-step follows it); keep `best` up to date."""
    rec = {"iteration": iteration, "train_nll": -stats.log_lik / m,
           "objective": (stats.log_lik + log_prior(log_w, logits, a, a_pi)) / m}
    if valid is not None:
        v = -sum(float(mixture_log_prob(valid[s : s + chunk].double(), log_w, logits).sum())
                 for s in range(0, valid.shape[0], chunk)) / valid.shape[0]
        rec["valid_nll"] = v
        if v < best[0] - 1e-9:
            best = (v, log_w.clone(), logits.clone())
            result.best_iteration = iteration
    result.history.append(rec)
    result._best = best


@torch.no_grad()
def fit_em(model, x: Tensor, iterations: int = 100, tol: float = 1e-6, smoothing: float | None = None,
           weight_smoothing: float | None = None, valid: Tensor | None = None, patience: int | None = None,
           reseed: bool = True, min_mass: float = 1e-3, init: str | None = "data",
           generator: torch.Generator | None = None, chunk: int = DEFAULT_CHUNK,
           callback=None, max_seconds: float | None = None) -> EMResult:
    """Fit a MixtureOfBernoulli `model` to binary data x (M, n) by EM, in place; returns an EMResult.

    iterations: maximum number of EM steps; tol: stop when the objective per example improves by less than
    tol nats; smoothing / weight_smoothing: Beta / Dirichlet pseudo-counts (default 0: maximum likelihood);
    valid: optional validation data: its NLL is recorded, the parameters of the best valid NLL are returned,
    and `patience` stops after that many iterations without improvement; init: "data" re-initialises the
    means from random training examples (see MixtureOfBernoulli.init_from_data), None keeps the current
    parameters; generator: the randomness of the initialisation; max_seconds: stop after this wall time
    (checked after each iteration); callback(record) is called after every iteration."""
    if not isinstance(iterations, int) or iterations < 0:
        raise ConfigError(f"EM iterations must be a non-negative integer, got {iterations!r}")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        raise ConfigError(f"patience must be a positive integer, got {patience!r}")
    x = _check(model, x, "training data")
    if valid is not None:
        valid = _check(model, valid, "validation data")
    a = 0.0 if smoothing is None else float(smoothing)
    a_pi = 0.0 if weight_smoothing is None else float(weight_smoothing)
    if a < 0 or a_pi < 0:
        raise ConfigError("smoothing pseudo-counts must be >= 0")
    if init == "data":
        model.init_from_data(x, generator=generator)
    elif init is not None:
        raise ConfigError(f"unknown EM init {init!r}; use 'data' or None")
    log_w = model.log_weights.detach().double().clone()
    logits = model.logits.detach().double().clone()
    result = EMResult()
    t0 = time.perf_counter()
    m = x.shape[0]
    best = (math.inf, None, None)
    bad = 0
    prev_obj = -math.inf
    for it in range(iterations):
        stats = e_step(x, log_w, logits, chunk)
        obj = (stats.log_lik + log_prior(log_w, logits, a, a_pi)) / m
        rec = {"iteration": it, "train_nll": -stats.log_lik / m, "objective": obj}
        if valid is not None:
            v = -sum(float(mixture_log_prob(valid[s : s + chunk].double(), log_w, logits).sum())
                     for s in range(0, valid.shape[0], chunk)) / valid.shape[0]
            rec["valid_nll"] = v
            if v < best[0] - 1e-9:
                best, bad = (v, log_w.clone(), logits.clone()), 0
                result.best_iteration = it
            else:
                bad += 1
        if obj - prev_obj < tol and it > 0:
            result.history.append(rec)
            result.converged = True
            break
        if patience is not None and bad >= patience:
            result.history.append(rec)
            break
        prev_obj = obj
        log_w, logits = m_step(stats, a, a_pi, previous_logits=logits, min_mass=min_mass)
        if reseed:
            seeded = reseed_collapsed(x, log_w, logits, stats, min_mass, chunk)
            if seeded:
                rec["reseeded"] = seeded
                prev_obj = -math.inf  # the next step is compared with the re-seeded parameters
        result.history.append(rec)
        result.iterations = it + 1
        if callback is not None:
            callback(rec)
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            stats = e_step(x, log_w, logits, chunk)
            _final_record(result, stats, log_w, logits, a, a_pi, m, valid, chunk, best, it + 1)
            best = result._best
            break
    else:
        stats = e_step(x, log_w, logits, chunk)
        _final_record(result, stats, log_w, logits, a, a_pi, m, valid, chunk, best, iterations)
        best = result._best
    if valid is not None and best[1] is not None:  # select on valid (the benchmark protocol)
        log_w, logits = best[1], best[2]
    model.set_parameters(log_w, logits)
    result.seconds = time.perf_counter() - t0
    return result


__all__ = ["EMResult", "EMStats", "component_log_probs", "e_step", "fit_em", "log_prior", "m_step",
           "mixture_log_prob", "reseed_collapsed"]
