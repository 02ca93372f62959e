"""Float32 matrix products on the CPU through the faster of two libraries, chosen once per process by a timing.

torch.mm sends float32 products to MKL's sgemm. On AMD CPUs MKL takes a slower path: one core of this project's
AVX-512 EPYC ran a 100 x 784 @ 784 x 500 product at ~90 GFLOP/s. oneDNN's inner-product primitive (the
`torch.ops.mkldnn._linear_pointwise` op that torch's own compiler uses for frozen linear layers) chooses its
kernels by instruction set, and ran the same product at 180-200 GFLOP/s there, with transposed operands too.

`mm(a, b)` = a @ b and `addmm(bias, a, b)` = bias + a @ b use oneDNN when all of these hold:
- both operands are 2-D float32 CPU tensors that autograd does not track;
- the product has at least MIN_FLOPS = 2 m k n flops;
- a timing of a training-shaped product (100 x 784 @ 784 x 500, best of 5 alternating rounds, once per process
  and thread count) finds it at least MIN_SPEEDUP times faster than torch.mm.
Otherwise they use torch.mm / torch.addmm. Intel CPUs, GPUs, other dtypes and torch builds without the op
therefore keep torch's products: the choice is never slower than torch.mm by the timing.
The environment variable GENLEARN_FLOAT32_PRODUCTS = "torch" or "onednn" forces a choice.
Both libraries compute the same product up to float32 summation order.

Used where genlearn writes products by hand, without autograd: the CD/PCD step of the RBM and AIS's Gibbs
sweeps. `linear(x, W, b)` = x W^T + b is F.linear with the same choice for autograd-tracked layers (the VAE's and
MADE's): its backward computes dL/dx = g W, dL/dW = g^T x and dL/db = sum_rows g by `mm` too.
Imports nothing of genlearn but its errors, kernel_timing and timing_cache."""
from __future__ import annotations

import os

import torch
from torch import Tensor

from genlearn import kernel_timing, timing_cache

#: oneDNN only when the timing finds it at least this much faster (a margin against timing noise)
MIN_SPEEDUP = 1.2
#: products smaller than this (2 m k n) keep torch.mm: the call overhead, not the arithmetic, sets their speed
MIN_FLOPS = 2e7
#: the timed shape (m, k, n): a minibatch of 100 binarized MNIST rows through 500 hidden units
BENCH_SHAPE = (100, 784, 500)
CHOICES = ("auto", "torch", "onednn")

_SPEEDUP: dict[int, float] = {}  # torch threads -> time(torch.mm) / time(oneDNN)


def _linear():
    """oneDNN's x @ w^T + bias for dense tensors, or None where this torch build lacks it."""
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


def onednn_available() -> bool:
    """Whether this torch build has oneDNN's dense inner-product op."""
    return _linear() is not None and torch.backends.mkldnn.is_available()


def _dense(t: Tensor) -> Tensor:
    """t itself when it or its transpose is contiguous, else a contiguous copy. oneDNN takes other strides (e.g. the
    column slice z[:, :40] of a (B, 80) tensor) to a reference kernel: a 1000 x 600 by 1000 x 40 product with such
    an operand took 581 ms against 1.2 ms contiguous (AVX-512 EPYC, one thread)."""
    return t if t.is_contiguous() or t.T.is_contiguous() else t.contiguous()


def onednn_mm(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """a @ b (+ bias) by oneDNN's inner product, always (2-D float32 CPU tensors; see `mm` for the choice)."""
    return _linear()(_dense(a), _dense(b).T, bias, "none", [], "")


def onednn_speedup(seconds: float = 0.1) -> float:
    """Time(torch.mm) / time(oneDNN) for BENCH_SHAPE on this CPU at torch's current thread count (> 1: oneDNN
    faster), measured once per thread count and machine (genlearn.timing_cache); 0.0 where oneDNN's op is missing
    or fails."""
    threads = torch.get_num_threads()
    if threads in _SPEEDUP:
        return _SPEEDUP[threads]
    if not onednn_available():
        _SPEEDUP[threads] = 0.0
        return 0.0

    def measure() -> float:
        m, k, n = BENCH_SHAPE
        g = torch.Generator().manual_seed(0)
        a, b = torch.rand(m, k, generator=g), torch.rand(k, n, generator=g)
        try:
            best = kernel_timing.best_seconds({"torch": lambda: torch.mm(a, b), "onednn": lambda: onednn_mm(a, b)},
                                              2 * seconds)  # rounds of seconds / 5 each
            return best["torch"] / best["onednn"]
        except RuntimeError:  # a build whose oneDNN refuses the op on this CPU
            return 0.0

    # remembered on this machine across processes (genlearn.timing_cache): ~0.2 s less at every run's start
    _SPEEDUP[threads] = timing_cache.remembered(__file__, f"onednn_speedup {BENCH_SHAPE} threads={threads}", measure)
    return _SPEEDUP[threads]


def choice() -> str:
    """"onednn" or "torch": the library of large float32 CPU products in this process (GENLEARN_FLOAT32_PRODUCTS,
    else the timing)."""
    forced = os.environ.get("GENLEARN_FLOAT32_PRODUCTS", "auto").strip().lower() or "auto"
    if forced not in CHOICES:
        from genlearn.errors import ConfigError

        raise ConfigError(f"GENLEARN_FLOAT32_PRODUCTS must be one of {', '.join(CHOICES)}, got {forced!r}")
    if forced == "torch" or (forced == "onednn" and not onednn_available()):
        return "torch"
    if forced == "onednn":
        return "onednn"
    return "onednn" if onednn_speedup() >= MIN_SPEEDUP else "torch"


def _use_onednn(a: Tensor, b: Tensor, bias: Tensor | None) -> bool:
    tensors = (a, b) if bias is None else (a, b, bias)
    return (a.dim() == 2 and b.dim() == 2 and all(t.device.type == "cpu" and t.dtype == torch.float32
                                                  for t in tensors)
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
            and 2.0 * a.shape[0] * a.shape[1] * b.shape[1] >= MIN_FLOPS and choice() == "onednn")


def mm(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """a @ b (see the module docstring for which library computes it); `out` receives it when given."""
    if not _use_onednn(a, b, None):
        return torch.mm(a, b) if out is None else torch.mm(a, b, out=out)
    r = onednn_mm(a, b)
    return r if out is None else out.copy_(r)


def addmm(bias: Tensor, a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """bias + a @ b for a bias vector of b's columns (see the module docstring); `out` receives it when given."""
    if bias.dim() != 1 or not _use_onednn(a, b, bias):
        return torch.addmm(bias, a, b) if out is None else torch.addmm(bias, a, b, out=out)
    r = onednn_mm(a, b, bias)
    return r if out is None else out.copy_(r)


def bound_addmm(bias: Tensor, a: Tensor, b: Tensor, out: Tensor):
    """`addmm(bias, a, b, out=out)` as a call without arguments, its library chosen once, here: the same numbers on
    every call while the tensors' storage stays (in-place changes of their values included), without the ~17 us
    of per-call checks (the RBM's PCD step makes this product 600 times an epoch). For use without autograd."""
    if bias.dim() != 1 or not _use_onednn(a, b, bias):
        return lambda: torch.addmm(bias, a, b, out=out)
    linear_op = _linear()
    if _dense(a) is a and _dense(b) is b:  # operands oneDNN reads as they are
        b_t = b.T
        return lambda: out.copy_(linear_op(a, b_t, bias, "none", [], ""))
    return lambda: out.copy_(linear_op(_dense(a), _dense(b).T, bias, "none", [], ""))  # copies made at each call


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b by oneDNN; backward dL/dx = g W, dL/dW = g^T x, dL/db = sum over rows of g (each by `mm`)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _linear()(x, _dense(weight), bias, "none", [], "")

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):
        x, weight = ctx.saved_tensors
        g = g.contiguous()
        grad_x = mm(g, weight) if ctx.needs_input_grad[0] else None
        grad_w = mm(g.T, x) if ctx.needs_input_grad[1] else None
        grad_b = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x W^T + b for x of shape (..., k), W (n, k), b (n,): torch.nn.functional.linear, through oneDNN (forward and
    backward) where `mm` would choose it: float32 CPU tensors, no autocast, at least MIN_FLOPS = 2 m k n flops for
    the m rows of x. On that path the backward is not itself differentiable (a double backward raises): use
    F.linear where second derivatives are needed (no genlearn model needs them: AIS's HMC takes first
    derivatives in z)."""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    m = x.numel() // max(x.shape[-1], 1) if x.dim() >= 1 else 0
    if (x.dim() < 2 or weight.dim() != 2 or (bias is not None and bias.dim() != 1)
            or any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors)
            or torch.is_autocast_enabled("cpu") or 2.0 * m * weight.shape[1] * weight.shape[0] < MIN_FLOPS
            or choice() != "onednn"):
        return torch.nn.functional.linear(x, weight, bias)
    x2 = _dense(x.reshape(m, x.shape[-1]))
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
        out = _linear()(x2, _dense(weight), bias, "none", [], "")
    else:
        out = _OneDNNLinear.apply(x2, weight, bias)
    return out.reshape(*x.shape[:-1], weight.shape[0])


def record() -> dict:
    """What runs and benchmarks record: the library chosen and the measured speedup, and where this process's
    one-off timings came from (genlearn.timing_cache)."""
    return {"float32_products": choice(), "onednn_speedup_measured": round(onednn_speedup(), 3),
            **timing_cache.record()}


def _reset_for_tests() -> None:
    _SPEEDUP.clear()


__all__ = ["BENCH_SHAPE", "CHOICES", "MIN_FLOPS", "MIN_SPEEDUP", "addmm", "bound_addmm", "choice", "linear", "mm",
           "onednn_available", "onednn_mm", "onednn_speedup", "record"]
