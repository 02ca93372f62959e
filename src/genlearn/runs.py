"""A fitted run on disk, and the Python API that mirrors `genlearn fit` / `genlearn eval`.

A run folder holds checkpoint.safetensors + checkpoint.json (written atomically every epoch: parameters,
optimizer, RNG and history, for --resume), model.safetensors (the final parameters), metrics.json and plots."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import save_file

from genlearn.data.dataset import Dataset
from genlearn.data.registry import load_dataset
from genlearn.learning.devices import keeps_torch_rng
from genlearn.errors import ConfigError, DataError, NumericalError, RunError
from genlearn.learning import checkpoint as ckpt
from genlearn.learning.convergence import metrics as convergence_metrics
from genlearn.learning.legacy import rule_record
from genlearn.learning.lock import LOCK_FILE, locked_out
from genlearn.learning.rules import LearningRule, make_rule, rule_from_record
from genlearn.learning.trainer import TrainConfig, Trainer
from genlearn.models.registry import build_from_config, build_model, get_spec, rule_for

MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
#: the plots of latent-variable models (write_plots)
LATENT_PLOTS = ("reconstructions.png", "latent_manifold.png", "latent_encodings.png")
OWN_FILES = (ckpt.TENSORS, ckpt.META, MODEL_FILE, METRICS_FILE, "learning_curve.png", "samples.png", *LATENT_PLOTS,
             "diverged.json")


@dataclass
class Run:
    """A fitted model with its metrics (and the folder it lives in, when it was saved)."""

    model: object
    metrics: dict
    dir: Path | None = None
    dataset: Dataset | None = None
    #: the learning rule the model was trained with (with its final state), when the run was fitted here
    rule: LearningRule | None = None

    def log_prob(self, x):
        """log P(x) per row, nats. Exact for models with an exact log_prob. For a latent-variable model (VAE),
        whose log P(x) is intractable, an ESTIMATE: genlearn.likelihood.log_likelihoods, importance sampling with
        the encoder q(z|x) as proposal (likelihood.IS_SAMPLES = 5000 samples per row, seed 0; float64), which
        under-estimates log P(x) in expectation (E[log P^(x)] <= log P(x))."""
        import numpy as np

        from genlearn.models.base import LatentVariableModel

        if not isinstance(x, (torch.Tensor, np.ndarray, list, tuple)):
            raise DataError(f"log_prob takes rows as a tensor, a numpy array or a list, got {type(x).__name__} "
                            f"{x!r}"[:200])
        if isinstance(self.model, LatentVariableModel):
            from genlearn.likelihood import log_likelihoods

            return log_likelihoods(self.model, x)[0]
        with torch.no_grad():  # numbers, not a graph to differentiate
            return self.model.log_prob(self.model.check_input(x))

    def sample(self, n: int, seed: int | None = None, **kwargs):
        """n rows drawn from the model: fresh random rows on every call, the same rows for the same `seed`.
        `kwargs` go to the model's sample (e.g. steps=, the Gibbs sweeps of an RBM or a Boltzmann machine)."""
        import inspect
        import operator

        from genlearn.checks import check_sample_count, layer_width
        from genlearn.validate import check_seed

        if not isinstance(n, bool) and hasattr(n, "__index__"):
            n = operator.index(n)  # numpy and 0-d torch integers too
        check_sample_count(n, self.model.n_features, "n", width=layer_width(self.model))
        accepted = set(inspect.signature(self.model.sample).parameters) - {"self", "n", "generator"}
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            takes = f"it takes {', '.join(sorted(accepted))}" if accepted else "it takes none"
            raise ConfigError(f"{', '.join(unknown)} does not apply to sampling model {self.model.name!r} ({takes})")
        generator = torch.Generator()
        if seed is None:
            generator.seed()  # a non-deterministic seed
        else:
            generator.manual_seed(check_seed(seed, "seed"))
        return self.model.sample(n, generator=generator, **kwargs)


def _split_kwargs(kwargs: dict) -> tuple[dict, dict]:
    names = {f.name for f in fields(TrainConfig)}
    train = {k: v for k, v in kwargs.items() if k in names and v is not None}
    model = {k: v for k, v in kwargs.items() if k not in names}
    return train, model


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; give a folder")
    if out.exists() and any(p.name != LOCK_FILE for p in out.iterdir()):
        if not overwrite:
            raise RunError(f"{out} exists and is not empty; choose another --out, pass --overwrite to replace "
                           "the run in it, or --resume to continue it")
        foreign = [p.name for p in out.iterdir() if p.name not in OWN_FILES and not p.name.startswith(".")]
        if foreign and not (out / ckpt.META).exists():
            raise RunError(f"{out} holds files that are not a genlearn run ({', '.join(sorted(foreign)[:3])}...); "
                           "refusing to write there even with --overwrite")
        from genlearn.learning.run_folder import supersede

        supersede(out)  # the old run's files go before the new run writes: never a mix of the two
    out.mkdir(parents=True, exist_ok=True)


def _rule_for(model_name: str, options: dict) -> LearningRule:
    """The learning rule family `model_name` learns with under these options (the family's ModelSpec.rule)."""
    name, settings = rule_for(model_name, **options)
    return make_rule(name, settings)


def _as_rule(rule) -> LearningRule:
    """A LearningRule from what `fit(rule=...)` accepts: a LearningRule, a registered name, or (name, settings)."""
    if isinstance(rule, LearningRule):
        return rule
    if isinstance(rule, str):
        return make_rule(rule)
    if isinstance(rule, (tuple, list)) and len(rule) == 2 and isinstance(rule[0], str):
        return make_rule(rule[0], rule[1])
    raise ConfigError(f"rule must be a LearningRule, a rule name or (name, settings), got {rule!r}")


@locked_out  # one writer per run folder: a second process writing `out` is refused with the holder's PID
@keeps_torch_rng  # the Trainer seeds torch's global generator: the caller's stream is as it was after the fit
def fit(model, data, *, out=None, overwrite: bool = False, resume: bool = False, data_dir=None,
        partition: str = "auto", partition_options: dict | None = None, callbacks=None, plots: bool = True,
        recipe: dict | None = None, rule=None, data_spec: str | None = None, device=None, init_from=None,
        **kwargs) -> Run:
    """Fit `model` (a CLI name such as "product-bernoulli", or a GenerativeModel) to `data` (a spec such as
    "coin:p=0.3,n=1000", a path, or a Dataset) by minimising D_KL(Q^||P_theta).

    Keyword arguments are TrainConfig fields (epochs, lr, optimizer, batch_size, ...) or model options
    (hidden, components, k, em, ...). How the model learns is a learning rule (genlearn.learning.rules): for a
    family name it comes from the family's options (e.g. k, persistent for an RBM, em for a mixture); for a model
    instance pass `rule` (a LearningRule, a rule name, or (name, settings); default: the rule its family learns
    with under default options, e.g. CD-1 for an RBM, else "maximum-likelihood").
    `partition` / `partition_options` say how log Z of an energy model is obtained
    for the final metrics (auto = exact when enumerable, else AIS; e.g. {"steps": 100000}). With `out`, the run is
    checkpointed there every epoch; `resume=True` continues the run in `out` exactly where it stopped (pass a larger
    `epochs` to train longer). `recipe` ({"name", "overrides", "evaluation"}) is recorded in the run when the
    settings came from a recipe (genlearn.recipes). A resumed run continues with the rule recorded in its
    checkpoint, and is evaluated as its first fit was (the partition and partition_options recorded in its
    checkpoints; a recipe run of an earlier version as its recipe says, `recipe_evaluation`) unless partition /
    partition_options are given. `data_spec`: the spec recorded in the run when `data` is a Dataset loaded from one
    (so that `genlearn eval DIR` can reload it). `init_from`: a run folder of the same family and architecture whose
    parameters (the final ones of a finished run, else its last checkpoint's) this new run starts from instead of
    its own initialisation, e.g. IWAE-k training continued from an ELBO-trained VAE; recorded in the run."""
    t_start = time.perf_counter()
    train_kwargs, model_options = _split_kwargs(kwargs)
    # `device`: auto, cpu, cuda, cuda:N, mps (learning.devices); launched by torchrun with several processes the
    # fit is data-parallel (learning.distributed): rank 0 writes the run folder, every rank scores its rows of the
    # final metrics
    from genlearn.learning.distributed import DataParallel

    parallel, device = DataParallel.from_env(device)
    if parallel is not None and not parallel.is_writer:
        train_kwargs["progress"] = False
    from genlearn import checks  # the arguments' types, names and ranges, before anything is loaded or written

    checks.check_fit_paths(out, data_dir, callbacks, recipe)
    for name, value in (("overwrite", overwrite), ("resume", resume), ("plots", plots)):
        if not isinstance(value, bool):  # overwrite="no" would be true: a run replaced that the user meant to keep
            raise ConfigError(f"{name} must be True or False, got {type(value).__name__} {value!r}"[:200])
    if init_from is not None:
        from genlearn.validate import check_path_argument

        check_path_argument(init_from, "init_from")
        if resume:
            raise ConfigError("--resume continues a run from its own checkpoint; --init-from starts a new run from "
                              "another run's parameters: give one of them")
        if out is not None and Path(out).resolve() == Path(init_from).resolve():
            raise ConfigError(f"--init-from {init_from} is also --out: the new run would replace the one it starts "
                              "from; give another --out")
    out = Path(out) if out is not None else None
    checks.check_fit_arguments(model, data, train_kwargs, model_options, partition, partition_options, resume)
    if resume:
        if out is None:
            raise ConfigError("resume needs the run folder (--resume DIR / out=DIR)")
        if overwrite:
            raise ConfigError("--overwrite replaces a run, --resume continues it: give one of them")
        from genlearn.learning.run_folder import read_checkpoint

        tensors, meta = read_checkpoint(out, build=True)  # validated: one RunError naming a damaged file
        dataset = data if isinstance(data, Dataset) else load_dataset(
            data or meta["data_spec"], data_dir if data_dir is not None else meta.get("data_dir"))
        if data is None:  # a refit's rows are its spec's train and valid rows together (genlearn.refit)
            from genlearn.data.refit_rows import as_trained

            dataset = as_trained(meta, dataset)
            from genlearn.data.refit_rows import without_test
            from genlearn.learning.run_folder import fingerprint

            # a tune trial was fitted without the test split (recorded since 2026-12-06; earlier trials are known by
            # the fingerprint of their data without it)
            if meta.get("test_held_out") or (meta.get("data_fingerprint") not in (None, fingerprint(dataset))
                                             and fingerprint(without_test(dataset)) == meta["data_fingerprint"]):
                dataset = without_test(dataset)
        from genlearn.learning.run_folder import check_resume_data

        check_resume_data(out, meta, data, dataset)  # --resume DIR --data OTHER is refused
        model_name = meta["model"]
        model_obj = build_from_config(model_name, meta["model_config"])
        if rule is not None:
            raise ConfigError("a resumed run continues with the learning rule recorded in its checkpoint; "
                              "do not pass rule=")
        rule_obj = rule_from_record(rule_record(meta))
        if partition == "auto" and not partition_options:  # evaluated as the run's first fit said
            if isinstance(meta.get("evaluation"), dict):
                partition_options = dict(meta["evaluation"])
                partition = partition_options.pop("partition", "auto")
            elif meta.get("recipe"):  # runs recorded before their evaluation was
                partition, partition_options = recipe_evaluation(meta["recipe"], meta.get("model"))
        _check_resume_settings(meta["train_config"], train_kwargs)
        cfg_dict = {**meta["train_config"], **train_kwargs}
        run_meta = {k: meta[k] for k in ("model", "dataset", "data_spec", "data_dir", "model_options", "recipe",
                                         "init_from", "run_id", "data_fingerprint", "test_held_out",
                                         "training_record") if k in meta}
    else:
        dataset = checks.as_dataset(data, data_dir, model)
        if isinstance(data, str):  # the spec the file was read with (checks.file_spec_for), for eval and refit,
            from genlearn.data.registry import recorded_spec

            data = recorded_spec(checks.file_spec_for(data, model))  # a relative path made absolute
        if isinstance(model, str):
            model_name = model
            # the family's defaults, with its fit to convergence (e.g. L-BFGS to a tolerance) unless the user
            # chose the optimizer (genlearn.models.registry.ModelSpec.training_defaults)
            defaults = get_spec(model).training_defaults(model_options, train_kwargs)
            # the parameters and optimizer state sized before anything is allocated (too large: a ConfigError)
            checks.check_model_memory(model, dataset, model_options, {**defaults, **train_kwargs})
            model_obj = build_model(model, dataset, **model_options)
            if rule is None:
                rule_obj = _rule_for(model, model_options)
            else:
                rule_obj = _as_rule(rule)
                default = rule_for(model)
                if rule_for(model, **model_options) != default:
                    given = sorted(k for k, v in model_options.items() if rule_for(model, **{k: v}) != default)
                    raise ConfigError(f"the learning option(s) {', '.join(given) or 'given'} of {model!r} and rule= "
                                      "both say how it learns; give one of them")
        else:
            if model_options:
                raise ConfigError(f"unknown setting(s) {', '.join(sorted(model_options))} for a model instance")
            model_obj, model_name, defaults = model, model.name, {}
            rule_obj = _default_rule(model) if rule is None else _as_rule(rule)
        cfg_dict = {**defaults, **train_kwargs}
        run_meta = {"model": model_name, "dataset": dataset.name,
                    "data_spec": data if isinstance(data, str) else data_spec,
                    "data_dir": None if data_dir is None else str(data_dir),
                    "model_options": {k: v for k, v in model_options.items() if v is not None}}
        if recipe is not None:
            run_meta["recipe"] = recipe
        if isinstance(data, Dataset) and "test_held_out" in data.settings:  # a tune trial: --resume drops it too
            run_meta["test_held_out"] = True
        if init_from is not None:
            run_meta["init_from"] = start_from_run(model_obj, model_name, init_from)
        if out is not None:  # the run id every file of the run carries, and the data's fingerprint
            from genlearn.learning.run_folder import new_identity

            run_meta.update(new_identity(dataset))
    # the final evaluation's settings, in every checkpoint: a --resume without them evaluates the same way
    run_meta["evaluation"] = {"partition": partition, **(partition_options or {})}
    for split in ("train", "valid", "test"):
        x = getattr(dataset, split)
        if x is not None:
            model_obj.check_input(x)
    cfg = TrainConfig.from_dict(cfg_dict)
    if resume and train_kwargs.get("epochs") is not None and cfg.epochs < int(meta.get("epoch") or 0):
        raise ConfigError(f"--epochs {cfg.epochs} is fewer than the {meta['epoch']} epochs the run in {out} has done; "
                          f"give --epochs above {meta['epoch']} to train longer, or drop --epochs")
    if resume and cfg.epochs <= int(meta.get("epoch") or 0) and _intact_and_finished(out):
        raise ConfigError(f"the run in {out} is complete ({meta['epoch']} of {cfg.epochs} epochs): nothing to resume; "
                          f"give --epochs above {meta['epoch']} to train longer, or `genlearn eval {out}` to "
                          "evaluate it again")
    checks.check_training(cfg, train_kwargs, model_obj, resume, rule=rule_obj, strict=not resume and recipe is None)
    if not resume:
        checks.check_valid_monitoring(cfg, model_obj, dataset)
    checks.check_evaluation(partition, partition_options, model_obj)
    moot = checks.moot_evaluation(partition, partition_options, model_obj)
    if moot is not None:  # refused where the caller gave them; dropped from a resumed run's or a recipe's record
        keys, message = moot
        if not resume and recipe is None:
            raise ConfigError(message)
        partition_options = {k: v for k, v in (partition_options or {}).items() if k not in keys}
        partition = "auto" if "partition" in keys else partition
        run_meta["evaluation"] = {"partition": partition, **partition_options}
    trainer = Trainer(model_obj, dataset, cfg, out, run_meta, callbacks, rule=rule_obj, device=device,
                      parallel=parallel)
    if out is not None and not resume:  # every setting is checked: only now is the run folder created
        _prepare_out(out, overwrite)
    if resume:
        from genlearn.learning.run_folder import restore

        restore(trainer, tensors, meta, out)
        done = _why_complete(trainer)
        if done is not None and _intact_and_finished(out):
            raise ConfigError(f"the run in {out} is complete ({done}): nothing to resume; `genlearn eval {out}` "
                              "evaluates it again")
    writer = parallel is None or parallel.is_writer
    try:
        trainer.fit()
        checks.check_progress(trainer.state.history, out)  # the history is common: every rank stops alike
    except NumericalError as exc:
        if out is not None and writer and str(exc).startswith("training diverged") and (out / ckpt.META).exists():
            from genlearn.learning.checkpoint import record_divergence

            record_divergence(out, str(exc), trainer.run_meta.get("run_id"), trainer.state.epoch)
        raise
    if not writer:  # rank 0 writes the run; the final NLLs are sharded
        from genlearn.evaluation import evaluate

        trainer.model.eval()
        evaluate(trainer.model, trainer.dataset, partition=partition, parallel=parallel, **(partition_options or {}))
        return Run(trainer.model, {"rank": parallel.rank, "world_size": parallel.world_size}, out, dataset,
                   trainer.rule)
    return _finish(trainer, dataset, out, partition, partition_options or {}, plots, t_start)


def start_from_run(model, model_name: str, directory) -> dict:
    """Copy the parameters of the run in `directory` (read_run: the final model of a finished run, else its last
    checkpoint's) into `model`, which must be of the same family with the same parameter names and shapes (its
    other settings, e.g. the number of importance samples, may differ); the model's `data_buffers` (statistics of
    the training data) are not copied. Returns what the new run records: the
    source folder, its run id, epoch and status, and its test NLL when it has one. One ConfigError otherwise."""
    from genlearn.learning.run_folder import read_run

    files = read_run(directory)  # validated: one RunError naming a missing, damaged or foreign file
    source_family = files.meta.get("model")
    if source_family != model_name:
        raise ConfigError(f"--init-from {directory}: that run is of model {source_family!r}, this fit's is "
                          f"{model_name!r}; start from a run of the same family")
    data_buffers = set(getattr(model, "data_buffers", ()))  # statistics of the data (RBM): this run computes its own
    theirs = {k: v for k, v in files.model.state_dict().items() if k not in data_buffers}
    ours = {k: v for k, v in model.state_dict().items() if k not in data_buffers}
    missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if missing or extra:
        here, there = ", ".join(missing[:3]) or "none", ", ".join(extra[:3]) or "none"
        raise ConfigError(f"--init-from {directory}: its parameters differ from this model's (only here: {here}; "
                          f"only there: {there}); give the same architecture options as that run (see its "
                          "metrics.json model_config)")
    for name, value in ours.items():
        if tuple(theirs[name].shape) != tuple(value.shape):
            raise ConfigError(f"--init-from {directory}: parameter {name} has shape {tuple(theirs[name].shape)} "
                              f"there and {tuple(value.shape)} here; give the same architecture options as that run "
                              "(see its metrics.json model_config)")
    with torch.no_grad():
        model.load_state_dict({k: v.to(dtype=ours[k].dtype) for k, v in theirs.items()}, strict=not data_buffers)
    record = {"run": str(Path(directory).resolve()), "run_id": files.meta.get("run_id"),
              "epoch": files.meta.get("epoch"), "status": files.status}
    if isinstance(files.metrics.get("test_nll"), (int, float)):
        record["test_nll"] = files.metrics["test_nll"]
    return record


def recipe_evaluation(recorded: dict, model: str | None = None) -> tuple[str, dict]:
    """(partition, partition_options) of a recipe run's final likelihood: the recipe's [evaluation] table as the
    run recorded it at its first fit ({"name", "overrides", "evaluation"}: a recipe given as a file path is found
    again without the file), with the recorded evaluation overrides. Runs recorded before the table was: the
    shipped recipe of that name, else ("auto", {})."""
    from genlearn.recipes import load_recipe

    if isinstance(recorded.get("evaluation"), dict):
        evaluation = dict(recorded["evaluation"])
    else:
        try:
            evaluation = dict(load_recipe(recorded["name"]).evaluation)
        except ConfigError:
            evaluation = {}
    given = dict((recorded.get("overrides") or {}).get("evaluation") or {})
    if given.get("partition", evaluation.get("partition", "auto")) != evaluation.get("partition", "auto") \
            and not latent_family(model):
        evaluation = {}  # another method than the recipe's: its options are those given (as `fit --recipe` ran)
    evaluation.update(given)
    return evaluation.pop("partition", "auto"), evaluation


def latent_family(name) -> bool:
    """True for a family of latent-variable models (vae, gan): their evaluation options (importance samples, AIS
    over z) hold whatever --partition says, which only adds AIS over z."""
    from genlearn.models.base import LatentVariableModel

    try:
        return issubclass(get_spec(name).cls, LatentVariableModel)
    except (ConfigError, TypeError):
        return False


def _default_rule(model):
    """The learning rule of a model instance's family under its default options (maximum likelihood for a model
    of no registered family)."""
    from genlearn.models.registry import list_models

    specs = {spec.name: spec for spec in list_models()}
    if model.name in specs and isinstance(model, specs[model.name].cls):
        return _as_rule(rule_for(model.name))
    return make_rule("maximum-likelihood")


def _finish(trainer: Trainer, dataset: Dataset, out: Path | None, partition: str, partition_options: dict,
            plots: bool, t_start: float) -> Run:
    from genlearn.evaluation import evaluate

    model = trainer.model
    model.eval()
    metrics = {"model": trainer.run_meta.get("model", model.name), "dataset": dataset.name,
               **{k: trainer.run_meta[k] for k in ("recipe", "init_from") if k in trainer.run_meta},
               "data": dataset.describe(), "model_config": model.config(),
               "n_parameters": sum(p.numel() for p in model.parameters()),
               "train_config": trainer.cfg.to_dict(), "epochs_run": trainer.state.epoch,
               "stopped_early": trainer.state.stopped_early, "best_epoch": trainer.state.best_epoch,
               "out_of_time": trainer.state.out_of_time,
               **convergence_metrics(trainer)}  # converged: true/false under --tol / --rel-tol (null without)
    # on the training device (trainer.dataset: the splits moved there once); the run's model then returns to the CPU;
    # data-parallel: each rank its rows of every split, sums and counts reduced (learning.distributed)
    metrics.update(evaluate(model, trainer.dataset, partition=partition, progress=trainer.cfg.progress,
                            parallel=trainer.parallel, **partition_options))
    model.cpu()
    metrics["evaluation"] = {"partition": partition, **partition_options}
    metrics["rule"] = trainer.rule.record()
    # the rule's description and what "auto" chose (matmul_precision_resolved, step_bf16_speedup_measured); a
    # --resume that only evaluates takes them from the checkpoint of the epochs that decided them
    metrics.update(trainer.training_record())
    metrics["units"] = "nats per example (bits_per_dim in bits per dimension)"
    metrics["train_seconds"] = trainer.state.train_seconds
    metrics["device"] = str(trainer.device)
    metrics["world_size"] = 1 if trainer.parallel is None else trainer.parallel.world_size
    metrics["wall_seconds"] = time.perf_counter() - t_start
    metrics["history"] = trainer.state.history
    if out is not None:
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        from genlearn.learning.run_folder import model_metadata

        header = model_metadata(trainer.run_meta, trainer.state.epoch)  # which run and epoch: read_run checks
        ckpt.atomic_write_bytes(out / MODEL_FILE, lambda tmp: save_file(state, tmp, metadata=header))
        if trainer.run_meta.get("run_id"):
            metrics["run_id"] = trainer.run_meta["run_id"]
        ckpt.write_json(out / METRICS_FILE, _finite(metrics))
        from genlearn.learning.checkpoint import clear_divergence

        clear_divergence(out)  # a resumed run that had diverged has now finished
        if plots:
            write_plots(model, dataset, trainer.state.history, out)
    return Run(model, _finite(metrics), out, dataset, trainer.rule)


def write_plots(model, dataset: Dataset, history: list, out: Path) -> None:
    """The plots of a run in `out`: learning_curve.png, and samples.png for image data. A latent-variable model
    also gets the latent manifold latent_manifold.png (image data, latent_dim == 2) and, when it has an encoder
    (VAE), on the test rows (else valid, else train): reconstructions.png (image data) and latent_encodings.png
    (the posterior means, coloured by the split's class labels when the data set has them). A latent plot that
    does not apply is removed from `out` (a stale one of an earlier run there would mislead)."""
    from genlearn import plots
    from genlearn.models.base import LatentVariableModel

    out = Path(out)
    plots.learning_curve(history, out / "learning_curve.png", f"{model.name} on {dataset.name}")
    if dataset.image_shape is not None:
        with torch.no_grad():
            x = model.sample(64, generator=torch.Generator().manual_seed(0))
        plots.sample_grid(x, dataset.image_shape, out / "samples.png", f"{model.name}: 64 samples")
    written = set()
    if isinstance(model, LatentVariableModel):
        split = next((s for s in ("test", "valid", "train") if getattr(dataset, s) is not None), None)
        if split is not None:
            x = dataset.split(split)
            if dataset.image_shape is not None and model.latent_dim == 2:
                plots.latent_manifold(model, dataset.image_shape, out / "latent_manifold.png")
                written.add("latent_manifold.png")
        if split is not None and model.has_encoder:  # reconstructions and encodings need q(z|x)
            if dataset.image_shape is not None:
                plots.reconstructions(model, x, dataset.image_shape, out / "reconstructions.png", n=32,
                                      title=f"{model.name} on {dataset.name}: {split} rows (odd rows) and their "
                                      "reconstructions (even rows),\nsigmoid(decoder_logits(z)) at z = posterior "
                                      "mean E_q[z|x]")
                written.add("reconstructions.png")
            labels = dataset.split_labels(split)
            d = model.latent_dim
            what = f"{d}-D posterior means" if d <= 2 else f"2-D PCA of the {d}-D posterior means"
            plots.latent_encodings(model, x, labels, out / "latent_encodings.png",
                                   title=f"{model.name} on {dataset.name}: {what} of the {x.shape[0]} {split} rows"
                                   + ("" if labels is not None else " (no labels)"))
            written.add("latent_encodings.png")
    for name in LATENT_PLOTS:
        if name not in written and (out / name).is_file():
            (out / name).unlink()


def _finite(obj):
    """JSON has no NaN/inf: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


#: the training settings a --resume may change: how long it trains (--epochs, --max-minutes, a smaller --tol /
#: --rel-tol; not the length a cosine or geometric schedule is laid over), how often it evaluates, monitors and
#: writes checkpoints, and the progress bar. The others (the
#: optimizer and its rate, the batches, the schedule, early stopping, the seed) are part of the run: the optimizer's
#: state restored from the checkpoint would keep the old values while metrics.json recorded the new ones
RESUMABLE_SETTINGS = ("epochs", "max_minutes", "tol", "rel_tol", "eval_every", "checkpoint_every", "monitor_ais_steps",
                      "monitor_ensemble", "monitor_is_samples", "monitor_rows", "progress")


def _check_resume_settings(recorded: dict, given: dict) -> None:
    """A --resume continues the run with its own settings: one ConfigError for a training setting other than
    RESUMABLE_SETTINGS given with a value other than the recorded one, naming it and the way to train on with
    other settings (a new run started from this one's parameters)."""
    schedule = recorded.get("schedule")
    length = "epochs" if schedule == "cosine" or (schedule == "geometric" and recorded.get("max_minutes") is None) \
        else "max_minutes" if schedule == "geometric" else None
    if length is not None and given.get(length) is not None and given[length] != recorded.get(length):
        flag = "--" + length.replace("_", "-")
        raise ConfigError(f"{flag} cannot change on --resume of this run: its {schedule} schedule sets each epoch's "
                          f"rate from the run's {flag} ({recorded.get(length)!r}), so the epochs it trained and "
                          f"those it would add would follow two different schedules; to train on, start a new run "
                          "from its parameters (--init-from DIR)")
    changed = sorted(k for k, v in given.items()
                     if k not in RESUMABLE_SETTINGS and v is not None and recorded.get(k) != v)
    if changed:
        shown = ", ".join(f"--{k.replace('_', '-')} (the run's: {recorded.get(k)!r})" for k in changed)
        raise ConfigError(f"{shown} cannot change on --resume: a resumed run continues with its own settings; "
                          "to train on with others, start a new run from its parameters (--init-from DIR); "
                          f"--resume takes {', '.join('--' + k.replace('_', '-') for k in RESUMABLE_SETTINGS[:-1])}")


def _why_complete(trainer) -> str | None:
    """Why a restored run's training loop would not run another epoch under its (possibly new) settings: it
    converged under the same tolerance (a smaller --tol / --rel-tol trains on: convergence.after_restore) or it
    stopped early; None when it would train."""
    state = trainer.state
    if state.converged:
        record = state.convergence or {}
        flag = "--tol" if record.get("criterion") == "gradient" else "--rel-tol"
        return (f"it converged at epoch {record.get('epoch')}: {record.get('test', 'its test')}; give a smaller "
                f"{flag} to train on")
    minutes = trainer.cfg.max_minutes
    if minutes is not None and state.train_seconds >= 60 * minutes:
        if trainer.cfg.schedule == "geometric":  # its rates were laid over this budget
            return (f"its --max-minutes budget of {minutes:g} is spent, and its geometric schedule ended there; "
                    "start a new run from it with --init-from to train on")
        return f"its --max-minutes budget of {minutes:g} is spent; give a larger --max-minutes to train on"
    if state.stopped_early:
        return (f"it stopped early at epoch {state.epoch}, after {trainer.cfg.patience} epoch(s) without a better "
                "valid NLL; fit again with a larger --patience, or start a new run from it with --init-from")
    return None


def _intact_and_finished(directory) -> bool:
    """Whether the run in `directory` is finished with every file readable (a --resume of it has nothing to do; one
    whose final model or metrics are damaged is repaired by --resume from its intact checkpoint)."""
    from genlearn.errors import GenlearnError
    from genlearn.learning.run_folder import read_run

    if not (Path(directory) / METRICS_FILE).exists():
        return False
    try:
        return bool(read_run(Path(directory)).finished)
    except GenlearnError:
        return False


def load_run(directory, device=None) -> Run:
    """Reopen a fitted run: its model (with log_prob / sample), its metrics, and the learning rule it trained
    with (with the rule's state at the last checkpoint). The tensors are read on the CPU and the model is moved
    to `device` (auto, cpu, cuda, cuda:N, mps; default cpu), wherever the run was trained."""
    from genlearn.learning.devices import resolve_device
    from genlearn.learning.run_folder import read_run

    if not isinstance(directory, (str, os.PathLike)):
        raise ConfigError(f"load_run needs the path of a run folder (str or pathlib.Path), got "
                          f"{type(directory).__name__} {directory!r}"[:300])
    # every file validated (one RunError naming a damaged or foreign file); an unfinished run (being written,
    # interrupted) gives its last checkpoint's parameters, no metrics, and says so in run.status
    files = read_run(directory)
    directory, model, meta, tensors, metrics = Path(directory), files.model, files.meta, files.tensors, files.metrics
    model.to(resolve_device(device))
    model.eval()
    rule = rule_from_record(rule_record(meta))
    if "rule" in meta:
        rule.load_state_tensors({k[5:]: v for k, v in tensors.items() if k.startswith("rule.")})
    else:
        from genlearn.learning.legacy import legacy_rule_state

        rule.load_state_tensors(legacy_rule_state(tensors))
    run = Run(model, metrics, directory, rule=rule)
    run.meta = meta
    run.finished, run.status = files.finished, files.status
    return run
