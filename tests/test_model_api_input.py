"""Bad input to the low-level Python API (a model's log_prob and sample, its constructor, empirical_kl) gives one
clear genlearn error naming the problem, not a raw torch error or silently wrong numbers; valid input keeps its exact
value."""
import math

import numpy as np
import pytest
import torch

from genlearn.data.dataset import Dataset
from genlearn.divergence import empirical_kl
from genlearn.errors import ConfigError, DataError
from genlearn.models import Bernoulli, Categorical, Gaussian, LatentVariableModel, PatternTable, ProductBernoulli
from genlearn.models.registry import build_model, list_models

FAMILIES = [spec.name for spec in list_models()]


def _binary(m=60, n=6, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random((m, n)) < 0.5).astype(np.float32)


def _family(name: str):
    """(model of family `name` built for a small data set, valid rows x of its sample space)."""
    spec = next(s for s in list_models() if s.name == name)
    kind = spec.data_kinds[0]
    if kind == "categorical":
        x = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(0))
        return build_model(name, Dataset("t", kind, x, n_categories=3)), x
    if kind == "real":
        x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    else:
        x = torch.tensor(_binary(40, 1 if name == "bernoulli" else 6))
    return build_model(name, Dataset("t", kind, x)), x


# -- empirical_kl ------------------------------------------------------------------------------------------------
def test_empirical_kl_of_numpy_data_equals_the_closed_form_and_the_tensor_value():
    x = _binary()
    model = ProductBernoulli(6, probs=torch.tensor([0.3, 0.5, 0.7, 0.2, 0.9, 0.4]))
    res = empirical_kl(model, x)
    # by hand: NLL = -(1/M) sum_m sum_i [x log p + (1 - x) log(1 - p)], H(Q^) = -sum_patterns f log f
    p = 1.0 / (1.0 + np.exp(-model.logits.detach().double().numpy()))
    xd = x.astype(np.float64)
    nll = -np.mean((xd * np.log(p) + (1 - xd) * np.log1p(-p)).sum(1))
    _, counts = np.unique(x, axis=0, return_counts=True)
    f = counts / counts.sum()
    entropy = -np.sum(f * np.log(f))
    assert res["nll"] == pytest.approx(nll, abs=1e-10)
    assert res["entropy"] == pytest.approx(entropy, abs=1e-12)
    assert res["kl"] == pytest.approx(nll - entropy, abs=1e-10)
    assert empirical_kl(model, torch.tensor(x)) == res
    assert empirical_kl(model, x.astype(np.int64)) == res  # integer 0/1 arrays too


def test_empirical_kl_refuses_data_of_another_width():
    with pytest.raises(DataError, match="data has 6 features per example but the model expects 3"):
        empirical_kl(ProductBernoulli(3), torch.tensor(_binary()))


def test_empirical_kl_refuses_non_binary_data_for_a_binary_model():
    x = np.zeros((10, 6), dtype=np.float32)
    x[0, 0] = 2.0
    with pytest.raises(DataError, match=r"must be binary \(0/1\) for this model but holds 2\.0 at row 0, column 0"):
        empirical_kl(ProductBernoulli(6), torch.tensor(x))


def test_empirical_kl_refuses_nan_data():
    x = _binary()
    x[3, 2] = np.nan
    with pytest.raises(DataError, match=r"contains nan at index \[3, 2\].*remove or impute"):
        empirical_kl(ProductBernoulli(6), torch.tensor(x))
    real = np.random.default_rng(0).normal(size=(20, 2))
    real[4, 1] = np.inf
    with pytest.raises(DataError, match=r"contains inf at index \[4, 1\]"):
        empirical_kl(Gaussian(2), real)


@pytest.mark.parametrize("bad", [5, -1])
def test_empirical_kl_refuses_outcomes_outside_a_categorical_model(bad):
    x = torch.tensor([0, 1, 2, bad])
    with pytest.raises(DataError, match=rf"integer outcomes 0..2, but row 3 is {bad}"):
        empirical_kl(Categorical(3), x)


def test_empirical_kl_refuses_a_kind_other_than_the_models():
    with pytest.raises(ConfigError, match="kind 'real' does not match .* model is binary"):
        empirical_kl(ProductBernoulli(6), _binary(), kind="real")


# -- sample(n) ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_sample_checks_its_count_the_same_way_in_every_family(name):
    model, _ = _family(name)
    for n in (-1, 0, 2.5, "3", True):
        with pytest.raises(ConfigError, match=rf"^n must be a positive integer \(the number of samples to draw\), got "
                                              rf"{repr(n).replace('.', '[.]')}$"):
            model.sample(n)
    # any integer type is a count: numpy and 0-d torch integers as well as int
    assert model.sample(np.int64(3), generator=torch.Generator().manual_seed(0)).shape[0] == 3
    assert model.sample(torch.tensor(2)).shape[0] == 2
    with pytest.raises(ConfigError, match="10,000,000,000,000 samples of .* needs about .* draw fewer at a time"):
        model.sample(10**13)  # before torch is asked for the memory (its allocator's error, or the machine's swap)


@pytest.mark.parametrize("model, x, words", [
    (ProductBernoulli(3), torch.zeros(5, 4), "data has 4 features per example but the model expects 3"),
    (ProductBernoulli(3), torch.zeros(3), "must be a 2-D array"),
    (Bernoulli(), torch.zeros(5, 2), "data has 2 features per example but the model expects 1"),
    (ProductBernoulli(2), torch.tensor([[0.0, 7.0]]), "must be binary"),
    (Gaussian(3), torch.zeros(5, 4), "data has 4 features per example but the model expects 3"),
    (Gaussian(2), torch.tensor([[0.0, float("nan")]]), "contains nan"),
])
def test_fit_closed_form_checks_its_rows(model, x, words):
    """fit_closed_form raised torch's shape errors, and took NaN or 7 into its estimate (p = 1, a NaN mean)."""
    with pytest.raises(DataError, match=words):
        model.fit_closed_form(x)


@pytest.mark.parametrize("model", [ProductBernoulli(6), Gaussian(2), Categorical(3),
                                   PatternTable(torch.tensor([[0.0, 1.0], [1.0, 1.0]]), torch.tensor([0.5, 0.5]))])
def test_sample_refuses_non_positive_counts_in_the_families_that_had_no_check(model):
    with pytest.raises(ValueError, match="n must be a positive integer .*got -1"):
        model.sample(-1)
    with pytest.raises(ValueError, match="n must be a positive integer .*got 0"):
        model.sample(0)


# -- log_prob(x) -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_log_prob_refuses_rows_of_another_width(name):
    model, x = _family(name)
    if model.support == "categorical":
        with pytest.raises(DataError, match=r"integer outcomes of shape \(M,\) or \(M, 1\), got shape \(4, 3\)"):
            model.log_prob(torch.zeros(4, 3, dtype=torch.long))
        return
    n = model.n_features
    with pytest.raises(DataError, match=rf"x has {n + 2} columns but the '{model.name}' model has {n} features"):
        model.log_prob(torch.zeros(4, n + 2))
    with pytest.raises(DataError, match=rf"x has {n + 2} columns .*pass data of shape \(M, {n}\)"):
        model.log_prob(np.zeros((4, n + 2), dtype=np.float32))


@pytest.mark.parametrize("name", FAMILIES)
def test_log_prob_gives_one_value_per_example_for_any_batch_shape_and_numpy(name):
    """One example (n,) -> a scalar, a batch (2, 2, n) -> (2, 2), a numpy array as the tensor, each the value of the
    same rows in an (M, n) batch (1-feature models: (M,) is M examples). NADE, MADE and the RBM used to fail on
    1-D or 3-D input (raw numba / torch errors), the RBM on numpy; Bernoulli summed M flips into one number."""
    model, x = _family(name)
    if model.support == "categorical" or isinstance(model, LatentVariableModel):
        return  # outcomes (M,) (test_categorical_outcomes_...); latent models have no exact log_prob
    with torch.no_grad():
        rows = model.log_prob(x[:4])
        assert rows.shape == (4,)
        assert torch.allclose(model.log_prob(torch.as_tensor(x[:4]).numpy()), rows)
        if model.n_features == 1:
            assert torch.allclose(model.log_prob(x[:4].reshape(-1)), rows)
            return
        one = model.log_prob(x[1])
        assert one.shape == () and torch.allclose(one, rows[1])
        assert torch.allclose(model.log_prob(x[:4].reshape(2, 2, -1)), rows.reshape(2, 2))


@pytest.mark.parametrize("name", FAMILIES)
def test_samples_are_in_the_models_float_dtype(name):
    """A model made .double() draws float64 rows, like its parameters (mixture, fvsbn, nade, made, boltzmann, vae
    and gan drew float32); float32 by default; a die's outcomes stay integers."""
    model, _ = _family(name)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if model.support == "categorical":
            assert not model.double().sample(3, generator=g).is_floating_point()
            return
        assert model.sample(3, generator=g).dtype == torch.float32
        assert model.double().sample(3, generator=g).dtype == torch.float64


def test_a_bernoulli_scores_each_flip_of_a_1d_tensor():
    flips = Bernoulli(0.3).log_prob(torch.tensor([1.0, 0.0, 1.0]))
    assert torch.allclose(flips, torch.tensor([math.log(0.3), math.log(0.7), math.log(0.3)]))


@pytest.mark.parametrize("bad, message", [([-1], r"must be 0\.\.2 \(3 categories\), got -1"),
                                          ([3, 0, 4], r"must be 0\.\.2 \(3 categories\), got 3, 4"),
                                          ([1.7], r"must be integers 0\.\.2, got 1\.7"),
                                          ([float("nan")], r"must be integers 0\.\.2, got nan")])
def test_categorical_outcomes_outside_the_categories_are_refused(bad, message):
    """A negative outcome used to wrap to the last category (P = 0.5 here), a fraction to be truncated."""
    die = Categorical(3, probs=[0.2, 0.3, 0.5])
    with pytest.raises(DataError, match=message):
        die.log_prob(torch.tensor(bad))
    with pytest.raises(DataError, match=message):
        Categorical(3).fit_closed_form(torch.tensor(bad))
    assert torch.allclose(die.log_prob(torch.tensor([0, 2])).exp(), torch.tensor([0.2, 0.5]))


def test_log_prob_of_a_gaussian_no_longer_reshapes_rows_of_another_width():
    # 5 rows of 4 values used to be read as 10 rows of 2 values
    with pytest.raises(DataError, match=r"x has 4 columns but the 'gaussian' model has 2 features \(x has shape "
                                        r"\(5, 4\)\)"):
        Gaussian(2).log_prob(torch.zeros(5, 4))
    lp = Gaussian(1).log_prob(torch.zeros(5))  # a 1-D x of a one-feature model is still M examples
    assert lp.shape == (5,) and float(lp[0]) == pytest.approx(-0.5 * math.log(2 * math.pi))


# -- constructors with explicit parameter values -----------------------------------------------------------------
@pytest.mark.parametrize("std, message", [
    ([-1.0, 1.0], r"std\[0\] is -1\.0; std must hold finite numbers > 0"),
    ([1.0, 0.0], r"std\[1\] is 0\.0; std must hold finite numbers > 0"),
    ([1.0, math.inf], r"std\[1\] is inf; std must hold finite numbers > 0"),
    ([math.nan, 1.0], r"std\[0\] is nan"),
])
def test_gaussian_refuses_a_std_that_is_not_positive_and_finite(std, message):
    with pytest.raises(ConfigError, match=message):
        Gaussian(2, std=torch.tensor(std))


def test_gaussian_refuses_a_mean_that_is_not_finite_or_of_another_length():
    with pytest.raises(ConfigError, match=r"mean\[1\] is nan; mean must hold finite numbers"):
        Gaussian(2, mean=[0.0, math.nan])
    with pytest.raises(ConfigError, match=r"mean must be 2 number\(s\), one per feature, got 3"):
        Gaussian(2, mean=[0.0, 1.0, 2.0])
    with pytest.raises(ConfigError, match=r"std must be 2 number\(s\), one per feature, got 1"):
        Gaussian(2, std=[1.0])


def test_bernoulli_constructors_name_the_bad_probability():
    with pytest.raises(ConfigError, match=r"probs\[1\] is 2\.0; probs must hold numbers in \[0, 1\]"):
        ProductBernoulli(3, probs=[0.1, 2.0, 0.3])
    with pytest.raises(ConfigError, match=r"probs\[2\] is nan"):
        ProductBernoulli(3, probs=[0.1, 0.2, math.nan])
    with pytest.raises(ConfigError, match=r"^p is 1\.5; p must hold numbers in \[0, 1\]"):
        Bernoulli(1.5)


def test_pattern_table_refuses_non_binary_patterns_bad_weights_and_repeats():
    patterns = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ConfigError, match=r"patterns must be binary \(0/1\), but row 1, column 0 is 2\.0"):
        PatternTable(torch.tensor([[0.0, 1.0], [2.0, 1.0]]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ConfigError, match="probs must be finite non-negative weights with a positive sum"):
        PatternTable(patterns, torch.tensor([-0.5, 1.5]))
    with pytest.raises(ConfigError, match="probs must be finite non-negative weights with a positive sum"):
        PatternTable(patterns, torch.tensor([math.nan, 1.0]))
    with pytest.raises(ConfigError, match="the same pattern more than once"):
        PatternTable(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), torch.tensor([0.5, 0.5]))


def test_genlearn_fit_leaves_the_global_torch_generator_as_it_was(tmp_path):
    """The Trainer seeds torch's global generator with the fit's seed: a caller's own stream used to continue from
    that seed after genlearn.fit; it now continues as if the fit had not run, and the fit is as reproducible."""
    from genlearn.runs import fit

    x = torch.tensor(_binary(40, 5))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = fit("product-bernoulli", x, optimizer="adam", lr=0.1, epochs=2, batch_size=10, progress=False,
                plots=False)
    assert torch.equal(torch.rand(3), expected)
    second = fit("product-bernoulli", x, optimizer="adam", lr=0.1, epochs=2, batch_size=10, progress=False,
                 plots=False)
    assert torch.equal(first.model.logits, second.model.logits)
