"""Named real data sets, read from files the user downloaded (`--data-dir DIR` or GENLEARN_DATA=DIR).

    mnist            MNIST grey levels (IDX), 50000 train / 10000 valid (the last 10000 training images) /
                     10000 test, 28x28, binarized here. Default binarization: static (x ~ Bernoulli(grey/255)
                     drawn once, seeds 0/1/2 for train/valid/test): a fixed stochastic binarization of the
                     Salakhutdinov & Murray kind, but NOT the published draws: compare with published tables
                     only on `binarized-mnist`. threshold (x = [grey/255 > 0.5]), dynamic (train redrawn every
                     epoch) and none (kind "real", grey levels in [0, 1]) are the alternatives.
    binarized-mnist  the standard static binarized MNIST (Larochelle's 50000 / 10000 / 10000 split):
                     binarized_mnist_uint8.npz (keys train/valid/test) or the original text files
                     binarized_mnist_{train,valid,test}.amat.
    fashion-mnist    Fashion-MNIST (IDX, same names and splits as MNIST), binarized as mnist.
                     mnist and fashion-mnist carry class labels (`Dataset.labels`, split like the images) when
                     the label files train-labels-idx1-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] sit next to
                     the images; without them the labels are None (they are never needed to train).
    adult, dna, nips UCI binary sets of the NADE benchmark: NAME.{train,valid,test}.data, comma-separated 0/1.
                     dna: split=nade (default) reads dna.npz, the NADE/MADE papers' 1400 / 600 / 1186 split;
                     split=debd reads the .data files, 1600 / 400 / 1186 (same 2000 rows, other valid cut).

Every set is looked for in DIR, then DIR/<folder> (fashion-mnist also in /usr/share/datasets/fashion-mnist,
where Debian's dataset-fashion-mnist package installs it). A missing file gives one DataError listing every
folder looked in, the files expected and how to point genlearn at them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genlearn.data import formats
from genlearn.data.dataset import Dataset
from genlearn.data.files import binarization_record, binarize_splits
from genlearn.data.sources import register_source
from genlearn.errors import ConfigError, DataError

IMAGE_SHAPE = (28, 28)
IDX_GROUPS = [("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"),
              ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"),
              ("train-images.idx3-ubyte", "t10k-images.idx3-ubyte")]
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
#: features per example of the UCI sets (a file with another width is corrupt or the wrong file)
UCI_FEATURES = {"adult": 123, "dna": 180, "nips": 500}
UCI_SIZES = {"adult": (5000, 1414, 26147), "dna": (1400, 600, 1186), "nips": (400, 100, 1240)}

_IMAGE_SETTINGS = {
    "binarize": ("static", "static (fixed Bernoulli draw, default) | threshold | dynamic | none (grey levels)"),
    "threshold": (0.5, "binarize=threshold: pixel is 1 when grey/255 > threshold"),
    "seed": (0, "binarize=static|dynamic: seed of the draws (train seed, valid seed+1, test seed+2)"),
    "valid": (10000, "number of the last training images held out as the validation split"),
}


# -- finding files ----------------------------------------------------------------------------------------------
def locate(name: str, data_dir, folders, groups, extra_dirs=()) -> list[Path]:
    """Paths of the first group of file names found together in one candidate folder.

    Candidates: data_dir, data_dir/<folder> for each folder, then extra_dirs. Raises DataError naming every
    folder looked in (and what was missing there), the files expected, and --data-dir / GENLEARN_DATA."""
    dirs: list[Path] = []
    if data_dir is not None:
        base = Path(data_dir).expanduser()
        dirs += [base] + [base / f for f in folders]
    dirs += [Path(d) for d in extra_dirs]
    for d in dirs:
        for group in groups:
            files = [d / f for f in group]
            if all(f.is_file() for f in files):
                return files
    expected = " and ".join(groups[0])
    alternatives = "; or ".join(" and ".join(g) for g in groups[1:])
    if alternatives:
        expected += f" (or {alternatives})"
    if data_dir is not None and Path(data_dir).expanduser().exists() and not Path(data_dir).expanduser().is_dir():
        raise DataError(
            f"data set {name!r}: the data directory {data_dir} is a file, not a folder; pass --data-dir DIR (Python: "
            f"data_dir=DIR) or set GENLEARN_DATA=DIR, DIR being the folder that holds {expected}, directly or in "
            f"DIR/{folders[0]}."
        )
    looked = []
    for d in dirs:
        if d.exists() and not d.is_dir():
            looked.append(f"{d} (a file, not a folder)")
        elif not d.is_dir():
            looked.append(f"{d} (no such folder)")
        else:
            missing = [f for f in groups[0] if not (d / f).is_file()]
            looked.append(f"{d} (missing {', '.join(missing)})")
    where = "; ".join(looked) if looked else "nowhere"
    no_dir = "" if data_dir is not None else " No data directory was given (neither --data-dir nor GENLEARN_DATA)."
    raise DataError(
        f"data set {name!r} not found: expected {expected}. Looked in: {where}.{no_dir} Download the files and "
        f"pass --data-dir DIR (Python: data_dir=DIR) or set GENLEARN_DATA=DIR, with the files in DIR or "
        f"DIR/{folders[0]}."
    )


# -- MNIST-like IDX images -----------------------------------------------------------------------------------------
def _read_images(path: Path) -> np.ndarray:
    arr = formats.read_idx(path)
    if arr.ndim != 3 or arr.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{path} holds an array of shape {arr.shape}; expected images (N, 28, 28)")
    return arr


def _label_file(image_path: Path) -> Path | None:
    """The IDX label file next to an image file (train-images-idx3-ubyte[.gz] -> train-labels-idx1-ubyte[.gz],
    compressed or not, whichever exists), or None."""
    base = image_path.name.replace("images", "labels").replace("idx3", "idx1")
    stem = base[:-3] if base.endswith(".gz") else base
    for candidate in (base, stem, stem + ".gz"):
        if (image_path.parent / candidate).is_file():
            return image_path.parent / candidate
    return None


def _read_labels(path: Path, n_images: int) -> np.ndarray:
    arr = formats.read_idx(path)
    if arr.ndim != 1 or arr.shape[0] != n_images:
        raise DataError(f"{path} holds labels of shape {arr.shape}; expected {n_images} labels (one per image of "
                        "the image file next to it)")
    return arr.astype(np.int64)


def _read_label_pair(train_path: Path, test_path: Path, n_train: int, n_test: int):
    """(train labels, test labels, file names) when both label files sit next to the images, else None."""
    files = [_label_file(train_path), _label_file(test_path)]
    if any(f is None for f in files):
        return None
    return _read_labels(files[0], n_train), _read_labels(files[1], n_test), [f.name for f in files]


def idx_image_dataset(name: str, settings: dict, data_dir, folders, extra_dirs=()) -> Dataset:
    """MNIST-format images: train[:-valid] / train[-valid:] / test, grey/255 binarized per `settings`; with the
    class labels split the same way when the label files sit next to the images (else labels None)."""
    method = str(settings["binarize"]).lower()
    if method not in ("static", "threshold", "dynamic", "none"):
        raise ConfigError(f"unknown binarize={settings['binarize']!r}; choose static, threshold, dynamic or none")
    train_path, test_path = locate(name, data_dir, folders, IDX_GROUPS, extra_dirs)
    train_all, test = _read_images(train_path), _read_images(test_path)
    n_valid = settings["valid"]
    if isinstance(n_valid, bool) or not isinstance(n_valid, int) or not 0 <= n_valid < train_all.shape[0]:
        raise ConfigError(
            f"valid must be a count of training images in [0, {train_all.shape[0]}), got {n_valid!r}"
        )
    cut = train_all.shape[0] - n_valid
    grey = {"train": train_all[:cut], "valid": train_all[cut:] if n_valid else None, "test": test}
    intensity = {k: torch.from_numpy(v.reshape(v.shape[0], -1)).to(torch.float32) / 255.0
                 for k, v in grey.items() if v is not None}
    record = {"source": str(train_path.parent), "format": "idx", "files": [train_path.name, test_path.name],
              "splits": f"train = first {cut} training images, valid = last {n_valid}, test = t10k"}
    labels = None
    found = _read_label_pair(train_path, test_path, train_all.shape[0], test.shape[0])
    if found is not None:
        train_y, test_y, names = found
        labels = {"train": torch.from_numpy(train_y[:cut]), "test": torch.from_numpy(test_y)}
        if n_valid:
            labels["valid"] = torch.from_numpy(train_y[cut:])
        record["label_files"] = names
    if method == "none":
        out, train_intensity, kind = intensity, None, "real"
        record["binarization"] = "none (grey levels / 255)"
    else:
        out, train_intensity = binarize_splits(intensity, method, float(settings["threshold"]), int(settings["seed"]))
        kind = "binary"
        record.update(binarization_record(method, settings["threshold"], settings["seed"]))
    return Dataset(name=name, kind=kind, train=out["train"], valid=out.get("valid"), test=out["test"],
                   image_shape=IMAGE_SHAPE, settings=record, train_intensity=train_intensity, labels=labels)


@register_source("mnist", "MNIST 28x28 (IDX files), 50000/10000/10000, binarized (static seed 0 by default)",
                 dict(_IMAGE_SETTINGS))
def mnist(settings, data_dir=None) -> Dataset:
    return idx_image_dataset("mnist", settings, data_dir, ("mnist", "MNIST"))


@register_source("fashion-mnist", "Fashion-MNIST 28x28 (IDX files), 50000/10000/10000, binarized like mnist",
                 dict(_IMAGE_SETTINGS))
def fashion_mnist(settings, data_dir=None) -> Dataset:
    return idx_image_dataset("fashion-mnist", settings, data_dir, ("fashion-mnist", "fashion_mnist"),
                             extra_dirs=(FASHION_SYSTEM_DIR,))


# -- binarized MNIST ------------------------------------------------------------------------------------------------
BMNIST_NPZ = "binarized_mnist_uint8.npz"
BMNIST_AMAT = tuple(f"binarized_mnist_{s}.amat" for s in ("train", "valid", "test"))


def _binary_tensor(arr: np.ndarray, what: str, n_features: int) -> torch.Tensor:
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise DataError(f"{what} has shape {arr.shape}; expected (examples, {n_features})")
    formats.check_binary_array(arr, what)
    return torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32)


@register_source("binarized-mnist", "the standard static binarized MNIST (Larochelle), 50000/10000/10000; files",
                 {})
def binarized_mnist(settings, data_dir=None) -> Dataset:
    folders = ("binarized_mnist", "binarized-mnist")
    files = locate("binarized-mnist", data_dir, folders, [(BMNIST_NPZ,), BMNIST_AMAT])
    if len(files) == 1:
        parts = formats.read_npz(files[0])
        missing = [s for s in ("train", "valid", "test") if s not in parts]
        if missing:
            raise DataError(f"{files[0]} lacks the key(s) {', '.join(missing)}; expected keys train, valid, test")
        fmt = "npz"
    else:
        parts = dict(zip(("train", "valid", "test"), (formats.read_amat(f, binary=True) for f in files)))
        fmt = "amat"
    out = {k: _binary_tensor(v, f"{files[0].parent}[{k}]", 784) for k, v in parts.items()}
    return Dataset(name="binarized-mnist", kind="binary", train=out["train"], valid=out["valid"], test=out["test"],
                   image_shape=IMAGE_SHAPE,
                   settings={"source": str(files[0].parent), "format": fmt, "files": [f.name for f in files],
                             "binarization": "static (Salakhutdinov & Murray 2008, as distributed)",
                             "splits": "from the files (Larochelle 50000/10000/10000)"})


# -- UCI binary sets ------------------------------------------------------------------------------------------------
def uci_dataset(name: str, data_dir, use_npz: bool = False) -> Dataset:
    n = UCI_FEATURES[name]
    if use_npz:
        (path,) = locate(name, data_dir, (name,), [(f"{name}.npz",)])
        parts = formats.read_npz(path)
        missing = [s for s in ("train", "valid", "test") if s not in parts]
        if missing:
            raise DataError(f"{path} lacks the {', '.join(missing)} array(s) (train_data/valid_data/test_data)")
        files, fmt = [path], "npz"
    else:
        files = locate(name, data_dir, (name,), [tuple(f"{name}.{s}.data" for s in ("train", "valid", "test"))])
        parts = dict(zip(("train", "valid", "test"), (formats.read_text(f, delimiter=",", binary=True) for f in files)))
        fmt = "text"
    out = {k: _binary_tensor(v, f"{files[0].parent / name}[{k}]", n) for k, v in parts.items()}
    sizes = "/".join(str(out[s].shape[0]) for s in ("train", "valid", "test"))
    return Dataset(name=name, kind="binary", train=out["train"], valid=out["valid"], test=out["test"],
                   settings={"source": str(files[0].parent), "format": fmt, "files": [f.name for f in files],
                             "binarization": "none (data already 0/1)", "splits": f"from the files ({sizes})"})


@register_source("adult", "UCI adult, 123 binary features, NADE split 5000/1414/26147; files", {})
def adult(settings, data_dir=None) -> Dataset:
    return uci_dataset("adult", data_dir)


@register_source("nips", "NIPS 0-12 word presence, 500 binary features, NADE split 400/100/1240; files", {})
def nips(settings, data_dir=None) -> Dataset:
    return uci_dataset("nips", data_dir)


@register_source("dna", "UCI dna (splice), 180 binary features, NADE split 1400/600/1186 (split=debd: 1600/400); "
                 "files", {"split": ("nade", "nade: dna.npz, 1400/600/1186 | debd: dna.*.data, 1600/400/1186")})
def dna(settings, data_dir=None) -> Dataset:
    split = str(settings["split"]).lower()
    if split not in ("nade", "debd"):
        raise ConfigError(f"unknown dna split {settings['split']!r}; choose nade (dna.npz) or debd (dna.*.data)")
    try:
        return uci_dataset("dna", data_dir, use_npz=(split == "nade"))
    except DataError as exc:
        if split == "nade" and "not found" in str(exc):
            raise DataError(f"{exc} (With only dna.train.data/valid.data/test.data use dna:split=debd, the "
                            "1600/400/1186 split.)") from None
        raise
