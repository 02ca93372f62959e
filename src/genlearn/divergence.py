"""Kullback-Leibler divergence D_KL(P||Q) = sum_x P(x) log(P(x)/Q(x)) in nats (0 log 0 = 0; +inf where
P(x) > 0 and Q(x) = 0), and the empirical KL that learning minimises.

`kl_divergence(p, q)` is the one entry point and always returns an `Estimate` (value, stderr, lower, upper,
method, details); exact methods have stderr 0 and lower = upper = value:

- "closed-form": registered by (type P, type Q) with `register_kl`, looked up along the class hierarchy;
- "enumerate": exact enumeration over {0,1}^n (n <= 24) or over the K outcomes, float64 ("exact enumeration");
  a latent-variable model without an encoder and a latent space of D <= 2 enters with log P(x) by quadrature over
  z (genlearn.likelihood.quadrature);
- "exact": closed form if registered, else enumeration (IntractableError when neither applies);
- "quad": adaptive quadrature for 1-D continuous models;
- "mc": Monte Carlo (1/S) sum_s [log p(x_s) - log q(x_s)], x_s ~ p, with its standard error. An energy model
  (P = exp(-F)/Z) enters through its free energy and a log Z from the likelihood policy
  (`genlearn.likelihood.log_partition(model, partition)`), whose bracket widens the KL's;
- "auto": closed form, else enumeration for discrete models, else quadrature in 1-D, else Monte Carlo for
  continuous models (a discrete model beyond enumeration raises IntractableError: ask for method="mc").

Two probability tables (lists or tensors) are compared exactly. The low-level helpers `kl_tables` and
`kl_enumerate` return plain floats."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from genlearn.enumeration import MAX_ENUMERABLE, iter_states, require_enumerable
from genlearn.errors import ConfigError, IntractableError
from genlearn.estimators.estimate import Estimate
from genlearn.likelihood import QUADRATURE_MAX_DIM, _is_float64, float64_copy, log_partition, mean_nll, quadrature
from genlearn.models.base import EnergyModel, GenerativeModel, LatentVariableModel
from genlearn.models.categorical import Categorical
from genlearn.models.gaussian import Gaussian
from genlearn.models.product import ProductBernoulli
from genlearn.validate import check_binary, check_categorical, check_real

#: what `kl_divergence(method=...)` accepts
KL_METHODS = ("auto", "exact", "closed-form", "enumerate", "quad", "mc")

_KL_REGISTRY: dict[tuple[type, type], Callable] = {}


def register_kl(type_p: type, type_q: type):
    """Decorator: register fn(p, q) -> float (nats) as the closed form of D_KL(p||q) for these types;
    `kl_divergence` returns it as an exact Estimate with method "closed-form"."""

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


def _table(values, name: str) -> Tensor:
    """A probability table (list, tuple, numpy array or tensor of numbers) as a flat float64 tensor."""
    try:
        return torch.as_tensor(np.asarray(values, dtype=np.float64)).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a table of numbers (probabilities), got {values!r}"[:300]) from None


def kl_tables(p, q) -> float:
    """Exact KL between two probability tables of the same length (each must sum to 1)."""
    p, q = _table(p, "p"), _table(q, "q")
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


def _same_space(p, q) -> None:
    """D_KL(p||q) needs p and q on one sample space: the same support (binary, categorical, real), the same number
    of variables and, for categorical models, the same outcomes; ConfigError naming the difference otherwise."""
    if p.support != q.support:
        raise ConfigError(f"cannot compare a {p.support} model with a {q.support} model: D_KL(P||Q) needs both "
                          "on the same sample space")
    _same_dim(p, q)
    if p.support == "categorical" and p.n_categories != q.n_categories:
        raise ConfigError(f"the two models have {p.n_categories} and {q.n_categories} outcomes; they must match")


@torch.no_grad()
def kl_enumerate(p, q, chunk_size: int = 1 << 16) -> float:
    """Exact KL by enumerating every state of {0,1}^n (n <= 24) or the K outcomes, float64."""
    _same_space(p, q)
    if p.support == "categorical":
        states = torch.arange(p.n_categories)
        return float(_kl_terms(p.log_prob(states).double(), q.log_prob(states).double()).sum())
    if p.support != "binary":
        raise ConfigError("exact enumeration needs discrete models; use method='mc' or 'quad' for real data")
    _same_dim(p, q)
    require_enumerable(p.n_features, MAX_ENUMERABLE, "the exact KL",
                       "kl_divergence(p, q, method='mc') (Monte Carlo with a standard error)")
    p, q = float64_copy(p), float64_copy(q)
    dtype = torch.float64 if _is_float64(p) and _is_float64(q) else torch.float32
    total = 0.0
    for states in iter_states(p.n_features, chunk_size, dtype=dtype, what="exact KL"):
        total += float(_kl_terms(_state_log_prob(p, states), _state_log_prob(q, states)).sum())
    return total


def _state_log_prob(model, states: Tensor) -> Tensor:
    """log P(x) of enumerated states, float64: the model's log_prob, or for a latent-variable model of latent_dim
    <= 2 (a GAN's generator, a small VAE) the quadrature over z of genlearn.likelihood.quadrature (exact up to the
    grid); any other latent-variable model raises IntractableError (its log_prob)."""
    if _by_quadrature(model):
        return quadrature(model, states)
    return model.log_prob(states).double()


def _by_quadrature(model) -> bool:
    """A latent-variable model whose log P(x) the quadrature over z gives exactly (up to the grid): at most
    QUADRATURE_MAX_DIM latent dimensions, with or without an encoder."""
    return isinstance(model, LatentVariableModel) and model.latent_dim <= QUADRATURE_MAX_DIM


def _check_log_prob_known(p, q) -> None:
    """One IntractableError when p or q is a latent-variable model too large for quadrature: its log P(x) is only
    an estimate (importance sampling, AIS), so neither the exact nor the Monte Carlo KL applies."""
    for model in (p, q):
        if isinstance(model, LatentVariableModel) and not _by_quadrature(model):
            raise IntractableError(
                f"the KL needs log P(x) of the {model.name} model, whose {model.latent_dim} latent dimensions are "
                f"more than the quadrature over z takes (at most {QUADRATURE_MAX_DIM}): its log P(x) is only an "
                "estimate (importance sampling or AIS), and genlearn has no KL with an honest error for it; compare "
                "such models by their test NLL (`genlearn eval RUN`)")


@torch.no_grad()
def kl_quadrature(p, q, lower: float = -math.inf, upper: float = math.inf) -> Estimate:
    """KL between two 1-D continuous models by adaptive quadrature (scipy.integrate.quad)."""
    from scipy.integrate import quad

    _same_space(p, q)
    if p.n_features != 1 or q.n_features != 1:
        raise ConfigError("numerical integration of the KL is for 1-D models; use method='mc'")

    def integrand(x: float) -> float:
        t = torch.tensor([[x]], dtype=torch.float32)
        lp, lq = float(p.log_prob(t)), float(q.log_prob(t))
        return 0.0 if lp == -math.inf else math.exp(lp) * (lp - lq)

    value, abserr = quad(integrand, lower, upper, limit=200)
    return Estimate(value, "quadrature", abserr, value - abserr, value + abserr)


def _unnormalised_log_prob(model, x: Tensor) -> Tensor:
    """log P(x) + log Z per row, float64: -F(x) for an energy model, log P(x) for a normalised one."""
    if isinstance(model, EnergyModel):
        return -model.free_energy(x).double()
    return model.log_prob(x).double()


@torch.no_grad()
def kl_monte_carlo(p, q, n_samples: int = 100_000, seed: int = 0, partition: str = "auto",
                   **partition_options) -> Estimate:
    """D_KL(p||q) ~ (1/S) sum_s [log p(x_s) - log q(x_s)], x_s ~ p (S = n_samples, `seed`), in nats.

    For an energy model log P(x) = -F(x) - log Z: the mean is taken over -F, and log Z comes from the likelihood
    policy (`partition`: auto | exact | ais, `partition_options` for AIS), so that
    KL = mean_s[u_p(x_s) - u_q(x_s)] - log Z_p + log Z_q with u = -F (energy) or log P (normalised).
    stderr = sqrt(se_MC^2 + stderr(log Z_p)^2 + stderr(log Z_q)^2); the bracket is the Monte Carlo mean +- 3 se_MC
    widened by the log Z brackets. Method "monte-carlo" when both log Z are exact, else "monte-carlo + <method>"."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ConfigError(f"Monte Carlo KL needs an integer number of samples >= 2, got {n_samples!r}")
    _same_space(p, q)
    zp = log_partition(p, partition, **partition_options)  # first: an intractable log Z fails before sampling
    zq = log_partition(q, partition, **partition_options)
    g = torch.Generator().manual_seed(seed)
    x = p.sample(n_samples, g)
    r = _unnormalised_log_prob(p, x) - _unnormalised_log_prob(q, x)
    mean, se = float(r.mean()), float(r.std() / math.sqrt(n_samples))
    value = mean - zp.value + zq.value
    z_se = [z.stderr for z in (zp, zq) if math.isfinite(z.stderr)]
    stderr = math.sqrt(se**2 + sum(v**2 for v in z_se))
    lower = mean - 3 * se - zp.upper + zq.lower
    upper = mean + 3 * se - zp.lower + zq.upper
    approx = sorted({z.method for z in (zp, zq) if not z.is_exact})
    method = "monte-carlo" + "".join(f" + {m}" for m in approx)
    details = {"n_samples": n_samples, "seed": seed, "monte_carlo_mean": mean, "monte_carlo_stderr": se}
    for name, z in (("p", zp), ("q", zq)):
        if isinstance(z.details, dict) and z.method != "normalised":
            details[f"log_z_{name}"] = z.to_dict()
    return Estimate(value, method, stderr, max(lower, 0.0), upper, details)  # and D_KL >= 0 always


def _closed_form(p, q) -> Estimate | None:
    fn = _lookup(p, q)
    if fn is None:
        return None
    with torch.no_grad():
        value = fn(p, q)
    return value if isinstance(value, Estimate) else Estimate.exact(value, "closed-form")


def _enumerable(p) -> bool:
    return p.support == "categorical" or (p.support == "binary" and p.n_features <= MAX_ENUMERABLE)


def kl_divergence(p, q, method: str = "auto", partition: str = "auto", **kwargs) -> Estimate:
    """D_KL(p||q) in nats, always as an Estimate (see the module docstring for the methods).

    method: auto | exact | closed-form | enumerate | quad | mc. `partition` (auto | exact | ais) is how the
    Monte Carlo method obtains the log Z of energy models; `kwargs` go to the chosen method (chunk_size for
    enumeration; lower/upper for quadrature; n_samples, seed and AIS options for Monte Carlo). Two probability
    tables (lists or tensors) give the exact "tables" KL."""
    if method not in KL_METHODS:
        raise ConfigError(f"unknown KL method {method!r}; use {', '.join(KL_METHODS)}")
    p, q = (d.model if not isinstance(d, GenerativeModel) and isinstance(getattr(d, "model", None), GenerativeModel)
            else d for d in (p, q))  # a fitted run (genlearn.load_run) stands for its model
    tables = [isinstance(d, (list, tuple, Tensor, np.ndarray)) for d in (p, q)]
    for d, is_table in zip((p, q), tables):
        if not is_table and not hasattr(d, "log_prob"):
            raise ConfigError(f"kl_divergence compares two models (with log_prob) or two probability tables (lists or "
                              f"tensors or numpy arrays) or fitted runs, got {type(p).__name__} and "
                              f"{type(q).__name__}")
    if any(tables):
        if not all(tables):
            raise ConfigError(f"kl_divergence compares two models or two probability tables, not one of each (got "
                              f"{type(p).__name__} and {type(q).__name__}); for a model's table enumerate its states")
        if method not in ("auto", "exact"):
            raise ConfigError(f"two probability tables have an exact KL (a finite sum); method {method!r} does not "
                              "apply to tables: use auto or exact")
        if kwargs or partition != "auto":
            given = sorted(kwargs) + (["partition"] if partition != "auto" else [])
            raise ConfigError(f"{', '.join(given)} does not apply to two probability tables (their KL is a finite "
                              "sum): drop it")
        return Estimate.exact(kl_tables(p, q), "exact (probability tables)")
    _same_space(p, q)
    if method in ("auto", "exact", "closed-form"):
        est = _closed_form(p, q)
        if est is not None:
            return est
        if method == "closed-form":
            raise ConfigError(f"no closed form registered for KL({type(p).__name__} || {type(q).__name__})")
    _check_log_prob_known(p, q)
    discrete = p.support in ("binary", "categorical")
    if method == "enumerate" or (method in ("auto", "exact") and discrete):
        if method != "enumerate" and not _enumerable(p):
            raise IntractableError(
                f"the exact KL needs 2^{p.n_features} states (enumeration is limited to n <= {MAX_ENUMERABLE}) and "
                f"no closed form is registered for KL({type(p).__name__} || {type(q).__name__}); for a Monte Carlo "
                "estimate use `genlearn kl --method mc` (Python: kl_divergence(p, q, method='mc'))")
        how = " (log P by quadrature over z)" if _by_quadrature(p) or _by_quadrature(q) else ""
        return Estimate.exact(kl_enumerate(p, q, **kwargs), "exact enumeration" + how)
    if method == "exact":
        raise IntractableError(f"no exact KL for KL({type(p).__name__} || {type(q).__name__}) of {p.support} "
                               "models; use the method quad (1-D) or mc (`genlearn kl --method mc`; Python: "
                               "method='mc')")
    if method == "quad" or (method == "auto" and p.support == "real" and p.n_features == 1):
        return kl_quadrature(p, q, **kwargs)
    return kl_monte_carlo(p, q, partition=partition, **kwargs)


def _check_data(model, x) -> Tensor:
    """x (tensor, numpy array or nested lists) as a tensor of the model's sample space, validated once at this entry
    point (genlearn.validate, through the model's check_input): shape (M, n_features) with 0/1 values for a binary
    model, integer outcomes 0..K-1 of shape (M,) for a categorical one, finite numbers for a real one; one DataError
    naming the problem and where it is otherwise."""
    if hasattr(model, "check_input"):
        return model.check_input(x)
    if model.support == "binary":
        return check_binary(x, model.n_features)
    if model.support == "categorical":
        return check_categorical(x, model.n_categories)
    return check_real(x, model.n_features)


@torch.no_grad()
def empirical_kl(model, x: Tensor, kind: str | None = None, batch_size: int = 10_000) -> dict:
    """D_KL(Q^||P_theta) = NLL(theta) - H(Q^), both terms in nats per example, float64.

    x: the rows (a tensor or a numpy array), checked once against the model's sample space before they are scored
    (`_check_data`: the model's number of features; 0/1 for a binary model, outcomes 0..K-1 for a categorical one,
    finite numbers for a real one): one DataError naming the first bad entry. `kind` (binary | categorical | real),
    if given, must be the model's. Returns {"kl": ..., "nll": ..., "entropy": ...}; for real-valued data H(Q^) and
    kl are None."""
    from genlearn.data.empirical import empirical_entropy

    support = model.support
    if kind is not None and kind != support:
        raise ConfigError(f"kind {kind!r} does not match the model's sample space: the {model.name!r} model is "
                          f"{support}; leave kind out (it follows the model)")
    kind = support
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    x = _check_data(model, x)
    nll = mean_nll(model, x, batch_size)
    h = empirical_entropy(x, kind)
    return {"kl": None if h is None else nll - h, "nll": nll, "entropy": h}


__all__ = ["KL_METHODS", "empirical_kl", "kl_divergence", "kl_enumerate", "kl_monte_carlo", "kl_quadrature",
           "kl_tables", "mean_nll", "register_kl"]
