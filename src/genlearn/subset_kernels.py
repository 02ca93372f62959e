"""Compiled (numba) products h M with a 0/1 left operand at any density and a matrix M used many times, by a table
of subset sums ("four Russians").

For h in {0,1}^(R x K) and M (K x V), cut the K rows of M into groups of GROUP = 4. Each group has 16 subset sums
S_g[c] = sum_{t : bit t of c} M_{4g+t} (c = 0..15), and row r of the product is

    (bias + h M)_r = bias + sum_g S_g[c_rg],   c_rg = h_{r,4g} + 2 h_{r,4g+1} + 4 h_{r,4g+2} + 8 h_{r,4g+3}

(K/4 table reads per output entry instead of K multiply-adds). `FixedSubsetProduct` builds the whole table once
(16 K V / 4 float32: 6.4 MB for 500 x 784), in pieces of CHUNK = 24 groups x 16 sums x LANES = 16 columns (24 KiB,
contiguous: a piece stays in the core's L1 cache while all R rows read it). The cost does not depend on the density
of h: this is the product for the sampled hidden states of an RBM in AIS (on at ~40-50%, where the sums of selected
rows of genlearn.binary_kernels lose to a dense GEMM), whose W is the same for all its temperatures. Building the
table takes about one dense product's time (0.7-0.9 ms for 500 x 784, one core), so it pays for a matrix used in many
products, not for one that changes every step (the CD/PCD step's W). On the 2-core AMD EPYC (AVX2),
100 x 500 @ 500 x 784: 0.66 ms against 0.89 ms for torch's float32 GEMM on one thread, 0.36 against 0.57 ms on two.

The results equal the dense product up to float32 summation order (each entry sums the same terms: four by four as
a tree, then across groups; tests/test_subset_kernels.py against float64). The lookups must run as LANES
accumulators in SIMD registers, which only LLVM's SLP vectoriser makes of them, and numba compiles with it off
(numba issue #8705): the lookup kernel is compiled with it on (`_compiled`), and with fastmath off, so that the
trees are kept as written. `speedup` times the product against the dense one once per machine, shape and thread
count. `available()` is False without numba: callers keep the dense products."""
from __future__ import annotations

import numpy as np

from genlearn.binary_kernels import _threads

try:  # optional accelerator (the `fast` extra)
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

#: rows of M per table group (16 subset sums)
GROUP = 4
#: columns per table entry (two AVX2 registers of float32)
LANES = 16
#: groups per table piece: CHUNK x 16 x LANES float32 = 24 KiB (the L1 cache); a multiple of the lookups' unroll (4)
CHUNK = 24


def available() -> bool:
    return numba is not None


if numba is not None:
    _ZERO = np.float32(0.0)
    _U0, _U1, _U2, _U3, _U4 = (np.uint64(i) for i in (0, 1, 2, 3, 4))
    (_J0, _J1, _J2, _J3, _J4, _J5, _J6, _J7, _J8, _J9, _J10, _J11, _J12, _J13, _J14, _J15) = (
        np.uint32(j) for j in range(LANES))

    @njit(inline="always")
    def _tree(T, k0, k1, k2, k3, j):  # pragma: no cover - compiled
        """T[k0 + j] + T[k1 + j] + T[k2 + j] + T[k3 + j] as a tree (two independent additions, then one)."""
        return (T[k0 + j] + T[k1 + j]) + (T[k2 + j] + T[k3 + j])

    @njit(inline="always")
    def _add_lookups(o, T, om, g0, ng, v0):  # pragma: no cover - compiled
        """o[j] += sum over the groups g = g0 .. g0 + ng - 1 of T[om[g] + v0 + j], j < LANES: LANES scalar
        accumulators (which the SLP vectoriser packs into two registers, seeded by the LANES stores to o), four
        groups per iteration."""
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _ZERO
        a8 = a9 = a10 = a11 = a12 = a13 = a14 = a15 = _ZERO
        g = g0
        end = g0 + ng
        while g < end:
            k0, k1, k2, k3 = om[g] + v0, om[g + _U1] + v0, om[g + _U2] + v0, om[g + _U3] + v0
            a0 += _tree(T, k0, k1, k2, k3, _J0)
            a1 += _tree(T, k0, k1, k2, k3, _J1)
            a2 += _tree(T, k0, k1, k2, k3, _J2)
            a3 += _tree(T, k0, k1, k2, k3, _J3)
            a4 += _tree(T, k0, k1, k2, k3, _J4)
            a5 += _tree(T, k0, k1, k2, k3, _J5)
            a6 += _tree(T, k0, k1, k2, k3, _J6)
            a7 += _tree(T, k0, k1, k2, k3, _J7)
            a8 += _tree(T, k0, k1, k2, k3, _J8)
            a9 += _tree(T, k0, k1, k2, k3, _J9)
            a10 += _tree(T, k0, k1, k2, k3, _J10)
            a11 += _tree(T, k0, k1, k2, k3, _J11)
            a12 += _tree(T, k0, k1, k2, k3, _J12)
            a13 += _tree(T, k0, k1, k2, k3, _J13)
            a14 += _tree(T, k0, k1, k2, k3, _J14)
            a15 += _tree(T, k0, k1, k2, k3, _J15)
            g += _U4
        o[0] += a0
        o[1] += a1
        o[2] += a2
        o[3] += a3
        o[4] += a4
        o[5] += a5
        o[6] += a6
        o[7] += a7
        o[8] += a8
        o[9] += a9
        o[10] += a10
        o[11] += a11
        o[12] += a12
        o[13] += a13
        o[14] += a14
        o[15] += a15

    @njit(parallel=True, cache=True)
    def _build_pieces(Mt, pieces):  # pragma: no cover - compiled
        """The whole table of M (K x V) once, piece by piece: pieces[q, blk] holds the 16 subset sums of the groups
        q CHUNK .. (q + 1) CHUNK - 1 over the columns of block blk (CHUNK 16 entries of LANES, contiguous; columns
        past V and rows past K count as 0)."""
        K, V = Mt.shape
        chunks, blocks = pieces.shape[0], pieces.shape[1]
        for blk in prange(blocks):
            v0 = blk * LANES
            w = min(LANES, V - v0)
            for q in range(chunks):
                P = pieces[q, blk]
                for i in range(CHUNK):
                    g = q * CHUNK + i
                    e = i * 16
                    for j in range(LANES):
                        P[e, j] = _ZERO
                    for t in range(GROUP):
                        row = GROUP * g + t
                        step = 1 << t
                        for c in range(step):
                            for j in range(LANES):
                                P[e + step + c, j] = P[e + c, j] + (Mt[row, v0 + j] if row < K and j < w else _ZERO)

    def _lookup_mm(offsets, pieces, bias, out, parts):  # pragma: no cover - compiled
        """out = bias + h M from the prebuilt table of M (`_build_pieces`) and the table offsets of h (R x G,
        `_offsets` with stride LANES): the column blocks split over `parts` threads; per block, each piece is read
        by all R rows while it is in the L1 cache (24 KiB, contiguous)."""
        R, V = out.shape
        G = offsets.shape[1]
        blocks = pieces.shape[1]
        parts = max(1, min(parts, blocks))
        for part in prange(parts):
            acc = np.empty(LANES, np.float32)
            for blk in range(part * blocks // parts, (part + 1) * blocks // parts):
                v0 = blk * LANES
                w = min(LANES, V - v0)
                for m in range(R):
                    for j in range(w):
                        out[m, v0 + j] = bias[v0 + j]
                for c0 in range(0, G, CHUNK):
                    T = pieces[c0 // CHUNK, blk].reshape(-1)
                    ng = np.uint64(min(G, c0 + CHUNK) - c0)
                    g0 = np.uint64(c0)
                    for m in range(R):
                        if w == LANES:
                            _add_lookups(out[m, v0:v0 + LANES], T, offsets[m], g0, ng, _U0)
                        else:  # the last, partial block
                            acc[:] = _ZERO
                            _add_lookups(acc, T, offsets[m], g0, ng, _U0)
                            for j in range(w):
                                out[m, v0 + j] += acc[j]

    @njit(parallel=True, cache=True)
    def _offsets(h, offsets, stride, check):  # pragma: no cover - compiled
        """offsets[r, g] = ((g % CHUNK) 16 + c_rg) stride, the start of table entry c_rg of group g, c_rg the 4-bit
        code of h[r, 4g:4g+4] (h R x K, 0/1; groups past K are 0), branch-free over the whole groups; returns the
        number of entries of h other than exactly 0 and 1 (with `check`; else 0: rows drawn by a comparison)."""
        R, K = h.shape
        G = offsets.shape[1]
        full = K // GROUP
        bad = 0
        for r in prange(R):
            hr, om = h[r], offsets[r]
            nonbinary = 0
            if check:
                for k in range(K):
                    x = hr[k]
                    nonbinary += (x != 0) & (x != 1)
            q = 0  # g % CHUNK
            for g in range(full):
                k = GROUP * g
                code = ((hr[k] != 0) * 1) | ((hr[k + 1] != 0) * 2) | ((hr[k + 2] != 0) * 4) | ((hr[k + 3] != 0) * 8)
                om[g] = (q * 16 + code) * stride
                q = q + 1 if q + 1 < CHUNK else 0
            for g in range(full, G):  # the last, partial group and the groups that pad G to a multiple of 4
                code = 0
                for t in range(GROUP):
                    k = GROUP * g + t
                    if k < K and hr[k] != 0:
                        code |= 1 << t
                om[g] = ((g % CHUNK) * 16 + code) * stride
            bad += nonbinary
        return bad


_COMPILED: list = []


def _compiled():
    """The lookup kernel, compiled once per process with LLVM's SLP vectoriser on (numba's default is off; the
    compiled code is cached on disk like the other kernels: ~5 s the first time on a machine)."""
    if not _COMPILED:
        from numba.core import config

        kernel = njit(parallel=True, cache=True)(_lookup_mm)
        if hasattr(kernel, "compile"):  # not under NUMBA_DISABLE_JIT (then the Python function runs, slowly)
            old = getattr(config, "SLP_VECTORIZE", None)  # numba >= 0.57; where absent, its default (on) is kept
            config.SLP_VECTORIZE = 1
            try:
                kernel.compile("(uint32[:, ::1], float32[:, :, :, ::1], float32[::1], float32[:, ::1], int64)")
            finally:
                if old is None:
                    del config.SLP_VECTORIZE
                else:
                    config.SLP_VECTORIZE = old
            kernel.disable_compile()  # another signature would compile without the vectoriser: an error instead
        _COMPILED.append(kernel)
    return _COMPILED[0]


def groups(K: int) -> int:
    """Table groups for K rows of M: ceil(K / 4), rounded up to a multiple of 4 (the lookups read four at a time)."""
    g = -(-K // GROUP)
    return -(-g // 4) * 4


def _usable(*tensors) -> bool:
    import torch

    return all(t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous() for t in tensors)


class FixedSubsetProduct:
    """bias + h M for 0/1 rows h (R x K) and a matrix M that stays the same over many products (AIS's sweeps): its
    whole table built once from Mt (K x V; 16 K V / 4 float32, 6.4 MB for 500 x 784), each product then only reads
    it. Mt must not change while this object is used (the table is a copy)."""

    def __init__(self, R: int, Mt):
        if not _usable(Mt) or Mt.dim() != 2:
            raise ValueError("subset_kernels.FixedSubsetProduct: Mt must be a contiguous 2-D float32 CPU tensor")
        self.R, (self.K, self.V) = R, Mt.shape
        self.offsets = np.zeros((R, groups(self.K)), np.uint32)
        size = -(-self.offsets.shape[1] // CHUNK) * -(-self.V // LANES) * CHUNK * 16 * LANES
        raw = np.empty(size * 4 + 64, np.uint8)
        shift = -raw.ctypes.data % 64
        self.pieces = raw[shift:shift + size * 4].view(np.float32).reshape(
            -(-self.offsets.shape[1] // CHUNK), -(-self.V // LANES), CHUNK * 16, LANES)
        _threads()
        _build_pieces(Mt.numpy(), self.pieces)

    def bound(self, h, bias, out, drawn: bool = False):
        """out = bias + h M as a call without arguments on these tensors (checked once; returns False, out
        untouched, where h has entries other than 0 and 1; `drawn`: h's rows are drawn by a comparison, 0/1 by
        construction, and not checked)."""
        if not _usable(h, bias, out):
            raise ValueError("subset_kernels.FixedSubsetProduct.bound: contiguous float32 CPU tensors")
        if h.shape != (self.R, self.K) or bias.shape != (self.V,) or out.shape != (self.R, self.V):
            raise ValueError(f"subset_kernels: h {self.R} x {self.K}, bias {self.V}, out {self.R} x {self.V}; got "
                             f"{tuple(h.shape)}, {tuple(bias.shape)}, {tuple(out.shape)}")
        kernel = _compiled()
        h_np, arrays = h.numpy(), (self.offsets, self.pieces, bias.numpy(), out.numpy())

        def run() -> bool:
            _threads()
            if _offsets(h_np, self.offsets, LANES, not drawn) != 0:
                return False
            kernel(*arrays, numba.get_num_threads())
            return True
        return run


def speedup(R: int, K: int, V: int) -> float:
    """time(dense product) / time(this product) for R x K 0/1 rows and a K x V matrix on this machine at torch's
    thread count (genlearn.products.addmm against FixedSubsetProduct at density 0.5; the table's time does not
    depend on the density), measured once per machine, shape and thread count (genlearn.timing_cache keeps it
    across processes, `_SPEEDUPS` within one); 0.0 without numba, with ENABLED off, or for a product of fewer than
    MIN_FLOPS = 2 R K V flops (not measured: call overhead, not arithmetic, sets the speed of those)."""
    if not (ENABLED and available()) or 2.0 * R * K * V < MIN_FLOPS:
        return 0.0
    import torch

    from genlearn import kernel_timing, products, timing_cache

    key = (R, K, V, torch.get_num_threads())
    if key in _SPEEDUPS:
        return _SPEEDUPS[key]

    def measure() -> float:
        g = torch.Generator().manual_seed(0)
        h = (torch.rand(R, K, generator=g) < 0.5).float()
        Mt, bias = torch.randn(K, V, generator=g), torch.zeros(V)
        out = torch.empty(R, V)
        lookups = FixedSubsetProduct(R, Mt).bound(h, bias, out)
        best = kernel_timing.best_seconds({"dense": lambda: products.addmm(bias, h, Mt, out=out), "table": lookups},
                                          seconds=0.3)
        return best["dense"] / best["table"]

    _SPEEDUPS[key] = float(timing_cache.remembered(__file__, f"table/dense {R}x{K}x{V} threads={key[-1]}", measure))
    return _SPEEDUPS[key]


_SPEEDUPS: dict = {}  # (R, K, V, threads) -> speedup


#: False: callers keep their other products (benchmarks time both ways in one run)
ENABLED = True
#: products smaller than this (2 R K V flops) keep the dense product, unmeasured
MIN_FLOPS = 2e7
#: the table's product is taken where the timing finds it at least this much faster than the dense one
MIN_SPEEDUP = 1.1

__all__ = ["CHUNK", "ENABLED", "FixedSubsetProduct", "GROUP", "LANES", "MIN_FLOPS", "MIN_SPEEDUP", "available",
           "groups", "speedup"]
