"""`genlearn bench`: one PCD-1 epoch of a binary RBM, genlearn against scikit-learn, side by side in one process.

Both estimators are fitted through their public interfaces with the same arguments (scikit-learn's
sklearn.neural_network.BernoulliRBM and genlearn.sklearn.BernoulliRBM: n_components, batch_size, n_iter=1,
learning_rate, random_state = the pair's number) on the same 0/1 rows, in interleaved pairs whose order alternates
from pair to pair, so that the machine's drift falls on both alike. Each fit starts after `settle` idle seconds:
numpy's OpenBLAS threads keep spinning ~0.07 s after scikit-learn's last product, which would otherwise be charged
to the next fit. With `cli`, the same epoch also runs through `genlearn fit rbm` in a child process (its
`train_seconds`: the epoch, without start-up and evaluation).

Reported: each fit's seconds; per pair the ratio t(scikit-learn) / t(genlearn); their median with a
distribution-free 95% interval (`median_interval`); the roofline fraction of each side, epoch FLOPs / seconds / the
float32 GEMM peak measured here (epoch FLOPs = 10 M V H: the five products of a CD-1 minibatch, M rows, V x H
weights); what matmul_precision "auto" resolved to; and the machine record (CPU capability and bfloat16 support,
cores, threads, torch, load average): a speed figure holds for its machine, so it is quoted with its record."""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from genlearn.errors import ConfigError, DataError

#: environment variables that make torch, oneDNN, MKL, OpenBLAS and numba dispatch to a lower instruction set
ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                 "OPENBLAS_CORETYPE", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "GENLEARN_FLOAT32_PRODUCTS",
                 "GENLEARN_ELEMENTWISE")

#: the synthetic default rows: binarized MNIST's shape and density (13% ones)
DEFAULT_ROWS, DEFAULT_VISIBLE, DEFAULT_DENSITY = 60_000, 784, 0.13


# -- the machine -------------------------------------------------------------------------------------------------
def machine_record() -> dict:
    """Platform, cores, torch version, the CPU kernels torch dispatches to (e.g. AVX512) and whether oneDNN supports
    bfloat16 on it, threads, date, and any instruction-set override in the environment (ISA_VARIABLES)."""
    import torch

    from genlearn import numerics, products
    from genlearn.precision import cpu_bf16_supported

    return {"cpu_bf16_supported": cpu_bf16_supported(),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
            "platform": platform.platform(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cuda": torch.cuda.is_available(), "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "load_average_at_start": list(os.getloadavg()),
            "isa_overrides": {k: os.environ[k] for k in ISA_VARIABLES if k in os.environ},
            **products.record(), "elementwise": numerics.elementwise_record()}


def gemm_gflops(m: int, k: int, n: int, seconds: float = 1.0, dtype=None) -> float:
    """Throughput of the faster of torch.mm and, for float32, oneDNN's product (genlearn.products: twice torch.mm's
    on AMD CPUs, whose MKL path is slower) for (m x k) @ (k x n) in GFLOP/s (2 m k n per product), each timed for
    `seconds` after a warm-up product, the output written in place: the machine's peak, not one library's."""
    import torch

    dtype = dtype or torch.float32
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    out = torch.empty(m, n, dtype=dtype)
    best = _gemm_rate(lambda: torch.mm(a, b, out=out), m, k, n, seconds)
    if dtype == torch.float32:
        from genlearn import products

        if products.onednn_available():
            best = max(best, _gemm_rate(lambda: out.copy_(products.onednn_mm(a, b)), m, k, n, seconds))
    return best


def _gemm_rate(product, m: int, k: int, n: int, seconds: float) -> float:
    product()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        product()
        reps += 1
    return 2.0 * m * k * n * reps / (time.perf_counter() - t0) / 1e9


def gemm_peak(shapes: dict, seconds: float = 1.0, dtype=None) -> tuple[dict, float]:
    """GFLOP/s of each named (m, k, n) shape and the best of them (the roofline of a run)."""
    gf = {name: gemm_gflops(*shape, seconds=seconds, dtype=dtype) for name, shape in shapes.items()}
    return gf, max(gf.values())


# -- statistics --------------------------------------------------------------------------------------------------
def median_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """A distribution-free confidence interval for the median of the population the values were drawn from
    (independent draws): the order statistics [x_(j), x_(n+1-j)] with the largest j whose coverage
    1 - 2 P(Binomial(n, 1/2) < j) is at least `level` (exact, whatever the distribution). Returns (low, high,
    coverage); with too few values for `level` (5 pairs reach 93.8% at most, 6 reach 96.9%), (min, max) and its
    coverage 1 - 2^(1-n)."""
    x = sorted(float(v) for v in values)
    n = len(x)
    if n == 0:
        raise ValueError("median_interval needs at least one value")

    def coverage(j: int) -> float:
        return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(j)) / 2.0 ** n

    j = 1
    while j + 1 <= (n + 1) // 2 and coverage(j + 1) >= level:
        j += 1
    return x[j - 1], x[n - j], coverage(j)


def ratio_summary(reference_seconds: list, seconds: list) -> dict:
    """Per pair t(reference) / t, their median, its 95% interval and the interval's exact coverage."""
    ratios = [r / s for r, s in zip(reference_seconds, seconds)]
    low, high, coverage = median_interval(ratios)
    return {"pair_ratios": ratios, "median": statistics.median(ratios), "interval": [low, high],
            "interval_coverage": coverage}


# -- the rows ----------------------------------------------------------------------------------------------------
def synthetic_rows(rows: int = DEFAULT_ROWS, visible: int = DEFAULT_VISIBLE, density: float = DEFAULT_DENSITY,
                   seed: int = 0) -> np.ndarray:
    """rows x visible float32 0/1, each entry 1 with probability `density` (independent)."""
    return (np.random.default_rng(seed).random((rows, visible)) < density).astype(np.float32)


def binary_rows(x, what: str) -> np.ndarray:
    """x as a C-contiguous float32 array of 0/1 rows (2-D), or a DataError naming the problem and the fix."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        one_column = " (one column of outcomes: categorical data)" if x.ndim == 1 else ""
        raise DataError(f"{what}: the RBM speed comparison needs rows of 0/1 features, a non-empty 2-D table, got "
                        f"shape {x.shape}{one_column}; give binary data such as mnist or digits")
    bad = ~((x == 0.0) | (x == 1.0))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{what}: the RBM speed comparison needs 0/1 rows, but row {r} column {c} is "
                        f"{float(x[r, c])} (binarize the data first, e.g. a named set's binarize=threshold)")
    return x


# -- the fits ----------------------------------------------------------------------------------------------------
def fit_seconds(make: Callable[[], object], X: np.ndarray) -> tuple[float, object]:
    """(seconds of make().fit(X), the fitted estimator)."""
    t0 = time.perf_counter()
    est = make().fit(X)
    return time.perf_counter() - t0, est


def cli_command(data: Path, out: Path, hidden: int, batch_size: int, learning_rate: float, seed: int,
                threads: int | None, precision: str) -> list:
    """`genlearn fit rbm` with the estimators' settings: PCD-1 with batch_size chains, plain SGD, one epoch (its
    evaluation by AIS at 100 temperatures x 10 chains, on the first rows given as valid and test, is short)."""
    cmd = [sys.executable, "-m", "genlearn", "fit", "rbm", "--data", str(data), "--hidden", str(hidden),
           "--gradient", "pcd", "--n-chains", str(batch_size), "--k", "1", "--optimizer", "sgd",
           "--lr", repr(learning_rate), "--batch-size", str(batch_size), "--epochs", "1", "--seed", str(seed),
           "--matmul-precision", precision, "--partition", "ais", "--ais-steps", "100", "--ais-chains", "10", "--quiet",
           "--out", str(out)]
    return cmd + (["--threads", str(threads)] if threads else [])


def cli_fit(cmd: list, out: Path) -> dict:
    """Run `cmd` (cli_command) and read its run: {"train_seconds", "wall_seconds", "matmul_precision_resolved",
    "timings_remembered"}."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"`genlearn fit rbm` failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"train_seconds": float(metrics["train_seconds"]), "wall_seconds": wall,
            "matmul_precision_resolved": metrics.get("matmul_precision_resolved"),
            "timings_remembered": metrics.get("timings_remembered")}


def check_settings(rows: int, hidden: int, batch_size: int, learning_rate: float, pairs: int, settle: float,
                   precision: str) -> None:
    """ConfigError for settings the comparison cannot run with."""
    from genlearn.models.base import MATMUL_PRECISIONS

    if pairs < 1:
        raise ConfigError(f"--pairs must be >= 1 (got {pairs}); 5 or more give a median with a useful interval")
    if hidden < 1 or batch_size < 1:
        raise ConfigError(f"--hidden and --batch-size must be >= 1 (got {hidden}, {batch_size})")
    if rows < batch_size:
        raise ConfigError(f"{rows} rows are fewer than one batch of {batch_size}: give more rows or a smaller "
                          "--batch-size")
    if not (learning_rate > 0.0 and math.isfinite(learning_rate)):
        raise ConfigError(f"--lr must be a positive number (got {learning_rate})")
    if not (settle >= 0.0 and math.isfinite(settle)):
        raise ConfigError(f"--settle must be >= 0 seconds (got {settle})")
    if precision not in MATMUL_PRECISIONS:
        raise ConfigError(f"--matmul-precision must be one of {', '.join(MATMUL_PRECISIONS)} (got {precision!r})")


def side_by_side(X: np.ndarray, *, hidden: int = 500, batch_size: int = 100, learning_rate: float = 0.01,
                 pairs: int = 5, settle: float = 0.5, precision: str = "auto", cli: bool = False,
                 threads: int | None = None, gemm_seconds: float = 0.5, data: str = "",
                 log: Callable[[str], None] = print) -> dict:
    """Time one epoch of each side in `pairs` interleaved pairs (the module docstring says how) on the 0/1 rows X;
    returns the results record (JSON-ready). `threads` sets torch's threads and numpy's BLAS threads (scikit-learn's
    products) alike; `log` receives one line per pair."""
    import torch
    from threadpoolctl import threadpool_limits

    X = binary_rows(X, data or "the rows")
    M, V = X.shape
    check_settings(M, hidden, batch_size, learning_rate, pairs, settle, precision)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads) if threads else contextlib.nullcontext():
            return _timed_pairs(X, hidden, batch_size, learning_rate, pairs, settle, precision, cli, threads,
                                gemm_seconds, data, log)
    finally:
        torch.set_num_threads(previous_threads)


def _timed_pairs(X, hidden, batch_size, learning_rate, pairs, settle, precision, cli, threads, gemm_seconds, data,
                 log) -> dict:
    from sklearn.neural_network import BernoulliRBM as SkRBM

    from genlearn.precision import machine_precision_record
    from genlearn.sklearn import BernoulliRBM as GlRBM

    M, V = X.shape
    shapes = {"2048x2048x2048": (2048, 2048, 2048), "B x V x H": (batch_size, V, hidden),
              "B x H x V": (batch_size, hidden, V), "V x B x H": (V, batch_size, hidden)}
    gflops, peak = gemm_peak(shapes, seconds=gemm_seconds)
    flops = 10.0 * M * V * hidden
    arguments = {"n_components": hidden, "batch_size": batch_size, "n_iter": 1, "learning_rate": learning_rate}
    res = {"machine": {**machine_record(), **machine_precision_record()}, "data": data, "rows": M, "visible": V,
           "density": float(X.mean()), "arguments": arguments, "matmul_precision": precision, "pairs": pairs,
           "settle_seconds": settle, "gemm_gflops": gflops, "gemm_peak_gflops": peak, "epoch_flops": flops}
    sides = ["scikit-learn", "genlearn"] + (["genlearn fit rbm"] if cli else [])
    seconds = {side: [] for side in sides}
    tmp = tempfile.TemporaryDirectory(prefix="genlearn-bench-")
    try:
        if cli:
            np.savez(Path(tmp.name) / "rows.npz", train=X, valid=X[:100], test=X[:100])
        for i in range(pairs):
            order = sides if i % 2 == 0 else sides[::-1]
            for side in order:
                time.sleep(settle)
                if side == "scikit-learn":
                    secs = fit_seconds(lambda: SkRBM(**arguments, random_state=i), X)[0]
                elif side == "genlearn":
                    secs, est = fit_seconds(lambda: GlRBM(**arguments, random_state=i, matmul_precision=precision), X)
                    res["matmul_precision_resolved"] = getattr(est, "matmul_precision_", precision)
                else:
                    out = Path(tmp.name) / f"run{i}"
                    cmd = cli_command(Path(tmp.name) / "rows.npz", out, hidden, batch_size, learning_rate, i,
                                      threads, precision)
                    child = cli_fit(cmd, out)
                    secs = child["train_seconds"]
                    res.setdefault("cli", {"command": " ".join(cmd[1:]), "runs": []})["runs"].append(child)
                seconds[side].append(secs)
            log(f"pair {i + 1}/{pairs}: " + ", ".join(f"{side} {seconds[side][-1]:.2f} s" for side in order))
    finally:
        tmp.cleanup()
    res["seconds"] = seconds
    res["seconds_median"] = {side: statistics.median(v) for side, v in seconds.items()}
    res["roofline_fraction"] = {side: flops / s / (peak * 1e9) for side, s in res["seconds_median"].items()}
    res["ratio_vs_scikit_learn"] = {side: ratio_summary(seconds["scikit-learn"], seconds[side])
                                    for side in sides[1:]}
    res["machine"]["load_average_at_end"] = list(os.getloadavg())
    return res


def pool(results: dict) -> dict:
    """The pairs of several runs' results ({name: side_by_side's record}) pooled: per side, every pair's ratio, their
    median with its 95% interval, and each run's median; the runs must share the data's shape and the arguments."""
    if not results:
        raise ConfigError("--pool needs at least one results file")
    first_name, first = next(iter(results.items()))
    for name, res in results.items():
        for key in ("rows", "visible", "arguments"):
            if res.get(key) != first.get(key):
                raise ConfigError(f"{name} and {first_name} differ in {key} ({res.get(key)} against "
                                  f"{first.get(key)}): pool runs of the same comparison only")
    pooled = {"runs": list(results), "rows": first["rows"], "visible": first["visible"],
              "arguments": first["arguments"], "sides": {}}
    sides = sorted({side for res in results.values() for side in res["ratio_vs_scikit_learn"]})
    for side in sides:
        per_run = {name: res["ratio_vs_scikit_learn"][side]["pair_ratios"] for name, res in results.items()
                   if side in res["ratio_vs_scikit_learn"]}
        ratios = [r for values in per_run.values() for r in values]
        low, high, coverage = median_interval(ratios)
        pooled["sides"][side] = {"pairs": len(ratios), "runs": len(per_run), "pair_ratios": ratios,
                                 "median": statistics.median(ratios), "interval": [low, high],
                                 "interval_coverage": coverage,
                                 "run_medians": [statistics.median(v) for v in per_run.values()]}
    return pooled


def read_results(paths: list) -> dict:
    """{path: the record} of `genlearn bench --out` files, or a DataError naming the file that is not one."""
    results = {}
    for path in paths:
        try:
            res = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable `genlearn bench --out` file ({exc})") from None
        if not (isinstance(res, dict) and isinstance(res.get("ratio_vs_scikit_learn"), dict)
                and all(isinstance(v, dict) and "pair_ratios" in v for v in res["ratio_vs_scikit_learn"].values())):
            raise DataError(f"{path}: not a `genlearn bench --out` file (no per-pair ratios)")
        results[str(path)] = res
    return results


def pooled_lines(pooled: dict) -> list[str]:
    """The pooled figures in a few lines."""
    lines = [f"{len(pooled['runs'])} runs pooled: {pooled['rows']} rows x {pooled['visible']}, "
             f"n_components={pooled['arguments']['n_components']}, batch_size={pooled['arguments']['batch_size']}"]
    for side, f in pooled["sides"].items():
        low, high = f["interval"]
        medians = f["run_medians"]
        lines.append(f"{side}: scikit-learn / {side} {f['median']:.2f}x over {f['pairs']} pairs (interval "
                     f"{low:.2f}-{high:.2f}x at {100 * f['interval_coverage']:.1f}%); run medians "
                     f"{min(medians):.2f}-{max(medians):.2f}x")
    return lines


def summary_lines(res: dict) -> list[str]:
    """The results in a few lines: each side's median seconds and ratio with its interval, and the machine."""
    m = res["machine"]
    lines = [f"{res['data']}: {res['rows']} rows x {res['visible']}, density {res['density']:.3f}; "
             f"n_components={res['arguments']['n_components']}, batch_size={res['arguments']['batch_size']}, "
             f"learning_rate={res['arguments']['learning_rate']}, one PCD-1 epoch, {res['pairs']} pairs"]
    for side, r in res["ratio_vs_scikit_learn"].items():
        low, high = r["interval"]
        lines.append(f"{side}: median {res['seconds_median'][side]:.2f} s, scikit-learn / {side} "
                     f"{r['median']:.2f}x (interval {low:.2f}-{high:.2f}x at {100 * r['interval_coverage']:.1f}%), "
                     f"roofline fraction {res['roofline_fraction'][side]:.2f}")
    lines.append(f"scikit-learn: median {res['seconds_median']['scikit-learn']:.2f} s, roofline fraction "
                 f"{res['roofline_fraction']['scikit-learn']:.2f}")
    lines.append(f"machine: {m['machine']}, CPU capability {m['cpu_capability']}, bfloat16 supported "
                 f"{m['cpu_bf16_supported']}, {m['threads']} torch threads, float32 GEMM peak "
                 f"{res['gemm_peak_gflops']:.1f} GFLOP/s; matmul_precision {res['matmul_precision']} -> "
                 f"{res.get('matmul_precision_resolved')}; load average {m['load_average_at_start'][0]:.2f} -> "
                 f"{m['load_average_at_end'][0]:.2f}")
    return lines


__all__ = ["ISA_VARIABLES", "binary_rows", "check_settings", "cli_command", "cli_fit", "fit_seconds", "gemm_gflops",
           "gemm_peak", "machine_record", "median_interval", "pool", "pooled_lines", "ratio_summary", "read_results",
           "side_by_side", "summary_lines", "synthetic_rows"]
