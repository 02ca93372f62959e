"""Mixture of Bernoullis and its EM: oracles are exact enumeration, the closed-form M-step written out, the
monotonicity of EM, stationarity of the EM fixed point, agreement of EM with gradient descent, and the "em"
learning rule inside the Trainer against fit_em."""
import itertools
import math

import pytest
import torch

from genlearn.data import Dataset
from genlearn.enumeration import all_states
from genlearn.errors import ConfigError
from genlearn.learning import TrainConfig, Trainer
from genlearn.learning.em import e_step, fit_em, m_step
from genlearn.learning.rules import make_rule
from genlearn.models.mixture import MixtureOfBernoulli
from genlearn.models.registry import build_model, rule_for


def teacher(n=10, k=3, seed=1):
    """A mixture with well separated components (probabilities 0.15 / 0.85 patterns) and weights 0.5/0.3/0.2."""
    g = torch.Generator().manual_seed(seed)
    m = MixtureOfBernoulli(n, k, seed=seed)
    pattern = torch.rand(k, n, generator=g) < 0.5
    p = torch.where(pattern, torch.tensor(0.85), torch.tensor(0.15)).double()
    w = torch.tensor([0.5, 0.3, 0.2][:k], dtype=torch.float64)
    m.set_parameters(torch.log(w / w.sum()), torch.log(p) - torch.log1p(-p))
    return m


def test_probabilities_sum_to_one_over_all_states():
    for n, k in ((10, 3), (12, 5)):
        m = MixtureOfBernoulli(n, k, seed=3).double()
        total = torch.exp(m.log_prob(all_states(n, dtype=torch.float64))).sum()
        assert abs(float(total) - 1.0) < 1e-10


def test_log_prob_matches_the_mixture_formula():
    m = MixtureOfBernoulli(6, 4, seed=2).double()
    x = all_states(6, dtype=torch.float64)
    p, w = m.probs, m.weights
    direct = (w * torch.prod(torch.where(x[:, None, :] == 1, p, 1 - p), -1)).sum(-1)
    assert torch.allclose(m.log_prob(x), torch.log(direct), atol=1e-12)


def test_samples_by_component_match_exact_marginals():
    m = teacher()
    x = m.sample(40_000, generator=torch.Generator().manual_seed(0))
    states = all_states(10, dtype=torch.float64)
    prob = torch.exp(m.double().log_prob(states))
    exact_mean = prob @ states                                       # P(x_i = 1)
    exact_pair = torch.einsum("s,si,sj->ij", prob, states, states)    # P(x_i = 1, x_j = 1)
    tol = 4 * math.sqrt(0.25 / 40_000)  # 4 standard errors of a frequency
    assert (x.double().mean(0) - exact_mean).abs().max() < tol
    assert ((x.double().T @ x.double()) / 40_000 - exact_pair).abs().max() < tol


def test_em_never_decreases_the_log_likelihood():
    x = teacher().sample(600, generator=torch.Generator().manual_seed(1))
    m = MixtureOfBernoulli(10, 6, seed=0)
    res = fit_em(m, x, iterations=60, tol=0.0, reseed=False, generator=torch.Generator().manual_seed(2))
    nll = [r["train_nll"] for r in res.history]
    assert len(nll) >= 30
    assert all(b <= a + 1e-9 for a, b in zip(nll, nll[1:])), nll
    assert nll[-1] < nll[0] - 0.5  # and it did learn something
    # the recorded NLL is the exact NLL of the returned parameters
    assert abs(nll[-1] - float(-m.double().log_prob(x.double()).mean())) < 1e-5


def test_map_em_never_decreases_the_log_posterior_and_records_it_exactly():
    x = teacher().sample(300, generator=torch.Generator().manual_seed(3))
    m = MixtureOfBernoulli(10, 5)
    res = fit_em(m, x, iterations=40, tol=0.0, reseed=False, smoothing=1.0, weight_smoothing=1.0,
                 generator=torch.Generator().manual_seed(4))
    obj = [r["objective"] for r in res.history]
    assert all(b >= a - 1e-9 for a, b in zip(obj, obj[1:]))
    md = m.double()
    ll = float(md.log_prob(x.double()).sum())
    prior = (1.0 * (torch.log(md.probs) + torch.log1p(-md.probs)).sum() + torch.log(md.weights).sum())
    assert abs(obj[-1] - (ll + float(prior)) / 300) < 1e-6


def test_m_step_is_the_closed_form_weighted_mean():
    x = teacher().sample(200, generator=torch.Generator().manual_seed(5)).double()
    m = MixtureOfBernoulli(10, 3, seed=7).double()
    stats = e_step(x, m.log_weights, m.logits)
    r = m.responsibilities(x)                                      # oracle: r_mk computed independently
    a = 0.5
    log_w, logits = m_step(stats, smoothing=a)
    p_expected = ((r.T @ x) + a) / (r.sum(0)[:, None] + 2 * a)
    assert torch.allclose(torch.sigmoid(logits), p_expected, atol=1e-12)
    assert torch.allclose(torch.exp(log_w), r.mean(0), atol=1e-12)
    assert abs(stats.log_lik - float(m.log_prob(x).sum())) < 1e-9


def test_em_fixed_point_is_a_stationary_point_of_the_likelihood():
    x = teacher().sample(1000, generator=torch.Generator().manual_seed(6))
    m = MixtureOfBernoulli(10, 3)
    fit_em(m, x, iterations=3000, tol=1e-13, reseed=False, generator=torch.Generator().manual_seed(0))
    md = m.double()
    nll = -md.log_prob(x.double()).mean()
    grads = torch.autograd.grad(nll, [md.mix_logits, md.logits])
    assert max(float(g.abs().max()) for g in grads) < 1e-5


def _match(p_a, p_b):
    """Smallest max-abs difference between the rows of p_a and p_b over all label permutations."""
    k = p_a.shape[0]
    return min(float((p_a[list(perm)] - p_b).abs().max()) for perm in itertools.permutations(range(k)))


def test_gradient_descent_reaches_the_em_optimum():
    """Well separated components and 2000 examples: the maximum-likelihood estimate is unique up to label
    permutation, so EM and Adam on -mean log P (through the generic Trainer) must find the same one."""
    x = teacher(k=3).sample(2000, generator=torch.Generator().manual_seed(7))
    em_model = MixtureOfBernoulli(10, 3)
    fit_em(em_model, x, iterations=2000, tol=1e-12, reseed=False, generator=torch.Generator().manual_seed(1))
    gd_model = MixtureOfBernoulli(10, 3, seed=5).init_from_data(x, torch.Generator().manual_seed(11))
    ds = Dataset("teacher", "binary", x)
    Trainer(gd_model, ds, TrainConfig(epochs=1500, lr=0.05, optimizer="adam", progress=False,
                                      eval_every=500)).fit()
    nll_em = float(-em_model.double().log_prob(x.double()).mean())
    nll_gd = float(-gd_model.double().log_prob(x.double()).mean())
    assert abs(nll_em - nll_gd) < 1e-4, (nll_em, nll_gd)
    assert _match(em_model.probs.double(), gd_model.probs.double()) < 5e-3
    w_em, w_gd = em_model.weights.double(), gd_model.weights.double()
    assert min(float((w_em[list(p)] - w_gd).abs().max()) for p in itertools.permutations(range(3))) < 5e-3


@pytest.mark.parametrize("smoothing", [0.0, 0.5])
def test_em_inside_the_trainer_is_exact_em(smoothing):
    """The "em" rule: one Trainer epoch (in minibatches of 64, no optimizer step) = one EM iteration of fit_em on
    the whole set, so 15 epochs give fit_em's parameters after 15 iterations; without smoothing the recorded
    train NLL never increases (MAP EM: the log posterior never decreases)."""
    x = teacher().sample(500, generator=torch.Generator().manual_seed(8))
    a = MixtureOfBernoulli(10, 4).init_from_data(x, torch.Generator().manual_seed(3))
    b = MixtureOfBernoulli(10, 4).init_from_data(x, torch.Generator().manual_seed(3))
    rule = make_rule("em", {"smoothing": smoothing, "reseed": False})
    assert not rule.uses_optimizer
    state = Trainer(a, Dataset("t", "binary", x), TrainConfig(epochs=15, lr=1.0, optimizer="adam", batch_size=64,
                                                               progress=False), rule=rule).fit()
    res = fit_em(b, x, iterations=15, tol=-1.0, init=None, reseed=False, smoothing=smoothing)
    assert torch.allclose(a.probs, b.probs, atol=1e-5)
    assert torch.allclose(a.weights, b.weights, atol=1e-5)
    assert all(p.grad is None for p in a.parameters())  # no gradient, no dummy tensor: the M-step set them
    # the loss of epoch t is the NLL before its M-step: fit_em's record of iteration t (the model's float32
    # parameters against fit_em's float64 ones: 4e-8 nats measured)
    losses = [r["loss"] for r in state.history[1:]]
    assert losses == pytest.approx([r["train_nll"] for r in res.history[:15]], abs=1e-6)
    assert [r["train_nll_before"] for r in rule.history] == pytest.approx(losses, abs=1e-12)
    if smoothing == 0:
        nll = [r["train_nll"] for r in state.history]
        assert all(q <= p + 1e-5 for p, q in zip(nll, nll[1:]))
    else:
        obj = [r["objective"] for r in res.history]
        assert all(q >= p - 1e-9 for p, q in zip(obj, obj[1:]))


def test_em_rule_resumes_exactly_and_runs_saved_by_earlier_versions_resume(tmp_path):
    """fit("mixture", em=True): 2 + 2 epochs equal 4 epochs bit for bit (the EM statistics live within an epoch,
    so the checkpoint needs no rule state); the legacy run fixture (em in its model_config) resumes with the EM
    rule."""
    import shutil
    from pathlib import Path

    from genlearn.runs import fit, load_run

    kw = dict(components=3, em=True, smoothing=0.1, batch_size=20, plots=False, progress=False)
    full = fit("mixture", "bars-and-stripes", out=tmp_path / "full", epochs=4, **kw)
    fit("mixture", "bars-and-stripes", out=tmp_path / "part", epochs=2, **kw)
    resumed = fit(None, None, out=tmp_path / "part", epochs=4, resume=True, plots=False)
    assert resumed.rule.settings() == {"smoothing": 0.1, "weight_smoothing": 0.0, "reseed": True, "min_mass": 1e-3}
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    src = Path(__file__).parent / "fixtures" / "legacy_runs" / "mixture-em"
    run = load_run(src)
    assert run.rule.name == "em" and run.model.config() == {"n_features": 64, "components": 4, "seed": 0}
    shutil.copytree(src, tmp_path / "legacy")
    again = fit(None, None, out=tmp_path / "legacy", epochs=5, resume=True, plots=False)
    nll = [r["train_nll"] for r in again.metrics["history"]]
    assert len(nll) == 6 and all(q <= p + 1e-6 for p, q in zip(nll, nll[1:]))


def test_collapsed_component_is_reseeded():
    x = teacher(k=2).sample(400, generator=torch.Generator().manual_seed(9))
    m = MixtureOfBernoulli(10, 3)
    m.init_from_data(x, torch.Generator().manual_seed(0))
    lw = torch.log(torch.tensor([0.5, 0.5, 1e-30], dtype=torch.float64))
    lw = lw - torch.logsumexp(lw, 0)
    m.set_parameters(lw, m.logits.detach().double())
    res = fit_em(m, x, iterations=30, init=None, min_mass=1e-3, tol=0.0)
    assert any(2 in r.get("reseeded", []) for r in res.history)
    assert float(m.weights[2]) * 400 > 1e-3                          # it now explains some data
    # every EM step that did not follow a re-seed is monotone
    for prev, cur in zip(res.history, res.history[1:]):
        if "reseeded" not in prev:
            assert cur["train_nll"] <= prev["train_nll"] + 1e-9


@pytest.mark.parametrize("kwargs", [{"components": 0}, {"components": -2}, {"components": True},
                                    {"components": 2.5}])
def test_bad_settings_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        MixtureOfBernoulli(5, **{"components": 2, **kwargs})


@pytest.mark.parametrize("settings", [{"smoothing": -1.0}, {"min_mass": float("nan")}, {"reseed": "maybe"},
                                      {"weight_smoothing": "a lot"}])
def test_bad_em_settings_raise_config_error(settings):
    with pytest.raises(ConfigError):
        make_rule("em", settings)


def test_em_settings_left_the_model():
    with pytest.raises(ConfigError, match="learning rule"):
        MixtureOfBernoulli(5, 2, em=True)
    old = {"n_features": 5, "components": 2, "em": True, "smoothing": 1.0, "weight_smoothing": 0.0, "reseed": True,
           "min_mass": 0.001, "seed": 4}
    assert MixtureOfBernoulli.from_config(old).config() == {"n_features": 5, "components": 2, "seed": 4}
    with pytest.raises(ConfigError, match="mixture of Bernoullis"):
        make_rule("em").check(build_model("product-bernoulli", Dataset("t", "binary", torch.zeros(3, 5))))


def test_registry_builds_from_options_and_rebuilds_from_config():
    x = teacher().sample(100, generator=torch.Generator().manual_seed(10))
    ds = Dataset("t", "binary", x)
    with pytest.raises(ConfigError):
        build_model("mixture", ds, components=0)
    m = build_model("mixture", ds, components=4, em=True, smoothing=1.0)
    assert m.components == 4
    assert rule_for("mixture", components=4, em=True, smoothing=1.0) == (
        "em", {"smoothing": 1.0, "weight_smoothing": 0.0, "reseed": True, "min_mass": 1e-3})
    assert rule_for("mixture", components=4) == ("maximum-likelihood", {})
    m2 = MixtureOfBernoulli(**m.config())
    m2.load_state_dict(m.state_dict())
    assert torch.equal(m.log_prob(x), m2.log_prob(x))


def test_cli_fits_by_em_then_evaluates_and_samples(tmp_path, capsys):
    """`genlearn fit mixture --em`: every epoch is an EM step, so the recorded train NLL never increases;
    eval reproduces the stored test NLL; sample writes a file; zero components is a one-line error (exit 2)."""
    import json

    from genlearn.cli import main

    out = tmp_path / "run"
    assert main(["fit", "mixture", "--data", "bars-and-stripes", "--components", "3", "--em", "--epochs", "15",
                 "--out", str(out), "--quiet"]) == 0
    fitted = json.loads(capsys.readouterr().out)
    from genlearn import load_run

    run = load_run(out)
    assert run.rule.name == "em" and run.model.components == 3
    assert run.metrics["rule"]["name"] == "em" and "EM" in run.metrics["objective"]
    nll = [r["train_nll"] for r in run.metrics["history"] if "train_nll" in r]
    assert len(nll) == 16  # before training + 15 EM steps
    assert all(b <= a + 1e-6 for a, b in zip(nll, nll[1:]))
    assert main(["eval", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert abs(evaluated["test_nll"] - fitted["test_nll"]) < 1e-9
    assert main(["sample", str(out), "-n", "5", "--out", str(tmp_path / "s.csv")]) == 0
    assert (tmp_path / "s.csv").exists()
    assert main(["fit", "mixture", "--data", "bars-and-stripes", "--components", "0", "--out",
                 str(tmp_path / "bad"), "--quiet"]) == 2
    assert "component" in capsys.readouterr().err


def test_init_from_data_starts_distinct_components_from_repeated_rows():
    """Three patterns, each repeated 100 times: the K = 3 start takes one of each (random rows with replacement
    would start two equal components, a stationary point EM and gradient descent cannot leave, in ~78% of draws)."""
    patterns = torch.tensor([[1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 0, 1], [1, 1, 0, 1, 0, 0]], dtype=torch.float32)
    x = patterns.repeat(100, 1)
    for seed in range(10):
        m = MixtureOfBernoulli(6, 3).init_from_data(x, torch.Generator().manual_seed(seed))
        p = m.probs.detach()
        assert min(float((p[a] - p[b]).abs().max()) for a, b in ((0, 1), (0, 2), (1, 2))) > 0.1
    with pytest.warns(UserWarning, match="only 3 distinct rows"):  # more components than patterns
        m = MixtureOfBernoulli(6, 5).init_from_data(x, torch.Generator().manual_seed(0))
    assert torch.isfinite(m.probs).all()


def test_more_components_than_distinct_rows_warn_and_the_copies_stay_equal():
    """K above the distinct training rows: the extra components start as copies and EM keeps copies equal (the
    oracle of the warning's claim); K at most the distinct rows: no warning."""
    import warnings

    x = torch.tensor([[0, 1, 1], [1, 0, 1], [0, 1, 1], [1, 1, 0]] * 5, dtype=torch.float32)  # 3 distinct rows
    with pytest.warns(UserWarning, match="4 mixture components .* only 3 distinct rows among the 20 training rows"):
        model = MixtureOfBernoulli(3, components=4, seed=0).init_from_data(x)
    fit_em(model, x, iterations=30, init=None)
    logits = model.logits.detach()
    copies = [(i, j) for i in range(4) for j in range(i + 1, 4) if torch.equal(logits[i], logits[j])]
    assert copies, logits  # two components were equal at the start and are equal after 30 EM steps
    with pytest.warns(UserWarning, match="5 mixture components .* only 4 training rows"):
        MixtureOfBernoulli(3, components=5, seed=0).init_from_data(x[:4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MixtureOfBernoulli(3, components=3, seed=0).init_from_data(x)
