"""Read one run folder for the report: what `genlearn fit` wrote (checkpoint.json, metrics.json, model.safetensors,
checkpoint.safetensors, PNG plots), in any of its shapes: a finished run, an interrupted one (a checkpoint without
final metrics: "unfinished"), a run resumed past its final metrics, a published folder without training state
(benchmarks/models/*), and runs of earlier versions (tests/fixtures/legacy_runs).

The model is rebuilt from its recorded config (genlearn.models.registry.build_from_config) with the final
parameters (model.safetensors) or, for an unfinished run, the last checkpoint's; the same reading as
genlearn.runs.load_run, which sits above this layer."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from genlearn.errors import GenlearnError, RunError

META_FILE = "checkpoint.json"
TENSOR_FILE = "checkpoint.safetensors"
MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"


@dataclass
class RunRecord:
    """One run folder as the report sees it. `metrics` is metrics.json without its history ({} when the run has
    no final metrics); `history` the monitoring records (metrics.json's, or the checkpoint's when that is newer);
    `status` "finished" or "unfinished" with `status_note` saying why; `model` the rebuilt model, or None with
    `model_error` saying why it could not be loaded (the page then shows the numbers without the plots that need
    it)."""

    path: Path
    meta: dict
    metrics: dict
    history: list
    status: str
    status_note: str
    model: object | None = None
    model_error: str | None = None
    notes: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)

    @property
    def model_name(self) -> str:
        return self.metrics.get("model") or self.meta.get("model") or "?"

    @property
    def dataset(self) -> str:
        return self.metrics.get("dataset") or self.meta.get("dataset") or "?"

    @property
    def data(self) -> dict:
        """metrics.json's description of the data set ({} for an unfinished run)."""
        return self.metrics.get("data") or {}

    @property
    def image_shape(self) -> tuple[int, int] | None:
        shape = self.data.get("image_shape")
        return tuple(int(v) for v in shape) if shape else None

    @property
    def n_features(self) -> int | None:
        n = self.data.get("n_features")
        if n is None and self.model is not None:
            n = getattr(self.model, "n_features", None)
        return int(n) if n else None


def _read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON ({exc}); the {what} is truncated or corrupt") from None
    if not isinstance(value, dict):
        raise RunError(f"{path} does not hold a JSON object; it is not a genlearn {what}")
    return value


def read_run(directory, load_model: bool = True) -> RunRecord:
    """The RunRecord of `directory`; RunError when it is not a readable run folder (missing, not a folder,
    neither checkpoint.json nor metrics.json, or unreadable JSON)."""
    path = Path(directory)
    if not path.exists():
        raise RunError(f"{path} does not exist")
    if not path.is_dir():
        raise RunError(f"{path} is not a folder; give a run folder written by `genlearn fit`")
    has_meta, has_metrics = (path / META_FILE).is_file(), (path / METRICS_FILE).is_file()
    if not has_meta and not has_metrics:
        if (path / "trials").is_dir():
            raise RunError(f"{path} is a `genlearn tune` study, not a run: report its trials (e.g. {path}/trials/*) "
                           "or the run its summary.json names")
        raise RunError(f"{path} holds neither {META_FILE} nor {METRICS_FILE}; is it a `genlearn fit` output folder?")
    meta = _read_json(path / META_FILE, "checkpoint") if has_meta else {}
    metrics = _read_json(path / METRICS_FILE, "metrics file") if has_metrics else {}
    metrics = dict(metrics)
    final_history = metrics.pop("history", None) or []
    state = meta.get("state") or {}
    ckpt_history = state.get("history") or []
    ckpt_epoch = state.get("epoch", meta.get("epoch"))
    epochs = (meta.get("train_config") or metrics.get("train_config") or {}).get("epochs")
    if not has_metrics:
        status = "unfinished"
        note = (f"unfinished: a checkpoint at epoch {ckpt_epoch}" + (f" of {epochs}" if epochs is not None else "")
                + f" and no final metrics ({METRICS_FILE}); ")
        ended = [why for why, done in (
            ("every epoch trained", isinstance(ckpt_epoch, int) and isinstance(epochs, int) and ckpt_epoch >= epochs),
            ("converged", state.get("converged")), ("stopped early", state.get("stopped_early")),
            ("out of time", state.get("out_of_time"))) if done]
        from genlearn.learning.run_folder import read_divergence

        diverged = read_divergence(path, meta.get("run_id"), ckpt_epoch)
        if diverged is not None:
            note = (f"unfinished: training diverged ({diverged}); the checkpoint is of epoch {ckpt_epoch}. Fit again "
                    "with a smaller learning rate (the learning curve shows where it rose)")
        elif ended:
            note += (f"its training had ended ({', '.join(ended)}), so the fit stopped at or before its final "
                     f"evaluation: if it was interrupted, `genlearn fit --resume {path}` finishes it; if it failed "
                     "(e.g. training diverged: see the learning curve), fit again instead")
        else:
            note += f"continue it with `genlearn fit --resume {path}`"
        history = ckpt_history
    elif isinstance(ckpt_epoch, int) and isinstance(metrics.get("epochs_run"), int) \
            and ckpt_epoch > metrics["epochs_run"]:
        status = "unfinished"
        note = (f"unfinished: resumed to epoch {ckpt_epoch} after its final metrics of epoch "
                f"{metrics['epochs_run']}; the metrics below are those of epoch {metrics['epochs_run']}, the "
                "learning curve runs to the checkpoint")
        history = ckpt_history if len(ckpt_history) >= len(final_history) else final_history
    elif has_meta and not (path / MODEL_FILE).is_file():  # as `genlearn eval` and `sample` see it
        status = "unfinished"
        note = (f"unfinished: its final model ({MODEL_FILE}) is missing; `genlearn fit --resume {path}` writes it "
                "again from the checkpoint")
        history = final_history or ckpt_history
    else:
        status = "finished"
        run = metrics.get("epochs_run", ckpt_epoch)
        parts = [f"{run} of {epochs} epochs" if isinstance(run, int) and isinstance(epochs, int) and run < epochs
                 else f"{run} epochs"]
        parts += _convergence(metrics)
        if metrics.get("stopped_early"):
            parts.append(f"stopped early (best epoch {metrics.get('best_epoch')})")
        if metrics.get("out_of_time"):
            parts.append("stopped by its time budget")
        if not has_meta:
            parts.append(f"no {META_FILE}")
        note = "finished: " + ", ".join(parts)
        history = final_history or ckpt_history
    record = RunRecord(path, meta, metrics, [r for r in history if isinstance(r, dict)], status, note)
    if load_model:
        try:
            record.model = _load_model(path, meta, metrics)
        except Exception as exc:  # noqa: BLE001 - any failure (e.g. a truncated safetensors file): numbers only
            record.model_error = f"{type(exc).__name__}: {exc}"
    return record


def _convergence(metrics: dict) -> list[str]:
    """What metrics.json says of the convergence test (--tol, --rel-tol): met at which epoch, or not met."""
    record = metrics.get("convergence")
    if metrics.get("converged") is None or not isinstance(record, dict):
        return []
    test = record.get("test") or record.get("criterion") or "its test"
    value = record.get("value")
    how = test + (f", value {value:.4g}" if isinstance(value, (int, float)) else "")
    if metrics["converged"]:
        return [f"converged at epoch {record.get('epoch', '?')} ({how})"]
    return [f"did not converge ({how} at the last epoch)"]


def _load_model(path: Path, meta: dict, metrics: dict):
    """The model of the run folder with its final parameters (or the last checkpoint's), in eval mode."""
    from safetensors.torch import load_file

    from genlearn.models.registry import build_from_config

    name = meta.get("model") or metrics.get("model")
    config = meta.get("model_config") or metrics.get("model_config")
    if name is None or config is None:
        raise RunError("no model name and config recorded")
    model = build_from_config(name, config)
    if (path / MODEL_FILE).is_file():
        state = load_file(str(path / MODEL_FILE))
    elif (path / TENSOR_FILE).is_file():
        state = {k[6:]: v for k, v in load_file(str(path / TENSOR_FILE)).items() if k.startswith("model.")}
    else:
        raise RunError(f"neither {MODEL_FILE} nor {TENSOR_FILE} holds its parameters")
    model.load_state_dict(state)
    model.eval()
    return model


def load_dataset_of(record: RunRecord, data_dir=None):
    """The run's data set (from the recorded spec and data folder, or `data_dir`), or None with a note on the
    record when it cannot be loaded (a real data set not on this machine, an in-memory data set)."""
    from genlearn.data.registry import load_dataset

    spec = record.meta.get("data_spec") or record.data.get("spec")
    if not spec:
        record.notes.append("the data set was not recorded by name (an in-memory data set): no plots that need it")
        return None
    try:
        return load_dataset(spec, data_dir if data_dir is not None else record.meta.get("data_dir"))
    except (GenlearnError, OSError) as exc:
        record.notes.append(f"the data set {spec!r} could not be loaded here ({exc}); pass --data-dir for the "
                            "plots that need it")
        return None


__all__ = ["RunRecord", "load_dataset_of", "read_run"]
