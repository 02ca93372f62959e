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
    est = DensityEstimator(model, options=options, epochs=30, learning_rate=0.05, random_state=0).fit(X)
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
    ref = build_model("mixture", ds, components=2)
    Trainer(ref, ds, TrainConfig(epochs=5, lr=0.05, optimizer="adam", batch_size=100, seed=em._seed,
                                 progress=False), rule=make_rule("em")).fit()
    for p, q in zip(em.model_.parameters(), ref.parameters()):
        assert torch.equal(p, q)
    assert em.score(X) > gd.score(X)
