"""Exact log partition function and exact moments of a binary RBM, by enumerating its smaller layer.

For an RBM with energy E(v, h) = -v.b - h.c - v W h (v in {0,1}^V, h in {0,1}^H), summing out the larger layer
in closed form leaves a sum over the 2^m states s of the smaller layer (m = min(V, H)):

    log Z = log sum_s exp( s.beta + sum_{i=1}^{n} softplus(alpha_i + U_i . s) )

with (s, beta, alpha, U) = (h, c, b, W) when the hidden layer is the smaller one and (v, b, c, W^T) otherwise
(softplus(a) = log(1 + e^a)). Everything is in nats; sums over states are accumulated in float64 with
log-sum-exp, in chunks so that memory stays bounded.

Two kernels compute the same number:

- `direct`: chunks of states, s @ U^T + alpha, softplus, all in float64 (exact to ~1e-12 relative);
- `split`: for large n 2^m (e.g. 784 x 25 = 2.6e10 terms) the states are split into high and low bits,
  s = (s_hi, s_lo), so that the pre-activation is A_hi[s_hi] + A_lo[s_lo] (two small tables, no matrix
  product per state), and each term 1 + e^a is written as e^{M_i} (e^{-M_i} + E_hi E_lo) with
  E = exp(A - max A) <= 1 precomputed, M_i >= max(0, max_s a_i). Per state and visible unit this costs one
  fused multiply-add; logs are taken once per group of g terms whose product provably stays in range
  (g M_max <= 80 in float32, else the float64 version of the same kernel). The per-state sums are float32
  (relative error <= n g 2^-24; about 1e-5 nats for 784 x 25), the sum over states float64.
  Where numba is installed the float32 case runs as one compiled pass per state (`_split_rows`, hi states in
  parallel): the g-term group products by halving the row, then their product in four float64 chains kept in
  range by exact powers of 2, so four logs per state instead of n / g; the trained 784 x 25 RBM of
  benchmarks/rbm_speed.py (g = 8) in 5.0 s on two AVX2 cores against 15.5 s for the torch passes over 4 MB blocks
  (memory-bound), 1.5e-6 nats apart (float32 rounding of the group products).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from genlearn.errors import IntractableError

try:  # optional accelerator (the `fast` extra)
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

#: largest smaller layer whose states exact log Z enumerates (2^25 = 33.5 million states)
EXACT_LOGZ_LIMIT = 25
#: n 2^m above which the split kernel is used
_SPLIT_THRESHOLD = 1 << 26


def check_exact_limit(m: int, what: str = "exact log Z", limit: int = EXACT_LOGZ_LIMIT) -> None:
    if m > limit:
        raise IntractableError(
            f"{what} enumerates the smaller layer of the RBM: 2^{m} = {2.0 ** m:.3g} states, but exact "
            f"enumeration is limited to {limit} units in the smaller layer. Use AIS instead "
            "(--partition ais, or log_partition(method='ais'))."
        )


def _orient(W: Tensor, b: Tensor, c: Tensor):
    """(U (n x m), alpha (n), beta (m)) with m the smaller layer: s is the enumerated layer."""
    V, H = W.shape
    if H <= V:
        return W, b, c  # enumerate h: pre-activations of v are b + W h
    return W.T, c, b  # enumerate v: pre-activations of h are c + W^T v


def _codes(m: int, start: int, stop: int, dtype) -> Tensor:
    k = torch.arange(start, stop, dtype=torch.int64)
    return ((k.unsqueeze(-1) >> torch.arange(m, dtype=torch.int64)) & 1).to(dtype)


@torch.no_grad()
def _direct(U: Tensor, alpha: Tensor, beta: Tensor, chunk_terms: int = 1 << 22) -> float:
    U, alpha, beta = U.double(), alpha.double(), beta.double()
    n, m = U.shape
    chunk = max(1, min(1 << m, chunk_terms // max(n, 1)))
    acc = torch.tensor(-math.inf, dtype=torch.float64)
    for start in range(0, 1 << m, chunk):
        s = _codes(m, start, min(start + chunk, 1 << m), torch.float64)
        val = s @ beta + torch.nn.functional.softplus(torch.addmm(alpha, s, U.T)).sum(-1)
        acc = torch.logaddexp(acc, torch.logsumexp(val, 0))
    return float(acc)


#: False keeps the torch passes of the split kernel (tests compare both)
COMPILED = True

#: the float64 products of `_split_rows` are rescaled by 2^+-600 when they leave [2^-600, 2^600] (exact: powers of 2)
_RESCALE = 600

if numba is not None:
    _TINY, _HUGE = 2.0 ** -_RESCALE, 2.0 ** _RESCALE

    @njit(fastmath={"nsz", "arcp", "contract", "afn", "reassoc"}, cache=True, inline="always")
    def _times(p, x, shift):  # pragma: no cover - compiled
        """(p x, shift) with p x brought back into [2^-600, 2^600] by powers of 2 counted in shift."""
        p *= x
        if p < _TINY:
            return p * _HUGE, shift - 1.0
        if p > _HUGE:
            return p * _TINY, shift + 1.0
        return p, shift

    @njit(fastmath={"nsz", "arcp", "contract", "afn", "reassoc"}, parallel=True, cache=True)
    def _split_rows(e_hi, e_lo, c0, const_lo, w, out_max, out_sum):  # pragma: no cover - compiled
        """For each hi state h: out_max[h] + log out_sum[h] = logsumexp over lo states l of
        const_lo[l] + sum_i log(c0_i + e_hi[h, i] e_lo[l, i]) (n_pad = w g entries per row, g a power of 2): the
        float32 factors multiplied by halving the row down to w group products (each in [e^-80, 2^g]), those
        multiplied in four float64 chains kept in range by powers of 2, four logs per state."""
        nh, n_pad = e_hi.shape
        nl = e_lo.shape[0]
        for h in prange(nh):
            eh = e_hi[h]
            t = np.empty(n_pad, np.float32)
            vals = np.empty(nl, np.float64)
            for lo in range(nl):
                el = e_lo[lo]
                for i in range(n_pad):
                    t[i] = c0[i] + eh[i] * el[i]
                width = n_pad
                while width > w:
                    half = width // 2
                    for i in range(half):
                        t[i] *= t[i + half]
                    width = half
                p0, p1, p2, p3, s0, s1, s2, s3 = 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0
                i = 0
                while i + 4 <= w:
                    p0, s0 = _times(p0, np.float64(t[i]), s0)
                    p1, s1 = _times(p1, np.float64(t[i + 1]), s1)
                    p2, s2 = _times(p2, np.float64(t[i + 2]), s2)
                    p3, s3 = _times(p3, np.float64(t[i + 3]), s3)
                    i += 4
                while i < w:
                    p0, s0 = _times(p0, np.float64(t[i]), s0)
                    i += 1
                vals[lo] = (np.log(p0) + np.log(p1) + np.log(p2) + np.log(p3)
                            + (s0 + s1 + s2 + s3) * (_RESCALE * 0.6931471805599453) + const_lo[lo])
            top = vals.max()
            acc = 0.0
            for lo in range(nl):
                acc += np.exp(vals[lo] - top)
            out_max[h] = top
            out_sum[h] = acc


def _split_compiled(e_hi: Tensor, e_lo: Tensor, c0: Tensor, const_hi: Tensor, const_lo: Tensor, g: int) -> float:
    """log sum_{h, l} exp(const_hi[h] + const_lo[l] + sum_i log(c0_i + e_hi[h, i] e_lo[l, i])) by `_split_rows`,
    numba's threads as many as torch's."""
    wanted = torch.get_num_threads()
    numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))
    if torch.get_num_threads() != wanted:  # (starting numba's threading layer can reset torch's count)
        torch.set_num_threads(wanted)
    nh = e_hi.shape[0]
    out_max, out_sum = np.empty(nh), np.empty(nh)
    _split_rows(e_hi.contiguous().numpy(), e_lo.contiguous().numpy(), c0.numpy(), const_lo.numpy(),
                e_hi.shape[1] // g, out_max, out_sum)
    return float(torch.logsumexp(torch.from_numpy(out_max) + const_hi + torch.from_numpy(out_sum).log(), 0))


@torch.no_grad()
def _split(U: Tensor, alpha: Tensor, beta: Tensor, block_terms: int = 1 << 20) -> float:
    U, alpha, beta = U.double(), alpha.double(), beta.double()
    n, m = U.shape
    n_lo = (m + 1) // 2
    n_hi = m - n_lo
    s_lo, s_hi = _codes(n_lo, 0, 1 << n_lo, torch.float64), _codes(n_hi, 0, 1 << n_hi, torch.float64)
    a_lo = s_lo @ U[:, :n_lo].T  # (2^n_lo, n)
    a_hi = torch.addmm(alpha, s_hi, U[:, n_lo:].T)  # (2^n_hi, n)
    u_lo, u_hi = a_lo.max(0).values, a_hi.max(0).values
    big_m = (u_lo + u_hi).clamp(min=0.0)  # M_i >= max(0, max_s a_i)
    m_max = float(big_m.max()) if n else 0.0
    if m_max <= 80.0:
        dtype, budget = torch.float32, 80.0
    else:
        dtype, budget = torch.float64, 700.0
    g = 1
    while g < 16 and 2 * g * max(m_max, 1.0) <= budget and 2 * g <= n:
        g *= 2
    n_pad = -(-n // g) * g
    e_lo = torch.zeros(1 << n_lo, n_pad, dtype=dtype)
    e_hi = torch.zeros(1 << n_hi, n_pad, dtype=dtype)
    c0 = torch.ones(n_pad, dtype=dtype)
    e_lo[:, :n] = torch.exp(a_lo - u_lo).to(dtype)
    e_hi[:, :n] = torch.exp(a_hi - u_hi + (u_hi + u_lo - big_m)).to(dtype)
    c0[:n] = torch.exp(-big_m).to(dtype)
    const_lo = s_lo @ beta[:n_lo]
    const_hi = s_hi @ beta[n_lo:] + big_m.sum()
    if COMPILED and numba is not None and dtype == torch.float32:
        return _split_compiled(e_hi, e_lo, c0, const_hi, const_lo, g)
    n_lo_states = 1 << n_lo
    lb = min(n_lo_states, max(1, block_terms // n_pad))
    hb = max(1, min(1 << n_hi, block_terms // (lb * n_pad)))
    buf = torch.empty(hb, lb, n_pad, dtype=dtype)
    halves = [torch.empty(hb, lb, n_pad >> (k + 1), dtype=dtype) for k in range(int(math.log2(g)))]
    acc = torch.tensor(-math.inf, dtype=torch.float64)
    for hs in range(0, 1 << n_hi, hb):
        he = min(hs + hb, 1 << n_hi)
        eh = e_hi[hs:he].unsqueeze(1)
        for ls in range(0, n_lo_states, lb):
            le = min(ls + lb, n_lo_states)
            t = buf[: he - hs, : le - ls]
            torch.addcmul(c0, eh, e_lo[ls:le].unsqueeze(0), out=t)
            for half in halves:  # products of column halves: group products of g terms
                w = t.shape[-1] // 2
                out = half[: he - hs, : le - ls]
                torch.mul(t[..., :w], t[..., w:], out=out)
                t = out
            val = t.log_().sum(-1, dtype=torch.float64)
            val += const_hi[hs:he, None] + const_lo[None, ls:le]
            acc = torch.logaddexp(acc, torch.logsumexp(val.reshape(-1), 0))
    return float(acc)


@torch.no_grad()
def rbm_log_partition(W: Tensor, b: Tensor, c: Tensor, kernel: str = "auto",
                      limit: int = EXACT_LOGZ_LIMIT) -> float:
    """Exact log Z (nats) of the RBM with weights W (V x H), visible biases b (V), hidden biases c (H).

    kernel: "direct" (float64 throughout), "split" (float32 per-state products, float64 over states) or
    "auto" (direct when n 2^m <= 2^26, else split)."""
    U, alpha, beta = _orient(W.detach(), b.detach(), c.detach())
    n, m = U.shape
    check_exact_limit(m, limit=limit)
    if kernel == "auto":
        kernel = "direct" if n * (1 << m) <= _SPLIT_THRESHOLD or m < 2 else "split"
    if kernel == "direct":
        return _direct(U, alpha, beta)
    if kernel == "split":
        if m < 2:
            return _direct(U, alpha, beta)
        return _split(U, alpha, beta)
    raise ValueError(f"unknown kernel {kernel!r}")


@torch.no_grad()
def rbm_exact_moments(W: Tensor, b: Tensor, c: Tensor, limit: int = 20, chunk_terms: int = 1 << 22):
    """Exact model moments by enumerating the smaller layer, float64:

        (log Z, E_P[v h^T] (V x H), E_P[v] (V), E_P[h] (H)),

    which make the exact gradient of log Z: d log Z/dW = E[v h^T], d/db = E[v], d/dc = E[h]."""
    W, b, c = W.detach().double(), b.detach().double(), c.detach().double()
    V, H = W.shape
    hidden_small = H <= V
    U, alpha, beta = (W, b, c) if hidden_small else (W.T, c, b)
    n, m = U.shape
    check_exact_limit(m, "the exact gradient", limit)
    chunk = max(1, min(1 << m, chunk_terms // max(n, 1)))
    # pass 1: log Z; pass 2: moments weighted by P(s) = exp(val - log Z)
    log_z = _direct(U, alpha, beta, chunk_terms)
    e_cross = torch.zeros(n, m, dtype=torch.float64)
    e_n = torch.zeros(n, dtype=torch.float64)
    e_m = torch.zeros(m, dtype=torch.float64)
    for start in range(0, 1 << m, chunk):
        s = _codes(m, start, min(start + chunk, 1 << m), torch.float64)
        pre = torch.addmm(alpha, s, U.T)
        p = torch.exp(s @ beta + torch.nn.functional.softplus(pre).sum(-1) - log_z)
        mean_other = torch.sigmoid(pre) * p[:, None]  # P(s) E[other | s]
        e_cross += mean_other.T @ s
        e_n += mean_other.sum(0)
        e_m += p @ s
    if hidden_small:
        return log_z, e_cross, e_n, e_m
    return log_z, e_cross.T, e_m, e_n


__all__ = ["EXACT_LOGZ_LIMIT", "check_exact_limit", "rbm_exact_moments", "rbm_log_partition"]
