"""`genlearn refit RUN --out DIR`: a finished fit trained again on its train and valid rows together.

A fit makes its choices on the valid split: when to stop (its best epoch, the early-stopping point) and, under a
plateau schedule, when to lower the rate. Once they are made the valid rows have done their job, and the same
model can learn from them too, as `genlearn tune --refit` does for its selected trials (genlearn.tune_refit):
the refit trains the run's family with the run's options, seed and initialisation (its `--init-from` run, if it
had one) on the M_t + M_v rows of train then valid, for the run's best epoch count, with no early stopping and no
kept best, and scores the test split as the run's own evaluation settings say. The schedule is the run's:
- a plateau schedule's rates, which followed the valid NLL, are replayed epoch by epoch (a piecewise schedule:
  `plateau_lr_steps` reads them from the run's history, where each record's rate is the one its epoch ran with);
- a geometric schedule that decays in time (max_minutes) has its budget scaled by (M_t + M_v) / M_t, so that it
  ends at the same point after the same number of epochs; under any other schedule the budget was a cap only, and
  is dropped, so that the refit runs its planned epochs;
- a schedule laid over the run's planned epoch count (cosine; geometric without a time budget) has the rates
  its first epochs ran with replayed (`planned_lr_steps`), not the same schedule over the refit's fewer epochs;
- the other schedules (step, exponential, piecewise) depend on the epoch alone and are kept as they are.

The refit is an ordinary run folder (`genlearn eval`, `sample`, `report` read it); its metrics.json has no valid
figures (there are no held-out rows but test) and records the refitted run under recipe.refit_of. A run started
with --init-from keeps that start, which was trained on the train rows alone, unless `--init-from` names another
(the refit of that start: `genlearn refit START --out S2`, then `genlearn refit RUN --out R2 --init-from S2`)."""
from __future__ import annotations

import json
from pathlib import Path

from genlearn.data.refit_rows import REFIT_ROWS, merged_rows
from genlearn.errors import ConfigError, RunError
from genlearn.learning.lock import LOCK_FILE


def plateau_lr_steps(history: list[dict], lr: float, epochs: int) -> str | None:
    """The rates a plateau run ran its epochs 1..epochs with, as a piecewise schedule "E1:F1,E2:F2,..." (F the
    rate over lr); None when the rate never changed. A record's rate is the one its epoch (and the epochs since
    the previous record) ran with: the plateau rule lowers it after the evaluation, from the next epoch on."""
    steps, previous_epoch, factor = [], 0, 1.0
    for rec in sorted((r for r in history if 1 <= int(r.get("epoch") or 0) <= epochs), key=lambda r: r["epoch"]):
        value = float(rec["lr"]) / float(lr)
        if abs(value - factor) > 1e-12 * max(value, factor):
            steps.append(f"{previous_epoch + 1}:{value:.12g}")
            factor = value
        previous_epoch = int(rec["epoch"])
    return ",".join(steps) or None


def planned_lr_steps(train: dict, planned: int, epochs: int) -> str | None:
    """The rates epochs 1..epochs ran with under a schedule laid over the run's planned epoch count (cosine:
    lr (1 + cos(pi d / E)) / 2; geometric without a time budget: lr f^(d / (E - 1)); d the epochs done, E the
    planned epochs), as a piecewise schedule "E1:F1,..." (F the rate over lr): the refit stops at the best epoch,
    so the same schedule over its own epoch count would anneal faster. None when the rate never changed."""
    import types

    import torch

    from genlearn.learning.trainer import geometric_factor, make_schedule

    if train.get("schedule") == "geometric":
        factors = [geometric_factor(float(train.get("final_lr_fraction", 0.01)), done / max(planned - 1, 1))
                   for done in range(epochs)]
    else:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        schedule = make_schedule(opt, types.SimpleNamespace(schedule="cosine", epochs=planned))
        factors = []
        for _ in range(epochs):
            factors.append(opt.param_groups[0]["lr"])
            opt.step()
            schedule.step()
    steps, factor = [], 1.0
    for epoch, value in enumerate(factors, start=1):
        if abs(value - factor) > 1e-12 * max(value, factor):
            steps.append(f"{epoch}:{value:.12g}")
            factor = value
    return ",".join(steps) or None


def _check_metrics(metrics, path: Path) -> None:
    """The fields of a finished run's metrics.json that a refit reads, with their types: the model's name, the
    data record (its training rows, and its spec: a string, or none for data given as an object), the training
    settings and the epochs it ran. A RunError naming the damaged field otherwise."""
    def damaged(what: str) -> RunError:
        return RunError(f"{path} is damaged: {what}; fit the run again (genlearn fit writes metrics.json), then "
                        "refit it")

    if not isinstance(metrics, dict):
        raise damaged("it is not a JSON object")
    if not isinstance(metrics.get("model"), str):
        raise damaged("it names no model (a string \"model\")")
    data = metrics.get("data")
    sizes = data.get("sizes") if isinstance(data, dict) else None
    rows = sizes.get("train") if isinstance(sizes, dict) else None
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise damaged("it records no number of training rows (data.sizes.train)")
    if data.get("spec") is not None and not isinstance(data["spec"], str):
        raise damaged(f"its data spec (data.spec) is {data['spec']!r}, not a string")
    if not isinstance(metrics.get("train_config"), dict):
        raise damaged("it records no training settings (train_config)")
    for key in ("best_epoch", "epochs_run"):
        value = metrics.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise damaged(f"{key} is {value!r}, not a number of epochs")


def refit_train_settings(metrics: dict, rows_ratio: float, defaults: dict | None = None) -> dict:
    """The training settings of the refit of a run whose metrics.json is `metrics` (see the module's text), those
    that differ from `defaults` (the family's training defaults; None: TrainConfig's)."""
    train = dict(metrics["train_config"])
    epochs = metrics.get("best_epoch") or metrics.get("epochs_run")
    if not epochs:
        raise RunError("the run recorded neither a best epoch nor the epochs it ran; refit a finished run")
    train.update(epochs=int(epochs), patience=None, keep_best=False)
    if train.get("max_minutes") is not None:
        if train.get("schedule") == "geometric":  # its rate follows the time: the same point after the same epochs
            train["max_minutes"] = float(train["max_minutes"]) * rows_ratio
        else:  # a budget only: the epoch count is the refit's plan, and a budget must not cut it short
            train["max_minutes"] = None
    planned = int(metrics["train_config"].get("epochs") or epochs)
    steps = None
    if train.get("schedule") == "plateau":
        steps = plateau_lr_steps(metrics.get("history") or [], train["lr"], int(epochs))
    elif train.get("schedule") == "cosine" or (train.get("schedule") == "geometric"
                                                and train.get("max_minutes") is None):
        steps = planned_lr_steps(train, planned, int(epochs))
    if train.get("schedule") in ("plateau", "cosine") or steps is not None:
        train.update(schedule="piecewise" if steps else "constant", lr_steps=steps)
        for moot in ("gamma", "plateau_patience", "final_lr_fraction"):  # the replaced schedule's own settings
            train.pop(moot, None)
    return _given(train, defaults or {})


def _given(train: dict, family_defaults: dict) -> dict:
    """The settings that differ from the defaults a fit of the family starts from (TrainConfig's, with the
    family's own over them): the others change nothing, and some would be refused as flags that the schedule or
    the learning rule makes moot (e.g. --optimizer beside EM)."""
    import dataclasses

    from genlearn.learning.trainer import TrainConfig

    defaults = {f.name: getattr(TrainConfig(), f.name) for f in dataclasses.fields(TrainConfig)}
    defaults.update(family_defaults)
    return {k: v for k, v in train.items() if k not in defaults or v != defaults[k]}


def refit(run, out, *, data_dir=None, overwrite: bool = False, progress: bool = True, callbacks=None,
          init_from=None):
    """Train the finished run in `run` again on its train + valid rows (module text); write it to `out`.
    `data_dir`: where the run's named data set lies (default: the folder the run recorded). `init_from`: start
    from this run's parameters instead of the start the run recorded (e.g. the refit of that start, so that a
    two-stage pipeline is refitted stage by stage). Returns the Run."""
    from genlearn.data.registry import load_dataset
    from genlearn.models.registry import get_spec
    from genlearn.runs import fit
    from genlearn.validate import check_path_argument

    check_path_argument(run, "run")
    run = Path(run)
    if not run.exists():
        raise RunError(f"{run}: no such folder; give the folder of a run that `genlearn fit` finished")
    if not run.is_dir():
        raise RunError(f"{run} is a file, not a run folder; give the folder of a run that `genlearn fit` finished")
    path = run / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{run} holds no finished run (no metrics.json): refit a run that `genlearn fit` finished")
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} cannot be read ({exc}); refit a finished run") from None
    _check_metrics(metrics, path)
    if (metrics.get("recipe") or {}).get("refit_of"):
        raise ConfigError(f"{run} is already a refit (of {metrics['recipe']['refit_of'].get('run')}): it trained on "
                          "train + valid, and has no valid choices left to refit with")
    if Path(out).resolve() == run.resolve():
        raise ConfigError(f"--out {out} is the run to refit: the refit would replace it; give another --out")
    if not overwrite and Path(out).is_dir() and any(p.name != LOCK_FILE for p in Path(out).iterdir()):
        raise RunError(f"{out} exists and is not empty; choose another --out, or pass --overwrite to replace the "
                       "run in it")
    spec = metrics.get("data", {}).get("spec")
    if not spec:
        raise RunError(f"{run} was fitted to data given as an object, not a named data set or file: it cannot be "
                       "loaded again to refit")
    from genlearn.learning.run_folder import read_json  # a damaged checkpoint.json: one RunError naming it

    checkpoint = read_json(run / "checkpoint.json") if (run / "checkpoint.json").exists() else {}
    data_dir = data_dir if data_dir is not None else checkpoint.get("data_dir")
    loaded = load_dataset(spec, data_dir)
    from genlearn.learning.run_folder import data_unchanged

    if data_unchanged(checkpoint, loaded) is False:
        raise RunError(f"the data {spec!r} of {run} have changed since it was fitted (their fingerprint differs): "
                       "a refit on other data would not be this run's; restore them, or fit anew")
    dataset = merged_rows(loaded)
    rows_ratio = dataset.train.shape[0] / metrics["data"]["sizes"]["train"]
    options = dict(checkpoint.get("model_options") or {})
    recorded = {k: v for k, v in metrics["train_config"].items() if k in ("optimizer", "batch_size")}
    train = refit_train_settings(metrics, rows_ratio, get_spec(metrics["model"]).training_defaults(options, recorded))
    train["progress"] = progress
    recipe = metrics.get("recipe") or {}
    evaluation = dict(metrics.get("evaluation") or {})
    partition = evaluation.pop("partition", "auto")
    record = {"name": f"refit of {recipe.get('name') or run.name}", "overrides": {},
              "evaluation": {"partition": partition, **evaluation},
              "refit_of": {"run": str(run.resolve()), "run_id": metrics.get("run_id"),
                           "epochs": int(metrics.get("best_epoch") or metrics.get("epochs_run")), "rows": REFIT_ROWS,
                           "train_rows": int(dataset.train.shape[0]), "valid_nll": metrics.get("valid_nll")}}
    if init_from is None:
        init_from = (metrics.get("init_from") or {}).get("run")
    return fit(metrics["model"], dataset, out=out, overwrite=overwrite, data_spec=spec, data_dir=data_dir,
               recipe=record, init_from=init_from, partition=partition, partition_options=evaluation,
               callbacks=callbacks, **options, **train)
