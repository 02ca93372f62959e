"""Named real data sets (genlearn.data.named): where they are looked for, the error when they are missing, small
fake copies written here (values checked against numpy), and the real files in /work/shared/data when present
(sizes, sums and densities recorded in their SOURCE.txt / README.md)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from genlearn.data import load_dataset
from genlearn.data.formats import write_idx
from genlearn.errors import ConfigError, DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

EXPECTED_FILES = {
    "mnist": ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"],
    "fashion-mnist": ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"],
    "binarized-mnist": ["binarized_mnist_uint8.npz", "binarized_mnist_train.amat"],
    "adult": ["adult.train.data", "adult.valid.data", "adult.test.data"],
    "nips": ["nips.train.data"],
    "dna": ["dna.npz", "split=debd"],
}
FOLDERS = {"mnist": "mnist", "fashion-mnist": "fashion-mnist", "binarized-mnist": "binarized_mnist",
           "adult": "adult", "nips": "nips", "dna": "dna"}


def shared(*parts) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} absent (benchmark data are optional)")
    return SHARED


# -- missing data ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_missing_data_message_names_every_folder_and_file(tmp_path, name, monkeypatch):
    import genlearn.data.named as named

    # Debian's dataset-fashion-mnist may be installed on this machine: pretend it is not
    monkeypatch.setattr(named, "FASHION_SYSTEM_DIR", tmp_path / "no-system-copy")
    with pytest.raises(DataError) as info:
        load_dataset(name, data_dir=tmp_path)
    msg = str(info.value)
    assert f"data set {name!r} not found" in msg
    for expected in EXPECTED_FILES[name]:
        assert expected in msg
    assert f"{tmp_path} (missing " in msg and f"{tmp_path / FOLDERS[name]} (no such folder)" in msg
    assert "--data-dir" in msg and "GENLEARN_DATA" in msg


def test_missing_data_dir(monkeypatch):
    monkeypatch.delenv("GENLEARN_DATA", raising=False)
    with pytest.raises(DataError, match=r"Looked in: nowhere\. No data directory was given .*--data-dir DIR"):
        load_dataset("adult")


def test_partial_folder_says_which_file_is_missing(tmp_path):
    (tmp_path / "mnist").mkdir()
    write_idx(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"mnist \(missing t10k-images-idx3-ubyte.gz\)"):
        load_dataset("mnist", data_dir=tmp_path)


# -- fake copies ------------------------------------------------------------------------------------------------------
def _fake_mnist(folder: Path, n_train=12, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    train = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    write_idx(folder / "train-images-idx3-ubyte.gz", train)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", test)
    return train.reshape(n_train, -1), test.reshape(n_test, -1)


def test_mnist_splits_and_binarizations(tmp_path):
    train, test = _fake_mnist(tmp_path / "mnist")
    d = load_dataset("mnist:binarize=threshold,valid=2", data_dir=tmp_path)
    assert d.sizes() == {"train": 10, "valid": 2, "test": 4} and d.image_shape == (28, 28)
    np.testing.assert_array_equal(d.train.numpy(), train[:10] / 255.0 > 0.5)
    np.testing.assert_array_equal(d.valid.numpy(), train[10:] / 255.0 > 0.5)  # the LAST training images
    np.testing.assert_array_equal(d.test.numpy(), test / 255.0 > 0.5)
    grey = load_dataset("mnist:binarize=none,valid=0", data_dir=tmp_path)
    assert grey.kind == "real" and grey.valid is None
    np.testing.assert_allclose(grey.train.numpy(), train / 255.0, atol=1e-7)
    static = load_dataset("mnist:valid=2", data_dir=tmp_path)  # default: static, seed 0
    assert static.settings["binarization"] == "static" and static.settings["seed"] == 0
    assert torch.equal(static.train, load_dataset("mnist:valid=2", data_dir=tmp_path).train)
    assert not torch.equal(static.train, load_dataset("mnist:valid=2,seed=1", data_dir=tmp_path).train)
    # a Bernoulli(g) pixel is 1 only where g > 0 and 0 only where g < 1
    assert not ((static.train == 1) & torch.as_tensor(train[:10] == 0)).any()
    assert not ((static.train == 0) & torch.as_tensor(train[:10] == 255)).any()
    dyn = load_dataset("mnist:binarize=dynamic,valid=2", data_dir=tmp_path)
    np.testing.assert_allclose(dyn.train_intensity.numpy(), train[:10] / 255.0, atol=1e-7)
    with pytest.raises(ConfigError, match=r"valid must be a count of training images in \[0, 12\)"):
        load_dataset("mnist:valid=12", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown binarize"):
        load_dataset("mnist:binarize=otsu,valid=2", data_dir=tmp_path)


def test_mnist_found_through_genlearn_data_and_raw_idx(tmp_path, monkeypatch):
    train = np.zeros((3, 28, 28), np.uint8)
    train[1] = 255
    write_idx(tmp_path / "train-images-idx3-ubyte", train)  # uncompressed names, directly in DIR
    write_idx(tmp_path / "t10k-images-idx3-ubyte", train[:2])
    monkeypatch.setenv("GENLEARN_DATA", str(tmp_path))
    d = load_dataset("fashion-mnist:valid=1,binarize=threshold")
    assert d.train.sum(1).tolist() == [0.0, 784.0] and d.valid.sum().item() == 0.0


def test_fashion_mnist_system_folder_without_data_dir(tmp_path, monkeypatch):
    import genlearn.data.named as named

    monkeypatch.delenv("GENLEARN_DATA", raising=False)
    monkeypatch.setattr(named, "FASHION_SYSTEM_DIR", tmp_path / "sys")
    with pytest.raises(DataError, match=rf"Looked in: {tmp_path / 'sys'} \(no such folder\)"):
        load_dataset("fashion-mnist")
    train, _ = _fake_mnist(tmp_path / "sys", n_train=5, n_test=3, seed=9)
    d = load_dataset("fashion-mnist:valid=1,binarize=threshold")
    assert d.sizes() == {"train": 4, "valid": 1, "test": 3} and d.settings["source"] == str(tmp_path / "sys")
    np.testing.assert_array_equal(d.valid.numpy(), train[4:] / 255.0 > 0.5)


def test_mnist_wrong_image_size(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 8, 8), np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"shape \(3, 8, 8\); expected images \(N, 28, 28\)"):
        load_dataset("mnist", data_dir=tmp_path)


def test_binarized_mnist_npz_and_amat(tmp_path):
    rng = np.random.default_rng(5)
    parts = {s: (rng.random((n, 784)) < 0.2).astype(np.uint8) for s, n in (("train", 5), ("valid", 3), ("test", 2))}
    (tmp_path / "binarized_mnist").mkdir()
    for s, x in parts.items():
        np.savetxt(tmp_path / "binarized_mnist" / f"binarized_mnist_{s}.amat", x, fmt="%d", delimiter=" ")
    d = load_dataset("binarized-mnist", data_dir=tmp_path)
    assert d.settings["format"] == "amat" and d.image_shape == (28, 28)
    for s, x in parts.items():
        np.testing.assert_array_equal(d.split(s).numpy(), x)
    np.savez_compressed(tmp_path / "binarized_mnist_uint8.npz", **parts)
    d = load_dataset("binarized-mnist", data_dir=tmp_path)  # the npz wins
    assert d.settings["format"] == "npz" and d.train.dtype == torch.float32
    np.testing.assert_array_equal(d.test.numpy(), parts["test"])
    np.savez_compressed(tmp_path / "binarized_mnist_uint8.npz", train=parts["train"], test=parts["test"])
    with pytest.raises(DataError, match="lacks the key"):
        load_dataset("binarized-mnist", data_dir=tmp_path)
    bad = dict(parts, valid=parts["valid"] * 2)
    np.savez_compressed(tmp_path / "binarized_mnist_uint8.npz", **bad)
    with pytest.raises(DataError, match="binary data must be 0 or 1"):
        load_dataset("binarized-mnist", data_dir=tmp_path)


def test_uci_folder_values_and_width(tmp_path):
    rng = np.random.default_rng(6)
    (tmp_path / "nips").mkdir()
    parts = {s: (rng.random((n, 500)) < 0.4).astype(int) for s, n in (("train", 4), ("valid", 2), ("test", 3))}
    for s, x in parts.items():
        np.savetxt(tmp_path / "nips" / f"nips.{s}.data", x, fmt="%d", delimiter=",")
    d = load_dataset("nips", data_dir=tmp_path)
    assert d.sizes() == {"train": 4, "valid": 2, "test": 3} and d.image_shape is None
    for s, x in parts.items():
        np.testing.assert_array_equal(d.split(s).numpy(), x)
    np.savetxt(tmp_path / "nips" / "nips.test.data", parts["test"][:, :499], fmt="%d", delimiter=",")
    with pytest.raises(DataError, match=r"shape \(3, 499\); expected \(examples, 500\)"):
        load_dataset("nips", data_dir=tmp_path)


def test_dna_npz_and_debd_split(tmp_path):
    (tmp_path / "dna").mkdir()
    x = (np.random.default_rng(7).random((10, 180)) < 0.25).astype(np.float32)
    for s, rows in (("train", x[:6]), ("valid", x[6:8]), ("test", x[8:])):
        np.savetxt(tmp_path / "dna" / f"dna.{s}.data", rows, fmt="%d", delimiter=",")
    with pytest.raises(DataError, match="use dna:split=debd"):
        load_dataset("dna", data_dir=tmp_path)
    assert load_dataset("dna:split=debd", data_dir=tmp_path).sizes() == {"train": 6, "valid": 2, "test": 2}
    np.savez(tmp_path / "dna" / "dna.npz", train_data=x[:5], valid_data=x[5:8], test_data=x[8:],
             inputsize=np.int32(180))
    d = load_dataset("dna", data_dir=tmp_path)
    assert d.sizes() == {"train": 5, "valid": 3, "test": 2} and d.settings["format"] == "npz"
    np.testing.assert_array_equal(d.valid.numpy(), x[5:8])
    with pytest.raises(ConfigError, match="unknown dna split"):
        load_dataset("dna:split=other", data_dir=tmp_path)


# -- the real files (skipped when /work/shared/data is absent) ------------------------------------------------------
@pytest.mark.shared
def test_shared_binarized_mnist_is_fast_and_exact():
    root = shared("binarized_mnist", "binarized_mnist_uint8.npz")
    seconds = []
    for _ in range(2):  # best of two: the machine is shared, one slow load may be someone else's job
        start = time.perf_counter()
        d = load_dataset("binarized-mnist", data_dir=root)
        seconds.append(time.perf_counter() - start)
    assert min(seconds) < 2.0, f"binarized MNIST took {min(seconds):.2f} s to load"
    assert {s: tuple(d.split(s).shape) for s in ("train", "valid", "test")} == {
        "train": (50000, 784), "valid": (10000, 784), "test": (10000, 784)}
    assert d.kind == "binary" and d.image_shape == (28, 28)
    # sums of ones and first rows' pixel counts from SOURCE.txt
    assert [int(d.split(s).sum()) for s in ("train", "valid", "test")] == [5118041, 1028036, 1038896]
    assert d.train[:3].sum(1).tolist() == [123, 80, 159]
    assert d.valid[:3].sum(1).tolist() == [90, 74, 116]
    assert d.test[:3].sum(1).tolist() == [147, 116, 116]


@pytest.mark.shared
def test_shared_mnist_grey_mean_and_static_binarization():
    root = shared("mnist", "train-images-idx3-ubyte.gz")
    grey = load_dataset("mnist:binarize=none,valid=0", data_dir=root)
    assert grey.sizes() == {"train": 60000, "valid": None, "test": 10000}
    # SOURCE.txt; float32 k/255 rounds each pixel by < 3e-8 relative, so the mean agrees to 1e-8
    assert abs(float(grey.train.double().mean()) - 0.1306604762738429) < 1e-8
    d = load_dataset("mnist", data_dir=root)
    assert d.sizes() == {"train": 50000, "valid": 10000, "test": 10000}
    assert torch.equal(d.train == 1, d.train != 0)  # 0/1 only
    # static draw: mean of 39.2M Bernoulli(g) pixels vs mean g (sd < 0.5 / sqrt(39.2e6) = 8e-5); 5 sd
    g_mean = float(grey.train[:50000].double().mean())
    assert abs(float(d.train.double().mean()) - g_mean) < 4e-4


@pytest.mark.shared
@pytest.mark.parametrize("name,sizes,n,density", [
    ("adult", (5000, 1414, 26147), 123, 0.1128),
    ("dna", (1400, 600, 1186), 180, 0.2535),
    ("nips", (400, 100, 1240), 500, 0.367),
])
def test_shared_uci_sizes_and_density(name, sizes, n, density):
    root = shared(name)
    d = load_dataset(name, data_dir=root)
    assert tuple(d.sizes().values()) == sizes and d.n_features == n
    x = torch.cat([d.train, d.valid, d.test]).double()
    assert torch.equal(x == 1, x != 0)
    assert abs(float(x.mean()) - density) < 1e-3  # densities in SOURCE.txt / DEBD README


@pytest.mark.shared
def test_shared_dna_splits_agree():
    root = shared("dna", "dna.npz")
    nade, debd = load_dataset("dna", data_dir=root), load_dataset("dna:split=debd", data_dir=root)
    assert debd.sizes() == {"train": 1600, "valid": 400, "test": 1186}
    assert torch.equal(nade.test, debd.test)  # SOURCE.txt: identical test sets, same order
    a = torch.unique(torch.cat([nade.train, nade.valid]), dim=0, return_counts=True)
    b = torch.unique(torch.cat([debd.train, debd.valid]), dim=0, return_counts=True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # same 2000-row multiset


@pytest.mark.shared
def test_fashion_mnist_system_copy():
    folder = Path("/usr/share/datasets/fashion-mnist")
    if not (folder / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian dataset-fashion-mnist is not installed")
    d = load_dataset("fashion-mnist:binarize=none", data_dir=None)
    assert d.sizes() == {"train": 50000, "valid": 10000, "test": 10000} and d.image_shape == (28, 28)
    assert 0.27 < float(d.train.mean()) < 0.30  # Fashion-MNIST mean grey level is 0.286


# -- the CLI ---------------------------------------------------------------------------------------------------------
def test_cli_missing_named_data_is_one_message_exit_2(tmp_path, capsys):
    from genlearn.cli import main

    code = main(["fit", "product-bernoulli", "--data", "binarized-mnist", "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "binarized_mnist_uint8.npz" in err and str(tmp_path / "binarized_mnist") in err


def test_cli_fits_named_uci_set(tmp_path, capsys):
    """`genlearn fit product-bernoulli --data adult --data-dir D` on a fake adult. Oracle: two full-batch gradient
    steps from theta = 0, theta <- theta - lr (sigmoid(theta) - q_train), then the closed-form test NLL."""
    import json

    from genlearn.cli import main

    rng = np.random.default_rng(10)
    (tmp_path / "adult").mkdir()
    parts = {s: (rng.random((n, 123)) < 0.1).astype(int) for s, n in (("train", 20), ("valid", 5), ("test", 5))}
    for s, x in parts.items():
        np.savetxt(tmp_path / "adult" / f"adult.{s}.data", x, fmt="%d", delimiter=",")
    code = main(["fit", "product-bernoulli", "--data", "adult", "--data-dir", str(tmp_path), "--epochs", "2",
                 "--optimizer", "gd", "--lr", "0.1", "--out", str(tmp_path / "run"), "--quiet"])
    capsys.readouterr()
    assert code == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data"]["source"] == str(tmp_path / "adult") and metrics["data"]["sizes"]["test"] == 5
    q, theta = parts["train"].mean(0), np.zeros(123)
    for _ in range(2):
        theta -= 0.1 * (1 / (1 + np.exp(-theta)) - q)
    t = parts["test"].mean(0)
    nll = (t * np.logaddexp(0, -theta) + (1 - t) * np.logaddexp(0, theta)).sum()
    assert metrics["test_nll"] == pytest.approx(nll, rel=1e-5)
    assert metrics["entropy_empirical"] == pytest.approx(np.log(20))  # 20 distinct training rows
