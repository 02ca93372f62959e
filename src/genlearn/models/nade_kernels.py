"""Compiled (numba) kernels of the one-hidden-layer NADE pass, fused per example.

For one example in ordering coordinates (x_d the d-th visited input, w_d / u_d / v_d rows of the ordered weights):

    a_0 = c,   a_{d+1} = a_d + x_d w_d + u_d,   l_d = v_d . act(a_d)                     (forward, O(nH))

and, with g_d = dL/dl_d and da_d = g_d v_d * act'(a_d), the suffix sums S_d = sum_{e > d} da_e give

    dL/dv_d = g_d act(a_d),   dL/dc = sum_d da_d,   dL/dw_d = x_d S_d,   dL/du_d = S_d,   dL/dx_d = w_d . S_d.

Each example is one pass over d with the H-vector a_d kept in cache (the backward pass recomputes a_d into a
per-thread n x H buffer), so the arithmetic is done without the memory traffic of (batch x n x H) tensors.
Examples run in parallel (numba prange) over contiguous chunks, each chunk accumulating its own weight gradients,
summed at the end. Every loop over the H hidden units is branch-free for its activation and compiled with
reassociation allowed (`FAST`), so that it runs in SIMD lanes: 5-6x the speed of the scalar loops on the
project's machine (AVX-512), the same numbers to float rounding. Activations: 0 = relu, 1 = sigmoid, 2 = tanh
(libm, float64 tensors), 3 = tanh and 4 = sigmoid by a vectorisable rational approximation (float32 tensors).
Without the per-step input u (every model but the order-agnostic one), a_d changes only where x_d != 0, so
the run kernels (`nade_forward_runs`, `nade_backward_runs`) evaluate act(a) once per run of unchanged a and sum
g_d v_d over each run before the single act'(a) product: on binarized MNIST (13% ones) ~2x the per-step
kernels' training speed, the same numbers to float rounding.
`available()` is False when numba cannot be imported; the caller then uses the torch implementation (same
numbers to rounding)."""
from __future__ import annotations

import math

import numpy as np

try:  # optional accelerator: the pure-torch pass is used without it
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

ACTIVATION_CODES = {"relu": 0, "sigmoid": 1, "tanh": 2}
#: float32 tensors: tanh and sigmoid (= (1 + tanh(a/2)) / 2) by `tanh_rational` (codes 3 and 4), whose error
#: (<= 3.8e-8, below a float32 ulp near 1: 6.0e-8) is of the order of float32 rounding; float64 tensors keep
#: libm's exact functions (codes 1 and 2)
RATIONAL_CODES = {"relu": 0, "sigmoid": 4, "tanh": 3}
#: False keeps libm's scalar tanh/sigmoid for float32 too (benchmarks/nade_eval_speed.py times both)
USE_RATIONAL = True
#: without the mask input u, use the run kernels (act(a) recomputed only after a visited one); False keeps the
#: per-step kernels for every pass (benchmarks/nade_speed.py times both in one run)
USE_RUNS = True


def available() -> bool:
    return numba is not None


#: LLVM may reorder sums (so the dot products over the hidden units vectorise) and fuse multiply-adds; NaN and
#: infinity semantics are kept (no "nnan"/"ninf").
FAST = {"reassoc", "contract", "nsz", "arcp"}

#: tanh(x) ~ x P(x^2) / Q(x^2) on |x| <= TANH_CLAMP (coefficients in increasing powers of x^2): a rational
#: fit to tanh(x)/x by iteratively reweighted least squares toward the minimax (max relative error 6.6e-9 in
#: float64 arithmetic, against mpmath's tanh on 43,000 points of [0, 9]); beyond the clamp |tanh| rounds to 1
#: in float32 (1 - tanh(9) = 3.0e-8, half a float32 ulp below 1).
TANH_CLAMP = 9.0
TANH_P = (0.999999993398296, 0.13084014329591107, 0.003103960905751887, 1.1154356457795452e-05,
          -2.022541611752972e-08, 5.2780373948251226e-11, -8.488932490720106e-14)
TANH_Q = (1.0, 0.4641734143434985, 0.0244951971673297, 0.00025461519998522936)


def tanh_rational(x):
    """tanh(x) by the rational approximation above, in float64 (NumPy arrays or floats): |error| <= 3.8e-8.
    The numba kernels inline the same formula for float32 tensors, where libm's scalar tanh (no SVML in the
    PyPI llvmlite) was 23 ns an element against ~1 ns for this branch-free form in SIMD lanes."""
    x = np.minimum(np.maximum(np.asarray(x, dtype=np.float64), -TANH_CLAMP), TANH_CLAMP)
    s = x * x
    p, q = TANH_P, TANH_Q
    num = p[0] + s * (p[1] + s * (p[2] + s * (p[3] + s * (p[4] + s * (p[5] + s * p[6])))))
    den = q[0] + s * (q[1] + s * (q[2] + s * q[3]))
    return x * num / den


if numba is not None:
    _P0, _P1, _P2, _P3, _P4, _P5, _P6 = TANH_P
    _Q1, _Q2, _Q3 = TANH_Q[1:]

    @njit(inline="always", fastmath=FAST)
    def _tanh_r(a):
        """`tanh_rational` of one value, in float64 (NaN stays NaN: the clamp compares, it does not min/max)."""
        x = float(a)
        x = TANH_CLAMP if x > TANH_CLAMP else x
        x = -TANH_CLAMP if x < -TANH_CLAMP else x
        s = x * x
        num = _P0 + s * (_P1 + s * (_P2 + s * (_P3 + s * (_P4 + s * (_P5 + s * _P6)))))
        den = 1.0 + s * (_Q1 + s * (_Q2 + s * _Q3))
        return x * num / den

    @njit(inline="always", fastmath=FAST)
    def _dot_act(a, v, kind):
        """sum_j act(a_j) v_j, summed in float64; one branch-free loop per activation (so that it vectorises)."""
        hid = a.shape[0]
        s = 0.0
        if kind == 0:
            for j in range(hid):
                s += max(a[j], 0.0) * v[j]
        elif kind == 1:
            for j in range(hid):
                s += v[j] / (1.0 + math.exp(-a[j]))
        elif kind == 2:
            for j in range(hid):
                s += math.tanh(a[j]) * v[j]
        elif kind == 3:
            for j in range(hid):
                s += _tanh_r(a[j]) * v[j]
        else:
            for j in range(hid):
                s += (0.5 + 0.5 * _tanh_r(0.5 * a[j])) * v[j]
        return s

    @njit(inline="always", fastmath=FAST)
    def _step(a, xd, w, u, has_u):
        """a += x_d w_d (+ u_d): the hidden pre-activations after visiting input d."""
        hid = a.shape[0]
        if has_u:
            for j in range(hid):
                a[j] += xd * w[j] + u[j]
        elif xd != 0.0:
            for j in range(hid):
                a[j] += xd * w[j]

    @njit(parallel=True, cache=True, fastmath=FAST)
    def nade_forward(xo, wo, uo, has_u, c, vo, kind, out):
        """out[b, d] = v_d . act(a_d) for every example b (see the module docstring); the dot products are summed
        in float64."""
        bsz, n = xo.shape
        for b in prange(bsz):
            a = c.copy()
            for d in range(n):
                out[b, d] = _dot_act(a, vo[d], kind)
                _step(a, xo[b, d], wo[d], uo[d if has_u else 0], has_u)

    @njit(inline="always", fastmath=FAST)
    def _backward_hidden(a, gd, v, gv, gc, S, kind):
        """For step d: gv_d += g_d act(a_d), da = g_d v_d act'(a_d), gc += da, S += da (S becomes sum_{e >= d} da_e)."""
        hid = a.shape[0]
        if kind == 0:
            for j in range(hid):
                on = a[j] > 0.0
                gv[j] += gd * (a[j] if on else 0.0)
                da = gd * v[j] if on else 0.0
                gc[j] += da
                S[j] += da
        elif kind == 1:
            for j in range(hid):
                h = 1.0 / (1.0 + math.exp(-a[j]))
                gv[j] += gd * h
                da = gd * v[j] * h * (1.0 - h)
                gc[j] += da
                S[j] += da
        elif kind == 2:
            for j in range(hid):
                h = math.tanh(a[j])
                gv[j] += gd * h
                da = gd * v[j] * (1.0 - h * h)
                gc[j] += da
                S[j] += da
        elif kind == 3:
            for j in range(hid):
                h = _tanh_r(a[j])
                gv[j] += gd * h
                da = gd * v[j] * (1.0 - h * h)
                gc[j] += da
                S[j] += da
        else:
            for j in range(hid):
                h = 0.5 + 0.5 * _tanh_r(0.5 * a[j])
                gv[j] += gd * h
                da = gd * v[j] * h * (1.0 - h)
                gc[j] += da
                S[j] += da

    @njit(parallel=True, cache=True, fastmath=FAST)
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
                A[0] = c                                  # forward again, keeping every a_d
                for d in range(n - 1):
                    A[d + 1] = A[d]
                    _step(A[d + 1], xo[b, d], wo[d], uo[d if has_u else 0], has_u)
                S[:] = 0.0
                for d in range(n - 1, -1, -1):
                    # S = sum_{e > d} da_e here: the gradient reaching the inputs of step d
                    xd = xo[b, d]
                    if xd != 0.0:
                        for j in range(hid):
                            gw[t, d, j] += xd * S[j]
                    if has_u:
                        for j in range(hid):
                            gu[t, d, j] += S[j]
                    if want_gx:
                        sx = 0.0
                        for j in range(hid):
                            sx += wo[d, j] * S[j]
                        gx[b, d] = sx
                    _backward_hidden(A[d], g[b, d], vo[d], gv[t, d], gc[t], S, kind)


    # -- runs between visited ones: without the per-step input u_d, a_d changes only where x_d != 0 -----------
    @njit(inline="always", fastmath=FAST)
    def _activate(a, h, kind):
        """h = act(a) elementwise (one branch-free loop per activation)."""
        hid = a.shape[0]
        if kind == 0:
            for j in range(hid):
                h[j] = max(a[j], 0.0)
        elif kind == 1:
            for j in range(hid):
                h[j] = 1.0 / (1.0 + math.exp(-a[j]))
        elif kind == 2:
            for j in range(hid):
                h[j] = math.tanh(a[j])
        elif kind == 3:
            for j in range(hid):
                h[j] = _tanh_r(a[j])
        else:
            for j in range(hid):
                h[j] = 0.5 + 0.5 * _tanh_r(0.5 * a[j])

    @njit(inline="always", fastmath=FAST)
    def _dot(h, v):
        """sum_j h_j v_j, summed in float64."""
        s = 0.0
        for j in range(h.shape[0]):
            s += h[j] * v[j]
        return s

    @njit(parallel=True, cache=True, fastmath=FAST)
    def nade_forward_runs(xo, wo, c, vo, kind, out):
        """out[b, d] = v_d . act(a_d) without u: h = act(a) is recomputed only after a visited x_d != 0 (binary
        data: a fraction of the n steps), every step costs one dot product."""
        bsz, n = xo.shape
        hid = wo.shape[1]
        for b in prange(bsz):
            a = c.copy()
            h = np.empty(hid, dtype=wo.dtype)
            _activate(a, h, kind)
            for d in range(n):
                out[b, d] = _dot(h, vo[d])
                xd = xo[b, d]
                if xd != 0.0 and d < n - 1:
                    for j in range(hid):
                        a[j] += xd * wo[d, j]
                    _activate(a, h, kind)

    @njit(parallel=True, cache=True, fastmath=FAST)
    def nade_backward_runs(xo, wo, c, vo, kind, g, n_chunks, gw, gc, gv):
        """Gradients without u and without dL/dx, into gw, gv (n_chunks, n, H) and gc (n_chunks, H), each chunk's
        partial sums (zeroed here), by runs: run q is the steps lo_q..hi_q that share a_q (hi_q is a
        visited x_d != 0, or n - 1). Within a run dL/da_d = g_d v_d act'(a_q), so the run contributes
        act'(a_q) * sum_d g_d v_d at once; dL/dw_{hi_q} = x_{hi_q} (sum of the later runs' dL/da)."""
        bsz, n = xo.shape
        hid = wo.shape[1]
        per = (bsz + n_chunks - 1) // n_chunks
        for t in prange(n_chunks):
            A = np.empty((n, hid), dtype=wo.dtype)      # a_q of each run
            Hq = np.empty((n, hid), dtype=wo.dtype)     # act(a_q)
            ends = np.empty(n, dtype=np.int64)          # hi_q
            S = np.empty(hid, dtype=wo.dtype)
            G = np.empty(hid, dtype=wo.dtype)
            gw[t] = 0.0  # zeroed here, by the thread that fills them (first touch of fresh memory, in parallel)
            gv[t] = 0.0
            gc[t] = 0.0
            for b in range(t * per, min(bsz, (t + 1) * per)):
                A[0] = c
                _activate(A[0], Hq[0], kind)
                r = 0
                for d in range(n - 1):
                    xd = xo[b, d]
                    if xd != 0.0:
                        ends[r] = d
                        r += 1
                        for j in range(hid):
                            A[r, j] = A[r - 1, j] + xd * wo[d, j]
                        _activate(A[r], Hq[r], kind)
                ends[r] = n - 1
                S[:] = 0.0
                for q in range(r, -1, -1):
                    lo = ends[q - 1] + 1 if q > 0 else 0
                    hi = ends[q]
                    if q < r:  # S = sum of dL/da over the later runs: what reaches w_{hi} through x_{hi}
                        xd = xo[b, hi]
                        for j in range(hid):
                            gw[t, hi, j] += xd * S[j]
                    G[:] = 0.0
                    for d in range(lo, hi + 1):
                        gd = g[b, d]
                        for j in range(hid):
                            gv[t, d, j] += gd * Hq[q, j]
                            G[j] += gd * vo[d, j]
                    if kind == 0:
                        for j in range(hid):
                            da = G[j] if A[q, j] > 0.0 else 0.0
                            gc[t, j] += da
                            S[j] += da
                    elif kind == 1 or kind == 4:
                        for j in range(hid):
                            da = G[j] * Hq[q, j] * (1.0 - Hq[q, j])
                            gc[t, j] += da
                            S[j] += da
                    else:
                        for j in range(hid):
                            da = G[j] * (1.0 - Hq[q, j] * Hq[q, j])
                            gc[t, j] += da
                            S[j] += da


def _threads() -> int:
    """Use as many numba threads as torch does (the trainer and the tests set torch's count)."""
    import torch

    wanted = torch.get_num_threads()
    n = max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    if torch.get_num_threads() != wanted:  # starting numba's OpenMP layer can reset the shared OpenMP count
        torch.set_num_threads(wanted)
    return n


def _total(parts):
    """The sum of the per-chunk partial gradients (the one chunk itself, without a copy, at one thread)."""
    return parts[0] if parts.shape[0] == 1 else parts.sum(0)


def _code(activation: str, dtype) -> int:
    """The kernels' activation code for tensors of `dtype` (see RATIONAL_CODES)."""
    import torch

    return (RATIONAL_CODES if dtype == torch.float32 and USE_RATIONAL else ACTIVATION_CODES)[activation]


def forward(xo, wo, uo, c, vo, activation: str):
    """Logits l (B, n) of the one-layer NADE pass (torch tensors in, torch tensor out; uo may be None)."""
    import torch

    out = torch.empty(xo.shape, dtype=wo.dtype)
    _threads()
    if uo is None and USE_RUNS:
        nade_forward_runs(xo.numpy(), wo.numpy(), c.numpy(), vo.numpy(), _code(activation, wo.dtype), out.numpy())
        return out
    u = uo if uo is not None else wo.new_zeros(1, 1)
    nade_forward(xo.numpy(), wo.numpy(), u.numpy(), uo is not None, c.numpy(), vo.numpy(),
                 _code(activation, wo.dtype), out.numpy())
    return out


def backward(xo, wo, uo, c, vo, activation: str, g, want_gx: bool):
    """(gx or None, gw, gu or None, gc, gv) for dL/dl = g (torch tensors)."""
    import torch

    t = _threads()
    n, hid = wo.shape
    has_u = uo is not None
    if not has_u and not want_gx and USE_RUNS:
        gw = torch.empty(t, n, hid, dtype=wo.dtype)  # zeroed by the kernel's threads
        gv = torch.empty(t, n, hid, dtype=wo.dtype)
        gc = torch.empty(t, hid, dtype=wo.dtype)
        nade_backward_runs(xo.numpy(), wo.numpy(), c.numpy(), vo.numpy(), _code(activation, wo.dtype), g.numpy(), t,
                           gw.numpy(), gc.numpy(), gv.numpy())
        return None, _total(gw), None, _total(gc), _total(gv)
    gw = torch.zeros(t, n, hid, dtype=wo.dtype)
    gv = torch.zeros(t, n, hid, dtype=wo.dtype)
    gu = torch.zeros(t, n, hid, dtype=wo.dtype) if has_u else wo.new_zeros(1, 1, 1)
    gc = torch.zeros(t, hid, dtype=wo.dtype)
    gx = torch.zeros(xo.shape, dtype=wo.dtype) if want_gx else wo.new_zeros(1, 1)
    u = uo if has_u else wo.new_zeros(1, 1)
    nade_backward(xo.numpy(), wo.numpy(), u.numpy(), has_u, c.numpy(), vo.numpy(), _code(activation, wo.dtype),
                  g.numpy(), t, gw.numpy(), gu.numpy(), gc.numpy(), gv.numpy(), gx.numpy(), want_gx)
    return (gx if want_gx else None, _total(gw), _total(gu) if has_u else None, _total(gc), _total(gv))
