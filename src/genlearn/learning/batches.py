"""Minibatches in a random order, fast for binary data.

Gathering 100 random rows of a large float32 matrix is limited by memory latency (each row is a separate
place in memory): about 2-4 us per row on the project's first machine, 0.2-0.3 s per epoch of 60,000 MNIST
images, as much as the RBM's arithmetic of a tenth of an epoch (0.25-0.6 us per row on the AVX2 EPYC). Binary rows
(every value exactly 0 or 1) are therefore kept bit-packed (numpy.packbits, 1 bit per value: 98 bytes per MNIST
image, the whole training set in a few MB) and unpacked per minibatch, which gives exactly the same float rows:
by one compiled pass from the packed rows to the floats where numba is present (binary_kernels.unpack_rows:
~100 us per batch of 100 MNIST rows between the steps of a PCD run, against ~155 us for numpy.unpackbits and a
conversion). Other data is gathered
with index_select. The order is a uniform random permutation drawn from the trainer's generator (the same draw
for both paths, so results do not depend on which path ran). The Trainer's plain SGD epochs of a rule that reads
its batches in place (rules.ContrastiveDivergence.sgd_stepper) take only the row numbers, `batch_orders`: the
same permutation."""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from genlearn import binary_kernels
from genlearn.data.bitpack import CHUNK_ROWS, pack_rows, unpack_rows


def is_binary_matrix(x: Tensor) -> bool:
    """True when x is a 2-D floating tensor whose every value is exactly 0 or 1."""
    if x.ndim != 2 or not x.dtype.is_floating_point or x.numel() == 0:
        return False
    count = binary_kernels.count_non_binary(x)
    if count is not None:
        return count == 0
    return all(bool(((c == 0) | (c == 1)).all()) for c in x.split(CHUNK_ROWS))


def batch_orders(m: int, batch_size: int, generator: torch.Generator | None) -> Iterator[Tensor]:
    """The row numbers (int64) of each minibatch of an epoch over m rows: slices of batch_size of a uniform random
    permutation drawn from `generator` (MinibatchSampler's batches are the rows at these numbers)."""
    perm = torch.randperm(m, generator=generator, device=None if generator is None else generator.device)
    for start in range(0, m, batch_size):
        yield perm[start : start + batch_size]


class MinibatchSampler:
    """Rows of `x` in minibatches of `batch_size`, in the order of a permutation drawn from `generator`.

    Binary float matrices are bit-packed once (in __init__) and unpacked per batch; the batches are new float
    tensors of x's dtype, equal to x[perm[start:start + batch_size]]."""

    def __init__(self, x: Tensor, batch_size: int):
        self.x, self.batch_size = x, int(batch_size)
        self.m, self.n = x.shape[0], x.shape[1] if x.ndim == 2 else 0
        self.packed = None
        if x.device.type == "cpu" and is_binary_matrix(x):
            self.packed = pack_rows(x)

    def batches(self, generator: torch.Generator) -> Iterator[Tensor]:
        for idx in batch_orders(self.m, self.batch_size, generator):
            if self.packed is None:
                yield self.x.index_select(0, idx.to(self.x.device))
            else:  # compiled gather and unpack where numba is present, else numpy's
                batch = binary_kernels.unpack_rows(self.packed, idx, self.n, self.x.dtype)
                yield batch if batch is not None else unpack_rows(self.packed[idx.numpy()], self.n, self.x.dtype)
