"""Exact matrix products whose left operand is sparse 0/1 rows (binarized images, sampled visible states).

For x in {0,1}^(R x V) and W (V x H), row r of x W is the sum of the rows W_i over the active pixels i of x_r:

    (x W)_r = sum_{i : x_ri = 1} W_i        (nnz(x) H additions instead of 2 R V H flops)

and x^T P (the CD statistics v^T P(h|v)) is, per pixel i, the sum of the rows P_r over the examples r with
x_ri = 1. Both are `torch.nn.functional.embedding_bag(mode="sum")` over the nonzero entries (from
`torch.nonzero`, the values as per-sample weights, so gray levels stay exact), equal to the dense product up to
float32 summation order.

Not used in training (issue 17, measured; the compiled kernels of genlearn.binary_kernels are used instead where
they are faster): on the AVX-512 development CPU at binarized MNIST's density (13%)
these products ran at 0.4-1.2x the speed of the dense float32 GEMM (1.4-2.5x only at 5%), and a CD step that
chose between them by the measured density ran ~20% slower end to end than the dense step; so the CD/PCD step
and AIS keep dense GEMMs. `measure_gain` lets benchmarks/speed.py re-measure the ratio on another machine."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import Tensor


def rows_mm(x: Tensor, W: Tensor) -> Tensor:
    """x W for sparse rows x (R x V) and W (V x H) as sums over the nonzero entries of each row,
    (x W)_r = sum_{i: x_ri != 0} x_ri W_i (the x_ri are per-sample weights, exact factors 1 for 0/1 rows, so gray
    levels stay exact too); a new (R x H) tensor, equal to x @ W up to float32 summation order."""
    idx = x.nonzero()
    rows, cols = idx[:, 0], idx[:, 1]
    counts = torch.bincount(rows, minlength=x.shape[0])
    offsets = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    torch.cumsum(counts[:-1], 0, out=offsets[1:])
    return F.embedding_bag(cols, W, offsets, mode="sum", per_sample_weights=x[rows, cols].to(W.dtype))


def rows_t_mm(x: Tensor, P: Tensor) -> Tensor:
    """x^T P for sparse rows x (R x V) and P (R x H): per pixel i, sum_{r: x_ri != 0} x_ri P_r (for 0/1 rows the
    sum of the rows P_r with x_ri = 1); a new (V x H) tensor, equal to x.T @ P up to float32 summation order."""
    return rows_mm(x.T, P)


def _timed(f, reps: int) -> float:
    f()
    t0 = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - t0) / reps


def measure_gain(rows: int, V: int, H: int, density: float, transposed: bool = False, reps: int = 3) -> float:
    """time(dense float32 product) / time(sparse-row product) for random 0/1 rows (R x V) of this density with a
    (V x H) matrix (transposed: the statistics product x^T P with P (R x H)), here and now: the median of 3
    alternating rounds of `reps` products each (> 1: the sparse-row product is faster)."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(rows, V, generator=g) < density).float()
    if transposed:
        Pm = torch.randn(rows, H, generator=g)
        dense, sparse = (lambda: torch.mm(x.T, Pm)), (lambda: rows_t_mm(x, Pm))
    else:
        W = torch.randn(V, H, generator=g)
        dense, sparse = (lambda: torch.mm(x, W)), (lambda: rows_mm(x, W))
    return sorted(_timed(dense, reps) / _timed(sparse, reps) for _ in range(3))[1]


__all__ = ["measure_gain", "rows_mm", "rows_t_mm"]
