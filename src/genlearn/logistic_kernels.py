"""Compiled (numba) logistic functions of float32 matrices, in SIMD lanes with an exp of their own (numba has no
vectorised exp): sum_i softplus(l_i) over each row, the decoder term of a VAE's importance-sampling and AIS
evaluations and the RBM's free energies, in one pass over the logits; and sigmoid in place, the hidden units of
a tanh decoder run as sigmoids (genlearn.models.vae.MLP.sigmoid_features).

    softplus(l) = max(l, 0) + log(1 + e^-|l|),   sum_{i in g} log(1 + e^-|l_i|) = log prod_{i in g} (1 + e^-|l_i|)

over groups g of up to GROUP = 1000 consecutive entries, the product in float64: a factor is in [1, 2], so a
group's product is at most 2^1000, finite in float64 (max ~2^1024); one log per group (a scalar call, the one step
outside the SIMD lanes: one per row of 784 entries). A row of at most GROUP entries is one product loop, which LLVM
vectorises (as a float32 product over groups of 112, its earlier form, the nested loop ran 2.2x slower on one
AVX-512 core and 2.6x on AVX2: 0.74 against 0.35 ns per entry); `row_sums` first multiplies the row's four
quarters entry by entry in float32 (products <= 16), so that the float64 loop runs over a quarter of the entries.
e^x for x = -|l| is computed in the SIMD lanes
without a library call: x is clipped to [-17, 0] (for x < -17, e^x < 2^-24 and 1 + e^x is 1 in float32, so the
clip changes nothing), x = y - k ln 2 with k = round(-x / ln 2) in [0, 25] and |y| <= ln(2)/2 (Cody-Waite, ln 2
in two parts), e^y by a polynomial of degree 6 (fitted in relative error: 1.9e-9, below float32's rounding),
2^-k by its float32 bits (127 - k) << 23. One thread runs the sums at ~0.36 ns per entry on the AVX-512 Xeon
(0.28 ns in AVX2 code there; 0.54 ns on the AVX2 EPYC before the float64 products), against ~2.3 ns for
`numerics.softplus_row_sums_` (five torch passes, exp by SLEEF), and the sigmoid at ~0.6 ns
against ~0.9 ns for torch.sigmoid_. Where torch's sigmoid is as fast (an AVX-512 Xeon: 0.37 ns), `sigmoid_` keeps
it: `compiled_sigmoid_in_use` decides by a timing once per process (GENLEARN_ELEMENTWISE forces a choice).

Accuracy: about 2 ulps per factor, the order of float32's own softplus sum; the sigmoid within 3.5e-7 relative
(tests/test_logistic_kernels.py, float64 oracles). NaN logits give a NaN sum, +inf gives +inf. `available()` is
False without numba: callers keep the torch passes."""
from __future__ import annotations

import math

import numpy as np

from genlearn.binary_kernels import _threads

try:  # optional accelerator (the `fast` extra)
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

#: below -CLIP, 1 + e^x rounds to 1 in float32 (e^-17 = 4.1e-8 < 2^-24)
CLIP = 17.0
#: entries per float64 product of factors 1 + e^-|l| in [1, 2]: at most 2^GROUP < 2^1024, the float64 range
GROUP = 1000
#: rows per parallel task of the row kernels (each task allocates its scratch rows once)
ROW_GROUP = 64


def available() -> bool:
    return numba is not None


if numba is not None:
    _FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}  # no "nnan"/"ninf": NaN and inf logits stay as they are
    _LOG2E = np.float32(1.4426950408889634)
    _LN2_HI = np.float32(0.693359375)  # ln 2 = _LN2_HI + _LN2_LO, _LN2_HI with few mantissa bits (k * it is exact)
    _LN2_LO = np.float32(-2.12194440e-4)
    _ONE, _ZERO, _HALF = np.float32(1.0), np.float32(0.0), np.float32(0.5)
    # e^y ~ sum_j _C[j] y^j on |y| <= ln(2)/2: least squares on 64 Chebyshev nodes in relative error (max 1.9e-9
    # relative in float64, against 1.6e-7 for the Taylor coefficients 1/j!)
    _C1, _C2 = np.float32(1.0000000361258996), np.float32(0.4999999149303735)
    _C3, _C4 = np.float32(0.16666420832116133), np.float32(0.04166835803283065)
    _C5, _C6 = np.float32(0.008374771520369192), np.float32(0.0013829420609116783)
    _NEG_CLIP = np.float32(-CLIP)

    @njit(fastmath=_FAST, cache=True, inline="always")
    def _exp_parts(x):  # pragma: no cover - compiled
        """e^x = mantissa * 2^-k for x <= 0 (clipped by the caller): (mantissa, the float32 bits of 2^-k)."""
        k = np.floor(-x * _LOG2E + _HALF)
        y = x + k * _LN2_HI + k * _LN2_LO
        return (_ONE + y * (_C1 + y * (_C2 + y * (_C3 + y * (_C4 + y * (_C5 + y * _C6))))),
                (np.int32(127) - np.int32(k)) << 23)

    @njit(fastmath=_FAST, cache=True)
    def _log_one_plus(mantissa, scale, n):  # pragma: no cover - compiled
        """sum_i log(1 + mantissa_i scale_i) (each factor in [1, 2]) as the log of float64 products over groups of
        GROUP entries: a row of at most GROUP entries in one loop (vectorised), longer rows group by group (a nested
        loop that is not)."""
        if n <= GROUP:
            p = 1.0
            for i in range(n):
                p *= np.float64(_ONE + mantissa[i] * scale[i])
            return np.float32(np.log(p))
        logs = 0.0
        for g0 in range(0, n, GROUP):
            p = 1.0
            for i in range(g0, min(g0 + GROUP, n)):
                p *= np.float64(_ONE + mantissa[i] * scale[i])
            logs += np.log(p)
        return np.float32(logs)

    @njit(fastmath=_FAST, cache=True)
    def _log_of_factors(factors, n):  # pragma: no cover - compiled
        """sum_i log f_i for factors f_i in [1, 2] (float32, n entries): for n <= GROUP the log of one float64
        product, after multiplying the four quarters of the row entry by entry in float32 (products <= 16, so that
        the float64 loop runs over a quarter of the entries: 13% faster than `_log_one_plus` on one core); longer
        rows group by group."""
        if n > GROUP:
            logs = 0.0
            for g0 in range(0, n, GROUP):
                p = 1.0
                for i in range(g0, min(g0 + GROUP, n)):
                    p *= np.float64(factors[i])
                logs += np.log(p)
            return np.float32(logs)
        m = n // 4
        p = 1.0
        for j in range(m):
            p *= np.float64((factors[j] * factors[j + m]) * (factors[j + 2 * m] * factors[j + 3 * m]))
        for i in range(4 * m, n):
            p *= np.float64(factors[i])
        return np.float32(np.log(p))

    @njit(fastmath=_FAST, cache=True, inline="always")
    def _softplus_sum(row, bias, mantissa, bits):  # pragma: no cover - compiled
        """sum_i softplus(row[i] + bias[i]), with scratch rows mantissa (float32) and bits (int32) of row's length."""
        n = row.shape[0]
        positive = _ZERO
        for i in range(n):
            a = row[i] + bias[i]
            positive += _ZERO if a < _ZERO else a  # NaN passes (a < 0 is False), -inf adds 0
            x = -abs(a)
            mantissa[i], bits[i] = _exp_parts(x if x > _NEG_CLIP else _NEG_CLIP)
        scale = bits.view(np.float32)  # 2^-k
        for i in range(n):
            mantissa[i] = _ONE + mantissa[i] * scale[i]  # the factor 1 + e^-|a|, in [1, 2]
        return positive + _log_of_factors(mantissa, n)

    @njit(fastmath=_FAST, cache=True, parallel=True)
    def _row_sums(logits, bias, out):  # pragma: no cover - compiled
        """out[r] = sum_i softplus(logits[r, i] + bias[i]) (bias: n entries, zeros for none). Rows in parallel
        groups of ROW_GROUP, each group with its scratch rows allocated once (per row: ~16% of a 512 x 784 block on
        one core)."""
        rows, n = logits.shape
        for c in prange((rows + ROW_GROUP - 1) // ROW_GROUP):
            mantissa = np.empty(n, np.float32)
            bits = np.empty(n, np.int32)
            for r in range(c * ROW_GROUP, min(rows, (c + 1) * ROW_GROUP)):
                out[r] = _softplus_sum(logits[r], bias, mantissa, bits)

    _EXP_CLIP = np.float32(87.0)  # e^87 < 2^126: 2^k below stays a normal float32

    @njit(fastmath=_FAST, cache=True, inline="always")
    def _sigmoid_row(row, out, mantissa, bits):  # pragma: no cover - compiled
        """out = sigmoid(row) = 1 / (1 + e^-row) (out may be row), with scratch rows mantissa (float32) and bits
        (int32) of row's length."""
        n = row.shape[0]
        for i in range(n):
            t = -row[i]
            t = _EXP_CLIP if t > _EXP_CLIP else t  # NaN stays NaN (the comparisons are False)
            t = -_EXP_CLIP if t < -_EXP_CLIP else t
            k = np.floor(t * _LOG2E + _HALF)
            y = t - k * _LN2_HI - k * _LN2_LO
            mantissa[i] = _ONE + y * (_C1 + y * (_C2 + y * (_C3 + y * (_C4 + y * (_C5 + y * _C6)))))
            bits[i] = (np.int32(127) + np.int32(k)) << 23
        scale = bits.view(np.float32)  # 2^k
        for i in range(n):
            out[i] = _ONE / (_ONE + mantissa[i] * scale[i])

    @njit(fastmath=_FAST, cache=True, parallel=True)
    def _sigmoid_rows(a):  # pragma: no cover - compiled
        rows, n = a.shape
        for r in prange(rows):
            row = a[r]
            _sigmoid_row(row, row, np.empty(n, np.float32), np.empty(n, np.int32))

    _TANH_CLIP = np.float32(-40.0)  # e^-40 < 2^-57: tanh is 1 to float32 beyond |a| = 20

    @njit(fastmath=_FAST, cache=True, parallel=True)
    def _tanh_rows(a):  # pragma: no cover - compiled
        """a <- tanh(a) in place, rows in parallel groups of ROW_GROUP (scratch allocated once per group):
        tanh(a) = sign(a) (-m) / (2 + m) with m = expm1(-2|a|), expm1(x) = 2^-k (e^y - 1) + (2^-k - 1) for
        x = y - k ln 2 (k = 0, |x| <= ln(2)/2: the polynomial e^y - 1 = y (C1 + ...) alone, exact in relative
        terms near 0)."""
        rows, n = a.shape
        for c in prange((rows + ROW_GROUP - 1) // ROW_GROUP):
            poly = np.empty(n, np.float32)
            bits = np.empty(n, np.int32)
            for r in range(c * ROW_GROUP, min(rows, (c + 1) * ROW_GROUP)):
                row = a[r]
                for i in range(n):
                    x = np.float32(-2.0) * abs(row[i])
                    x = _TANH_CLIP if x < _TANH_CLIP else x  # NaN stays NaN (the comparison is False)
                    k = np.floor(-x * _LOG2E + _HALF)
                    y = x + k * _LN2_HI + k * _LN2_LO
                    poly[i] = y * (_C1 + y * (_C2 + y * (_C3 + y * (_C4 + y * (_C5 + y * _C6)))))  # e^y - 1
                    bits[i] = (np.int32(127) - np.int32(k)) << 23
                scale = bits.view(np.float32)  # 2^-k
                for i in range(n):
                    m = scale[i] * poly[i] + (scale[i] - _ONE)  # expm1(-2|a|), in (-1, 0]
                    row[i] = math.copysign(abs(m) / (np.float32(2.0) + m), row[i])  # tanh |a|, a's sign

    @njit(fastmath=_FAST, cache=True, parallel=True)
    def _bernoulli_rows(logits, x, first, scale, out):  # pragma: no cover - compiled
        """Row r of logits against data row x[(first + r) % len(x)]: out[r] = sum_i x_i l_i - softplus(l_i), and
        l_i <- scale (sigmoid(l_i) - x_i) in place; e^-|l| once per entry (clipped at -80), softplus's logs by group
        products as in `_row_sums`, sigmoid(l) = (1 or e^-|l|) / (1 + e^-|l|)."""
        clip = np.float32(-80.0)  # e^-80 = 1.8e-35: no denormal (slow) floats; below, sigmoid(l) < 1.8e-35 anyway
        rows, n = logits.shape
        period = x.shape[0]
        for r in prange(rows):
            row = logits[r]
            xr = x[(first + r) % period]
            mantissa = np.empty(n, np.float32)
            bits = np.empty(n, np.int32)
            linear = _ZERO
            for i in range(n):
                a = row[i]
                linear += xr[i] * a - (_ZERO if a < _ZERO else a)  # x l - max(l, 0)
                t = -abs(a)
                mantissa[i], bits[i] = _exp_parts(t if t > clip else clip)
            powers = bits.view(np.float32)  # 2^-k
            logs = _log_one_plus(mantissa, powers, n)
            for i in range(n):  # into a scratch row first: written straight into `row`, the loop is not vectorised
                e = mantissa[i] * powers[i]
                mantissa[i] = scale * ((_ONE if row[i] >= _ZERO else e) / (_ONE + e) - xr[i])
            for i in range(n):
                row[i] = mantissa[i]
            out[r] = linear - logs

    _SMALL = np.float32(0.3)  # below, expm1 and log1p by their series (no cancellation)
    _SQRT2 = np.float32(1.4142135623730951)
    _LN2 = np.float32(0.6931471805599453)
    _MIN_NORMAL = np.float32(1.1754943508222875e-38)
    _INF = np.float32(np.inf)
    _E2, _E3, _E4 = np.float32(1 / 2), np.float32(1 / 6), np.float32(1 / 24)
    _E5, _E6, _E7 = np.float32(1 / 120), np.float32(1 / 720), np.float32(1 / 5040)
    _A3, _A5, _A7, _A9 = np.float32(1 / 3), np.float32(1 / 5), np.float32(1 / 7), np.float32(1 / 9)
    _TWO = np.float32(2.0)

    @njit(fastmath=_FAST, cache=True, parallel=True)
    def _anneal_increments(av, n, beta, dbeta, s, out):  # pragma: no cover - compiled
        """For each row r (a = av[r, :n], b = beta[r], d = dbeta[r]): s[r] = sigmoid(b a) and
        out[r] = d av[r, n] - sum_j log1p(sigmoid(b a_j) expm1(-d a_j)), in four vectorised passes:
        - e^(-b a) and e^x, x = -d a, by the range reduction of `_row_sums` (arguments clipped to +-87);
        - sigmoid, and expm1(x) by its series below |x| 0.3, else e^x - 1;
        - log1p(y) = 2 atanh(z), z = y / (2 + y), by its series below |y| 0.3; else log w of
          w = 1 + y = (e^(-b a) + e^x) / (1 + e^(-b a)) (positive terms: accurate where y is near -1, where 1 + y
          in float32 would cancel to 0), from w's exponent and mantissa m in [sqrt(1/2), sqrt(2)),
          2 atanh((m - 1)/(m + 1)) by the same series; w below the smallest normal float32 gives -inf."""
        rows = av.shape[0]
        M1, K1 = np.empty((rows, n), np.float32), np.empty((rows, n), np.int32)  # scratch, once per call
        M2, K2 = np.empty((rows, n), np.float32), np.empty((rows, n), np.int32)
        Wp, SM, EX = np.empty((rows, n), np.float32), np.empty((rows, n), np.float32), np.empty((rows, n), np.float32)
        for r in prange(rows):
            row, sr = av[r], s[r]
            bt, dt = beta[r], dbeta[r]
            m1, k1, m2, k2 = M1[r], K1[r], M2[r], K2[r]
            for i in range(n):
                t = -bt * row[i]
                t = _EXP_CLIP if t > _EXP_CLIP else t
                t = -_EXP_CLIP if t < -_EXP_CLIP else t
                k = np.floor(t * _LOG2E + _HALF)
                y = t - k * _LN2_HI - k * _LN2_LO
                m1[i] = _ONE + y * (_C1 + y * (_C2 + y * (_C3 + y * (_C4 + y * (_C5 + y * _C6)))))
                k1[i] = (np.int32(127) + np.int32(k)) << 23
                t = -dt * row[i]
                t = _EXP_CLIP if t > _EXP_CLIP else t
                t = -_EXP_CLIP if t < -_EXP_CLIP else t
                k = np.floor(t * _LOG2E + _HALF)
                y = t - k * _LN2_HI - k * _LN2_LO
                m2[i] = _ONE + y * (_C1 + y * (_C2 + y * (_C3 + y * (_C4 + y * (_C5 + y * _C6)))))
                k2[i] = (np.int32(127) + np.int32(k)) << 23
            e1 = k1.view(np.float32)
            e2 = k2.view(np.float32)
            w, small = Wp[r], SM[r]
            for i in range(n):
                big_e = m1[i] * e1[i]  # e^(-beta a)
                sig = _ONE / (_ONE + big_e)
                sr[i] = sig
                x = -dt * row[i]
                ex = m2[i] * e2[i]  # e^x
                series = x * (_ONE + x * (_E2 + x * (_E3 + x * (_E4 + x * (_E5 + x * (_E6 + x * _E7))))))
                em = series if abs(x) < _SMALL else ex - _ONE
                small[i] = sig * em
                w[i] = (big_e + ex) * sig  # 1 + y = (1 - s) + s e^x: positive terms, no cancellation near 0
            bits = w.view(np.int32)
            expo = EX[r]
            for i in range(n):
                b = bits[i]
                e = (b >> 23) - np.int32(127)
                k1[i] = (b & np.int32(0x7FFFFF)) | np.int32(0x3F800000)  # the mantissa in [1, 2)
                expo[i] = np.float32(e)
            mant = k1.view(np.float32)
            total = _ZERO
            for i in range(n):
                m = mant[i]
                e = expo[i]
                big = m > _SQRT2
                m = m * _HALF if big else m
                e = e + _ONE if big else e
                z = (m - _ONE) / (m + _ONE)
                z2 = z * z
                general = e * _LN2 + _TWO * z * (_ONE + z2 * (_A3 + z2 * (_A5 + z2 * (_A7 + z2 * _A9))))
                general = -_INF if w[i] < _MIN_NORMAL else general
                y = small[i]
                z = y / (_TWO + y)
                z2 = z * z
                series = _TWO * z * (_ONE + z2 * (_A3 + z2 * (_A5 + z2 * (_A7 + z2 * _A9))))
                total += series if abs(y) < _SMALL else general
            out[r] = dt * row[n] - total


def usable(logits) -> bool:
    """Whether `row_sums` takes these logits: numba present, a 2-D contiguous float32 CPU tensor, no graph."""
    import torch

    return (numba is not None and logits.dim() == 2 and logits.dtype == torch.float32
            and logits.device.type == "cpu" and logits.is_contiguous() and not logits.requires_grad)


_ZEROS: dict = {}  # n -> n float32 zeros: the bias of sums without one


def row_sums(logits, bias=None):
    """sum_i softplus(l_i + b_i) of each row of `logits` (R x n), a float32 tensor of shape (R,); `bias` (n entries,
    float32, contiguous; 0 when None) is added in the same pass, so that a product's bias need not be written into
    its logits first (a 5,000 x 784 block: one pass over 15.7 MB fewer)."""
    import torch

    n = logits.shape[1]
    if bias is None:
        if n not in _ZEROS:
            if len(_ZEROS) > 16:
                _ZEROS.clear()
            _ZEROS[n] = np.zeros(n, np.float32)
        b = _ZEROS[n]
    else:
        bias = bias.detach()
        if not (bias.dim() == 1 and bias.shape[0] == n and usable(bias.reshape(1, -1).contiguous())):
            raise ValueError("logistic_kernels.row_sums: the bias must be a contiguous float32 CPU vector of n entries")
        b = bias.contiguous().numpy()
    out = torch.empty(logits.shape[0], dtype=torch.float32)
    _threads()
    _row_sums(logits.numpy(), b, out.numpy())
    return out


def bound_row_sums(buffer, bias, out):
    """`row_sums(buffer[:rows], bias)` written to out[start:start + rows], as a call f(rows, start) on arrays checked
    once (for a loop over blocks of logits made in the same buffer: `genlearn.models.vae.softplus_sum`); bias None:
    no bias."""
    if not (usable(buffer) and out.dtype == buffer.dtype and out.is_contiguous() and out.device.type == "cpu"):
        raise ValueError("logistic_kernels.bound_row_sums: contiguous float32 CPU buffer and output")
    row_sums(buffer[:1], bias)  # the checks of the bias
    b = _ZEROS.get(buffer.shape[1]) if bias is None else bias.detach().contiguous().numpy()
    logits, sums = buffer.numpy(), out.numpy()

    def run(rows: int, start: int):
        _threads()
        _row_sums(logits[:rows], b, sums[start : start + rows])
    return run


#: genlearn's compiled elementwise kernels replace torch's only where a timing finds them at least this much faster
#: (a margin against timing noise, so that a machine does not switch between the two from one run to the next)
MIN_SPEEDUP = 1.2
#: GENLEARN_ELEMENTWISE: "auto" (the timings decide), "torch" (torch's kernels), "genlearn" (genlearn's forms)
ELEMENTWISE_CHOICES = ("auto", "torch", "genlearn")
#: the timed block: a minibatch of 100 rows of 784 logits
BENCH_SHAPE = (100, 784)
_SIGMOID_SPEEDUP: dict[int, float] = {}  # torch threads -> time(torch.sigmoid_) / time(compiled sigmoid_)


def elementwise_override() -> str:
    """GENLEARN_ELEMENTWISE: "auto" (default), "torch" or "genlearn" (module constants)."""
    import os

    forced = os.environ.get("GENLEARN_ELEMENTWISE", "auto").strip().lower() or "auto"
    if forced not in ELEMENTWISE_CHOICES:
        from genlearn.errors import ConfigError

        raise ConfigError(f"GENLEARN_ELEMENTWISE must be one of {', '.join(ELEMENTWISE_CHOICES)}, got {forced!r}")
    return forced


def sigmoid_speedup() -> float:
    """time(torch.sigmoid_) / time(the compiled sigmoid_) on a BENCH_SHAPE float32 block at torch's current thread
    count (> 1: compiled faster), measured once per thread count and machine (genlearn.kernel_timing,
    genlearn.timing_cache); 0.0 without numba.
    Measured: ~2x on one AVX2 EPYC core (0.4 against 0.9 ns per entry), 0.8x on an AVX-512 Xeon (0.45 against 0.37)."""
    import torch

    threads = torch.get_num_threads()
    if threads not in _SIGMOID_SPEEDUP:
        if numba is None:
            _SIGMOID_SPEEDUP[threads] = 0.0
        else:
            from genlearn import kernel_timing, timing_cache

            def measure() -> float:
                a = torch.randn(BENCH_SHAPE, generator=torch.Generator().manual_seed(0)).mul_(4)
                b = a.clone()
                best = kernel_timing.best_seconds({"torch": lambda: b.copy_(a).sigmoid_(),  # both in place on
                                                   "compiled": lambda: _sigmoid_in_place(b.copy_(a))})  # fresh logits
                return best["torch"] / best["compiled"]

            # remembered per machine (genlearn.timing_cache): the same choice in every process of this machine
            _SIGMOID_SPEEDUP[threads] = timing_cache.remembered(__file__, f"sigmoid_speedup threads={threads}",
                                                                measure)
    return _SIGMOID_SPEEDUP[threads]


def compiled_sigmoid_in_use() -> bool:
    """Whether `sigmoid_` runs the compiled kernel (where the tensor allows): GENLEARN_ELEMENTWISE, else whether
    `sigmoid_speedup` is at least MIN_SPEEDUP."""
    forced = elementwise_override()
    if numba is None or forced == "torch":
        return False
    return forced == "genlearn" or sigmoid_speedup() >= MIN_SPEEDUP


def _sigmoid_in_place(a):
    _threads()
    _sigmoid_rows(a.view(-1, a.shape[-1]).numpy())  # a view: written in place
    return a


def record() -> dict:
    """What runs and benchmarks record: the sigmoid kernel in use and its measured speedup."""
    return {"sigmoid_kernel": "compiled" if compiled_sigmoid_in_use() else "torch",
            "compiled_sigmoid_speedup_measured": round(sigmoid_speedup(), 3)}


def _reset_for_tests() -> None:
    _SIGMOID_SPEEDUP.clear()


def sigmoid_(a):
    """a <- sigmoid(a) = 1 / (1 + e^-a) in place, for a contiguous float32 CPU tensor without a graph (any shape):
    e^-a by the same range reduction and polynomial as `row_sums` (-a clipped to [-87, 87]: below, the sigmoid
    is 1 to float32; above, it is under 1.6e-38, the smallest normal float32), about 2 ulps, where
    `compiled_sigmoid_in_use` (~0.4 ns per entry on one AVX2 core against ~0.9 ns for torch.sigmoid); torch.sigmoid_
    for other tensors, without numba, and where torch's kernel is as fast (AVX-512 Xeon: 0.37 ns)."""
    if (a.dim() >= 1 and a.numel() and a.is_contiguous() and usable(a.view(-1, a.shape[-1]))
            and compiled_sigmoid_in_use()):
        return _sigmoid_in_place(a)
    return a.sigmoid_()


def tanh_(a):
    """a <- tanh(a) in place by the compiled kernel (one pass, e^-2|a| by the module's exp, then
    tanh |a| = -expm1(-2|a|) / (2 + expm1(-2|a|)), so small values keep their relative precision): a contiguous
    float32 CPU tensor without a graph, numba present (`usable`); within ~4 ulps of float64's tanh
    (tests/test_logistic_kernels.py). NaN stays NaN, +-inf gives +-1. Which tanh a network runs is chosen by
    timing (genlearn.numerics.tanh_timings)."""
    import torch

    if not (numba is not None and a.dtype == torch.float32 and a.device.type == "cpu" and a.dim() >= 1
            and a.numel() and a.is_contiguous() and not a.requires_grad):
        raise ValueError("logistic_kernels.tanh_: a contiguous float32 CPU tensor without a graph")
    _threads()
    _tanh_rows(a.view(-1, a.shape[-1]).numpy())
    return a


def bound_sigmoid(a):
    """`sigmoid_(a)` as a call without arguments on the buffer a, its checks and the kernel choice made once (a loop
    that runs it thousands of times on the same buffer: AIS's sweeps; the checks cost ~20 us a call)."""
    if (a.dim() >= 1 and a.numel() and a.is_contiguous() and usable(a.view(-1, a.shape[-1]))
            and compiled_sigmoid_in_use()):
        rows = a.view(-1, a.shape[-1]).numpy()

        def run():
            _threads()
            _sigmoid_rows(rows)
    else:
        def run():
            a.sigmoid_()
    return run


def bernoulli_rows_(logits, x, first: int = 0, scale: float = 1.0):
    """For the rows l of `logits` (R x n) and their data rows x[(first + r) % B] (x: B x n):
    log P(x|l) = sum_i x_i l_i - softplus(l_i) per row (a float32 tensor (R,), nats), and in place
    logits <- scale (sigmoid(l) - x) = -scale d log P / d l, in one compiled pass (the output layer of a Bernoulli
    decoder, forward and backward). Both tensors float32, CPU, contiguous, without a graph (`usable`), numba
    present; entries within ~1e-7 of float64 (tests/test_logistic_kernels.py)."""
    import torch

    if not (usable(logits) and usable(x) and x.shape[1] == logits.shape[1] and x.shape[0] > 0):
        raise ValueError("logistic_kernels.bernoulli_rows_: contiguous float32 CPU tensors (R, n) and (B, n), no graph")
    out = torch.empty(logits.shape[0], dtype=torch.float32)
    _threads()
    _bernoulli_rows(logits.numpy(), x.numpy(), int(first), np.float32(scale), out.numpy())
    return out


def anneal_increments(av, n: int, beta, dbeta, s, out):
    """For AIS of an RBM, the log-weight increments f_{beta_k}(v) - f_{beta_{k-1}}(v) of each chain and the hidden
    probabilities at beta_k, from av = [c + v W | v.d] (R x n + 1, float32, rows contiguous):

        out = dbeta av[:, n] - sum_j log1p(s_j expm1(-dbeta a_j)),   s = sigmoid(beta a),   a = av[:, :n],

    beta and dbeta per row (R), s (R x n), out (R); each term within ~1e-7 relative (tests/test_logistic_kernels.py,
    float64 oracle); returns (s, out)."""
    import torch

    for t in (av, beta, dbeta, s, out):
        if t.dtype != torch.float32 or t.device.type != "cpu" or t.stride(-1) != 1:
            raise ValueError("logistic_kernels.anneal_increments: float32 CPU tensors with contiguous rows")
    if av.shape[1] <= n:
        raise ValueError(f"logistic_kernels.anneal_increments: av needs n + 1 = {n + 1} columns, has {av.shape[1]}")
    _threads()
    _anneal_increments(av.numpy(), int(n), beta.numpy(), dbeta.numpy(), s.numpy(), out.numpy())
    return s, out


def bound_anneal_increments(av, n: int, s, out):
    """`anneal_increments(av, n, beta, dbeta, s, out)` as a call f(beta, dbeta) on numpy rows (float32, R), the
    tensors checked once (AIS runs it once per temperature on the same buffers)."""
    import torch

    anneal_increments(av, n, torch.zeros(av.shape[0]), torch.zeros(av.shape[0]), s, out)  # the checks
    arrays = (av.numpy(), int(n))
    s_np, out_np = s.numpy(), out.numpy()

    def run(beta, dbeta):
        _threads()
        _anneal_increments(*arrays, beta, dbeta, s_np, out_np)
    return run


__all__ = ["BENCH_SHAPE", "CLIP", "ELEMENTWISE_CHOICES", "GROUP", "MIN_SPEEDUP", "anneal_increments", "available",
           "bernoulli_rows_", "bound_anneal_increments", "bound_row_sums", "bound_sigmoid", "compiled_sigmoid_in_use",
           "elementwise_override", "record", "row_sums", "sigmoid_", "sigmoid_speedup", "tanh_", "usable"]
