"""genlearn.sklearn.DensityEstimator: scikit-learn's estimator contract (checked on the Gaussian family, which
accepts the real-valued data the generic checks use) and exact likelihoods for the binary families (a GAN's by
quadrature over its 2-D latent space: normalised over all 2^n states as well)."""
import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from genlearn.enumeration import all_states
from genlearn.models import Gaussian
from genlearn.sklearn import DensityEstimator


@parametrize_with_checks([DensityEstimator("gaussian", epochs=3, learning_rate=0.05, random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    torch.set_num_threads(1)
    check(estimator)


def test_gaussian_fit_reaches_closed_form_mle():
    rng = np.random.RandomState(0)
    X = rng.randn(400, 2) * [2.0, 0.5] + [1.0, -3.0]
    est = DensityEstimator("gaussian", epochs=600, learning_rate=0.05, batch_size=None, random_state=0).fit(X)
    mle = Gaussian(2).fit_closed_form(torch.from_numpy(X).float())
    expected = mle.log_prob(torch.from_numpy(X).float()).detach().double().numpy()
    assert est.score(X) == pytest.approx(expected.mean(), abs=2e-3)


@pytest.mark.parametrize("model, options", [("product-bernoulli", None), ("mixture", {"components": 3}),
                                            ("mixture", {"components": 3, "em": True}), ("fvsbn", None),
                                            ("rbm", {"hidden": 3, "persistent": True, "n_chains": 20}),
                                            ("gan", {"latent": 2, "hidden": 8, "critic_hidden": 8})])
def test_binary_families_give_normalised_log_likelihoods(model, options):
    rng = np.random.RandomState(1)
    X = (rng.rand(300, 6) < [0.2, 0.8, 0.5, 0.3, 0.6, 0.9]).astype(float)
    rate = None if (options or {}).get("em") else 0.05  # EM takes no optimizer steps: a rate is refused
    est = DensityEstimator(model, options=options, epochs=30, learning_rate=rate, random_state=0).fit(X)
    log_p = est.score_samples(all_states(6, torch.float64).numpy())
    assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-5)
    assert est.sample(10).shape == (10, 6)


def test_non_binary_data_for_a_binary_family_is_a_value_error():
    with pytest.raises(ValueError, match="binary"):
        DensityEstimator("product-bernoulli", epochs=1).fit(np.full((5, 3), 0.5))


def test_learning_options_choose_the_learning_rule():
    """options={"em": True} trains the mixture by the EM rule: the fitted parameters are those of the Trainer with
    make_rule("em") from the same initialisation, and EM reaches a lower NLL than 5 gradient epochs."""
    from genlearn.data.dataset import Dataset
    from genlearn.learning import TrainConfig, Trainer
    from genlearn.learning.rules import make_rule
    from genlearn.models.registry import build_model

    rng = np.random.RandomState(2)
    X = (rng.rand(200, 6) < [0.2, 0.8, 0.5, 0.3, 0.6, 0.9]).astype(np.float32)
    em = DensityEstimator("mixture", options={"components": 2, "em": True}, epochs=5, random_state=0).fit(X)
    gd = DensityEstimator("mixture", options={"components": 2}, epochs=5, random_state=0).fit(X)
    ds = Dataset(name="array", kind="binary", train=torch.from_numpy(X))
    ref = build_model("mixture", ds, components=2, init_seed=em._seed)  # random_state seeds the initialisation
    Trainer(ref, ds, TrainConfig(epochs=5, lr=0.05, optimizer="adam", batch_size=100, seed=em._seed,
                                 progress=False), rule=make_rule("em")).fit()
    for p, q in zip(em.model_.parameters(), ref.parameters()):
        assert torch.equal(p, q)
    assert em.score(X) > gd.score(X)


# -- the family's own training by default (genlearn.fit's settings and checks) ----------------------------------
def digits_bits():
    """The first 300 scikit-learn digits thresholded at 8: 64 binary features, some of them constant."""
    from sklearn.datasets import load_digits

    return (load_digits().data[:300] > 8).astype(np.float64)


def product_bernoulli_mle_mean_log_likelihood(X):
    """Closed form: p_i = mean of column i, mean_m sum_i log p_i^x (1 - p_i)^(1 - x), with 0 log 0 = 0."""
    p = X.mean(axis=0)
    log_p, log_q = np.log(np.where(p > 0, p, 1.0)), np.log(np.where(p < 1, 1.0 - p, 1.0))
    return float((X @ log_p + (1 - X) @ log_q).mean())


def test_default_fit_is_the_familys_convergent_fit_and_reaches_the_closed_form_mle():
    X = digits_bits()
    expected = product_bernoulli_mle_mean_log_likelihood(X)
    est = DensityEstimator("product-bernoulli", random_state=0).fit(X)
    assert est.score(X) == pytest.approx(expected, abs=1e-6)
    # batch_size=None (the whole set per step) is what the family's full-batch L-BFGS uses anyway
    whole = DensityEstimator("product-bernoulli", batch_size=None, random_state=0).fit(X)
    assert whole.score(X) == pytest.approx(expected, abs=1e-6)


def test_default_gaussian_fit_reaches_its_closed_form_mle():
    rng = np.random.RandomState(0)
    X = rng.randn(400, 3) * [2.0, 0.5, 1.0] + [1.0, -3.0, 0.0]
    est = DensityEstimator("gaussian", random_state=0).fit(X)
    mle = Gaussian(3).fit_closed_form(torch.from_numpy(X).float())
    expected = float(mle.log_prob(torch.from_numpy(X).float()).detach().double().mean())
    # the closed form by hand too: diagonal covariance = the columns' biased variances
    by_hand = float(np.mean(-0.5 * (((X - X.mean(0)) ** 2) / X.var(0) + np.log(2 * np.pi * X.var(0))).sum(1)))
    assert expected == pytest.approx(by_hand, abs=1e-6)
    assert est.score(X) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("model, options, ours, theirs", [
    ("product-bernoulli", None, {"batch_size": 7}, {"batch_size": 7}),  # gd: the whole set
    ("product-bernoulli", None, {"optimizer": "lbfgs", "batch_size": 7}, {"optimizer": "lbfgs", "batch_size": 7}),
    ("mixture", {"components": 2, "em": True}, {"learning_rate": 0.1}, {"lr": 0.1}),
    ("mixture", {"components": 2, "em": True}, {"optimizer": "adam"}, {"optimizer": "adam"}),
])
def test_settings_the_training_would_ignore_are_refused_as_genlearn_fit_refuses_them(model, options, ours, theirs):
    import genlearn
    from genlearn.errors import ConfigError

    X = digits_bits()
    with pytest.raises(ConfigError) as refused:
        DensityEstimator(model, options=options, random_state=0, **ours).fit(X)
    with pytest.raises(ConfigError) as by_fit:
        genlearn.fit(model, X, plots=False, progress=False, **(options or {}), **theirs)
    assert str(refused.value) == str(by_fit.value)
    assert "batch" in str(refused.value).lower() or "gradient learning" in str(refused.value)


def test_a_minibatch_optimizer_uses_the_batch_size():
    X = digits_bits()
    scores = {bs: DensityEstimator("product-bernoulli", optimizer="sgd", learning_rate=0.1, epochs=2, batch_size=bs,
                                   random_state=0).fit(X).score(X) for bs in (7, None)}
    assert scores[7] > scores[None] + 0.5  # 86 steps a pass against one: it is not ignored


@pytest.mark.parametrize("batch_size", ["all", 0, -3, 2.5, True])
def test_a_bad_batch_size_is_a_config_error(batch_size):
    from genlearn.errors import ConfigError

    with pytest.raises(ConfigError, match="batch_size must be 'auto'"):
        DensityEstimator("product-bernoulli", batch_size=batch_size).fit(digits_bits())


def test_get_params_and_clone_show_the_new_defaults():
    from sklearn.base import clone

    est = DensityEstimator("gaussian")
    params = est.get_params()
    assert params["epochs"] is None and params["batch_size"] == "auto"
    assert params["learning_rate"] is None and params["optimizer"] is None
    copy = clone(est.set_params(batch_size=None, epochs=np.int64(5)))
    assert copy.get_params()["batch_size"] is None and copy.get_params()["epochs"] == 5
    X = np.random.RandomState(0).randn(50, 2)
    assert np.isfinite(copy.fit(X).score(X))  # a numpy integer from a parameter grid is taken


def test_fit_leaves_torchs_global_generator_alone_and_is_reproducible():
    import warnings

    X = digits_bits()[:, :8]
    make = lambda: DensityEstimator("mixture", options={"components": 2}, epochs=3, random_state=0)  # noqa: E731
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fork_rng(devices=[]) says nothing
        first = make().fit(X)
    assert torch.equal(torch.rand(5), expected)
    torch.manual_seed(7)  # another global state: the same fit
    second = make().fit(X)
    for p, q in zip(first.model_.parameters(), second.model_.parameters()):
        assert torch.equal(p, q)
    other = DensityEstimator("mixture", options={"components": 2}, epochs=3, random_state=1).fit(X)
    assert not all(torch.equal(p, q) for p, q in zip(first.model_.parameters(), other.model_.parameters()))
