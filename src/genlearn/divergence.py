"""Kullback-Leibler divergence D_KL(P||Q) = sum_x P(x) log(P(x)/Q(x)) in nats (0 log 0 = 0; +inf where
P(x) > 0 and Q(x) = 0).

- `kl_tables`: between two probability tables;
- `register_kl`: closed forms by (type P, type Q), looked up along the class hierarchy;
- `kl_divergence(p, q)`: closed form when registered, else exact enumeration over {0,1}^n (n <= 24) or over
  the K outcomes, else (continuous) numerical integration in 1-D or Monte Carlo with a standard error;
- `empirical_kl`: the quantity learning minimises, D_KL(Q^||P_theta) = NLL(theta) - H(Q^)."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from genlearn.enumeration import iter_states
from genlearn.errors import ConfigError, DataError
from genlearn.estimators.estimate import Estimate
from genlearn.models.categorical import Categorical
from genlearn.models.gaussian import Gaussian
from genlearn.models.product import ProductBernoulli

_KL_REGISTRY: dict[tuple[type, type], Callable] = {}


def register_kl(type_p: type, type_q: type):
    """Decorator: register fn(p, q) -> float as the closed form of D_KL(p||q) for these types."""

    def wrap(fn):
        _KL_REGISTRY[(type_p, type_q)] = fn
        return fn

    return wrap


def _lookup(p, q) -> Callable | None:
    for tp in type(p).__mro__:
        for tq in type(q).__mro__:
            if (tp, tq) in _KL_REGISTRY:
                return _KL_REGISTRY[(tp, tq)]
    return None


def _kl_terms(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Per-state P log(P/Q), with 0 log 0 = 0 and +inf where P > 0 = Q."""
    p = torch.exp(log_p)
    diff = torch.where(p > 0, log_p - log_q, torch.zeros_like(log_p))
    return torch.where(p > 0, p * diff, torch.zeros_like(p))


def kl_tables(p, q) -> float:
    """Exact KL between two probability tables of the same length (each must sum to 1)."""
    p = torch.as_tensor(p, dtype=torch.float64).reshape(-1)
    q = torch.as_tensor(q, dtype=torch.float64).reshape(-1)
    if p.shape != q.shape:
        raise ConfigError(f"the two distributions have {p.numel()} and {q.numel()} outcomes; they must match")
    for name, t in (("p", p), ("q", q)):
        if not torch.isfinite(t).all() or (t < 0).any():
            raise ConfigError(f"{name} must hold finite non-negative probabilities, got {t.tolist()}")
        if not math.isclose(float(t.sum()), 1.0, abs_tol=1e-6):
            raise ConfigError(f"{name} must sum to 1, got {float(t.sum()):.6g}")
    with torch.no_grad():
        return float(_kl_terms(torch.log(p), torch.log(q)).sum())


@register_kl(ProductBernoulli, ProductBernoulli)
def _kl_product_bernoulli(p: ProductBernoulli, q: ProductBernoulli) -> float:
    """sum_i [p_i log(p_i/q_i) + (1-p_i) log((1-p_i)/(1-q_i))], from the logits for stability."""
    _same_dim(p, q)
    lp, lq = p.logits.double(), q.logits.double()
    pp = torch.sigmoid(lp)
    log_p1, log_p0 = torch.nn.functional.logsigmoid(lp), torch.nn.functional.logsigmoid(-lp)
    log_q1, log_q0 = torch.nn.functional.logsigmoid(lq), torch.nn.functional.logsigmoid(-lq)
    return float((pp * (log_p1 - log_q1) + (1 - pp) * (log_p0 - log_q0)).sum())


@register_kl(Categorical, Categorical)
def _kl_categorical(p: Categorical, q: Categorical) -> float:
    if p.n_categories != q.n_categories:
        raise ConfigError(f"categorical models with {p.n_categories} and {q.n_categories} outcomes")
    return float(_kl_terms(torch.log_softmax(p.logits.double(), -1), torch.log_softmax(q.logits.double(), -1)).sum())


@register_kl(Gaussian, Gaussian)
def _kl_gaussian(p: Gaussian, q: Gaussian) -> float:
    """1/2 [tr(Sq^-1 Sp) + (mq-mp)^T Sq^-1 (mq-mp) - d + log det Sq - log det Sp]."""
    _same_dim(p, q)
    Lp, Lq = p.scale_tril().double(), q.scale_tril().double()
    d = p.n_features
    M = torch.linalg.solve_triangular(Lq, Lp, upper=False)
    diff = torch.linalg.solve_triangular(Lq, (q.mean - p.mean).double().reshape(-1, 1), upper=False)
    logdet = 2 * (torch.log(torch.diagonal(Lq)).sum() - torch.log(torch.diagonal(Lp)).sum())
    return float(0.5 * ((M**2).sum() + (diff**2).sum() - d + logdet))


def _same_dim(p, q) -> None:
    if p.n_features != q.n_features:
        raise ConfigError(f"the two models have {p.n_features} and {q.n_features} dimensions; they must match")


@torch.no_grad()
def kl_enumerate(p, q, chunk_size: int = 1 << 16) -> float:
    """Exact KL by enumerating every state of {0,1}^n (n <= 24) or the K outcomes, float64."""
    if p.support != q.support:
        raise ConfigError(f"cannot compare a {p.support} model with a {q.support} model")
    if p.support == "categorical":
        if p.n_categories != q.n_categories:
            raise ConfigError(f"models with {p.n_categories} and {q.n_categories} outcomes")
        states = torch.arange(p.n_categories)
        return float(_kl_terms(p.log_prob(states).double(), q.log_prob(states).double()).sum())
    if p.support != "binary":
        raise ConfigError("exact enumeration needs discrete models; use method='mc' or 'quad' for real data")
    _same_dim(p, q)
    p, q = float64_copy(p), float64_copy(q)
    dtype = torch.float64 if _is_float64(p) and _is_float64(q) else torch.float32
    total = 0.0
    for states in iter_states(p.n_features, chunk_size, dtype=dtype, what="exact KL"):
        total += float(_kl_terms(p.log_prob(states).double(), q.log_prob(states).double()).sum())
    return total


@torch.no_grad()
def kl_quadrature(p, q, lower: float = -math.inf, upper: float = math.inf) -> Estimate:
    """KL between two 1-D continuous models by adaptive quadrature (scipy.integrate.quad)."""
    from scipy.integrate import quad

    if p.n_features != 1 or q.n_features != 1:
        raise ConfigError("numerical integration of the KL is for 1-D models; use method='mc'")

    def integrand(x: float) -> float:
        t = torch.tensor([[x]], dtype=torch.float32)
        lp, lq = float(p.log_prob(t)), float(q.log_prob(t))
        return 0.0 if lp == -math.inf else math.exp(lp) * (lp - lq)

    value, abserr = quad(integrand, lower, upper, limit=200)
    return Estimate(value, "quadrature", abserr, value - abserr, value + abserr)


@torch.no_grad()
def kl_monte_carlo(p, q, n_samples: int = 100_000, seed: int = 0) -> Estimate:
    """D_KL(p||q) ~ (1/S) sum_s [log p(x_s) - log q(x_s)], x_s ~ p, with its standard error."""
    g = torch.Generator().manual_seed(seed)
    x = p.sample(n_samples, g)
    r = (p.log_prob(x) - q.log_prob(x)).double()
    value, stderr = float(r.mean()), float(r.std() / math.sqrt(n_samples))
    return Estimate(value, "monte-carlo", stderr, value - 3 * stderr, value + 3 * stderr, {"n_samples": n_samples})


def kl_divergence(p, q, method: str = "auto", **kwargs) -> float | Estimate:
    """D_KL(p||q) in nats. method: auto | closed-form | enumerate | quad | mc.

    auto uses a registered closed form, else enumeration for discrete models, else quadrature in 1-D,
    else Monte Carlo. Exact methods return a float; approximate ones an Estimate."""
    if isinstance(p, (list, tuple, Tensor)) or isinstance(q, (list, tuple, Tensor)):
        return kl_tables(p, q)
    if method in ("auto", "closed-form"):
        fn = _lookup(p, q)
        if fn is not None:
            with torch.no_grad():
                return fn(p, q)
        if method == "closed-form":
            raise ConfigError(f"no closed form registered for KL({type(p).__name__} || {type(q).__name__})")
    if method in ("auto", "enumerate") and p.support in ("binary", "categorical"):
        return kl_enumerate(p, q, **kwargs)
    if method in ("auto", "quad") and p.support == "real" and p.n_features == 1:
        return kl_quadrature(p, q, **kwargs)
    if method in ("auto", "mc"):
        return kl_monte_carlo(p, q, **kwargs)
    raise ConfigError(f"unknown or inapplicable KL method {method!r}; use auto, closed-form, enumerate, quad or mc")


@torch.no_grad()
def empirical_kl(model, x: Tensor, kind: str | None = None, batch_size: int = 10_000) -> dict:
    """D_KL(Q^||P_theta) = NLL(theta) - H(Q^), both terms in nats per example, float64.

    Returns {"kl": ..., "nll": ..., "entropy": ...}; for real-valued data H(Q^) and kl are None."""
    from genlearn.data.empirical import empirical_entropy

    kind = kind or ("categorical" if model.support == "categorical" else model.support)
    nll = mean_nll(model, x, batch_size)
    h = empirical_entropy(x, kind)
    return {"kl": None if h is None else nll - h, "nll": nll, "entropy": h}


#: models with at most this many parameters are evaluated in float64 (so that an exact MLE gives KL = 0 to
#: ~1e-12 instead of float32 rounding of ~1e-7); larger ones in their own precision
FLOAT64_EVAL_MAX_PARAMS = 100_000


def _is_float64(model) -> bool:
    return any(p.dtype == torch.float64 for p in model.parameters())


def float64_copy(model):
    """A float64 copy of a small normalised model (<= FLOAT64_EVAL_MAX_PARAMS parameters) for exact sums;
    large models, and energy models (which compute log Z in float64 themselves and cache it), are returned as
    they are."""
    from genlearn.models.base import EnergyModel

    if isinstance(model, EnergyModel) or sum(p.numel() for p in model.parameters()) > FLOAT64_EVAL_MAX_PARAMS:
        return model
    import copy

    return copy.deepcopy(model).double()


@torch.no_grad()
def mean_nll(model, x: Tensor, batch_size: int = 10_000, member: int | None = None, progress: bool = False,
             desc: str = "NLL") -> float:
    """-(1/M) sum_m log P(x_m|theta) in nats per example, accumulated in float64; with `member` = k, the NLL of
    ensemble member k alone (model.member_log_prob: one mask of a MADE, one ordering of a NADE ensemble).
    A whole ensemble of K members goes through in chunks of batch_size / K rows (the same chunks with or without
    `progress`, a tqdm bar over the rows named `desc`)."""
    if x.shape[0] == 0:
        raise DataError("cannot evaluate the likelihood of an empty data set")
    model = float64_copy(model)
    if torch.is_floating_point(x) and _is_float64(model):
        x = x.double()
    if member is None:
        batch_size = max(1, batch_size // int(getattr(model, "ensemble_size", 1)))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=x.shape[0], desc=desc, unit="row", unit_scale=True, leave=False, mininterval=0.5)
    total = 0.0
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        lp = model.log_prob(xb) if member is None else model.member_log_prob(xb, member)
        total += float(lp.double().sum())
        if bar is not None:
            bar.update(xb.shape[0])
    if bar is not None:
        bar.close()
    return -total / x.shape[0]
