"""The GAN's maximum-likelihood warm start (`--warm-start-epochs`): the generator is first trained as the decoder
of a VAE (negative ELBO with an auxiliary encoder) while the critic learns, then adversarially. Oracles: the ELBO
is below log P(x) by quadrature for every state; its gradient is that of -mean ELBO (autograd in float64 against
finite differences); the warm start lowers the exact NLL; a resume inside the warm start equals a straight run."""
from __future__ import annotations

import math

import pytest
import torch

import genlearn
from genlearn.enumeration import all_states
from genlearn.learning.rules import make_rule
from genlearn.likelihood import quadrature
from genlearn.models.gan import GAN

DATA = "bars-and-stripes:size=2,n=300"


def _tiny(seed=1) -> GAN:
    return GAN(4, latent=1, hidden=[6], critic_hidden=[5], seed=seed, warm_start_encoder=True).double()


def test_elbo_is_below_the_quadrature_log_likelihood_of_every_state():
    model = _tiny()
    x = all_states(4).double()
    log_p = quadrature(model, x)
    assert float(log_p.exp().sum()) == pytest.approx(1.0, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # the mean over many draws of the one-sample ELBO: E_q[...] - KL, below log P(x)
        elbo = torch.stack([model.elbo(x, g) for _ in range(4000)]).mean(0)
    assert (elbo < log_p).all(), (elbo, log_p)


def test_warm_start_gradient_is_the_elbo_gradient_and_the_critic_also_learns():
    model = _tiny()
    x = all_states(4).double()
    rule = make_rule("f-gan", {"warm_start_epochs": 1, "samples_per_z": 2})
    rule.check(model)
    model.zero_grad(set_to_none=True)
    rule.compute_gradient(model, x, torch.Generator().manual_seed(5))
    assert all(p.grad is not None for p in model.critic_parameters())
    theta = model.generator_parameters() + model.encoder_parameters()
    got = [p.grad.clone() for p in theta]
    # the same draws: the critic step draws z and rows first, then the ELBO draws eps
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        model.sample_binary(model.decoder_logits(model.sample_prior(x.shape[0], g)).expand(2, 16, 4), g)
    state = g.get_state()
    loss = -model.elbo(x, g).mean()
    want = torch.autograd.grad(loss, theta)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # finite differences of -mean ELBO (the same eps) in one generator weight
    w = model.gen_out.weight
    eps = 1e-6
    with torch.no_grad():
        w[0, 0] += eps
        g.set_state(state)
        up = float(-model.elbo(x, g).mean())
        w[0, 0] -= 2 * eps
        g.set_state(state)
        down = float(-model.elbo(x, g).mean())
        w[0, 0] += eps
    gen_out_grad = dict(zip([id(p) for p in theta], got))[id(w)]
    assert (up - down) / (2 * eps) == pytest.approx(float(gen_out_grad[0, 0]), rel=1e-5, abs=1e-9)
    rule.end_epoch(model, x)
    assert "neg_elbo" in rule.epoch_record() and not rule.warming_up


def test_warm_start_lowers_the_exact_nll_then_adversarial_epochs_follow():
    run = genlearn.fit("gan", DATA, latent="1", hidden="16", critic_hidden="8", warm_start_epochs=30, epochs=32,
                       lr=3e-2, batch_size=50, samples_per_z=2, progress=False, plots=False, seed=0)
    h = run.metrics["history"]
    assert h[30]["train_nll"] < h[0]["train_nll"] - 0.1  # maximum likelihood through the ELBO (2.82 -> 2.67)
    assert h[30]["neg_elbo"] < h[1]["neg_elbo"] and h[30]["neg_elbo"] > h[30]["train_nll"] - 0.05  # a bound
    assert all("neg_elbo" in r and "generator_loss" not in r for r in h[1:31])
    assert all("generator_loss" in r and "neg_elbo" not in r for r in h[31:])
    assert run.metrics["rule"]["settings"]["warm_start_epochs"] == run.metrics["warm_start_epochs"] == 30
    assert math.isfinite(run.metrics["test_nll"]) and run.metrics["test_nll_method"] == "quadrature"


def test_resume_inside_the_warm_start_equals_a_straight_run(tmp_path):
    opts = dict(latent="1", hidden="8", critic_hidden="8", warm_start_epochs=2, samples_per_z=3, progress=False,
                plots=False, seed=3, batch_size=70)
    straight = genlearn.fit("gan", DATA, out=tmp_path / "a", epochs=4, **opts)
    genlearn.fit("gan", DATA, out=tmp_path / "b", epochs=1, **opts)
    resumed = genlearn.fit(None, None, out=tmp_path / "b", resume=True, epochs=4, progress=False, plots=False)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert set(a) == set(b) and any(k.startswith("enc.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.rule.epochs_done == 4


def test_warm_start_needs_the_encoder_and_a_non_negative_count():
    with pytest.raises(genlearn.ConfigError, match="warm-start"):
        make_rule("f-gan", {"warm_start_epochs": 2}).check(GAN(4, latent=1, hidden=[6], critic_hidden=[5]))
    with pytest.raises(genlearn.ConfigError, match="warm"):
        genlearn.fit("gan", DATA, warm_start_epochs=-1, epochs=1, progress=False, plots=False)
    with pytest.raises(genlearn.IntractableError, match="warm-start encoder"):
        GAN(4, latent=1, hidden=[6], critic_hidden=[5]).elbo(torch.zeros(2, 4))


def test_learning_curve_shows_the_warm_start_elbo_in_its_own_panel(tmp_path):
    """The warm-start epochs' -ELBO is a panel of the learning curve (a third after the players and the bound)."""
    from genlearn import plots

    history = [{"epoch": e, "critic_loss": -0.1 * e, "divergence_estimate": 0.1 * e, "neg_elbo": 200.0 - e}
               for e in range(1, 4)] + [{"epoch": 4, "critic_loss": -0.4, "generator_loss": -1.0,
                                         "divergence_estimate": 0.4}]
    keys = [k for k in plots.CURVE_KEYS if any(k in r for r in history)]
    assert plots._panels(keys) == [("critic_loss", "generator_loss"), ("divergence_estimate",), ("neg_elbo",)]
    assert plots.learning_curve(history, tmp_path / "c.png").stat().st_size > 0
