"""RBM speed on MNIST (60,000 x 784, binarized at 0.5): one CD-1 epoch (500 hidden, batch 100) through
genlearn's Trainer against scikit-learn's BernoulliRBM in the same run and against the float32 GEMM roofline
measured in the same run; AIS (14,500 and, with --raise-steps, 100,000 temperatures, 100 chains) on a
784 x 500 RBM; exact log Z of a 784 x 25 RBM; peak resident memory.

    flock /tmp/genlearn-heavy.lock .venv/bin/python benchmarks/rbm_speed.py [--data-dir ../shared/data]
        [--repeats 3] [--raise-steps 100000]
    .venv/bin/python benchmarks/rbm_speed.py --smoke --out /tmp/s.json     # seconds: digits, small sizes

Both genlearn's default (full-precision products) and its mixed precision (matmul_precision="bfloat16":
bfloat16 operands, float32 accumulation) are timed; the roofline fractions are against the float32 GEMM peak
(the issue's definition) and, for bfloat16, also against the bfloat16 GEMM peak measured in the same run.
FLOPs of one CD-1 epoch: 5 matrix products of 2 B V H per minibatch (x W, h W^T, v W, x^T P(h|x), v^T P(h|v)),
i.e. 10 M V H = 2.35e11 for M = 60,000. roofline_fraction = (epoch FLOPs / epoch seconds) / peak GEMM FLOP/s,
with the peak measured as the best of torch float32 matrix products (2048^3 and the epoch's own shapes).
Writes benchmarks/results/rbm_speed.json."""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

import common
import genlearn
from genlearn import Dataset
from genlearn.learning.trainer import TrainConfig, Trainer

#: --smoke: the embedded 8x8 digits, a small RBM, short GEMM timings and AIS schedules
SMOKE = {"hidden": 32, "small_hidden": 12, "gemm_seconds": 0.05, "ais_steps": 200, "raise_steps": 300}


def rbm_trainer(ds: Dataset, hidden: int, cfg: TrainConfig, precision: str = "full"):
    """A fresh RBM (CD-1, seed 0, visible biases from the data) and a Trainer of it on ds with the rule
    `genlearn fit rbm` uses."""
    model, rule = common.model_and_rule("rbm", ds, hidden=hidden, k=1, init_seed=0, init_visible="data",
                                        matmul_precision=precision)
    return model, Trainer(model, ds, cfg, rule=rule)


def timed_epochs(ds: Dataset, hidden: int, cfg: TrainConfig, repeats: int, precision: str = "full"):
    """A fresh RBM and its Trainer; wall seconds of `repeats` training epochs. Returns (model, trainer, seconds)."""
    model, trainer = rbm_trainer(ds, hidden, cfg, precision)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trainer.train_epoch()
        times.append(time.perf_counter() - t0)
    return model, trainer, times


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None) -> int:
    ap = common.parser(__file__, __doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--raise-steps", type=int, default=0, help="also time AIS with this many steps (0: skip)")
    ap.add_argument("--skip-sklearn", action="store_true")
    ap.add_argument("--policies", default="default,passive,spin20k",
                    help="OpenMP wait policies to time the CD-1 epoch under (each in a subprocess): default (libgomp's "
                         "spin-then-sleep), passive (OMP_WAIT_POLICY=PASSIVE), spin20k (GOMP_SPINCOUNT=20000)")
    ap.add_argument("--epoch-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--paired", action="store_true",
                    help="only interleave genlearn and scikit-learn epochs (repeats pairs) and the GEMM peak, so that "
                         "both see the same machine state; writes rbm_speed_paired.json")
    ap.add_argument("--ais-steps", type=int, default=None, help="AIS temperatures (default: the published 14,500)")
    args = ap.parse_args(argv)
    common.set_threads(args.threads)
    sizes = SMOKE if args.smoke else {"hidden": 500, "small_hidden": 25, "gemm_seconds": 1.0,
                                      "ais_steps": args.ais_steps, "raise_steps": args.raise_steps}
    if args.smoke:
        args.raise_steps = sizes["raise_steps"]
        args.policies = "" if args.policies == ap.get_default("policies") else args.policies
    res: dict = {**common.machine_record(), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                 "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT")}
    # MNIST 60,000 x 784 (all training images: no validation split) thresholded at 0.5
    data = (genlearn.load_dataset("digits") if args.smoke else
            genlearn.load_dataset("mnist", args.data_dir, binarize="threshold", valid=0))
    x = data.train
    x_np = x.numpy()  # scikit-learn's copy shares the memory
    res["rss_after_data_mb"] = rss_mb()
    M, V = x.shape
    H, B = sizes["hidden"], 100
    res["settings"] = {"data": data.name, "examples": M, "visible": V, "hidden": H, "batch": B, "k": 1,
                       "gradient": "cd", "optimizer": "sgd (momentum 0.5)",
                       "binarization": data.settings.get("binarization")}
    if not args.epoch_only:
        print(json.dumps(res, indent=1))

    # -- GEMM roofline ---------------------------------------------------------------------------
    shapes = {"2048x2048x2048": (2048, 2048, 2048), "B x V x H": (B, V, H), "B x H x V": (B, H, V),
              "V x B x H": (V, B, H)}
    gf, peak = common.gemm_peak(shapes, seconds=sizes["gemm_seconds"])
    res["gemm_gflops"] = gf
    res["gemm_peak_gflops"] = peak
    print("float32 GEMM GFLOP/s:", {k: round(v, 1) for k, v in gf.items()})
    # where bfloat16 is emulated (no AVX512-BF16 / AMX) one 2048^3 product takes ~1 min (0.3 GFLOP/s): the epoch's
    # own shapes only there (the figure says how slow emulation is, not a roofline anyone trains at)
    from genlearn import precision

    shapes16 = shapes if precision.bf16_capable("cpu") else {k: v for k, v in shapes.items() if k != "2048x2048x2048"}
    res["gemm_bfloat16_shapes"] = sorted(shapes16)
    gf16, peak16 = common.gemm_peak(shapes16, seconds=sizes["gemm_seconds"], dtype=torch.bfloat16)
    res["gemm_gflops_bfloat16"] = gf16
    res["gemm_peak_gflops_bfloat16"] = peak16
    print("bfloat16 GEMM GFLOP/s (float32 accumulation):", {k: round(v, 1) for k, v in gf16.items()})

    # -- one CD-1 epoch through the Trainer ------------------------------------------------------
    if args.paired:
        # Interleave genlearn (full and bfloat16 products) and scikit-learn at a fine grain (100 minibatches each,
        # in turn) so that all see the same machine state: this virtual machine's speed drifts by up to ~40%
        # within a minute.
        from sklearn.neural_network import BernoulliRBM

        chunk = 10_000
        parts = [x[s : s + chunk] for s in range(0, M, chunk)]
        cfg = TrainConfig(epochs=1, lr=0.05, optimizer="momentum", momentum=0.5, batch_size=B, seed=0,
                          progress=False)
        precisions = ("full", "bfloat16")
        trainers = {}
        for precision in precisions:
            model, rule = common.model_and_rule("rbm", data, hidden=H, k=1, init_seed=0, init_visible="data",
                                                matmul_precision=precision)
            trainers[precision] = [Trainer(model, Dataset(name=data.name, kind="binary", train=part, valid=None,
                                                          test=None, image_shape=data.image_shape), cfg, rule=rule)
                                   for part in parts]
        ours = {precision: [] for precision in precisions}
        theirs = []
        for _ in range(args.repeats):
            t_ours = dict.fromkeys(precisions, 0.0)
            t_theirs = 0.0
            for i, part in enumerate(parts):
                for precision in precisions:
                    t0 = time.perf_counter()
                    trainers[precision][i].train_epoch()
                    t_ours[precision] += time.perf_counter() - t0
                sk = BernoulliRBM(n_components=H, learning_rate=0.05, batch_size=B, n_iter=1, random_state=0)
                part_np = part.numpy()
                t0 = time.perf_counter()
                sk.fit(part_np)
                t_theirs += time.perf_counter() - t0
            for precision in precisions:
                ours[precision].append(t_ours[precision])
            theirs.append(t_theirs)
            print(f"epoch (6 interleaved chunks of 100 minibatches): genlearn {t_ours['full']:.2f} s, "
                  f"genlearn bfloat16 {t_ours['bfloat16']:.2f} s, scikit-learn {t_theirs:.2f} s, ratios "
                  f"{t_theirs / t_ours['full']:.2f} / {t_theirs / t_ours['bfloat16']:.2f}", flush=True)
        flops = 10.0 * M * V * H
        shapes_peak = max(gf["B x V x H"], gf["B x H x V"], gf["V x B x H"])
        res.update({"paired_sklearn_epoch_seconds_all": theirs, "sklearn_epoch_seconds": min(theirs),
                    "peak_rss_mb": rss_mb()})
        for precision in precisions:
            sfx = "" if precision == "full" else "_bfloat16"
            best = min(ours[precision])
            ratios = sorted(t / o for o, t in zip(ours[precision], theirs))
            res.update({f"paired_epoch_seconds_all{sfx}": ours[precision], f"paired_ratios{sfx}": ratios,
                        f"epoch_seconds{sfx}": best, f"ratio_vs_sklearn{sfx}": ratios[len(ratios) // 2],
                        f"ratio_best_to_best{sfx}": min(theirs) / best,
                        f"roofline_fraction{sfx}": flops / best / 1e9 / peak,
                        f"roofline_fraction_vs_epoch_shapes{sfx}": flops / best / 1e9 / shapes_peak})
            print(f"paired, {precision} products: genlearn {best:.2f} s, sklearn {min(theirs):.2f} s, median "
                  f"ratio {res[f'ratio_vs_sklearn{sfx}']:.2f}, {res[f'roofline_fraction{sfx}']:.2f} of the float32 "
                  f"GEMM peak {peak:.1f} GFLOP/s ({res[f'roofline_fraction_vs_epoch_shapes{sfx}']:.2f} of the "
                  f"epoch's own float32 GEMM shapes)")
        res["roofline_fraction_bfloat16_vs_bfloat16_peak"] = flops / res["epoch_seconds_bfloat16"] / 1e9 / peak16
        print(f"bfloat16 epoch against the bfloat16 GEMM peak ({peak16:.1f} GFLOP/s): "
              f"{res['roofline_fraction_bfloat16_vs_bfloat16_peak']:.2f}")
        out = common.write_results(Path(args.out).with_name("rbm_speed_paired.json"), res)
        print("wrote", out)
        return 0
    if not args.epoch_only and args.policies:
        import subprocess

        envs = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "spin20k": {"GOMP_SPINCOUNT": "20000"}}
        res["epoch_seconds_by_omp_policy"] = {}
        for pol in args.policies.split(","):
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
            env.update(envs[pol])
            cmd = [sys.executable, __file__, "--epoch-only", "--data-dir", str(args.data_dir),
                   "--repeats", str(args.repeats)] + (["--smoke"] if args.smoke else []) + (
                ["--threads", str(args.threads)] if args.threads else [])
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("EPOCH_JSON ")]
            if line:
                res["epoch_seconds_by_omp_policy"][pol] = json.loads(line[-1][11:])
                print(pol, res["epoch_seconds_by_omp_policy"][pol])
    ds = data
    cfg = TrainConfig(epochs=1, lr=0.05, optimizer="momentum", momentum=0.5, batch_size=B, seed=0, progress=False)
    model, trainer, times = timed_epochs(ds, H, cfg, args.repeats)
    epoch = min(times)
    flops = 10.0 * M * V * H
    res["epoch_seconds_all"] = times
    res["epoch_seconds"] = epoch
    res["epoch_gflop"] = flops / 1e9
    res["epoch_gflops_achieved"] = flops / epoch / 1e9
    res["roofline_fraction"] = flops / epoch / 1e9 / peak
    res["rss_after_training_mb"] = rss_mb()
    if not args.epoch_only:  # the same epochs with bfloat16 products (mixed precision), after the float32 ones
        times16 = timed_epochs(ds, H, cfg, args.repeats, "bfloat16")[2]
        res["epoch_seconds_all_bfloat16"] = times16
        res["epoch_seconds_bfloat16"] = min(times16)
        res["roofline_fraction_bfloat16"] = flops / min(times16) / 1e9 / peak
        res["roofline_fraction_bfloat16_vs_bfloat16_peak"] = flops / min(times16) / 1e9 / peak16
        print(f"genlearn CD-1 epoch, bfloat16 products: {min(times16):.2f} s = {res['roofline_fraction_bfloat16']:.2f}"
              f" of the float32 GEMM peak, {res['roofline_fraction_bfloat16_vs_bfloat16_peak']:.2f} of the "
              f"bfloat16 one ({peak16:.1f} GFLOP/s)")
    print(f"genlearn CD-1 epoch: {epoch:.2f} s (all {[round(t, 2) for t in times]}), "
          f"{flops / epoch / 1e9:.1f} GFLOP/s = {res['roofline_fraction']:.2f} of the GEMM peak {peak:.1f}")
    if args.epoch_only:
        print("EPOCH_JSON " + json.dumps({"epoch_seconds": epoch, "all": times, "gemm_peak_gflops": peak,
                                          "roofline_fraction": res["roofline_fraction"]}))
        return 0

    # -- scikit-learn ----------------------------------------------------------------------------
    if not args.skip_sklearn:
        from sklearn.neural_network import BernoulliRBM

        sk_times = []
        for _ in range(max(1, min(2, args.repeats))):
            sk = BernoulliRBM(n_components=H, learning_rate=0.05, batch_size=B, n_iter=1, random_state=0)
            t0 = time.perf_counter()
            sk.fit(x_np)
            sk_times.append(time.perf_counter() - t0)
        res["sklearn_epoch_seconds_all"] = sk_times
        res["sklearn_epoch_seconds"] = min(sk_times)
        res["ratio_vs_sklearn"] = min(sk_times) / epoch
        res["ratio_vs_sklearn_bfloat16"] = min(sk_times) / res["epoch_seconds_bfloat16"]
        print(f"sklearn BernoulliRBM epoch: {min(sk_times):.2f} s -> genlearn is {res['ratio_vs_sklearn']:.2f}x faster")

    # -- AIS on the 784 x 500 RBM after a few epochs -------------------------------------------------
    for _ in range(2):
        trainer.train_epoch()
    from genlearn import subset_kernels

    subset_kernels.ENABLED = False  # the same AIS without the table of W's subset sums for h W^T, first
    t0 = time.perf_counter()
    model.log_partition(method="ais", steps=sizes["ais_steps"], chains=100, seed=0, reverse=False)
    res["ais_seconds_without_table"] = time.perf_counter() - t0
    subset_kernels.ENABLED = True
    res["ais_table_speedup_measured"] = subset_kernels.speedup(100, model.n_hidden, model.n_visible)
    t0 = time.perf_counter()
    est = model.log_partition(method="ais", steps=sizes["ais_steps"], chains=100, seed=0, reverse=False)
    res["ais_seconds"] = time.perf_counter() - t0
    print(f"AIS without the table of subset sums: {res['ais_seconds_without_table']:.1f} s (the table's product "
          f"measured {res['ais_table_speedup_measured']:.2f}x the dense one)")
    res["ais_forward_log_z"] = est.value
    res["ais_ess"] = est.details["ess_forward"]
    print(f"AIS {est.details['steps']:,} x 100 forward: {res['ais_seconds']:.1f} s, log Z = {est.value:.2f}, "
          f"ESS {est.details['ess_forward']:.1f}")
    t0 = time.perf_counter()
    est = model.log_partition(method="ais", steps=sizes["ais_steps"], chains=100, seed=0, reverse=True)
    res["ais_forward_reverse_seconds"] = time.perf_counter() - t0
    res["ais_forward_reverse"] = {k: est.details[k] for k in ("forward", "reverse", "ess_forward", "ess_reverse",
                                                             "burn_in")}
    print(f"AIS forward + reverse (incl. {est.details['burn_in']} burn-in sweeps): "
          f"{res['ais_forward_reverse_seconds']:.1f} s, {res['ais_forward_reverse']}")
    if args.raise_steps:
        t0 = time.perf_counter()
        est = model.log_partition(method="ais", steps=args.raise_steps, chains=100, seed=0, reverse=False)
        res["ais_raise_steps"] = args.raise_steps
        res["ais_raise_seconds"] = time.perf_counter() - t0
        res["ais_raise_log_z"] = est.value
        print(f"AIS {args.raise_steps} x 100 forward: {res['ais_raise_seconds']:.1f} s, log Z = {est.value:.2f}")

    # -- exact log Z of a 784 x 25 RBM -------------------------------------------------------------
    small, small_trainer = rbm_trainer(ds, sizes["small_hidden"], cfg)
    small_trainer.train_epoch()
    t0 = time.perf_counter()
    lz = small.log_partition(method="exact").value
    res["exact_logz_seconds"] = time.perf_counter() - t0
    res["exact_logz_784x25"] = lz
    res["exact_logz_shape"] = [V, sizes["small_hidden"]]
    print(f"exact log Z {V} x {sizes['small_hidden']}: {res['exact_logz_seconds']:.1f} s (log Z = {lz:.4f})")
    res["peak_rss_mb"] = rss_mb()
    res["peak_rss_note"] = ("whole benchmark process incl. scikit-learn's run" if not args.skip_sklearn
                            else "whole benchmark process")
    print(f"peak RSS {res['peak_rss_mb']:.0f} MB (after training only: {res['rss_after_training_mb']:.0f} MB)")
    common.write_results(args.out, res)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
