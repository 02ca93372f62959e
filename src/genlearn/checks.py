"""The validation layer of settings: data specs, training and evaluation options, Python-API arguments.

Everything here runs BEFORE anything is allocated or written (no run folder is created before these checks pass),
and every failure is one ConfigError (a ValueError) or DataError naming the setting, the value and the fix; the
CLI prints it as one line `genlearn: error: ...` and exits 2. The rule for flags that would have no effect
(`--momentum` with `--optimizer gd`, `--gamma` with a constant schedule, `--monitor-ais-steps` on a family whose
NLL is monitored exactly, ...): they are refused, never silently ignored.

The declared constraints of data-spec settings live below the models, in genlearn.data.spec_check."""
from __future__ import annotations

import difflib
import math

from genlearn.errors import ConfigError, DataError
from genlearn.validate import check_memory, check_seed


# -- training options -------------------------------------------------------------------------------------------
#: flag -> (applies?, why not): a given flag that would have no effect under the effective settings is refused
def check_valid_monitoring(cfg, model, dataset) -> None:
    """--patience, --keep-best and --schedule plateau act on the monitored valid NLL: one ConfigError when the fit
    would monitor none (no valid split; an energy model whose exact log Z is too costly to monitor, without
    --monitor-ais-steps; a model without an encoder whose latent space is too large for quadrature), instead of
    flags that silently do nothing."""
    from genlearn.likelihood import QUADRATURE_MAX_DIM, monitors_exactly
    from genlearn.models.base import EnergyModel, LatentVariableModel

    uses = [flag for flag, on in (("--patience", cfg.patience is not None), ("--keep-best", cfg.keep_best),
                                  ("--schedule plateau", cfg.schedule == "plateau")) if on]
    if not uses:
        return
    if dataset.valid is None or dataset.valid.shape[0] == 0:
        why = "the data have no valid split (give one, e.g. DATA:valid=0.1)"
    elif isinstance(model, EnergyModel) and cfg.monitor_ais_steps is None and not monitors_exactly(model):
        why = (f"this {model.name}'s exact log Z is too costly to monitor every epoch: add --monitor-ais-steps S "
               "(its valid NLL by forward AIS)")
    elif (isinstance(model, LatentVariableModel) and not model.has_encoder
          and model.latent_dim > QUADRATURE_MAX_DIM):
        why = (f"this {model.name}'s latent space of {model.latent_dim} dimensions is too large for the quadrature "
               "its monitoring uses")
    else:
        return
    raise ConfigError(f"{', '.join(uses)} act(s) on the monitored valid NLL, but none would be monitored: {why}")


def check_training(cfg, given, model, resume: bool = False, rule=None, strict: bool = True) -> None:
    """Cross-checks of a TrainConfig the single fields cannot see. `given`: the names the user set (not the
    family's defaults). Refused: --epochs < 1, seeds outside [0, 2^63 - 1], a --gamma that is not in (0, 1], and
    every given flag that the effective settings would ignore (with `rule`, a LearningRule that sets the parameters
    itself, such as EM or the closed form: the optimizer's flags; with a one-pass rule, the closed form, and
    `strict` (settings the caller gave, not a resumed, refitted or recipe run's): the flags of iterative fits,
    --epochs > 1 among them)."""
    from genlearn.models.base import EnergyModel, LatentVariableModel

    if cfg.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {cfg.epochs} (a run of no epochs has nothing to fit)")
    check_seed(cfg.seed, "--seed")
    if cfg.schedule in ("exponential", "step") and not (0 < cfg.gamma <= 1):
        raise ConfigError(f"--gamma must be a decay factor in (0, 1] for the {cfg.schedule} schedule, got {cfg.gamma}")
    if cfg.schedule == "plateau" and not (0 < cfg.gamma < 1):
        raise ConfigError(f"--gamma must be a decay factor in (0, 1) for the plateau schedule, got {cfg.gamma}")
    given = set(given)
    ignored = []
    if "momentum" in given and cfg.optimizer != "momentum":
        ignored.append(("--momentum", f"applies to --optimizer momentum only (this fit uses {cfg.optimizer})"))
    if "batch_size" in given and cfg.optimizer == "gd":
        ignored.append(("--batch-size", "applies to --optimizer sgd, momentum or adam; gd uses the whole training "
                        "set"))
    if "gamma" in given and cfg.schedule not in ("exponential", "step", "plateau"):
        ignored.append(("--gamma", f"applies to --schedule exponential, step or plateau (this fit's schedule is "
                        f"{cfg.schedule})"))
    if "step_size" in given and cfg.schedule != "step":
        ignored.append(("--step-size", f"applies to --schedule step (this fit's schedule is {cfg.schedule})"))
    if "final_lr_fraction" in given and cfg.schedule not in ("geometric", "plateau"):
        ignored.append(("--final-lr-fraction", f"applies to --schedule geometric or plateau (this fit's schedule is "
                        f"{cfg.schedule})"))
    if "plateau_patience" in given and cfg.schedule != "plateau":
        ignored.append(("--plateau-patience", f"applies to --schedule plateau (this fit's schedule is "
                        f"{cfg.schedule})"))

    if "monitor_ais_steps" in given and cfg.monitor_ais_steps is not None:
        from genlearn.likelihood import monitors_exactly

        if not isinstance(model, EnergyModel):
            how = ("is monitored by importance sampling (--monitor-is-samples) or quadrature"
                   if isinstance(model, LatentVariableModel) else "is computed exactly")
            ignored.append(("--monitor-ais-steps", f"applies to energy models (RBMs, Boltzmann machines); the NLL "
                            f"of {model.name} {how}"))
        elif monitors_exactly(model):
            ignored.append(("--monitor-ais-steps", f"applies to energy models too large for an exact log Z; this "
                            f"{model.name}'s NLL is monitored exactly"))
    if "monitor_is_samples" in given and cfg.monitor_is_samples is not None and not (
            isinstance(model, LatentVariableModel) and getattr(model, "has_encoder", False)):
        ignored.append(("--monitor-is-samples", f"applies to latent-variable models with an encoder (vae); "
                        f"{model.name} has none"))
    if "monitor_ensemble" in given and cfg.monitor_ensemble and getattr(model, "ensemble_size", 1) <= 1:
        ignored.append(("--monitor-ensemble", f"applies to ensembles of masks/orderings; this {model.name} has one "
                        "member"))
    if rule is not None and not rule.uses_optimizer:
        moot = [k for k in OPTIMIZER_FLAGS if k in given]
        if moot:
            ignored.append((f"--{moot[0].replace('_', '-')}", f"applies to gradient learning; the {rule.name} rule of "
                            "this fit sets the parameters itself (no optimizer step)"))
    if rule is not None and rule.one_pass and strict:  # not for a resumed or refitted run's recorded settings
        iterative = [flag for flag, on in (
            ("--epochs", "epochs" in given and cfg.epochs > 1), ("--patience", cfg.patience is not None),
            ("--keep-best", cfg.keep_best), ("--tol", "tol" in given and cfg.tol is not None),
            ("--rel-tol", cfg.rel_tol is not None), ("--eval-every", "eval_every" in given and cfg.eval_every > 1))
            if on]
        if iterative:
            ignored.append((iterative[0], f"applies to iterative fits; the {rule.name} estimate is final after one "
                            "pass over the data (another epoch would compute it again)"))
    if ignored:
        flag, why = ignored[0]
        raise ConfigError(f"{flag} {why}; drop it or change the setting it depends on")


#: the training flags of the optimizer alone: refused beside a rule without optimizer steps (EM, closed form)
OPTIMIZER_FLAGS = ("optimizer", "lr", "momentum", "weight_decay", "schedule")


# -- family options that depend on another -----------------------------------------------------------------------
#: family -> (option, applies(config), what it applies to): a given option whose value differs from its default but
#: which the family's other options make ineffective is refused, like the training flags of check_training
DEPENDENT_OPTIONS = {
    "rbm": (("k", lambda c: c.negative_phase != "exact", "CD-k / PCD-k (--gradient cd or pcd); the exact gradient "
             "runs no Gibbs sweeps"),
            ("n_chains", lambda c: c.negative_phase == "pcd", "PCD (--persistent or --gradient pcd); CD starts "
             "its chains at the data"),
            ("matmul_precision", lambda c: c.negative_phase != "exact", "the CD/PCD products; the exact gradient "
             "enumerates in full precision")),
    "boltzmann": (("k", lambda c: c.gradient in ("gibbs", "pcd"), "--gradient gibbs or pcd"),
                  ("n_chains", lambda c: c.gradient == "pcd", "--gradient pcd"),
                  ("mf_iterations", lambda c: c.gradient in ("mean-field", "tap"), "--gradient mean-field or tap")),
    "mixture": tuple((name, lambda c: c.em, "EM: add --em") for name in
                     ("smoothing", "weight_smoothing", "reseed", "min_mass")),
    "fvsbn": (("init_seed", lambda c: c.order == "random", "--order random (the fixed order draws nothing)"),),
    "vae": (("pseudo_inputs", lambda c: c.prior == "vampprior", "--prior vampprior"),
            ("kl_estimator", lambda c: c.iw_samples == 1 and len(c.latent) == 1 and c.prior == "standard",
             "ELBO training (--iw-samples 1) of one latent layer with the standard prior (the KL in closed form); the "
             "IWAE bound has no separate KL term, and two layers or a VampPrior sample it")),
    "gan": (("temperature", lambda c: c.estimator == "relaxation", "--estimator relaxation"),),
    "made": (("mask_sampling", lambda c: c.masks > 1, "several masks (--masks K > 1)"),),
    "nade": (("matmul_precision", lambda c: c.order_agnostic, "order-agnostic training (--order-agnostic); a fixed "
              "order trains in full precision"),),
}


def check_dependent_options(family: str, options: dict, typed=()) -> None:
    """The family options `options` (those given) against each other: a seed option outside [0, 2^63 - 1], or an
    option set to other than its default where the others make it ineffective (DEPENDENT_OPTIONS), is one
    ConfigError naming the option and what it applies to. The options named in `typed` (flags the user typed on
    the command line) are refused there whatever their value; the others only off their default, since a
    recipe, a tuning trial or a saved config may spell out every option."""
    import dataclasses

    from genlearn.models.registry import get_spec

    spec = get_spec(family)
    config = spec.parse_options(options)  # types and ranges of each option alone
    for name in options:
        if name == "seed" or name.endswith("_seed"):
            check_seed(getattr(config, name), f"--{name.replace('_', '-')}")
    rows = DEPENDENT_OPTIONS.get(family, ())
    defaults = {f.name: f.default for f in dataclasses.fields(spec.config)}
    for name, applies, what in rows:
        if name in options and (name in typed or getattr(config, name) != defaults[name]) and not applies(config):
            raise ConfigError(f"--{name.replace('_', '-')} applies to {what}; drop it or change the setting it "
                              "depends on")


#: keys of `partition_options` (genlearn.evaluation.evaluate) and their lowest value
PARTITION_OPTIONS = {"steps": 1, "chains": 1, "ais_steps": 1, "ais_chains": 1, "iw_samples": 1, "train_iw_samples": 1,
                     "ais_rows": 0, "ais_leapfrog": 1, "bdmc_rows": 0, "burn_in": 0, "seed": 0, "reverse": None,
                     "ais_start": None}


#: the evaluation options of AIS over the states of an energy model (ignored by its exact or mean-field log Z)
AIS_OPTIONS = ("steps", "chains", "burn_in", "reverse")

#: the evaluation options of latent-variable models alone (importance sampling, AIS over z, BDMC)
LATENT_OPTIONS = ("iw_samples", "train_iw_samples", "ais_rows", "ais_steps", "ais_chains", "ais_leapfrog", "bdmc_rows",
                  "ais_start")


def check_evaluation(partition, options: dict | None, model=None) -> None:
    """`partition` one of genlearn.likelihood.PARTITION_METHODS, `options` known keys with integer values at least
    their minimum; on a model whose likelihood is exact (neither an energy nor a latent-variable model) a partition
    method other than auto/exact, or any option, is refused (it would be ignored)."""
    from genlearn.likelihood import PARTITION_METHODS

    if not isinstance(partition, str) or partition not in PARTITION_METHODS:
        raise ConfigError(f"partition must be one of {', '.join(PARTITION_METHODS)}, got {partition!r}")
    options = options or {}
    if not isinstance(options, dict):
        raise ConfigError(f"partition_options must be a dict (e.g. {{'steps': 1000}}), got {options!r}")
    for key, value in options.items():
        if key not in PARTITION_OPTIONS:
            raise ConfigError(f"unknown partition option {key!r}{_did_you_mean(key, PARTITION_OPTIONS)}; known: "
                              f"{', '.join(PARTITION_OPTIONS)}")
        if key == "seed":
            check_seed(value, "the evaluation seed")
        elif key == "reverse":
            if not isinstance(value, bool):
                raise ConfigError(f"partition option reverse must be true or false, got {value!r}")
        elif key == "ais_start":
            from genlearn.likelihood import AIS_STARTS

            if value not in AIS_STARTS:
                raise ConfigError(f"the AIS start (--ais-start) must be one of {', '.join(AIS_STARTS)}, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or value < PARTITION_OPTIONS[key]:
            raise ConfigError(f"partition option {key} must be an integer >= {PARTITION_OPTIONS[key]}, got {value!r}")
    if model is not None:
        from genlearn.models.base import EnergyModel, LatentVariableModel

        latent_only = sorted(k for k in options if k in LATENT_OPTIONS)
        if isinstance(model, LatentVariableModel) and partition not in ("auto", "ais"):
            raise ConfigError(f"--partition {partition} does not apply to a latent-variable model ({model.name}); use "
                              "auto (importance sampling or quadrature) or ais (AIS over z with a BDMC bracket)")
        if isinstance(model, LatentVariableModel) and options.get("ais_start") == "encoder" and not model.has_encoder:
            raise ConfigError(f"--ais-start encoder needs a model with an encoder q(z|x) (the vae family); "
                              f"{model.name} has none: use --ais-start prior")
        if isinstance(model, EnergyModel):
            from genlearn.likelihood import EXACT_UNITS
            from genlearn.models.boltzmann import BoltzmannMachine

            if latent_only:
                raise ConfigError(f"the evaluation option(s) {', '.join(latent_only)} apply to latent-variable models "
                                  f"(vae, gan); {model.name} is an energy model (use --ais-steps / --ais-chains)")
            if partition == "mean-field" and not isinstance(model, BoltzmannMachine):
                raise ConfigError(f"--partition mean-field is a bound for fully visible Boltzmann machines; "
                                  f"{model.name} offers exact or ais")
            units = int(model.exact_partition_size()[0])
            if partition == "exact" and units > EXACT_UNITS:
                raise ConfigError(f"--partition exact would enumerate 2^{units} states of {model.name} (at most "
                                  f"2^{EXACT_UNITS}); use --partition ais or auto")
        elif not isinstance(model, LatentVariableModel):
            if partition not in ("auto", "exact"):
                raise ConfigError(f"--partition {partition} applies to energy and latent-variable models; the "
                                  f"likelihood of {model.name} is exact (drop --partition)")
            extra = sorted(k for k in options if k != "seed")
            if extra:
                flags = ", ".join(_evaluation_flag(k) for k in extra)
                raise ConfigError(f"the evaluation option(s) {flags} apply to energy and latent-variable models; the "
                                  f"likelihood of {model.name} is exact (drop them)")


def moot_evaluation(partition: str, options: dict, model) -> tuple[list[str], str] | None:
    """Evaluation settings the model's method ignores, as (the keys, with "partition" for a moot --partition ais;
    one message naming them and why), or None: AIS options where an energy model's log Z is exact (by --partition
    exact or mean-field, or auto's enumeration); for a latent-variable model, importance samples without an
    encoder, and every option but the seed (and --partition ais) where quadrature over z is exact. `genlearn fit`
    and `eval` refuse those the user gave; a resumed, refitted or recipe run drops them (older runs recorded them:
    they had no effect)."""
    from genlearn.likelihood import choose_method
    from genlearn.models.base import EnergyModel, LatentVariableModel

    options = options or {}
    if isinstance(model, EnergyModel):
        ais_only = sorted(k for k in options if k in AIS_OPTIONS)
        method = choose_method(model, "evaluate") if partition == "auto" else partition
        if ais_only and method != "ais":
            units = int(model.exact_partition_size()[0])
            how = (f"by enumeration (auto: 2^{units} states are affordable)" if partition == "auto"
                   else f"by --partition {partition}")
            return ais_only, (f"the evaluation option(s) {', '.join(_evaluation_flag(k) for k in ais_only)} apply to "
                              f"AIS; this {model.name}'s log Z is computed {how}: drop them, or give --partition ais "
                              "to estimate it by AIS")
    if not isinstance(model, LatentVariableModel):
        return None
    if not model.has_encoder:
        samples = sorted(k for k in options if k in ("iw_samples", "train_iw_samples"))
        if samples:
            return samples, (f"the evaluation option(s) {', '.join(_evaluation_flag(k) for k in samples)} set the "
                             f"importance samples of q(z|x); {model.name} has no encoder: drop them")
    if choose_method(model) == "quadrature":
        keys = [k for k in sorted(options) if k != "seed"] + (["partition"] if partition == "ais" else [])
        if keys:
            flags = [_evaluation_flag(k) if k != "partition" else "--partition ais" for k in keys]
            return keys, (f"{', '.join(flags)} set(s) AIS over z; this {model.name}'s likelihood is computed by "
                          f"quadrature over its {model.latent_dim} latent dimension(s), exact up to the grid: drop "
                          "it (or use --partition auto)")
    return None


def _evaluation_flag(key: str) -> str:
    """The command-line flag of a partition_options key: steps -> --ais-steps, chains -> --ais-chains, iw_samples
    -> --iw-samples (`genlearn fit`: --eval-iw-samples), ais_rows -> --ais-rows..."""
    if key == "iw_samples":
        return "--iw-samples (in genlearn fit: --eval-iw-samples)"
    return "--" + {"steps": "ais_steps", "chains": "ais_chains"}.get(key, key).replace("_", "-")


# -- Python API arguments ---------------------------------------------------------------------------------------
def _did_you_mean(name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_known_options(unknown, known, what: str) -> None:
    """An option name that is neither a training setting nor an option of the model: one ConfigError with the
    closest known name."""
    unknown = sorted(unknown)
    if unknown:
        name = unknown[0]
        raise ConfigError(f"unknown option {name!r} for {what}{_did_you_mean(name, known)}; known options: "
                          f"{', '.join(sorted(known))}")


def check_model_argument(model) -> None:
    from genlearn.models.base import GenerativeModel

    if isinstance(model, str) or isinstance(model, GenerativeModel):
        return
    raise ConfigError(f"model must be a family name (e.g. 'product-bernoulli'; see `genlearn models`) or a "
                      f"GenerativeModel, got {type(model).__name__} {model!r}"[:300])


def dataset_from_array(data):
    """A numpy array or torch tensor as a Dataset: 2-D (examples x features); all 0/1 -> kind "binary", else
    kind "real" (float32); 1-D non-negative integers -> kind "categorical". Rows are shuffled with seed 0 and cut
    0.8 / 0.1 / 0.1 into train / valid / test, as for a data file without splits."""
    import numpy as np
    import torch

    from genlearn.data.dataset import Dataset, split_arrays
    from genlearn.validate import check_finite, check_not_empty

    if isinstance(data, np.ndarray):
        if data.dtype == object or data.dtype.kind not in "biuf":
            raise DataError(f"data array has dtype {data.dtype}; numeric 0/1 arrays are needed")
        x = torch.from_numpy(np.ascontiguousarray(data))
    else:
        x = data.detach().cpu()
        if x.dtype.is_complex:
            raise DataError(f"data tensor has dtype {x.dtype}; numeric 0/1 tensors are needed")
    if x.dtype == torch.bool:
        x = x.to(torch.uint8)
    check_not_empty(x, "data")
    check_finite(x, "data")
    integral = not torch.is_floating_point(x) or bool((x == torch.round(x)).all())
    binary = bool(((x == 0) | (x == 1)).all())
    if x.ndim == 1 and integral and bool((x >= 0).all()) and not binary:
        kind, x = "categorical", x.to(torch.int64)
    else:
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        if x.ndim != 2:
            raise DataError(f"data must be a 2-D array (examples x features), got shape {tuple(x.shape)}")
        kind, x = ("binary" if binary else "real"), x.to(torch.float32)
    if x.shape[0] < 3:
        train, valid, test = x, None, None
    else:
        train, valid, test = split_arrays(x, (0.8, 0.1, 0.1), seed=0)
        valid = valid if valid.shape[0] else None
        test = test if test.shape[0] else None
    n_side = math.isqrt(x.shape[1]) if x.ndim == 2 else 0
    return Dataset(name="array", kind=kind, train=train, valid=valid, test=test,
                   n_categories=int(x.max()) + 1 if kind == "categorical" else None,
                   image_shape=(n_side, n_side) if n_side >= 2 and n_side * n_side == x.shape[1] else None,
                   settings={"source": f"in-memory {type(data).__module__.split('.')[0]} array",
                             "splits": "shuffled (seed 0) into fractions 0.8/0.1/0.1"})


def as_dataset(data, data_dir=None, model=None):
    """What runs.fit accepts as data: a Dataset, a spec string or path, a numpy array or torch tensor; anything
    else is one ConfigError naming what is accepted. An array for a family (`model`, a name) of binary data only
    must hold 0/1 values: a DataError names the first other value, its row and column (0-based, as numpy)."""
    import os

    import numpy as np
    import torch

    from genlearn.data.dataset import Dataset
    from genlearn.data.registry import load_dataset

    if isinstance(data, Dataset):
        return data
    if isinstance(data, (np.ndarray, torch.Tensor)):
        dataset = dataset_from_array(data)
        if dataset.kind == "real" and isinstance(model, str):
            from genlearn.models.registry import get_spec

            kinds = get_spec(model).data_kinds
            if "categorical" in kinds:
                raise DataError(f"data for model {model!r} must be a 1-D array of category indices 0..K-1 "
                                "(non-negative integers), e.g. np.array([0, 2, 1, 0])")
            if "real" not in kinds:
                x = torch.as_tensor(data)
                x = x.reshape(-1, 1) if x.ndim == 1 else x
                r, c = (int(i) for i in torch.nonzero((x != 0) & (x != 1))[0].tolist()[:2])
                raise DataError(f"data must be binary (0/1) for model {model!r} but the array holds {x[r, c].item():g} "
                                f"at row {r}, column {c}; binarize it first (e.g. (x > 0.5).astype(int))")
        return dataset
    if isinstance(data, (str, os.PathLike)):
        spec = file_spec_for(str(data), model)
        try:
            return load_dataset(spec, data_dir)
        except DataError as exc:
            if not _for_categorical(model):
                raise
            _explain_categorical(spec, data_dir, model, exc)
            raise
    raise ConfigError(f"data must be a data set name or spec (e.g. 'coin:p=0.3'), a path, a Dataset, or a 2-D 0/1 "
                      f"numpy array or torch tensor, got {type(data).__name__} {data!r}"[:300])


def _explain_categorical(spec: str, data_dir, model: str, exc: Exception) -> None:
    """A file a categorical family could not read: when it reads as real values (binarize=none), one DataError
    saying what it holds against what the family takes; otherwise nothing (the reader's own error stands)."""
    from genlearn.data.registry import load_dataset
    from genlearn.data.sources import parse_spec

    name, settings = parse_spec(spec)
    if "binarize" in settings:
        return
    try:
        rows = load_dataset(f"{spec}{',' if settings else ':'}binarize=none", data_dir).train
    except (DataError, ConfigError):
        return
    whole = rows.flatten()
    integers = bool(((whole == whole.round()) & (whole >= 0)).all())
    what = (f"{rows.shape[1]} columns" if rows.ndim == 2 and rows.shape[1] > 1
            else "values that are not non-negative integers" if not integers else "values it cannot read as outcomes")
    raise DataError(f"{name} holds {what}, but model {model!r} takes one column of outcomes 0..K-1 (a 1-D .npy "
                    "array, or a text file with one integer per line)") from None


def _for_categorical(model) -> bool:
    from genlearn.models.registry import get_spec

    return isinstance(model, str) and get_spec(model).data_kinds == ("categorical",)


def file_spec_for(spec: str, model) -> str:
    """The data spec a family reads a file with: a family of real data alone (e.g. gaussian) keeps a file's values
    as they are (`PATH:binarize=none`) unless the spec says how to binarize; any other spec is returned as given.
    The run records this spec, so that `genlearn eval` reads the file the same way."""
    from pathlib import Path

    from genlearn.data.sources import SOURCES, parse_spec
    from genlearn.models.registry import get_spec

    if not isinstance(model, str) or get_spec(model).data_kinds != ("real",):
        return spec
    name, settings = parse_spec(spec)
    if name in SOURCES or "binarize" in settings or not Path(name).exists():
        return spec
    return f"{spec}{',' if settings else ':'}binarize=none"


# -- after training ---------------------------------------------------------------------------------------------
#: the monitored objective of each model kind, in order of preference (nats per example)
_PROGRESS_KEYS = ("train_nll", "train_nll_member", "train_nll_ais", "train_neg_elbo")


def check_progress(history: list, out_dir=None) -> None:
    """Divergence that stayed finite: the last monitored train NLL far worse than the initial one (more than
    max(1, 0.5 |initial|) nats per example above it) is a NumericalError, not a finished run."""
    from genlearn.errors import NumericalError

    for key in _PROGRESS_KEYS:
        values = [(r.get("epoch"), r[key]) for r in history if isinstance(r.get(key), (int, float))]
        if len(values) >= 2:
            (e0, first), (e1, last) = values[0], values[-1]
            if math.isfinite(first) and (not math.isfinite(last) or last - first > max(1.0, 0.5 * abs(first))):
                kept = f"; the checkpoint of the last epoch is in {out_dir}" if out_dir is not None else ""
                raise NumericalError(f"training diverged: the {key.replace('_', ' ')} rose from {first:.4g} (epoch "
                                     f"{e0}) to {last:.4g} nats per example (epoch {e1}){kept}. Fit again with a "
                                     "smaller learning rate (--lr; --overwrite replaces this run)")
            return


def layer_width(model) -> int:
    """Units of the model's widest layer: the largest dimension of its parameters. Buffers are left out: an RBM's
    stored rows for reverse AIS or a table's patterns are not layers a sampled row passes through."""
    return max((int(d) for p in model.parameters() for d in p.shape), default=0)


def check_sample_count(n, n_features: int | None = None, what: str = "-n", width: int = 0) -> int:
    """A positive integer number of samples whose float32 rows (and their text), and one float32 activation per
    row and unit of the model's widest layer (`width`, layer_width), fit in memory."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{what} must be a positive integer number of samples, got {n!r}")
    if n_features is not None:
        layer = f" through a layer of {width} units" if width > n_features else ""
        check_memory(n * n_features * 4 * 4 + n * width * 4, f"{n} samples of {n_features} features{layer}",
                     f"ask for fewer ({what})")
    return n


def _training_copies(optimizer: str) -> int:
    """Tensors of the size of the parameters that a fit holds besides the parameters themselves: their gradients
    and the optimizer's state (momentum: a velocity; adam: two moments; lbfgs: LBFGS_HISTORY pairs of differences
    and three vectors)."""
    from genlearn.learning.convergence import LBFGS_HISTORY

    return 1 + {"momentum": 1, "adam": 2, "lbfgs": 2 * LBFGS_HISTORY + 3}.get(optimizer, 0)


def fit_bytes(size, optimizer: str) -> int:
    """Bytes a fit by `optimizer` holds for a model of registry.ModelSize `size`: its parameters, their gradients and
    the optimizer's state (_training_copies), and its buffers."""
    return size.parameter_bytes * (1 + _training_copies(optimizer)) + size.buffer_bytes


def check_model_memory(name: str, dataset, options: dict, train: dict) -> None:
    """Refuse, before the model is built, a family `name` whose parameters for `dataset` under `options`, with
    their gradients and the state of the optimizer of the training settings `train`, need more memory than the
    machine has: `fit_bytes` of the model's size on the meta device (registry.model_size). A lower bound of what
    the fit takes (activations and data come on top), so a refused fit would surely not fit. The message names the
    options that set the model's size (those whose default gives another number of parameters) and the data's
    width. A family whose step's activations can outgrow its parameters (ModelSpec.step_memory, e.g. the gan's
    packed critic inputs) has them checked first, for the batch rows of `train` (its batch_size, at most the
    training rows)."""
    import dataclasses

    from genlearn.learning.trainer import TrainConfig
    from genlearn.models.registry import get_spec, model_size
    from genlearn.validate import machine_memory

    default = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "optimizer")
    optimizer = train.get("optimizer") or default
    spec = get_spec(name)
    if spec.step_memory is not None:
        rows = len(dataset.train)
        batch = train.get("batch_size")
        check_memory(*spec.step_memory(dataset, spec.parse_options(options), min(batch or rows, rows)))
    size = model_size(name, dataset, **options)
    nbytes = fit_bytes(size, optimizer)
    if nbytes <= machine_memory():
        return
    config = spec.parse_options(options)

    def sizes(k: str) -> bool:  # option k changes the number of parameters (its default gives another)
        try:
            return model_size(name, dataset, **{**options, k: None}).parameters != size.parameters
        except ConfigError:
            return False

    large = [k for k, v in options.items() if v is not None and sizes(k)]
    flags = [f"--{k.replace('_', '-')}" for k in large]
    given = "".join(f" {f} {_flag_value(getattr(config, k))}" for f, k in zip(flags, large))
    check_memory(nbytes, f"model {name!r}{' with' + given if given else ''} on {dataset.n_features} features "
                 f"({size.parameters:,} parameters, their gradients and {optimizer} state)",
                 f"choose a smaller {', '.join(flags)} or fewer features" if flags
                 else "choose fewer features or a smaller family")


def _flag_value(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


__all__ = ["DEPENDENT_OPTIONS", "OPTIMIZER_FLAGS", "PARTITION_OPTIONS", "as_dataset", "check_dependent_options",
           "check_evaluation", "check_fit_arguments", "check_fit_paths", "check_known_options",
           "check_model_argument", "check_progress", "check_valid_monitoring", "check_sample_count", "check_training",
           "dataset_from_array", "layer_width"]


def check_fit_paths(out=None, data_dir=None, callbacks=None, recipe=None) -> None:
    """genlearn.fit's other arguments by type: `out` and `data_dir` paths (str or os.PathLike), `callbacks` a list
    of callables f(trainer, record), `recipe` a dict {"name", "overrides", "evaluation"}; one ConfigError naming the
    argument."""
    from genlearn.validate import check_path_argument

    for name, value in (("out", out), ("data_dir", data_dir)):
        check_path_argument(value, name)
    if callbacks is not None and (isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__")
                                  or not all(callable(c) for c in callbacks)):
        raise ConfigError(f"callbacks must be a list of functions f(trainer, record), got {callbacks!r}"[:300])
    if recipe is not None and not (isinstance(recipe, dict) and isinstance(recipe.get("name"), str)):
        raise ConfigError(f"recipe must be a dict {{'name': ..., 'overrides': {{...}}}} (genlearn.recipes records it); "
                          f"to fit a recipe use genlearn.recipes.load_recipe(NAME).fit_kwargs(), got {recipe!r}"[:300])


def check_fit_arguments(model, data, train: dict, model_options: dict, partition, partition_options,
                        resume: bool = False) -> None:
    """genlearn.fit's arguments before anything is loaded: the model (a family name or a GenerativeModel), the
    data's type, option names (an unknown one with its closest known name), the evaluation settings."""
    import dataclasses
    import os

    import numpy as np
    import torch

    from genlearn.data.dataset import Dataset
    from genlearn.learning.trainer import TrainConfig

    if not resume:
        check_model_argument(model)
        if not isinstance(data, (str, os.PathLike, Dataset, np.ndarray, torch.Tensor)):
            as_dataset(data)  # raises the ConfigError listing what data may be
    elif data is not None and not isinstance(data, (str, os.PathLike, Dataset)):
        as_dataset(data)
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    if not resume and isinstance(model, str):
        from genlearn.models.registry import get_spec

        spec = get_spec(model)
        model_names = {f.name for f in dataclasses.fields(spec.config)}
        check_known_options(set(model_options) - model_names, train_names | model_names, f"model {model!r}")
        check_dependent_options(model, model_options)
    elif model_options:
        what = "a resumed run (its model options are recorded)" if resume else "a model instance"
        check_known_options(set(model_options), train_names, what)
    check_evaluation(partition, partition_options)


# -- genlearn sample / kl ---------------------------------------------------------------------------------------
#: `genlearn sample --out FILE`: what each extension is written as
SAMPLE_FORMATS = {".png": "a grid of images", ".csv": "comma-separated rows", ".txt": "comma-separated rows"}


def check_sample_args(n, out, seed, steps, overwrite: bool = False) -> None:
    """`genlearn sample` settings that need no run: -n, --out (by extension: .png, .csv or .txt; not an existing
    file unless --overwrite; missing folders are made when it is written, as `report --out` does, so none of its
    folders may be a file), --seed, --steps."""
    from pathlib import Path

    from genlearn.errors import RunError

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"-n must be a positive number of samples, got {n!r}")
    check_seed(seed, "--seed")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"--steps must be a positive number of Gibbs sweeps, got {steps!r}")
    if out is not None:
        out = Path(out)
        if out.is_dir():
            raise ConfigError(f"--out {out} is a folder; give a file in it, e.g. {out / 'samples.csv'}")
        if out.suffix.lower() not in SAMPLE_FORMATS:
            shown = ", ".join(f"{k} ({v})" for k, v in SAMPLE_FORMATS.items())
            raise ConfigError(f"--out {out}: cannot write samples as {out.suffix or 'a file without extension'}; "
                              f"use {shown}")
        if out.exists() and not overwrite:
            raise RunError(f"{out} exists; choose another --out or pass --overwrite")
        above = next((a for a in out.parents if a.exists()), None)
        if above is not None and not above.is_dir():
            raise ConfigError(f"--out {out}: {above} is a file, not a folder; choose another --out")


def check_sample_model(n: int, model, steps) -> None:
    """`genlearn sample` settings against the run's model: --steps only for models sampled by MCMC (whose sample()
    takes steps), and the memory of n rows (and of their activations in the model's widest layer)."""
    import inspect

    if steps is not None and "steps" not in inspect.signature(model.sample).parameters:
        raise ConfigError(f"--steps applies to models sampled by Gibbs sweeps (rbm, boltzmann); {model.name} draws "
                          "exact samples: drop --steps")
    check_sample_count(n, model.n_features, width=layer_width(model))


def kl_result(estimate) -> dict:
    """`genlearn kl` output, valid JSON: an infinite KL (q = 0 where p > 0) is "kl": null with "kl_infinite": true
    (JSON has no Infinity)."""
    value = estimate.value
    infinite = isinstance(value, float) and math.isinf(value)
    out = {"kl": None if infinite or (isinstance(value, float) and math.isnan(value)) else value,
           **estimate.to_dict(), "units": "nats", "kl_infinite": infinite}
    if infinite:
        out["note"] = "D_KL(P||Q) is +infinity: Q gives probability 0 to an outcome that P gives probability > 0"
    return out
