"""RBM speed on MNIST (60,000 x 784, binarized at 0.5): one CD-1 epoch (500 hidden, batch 100) through
genlearn's Trainer against scikit-learn's BernoulliRBM in the same run and against the float32 GEMM roofline
measured in the same run; AIS (14,500 and, with --raise-steps, 100,000 temperatures, 100 chains) on a
784 x 500 RBM; exact log Z of a 784 x 25 RBM; peak resident memory.

    flock /tmp/genlearn-heavy.lock .venv/bin/python benchmarks/rbm_speed.py [--data-dir ../shared/data]
        [--repeats 3] [--raise-steps 100000]

Both genlearn's default (full-precision products) and its mixed precision (matmul_precision="bfloat16":
bfloat16 operands, float32 accumulation) are timed; the roofline fractions are against the float32 GEMM peak
(the issue's definition) and, for bfloat16, also against the bfloat16 GEMM peak measured in the same run.
FLOPs of one CD-1 epoch: 5 matrix products of 2 B V H per minibatch (x W, h W^T, v W, x^T P(h|x), v^T P(h|v)),
i.e. 10 M V H = 2.35e11 for M = 60,000. roofline_fraction = (epoch FLOPs / epoch seconds) / peak GEMM FLOP/s,
with the peak measured as the best of torch float32 matrix products (2048^3 and the epoch's own shapes).
Writes benchmarks/results/rbm_speed.json."""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from genlearn.data import Dataset  # noqa: E402
from genlearn.learning.trainer import TrainConfig, Trainer  # noqa: E402
from genlearn.models.rbm import RBM  # noqa: E402


def read_idx_images(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in (1, 2, 3))
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows * cols)


def gemm_gflops(m: int, k: int, n: int, seconds: float = 1.0, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    out = torch.empty(m, n, dtype=dtype)
    torch.mm(a, b, out=out)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b, out=out)
        reps += 1
    return 2.0 * m * k * n * reps / (time.perf_counter() - t0) / 1e9


def timed_epochs(ds: Dataset, hidden: int, cfg: TrainConfig, repeats: int, precision: str = "full"):
    """A fresh RBM (CD-1, seed 0, visible biases from the data) and its Trainer; wall seconds of `repeats`
    training epochs. Returns (model, trainer, seconds)."""
    model = RBM(ds.train.shape[1], hidden, k=1, seed=0, matmul_precision=precision)
    model.init_visible_bias(ds.train)
    trainer = Trainer(model, ds, cfg)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trainer._epoch()
        times.append(time.perf_counter() - t0)
    return model, trainer, times


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
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
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rbm_speed.json"))
    args = ap.parse_args(argv)
    path = Path(args.data_dir) / "mnist" / "train-images-idx3-ubyte.gz"
    if not path.exists():
        print(f"MNIST not found at {path}; pass --data-dir")
        return 1
    res: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
                 "torch": torch.__version__, "threads": torch.get_num_threads(),
                 "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                 "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT"),
                 "load_average_at_start": os.getloadavg()}
    x_np = (read_idx_images(path) > 127).astype(np.float32)
    x = torch.from_numpy(x_np)
    M, V = x.shape
    H, B = 500, 100
    res["settings"] = {"examples": M, "visible": V, "hidden": H, "batch": B, "k": 1, "gradient": "cd",
                       "optimizer": "sgd (momentum 0.5)", "binarization": "threshold 0.5"}
    if not args.epoch_only:
        print(json.dumps(res, indent=1))

    # -- GEMM roofline ---------------------------------------------------------------------------
    shapes = {"2048x2048x2048": (2048, 2048, 2048), "B x V x H": (B, V, H), "B x H x V": (B, H, V),
              "V x B x H": (V, B, H)}
    gf = {name: gemm_gflops(*s) for name, s in shapes.items()}
    peak = max(gf.values())
    res["gemm_gflops"] = gf
    res["gemm_peak_gflops"] = peak
    print("float32 GEMM GFLOP/s:", {k: round(v, 1) for k, v in gf.items()})
    gf16 = {name: gemm_gflops(*sh, dtype=torch.bfloat16) for name, sh in shapes.items()}
    peak16 = max(gf16.values())
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
            model = RBM(V, H, k=1, seed=0, matmul_precision=precision)
            model.init_visible_bias(x)
            trainers[precision] = [Trainer(model, Dataset(name="mnist-threshold", kind="binary", train=part,
                                                          valid=None, test=None, image_shape=(28, 28)), cfg)
                                   for part in parts]
        ours = {precision: [] for precision in precisions}
        theirs = []
        for _ in range(args.repeats):
            t_ours = dict.fromkeys(precisions, 0.0)
            t_theirs = 0.0
            for i, part in enumerate(parts):
                for precision in precisions:
                    t0 = time.perf_counter()
                    trainers[precision][i]._epoch()
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
        out = Path(args.out).with_name("rbm_speed_paired.json")
        out.write_text(json.dumps(res, indent=2))
        print("wrote", out)
        return 0
    if not args.epoch_only and args.policies:
        import subprocess

        envs = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "spin20k": {"GOMP_SPINCOUNT": "20000"}}
        res["epoch_seconds_by_omp_policy"] = {}
        for pol in args.policies.split(","):
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
            env.update(envs[pol])
            out = subprocess.run([sys.executable, __file__, "--epoch-only", "--data-dir", args.data_dir,
                                  "--repeats", str(args.repeats)], env=env, capture_output=True, text=True)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("EPOCH_JSON ")]
            if line:
                res["epoch_seconds_by_omp_policy"][pol] = json.loads(line[-1][11:])
                print(pol, res["epoch_seconds_by_omp_policy"][pol])
    ds = Dataset(name="mnist-threshold", kind="binary", train=x, valid=None, test=None, image_shape=(28, 28))
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
        trainer._epoch()
    t0 = time.perf_counter()
    est = model.log_partition(method="ais", steps=None, chains=100, seed=0, reverse=False)
    res["ais_seconds"] = time.perf_counter() - t0
    res["ais_forward_log_z"] = est.value
    res["ais_ess"] = est.details["ess_forward"]
    print(f"AIS 14,500 x 100 forward: {res['ais_seconds']:.1f} s, log Z = {est.value:.2f}, "
          f"ESS {est.details['ess_forward']:.1f}")
    t0 = time.perf_counter()
    est = model.log_partition(method="ais", steps=None, chains=100, seed=0, reverse=True)
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
    small = RBM(V, 25, k=1, seed=0)
    small.init_visible_bias(x)
    Trainer(small, ds, TrainConfig(epochs=1, lr=0.05, optimizer="momentum", momentum=0.5, batch_size=B, seed=0,
                                   progress=False))._epoch()
    t0 = time.perf_counter()
    lz = small.log_partition(method="exact").value
    res["exact_logz_seconds"] = time.perf_counter() - t0
    res["exact_logz_784x25"] = lz
    print(f"exact log Z 784 x 25: {res['exact_logz_seconds']:.1f} s (log Z = {lz:.4f})")
    res["peak_rss_mb"] = rss_mb()
    res["peak_rss_note"] = ("whole benchmark process incl. scikit-learn's run" if not args.skip_sklearn
                            else "whole benchmark process")
    print(f"peak RSS {res['peak_rss_mb']:.0f} MB (after training only: {res['rss_after_training_mb']:.0f} MB)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
