"""sum_i softplus(l_i) by groups of products (genlearn.numerics.softplus_row_sums_): the decoder term of a VAE's
importance-sampling and AIS evaluations, and the free energies of the RBM's CD value.

Oracle: float64 F.softplus summed in float64; the identity must hold to float32 rounding for ordinary, large
and extreme logits (including +-inf and NaN), with and without a group divisor of the row length."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genlearn.numerics import group_size, softplus_row_sums_


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
    assert [group_size(n) for n in (784, 13, 67, 64, 8)] == [56, 13, 0, 64, 8]


@pytest.mark.parametrize("n", [784, 12, 67])
def test_softplus_row_sums_with_autograd(n):
    """softplus_row_sums: the value to float32 rounding and the gradient sigmoid(l) (float64 oracle), in float64 by
    gradcheck (finite differences), rows in blocks (SOFTPLUS_BLOCK_ROWS) and without a group divisor (n = 67)."""
    from genlearn.numerics import SOFTPLUS_BLOCK_ROWS, softplus_row_sums

    g = torch.Generator().manual_seed(n)
    logits = (4.0 * torch.randn(2, SOFTPLUS_BLOCK_ROWS // 2 + 3, n, generator=g)).requires_grad_(True)
    weights = torch.randn(logits.shape[:-1], generator=g)
    got = softplus_row_sums(logits)
    exact = F.softplus(logits.detach().double()).sum(-1)
    tol = 4 * n * 2.0 ** -24 * exact.clamp(min=1.0)
    assert got.shape == logits.shape[:-1] and torch.all((got.double() - exact).abs() <= tol)
    (got * weights).sum().backward()
    torch.testing.assert_close(logits.grad, torch.sigmoid(logits.detach()) * weights[..., None])
    small = torch.randn(5, n, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(softplus_row_sums, (small,))


def test_sigmoid_and_softplus_row_sums_():
    """sigmoid(l) written to the given tensor and sum_i softplus(l_i) returned, for ordinary and extreme logits
    (the sum through max(l, 0) - log sigmoid(|l|), sigmoid(|l|) = 1/2 + |sigmoid(l) - 1/2|)."""
    from genlearn.numerics import sigmoid_and_softplus_row_sums_

    g = torch.Generator().manual_seed(1)
    for n, scale in [(784, 4.0), (784, 30.0), (56, 0.1), (67, 4.0)]:
        logits = scale * torch.randn(40, n, generator=g)
        sig = torch.empty_like(logits)
        got = sigmoid_and_softplus_row_sums_(logits.clone(), sig)
        exact = F.softplus(logits.double()).sum(-1)
        # ~6e-8 absolute per entry (1/2 + |s - 1/2| rounded near 1) plus the float32 sum's rounding
        tol = n * 1.2e-7 + 4 * n * 2.0 ** -24 * exact
        assert torch.all((got.double() - exact).abs() <= tol), (n, scale)
        torch.testing.assert_close(sig, torch.sigmoid(logits))
    x = torch.tensor([[0.0] * 7 + [math.inf], [-math.inf] * 8, [1e30, -1e30] + [0.0] * 6, [math.nan] + [0.0] * 7])
    got = sigmoid_and_softplus_row_sums_(x.clone(), torch.empty_like(x))
    assert got[0] == math.inf and got[1] == 0.0 and got[2] == pytest.approx(1e30, rel=1e-6)
    assert math.isnan(got[3])
