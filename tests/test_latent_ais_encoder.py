"""AIS over z started at an encoder's q(z|x) (genlearn.estimators.latent_ais, `proposal`): checked against the closed
form of the linear-Gaussian model of test_latent_ais (an imperfect Gaussian q of known density), against quadrature
on a VAE with a 2-D latent space, and through the evaluation options."""
from __future__ import annotations

import math

import pytest
import torch

from genlearn.errors import ConfigError
from genlearn.estimators.latent_ais import ais_estimate, ais_log_weights, bdmc, log_marginal_from_weights
from test_latent_ais import LinearGaussian

LOG_2PI = math.log(2 * math.pi)


def imperfect_proposal(model: LinearGaussian, shift: float = 0.4, widen: float = 1.8):
    """proposal(x) -> (sample, log_density): a diagonal Gaussian q(z|x) with the exact posterior's mean moved by
    `shift` and its marginal variances times `widen`, like an encoder that is close to P(z|x) but not equal."""
    W = model.W.detach()
    cov = torch.linalg.inv(torch.eye(model.D, dtype=torch.float64) + W.T @ W / model.s ** 2)
    var = widen * torch.diagonal(cov)

    def proposal(x):
        mean = (x - model.b) @ W @ cov / model.s ** 2 + shift

        def sample(k, generator=None):
            eps = torch.randn(k, *mean.shape, generator=generator, dtype=torch.float64)
            return mean + var.sqrt() * eps

        def log_density(z):
            return -0.5 * (LOG_2PI + var.log() + (z - mean).pow(2) / var).sum(-1)

        return sample, log_density

    return proposal


def test_one_step_from_the_encoder_is_importance_sampling_with_q():
    """T = 1: log w = log p(z0) + log P(x|z0) - log q(z0|x) with z0 ~ q: plain importance sampling."""
    model = LinearGaussian(2, 4, 0.5, seed=3)
    x = model.data(5, seed=1)
    sample, log_q = imperfect_proposal(model)(x)
    z0 = sample(7, torch.Generator().manual_seed(2))
    out = ais_log_weights(model.log_prior, model.log_likelihood, x, z0, 1, log_proposal=log_q)
    expected = model.log_prior(z0) + model.log_likelihood(x, z0) - log_q(z0)
    assert torch.allclose(out["log_weights"], expected, atol=1e-12)
    assert out["start"] == "encoder" and out["transitions"] == 0


def test_encoder_start_brackets_the_truth_and_beats_the_prior_start():
    """Forward AIS from q is a stochastic lower bound, reverse AIS back to q an upper bound of log P(x); at a short
    path both sit much nearer the truth than the same path from the prior."""
    model = LinearGaussian(2, 6, 0.3, seed=5)
    x = model.data(40, seed=6)
    truth = model.log_marginal(x)
    proposal = imperfect_proposal(model)
    sample, log_q = proposal(x)
    g = torch.Generator().manual_seed(7)
    steps, chains = 10, 4
    fwd = ais_log_weights(model.log_prior, model.log_likelihood, x, sample(chains, g), steps, generator=g,
                          log_proposal=log_q)
    rev = ais_log_weights(model.log_prior, model.log_likelihood, x, model.sample_posterior(x, chains, g), steps,
                          reverse=True, generator=g, log_proposal=log_q)
    lower = log_marginal_from_weights(fwd["log_weights"]) - truth
    upper = log_marginal_from_weights(rev["log_weights"], reverse=True) - truth
    # 40 rows, per-row noise ~0.3 nats at 4 chains: the means within ~3 standard errors of their side
    assert -0.2 < float(lower.mean()) <= 0.05 and -0.05 <= float(upper.mean()) < 0.3
    z_prior = model.sample_prior(chains * x.shape[0], g).reshape(chains, x.shape[0], model.D)
    from_prior = ais_log_weights(model.log_prior, model.log_likelihood, x, z_prior, steps, generator=g)
    prior_error = float((log_marginal_from_weights(from_prior["log_weights"]) - truth).mean())
    assert prior_error < -1.0  # a 10-step path from the prior is still far off here
    assert abs(float(lower.mean())) < 0.1 * abs(prior_error), prior_error


def test_ais_estimate_and_bdmc_take_the_proposal():
    model = LinearGaussian(2, 4, 0.5, seed=11, parameter=True)
    proposal = imperfect_proposal(model)
    x = model.data(12, seed=12)
    est, log_p = ais_estimate(model.log_prior, model.log_likelihood, model.sample_prior, x, 30, chains=4, seed=1,
                              batch_rows=5, proposal=proposal)
    assert est.details["start"] == "encoder" and model.W.grad is None
    assert abs(est.value + float(model.log_marginal(x).mean())) < 0.3  # 12 rows x 4 chains at 30 steps
    seen = []

    def sample_data(z, generator):
        seen.append(model.sample_data(z, generator))
        return seen[-1]

    out = bdmc(model.log_prior, model.log_likelihood, model.sample_prior, sample_data, rows=16, steps=30, chains=4,
               seed=0, proposal=proposal)
    truth = float(model.log_marginal(seen[0]).mean())
    assert out["start"] == "encoder"
    # 16 rows x 4 chains: the means carry ~0.05 nats of noise
    assert out["forward_log_p"] - 0.1 <= truth <= out["reverse_log_p"] + 0.1
    assert -0.1 < out["gap"] < 0.3


def test_a_proposal_of_the_wrong_shape_is_refused():
    model = LinearGaussian(1, 3, 0.5)
    x = model.data(4, 0)

    def proposal(rows):
        return (lambda k, generator=None: torch.zeros(k, 1, dtype=torch.float64),
                lambda z: torch.zeros(z.shape[:-1], dtype=torch.float64))

    with pytest.raises(ConfigError, match="shape"):
        ais_estimate(model.log_prior, model.log_likelihood, model.sample_prior, x, 3, chains=2, proposal=proposal)


# -- the VAE's proposal --------------------------------------------------------------------------------------------
def _vae(latent, seed=0, n=12):
    from genlearn.models.vae import VAE

    return VAE(n, latent=latent, hidden=(8, 8), activation="tanh", seed=seed).double()


@pytest.mark.parametrize("latent,activation", [("3", "tanh"), ("2,3", "tanh"), ("2,3", "gated")])
def test_vae_posterior_proposal_is_sample_posterior(latent, activation):
    """The same draws as sample_posterior from the same generator (to float64 rounding: for two layers the data's
    share of q(z1|x, z2)'s first layer is summed apart from z2's, which moved z by 4.4e-16 on an AVX2 CPU), and
    log_density(z) its log q(z|x)."""
    from genlearn.models.vae import VAE

    model = VAE(12, latent=latent, hidden=(8, 8), activation=activation, seed=1).double()
    x = torch.bernoulli(torch.full((5, 12), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z_ref, log_q_ref = model.sample_posterior(x, 6, torch.Generator().manual_seed(3))
    sample, log_density = model.posterior_proposal(x)
    z = sample(6, torch.Generator().manual_seed(3))
    torch.testing.assert_close(z, z_ref, atol=1e-12, rtol=0)
    with torch.no_grad():
        assert torch.allclose(log_density(z), log_q_ref, atol=1e-12)
    # differentiable in z (HMC needs the gradient), with the parameters untouched
    zz = z.clone().requires_grad_(True)
    g = torch.autograd.grad(log_density(zz).sum(), zz)[0]
    assert g.shape == z.shape and torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.parametrize("latent", ["2", "1,1"])
def test_vae_ais_from_the_encoder_matches_quadrature(latent):
    """A VAE with a 2-D latent space (one layer of 2, or two stochastic layers of 1: q(z2|x) q(z1|x, z2)),
    integrated exactly by quadrature over z: AIS from the encoder agrees to noise."""
    from genlearn.likelihood import latent_nll

    torch.manual_seed(0)
    model = _vae(latent, seed=4)
    x = torch.bernoulli(torch.full((20, 12), 0.3, dtype=torch.float64), generator=torch.Generator().manual_seed(5))
    exact = latent_nll(model, x, "quadrature").value
    est = latent_nll(model, x, "ais", ais_steps=50, ais_chains=8, seed=2, ais_start="encoder")
    assert est.details["start"] == "encoder"
    # the spread of this estimate over seeds is ~0.03 nats (20 seeds: mean error within 1-2 standard errors of 0)
    assert abs(est.value - exact) < 0.1


def test_ais_start_options_are_checked():
    from genlearn.checks import check_evaluation
    from genlearn.likelihood import ais_proposal
    from genlearn.models.gan import GAN

    with pytest.raises(ConfigError, match="prior, encoder"):
        check_evaluation("ais", {"ais_start": "posterior"})
    gan = GAN(12, latent=2)
    with pytest.raises(ConfigError, match="encoder"):
        check_evaluation("ais", {"ais_start": "encoder"}, gan)
    with pytest.raises(ConfigError, match="encoder"):
        ais_proposal(gan, "encoder")
    vae = _vae("2")
    check_evaluation("ais", {"ais_start": "encoder"}, vae)
    assert ais_proposal(vae, "prior") is None and ais_proposal(vae, "encoder") is not None


def test_evaluation_records_the_start():
    from genlearn.evaluation import ais_metrics

    model = _vae("2", seed=2)
    x = torch.bernoulli(torch.full((6, 12), 0.3, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    out = ais_metrics(model, x, ais_rows=6, ais_steps=5, ais_chains=2, bdmc_rows=4, ais_start="encoder")
    assert out["ais_start"] == "encoder" and out["bdmc_start"] == "encoder"
    assert math.isfinite(out["ais_test_nll"]) and math.isfinite(out["bdmc_gap"])
    assert "ais_is_nll" in out
    prior = ais_metrics(model, x, ais_rows=6, ais_steps=5, ais_chains=2, bdmc_rows=0, same_rows_is=False)
    assert prior["ais_start"] == "prior" and "ais_is_nll" not in prior and "bdmc_gap" not in prior


def test_cli_eval_ais_from_the_encoder_and_refused_on_a_gan(tmp_path, capsys):
    import json

    from genlearn.cli import main

    out = tmp_path / "run"
    assert main(["fit", "vae", "--data", "bars-and-stripes:size=2,n=300", "--out", str(out), "--epochs", "2",
                 "--latent", "2", "--hidden", "8", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--partition", "ais", "--ais-start", "encoder", "--ais-steps", "5",
                 "--ais-chains", "2", "--ais-rows", "8", "--bdmc-rows", "4", "--iw-samples", "50"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["ais_start"] == "encoder" and metrics["bdmc_start"] == "encoder"
    assert math.isfinite(metrics["ais_test_nll"]) and metrics["ais_rows"] == 8
    gan = tmp_path / "gan"
    assert main(["fit", "gan", "--data", "bars-and-stripes:size=2,n=100", "--out", str(gan), "--epochs", "1",
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(gan), "--partition", "ais", "--ais-start", "encoder"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ais-start encoder" in err[0] and "gan" in err[0], err
