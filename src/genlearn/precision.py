"""Which precision the training matrix products run in: `matmul_precision` = "auto" (the default), "full" or
"bfloat16".

"bfloat16" is mixed precision (bfloat16 operands rounded to 8 significant bits, float32 accumulation). It is
only faster where the hardware has bfloat16 dot products (CPUs with AVX512-BF16 or AMX, CUDA GPUs of compute
capability >= 8.0); elsewhere oneDNN emulates it, measured 50x slower than float32 on an AVX2 CPU. So:

- "auto" resolves, once per process and device (the CPU's timing remembered per machine, genlearn.timing_cache),
  to "bfloat16" only when (1) the device can run it natively (CPU:
  torch's kernel capability is AVX512 or better, oneDNN reports bfloat16 support and, where /proc/cpuinfo can be
  read, the CPU has avx512_bf16 or amx_bf16; CUDA: capability >= 8.0)
  and (2) a one-off micro-benchmark, a bfloat16 against a float32 product of a training-like shape
  (100 x 784 @ 784 x 500), finds it at least `AUTO_MIN_SPEEDUP` times faster; else to "full". Products too small
  to gain (under `AUTO_MIN_FLOPS` per product, e.g. the small models of tests) resolve to "full" without measuring.
  The RBM's CD/PCD rule then checks a "bfloat16" answer on a CPU by timing its two steps
  (genlearn.learning.cd_precision): its float32 step replaces the products with sparse 0/1 rows by sums of
  selected rows, which can beat bfloat16's dense products although the product alone runs faster in bfloat16.
  The models that resolve "auto" themselves (NADE, MADE, VAE: `resolve_for_model`) are settled the same way by
  the Trainer before their first epoch (genlearn.learning.model_precision). A timed step keeps bfloat16 at
  `STEP_MIN_SPEEDUP`.
- an explicit "bfloat16" is honoured where it is not slower; where the device is not bfloat16-capable as in (1)
  (no bfloat16 instructions, flags that cannot be read, or torch and oneDNN told to dispatch below them) and the
  measurement finds it slower than float32, it resolves to "full" and warns once
  per process (one line, with the measured slowdown): an emulated path 10-50x slower is never taken.
  A timing under heavy load from other jobs can err; it errs towards "full" (never a trap).
- "full" is the parameters' dtype.

Likelihoods (exact, AIS, importance sampling) never use reduced precision: this only concerns training products.
The resolved choice is what `resolve_matmul_precision` returns; learning rules and runs record it next to the
requested one (`precision_record`)."""
from __future__ import annotations

import time
import warnings

import torch

from genlearn.errors import ConfigError

#: the values of every `matmul_precision` option ("auto" first: the default)
MATMUL_PRECISIONS = ("auto", "full", "bfloat16")
#: "auto" picks bfloat16 only when the micro-benchmark finds it at least this much faster than float32
AUTO_MIN_SPEEDUP = 1.2
#: "auto" picks bfloat16 where a model's timed training step (genlearn.learning.cd_precision, model_precision) runs
#: at least this much faster than in float32: a smaller margin than the product's, as both sides time the real work
#: (a VAE's ELBO step measured 1.15x at two threads on a Zen 4, where its epochs ran 1.1-1.4x faster)
STEP_MIN_SPEEDUP = 1.1
#: products with fewer floating-point operations than this (2 m k n) resolve "auto" to "full" without measuring
AUTO_MIN_FLOPS = 2e7
#: the shape (m, k, n) of the micro-benchmark: a minibatch of 100 binarized-MNIST rows times a 784 x 500 matrix
BENCH_SHAPE = (100, 784, 500)
#: the micro-benchmark's shape where bfloat16 is emulated (no capability): the measured slowdown, for the warning of
#: an explicit bfloat16, at ~1/10 of BENCH_SHAPE's cost (emulated, a BENCH_SHAPE product takes ~30 ms on an AVX2
#: core, and the twelve products of the timing added ~0.4 s to the first epoch)
EMULATED_BENCH_SHAPE = (64, 256, 256)
#: CPU kernel capabilities (torch.backends.cpu.get_cpu_capability()) below which bfloat16 is always emulated
_SLOW_CPU_CAPABILITIES = ("DEFAULT", "NO AVX", "AVX", "AVX2", "ZVECTOR", "VSX", "")

_SPEEDUP_CACHE: dict[str, float] = {}
_WARNED: set[str] = set()


def check_matmul_precision(value) -> str:
    """`value` if it is one of MATMUL_PRECISIONS, else one ConfigError naming the choices."""
    if value not in MATMUL_PRECISIONS:
        raise ConfigError(f"matmul_precision must be one of {', '.join(MATMUL_PRECISIONS)}, got {value!r}")
    return value


def cpu_capability() -> str:
    """torch's CPU kernel capability ("AVX2", "AVX512", ...)."""
    return torch.backends.cpu.get_cpu_capability()


def cpu_bf16_supported() -> bool:
    """Whether oneDNN reports bfloat16 support on this CPU (AVX512 core or better; native with AVX512-BF16/AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_native_bf16() -> bool | None:
    """Whether the CPU has bfloat16 dot-product instructions (avx512_bf16 or amx_bf16 in /proc/cpuinfo's flags);
    None where the flags cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return None


def bf16_capable(device_type: str = "cpu") -> bool:
    """Whether the device may run bfloat16 products without emulation, by its capability alone (no timing): CUDA
    capability >= 8.0; CPU kernels AVX512 or better with oneDNN bfloat16 support, and bfloat16 instructions in
    the CPU flags where they can be read."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8
    if device_type != "cpu":
        return False
    return (cpu_capability().upper() not in _SLOW_CPU_CAPABILITIES and cpu_bf16_supported()
            and cpu_native_bf16() is not False)


def measure_bf16_speedup(device_type: str = "cpu", shape: tuple = BENCH_SHAPE, seconds: float = 0.05) -> float:
    """Time(float32 product) / time(bfloat16 product) for (m x k) @ (k x n) on the device (> 1: bfloat16 faster).
    After two warm-up products per dtype (kernel selection), each dtype is timed in 5 alternating rounds of
    about seconds / 5 (at least 2 products); the best round of each counts (robust to other jobs' load)."""
    m, k, n = shape
    dev = torch.device(device_type)
    g = torch.Generator().manual_seed(0)
    a32 = torch.randn(m, k, generator=g).to(dev)
    b32 = torch.randn(k, n, generator=g).to(dev)
    pairs = {torch.float32: (a32, b32), torch.bfloat16: (a32.bfloat16(), b32.bfloat16())}
    sync = torch.cuda.synchronize if device_type == "cuda" else (lambda: None)
    reps, best = {}, {}
    for dtype, (a, b) in pairs.items():
        torch.mm(a, b)
        sync()
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync()
        once = max(time.perf_counter() - t0, 1e-7)
        reps[dtype], best[dtype] = max(2, min(1000, int(seconds / 5 / once))), float("inf")
    for _ in range(5):
        for dtype, (a, b) in pairs.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(reps[dtype]):
                torch.mm(a, b)
            sync()
            best[dtype] = min(best[dtype], (time.perf_counter() - t0) / reps[dtype])
    return best[torch.float32] / best[torch.bfloat16]


def bf16_speedup(device_type: str = "cpu") -> float:
    """`measure_bf16_speedup` on the device, once per process; on a CPU remembered per machine, software and thread
    count (genlearn.timing_cache: ~0.09 s less in the first epoch of every later process on a 2-core Zen 4), and
    without the capability (bfloat16 emulated) on the smaller EMULATED_BENCH_SHAPE with less timing (~0.09 s
    instead of ~0.45 s on an AVX2 core: an explicit bfloat16 there pays it in its first epoch)."""
    if device_type not in _SPEEDUP_CACHE:
        if device_type != "cpu":
            _SPEEDUP_CACHE[device_type] = measure_bf16_speedup(device_type)
        else:
            from genlearn import timing_cache

            shape, seconds = (BENCH_SHAPE, 0.05) if bf16_capable("cpu") else (EMULATED_BENCH_SHAPE, 0.02)
            entry = f"bf16 product speedup {shape[0]}x{shape[1]}x{shape[2]} threads={torch.get_num_threads()}"
            _SPEEDUP_CACHE[device_type] = float(timing_cache.remembered(
                __file__, entry, lambda: measure_bf16_speedup("cpu", shape=shape, seconds=seconds)))
    return _SPEEDUP_CACHE[device_type]


def resolve_matmul_precision(requested: str, device="cpu", flops: float | None = None) -> str:
    """The precision training products run in: "full" or "bfloat16" (see the module docstring).

    requested: "auto", "full" or "bfloat16"; device: a torch.device or its type; flops: 2 m k n of the largest
    training product (None: assume a product large enough to gain). An explicit "bfloat16" that the
    measurement finds slower than float32 warns once per process (RuntimeWarning) and resolves to "full"."""
    requested = check_matmul_precision(requested)
    device_type = torch.device(device).type
    if requested == "full":
        return "full"
    if requested == "bfloat16":
        # not capable: no bfloat16 instructions, or torch/oneDNN dispatching below them (e.g. ATEN_CPU_CAPABILITY
        # =avx2, ONEDNN_MAX_CPU_ISA=AVX2 on a CPU whose flags list avx512_bf16): the timing decides
        if device_type == "cpu" and not bf16_capable(device_type):
            speedup = bf16_speedup(device_type)
            if speedup < 1.0:
                if "bf16" not in _WARNED:
                    _WARNED.add("bf16")
                    warnings.warn(
                        f"matmul_precision='bfloat16': its products measured {1.0 / speedup:.1f}x slower than "
                        f"float32 on this CPU ({cpu_capability()}; emulated without AVX512-BF16 or AMX); training "
                        f"uses float32 products instead", RuntimeWarning, stacklevel=2)
                return "full"
        return "bfloat16"
    if flops is not None and flops < AUTO_MIN_FLOPS:
        return "full"
    if not bf16_capable(device_type):
        return "full"
    return "bfloat16" if bf16_speedup(device_type) >= AUTO_MIN_SPEEDUP else "full"


def resolve_for_model(model, device, flops: float) -> str:
    """`resolve_matmul_precision(model.matmul_precision, device, flops)` once per model, device and requested value
    (the first training batch decides: a short last batch keeps it); sets and returns
    `model.resolved_matmul_precision`, which runs record in metrics.json."""
    key = (torch.device(device).type, model.matmul_precision)
    cached = getattr(model, "_matmul_resolution", None)
    if cached is None or cached[0] != key:
        model._matmul_resolution = (key, resolve_matmul_precision(model.matmul_precision, device, flops))
        model.resolved_matmul_precision = model._matmul_resolution[1]
    return model._matmul_resolution[1]


def precision_record(requested: str, resolved: str, device="cpu") -> dict:
    """What a run records about its matmul precision: requested and resolved values and the machine's facts."""
    device_type = torch.device(device).type
    rec = {"matmul_precision": requested, "matmul_precision_resolved": resolved}
    if device_type == "cpu":
        rec["cpu_capability"] = cpu_capability()
        rec["cpu_bf16_supported"] = cpu_bf16_supported()
        rec["cpu_native_bf16"] = cpu_native_bf16()
    if device_type in _SPEEDUP_CACHE:
        rec["bf16_speedup_measured"] = round(_SPEEDUP_CACHE[device_type], 3)
    return rec


def machine_precision_record() -> dict:
    """The CPU facts a benchmark records: capability, bfloat16 support, the measured bfloat16 speedup and what
    "auto" resolves to for a large product here."""
    return {"cpu_capability": cpu_capability(), "cpu_bf16_supported": cpu_bf16_supported(),
            "cpu_native_bf16": cpu_native_bf16(), "bf16_capable": bf16_capable("cpu"),
            "bf16_speedup_measured": round(bf16_speedup("cpu"), 3),
            "matmul_precision_auto": resolve_matmul_precision("auto", "cpu")}


def _reset_for_tests() -> None:
    """Forget the measured speedups and the warnings given (tests)."""
    _SPEEDUP_CACHE.clear()
    _WARNED.clear()


__all__ = ["AUTO_MIN_FLOPS", "AUTO_MIN_SPEEDUP", "MATMUL_PRECISIONS", "STEP_MIN_SPEEDUP", "bf16_capable",
           "bf16_speedup", "check_matmul_precision", "cpu_bf16_supported", "cpu_capability",
           "cpu_native_bf16", "machine_precision_record", "measure_bf16_speedup", "precision_record",
           "resolve_for_model", "resolve_matmul_precision"]
