"""Tractable models on static binarized MNIST (train 50000 / select on valid 10000 / report test 10000, nats).

Published targets (../shared/data/README.md): MoB K=500 137.64, FVSBN 97.45, NADE 500 fixed order 88.33,
order-agnostic NADE ensemble 87.71, MADE 1 hidden layer 32 masks 88.04 (1 mask 88.40; the paper's MNIST
networks have 8000 hidden units). The target is within 1 nat.

Every model is one of genlearn's recipes (src/genlearn/recipes/*.toml, `genlearn recipes`), run through
`genlearn.fit` exactly as `genlearn fit --recipe NAME` runs it, with the flags below as overrides (recorded in
the results): --budget-minutes is the recipe's max_minutes (the training time budget; a geometric schedule
decays the rate over it), --valid-subset its monitor_rows, --time-decay-to its final_lr_fraction (with the
geometric schedule), --lr-decay a per-epoch factor (exponential schedule). The Trainer monitors the valid NLL
(for ensembles one member), keeps the best epoch's parameters and stops at the budget, the epoch limit or the
patience. The test NLL, the learning curve (the run's history, with training seconds) and the settings are
merged into benchmarks/results/tractable_binarized_mnist.json, keyed by model.

    flock /tmp/genlearn-heavy.lock .venv/bin/python benchmarks/tractable_binarized_mnist.py --models made \
        --budget-minutes 20 > /tmp/tractable_binarized_mnist.log 2>&1
    .venv/bin/python benchmarks/tractable_binarized_mnist.py --smoke --out /tmp/t.json    # seconds, digits
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

import common
import genlearn
from genlearn.recipes import load_recipe

PUBLISHED = {"mixture": 137.64, "fvsbn": 97.45, "nade": 88.33, "oa-nade": 87.71, "made": 88.40, "made-32": 88.04}
#: the model keys of this script (and of its results file) and the recipe each one runs
RECIPE_OF = {"mixture": "mixture-500", "fvsbn": "fvsbn", "nade": "nade-500", "oa-nade": "oa-nade",
             "made": "made-500", "made-32": "made-32"}
#: --smoke: the digits (8x8, embedded) and models small enough to fit in a second or two each
SMOKE_OVERRIDES = {"epochs": 2, "max_minutes": 0.1, "monitor_rows": 100}
SMOKE_MODEL = {"mixture": {"components": 5}, "nade": {"hidden": "16"}, "oa-nade": {"hidden": "16", "orderings": 4},
               "made": {"hidden": "16"}, "made-32": {"hidden": "16", "masks": 4}}


def model_key(name: str) -> str:
    """The script's model key for a key or a recipe name (`made-500` -> `made`)."""
    if name in RECIPE_OF:
        return name
    keys = [k for k, r in RECIPE_OF.items() if r == name]
    if not keys:
        raise SystemExit(f"unknown model {name!r}; choose from {', '.join(RECIPE_OF)} (or their recipes "
                         f"{', '.join(RECIPE_OF.values())})")
    return keys[0]


def overrides_from(args, key: str) -> dict:
    """The recipe settings the command line changes (None: keep the recipe's)."""
    o = {"lr": args.lr, "epochs": args.epochs, "weight_decay": args.weight_decay, "patience": args.patience,
         "monitor_rows": args.valid_subset, "max_minutes": args.budget_minutes, "components": args.components,
         "order": args.order, "hidden": None if args.hidden is None else str(args.hidden)}
    if args.time_decay_to is not None:
        o.update(schedule="geometric", final_lr_fraction=args.time_decay_to)
    elif args.lr_decay is not None:
        o.update(schedule="exponential", gamma=args.lr_decay)
    if args.smoke:
        o = {**SMOKE_OVERRIDES, **SMOKE_MODEL.get(key, {}), **{k: v for k, v in o.items() if v is not None}}
    return {k: v for k, v in o.items() if v is not None}


def run_recipe(key: str, dataset, args, log) -> tuple[dict, object]:
    """Fit the model's recipe (for the mixture, once per smoothing of --smoothing, selected on valid)."""
    recipe = load_recipe(RECIPE_OF[key])
    overrides = overrides_from(args, key)
    if args.threads is None and recipe.threads is not None and not args.smoke:
        torch.set_num_threads(recipe.threads)
    smoothings = [float(s) for s in args.smoothing.split(",")] if key == "mixture" and args.smoothing else [None]
    t0 = time.perf_counter()
    fits, best = [], None
    for a in smoothings:
        over = dict(overrides)
        if a is not None:
            over["smoothing"] = a
            if over.get("max_minutes") is not None:  # the budget is shared by the smoothings tried
                over["max_minutes"] = over["max_minutes"] / len(smoothings)
        kwargs = recipe.fit_kwargs(over)
        if args.full:
            kwargs.pop("max_minutes", None)
        out = None if args.run_dir is None else args.run_dir / (key if a is None else f"{key}-a{a:g}")
        run, curve, summary = common.fit_with_curve(recipe.model, dataset, log=log, out=out, overwrite=True,
                                                    recipe={"name": recipe.name, "overrides": over}, **kwargs)
        fits.append((a, run, curve, summary))
        if a is not None:
            log(f"smoothing {a}: valid {summary['valid_nll']:.3f} after {summary['epochs']} iterations "
                f"({summary['train_seconds']:.0f} s)")
        if best is None or summary["valid_nll"] < best[3]["valid_nll"]:
            best = fits[-1]
    a, run, curve, summary = best
    res = {**summary, "curve": curve, "recipe_name": recipe.name, "overrides": overrides,
           "recipe": recipe.describe()}
    member = common.single_member_nll(run.model, dataset.test)
    if member is not None:
        res["test_nll_single_member"] = member
    if a is not None:
        res["selected_smoothing"] = a
        res["runs"] = [{"smoothing": s, "valid_nll": m["valid_nll"], "iterations": m["epochs"],
                        "best_iteration": m["best_epoch"], "seconds": m["train_seconds"], "stopped_by": m["stopped_by"],
                        "curve": c} for s, _, c, m in fits]
    res["wall_seconds"] = time.perf_counter() - t0
    return res, run.model


def main(argv=None):
    p = common.parser(__file__, __doc__)
    p.add_argument("--models", default="made,fvsbn,mixture",
                   help=f"comma list of {', '.join(RECIPE_OF)} (or their recipe names)")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="training time budget per model (the recipe's max_minutes; default: the recipe's)")
    p.add_argument("--full", action="store_true", help="no time budget (drop the recipe's max_minutes)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--weight-decay", type=float, default=None, help="override the recipe's weight decay")
    p.add_argument("--lr-decay", type=float, default=None,
                   help="per-epoch factor of the learning rate (schedule exponential, gamma)")
    p.add_argument("--time-decay-to", type=float, default=None, metavar="F",
                   help="decay the learning rate geometrically in training time to F times its start over the "
                        "budget (schedule geometric, final_lr_fraction F)")
    p.add_argument("--patience", type=int, default=None, help="override the recipe's early-stopping patience")
    p.add_argument("--valid-subset", type=int, default=None, metavar="N",
                   help="monitor on the first N valid rows (monitor_rows; the final figures use all rows)")
    p.add_argument("--components", type=int, default=None, help="mixture: K (default 500)")
    p.add_argument("--smoothing", type=str, default=None, help="mixture: comma list of Beta pseudo-counts, "
                   "one fit each, selected on valid")
    p.add_argument("--train-subset", type=int, default=None, help="use the first N training examples")
    p.add_argument("--order", choices=("fixed", "random"), default=None,
                   help="made / nade: override the recipe's ordering (random: one random ordering per mask)")
    p.add_argument("--hidden", type=int, default=None, help="made / nade: override the recipe's hidden units")
    p.add_argument("--data", default=None, help="another data spec than the recipes' binarized-mnist")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="also keep each fit as a genlearn run folder DIR/<model> (genlearn eval / sample)")
    args = p.parse_args(argv)
    if args.smoke:
        args.data = args.data or "digits"
        args.models = ",".join(RECIPE_OF) if args.models == p.get_default("models") else args.models
        args.threads = args.threads or 1
    common.set_threads(args.threads)
    keys = [model_key(k) for k in args.models.split(",")]
    dataset = genlearn.load_dataset(args.data or "binarized-mnist", args.data_dir)
    if args.train_subset:
        dataset.train = dataset.train[: args.train_subset]
    settings = {**common.machine_record(), "budget_minutes": args.budget_minutes, "full": args.full,
                "data": dataset.name, "sizes": [dataset.train.shape[0], dataset.valid.shape[0], dataset.test.shape[0]]}
    print("settings", json.dumps(settings))
    for key in keys:
        recipe = load_recipe(RECIPE_OF[key])
        print(f"== {key}: recipe {recipe.name} {json.dumps(recipe.describe())}; overrides "
              f"{json.dumps(overrides_from(args, key))}", flush=True)
        log = lambda s, key=key: print(f"[{key}] {s}", flush=True)  # noqa: E731
        res, model = run_recipe(key, dataset, args, log)
        res.update({"published": PUBLISHED[key], "target": PUBLISHED[key] + 1.0, "settings": settings,
                    "threads": torch.get_num_threads(), "reached_target": res["test_nll"] <= PUBLISHED[key] + 1.0})
        print(f"== {key}: test NLL {res['test_nll']:.3f} nats (published {PUBLISHED[key]}), valid "
              f"{res['valid_nll']:.3f}, wall {res['wall_seconds']:.0f} s", flush=True)
        # the fitted parameters, for later analysis (not committed: *.safetensors)
        from safetensors.torch import save_file

        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(args.out.parent / f"{args.out.stem}_{key}.safetensors"))
        common.write_results(args.out, {key: res}, merge_depth=1)
        save_plots(key, res, model, args.out.parent, dataset.image_shape)
    return 0


def save_plots(key, res, model, folder: Path, image_shape) -> None:
    """64 samples of the selected model and its learning curve, as PNG next to the JSON (best effort)."""
    try:
        from genlearn.plots import learning_curve, sample_grid

        stem = folder / f"tractable_binarized_mnist_{key}"
        if image_shape is not None:
            with torch.no_grad():
                x = model.sample(64, generator=torch.Generator().manual_seed(0))
            sample_grid(x, image_shape, Path(f"{stem}_samples.png"), title=f"{key} samples")
        # an ensemble's curve is that of its members: the training loss averages over random members, the
        # valid NLL is the monitored member's (the ensemble is evaluated once, at the end)
        learning_curve(res["curve"], Path(f"{stem}_curve.png"), title=f"{key} on {res['settings']['data']}")
    except Exception as exc:  # plotting must never lose a measured result
        print(f"(plots for {key} skipped: {exc})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
