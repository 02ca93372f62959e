"""The fast paths of minibatch training: bit-packed minibatches, the 64-bit Bernoulli sampler, the CD rule's direct
gradient (matrix products into a reused workspace) and the exact log Z cache under in-place (fused) optimizer
updates. Each is checked against the plain computation it replaces."""
import math

import pytest
import torch

from genlearn import logistic_kernels
from genlearn.learning.batches import MinibatchSampler, is_binary_matrix
from genlearn.learning.rules import make_rule
from genlearn.models.rbm import RBM
from genlearn.numerics import sample_bernoulli


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_minibatches_are_the_rows_of_a_random_permutation(binary, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((103, 13), 0.3), generator=g).to(dtype)
    if not binary:
        x[5, 2] = 0.5
    sampler = MinibatchSampler(x, 10)
    assert (sampler.packed is not None) == binary
    batches = list(sampler.batches(torch.Generator().manual_seed(7)))
    perm = torch.randperm(103, generator=torch.Generator().manual_seed(7))
    assert [b.shape[0] for b in batches] == [10] * 10 + [3]
    assert all(b.dtype == dtype for b in batches)
    assert torch.equal(torch.cat(batches), x[perm])


@pytest.mark.parametrize("n", [1, 8, 13, 784])
def test_the_compiled_unpack_equals_numpys(n):
    """binary_kernels.unpack_rows (gather + unpack in one pass) against numpy.unpackbits of the same rows, repeated
    rows included; dtypes it does not take give None (the sampler then unpacks with numpy)."""
    from genlearn import binary_kernels
    from genlearn.data.bitpack import pack_rows, unpack_rows

    x = torch.bernoulli(torch.full((40, n), 0.4), generator=torch.Generator().manual_seed(n))
    packed = pack_rows(x)
    rows = torch.tensor([3, 0, 39, 3, 17], dtype=torch.int64)
    for dtype in (torch.float32, torch.float64):
        got = binary_kernels.unpack_rows(packed, rows, n, dtype)
        if not binary_kernels.available():
            assert got is None
            continue
        assert got.dtype == dtype and torch.equal(got, unpack_rows(packed[rows.numpy()], n, dtype))
        assert torch.equal(got, x[rows].to(dtype))
    assert binary_kernels.unpack_rows(packed, rows, n, torch.float16) is None


def test_is_binary_matrix():
    assert is_binary_matrix(torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    assert not is_binary_matrix(torch.tensor([[0.0, 2.0]]))
    assert not is_binary_matrix(torch.tensor([[0.0, float("nan")]]))
    assert not is_binary_matrix(torch.tensor([0.0, 1.0]))


def test_fast_bernoulli_sampler_has_the_right_means_and_independent_halves():
    """float32 draws: frequencies within 5 standard errors of p, including p near 0 and 1; the two 32-bit halves
    of each 64-bit word are uncorrelated (adjacent draws)."""
    g = torch.Generator().manual_seed(3)
    p = torch.tensor([0.0, 1e-3, 0.1, 0.5, 0.9, 0.999, 1.0]).repeat(200_000, 1)
    x = sample_bernoulli(p, g)
    assert x.dtype == torch.float32 and set(x.unique().tolist()) <= {0.0, 1.0}
    freq = x.mean(0)
    se = torch.sqrt(p[0] * (1 - p[0]) / p.shape[0]).clamp_min(1e-9)
    assert torch.all((freq - p[0]).abs() <= 5 * se + 1e-12), (freq, p[0])
    half = sample_bernoulli(torch.full((400_000,), 0.5), g)
    a, b = half[0::2], half[1::2]
    corr = float(((a - 0.5) * (b - 0.5)).mean() / 0.25)
    assert abs(corr) < 5 / math.sqrt(a.numel())


def test_cd_rule_writes_the_autograd_gradient_of_its_surrogate_into_a_reused_workspace():
    """The CD/PCD rule sets p.grad to exactly the autograd gradient of mean F(x) - mean F(v~) (v~ held fixed),
    without an autograd graph, and the gradients are views of one workspace reused from step to step (no
    allocation per batch); the PCD chains are updated in place."""
    x = torch.bernoulli(torch.full((20, 12), 0.4), generator=torch.Generator().manual_seed(1))
    for persistent in (False, True):
        model = RBM(12, 7, seed=2, init_std=0.3).double()
        rule = make_rule("contrastive-divergence", {"k": 2, "persistent": persistent, "n_chains": 9})
        g = torch.Generator().manual_seed(5)
        pointers = None
        for step in range(3):
            for p in model.parameters():
                p.grad = None
            chains_before = None if rule.chains is None else rule.chains.clone()
            value = rule.compute_gradient(model, x, g)
            grads = [p.grad for p in model.parameters()]
            negatives = rule._workspace["rows"][x.shape[0]:]
            if persistent and chains_before is not None:
                assert not torch.equal(chains_before, rule.chains)
                assert torch.equal(rule.chains, negatives)
            W, b, c = (p.detach().clone().requires_grad_() for p in model.parameters())

            def free(v):
                return -(v @ b) - torch.nn.functional.softplus(v @ W + c).sum(-1)

            surrogate = free(x.double()).mean() - free(negatives.clone()).mean()
            surrogate.backward()
            assert float(value) == pytest.approx(float(surrogate), abs=1e-12)
            for mine, ref in zip(grads, (W.grad, b.grad, c.grad)):
                assert torch.allclose(mine, ref, atol=1e-12)
            now = [t.data_ptr() for t in grads]
            assert pointers is None or now == pointers  # the same workspace every step
            pointers = now


def test_exact_log_z_is_recomputed_after_a_fused_optimizer_step():
    """Fused optimizers change parameters without bumping their version counters: the cached exact log Z must
    still follow the values."""
    model = RBM(6, 4, seed=0, init_std=0.5)
    before = model.log_partition(method="exact").value
    opt = torch.optim.SGD(model.parameters(), lr=0.5, fused=True)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    after = model.log_partition(method="exact").value
    fresh = RBM(6, 4, seed=0, init_std=0.5)
    fresh.load_state_dict(model.state_dict())
    assert after != before
    assert after == pytest.approx(fresh.log_partition(method="exact").value, abs=1e-12)


@pytest.mark.parametrize("name,elementwise", [("sigmoid_tanh", "auto"), ("tanh", "auto"), ("tanh", "genlearn"),
                                               ("tanh", "torch")])
def test_sigmoid_tanh_equals_tanh_and_its_derivative(name, elementwise, monkeypatch):
    """genlearn.numerics.sigmoid_tanh = 2 sigmoid(2a) - 1 (and `tanh`, the compiled kernel or the sigmoid form where
    the timing finds it faster or GENLEARN_ELEMENTWISE=genlearn asks for it, torch.tanh elsewhere): torch.tanh to
    rounding over the whole range (float32: 2.4e-7 absolute, float64: 1e-15), and the gradient 1 - tanh^2 by
    autograd and by finite differences (gradcheck)."""
    import genlearn.numerics as numerics

    monkeypatch.setenv("GENLEARN_ELEMENTWISE", elementwise)
    if elementwise != "auto":  # genlearn's forms: the compiled kernel where numba is present, else the sigmoid form
        genlearn_form = "compiled" if logistic_kernels.available() else "sigmoid_form"
        assert numerics.tanh_form(torch.zeros(1)) == (genlearn_form if elementwise == "genlearn" else "torch")

    tanh = getattr(numerics, name)
    a = torch.cat([torch.linspace(-30, 30, 100_001), torch.tensor([0.0, -0.0, 1e-30, -1e-8, 88.0, -100.0])])
    assert (tanh(a) - torch.tanh(a)).abs().max() <= 2.4e-7
    assert (tanh(a.double()) - torch.tanh(a.double())).abs().max() <= 1e-15
    x = torch.linspace(-4, 4, 41, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(tanh(x).sum(), x)
    torch.testing.assert_close(g, 1 - torch.tanh(x.detach()) ** 2, atol=1e-15, rtol=0)
    assert torch.autograd.gradcheck(tanh, (x[:7],))


def test_column_means_are_exact_for_binary_float32_and_close_otherwise():
    """float32 chunks summed in float32, then in float64: exact counts for 0/1 rows (more rows than a chunk, so
    that several chunk sums are added), and within 1e-6 relative of the float64 mean for continuous values."""
    from genlearn.numerics import column_means

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(20_000, 37, generator=g) < 0.3).float()
    counts = x.to(torch.int64).sum(0)
    assert torch.equal(column_means(x, chunk=8192), counts.double() / 20_000)
    y = torch.rand(20_000, 37, generator=g) * 0.9 + 0.05
    exact = y.double().mean(0)
    assert ((column_means(y) - exact).abs() / exact).max() < 1e-6
    assert torch.equal(column_means(y.double()), y.double().sum(0) / 20_000)
