"""genlearn.sklearn.VariationalAutoencoder: scikit-learn's estimator contract (the generic checks that do not feed
real-valued data, and the same invariances on binary data here), and what its likelihood ESTIMATES are: importance
sampling above the ELBO, recorded in score_method_."""
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from genlearn.sklearn import VAE, VariationalAutoencoder

#: the generic checks fit on real-valued (Gaussian, negative, > 1) data: a VAE with a Bernoulli decoder models
#: binary rows, so fit raises ValueError there. What they check is tested on binary data below (fit returns self,
#: n_features_in_, parameters untouched, idempotent fit, pickling, dtypes, sample order/subset invariance of
#: transform).
REAL_DATA = "fits real-valued X; a VAE models binary rows only (the property is tested on binary rows below)"
EXPECTED_FAILED = {name: REAL_DATA for name in (
    "check_fit_score_takes_y", "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self", "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
    "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_transformer_data_not_an_array", "check_transformer_general",
    "check_transformer_preserve_dtypes", "check_methods_sample_order_invariance", "check_methods_subset_invariance",
    "check_fit2d_1sample", "check_fit2d_1feature", "check_dict_unchanged", "check_fit_idempotent",
    "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d")}


@parametrize_with_checks([VariationalAutoencoder(latent=2, hidden=8, epochs=2, eval_iw_samples=10, random_state=0)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def data():
    from genlearn.data import load_dataset

    ds = load_dataset("digits")
    return ds.train[:500].double().numpy(), ds.test[:100].double().numpy()


@pytest.fixture(scope="module")
def fitted(data):
    X, _ = data
    return VariationalAutoencoder(latent=2, hidden=16, epochs=20, learning_rate=1e-2, eval_iw_samples=500,
                                  random_state=0).fit(X)


def test_fit_transform_sample(fitted, data):
    X, Xt = data
    assert VAE is VariationalAutoencoder
    assert fitted.n_features_in_ == 64 and fitted.latent_dim_ == 2
    z = fitted.transform(Xt)
    assert z.shape == (100, 2) and z.dtype == np.float64 and np.isfinite(z).all()
    np.testing.assert_allclose(fitted.transform(Xt[::-1]), z[::-1], atol=1e-6)  # order invariant (the means)
    np.testing.assert_allclose(fitted.transform(Xt[:7]), z[:7], atol=1e-6)
    np.testing.assert_allclose(clone(fitted).fit_transform(X)[:5], fitted.transform(X[:5]), atol=1e-6)
    s = fitted.sample(7, random_state=1)
    assert s.shape == (7, 64) and np.isin(s, (0.0, 1.0)).all()
    np.testing.assert_array_equal(s, fitted.sample(7, random_state=1))
    assert not np.array_equal(s, fitted.sample(7, random_state=2))


def test_fit_returns_self_and_training_helps(data):
    X, Xt = data
    est = VariationalAutoencoder(latent=2, hidden=16, epochs=1, learning_rate=1e-12, eval_iw_samples=50,
                                 random_state=0)  # Adam's steps are about the rate: 1e-12 leaves the start as it was
    assert est.fit(X) is est
    untrained = est.score(Xt)
    assert est.set_params(epochs=20, learning_rate=1e-2).fit(X).score(Xt) > untrained + 1.0


def test_score_samples_are_importance_sampling_estimates_above_the_elbo(fitted, data):
    _, Xt = data
    log_p = fitted.score_samples(Xt)
    assert log_p.shape == (100,) and log_p.dtype == np.float64 and np.isfinite(log_p).all() and (log_p < 0).all()
    assert fitted.score_method_ == {"method": "importance-sampling", "iw_samples": 500, "seed": fitted._seed}
    assert fitted.score(Xt) == pytest.approx(log_p.mean())
    np.testing.assert_array_equal(fitted.score_samples(Xt), log_p)  # seeded: the same numbers again
    elbo = fitted.elbo(Xt)
    assert elbo.shape == (100,) and np.isfinite(elbo).all()
    assert log_p.mean() > elbo.mean()  # the IWAE bound L_500 lies above the ELBO
    # L_1 (one importance sample: a one-sample ELBO) is below L_500 on average
    one = clone(fitted).set_params(eval_iw_samples=1)
    one.model_, one._seed, one.n_features_in_ = fitted.model_, fitted._seed, fitted.n_features_in_
    assert one.score(Xt) < fitted.score(Xt) and one.score_method_["iw_samples"] == 1


def test_params_clone_pickle_and_determinism(fitted, data):
    X, Xt = data
    params = fitted.get_params()
    assert params["latent"] == 2 and params["hidden"] == 16 and params["learning_rate"] == 1e-2
    copy = clone(fitted)
    assert copy.get_params() == params and not hasattr(copy, "model_")
    copy.fit(X)  # same random_state: the same fit
    np.testing.assert_array_equal(copy.transform(Xt), fitted.transform(Xt))
    assert copy.get_params() == params  # fit leaves the parameters alone
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).score_samples(Xt[:10]),
                                  fitted.score_samples(Xt[:10]))
    deeper = clone(fitted).set_params(latent=3, hidden=(8, 8), iw_samples=3, warmup_epochs=2, epochs=3)
    assert deeper.fit(X).transform(Xt).shape == (100, 3)
    assert deeper.model_.config()["hidden"] == [8, 8] and deeper.latent_dim_ == 3
    vamp = VariationalAutoencoder(latent=(2, 2), prior="vampprior", pseudo_inputs=10, hidden=8, epochs=1,
                                  eval_iw_samples=20, random_state=0).fit(X.astype(np.float32))
    assert vamp.transform(Xt).shape == (100, 4) and np.isfinite(vamp.score_samples(Xt)).all()


def test_non_binary_data_and_bad_settings_are_value_errors(fitted, data):
    X, Xt = data
    grey = np.full((5, 64), 0.5)
    with pytest.raises(ValueError, match=r"binary \(0/1\) rows"):
        VariationalAutoencoder(epochs=1).fit(grey)
    for method in (fitted.score_samples, fitted.transform, fitted.elbo, fitted.score):
        with pytest.raises(ValueError, match=r"binary \(0/1\) rows: X\[0, 0\] = "):
            method(grey)
    with pytest.raises(ValueError, match="features"):
        fitted.transform(Xt[:, :10])
    for bad in ({"epochs": -1}, {"learning_rate": 0.0}, {"batch_size": 0}, {"eval_iw_samples": 0},
                {"latent": (1, 2, 3)}, {"activation": "sigmoid"}, {"prior": "laplace"}, {"hidden": "wide"}):
        with pytest.raises(ValueError):
            VariationalAutoencoder(**{"epochs": 1, **bad}).fit(X[:50])
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(0)
    with pytest.raises(ValueError, match="pseudo-inputs"):
        VariationalAutoencoder(prior="vampprior", pseudo_inputs=100, epochs=1).fit(X[:50])
