"""Negative log-likelihood on a split, in nats per example (and bits per dimension), exact or estimated.

For a normalised model NLL = -(1/M) sum_m log P(x_m) exactly. For an energy model P(x) = exp(-F(x)) / Z,
NLL = mean F(x_m) + log Z, and log Z comes from `model.log_partition(method=...)` (exact enumeration or an
estimate with its bracket), so the NLL carries the same method and bracket."""
from __future__ import annotations

import math

import torch

from genlearn.divergence import empirical_kl, kl_divergence, mean_nll
from genlearn.errors import IntractableError
from genlearn.models.base import EnergyModel


@torch.no_grad()
def split_nll(model, x: torch.Tensor, partition: str = "auto", log_z=None, progress: bool = False,
              desc: str = "NLL", **partition_options) -> dict:
    """{"nll", "nll_method", "bits_per_dim"} (+ "nll_lower", "nll_upper", "log_z"... for energy models);
    `progress`: progress bars (named `desc`) over the rows and the AIS temperatures."""
    x = model.check_input(x)
    n_dims = model.n_features
    if isinstance(model, EnergyModel):
        if log_z is None:
            log_z = partition_estimate(model, partition, progress=progress, **partition_options)
        mean_f = 0.0
        for start in range(0, x.shape[0], 10_000):
            mean_f += float(model.free_energy(x[start : start + 10_000]).double().sum())
        mean_f /= x.shape[0]
        out = {"nll": mean_f + log_z.value, "nll_method": log_z.method, "log_z": log_z.value,
               "log_z_stderr": log_z.stderr,
               "nll_lower": mean_f + log_z.lower if math.isfinite(log_z.lower) else None,
               "nll_upper": mean_f + log_z.upper if math.isfinite(log_z.upper) else None,
               "mean_free_energy": mean_f}
        out["log_z_details"] = log_z.details
    else:
        out = {"nll": mean_nll(model, x, progress=progress, desc=desc), "nll_method": "exact"}
    out["bits_per_dim"] = out["nll"] / (n_dims * math.log(2))
    return out


def partition_estimate(model, partition: str = "auto", progress: bool = False, **options):
    """log Z of an energy model: `auto` is exact enumeration when the model allows it, else AIS (with a
    progress bar over its temperatures when `progress`)."""
    if partition == "auto":
        try:
            return model.log_partition(method="exact")
        except IntractableError:
            partition = "ais"
    if progress and partition == "ais":
        options["progress"] = True
    return model.log_partition(method=partition, **options)


@torch.no_grad()
def evaluate(model, dataset, splits=("train", "valid", "test"), partition: str = "auto", progress: bool = False,
             **partition_options) -> dict:
    """Metrics of a fitted model on a data set: `<split>_nll` for each split present (nats per example),
    the empirical entropy and KL on train, and the exact KL to the truth when it is known and enumerable.
    `progress`: progress bars over AIS temperatures and over each split's rows."""
    out: dict = {}
    log_z = None
    if isinstance(model, EnergyModel):
        log_z = partition_estimate(model, partition, progress=progress, **partition_options)
        out["log_z"] = log_z.value
        out["log_z_lower"] = log_z.lower if math.isfinite(log_z.lower) else None
        out["log_z_upper"] = log_z.upper if math.isfinite(log_z.upper) else None
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
        try:
            kl = kl_divergence(dataset.truth, model)
            out["kl_true"] = kl if isinstance(kl, float) else kl.value
            if not isinstance(kl, float):
                out["kl_true_stderr"], out["kl_true_method"] = kl.stderr, kl.method
        except IntractableError as exc:
            out["kl_true"] = None
            out["kl_true_note"] = str(exc)
    return out


__all__ = ["evaluate", "split_nll", "empirical_kl"]
