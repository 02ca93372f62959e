"""genlearn.sklearn.BernoulliRBM: scikit-learn's estimator checks, and real log-likelihoods checked against
exact enumeration (they must sum to one over all binary rows)."""
import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from genlearn.enumeration import all_states
from genlearn.sklearn import BernoulliRBM

#: generic checks that feed real-valued (non-binary) data to score_samples: the likelihood of an RBM is only
#: defined on {0,1}^n, so score_samples raises ValueError there. The same invariances are tested on binary
#: data below (test_score_samples_invariances_on_binary_data).
EXPECTED_FAILED = {
    "check_fit_score_takes_y": "score/score_samples need binary rows; the check passes real-valued X",
    "check_pipeline_consistency": "calls score on real-valued X (likelihood defined on binary rows only)",
    "check_methods_sample_order_invariance": "calls score_samples on real-valued X (tested on binary X below)",
    "check_methods_subset_invariance": "calls score_samples on real-valued X (tested on binary X below)",
}


@parametrize_with_checks([BernoulliRBM(n_components=8, n_iter=2, random_state=0),
                          BernoulliRBM(n_components=8, n_iter=2, random_state=0, matmul_precision="bfloat16")],
                         expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def binary_data(n=300, d=8, seed=0):
    rng = np.random.RandomState(seed)
    proto = rng.rand(3, d) < 0.5
    rows = proto[rng.randint(0, 3, n)] ^ (rng.rand(n, d) < 0.1)
    return rows.astype(np.float64)


def test_score_samples_is_a_normalised_exact_log_likelihood():
    X = binary_data()
    est = BernoulliRBM(n_components=5, learning_rate=0.1, batch_size=10, n_iter=20, random_state=0).fit(X)
    every_row = all_states(8, torch.float64).numpy()
    log_p = est.score_samples(every_row)
    assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-6)
    # brute force: log P(v) = log sum_h exp(-E(v, h)) - log Z with the fitted attributes
    W, b, c = est.components_.T, est.intercept_visible_, est.intercept_hidden_
    h = all_states(5, torch.float64).numpy()
    lw = (every_row @ b)[:, None] + (h @ c)[None, :] + every_row @ W @ h.T
    log_unnorm = np.logaddexp.reduce(lw, axis=1)
    brute = log_unnorm - np.logaddexp.reduce(log_unnorm)
    assert np.allclose(log_p, brute, atol=1e-4)
    assert est.log_z_.method.startswith("exact")
    assert est.score(X) == pytest.approx(np.mean(est.score_samples(X)))
    # training helps: the fitted model beats the untrained one (n_iter=0) by a wide margin
    untrained = BernoulliRBM(n_components=5, n_iter=0, random_state=0).fit(X)
    assert est.score(X) > untrained.score(X) + 1.0


def test_score_samples_uses_ais_for_large_models_and_agrees_with_exact():
    """log_z="ais" on a 22 x 24 model agrees with its exact log Z (2^22 states); "auto" picks AIS once the smaller
    layer is beyond exact enumeration (30 x 28)."""
    big = BernoulliRBM(n_components=28, n_iter=1, random_state=0, ais_steps=100).fit(binary_data(n=60, d=30))
    assert big.log_z_.method == "ais"
    X = binary_data(n=200, d=22, seed=1)
    est = BernoulliRBM(n_components=24, learning_rate=0.05, batch_size=20, n_iter=5, random_state=0,
                       log_z="ais", ais_steps=1000).fit(X)
    lz = est.log_z_
    assert lz.method == "ais" and lz.details["steps"] == 1000
    exact = est.model_.log_partition(method="exact").value  # 2^22 visible states: still enumerable
    assert abs(lz.value - exact) < 0.5
    free = est.model_.free_energy(torch.tensor(X[:5]).float()).detach().double().numpy()
    assert np.allclose(est.score_samples(X[:5]), -free - lz.value, atol=1e-4)


def test_score_samples_invariances_on_binary_data():
    X = binary_data()
    est = BernoulliRBM(n_components=6, n_iter=3, random_state=0).fit(X)
    full = est.score_samples(X)
    perm = np.random.RandomState(1).permutation(len(X))
    assert np.allclose(est.score_samples(X[perm]), full[perm])
    assert np.allclose(est.score_samples(X[:7]), full[:7])


def test_transform_sample_gibbs_and_errors():
    X = binary_data()
    est = BernoulliRBM(n_components=6, n_iter=3, random_state=0).fit(X.astype(np.float32))
    h = est.transform(X.astype(np.float32))
    assert h.dtype == np.float32 and h.shape == (len(X), 6)
    ref = 1 / (1 + np.exp(-(X @ est.components_.T + est.intercept_hidden_)))
    assert np.allclose(h, ref, atol=1e-5)
    s = est.sample(50, steps=20, random_state=0)
    assert s.shape == (50, 8) and set(np.unique(s)) <= {0.0, 1.0}
    assert np.array_equal(s, est.sample(50, steps=20, random_state=0))
    v = est.gibbs(X[:4])
    assert v.shape == (4, 8) and v.dtype == np.bool_  # as scikit-learn's
    with pytest.raises(ValueError, match="binary"):
        est.score_samples(X * 0.5)
    with pytest.raises(ValueError, match="n_components"):
        BernoulliRBM(n_components=0).fit(X)
    for bad in (2.5, "3", None, 0, True):  # was: 2.5 gave 2 rows, "3" gave 3, None a TypeError from int()
        with pytest.raises(ValueError, match="n_samples must be a positive integer"):
            est.sample(bad, steps=5)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        est.sample(3, steps=0.5)


def test_partial_fit_matches_the_sklearn_update_rule_in_expectation_and_changes_the_model():
    X = binary_data()
    est = BernoulliRBM(n_components=6, batch_size=300, random_state=0)
    est.partial_fit(X)
    first = est.components_.copy()
    est.partial_fit(X)
    assert not np.allclose(first, est.components_)
    assert est.n_features_in_ == 8


@pytest.mark.usefixtures("bfloat16_honoured")
def test_bfloat16_products_fit_as_well_as_full_precision():
    """matmul_precision="bfloat16" (mixed-precision training products) on 8-dimensional binary data: the exact
    mean log-likelihood after 20 passes is within 0.1 nats of the full-precision fit with the same seed
    (measured: 1e-4), and far above that of the uniform distribution (-8 ln 2 = -5.55)."""
    X = binary_data()
    scores = {}
    for precision in ("full", "bfloat16"):
        est = BernoulliRBM(n_components=6, n_iter=20, learning_rate=0.05, random_state=0,
                           matmul_precision=precision).fit(X)
        scores[precision] = float(est.score_samples(X).mean())
    assert scores["full"] > -5.0, scores
    assert abs(scores["full"] - scores["bfloat16"]) < 0.1, scores
    with pytest.raises(ValueError, match="matmul_precision"):
        BernoulliRBM(matmul_precision="fp16").fit(X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_fitted_attributes_take_the_data_dtype_as_scikit_learns(dtype, method):
    """components_ and the intercepts come in scikit-learn's dtypes (fit: X's, float32 or float64; a first
    partial_fit: float64), and hold the model's float32 parameters exactly."""
    from sklearn.neural_network import BernoulliRBM as SkRBM

    X = (np.random.default_rng(0).random((40, 12)) < 0.3).astype(dtype)
    ours = BernoulliRBM(n_components=5, n_iter=2, batch_size=10, random_state=0)
    theirs = SkRBM(n_components=5, n_iter=2, batch_size=10, random_state=0)
    getattr(ours, method)(X)  # scikit-learn's partial_fit returns None
    getattr(theirs, method)(X)
    expected = dtype if method == "fit" else np.float64
    for name in ("components_", "intercept_hidden_", "intercept_visible_"):
        assert getattr(ours, name).dtype == getattr(theirs, name).dtype == expected, name
        assert getattr(ours, name).shape == getattr(theirs, name).shape, name
    assert np.array_equal(ours.components_, ours.model_.weight.detach().T.numpy())
    assert ours.components_.flags.c_contiguous


def enumerated_mean_log_likelihood(est, X):
    """Oracle: mean log P(x) = mean[x.b + sum_j softplus(c_j + (x W)_j)] - log Z in float64 numpy, with log Z the
    logsumexp of the same over all 2^n visible states."""
    W, b, c = (np.asarray(a, dtype=np.float64) for a in (est.components_.T, est.intercept_visible_,
                                                          est.intercept_hidden_))

    def minus_free_energy(v):
        return v @ b + np.logaddexp(0.0, c + v @ W).sum(axis=1)

    states = all_states(X.shape[1], torch.float64).numpy()
    f = minus_free_energy(states)
    log_z = f.max() + np.log(np.exp(f - f.max()).sum())
    return float(minus_free_energy(X).mean() - log_z)


def test_verbose_prints_the_exact_mean_log_likelihood_of_each_pass(capsys):
    X = binary_data()
    make = lambda n_iter, verbose: BernoulliRBM(n_components=4, n_iter=n_iter, batch_size=10,  # noqa: E731
                                                random_state=0, verbose=verbose)
    loud = make(2, 1).fit(X)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("[BernoulliRBM] Iteration 1, time = ")
    printed = [float(line.split("exact mean log-likelihood = ")[1].split(" nats")[0]) for line in lines]
    one_pass = make(1, 0).fit(X)  # the parameters after the first pass
    assert printed[0] == pytest.approx(enumerated_mean_log_likelihood(one_pass, X), abs=2e-5)
    assert printed[1] == pytest.approx(enumerated_mean_log_likelihood(loud, X), abs=2e-5)
    assert printed[1] == pytest.approx(loud.score(X), abs=2e-5)
    assert np.array_equal(loud.components_, make(2, 0).fit(X).components_)  # printing changes nothing
    capsys.readouterr()
    make(1, 1).fit(X * 0.5)  # gray rows have no likelihood: the time alone
    gray = capsys.readouterr().out
    assert "time = " in gray and "log-likelihood" not in gray
    BernoulliRBM(n_components=40, n_iter=1, verbose=1, random_state=0).fit(binary_data(d=30))  # 2^30 states
    large = capsys.readouterr().out
    assert "time = " in large and "log-likelihood" not in large


def test_moot_settings_refused_numpy_rates_taken_and_values_outside_the_unit_interval_warned():
    """k with the exact gradient and the AIS settings with log_z 'exact' changed nothing and were accepted (the
    command line refuses them); a numpy float32 learning rate (scikit-learn takes it) was refused with a message
    that contradicted itself; values outside [0, 1] are fitted as scikit-learn's are, with one warning."""
    import warnings

    X = (np.random.default_rng(0).random((40, 6)) < 0.4).astype(float)
    with pytest.raises(ValueError, match="k=3 applies to CD-k / PCD-k"):
        BernoulliRBM(4, k=3, gradient="exact").fit(X)
    with pytest.raises(ValueError, match="ais_steps and ais_chains apply to log_z 'ais' or 'auto'"):
        BernoulliRBM(4, log_z="exact", ais_steps=10).fit(X)
    rbm = BernoulliRBM(4, learning_rate=np.float32(0.1), n_iter=1, random_state=0).fit(X)
    assert rbm.components_.shape == (4, 6)
    with pytest.warns(UserWarning, match="X holds -1 at row 0, column 1: a Bernoulli RBM models values in"):
        BernoulliRBM(4, n_iter=1, random_state=0).fit(-X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BernoulliRBM(4, n_iter=1, random_state=0).fit(0.5 * X)  # probabilities: no warning
