"""Annealed importance sampling (AIS) of a latent-variable marginal likelihood P(x) = integral p(z) P(x|z) dz,
z in R^D, with Hamiltonian Monte Carlo transitions; bidirectional Monte Carlo (BDMC) to bracket it; and a dense
quadrature oracle for D = 1, 2. All quantities are in nats.

Path (Neal 2001; Wu, Burda, Salakhutdinov & Grosse 2017): f_t(z) = log p(z) + beta_t log P(x|z), t = 0..T, from
the prior (beta_0 = 0) to the unnormalised posterior p(z) P(x|z) (beta_T = 1), whose normaliser is P(x). The
inverse temperatures follow the sigmoid schedule of Wu et al.: s(t) = sigmoid(delta (2t/T - 1)), delta = 4,
beta_t = (s(t) - s(0)) / (s(T) - s(0)).

Forward AIS: z_0 ~ p(z); for t = 1..T: log w += (beta_t - beta_{t-1}) log P(x|z_{t-1}), then z_t = one HMC
transition leaving f_t invariant. E[w] = P(x), so log mean_c w_c is a stochastic lower bound of log P(x)
(E[log P^] <= log P(x) by Jensen's inequality).

Reverse AIS: z_T ~ P(z|x) exactly (data simulated from the model, whose generating z is known); for t = T..1:
log w_rev += (beta_{t-1} - beta_t) log P(x|z_t), then z_{t-1} = one HMC transition leaving f_{t-1} invariant.
E[w_rev] = 1 / P(x), so -log mean_c w_rev,c is a stochastic upper bound of log P(x).

Start at the encoder (start = "encoder", for a model with an encoder q(z|x)): the path runs from the normalised
q(z|x) instead of the prior, f_t(z) = log q(z|x) + beta_t [log p(z) + log P(x|z) - log q(z|x)], z_0 ~ q(z|x), and
the weight increments are (beta_t - beta_{t-1}) [log p + log P - log q](z_{t-1}). The same estimator (E[w] = P(x),
E[w_rev] = 1/P(x) in reverse), from a start much nearer the posterior: one step (T = 1) is importance sampling with
q as proposal, and the transitions then move the chains towards P(z|x). `ais_estimate` and `bdmc` take it as
`proposal(x) -> (sample(k, generator) -> z (k, B, D), log_density(z) -> log q(z|x))`, e.g. VAE.posterior_proposal.

The transition after the last weight update (at beta_T forward, at beta_0 in reverse) cannot change the weights
and is skipped: T steps make T - 1 HMC transitions (steps = 1 is plain importance sampling from the prior).

HMC: momentum p ~ N(0, I) resampled each transition, `leapfrog` leapfrog steps of size eps on the energy
-f_t(z) + |p|^2 / 2, one Metropolis accept/reject per chain; a proposal with a non-finite energy, position or
gradient is rejected. The step size is per chain and row and adapts as in Wu et al.: after each transition it is
multiplied by 1.02 when the chain's running acceptance rate exceeds `target_accept`, else by 0.98, and clipped
to [1e-4, 0.5]. Each transition uses that step size times a uniform draw on [0.5, 1] (independent of the
state, so the transition stays reversible): without this jitter a fixed-length trajectory can come back near its
start on a near-Gaussian posterior, and the log-weights' variance stays several times that of exact transitions
(on a 2-D linear-Gaussian test, 0.18 instead of 0.03 at 1000 steps).

Gradients are taken with respect to z only (torch.autograd.grad, never .backward(), so no parameter's .grad is
touched); everything else runs under torch.no_grad(), in the dtype of z, with the log-weights accumulated in
float64.

This is a kernel: it takes the model's callables (log_prior(z), log_likelihood(x, z), sample_prior(n, generator),
sample_data(z, generator)), not a model."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from genlearn.errors import ConfigError, NumericalError
from genlearn.estimators.estimate import Estimate

#: steepness of the sigmoid annealing schedule (Wu et al. 2017)
SCHEDULE_DELTA = 4.0
#: step-size adaptation factors and clip range (Wu et al. 2017)
GROW, SHRINK = 1.02, 0.98
STEP_MIN, STEP_MAX = 1e-4, 0.5
#: each transition's leapfrog step is the chain's step size times a uniform draw on [1 - STEP_JITTER, 1]
STEP_JITTER = 0.5
#: default bound on chains x rows per AIS batch of ais_estimate and bdmc
BATCH = 4096
#: grid points x rows per chunk of quadrature_log_marginal (per-row log_likelihood calls; with decoder logits,
#: grid points x max(rows, pixels): one (chunk, B) matrix product per chunk, 4 MB in float64; measured best of
#: 2^16 to 2^22 for 269 x 64 and 2,000 x 784 rows)
QUADRATURE_CHUNK = 1 << 16
QUADRATURE_DECODER_CHUNK = 1 << 19


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def sigmoid_schedule(steps: int, delta: float = SCHEDULE_DELTA) -> list[float]:
    """T + 1 inverse temperatures 0 = beta_0 < ... < beta_T = 1: s(t) = sigmoid(delta (2t/T - 1)) rescaled so
    that beta_0 = 0 and beta_T = 1 (Wu et al. 2017)."""
    steps = _positive_int(steps, "the number of AIS steps")
    t = torch.arange(steps + 1, dtype=torch.float64)
    s = torch.sigmoid(delta * (2 * t / steps - 1))
    beta = (s - s[0]) / (s[-1] - s[0])
    beta[0], beta[-1] = 0.0, 1.0
    return beta.tolist()


def _grad(out: Tensor, z: Tensor, retain: bool) -> Tensor:
    """d out.sum() / dz (zeros where out does not depend on z)."""
    if not out.requires_grad:
        return torch.zeros_like(z)
    g = torch.autograd.grad(out.sum(), z, retain_graph=retain, allow_unused=True)[0]
    return torch.zeros_like(z) if g is None else g


class _State:
    """A batch of chains: z (C, B, D), log p(z) and log P(x|z) (C, B) and their gradients in z (C, B, D)."""

    __slots__ = ("z", "lp", "ll", "g_lp", "g_ll")

    def __init__(self, z, lp, ll, g_lp, g_ll):
        self.z, self.lp, self.ll, self.g_lp, self.g_ll = z, lp, ll, g_lp, g_ll

    def select(self, keep: Tensor, other: "_State") -> "_State":
        """This state where `keep` (C, B), else `other`."""
        k3 = keep.unsqueeze(-1)
        return _State(torch.where(k3, self.z, other.z), torch.where(keep, self.lp, other.lp),
                      torch.where(keep, self.ll, other.ll), torch.where(k3, self.g_lp, other.g_lp),
                      torch.where(k3, self.g_ll, other.g_ll))


def _evaluate(log_prior: Callable, log_likelihood: Callable, x: Tensor, z: Tensor,
              log_proposal: Callable | None = None) -> _State:
    """The path's two terms at z and their gradients in z only (autograd.grad: no parameter's .grad is written):
    (log p(z), log P(x|z)) from the prior; (log q(z|x), log p(z) + log P(x|z) - log q(z|x)) with log_proposal(z)
    = log q(z|x) (the encoder start)."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        lp, ll = log_prior(z), log_likelihood(x, z)
        if lp.shape != z.shape[:-1] or ll.shape != z.shape[:-1]:
            raise ConfigError(f"log_prior and log_likelihood must map z of shape {tuple(z.shape)} to shape "
                              f"{tuple(z.shape[:-1])}; got {tuple(lp.shape)} and {tuple(ll.shape)}")
        if log_proposal is not None:
            lq = log_proposal(z)
            if lq.shape != z.shape[:-1]:
                raise ConfigError(f"log_proposal must map z of shape {tuple(z.shape)} to shape "
                                  f"{tuple(z.shape[:-1])}; got {tuple(lq.shape)}")
            lp, ll = lq, lp + ll - lq
        g_lp = _grad(lp, z, retain=True)
        g_ll = _grad(ll, z, retain=False)
    return _State(z.detach(), lp.detach().to(z.dtype), ll.detach().to(z.dtype), g_lp.detach(), g_ll.detach())


def _draw(kind: str, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal ("randn") or uniform ("rand") draws of like's shape, dtype and device, from `generator`
    (on its own device when that differs from like's)."""
    fn = torch.randn if kind == "randn" else torch.rand
    if generator is None or generator.device == like.device:
        return fn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    return fn(like.shape, generator=generator, dtype=like.dtype, device=generator.device).to(like.device)


def _hmc(log_prior: Callable, log_likelihood: Callable, x: Tensor, state: _State, beta: float, eps: Tensor,
         leapfrog: int, generator, log_proposal: Callable | None = None) -> tuple[_State, Tensor]:
    """One HMC transition leaving exp(f_beta) invariant (f_beta = base + beta increment: log p(z) + beta log P(x|z)
    from the prior, `_evaluate`), per chain: (new state, accepted (C, B) bool). eps: step sizes (C, B), jittered by a
    factor uniform on [1 - STEP_JITTER, 1]."""
    e = (eps * (1 - STEP_JITTER * _draw("rand", eps, generator))).unsqueeze(-1)
    p0 = _draw("randn", state.z, generator)
    p = p0 + 0.5 * e * (state.g_lp + beta * state.g_ll)
    z = state.z
    new = state
    for i in range(leapfrog):
        z = z + e * p
        new = _evaluate(log_prior, log_likelihood, x, z, log_proposal)
        grad = new.g_lp + beta * new.g_ll
        p = p + (0.5 if i == leapfrog - 1 else 1.0) * e * grad
    h0 = -(state.lp + beta * state.ll) + 0.5 * p0.pow(2).sum(-1)
    h1 = -(new.lp + beta * new.ll) + 0.5 * p.pow(2).sum(-1)
    finite = torch.isfinite(h1) & torch.isfinite(new.z).all(-1) & torch.isfinite(new.g_lp + new.g_ll).all(-1)
    log_u = torch.log(_draw("rand", h1, generator))
    accept = finite & (log_u < torch.nan_to_num(h0 - h1, nan=-math.inf))
    return new.select(accept, state), accept


@torch.no_grad()
def ais_log_weights(log_prior: Callable, log_likelihood: Callable, x: Tensor, z0: Tensor, steps: int,
                    leapfrog: int = 10, step_size: float = 0.05, target_accept: float = 0.65, reverse: bool = False,
                    generator: torch.Generator | None = None, progress: bool = False,
                    log_proposal: Callable | None = None) -> dict:
    """Per-chain AIS log-weights over z for the rows x (B, n), from the start states z0 (C, B, D): C chains per row.
    With log_proposal(z) = log q(z|x) for these rows, the path starts at q instead of the prior (module docstring):
    z0 ~ q(z|x) forward; in reverse the path ends at q.

    Forward (reverse=False): z0 ~ p(z); log w = sum_t (beta_t - beta_{t-1}) log P(x|z_{t-1}) with HMC transitions
    in between; E[w] = P(x), and log mean_c w_c is a stochastic lower bound of log P(x).
    Reverse (reverse=True): z0 ~ P(z|x) exactly; the path runs from beta = 1 to 0 and
    log w_rev = sum_t (beta_{t-1} - beta_t) log P(x|z_t) estimates log 1/P(x): E[w_rev] = 1/P(x), so
    log P(x) <= -log mean_c w_rev,c in expectation (a stochastic upper bound). In both directions
    `log_marginal_from_weights(out["log_weights"], reverse)` gives the per-row estimate of log P(x).

    Returns {"log_weights": (C, B) float64, "direction": "forward" | "reverse", "accept_rate": mean Metropolis
    acceptance over chains, rows and transitions (None when steps = 1: no transition), "step_size": mean final
    step size, "steps": T, "transitions": T - 1, "leapfrog"}.
    Raises NumericalError when a log-weight ends NaN or +inf, or every chain of a row ends at -inf."""
    steps = _positive_int(steps, "the number of AIS steps")
    leapfrog = _positive_int(leapfrog, "the number of leapfrog steps")
    if not (isinstance(step_size, (int, float)) and step_size > 0):
        raise ConfigError(f"the HMC step size must be a positive number, got {step_size!r}")
    if not 0 < target_accept < 1:
        raise ConfigError(f"the target acceptance rate must lie in (0, 1), got {target_accept!r}")
    if z0.dim() != 3 or x.dim() != 2 or z0.shape[1] != x.shape[0]:
        raise ConfigError(f"AIS needs z0 of shape (chains, rows, D) and x of shape (rows, n) with the same rows; "
                          f"got z0 {tuple(z0.shape)} and x {tuple(x.shape)}")
    if not z0.is_floating_point():
        raise ConfigError(f"the start states z0 must be floating point, got {z0.dtype}")
    beta = sigmoid_schedule(steps)
    state = _evaluate(log_prior, log_likelihood, x, z0, log_proposal)
    log_w = torch.zeros(z0.shape[:2], dtype=torch.float64, device=z0.device)
    eps = torch.full(z0.shape[:2], float(step_size), dtype=z0.dtype, device=z0.device).clamp_(STEP_MIN, STEP_MAX)
    accepted = torch.zeros(z0.shape[:2], dtype=torch.float64, device=z0.device)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="reverse AIS" if reverse else "AIS", unit="step", leave=False,
                   mininterval=0.5, disable=None)  # None: no bar when stderr is not a terminal
    for k in range(1, steps + 1):
        # forward: weight update from beta_{k-1} to beta_k, then a transition at beta_k (but not at beta_T);
        # reverse: weight update from beta_{T-k+1} to beta_{T-k}, then a transition there (but not at beta_0)
        hi, lo = (steps - k + 1, steps - k) if reverse else (k, k - 1)
        log_w += (beta[lo] - beta[hi] if reverse else beta[hi] - beta[lo]) * state.ll.double()
        if k < steps:
            state, acc = _hmc(log_prior, log_likelihood, x, state, beta[lo] if reverse else beta[hi], eps,
                              leapfrog, generator, log_proposal)
            accepted += acc
            rate = accepted / k
            eps = torch.where(rate > target_accept, eps * GROW, eps * SHRINK).clamp_(STEP_MIN, STEP_MAX)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    bad = torch.isnan(log_w) | (log_w == math.inf)
    dead = (log_w == -math.inf).all(0)
    if bad.any() or dead.any():
        raise NumericalError(f"{'reverse ' if reverse else ''}AIS log-weights are not finite ({int(bad.sum())} "
                             f"NaN/+inf chains, {int(dead.sum())} rows with every chain at -inf): log P(x|z) or "
                             f"log p(z) is not finite at the chains' states; check the model's parameters")
    transitions = steps - 1
    return {"log_weights": log_w, "direction": "reverse" if reverse else "forward",
            "accept_rate": float(accepted.mean()) / transitions if transitions else None,
            "step_size": float(eps.double().mean()), "steps": steps, "transitions": transitions,
            "leapfrog": leapfrog, "start": "prior" if log_proposal is None else "encoder"}


def log_marginal_from_weights(log_weights: Tensor, reverse: bool = False) -> Tensor:
    """Per-row estimate of log P(x), (B,) float64, from AIS log-weights (C, B): log mean_c w_c (forward: a
    stochastic lower bound) or -log mean_c w_rev,c (reverse: a stochastic upper bound)."""
    lw = log_weights.double()
    out = torch.logsumexp(lw, 0) - math.log(lw.shape[0])
    return -out if reverse else out


def _batch_rows(chains: int, batch_rows: int | None) -> int:
    if batch_rows is None:
        return max(1, BATCH // chains)
    return _positive_int(batch_rows, "batch_rows")


def _prior_chains(sample_prior: Callable, chains: int, rows: int, generator) -> Tensor:
    """z0 (chains, rows, D) from sample_prior(chains * rows, generator)."""
    z = sample_prior(chains * rows, generator)
    if z.dim() != 2 or z.shape[0] != chains * rows:
        raise ConfigError(f"sample_prior(n) must return z of shape (n, D); got {tuple(z.shape)} for n = "
                          f"{chains * rows}")
    return z.reshape(chains, rows, z.shape[-1])


def _start(proposal: Callable | None, sample_prior: Callable, chains: int, x: Tensor, generator):
    """(z0 (chains, B, D), log_proposal or None) for the rows x: from the prior, or from q(z|x) = proposal(x)."""
    if proposal is None:
        return _prior_chains(sample_prior, chains, x.shape[0], generator), None
    sample, log_density = proposal(x)
    z0 = sample(chains, generator)
    if z0.dim() != 3 or z0.shape[:2] != (chains, x.shape[0]):
        raise ConfigError(f"proposal(x)'s sample(k) must return z of shape (k, rows, D); got {tuple(z0.shape)} for "
                          f"k = {chains} and {x.shape[0]} rows")
    return z0, log_density


@torch.no_grad()
def ais_estimate(log_prior: Callable, log_likelihood: Callable, sample_prior: Callable, x: Tensor, steps: int,
                 chains: int = 16, leapfrog: int = 10, seed: int = 0, progress: bool = False,
                 batch_rows: int | None = None, proposal: Callable | None = None) -> tuple[Estimate, Tensor]:
    """Forward AIS estimate of the mean negative log-likelihood -(1/B) sum_m log P(x_m) (nats per example) of the
    rows x (B, n), with `chains` chains per row from the prior (or, with `proposal`, from the encoder's q(z|x):
    module docstring), `steps` annealing steps and `leapfrog` leapfrog steps per HMC transition, seeded by `seed`.
    Rows go in batches of `batch_rows` (default: chains x rows <= 4096).

    Returns (Estimate, per-row log P^(x_m) as a (B,) float64 tensor). The Estimate has method "ais", value the
    mean NLL, stderr = std over rows / sqrt(B) (the spread of the per-row values, not the AIS noise), no bracket
    (forward AIS under-estimates log P(x) in expectation, so the value is a stochastic upper bound of the NLL; a
    two-sided check comes from `bdmc`)."""
    chains = _positive_int(chains, "the number of AIS chains")
    if x.dim() != 2 or x.shape[0] < 1:
        raise ConfigError(f"ais_estimate needs rows x of shape (B, n) with B >= 1, got {tuple(x.shape)}")
    per_batch = _batch_rows(chains, batch_rows)
    generator = torch.Generator().manual_seed(int(seed))
    B = x.shape[0]
    log_p = torch.empty(B, dtype=torch.float64)
    acc_sum, acc_rows, eps_sum = 0.0, 0, 0.0
    for start in range(0, B, per_batch):
        xb = x[start:start + per_batch]
        z0, log_proposal = _start(proposal, sample_prior, chains, xb, generator)
        out = ais_log_weights(log_prior, log_likelihood, xb, z0, steps, leapfrog=leapfrog, generator=generator,
                              progress=progress, log_proposal=log_proposal)
        log_p[start:start + xb.shape[0]] = log_marginal_from_weights(out["log_weights"]).cpu()
        if out["accept_rate"] is not None:
            acc_sum += out["accept_rate"] * xb.shape[0]
            acc_rows += xb.shape[0]
        eps_sum += out["step_size"] * xb.shape[0]
    value = -float(log_p.mean())
    stderr = float(log_p.std()) / math.sqrt(B) if B > 1 else 0.0
    details = {"steps": steps, "chains": chains, "leapfrog": leapfrog, "schedule": "sigmoid", "seed": seed,
               "start": "prior" if proposal is None else "encoder",
               "accept_rate": acc_sum / acc_rows if acc_rows else None, "step_size": eps_sum / B, "rows": B,
               "batch_rows": per_batch,
               "stderr": "spread of the per-row log P(x) over rows / sqrt(rows), not the AIS noise",
               "bound": "stochastic upper bound of the NLL (forward AIS under-estimates log P(x) in expectation)"}
    return Estimate(value, "ais", stderr, details=details), log_p


@torch.no_grad()
def bdmc(log_prior: Callable, log_likelihood: Callable, sample_prior: Callable, sample_data: Callable, rows: int,
         steps: int, chains: int = 16, leapfrog: int = 10, seed: int = 0, progress: bool = False,
         proposal: Callable | None = None) -> dict:
    """Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015; Wu et al. 2017) on data simulated from the model.

    With a generator seeded by `seed`: z = sample_prior(rows, g), x = sample_data(z, g) (in that order); then
    forward AIS (chains from the prior, or from q(z|x) with `proposal`, as in `ais_estimate`) gives a stochastic
    lower bound of the mean log P(x), and reverse AIS with every chain started at the z that generated its row (an
    exact posterior draw), along the same path back to its start, a stochastic upper bound.

    Returns {"forward_log_p": mean lower bound, "reverse_log_p": mean upper bound, "gap": reverse - forward
    (nats per example, >= 0 up to noise), "rows", "steps", "chains", "leapfrog", "accept_rate_forward",
    "accept_rate_reverse"}. The gap bounds the error of forward AIS at these settings on data like the model's
    own."""
    rows = _positive_int(rows, "the number of BDMC rows")
    chains = _positive_int(chains, "the number of AIS chains")
    generator = torch.Generator().manual_seed(int(seed))
    z = sample_prior(rows, generator)
    x = sample_data(z, generator)
    if x.dim() != 2 or x.shape[0] != rows:
        raise ConfigError(f"sample_data(z) must return x of shape (rows, n); got {tuple(x.shape)} for {rows} rows")
    per_batch = _batch_rows(chains, None)
    totals = {"forward": 0.0, "reverse": 0.0}
    acc = {"forward": [0.0, 0], "reverse": [0.0, 0]}
    for start in range(0, rows, per_batch):
        xb, zb = x[start:start + per_batch], z[start:start + per_batch]
        n = xb.shape[0]
        z_forward, log_proposal = _start(proposal, sample_prior, chains, xb, generator)
        starts = {"forward": z_forward, "reverse": zb.unsqueeze(0).expand(chains, *zb.shape).clone()}
        for direction, z0 in starts.items():
            reverse = direction == "reverse"
            out = ais_log_weights(log_prior, log_likelihood, xb, z0, steps, leapfrog=leapfrog, reverse=reverse,
                                  generator=generator, progress=progress, log_proposal=log_proposal)
            totals[direction] += float(log_marginal_from_weights(out["log_weights"], reverse).sum())
            if out["accept_rate"] is not None:
                acc[direction][0] += out["accept_rate"] * n
                acc[direction][1] += n
    forward, reverse_ = totals["forward"] / rows, totals["reverse"] / rows
    return {"forward_log_p": forward, "reverse_log_p": reverse_, "gap": reverse_ - forward, "rows": rows,
            "steps": steps, "chains": chains, "leapfrog": leapfrog, "start": "prior" if proposal is None else "encoder",
            "accept_rate_forward": acc["forward"][0] / acc["forward"][1] if acc["forward"][1] else None,
            "accept_rate_reverse": acc["reverse"][0] / acc["reverse"][1] if acc["reverse"][1] else None}


@torch.no_grad()
def quadrature_log_marginal(log_prior: Callable, log_likelihood: Callable, x: Tensor, dim: int, points: int = 201,
                            limit: float | None = None, dtype: torch.dtype | None = None,
                            decoder_logits: Callable | None = None) -> Tensor:
    """log P(x) = log integral p(z) P(x|z) dz per row of x (B, n), (B,) float64, by the trapezoid rule on the
    tensor-product grid of `points` points per axis on [-limit, limit]^dim (dim = 1 or 2; limit defaults to 8,
    for a standard-normal-like prior): log-sum-exp over grid points of log p(z_g) + log P(x|z_g) + log(trapezoid
    weight x cell volume), in chunks of grid points whose sums are added into one (B,) accumulator (logaddexp), so
    the memory is that of one chunk whatever the grid (the partial sums of the 20,101 chunks of 8 points of a
    401^2 grid by the 65,536 states of {0,1}^16, kept until the end before, were 10.5 GB).

    The grid is built in `dtype` (default: x's dtype when x is floating point, else torch's default dtype): the
    callables are evaluated in the model's dtype (float64 only for a float64 model) and the sum accumulates in
    float64. Exact up to the truncation to the box and the grid spacing: an oracle for tiny models.

    `decoder_logits(z) -> (..., n)`, for a decoder of independent Bernoulli pixels P(x_i = 1|z) = sigmoid(l_i(z)),
    replaces log_likelihood by log P(x|z_g) = x . l(z_g) - sum_i softplus(l_i(z_g)): the decoder runs once per grid
    point instead of once per (point, row), and the B rows meet the grid in one matrix product (G x n x B)."""
    if isinstance(dim, bool) or dim not in (1, 2):
        raise ConfigError(f"quadrature_log_marginal integrates over 1 or 2 latent dimensions, got dim={dim!r}; "
                          f"use AIS (ais_estimate) for more")
    points = _positive_int(points, "the number of quadrature points")
    if points < 2:
        raise ConfigError(f"quadrature needs at least 2 points per axis, got {points}")
    limit = 8.0 if limit is None else float(limit)
    if not (math.isfinite(limit) and limit > 0):
        raise ConfigError(f"the quadrature limit must be a positive finite number, got {limit!r}")
    if x.dim() != 2:
        raise ConfigError(f"quadrature_log_marginal needs rows x of shape (B, n), got {tuple(x.shape)}")
    if dtype is None:
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    B = x.shape[0]
    axis = torch.linspace(-limit, limit, points, dtype=torch.float64)
    h = 2 * limit / (points - 1)
    log_w1 = torch.full((points,), math.log(h), dtype=torch.float64)
    log_w1[0] = log_w1[-1] = math.log(h / 2)
    if dim == 1:
        grid, log_wg = axis[:, None], log_w1
    else:
        a, b = torch.meshgrid(axis, axis, indexing="ij")
        grid = torch.stack([a.reshape(-1), b.reshape(-1)], -1)
        log_wg = (log_w1[:, None] + log_w1[None, :]).reshape(-1)
    grid = grid.to(dtype=dtype, device=x.device)
    if decoder_logits is None:
        chunk = max(1, QUADRATURE_CHUNK // max(B, 1))
    else:
        chunk = max(1, QUADRATURE_DECODER_CHUNK // max(B, x.shape[1], 1))
    rows = x.to(dtype) if decoder_logits is not None else x
    total = torch.full((B,), -math.inf, dtype=torch.float64)  # log sum over the grid so far: O(B) memory
    for start in range(0, grid.shape[0], chunk):
        zg = grid[start:start + chunk]
        lp = log_prior(zg).double().cpu()
        if decoder_logits is None:
            ll = log_likelihood(x, zg[:, None, :].expand(-1, B, -1)).double().cpu()
        else:
            logits = decoder_logits(zg).to(dtype)  # (C, n)
            ll = (logits @ rows.T - F.softplus(logits).sum(-1, keepdim=True)).double().cpu()  # (C, B)
        total = torch.logaddexp(total, torch.logsumexp(lp[:, None] + ll + log_wg[start:start + chunk, None], 0))
    return total
