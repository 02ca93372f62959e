"""Tractable models on the UCI binary sets of the NADE paper (adult, dna, nips): train on train, select on
valid, report test NLL in nats per example, against the published rows (../shared/data/README.md).

Families: mixture of Bernoullis (EM; K and smoothing selected on valid), FVSBN, NADE (500 hidden, fixed
order), order-agnostic NADE (500 hidden, 16-ordering ensemble at test), MADE (500 hidden; one mask, and 32
masks with random orderings = the "mask sampling" row). Each gradient-trained model uses Adam on
model.loss (the loss of the genlearn Trainer) with early stopping on valid and a wall-time budget per model
(--budget-seconds); the budget is what keeps one invocation under the 25-minute limit of the shared machine.
dna uses the NADE/MADE 1400/600 split of dna.npz; adult and nips the *.data files.

    flock /tmp/genlearn-heavy.lock .venv/bin/python benchmarks/tractable_uci.py --datasets adult \
        > /tmp/tractable_uci.log 2>&1
Results: benchmarks/results/tractable_uci.json, keyed by data set then model (test_nll, wall_seconds, ...).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from tractable_binarized_mnist import nll, train_gradient  # noqa: E402

from genlearn.learning.em import fit_em  # noqa: E402
from genlearn.models.fvsbn import FVSBN  # noqa: E402
from genlearn.models.made import MADE  # noqa: E402
from genlearn.models.mixture import MixtureOfBernoulli  # noqa: E402
from genlearn.models.nade import NADE  # noqa: E402

PUBLISHED = {
    "adult": {"mixture": 20.44, "fvsbn": 13.17, "nade": 13.19, "oa-nade": 13.19, "made": 13.12, "made-masks": 13.13},
    "dna": {"mixture": 98.19, "fvsbn": 83.64, "nade": 84.81, "oa-nade": 82.31, "made": 83.63, "made-masks": 79.66},
    "nips": {"mixture": 290.02, "fvsbn": 276.88, "nade": 273.08, "oa-nade": 272.39, "made": 280.25,
             "made-masks": 277.28},
}
MODELS = ("mixture", "fvsbn", "nade", "oa-nade", "made", "made-masks")
#: the recipes (gradient models: Adam on minibatches of 100, early stopping on valid, `patience` epochs)
RECIPES = {
    "mixture": {"components": [8, 16, 32, 64], "smoothing": 1.0, "iterations": 300, "patience": 10},
    "fvsbn": {"model": {}, "lr": 1e-3, "weight_decay": 1e-4, "patience": 30},
    "nade": {"model": {"hidden": 500, "activation": "sigmoid"}, "lr": 1e-3, "weight_decay": 0.0, "patience": 30},
    "oa-nade": {"model": {"hidden": 500, "activation": "relu", "order_agnostic": True, "orderings": 16},
                "lr": 1e-3, "weight_decay": 0.0, "patience": 50},
    "made": {"model": {"hidden": 500}, "lr": 1e-3, "weight_decay": 0.0, "patience": 30},
    "made-masks": {"model": {"hidden": 500, "masks": 32, "order": "random"}, "lr": 1e-3, "weight_decay": 0.0,
                   "patience": 50},
}


def load_uci(name: str, data_dir: Path):
    folder = data_dir / name
    if name == "dna" and (folder / "dna.npz").exists():
        with np.load(folder / "dna.npz", allow_pickle=False) as f:
            return tuple(torch.from_numpy(f[f"{s}_data"].astype(np.float32)) for s in ("train", "valid", "test"))
    out = []
    for split in ("train", "valid", "test"):
        path = folder / f"{name}.{split}.data"
        if not path.exists():
            raise SystemExit(f"missing {path}; pass --data-dir")
        out.append(torch.from_numpy(np.loadtxt(path, delimiter=",", dtype=np.float32)))
    return tuple(out)


def run_mixture(train, valid, test, budget, log):
    rec = RECIPES["mixture"]
    runs, best = [], None
    t0 = time.perf_counter()
    for k in rec["components"]:
        model = MixtureOfBernoulli(train.shape[1], components=k, smoothing=rec["smoothing"])
        res = fit_em(model, train, iterations=rec["iterations"], valid=valid, patience=rec["patience"], tol=1e-7,
                     generator=torch.Generator().manual_seed(0), max_seconds=budget / len(rec["components"]))
        v = nll(model.log_prob, valid)
        runs.append({"components": k, "valid_nll": v, "iterations": res.iterations, "seconds": res.seconds})
        log(f"K={k}: valid {v:.3f} ({res.iterations} iterations)")
        if best is None or v < best[0]:
            best = (v, model, k)
    v, model, k = best
    return {"test_nll": nll(model.log_prob, test), "valid_nll": v, "selected_components": k, "runs": runs,
            "wall_seconds": time.perf_counter() - t0}


def make(key, n, train, seed=0):
    spec = RECIPES[key]["model"]
    cls = {"fvsbn": FVSBN, "nade": NADE, "oa-nade": NADE, "made": MADE, "made-masks": MADE}[key]
    return cls(n, seed=seed, **spec).init_from_data(train)


def run_gradient(key, train, valid, test, budget, log, batch_size=100, max_epochs=3000):
    rec = RECIPES[key]
    model = make(key, train.shape[1], train)
    t0 = time.perf_counter()
    curve, secs, best_epoch = train_gradient(model, train, valid, lr=rec["lr"], batch_size=batch_size,
                                             epochs=max_epochs, patience=rec["patience"], budget_s=budget,
                                             weight_decay=rec["weight_decay"], log=lambda s: None)
    log(f"{len(curve)} epochs in {secs:.0f} s, best epoch {best_epoch}, valid (monitored) "
        f"{min(c['valid_nll'] for c in curve):.3f}")
    model.eval()
    out = {"valid_nll": nll(model.log_prob, valid), "test_nll": nll(model.log_prob, test),
           "epochs": len(curve), "best_epoch": best_epoch, "train_seconds": secs,
           "stopped_by": "patience" if len(curve) - best_epoch >= rec["patience"] else "time budget",
           "curve": [{k: c[k] for k in ("epoch", "seconds", "train_loss", "valid_nll")} for c in curve]}
    out["wall_seconds"] = time.perf_counter() - t0
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="adult,dna,nips")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--data-dir", type=Path, default=HERE.parents[1] / "shared" / "data")
    p.add_argument("--budget-seconds", type=float, default=150.0, help="wall-time budget per model and data set")
    p.add_argument("--out", type=Path, default=HERE / "results" / "tractable_uci.json")
    args = p.parse_args(argv)
    settings = {"machine": f"{platform.machine()} {os.cpu_count()} cores, no GPU", "torch": torch.__version__,
                "threads": torch.get_num_threads(), "budget_seconds": args.budget_seconds,
                "date": time.strftime("%Y-%m-%d %H:%M")}
    print("settings", json.dumps(settings), flush=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.datasets.split(","):
        train, valid, test = load_uci(name, args.data_dir)
        print(f"== {name}: {train.shape[0]}/{valid.shape[0]}/{test.shape[0]} x {train.shape[1]}", flush=True)
        results.setdefault(name, {})
        for key in args.models.split(","):
            torch.manual_seed(0)
            log = lambda s: print(f"[{name} {key}] {s}", flush=True)  # noqa: E731
            if key == "mixture":
                res = run_mixture(train, valid, test, args.budget_seconds, log)
            else:
                res = run_gradient(key, train, valid, test, args.budget_seconds, log)
            res.update({"published": PUBLISHED[name][key], "recipe": RECIPES[key], "settings": settings})
            print(f"== {name} {key}: test {res['test_nll']:.3f} (published {PUBLISHED[name][key]}), valid "
                  f"{res['valid_nll']:.3f}, wall {res['wall_seconds']:.0f} s", flush=True)
            results[name][key] = res
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
