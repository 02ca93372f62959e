"""Compiled (numba) kernels of the one-hidden-layer NADE pass, fused per example.

For one example in ordering coordinates (x_d the d-th visited input, w_d / u_d / v_d rows of the ordered weights):

    a_0 = c,   a_{d+1} = a_d + x_d w_d + u_d,   l_d = v_d . act(a_d)                     (forward, O(nH))

and, with g_d = dL/dl_d and da_d = g_d v_d * act'(a_d), the suffix sums S_d = sum_{e > d} da_e give

    dL/dv_d = g_d act(a_d),   dL/dc = sum_d da_d,   dL/dw_d = x_d S_d,   dL/du_d = S_d,   dL/dx_d = w_d . S_d.

Each example is one pass over d with the H-vector a_d kept in cache (the backward pass recomputes a_d into a
per-thread n x H buffer), so the arithmetic is done without the memory traffic of (batch x n x H) tensors.
Examples run in parallel (numba prange) over contiguous chunks, each chunk accumulating its own weight gradients,
summed at the end. Activations: 0 = relu, 1 = sigmoid, 2 = tanh. `available()` is False when numba cannot be
imported; the caller then uses the torch implementation (same numbers to rounding)."""
from __future__ import annotations

import math

import numpy as np

try:  # optional accelerator: the pure-torch pass is used without it
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

ACTIVATION_CODES = {"relu": 0, "sigmoid": 1, "tanh": 2}


def available() -> bool:
    return numba is not None


if numba is not None:

    @njit(inline="always", fastmath=False)
    def _act(a, kind):
        if kind == 0:
            return a if a > 0.0 else 0.0
        if kind == 1:
            return 1.0 / (1.0 + math.exp(-a))
        return math.tanh(a)

    @njit(inline="always", fastmath=False)
    def _dact(a, h, kind):
        if kind == 0:
            return 1.0 if a > 0.0 else 0.0
        if kind == 1:
            return h * (1.0 - h)
        return 1.0 - h * h

    @njit(parallel=True, cache=True)
    def nade_forward(xo, wo, uo, has_u, c, vo, kind, out):
        """out[b, d] = v_d . act(a_d) for every example b (see the module docstring); the dot products are summed
        in float64."""
        bsz, n = xo.shape
        hid = wo.shape[1]
        for b in prange(bsz):
            a = c.copy()
            for d in range(n):
                s = 0.0
                for j in range(hid):
                    s += _act(a[j], kind) * vo[d, j]
                out[b, d] = s
                xd = xo[b, d]
                if has_u:
                    for j in range(hid):
                        a[j] += xd * wo[d, j] + uo[d, j]
                elif xd != 0.0:
                    for j in range(hid):
                        a[j] += xd * wo[d, j]

    @njit(parallel=True, cache=True)
    def nade_backward(xo, wo, uo, has_u, c, vo, kind, g, n_chunks, gw, gu, gc, gv, gx, want_gx):
        """Gradients of L with dL/dl = g: gw, gu, gv (n_chunks, n, H) and gc (n_chunks, H) receive per-chunk
        partial sums (zeroed by the caller, added up by the caller); gx (B, n) is filled when want_gx."""
        bsz, n = xo.shape
        hid = wo.shape[1]
        per = (bsz + n_chunks - 1) // n_chunks
        for t in prange(n_chunks):
            A = np.empty((n, hid), dtype=wo.dtype)
            S = np.empty(hid, dtype=wo.dtype)
            for b in range(t * per, min(bsz, (t + 1) * per)):
                for j in range(hid):                 # forward again, keeping every a_d
                    A[0, j] = c[j]
                for d in range(n - 1):
                    xd = xo[b, d]
                    for j in range(hid):
                        A[d + 1, j] = A[d, j] + xd * wo[d, j] + (uo[d, j] if has_u else 0.0)
                for j in range(hid):
                    S[j] = 0.0
                for d in range(n - 1, -1, -1):
                    gd = g[b, d]
                    xd = xo[b, d]
                    sx = 0.0
                    for j in range(hid):
                        # S[j] = sum_{e > d} da_e here: the gradient reaching the inputs of step d
                        if xd != 0.0:
                            gw[t, d, j] += xd * S[j]
                        if has_u:
                            gu[t, d, j] += S[j]
                        if want_gx:
                            sx += wo[d, j] * S[j]
                        a = A[d, j]
                        h = _act(a, kind)
                        gv[t, d, j] += gd * h
                        da = gd * vo[d, j] * _dact(a, h, kind)
                        gc[t, j] += da
                        S[j] += da
                    if want_gx:
                        gx[b, d] = sx


def _threads() -> int:
    """Use as many numba threads as torch does (the trainer and the tests set torch's count)."""
    import torch

    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


def forward(xo, wo, uo, c, vo, activation: str):
    """Logits l (B, n) of the one-layer NADE pass (torch tensors in, torch tensor out; uo may be None)."""
    import torch

    out = torch.empty(xo.shape, dtype=wo.dtype)
    u = uo if uo is not None else wo.new_zeros(1, 1)
    _threads()
    nade_forward(xo.numpy(), wo.numpy(), u.numpy(), uo is not None, c.numpy(), vo.numpy(),
                 ACTIVATION_CODES[activation], out.numpy())
    return out


def backward(xo, wo, uo, c, vo, activation: str, g, want_gx: bool):
    """(gx or None, gw, gu or None, gc, gv) for dL/dl = g (torch tensors)."""
    import torch

    t = _threads()
    n, hid = wo.shape
    has_u = uo is not None
    gw = torch.zeros(t, n, hid, dtype=wo.dtype)
    gv = torch.zeros(t, n, hid, dtype=wo.dtype)
    gu = torch.zeros(t, n, hid, dtype=wo.dtype) if has_u else wo.new_zeros(1, 1, 1)
    gc = torch.zeros(t, hid, dtype=wo.dtype)
    gx = torch.zeros(xo.shape, dtype=wo.dtype) if want_gx else wo.new_zeros(1, 1)
    u = uo if has_u else wo.new_zeros(1, 1)
    nade_backward(xo.numpy(), wo.numpy(), u.numpy(), has_u, c.numpy(), vo.numpy(), ACTIVATION_CODES[activation],
                  g.numpy(), t, gw.numpy(), gu.numpy(), gc.numpy(), gv.numpy(), gx.numpy(), want_gx)
    return (gx if want_gx else None, gw.sum(0), gu.sum(0) if has_u else None, gc.sum(0), gv.sum(0))
