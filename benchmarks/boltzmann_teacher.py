"""Boltzmann machines learned by the KL gradient: teacher-student, bars-and-stripes, and the estimators compared.

Part 1 (teacher): M samples (1e2 .. 1e5) from a known random Boltzmann machine (`boltzmann-teacher`, n = 12
units, SK couplings J_ij ~ N(0, scale^2/n) in spins, scale 1, fields h_i ~ N(0, 0.3^2)); a student
BoltzmannMachine(12) is fitted by each gradient estimator with the same recipe (full batch, Adam, lr 0.05,
cosine schedule, 2000 epochs); reported: the exact KL(Q||P_theta) to the teacher, the exact KL(Q^||P_theta)
to the data, its excess over the minimum (the exact-gradient ML fit), the largest moment mismatch
|<x_i x_j>_P - <x_i x_j>_Q^| with the model moments by enumeration, and the training wall time.
The ML reference ("exact-ml") runs the exact gradient with a constant rate (heavy-ball momentum 0.9, lr 0.5,
5000 epochs) until the moments match (to < 1e-6 when the maximum-likelihood estimate exists).

Part 2 (bars-and-stripes, exact): the exact gradient on the uniform distribution over the 3x3 (14 patterns)
and 4x4 (30 patterns) bars-and-stripes images (Q^ = Q, every pattern once), the learning curve of the exact
KL, and the explicit pairwise energy lambda * sum_{2x2 blocks} (x_a + x_d - x_b - x_c)^2, whose ground states
are exactly the bars-and-stripes patterns: its KL -> 0 as lambda -> infinity, never 0 at finite lambda.

Part 3: every estimator on bars-and-stripes 3x3 (the comparison table uses part 1 at M = 1e4 and this).

Usage: flock /tmp/genlearn-heavy.lock .venv/bin/python benchmarks/boltzmann_teacher.py [--fast]
       .venv/bin/python benchmarks/boltzmann_teacher.py --smoke --out /tmp/bt.json     # seconds
Writes benchmarks/results/boltzmann_teacher.json (or boltzmann_teacher_fast.json with --fast). Every machine is
built and trained as `genlearn fit boltzmann --gradient ESTIMATOR` does (the family's learning rule, genlearn's
Trainer)."""
from __future__ import annotations

import json
import math
import time

import torch

import common
from genlearn.data.dataset import Dataset
from genlearn.data.registry import load_dataset
from genlearn.data.synthetic import bars_and_stripes_patterns
from genlearn.errors import NumericalError
from genlearn.learning.trainer import TrainConfig, Trainer
from genlearn.learning.boltzmann_gradients import data_moments
from genlearn.models.boltzmann import BoltzmannMachine
from genlearn.models.table import PatternTable

ESTIMATORS = ("exact", "gibbs", "pcd", "mean-field", "tap", "pseudo-likelihood")
PARTS = ("teacher", "bars", "estimators")


def machine(ds, **options):
    """A BoltzmannMachine for `ds` and its learning rule, as `genlearn fit boltzmann` builds them."""
    return common.model_and_rule("boltzmann", ds, **options)


def train(model_rule, ds, epochs, lr, optimizer="adam", schedule="cosine", eval_every=None, seed=0) -> dict:
    """Fit with the generic Trainer and the model's rule; return final exact metrics, moment mismatch and
    timing."""
    model, rule = model_rule
    cfg = TrainConfig(epochs=epochs, lr=lr, optimizer=optimizer, schedule=schedule, seed=seed,
                      eval_every=eval_every or epochs, progress=False)
    trainer = Trainer(model, ds, cfg, rule=rule)
    t0 = time.perf_counter()
    status = "ok"
    try:
        trainer.fit()
    except NumericalError as exc:
        status = f"diverged: {exc}"
    wall = time.perf_counter() - t0
    out = {"status": status, "train_seconds": trainer.state.train_seconds, "wall_seconds": wall,
           "epochs": trainer.state.epoch}
    if status == "ok":
        last = trainer.state.history[-1]
        out.update({k: last.get(k) for k in ("kl_true", "train_kl", "train_nll", "valid_nll")})
        m, c = model.exact_moments()
        md, cd = data_moments(ds.train)
        out["moment_error"] = max(float((m - md).abs().max()), float((c - cd).abs().max()))
        out["history"] = [{k: r.get(k) for k in ("epoch", "kl_true", "train_kl")} for r in trainer.state.history]
    return out


def part_teacher(sizes, epochs, ml_epochs, chains) -> dict:
    rows = []
    for samples in sizes:
        ds = load_dataset(f"boltzmann-teacher:n=12,samples={samples},scale=1.0,field=0.3,seed=0")
        with torch.no_grad():
            teacher_train_kl = float(-ds.truth.log_prob(ds.train).double().mean()) - _entropy(ds.train)
        ref = train(machine(ds), ds, ml_epochs, 0.5, optimizer="momentum", schedule="constant")
        print(f"M={samples:>6}  exact-ml     KL(Q||P)={ref['kl_true']:.5f}  KL(Q^||P)={ref['train_kl']:.5f}  "
              f"moment err={ref['moment_error']:.2e}  {ref['train_seconds']:.1f}s   "
              f"[teacher itself: KL(Q^||Q)={teacher_train_kl:.5f}]", flush=True)
        rows.append({"samples": samples, "estimator": "exact-ml", **ref, "teacher_train_kl": teacher_train_kl})
        for est in ESTIMATORS:
            r = train(machine(ds, gradient=est, n_chains=chains), ds, epochs, 0.05)
            if r["status"] == "ok":
                r["excess_train_kl"] = r["train_kl"] - ref["train_kl"]
                print(f"M={samples:>6}  {est:<17} KL(Q||P)={r['kl_true']:.5f}  KL(Q^||P)={r['train_kl']:.5f} "
                      f"(+{r['excess_train_kl']:.2e})  moment err={r['moment_error']:.2e}  "
                      f"{r['train_seconds']:.1f}s", flush=True)
            else:
                print(f"M={samples:>6}  {est:<17} {r['status'][:100]}", flush=True)
            rows.append({"samples": samples, "estimator": est, **r})
    return {"settings": {"n": 12, "scale": 1.0, "field": 0.3, "teacher_seed": 0, "sizes": sizes,
                         "recipe": f"full batch, adam, lr 0.05, cosine, {epochs} epochs; pcd: {chains} chains, k=1; "
                                   "gibbs: CD-1 from every data row",
                         "ml_recipe": f"exact gradient, heavy-ball momentum 0.9, lr 0.5 constant, {ml_epochs} epochs"},
            "rows": rows}


def _entropy(x) -> float:
    from genlearn.data.empirical import empirical_entropy

    return empirical_entropy(x)


def bars_dataset(size: int) -> Dataset:
    """Q^ = Q: every bars-and-stripes pattern once (the exact uniform distribution)."""
    patterns = bars_and_stripes_patterns(size)
    truth = PatternTable(patterns, torch.full((patterns.shape[0],), 1.0 / patterns.shape[0]))
    return Dataset(name=f"bars-and-stripes-{size}x{size}", kind="binary", train=patterns, valid=patterns,
                   image_shape=(size, size), truth=truth)


def block_energy_machine(size: int, lam: float) -> BoltzmannMachine:
    """E(x) = lam * sum over 2x2 blocks (x_a + x_d - x_b - x_c)^2 = lam x.Q.x as a 0/1 Boltzmann machine:
    with x_i^2 = x_i, b = -lam diag(Q), W = -2 lam offdiag(Q)."""
    n = size * size
    q = torch.zeros(n, n, dtype=torch.float64)
    for i in range(size - 1):
        for j in range(size - 1):
            v = torch.zeros(n, dtype=torch.float64)
            v[i * size + j] = v[(i + 1) * size + j + 1] = 1
            v[i * size + j + 1] = v[(i + 1) * size + j] = -1
            q += torch.outer(v, v)
    diag = torch.diagonal(q).clone()
    w = -2 * lam * (q - torch.diag(diag))
    return BoltzmannMachine(n).double().set_parameters(-lam * diag, w)


BARS_RECIPES = {"momentum": ("momentum", 0.5), "adam": ("adam", 0.1)}


def part_bars(epochs_by_size, eval_every) -> dict:
    from genlearn.divergence import kl_divergence

    out = {}
    for size, epochs in epochs_by_size.items():
        ds = bars_dataset(size)
        n_pat = ds.train.shape[0]
        construction = []
        for lam in (1, 2, 4, 8, 16):
            kl = kl_divergence(ds.truth, block_energy_machine(size, lam))  # an Estimate (exact here)
            construction.append({"lambda": lam, "kl": float(getattr(kl, "value", kl))})
        entry = {"patterns": n_pat, "log_n_patterns": math.log(n_pat), "epochs": epochs,
                 "block_energy_kl": construction, "recipes": {}}
        for label, (optimizer, lr) in BARS_RECIPES.items():
            model, rule = machine(ds)
            curve = train((model, rule), ds, epochs, lr, optimizer=optimizer, schedule="constant",
                          eval_every=eval_every)
            print(f"bars-and-stripes {size}x{size} ({n_pat} patterns, n={size * size}): exact gradient, {optimizer} "
                  f"lr {lr}, {epochs} epochs, {curve['train_seconds']:.1f}s; largest |W_ij| "
                  f"{float(model.weights.detach().abs().max()):.2f}", flush=True)
            for r in curve["history"]:
                if r["epoch"] in _log_points(epochs, eval_every):
                    print(f"   epoch {r['epoch']:>6}  KL(Q||P) = {r['kl_true']:.3e} nats", flush=True)
            entry["recipes"][label] = {
                "recipe": f"exact gradient, {optimizer} lr {lr} constant, full batch", "final_kl": curve["kl_true"],
                "train_seconds": curve["train_seconds"], "moment_error": curve["moment_error"],
                "max_abs_weight": float(model.weights.detach().abs().max()), "curve": curve["history"]}
        print("   explicit pairwise energy lambda*sum_blocks(x_a+x_d-x_b-x_c)^2: " +
              ", ".join(f"lambda={c['lambda']}: KL={c['kl']:.3g}" for c in construction), flush=True)
        out[f"{size}x{size}"] = entry
    return out


def _log_points(epochs, every):
    """0, every, 2 every, 4 every, ... and the last epoch."""
    pts, e = {0, epochs}, every
    while e <= epochs:
        pts.add(e)
        e *= 2
    return pts


def part_bars_estimators(epochs, chains) -> list:
    ds = bars_dataset(3)
    rows = []
    for est in ESTIMATORS:
        r = train(machine(ds, gradient=est, n_chains=chains), ds, epochs, 0.05)
        r.pop("history", None)
        rows.append({"estimator": est, **r})
        if r["status"] == "ok":
            print(f"bars-and-stripes 3x3  {est:<17} KL(Q||P)={r['kl_true']:.4f}  {r['train_seconds']:.1f}s", flush=True)
        else:
            print(f"bars-and-stripes 3x3  {est:<17} {r['status'][:100]}", flush=True)
    return rows


def main(argv=None) -> int:
    p = common.parser(__file__, __doc__, data=False, threads=1)  # 1 thread: fastest for these tiny matrices
    p.add_argument("--fast", action="store_true", help="a small version (minutes)")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts to (re)run, merged into the "
                   "existing results file: teacher, bars, estimators")
    args = p.parse_args(argv)
    common.set_threads(args.threads)
    if args.smoke:
        sizes, epochs, ml_epochs, chains, bars = [100], 30, 60, 50, {3: 60}
        bars_every, bars_est_epochs = 20, 30
    elif args.fast:
        sizes, epochs, ml_epochs, chains, bars = [100, 1000], 200, 300, 200, {3: 400}
        bars_every, bars_est_epochs = 50, 200
    else:
        sizes, epochs, ml_epochs, chains, bars = [100, 1000, 10_000, 100_000], 2000, 5000, 1000, {3: 20_000, 4: 10_000}
        bars_every, bars_est_epochs = 50, 2000
    settings = {**common.machine_record(), "fast": args.fast, "smoke": args.smoke}
    print(json.dumps(settings), flush=True)
    path = args.out
    if args.fast and path == p.get_default("out"):
        path = path.with_name("boltzmann_teacher_fast.json")
    parts = set(args.parts.split(","))
    result = {"seconds": {}, "settings": settings}
    for part in PARTS:
        if part not in parts:
            continue
        t0 = time.perf_counter()
        if part == "teacher":
            result["teacher"] = part_teacher(sizes, epochs, ml_epochs, chains)
        elif part == "bars":
            result["bars_and_stripes"] = part_bars(bars, bars_every)
        else:
            result["bars_and_stripes_estimators"] = {"epochs": bars_est_epochs,
                                                     "recipe": "full batch, adam, lr 0.05, cosine",
                                                     "rows": part_bars_estimators(bars_est_epochs, chains)}
        result["seconds"][part] = time.perf_counter() - t0
    # re-running some parts keeps the others' results in the file
    common.write_results(path, result, merge_depth=2 if parts != set(PARTS) else 0)
    print(f"wall seconds by part: {json.dumps(result['seconds'])}; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
