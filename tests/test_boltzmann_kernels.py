"""Compiled Gibbs sweeps of the fully visible Boltzmann machine (genlearn.boltzmann_kernels) against the torch loop,
and the data moments' exact counts over 0/1 rows (genlearn.learning.boltzmann_gradients.pair_counts)."""
import pytest
import torch

from genlearn import binary_kernels as bk
from genlearn import boltzmann_kernels
from genlearn.estimators import ais
from genlearn.learning import boltzmann_gradients as bg

pytestmark = pytest.mark.skipif(not boltzmann_kernels.available(), reason="numba is not installed")


def _machine(n: int, dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    A = 0.4 * torch.randn(n, n, generator=g, dtype=dtype)
    W = A + A.T
    W.fill_diagonal_(0.0)
    return torch.randn(n, generator=g, dtype=dtype) * 0.5, W, g


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_chain_beta", [False, True])
def test_compiled_sweeps_equal_the_torch_loop(monkeypatch, dtype, per_chain_beta):
    """Same generator, same uniforms: the same chains after several sweeps (fields far from ties), at one
    temperature or one per chain, with all-0 and all-1 chains among them; the kernel ran."""
    n, C = 37, 23
    b, W, g = _machine(n, dtype)
    x0 = (torch.rand(C, n, generator=g) < 0.3).to(dtype)
    x0[0], x0[1] = 0.0, 1.0
    beta = torch.rand(C, 1, generator=g, dtype=dtype) if per_chain_beta else torch.tensor(0.7, dtype=dtype)
    calls = []
    real = boltzmann_kernels.sweeps_
    monkeypatch.setattr(boltzmann_kernels, "sweeps_", lambda *a: calls.append(1) or real(*a))
    compiled = ais.boltzmann_gibbs_sweeps(x0, b, W, beta, 4, torch.Generator().manual_seed(1))
    assert len(calls) == 4
    monkeypatch.setattr(boltzmann_kernels, "usable", lambda *a: False)
    looped = ais.boltzmann_gibbs_sweeps(x0, b, W, beta, 4, torch.Generator().manual_seed(1))
    assert torch.equal(compiled, looped)
    assert not torch.equal(compiled, x0)  # the chains moved
    assert torch.equal(x0[0], torch.zeros(n, dtype=dtype))  # the input is not modified


def test_gray_chains_keep_the_torch_loop(monkeypatch):
    b, W, g = _machine(6, torch.float64)
    monkeypatch.setattr(boltzmann_kernels, "sweeps_", lambda *a: pytest.fail("compiled sweep on gray levels"))
    ais.boltzmann_gibbs_sweeps(torch.rand(3, 6, dtype=torch.float64), b, W, torch.tensor(1.0, dtype=torch.float64),
                               1, g)


def test_the_kernel_refuses_mismatched_tensors():
    b, W, _ = _machine(5, torch.float32)
    x = torch.zeros(2, 5)
    with pytest.raises(ValueError, match="boltzmann_kernels.sweeps_"):
        boltzmann_kernels.sweeps_(x, b, W, torch.ones(2, dtype=torch.float64), torch.rand(1, 2, 5))


@pytest.mark.parametrize("sums", [False, True])
@pytest.mark.parametrize("density", [0.0, 0.15, 1.0])
def test_pair_counts_equal_the_float64_product_exactly(monkeypatch, sums, density):
    monkeypatch.setattr(bk.CHOOSER, "crossover", lambda *a: 1.01 if sums else 0.0)
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(57, 41, generator=g) < density).double()
    x[5] = 0.0
    m, c = bg.data_moments(x)
    assert torch.equal(c, x.T @ x / 57) and torch.equal(m, x.mean(0))
    assert torch.equal(bg.pair_counts(x.float()), (x.T @ x).float())


def test_pair_counts_leave_gray_levels_to_the_float64_product():
    x = torch.rand(9, 7, dtype=torch.float64)
    assert bg.pair_counts(x) is None
    m, c = bg.data_moments(x)
    assert torch.allclose(c, x.T @ x / 9)


def test_energies_by_sums_equal_the_dense_product(monkeypatch):
    """AIS's chain energies E(x) = -(b.x + 1/2 x.W.x) with x W summed over the active units (float64): the dense
    product's values to float64 rounding; gray rows fall back to the product."""
    n, C = 23, 11
    b, W, g = _machine(n, torch.float64)
    x = (torch.rand(C, n, generator=g) < 0.4).double()
    x[0] = 0.0
    index = bk.RowIndex(C, n)
    calls = []
    real = bk.RowIndex.addmm
    monkeypatch.setattr(bk.RowIndex, "addmm", lambda *a: calls.append(1) or real(*a))
    dense = ais.quadratic_energy64(x, b, W)
    assert torch.allclose(ais.quadratic_energy64(x, b, W, index), dense, rtol=1e-12, atol=1e-12)
    assert len(calls) == 1
    gray = torch.rand(C, n, generator=g, dtype=torch.float64)
    assert torch.allclose(ais.quadratic_energy64(gray, b, W, index), ais.quadratic_energy64(gray, b, W),
                          rtol=1e-12, atol=1e-12)
    assert len(calls) == 1
