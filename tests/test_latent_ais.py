"""AIS, BDMC and quadrature of a latent-variable marginal likelihood (genlearn.estimators.latent_ais) against the
closed form of a linear-Gaussian model: z ~ N(0, I_D), x|z ~ N(W z + b, s^2 I), log P(x) = log N(x; b, W W^T +
s^2 I), whose posterior P(z|x) = N(S W^T (x - b) / s^2, S), S = (I + W^T W / s^2)^-1, is sampled exactly."""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from genlearn.errors import ConfigError, NumericalError
from genlearn.estimators.estimate import Estimate
from genlearn.estimators.latent_ais import (ais_estimate, ais_log_weights, bdmc, log_marginal_from_weights,
                                            quadrature_log_marginal, sigmoid_schedule)

LOG_2PI = math.log(2 * math.pi)


class LinearGaussian:
    """The oracle model, float64; W may be a Parameter (gradients must never reach its .grad)."""

    def __init__(self, D: int, n: int, s: float, seed: int = 0, parameter: bool = False):
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(n, D, generator=g, dtype=torch.float64)
        self.W = torch.nn.Parameter(W) if parameter else W
        self.b = torch.randn(n, generator=g, dtype=torch.float64)
        self.D, self.n, self.s = D, n, s

    def log_prior(self, z):
        return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)

    def log_likelihood(self, x, z):
        mean = z @ self.W.T + self.b
        return -0.5 * (((x - mean) / self.s).pow(2) + LOG_2PI + 2 * math.log(self.s)).sum(-1)

    def sample_prior(self, n, generator=None):
        return torch.randn(n, self.D, generator=generator, dtype=torch.float64)

    def sample_data(self, z, generator=None):
        with torch.no_grad():
            mean = z @ self.W.T + self.b
        return mean + self.s * torch.randn(mean.shape, generator=generator, dtype=torch.float64)

    def log_marginal(self, x):
        with torch.no_grad():
            cov = self.W @ self.W.T + self.s ** 2 * torch.eye(self.n, dtype=torch.float64)
            return MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x)

    def sample_posterior(self, x, k, generator):
        """k exact draws of P(z|x) per row: (k, B, D)."""
        with torch.no_grad():
            W = self.W.detach()
            cov = torch.linalg.inv(torch.eye(self.D, dtype=torch.float64) + W.T @ W / self.s ** 2)
            mean = (x - self.b) @ W @ cov / self.s ** 2                                 # (B, D)
            L = torch.linalg.cholesky(cov)
            eps = torch.randn(k, *mean.shape, generator=generator, dtype=torch.float64)
            return mean + eps @ L.T

    def data(self, rows, seed):
        g = torch.Generator().manual_seed(seed)
        return self.sample_data(self.sample_prior(rows, g), g)


def forward_and_reverse(model, x, steps, chains, seed):
    g = torch.Generator().manual_seed(seed)
    z_fwd = model.sample_prior(chains * x.shape[0], g).reshape(chains, x.shape[0], model.D)
    fwd = ais_log_weights(model.log_prior, model.log_likelihood, x, z_fwd, steps, generator=g)
    rev = ais_log_weights(model.log_prior, model.log_likelihood, x, model.sample_posterior(x, chains, g), steps,
                          reverse=True, generator=g)
    return fwd, rev, log_marginal_from_weights(fwd["log_weights"]), log_marginal_from_weights(rev["log_weights"],
                                                                                              reverse=True)


def test_schedule_is_sigmoid_from_zero_to_one():
    beta = torch.tensor(sigmoid_schedule(50), dtype=torch.float64)
    assert beta[0] == 0 and beta[-1] == 1 and beta.numel() == 51
    assert (beta.diff() > 0).all()
    # symmetric about the middle, smallest increments at the ends
    assert torch.allclose(beta + beta.flip(0), torch.ones(51, dtype=torch.float64), atol=1e-12)
    assert beta.diff()[0] < beta.diff()[25]


@pytest.mark.parametrize("D", [1, 2])
def test_quadrature_matches_closed_form(D):
    model = LinearGaussian(D, 4, 0.5, seed=D)
    x = model.data(6, seed=10 + D)
    got = quadrature_log_marginal(model.log_prior, model.log_likelihood, x, D)
    assert got.dtype == torch.float64 and got.shape == (6,)
    assert torch.allclose(got, model.log_marginal(x), atol=1e-6, rtol=0)


def test_quadrature_bad_dim():
    model = LinearGaussian(3, 4, 0.5)
    with pytest.raises(ConfigError):
        quadrature_log_marginal(model.log_prior, model.log_likelihood, model.data(2, 0), 3)


def test_ais_brackets_the_truth_and_tightens_with_steps():
    model = LinearGaussian(2, 4, 0.5, seed=1)
    x = model.data(24, seed=4)
    truth = model.log_marginal(x)
    fwd, rev, lower, upper = forward_and_reverse(model, x, 200, 16, seed=5)
    assert fwd["direction"] == "forward" and rev["direction"] == "reverse"
    assert fwd["log_weights"].shape == (16, 24) and fwd["log_weights"].dtype == torch.float64
    assert lower.shape == (24,) and lower.dtype == torch.float64
    # per row within about 0.1 nats at 200 steps x 16 chains (the AIS noise of this model at these settings)
    assert (lower - truth).abs().mean() < 0.15 and (upper - truth).abs().mean() < 0.15
    assert -0.1 < (lower - truth).mean() < 0.03       # a stochastic lower bound, up to noise
    assert -0.05 < (upper - truth).mean() < 0.1       # a stochastic upper bound, up to noise
    assert 0.3 < fwd["accept_rate"] < 0.99 and 0.3 < rev["accept_rate"] < 0.99
    assert fwd["transitions"] == 199 and 1e-4 <= fwd["step_size"] <= 0.5
    _, _, lower20, upper20 = forward_and_reverse(model, x, 20, 16, seed=5)
    gap20, gap200 = float((upper20 - lower20).mean()), float((upper - lower).mean())
    assert gap20 > gap200 + 0.1
    assert (lower20 - truth).mean() < 0 < (upper20 - truth).mean()


def test_one_step_is_importance_sampling_from_the_prior():
    """steps = 1: log w = log P(x|z0) with z0 ~ p(z), and no transition."""
    model = LinearGaussian(1, 3, 0.5)
    x = model.data(3, 0)
    z0 = model.sample_prior(12).reshape(4, 3, 1)
    out = ais_log_weights(model.log_prior, model.log_likelihood, x, z0, 1)
    assert torch.allclose(out["log_weights"], model.log_likelihood(x, z0))
    assert out["accept_rate"] is None and out["transitions"] == 0


def test_hmc_leaves_the_posterior_invariant():
    """HMC transitions at beta = 1 started from exact posterior draws keep the posterior's mean and covariance."""
    from genlearn.estimators.latent_ais import _evaluate, _hmc

    model = LinearGaussian(2, 4, 0.5, seed=7)
    x = model.data(1, seed=8)
    g = torch.Generator().manual_seed(9)
    z = model.sample_posterior(x, 2000, g)                                    # (2000, 1, 2)
    state = _evaluate(model.log_prior, model.log_likelihood, x, z)
    eps = torch.full(z.shape[:2], 0.3, dtype=torch.float64)
    accepted = 0.0
    for _ in range(20):
        state, acc = _hmc(model.log_prior, model.log_likelihood, x, state, 1.0, eps, 5, g)
        accepted += float(acc.double().mean())
    ref = model.sample_posterior(x, 2000, g)
    zs, ref = state.z[:, 0], ref[:, 0]
    assert 0.3 < accepted / 20 <= 1.0
    sd = ref.std(0)
    assert ((zs.mean(0) - ref.mean(0)).abs() < 4 * sd / math.sqrt(1000)).all()
    assert torch.allclose(torch.cov(zs.T), torch.cov(ref.T), atol=0.2 * float(sd.pow(2).max()))


def test_ais_estimate_and_no_parameter_grad():
    model = LinearGaussian(2, 3, 0.5, seed=11, parameter=True)
    x = model.data(10, seed=12)
    est, log_p = ais_estimate(model.log_prior, model.log_likelihood, model.sample_prior, x, 100, chains=8,
                              seed=1, batch_rows=4)
    assert model.W.grad is None
    assert isinstance(est, Estimate) and est.method == "ais"
    assert log_p.shape == (10,) and log_p.dtype == torch.float64
    truth = model.log_marginal(x)
    assert (log_p - truth).abs().mean() < 0.3 and abs(est.value + float(truth.mean())) < 0.15
    assert est.value == pytest.approx(-float(log_p.mean()))
    assert est.stderr == pytest.approx(float(log_p.std()) / math.sqrt(10))
    assert est.lower == -math.inf and est.upper == math.inf
    d = est.details
    assert d["steps"] == 100 and d["chains"] == 8 and d["rows"] == 10 and d["schedule"] == "sigmoid"
    assert 0.3 < d["accept_rate"] < 0.99 and 1e-4 <= d["step_size"] <= 0.5
    # the seed makes it reproducible
    runs = [ais_estimate(model.log_prior, model.log_likelihood, model.sample_prior, x, 5, chains=4, seed=seed,
                         batch_rows=3) for seed in (1, 1, 2)]
    assert torch.equal(runs[0][1], runs[1][1]) and not torch.equal(runs[0][1], runs[2][1])
    assert model.W.grad is None


def test_bdmc_brackets_the_closed_form():
    model = LinearGaussian(2, 4, 0.5, seed=13)
    seen = []

    def sample_data(z, generator):
        x = model.sample_data(z, generator)
        seen.append(x)
        return x

    out = bdmc(model.log_prior, model.log_likelihood, model.sample_prior, sample_data, rows=16, steps=200,
               chains=8, seed=0)
    truth = float(model.log_marginal(seen[0]).mean())
    assert out["gap"] == pytest.approx(out["reverse_log_p"] - out["forward_log_p"])
    assert -0.1 < out["gap"] < 0.5
    assert out["forward_log_p"] - 0.1 <= truth <= out["reverse_log_p"] + 0.1
    assert out["rows"] == 16 and out["steps"] == 200 and out["chains"] == 8 and out["leapfrog"] == 10
    assert 0.3 < out["accept_rate_forward"] < 0.99 and 0.3 < out["accept_rate_reverse"] < 0.99


def test_bad_settings():
    model = LinearGaussian(1, 3, 0.5)
    x = model.data(2, 0)
    z0 = model.sample_prior(4).reshape(2, 2, 1)
    with pytest.raises(ConfigError):
        ais_log_weights(model.log_prior, model.log_likelihood, x, z0, 0)
    with pytest.raises(ConfigError):
        ais_estimate(model.log_prior, model.log_likelihood, model.sample_prior, x, 0)
    with pytest.raises(ConfigError):
        ais_log_weights(model.log_prior, model.log_likelihood, x, z0[:, :1], 5)        # rows disagree
    with pytest.raises(ConfigError):
        ais_log_weights(model.log_prior, model.log_likelihood, x, z0, 5, leapfrog=0)


def test_non_finite_likelihood_raises_numerical_error():
    model = LinearGaussian(1, 3, 0.5)
    x = model.data(2, 0)
    z0 = model.sample_prior(8).reshape(4, 2, 1)

    def nan_likelihood(x, z):
        return model.log_likelihood(x, z) * math.nan

    with pytest.raises(NumericalError):
        ais_log_weights(model.log_prior, nan_likelihood, x, z0, 5)


def test_ais_metrics_of_a_generator_without_encoder_matches_quadrature():
    """A GAN generator (no encoder): ais_metrics gives forward AIS over z and BDMC but no importance-sampling
    comparison; with a 2-D latent space its AIS NLL on the model's own rows agrees with quadrature over z (exact to
    the grid, the oracle) within 0.1 nats and the BDMC gap is below 0.1, where one AIS step (importance sampling
    from the prior) is off by more than 0.3 nats: the check separates a working AIS from a failing one."""
    from genlearn.evaluation import ais_metrics
    from genlearn.likelihood import latent_nll
    from genlearn.models.gan import GAN

    torch.manual_seed(0)
    model = GAN(12, latent=2, hidden=(8,), critic_hidden=(4,), seed=1)
    with torch.no_grad():
        model.gen_out.weight.mul_(4.0)  # a posterior narrower than the prior: AIS has work to do
    x = model.sample(40, torch.Generator().manual_seed(2))
    exact = latent_nll(model, x, "quadrature").value
    settings = {"ais_rows": 40, "ais_chains": 4, "ais_leapfrog": 5, "bdmc_rows": 10}
    out = ais_metrics(model, x, seed=0, ais_steps=200, **settings)
    assert "ais_is_nll" not in out and out["ais_rows"] == 40
    assert abs(out["ais_test_nll"] - exact) <= 0.1
    assert -0.05 <= out["bdmc_gap"] <= 0.1
    one_step = ais_metrics(model, x, seed=0, ais_steps=1, **settings)
    assert one_step["ais_test_nll"] - exact > 0.3 and one_step["bdmc_gap"] > 0.3


@pytest.mark.parametrize("chunk", [1, 7, 1 << 19])
def test_quadrature_chunks_add_up_to_the_whole_grid(monkeypatch, chunk):
    """The grid is summed chunk by chunk into one (B,) accumulator: any chunk size gives the log-sum-exp over the
    whole (grid x rows) table computed at once (the oracle, float64), and the probabilities of all 2^4 states
    sum to 1 up to the grid (a linear Bernoulli decoder, prior N(0, I) on [-8, 8]^2)."""
    import genlearn.estimators.latent_ais as latent_ais
    from genlearn.enumeration import all_states

    monkeypatch.setattr(latent_ais, "QUADRATURE_DECODER_CHUNK", chunk)
    weight = torch.tensor([[1.5, -0.5], [0.3, 2.0], [-1.0, 0.7], [0.0, -1.2]], dtype=torch.float64)
    bias = torch.tensor([0.2, -0.4, 0.1, 0.5], dtype=torch.float64)

    def decoder_logits(z):
        return z @ weight.T + bias

    def log_prior(z):
        return -0.5 * (z ** 2).sum(-1) - math.log(2 * math.pi)

    def log_likelihood(x, z):
        logits = decoder_logits(z)
        return (x * logits - torch.nn.functional.softplus(logits)).sum(-1)

    x = all_states(4, dtype=torch.float64)
    got = quadrature_log_marginal(log_prior, log_likelihood, x, 2, points=41, decoder_logits=decoder_logits)
    axis = torch.linspace(-8, 8, 41, dtype=torch.float64)
    h = 16 / 40
    w = torch.full((41,), h, dtype=torch.float64)
    w[0] = w[-1] = h / 2
    a, b = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([a.reshape(-1), b.reshape(-1)], -1)
    log_w = (w[:, None] * w[None, :]).reshape(-1).log()
    table = log_prior(grid)[:, None] + log_likelihood(x[None, :, :], grid[:, None, :]) + log_w[:, None]
    torch.testing.assert_close(got, torch.logsumexp(table, 0), rtol=0, atol=1e-12)
    assert float(torch.logsumexp(got, 0)) == pytest.approx(0.0, abs=1e-6)
