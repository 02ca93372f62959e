"""Side by side, interleaved in one process: genlearn.sklearn.BernoulliRBM against scikit-learn's
sklearn.neural_network.BernoulliRBM, both through their public interface with the same arguments
(n_components=500, batch_size=100, n_iter=1, learning_rate=0.01, random_state=pair): one PCD-1 epoch over the
60,000 MNIST training images binarized at 0.5 (pixel >= 128, as ../shared/tools/rbm_side_by_side.py), or, when
the data folder is absent, 60,000 random rows of density 0.13 (binarized MNIST's).

    .venv/bin/python benchmarks/speed.py [--pairs 5] [--threads 2] [--rows 60000] [--variants auto,full]
    .venv/bin/python benchmarks/speed.py --smoke --out /tmp/speed.json        # seconds: small sizes

`genlearn bench` (genlearn.bench, whose timing helpers this script uses) makes the same comparison through the
product for any data set: `genlearn bench --data mnist:binarize=threshold,valid=0 --data-dir DIR --threads 2 --cli`
times the same 60,000 rows with the wrapper ("auto"), scikit-learn and `genlearn fit rbm`. This script adds the
variants below, the sums' machine record and --pool.

genlearn variants (each timed in every pair, the order of the fits alternating from pair to pair):
- auto: the default matmul_precision="auto" (bfloat16 products only where this machine runs them faster);
- full: float32 products (products with a sparse 0/1 operand as compiled sums of selected rows where this
  machine runs them faster, genlearn.binary_kernels: the default);
- dense: float32 products, all dense (binary_kernels.ENABLED = False): what "full" was before the sums;
- unfused: "full" with the step of single kernels and torch operations (cd_kernels.ENABLED = False) instead of
  genlearn.cd_kernels' three compiled passes around the dense product (what "full" was before them);
- bfloat16: explicit bfloat16 products (warns once where they are emulated);
- cli: `python -m genlearn fit rbm` in a child process with the same settings (--gradient pcd --n-chains 100
  --k 1 --optimizer sgd --lr 0.01 --batch-size 100 --epochs 1, default matmul precision) on an .npz of the same
  rows (valid and test: the first 100, so that its AIS evaluation, at 100 temperatures x 10 chains, is short);
  its time is the run's `train_seconds` from metrics.json: the epoch, without the start-up and the evaluation
  (the child's whole wall time is recorded too, as cli_wall_seconds; cli_timings_remembered: how many one-off
  timings the child read from the machine's timing cache, genlearn.timing_cache, instead of measuring them).

Each fit starts after --settle seconds (default 0.5) with nothing running, not timed: numpy's OpenBLAS threads
keep spinning after scikit-learn's last product (~0.07 s of CPU, seen as a third busy thread in /proc during the
fit that follows at once), which would otherwise be charged to whichever fit comes next.

Reported: seconds of each fit per pair, medians over the pairs, the ratio scikit-learn / genlearn (the median of
the per-pair ratios, with a distribution-free 95% interval for it, common.median_interval: with 5 pairs it is
the range of the pairs, at 93.8%), the roofline fraction (epoch FLOPs / seconds / the float32 GEMM peak measured here;
FLOPs = 10 M V H, the 5 products of a CD-1 minibatch as in benchmarks/rbm_speed.py), what "auto" resolved to
(for a product, and for the PCD-1 step, whose bfloat16 step speedup genlearn.learning.cd_precision times where the
product would pick bfloat16), and
the machine record (CPU capability, bfloat16 support and measured speedup, the sparse/dense speed ratios of
the two product kinds at density 0.13, torch
version, torch and BLAS threads, load average before and after). --threads T sets both torch's threads and
numpy's BLAS threads (scikit-learn's products) to T. Writes benchmarks/results/speed.json.

    .venv/bin/python benchmarks/speed.py --pool benchmarks/results/speed_a.json benchmarks/results/speed_b.json ...

pools the pairs of earlier runs instead (nothing is timed): for each variant, the median of all per-pair ratios
with its 95% interval, the median of the runs' ratios, and how many runs reached each ratio; written to --out
(default benchmarks/results/speed_pooled.json)."""
from __future__ import annotations

import gzip
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import common

VARIANTS = ("auto", "full", "dense", "unfused", "bfloat16", "cli")
V, H, BATCH = 784, 500, 100


def sums_speedups(hid: int) -> dict:
    """Dense product time / compiled-sums time (genlearn.binary_kernels, indexing included) at density 0.13, one
    batch: x W (BATCH x V @ V x hid) and the statistics x^T P (2 BATCH rows)."""
    import torch

    from genlearn import binary_kernels as bk, products

    g = torch.Generator().manual_seed(0)
    W, b = torch.randn(V, hid, generator=g), torch.zeros(hid)
    x1, x2 = ((torch.rand(r, V, generator=g) < 0.13).float() for r in (BATCH, 2 * BATCH))
    P, out1, out2 = torch.randn(2 * BATCH, hid, generator=g), torch.empty(BATCH, hid), torch.empty(V, hid)
    xw = (bk._best_time(lambda: products.addmm(b, x1, W, out=out1))
          / bk._best_time(lambda: bk.rows_addmm(x1, W, b, out1)))
    st = bk._best_time(lambda: products.mm(x2.T, P, out=out2)) / bk._best_time(lambda: bk.rows_t_mm(x2, P, out2))
    return {"x W": round(xw, 2), "x^T P": round(st, 2)}


def load_rows(data_dir: Path, rows: int, smoke: bool) -> tuple[np.ndarray, str]:
    """(rows x 784 float32 0/1 array, its description): MNIST training images >= 128, else random density 0.13."""
    path = data_dir / "mnist" / "train-images-idx3-ubyte.gz"
    if path.exists() and not smoke:
        raw = gzip.open(path).read()
        X = (np.frombuffer(raw, np.uint8, offset=16).reshape(-1, V) >= 128).astype(np.float32)
        return X[:rows], f"MNIST training images binarized at 0.5 ({path}), first {min(rows, len(X))} rows"
    X = (np.random.default_rng(0).random((rows, V)) < 0.13).astype(np.float32)
    return X, "random 0/1 rows of density 0.13 (MNIST data folder absent or --smoke)"


def pair_ratios(results: dict, variant: str) -> list:
    """scikit-learn's seconds / the variant's, pair by pair, from one run's results."""
    return [s / g for s, g in zip(results["seconds"]["sklearn"], results["seconds"][variant])]


def pool_runs(paths: list) -> dict:
    """The pooled figures of earlier runs' result files: per variant, every pair's ratio, their median and its 95%
    interval (common.median_interval), and each run's median ratio."""
    runs = {str(path): json.loads(Path(path).read_text()) for path in paths}
    pooled = {"runs": list(runs), "variants": {}}
    for variant in sorted({v for r in runs.values() for v in r["variants"]}):
        per_run = {name: pair_ratios(r, variant) for name, r in runs.items() if variant in r["variants"]}
        ratios = [x for values in per_run.values() for x in values]
        low, high, coverage = common.median_interval(ratios)
        run_medians = [statistics.median(values) for values in per_run.values()]
        pooled["variants"][variant] = {
            "pairs": len(ratios), "runs": len(per_run), "pair_ratios": ratios, "median_pair_ratio":
            statistics.median(ratios), "interval": [low, high], "interval_coverage": coverage,
            "run_medians": run_medians, "median_of_run_medians": statistics.median(run_medians)}
    return pooled


def main(argv=None) -> int:
    p = common.parser(__file__, __doc__)
    p.add_argument("--pool", nargs="+", type=Path, metavar="JSON",
                   help="pool the pairs of these earlier runs' results (no fit is timed)")
    p.add_argument("--pairs", type=int, default=5, help="interleaved pairs (medians over them)")
    p.add_argument("--rows", type=int, default=60_000, help="training rows of the epoch")
    p.add_argument("--hidden", type=int, default=H, help="n_components of both")
    p.add_argument("--variants", default=None,
                   help=f"genlearn variants, from {','.join(VARIANTS)} (default auto,full; with --smoke also "
                        "unfused,cli)")
    p.add_argument("--gemm-seconds", type=float, default=0.5, help="timing of each GEMM peak shape")
    p.add_argument("--settle", type=float, default=0.5,
                   help="idle seconds before each timed fit (not timed; 0 with --smoke)")
    args = p.parse_args(argv)
    if args.pool:
        missing = [str(f) for f in args.pool if not f.is_file()]
        if missing:
            p.error(f"--pool: no such file: {', '.join(missing)}")
        for f in args.pool:
            try:
                run = json.loads(f.read_text())
            except (ValueError, UnicodeDecodeError) as e:
                p.error(f"--pool: {f} is not JSON ({e})")
            if not (isinstance(run, dict) and "variants" in run and "sklearn" in run.get("seconds", {})):
                p.error(f"--pool: {f} is not the results of a speed.py run (no seconds per pair)")
        pooled = pool_runs(args.pool)
        for variant, f in pooled["variants"].items():
            low, high = f["interval"]
            print(f"{variant}: {f['pairs']} pairs of {f['runs']} runs: scikit-learn / genlearn "
                  f"{f['median_pair_ratio']:.2f}x (interval {low:.2f}-{high:.2f}x at "
                  f"{100 * f['interval_coverage']:.1f}%); runs {', '.join(f'{m:.2f}' for m in f['run_medians'])}, "
                  f"median {f['median_of_run_medians']:.2f}x")
        out = common.RESULTS / "speed_pooled.json" if args.out == common.results_path(__file__) else args.out
        print("wrote", common.write_results(out, pooled))
        return 0
    if args.variants is None:
        args.variants = "auto,full,unfused,cli" if args.smoke else "auto,full"
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        p.error(f"unknown --variants {', '.join(unknown) or '(none)'}: choose from {', '.join(VARIANTS)}")
    if args.smoke:
        args.rows, args.hidden, args.pairs, args.gemm_seconds, args.settle = 2000, 64, 2, 0.05, 0.0
    common.set_threads(args.threads)
    from threadpoolctl import threadpool_info, threadpool_limits

    if args.threads:  # scikit-learn's products run in numpy's BLAS: give it the same number of threads as torch
        threadpool_limits(limits=args.threads)

    from sklearn.neural_network import BernoulliRBM as SkRBM

    import genlearn.binary_kernels as bk
    import genlearn.cd_kernels as cd_kernels
    import genlearn.binary_products as bp
    from genlearn import bench
    from genlearn.precision import machine_precision_record
    from genlearn.sklearn import BernoulliRBM as GlRBM

    X, data_desc = load_rows(args.data_dir, args.rows, args.smoke)
    M, hid = X.shape[0], args.hidden
    res = {"machine": {**common.machine_record(), **machine_precision_record(),
                       "thread_pools": [f"{i['internal_api']} {Path(i['filepath']).name}: {i['num_threads']}"
                                        for i in threadpool_info()],
                       "sparse_speedup_density": 0.13, "sparse_speedup_xW": bp.measure_gain(BATCH, V, hid, 0.13),
                       "sparse_speedup_statistics": bp.measure_gain(2 * BATCH, V, hid, 0.13, True),
                       "binary_kernels": bk.available(),
                       "sums_speedup_at_0.13": sums_speedups(hid) if bk.available() else None,
                       "sums_crossover_density": {"x W": bk.CHOOSER.crossover("rows", BATCH, V, hid),
                                                  "h W^T": bk.CHOOSER.crossover("rows", BATCH, hid, V),
                                                  "x^T P": bk.CHOOSER.crossover("stats", 2 * BATCH, V, hid)}},
           "data": data_desc, "rows": M, "density": float(X.mean()), "hidden": hid, "batch_size": BATCH,
           "pairs": args.pairs, "variants": variants, "settle_seconds": args.settle,
           "arguments": {"n_components": hid, "batch_size": BATCH, "n_iter": 1, "learning_rate": 0.01}}
    if res["machine"]["matmul_precision_auto"] == "bfloat16":  # the CD rule then decides by timing its steps
        from genlearn.learning.cd_precision import auto_step_precision

        cd_auto, cd_speedup = auto_step_precision(V, hid, BATCH, BATCH, 1, True, float(X.mean()))
        res["machine"].update(cd_step_bf16_speedup=round(cd_speedup, 3), matmul_precision_auto_pcd=cd_auto)
    else:
        res["machine"].update(cd_step_bf16_speedup=None, matmul_precision_auto_pcd="full")
    shapes = {"2048x2048x2048": (2048, 2048, 2048), "B x V x H": (BATCH, V, hid), "B x H x V": (BATCH, hid, V),
              "V x B x H": (V, BATCH, hid)}
    gf, peak = common.gemm_peak(shapes, seconds=args.gemm_seconds)
    res["gemm_gflops"], res["gemm_peak_gflops"] = gf, peak
    flops = 10.0 * M * V * hid
    res["epoch_flops"] = flops
    print(f"{data_desc}; density {res['density']:.3f}; float32 GEMM peak {peak:.1f} GFLOP/s; machine "
          f"{res['machine']['cpu_capability']}, bf16 speedup {res['machine']['bf16_speedup_measured']}, auto -> "
          f"{res['machine']['matmul_precision_auto']} for a product, {res['machine']['matmul_precision_auto_pcd']} "
          f"for the PCD-1 step (its bf16 step speedup {res['machine']['cd_step_bf16_speedup']}); "
          f"embedding_bag/dense speed at density 0.13: x W "
          f"{res['machine']['sparse_speedup_xW']:.2f}x, x^T P "
          f"{res['machine']['sparse_speedup_statistics']:.2f}x; compiled sums/dense "
          f"{res['machine']['sums_speedup_at_0.13']}; "
          f"compiled sums faster below densities "
          f"{res['machine']['sums_crossover_density']}",
          flush=True)

    args_common = dict(n_components=hid, batch_size=BATCH, n_iter=1, learning_rate=0.01)

    def genlearn_fit(precision: str, seed: int):
        """Seconds of one fit and what its matmul_precision resolved to; warnings (emulated bfloat16) recorded."""
        dense, unfused = precision == "dense", precision == "unfused"
        bk.ENABLED, cd_kernels.ENABLED = not dense, not unfused
        precision = "full" if dense or unfused else precision
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            try:
                secs, est = bench.fit_seconds(
                    lambda: GlRBM(**args_common, random_state=seed, matmul_precision=precision), X)
            finally:
                bk.ENABLED = cd_kernels.ENABLED = True
        for w in caught:
            if str(w.message) not in res.setdefault("warnings", []):
                res["warnings"].append(str(w.message))
        return secs, getattr(est, "matmul_precision_", precision)

    tmp = tempfile.TemporaryDirectory(prefix="genlearn-speed-")
    if "cli" in variants:
        np.savez(Path(tmp.name) / "rows.npz", train=X, valid=X[:100], test=X[:100])

    def cli_fit(seed: int) -> float:
        """The child's train_seconds (the epoch alone); its wall seconds go to res["cli_wall_seconds"]."""
        out = Path(tmp.name) / f"run{seed}"
        cmd = bench.cli_command(Path(tmp.name) / "rows.npz", out, hid, BATCH, 0.01, seed, args.threads, "auto")
        child = bench.cli_fit(cmd, out)
        res.setdefault("cli_wall_seconds", []).append(child["wall_seconds"])
        resolved["cli"] = child["matmul_precision_resolved"]
        # one-off timings the child read from this machine's timing cache (genlearn.timing_cache) instead of measuring
        res.setdefault("cli_timings_remembered", []).append(child["timings_remembered"])
        res["cli_command"] = " ".join(cmd[1:])
        return child["train_seconds"]

    times = {"sklearn": [], **{v: [] for v in variants}}
    resolved = {}
    for i in range(args.pairs):
        order = ["sklearn", *variants]
        if i % 2:
            order.reverse()  # alternate who goes first: drift of the machine cancels in the medians
        line = []
        for who in order:
            time.sleep(args.settle)  # threads the previous fit left spinning (numpy's OpenBLAS) go to sleep first
            if who == "sklearn":
                secs = bench.fit_seconds(lambda: SkRBM(**args_common, random_state=i), X)[0]
            elif who == "cli":
                secs = cli_fit(i)
            else:
                secs, resolved[who] = genlearn_fit(who, i)
            times[who].append(secs)
            line.append(f"{who} {secs:.2f} s")
        print(f"pair {i}: " + ", ".join(line), flush=True)

    res["seconds"] = times
    res["seconds_median"] = {k: statistics.median(v) for k, v in times.items()}
    res["ratio_vs_sklearn"] = {v: statistics.median(pair_ratios(res, v)) for v in variants}
    res["ratio_interval_vs_sklearn"] = {v: list(common.median_interval(pair_ratios(res, v))[:2]) for v in variants}
    res["ratio_interval_coverage"] = common.median_interval(times["sklearn"])[2]  # it depends on the count alone
    res["roofline_fraction"] = {k: flops / res["seconds_median"][k] / 1e9 / peak for k in times}
    res["resolved_precision"] = resolved
    res["machine"]["load_average_at_end"] = list(os.getloadavg())
    for v in variants:
        low, high = res["ratio_interval_vs_sklearn"][v]
        print(f"genlearn {v} ({resolved.get(v)}): median {res['seconds_median'][v]:.2f} s, scikit-learn / genlearn "
              f"{res['ratio_vs_sklearn'][v]:.2f}x ({low:.2f}-{high:.2f}x at "
              f"{100 * res['ratio_interval_coverage']:.1f}%), roofline fraction {res['roofline_fraction'][v]:.2f}",
              flush=True)
    print(f"scikit-learn: median {res['seconds_median']['sklearn']:.2f} s, roofline fraction "
          f"{res['roofline_fraction']['sklearn']:.2f}; load average {res['machine']['load_average_at_start']} -> "
          f"{res['machine']['load_average_at_end']}", flush=True)
    tmp.cleanup()
    print("wrote", common.write_results(args.out, res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
