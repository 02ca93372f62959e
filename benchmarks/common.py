"""What every benchmark script needs: the machine record, GEMM peak timing, the results JSON, the standard flags,
and a fit through `genlearn.fit` that records its learning curve.

Scripts are run as `python benchmarks/X.py`, so this folder is on sys.path and they `import common`; genlearn
itself is the installed package (editable install in the venv)."""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from genlearn.bench import (  # noqa: F401  (the machine, the GEMM peak, the median's interval: also `genlearn bench`'s)
    ISA_VARIABLES, gemm_gflops, gemm_peak, machine_record, median_interval)

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"
#: where the project's data sets live on this machine (../shared/data next to the repository)
DEFAULT_DATA_DIR = BENCHMARKS.parents[1] / "shared" / "data"


# -- the machine -------------------------------------------------------------------------------------------------
def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


# -- results -----------------------------------------------------------------------------------------------------
def results_path(script: str) -> Path:
    """benchmarks/results/<script stem>.json"""
    return RESULTS / f"{Path(script).stem}.json"


def _merge(old: dict, new: dict, depth: int) -> dict:
    if depth <= 0:
        return dict(new)
    out = dict(old)
    for key, value in new.items():
        out[key] = _merge(out[key], value, depth - 1) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


def _json_safe(obj):
    """JSON has no NaN/inf (written as null) and no tensors (written as numbers or lists)."""
    if isinstance(obj, torch.Tensor):
        obj = obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_results(path, results: dict, merge_depth: int = 0) -> Path:
    """Write `results` as JSON at `path` atomically (temporary file, then rename). With merge_depth = d > 0 the
    file's existing content is kept and the new entries are merged into it d levels deep (1: replace top-level
    keys, e.g. one model's results; 2: replace keys of the second level, e.g. one model of one data set)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if merge_depth > 0 and path.exists():
        results = _merge(json.loads(path.read_text()), results, merge_depth)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_json_safe(results), indent=1, default=str) + "\n")
    tmp.replace(path)
    return path


# -- flags -------------------------------------------------------------------------------------------------------
def parser(script: str, doc: str, data: bool = True, threads: int | None = None) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark has: --out (default results/<script>.json), --smoke
    (tiny embedded or synthetic data, seconds of work, no data directory), --threads, and --data-dir."""
    p = argparse.ArgumentParser(description=(doc or "").strip().split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=results_path(script), help="results JSON")
    p.add_argument("--smoke", action="store_true",
                   help="tiny embedded or synthetic data and sizes, to check that the script runs (seconds)")
    p.add_argument("--threads", type=int, default=threads, help="torch threads (default: torch's)")
    if data:
        p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder of the named data sets")
    return p


# -- fitting through genlearn.fit -----------------------------------------------------------------------------------
def fit_with_curve(model, data, log=None, **kwargs):
    """genlearn.fit(model, data, **kwargs) with a callback that notes the training seconds at the end of every
    evaluated epoch and prints its record through `log` (one JSON line per epoch). Returns (run, curve, summary):
    the fitted Run, its history (the monitored records from epoch 0) with the training seconds (`seconds`), and
    the figures every benchmark reports (train / valid / test NLL, epochs, best epoch, training and wall seconds,
    what stopped the training)."""
    import genlearn

    seconds = {0: 0.0}  # training seconds at the end of each evaluated epoch

    def record(trainer, rec):
        if set(rec) - {"epoch", "step", "loss"}:  # an evaluated epoch (the others hold only the loss)
            seconds[rec["epoch"]] = round(trainer.state.train_seconds, 1)
            if log is not None:
                log(json.dumps(_json_safe({**rec, "seconds": seconds[rec["epoch"]]})))

    kwargs.setdefault("progress", False)
    kwargs.setdefault("plots", False)
    t0 = time.perf_counter()
    run = genlearn.fit(model, data, callbacks=[record], **kwargs)
    metrics = run.metrics
    curve = [{**rec, "seconds": seconds[rec["epoch"]]} if rec.get("epoch") in seconds else rec
             for rec in metrics.get("history", [])]
    stopped = ("patience" if metrics.get("stopped_early") else "time budget" if metrics.get("out_of_time")
               else "epochs")
    summary = {k: metrics.get(k) for k in ("train_nll", "valid_nll", "test_nll") if metrics.get(k) is not None}
    summary.update({"epochs": metrics.get("epochs_run"), "best_epoch": metrics.get("best_epoch"),
                    "train_seconds": metrics.get("train_seconds"), "wall_seconds": time.perf_counter() - t0,
                    "stopped_by": stopped, "model_settings": metrics.get("model_config"),
                    "train_settings": metrics.get("train_config")})
    return run, curve, summary


def single_member_nll(model, x) -> float | None:
    """NLL of the monitored member alone (one mask of a MADE, one ordering of a NADE ensemble); None for a model
    that is not an ensemble."""
    if int(getattr(model, "ensemble_size", 1)) <= 1:
        return None
    from genlearn.divergence import mean_nll

    return mean_nll(model, x, member=int(getattr(model, "monitor_member", 0)))


def model_and_rule(family: str, dataset, **options):
    """A model of `family` built for `dataset` from its options, and the learning rule the family learns with
    under those options (what `genlearn fit FAMILY` trains with), for a public Trainer:
    Trainer(model, dataset, config, rule=rule)."""
    from genlearn.learning.rules import make_rule
    from genlearn.models.registry import build_model, rule_for

    return build_model(family, dataset, **options), make_rule(*rule_for(family, **options))
