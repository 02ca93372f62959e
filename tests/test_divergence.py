"""KL: invariants, known values, infinities, closed forms against enumeration / quadrature / Monte Carlo, and the
identity D_KL(Q^||P) = NLL - H(Q^). `kl_divergence` always returns an Estimate; the helpers kl_tables and
kl_enumerate return floats."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genlearn.divergence import (empirical_kl, kl_divergence, kl_enumerate, kl_monte_carlo, kl_quadrature,
                                 kl_tables)
from genlearn.errors import ConfigError, IntractableError
from genlearn.estimators.estimate import Estimate
from genlearn.models import Bernoulli, Categorical, Gaussian, PatternTable, ProductBernoulli


def _table(weights):
    t = torch.tensor(weights, dtype=torch.float64)
    return t / t.sum()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.01, 10), min_size=2, max_size=8), st.data())
def test_kl_non_negative_and_zero_only_for_equal(wp, data):
    wq = data.draw(st.lists(st.floats(0.01, 10), min_size=len(wp), max_size=len(wp)))
    p, q = _table(wp), _table(wq)
    kl = kl_tables(p, q)
    assert kl >= -1e-12
    assert kl_tables(p, p) == pytest.approx(0.0, abs=1e-12)
    if (p - q).abs().max() > 1e-3:
        assert kl > 0


def test_known_values_and_infinities():
    assert kl_tables([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(5))
    assert kl_tables([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2))  # 0 log 0 = 0
    assert kl_tables([0.5, 0.5], [1.0, 0.0]) == math.inf  # P > 0 where Q = 0
    coin = kl_divergence(Bernoulli(0.5), Bernoulli(0.9))
    assert isinstance(coin, Estimate) and coin.method == "closed-form" and coin.is_exact
    assert coin.value == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1), rel=1e-5)
    g = kl_divergence(Gaussian(1, mean=[0.0], std=[1.0]), Gaussian(1, mean=[1.0], std=[2.0]))
    assert g.value == pytest.approx(math.log(2) + (1 + 1) / (2 * 4) - 0.5, rel=1e-6)


def test_bad_tables_are_rejected():
    with pytest.raises(ConfigError, match="sum to 1"):
        kl_tables([0.5, 0.6], [0.5, 0.5])
    with pytest.raises(ConfigError, match="outcomes"):
        kl_tables([0.5, 0.5], [0.2, 0.3, 0.5])
    with pytest.raises(ConfigError, match="non-negative"):
        kl_tables([1.5, -0.5], [0.5, 0.5])


def test_enumeration_equals_closed_form_for_products():
    g = torch.Generator().manual_seed(0)
    p = ProductBernoulli(10, torch.rand(10, generator=g) * 0.9 + 0.05)
    q = ProductBernoulli(10, torch.rand(10, generator=g) * 0.9 + 0.05)
    assert kl_enumerate(p, q) == pytest.approx(kl_divergence(p, q).value, rel=1e-6)
    assert kl_divergence(p, q, method="enumerate").method == "exact enumeration"
    c1, c2 = Categorical(4, [0.1, 0.2, 0.3, 0.4]), Categorical(4, [0.25] * 4)
    assert kl_enumerate(c1, c2) == pytest.approx(kl_divergence(c1, c2).value, rel=1e-6)
    assert kl_divergence(c1, c2).value == pytest.approx(kl_tables([0.1, 0.2, 0.3, 0.4], [0.25] * 4), rel=1e-6)


def test_enumeration_limit_is_named():
    with pytest.raises(IntractableError, match="n <= 24"):
        kl_enumerate(ProductBernoulli(25), ProductBernoulli(25))
    with pytest.raises(IntractableError, match="method='mc'"):
        kl_divergence(PatternTable(torch.zeros(1, 25), torch.ones(1)), ProductBernoulli(25))


def test_continuous_kl_quadrature_and_monte_carlo_agree_with_closed_form():
    p, q = Gaussian(1, mean=[0.3], std=[0.7]), Gaussian(1, mean=[-1.0], std=[1.5])
    exact = kl_divergence(p, q).value
    quad = kl_quadrature(p, q)
    assert quad.value == pytest.approx(exact, abs=1e-6)
    mc = kl_monte_carlo(p, q, n_samples=200_000, seed=1)
    assert abs(mc.value - exact) < 4 * mc.stderr
    assert mc.stderr < 0.01
    # full-covariance closed form against Monte Carlo in 3-D
    a, b = Gaussian(3, "full"), Gaussian(3, "full")
    with torch.no_grad():
        a.off_diag.copy_(torch.tensor([0.5, -0.3, 0.2]))
        b.mean.copy_(torch.tensor([1.0, 0.0, -1.0]))
        b.log_diag.copy_(torch.tensor([0.3, 0.1, -0.2]))
    mc3 = kl_monte_carlo(a, b, n_samples=200_000, seed=2)
    assert abs(mc3.value - kl_divergence(a, b).value) < 4 * mc3.stderr


def test_empirical_kl_identity_in_float64():
    g = torch.Generator().manual_seed(5)
    x = torch.bernoulli(torch.full((500, 6), 0.3), generator=g)
    model = ProductBernoulli(6, torch.rand(6, generator=g) * 0.8 + 0.1).double()
    qhat = PatternTable.from_samples(x)
    direct = kl_enumerate(qhat, model)
    res = empirical_kl(model, x)
    assert res["kl"] == pytest.approx(direct, abs=1e-9)
    assert res["kl"] == pytest.approx(res["nll"] - res["entropy"], abs=1e-12)
    assert res["kl"] > 0


@pytest.mark.parametrize("method", ["auto", "mc", "quad", "enumerate"])
@pytest.mark.parametrize("pair,message", [
    ((lambda: Gaussian(1), lambda: Bernoulli(torch.tensor(0.3))), "cannot compare a real model with a binary model"),
    ((lambda: Bernoulli(torch.tensor(0.3)), lambda: Gaussian(1)), "cannot compare a binary model with a real model"),
    ((lambda: Gaussian(1), lambda: Categorical(4)), "cannot compare a real model with a categorical model"),
    ((lambda: Categorical(4), lambda: Bernoulli(torch.tensor(0.3))), "cannot compare a categorical model"),
    ((lambda: ProductBernoulli(3), lambda: ProductBernoulli(4)), "have 3 and 4 dimensions"),
    ((lambda: Categorical(4), lambda: Categorical(6)), "have 4 and 6 outcomes"),
])
def test_models_on_different_sample_spaces_are_refused_in_either_order_by_every_method(pair, message, method):
    """D_KL(P||Q) is defined for P and Q on one sample space: a real model against a binary one gave -1.2 nats by
    quadrature (one order only was checked), and Monte Carlo compared any two models' log P of one model's samples."""
    p, q = pair[0](), pair[1]()
    with pytest.raises(ConfigError, match=message):
        kl_divergence(p, q, method=method)


def test_kl_of_latent_models_by_quadrature_or_one_clear_refusal():
    """A VAE of 2 latent dimensions has log P(x) by quadrature over z: its exact KL to itself is 0 and to a
    perturbed copy positive. One of 3 latent dimensions has only estimates of log P(x): the exact KL pointed to
    `--method mc`, which then failed with a Python-only hint; both refuse in one message now."""
    import copy

    from genlearn.divergence import kl_divergence
    from genlearn.errors import IntractableError
    from genlearn.models.vae import VAE

    small = VAE(5, latent=2, hidden=[8])
    assert kl_divergence(small, small).value == pytest.approx(0.0, abs=1e-12)
    other = copy.deepcopy(small)
    with torch.no_grad():
        for param in other.parameters():  # the encoder's do not change P(x); the decoder's do
            param.add_(0.3)
    est = kl_divergence(small, other)
    assert est.value > 1e-6 and "quadrature over z" in est.method
    big = VAE(5, latent=3, hidden=[8])
    for method in ("auto", "mc"):
        with pytest.raises(IntractableError, match="its log P\\(x\\) is only an estimate"):
            kl_divergence(big, small, method=method)
