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
from genlearn.errors import IntractableError
from genlearn.likelihood import log_partition, split_nll
from genlearn.models.base import EnergyModel


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


@torch.no_grad()
def evaluate(model, dataset, splits=("train", "valid", "test"), partition: str = "auto", progress: bool = False,
             **partition_options) -> dict:
    """Metrics of a fitted model on a data set: `<split>_nll`, `<split>_nll_method`, `<split>_bits_per_dim` (and
    `<split>_nll_lower`/`_upper` when log Z is bracketed) for each split present (nats per example); for energy
    models `log_z`, `log_z_lower`, `log_z_upper`, `log_z_method`, `log_z_details`; the empirical entropy and KL on
    train; `kl_true` (+ `kl_true_method`) when the truth is known and its KL computable.

    `partition` (auto | exact | ais | mean-field) and `partition_options` (AIS steps, chains, seed, ...) go to the
    likelihood policy; `progress`: progress bars over AIS temperatures and over each split's rows."""
    out: dict = {}
    log_z = None
    if isinstance(model, EnergyModel):
        log_z = log_partition(model, partition, progress=progress, **partition_options)
        out["log_z"] = log_z.value
        out["log_z_lower"] = _finite_or_none(log_z.lower)
        out["log_z_upper"] = _finite_or_none(log_z.upper)
        out["log_z_method"] = log_z.method
        out["log_z_details"] = log_z.details
    for split in splits:
        x = getattr(dataset, split)
        if x is None:
            continue
        res = split_nll(model, x, log_z=log_z, progress=progress, desc=f"{split} NLL")
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
    elif "train_nll" in out:
        out["entropy_empirical"] = None  # real-valued or dynamically binarized data: no finite H(Q^)
        out["kl_empirical"] = None
    if dataset.truth is not None:
        out.update(kl_true_metrics(dataset.truth, model))
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


__all__ = ["evaluate", "empirical_kl", "kl_true_metrics", "split_nll"]
