"""Sparse-row products (genlearn.binary_products) equal the dense ones (float64 references) up to float32
summation order, for densities 0, 1 and in between, odd shapes, empty rows and gray levels."""
import pytest
import torch

import genlearn.binary_products as bp

TOL = dict(rtol=1e-5, atol=1e-5)


def rows(R, V, density, seed=0, gray=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(R, V, generator=g) < density).float()
    if gray:
        x *= torch.rand(R, V, generator=g)
    return x


@pytest.mark.parametrize("R, V, H", [(1, 1, 1), (7, 13, 5), (100, 784, 50), (3, 5, 129)])
@pytest.mark.parametrize("density", [0.0, 0.13, 0.5, 1.0])
@pytest.mark.parametrize("gray", [False, True])
def test_rows_products_equal_the_float64_dense_products(R, V, H, density, gray):
    x = rows(R, V, density, seed=R + V, gray=gray)
    if R > 2:
        x[1] = 0.0  # an empty row
    g = torch.Generator().manual_seed(1)
    W, P = torch.randn(V, H, generator=g), torch.randn(R, H, generator=g)
    got = bp.rows_mm(x, W)
    ref = x.double() @ W.double()
    assert got.shape == (R, H) and got.dtype == torch.float32
    scale = 1 + x.abs().sum(1, keepdim=True).double().sqrt()  # float32 error grows with the number of terms
    assert torch.allclose(got.double() / scale, ref / scale, **TOL)
    got_t = bp.rows_t_mm(x, P)
    ref_t = x.double().T @ P.double()
    scale_t = 1 + x.abs().sum(0).double().sqrt().unsqueeze(1)
    assert got_t.shape == (V, H) and torch.allclose(got_t.double() / scale_t, ref_t / scale_t, **TOL)
    if density == 0.0:
        assert torch.equal(got, torch.zeros(R, H)) and torch.equal(got_t, torch.zeros(V, H))


def test_the_measured_gain_is_a_real_positive_ratio():
    for transposed in (False, True):
        gain = bp.measure_gain(4, 6, 5, 0.3, transposed=transposed)  # a real (tiny) measurement
        assert gain > 0 and gain == gain and gain != float("inf")
