"""Compiled (numba) sequential-scan Gibbs sweeps of a fully visible Boltzmann machine on 0/1 states.

Under P_beta(x) ∝ exp(-beta E(x)), E(x) = -(b.x + 1/2 x.W.x), a sweep redraws the units i = 1..n of every chain in
turn from P(x_i = 1 | x_-i) = sigmoid(beta F_i), with the fields F = b + x W. torch computes each F_i as a
product x W[:, i] (n products of C x n per sweep, n calls into torch); here each chain keeps its fields as a vector:

    at the start of a sweep   F = b + sum of the rows W_j over the active units j   (sums of selected rows),
    when unit i flips         F <- F + W_i (0 -> 1)  or  F - W_i (1 -> 0),

so a sweep costs (active units + flips) x n additions per chain instead of n^2 multiply-adds, and one call instead
of 3n. The fields are recomputed from the state at every sweep, so rounding does not build up across sweeps; within
a sweep each F_i differs from the product x W[:, i] only in the order of its float additions. The decisions use
the uniforms u that the caller draws (u[c, i] < sigmoid(beta_c F_i), as the torch loop), so both give the same
chains up to those rounding differences (tests/test_boltzmann_kernels.py). Chains run in parallel over numba's
threads (as many as torch uses). `available()` is False without numba: callers keep the torch loop."""
from __future__ import annotations

import numpy as np

from genlearn import binary_kernels



def available() -> bool:
    """Whether numba (the optional `fast` extra) is installed."""
    return binary_kernels.available()


if available():
    from numba import njit, prange

    @njit(parallel=True, cache=True)
    def _sweeps(x, b, W, beta, u):  # pragma: no cover - compiled
        """len(u) sweeps of every chain (row of x, 0/1, updated in place) at its inverse temperature beta[c];
        sweep s redraws unit i of chain c as u[s, c, i] < sigmoid(beta[c] F_i)."""
        C, n = x.shape
        one = x.dtype.type(1.0)
        for c in prange(C):
            xc = x[c]
            bc = beta[c]
            F = np.empty(n, x.dtype)
            for s in range(u.shape[0]):
                us = u[s, c]
                for j in range(n):
                    F[j] = b[j]
                for j in range(n):
                    if xc[j] != 0:
                        Wj = W[j]
                        for i in range(n):
                            F[i] += Wj[i]
                for i in range(n):
                    on = us[i] < one / (one + np.exp(-bc * F[i]))
                    if on != (xc[i] != 0):
                        xc[i] = one if on else 0
                        Wi = W[i]
                        if on:
                            for j in range(n):
                                F[j] += Wi[j]
                        else:
                            for j in range(n):
                                F[j] -= Wi[j]


#: False keeps the torch loop (benchmarks time both in one run)
ENABLED = True


def usable(x, b, W) -> bool:
    """Whether the kernel takes these tensors: enabled, numba present, float32 or float64 CPU tensors of one dtype,
    x (C x n) and W (n x n) contiguous."""
    import torch

    return (ENABLED and available() and x.dtype in (torch.float32, torch.float64) and x.dim() == 2
            and all(t.dtype == x.dtype and t.device.type == "cpu" and t.is_contiguous() and not t.requires_grad
                    for t in (x, b, W))
            and W.shape == (x.shape[1], x.shape[1]) and b.shape == (x.shape[1],))


def sweeps_(x, b, W, beta, u):
    """`len(u)` sequential-scan Gibbs sweeps of the chains x (C x n, exact 0/1 entries, updated in place; returns x)
    under P_beta(x) ∝ exp(beta (b.x + 1/2 x.W.x)) with beta per chain (C entries) and the uniforms u (sweeps x C x
    n), x's dtype; unit i of chain c is redrawn as u[s, c, i] < sigmoid(beta_c (b_i + sum_j x_j W_ji)). W is the
    model's matrix: the kernel adds its rows W[j] (x W = the sum of the rows at the active units)."""
    if not usable(x, b, W) or beta.dtype != x.dtype or u.dtype != x.dtype or not u.is_contiguous() \
            or beta.shape != (x.shape[0],) or u.shape[1:] != x.shape:
        raise ValueError("boltzmann_kernels.sweeps_: contiguous CPU tensors of one float dtype, x (C x n), b (n), "
                         "W (n x n), beta (C), u (sweeps x C x n)")
    binary_kernels._threads()
    _sweeps(x.numpy(), b.numpy(), W.numpy(), beta.contiguous().numpy(), u.numpy())
    return x


__all__ = ["available", "sweeps_", "usable"]
