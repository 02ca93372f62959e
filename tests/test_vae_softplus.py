"""sum_i softplus(l_i) by groups of products (genlearn.numerics.softplus_row_sums_): the decoder term of a VAE's
importance-sampling and AIS evaluations, and the free energies of the RBM's CD value.

Oracle: float64 F.softplus summed in float64; the identity must hold to float32 rounding for ordinary, large
and extreme logits (including +-inf and NaN), with and without a group divisor of the row length."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genlearn.numerics import _group_size, softplus_row_sums_


@pytest.mark.parametrize("n", [784, 64, 12, 13, 100, 67])
@pytest.mark.parametrize("scale", [0.1, 4.0, 40.0])
def test_equals_the_softplus_sum(n, scale):
    g = torch.Generator().manual_seed(n)
    logits = scale * torch.randn(3, 50, n, generator=g)
    exact = F.softplus(logits.double()).sum(-1)
    got = softplus_row_sums_(logits.clone())
    assert got.shape == (3, 50) and got.dtype == torch.float32
    # float32 rounding: ~n ulps of the sum of |terms| (the float32 softplus sum has the same order of error)
    tol = 4 * n * 2.0 ** -24 * F.softplus(logits.double()).abs().sum(-1).clamp(min=1.0)
    assert torch.all((got.double() - exact).abs() <= tol)
    assert torch.allclose(got, F.softplus(logits).sum(-1), rtol=1e-5, atol=1e-5)


def test_extreme_logits():
    x = torch.tensor([[0.0] * 7 + [math.inf], [-math.inf] * 8, [1e30, -1e30] + [0.0] * 6, [math.nan] + [0.0] * 7])
    got = softplus_row_sums_(x.clone())
    assert got[0] == math.inf and got[1] == 0.0 and got[2] == pytest.approx(1e30, rel=1e-6)
    assert math.isnan(got[3])


def test_group_sizes():
    assert [_group_size(n) for n in (784, 13, 67, 64, 8)] == [56, 13, 0, 64, 8]
