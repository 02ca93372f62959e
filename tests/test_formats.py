"""File formats (genlearn.data.formats) and data sets from paths (genlearn.data.files.load_path).

Oracles: arrays the test writes itself (byte layouts built here with struct, independently of the reader),
numpy recomputations of thresholds, binomial bounds for stochastic binarization, multiset equality of splits."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from genlearn.data import formats, load_dataset
from genlearn.data.files import load_path
from genlearn.errors import ConfigError, DataError


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """IDX layout written by hand: 0, 0, type code, ndim, big-endian uint32 sizes, big-endian data."""
    head = bytes([0, 0, code, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return head + array.astype(array.dtype.newbyteorder(">")).tobytes()


# -- IDX ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [False, True])
def test_idx_reads_uint8_images_raw_and_gzip(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    data = idx_bytes(images, 0x08)
    path = tmp_path / ("x-idx3-ubyte.gz" if compress else "x-idx3-ubyte")
    path.write_bytes(gzip.compress(data) if compress else data)
    got = formats.read_idx(path)
    assert got.dtype == np.uint8 and got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got, images)


@pytest.mark.parametrize("dtype,code", [(np.int32, 0x0C), (np.float64, 0x0E), (np.int16, 0x0B), (np.float32, 0x0D)])
def test_idx_reads_big_endian_dtypes(tmp_path, dtype, code):
    values = np.array([-3, 0, 7, 1000, 12345], dtype=dtype)
    (tmp_path / "v.idx").write_bytes(idx_bytes(values, code))
    got = formats.read_idx(tmp_path / "v.idx")
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, values)


def test_write_idx_round_trip_matches_hand_layout(tmp_path):
    labels = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
    formats.write_idx(tmp_path / "l.idx", labels)
    assert (tmp_path / "l.idx").read_bytes() == idx_bytes(labels, 0x08)
    formats.write_idx(tmp_path / "l.gz", labels)
    np.testing.assert_array_equal(formats.read_idx(tmp_path / "l.gz"), labels)


def test_idx_bad_magic(tmp_path):
    data = bytearray(idx_bytes(np.zeros((2, 2), np.uint8), 0x08))
    data[0] = 0x08
    (tmp_path / "bad").write_bytes(bytes(data))
    with pytest.raises(DataError, match="bad IDX magic number 08"):
        formats.read_idx(tmp_path / "bad")


def test_idx_unknown_dtype_code(tmp_path):
    (tmp_path / "bad").write_bytes(bytes([0, 0, 0x07, 1]) + struct.pack(">I", 2) + b"\x00\x01")
    with pytest.raises(DataError, match="unknown IDX dtype code 0x07"):
        formats.read_idx(tmp_path / "bad")


@pytest.mark.parametrize("compress", [False, True])
def test_idx_truncated_payload(tmp_path, compress):
    data = idx_bytes(np.arange(20, dtype=np.uint8).reshape(2, 10), 0x08)[:-3]
    (tmp_path / "t.gz").write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match=r"truncated: header shape \(2, 10\) needs 20 data bytes, file holds 17"):
        formats.read_idx(tmp_path / "t.gz")


def test_idx_truncated_header_and_trailing_bytes(tmp_path):
    (tmp_path / "h").write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 5))
    with pytest.raises(DataError, match="header truncated"):
        formats.read_idx(tmp_path / "h")
    (tmp_path / "tail").write_bytes(idx_bytes(np.zeros(4, np.uint8), 0x08) + b"\x00\x00")
    with pytest.raises(DataError, match="2 bytes after the 4 data bytes"):
        formats.read_idx(tmp_path / "tail")


def test_truncated_gzip_stream(tmp_path):
    blob = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32), 0x0C))
    (tmp_path / "c.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        formats.read_idx(tmp_path / "c.gz")


@pytest.mark.parametrize("reader", [formats.read_idx, formats.read_npy, formats.read_npz, formats.read_text,
                                    formats.read_amat])
def test_empty_file(tmp_path, reader):
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(DataError, match=r"is empty \(0 bytes\)"):
        reader(tmp_path / "empty")


def test_blank_text_file(tmp_path):
    (tmp_path / "b.txt").write_text("\n  \n\n")
    with pytest.raises(DataError, match="holds no data"):
        formats.read_text(tmp_path / "b.txt")


# -- numpy --------------------------------------------------------------------------------------------------------
def test_npz_split_keys_and_aliases(tmp_path):
    a, b, c = np.eye(3), np.ones((2, 3)), np.zeros((1, 3))
    np.savez(tmp_path / "s.npz", train=a, valid=b, test=c, extra=np.array(7))
    got = formats.read_npz(tmp_path / "s.npz")
    assert set(got) == {"train", "valid", "test"}
    np.testing.assert_array_equal(got["valid"], b)
    np.savez(tmp_path / "m.npz", train_data=a, valid_data=b, test_data=c, inputsize=np.array(3))
    got = formats.read_npz(tmp_path / "m.npz")
    np.testing.assert_array_equal(got["train"], a)
    np.testing.assert_array_equal(got["test"], c)


def test_npz_single_array_and_ambiguous(tmp_path):
    np.savez(tmp_path / "one.npz", x=np.eye(4), n=np.array(4))  # a 0-d count beside one real array
    np.testing.assert_array_equal(formats.read_npz(tmp_path / "one.npz")["data"], np.eye(4))
    np.savez(tmp_path / "two.npz", a=np.eye(2), b=np.eye(2))
    with pytest.raises(DataError, match="holds arrays a, b; expected keys train/valid/test or a single array"):
        formats.read_npz(tmp_path / "two.npz")


def test_npz_object_array_refused_and_corrupt(tmp_path):
    np.savez(tmp_path / "o.npz", train=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="object arrays are refused"):
        formats.read_npz(tmp_path / "o.npz")
    blob = (tmp_path / "o.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(blob[:30])
    with pytest.raises(DataError, match="corrupt or truncated .npz"):
        formats.read_npz(tmp_path / "cut.npz")


def test_npy_nan_and_inf(tmp_path):
    x = np.zeros((3, 4))
    x[1, 2] = np.nan
    np.save(tmp_path / "n.npy", x)
    # row and column from 1, as the text readers count them
    with pytest.raises(DataError, match=r"contains nan at row 2, column 3 \(1 non-finite values\)"):
        formats.read_npy(tmp_path / "n.npy")
    x[1, 2], x[2, 0] = 0.0, -np.inf
    np.save(tmp_path / "i.npy", x)
    with pytest.raises(DataError, match=r"contains -inf at row 3, column 1"):
        formats.read_npy(tmp_path / "i.npy")


def test_a_semicolon_separated_file_and_a_grey_range_name_the_problem(tmp_path):
    """A ';' file was described as a header line; a grey-level range error did not name its file."""
    from genlearn.data.files import load_path

    (tmp_path / "semi.csv").write_text("".join(f"{i % 2};1;0\n" for i in range(10)))
    with pytest.raises(DataError, match=r"values separated by ';'\? genlearn reads commas, tabs or white space"):
        load_path(tmp_path / "semi.csv")
    (tmp_path / "grey.csv").write_text("".join(f"{i * 20},{i}\n" for i in range(10)))
    with pytest.raises(DataError, match=r"grey\.csv: values span \[0, 180\], outside the grey-level range"):
        load_path(tmp_path / "grey.csv", scale=100)


# -- text -----------------------------------------------------------------------------------------------------------
def test_amat_reads_space_separated_binary(tmp_path):
    (tmp_path / "b.amat").write_text("0 1 0 1\n1 1 0 0\n\n0 0 0 1\n")
    got = formats.read_amat(tmp_path / "b.amat")
    np.testing.assert_array_equal(got, [[0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 0, 1]])


def test_amat_non_binary_value(tmp_path):
    (tmp_path / "b.amat").write_text("0 1 0\n0 0.5 1\n")
    with pytest.raises(DataError, match="row 2, column 2 holds 0.5; binary data must be 0 or 1"):
        formats.read_amat(tmp_path / "b.amat")


def test_amat_that_is_a_matlab_file(tmp_path):
    from scipy.io import savemat

    x = (np.arange(12).reshape(3, 4) % 3 == 0).astype(np.uint8)
    savemat(tmp_path / "b.amat", {"X": x}, do_compression=True)
    np.testing.assert_array_equal(formats.read_amat(tmp_path / "b.amat"), x)


@pytest.mark.parametrize("sep", [",", " ", "\t"])
def test_text_ragged_rows(tmp_path, sep):
    rows = ["0,1,1", "1,0,1", "1,0", "0,0,0"]
    (tmp_path / "r.data").write_text("\n".join(r.replace(",", sep) for r in rows))
    with pytest.raises(DataError, match="row 3 has 2 values, expected 3"):
        formats.read_text(tmp_path / "r.data")


def test_text_csv_values_and_errors(tmp_path):
    (tmp_path / "c.csv").write_text("0,1,1\r\n1,0,1\r\n")
    np.testing.assert_array_equal(formats.read_text(tmp_path / "c.csv", binary=True), [[0, 1, 1], [1, 0, 1]])
    (tmp_path / "g.csv").write_text("0,1,3\n1,0,1\n")
    assert formats.read_text(tmp_path / "g.csv")[0, 2] == 3.0
    with pytest.raises(DataError, match="row 1, column 3 holds 3; binary data must be 0 or 1"):
        formats.read_text(tmp_path / "g.csv", binary=True)
    (tmp_path / "w.csv").write_text("0,1,1\n1,yes,1\n")
    with pytest.raises(DataError, match="row 2, column 2 holds 'yes', which is not a number"):
        formats.read_text(tmp_path / "w.csv")


# -- PNG folders ----------------------------------------------------------------------------------------------------
def _png(path, array, mode="L"):
    from PIL import Image

    Image.fromarray(array, mode=mode).save(path)


def test_png_folder_grey_levels_order_and_shape(tmp_path):
    rng = np.random.default_rng(1)
    imgs = {n: rng.integers(0, 256, size=(4, 5), dtype=np.uint8) for n in ("img2", "img10", "img1")}
    for n, a in imgs.items():
        _png(tmp_path / f"{n}.png", a)
    (tmp_path / "notes.txt").write_text("ignored")
    x, shape = formats.read_png_folder(tmp_path)
    assert shape == (4, 5) and x.shape == (3, 20)
    for row, n in zip(x, ("img1", "img2", "img10")):  # natural order
        np.testing.assert_allclose(row, imgs[n].reshape(-1) / 255.0, atol=1e-7)


def test_png_colour_is_luminance(tmp_path):
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[1, 1] = (255, 255, 255)
    _png(tmp_path / "c.png", rgb, mode="RGB")
    grey = formats.read_png(tmp_path / "c.png")
    np.testing.assert_allclose(grey, [[0.299, 0], [0, 1]], atol=1.0 / 255)  # ITU-R 601 luma, 8-bit rounding


def test_png_folder_errors(tmp_path):
    with pytest.raises(DataError, match="holds no .png images"):
        formats.read_png_folder(tmp_path)
    _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "b.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(DataError, match=r"image b.png is 5x4 \(HxW\) but a.png is 4x4; all images must have the same"):
        formats.read_png_folder(tmp_path)
    (tmp_path / "b.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="b.png: not a readable PNG image"):
        formats.read_png_folder(tmp_path)


# -- load_path: formats, binarization, splits, image shapes -----------------------------------------------------------
def _codes(x: torch.Tensor) -> list[int]:
    """Each binary row read as an integer (rows of the tests below are distinct codes)."""
    weights = 2 ** torch.arange(x.shape[1] - 1, -1, -1, dtype=torch.int64)
    return sorted((x.long() * weights).sum(1).tolist())


def test_binary_text_split_is_a_partition(tmp_path):
    codes = np.arange(100)
    bits = (codes[:, None] >> np.arange(6, -1, -1)) & 1  # 100 distinct 7-bit rows
    np.savetxt(tmp_path / "b.csv", bits, fmt="%d", delimiter=",")
    d = load_path(tmp_path / "b.csv")
    assert d.kind == "binary" and d.sizes() == {"train": 80, "valid": 10, "test": 10}
    assert _codes(torch.cat([d.train, d.valid, d.test])) == list(range(100))
    assert d.settings["format"] == "text" and d.settings["binarization"] == "none (data already 0/1)"
    assert d.settings["source"] == str(tmp_path / "b.csv") and d.image_shape is None
    again = load_path(tmp_path / "b.csv", valid=0.25, test=0)
    assert again.sizes() == {"train": 75, "valid": 25, "test": None}
    assert torch.equal(load_path(tmp_path / "b.csv").train, d.train)  # fixed split seed


def test_grey_levels_threshold_against_numpy(tmp_path):
    rng = np.random.default_rng(2)
    parts = {s: rng.random((n, 9)) for s, n in (("train", 30), ("valid", 6), ("test", 7))}
    np.savez(tmp_path / "g.npz", **parts)
    with pytest.raises(DataError, match=r"g.npz\[train\]: row 1, column 1 holds"):  # grey levels must be declared
        load_path(tmp_path / "g.npz")
    d = load_path(tmp_path / "g.npz", binarize="threshold")
    assert d.kind == "binary" and d.image_shape == (3, 3) and d.settings["binarization"] == "threshold"
    for s, g in parts.items():
        np.testing.assert_array_equal(d.split(s).numpy(), (g > 0.5).astype(np.float32))
    d3 = load_path(tmp_path / "g.npz", threshold=0.3)
    np.testing.assert_array_equal(d3.train.numpy(), (parts["train"] > 0.3).astype(np.float32))
    assert d3.settings["threshold"] == 0.3


def test_uint8_grey_levels_scale_255(tmp_path):
    x = np.array([[0, 127, 128, 255]] * 10, dtype=np.uint8)
    np.save(tmp_path / "u.npy", x)
    d = load_path(tmp_path / "u.npy", valid=0, test=0, binarize="threshold")
    assert d.settings["value_scale"] == 255.0
    np.testing.assert_array_equal(d.train.numpy(), [[0, 0, 1, 1]] * 10)  # 127/255 < 0.5 < 128/255
    d16 = load_path(tmp_path / "u.npy", valid=0, test=0, scale=300, threshold=0.4)  # 127/300 > 0.4
    np.testing.assert_array_equal(d16.train.numpy(), [[0, 1, 1, 1]] * 10)


def test_static_and_dynamic_binarization(tmp_path):
    g = np.full((2000, 50), 0.3)
    np.save(tmp_path / "s.npy", g)
    a = load_path(tmp_path / "s.npy", binarize="static", seed=5)
    b = load_path(tmp_path / "s.npy", binarize="static", seed=5)
    c = load_path(tmp_path / "s.npy", binarize="static", seed=6)
    assert torch.equal(a.train, b.train) and not torch.equal(a.train, c.train)
    assert a.settings["binarization"] == "static" and a.settings["seed"] == 5
    # mean of 80000 Bernoulli(0.3) draws: sd = sqrt(0.21 / 80000) = 0.0016; 5 sd
    assert abs(float(a.train.mean()) - 0.3) < 0.008
    dyn = load_path(tmp_path / "s.npy", binarize="dynamic", seed=5)
    assert torch.equal(dyn.train, a.train) and torch.equal(dyn.test, a.test)
    assert torch.allclose(dyn.train_intensity, torch.full((1600, 50), 0.3))
    redraw = dyn.redraw_train(torch.Generator().manual_seed(0))
    assert not torch.equal(redraw, dyn.train) and abs(float(redraw.mean()) - 0.3) < 0.008


def test_binarize_none_keeps_values_and_real_data(tmp_path):
    x = np.linspace(-2.0, 3.0, 40).reshape(10, 4)
    np.save(tmp_path / "r.npy", x)
    with pytest.raises(DataError, match=r"values span \[-2, 3\].*pass binarize=none"):
        load_path(tmp_path / "r.npy")
    d = load_path(tmp_path / "r.npy", binarize="none", valid=0, test=0)
    assert d.kind == "real"
    np.testing.assert_allclose(np.sort(d.train.numpy(), axis=None), np.sort(x, axis=None), rtol=1e-6)
    g = np.full((10, 4), 0.25)
    np.save(tmp_path / "g.npy", g)
    assert torch.allclose(load_path(tmp_path / "g.npy", binarize="none").train, torch.tensor(0.25))


def test_idx_file_image_shape_and_categorical_labels(tmp_path):
    imgs = np.random.default_rng(3).integers(0, 256, size=(20, 3, 5), dtype=np.uint8)
    formats.write_idx(tmp_path / "im-idx3-ubyte.gz", imgs)
    d = load_path(tmp_path / "im-idx3-ubyte.gz")
    assert d.image_shape == (3, 5) and d.n_features == 15 and d.settings["format"] == "idx"
    labels = np.array([0, 3, 2, 2, 1, 3, 0, 1, 1, 2] * 3, dtype=np.uint8)
    formats.write_idx(tmp_path / "lab-idx1-ubyte", labels)
    lab = load_path(tmp_path / "lab-idx1-ubyte", valid=0, test=0)
    assert lab.kind == "categorical" and lab.n_categories == 4
    assert torch.equal(torch.bincount(lab.train), torch.tensor([6, 9, 9, 6]))


def test_png_folder_dataset(tmp_path):
    for i in range(10):
        _png(tmp_path / f"{i}.png", np.full((2, 3), 25 * i, np.uint8))
    d = load_path(tmp_path, valid=0, test=0)
    assert d.image_shape == (2, 3) and d.settings["format"] == "png-folder"
    # grey 25 i / 255 > 0.5 exactly for i >= 6
    assert sorted(d.train[:, 0].tolist()) == [0.0] * 6 + [1.0] * 4


def test_split_folder_and_partial_npz(tmp_path):
    rows = {"train": "0,1\n1,1\n0,0\n", "valid": "1,0\n", "test": "1,1\n0,1\n"}
    for s, text in rows.items():
        (tmp_path / f"toy.{s}.data").write_text(text)
    d = load_path(tmp_path)
    assert d.settings["format"] == "split-folder" and d.sizes() == {"train": 3, "valid": 1, "test": 2}
    np.testing.assert_array_equal(d.valid.numpy(), [[1, 0]])
    (tmp_path / "toy.test.data").write_text("1,1,0\n")
    with pytest.raises(DataError, match="different numbers of features"):
        load_path(tmp_path)
    np.savez(tmp_path / "t.npz", train=np.eye(10), test=np.eye(10)[:2])
    p = load_path(tmp_path / "t.npz", valid=0.2)
    assert p.sizes() == {"train": 8, "valid": 2, "test": 2}


def test_load_path_errors(tmp_path):
    x = np.zeros((5, 3))
    x[2, 1] = np.nan
    np.save(tmp_path / "n.npy", x)
    with pytest.raises(DataError, match="contains nan"):
        load_path(tmp_path / "n.npy")
    (tmp_path / "r.csv").write_text("0,1\n1\n")
    with pytest.raises(DataError, match="row 2 has 1 values, expected 2"):
        load_path(tmp_path / "r.csv")
    (tmp_path / "h.csv").write_text("a,b\n0,1\n")
    with pytest.raises(DataError, match="row 1, column 1 holds 'a', which is not a number \\(a header line"):
        load_path(tmp_path / "h.csv")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="holds neither .png images nor split files"):
        load_path(tmp_path / "folder")
    np.save(tmp_path / "ok.npy", np.eye(5))
    with pytest.raises(ConfigError, match="unknown setting"):
        load_path(tmp_path / "ok.npy", colour="red")
    with pytest.raises(ConfigError, match="unknown binarize"):
        load_path(tmp_path / "ok.npy", binarize="otsu")
    with pytest.raises(ConfigError, match="must leave rows for training"):
        load_path(tmp_path / "ok.npy", valid=0.5, test=0.5)
    with pytest.raises(DataError, match="no such file or folder"):
        load_dataset(str(tmp_path / "missing.npy"))


def test_load_dataset_path_spec_with_settings(tmp_path):
    g = np.random.default_rng(4).random((50, 16))
    np.save(tmp_path / "g.npy", g)
    d = load_dataset(f"{tmp_path / 'g.npy'}:binarize=none,valid=0.2,test=0.2")
    assert d.kind == "real" and d.sizes() == {"train": 30, "valid": 10, "test": 10} and d.image_shape == (4, 4)
    assert d.settings["spec"].endswith("g.npy:binarize=none,valid=0.2,test=0.2")
    rows = torch.cat([d.train, d.valid, d.test]).double().numpy()
    np.testing.assert_allclose(rows[np.lexsort(rows.T[::-1])], g[np.lexsort(g.T[::-1])], rtol=1e-6)


# -- the CLI on a data file ------------------------------------------------------------------------------------------
def test_cli_fits_a_data_file_to_the_closed_form_mle(tmp_path, capsys):
    """`genlearn fit product-bernoulli --data FILE.npz:binarize=threshold`: the test NLL after gradient descent
    equals the closed-form NLL of the MLE p_i = mean of train column i (computed here with numpy)."""
    import json

    from genlearn.cli import main

    rng = np.random.default_rng(8)
    grey = {s: rng.random((n, 4)) * np.array([0.7, 1.0, 1.0, 1.3]).clip(0, 1) for s, n in
            (("train", 40), ("valid", 10), ("test", 10))}
    np.savez(tmp_path / "g.npz", **grey)
    code = main(["fit", "product-bernoulli", "--data", f"{tmp_path / 'g.npz'}:binarize=threshold,threshold=0.4",
                 "--epochs", "400", "--lr", "0.5", "--optimizer", "adam", "--out", str(tmp_path / "run"), "--quiet"])
    capsys.readouterr()
    assert code == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    x, t = (grey["train"] > 0.4).astype(float), (grey["test"] > 0.4).astype(float)
    p = x.mean(0)
    assert ((p > 0) & (p < 1)).all()
    nll = -(t.mean(0) * np.log(p) + (1 - t.mean(0)) * np.log(1 - p)).sum()
    assert metrics["test_nll"] == pytest.approx(nll, abs=1e-3)


def test_cli_bad_file_is_one_line_exit_2(tmp_path, capsys):
    from genlearn.cli import main

    (tmp_path / "r.csv").write_text("0,1,1\n1,0\n")
    code = main(["fit", "product-bernoulli", "--data", str(tmp_path / "r.csv"), "--out", str(tmp_path / "run"),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "row 2 has 2 values, expected 3" in err and "Traceback" not in err
