"""Compiled (numba) products with a 0/1 left operand: sums of selected rows, for the RBM's CD/PCD step and AIS.

For x in {0,1}^(R x V) and W (V x H), row r of x W is the sum of the rows of W at the active entries of x_r:

    (b + x W)_r = b + sum_{i : x_ri = 1} W_i              (nnz(x) H additions instead of 2 R V H flops)

and the statistics x^T P (P: R x H) are, per column i of x, the sum of the rows P_r with x_ri = 1. At the density
of binarized MNIST (13% ones) that is 7.7x less arithmetic than the dense product; whether it is also faster
depends on the CPU (a dense GEMM runs near its peak, a sum of gathered rows at the speed of loads): `Chooser`
times both once per process and shape, and takes the sums only below the density where they win.

`RowIndex` holds the active columns of a block of rows, indexed once (in parallel, branch-free) and used by every
product of those rows: `addmm` (x W) and `t_mm` (x^T P); `rows_addmm(x, W, b, out)` and `rows_t_mm(x, P, out)`
index and multiply in one call. Rows (columns of x for the statistics) run in parallel over numba's threads, as
many as torch uses; every inner loop runs over the H contiguous floats of a row, in SIMD lanes. `usable(x)` and
`faster_at(density, ...)` decide whether to take the sums. The results equal the dense products up to float32
summation order (tests/test_binary_kernels.py). The entries of x must be exactly 0 or 1 (sampled states, binarized
data): `RowIndex.add` counts the others, and callers keep the dense products then. `available()` is False without
numba: callers then keep the dense products."""
from __future__ import annotations

import os
import time

import numpy as np

try:  # optional accelerator (the `fast` extra)
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None


def available() -> bool:
    return numba is not None


if numba is not None:
    _FAST = {"reassoc", "contract", "nsz", "arcp"}

    @njit(fastmath=_FAST, cache=True)
    def _accumulate(o, M, which, t, e):  # pragma: no cover - compiled
        """o += sum of the rows M[which[t]], ..., M[which[e - 1]]: eight rows per pass over o (then two, then
        one), so that o is loaded and stored once per eight rows of M (1.19x faster than two per pass on AVX2 at
        13% density, 784 x 500; the rows of M come from the L3 cache at that size)."""
        H = o.shape[0]
        while t + 8 <= e:
            A = M[which[t]]
            B = M[which[t + 1]]
            C = M[which[t + 2]]
            D = M[which[t + 3]]
            E = M[which[t + 4]]
            F = M[which[t + 5]]
            G = M[which[t + 6]]
            K = M[which[t + 7]]
            for j in range(H):
                o[j] += ((A[j] + B[j]) + (C[j] + D[j])) + ((E[j] + F[j]) + (G[j] + K[j]))
            t += 8
        while t + 2 <= e:
            A = M[which[t]]
            B = M[which[t + 1]]
            for j in range(H):
                o[j] += A[j] + B[j]
            t += 2
        if t < e:
            A = M[which[t]]
            for j in range(H):
                o[j] += A[j]

    @njit(parallel=True, cache=True)
    def _count_non_binary(flat):  # pragma: no cover - compiled
        """The number of entries of a 1-D array other than exactly 0 and 1 (NaN included), in one parallel pass."""
        count = 0
        for i in prange(flat.shape[0]):
            v = flat[i]
            count += 0 if (v == 0 or v == 1) else 1
        return count

    @njit(parallel=True, cache=True)
    def _count_outside_unit(flat):  # pragma: no cover - compiled
        """The number of entries of a 1-D array outside [0, 1] (NaN included), in one parallel pass."""
        count = 0
        for i in prange(flat.shape[0]):
            v = flat[i]
            count += 0 if (v >= 0 and v <= 1) else 1
        return count

    @njit(fastmath=_FAST, cache=True, inline="always")
    def _index_row(xr, indices, k, check):  # pragma: no cover - compiled
        """The active columns of the row xr written to indices[k:end], in increasing order, branch-free (every
        column is written, the cursor moves on the active ones); returns (end, the number of entries other than 0
        and 1, counted with `check`, else 0)."""
        for i in range(xr.shape[0]):
            indices[k] = i
            k += xr[i] != 0
        nonbinary = 0
        if check:
            for i in range(xr.shape[0]):
                nonbinary += (xr[i] != 0) & (xr[i] != 1)
        return k, nonbinary

    @njit(parallel=True, cache=True)
    def _unpack_rows(packed, rows, out):  # pragma: no cover - compiled
        """out[r] = the bits of packed[rows[r]] (numpy.packbits' order: the first value in a byte's highest bit) as
        0/1 floats, out's width n of them; rows in parallel."""
        n = out.shape[1]
        full = n // 8
        for r in prange(rows.shape[0]):
            src, o = packed[rows[r]], out[r]
            for q in range(full):
                byte = src[q]
                for bit in range(8):
                    o[8 * q + bit] = (byte >> (7 - bit)) & 1
            for i in range(8 * full, n):
                o[i] = (src[i // 8] >> (7 - i % 8)) & 1

    @njit(parallel=True, fastmath=_FAST, cache=True)
    def _index_rows(x, ends, indices, r0, check):  # pragma: no cover - compiled
        """Index the rows of x (R x V) as rows r0.. of a slotted index: the active columns of index row q are
        indices[q V:ends[q]], in increasing order. Rows in parallel. Returns the number of entries other than 0 and
        1 (with `check`; else 0: for rows known to be 0/1, drawn by a comparison)."""
        R, V = x.shape
        bad = 0
        for r in prange(R):
            end, nonbinary = _index_row(x[r], indices, (r0 + r) * V, check)
            ends[r0 + r] = end
            bad += nonbinary
        return bad

    @njit(parallel=True, fastmath=_FAST, cache=True)
    def _csr_addmm(ends, indices, r0, W, b, out):  # pragma: no cover - compiled
        """out[r] = b + sum of the rows of W at the active columns of index row r0 + r (slots of x's width V)."""
        R, H = out.shape
        V = W.shape[0]
        for r in prange(R):
            o = out[r]
            for j in range(H):
                o[j] = b[j]
            _accumulate(o, W, indices, (r0 + r) * V, ends[r0 + r])

    @njit(fastmath=_FAST, cache=True, inline="always")
    def _column_lists(ends, indices, lo, hi, V, start, rows, base):  # pragma: no cover - compiled
        """The active rows of each column among the indexed rows lo..hi-1 (a counting sort of the index): column
        i's rows are rows[start[i]:start[i + 1]], in increasing order, from rows[base] on."""
        for i in range(V + 1):
            start[i] = 0
        for r in range(lo, hi):
            for k in range(r * V, ends[r]):
                start[indices[k] + 1] += 1
        start[0] = base
        for i in range(V):
            start[i + 1] += start[i]
        fill = start[:V].copy()
        for r in range(lo, hi):
            for k in range(r * V, ends[r]):
                i = indices[k]
                rows[fill[i]] = r
                fill[i] += 1

    @njit(parallel=True, fastmath=_FAST, cache=True)
    def _csr_t_mm(ends, indices, P, out, start, rows):  # pragma: no cover - compiled
        """out = x^T P for the indexed rows x (R x V) and P (R x H): per column i of x, the sum of the rows P_r with
        x_ri = 1, from the active rows of each column (`_column_lists`)."""
        V, H = out.shape
        _column_lists(ends, indices, 0, P.shape[0], V, start, rows, 0)
        for i in prange(V):
            o = out[i]
            for j in range(H):
                o[j] = 0.0
            _accumulate(o, P, rows, start[i], start[i + 1])


class RowIndex:
    """The active columns of up to `capacity` 0/1 rows of length V (int32, row q in its own slot indices[q V:ends[q]],
    so that rows are indexed in parallel), kept between calls so that one index serves several products of the same
    rows (x W, and x^T P for the statistics). Rows are indexed with `add` (or drawn and indexed with `sample`);
    products take a range of indexed rows."""

    def __init__(self, capacity: int, V: int):
        self.capacity, self.V = capacity, V
        self.ends = np.arange(capacity, dtype=np.int64) * V  # empty rows
        self.indices = np.empty(max(capacity * V, 1), np.int32)  # column numbers < V
        self.start = np.empty(V + 1, np.int64)
        self.rows = np.empty(max(capacity * V, 1), np.int32)  # row numbers < capacity

    def _room(self, r0: int, R: int, V: int) -> None:
        if V != self.V or r0 < 0 or r0 + R > self.capacity:
            raise ValueError(f"binary_kernels.RowIndex: rows {r0}..{r0 + R} of length {V} do not fit "
                             f"{self.capacity} rows of length {self.V}")

    def add(self, x, r0: int = 0) -> bool:
        """Index the rows of x (R x V, contiguous float CPU) as rows r0.. of the index; whether all were 0/1."""
        _check(x)
        R, V = x.shape
        self._room(r0, R, V)
        _threads()
        return _index_rows(x.numpy(), self.ends, self.indices, r0, True) == 0

    def sample(self, u, p, out, r0: int = 0):
        """out = (u < p) as 0/1 (in out's dtype; u, p, out: R x V, rows of contiguous entries), indexed as rows
        r0..; returns out."""
        import torch

        _check(u, p, out, rows=True)
        R, V = out.shape
        self._room(r0, R, V)
        torch.lt(u, p, out=out)  # a vectorised pass, then the index (one fused pass measured 2.5x slower)
        _threads()
        _index_rows(out.numpy(), self.ends, self.indices, r0, False)
        return out

    def count(self, lo: int, hi: int) -> int:
        """The number of ones among the indexed rows lo..hi-1."""
        return int(self.ends[lo:hi].sum()) - self.V * (lo + hi - 1) * (hi - lo) // 2

    def density(self, lo: int, hi: int) -> float:
        """The fraction of ones among the indexed rows lo..hi-1."""
        return self.count(lo, hi) / max(1, (hi - lo) * self.V)

    def addmm(self, lo: int, hi: int, W, b, out):
        """out = b + x[lo:hi] W for the indexed rows (W: V x H, b: H, out: (hi - lo) x H); returns out."""
        _check(W, b, out)
        _threads()
        _csr_addmm(self.ends, self.indices, lo, W.numpy(), b.numpy(), out.numpy())
        return out

    def bound_addmm(self, lo: int, hi: int, W, b, out):
        """`addmm(lo, hi, W, b, out)` as a call without arguments, the operands checked once (for a loop that runs
        it thousands of times on the same buffers: AIS's sweeps)."""
        _check(W, b, out)
        if out.shape != (hi - lo, W.shape[1]) or W.shape[0] != self.V:
            raise ValueError("binary_kernels.RowIndex.bound_addmm: out must be (hi - lo) x H for W of V x H")
        arrays = (self.ends, self.indices, lo, W.numpy(), b.numpy(), out.numpy())

        def run():
            _threads()
            _csr_addmm(*arrays)
        return run

    def bound_sample(self, u, p, out, r0: int = 0):
        """`sample(u, p, out, r0)` as a call without arguments, the operands checked once."""
        import torch

        _check(u, p, out, rows=True)
        R, V = out.shape
        self._room(r0, R, V)
        arrays = (out.numpy(), self.ends, self.indices, r0, False)

        def run():
            torch.lt(u, p, out=out)
            _threads()
            _index_rows(*arrays)
        return run

    def t_mm(self, P, out):
        """out = x^T P for the first P.shape[0] indexed rows x (P: R x H, out: V x H); returns out."""
        _check(P, out)
        _threads()
        _csr_t_mm(self.ends, self.indices, P.numpy(), out.numpy(), self.start, self.rows)
        return out


_THREADS = [None]  # (count, Python thread) numba's thread count was last set for (numba's setting is per thread)


def _threads() -> None:
    """As many numba threads as torch uses (starting numba's threading layer can reset torch's count); numba's
    count is set only when torch's changed since the last call (setting it costs ~5-10 us)."""
    import threading

    import torch

    wanted = torch.get_num_threads()
    key = (wanted, threading.get_ident())
    if key == _THREADS[0]:
        return
    numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    _THREADS[0] = key


def _check(*tensors, rows: bool = False) -> None:
    """CPU tensors of one dtype, contiguous (rows=True: each row contiguous, rows at any stride)."""
    for t in tensors:
        dense = t.stride(-1) == 1 if rows else t.is_contiguous()
        if t.device.type != "cpu" or not dense or t.dtype != tensors[0].dtype:
            raise ValueError("binary_kernels: contiguous CPU tensors of one dtype")


_INDEXES: dict = {}


_COUNTABLE = ("float32", "float64", "uint8", "int32", "int64")


#: below this many entries the data checks stay with torch (microseconds there): loading the compiled count costs
#: ~40 ms once per process, and a Ctrl-C that lands while numba loads a kernel at a run's start is swallowed by its
#: ctypes callback ("Exception ignored ... KeyboardInterrupt"); small runs then load no kernel before training
COMPILED_COUNT_MIN = 1 << 18


def count_non_binary(x, min_entries: int = COMPILED_COUNT_MIN) -> int | None:
    """The number of entries of x other than exactly 0 and 1 (NaN and inf included), by one compiled parallel pass
    (22 ms for 60,000 x 784 float32 on one core, against ~0.2 s for torch's comparisons and ~0.3 s for its
    isfinite, each writing a boolean tensor of the data's size); None where the kernel does not take x (numba
    missing, fewer than `min_entries` entries, not a contiguous CPU tensor of float32/float64/uint8/int32/int64):
    the caller then uses torch."""
    if not available() or x.device.type != "cpu" or not x.is_contiguous() or x.numel() == 0 \
            or x.numel() < min_entries or str(x.dtype).removeprefix("torch.") not in _COUNTABLE:
        return None
    _threads()
    return int(_count_non_binary(x.detach().reshape(-1).numpy()))


def count_outside_unit(x: np.ndarray) -> int:
    """The number of entries of the numpy array x outside [0, 1] (NaN and inf included): one compiled parallel pass
    for a large contiguous float array (as fast as the np.sum it replaces in a finiteness check), else numpy's
    comparisons."""
    if available() and x.size >= COMPILED_COUNT_MIN and x.dtype in (np.float32, np.float64) \
            and x.flags.c_contiguous:
        _threads()
        return int(_count_outside_unit(x.reshape(-1)))
    return int(x.size - np.count_nonzero((x >= 0) & (x <= 1)))


def unpack_rows(packed: np.ndarray, rows, n: int, dtype):
    """The rows `rows` (a 1-D int64 tensor) of bit-packed 0/1 rows (uint8, numpy.packbits along axis 1) as an
    (len(rows), n) float tensor of `dtype`, by one compiled parallel pass (a minibatch of 100 MNIST rows in ~20 us,
    against ~40 us for numpy.unpackbits and a conversion, ~150 us between the steps of a training loop); None
    where the kernel does not take them (numba missing, a dtype other than float32 or float64): the caller then
    unpacks with numpy."""
    import torch

    if not available() or dtype not in (torch.float32, torch.float64) or packed.dtype != np.uint8:
        return None
    out = torch.empty(rows.shape[0], n, dtype=dtype)
    _threads()
    _unpack_rows(packed, rows.numpy(), out.numpy())
    return out


def _index_for(R: int, V: int) -> RowIndex:
    """A RowIndex for R rows of length V, kept per shape (the products below index their operand every call)."""
    key = (R, V)
    if key not in _INDEXES:
        if len(_INDEXES) > 8:
            _INDEXES.clear()
        _INDEXES[key] = RowIndex(R, V)
    return _INDEXES[key]


def indexed(x):
    """x (R x V, a contiguous float32 or float64 CPU tensor) indexed in a RowIndex kept per shape, for products of
    x with several matrices (RowIndex.addmm, RowIndex.t_mm, in x's dtype); None where the sums are disabled
    (ENABLED, GENLEARN_BINARY_SUMS), numba is missing, or x has entries other than exactly 0 and 1. The index is
    shared by every caller of this shape: use it before indexing another x of the same shape."""
    import torch

    if not (ENABLED and available() and _allowed()) or x.dtype not in (torch.float32, torch.float64) \
            or x.device.type != "cpu" or x.dim() != 2 or x.shape[0] == 0 or not x.is_contiguous():
        return None
    index = _index_for(*x.shape)
    return index if index.add(x.detach()) else None


def rows_addmm(x, W, b, out):
    """out = b + x W for 0/1 rows x (R x V), W (V x H), b (H), out (R x H): sums of the rows of W; returns out."""
    _check(x, W, b, out)
    index = _index_for(*x.shape)
    index.add(x)
    return index.addmm(0, x.shape[0], W, b, out)


def rows_t_mm(x, P, out):
    """out = x^T P for 0/1 rows x (R x V), P (R x H), out (V x H): per column i, the sum of the rows P_r with
    x_ri = 1; returns out."""
    _check(x, P, out)
    index = _index_for(*x.shape)
    index.add(x)
    return index.t_mm(P, out)


#: False keeps the dense products everywhere (benchmarks time both ways in one run); so does the environment
#: variable GENLEARN_BINARY_SUMS=off. The choice rests on a timing, so two processes may sum a product whose density
#: is near the crossover in different orders (float32 rounding apart); "off" makes runs bit-reproducible across
#: processes, as in a resumed run's new process.
ENABLED = True


def _allowed() -> bool:
    """GENLEARN_BINARY_SUMS: "auto" (default, by the timing) or "off" (dense products only)."""
    value = os.environ.get("GENLEARN_BINARY_SUMS", "auto").strip().lower() or "auto"
    if value not in ("auto", "off"):
        from genlearn.errors import ConfigError

        raise ConfigError(f"GENLEARN_BINARY_SUMS must be auto or off, got {value!r}")
    return value == "auto"


def usable(x) -> bool:
    """Whether the kernels may take x: enabled, numba present, a contiguous 2-D float32 CPU tensor with rows."""
    import torch

    return (ENABLED and available() and _allowed() and x.dtype == torch.float32 and x.device.type == "cpu"
            and x.is_contiguous() and x.dim() == 2 and x.shape[0] > 0)


def faster_at(density: float, kind: str, R: int, V: int, H: int) -> bool:
    """Whether the sums of selected rows beat the dense product here at this density of the 0/1 operand (R x V)
    with a (V x H) matrix (kind "rows") or for its statistics x^T P, P (R x H) (kind "stats"): below the crossover
    CHOOSER timed for this shape."""
    crossover = CHOOSER.crossover(kind, R, V, H)
    return crossover > 0.0 and density < crossover


class Chooser:
    """Whether the sums of selected rows beat the dense product for a shape, by the density of the 0/1 operand.

    `crossover(kind, R, V, H)` times, once per machine, thread count and shape (genlearn.timing_cache keeps the
    figure across processes), the dense product (torch / oneDNN
    through genlearn.products) against the sums on random 0/1 rows at the densities DENSITIES, from the lowest up
    to the first where the sums lose, and returns the density below which the sums were faster (0.0: never; linear
    interpolation between the measured points).
    kind "rows": b + x W with x (R x V); "stats": x^T P with x (R x V), P (R x H)."""

    DENSITIES = (0.02, 0.06, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)

    def __init__(self):
        self._cache: dict = {}

    def crossover(self, kind: str, R: int, V: int, H: int) -> float:
        import torch

        key = (kind, R, V, H, torch.get_num_threads())
        if key not in self._cache:
            if not available():
                self._cache[key] = 0.0
            else:  # remembered on this machine across processes: ~0.05-0.1 s less per shape at a run's start
                from genlearn import timing_cache

                self._cache[key] = timing_cache.remembered(
                    __file__, f"crossover {kind} {R}x{V}x{H} threads={key[-1]}", lambda: self._measure(kind, R, V, H))
        return self._cache[key]

    @staticmethod
    def _measure(kind: str, R: int, V: int, H: int) -> float:
        import torch

        from genlearn import products

        g = torch.Generator().manual_seed(0)
        W = torch.randn(V, H, generator=g)
        b = torch.zeros(H)
        P = torch.randn(R, H, generator=g)
        ratios = []  # time(sums) / time(dense) at each density
        for d in Chooser.DENSITIES:
            x = (torch.rand(R, V, generator=g) < d).float()
            if kind == "rows":
                out = torch.empty(R, H)
                dense, sums = (lambda: products.addmm(b, x, W, out=out)), (lambda: rows_addmm(x, W, b, out))
            else:
                out = torch.empty(V, H)
                dense, sums = (lambda: products.mm(x.T, P, out=out)), (lambda: rows_t_mm(x, P, out))
            ratios.append(_best_time(sums) / _best_time(dense))
            if ratios[-1] >= 1.0:  # the sums only lose more at higher densities: the crossover is found
                break
        below = [i for i, r in enumerate(ratios) if r < 1.0]
        if not below or below[0] != 0:
            return 0.0
        last = below[-1] if below == list(range(len(below))) else min(set(range(len(ratios))) - set(below)) - 1
        if last == len(ratios) - 1:
            return Chooser.DENSITIES[-1]
        d0, d1, r0, r1 = Chooser.DENSITIES[last], Chooser.DENSITIES[last + 1], ratios[last], ratios[last + 1]
        return d0 + (1.0 - r0) * (d1 - d0) / (r1 - r0)


def _best_time(f, rounds: int = 3, reps: int = 1) -> float:
    f()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


CHOOSER = Chooser()

__all__ = ["CHOOSER", "Chooser", "RowIndex", "available", "count_non_binary", "faster_at", "indexed",
           "rows_addmm", "rows_t_mm", "unpack_rows", "usable"]
