"""Messages of the data loaders for inputs they used to describe wrongly: an array with examples but zero
features, a truncated .npy, a file named .gz that is not gzip, a genlearn run folder given as data, and a
--data-dir that is a file. Each names the file, what is wrong and the fix, as one DataError (CLI: exit 2, one
`genlearn: error:` line)."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from PIL import Image

from genlearn.data import formats
from genlearn.data.files import load_path
from genlearn.data.named import locate
from genlearn.data.registry import load_dataset
from genlearn.errors import DataError


# -- 1. examples without features ---------------------------------------------------------------------------------
def test_zero_columns_say_no_features(tmp_path):
    path = tmp_path / "zerocols.npy"
    np.save(path, np.zeros((100, 0)))
    with pytest.raises(DataError, match=r"zerocols\.npy holds 100 examples but no features .*zero columns") as info:
        formats.read_npy(path)
    assert "at least one example" not in str(info.value)
    assert "at least one feature column" in str(info.value)


def test_zero_columns_in_npz_and_zero_rows(tmp_path):
    np.savez(tmp_path / "z.npz", train=np.zeros((7, 0)))
    with pytest.raises(DataError, match=r"holds 7 examples but no features"):
        formats.read_npz(tmp_path / "z.npz")
    np.save(tmp_path / "rows.npy", np.zeros((0, 5)))  # no examples at all: still "empty"
    with pytest.raises(DataError, match=r"is empty \(shape \(0, 5\)\); at least one example is needed"):
        formats.read_npy(tmp_path / "rows.npy")


def test_zero_columns_cli(tmp_path, refused):
    np.save(tmp_path / "zerocols.npy", np.zeros((100, 0)))
    refused(["fit", "product-bernoulli", "--data", tmp_path / "zerocols.npy", "--quiet", "--epochs", "1",
             "--out", tmp_path / "out"], "holds 100 examples but no features")
    assert not (tmp_path / "out").exists()


# -- 2. truncated .npy ----------------------------------------------------------------------------------------------
def _truncated_npy(path, cut: int):
    np.save(path, np.zeros((50, 6)))
    raw = path.read_bytes()
    path.write_bytes(raw[:-cut] if cut else raw)
    return len(raw)


def test_truncated_npy_says_truncated_not_object_arrays(tmp_path):
    path = tmp_path / "trunc.npy"
    _truncated_npy(path, 100)
    with pytest.raises(DataError) as info:
        formats.read_npy(path)
    msg = str(info.value)
    assert "trunc.npy is truncated" in msg
    assert "shape (50, 6) (2400 data bytes) but the file holds only 2300" in msg
    assert "write it again" in msg
    assert "object" not in msg


def test_npy_truncated_inside_header(tmp_path):
    path = tmp_path / "head.npy"
    np.save(path, np.zeros((50, 6)))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match=r"head\.npy is truncated: the file \(60 bytes\) ends inside its \.npy header"):
        formats.read_npy(path)


def test_object_npy_keeps_the_object_hint(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([1, "a", None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"obj\.npy holds an object array \(dtype object\): object arrays are "
                                        r"refused.*save a numeric array"):
        formats.read_npy(path)


def test_truncated_npy_cli(tmp_path, refused):
    _truncated_npy(tmp_path / "trunc.npy", 100)
    line = refused(["fit", "product-bernoulli", "--data", tmp_path / "trunc.npy", "--quiet", "--epochs", "1",
                    "--out", tmp_path / "out"], "trunc.npy is truncated")
    assert "object" not in line


# -- 3. named .gz, not gzip -----------------------------------------------------------------------------------------
def test_gz_name_without_gzip_content(tmp_path):
    path = tmp_path / "notgz.gz"
    path.write_text("hello\n1,0\n")
    for read in (formats.read_text, load_path):
        with pytest.raises(DataError, match=r"notgz\.gz ends in \.gz but is not gzip-compressed .*1f 8b.*rename it "
                                            r"to notgz without \.gz.*compress it with gzip"):
            read(path)


def test_gz_name_without_gzip_content_cli(tmp_path, refused):
    path = tmp_path / "data.csv.gz"
    path.write_text("1,0\n0,1\n1,1\n0,0\n")
    refused(["fit", "product-bernoulli", "--data", path, "--quiet", "--epochs", "1", "--out", tmp_path / "out"],
            "data.csv.gz ends in .gz but is not gzip-compressed")


def test_real_gzip_text_still_reads(tmp_path):
    path = tmp_path / "ok.csv.gz"
    path.write_bytes(gzip.compress(b"1,0\n0,1\n1,1\n0,0\n"))
    np.testing.assert_array_equal(formats.read_text(path), [[1, 0], [0, 1], [1, 1], [0, 0]])


# -- 4. a run folder given as data ----------------------------------------------------------------------------------
def _hand_made_run(folder):
    """What `genlearn fit` leaves: checkpoint, final model, metrics and plots (PNGs of different sizes)."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"model": "rbm"}))
    (folder / "checkpoint.json").write_text(json.dumps({"model": "rbm"}))
    Image.new("L", (120, 32)).save(folder / "learning_curve.png")
    Image.new("L", (45, 45)).save(folder / "samples.png")
    return folder


def test_run_folder_files_match_the_run_folder_module():
    from genlearn.learning import run_folder

    assert set(formats.RUN_FOLDER_FILES) == {run_folder.TENSORS, run_folder.META, run_folder.MODEL_FILE,
                                             run_folder.METRICS_FILE}


def test_run_folder_as_data(tmp_path):
    run = _hand_made_run(tmp_path / "r_rbm")
    for read in (load_path, formats.read_png_folder, lambda p: load_dataset(str(p))):
        with pytest.raises(DataError, match=r"r_rbm is a genlearn run folder \(a fitted model: it holds "
                                            r"checkpoint\.json\), not data; give a data file, a folder of images or a "
                                            r"data-set name"):
            read(run)


def test_folder_of_run_folders_as_data(tmp_path):
    _hand_made_run(tmp_path / "study" / "trials" / "0000")
    with pytest.raises(DataError, match=r"study holds genlearn run folders \(fitted models, e\.g\. trials/0000\), "
                                        r"not data"):
        load_path(tmp_path / "study")


def test_real_run_folder_as_data_cli(tmp_path, cli, refused):
    run = tmp_path / "run"
    code, _, err = cli(["fit", "product-bernoulli", "--data", "bars-and-stripes:size=3,n=40", "--epochs", "1",
                        "--quiet", "--out", run])
    assert code == 0, err
    words = "is a genlearn run folder (a fitted model"
    refused(["fit", "product-bernoulli", "--data", run, "--quiet", "--out", tmp_path / "x4"], words)
    refused(["eval", run, "--data", run], words)
    refused(["bench", "--data", run], words)
    assert not (tmp_path / "x4").exists()


def test_image_folder_still_reads(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.new("L", (3, 3), color=255 * (i % 2)).save(folder / f"{i}.png")
    arr, shape = formats.read_png_folder(folder)
    assert arr.shape == (4, 9) and shape == (3, 3)


# -- 5. --data-dir that is a file -----------------------------------------------------------------------------------
def test_data_dir_that_is_a_file(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    with pytest.raises(DataError, match=r"the data directory .*precious\.txt is a file, not a folder; pass "
                                        r"--data-dir DIR") as info:
        load_dataset("mnist", data_dir=precious)
    assert "no such folder" not in str(info.value)
    assert precious.read_text() == "keep me\n"


def test_data_dir_subfolder_that_is_a_file(tmp_path):
    (tmp_path / "mnist").write_text("not a folder\n")
    with pytest.raises(DataError, match=r"mnist \(a file, not a folder\)"):
        locate("mnist", tmp_path, ("mnist",), [("train-images-idx3-ubyte.gz",)])


def test_data_dir_that_is_a_file_cli(tmp_path, refused, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "precious.txt").write_text("keep me\n")
    refused(["fit", "rbm", "--data", "mnist", "--data-dir", "precious.txt", "--quiet", "--epochs", "1",
             "--out", tmp_path / "out"], "--data-dir precious.txt is a file")
    assert (tmp_path / "precious.txt").read_text() == "keep me\n"
