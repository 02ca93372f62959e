"""A fitted run on disk, and the Python API that mirrors `genlearn fit` / `genlearn eval`.

A run folder holds checkpoint.safetensors + checkpoint.json (written atomically every epoch: parameters,
optimizer, RNG and history, for --resume), model.safetensors (the final parameters), metrics.json and plots."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from genlearn.data.dataset import Dataset
from genlearn.data.registry import load_dataset
from genlearn.errors import ConfigError, RunError
from genlearn.learning import checkpoint as ckpt
from genlearn.learning.trainer import TrainConfig, Trainer
from genlearn.models.registry import build_from_config, build_model, get_spec

MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
OWN_FILES = (ckpt.TENSORS, ckpt.META, MODEL_FILE, METRICS_FILE, "learning_curve.png", "samples.png")


@dataclass
class Run:
    """A fitted model with its metrics (and the folder it lives in, when it was saved)."""

    model: object
    metrics: dict
    dir: Path | None = None
    dataset: Dataset | None = None

    def log_prob(self, x):
        return self.model.log_prob(self.model.check_input(x))

    def sample(self, n: int, seed: int = 0, **kwargs):
        return self.model.sample(n, generator=torch.Generator().manual_seed(seed), **kwargs)


def _split_kwargs(kwargs: dict) -> tuple[dict, dict]:
    names = {f.name for f in fields(TrainConfig)}
    train = {k: v for k, v in kwargs.items() if k in names and v is not None}
    model = {k: v for k, v in kwargs.items() if k not in names}
    return train, model


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; give a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RunError(f"{out} exists and is not empty; choose another --out, pass --overwrite to replace "
                           "the run in it, or --resume to continue it")
        foreign = [p.name for p in out.iterdir() if p.name not in OWN_FILES and not p.name.startswith(".")]
        if foreign and not (out / ckpt.META).exists():
            raise RunError(f"{out} holds files that are not a genlearn run ({', '.join(sorted(foreign)[:3])}...); "
                           "refusing to write there even with --overwrite")
    out.mkdir(parents=True, exist_ok=True)


def fit(model, data, *, out=None, overwrite: bool = False, resume: bool = False, data_dir=None,
        partition: str = "auto", partition_options: dict | None = None, callbacks=None, plots: bool = True,
        recipe: dict | None = None, **kwargs) -> Run:
    """Fit `model` (a CLI name such as "product-bernoulli", or a GenerativeModel) to `data` (a spec such as
    "coin:p=0.3,n=1000", a path, or a Dataset) by minimising D_KL(Q^||P_theta).

    Keyword arguments are TrainConfig fields (epochs, lr, optimizer, batch_size, ...) or model options
    (hidden, components, ...). `partition` / `partition_options` say how log Z of an energy model is obtained
    for the final metrics (auto = exact when enumerable, else AIS; e.g. {"steps": 100000}). With `out`, the run
    is checkpointed there every epoch; `resume=True` continues the run in `out` exactly where it stopped (pass
    a larger `epochs` to train longer). `recipe` ({"name", "overrides"}) is recorded in the run when the settings
    came from a recipe (genlearn.recipes)."""
    t_start = time.perf_counter()
    train_kwargs, model_options = _split_kwargs(kwargs)
    out = Path(out) if out is not None else None
    if resume:
        if out is None:
            raise ConfigError("resume needs the run folder (--resume DIR / out=DIR)")
        tensors, meta = ckpt.load_checkpoint(out)
        dataset = data if isinstance(data, Dataset) else load_dataset(
            data or meta["data_spec"], data_dir if data_dir is not None else meta.get("data_dir"))
        model_name = meta["model"]
        model_obj = build_from_config(model_name, meta["model_config"])
        cfg_dict = {**meta["train_config"], **train_kwargs}
        run_meta = {k: meta[k] for k in ("model", "dataset", "data_spec", "data_dir", "model_options", "recipe")
                    if k in meta}
    else:
        dataset = data if isinstance(data, Dataset) else load_dataset(data, data_dir)
        if isinstance(model, str):
            model_name = model
            model_obj = build_model(model, dataset, **model_options)
            defaults = get_spec(model).train_defaults
        else:
            if model_options:
                raise ConfigError(f"unknown setting(s) {', '.join(sorted(model_options))} for a model instance")
            model_obj, model_name, defaults = model, model.name, {}
        cfg_dict = {**defaults, **train_kwargs}
        run_meta = {"model": model_name, "dataset": dataset.name,
                    "data_spec": data if isinstance(data, str) else None,
                    "data_dir": None if data_dir is None else str(data_dir),
                    "model_options": {k: v for k, v in model_options.items() if v is not None}}
        if recipe is not None:
            run_meta["recipe"] = recipe
        if out is not None:
            _prepare_out(out, overwrite)
    for split in ("train", "valid", "test"):
        x = getattr(dataset, split)
        if x is not None:
            model_obj.check_input(x)
    cfg = TrainConfig.from_dict(cfg_dict)
    trainer = Trainer(model_obj, dataset, cfg, out, run_meta, callbacks)
    if resume:
        trainer.restore(tensors, meta)
    trainer.fit()
    return _finish(trainer, dataset, out, partition, partition_options or {}, plots, t_start)


def _finish(trainer: Trainer, dataset: Dataset, out: Path | None, partition: str, partition_options: dict,
            plots: bool, t_start: float) -> Run:
    from genlearn.evaluation import evaluate

    model = trainer.model
    model.eval()
    metrics = {"model": trainer.run_meta.get("model", model.name), "dataset": dataset.name,
               **({"recipe": trainer.run_meta["recipe"]} if "recipe" in trainer.run_meta else {}),
               "data": dataset.describe(), "model_config": model.config(),
               "n_parameters": sum(p.numel() for p in model.parameters()),
               "train_config": trainer.cfg.to_dict(), "epochs_run": trainer.state.epoch,
               "stopped_early": trainer.state.stopped_early, "best_epoch": trainer.state.best_epoch,
               "out_of_time": trainer.state.out_of_time}
    metrics.update(evaluate(model, dataset, partition=partition, progress=trainer.cfg.progress, **partition_options))
    if hasattr(model, "describe_training"):
        metrics.update(model.describe_training())
    metrics["units"] = "nats per example (bits_per_dim in bits per dimension)"
    metrics["train_seconds"] = trainer.state.train_seconds
    metrics["wall_seconds"] = time.perf_counter() - t_start
    metrics["history"] = trainer.state.history
    if out is not None:
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        ckpt.atomic_write_bytes(out / MODEL_FILE, lambda tmp: save_file(state, tmp))
        ckpt.write_json(out / METRICS_FILE, _finite(metrics))
        if plots:
            write_plots(model, dataset, trainer.state.history, out)
    return Run(model, _finite(metrics), out, dataset)


def write_plots(model, dataset: Dataset, history: list, out: Path) -> None:
    from genlearn import plots

    plots.learning_curve(history, out / "learning_curve.png", f"{model.name} on {dataset.name}")
    if dataset.image_shape is not None:
        with torch.no_grad():
            x = model.sample(64, generator=torch.Generator().manual_seed(0))
        plots.sample_grid(x, dataset.image_shape, out / "samples.png", f"{model.name}: 64 samples")


def _finite(obj):
    """JSON has no NaN/inf: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def load_run(directory) -> Run:
    """Reopen a fitted run: its model (with log_prob / sample) and its metrics."""
    import json

    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"no run folder at {directory}")
    tensors, meta = ckpt.load_checkpoint(directory)
    model = build_from_config(meta["model"], meta["model_config"])
    if (directory / MODEL_FILE).exists():
        try:
            state = load_file(str(directory / MODEL_FILE))
        except (OSError, ValueError) as exc:
            raise RunError(f"{directory / MODEL_FILE} is unreadable or truncated ({exc})") from None
    else:  # interrupted run: the last checkpoint's parameters
        state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(state)
    model.eval()
    metrics = {}
    if (directory / METRICS_FILE).exists():
        try:
            metrics = json.loads((directory / METRICS_FILE).read_text())
        except json.JSONDecodeError as exc:
            raise RunError(f"{directory / METRICS_FILE} is not valid JSON ({exc})") from None
    run = Run(model, metrics, directory)
    run.meta = meta
    return run
