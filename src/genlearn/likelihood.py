"""The likelihood policy: how log Z and the log-likelihood of a model are obtained, decided in one place.

A normalised model (every family with an exact `log_prob`) has log Z = 0 and NLL = -(1/M) sum_m log P(x_m)
exactly. An energy model P(x) = exp(-F(x)) / Z (Boltzmann machines, RBMs) has

    NLL = (1/M) sum_m F(x_m) + log Z        (nats per example; bits per dimension = NLL / (n log 2))

and log Z is obtained by one of the computations the model offers:

- "exact": enumeration of the 2^u states of u enumerated units (an RBM enumerates its smaller layer and sums the
  other one in closed form, a fully visible Boltzmann machine enumerates every unit), float64, log-sum-exp;
- "ais": annealed importance sampling, whose forward estimate is a stochastic lower bound of log Z, with reverse
  AIS (from training rows or model samples) for a stochastic upper bound: the Estimate's [lower, upper];
- "mean-field": the naive mean-field (Gibbs variational) lower bound of a Boltzmann machine.

"auto" is decided here, never by the model: exact when the enumeration is affordable, AIS otherwise. The cost of
an exact log Z is measured in *terms*, n 2^u for 2^u enumerated states that each cost about n operations
(`EnergyModel.exact_partition_size()` gives (u, n)):

- `EXACT_UNITS`, `EXACT_TERMS`: an evaluation (`genlearn eval`, the final metrics of a fit, the scikit-learn
  wrappers' `score_samples`, KL estimates) is exact when u <= 25 and n 2^u <= 2^35 (784 x 25 RBM: 2.6e10
  terms, tens of seconds), else AIS;
- `MONITOR_TERMS`: the trainer's per-epoch monitoring is exact when n 2^u <= 2^29 (about a second: a 784 x 16
  RBM is 5.1e7 terms, a 24-unit Boltzmann machine 4.0e8), else forward AIS when asked for
  (`TrainConfig.monitor_ais_steps`), else nothing.

A model whose kernel cannot enumerate u units (it raises IntractableError) falls back to AIS under "auto".
A latent-variable model (VAE: P(x) = integral p(z) P(x|z) dz) has no exact log P(x); "auto" is importance
sampling with the model's encoder q(z|x) as proposal, `IS_SAMPLES` = 5,000 samples per row (the literature's
protocol; `iw_samples` to change it), and "ais" is AIS over z from the prior to the posterior with HMC transitions
(genlearn.estimators.latent_ais) on a subset of rows, whose accuracy BDMC brackets on simulated data. Both
estimate log P(x) from below in expectation, so their NLLs are stochastic upper bounds; the ELBO is reported next
to them. The trainer monitors latent models through the ELBO (and an IS estimate when asked for).

Every result is an `Estimate` (value, stderr, lower, upper, method, details); exact ones have stderr 0 and
lower = upper = value. This module sits above the models and below learning: the trainer, evaluation, the
scikit-learn wrappers and `divergence` call it; models never do."""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from genlearn.errors import ConfigError, DataError, IntractableError
from genlearn.estimators.estimate import Estimate
from genlearn.models.base import EnergyModel, LatentVariableModel

#: exact log Z under "auto" when at most this many units are enumerated (2^25 = 33.5 million states) ...
EXACT_UNITS = 25
#: ... and the enumeration costs at most this many terms n 2^u
EXACT_TERMS = 1 << 35
#: the trainer monitors the exact NLL every epoch when the exact log Z costs at most this many terms
MONITOR_TERMS = 1 << 29
#: the trainer monitors the KL to a known truth every epoch by enumeration only up to this many states (a closed
#: form is always used; the final metrics enumerate up to 2^24 states)
MONITOR_KL_STATES = 1 << 20
#: ... and, for a model whose log P(x) of each state is a quadrature over z (a GAN's generator, QUADRATURE_POINTS^D
#: grid points per state), up to this many (state, grid point) terms: {0,1}^12 on the 401^2 grid of a 2-D latent
#: space (0.66e9, seconds) every epoch, not {0,1}^16 (1.05e10, about a minute each time)
MONITOR_QUADRATURE_TERMS = 1 << 30
#: how log Z may be asked for; a model offers the computations it has (an RBM has no mean-field bound)
PARTITION_METHODS = ("auto", "exact", "ais", "mean-field")
#: what the policy decides for what: "evaluate" (one-off numbers) or "monitor" (every epoch of training)
PURPOSES = ("evaluate", "monitor")
#: rows per chunk when summing free energies or log-probabilities
ROWS_PER_CHUNK = 10_000
#: importance samples per row when a latent-variable model's likelihood is evaluated (k = 5,000, as published)
IS_SAMPLES = 5000
#: how log P(x) of a latent-variable model may be asked for
LATENT_METHODS = ("auto", "importance-sampling", "quadrature", "ais")
#: a latent-variable model without an encoder is integrated by quadrature over z up to this many latent dimensions
QUADRATURE_MAX_DIM = 2
#: grid points per latent axis of that quadrature (trapezoid rule on [-8, 8]^D)
QUADRATURE_POINTS = 401
#: ... and at most this many on a wider box (a VampPrior's components far from 0: prior_box)
QUADRATURE_MAX_POINTS = 1201


# ---------------------------------------------------------------------------------------------- the decision
def exact_cost(model) -> tuple[int, float] | None:
    """(u, terms) of an exact log Z of an energy model: 2^u enumerated states, terms = n 2^u; None for a
    normalised model (log Z = 0, nothing to enumerate)."""
    if not isinstance(model, EnergyModel):
        return None
    u, n = model.exact_partition_size()
    return int(u), float(n) * 2.0 ** int(u)


def choose_method(model, purpose: str = "evaluate") -> str:
    """The method "auto" resolves to: "normalised" for a model with an exact log_prob; for a latent-variable model
    "importance-sampling" (q(z|x) as proposal) when it has an encoder, else "quadrature" over z when
    latent_dim <= QUADRATURE_MAX_DIM, else "ais" (over z, HMC); for an energy model
    "exact" when u <= EXACT_UNITS and n 2^u <= EXACT_TERMS (purpose "evaluate") or <= MONITOR_TERMS (purpose
    "monitor"), else "ais"."""
    if purpose not in PURPOSES:
        raise ConfigError(f"unknown purpose {purpose!r}; choose {' or '.join(PURPOSES)}")
    if isinstance(model, LatentVariableModel):
        if model.has_encoder:
            return "importance-sampling"
        return "quadrature" if model.latent_dim <= QUADRATURE_MAX_DIM else "ais"
    cost = exact_cost(model)
    if cost is None:
        return "normalised"
    u, terms = cost
    limit = EXACT_TERMS if purpose == "evaluate" else MONITOR_TERMS
    return "exact" if u <= EXACT_UNITS and terms <= limit else "ais"


def monitors_exactly(model) -> bool:
    """True when the trainer may compute the exact NLL of `model` at every monitoring step (normalised models,
    and energy models whose exact log Z costs at most MONITOR_TERMS terms)."""
    return choose_method(model, "monitor") in ("normalised", "exact")


def _describe_choice(model, purpose: str, chosen: str) -> str:
    u, terms = exact_cost(model)
    limit = EXACT_TERMS if purpose == "evaluate" else MONITOR_TERMS
    return (f"auto ({purpose}): exact log Z enumerates 2^{u} states, {terms:.3g} terms "
            f"(exact when u <= {EXACT_UNITS} and terms <= 2^{int(math.log2(limit))}): {chosen}")


# ---------------------------------------------------------------------------------------------- log Z
def log_partition(model, method: str = "auto", purpose: str = "evaluate", progress: bool = False,
                  **options) -> Estimate:
    """log Z of `model` in nats, as an Estimate.

    method: "auto" (decided by `choose_method(model, purpose)`; exact falls back to AIS when the model's kernel
    cannot enumerate), "exact", "ais" (forward AIS with, where the model has it, reverse AIS for the upper
    side of the bracket), "mean-field" (a lower bound, Boltzmann machines). `options` go to the model's
    computation (AIS: steps, chains, seed, reverse, burn_in, data; unknown ones are ignored by the models);
    `progress`: a progress bar over the AIS temperatures. A normalised model gives Estimate.exact(0.0,
    "normalised") whatever the method. With "auto" the details record the choice under "policy"."""
    if method not in PARTITION_METHODS:
        raise ConfigError(f"unknown partition method {method!r}; choose one of {', '.join(PARTITION_METHODS)}")
    if not isinstance(model, EnergyModel):
        return Estimate.exact(0.0, "normalised")
    if method != "auto":
        return _compute(model, method, progress, options)
    chosen = choose_method(model, purpose)
    note = _describe_choice(model, purpose, chosen)
    if chosen == "exact":
        try:
            est = _compute(model, "exact", progress, options)
        except IntractableError as exc:
            chosen, note = "ais", f"{note}; the model cannot enumerate ({exc}): ais"
    if chosen == "ais":
        est = _compute(model, "ais", progress, options)
    return dataclasses.replace(est, details={**est.details, "policy": note})


def _compute(model, method: str, progress: bool, options: dict) -> Estimate:
    if method == "exact":
        return model.log_partition(method="exact")
    if progress:
        options = {**options, "progress": True}
    return model.log_partition(method=method, **options)


# ---------------------------------------------------------------------------------------------- NLL
def _is_float64(model) -> bool:
    return any(p.dtype == torch.float64 for p in model.parameters())


#: models with at most this many parameters are evaluated in float64 (so that an exact MLE gives KL = 0 to
#: ~1e-12 instead of float32 rounding of ~1e-7); larger ones in their own precision
FLOAT64_EVAL_MAX_PARAMS = 100_000


def float64_copy(model):
    """A float64 copy of a small model (<= FLOAT64_EVAL_MAX_PARAMS parameters) for exact sums: log P(x), or an
    energy model's free energies F(x) (its log Z is float64 already; float32 free energies put ~1e-5 nats of
    rounding into an exact NLL, and a KL of 0 came out -8e-6); large models are returned as they are."""
    if sum(p.numel() for p in model.parameters()) > FLOAT64_EVAL_MAX_PARAMS:
        return model
    import copy

    return copy.deepcopy(model).double()


@torch.no_grad()
def mean_nll(model, x: Tensor, batch_size: int = ROWS_PER_CHUNK, member: int | None = None,
             progress: bool = False, desc: str = "NLL") -> float:
    """-(1/M) sum_m log P(x_m|theta) in nats per example with the model's exact log_prob, accumulated in
    float64; with `member` = k, the NLL of ensemble member k alone (model.member_log_prob: one mask of a MADE,
    one ordering of a NADE ensemble). A whole ensemble of K members goes through in chunks of batch_size / K
    rows (the same chunks with or without `progress`, a tqdm bar over the rows named `desc`)."""
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

        bar = tqdm(total=x.shape[0], desc=desc, unit="row", unit_scale=True, leave=False, mininterval=0.5,
                   disable=None)  # None: no bar when stderr is not a terminal
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


@torch.no_grad()
def mean_free_energy(model: EnergyModel, x: Tensor) -> float:
    """(1/M) sum_m F(x_m) in nats, float64 accumulation, in chunks of ROWS_PER_CHUNK rows."""
    if x.shape[0] == 0:
        raise DataError("cannot evaluate the likelihood of an empty data set")
    model, x = _in_float64(model, x)
    total = 0.0
    for start in range(0, x.shape[0], ROWS_PER_CHUNK):
        total += float(model.free_energy(x[start : start + ROWS_PER_CHUNK]).double().sum())
    return total / x.shape[0]


def _in_float64(model, x: Tensor):
    """(float64_copy(model), x as float64 when the copy is float64)."""
    model = float64_copy(model)
    return model, x.double() if torch.is_floating_point(x) and _is_float64(model) else x


@torch.no_grad()
def nll(model, x: Tensor, method: str = "auto", log_z: Estimate | None = None, purpose: str = "evaluate",
        progress: bool = False, desc: str = "NLL", row_mean: float | None = None, **options) -> Estimate:
    """NLL of the rows x in nats per example, as an Estimate with the method and bracket of its log Z.

    Normalised model: exact (method "exact"). Energy model: mean F(x) + log Z, with log Z given (`log_z`, e.g.
    computed once for several splits) or from `log_partition(model, method, purpose, **options)`; then
    stderr = stderr of log Z and [lower, upper] = mean F(x) + [lower, upper] of log Z. details: bits_per_dim and,
    for energy models, log_z, log_z_stderr, mean_free_energy, log_z_details. `row_mean`: the mean of -log P(x)
    (normalised) or F(x) (energy) over the rows when already computed (a data-parallel evaluation sums it over
    ranks, genlearn.evaluation); latent-variable models take `parallel` in `options` instead (latent_nll)."""
    x = model.check_input(x)
    per_dim = 1.0 / (model.n_features * math.log(2))
    if isinstance(model, LatentVariableModel):
        return latent_nll(model, x, method, progress=progress, desc=desc, **options)
    if not isinstance(model, EnergyModel):
        value = mean_nll(model, x, progress=progress, desc=desc) if row_mean is None else float(row_mean)
        return Estimate.exact(value, "exact", {"bits_per_dim": value * per_dim})
    if log_z is None:
        log_z = log_partition(model, method, purpose=purpose, progress=progress, **options)
    mean_f = mean_free_energy(model, x) if row_mean is None else float(row_mean)
    value = mean_f + log_z.value
    details = {"bits_per_dim": value * per_dim, "log_z": log_z.value, "log_z_stderr": log_z.stderr,
               "mean_free_energy": mean_f, "log_z_details": log_z.details}
    return Estimate(value, log_z.method, log_z.stderr, mean_f + log_z.lower, mean_f + log_z.upper, details)


def split_nll(model, x: Tensor, partition: str = "auto", log_z: Estimate | None = None, progress: bool = False,
              desc: str = "NLL", row_mean: float | None = None, **partition_options) -> dict:
    """`nll` as the flat dict the metrics use: {"nll", "nll_method", "bits_per_dim"} and, for energy models,
    "nll_lower", "nll_upper" (None when a side is unbounded), "log_z", "log_z_stderr", "mean_free_energy",
    "log_z_details"."""
    est = nll(model, x, partition, log_z=log_z, progress=progress, desc=desc, row_mean=row_mean,
              **partition_options)
    out = {"nll": est.value, "nll_method": est.method}
    if isinstance(model, LatentVariableModel):
        d = est.details
        out.update({"nll_stderr": est.stderr, "elbo": d.get("elbo"), "iw_samples": d.get("iw_samples"),
                    "ess_mean": d.get("ess_mean"), "nll_rows": d.get("rows")})
        for key in ("ais_steps", "ais_chains", "accept_rate"):
            if key in d:
                out[key] = d[key]
    if "log_z" in est.details:
        out.update({"log_z": est.details["log_z"], "log_z_stderr": est.details["log_z_stderr"],
                    "nll_lower": est.lower if math.isfinite(est.lower) else None,
                    "nll_upper": est.upper if math.isfinite(est.upper) else None,
                    "mean_free_energy": est.details["mean_free_energy"],
                    "log_z_details": est.details["log_z_details"]})
    out["bits_per_dim"] = est.details["bits_per_dim"]
    return out


@torch.no_grad()
def log_likelihoods(model, x: Tensor, log_z: Estimate | None = None, method: str = "auto",
                    **options) -> tuple[Tensor, Estimate]:
    """(log P(x_m) per row in nats, float64; the log Z Estimate used): exact log_prob for a normalised model,
    -F(x) - log Z for an energy model (log Z as in `log_partition`), the importance-sampling estimate log P^(x)
    for a latent-variable model (`importance_sampling`; options iw_samples, seed)."""
    x = model.check_input(x)
    if isinstance(model, LatentVariableModel):
        return latent_log_likelihoods(model, x, **options)[0], Estimate.exact(0.0, "normalised")
    if not isinstance(model, EnergyModel):
        model = float64_copy(model)
        xx = x.double() if torch.is_floating_point(x) and _is_float64(model) else x
        rows = [model.log_prob(xx[s : s + ROWS_PER_CHUNK]).double() for s in range(0, x.shape[0], ROWS_PER_CHUNK)]
        return torch.cat(rows) if rows else torch.zeros(0, dtype=torch.float64), Estimate.exact(0.0, "normalised")
    if log_z is None:
        log_z = log_partition(model, method, **options)
    model, x = _in_float64(model, x)
    rows = [model.free_energy(x[s : s + ROWS_PER_CHUNK]).double() for s in range(0, x.shape[0], ROWS_PER_CHUNK)]
    free = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.float64)
    return -free - log_z.value, log_z


# ---------------------------------------------------------------------------------------------- latent models
def importance_sampling(model, x: Tensor, iw_samples: int = IS_SAMPLES, seed: int = 0, progress: bool = False,
                        desc: str = "importance sampling", shard: tuple[int, int] | None = None) -> dict:
    """Per-row importance-sampling estimates for a latent-variable model with q(z|x) as proposal
    (genlearn.estimators.importance): {"log_p", "elbo", "ess", "variance"}, float64 tensors (nats), from
    `iw_samples` samples per row drawn from a generator seeded with `seed` (the same call gives the same numbers).
    `shard` = (start, stop): the estimates of rows [start, stop) only, with the same random numbers."""
    from genlearn.estimators.importance import importance_log_marginal

    generator = torch.Generator().manual_seed(int(seed))
    return importance_log_marginal(model.log_weights, x, iw_samples, generator, progress=progress, desc=desc,
                                   shard=shard)


def latent_nll(model, x: Tensor, method: str = "auto", iw_samples: int = IS_SAMPLES, seed: int = 0,
               ais_steps: int = 1000, ais_chains: int = 16, ais_leapfrog: int = 10, ais_rows: int | None = None,
               progress: bool = False, desc: str = "NLL", parallel=None, ais_start: str = "prior",
               **ignored) -> Estimate:
    """NLL (nats per example) of a latent-variable model as an Estimate.

    "auto" / "importance-sampling": -(1/M) sum_m log P^(x_m) with `iw_samples` samples per row; stderr is the
    Monte Carlo error of the estimate, sqrt(sum_m Var[log P^(x_m)]) / M (delta method; NaN with one sample per
    row, whose variance it cannot see); details: the mean ELBO
    (nats, <= -NLL), the mean effective sample size, the spread over rows (row_stderr). "ais": forward AIS over z
    with HMC (`ais_steps` temperatures, `ais_chains` chains, `ais_leapfrog` leapfrog steps) on the first `ais_rows`
    rows (all when None), from the prior or (ais_start="encoder") from the encoder's q(z|x),
    genlearn.estimators.latent_ais. Both under-estimate log P(x) in expectation: the NLLs
    are stochastic upper bounds (the bracket of an AIS figure comes from BDMC, `bdmc_gap`).

    `parallel` (a learning.distributed.DataParallel): importance sampling and quadrature sharded over its ranks,
    each its contiguous rows (with the random numbers of one process), float64 sums of log P^, log P^^2, ELBO,
    ESS, Var and the count all-reduced: every rank gets the 1-process figures (up to the order of the sums)."""
    method = _latent_method(model, method)
    if x.shape[0] == 0:
        raise DataError("cannot evaluate the likelihood of an empty data set")
    per_dim = 1.0 / (model.n_features * math.log(2))
    if method == "quadrature":
        if parallel is None:
            value = -float(quadrature(model, x).mean())
        else:
            start, stop = parallel.shard(x.shape[0])
            sums = _row_sums([quadrature(model, x[start:stop])] if stop > start else None, 1, parallel)
            value = -float(sums[0] / sums[-1])
        return Estimate.exact(value, "quadrature", {"bits_per_dim": value * per_dim, "rows": int(x.shape[0]),
                                                    "points_per_axis": QUADRATURE_POINTS, "box": [-8.0, 8.0]})
    if method == "ais":
        from genlearn.estimators.latent_ais import ais_estimate

        rows = x if ais_rows is None else x[:ais_rows]
        with torch.enable_grad(), model.frozen():
            est, _ = ais_estimate(model.log_prior, model.log_likelihood, model.sample_prior, rows, steps=ais_steps,
                                  chains=ais_chains, leapfrog=ais_leapfrog, seed=seed, progress=progress,
                                  proposal=ais_proposal(model, ais_start))
        return dataclasses.replace(est, details={**est.details, "bits_per_dim": est.value * per_dim,
                                                 "rows": int(rows.shape[0]), "ais_steps": ais_steps,
                                                 "ais_chains": ais_chains})
    m = x.shape[0]
    if parallel is None:
        res = importance_sampling(model, x, iw_samples, seed, progress=progress, desc=desc)
        value, elbo, ess = -float(res["log_p"].mean()), float(res["elbo"].mean()), float(res["ess"].mean())
        stderr = float(res["variance"].sum().sqrt()) / m
        row_std = float(res["log_p"].std()) if m > 1 else 0.0
    else:  # each rank its rows; sums of log P^, log P^^2, ELBO^, ESS, Var and the count reduced over ranks
        start, stop = parallel.shard(m)
        res = importance_sampling(model, x, iw_samples, seed, progress=progress, desc=desc, shard=(start, stop))
        lp = res["log_p"]
        s1, s2, s_elbo, s_ess, s_var, m = _row_sums(
            [lp, lp * lp, res["elbo"], res["ess"], res["variance"]] if stop > start else None, 5, parallel).tolist()
        value, elbo, ess, stderr = -s1 / m, s_elbo / m, s_ess / m, math.sqrt(s_var) / m
        row_std = math.sqrt(max(s2 - s1 * s1 / m, 0.0) / (m - 1)) if m > 1 else 0.0
    details = {"iw_samples": iw_samples, "seed": seed, "rows": int(m), "elbo": elbo, "ess_mean": ess,
               "row_stderr": row_std / math.sqrt(m), "bits_per_dim": value * per_dim,
               "bound": "stochastic upper bound of the NLL: E[log P^(x)] <= log P(x)"}
    if iw_samples == 1:  # one weight per row: its spread, hence the delta method's variance, is unknown (not 0)
        stderr = math.nan
        details["stderr_note"] = "unknown with one importance sample per row (use iw_samples >= 2)"
    return Estimate(value, "importance-sampling", stderr, details=details)


def _row_sums(columns: list[Tensor] | None, n: int, parallel) -> Tensor:
    """[sum of each of the n per-row columns, row count] over all ranks, float64: this rank's rows (None: it has
    none) summed, then all-reduced."""
    sums = torch.zeros(n + 1, dtype=torch.float64)
    if columns is not None:
        sums[:n] = torch.stack([c.double().sum().cpu() for c in columns])
        sums[n] = columns[0].shape[0]
    return parallel.all_reduce_(sums)


def _latent_method(model, method: str) -> str:
    """The method a latent-variable model's likelihood is computed with ("auto" resolved by `choose_method`)."""
    if method not in LATENT_METHODS:
        raise ConfigError(f"unknown likelihood method {method!r} for a latent-variable model; choose one of "
                          f"{', '.join(LATENT_METHODS)}")
    if method == "auto":
        return choose_method(model)
    if method == "importance-sampling" and not model.has_encoder:
        raise ConfigError(f"model {model.name!r} has no encoder q(z|x) to importance-sample with; use quadrature "
                          "(a latent space of at most 2 dimensions) or ais")
    if method == "quadrature" and model.latent_dim > QUADRATURE_MAX_DIM:
        raise ConfigError(f"quadrature integrates over at most {QUADRATURE_MAX_DIM} latent dimensions; this model "
                          f"has {model.latent_dim}: use ais (or importance-sampling with an encoder)")
    return method


@torch.no_grad()
def quadrature(model, x: Tensor) -> Tensor:
    """log P(x) per row (float64, nats) by the trapezoid rule over z on [-L, L]^D, L = 8 for a standard-normal
    prior, else the model's `prior_box()` (a VampPrior: 8 standard deviations around every component), with
    QUADRATURE_POINTS points per axis on [-8, 8] and as many more as keep that spacing on a wider box (at most
    QUADRATURE_MAX_POINTS) (genlearn.estimators.latent_ais.quadrature_log_marginal, with the model's Bernoulli
    decoder logits: one decoder pass per grid point); D <= QUADRATURE_MAX_DIM."""
    from genlearn.estimators.latent_ais import quadrature_log_marginal

    dtype = next(model.parameters()).dtype
    limit = float(model.prior_box()) if hasattr(model, "prior_box") else 8.0
    points = min(QUADRATURE_MAX_POINTS, max(QUADRATURE_POINTS, math.ceil((QUADRATURE_POINTS - 1) * limit / 8) + 1))
    unique, inverse = torch.unique(x.to(dtype), dim=0, return_inverse=True)  # repeated rows integrated once
    log_p = quadrature_log_marginal(model.log_prior, model.log_likelihood, unique, dim=model.latent_dim,
                                    points=points, limit=limit, decoder_logits=model.decoder_logits)
    return log_p[inverse]


#: where AIS over z starts: the prior p(z) (Wu et al. 2017; the only start for a model without an encoder) or the
#: encoder's q(z|x) (estimators.latent_ais: the same estimator from a start nearer the posterior)
AIS_STARTS = ("prior", "encoder")


def ais_proposal(model, start: str):
    """The `proposal` argument of latent_ais for `start`: None from the prior, model.posterior_proposal from the
    encoder; a ConfigError for an unknown start or an encoder start on a model without an encoder."""
    if start not in AIS_STARTS:
        raise ConfigError(f"the AIS start must be one of {', '.join(AIS_STARTS)}, got {start!r}")
    if start == "prior":
        return None
    if not model.has_encoder:
        raise ConfigError(f"--ais-start encoder needs a model with an encoder q(z|x) (the vae family); "
                          f"{model.name} has none: use --ais-start prior")
    return model.posterior_proposal


def latent_log_likelihoods(model, x: Tensor, method: str = "auto", iw_samples: int = IS_SAMPLES, seed: int = 0,
                           ais_steps: int = 1000, ais_chains: int = 16, ais_leapfrog: int = 10,
                           progress: bool = False, ais_start: str = "prior") -> tuple[Tensor, str]:
    """(log P(x) estimates per row, float64 nats; the method): importance sampling, quadrature or AIS over z (from
    the prior, or from the encoder with ais_start="encoder")."""
    method = _latent_method(model, method)
    if method == "quadrature":
        return quadrature(model, x), method
    if method == "ais":
        from genlearn.estimators.latent_ais import ais_estimate

        with torch.enable_grad(), model.frozen():
            _, per_row = ais_estimate(model.log_prior, model.log_likelihood, model.sample_prior, x, steps=ais_steps,
                                      chains=ais_chains, leapfrog=ais_leapfrog, seed=seed, progress=progress,
                                      proposal=ais_proposal(model, ais_start))
        return per_row, method
    return importance_sampling(model, x, iw_samples, seed, progress=progress)["log_p"], method


@torch.no_grad()
def latent_monitor(model, x: Tensor, iw_samples: int | None = None, seed: int = 0) -> dict:
    """What the trainer records each epoch for a latent-variable model on the rows x: {"neg_elbo": -mean ELBO
    (one sample per row, nats)} and, with `iw_samples`, {"nll_is": the importance-sampling NLL}; seeded, so that
    epochs are compared on the same random numbers."""
    generator = torch.Generator().manual_seed(int(seed))
    total = 0.0
    for start in range(0, x.shape[0], ROWS_PER_CHUNK):
        total += float(model.elbo(x[start : start + ROWS_PER_CHUNK], generator).double().sum())
    out = {"neg_elbo": -total / x.shape[0]}
    if iw_samples is not None:
        out["nll_is"] = -float(importance_sampling(model, x, iw_samples, seed)["log_p"].mean())
    return out


__all__ = ["EXACT_TERMS", "EXACT_UNITS", "IS_SAMPLES", "LATENT_METHODS", "MONITOR_TERMS", "PARTITION_METHODS",
           "QUADRATURE_MAX_DIM", "choose_method", "exact_cost", "float64_copy", "importance_sampling",
           "latent_log_likelihoods", "latent_monitor", "latent_nll", "log_likelihoods", "log_partition",
           "mean_free_energy", "mean_nll", "monitors_exactly", "nll", "quadrature", "split_nll"]
