"""matmul_precision="auto" for the models that resolve it themselves (NADE, MADE, VAE: genlearn.precision.
resolve_for_model), decided on a CPU by timing their training step, not a product alone.

Those models resolve "auto" at their first training step from one product's timing (bfloat16 against float32). But
their float32 steps do part of the work as sums over the 0/1 input (genlearn.binary_kernels) and keep small
products in float32, while bfloat16 adds casts: on a 2-core Zen 4 EPYC with AVX512-BF16 (bfloat16 products 2.39x
faster), a one-thread VAE (ELBO) epoch took 1.01-1.14x (median 1.05x) float32's time with bfloat16 products,
though IWAE-50's took 0.67-0.78x (benchmarks/RESULTS.md, 2026-12-06). So, before the first epoch, where the
product timing would pick bfloat16 on a CPU, the Trainer calls `settle_auto_precision`: the rule's step
(compute_gradient on the first batch) is timed on deep copies of the model and the rule in each precision,

    speedup = t(float32 step) / t(bfloat16 step)    (kernel_timing.best_seconds: the best of 5 alternating rounds
                                                     of ~30 ms, after 2 warm-up steps)

and the model keeps bfloat16 only where speedup >= precision.STEP_MIN_SPEEDUP (1.1). The copies and their own
random generator leave the model, the rule and the run's random numbers as they were: training continues exactly
as with the chosen precision given explicitly. The speedup is remembered per machine (genlearn.timing_cache) for
the model's configuration, the rule's settings, the batch size, the first batch's density (to 0.02) and the thread
count, and recorded on the model (`step_bf16_speedup_measured`, in metrics.json)."""
from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path

import torch

from genlearn import precision, timing_cache
from genlearn.kernel_timing import best_seconds
from genlearn.precision import STEP_MIN_SPEEDUP

#: warm-up steps of each precision before the timing, and the timing's seconds in all (kernel_timing.best_seconds:
#: 5 alternating rounds, at least 2 steps per round)
WARMUP_STEPS, TIMING_SECONDS = 2, 0.3


def _copy_in(model, rule, precision: str | None):
    """Deep copies of the model and the rule, the copy's matmul_precision fixed at `precision` (None: as it
    resolves itself)."""
    m, r = copy.deepcopy(model), copy.deepcopy(rule)
    if precision is not None:
        m._matmul_resolution = ((torch.device(next(model.parameters()).device).type, model.matmul_precision),
                                precision)
        m.resolved_matmul_precision = precision
    return m, r


def _step(model, rule, batch: torch.Tensor, generator: torch.Generator, update: bool = False) -> None:
    """The rule's compute_gradient on a copy; with `update` a tiny plain SGD step after it (theta -= 1e-7 g), so
    that, as in training, the parameters change between steps (what a step caches per parameter version is
    rebuilt, as it is in training)."""
    for p in model.parameters():
        p.grad = None
    rule.compute_gradient(model, batch, generator)
    if update:
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p.sub_(p.grad, alpha=1e-7)


def product_choice(model, rule, batch: torch.Tensor) -> str | None:
    """What the model's own resolution (the product timing) picks for "auto", found by one step on copies."""
    m, r = _copy_in(model, rule, None)
    _step(m, r, batch, torch.Generator().manual_seed(0))
    return getattr(m, "resolved_matmul_precision", None)


def measure_step_speedup(model, rule, batch: torch.Tensor) -> float:
    """t(float32 step) / t(bfloat16 step) of the rule's compute_gradient on `batch`, on copies (> 1: bfloat16
    faster)."""
    runs = {p: (*_copy_in(model, rule, p), torch.Generator().manual_seed(0)) for p in ("full", "bfloat16")}
    steps = {p: (lambda run=run: _step(run[0], run[1], batch, run[2], update=True)) for p, run in runs.items()}
    for step in steps.values():
        for _ in range(WARMUP_STEPS):
            step()
    best = best_seconds(steps, seconds=TIMING_SECONDS)
    return best["full"] / max(best["bfloat16"], 1e-9)


def _entry(model, rule, batch: torch.Tensor) -> str:
    """The timing cache's entry: the model's class, configuration and source, the rule, the batch's shape and
    density (to 0.02), the thread count."""
    module = sys.modules.get(type(model).__module__)
    try:
        source = hashlib.sha1(Path(module.__file__).read_bytes()).hexdigest()[:12]
    except (AttributeError, OSError, TypeError):
        source = type(model).__module__
    density = min(0.98, max(0.02, round(float(batch.float().mean()) * 50.0) / 50.0))
    return (f"{type(model).__name__} {json.dumps(model.config(), sort_keys=True, default=str)} rule {rule.name} "
            f"{json.dumps(rule.settings(), sort_keys=True, default=str)} B={batch.shape[0]} density={density:.2f} "
            f"threads={torch.get_num_threads()} source={source}")


def settle_auto_precision(model, rule, batch: torch.Tensor) -> float | None:
    """Fix the model's "auto" precision by timing its training step (module docstring) where it resolves "auto"
    itself, on a CPU, and the product timing picks bfloat16; returns the measured step speedup, or None where
    nothing was timed (the model then resolves "auto" at its first step as before). Costs nothing where bfloat16
    is not capable (capability flags only), one step on copies where the model's products are too small to gain."""
    if getattr(model, "matmul_precision", None) != "auto" or getattr(model, "_matmul_resolution", None) is not None:
        return None
    params = list(model.parameters())
    if not params or params[0].device.type != "cpu" or params[0].dtype != torch.float32:
        return None
    if not precision.bf16_capable("cpu"):  # bfloat16 emulated here: "auto" is full precision, nothing to time
        return None
    rng = torch.get_rng_state()  # the copies' steps may draw from torch's global generator: it is put back
    try:
        if product_choice(model, rule, batch) != "bfloat16":
            return None
        speedup = float(timing_cache.remembered(__file__, _entry(model, rule, batch),
                                                lambda: measure_step_speedup(model, rule, batch)))
    finally:
        torch.set_rng_state(rng)
    chosen = "bfloat16" if speedup >= STEP_MIN_SPEEDUP else "full"
    model._matmul_resolution = (("cpu", "auto"), chosen)
    model.resolved_matmul_precision = chosen
    model.step_bf16_speedup_measured = round(speedup, 3)
    return speedup


__all__ = ["measure_step_speedup", "product_choice", "settle_auto_precision"]
