"""Compiled (numba) uniform random numbers for float32 tensors: xoshiro128++ (Blackman & Vigna 2018) in LANES
parallel streams, in SIMD lanes.

    x_t = rotl(s0 + s3, 7) + s0  (32-bit words),   u_t = (x_t >> 8) 2^-24 in [0, 1)

with the 24-bit resolution of `numerics.uniform_`'s torch path (every float32 multiple of 2^-24 in [0, 1) has
probability 2^-24). The output is cut into blocks of BLOCK numbers, filled in parallel (the same numbers at any
thread count): entry i of block j is the (i // LANES)-th number of stream i % LANES of that block, whose 128-bit
state is the call's seed for block 0 and, for block j > 0, each 32-bit word w of it replaced by
fmix32(w ^ j 0x9E3779B9) (MurmurHash3's finaliser, a bijection). Each call seeds its
streams with 128 fresh bits each from the caller's torch.Generator (4 LANES int64 draws, the low 32 bits of
each), so the numbers are a function of the generator's state alone: a checkpointed generator gives the
same numbers again, and one call advances it by one small draw. A stream whose 128 bits are all zero (the one
state xoshiro cannot leave; probability 2^-128) starts from s0 = 1 instead.

Speed: ~0.4 ns per number on one AVX2 core, against ~3 ns for the torch path (the torch CPU generator's Mersenne
Twister draws one word at a time): the RBM's CD/PCD step and AIS draw 128,400 uniforms per step (100 chains,
784 + 500 units). `available()` is False without numba: callers keep the torch path."""
from __future__ import annotations

import numpy as np

try:  # optional accelerator (the `fast` extra)
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

#: parallel streams (two AVX2 registers of 32-bit words)
LANES = 16
#: numbers per block: blocks are filled in parallel, each from its own LANES streams (a multiple of LANES)
BLOCK = 16384
#: below this many numbers the torch path is as fast (the call and the seeding cost ~10 us)
MIN_SIZE = 4096


def available() -> bool:
    return numba is not None


if numba is not None:
    _U = np.uint32
    _SCALE = np.float32(2.0 ** -24)

    @njit(cache=True, inline="always")
    def _next(s0, s1, s2, s3, dst, offset):  # pragma: no cover - compiled
        """One number of every stream into dst[offset:offset + LANES]; the states advance in place."""
        for lane in range(LANES):
            x0, x1, x2, x3 = s0[lane], s1[lane], s2[lane], s3[lane]
            a = _U(x0 + x3)
            r = _U(_U(_U(a << _U(7)) | _U(a >> _U(25))) + x0)
            t = _U(x1 << _U(9))
            x2 = _U(x2 ^ x0)
            x3 = _U(x3 ^ x1)
            x1 = _U(x1 ^ x2)
            x0 = _U(x0 ^ x3)
            x2 = _U(x2 ^ t)
            x3 = _U(_U(x3 << _U(11)) | _U(x3 >> _U(21)))
            s0[lane], s1[lane], s2[lane], s3[lane] = x0, x1, x2, x3
            dst[offset + lane] = np.float32(np.int32(r >> _U(8))) * _SCALE

    @njit(cache=True, inline="always")
    def _fmix32(h):  # pragma: no cover - compiled
        """MurmurHash3's finaliser: a bijection of 32-bit words that mixes every input bit into every output bit."""
        h = _U(h ^ _U(h >> _U(16)))
        h = _U(h * _U(0x85EBCA6B))
        h = _U(h ^ _U(h >> _U(13)))
        h = _U(h * _U(0xC2B2AE35))
        return _U(h ^ _U(h >> _U(16)))

    @njit(cache=True, parallel=True)
    def _fill(seed, out):  # pragma: no cover - compiled
        """out (1-D float32) with uniforms: block j (BLOCK numbers) from LANES streams whose states are the words of
        seed (4 x LANES) for j = 0 and fmix32(word ^ j * 0x9E3779B9) for j > 0; blocks in parallel (the numbers do not
        depend on the thread count)."""
        n = out.shape[0]
        blocks = (n + BLOCK - 1) // BLOCK
        for j in prange(blocks):
            s0, s1, s2, s3 = seed[0].copy(), seed[1].copy(), seed[2].copy(), seed[3].copy()
            if j > 0:
                key = _U(_U(j) * _U(0x9E3779B9))
                for lane in range(LANES):
                    s0[lane] = _fmix32(_U(s0[lane] ^ key))
                    s1[lane] = _fmix32(_U(s1[lane] ^ key))
                    s2[lane] = _fmix32(_U(s2[lane] ^ key))
                    s3[lane] = _fmix32(_U(s3[lane] ^ key))
            for lane in range(LANES):
                if (s0[lane] | s1[lane] | s2[lane] | s3[lane]) == 0:
                    s0[lane] = 1
            start = j * BLOCK
            size = min(BLOCK, n - start)
            full = size // LANES
            for step in range(full):
                _next(s0, s1, s2, s3, out, start + step * LANES)
            rest = size - full * LANES
            if rest:
                tail = np.empty(LANES, np.float32)
                _next(s0, s1, s2, s3, tail, 0)
                for i in range(rest):
                    out[start + full * LANES + i] = tail[i]


def usable(u) -> bool:
    """Whether the kernel fills u: numba present, a contiguous float32 CPU tensor of at least MIN_SIZE entries."""
    import torch

    return (available() and u.dtype == torch.float32 and u.device.type == "cpu" and u.is_contiguous()
            and u.numel() >= MIN_SIZE)


def uniform_(u, generator=None):
    """Fill u (`usable`) with independent uniforms on [0, 1) of 24-bit resolution, in place; returns u."""
    import torch

    if not usable(u):
        raise ValueError("uniform_kernels.uniform_: a contiguous float32 CPU tensor of at least "
                         f"{MIN_SIZE} entries")
    words = torch.empty(4 * LANES, dtype=torch.int64).random_(generator=generator)  # in [0, 2^63)
    seed = (words.numpy() & 0xFFFFFFFF).astype(np.uint32).reshape(4, LANES)  # the low 32 bits: uniform
    from genlearn.binary_kernels import _threads

    _threads()
    _fill(seed, u.view(-1).numpy())
    return u


def bound_uniform(u, generator=None):
    """`uniform_(u, generator)` as a call without arguments that refills u (checked once): the same numbers for the
    same generator state, without the per-call checks and allocations (~30 us of a 50 us call; AIS refills its
    uniforms once per temperature)."""
    import torch

    if not usable(u):
        raise ValueError("uniform_kernels.bound_uniform: a contiguous float32 CPU tensor of at least "
                         f"{MIN_SIZE} entries")
    words = torch.empty(4 * LANES, dtype=torch.int64)
    words_np, u_np = words.numpy().reshape(4, LANES), u.view(-1).numpy()
    seed = np.empty((4, LANES), np.uint32)
    from genlearn.binary_kernels import _threads

    def run():
        words.random_(generator=generator)
        seed[...] = words_np & 0xFFFFFFFF
        _threads()
        _fill(seed, u_np)
    return run


__all__ = ["BLOCK", "LANES", "MIN_SIZE", "bound_uniform", "available", "uniform_", "usable"]
