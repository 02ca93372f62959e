"""RBM test NLL on the static binarized MNIST (50k / 10k / 10k, nats per example), a time-boxed recipe.

Stage "small": 784 x 25 trained by CD-3, 784 x 20 by PCD-1 and by CD-1, each evaluated *exactly*
(enumerating the 2^25 / 2^20 hidden states); published: 143.20 (25 hidden, CD-3, Salakhutdinov & Murray 2008),
150.11 / 164.50 (20 hidden, PCD / CD-1, Burda et al. 2015).
Stage "big": 784 x 500 trained by PCD-k for a wall-clock budget (--big-minutes, learning rate decayed linearly
in the elapsed time), its test NLL estimated by AIS from the data
base rate (the published 14,500-temperature schedule, 100 chains) and by reverse AIS (chains started at 100
training rows + 1,000 Gibbs sweeps), then again with --raise-steps temperatures (RAISE used 100,000);
published 86.34 for CD-25 trained for a long time. A learning curve (AIS with --curve-steps temperatures,
forward only, every --curve-every epochs), the filters and samples are written as PNGs.

    flock /tmp/genlearn-heavy.lock .venv/bin/python benchmarks/rbm_binarized_mnist.py [--data-dir ../shared/data]
        [--stages small,big] [--small-epochs 60] [--big-minutes 9] [--big-k 1] [--raise-steps 100000]
    .venv/bin/python benchmarks/rbm_binarized_mnist.py --smoke --out /tmp/r.json     # seconds, digits

The small stage runs genlearn's recipes rbm-784x25-cd3, rbm-784x20-pcd and rbm-784x20-cd1 through `genlearn.fit`
(as `genlearn fit --recipe` does; --small-epochs overrides their epochs); the big stage starts from the recipe
rbm-784x500 (model and training settings) with the --big-* flags on top, trained by genlearn's Trainer
(geometric decay: its schedule "geometric" over max_minutes; linear decay: set after every epoch by a callback).
All optimisation settings are printed and stored in benchmarks/results/rbm_binarized_mnist.json."""
from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

# libgomp's default busy-waiting makes a 2-thread team 50x slower whenever another process holds a core (seen on
# this shared 2-core machine); passive waiting costs little when the machine is quiet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import common  # noqa: E402
import genlearn  # noqa: E402
from genlearn.evaluation import split_nll  # noqa: E402
from genlearn.learning.trainer import TrainConfig, Trainer  # noqa: E402
from genlearn.plots import plot_filters  # noqa: E402
from genlearn.recipes import load_recipe  # noqa: E402

PUBLISHED = {"rbm25-cd3": 143.20, "rbm20-pcd": 150.11, "rbm20-cd1": 164.50, "rbm500": 86.34}
#: the small stage's models and the recipe each one runs
SMALL_RECIPES = {"rbm25-cd3": "rbm-784x25-cd3", "rbm20-pcd": "rbm-784x20-pcd", "rbm20-cd1": "rbm-784x20-cd1"}
BIG_RECIPE = "rbm-784x500"
#: --smoke: hidden units of the small stage's models (exact log Z over 2^H states stays instant)
SMOKE_SMALL_HIDDEN = {"rbm25-cd3": 10, "rbm20-pcd": 8, "rbm20-cd1": 8}
SMOKE_ARGS = {"small_epochs": 2, "big_minutes": 0.02, "big_hidden": 32, "curve_steps": 20,
              "ais_steps": 100, "raise_steps": 200}


def small_stage(ds, epochs: int, res: dict, smoke: bool = False) -> None:
    for name, recipe_name in SMALL_RECIPES.items():
        recipe = load_recipe(recipe_name)
        overrides = {"epochs": epochs, "eval_every": max(1, epochs), "progress": False,
                     **({"hidden": SMOKE_SMALL_HIDDEN[name]} if smoke else {})}
        evaluation = dict(recipe.evaluation)
        partition = evaluation.pop("partition", "auto")
        run = genlearn.fit(recipe.model, ds, partition=partition, partition_options=evaluation, plots=False,
                           recipe={"name": recipe.name, "overrides": overrides}, **recipe.fit_kwargs(overrides))
        m = run.metrics
        out = {"train": m["train_nll"], "test": m["test_nll"], "valid": m.get("valid_nll"),
               "train_seconds": m["train_seconds"], "exact_eval_seconds": m["wall_seconds"] - m["train_seconds"],
               "model": m["model_config"], "train_config": m["train_config"], "recipe": recipe.name,
               "overrides": overrides, "published_test_nll": PUBLISHED[name], "nll_method": m.get("test_nll_method")}
        res[name] = out
        print(f"{name}: test NLL {out['test']:.2f} (published {PUBLISHED[name]}), train NLL {out['train']:.2f}, "
              f"{out['train_seconds']:.0f} s training, {out['exact_eval_seconds']:.0f} s exact evaluation", flush=True)


def ais_nll(model, ds, steps, chains=100, seed=0, reverse=True) -> dict:
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = model.log_partition(method="ais", steps=steps, chains=chains, seed=seed, reverse=reverse)
    test = split_nll(model, ds.test, log_z=est)
    mean_f = test["mean_free_energy"]
    d = est.details
    out = {"steps": d["steps"], "chains": chains, "log_z_forward": d["forward"], "ess_forward": d["ess_forward"],
           "forward_stderr": d["forward_stderr"], "test_nll_forward": mean_f + d["forward"],
           "seconds": time.perf_counter() - t0, "warnings": [str(w.message) for w in caught]}
    if reverse:
        out.update({"log_z_reverse": d["reverse"], "ess_reverse": d["ess_reverse"],
                    "reverse_stderr": d["reverse_stderr"], "test_nll_reverse": mean_f + d["reverse"],
                    "forward_reverse_gap": d["forward_reverse_gap"], "reverse_init": d["reverse_init"]})
    return out


def load_stage(model, rule, path) -> None:
    """The parameters and the persistent chains of an earlier stage's rbm500.safetensors (the chains under
    "rule.", or, in a file of an earlier version, among the model's buffers)."""
    from safetensors.torch import load_file

    from genlearn.learning.legacy import legacy_rule_state

    tensors = load_file(str(path))
    chains = {k[5:]: v for k, v in tensors.items() if k.startswith("rule.")} or legacy_rule_state(tensors, prefix="")
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in tensors.items() if k in own})
    rule.load_state_tensors(chains)


def lr_factor(progress: float, decay: str, final: float) -> float:
    """Learning-rate multiplier at `progress` = t / T in [0, 1]: linear max(final, 1 - t/T) or geometric
    final^(t/T) (equal steps in log lr)."""
    progress = min(max(progress, 0.0), 1.0)
    if decay == "geometric":
        return final**progress
    return max(final, 1.0 - progress)


def big_stage(ds, args, res: dict, out_dir: Path) -> None:
    """PCD-k for a wall-clock budget of --big-minutes of training, with the learning rate decayed in the elapsed
    training time t out of the budget T, from lr0 = --big-lr to f lr0 with f = --big-final-fraction: linear,
    lr(t) = lr0 max(f, 1 - t / T) (set after every epoch), or geometric, lr(t) = lr0 f^(t / T) (the Trainer's
    schedule "geometric" with max_minutes = T)."""
    recipe = load_recipe(BIG_RECIPE)
    model, rule = common.model_and_rule(recipe.model, ds, **{**recipe.model_options, "k": args.big_k,
                                                             "hidden": args.big_hidden})
    if args.init_from:  # a second stage: continue from a saved model (its parameters and persistent chains)
        load_stage(model, rule, args.init_from)
    budget = 60.0 * args.big_minutes
    geometric = args.big_decay == "geometric"
    cfg = TrainConfig(**{**recipe.train, "lr": args.big_lr, "max_minutes": args.big_minutes,
                         "schedule": "geometric" if geometric else "constant",
                         "final_lr_fraction": args.big_final_fraction, "seed": 0,
                         "progress": False})
    curve = []

    def monitor(trainer, rec):
        e, spent = trainer.state.epoch, trainer.state.train_seconds
        if not geometric:
            for group in trainer.optimizer.param_groups:
                group["lr"] = args.big_lr * lr_factor(spent / budget, args.big_decay, args.big_final_fraction)
        last = spent >= budget or e >= cfg.epochs
        if e % args.curve_every == 0 or last:
            r = ais_nll(trainer.model, ds, args.curve_steps, reverse=False)
            curve.append({"epoch": e, "test_nll_forward": r["test_nll_forward"], "ess": r["ess_forward"],
                          "train_seconds": spent})
            print(f"  epoch {e}: test NLL ~ {r['test_nll_forward']:.2f} (AIS {args.curve_steps} steps, "
                  f"ESS {r['ess_forward']:.0f}), {spent:.0f} s training", flush=True)

    t0 = time.perf_counter()
    trainer = Trainer(model, ds, cfg, callbacks=[monitor], rule=rule)
    trainer.fit()
    wall = time.perf_counter() - t0
    seconds = trainer.state.train_seconds
    big = {"model": model.config(), "train_config": cfg.to_dict(), "train_seconds": seconds,
           "train_wall_seconds_incl_monitoring": wall, "curve": curve, "recipe": BIG_RECIPE,
           "epochs": trainer.state.epoch, "budget_minutes": args.big_minutes,
           "lr_schedule": f"{args.big_decay} in elapsed training time from big_lr to "
                          f"{args.big_final_fraction:g} of it",
           "published_test_nll": PUBLISHED["rbm500"], "init_from": args.init_from}
    res["rbm500"] = big
    from safetensors.torch import save_file

    save_file({**{k: v.contiguous() for k, v in model.state_dict().items()},
               **{f"rule.{k}": v.contiguous() for k, v in rule.state_tensors().items()}},
              str(out_dir / "rbm500.safetensors"))
    big["ais_published_schedule"] = a = ais_nll(model, ds, args.ais_steps)
    print(f"rbm500 ({seconds:.0f} s training): AIS {a['steps']} x 100: test NLL forward {a['test_nll_forward']:.2f} "
          f"(ESS {a['ess_forward']:.1f}), reverse {a['test_nll_reverse']:.2f} (ESS {a['ess_reverse']:.1f}), "
          f"{a['seconds']:.0f} s", flush=True)
    if args.raise_steps:
        big["ais_raise"] = a = ais_nll(model, ds, args.raise_steps)
        print(f"rbm500: AIS {args.raise_steps} x 100: test NLL forward {a['test_nll_forward']:.2f} "
              f"(ESS {a['ess_forward']:.1f}), reverse {a['test_nll_reverse']:.2f} (ESS {a['ess_reverse']:.1f}), "
              f"{a['seconds']:.0f} s", flush=True)
    try:
        from genlearn.plots import sample_grid

        plot_filters(model, out_dir / "rbm500_filters.png", image_shape=ds.image_shape)
        with torch.no_grad():
            x = model.sample(64, generator=torch.Generator().manual_seed(0), steps=1000)
        sample_grid(x, ds.image_shape, out_dir / "rbm500_samples.png", "784x500 RBM: 64 samples (1,000 Gibbs sweeps)")
        if curve:
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(4.5, 3.2))
            ax.plot([c["epoch"] for c in curve], [c["test_nll_forward"] for c in curve], marker=".")
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"test NLL [nats], AIS {args.curve_steps} steps")
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(out_dir / "rbm500_learning_curve.png", dpi=100)
            plt.close(fig)
    except Exception as exc:  # plots are a by-product: never lose the numbers for them
        print("plots failed:", exc)


def main(argv=None) -> int:
    ap = common.parser(__file__, __doc__)
    ap.add_argument("--stages", default="small,big")
    ap.add_argument("--small-epochs", type=int, default=60)
    ap.add_argument("--big-minutes", type=float, default=9.0, help="training budget of the 784 x 500 RBM")
    ap.add_argument("--big-hidden", type=int, default=500, help="hidden units of the big stage's RBM")
    ap.add_argument("--big-k", type=int, default=1)
    ap.add_argument("--big-lr", type=float, default=0.005)
    ap.add_argument("--big-decay", choices=("linear", "geometric"), default="linear",
                    help="learning-rate decay in the elapsed training time")
    ap.add_argument("--big-final-fraction", type=float, default=0.02, help="final lr as a fraction of --big-lr")
    ap.add_argument("--init-from", default=None, metavar="SAFETENSORS",
                    help="start the 784 x 500 RBM from this saved state (rbm500.safetensors of an earlier stage)")
    ap.add_argument("--curve-every", type=int, default=20)
    ap.add_argument("--curve-steps", type=int, default=2000)
    ap.add_argument("--ais-steps", type=int, default=None, help="final AIS temperatures (default: published 14,500)")
    ap.add_argument("--raise-steps", type=int, default=100_000)
    ap.add_argument("--train-subset", type=int, default=0, help="use only this many training rows (smoke runs)")
    args = ap.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE_ARGS.items():
            if getattr(args, key) == ap.get_default(key):
                setattr(args, key, value)
        args.threads = args.threads or 1
    common.set_threads(args.threads)
    t_start = time.perf_counter()
    ds = genlearn.load_dataset("digits" if args.smoke else "binarized-mnist", args.data_dir)
    if args.train_subset:
        ds.train = ds.train[: args.train_subset]
    res: dict = {**common.machine_record(), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                 "args": vars(args), "data": ds.name, "units": f"nats per example, test split of {ds.name}"}
    print(json.dumps(res, indent=1, default=str), flush=True)
    out = Path(args.out)
    stages = args.stages.split(",")
    if "small" in stages:
        small_stage(ds, args.small_epochs, res, args.smoke)
        common.write_results(out, res)
    if "big" in stages:
        big_stage(ds, args, res, out.parent)
    res["wall_seconds"] = time.perf_counter() - t_start
    common.write_results(out, res)
    print(f"wall time {res['wall_seconds']:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
