"""Run folders written before learning rules were objects (genlearn <= the pre-contract main).

Such a checkpoint.json has no "rule" record: the learning settings were constructor arguments of the model and
sit in its "model_config" (RBM: k, persistent, gradient, n_chains, matmul_precision; Boltzmann machine:
gradient, k, n_chains, mf_iterations; mixture: em, smoothing, weight_smoothing, reseed, min_mass). The models'
`from_config` drop those keys; `rule_from_legacy_config` turns them into the rule the run learned with. The
learning state lived in model buffers ("model.chains" with "model.chains_ready", "model.mf_magnetization");
`legacy_rule_state` moves it into the rule's state, so resuming an old run continues exactly."""
from __future__ import annotations

from torch import Tensor

from genlearn.errors import ConfigError


def rule_from_legacy_config(family: str, model_config: dict) -> tuple[str, dict]:
    """(rule name, settings) of a run of `family` whose model_config is that of an earlier version."""
    cfg = model_config
    if family == "rbm":
        persistent = bool(cfg.get("persistent", False))
        gradient = cfg.get("gradient")
        if gradient is None:
            gradient = "pcd" if persistent else "cd"
        if persistent and gradient != "pcd":
            raise ConfigError(f"--persistent asks for PCD but --gradient is {gradient!r}; drop one of them")
        if gradient == "exact":
            return "rbm-exact-gradient", {}
        if gradient not in ("cd", "pcd"):
            raise ConfigError(f"unknown RBM gradient {gradient!r} in the saved config; expected cd, pcd or exact")
        return "contrastive-divergence", {"k": cfg.get("k", 1), "persistent": gradient == "pcd",
                                          "n_chains": cfg.get("n_chains", 100),
                                          "matmul_precision": cfg.get("matmul_precision", "full")}
    if family == "boltzmann":
        return "boltzmann-moments", {"estimator": cfg.get("gradient", "exact"), "k": cfg.get("k", 1),
                                     "n_chains": cfg.get("n_chains", 100),
                                     "mf_iterations": cfg.get("mf_iterations", 200)}
    if family == "mixture" and cfg.get("em"):
        return "em", {"smoothing": cfg.get("smoothing", 0.0), "weight_smoothing": cfg.get("weight_smoothing", 0.0),
                      "reseed": cfg.get("reseed", True), "min_mass": cfg.get("min_mass", 1e-3)}
    return "maximum-likelihood", {}


def rule_record(meta: dict) -> dict:
    """{"name", "settings"} of the rule a checkpoint's run learns with: its "rule" record, or for a checkpoint of
    an earlier version the rule derived from its model_config."""
    if "rule" in meta:
        record = meta["rule"]
        if record.get("name") == "elbo" and "kl_estimator" not in (record.get("settings") or {}):
            # written before the closed-form KL existed: those runs sampled the KL term
            record = {**record, "settings": {**(record.get("settings") or {}), "kl_estimator": "sampled"}}
        return record
    name, settings = rule_from_legacy_config(meta.get("model", ""), meta.get("model_config", {}))
    return {"name": name, "settings": settings}


def legacy_rule_state(tensors: dict[str, Tensor], prefix: str = "model.") -> dict[str, Tensor]:
    """The rule state kept in the model buffers of an earlier version's checkpoint: {"chains": ...} when the
    persistent chains had been started (chains_ready), {"magnetization": ...} for a mean-field estimator."""
    out = {}
    chains, ready = tensors.get(prefix + "chains"), tensors.get(prefix + "chains_ready")
    if chains is not None and chains.numel() and ready is not None and bool(ready):
        out["chains"] = chains
    mag = tensors.get(prefix + "mf_magnetization")
    if mag is not None and mag.numel():
        out["magnetization"] = mag
    return out


__all__ = ["legacy_rule_state", "rule_from_legacy_config", "rule_record"]
