"""Tractable models on the UCI binary sets of the NADE paper (adult, dna, nips): train on train, select on
valid, report test NLL in nats per example, against the published rows (../shared/data/README.md).

Families: mixture of Bernoullis (EM; K selected on valid), FVSBN, NADE (500 hidden, fixed order),
order-agnostic NADE (500 hidden, 16-ordering ensemble at test), MADE (500 hidden; one mask, and 32 masks with
random orderings = the "mask sampling" row). Every model is fitted by `genlearn.fit` (the Trainer of
`genlearn fit`): gradient models with Adam on minibatches of 100, early stopping on valid (`patience` epochs)
and the best epoch kept, within a wall-time budget per model (--budget-seconds, the fit's max_minutes); the
budget is what keeps one invocation under the 25-minute limit of the shared machine. Data come from
`genlearn.load_dataset` (dna: the NADE/MADE 1400/600 split of dna.npz; adult and nips: the *.data files).

    flock /tmp/genlearn-heavy.lock .venv/bin/python benchmarks/tractable_uci.py --datasets adult \
        > /tmp/tractable_uci.log 2>&1
    .venv/bin/python benchmarks/tractable_uci.py --smoke --out /tmp/u.json    # seconds, digits
Results: benchmarks/results/tractable_uci.json, keyed by data set then model (test_nll, wall_seconds, ...).
"""
from __future__ import annotations

import json
import sys
import time

import torch

import common
import genlearn

PUBLISHED = {
    "adult": {"mixture": 20.44, "fvsbn": 13.17, "nade": 13.19, "oa-nade": 13.19, "made": 13.12, "made-masks": 13.13},
    "dna": {"mixture": 98.19, "fvsbn": 83.64, "nade": 84.81, "oa-nade": 82.31, "made": 83.63, "made-masks": 79.66},
    "nips": {"mixture": 290.02, "fvsbn": 276.88, "nade": 273.08, "oa-nade": 272.39, "made": 280.25,
             "made-masks": 277.28},
}
MODELS = ("mixture", "fvsbn", "nade", "oa-nade", "made", "made-masks")
#: training settings of every gradient-trained model (genlearn.fit / TrainConfig fields)
GRADIENT_TRAINING = {"optimizer": "adam", "lr": 1e-3, "batch_size": 100, "epochs": 3000, "keep_best": True}
#: the recipes: family, model options, training settings (on top of GRADIENT_TRAINING for gradient models)
RECIPES = {
    "mixture": {"family": "mixture", "components": [8, 16, 32, 64], "model": {"em": True, "smoothing": 1.0},
                "train": {"epochs": 300, "patience": 10, "keep_best": True}},
    "fvsbn": {"family": "fvsbn", "model": {}, "train": {"weight_decay": 1e-4, "patience": 30}},
    "nade": {"family": "nade", "model": {"hidden": "500", "activation": "sigmoid"},
             "train": {"weight_decay": 0.0, "patience": 30}},
    "oa-nade": {"family": "nade", "model": {"hidden": "500", "activation": "relu", "order_agnostic": True,
                                            "orderings": 16}, "train": {"weight_decay": 0.0, "patience": 50}},
    "made": {"family": "made", "model": {"hidden": "500"}, "train": {"weight_decay": 0.0, "patience": 30}},
    "made-masks": {"family": "made", "model": {"hidden": "500", "masks": 32, "order": "random"},
                   "train": {"weight_decay": 0.0, "patience": 50}},
}
#: --smoke: the embedded 8x8 digits and small models, a few epochs each
SMOKE_DATA = "digits"
SMOKE_MODEL = {"nade": {"hidden": "8"}, "oa-nade": {"hidden": "8", "orderings": 2}, "made": {"hidden": "8"},
               "made-masks": {"hidden": "8", "masks": 2}}


def run_mixture(dataset, budget, log, smoke=False):
    """One EM fit per number of components K, K selected on valid."""
    rec = RECIPES["mixture"]
    components = rec["components"][:2] if smoke else rec["components"]
    train = {**rec["train"], "max_minutes": budget / 60 / len(components), **({"epochs": 2} if smoke else {})}
    runs, best = [], None
    t0 = time.perf_counter()
    for k in components:
        run, _, summary = common.fit_with_curve("mixture", dataset, components=k, **rec["model"], **train)
        runs.append({"components": k, "valid_nll": summary["valid_nll"], "iterations": summary["epochs"],
                     "seconds": summary["train_seconds"]})
        log(f"K={k}: valid {summary['valid_nll']:.3f} ({summary['epochs']} iterations)")
        if best is None or summary["valid_nll"] < best[0]["valid_nll"]:
            best = (summary, k)
    summary, k = best
    return {"test_nll": summary["test_nll"], "valid_nll": summary["valid_nll"], "selected_components": k,
            "runs": runs, "wall_seconds": time.perf_counter() - t0}


def run_gradient(key, dataset, budget, log, smoke=False):
    rec = RECIPES[key]
    model = {**rec["model"], **(SMOKE_MODEL.get(key, {}) if smoke else {})}
    train = {**GRADIENT_TRAINING, **rec["train"], "max_minutes": budget / 60, **({"epochs": 2} if smoke else {})}
    run, curve, summary = common.fit_with_curve(rec["family"], dataset, **model, **train)
    log(f"{summary['epochs']} epochs in {summary['train_seconds']:.0f} s, best epoch {summary['best_epoch']}, "
        f"valid (monitored) {min(c.get('valid_nll', c.get('valid_nll_member', float('inf'))) for c in curve):.3f}")
    keys = ("epoch", "seconds", "train_loss", "valid_nll", "valid_nll_member")
    return {"valid_nll": summary["valid_nll"], "test_nll": summary["test_nll"], "epochs": summary["epochs"],
            "best_epoch": summary["best_epoch"], "train_seconds": summary["train_seconds"],
            "stopped_by": summary["stopped_by"], "wall_seconds": summary["wall_seconds"],
            "curve": [{k: v for k, v in {**c, "train_loss": c.get("loss")}.items() if k in keys} for c in curve]}


def main(argv=None):
    p = common.parser(__file__, __doc__)
    p.add_argument("--datasets", default="adult,dna,nips")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--budget-seconds", type=float, default=150.0, help="wall-time budget per model and data set")
    args = p.parse_args(argv)
    if args.smoke:
        args.datasets, args.budget_seconds, args.threads = "digits", 5.0, args.threads or 1
    common.set_threads(args.threads)
    settings = {**common.machine_record(), "budget_seconds": args.budget_seconds}
    print("settings", json.dumps(settings), flush=True)
    for name in args.datasets.split(","):
        dataset = genlearn.load_dataset(SMOKE_DATA if args.smoke else name, args.data_dir)
        print(f"== {name}: {dataset.train.shape[0]}/{dataset.valid.shape[0]}/{dataset.test.shape[0]} x "
              f"{dataset.n_features}", flush=True)
        for key in args.models.split(","):
            torch.manual_seed(0)
            log = lambda s, key=key: print(f"[{name} {key}] {s}", flush=True)  # noqa: E731
            if key == "mixture":
                res = run_mixture(dataset, args.budget_seconds, log, args.smoke)
            else:
                res = run_gradient(key, dataset, args.budget_seconds, log, args.smoke)
            published = PUBLISHED.get(name, {}).get(key)
            res.update({"published": published, "recipe": RECIPES[key], "settings": settings})
            print(f"== {name} {key}: test {res['test_nll']:.3f} (published {published}), valid "
                  f"{res['valid_nll']:.3f}, wall {res['wall_seconds']:.0f} s", flush=True)
            common.write_results(args.out, {name: {key: res}}, merge_depth=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
