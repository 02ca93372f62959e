"""The fast paths of minibatch training: bit-packed minibatches, the 64-bit Bernoulli sampler, the RBM's direct
gradient and the exact log Z cache under in-place (fused) optimizer updates. Each is checked against the plain
computation it replaces."""
import math

import pytest
import torch

from genlearn.learning.batches import MinibatchSampler, is_binary_matrix
from genlearn.models.rbm import RBM, sample_bernoulli


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


def test_rbm_write_gradient_equals_the_autograd_gradient_of_loss():
    """The trainer's direct path sets p.grad to exactly what loss(x).backward() gives (same random draws)."""
    x = torch.bernoulli(torch.full((20, 12), 0.4), generator=torch.Generator().manual_seed(1))
    for gradient in ("cd", "pcd"):
        a = RBM(12, 7, k=2, gradient=gradient, n_chains=9, seed=2, init_std=0.3)
        b = RBM(12, 7, k=2, gradient=gradient, n_chains=9, seed=2, init_std=0.3)
        value_a = a.write_gradient(x, torch.Generator().manual_seed(5))
        loss_b = b.loss(x, torch.Generator().manual_seed(5))
        loss_b.backward()
        assert torch.allclose(value_a, loss_b.detach())
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert torch.equal(pa.grad, pb.grad)
        assert torch.equal(a.chains, b.chains)


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
