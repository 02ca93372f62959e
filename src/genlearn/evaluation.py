"""The metrics of a fitted model on a data set, in nats per example (and bits per dimension), exact or estimated.

For a normalised model NLL = -(1/M) sum_m log P(x_m) exactly. For an energy model P(x) = exp(-F(x)) / Z,
NLL = mean F(x_m) + log Z, with log Z obtained once for all splits by the likelihood policy
(`genlearn.likelihood.log_partition`: exact enumeration or AIS with its reverse-AIS bracket), so every split's
NLL carries the same method and bracket. The KL to a known truth is `kl_divergence(truth, model)` (exact: closed
form or enumeration; quadrature or Monte Carlo for continuous models), reported as `kl_true` (a number) with
`kl_true_method` (and `kl_true_stderr`, `kl_true_lower`, `kl_true_upper` when it is an estimate)."""
from __future__ import annotations

import math

import torch

from genlearn.divergence import empirical_kl, kl_divergence
from genlearn.errors import ConfigError, IntractableError
from genlearn.likelihood import log_partition, mean_free_energy, mean_nll, split_nll
from genlearn.models.base import EnergyModel, LatentVariableModel


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


@torch.no_grad()
def check_data_kind(model, dataset) -> None:
    """The data set's kind (binary, categorical, real) must be the model's sample space: one ConfigError naming
    both otherwise, before any likelihood (or the KL to the data's known truth) is computed."""
    support, kind = getattr(model, "support", None), getattr(dataset, "kind", None)
    if support is not None and kind is not None and support != kind:
        raise ConfigError(f"the model {model.name!r} is for {support} data, but the data set {dataset.name!r} is "
                          f"{kind}; evaluate it on {support} data")


def evaluate(model, dataset, splits=("train", "valid", "test"), partition: str = "auto", progress: bool = False,
             parallel=None, **partition_options) -> dict:
    """Metrics of a fitted model on a data set: `<split>_nll`, `<split>_nll_method`, `<split>_bits_per_dim` (and
    `<split>_nll_lower`/`_upper` when log Z is bracketed) for each split present (nats per example); for energy
    models `log_z`, `log_z_stderr`, `log_z_lower`, `log_z_upper`, `log_z_method`, `log_z_details`; the empirical
    entropy and KL on train; `kl_true` (+ `kl_true_method`) when the truth is known and its KL computable.

    `partition` (auto | exact | ais | mean-field) and `partition_options` (AIS steps, chains, seed, ...) go to the
    likelihood policy; `progress`: progress bars over AIS temperatures and over each split's rows.

    `parallel` (a learning.distributed.DataParallel, every rank calling): the per-row part of each split's NLL is
    sharded (`sharded`); log Z (exact or AIS), the entropy, the KL and latent AIS/BDMC are computed by rank 0 alone,
    after the shards; rank 0 returns the metrics of one process, the other ranks {}."""
    check_data_kind(model, dataset)
    if isinstance(model, LatentVariableModel):
        return evaluate_latent(model, dataset, splits, partition, progress, parallel=parallel, **partition_options)
    out: dict = {}
    row_means = {}
    if parallel is not None:  # every rank: -log P(x) (or F(x)) summed over its rows; the rest on rank 0 alone
        energy = isinstance(model, EnergyModel)
        row_mean = parallel.sharded(mean_free_energy if energy else mean_nll)
        for split in splits:
            if getattr(dataset, split) is not None:
                bar = {} if energy else {"progress": progress, "desc": f"{split} NLL"}
                row_means[split] = row_mean(model, model.check_input(getattr(dataset, split)), **bar)
        if not parallel.is_writer:
            return {}
    log_z = None
    if isinstance(model, EnergyModel):
        options = dict(partition_options)
        if getattr(model, "ais_reverse_from_data", False) and "data" not in options and dataset.train is not None:
            options["data"] = dataset.train  # reverse AIS from training rows, near the model's distribution
        log_z = log_partition(model, partition, progress=progress, **options)
        out["log_z"] = log_z.value
        out["log_z_stderr"] = log_z.stderr  # Monte Carlo error of log_z (forward AIS, delta method); 0 when exact
        out["log_z_lower"] = _finite_or_none(log_z.lower)
        out["log_z_upper"] = _finite_or_none(log_z.upper)
        out["log_z_method"] = log_z.method
        out["log_z_details"] = log_z.details
    for split in splits:
        x = getattr(dataset, split)
        if x is None:
            continue
        res = split_nll(model, x, log_z=log_z, progress=progress, desc=f"{split} NLL",
                        row_mean=row_means.get(split))
        out[f"{split}_nll"] = res["nll"]
        out[f"{split}_nll_method"] = res["nll_method"]
        out[f"{split}_bits_per_dim"] = res["bits_per_dim"]
        if res.get("nll_lower") is not None:
            out[f"{split}_nll_lower"], out[f"{split}_nll_upper"] = res["nll_lower"], res["nll_upper"]
    if dataset.kind != "real" and dataset.train_intensity is None and "train_nll" in out:
        from genlearn.data.empirical import empirical_entropy

        h = empirical_entropy(dataset.train, dataset.kind)
        out["entropy_empirical"] = h
        out["kl_empirical"] = out["train_nll"] - h
        out["kl_empirical_method"] = out.get("train_nll_method")
        if out.get("train_nll_lower") is not None:  # log Z estimated (AIS) or bounded (mean field): so is the KL
            upper = out.get("train_nll_upper")
            out["kl_empirical_lower"] = out["train_nll_lower"] - h
            out["kl_empirical_upper"] = None if upper is None else upper - h  # None: unbounded above
    elif "train_nll" in out:
        out["entropy_empirical"] = None  # real-valued or dynamically binarized data: no finite H(Q^)
        out["kl_empirical"] = None
        out["kl_empirical_note"] = NO_EMPIRICAL_KL
    if dataset.truth is not None:
        out.update(kl_true_metrics(dataset.truth, model))
    return out


#: why a run has no empirical KL
NO_EMPIRICAL_KL = ("no empirical KL: the training data are real-valued or dynamically binarized (redrawn every "
                   "epoch), so there is no fixed empirical distribution Q^ with a finite entropy H(Q^)")

#: importance samples per row on the train and valid splits of a latent-variable model's final metrics (test gets
#: likelihood.IS_SAMPLES = 5,000): their figures serve the KL bound and model selection, at 1/50 of the cost
TRAIN_IW_SAMPLES = 100
#: defaults of the AIS (over z, HMC) and BDMC evaluation of a latent-variable model, when asked for
AIS_DEFAULTS = {"ais_rows": 1000, "ais_steps": 500, "ais_chains": 4, "ais_leapfrog": 10, "bdmc_rows": 100,
                "ais_start": "prior"}


@torch.no_grad()
def evaluate_latent(model, dataset, splits=("train", "valid", "test"), partition: str = "auto",
                    progress: bool = False, iw_samples: int | None = None, train_iw_samples: int = TRAIN_IW_SAMPLES,
                    seed: int = 0, steps: int | None = None, chains: int | None = None, parallel=None,
                    **ais_options) -> dict:
    """Metrics of a latent-variable model (VAE), every likelihood labelled with how it was obtained (nats):

    - per split: `<split>_nll` by importance sampling with q(z|x) (`iw_samples`, default 5,000, on test;
      `train_iw_samples`, default 100, on train and valid), `<split>_nll_method` "importance-sampling",
      `<split>_nll_stderr` (Monte Carlo error), `<split>_iw_samples`, `<split>_elbo` (mean ELBO, <= -NLL),
      `<split>_bits_per_dim`;
    - `kl_empirical_upper` = -train ELBO - H(Q^) and `kl_empirical_upper_is` = train IS NLL - H(Q^): upper bounds
      of D_KL(Q^||P_theta) (the IS one in expectation), with the empirical entropy H(Q^);
    - with partition "ais" or any AIS option (ais_rows, ais_steps (alias steps), ais_chains (alias chains),
      ais_leapfrog, bdmc_rows, ais_start: "prior" or "encoder", where the path starts, `ais_start` in the
      metrics): forward AIS over z with HMC on the first ais_rows test rows (`ais_test_nll`, with
      `ais_is_nll` = the IS NLL of the same rows for comparison) and BDMC on bdmc_rows rows simulated from the
      model (`bdmc_forward`, `bdmc_reverse` mean log P, `bdmc_gap` = reverse - forward: the bracket that bounds
      the error of AIS at these settings).

    `parallel` (learning.distributed.DataParallel): the importance sampling (and quadrature) of every split sharded
    over the ranks with the random numbers of one process (likelihood.latent_nll); AIS over z, BDMC, the entropy
    and the KL on rank 0 alone; the other ranks return {}."""
    from genlearn.likelihood import IS_SAMPLES, choose_method

    if partition not in ("auto", "importance-sampling", "ais"):
        raise ConfigError(f"--partition {partition!r} does not apply to a latent-variable model; use auto "
                          "(importance sampling) or ais (AIS over z with a BDMC bracket)")
    if steps is not None:
        ais_options.setdefault("ais_steps", steps)
    if chains is not None:
        ais_options.setdefault("ais_chains", chains)
    unknown = set(ais_options) - set(AIS_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown evaluation option(s) {', '.join(sorted(unknown))} for a latent-variable model")
    method = choose_method(model)
    if method != "importance-sampling":
        return _evaluate_without_encoder(model, dataset, splits, method, seed, progress,
                                         {**AIS_DEFAULTS, **ais_options}, parallel)
    iw_samples = IS_SAMPLES if iw_samples is None else iw_samples
    out: dict = {"likelihood_method": "importance-sampling"}
    for split in splits:
        x = getattr(dataset, split)
        if x is None:
            continue
        k = iw_samples if split == "test" else min(train_iw_samples, iw_samples)
        res = split_nll(model, x, "importance-sampling", progress=progress, desc=f"{split} IS", iw_samples=k,
                        seed=seed, parallel=parallel)
        out[f"{split}_nll"] = res["nll"]
        out[f"{split}_nll_method"] = res["nll_method"]
        out[f"{split}_nll_stderr"] = res["nll_stderr"]
        out[f"{split}_iw_samples"] = k
        out[f"{split}_elbo"] = res["elbo"]
        out[f"{split}_bits_per_dim"] = res["bits_per_dim"]
    if parallel is not None and not parallel.is_writer:
        return {}
    if dataset.train_intensity is None and "train_nll" in out:
        from genlearn.data.empirical import empirical_entropy

        h = empirical_entropy(dataset.train, dataset.kind)
        out["entropy_empirical"] = h
        out["kl_empirical_upper"] = -out["train_elbo"] - h
        out["kl_empirical_upper_is"] = out["train_nll"] - h
        out["kl_empirical_note"] = ("upper bounds of D_KL(Q^||P_theta): -ELBO - H(Q^), and the importance-sampling "
                                    "NLL - H(Q^) (an upper bound in expectation); the exact KL is intractable")
    elif "train_nll" in out:
        out["entropy_empirical"] = None
        out["kl_empirical_note"] = NO_EMPIRICAL_KL
    if (partition == "ais" or ais_options) and dataset.test is not None and "test" in splits:
        out.update(ais_metrics(model, dataset.test, seed, progress, **ais_options))
    if dataset.truth is not None:
        out.update(kl_true_metrics(dataset.truth, model))
    return out


def _evaluate_without_encoder(model, dataset, splits, method: str, seed: int, progress: bool, opts: dict,
                              parallel=None) -> dict:
    """A latent-variable model without an encoder (a GAN's generator). "quadrature" (latent_dim <= 2): every
    split's NLL by quadrature over z, exact up to the grid, and the empirical KL D_KL(Q^||P) = train NLL - H(Q^).
    "ais": forward AIS over z on the first ais_rows rows of train and test (`<split>_nll`, method "ais",
    `<split>_nll_rows`), the BDMC gap on bdmc_rows simulated rows, `test_nll_upper` = the AIS NLL (a stochastic
    upper bound) + 2 se and `test_nll_lower` = AIS NLL - BDMC gap - 2 se (assuming the AIS error on test rows is no
    larger than on the model's own samples; se the standard error of the mean over the rows), and the empirical KL
    estimate with the same bracket. `parallel`: quadrature
    sharded over the ranks; AIS on rank 0 alone (the other ranks return {})."""
    from genlearn.likelihood import latent_nll

    if parallel is not None and not parallel.is_writer and method == "ais":
        return {}
    out: dict = {"likelihood_method": method}
    if method == "ais":
        splits = [s for s in ("train", "test") if s in splits]
    for split in splits:
        x = getattr(dataset, split)
        if x is None:
            continue
        if method == "quadrature":
            est = latent_nll(model, x, "quadrature", parallel=parallel)
        else:
            est = latent_nll(model, x, "ais", seed=seed, ais_rows=opts["ais_rows"], ais_steps=opts["ais_steps"],
                             ais_chains=opts["ais_chains"], ais_leapfrog=opts["ais_leapfrog"], progress=progress,
                             ais_start=opts["ais_start"])
            out[f"{split}_nll_stderr"] = est.stderr
            out[f"{split}_nll_rows"] = est.details["rows"]
        out[f"{split}_nll"] = est.value
        out[f"{split}_nll_method"] = est.method
        out[f"{split}_bits_per_dim"] = est.details["bits_per_dim"]
    if parallel is not None and not parallel.is_writer:
        return {}
    if method == "ais" and opts["bdmc_rows"] and "test_nll" in out:
        out.update(_bdmc_metrics(model, seed, progress, opts))
        # the AIS bias bounded by the BDMC gap, widened by 2 standard errors of the mean over the rows (a noise-level
        # gap used to collapse the bracket to the point estimate)
        se = out.get("test_nll_stderr") or 0.0
        out["test_nll_upper"] = out["test_nll"] + 2.0 * se
        out["test_nll_lower"] = out["test_nll"] - max(out["bdmc_gap"], 0.0) - 2.0 * se
    if dataset.train_intensity is None and "train_nll" in out:
        from genlearn.data.empirical import empirical_entropy

        h = empirical_entropy(dataset.train, dataset.kind)
        out["entropy_empirical"] = h
        out["kl_empirical"] = out["train_nll"] - h
        out["kl_empirical_method"] = method
        if "bdmc_gap" in out:
            se = out.get("train_nll_stderr") or 0.0
            out["kl_empirical_upper"] = out["kl_empirical"] + 2.0 * se
            out["kl_empirical_lower"] = out["kl_empirical"] - max(out["bdmc_gap"], 0.0) - 2.0 * se
    if dataset.truth is not None:
        out.update(kl_true_metrics(dataset.truth, model))
    return out


def _bdmc_metrics(model, seed: int, progress: bool, opts: dict) -> dict:
    """BDMC (forward and reverse AIS over z) on bdmc_rows rows simulated from the model."""
    from genlearn.estimators.latent_ais import bdmc
    from genlearn.likelihood import ais_proposal

    def sample_data(z, generator):
        return torch.bernoulli(torch.sigmoid(model.decoder_logits(z)), generator=generator)

    proposal = ais_proposal(model, opts["ais_start"])
    with torch.enable_grad(), model.frozen():
        b = bdmc(model.log_prior, model.log_likelihood, model.sample_prior, sample_data, rows=opts["bdmc_rows"],
                 steps=opts["ais_steps"], chains=opts["ais_chains"], leapfrog=opts["ais_leapfrog"], seed=seed,
                 progress=progress, proposal=proposal)
    return {"bdmc_gap": b["gap"], "bdmc_forward": b["forward_log_p"], "bdmc_reverse": b["reverse_log_p"],
            "bdmc_rows": opts["bdmc_rows"], "bdmc_start": b["start"],
            "bdmc_note": "forward/reverse AIS on rows simulated from the model: their mean log P(x) lies between "
                         "them (stochastically); the gap bounds the error of AIS at these settings"}


def ais_metrics(model, test, seed: int = 0, progress: bool = False, same_rows_is: bool = True, **options) -> dict:
    """Forward AIS over z on the first ais_rows test rows, the importance-sampling NLL of the same rows (5,000
    samples; only for a model with an encoder q(z|x) to sample from, and unless same_rows_is=False) and BDMC on
    bdmc_rows rows simulated from the model (options: AIS_DEFAULTS), without the per-split importance sampling of
    `evaluate_latent`: `ais_test_nll`, `ais_is_nll`, `bdmc_gap`, ... (nats)."""
    unknown = set(options) - set(AIS_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown AIS option(s) {', '.join(sorted(unknown))}; known: {', '.join(AIS_DEFAULTS)}")
    opts = {**AIS_DEFAULTS, **options}
    from genlearn.likelihood import latent_nll

    rows = test[: opts["ais_rows"]]
    with torch.enable_grad():
        ais = latent_nll(model, rows, "ais", seed=seed, ais_steps=opts["ais_steps"], ais_chains=opts["ais_chains"],
                         ais_leapfrog=opts["ais_leapfrog"], progress=progress, ais_start=opts["ais_start"])
    out = {"ais_test_nll": ais.value, "ais_test_nll_stderr": ais.stderr, "ais_rows": int(rows.shape[0]),
           "ais_steps": opts["ais_steps"], "ais_chains": opts["ais_chains"], "ais_leapfrog": opts["ais_leapfrog"],
           "ais_start": opts["ais_start"], "ais_accept_rate": ais.details.get("accept_rate")}
    if model.has_encoder and same_rows_is:
        same = latent_nll(model, rows, "importance-sampling", seed=seed, progress=progress)
        out.update({"ais_is_nll": same.value, "ais_is_nll_stderr": same.stderr})
    if opts["bdmc_rows"]:
        out.update(_bdmc_metrics(model, seed, progress, opts))
    return out


def kl_true_metrics(truth, model) -> dict:
    """{"kl_true": value (nats), "kl_true_method": ...} plus "kl_true_stderr", "kl_true_lower", "kl_true_upper"
    for an estimate; {"kl_true": None, "kl_true_note": why} when no KL can be computed (e.g. a discrete model
    beyond enumeration with no closed form)."""
    try:
        kl = kl_divergence(truth, model)
    except IntractableError as exc:
        return {"kl_true": None, "kl_true_note": str(exc)}
    out = {"kl_true": kl.value, "kl_true_method": kl.method}
    if not kl.is_exact:
        out.update({"kl_true_stderr": kl.stderr, "kl_true_lower": _finite_or_none(kl.lower),
                    "kl_true_upper": _finite_or_none(kl.upper)})
    return out


__all__ = ["ais_metrics", "evaluate", "evaluate_latent", "empirical_kl", "kl_true_metrics", "split_nll"]
