"""Core families: gradients against finite differences of the empirical KL, gradient descent against the
closed-form MLE, normalisation by enumeration, sampling against the parameters."""
import math

import pytest
import torch

from genlearn.data.empirical import EmpiricalDistribution
from genlearn.divergence import empirical_kl
from genlearn.enumeration import all_states
from genlearn.learning import TrainConfig, Trainer
from genlearn.models import Bernoulli, Categorical, Gaussian, PatternTable, ProductBernoulli
from genlearn.data.dataset import Dataset


def _binary(m, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, generator=g) * 0.8 + 0.1
    return torch.bernoulli(p.expand(m, n), generator=g).double()


def _objective(model, x, kind):
    """The empirical KL (NLL - H(Q^)); for real data H is a constant, so the NLL."""
    res = empirical_kl(model, x, kind)
    return res["kl"] if res["kl"] is not None else res["nll"]


def _fd_check(model, x, kind, eps=1e-6, tol=1e-6):
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    model.zero_grad()
    model.loss(x).backward()
    for p in model.parameters():
        flat, grad = p.data.view(-1), p.grad.view(-1)
        for i in range(flat.numel()):
            old = float(flat[i])
            flat[i] = old + eps
            up = _objective(model, x, kind)
            flat[i] = old - eps
            down = _objective(model, x, kind)
            flat[i] = old
            assert (up - down) / (2 * eps) == pytest.approx(float(grad[i]), abs=tol, rel=1e-5)


def test_gradients_equal_finite_differences_of_empirical_kl():
    _fd_check(Bernoulli(), _binary(50, 1), "binary")
    _fd_check(ProductBernoulli(5), _binary(80, 5), "binary")
    die = torch.randint(0, 4, (100,), generator=torch.Generator().manual_seed(1))
    _fd_check(Categorical(4), die, "categorical")
    real = torch.randn(60, 3, generator=torch.Generator().manual_seed(2)).double() * 2 + 1
    _fd_check(Gaussian(3, "diag"), real, "real")
    _fd_check(Gaussian(3, "full"), real, "real")


def _dataset(kind, train, **kw):
    return Dataset(name="t", kind=kind, train=train, **kw)


@pytest.mark.parametrize("case", ["coin", "die", "product", "gauss-diag", "gauss-full"])
def test_gradient_descent_converges_to_closed_form_mle(case):
    g = torch.Generator().manual_seed(3)
    if case == "coin":
        x, model, ds = _binary(300, 1).float(), Bernoulli(), None
        ds, lr, epochs, opt = _dataset("binary", x), 2.0, 400, "gd"
    elif case == "die":
        x = torch.multinomial(torch.tensor([0.4, 0.3, 0.2, 0.1]), 500, replacement=True, generator=g)
        model, ds, lr, epochs, opt = Categorical(4), _dataset("categorical", x, n_categories=4), 5.0, 400, "gd"
    elif case == "product":
        x = _binary(400, 6).float()
        model, ds, lr, epochs, opt = ProductBernoulli(6), _dataset("binary", x), 2.0, 600, "gd"
    else:
        cov = "diag" if case == "gauss-diag" else "full"
        A = torch.tensor([[1.0, 0.0], [0.8, 0.5]])
        x = torch.randn(500, 2, generator=g) @ A.T + torch.tensor([1.0, -2.0])
        model, ds, lr, epochs, opt = Gaussian(2, cov), _dataset("real", x), 0.05, 800, "adam"
    Trainer(model, ds, TrainConfig(epochs=epochs, lr=lr, optimizer=opt, progress=False)).fit()
    mle = type(model)(**model.config()).fit_closed_form(x)
    if case == "die":  # logits are defined up to a constant: compare the probabilities
        assert torch.allclose(model.probs, mle.probs, atol=1e-4)
        return
    for p, q in zip(model.parameters(), mle.parameters()):
        assert torch.allclose(p, q, atol=2e-3), (case, p, q)


def test_closed_form_mle_values():
    x = torch.tensor([[1.0], [0.0], [1.0], [1.0]])
    assert Bernoulli().fit_closed_form(x).p == pytest.approx(0.75, abs=1e-6)
    die = Categorical(3).fit_closed_form(torch.tensor([0, 0, 1, 2, 2, 2]))
    assert torch.allclose(die.probs, torch.tensor([2 / 6, 1 / 6, 3 / 6]), atol=1e-6)
    real = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    gauss = Gaussian(2, "full").fit_closed_form(real)
    assert torch.allclose(gauss.mean, real.mean(0), atol=1e-6)
    expected = torch.cov(real.T, correction=0)
    assert torch.allclose(gauss.covariance_matrix, expected, atol=1e-4)


def test_probabilities_sum_to_one_over_enumerated_space():
    states = all_states(7)
    pb = ProductBernoulli(7, torch.rand(7))
    assert float(torch.logsumexp(pb.log_prob(states).detach().double(), 0)) == pytest.approx(0.0, abs=1e-6)
    coin = Bernoulli(0.3)
    assert float(torch.exp(coin.log_prob(all_states(1))).sum()) == pytest.approx(1.0, abs=1e-6)
    die = Categorical(5, [0.1, 0.2, 0.3, 0.15, 0.25])
    assert float(torch.exp(die.log_prob(torch.arange(5))).sum()) == pytest.approx(1.0, abs=1e-6)
    table = PatternTable(torch.tensor([[0.0, 1.0], [1.0, 1.0]]), torch.tensor([0.25, 0.75]))
    lp = table.log_prob(all_states(2))
    assert float(torch.exp(lp).sum()) == pytest.approx(1.0)
    assert lp[0] == -math.inf


def test_gaussian_log_prob_matches_torch_distributions():
    g = Gaussian(3, "full")
    with torch.no_grad():
        g.mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        g.log_diag.copy_(torch.tensor([0.1, -0.3, 0.2]))
        g.off_diag.copy_(torch.tensor([0.4, -0.2, 0.3]))
    x = torch.randn(10, 3)
    ref = torch.distributions.MultivariateNormal(g.mean, scale_tril=g.scale_tril()).log_prob(x)
    assert torch.allclose(g.log_prob(x), ref, atol=1e-5)


@pytest.mark.parametrize("model", [Bernoulli(0.3), ProductBernoulli(4, [0.1, 0.5, 0.7, 0.9]),
                                   Categorical(3, [0.2, 0.5, 0.3])])
def test_samples_match_parameters(model):
    x = model.sample(40_000, torch.Generator().manual_seed(0))
    if isinstance(model, Categorical):
        freq = torch.bincount(x, minlength=3).double() / x.numel()
    else:
        freq = x.double().mean(0)
    # 5 standard errors of a frequency from 40,000 draws (<= 0.0125)
    assert torch.allclose(freq, model.probs.detach().double(), atol=5 * 0.5 / math.sqrt(40_000))


def test_empirical_distribution_entropy():
    x = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    q = EmpiricalDistribution.from_samples(x)
    assert q.counts.sum() == 4 and q.patterns.shape == (3, 2)
    assert q.entropy() == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
