"""Synthetic sources, the digits, specs and validation of user data."""
import math

import pytest
import torch

from genlearn.data import load_dataset, parse_spec
from genlearn.data.synthetic import bars_and_stripes_patterns
from genlearn.validate import check_binary, check_categorical
from genlearn.errors import ConfigError, DataError


def test_parse_spec():
    assert parse_spec("coin:p=0.3,n=1000") == ("coin", {"p": 0.3, "n": 1000})
    assert parse_spec("die:probs=0.5/0.5") == ("die", {"probs": [0.5, 0.5]})
    with pytest.raises(ConfigError, match="key=value"):
        parse_spec("coin:p")


def test_coin_and_die_sources_follow_their_truth():
    coin = load_dataset("coin:p=0.3,n=20000,seed=1")
    assert coin.train.shape == (20000, 1) and coin.truth.p == pytest.approx(0.3, abs=1e-6)
    assert float(coin.train.mean()) == pytest.approx(0.3, abs=5 * math.sqrt(0.21 / 20000))
    die = load_dataset("die:n=6000")
    assert die.kind == "categorical" and die.n_categories == 6
    freq = torch.bincount(die.train, minlength=6).double() / 6000
    assert torch.allclose(freq, torch.full((6,), 1 / 6, dtype=torch.float64), atol=5 * math.sqrt(5 / 36 / 6000))
    assert load_dataset("coin:n=10,seed=3").train.equal(load_dataset("coin:n=10,seed=3").train)


@pytest.mark.parametrize("size", [2, 3, 4])
def test_bars_and_stripes_has_2_to_the_n_plus_1_minus_2_patterns(size):
    patterns = bars_and_stripes_patterns(size)
    assert patterns.shape == (2 ** (size + 1) - 2, size * size)
    images = patterns.reshape(-1, size, size)
    rows_const = (images == images[:, :, :1]).all(-1).all(-1)
    cols_const = (images == images[:, :1, :]).all(-1).all(-1)
    assert (rows_const | cols_const).all()
    ds = load_dataset(f"bars-and-stripes:size={size},n=200")
    assert torch.isfinite(ds.truth.log_prob(ds.train)).all()


def test_product_bernoulli_source_and_digits():
    ds = load_dataset("product-bernoulli:probs=0.1/0.9,n=5000")
    assert torch.allclose(ds.train.mean(0), torch.tensor([0.1, 0.9]), atol=0.03)
    digits = load_dataset("digits")
    assert digits.train.shape[1] == 64 and digits.image_shape == (8, 8)
    assert set(digits.train.unique().tolist()) == {0.0, 1.0}
    assert sum(digits.sizes().values()) == 1797
    static = load_dataset("digits:binarize=static,seed=2")
    assert not static.train.equal(digits.train)


def test_bad_settings_are_clear():
    with pytest.raises(ConfigError, match="unknown setting"):
        load_dataset("coin:q=0.3")
    with pytest.raises(ConfigError, match=r"data set 'coin': p must be a number in \[0, 1\], got 1.5"):
        load_dataset("coin:p=1.5")
    with pytest.raises(ConfigError, match="unknown data set"):
        load_dataset("nosuchset")
    with pytest.raises(ConfigError, match="data set 'coin': n must be an integer >= 1, got 0"):
        load_dataset("coin:n=0")
    with pytest.raises(ConfigError, match="sum to 1"):
        load_dataset("die:probs=0.5/0.6")


def test_validation_names_problem_and_place():
    with pytest.raises(DataError, match=r"holds 0\.5 at row 1, column 2"):
        check_binary(torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.5]]))
    with pytest.raises(DataError, match="nan"):
        check_binary(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(DataError, match="expects 4"):
        check_binary(torch.zeros(3, 5), 4)
    with pytest.raises(DataError, match="empty"):
        check_binary(torch.zeros(0, 5))
    with pytest.raises(DataError, match="0..5"):
        check_categorical(torch.tensor([0, 6]), 6)


def test_dynamic_binarization_redraws_every_epoch():
    """With x ~ Bernoulli(intensity) redrawn each epoch, the product-Bernoulli MLE tends to the mean intensity,
    not to the frequencies of one static draw."""
    from genlearn.data.binarize import binarize
    from genlearn.data.dataset import Dataset
    from genlearn.learning import TrainConfig, Trainer
    from genlearn.models import ProductBernoulli

    intensity = torch.full((20, 3), 0.5)
    static = binarize(intensity, "static", seed=4)
    ds = Dataset(name="t", kind="binary", train=static, train_intensity=intensity)
    model = ProductBernoulli(3)
    Trainer(model, ds, TrainConfig(epochs=2000, lr=0.02, optimizer="sgd", progress=False)).fit()
    static_freq = static.mean(0)
    assert (static_freq - 0.5).abs().max() > 0.1  # the single draw is far from 0.5 ...
    assert torch.allclose(model.probs.detach(), torch.full((3,), 0.5), atol=0.06)  # ... the fit is not
