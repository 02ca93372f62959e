"""genlearn.products: float32 products through oneDNN or torch.mm, the same numbers up to summation order, and the
choice made by a timing (mocked here), the environment, the dtype, the size and autograd."""
import pytest
import torch

from genlearn import products as P
from genlearn.errors import ConfigError

pytestmark = pytest.mark.skipif(not P.onednn_available(), reason="this torch build has no oneDNN linear op")


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.delenv("GENLEARN_FLOAT32_PRODUCTS", raising=False)
    P._reset_for_tests()
    yield
    P._reset_for_tests()


def _operands(m, k, n, seed=0, density=None):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(m, k, generator=g)
    if density is not None:
        a = (a < density).float()
    return a, torch.randn(k, n, generator=g), torch.randn(n, generator=g)


@pytest.mark.parametrize("m, k, n", [(100, 784, 500), (37, 1001, 523), (200, 784, 500)])
@pytest.mark.parametrize("transposed", [False, True])
def test_onednn_products_equal_the_float64_product(monkeypatch, m, k, n, transposed):
    monkeypatch.setenv("GENLEARN_FLOAT32_PRODUCTS", "onednn")
    a, b, bias = _operands(m, k, n, density=0.13)
    if transposed:  # the CD step's rows^T @ probs and h @ W^T: operands that are transposed views
        a, b = a.T.contiguous().T, b.T.contiguous().T
    exact = a.double() @ b.double()
    scale = (a.double().abs() @ b.double().abs()).max()
    assert (P.mm(a, b).double() - exact).abs().max() <= 1e-6 * scale
    out = torch.empty(m, n)
    assert P.addmm(bias, a, b, out=out) is out
    assert (out.double() - (exact + bias.double())).abs().max() <= 1e-6 * scale


def test_the_choice_follows_the_timing_and_the_environment(monkeypatch):
    calls = []
    real = P.onednn_mm
    monkeypatch.setattr(P, "onednn_mm", lambda *args: calls.append(1) or real(*args))
    a, b, _ = _operands(100, 784, 500)
    monkeypatch.setattr(P, "onednn_speedup", lambda seconds=0.1: 0.8)  # slower here: torch.mm
    assert P.choice() == "torch"
    P.mm(a, b)
    assert calls == []
    monkeypatch.setattr(P, "onednn_speedup", lambda seconds=0.1: P.MIN_SPEEDUP + 0.5)
    assert P.choice() == "onednn"
    P.mm(a, b)
    assert calls == [1]
    monkeypatch.setenv("GENLEARN_FLOAT32_PRODUCTS", "torch")  # forced, whatever the timing
    assert P.choice() == "torch"
    monkeypatch.setenv("GENLEARN_FLOAT32_PRODUCTS", "fastest")
    with pytest.raises(ConfigError, match="GENLEARN_FLOAT32_PRODUCTS must be one of auto, torch, onednn"):
        P.choice()


def test_small_double_and_tracked_products_stay_with_torch(monkeypatch):
    monkeypatch.setenv("GENLEARN_FLOAT32_PRODUCTS", "onednn")
    calls = []
    monkeypatch.setattr(P, "onednn_mm", lambda *args: calls.append(1))
    a, b, bias = _operands(10, 9, 6)  # 1,080 flops: below MIN_FLOPS
    assert torch.equal(P.mm(a, b), torch.mm(a, b))
    a, b, bias = _operands(100, 784, 500)
    assert torch.equal(P.addmm(bias.double(), a.double(), b.double()), torch.addmm(bias.double(), a.double(),
                                                                                   b.double()))
    w = b.clone().requires_grad_()
    P.mm(a, w).sum().backward()  # autograd needs torch.mm's gradient
    assert torch.allclose(w.grad, a.sum(0)[:, None].expand_as(w))
    assert calls == []


def test_the_timing_is_real_and_cached_per_thread_count():
    s = P.onednn_speedup(seconds=0.02)
    assert s > 0 and P.onednn_speedup() == s
    rec = P.record()
    assert rec["float32_products"] == P.choice() and rec["onednn_speedup_measured"] == round(s, 3)
    assert rec["timing_cache"] == "off"  # (the suite measures in every process: tests/conftest.py)


@pytest.mark.parametrize("lib", ["torch", "onednn"])
@pytest.mark.parametrize("strided", [False, True])
def test_a_bound_product_takes_the_library_chosen_when_bound_and_sees_in_place_changes(monkeypatch, lib, strided):
    """bound_addmm(bias, a, b, out)() = bias + a @ b into out, through the library chosen when it was bound (a later
    change of GENLEARN_FLOAT32_PRODUCTS does not move it), with the operands' values at the time of each call (also
    for a column slice, which oneDNN takes as a copy)."""
    monkeypatch.setenv("GENLEARN_FLOAT32_PRODUCTS", lib)
    a, b, bias = _operands(100, 500, 784, density=0.42)
    b = b.T.contiguous().T  # h @ W^T of the CD step: a transposed view
    if strided:
        a = torch.cat([a, a], 1)[:, :500]  # neither it nor its transpose is contiguous
    out = torch.empty(100, 784)
    calls = []
    real = P._linear()
    monkeypatch.setattr(P, "_linear", lambda: (lambda *args: calls.append(1) or real(*args)))
    run = P.bound_addmm(bias, a, b, out)
    monkeypatch.setenv("GENLEARN_FLOAT32_PRODUCTS", "torch" if lib == "onednn" else "onednn")
    for step in range(2):
        if step:
            a.mul_(0.5)
            b.sub_(0.25)  # in place: the bound call reads the new values
            bias.add_(1.0)
        run()
        exact = bias.double() + a.double() @ b.double()
        scale = (a.double().abs() @ b.double().abs()).max() + bias.double().abs().max()
        assert (out.double() - exact).abs().max() <= 1e-6 * scale
    assert calls == ([1, 1] if lib == "onednn" else [])


def test_a_cd_step_is_the_same_through_either_library(monkeypatch):
    """One PCD-1 step of a 784 x 500 RBM from the same state and uniforms: value, dW, db, dc and negatives through
    oneDNN equal those through torch.mm up to float32 summation order (the negatives are 0/1 draws from
    probabilities that differ by ~1e-7: a flip needs a uniform within that distance, none here)."""
    from genlearn.learning.rbm_gradients import cd_step, cd_workspace

    g = torch.Generator().manual_seed(1)
    W, b, c = 0.01 * torch.randn(784, 500, generator=g), torch.zeros(784), torch.zeros(500)
    x = (torch.rand(100, 784, generator=g) < 0.13).float()
    chains0 = (torch.rand(100, 784, generator=g) < 0.13).float()
    results = {}
    for lib in ("torch", "onednn"):
        monkeypatch.setenv("GENLEARN_FLOAT32_PRODUCTS", lib)
        ws = cd_workspace(None, W, batch=100, negatives=100, k=1)
        chains = chains0.clone()
        value, dW, db, dc, neg = cd_step(W, b, c, x, 1, torch.Generator().manual_seed(7), ws, chains)
        results[lib] = [t.clone() for t in (value, dW, db, dc, neg)]
    for got, ref in zip(results["onednn"], results["torch"]):
        assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6)


def _linear_operands(shape, k, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, k, generator=g)
    return x, torch.randn(n, k, generator=g) / k ** 0.5, torch.randn(n, generator=g)


@pytest.mark.parametrize("shape, k, n, with_bias", [((100,), 784, 200, True), ((3, 40), 785, 301, True),
                                                    ((100,), 200, 784, False)])
def test_linear_and_its_gradients_equal_the_float64_layer(monkeypatch, shape, k, n, with_bias):
    """x W^T + b and dL/dx, dL/dW, dL/db through oneDNN against F.linear in float64, for L = sum(c * y)."""
    monkeypatch.setenv("GENLEARN_FLOAT32_PRODUCTS", "onednn")
    x, w, b = _linear_operands(shape, k, n)
    b = b if with_bias else None
    c = torch.randn(*shape, n, generator=torch.Generator().manual_seed(1))
    leaves = [t.clone().requires_grad_() for t in (x, w, b) if t is not None]
    leaves64 = [t.detach().double().requires_grad_() for t in leaves]
    calls = []
    real = P._linear()
    monkeypatch.setattr(P, "_linear", lambda: (lambda *a: calls.append(1) or real(*a)))
    y = P.linear(leaves[0], leaves[1], leaves[2] if with_bias else None)
    y64 = torch.nn.functional.linear(leaves64[0], leaves64[1], leaves64[2] if with_bias else None)
    assert y.shape == y64.shape == (*shape, n)
    scale = float(k) ** 0.5
    assert (y.double() - y64).abs().max() <= 1e-5 * scale
    (y * c).sum().backward()
    (y64 * c.double()).sum().backward()
    assert len(calls) == 3  # the forward and both backward products went through oneDNN
    for mine, exact in zip(leaves, leaves64):
        assert (mine.grad.double() - exact.grad).abs().max() <= 1e-5 * scale * (100 if mine.dim() == 2 else 1)


def test_linear_keeps_torchs_layer_where_onednn_does_not_apply(monkeypatch):
    """float64, autocast, small products and a forced torch choice go to F.linear, unchanged."""
    calls = []
    real = P._linear()
    monkeypatch.setattr(P, "_linear", lambda: (lambda *a: calls.append(1) or real(*a)))
    monkeypatch.setenv("GENLEARN_FLOAT32_PRODUCTS", "onednn")
    x, w, b = _linear_operands((100,), 784, 200)
    assert torch.equal(P.linear(x.double(), w.double(), b.double()),
                       torch.nn.functional.linear(x.double(), w.double(), b.double()))
    assert torch.equal(P.linear(x[:2], w, b), torch.nn.functional.linear(x[:2], w, b))  # below MIN_FLOPS
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert P.linear(x, w, b).dtype == torch.bfloat16
    monkeypatch.setenv("GENLEARN_FLOAT32_PRODUCTS", "torch")
    assert torch.equal(P.linear(x, w, b), torch.nn.functional.linear(x, w, b))
    assert calls == []
    monkeypatch.setenv("GENLEARN_FLOAT32_PRODUCTS", "onednn")
    P.linear(x, w, b)
    assert calls == [1]


def _dense_layout(t):
    return t.is_contiguous() or t.T.is_contiguous()


def test_strided_operands_reach_onednn_dense_and_give_the_same_numbers(monkeypatch):
    """A column slice z[:, :40] of a (B, 80) tensor (the HVAE's z1) is neither contiguous nor a transpose of a
    contiguous tensor; oneDNN would take it to its reference kernel (581 ms against 1.2 ms for 1000 x 600 by
    1000 x 40), so mm and linear, forward and backward, hand oneDNN a dense copy, with the same numbers."""
    monkeypatch.setenv("GENLEARN_FLOAT32_PRODUCTS", "onednn")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1000, 80, generator=g)[:, :40]
    grad_out = torch.randn(1000, 600, generator=g)
    w = torch.randn(600, 40, generator=g)
    assert not _dense_layout(z)
    seen = []
    real = P._linear()
    monkeypatch.setattr(P, "_linear", lambda: (lambda a, b, *rest: seen.append((_dense_layout(a), _dense_layout(b)))
                                               or real(a, b, *rest)))
    exact = grad_out.double().T @ z.double()
    assert (P.mm(grad_out.T, z).double() - exact).abs().max() <= 1e-6 * exact.abs().max()  # float32 sums of 1,000
    zs = torch.randn(1000, 80, generator=g).requires_grad_()
    y = P.linear(zs[:, :40], w.requires_grad_())  # a tracked, strided operand
    (y * grad_out).sum().backward()
    y64 = zs.detach().double()[:, :40] @ w.detach().double().T
    assert (y.double() - y64).abs().max() <= 1e-6 * y64.abs().max()
    assert (w.grad.double() - grad_out.double().T @ zs.detach().double()[:, :40]).abs().max() <= 1e-3
    assert (zs.grad[:, :40].double() - grad_out.double() @ w.detach().double()).abs().max() <= 1e-3
    assert zs.grad[:, 40:].abs().max() == 0
    assert len(seen) == 4 and all(a and b for a, b in seen)  # mm, the forward, and both backward products
