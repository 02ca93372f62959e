"""The likelihood policy (genlearn.likelihood): its choice at the thresholds, exact against AIS where both run,
NLL estimates with their brackets, and kl_divergence returning one type (an Estimate) in every branch."""
import math
import warnings

import pytest
import torch

from genlearn import likelihood as L
from genlearn.data.dataset import Dataset
from genlearn.divergence import kl_divergence
from genlearn.errors import ConfigError, IntractableError
from genlearn.estimators.estimate import Estimate
from genlearn.evaluation import evaluate
from genlearn.models import Bernoulli, Categorical, Gaussian, ProductBernoulli
from genlearn.models.boltzmann import BoltzmannMachine
from genlearn.models.mixture import MixtureOfBernoulli
from genlearn.models.rbm import RBM


def random_rbm(V, H, scale=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = RBM(V, H)
    with torch.no_grad():
        m.weight.copy_(torch.randn(V, H, generator=g) * scale)
        m.visible_bias.copy_(torch.randn(V, generator=g) * 0.5)
        m.hidden_bias.copy_(torch.randn(H, generator=g) * 0.5)
    return m


def random_machine(n, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    upper = torch.triu(torch.randn(n, n, generator=g, dtype=torch.float64), 1) * scale
    return BoltzmannMachine(n, spins=True).set_parameters(torch.randn(n, generator=g) * 0.3, upper + upper.T)


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


# ------------------------------------------------------------------------------------------ the choice
def test_units_threshold_one_below_and_one_above():
    assert L.EXACT_UNITS == 25
    assert L.choose_method(RBM(30, L.EXACT_UNITS)) == "exact"  # 30 x 2^25 = 1.0e9 terms
    assert L.choose_method(RBM(30, L.EXACT_UNITS + 1)) == "ais"
    assert L.choose_method(RBM(L.EXACT_UNITS + 1, 40)) == "ais"  # the smaller layer counts, visible or hidden


def test_terms_threshold_one_below_and_one_above():
    n = L.EXACT_TERMS >> 20  # n 2^20 = 2^35 exactly
    assert L.exact_cost(RBM(n, 20)) == (20, float(L.EXACT_TERMS))
    assert L.choose_method(RBM(n, 20)) == "exact"
    assert L.choose_method(RBM(n + 1, 20)) == "ais"


def test_monitoring_threshold_one_below_and_one_above():
    n = L.MONITOR_TERMS >> 16  # n 2^16 = 2^29
    assert L.monitors_exactly(RBM(n, 16)) and L.choose_method(RBM(n, 16), "monitor") == "exact"
    assert not L.monitors_exactly(RBM(n + 1, 16))
    assert L.choose_method(RBM(n + 1, 16), "evaluate") == "exact"  # affordable once, not every epoch
    assert L.monitors_exactly(BoltzmannMachine(24))  # 24 x 2^24 = 4.0e8 terms
    assert not L.monitors_exactly(BoltzmannMachine(25))
    assert L.monitors_exactly(ProductBernoulli(784)) and L.choose_method(ProductBernoulli(3)) == "normalised"
    with pytest.raises(ConfigError, match="purpose"):
        L.choose_method(RBM(3, 2), "sometimes")


def test_auto_is_exact_below_the_threshold_and_records_the_choice():
    m = random_rbm(12, 8)
    est = L.log_partition(m)
    assert est.is_exact and est.method.startswith("exact")
    assert est.value == m.log_partition(method="exact").value
    assert "2^8 states" in est.details["policy"] and est.details["policy"].endswith("exact")
    assert L.log_partition(ProductBernoulli(5)) == Estimate.exact(0.0, "normalised")


def test_auto_falls_back_to_ais_when_the_model_cannot_enumerate():
    bm = BoltzmannMachine(25)  # affordable by cost (25 x 2^25 terms) but beyond the model's kernel (n <= 24)
    assert L.choose_method(bm) == "exact"
    est = quiet(L.log_partition, bm, steps=5, chains=4, burn_in=1)
    assert est.method == "ais" and "cannot enumerate" in est.details["policy"]
    assert est.value == pytest.approx(25 * math.log(2), abs=1e-9)  # zero parameters: the uniform distribution


def test_models_compute_by_name_and_leave_auto_to_the_policy():
    for model in (RBM(4, 3), BoltzmannMachine(4)):
        with pytest.raises(ConfigError, match="genlearn.likelihood"):
            model.log_partition(method="auto")
        with pytest.raises(ConfigError, match="method"):
            L.log_partition(model, "magic")
    with pytest.raises(ConfigError):
        RBM(4, 3).log_partition(method="mean-field")  # an RBM offers exact and ais only


# ------------------------------------------------------------------------------------------ exact vs AIS
def test_rbm_ais_bracket_contains_the_exact_log_z():
    m = random_rbm(12, 8, scale=0.5, seed=1)
    exact = L.log_partition(m, "exact").value
    est = quiet(L.log_partition, m, "ais", steps=2000, chains=100, seed=0, burn_in=200)
    assert est.method == "ais" and est.stderr > 0
    assert est.lower <= exact <= est.upper, (est.lower, exact, est.upper)
    assert abs(est.value - exact) < 0.1 and abs(est.details["reverse"] - exact) < 0.1


def test_boltzmann_ais_with_reverse_brackets_the_exact_log_z_and_mean_field_bounds_it():
    bm = random_machine(10, scale=0.3, seed=2)
    exact = L.log_partition(bm, "exact").value
    est = quiet(L.log_partition, bm, "ais", steps=500, chains=100, seed=0)
    assert est.method == "ais" and math.isfinite(est.upper) and "reverse" in est.details
    assert est.lower <= exact <= est.upper, (est.lower, exact, est.upper)
    assert abs(est.value - exact) < 0.05
    mf = L.log_partition(bm, "mean-field")
    assert mf.value <= exact + 1e-9 and mf.lower == mf.value and math.isinf(mf.upper)


# ------------------------------------------------------------------------------------------ NLL
def test_nll_of_an_energy_model_carries_the_method_and_bracket_of_log_z():
    m = random_rbm(10, 6, seed=3)
    x = m.sample(200, torch.Generator().manual_seed(0), steps=50)
    exact = L.nll(m, x)
    assert exact.is_exact and exact.value == pytest.approx(-float(m.log_prob(x).double().mean()), abs=1e-6)
    assert exact.details["bits_per_dim"] == pytest.approx(exact.value / (10 * math.log(2)))
    log_z = quiet(L.log_partition, m, "ais", steps=500, chains=50, seed=0, burn_in=50)
    est = L.nll(m, x, log_z=log_z)
    f = exact.details["mean_free_energy"]
    assert est.method == "ais" and (est.lower, est.value, est.upper) == pytest.approx(
        (f + log_z.lower, f + log_z.value, f + log_z.upper))
    flat = L.split_nll(m, x, log_z=log_z)
    assert flat["nll"] == est.value and flat["nll_method"] == "ais" and flat["nll_lower"] == est.lower
    normalised = L.nll(ProductBernoulli(10), x)
    assert normalised.is_exact and normalised.value == pytest.approx(10 * math.log(2), rel=1e-6)


def test_log_likelihoods_per_row():
    m = random_rbm(8, 5, seed=4)
    x = torch.bernoulli(torch.full((7, 8), 0.5), generator=torch.Generator().manual_seed(1))
    log_p, log_z = L.log_likelihoods(m, x)
    assert log_z.is_exact and torch.allclose(log_p, m.log_prob(x).double(), atol=1e-5)


# ------------------------------------------------------------------------------------------ KL: one type
def test_kl_divergence_returns_an_exact_estimate_for_closed_forms_tables_and_enumeration():
    g = torch.Generator().manual_seed(0)
    p = ProductBernoulli(6, torch.rand(6, generator=g) * 0.8 + 0.1)
    q = ProductBernoulli(6, torch.rand(6, generator=g) * 0.8 + 0.1)
    cases = {
        "closed-form": kl_divergence(p, q),
        "exact enumeration": kl_divergence(p, q, method="enumerate"),
        "exact (probability tables)": kl_divergence([0.2, 0.8], [0.5, 0.5]),
    }
    for method, est in cases.items():
        assert isinstance(est, Estimate) and est.method == method and est.is_exact and est.value > 0
    assert cases["closed-form"].value == pytest.approx(cases["exact enumeration"].value, rel=1e-9)
    rbm = random_rbm(6, 4, seed=5)
    kl = kl_divergence(p, rbm)  # no closed form: enumeration, with the RBM's exact log Z
    assert kl.method == "exact enumeration" and kl.is_exact and kl.value > 0
    assert kl_divergence(rbm, rbm).value == pytest.approx(0.0, abs=1e-9)
    assert kl_divergence(p, p).value == 0.0 and kl_divergence(Categorical(3), Categorical(3)).value == 0.0
    assert kl_divergence(p, q, method="exact").value == cases["closed-form"].value


def test_kl_divergence_of_mixtures_enumerates_or_samples():
    mix = MixtureOfBernoulli(8, components=3, seed=1)
    prod = ProductBernoulli(8, torch.full((8,), 0.3))
    exact = kl_divergence(mix, prod)
    assert exact.method == "exact enumeration" and exact.is_exact and exact.value > 0
    mc = kl_divergence(mix, prod, method="mc", n_samples=50_000, seed=0)
    assert mc.method == "monte-carlo" and mc.stderr > 0 and mc.lower <= exact.value <= mc.upper
    big, big_prod = MixtureOfBernoulli(30, components=3, seed=1), ProductBernoulli(30)
    with pytest.raises(IntractableError, match="method='mc'"):
        kl_divergence(big, big_prod)
    est = kl_divergence(big, big_prod, method="mc", n_samples=5000)
    assert isinstance(est, Estimate) and est.method == "monte-carlo" and est.value > 0 and est.lower >= 0
    assert kl_divergence(big, big, method="mc", n_samples=1000).value == 0.0
    with pytest.raises(IntractableError):
        kl_divergence(big, big_prod, method="exact")


def test_kl_divergence_estimates_continuous_models():
    p, q = Gaussian(1, mean=[0.3], std=[0.7]), Gaussian(1, mean=[-1.0], std=[1.5])
    closed = kl_divergence(p, q)
    quad = kl_divergence(p, q, method="quad")
    mc = kl_divergence(p, q, method="mc", n_samples=100_000, seed=1)
    assert closed.method == "closed-form" and quad.method == "quadrature" and mc.method == "monte-carlo"
    assert quad.value == pytest.approx(closed.value, abs=1e-6) and abs(mc.value - closed.value) < 4 * mc.stderr
    assert mc.lower <= closed.value <= mc.upper


def test_monte_carlo_kl_to_an_intractable_energy_model_uses_the_policy_log_z():
    """q = RBM with W = 0 (a product of Bernoullis in disguise, 30 x 30: beyond exact enumeration by the policy):
    the Monte Carlo KL with an AIS log Z brackets the closed form KL between the two products."""
    g = torch.Generator().manual_seed(6)
    probs_p = torch.rand(30, generator=g) * 0.8 + 0.1
    q = RBM(30, 30)
    with torch.no_grad():
        q.weight.zero_()
        q.visible_bias.copy_(torch.randn(30, generator=g) * 0.5)
        q.hidden_bias.copy_(torch.randn(30, generator=g) * 0.5)
    p = ProductBernoulli(30, probs_p)
    closed = kl_divergence(p, ProductBernoulli(30, torch.sigmoid(q.visible_bias.detach()))).value
    with pytest.raises(IntractableError):
        kl_divergence(p, q, method="mc", partition="exact")
    est = quiet(kl_divergence, p, q, method="mc", n_samples=20_000, steps=300, chains=50, burn_in=20)
    assert est.method == "monte-carlo + ais" and est.details["log_z_q"]["method"] == "ais"
    assert est.lower <= closed <= est.upper and abs(est.value - closed) < 0.1


# ------------------------------------------------------------------------------------------ callers
def test_evaluate_reports_kl_true_as_a_number_with_its_method():
    truth = Bernoulli(0.3)
    x = truth.sample(500, torch.Generator().manual_seed(0)).float()
    ds = Dataset(name="coin", kind="binary", train=x, test=x[:100], truth=truth)
    metrics = evaluate(Bernoulli(0.4), ds)
    assert isinstance(metrics["kl_true"], float) and metrics["kl_true_method"] == "closed-form"
    assert metrics["train_nll_method"] == "exact"
    rbm_metrics = evaluate(random_rbm(1, 3, seed=7), ds, splits=("test",))
    assert rbm_metrics["log_z_method"].startswith("exact") and rbm_metrics["kl_true_method"] == "exact enumeration"
    assert "policy" in rbm_metrics["log_z_details"]


def test_the_trainer_monitors_through_the_policy():
    from genlearn.learning.rules import make_rule
    from genlearn.learning.trainer import TrainConfig, Trainer

    x = torch.bernoulli(torch.full((200, 30), 0.3), generator=torch.Generator().manual_seed(0))
    ds = Dataset(name="bits", kind="binary", train=x, valid=x[:50])
    big = RBM(30, 30)  # 2^30 states: not monitored exactly; forward AIS when asked
    state = Trainer(big, ds, TrainConfig(epochs=1, lr=0.01, optimizer="sgd", batch_size=50, progress=False,
                                         monitor_ais_steps=20), rule=make_rule("contrastive-divergence")).fit()
    rec = state.history[-1]
    assert "train_nll" not in rec and math.isfinite(rec["train_nll_ais"]) and "valid_nll_ais" in rec
    small = RBM(30, 10)
    state = Trainer(small, ds, TrainConfig(epochs=1, lr=0.01, optimizer="sgd", batch_size=50, progress=False),
                    rule=make_rule("contrastive-divergence")).fit()
    assert state.history[-1]["train_nll"] == pytest.approx(L.nll(small, x).value, abs=1e-6)


def test_monitoring_enumerates_the_kl_to_the_truth_only_up_to_the_policy_cap(monkeypatch):
    """Every epoch the Trainer records kl_true by a closed form, or by enumeration when the state space has at
    most likelihood.MONITOR_KL_STATES states; beyond the cap the history has no kl_true, while the final
    metrics (one enumeration) still report it."""
    import genlearn
    from genlearn import likelihood

    monkeypatch.setattr(likelihood, "MONITOR_KL_STATES", 8)
    ds = genlearn.load_dataset("bars-and-stripes:size=2,n=200")  # 4 units: 16 states > 8
    run = genlearn.fit("fvsbn", ds, epochs=2, optimizer="adam", lr=0.05, progress=False, plots=False)
    assert all("kl_true" not in r for r in run.metrics["history"])
    assert run.metrics["kl_true"] > 0 and run.metrics["kl_true_method"] == "exact enumeration"
    pb = genlearn.load_dataset("product-bernoulli:dim=5,n=200")  # 32 states, but a closed form
    run = genlearn.fit("product-bernoulli", pb, epochs=2, lr=0.5, progress=False, plots=False)
    assert all(r["kl_true"] > 0 for r in run.metrics["history"])
    monkeypatch.setattr(likelihood, "MONITOR_KL_STATES", 16)
    run = genlearn.fit("fvsbn", ds, epochs=2, optimizer="adam", lr=0.05, progress=False, plots=False)
    assert all(r["kl_true"] > 0 for r in run.metrics["history"])


def test_a_generator_scored_by_quadrature_is_monitored_within_the_terms_cap(monkeypatch):
    """A GAN's log P(x) of each state is a quadrature over its 2-D latent space (401^2 grid points): the Trainer
    monitors kl_true every epoch only while states x grid points <= likelihood.MONITOR_QUADRATURE_TERMS ({0,1}^16
    by 160,801 points, 1.05e10 terms, took about a minute per epoch and, before the quadrature summed its chunks
    into one accumulator, a (grid x states) table beyond the machine's memory). bars-and-stripes of size 2 has
    16 states: 2.6e6 terms, monitored under the default cap, not under a cap of 10^6; the final metrics report it
    either way, the same number."""
    import genlearn
    from genlearn import likelihood

    ds = genlearn.load_dataset("bars-and-stripes:size=2,n=100")
    kwargs = dict(epochs=1, latent=2, hidden="8", critic_hidden="8", progress=False, plots=False)
    monitored = genlearn.fit("gan", ds, **kwargs)
    assert all(r["kl_true"] > 0 for r in monitored.metrics["history"])
    monkeypatch.setattr(likelihood, "MONITOR_QUADRATURE_TERMS", 10**6)
    capped = genlearn.fit("gan", ds, **kwargs)
    assert all("kl_true" not in r for r in capped.metrics["history"])
    assert capped.metrics["kl_true"] == pytest.approx(monitored.metrics["kl_true"], rel=1e-9)
    assert capped.metrics["kl_true"] == pytest.approx(monitored.metrics["history"][-1]["kl_true"], rel=1e-9)


def test_importance_sampling_with_one_sample_has_an_unknown_stderr_not_zero():
    """With k = 1 the delta method's variance (1/k)(k/ESS - 1) is 0 whatever the spread of the weights: the NLL's
    Monte Carlo error used to be reported as 0.0 (seed-to-seed sd ~0.01-0.02 nats). It is NaN (null in JSON),
    with a note; k = 2 gives a positive error."""
    import math

    from genlearn.data import Dataset
    from genlearn.likelihood import latent_nll
    from genlearn.models.registry import build_model

    x = (torch.rand(30, 6, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    vae = build_model("vae", Dataset(name="t", kind="binary", train=x))
    one = latent_nll(vae, x, iw_samples=1)
    assert math.isnan(one.stderr) and "unknown" in one.details["stderr_note"] and math.isfinite(one.value)
    two = latent_nll(vae, x, iw_samples=2)
    assert two.stderr > 0 and "stderr_note" not in two.details
