"""Property-based tests of every reader of user files (issue 16, item 8): random bytes and mutated valid files.

Each reader either loads the file or raises the error it promises (a GenlearnError: DataError for data files,
RunError for run folders); any other exception is a bug, and so is a hang (each example has a deadline). The
readers: the data-file loader (genlearn.data.files.load_path, which sniffs the format and calls the readers of
genlearn.data.formats: IDX raw and gzip, npy, npz, 0/1 text, amat, PNG folders), the safetensors header check,
the checkpoint reader (--resume) and the run-folder reader (eval, sample)."""
from __future__ import annotations

import gzip
import io
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import genlearn
from genlearn.data.files import load_path
from genlearn.data.formats import write_idx
from genlearn.errors import GenlearnError
from genlearn.learning.run_folder import read_checkpoint, read_header, read_run

#: GENLEARN_FUZZ_EXAMPLES=1000 for a longer search than the suite's
FUZZ = settings(max_examples=int(os.environ.get("GENLEARN_FUZZ_EXAMPLES", "25")), deadline=5000, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _valid_files(root: Path) -> dict[str, bytes]:
    """name -> bytes of small valid data files, one per format."""
    rng = np.random.default_rng(0)
    x = (rng.random((12, 6)) < 0.4).astype(np.uint8)
    out = {}
    out["data.csv"] = "\n".join(",".join(str(v) for v in row) for row in x).encode() + b"\n"
    out["data.amat"] = "\n".join(" ".join(str(v) for v in row) for row in x).encode() + b"\n"
    buf = io.BytesIO()
    np.save(buf, x.astype(np.float32))
    out["data.npy"] = buf.getvalue()
    buf = io.BytesIO()
    np.savez(buf, train=x[:8], valid=x[8:10], test=x[10:])
    out["data.npz"] = buf.getvalue()
    write_idx(root / "images-idx3-ubyte", (x.reshape(12, 2, 3) * 255).astype(np.uint8))
    out["images-idx3-ubyte"] = (root / "images-idx3-ubyte").read_bytes()
    out["images-idx3-ubyte.gz"] = gzip.compress(out["images-idx3-ubyte"])
    return out


def _png(path: Path, pixels: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.imsave(path, pixels, cmap="gray", vmin=0, vmax=1)


def _mutate(data: bytes, ops: list) -> bytes:
    """Apply (kind, position, value) edits: flip a byte, delete a span, insert bytes, truncate."""
    b = bytearray(data)
    for kind, pos, value in ops:
        if not b:
            b = bytearray(value[:1] or b"\x00")
            continue
        i = pos % len(b)
        if kind == "flip":
            b[i] ^= (value[0] if value else 0xFF) or 1
        elif kind == "delete":
            del b[i: i + 1 + len(value)]
        elif kind == "insert":
            b[i:i] = value
        else:  # truncate
            del b[i:]
    return bytes(b)


OPS = st.lists(st.tuples(st.sampled_from(["flip", "delete", "insert", "truncate"]), st.integers(0, 10**6),
                         st.binary(max_size=8)), min_size=1, max_size=4)


def _load_or_genlearn_error(fn, *args):
    try:
        fn(*args)
    except GenlearnError:
        pass


def _fresh(work: Path, name: str, data: bytes) -> Path:
    folder = work / uuid.uuid4().hex
    folder.mkdir()
    path = folder / name
    path.write_bytes(data)
    return path


# -- data files ---------------------------------------------------------------------------------------------------
NAMES = ["data.csv", "data.txt", "data.amat", "data.npy", "data.npz", "images-idx3-ubyte", "images-idx3-ubyte.gz",
         "data.data", "data"]


@FUZZ
@given(name=st.sampled_from(NAMES), data=st.binary(max_size=600))
def test_random_bytes_as_data_file(work, name, data):
    _load_or_genlearn_error(load_path, _fresh(work, name, data))


@FUZZ
@given(prefix=st.sampled_from([b"\x93NUMPY", b"PK\x03\x04", b"\x1f\x8b", b"\x00\x00\x08\x03", b"\x00\x00\x0d\x01",
                               b"\x89PNG\r\n\x1a\n", b"MATLAB"]),
       data=st.binary(max_size=400), name=st.sampled_from(NAMES))
def test_random_bytes_behind_a_magic_number(work, prefix, data, name):
    _load_or_genlearn_error(load_path, _fresh(work, name, prefix + data))


@FUZZ
@given(which=st.integers(0, 5), ops=OPS)
def test_mutated_valid_data_file(work, which, ops):
    valid = _valid_files(work)
    name = sorted(valid)[which]
    _load_or_genlearn_error(load_path, _fresh(work, name, _mutate(valid[name], ops)))


@FUZZ
@given(ops=OPS, n_files=st.integers(1, 3))
def test_mutated_png_folder(work, ops, n_files):
    folder = work / uuid.uuid4().hex
    folder.mkdir()
    for i in range(n_files):
        _png(folder / f"{i}.png", np.eye(4))
    first = folder / "0.png"
    first.write_bytes(_mutate(first.read_bytes(), ops))
    _load_or_genlearn_error(load_path, folder)


def test_valid_files_load(work):
    """The seeds of the mutations are valid: each loads (the fuzz above starts from files that work)."""
    for name, data in _valid_files(work).items():
        dataset = load_path(_fresh(work, name, data))
        assert dataset.train.shape[0] > 0


# -- run folders --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzzrun") / "run"
    genlearn.fit("mixture", "coin:p=0.3,n=100", out=out, components=2, epochs=2, plots=False, progress=False)
    return out


RUN_FILES = ["checkpoint.safetensors", "checkpoint.json", "model.safetensors", "metrics.json"]


def _mutated_run(work: Path, run_dir: Path, name: str, data: bytes) -> Path:
    folder = work / uuid.uuid4().hex
    shutil.copytree(run_dir, folder)
    (folder / name).write_bytes(data)
    return folder


@FUZZ
@given(name=st.sampled_from(RUN_FILES), ops=OPS)
def test_mutated_run_folder(work, run_dir, name, ops):
    folder = _mutated_run(work, run_dir, name, _mutate((run_dir / name).read_bytes(), ops))
    _load_or_genlearn_error(read_run, folder)
    _load_or_genlearn_error(read_checkpoint, folder, True)
    _load_or_genlearn_error(genlearn.load_run, folder)


@FUZZ
@given(name=st.sampled_from(RUN_FILES), data=st.binary(max_size=400))
def test_random_bytes_in_run_folder(work, run_dir, name, data):
    folder = _mutated_run(work, run_dir, name, data)
    _load_or_genlearn_error(genlearn.load_run, folder)
    _load_or_genlearn_error(read_checkpoint, folder, True)


@FUZZ
@given(header=st.binary(max_size=200), length=st.integers(0, 2**64 - 1), tail=st.binary(max_size=64))
def test_safetensors_header_reader(work, header, length, tail):
    path = _fresh(work, "x.safetensors", length.to_bytes(8, "little") + header + tail)
    _load_or_genlearn_error(read_header, path)
