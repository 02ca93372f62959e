"""What a fitted latent-variable model (VAE) writes and shows: class labels carried by the data sets (aligned with
the rows through every split), the latent plots (reconstructions, 2-D manifold, encodings), the learning curve of
the latent monitoring keys, runs.write_plots and runs.Run.log_prob."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from genlearn import plots
from genlearn.data import load_dataset
from genlearn.data.dataset import Dataset, split_arrays, split_indices
from genlearn.data.formats import write_idx
from genlearn.errors import ConfigError, DataError


# -- labels ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_digits_labels_are_aligned_with_the_images(digits):
    """Every row of every split carries the label of a scikit-learn image it equals (exactly that image's label
    where the binarized image is unique), and the grey levels of binarize=dynamic find the very image."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    binary = raw.data / 16.0 > 0.5
    assert digits.describe()["labels"] is True
    for split in ("train", "valid", "test"):
        x, y = digits.split(split).numpy().astype(bool), digits.split_labels(split)
        assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
        unique = 0
        for m in range(0, x.shape[0], 7):
            matches = np.flatnonzero((binary == x[m]).all(1))
            assert matches.size > 0 and int(y[m]) in raw.target[matches]
            if np.unique(raw.target[matches]).size == 1:
                assert int(y[m]) == raw.target[matches[0]]
                unique += 1
        assert unique > 0.8 * len(range(0, x.shape[0], 7))
    dyn = load_dataset("digits:binarize=dynamic")
    for m in range(0, dyn.train_intensity.shape[0], 50):
        (idx,) = np.flatnonzero(np.abs(raw.data / 16.0 - dyn.train_intensity[m].numpy()).max(1) < 1e-6)[:1]
        assert int(dyn.labels["train"][m]) == raw.target[idx]
    assert torch.equal(dyn.labels["test"], digits.labels["test"])


def test_split_indices_cut_rows_and_labels_alike():
    x = torch.arange(50.0).reshape(25, 2)
    y = torch.arange(25) * 10
    parts = split_arrays(x, (0.6, 0.2, 0.2), seed=3)
    for part, idx in zip(parts, split_indices(25, (0.6, 0.2, 0.2), seed=3)):
        assert torch.equal(part, x[idx]) and torch.equal(y[idx], (part[:, 0] / 2 * 10).long())
    assert sum(p.shape[0] for p in parts) == 25


def test_dataset_rejects_misaligned_labels():
    x = torch.zeros(4, 3)
    with pytest.raises(DataError, match="4 rows but 3 labels"):
        Dataset("d", "binary", train=x, labels={"train": torch.arange(3)})
    with pytest.raises(DataError, match="does not have"):
        Dataset("d", "binary", train=x, labels={"test": torch.arange(4)})
    with pytest.raises(DataError, match="integers"):
        Dataset("d", "binary", train=x, labels={"train": torch.zeros(4)})
    d = Dataset("d", "binary", train=x, labels={"train": np.arange(4, dtype=np.int32)})
    assert d.labels["train"].dtype == torch.int64 and d.split_labels("valid") is None
    assert Dataset("d", "binary", train=x).describe()["labels"] is False


def _fake_labelled_mnist(folder: Path, n_train=12, n_test=4, gz=True):
    """Images whose pixel (0, 0) holds their index, labels = index % 10 (so alignment can be checked)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    train[:, 0, 0], test[:, 0, 0] = np.arange(n_train), 100 + np.arange(n_test)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", train)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", test)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", (np.arange(n_train) % 10).astype(np.uint8))
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", ((100 + np.arange(n_test)) % 10).astype(np.uint8))


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_labels_follow_the_images(tmp_path, gz):
    _fake_labelled_mnist(tmp_path / "mnist", gz=gz)
    d = load_dataset("mnist:binarize=none,valid=3", data_dir=tmp_path)
    assert d.describe()["labels"] is True and d.settings["label_files"][0].startswith("train-labels-idx1-ubyte")
    for split in ("train", "valid", "test"):
        index = torch.round(d.split(split)[:, 0] * 255).long()  # pixel (0, 0) = the image's index
        assert torch.equal(d.labels[split], index % 10), split
    assert d.labels["valid"].tolist() == [9, 0, 1]  # the LAST three training images
    no_valid = load_dataset("mnist:binarize=threshold,valid=0", data_dir=tmp_path)
    assert set(no_valid.labels) == {"train", "test"} and no_valid.labels["train"].shape == (12,)


def test_mnist_without_label_files_has_no_labels_and_bad_label_files_are_errors(tmp_path):
    folder = tmp_path / "mnist"
    _fake_labelled_mnist(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    assert load_dataset("mnist:valid=2", data_dir=tmp_path).labels is None
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))  # 4 test images
    with pytest.raises(DataError, match="expected 4 labels"):
        load_dataset("mnist:valid=2", data_dir=tmp_path)


def test_binarized_mnist_has_no_labels(tmp_path):
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    rows = {k: (np.arange(2 * 784).reshape(2, 784) % 2).astype(np.uint8) for k in ("train", "valid", "test")}
    np.savez(folder / "binarized_mnist_uint8.npz", **rows)
    d = load_dataset("binarized-mnist", data_dir=tmp_path)
    assert d.labels is None and d.describe()["labels"] is False


# -- plots ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(digits):
    """A 2-D VAE after 2 epochs on digits, with its monitoring history (the IS NLL of valid included)."""
    from genlearn.learning import TrainConfig, Trainer
    from genlearn.learning.rules import make_rule
    from genlearn.models.registry import build_model

    model = build_model("vae", digits, latent="2", hidden="32")
    trainer = Trainer(model, digits, TrainConfig(epochs=2, lr=1e-3, optimizer="adam", batch_size=100,
                                                 monitor_is_samples=10, progress=False), rule=make_rule("elbo"))
    trainer.fit()
    return model.eval(), trainer.state.history


def _png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latent_plots_write_pngs(fitted, digits, tmp_path):
    from genlearn.models.registry import build_model

    model, _ = fitted
    plots.reconstructions(model, digits.test, (8, 8), tmp_path / "r.png")
    plots.reconstructions(model, digits.test, (8, 8), tmp_path / "r5.png", n=5, generator=torch.Generator())
    plots.latent_manifold(model, (8, 8), tmp_path / "m.png", grid=7)
    plots.latent_encodings(model, digits.test, digits.labels["test"], tmp_path / "e.png")
    plots.latent_encodings(model, digits.test, None, tmp_path / "e0.png")
    wide = build_model("vae", digits, latent="4", hidden="8")
    plots.latent_encodings(wide, digits.test, digits.labels["test"].numpy(), tmp_path / "pca.png")
    plots.latent_encodings(wide, digits.test, torch.arange(269), tmp_path / "many.png")  # > 20 classes: colour bar
    for name in ("r", "r5", "m", "e", "e0", "pca", "many"):
        assert _png(tmp_path / f"{name}.png"), name


def test_latent_plots_fail_cleanly(fitted, digits, tmp_path):
    from genlearn.models.registry import build_model

    wide = build_model("vae", digits, latent="3", hidden="8")
    with pytest.raises(ConfigError, match="latent_dim = 3"):
        plots.latent_manifold(wide, (8, 8), tmp_path / "m.png")
    model, _ = fitted
    with pytest.raises(ConfigError, match="64 features"):
        plots.reconstructions(model, digits.test, (7, 7), tmp_path / "r.png")
    with pytest.raises(DataError, match="269 rows but 3 labels"):
        plots.latent_encodings(model, digits.test, [0, 1, 2], tmp_path / "e.png")
    with pytest.raises(ConfigError, match="not a latent-variable model"):
        plots.latent_encodings(build_model("product-bernoulli", digits), digits.test, None, tmp_path / "e.png")
    with pytest.raises(DataError, match="binary"):
        plots.reconstructions(model, torch.full((3, 64), 0.5), (8, 8), tmp_path / "r.png")
    assert not any(tmp_path.iterdir())


def test_manifold_grid_is_at_normal_quantiles():
    z = plots.latent_grid(3)
    q = 1.6448536269514722  # Phi^-1(0.95)
    assert torch.allclose(z[0, 0], torch.tensor([-q, q], dtype=torch.float64))  # top left: z_1 low, z_2 high
    assert torch.allclose(z[2, 2], torch.tensor([q, -q], dtype=torch.float64))
    assert torch.allclose(z[1, 1], torch.zeros(2, dtype=torch.float64), atol=1e-12)


def _learning_curve_figure(history, tmp_path, monkeypatch):
    """plots.learning_curve(history) written to a PNG (checked), and the matplotlib figure it drew."""
    figures = []
    close = plots.plt.close
    monkeypatch.setattr(plots.plt, "close", lambda fig=None: (figures.append(fig), close(fig)))
    assert _png(plots.learning_curve(history, tmp_path / "lc.png"))
    (fig,) = figures
    return fig


def test_learning_curve_shows_valid_elbo_and_is_nll_in_one_panel(fitted, tmp_path, monkeypatch):
    _, history = fitted
    assert plots._panels(["train_neg_elbo", "valid_neg_elbo", "valid_nll_is", "train_kl_upper"]) == [
        ("train_neg_elbo",), ("valid_neg_elbo", "valid_nll_is"), ("train_kl_upper",)]
    assert plots._panels(["train_kl", "train_nll", "valid_nll"]) == [("train_kl",), ("train_nll",), ("valid_nll",)]
    assert plots._panels(["valid_nll_is"]) == [("valid_nll_is",)]
    fig = _learning_curve_figure(history, tmp_path, monkeypatch)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == [plots.CURVE_KEYS["train_neg_elbo"],
                                                plots.PANEL_TITLES[("valid_neg_elbo", "valid_nll_is")],
                                                plots.CURVE_KEYS["train_kl_upper"]]
    shared = axes[1]
    assert [line.get_label() for line in shared.get_lines()] == [plots.CURVE_KEYS["valid_neg_elbo"],
                                                                plots.CURVE_KEYS["valid_nll_is"]]
    assert shared.get_legend() is not None and axes[0].get_legend() is None
    elbo, nll = (line.get_ydata() for line in shared.get_lines())
    assert (np.asarray(nll) <= np.asarray(elbo)).all()  # the IS estimate lies under -ELBO: the bound's gap


# -- runs ----------------------------------------------------------------------------------------------------------
def test_write_plots_of_a_2d_vae(fitted, digits, tmp_path, monkeypatch):
    from genlearn import runs

    model, history = fitted
    seen = {}
    encodings = plots.latent_encodings

    def spy(model, x, labels, path, title=None):
        seen.update(x=x, labels=labels)
        return encodings(model, x, labels, path, title)

    monkeypatch.setattr(plots, "latent_encodings", spy)
    (tmp_path / "latent_manifold.png").write_bytes(b"stale")
    runs.write_plots(model, digits, history, tmp_path)
    expected = {"learning_curve.png", "samples.png", "reconstructions.png", "latent_manifold.png",
                "latent_encodings.png"}
    assert {p.name for p in tmp_path.iterdir()} == expected and all(_png(tmp_path / n) for n in expected)
    assert expected <= set(runs.OWN_FILES)
    assert torch.equal(seen["x"], digits.test) and torch.equal(seen["labels"], digits.labels["test"])


def test_write_plots_of_a_3d_vae_without_labels_drops_the_manifold(digits, tmp_path):
    from genlearn import runs
    from genlearn.models.registry import build_model

    model = build_model("vae", digits, latent="3", hidden="8").eval()
    unlabelled = Dataset("digits", "binary", train=digits.train, valid=digits.valid, image_shape=(8, 8))
    (tmp_path / "latent_manifold.png").write_bytes(b"stale plot of an earlier run")
    runs.write_plots(model, unlabelled, [], tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"samples.png", "reconstructions.png", "latent_encodings.png"}


def test_run_log_prob_of_a_vae_is_the_importance_sampling_estimate(fitted, digits):
    from genlearn.likelihood import log_likelihoods
    from genlearn.runs import Run

    model, _ = fitted
    x = digits.test[:20]
    log_p = Run(model, {}).log_prob(x)
    assert log_p.dtype == torch.float64 and log_p.shape == (20,) and torch.isfinite(log_p).all()
    assert torch.equal(log_p, log_likelihoods(model, x)[0])
    with torch.no_grad():
        elbo = model.log_weights(x, 1000, torch.Generator().manual_seed(1)).double().mean(0)
    assert log_p.mean() > elbo.mean()  # log P^ with 5000 samples lies above the ELBO on average


def test_learning_curve_of_adversarial_learning_shows_both_players_and_the_divergence(tmp_path, monkeypatch):
    """A GAN with a latent space beyond quadrature has no NLL to monitor: its learning curve is the two players'
    epoch-mean losses in one panel and the critic's divergence estimate in another (one line each, in order)."""
    history = [{"epoch": e, "loss": 5.0 / e, "critic_loss": -2.0 / e, "generator_loss": -0.5 + 0.1 * e,
                "divergence_estimate": 5.0 / e} for e in range(1, 6)]
    assert plots._panels(["critic_loss", "generator_loss", "divergence_estimate"]) == [
        ("critic_loss", "generator_loss"), ("divergence_estimate",)]
    fig = _learning_curve_figure(history, tmp_path, monkeypatch)
    players, divergence = fig.axes
    assert players.get_title() == plots.PANEL_TITLES[("critic_loss", "generator_loss")]
    assert [line.get_label() for line in players.get_lines()] == [plots.CURVE_KEYS["critic_loss"],
                                                                 plots.CURVE_KEYS["generator_loss"]]
    assert np.allclose(players.get_lines()[0].get_ydata(), [-2.0 / e for e in range(1, 6)])
    assert [line.get_label() for line in divergence.get_lines()] == [plots.CURVE_KEYS["divergence_estimate"]]


def test_learning_curve_zooms_past_an_untrained_first_record(tmp_path, monkeypatch):
    """-ELBO 207 at epoch 0 and 95 -> 89 later: the y-axis shows the later range (the start is noted, off the
    scale); a curve whose start is within the later range keeps matplotlib's own limits."""
    history = [{"epoch": 0, "train_neg_elbo": 207.0, "train_kl_upper": 5.0}] + [
        {"epoch": e, "train_neg_elbo": 95.0 - e, "train_kl_upper": 5.0 - 0.5 * e} for e in range(1, 7)]
    fig = _learning_curve_figure(history, tmp_path, monkeypatch)
    elbo, kl = fig.axes
    low, high = elbo.get_ylim()
    assert 88.0 < low < 89.0 and 94.0 < high < 96.0  # 89..94 with 10% margins, 207 off the scale
    assert any("207" in t.get_text() and "epoch 0" in t.get_text() for t in elbo.texts)
    assert kl.get_ylim()[1] >= 5.0 and not kl.texts  # 5.0 at the start lies within the later range's reach
