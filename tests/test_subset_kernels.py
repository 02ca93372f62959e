"""Products h M with a 0/1 left operand by a table of M's subset sums (genlearn.subset_kernels), and their use in AIS.

Oracle: the float64 dense product of the same operands; the table's product must agree with it to float32
summation-order tolerance at densities 0, 1 and in between, for shapes whose rows are not a multiple of the table's
groups and whose columns are not a multiple of its blocks, at one and two threads; AIS with the table must bracket
the exact log Z of a small RBM as AIS without it does."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from genlearn import subset_kernels as sk

pytestmark = pytest.mark.skipif(not sk.available(), reason="numba (the `fast` extra) is not installed")


def _within_summation_order(out: torch.Tensor, h: torch.Tensor, Mt: torch.Tensor, bias: torch.Tensor) -> bool:
    """|out - (bias + h M)| <= (K + 1) 2^-23 (|bias| + |h| |M|) entry by entry (float32 summation of K + 1 terms in
    any order), against the float64 product."""
    exact = bias.double() + h.double() @ Mt.double()
    scale = bias.double().abs() + h.double().abs() @ Mt.double().abs()
    return bool(((out.double() - exact).abs() <= (Mt.shape[0] + 1) * 2.0 ** -23 * scale + 1e-30).all())


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("density", [0.0, 0.47, 1.0])
@pytest.mark.parametrize("R,K,V", [(100, 500, 784), (7, 13, 37), (3, 4, 16), (5, 9, 17), (1, 1, 1), (4, 97, 130)])
def test_the_table_product_equals_the_dense_product(R, K, V, density, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(R * 10_000 + K * 100 + V)
        h = (torch.rand(R, K, generator=g) < density).float()
        Mt, bias = torch.randn(K, V, generator=g), torch.randn(V, generator=g)
        out = torch.full((R, V), float("nan"))
        product = sk.FixedSubsetProduct(R, Mt).bound(h, bias, out)
        assert product() is True
        assert _within_summation_order(out, h, Mt, bias)
        # the same buffers again, with new rows: the product follows h (its codes are read at every call)
        h.copy_((torch.rand(R, K, generator=g) < 0.5).float())
        assert product() and _within_summation_order(out, h, Mt, bias)
    finally:
        torch.set_num_threads(before)


def test_every_row_of_the_matrix_counts():
    """Each of the K rows of M alone (h = its indicator) gives back that row: no group or table entry is lost."""
    K, V = 11, 35
    Mt = torch.randn(K, V, generator=torch.Generator().manual_seed(1))
    h, out = torch.eye(K), torch.empty(K, V)
    assert sk.FixedSubsetProduct(K, Mt).bound(h, torch.zeros(V), out)()
    assert torch.equal(out, Mt)


def test_rows_other_than_0_and_1_are_refused_and_the_output_kept():
    Mt = torch.randn(8, 20)
    h = torch.zeros(3, 8)
    h[1, 2] = 0.5
    out = torch.full((3, 20), 7.0)
    assert sk.FixedSubsetProduct(3, Mt).bound(h, torch.zeros(20), out)() is False
    assert (out == 7.0).all()


def test_bad_operands_are_refused():
    product = sk.FixedSubsetProduct(3, torch.randn(8, 20))
    with pytest.raises(ValueError, match="h 3 x 8"):
        product.bound(torch.zeros(3, 9), torch.zeros(20), torch.empty(3, 20))
    with pytest.raises(ValueError, match="contiguous float32"):
        product.bound(torch.zeros(3, 8, dtype=torch.float64), torch.zeros(20), torch.empty(3, 20))
    with pytest.raises(ValueError, match="Mt must be"):
        sk.FixedSubsetProduct(3, torch.randn(20, 8).T)


def test_the_speedup_is_a_ratio_of_two_timings_measured_once(monkeypatch):
    from genlearn import kernel_timing

    seen = []

    def fake(candidates, seconds):  # other timings (genlearn.products' choice) get 1 s for every candidate
        for call in candidates.values():
            call()
        if "table" in candidates:
            seen.append(sorted(candidates))
        return {name: {"dense": 3.0, "table": 2.0}.get(name, 1.0) for name in candidates}

    monkeypatch.setattr(kernel_timing, "best_seconds", fake)
    monkeypatch.setattr(sk, "_SPEEDUPS", {})
    assert sk.speedup(100, 500, 784) == pytest.approx(1.5)
    assert sk.speedup(100, 500, 784) == pytest.approx(1.5)
    assert seen == [["dense", "table"]]  # once per process and shape
    assert sk.speedup(10, 12, 40) == 0.0 and len(seen) == 1  # below MIN_FLOPS: not measured, not taken
    monkeypatch.setattr(sk, "ENABLED", False)
    assert sk.speedup(100, 500, 784) == 0.0


def test_drawn_rows_give_the_same_product_unchecked():
    g = torch.Generator().manual_seed(2)
    h, Mt, bias = (torch.rand(9, 30, generator=g) < 0.4).float(), torch.randn(30, 50, generator=g), torch.zeros(50)
    checked, drawn = torch.empty(9, 50), torch.empty(9, 50)
    product = sk.FixedSubsetProduct(9, Mt)
    assert product.bound(h, bias, checked)() and product.bound(h, bias, drawn, drawn=True)()
    assert torch.equal(checked, drawn)


@pytest.fixture(scope="module")
def small_rbm():
    """A 20 x 10 RBM with random weights: log Z by enumerating the 2^10 hidden states."""
    from genlearn.models.rbm import RBM

    model = RBM(20, 10, init_std=0.5, seed=3)
    with torch.no_grad():
        model.visible_bias.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(4))
    return model


def test_ais_with_the_table_brackets_the_exact_log_z(small_rbm, monkeypatch):
    """The table forced on (its measured speedup replaced by 10, the visible states' product v W by the sums, which
    the table needs beside it): the hidden states' product h W^T runs through it at every temperature, and forward
    and reverse AIS still bracket the exact log Z."""
    from genlearn import binary_kernels

    monkeypatch.setattr(binary_kernels, "faster_at", lambda density, kind, R, V, H: V == 20)  # v W (V = 20) only
    calls = []
    bound = sk.FixedSubsetProduct.bound

    def counted(self, h, bias, out, drawn=False):
        run = bound(self, h, bias, out, drawn)
        return lambda: calls.append(1) or run()

    monkeypatch.setattr(sk, "speedup", lambda R, K, V: 10.0)
    monkeypatch.setattr(sk.FixedSubsetProduct, "bound", counted)
    exact = small_rbm.log_partition(method="exact").value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        est = small_rbm.log_partition(method="ais", steps=2000, chains=100, seed=0)
    assert len(calls) >= 2000  # every temperature of the forward and reverse chains
    assert abs(est.value - exact) < 0.3 and abs(est.details["reverse"] - exact) < 0.3, (est.value, exact)
    assert est.lower <= exact <= est.upper, (est.lower, exact, est.upper)


@pytest.mark.parametrize("annealed", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gibbs_sweeps_sample_the_model(dtype, annealed, monkeypatch):
    """RBM.sample against the exact P(v) of a 6 x 4 RBM by enumeration, with the sweeps after the first run as AIS's
    sweeps at inverse temperature 1 (`annealed`: compiled kernels in float32, torch's operations in float64) or as
    torch's: 20,000 chains of 30 sweeps, the frequencies of the 64 states within 5 binomial standard deviations of
    P(v) and their total variation below 0.03."""
    from itertools import product

    from genlearn.estimators import ais
    from genlearn.models.rbm import RBM

    runs = []
    anneal = ais.anneal
    monkeypatch.setattr(ais, "_sparse_chains", lambda v, W: annealed)
    monkeypatch.setattr(ais, "anneal", lambda *a, **k: runs.append(1) or anneal(*a, **k))
    model = RBM(6, 4, init_std=1.0, seed=5).to(dtype)
    with torch.no_grad():
        g = torch.Generator().manual_seed(6)
        model.visible_bias.normal_(0.0, 1.0, generator=g)
        model.hidden_bias.normal_(0.0, 1.0, generator=g)
    states = torch.tensor(list(product([0.0, 1.0], repeat=6)), dtype=dtype)
    with torch.no_grad():
        p = torch.softmax(-model.free_energy(states).double(), 0)
    n = 20_000
    x = model.sample(n, generator=torch.Generator().manual_seed(7), steps=30)
    assert len(runs) == int(annealed)
    assert x.dtype == dtype and set(x.unique().tolist()) <= {0.0, 1.0}
    codes = (x.double() @ (2.0 ** torch.arange(5, -1, -1, dtype=torch.float64))).long()
    freq = torch.bincount(codes, minlength=64).double() / n
    sd = (p * (1 - p) / n).sqrt()
    assert bool(((freq - p).abs() <= 5 * sd + 1e-12).all()), float(((freq - p).abs() / sd).max())
    assert float(0.5 * (freq - p).abs().sum()) < 0.03


def test_the_lookup_kernel_is_compiled_once_and_numba_settings_restored():
    """The kernel compiles with LLVM's SLP vectoriser switched on for it alone: numba's setting is as before
    afterwards, and no second signature can be compiled (it would be without the vectoriser)."""
    from numba.core import config

    before = config.SLP_VECTORIZE
    kernel = sk._compiled()
    assert config.SLP_VECTORIZE == before
    assert sk._compiled() is kernel and len(kernel.signatures) == 1
    with pytest.raises(TypeError):
        kernel(np.zeros((1, 4), np.uint32), np.zeros((1, 1, 384, 16), np.float64), np.zeros(16, np.float32),
               np.zeros((1, 16), np.float32), 1)
