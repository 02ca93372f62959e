"""Compiled xoshiro128++ uniforms (genlearn.uniform_kernels).

Oracles: a pure-Python transcription of the published xoshiro128++ step (Blackman & Vigna) for the exact numbers of
every stream; the uniform distribution (chi-square on 256 bins, the exact mean and variance of the 24-bit grid);
independence of neighbours (lag-1 and lag-LANES correlations); determinism in the generator's state."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genlearn import numerics
from genlearn import uniform_kernels as uk

pytestmark = pytest.mark.skipif(not uk.available(), reason="numba (the `fast` extra) is not installed")

MASK = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & MASK


def _reference(state: list[int], count: int) -> list[float]:
    """xoshiro128++ as published: result = rotl(s0 + s3, 7) + s0, then the state update; u = (x >> 8) 2^-24."""
    s = list(state)
    out = []
    for _ in range(count):
        result = (_rotl((s[0] + s[3]) & MASK, 7) + s[0]) & MASK
        t = (s[1] << 9) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 11)
        out.append((result >> 8) * 2.0 ** -24)
    return out


@pytest.mark.parametrize("n", [uk.LANES * 7, uk.LANES * 7 + 5])
def test_every_stream_is_the_published_xoshiro128pp(n):
    rng = np.random.default_rng(0)
    seed = rng.integers(0, 2 ** 32, (4, uk.LANES), dtype=np.uint64).astype(np.uint32)
    seed[:, 3] = 0  # an all-zero stream starts from s0 = 1
    out = np.full(n, np.nan, np.float32)
    uk._fill(seed.copy(), out)
    for lane in range(uk.LANES):
        state = [int(w) for w in seed[:, lane]]
        if not any(state):
            state[0] = 1
        got = out[lane::uk.LANES]
        assert got.tolist() == _reference(state, len(got))


def _fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK
    return h ^ (h >> 16)


def test_later_blocks_come_from_the_mixed_seed_and_do_not_depend_on_threads():
    """Block j > 0 (BLOCK numbers each) starts its streams at fmix32(word ^ j 0x9E3779B9) of every seed word; the
    whole fill is the same at one and two threads."""
    import numba

    rng = np.random.default_rng(1)
    seed = rng.integers(0, 2 ** 32, (4, uk.LANES), dtype=np.uint64).astype(np.uint32)
    n = 2 * uk.BLOCK + 3 * uk.LANES + 7
    fills = []
    for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        numba.set_num_threads(threads)
        out = np.full(n, np.nan, np.float32)
        uk._fill(seed.copy(), out)
        fills.append(out)
    assert np.array_equal(fills[0], fills[1])
    for j in (1, 2):
        key = (j * 0x9E3779B9) & MASK
        block = fills[0][j * uk.BLOCK:(j + 1) * uk.BLOCK]
        for lane in (0, 5, uk.LANES - 1):
            state = [_fmix32(int(w) ^ key) for w in seed[:, lane]]
            got = block[lane::uk.LANES][:9]
            assert got.tolist() == _reference(state, len(got))


def test_the_numbers_are_a_function_of_the_generators_state():
    a = uk.uniform_(torch.empty(10_000), torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    b = uk.uniform_(torch.empty(10_000), g)
    c = uk.uniform_(torch.empty(10_000), g)
    assert torch.equal(a, b) and not torch.equal(b, c)
    assert numerics.uniform_(torch.empty(100, 80), torch.Generator().manual_seed(7)).flatten().equal(a[:8000])


def test_uniform_on_the_24_bit_grid():
    n = 1 << 20
    u = uk.uniform_(torch.empty(n), torch.Generator().manual_seed(1)).double()
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert torch.equal(u * 2 ** 24, torch.round(u * 2 ** 24))
    # mean (1 - 2^-24) / 2 and variance (1 - 2^-48) / 12 of the grid, within 5 standard errors
    assert abs(float(u.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(float(u.var()) - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    counts = torch.bincount((u * 256).long(), minlength=256).double()
    chi2 = float(((counts - n / 256) ** 2 / (n / 256)).sum())
    assert chi2 < 255 + 5 * math.sqrt(2 * 255)  # chi-square with 255 degrees of freedom
    for lag in (1, uk.LANES):
        r = float(torch.corrcoef(torch.stack([u[:-lag], u[lag:]]))[0, 1])
        assert abs(r) < 5 / math.sqrt(n), (lag, r)


def test_small_other_dtype_and_strided_tensors_keep_the_torch_path():
    assert not uk.usable(torch.empty(uk.MIN_SIZE - 1))
    assert not uk.usable(torch.empty(uk.MIN_SIZE, dtype=torch.float64))
    assert not uk.usable(torch.empty(100, 100).T)
    with pytest.raises(ValueError, match="contiguous float32"):
        uk.uniform_(torch.empty(10))
    small = numerics.uniform_(torch.empty(1000), torch.Generator().manual_seed(2))
    assert float(small.min()) >= 0.0 and float(small.max()) < 1.0


def test_the_bound_call_gives_the_numbers_of_uniform_():
    u1, u2 = torch.empty(3, uk.MIN_SIZE), torch.empty(3, uk.MIN_SIZE)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    refill = uk.bound_uniform(u2, g2)
    for _ in range(2):
        uk.uniform_(u1, g1)
        refill()
        assert torch.equal(u1, u2)
    with pytest.raises(ValueError, match="contiguous float32"):
        uk.bound_uniform(torch.empty(10))
