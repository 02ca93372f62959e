"""Refitting the selected trials of `genlearn tune` on the train and valid rows together (`--refit`).

The search chooses by the valid NLL: the trials, and the ensemble's size k, are picked on models trained on the
train rows alone. Once every choice is made, the valid rows have done their job, and each selected trial is
trained again, with its own family, settings and seed, on the M_t + M_v rows of train and valid together, for the
number of epochs at which its valid NLL was best (its `best_epoch`): the early-stopping point found on the
held-out rows. The refitted models (their mixture, P(x) = (1/k) sum_j P_j(x), when k > 1) are what the test split
then scores. On small data this is worth having: on nips (400 training rows), members trained on 320 rows scored
1.46 nats worse on valid, as a mixture, than the same members on 400 rows (benchmarks/RESULTS.md), so the 100
valid rows are worth about as much again.

What a refit cannot reproduce exactly, and does instead:
- a trial's training-time budget (max_minutes) is scaled by (M_t + M_v) / M_t, so that a schedule that decays
  in time (geometric with max_minutes) reaches the same point after the same number of epochs, each epoch
  being that much longer;
- a schedule that follows the valid NLL (plateau) has no valid rows to follow and keeps its rate;
- dynamically binarized data (grey levels redrawn every epoch) are refused: their valid rows have no grey
  levels to redraw from.

The refitted runs are ordinary run folders DIR/refit/NNNN (NNNN the trial's number); their mixture, when k > 1,
is DIR/refit/ensemble. Re-running `tune` on the same DIR reuses a refitted run whose settings and rows match."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path


from genlearn.errors import ConfigError, GenlearnError

REFIT_DIR = "refit"
#: the refitted runs' data set records this (and genlearn eval's figures on "valid" are then training rows)
REFIT_NOTE = "train and valid rows together (genlearn tune --refit): no held-out split but test"


def check_refittable(dataset) -> None:
    """Refuse a refit that cannot be done, before any trial runs (one-line ConfigError)."""
    if dataset.train_intensity is not None:
        raise ConfigError(f"--refit cannot refit on {dataset.name!r}: it is binarized dynamically from grey levels, "
                          "and its valid rows have none to redraw from; give --no-refit")
    if dataset.valid is None:
        raise ConfigError(f"--refit needs a valid split, and {dataset.name!r} has none")


def refit_data(search):
    """The search's data set with train = its train rows then its valid rows, and no valid or test split."""
    from genlearn.data.refit_rows import merged_rows

    check_refittable(search)
    merged = merged_rows(search)
    labels = {"train": merged.labels["train"]} if merged.labels else None
    return dataclasses.replace(merged, test=None, truth=None, labels=labels,
                               settings={**search.settings, "rows": REFIT_NOTE})


def refit_settings(trial_train: dict, metrics: dict, rows_ratio: float) -> dict:
    """The training settings of a trial's refit: the trial's own, for its best epoch (else all the epochs it ran),
    without early stopping or a kept best (there are no valid rows), its time budget scaled by rows_ratio."""
    epochs = metrics.get("best_epoch") or metrics.get("epochs_run")
    if not epochs:
        raise GenlearnError("the trial recorded neither a best epoch nor the epochs it ran")
    train = {**trial_train, "epochs": int(epochs), "patience": None, "keep_best": False, "progress": False}
    if train.get("max_minutes") is not None:
        train["max_minutes"] = float(train["max_minutes"]) * rows_ratio
    return train


def _matches(run_dir: Path, train: dict, rows: int) -> bool:
    """Whether run_dir holds a finished refit with these settings on this many rows."""
    import json

    try:
        m = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    cfg = m.get("train_config") or {}
    same = all(cfg.get(k) == v for k, v in train.items() if k not in ("progress", "max_minutes"))
    return same and (m.get("data") or {}).get("sizes", {}).get("train") == rows


def refit_trials(trials: list[dict], out: Path, search, spec, data_dir, say) -> list[dict]:
    """Refit each trial ({"trial", "family", "model_options", "train", "run"}; its run folder under `out` gives
    the best epoch) on train + valid into out/refit/NNNN. Returns, per trial, {"trial", "run", "epochs",
    "epochs_run", "rows", "seconds", "reused", "model"} (model: the refitted GenerativeModel)."""
    from genlearn import options as opts
    from genlearn.models.registry import get_spec
    from genlearn.runs import fit, load_run

    data = refit_data(search)
    rows = int(data.train.shape[0])
    keep = {f"{t['trial']:04d}" for t in trials}
    if (out / REFIT_DIR).is_dir():  # an earlier end's refits of trials no longer selected, its mixture
        for child in (out / REFIT_DIR).iterdir():
            if child.name not in keep:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    ratio = rows / int(search.train.shape[0])
    done = []
    for t in trials:
        trial_run = load_run(out / t["run"])
        train = refit_settings(t["train"], trial_run.metrics, ratio)
        run_dir = out / REFIT_DIR / f"{t['trial']:04d}"
        reused = _matches(run_dir, train, rows)
        if reused:
            run = load_run(run_dir)
        else:
            config = get_spec(t["family"]).config
            model_options = {k: opts.convert(config, k, v) for k, v in t["model_options"].items()}
            run = fit(t["family"], data, out=run_dir, overwrite=True, data_spec=spec, data_dir=data_dir,
                      plots=False, **train, **model_options)
        m = run.metrics
        done.append({"trial": t["trial"], "run": str(run_dir.relative_to(out)), "epochs": train["epochs"],
                     "epochs_run": m.get("epochs_run"), "rows": rows, "seconds": m.get("wall_seconds"),
                     "reused": reused, "model": run.model})
        say(f"tune: trial {t['trial']} refitted on {rows} rows (train + valid), {m.get('epochs_run')} epochs"
            + (" (reused)" if reused else f", {m.get('wall_seconds', 0.0):.0f} s"))
    return done


def remove_stale(out: Path) -> None:
    """Remove out/refit when this end of the study does not refit (an earlier end's folder is not the result)."""
    if (out / REFIT_DIR).is_dir():
        shutil.rmtree(out / REFIT_DIR)


__all__ = ["REFIT_DIR", "check_refittable", "refit_data", "refit_settings", "refit_trials", "remove_stale"]
