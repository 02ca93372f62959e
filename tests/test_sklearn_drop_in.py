"""genlearn.sklearn.BernoulliRBM as a drop-in for sklearn.neural_network.BernoulliRBM, checked against
scikit-learn's own class on the same inputs: sparse input and its dtypes, feature names (and so set_output),
h_samples_, gibbs's boolean rows; the VAE's feature names; torch's global generator left alone by the fits."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.neural_network import BernoulliRBM as SkRBM
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Binarizer

from genlearn.sklearn import VAE, BernoulliRBM


def gray_data(n=60, d=12, seed=0):
    """Rows in [0, 1] with about 70% zeros: what scikit-learn's RBM is fed (e.g. scaled pixels), sparse-friendly."""
    rng = np.random.default_rng(seed)
    return rng.random((n, d)) * (rng.random((n, d)) < 0.3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_sparse_input_is_accepted_and_fits_as_the_dense_rows_in_scikit_learns_dtypes(dtype, method):
    X = (gray_data() > 0).astype(dtype) if dtype == np.int64 else gray_data().astype(dtype)
    csr = sp.csr_matrix(X)
    ours_sparse = BernoulliRBM(n_components=5, n_iter=2, batch_size=10, random_state=0)
    ours_dense = BernoulliRBM(n_components=5, n_iter=2, batch_size=10, random_state=0)
    theirs = SkRBM(n_components=5, n_iter=2, batch_size=10, random_state=0)
    getattr(ours_sparse, method)(csr)
    getattr(ours_dense, method)(X)
    getattr(theirs, method)(csr)
    for name in ("components_", "intercept_hidden_", "intercept_visible_", "h_samples_"):
        assert getattr(ours_sparse, name).dtype == getattr(theirs, name).dtype, name
        assert getattr(ours_sparse, name).shape == getattr(theirs, name).shape, name
        assert np.array_equal(getattr(ours_sparse, name), getattr(ours_dense, name)), name
    h_ours, h_theirs = ours_sparse.transform(csr), theirs.transform(csr)
    assert h_ours.dtype == h_theirs.dtype and h_ours.shape == h_theirs.shape
    assert np.array_equal(h_ours, ours_dense.transform(X))
    assert ours_sparse.gibbs(csr).shape == theirs.gibbs(csr).shape


def test_a_sparse_matrix_too_large_to_densify_is_refused_before_allocating():
    from genlearn.errors import ConfigError

    est = BernoulliRBM(n_components=2, n_iter=1).fit(gray_data(d=12))
    huge = sp.csr_matrix((10**7, 10**6))  # 8e13 bytes as dense float64
    with pytest.raises(ValueError, match="features"):  # scikit-learn's own check (12 features seen in fit)
        est.transform(huge)
    with pytest.raises(ConfigError, match="sparse X as a dense array of 10,000,000 x 1,000,000 float64"):
        BernoulliRBM(n_components=2, n_iter=1).fit(huge)


def test_feature_names_out_match_scikit_learns():
    X = gray_data()
    ours = make_pipeline(Binarizer(threshold=0.5), BernoulliRBM(n_components=4, n_iter=1, random_state=0)).fit(X)
    theirs = make_pipeline(Binarizer(threshold=0.5), SkRBM(n_components=4, n_iter=1, random_state=0)).fit(X)
    names = ours.get_feature_names_out()
    assert list(names) == list(theirs.get_feature_names_out()) == [f"bernoullirbm{i}" for i in range(4)]
    assert names.dtype == theirs.get_feature_names_out().dtype
    # set_output exists (scikit-learn's _SetOutputMixin, enabled by get_feature_names_out) and "default" is numpy
    rbm = BernoulliRBM(n_components=4, n_iter=1, random_state=0).set_output(transform="default")
    assert isinstance(rbm.fit_transform(X), np.ndarray)
    with pytest.raises(Exception, match="not fitted"):
        BernoulliRBM(n_components=4).get_feature_names_out()


def test_set_output_pandas_names_the_columns():
    pd = pytest.importorskip("pandas")
    X = gray_data()
    out = BernoulliRBM(n_components=3, n_iter=1, random_state=0).set_output(transform="pandas").fit_transform(X)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == ["bernoullirbm0", "bernoullirbm1", "bernoullirbm2"]


def test_vae_feature_names_out_follow_scikit_learns_convention():
    X = (gray_data(n=40, d=6) > 0).astype(np.float64)
    vae = VAE(latent=3, hidden=8, epochs=1, batch_size=20, eval_iw_samples=5, random_state=0).fit(X)
    assert list(vae.get_feature_names_out()) == [f"variationalautoencoder{i}" for i in range(3)]
    assert vae.transform(X).shape == (40, len(vae.get_feature_names_out()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_h_samples_have_scikit_learns_shape_and_dtype_and_are_draws_of_the_chains_hidden_units(dtype, method):
    X = gray_data(n=200).astype(dtype)
    ours = BernoulliRBM(n_components=7, n_iter=3, batch_size=20, random_state=0)
    theirs = SkRBM(n_components=7, n_iter=3, batch_size=20, random_state=0)
    getattr(ours, method)(X)
    getattr(theirs, method)(X)
    assert ours.h_samples_.shape == theirs.h_samples_.shape == (20, 7)
    assert ours.h_samples_.dtype == theirs.h_samples_.dtype
    assert set(np.unique(ours.h_samples_)) <= {0.0, 1.0}
    # in distribution: Bernoulli(P(h | chains)), the probabilities the next PCD step draws from
    many = BernoulliRBM(n_components=7, n_iter=2, batch_size=4000, random_state=0).fit(gray_data(n=4000))
    p = many._rule.chain_probs.double().numpy()
    stderr = np.sqrt((p * (1 - p)).sum(axis=0)) / p.shape[0]
    assert np.all(np.abs(many.h_samples_.mean(axis=0) - p.mean(axis=0)) < 5 * stderr + 1e-12)


def test_h_samples_are_zero_before_any_step_and_absent_without_persistent_chains():
    X = gray_data()
    ours = BernoulliRBM(n_components=3, n_iter=0, batch_size=10, random_state=0).fit(X)
    theirs = SkRBM(n_components=3, n_iter=0, batch_size=10, random_state=0).fit(X)
    assert np.array_equal(ours.h_samples_, theirs.h_samples_) and ours.h_samples_.dtype == theirs.h_samples_.dtype
    assert not hasattr(BernoulliRBM(n_components=3, n_iter=1, gradient="cd").fit(X), "h_samples_")


def test_reading_h_samples_does_not_change_the_training():
    X = gray_data()
    a = BernoulliRBM(n_components=4, n_iter=1, batch_size=10, random_state=0)
    b = BernoulliRBM(n_components=4, n_iter=1, batch_size=10, random_state=0)
    for _ in range(3):  # each partial_fit draws new h_samples_ from their own generator
        a.partial_fit(X)
    b.partial_fit(np.vstack([X, X, X]))  # the same steps in one call (60 rows: 6 batches of 10, three times)
    assert np.array_equal(a.components_, b.components_)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gibbs_returns_boolean_rows_as_scikit_learns(dtype):
    X = gray_data().astype(dtype)
    ours = BernoulliRBM(n_components=4, n_iter=1, random_state=0).fit(X)
    theirs = SkRBM(n_components=4, n_iter=1, random_state=0).fit(X)
    v_ours, v_theirs = ours.gibbs(X[:5]), theirs.gibbs(X[:5])
    assert v_ours.dtype == v_theirs.dtype == np.bool_
    assert v_ours.shape == v_theirs.shape == (5, 12)


@pytest.mark.parametrize("make, method", [
    (lambda: BernoulliRBM(n_components=4, n_iter=2, batch_size=10, random_state=0), "fit"),
    (lambda: BernoulliRBM(n_components=4, batch_size=10, random_state=0), "partial_fit"),
    (lambda: VAE(latent=2, hidden=8, epochs=2, batch_size=20, eval_iw_samples=5, random_state=0), "fit"),
])
def test_fits_leave_torchs_global_generator_alone_and_are_reproducible(make, method):
    import warnings

    X = (gray_data(n=40, d=6) > 0).astype(np.float64)
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fork_rng(devices=[]) says nothing
        getattr(make(), method)(X)
    assert torch.equal(torch.rand(5), expected)
    torch.manual_seed(7)  # another global state: the same parameters
    a, b = make(), make()
    getattr(a, method)(X)
    torch.manual_seed(8)
    getattr(b, method)(X)
    for p, q in zip(a.model_.parameters(), b.model_.parameters()):
        assert torch.equal(p, q)
