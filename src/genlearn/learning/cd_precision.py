"""matmul_precision="auto" for the CD-k / PCD-k step on a CPU: decided by timing the step, not a product alone.

genlearn.precision resolves "auto" by one dense product (100 x 784 @ 784 x 500) in bfloat16 against float32. But
the float32 CD step does not run as dense products only: its products with 0/1 rows are sums of selected rows
where the rows are sparse (genlearn.binary_kernels) and, for k = 1, the step runs as compiled passes around its
one dense product (genlearn.cd_kernels). The bfloat16 step keeps every product dense. On a 2-core AMD EPYC with
AVX512-BF16 (Zen 4), bfloat16 products measured 2.39x float32's, yet a PCD-1 epoch on binarized MNIST took 1.36 s
with them against 1.05 s in float32 (benchmarks/speed.py, 2026-12-06): "auto" had made the default 1.3x slower.

So where the product benchmark would pick bfloat16 on a CPU, the CD rule times the two steps themselves

    speedup = t(float32 step) / t(bfloat16 step)

(plain SGD steps, each precision's best of 5 alternating rounds of ~30 ms, after 3 warm-up steps:
genlearn.kernel_timing.best_seconds) on random 0/1 rows
of the first batch's density (to 0.02) at the rule's shapes (V, H, B, N, k, persistent) and torch's thread count,
and keeps bfloat16 only when speedup >= precision.STEP_MIN_SPEEDUP (1.1: ties go to full precision). The
value is remembered per machine and software (genlearn.timing_cache; the entry names the step kernels' source
hash, so that changed kernels are timed again). ~0.3 s once per machine and shape. An explicit "bfloat16" (native
here) is timed the same way and honoured, with one warning where its step is the slower (`warn_if_slower`)."""
from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path

import torch

from genlearn import timing_cache
from genlearn.kernel_timing import best_seconds
from genlearn.precision import STEP_MIN_SPEEDUP

#: warm-up steps of each precision before the timing (kernel loads, the products' library choices), and the
#: timing's seconds in all (kernel_timing.best_seconds: 5 alternating rounds, at least 2 steps per round)
WARMUP_STEPS, TIMING_SECONDS = 3, 0.3


def density_bucket(density: float) -> float:
    """The density the step is timed at: `density` to the nearest 0.02, within [0.02, 0.98]."""
    if not math.isfinite(density):
        raise ValueError(f"density must be finite, got {density}")
    return min(0.98, max(0.02, round(density * 50.0) / 50.0))


def _kernels_hash() -> str:
    """A short hash of the step's kernel sources (rbm_gradients, cd_kernels, binary_kernels): part of the entry."""
    from genlearn import binary_kernels, cd_kernels
    from genlearn.learning import rbm_gradients

    digest = hashlib.sha1()
    for module in (rbm_gradients, cd_kernels, binary_kernels):
        try:
            digest.update(Path(module.__file__).read_bytes())
        except OSError:
            digest.update(module.__name__.encode())
    return digest.hexdigest()[:12]


def _stepper(V: int, H: int, B: int, N: int, k: int, persistent: bool, density: float, precision: str):
    """A function making one plain SGD step (rbm_gradients.cd_sgd_step, lr 0.01) of a fresh 784-style RBM
    (W ~ N(0, 0.01^2), b = logit(density), c = 0) on B random 0/1 rows of the density, in `precision`; N
    persistent chains, or (CD) the B rows' own negatives."""
    from genlearn.learning.rbm_gradients import cd_sgd_step, cd_workspace

    g = torch.Generator().manual_seed(0)
    W = torch.randn(V, H, generator=g) * 0.01
    b = torch.full((V,), math.log(density / (1.0 - density)))
    c = torch.zeros(H)
    source = (torch.rand(B, V, generator=g) < density).float()
    order = torch.arange(B)
    N = N if persistent else B
    ws = cd_workspace(None, W, B, N, k, precision)
    chains = source[torch.arange(N) % B].clone() if persistent else None
    state = {"probs": torch.sigmoid(torch.addmm(c, chains, W)) if persistent else None}  # P(h | chains)

    def step():
        cd_sgd_step(W, b, c, source, order, 0.01, k, g, ws, chains, state["probs"], with_value=False)
        if persistent:
            state["probs"] = ws["chain_probs"]

    return step


def measure_step_speedup(V: int, H: int, B: int, N: int, k: int, persistent: bool, density: float) -> float:
    """t(float32 step) / t(bfloat16 step) on this CPU (> 1: bfloat16 faster), timed as the module docstring says."""
    steps = {p: _stepper(V, H, B, N, k, persistent, density, p) for p in ("full", "bfloat16")}
    for step in steps.values():
        for _ in range(WARMUP_STEPS):
            step()
    best = best_seconds(steps, seconds=TIMING_SECONDS)
    return best["full"] / max(best["bfloat16"], 1e-9)


def step_speedup(V: int, H: int, B: int, N: int, k: int, persistent: bool, density: float) -> float:
    """`measure_step_speedup` at density_bucket(density) and torch's thread count, remembered on this machine."""
    d = density_bucket(density)
    entry = (f"cd-step V={V} H={H} B={B} N={N} k={k} persistent={bool(persistent)} density={d:.2f} "
             f"threads={torch.get_num_threads()} kernels={_kernels_hash()}")
    return float(timing_cache.remembered(__file__, entry,
                                         lambda: measure_step_speedup(V, H, B, N, k, persistent, d)))


_WARNED: set = set()


def warn_if_slower(speedup: float) -> None:
    """One RuntimeWarning per process where an explicit bfloat16 CD step was timed slower than the float32 one
    (speedup < 1): it runs as asked, and the warning names the slowdown and what "auto" would do."""
    if speedup < 1.0 and "slower" not in _WARNED:
        _WARNED.add("slower")
        warnings.warn(f"matmul_precision='bfloat16': the CD step measured {1.0 / speedup:.2f}x slower than in float32 "
                      f"on this CPU (the float32 step's products with the sparse 0/1 rows are sums of selected rows); "
                      f"training runs bfloat16 as asked, and matmul_precision='auto' would choose float32 here",
                      RuntimeWarning, stacklevel=3)


def auto_step_precision(V: int, H: int, B: int, N: int, k: int, persistent: bool, density: float) -> tuple:
    """("bfloat16" or "full", the measured step speedup): bfloat16 only where its step is >= STEP_MIN_SPEEDUP
    times faster than the float32 step on this CPU."""
    speedup = step_speedup(V, H, B, N, k, persistent, density)
    return ("bfloat16" if speedup >= STEP_MIN_SPEEDUP else "full"), speedup


__all__ = ["auto_step_precision", "density_bucket", "measure_step_speedup", "step_speedup", "warn_if_slower"]
