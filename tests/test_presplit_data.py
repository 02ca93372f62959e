"""Pre-split data keep their splits: a folder of NAME.train/valid/test.data files, one of those files, their
prefix DIR/NAME, or an npz with train/valid/test arrays (the layout of the density-estimation benchmark
collections). Oracle: the rows of every split equal the rows written to its file."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genlearn.data.registry import load_dataset
from genlearn.errors import DataError


@pytest.fixture
def splits(tmp_path):
    rng = np.random.default_rng(0)
    parts = {"train": rng.integers(0, 2, (30, 7)), "valid": rng.integers(0, 2, (11, 7)),
             "test": rng.integers(0, 2, (13, 7))}
    folder = tmp_path / "nltcs"
    folder.mkdir()
    for split, x in parts.items():
        np.savetxt(folder / f"nltcs.{split}.data", x, fmt="%d", delimiter=",")
    return folder, parts


def check_kept(ds, parts):
    assert ds.kind == "binary" and ds.name == "nltcs"
    assert ds.sizes() == {s: len(x) for s, x in parts.items()}
    for split, x in parts.items():
        assert torch.equal(getattr(ds, split), torch.as_tensor(x, dtype=torch.float32))
    assert ds.settings["splits"] == "from the file(s)"


@pytest.mark.parametrize("how", ["folder", "prefix", "train-file", "test-file"])
def test_presplit_files_keep_their_splits(splits, how):
    folder, parts = splits
    spec = {"folder": folder, "prefix": folder / "nltcs", "train-file": folder / "nltcs.train.data",
            "test-file": folder / "nltcs.test.data"}[how]
    check_kept(load_dataset(str(spec)), parts)


def test_npz_with_splits_keeps_them(tmp_path, splits):
    _, parts = splits
    np.savez(tmp_path / "nltcs.npz", **{k: v.astype(np.uint8) for k, v in parts.items()})
    check_kept(load_dataset(str(tmp_path / "nltcs.npz")), parts)


def test_other_sets_in_the_folder_are_not_mixed_in(splits):
    folder, parts = splits
    np.savetxt(folder / "msnbc.train.data", np.ones((5, 7), int), fmt="%d", delimiter=",")
    check_kept(load_dataset(str(folder / "nltcs")), parts)
    with pytest.raises(DataError, match="several train files"):
        load_dataset(str(folder))  # a folder of two sets: say which one


def test_a_file_without_siblings_is_split_by_seed(tmp_path):
    x = np.random.default_rng(1).integers(0, 2, (50, 4))
    np.savetxt(tmp_path / "one.data", x, fmt="%d", delimiter=",")
    ds = load_dataset(str(tmp_path / "one.data"))
    assert ds.sizes() == {"train": 40, "valid": 5, "test": 5} and "shuffled" in ds.settings["splits"]


def test_a_prefix_without_files_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_dataset(str(tmp_path / "absent"))
