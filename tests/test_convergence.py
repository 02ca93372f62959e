"""Defaults that converge (genlearn.learning.convergence): the convex families fitted with their defaults end at
the maximum-likelihood estimate, checked against oracles (closed forms, exact enumeration of a Boltzmann
machine's moments), report `converged`, and the tolerance settings are refused where they cannot apply."""
from __future__ import annotations

import json

import pytest
import torch

import genlearn
from genlearn.cli import main
from genlearn.data import load_dataset
from genlearn.errors import ConfigError
from genlearn.learning.rules import make_rule
from genlearn.learning.trainer import TrainConfig, Trainer
from genlearn.models.registry import LBFGS_TO_CONVERGENCE, get_spec

QUIET = {"progress": False, "plots": False}


def _fit(model, data, **kw):
    return genlearn.fit(model, data, **QUIET, **kw)


def test_coin_with_defaults_reaches_the_mle(capsys, tmp_path):
    """The issue's case: `genlearn fit bernoulli --data coin:p=0.1` ended at KL(Q^||P) = 0.016; now ~0 and
    p = the sample mean (the closed-form MLE)."""
    assert main(["fit", "bernoulli", "--data", "coin:p=0.1", "--out", str(tmp_path / "coin"), "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["converged"] is True and printed["kl_empirical"] < 1e-12
    metrics = json.loads((tmp_path / "coin" / "metrics.json").read_text())
    assert metrics["train_config"]["optimizer"] == "lbfgs" and metrics["epochs_run"] < 50
    record = metrics["convergence"]
    assert record["criterion"] == "gradient" and record["value"] <= record["tol"] == LBFGS_TO_CONVERGENCE["tol"]
    run = genlearn.load_run(tmp_path / "coin")
    ds = load_dataset("coin:p=0.1")
    assert run.model.p == pytest.approx(float(ds.train.double().mean()), abs=1e-7)
    assert run.model.logits.dtype == torch.float32  # fitted in float64, handed back in the model's dtype


def test_die_with_defaults_gives_the_frequencies():
    ds = load_dataset("die:k=6,probs=0.5/0.1/0.1/0.1/0.1/0.1,n=300")
    run = _fit("categorical", ds)
    freq = torch.bincount(ds.train.long().reshape(-1), minlength=6).double() / ds.train.numel()
    assert run.metrics["converged"] is True
    assert torch.allclose(run.model.probs.double(), freq, atol=1e-7)
    assert run.metrics["kl_empirical"] < 1e-12


def test_product_of_bernoullis_with_defaults_gives_the_pixel_means():
    """Digits (8x8): pixels that are always 0 have their MLE at logit -inf; the gradient test stops them at
    p <= tol."""
    ds = load_dataset("digits")
    run = _fit("product-bernoulli", ds)
    means = ds.train.double().mean(0)
    assert run.metrics["converged"] is True
    assert torch.allclose(run.model.probs.double(), means, atol=2e-7)
    # the closed form clips p to [1e-6, 1 - 1e-6]: its NLL is at most ~1e-6 per constant pixel above the MLE's
    closed = genlearn.likelihood.mean_nll(genlearn.ProductBernoulli(64).fit_closed_form(ds.train), ds.train)
    assert closed - 64e-6 <= run.metrics["train_nll"] <= closed + 1e-9


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_gaussian_with_defaults_gives_the_sample_mean_and_covariance(covariance):
    ds = load_dataset("gaussian:dim=3,n=400")
    run = _fit("gaussian", ds, covariance=covariance)
    x = ds.train.double()
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / x.shape[0]
    if covariance == "diag":
        cov = torch.diag(torch.diagonal(cov))
    assert run.metrics["converged"] is True
    assert torch.allclose(run.model.mean.double(), mean, atol=1e-5)
    assert torch.allclose(run.model.covariance_matrix.detach().double(), cov, atol=1e-5)


def test_boltzmann_exact_gradient_with_defaults_matches_the_data_moments():
    """The maximum-likelihood Boltzmann machine matches <x_i> and <x_i x_j> of the data (the gradient is their
    difference, and the log-likelihood is concave); the model moments by exact enumeration are the oracle."""
    ds = load_dataset("boltzmann-teacher:n=6,samples=5000")
    run = _fit("boltzmann", ds, gradient="exact")
    assert run.metrics["converged"] is True and run.metrics["train_config"]["optimizer"] == "lbfgs"
    _, m_model, c_model = run.model.double().exact_statistics()
    x = ds.train.double()
    m_data, c_data = x.mean(0), x.T @ x / x.shape[0]
    assert torch.allclose(m_model, m_data, atol=1e-6)
    assert torch.allclose(c_model, c_data, atol=1e-6)
    # the old default (Adam at 0.05 for 100 epochs) was far from there
    old = _fit("boltzmann", ds, gradient="exact", optimizer="adam", lr=0.05)
    assert old.metrics["converged"] is None and old.metrics["kl_empirical"] > run.metrics["kl_empirical"] + 1e-4


def test_mixture_em_stops_on_the_relative_change_of_the_nll():
    ds = load_dataset("bars-and-stripes:n=4")
    run = _fit("mixture", ds, em=True, components=3)
    record = run.metrics["convergence"]
    assert run.metrics["converged"] is True and record["criterion"] == "relative change"
    assert record["value"] <= record["tol"] == 1e-7 and run.metrics["epochs_run"] < 1000
    losses = [r["loss"] for r in run.metrics["history"][1:]]  # the NLL before each M-step
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:]))  # EM never increases it
    assert abs(losses[-1] - losses[-2]) <= 1e-7 * abs(losses[-1])


def test_an_impossible_tolerance_reports_not_converged():
    ds = load_dataset("coin:p=0.3,n=200")
    run = _fit("bernoulli", ds, tol=1e-30, epochs=3)
    assert run.metrics["converged"] is False and run.metrics["epochs_run"] == 3
    assert run.metrics["convergence"]["value"] > 1e-30 and run.metrics["convergence"]["epoch"] is None
    em = _fit("mixture", load_dataset("bars-and-stripes:n=4"), em=True, components=3, rel_tol=1e-300, epochs=4)
    assert em.metrics["converged"] is False and em.metrics["epochs_run"] == 4


def test_gradient_descent_with_tol_returns_the_parameters_it_tested():
    """--tol with plain gradient descent: no step is taken from parameters whose gradient passed the test."""
    ds = load_dataset("coin:p=0.3,n=1000")
    run = _fit("bernoulli", ds, optimizer="gd", lr=4.0, tol=1e-7, epochs=2000)
    record = run.metrics["convergence"]
    assert run.metrics["converged"] is True and record["epoch"] == run.metrics["epochs_run"]
    assert abs(run.model.p - float(ds.train.double().mean())) <= 1e-7 / (0.3 * 0.7) * 1.01 + 1e-7


def test_a_chosen_optimizer_drops_the_convergence_defaults():
    spec = get_spec("bernoulli")
    assert spec.training_defaults() == LBFGS_TO_CONVERGENCE
    assert spec.training_defaults({}, {"epochs": 5}) == LBFGS_TO_CONVERGENCE  # the user's epochs go on top
    assert spec.training_defaults({}, {"optimizer": "adam"}) == {}
    assert spec.training_defaults({"closed_form": True}) == {"epochs": 1}  # exact after one pass
    boltzmann = get_spec("boltzmann")
    assert boltzmann.training_defaults({"gradient": "pcd"}) == boltzmann.train_defaults
    assert boltzmann.training_defaults({"gradient": "exact"}, {"batch_size": 10})["optimizer"] == "adam"
    mixture = get_spec("mixture")
    assert mixture.training_defaults({"em": True}, {"batch_size": 100})["rel_tol"] == 1e-7
    assert "rel_tol" not in mixture.training_defaults()
    run = _fit("bernoulli", "coin:p=0.3,n=200", optimizer="sgd", epochs=2)
    assert run.metrics["converged"] is None and run.metrics["train_config"]["tol"] is None


def test_lbfgs_resumes_bit_for_bit(tmp_path):
    """The L-BFGS memory (lists of tensors in torch) is checkpointed as stacked tensors: a run stopped after 3
    iterations and resumed to 8 ends with the parameters of an uninterrupted 8-iteration run."""
    data = "boltzmann-teacher:n=5,samples=500"
    full = _fit("boltzmann", data, epochs=8, tol=None, out=tmp_path / "full")
    _fit("boltzmann", data, epochs=3, tol=None, out=tmp_path / "part")
    resumed = genlearn.fit(None, None, out=tmp_path / "part", resume=True, epochs=8, **QUIET)
    assert resumed.metrics["epochs_run"] == 8 and resumed.metrics["train_config"]["optimizer"] == "lbfgs"
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("settings, rule, message", [
    ({"optimizer": "lbfgs", "batch_size": 2}, ("maximum-likelihood", {}), "L-BFGS is a full-batch method"),
    ({"optimizer": "lbfgs"}, ("boltzmann-moments", {"estimator": "pcd"}), "needs the exact objective"),
    ({"optimizer": "lbfgs", "weight_decay": 0.1}, ("maximum-likelihood", {}), "--weight-decay applies to"),
    ({"optimizer": "adam", "batch_size": 2, "tol": 1e-6}, ("maximum-likelihood", {}), "--tol tests the full-batch"),
    ({"tol": 1e-6}, ("em", {}), "use --rel-tol"),
    ({"optimizer": "sgd", "batch_size": 2, "rel_tol": 1e-6}, ("maximum-likelihood", {}), "--rel-tol compares"),
])
def test_settings_that_cannot_apply_are_refused(settings, rule, message):
    ds = load_dataset("bars-and-stripes:n=3")
    family = {"em": "mixture", "boltzmann-moments": "boltzmann"}.get(rule[0], "product-bernoulli")
    model = genlearn.models.registry.build_model(family, ds)
    with pytest.raises(ConfigError, match=message):
        Trainer(model, ds, TrainConfig(progress=False, **settings), rule=make_rule(*rule))


def test_cli_refuses_lbfgs_with_minibatches_in_one_line(tmp_path, capsys):
    rc = main(["fit", "bernoulli", "--data", "coin", "--optimizer", "lbfgs", "--batch-size", "10",
               "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("genlearn: error: L-BFGS is a full-batch method")


@pytest.mark.parametrize("settings", [{}, {"optimizer": "gd", "lr": 1.0, "tol": 1e-9}])
def test_rel_tol_stops_a_fit_that_also_has_a_gradient_tol(settings):
    """--rel-tol beside a gradient --tol (L-BFGS's default 1e-7, or given): the gradient record replaced the
    relative-change record every epoch, so the previous objective was lost and the relative test never ran (30
    epochs, converged false). Now the fit stops at the first epoch whose objective changed by <= 1% relative."""
    run = _fit("product-bernoulli", "digits", epochs=30, rel_tol=0.01, **settings)
    m = run.metrics
    record = m["convergence"]
    assert m["converged"] is True and record["criterion"] == "relative change" and record["value"] <= 0.01
    assert m["epochs_run"] == record["epoch"] < 30
    losses = [r["loss"] for r in m["history"][1:]]  # the objective at each epoch: the test's inputs
    assert abs(losses[-1] - losses[-2]) / abs(losses[-1]) == pytest.approx(record["value"], rel=1e-9)
    assert all(abs(b - a) / abs(b) > 0.01 for a, b in zip(losses[:-2], losses[1:-1]))
