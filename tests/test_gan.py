"""The GAN family and its f-GAN rule, checked against oracles:

- a generator small enough to integrate (1-D latent, 4 pixels): log P(x) by quadrature over z sums to 1 over the 16
  states and agrees with brute-force Monte Carlo over z (and with the frequencies of the model's own samples);
- each f-divergence's variational bound equals the divergence at the optimal critic v* = log(Q/P) (closed form),
  and lies below it for any other critic;
- the score-function generator gradient against the exact gradient of the same objective by quadrature over z
  and enumeration of the 8 states of a 3-pixel generator;
- the alternation of the players (which parameters get a .grad), the rule's checkpointed step counter (resume ==
  an uninterrupted run), the learning-curve records;
- the exact KL to the truth for a latent space of D <= 2 (divergence.kl_divergence by quadrature), AIS for D > 2;
- CLI fit / eval / sample end to end, bad options as one-line errors, divergence stops with the last checkpoint."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch

import genlearn
from genlearn.cli import main
from genlearn.divergence import kl_divergence
from genlearn.enumeration import all_states
from genlearn.estimators.latent_ais import quadrature_log_marginal
from genlearn.learning.adversarial import F_DIVERGENCES, exact_bound
from genlearn.learning.rules import make_rule
from genlearn.likelihood import float64_copy, quadrature
from genlearn.models.gan import DIVERGENCES, GAN


def _tiny(n=4, latent=1, hidden=(6,), seed=2, scale=2.5, pack=1) -> GAN:
    """A float64 generator whose weights are scaled up, so that P(x) is far from uniform and varies with z."""
    model = GAN(n, latent=latent, hidden=list(hidden), critic_hidden=[5], pack=pack, seed=seed).double()
    with torch.no_grad():
        for p in model.generator_parameters():
            p.mul_(scale)
        g = torch.Generator().manual_seed(seed)
        for p in model.critic_parameters():  # a non-trivial critic (its output layer starts at zero)
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


# -- the likelihood -----------------------------------------------------------------------------------------------
def test_quadrature_normalises_and_matches_monte_carlo():
    model = _tiny()
    states = all_states(4).double()
    log_p = quadrature(model, states)
    assert abs(torch.logsumexp(log_p, 0).item()) < 1e-6, "P(x) by quadrature does not sum to 1 over the 16 states"
    assert log_p.exp().max() > 0.15 and log_p.exp().min() < 0.02, "the tiny model is too close to uniform"
    # brute force: P(x) = E_z P(x|z) with S draws of z, and its standard error
    g = torch.Generator().manual_seed(0)
    S = 200_000
    with torch.no_grad():
        z = model.sample_prior(S, g)
        lik = model.log_likelihood(states, z[:, None, :].expand(-1, 16, -1).contiguous()).exp()  # (S, 16)
    mc, se = lik.mean(0), lik.std(0) / math.sqrt(S)
    assert ((mc - log_p.exp()).abs() <= 4 * se).all(), f"quadrature vs Monte Carlo: {(mc - log_p.exp()) / se}"
    # the model's own samples land on each state with frequency P(x)
    x = model.sample(S, torch.Generator().manual_seed(1)).double()
    codes = (x * 2.0 ** torch.arange(4, dtype=torch.float64)).sum(1).long()
    freq = torch.bincount(codes, minlength=16).double() / S
    p = log_p.exp()
    assert ((freq - p).abs() <= 4 * (p * (1 - p) / S).sqrt()).all()


def test_quadrature_decoder_path_equals_per_row_path_and_encoder_methods_raise():
    model = _tiny(latent=2)
    x = all_states(4).double()
    per_row = quadrature_log_marginal(model.log_prior, model.log_likelihood, x, dim=2, points=201)
    by_logits = quadrature_log_marginal(model.log_prior, model.log_likelihood, x, dim=2, points=201,
                                        decoder_logits=model.decoder_logits)
    assert torch.allclose(by_logits, per_row, atol=1e-10, rtol=0)
    assert abs(torch.logsumexp(by_logits, 0).item()) < 1e-6
    for call in (lambda: model.log_prob(x), lambda: model.posterior_mean(x), lambda: model.sample_posterior(x, 2)):
        with pytest.raises(genlearn.IntractableError):
            call()


# -- the f-divergences --------------------------------------------------------------------------------------------
def _true_divergence(name: str, q: torch.Tensor, p: torch.Tensor) -> float:
    m = (q + p) / 2
    return float({"kl": (q * (q / p).log()).sum(), "reverse-kl": (p * (p / q).log()).sum(),
                  "js": 0.5 * (q * (q / m).log()).sum() + 0.5 * (p * (p / m).log()).sum(),
                  "hellinger": ((q.sqrt() - p.sqrt()) ** 2).sum()}[name])


@pytest.mark.parametrize("name", DIVERGENCES)
def test_variational_bound_is_tight_at_the_optimal_critic(name):
    assert tuple(F_DIVERGENCES) == DIVERGENCES
    d = F_DIVERGENCES[name]
    g = torch.Generator().manual_seed(4)
    q = torch.rand(12, generator=g, dtype=torch.float64) + 0.05
    p = torch.rand(12, generator=g, dtype=torch.float64) ** 3 + 0.01
    q, p = q / q.sum(), p / p.sum()
    r = q / p
    v_star = r.log()
    true = _true_divergence(name, q, p)
    assert true > 0.05
    assert abs(float((p * d.f(r)).sum()) - true) < 1e-12, "f does not generate the divergence"
    assert abs(float(exact_bound(name, q, p, v_star)) - true) < 1e-9, "the bound is not tight at v* = log(Q/P)"
    # T* = g_f(v*) is f'(r); the fused conjugate is f*(g_f(v)); any other critic gives less (Fenchel)
    u = r.clone().requires_grad_(True)
    (f_prime,) = torch.autograd.grad(d.f(u).sum(), u)
    assert torch.allclose(d.activation(v_star), f_prime, atol=1e-12, rtol=0)
    v = torch.randn(12, generator=g, dtype=torch.float64)
    assert torch.allclose(d.conjugate_of_activation(v), d.conjugate(d.activation(v)), atol=1e-12, rtol=1e-12)
    for _ in range(5):
        assert float(exact_bound(name, q, p, v_star + 0.3 * torch.randn(12, generator=g, dtype=torch.float64))) < true


# -- the generator's gradient -------------------------------------------------------------------------------------
def _exact_generator_gradient(model: GAN, name: str, points: int = 2001) -> torch.Tensor:
    """d/dtheta of sum_x P_theta(x) h(x) with h(x) = phi_f(r^(x)) held fixed, r^ = exp(v) / E_P[exp(v)]: what the
    score-function estimator estimates (negated: the generator descends -E_P[h]). P_theta(x) by the trapezoid rule
    over z on [-8, 8] with autograd, the 8 states enumerated. With a packed critic (pack 2) x is a pair of states,
    P_theta(x) = P_theta(x_1) P_theta(x_2) over the 64 pairs."""
    d = F_DIVERGENCES[name]
    states = all_states(model.n_features).double()
    z = torch.linspace(-8, 8, points, dtype=torch.float64)[:, None]
    w = torch.full((points,), 16 / (points - 1), dtype=torch.float64)
    w[0] = w[-1] = w[0] / 2
    lik = model.log_likelihood(states, z[:, None, :].expand(-1, states.shape[0], -1).contiguous()).exp()
    p = (w[:, None] * model.log_prior(z).exp()[:, None] * lik).sum(0)  # (8,), differentiable
    if model.pack == 2:
        k = states.shape[0]
        p = (p[:, None] * p[None, :]).reshape(-1)
        states = torch.cat([states.repeat_interleave(k, 0), states.repeat(k, 1)], -1)  # pair (i, j) at i k + j
    with torch.no_grad():
        v = model.critic_value(states)
        h = d.conjugate_of_activation(v - torch.log((p * v.exp()).sum()))
    params = model.generator_parameters()
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(-(p * h).sum(), params)])


@pytest.mark.parametrize("name,pack", [("kl", 1), ("js", 1), ("reverse-kl", 1), ("kl", 2), ("js", 2)])
def test_score_function_gradient_matches_enumeration(name, pack):
    model = _tiny(n=3, latent=1, hidden=(4,), seed=5, scale=1.5, pack=pack)
    exact = _exact_generator_gradient(model, name)
    rule = make_rule("f-gan", {"divergence": name, "samples_per_z": 8, "critic_steps": 1})
    g = torch.Generator().manual_seed(0)
    rows = torch.zeros(4000, 3, dtype=torch.float64)  # the data rows only enter the returned bound
    draws = []
    for _ in range(24):
        rule.step = 1  # a generator step
        model.zero_grad(set_to_none=True)
        rule.compute_gradient(model, rows, g)
        assert all(p.grad is None for p in model.critic_parameters())
        draws.append(torch.cat([p.grad.reshape(-1) for p in model.generator_parameters()]))
    draws = torch.stack(draws)
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(draws.shape[0])
    # 4 standard errors of the mean of 24 batches of 32,000 rows, plus the O(1/(B M)) bias of the normalisation
    assert ((mean - exact).abs() <= 4 * se + 2e-3 * exact.abs().max()).all(), \
        f"score-function gradient off by {((mean - exact).abs() / se).max():.1f} standard errors"
    assert exact.abs().max() > 10 * se.max(), "the test has no power: the exact gradient is within the noise"


def test_packs_put_each_row_beside_the_next_ones_and_kl_of_packs_is_m_times_kl():
    model = GAN(3, latent=1, hidden=[4], critic_hidden=[5], pack=3)
    rows = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    packs = model.pack_rows(rows)
    assert packs.shape == (2, 5, 9)
    for b in range(5):  # pack b = rows b, b+1, b+2 of the same batch, cyclically, for each leading index
        assert torch.equal(packs[:, b], torch.cat([rows[:, b], rows[:, (b + 1) % 5], rows[:, (b + 2) % 5]], -1))
    assert model.critic_value(packs).shape == (2, 5)
    assert GAN(3, latent=1, pack=1).pack_rows(rows) is rows
    assert GAN(**model.config()).pack == 3
    # the critic of packs estimates D_f(Q^m||P^m); at its optimum v* = sum_s log r(x_s) the kl bound is m KL(Q||P)
    g = torch.Generator().manual_seed(1)
    q, p = torch.rand(4, generator=g, dtype=torch.float64), torch.rand(4, generator=g, dtype=torch.float64)
    q, p = q / q.sum(), p / p.sum()
    q2, p2 = (q[:, None] * q[None, :]).reshape(-1), (p[:, None] * p[None, :]).reshape(-1)
    v2 = ((q / p).log()[:, None] + (q / p).log()[None, :]).reshape(-1)
    kl = float((q * (q / p).log()).sum())
    assert float(exact_bound("kl", q2, p2, v2)) == pytest.approx(2 * kl, abs=1e-12)


@pytest.mark.parametrize("pack", [1, 2])
def test_players_alternate_and_only_their_parameters_get_gradients(pack):
    model = _tiny(n=4, latent=2, pack=pack)
    rows = all_states(4).double()
    for estimator in ("score-function", "relaxation"):
        rule = make_rule("f-gan", {"critic_steps": 2, "estimator": estimator, "samples_per_z": 2})
        g = torch.Generator().manual_seed(0)
        pattern = []
        for _ in range(6):
            model.zero_grad(set_to_none=True)
            value = rule.compute_gradient(model, rows, g)
            assert value.ndim == 0 and not value.requires_grad and torch.isfinite(value)
            critic = [p.grad is not None for p in model.critic_parameters()]
            gen = [p.grad is not None for p in model.generator_parameters()]
            assert all(critic) != all(gen) and (all(critic) or not any(critic)) and (all(gen) or not any(gen))
            pattern.append("c" if all(critic) else "g")
        assert "".join(pattern) == "ccgccg"
        assert rule.state_tensors()["step"].item() == 6
        rule.end_epoch(model, rows)
        rec = rule.epoch_record()
        assert set(rec) == {"critic_loss", "generator_loss", "divergence_estimate"}
    with pytest.raises(genlearn.ConfigError, match="GAN"):
        make_rule("f-gan").check(genlearn.ProductBernoulli(3))


# -- fits: exact KL, AIS, resume, divergence ---------------------------------------------------------------------
def test_fit_reports_quadrature_nll_exact_kl_and_rule_records(tmp_path):
    run = genlearn.fit("gan", "bars-and-stripes:size=2,n=300", latent="1", hidden="8", critic_hidden="8",
                       epochs=2, progress=False, plots=False)
    m = run.metrics
    assert m["likelihood_method"] == "quadrature"
    for split in ("train", "valid", "test"):
        assert m[f"{split}_nll_method"] == "quadrature" and math.isfinite(m[f"{split}_nll"])
    assert m["kl_empirical"] == pytest.approx(m["train_nll"] - m["entropy_empirical"])
    # kl_true: the exact KL(Q||P) over the 16 states with log P by quadrature
    ds = run.dataset
    states = all_states(4)
    log_q, log_p = ds.truth.log_prob(states), quadrature(float64_copy(run.model), states.double())
    keep = log_q > -math.inf
    expected = float((log_q[keep].exp() * (log_q[keep] - log_p[keep])).sum())
    assert m["kl_true"] == pytest.approx(expected, abs=1e-9) and "quadrature" in m["kl_true_method"]
    assert kl_divergence(ds.truth, run.model).value == pytest.approx(expected, abs=1e-9)
    assert m["rule"]["name"] == "f-gan" and m["divergence"] == "kl"
    last = m["history"][-1]
    assert {"critic_loss", "generator_loss", "divergence_estimate", "kl_true"} <= set(last)


def test_large_latent_space_is_evaluated_by_ais():
    run = genlearn.fit("gan", "bars-and-stripes:size=2,n=100", latent="8", hidden="8", critic_hidden="8", epochs=1,
                       progress=False, plots=False,
                       partition_options={"ais_rows": 8, "ais_steps": 4, "ais_chains": 2, "ais_leapfrog": 2,
                                          "bdmc_rows": 4})
    m = run.metrics
    assert m["likelihood_method"] == "ais" and m["test_nll_method"] == "ais" and m["test_nll_rows"] == 8
    assert math.isfinite(m["test_nll"]) and "bdmc_gap" in m and m["test_nll_lower"] <= m["test_nll_upper"]
    # the BDMC gap bounds the AIS bias; 2 standard errors over the rows widen both ends (a gap at noise level used
    # to collapse the bracket onto the estimate)
    se = m["test_nll_stderr"]
    assert se > 0 and m["test_nll_upper"] == pytest.approx(m["test_nll"] + 2 * se)
    assert m["test_nll_lower"] == pytest.approx(m["test_nll"] - max(m["bdmc_gap"], 0.0) - 2 * se)
    assert m["kl_true"] is None  # no exact KL over z in 8 dimensions


def test_resume_matches_uninterrupted(tmp_path):
    opts = dict(latent="1", hidden="8", critic_hidden="8", critic_steps=2, samples_per_z=3, estimator="relaxation",
                progress=False, plots=False, seed=3, batch_size=70)  # 5 batches per epoch: the cycle crosses epochs
    straight = genlearn.fit("gan", "bars-and-stripes:size=2,n=300", out=tmp_path / "a", epochs=3, **opts)
    genlearn.fit("gan", "bars-and-stripes:size=2,n=300", out=tmp_path / "b", epochs=1, **opts)
    resumed = genlearn.fit(None, None, out=tmp_path / "b", resume=True, epochs=3, progress=False, plots=False)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.rule.step == straight.rule.step == 3 * math.ceil(300 / 70)
    strip = [{k: v for k, v in r.items() if "second" not in k} for r in straight.metrics["history"]]
    assert strip == [{k: v for k, v in r.items() if "second" not in k} for r in resumed.metrics["history"]]


def test_divergence_stops_with_the_last_good_checkpoint(tmp_path):
    def absurd_rate(trainer, record):  # after a good first epoch, an absurd learning rate
        for group in trainer.optimizer.param_groups:
            group["lr"] = 1e30

    with pytest.raises(genlearn.NumericalError, match="diverged") as info:
        genlearn.fit("gan", "bars-and-stripes:size=2,n=300", out=tmp_path / "r", epochs=10, latent="1", hidden="8",
                     critic_hidden="8", progress=False, plots=False, callbacks=[absurd_rate])
    found = re.search(r"at epoch (\d+), .*the last good checkpoint \(epoch (\d+)\) is kept", str(info.value))
    assert found is not None, str(info.value)
    bad, good = int(found.group(1)), int(found.group(2))
    assert good == bad - 1 >= 1
    kept = genlearn.load_run(tmp_path / "r")
    assert kept.meta["epoch"] == good
    assert all(torch.isfinite(p).all() for p in kept.model.parameters())


# -- the command line ---------------------------------------------------------------------------------------------
def test_cli_fit_eval_sample_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["fit", "gan", "--data", "bars-and-stripes:size=2,n=300", "--out", str(out), "--epochs", "2",
            "--latent", "1", "--pack", "2", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test_nll_method"] == "quadrature" and saved["kl_true"] is not None
    assert saved["model_config"]["pack"] == 2 and genlearn.load_run(out).model.critic.first[0].in_features == 8
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test_nll_method"] == "quadrature"
    assert metrics["test_nll"] == pytest.approx(saved["test_nll"], abs=1e-9)
    assert main(["sample", str(out), "-n", "5", "--seed", "1"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 5 and all(len(r) == 4 and set(r) <= {"0", "1"} for r in rows)


@pytest.mark.parametrize("flag,value,needle", [("--samples-per-z", "0", "samples-per-z"),
                                               ("--divergence", "wasserstein", "divergence"),
                                               ("--critic-steps", "x", "critic-steps"),
                                               ("--temperature", "0", "temperature"),
                                               ("--latent", "0", "latent"),
                                               ("--pack", "0", "pack")])
def test_bad_options_give_one_line_errors(tmp_path, capsys, flag, value, needle):
    argv = ["fit", "gan", "--data", "bars-and-stripes:size=2,n=300", "--out", str(tmp_path / "r"), "--epochs", "1",
            flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genlearn: error:") and needle in err[0], err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
