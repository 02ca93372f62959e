"""Compiled (numba) passes of one CD-1 / PCD-1 step of a binary RBM (float32, CPU): everything between the step's
one dense product a = b + h W^T in three parallel calls, where the step in torch operations and single kernels
makes ~30 calls of ~5-20 us of dispatch each (~0.5 ms of a ~2.5 ms step on one AVX2 core).

    data pass:     x indexed (its active columns), pre = c + x W by sums of selected rows, P(h|x) = sigmoid(pre),
                   x.b; then h = [u < q] with q the chains' kept P(h|v~) (PCD; each row then scaled, P_r <- w_r P_r,
                   while in cache) or P(h|x) (CD)
    negative pass: v~ = [u' < sigmoid(a)], indexed, pre~ = c + v~ W, P(h|v~) = sigmoid(pre~) (kept for the next PCD
                   step, then P_r <- w_r P_r), v~.b
    tail:          the CD value sum_r w_r (v_r.b + sum_j softplus(pre_rj)) = mean F(x) - mean F(v~) (w = [-1/B; 1/N];
                   skipped where the caller does not use it: the softplus of 200 x 500 entries, ~2% of a step),
                   P <- w P for the rows the passes did not scale (CD's batch; negatives whose product was dense,
                   then also kept), dW = [x; v~]^T P (per column i, the sum of the rows
                   P_r with v_ri = 1), db = [x; v~]^T w, dc = sum_r P_r; or, for a plain SGD step, W -= lr dW
                   (each row of dW applied as it is summed, never stored), b -= lr db, c -= lr dc

The passes reuse the module kernels' row functions (binary_kernels: the index, the sums of selected rows, the
column lists; logistic_kernels: sigmoid, softplus sums), so their numbers equal those of the step made of single
kernels up to float32 summation order (tests/test_cd_kernels.py). The data and negative passes index their rows
first and do the sums only where the rows have at most `max_ones` ones (the density below which the sums beat the
dense product, binary_kernels.CHOOSER): they return the number of ones (-1: an entry of x not 0 or 1), and the
caller takes the dense products where the sums were not done. Their row loops run as `tasks` parallel tasks of
contiguous rows (numba's thread count), each allocating its scratch rows once: ~60 ns an allocation, ~2,000 a step
at 784 x 500 and batch 100 when allocated per row. `available()` is False without numba."""
from __future__ import annotations

import numpy as np

try:  # optional accelerator (the `fast` extra)
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None


def available() -> bool:
    return numba is not None


#: False keeps the step of single kernels and torch operations (tests and benchmarks compare the two in one run)
ENABLED = True


if numba is not None:
    from genlearn.binary_kernels import _accumulate, _column_lists, _index_row
    from genlearn.logistic_kernels import _sigmoid_row, _softplus_sum

    _FAST = {"reassoc", "contract", "nsz", "arcp"}

    @njit(fastmath=_FAST, cache=True, inline="always")
    def _hidden_row(W, b, c, indices, k0, k1, pre, probs, mantissa, bits):  # pragma: no cover - compiled
        """pre = c + the sum of the rows of W at indices[k0:k1], probs = sigmoid(pre); returns v.b, the sum of b
        at those columns."""
        for j in range(c.shape[0]):
            pre[j] = c[j]
        _accumulate(pre, W, indices, k0, k1)
        _sigmoid_row(pre, probs, mantissa, bits)
        vb = np.float32(0.0)
        for k in range(k0, k1):
            vb += b[indices[k]]
        return vb

    @njit(fastmath=_FAST, cache=True, inline="always")
    def _scale_row(p, weight):  # pragma: no cover - compiled
        """p <- weight p."""
        for j in range(p.shape[0]):
            p[j] *= weight

    @njit(parallel=True, fastmath=_FAST, cache=True)
    def _data_pass(source, order, s0, ends, indices, W, b, c, pre, probs, free, u, q, h, max_ones, w,
                   tasks):  # pragma: no cover - compiled
        """Index the batch x (B x V; row r is source[order[s0 + r]], B = pre.shape[0]) as rows 0..B-1; if every
        entry is 0 or 1 and there are at most max_ones ones: pre = c + x W, probs = sigmoid(pre), free = x.b (rows
        0..B-1 of each), then h = [u < q] (N x H; q may be `probs`). With w (B row weights; empty: not) each row of
        probs is then scaled, probs_r <- w_r probs_r, while it is in cache (the tail's scaling of these rows; q must
        not be `probs` then). Returns the number of ones, or -1 (an entry other than 0 and 1: nothing else
        done)."""
        R, V = pre.shape[0], source.shape[1]
        H = W.shape[1]
        bad = 0
        for r in prange(R):
            end, nonbinary = _index_row(source[order[s0 + r]], indices, r * V, True)
            ends[r] = end
            bad += nonbinary
        if bad:
            return -1
        ones = 0
        for r in range(R):
            ones += ends[r] - r * V
        if ones > max_ones:
            return ones
        T = max(1, tasks)
        for t in prange(T):
            mantissa, bits = np.empty(H, np.float32), np.empty(H, np.int32)
            for r in range(t * R // T, (t + 1) * R // T):
                free[r] = _hidden_row(W, b, c, indices, r * V, ends[r], pre[r], probs[r], mantissa, bits)
                if w.shape[0]:
                    _scale_row(probs[r], w[r])
        for r in prange(h.shape[0]):
            hr, ur, qr = h[r], u[r], q[r]
            for j in range(H):
                hr[j] = np.float32(1.0) if ur[j] < qr[j] else np.float32(0.0)
        return ones

    @njit(parallel=True, fastmath=_FAST, cache=True)
    def _negative_pass(a, u, out, chains, ends, indices, r0, W, b, c, pre, probs, free, max_ones, w, keep,
                       tasks):  # pragma: no cover - compiled
        """out = [u < sigmoid(a)] (N x V, 0/1), copied to `chains` when it has rows, indexed as rows r0..; if they
        have at most max_ones ones: pre = c + out W, probs = sigmoid(pre), free = out.b, then probs copied to `keep`
        when it has rows (P(h | v~) kept for the next PCD step) and scaled, probs_r <- w_{r0 + r} probs_r (the tail's
        work on these rows, done while each row is in cache). Returns the number of ones."""
        R, V = a.shape
        H = W.shape[1]
        T = max(1, tasks)
        for t in prange(T):
            p, mantissa, bits = np.empty(V, np.float32), np.empty(V, np.float32), np.empty(V, np.int32)
            for r in range(t * R // T, (t + 1) * R // T):
                _sigmoid_row(a[r], p, mantissa, bits)
                orow, ur = out[r], u[r]
                for i in range(V):
                    orow[i] = np.float32(1.0) if ur[i] < p[i] else np.float32(0.0)
                if chains.shape[0]:
                    chains[r, :] = orow
                end, _ = _index_row(orow, indices, (r0 + r) * V, False)
                ends[r0 + r] = end
        ones = 0
        for r in range(R):
            ones += ends[r0 + r] - (r0 + r) * V
        if ones > max_ones:
            return ones
        for t in prange(T):
            mantissa, bits = np.empty(H, np.float32), np.empty(H, np.int32)
            for r in range(t * R // T, (t + 1) * R // T):
                free[r] = _hidden_row(W, b, c, indices, (r0 + r) * V, ends[r0 + r], pre[r], probs[r], mantissa, bits)
                if keep.shape[0]:
                    keep[r, :] = probs[r]
                _scale_row(probs[r], w[r0 + r])
        return ones

    #: columns per parallel task of the column sums dc
    _COLUMNS = 64

    @njit(parallel=True, fastmath=_FAST, cache=True)
    def _tail(pre, probs, free, w, keep, B, ends, indices, start, rows, dW, db, dc, stats, W, b, c, scale_lo,
              scale_hi, lr, with_value, tasks):  # pragma: no cover - compiled
        """With `with_value`: free += sum_j softplus(pre_rj) per row (pre overwritten), value = sum_r w_r free_r
        (returned, float64; else 0.0 is returned and pre, free are left as they are). keep = the last keep.shape[0]
        rows of probs where the passes have not kept them (scale_hi = R: the negatives were not scaled), probs_r <-
        w_r probs_r for the rows scale_lo..scale_hi-1 (the others were scaled by the passes), dc = sum_r probs_r,
        db = [x; v~]^T w from
        the index, and with `stats` dW = [x; v~]^T probs by sums of selected rows: the column lists of the rows
        0..B-1 and B..R-1 (start: 2 x (V + 1)) sorted in parallel, then the columns in parallel.
        With lr > 0, a plain SGD step instead: b -= lr db, c -= lr dc, and with `stats` W -= lr dW row by row as
        each row of dW is summed (dW itself is not written); without `stats` the caller updates W."""
        R, H = pre.shape
        V = db.shape[0]
        T = max(1, tasks) if with_value else 0
        for t in prange(T):
            zero, mantissa, bits = np.zeros(H, np.float32), np.empty(H, np.float32), np.empty(H, np.int32)
            for r in range(t * R // T, (t + 1) * R // T):
                free[r] += _softplus_sum(pre[r], zero, mantissa, bits)
        value = 0.0
        for r in range(R if with_value else 0):
            value += np.float64(w[r]) * np.float64(free[r])
        T = max(1, tasks)
        first = R - keep.shape[0]
        for r in prange(keep.shape[0] if scale_hi == R else 0):
            keep[r, :] = probs[first + r]
        for r in prange(scale_lo, scale_hi):
            _scale_row(probs[r], w[r])
        for q in prange((H + _COLUMNS - 1) // _COLUMNS):
            j0 = q * _COLUMNS
            d = dc[j0:min(H, j0 + _COLUMNS)]
            d[:] = 0.0
            for r in range(R):
                p = probs[r, j0:j0 + d.shape[0]]
                for j in range(d.shape[0]):
                    d[j] += p[j]
        if lr > 0.0:
            for j in range(H):
                c[j] -= lr * dc[j]
        if not stats:
            for i in range(V):
                db[i] = 0.0
            for r in range(R):
                for k in range(r * V, ends[r]):
                    db[indices[k]] += w[r]
            if lr > 0.0:
                for i in range(V):
                    b[i] -= lr * db[i]
            return value
        data_ones = 0
        for r in range(B):
            data_ones += ends[r] - r * V
        for part in prange(2):
            lo, hi = (0, B) if part == 0 else (B, R)
            _column_lists(ends, indices, lo, hi, V, start[part], rows, 0 if part == 0 else data_ones)
        update = lr > 0.0
        for i in prange(V):
            o = np.empty(H, np.float32) if update else dW[i]
            for j in range(H):
                o[j] = 0.0
            total = np.float32(0.0)
            for part in range(2):
                k0, k1 = start[part, i], start[part, i + 1]
                _accumulate(o, probs, rows, k0, k1)
                for k in range(k0, k1):
                    total += w[rows[k]]
            db[i] = total
            if update:
                Wi = W[i]
                for j in range(H):
                    Wi[j] -= lr * o[j]
                b[i] -= lr * total
        return value


def tasks() -> int:
    """The `tasks` argument of the passes: numba's thread count (one task of contiguous rows per thread)."""
    return numba.get_num_threads()


__all__ = ["available", "tasks"]
