"""A data set from a file or folder the user names: `--data PATH[:key=value,...]`.

Format, by suffix then by content: IDX (`*-ubyte`, `.idx`, optionally `.gz`), `.npz`, `.npy`, `.amat`, text
(`.csv`, `.txt`, `.data`, `.dat`: comma- or space-separated numbers), MATLAB `.mat`, a folder of PNG images,
or a folder of split files `NAME.train.EXT` / `NAME.valid.EXT` / `NAME.test.EXT`.

Values, after reading:
- all 0/1                          -> kind "binary" as they are (no binarization);
- grey levels (not all 0/1) in [0, 1], or integers in 0..255 (divided by `scale`, default 1 or 255)
                                   -> binarized by `binarize` = threshold (x = [g > threshold], default 0.5)
                                      | static (x ~ Bernoulli(g), drawn once with `seed`) | dynamic (train redrawn
                                      every epoch, valid/test drawn once) | none (kind "real", values unchanged);
- one column of non-negative integers, not all 0/1 (a die, class labels)
                                   -> kind "categorical", outcomes 0..K-1 with K = largest + 1;
- anything else                    -> kind "real" with binarize=none, else a DataError.

Pre-split data (the layout of the density-estimation benchmark collections: nltcs, msnbc, kdd, plants, ...): a
folder holding `NAME.train.EXT`, `NAME.valid.EXT`, `NAME.test.EXT`, one of those files (its siblings are found),
the prefix `DIR/NAME` of the three, or an `.npz` with train/valid/test arrays.

Splits: an archive/folder with train/valid/test parts keeps them (a missing valid or test part is cut from
train with the `valid`/`test` fractions); otherwise the rows are shuffled with the fixed seed 0 and cut into
(1 - valid - test, valid, test) fractions (default 0.8 / 0.1 / 0.1). A fraction of 0 gives no such split.

image_shape: from the IDX/PNG/array shape (M, H, W), else (s, s) when n = s^2 is a perfect square (s >= 2)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from genlearn.data import formats
from genlearn.data.binarize import binarize as binarize_tensor
from genlearn.data.dataset import SPLITS, Dataset, split_arrays
from genlearn.errors import ConfigError, DataError

#: settings a path spec may give: key -> (default, help)
SETTINGS = {
    "binarize": ("threshold", "threshold | static | dynamic | none (grey-level data only; 0/1 data stay as they are)"),
    "threshold": (0.5, "binarize=threshold: pixel is 1 when grey level > threshold"),
    "seed": (0, "binarize=static|dynamic: seed of the Bernoulli draws"),
    "scale": (None, "grey level that means full intensity (default 1 for values in [0, 1], 255 for 0..255)"),
    "valid": (0.1, "fraction of rows for the validation split when the file has no splits"),
    "test": (0.1, "fraction of rows for the test split when the file has no splits"),
}
SPLIT_SEED = 0
BINARIZE_CHOICES = ("threshold", "static", "dynamic", "none")

TEXT_SUFFIXES = {".csv", ".txt", ".data", ".dat", ".tsv"}
SUFFIX_FORMATS = {".npz": "npz", ".npy": "npy", ".amat": "amat", ".mat": "mat", ".idx": "idx"}


def detect_format(path) -> str:
    """'png-folder', 'split-folder', 'idx', 'npz', 'npy', 'amat', 'mat' or 'text'."""
    path = Path(path)
    if path.is_dir():
        formats.check_not_run_folder(path)
        if _split_files(path):
            return "split-folder"
        return "png-folder"
    name = path.name.lower()
    stem = name[:-3] if name.endswith(".gz") else name
    if stem.endswith("-ubyte") or stem.endswith(".idx") or "idx1" in stem or "idx3" in stem:
        return "idx"
    suffix = Path(stem).suffix
    if suffix in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffix]
    if suffix in TEXT_SUFFIXES:
        return "text"
    sniffed = formats.sniff(path)
    if sniffed == "gzip":
        return "text"  # gzip of something else: read_text gunzips
    return sniffed


def _split_files(folder: Path, stem: str | None = None) -> dict[str, Path]:
    """{'train': NAME.train.EXT, ...} when the folder holds such files (train required); with `stem`, only the
    files NAME = stem."""
    found: dict[str, list[Path]] = {s: [] for s in SPLITS}
    for p in folder.iterdir():
        parts = p.name.split(".")
        if p.is_file() and len(parts) >= 3 and parts[-2] in SPLITS and (stem is None
                                                                        or ".".join(parts[:-2]) == stem):
            found[parts[-2]].append(p)
    if not found["train"]:
        return {}
    for split, files in found.items():
        if len(files) > 1:
            raise DataError(
                f"{folder} holds several {split} files ({', '.join(sorted(f.name for f in files))}); keep one"
            )
    return {s: files[0] for s, files in found.items() if files}


def split_files_of(path) -> dict[str, Path]:
    """The pre-split files a path names without being a folder: one of NAME.train.EXT / NAME.valid.EXT /
    NAME.test.EXT (its siblings are the other splits), or the common prefix DIR/NAME of such files. {} when the
    path names no such files (train required)."""
    path = Path(path)
    if path.is_dir() or not path.parent.is_dir():
        return {}
    parts = path.name.split(".")
    if path.is_file():
        if len(parts) < 3 or parts[-2] not in SPLITS:
            return {}
        stem = ".".join(parts[:-2])
    else:
        stem = path.name
    return _split_files(path.parent, stem)


def read_arrays(path, fmt: str) -> tuple[dict[str, np.ndarray], tuple[int, int] | None]:
    """Raw arrays by split ({'data': ...} when the source has no splits) and the image shape if known."""
    path = Path(path)
    if fmt == "png-folder":
        if not formats.png_files(path):
            raise DataError(f"folder {path} holds neither .png images nor split files NAME.train.EXT / "
                            "NAME.valid.EXT / NAME.test.EXT; point --data at a data file or such a folder")
        arr, shape = formats.read_png_folder(path)
        return {"data": arr}, shape
    if fmt in ("split-folder", "split-files"):
        files = _split_files(path) if fmt == "split-folder" else split_files_of(path)
        out, shape = {}, None
        for split, f in files.items():
            parts, shape_f = read_arrays(f, detect_format(f))
            if "data" not in parts:
                raise DataError(f"{f} holds several arrays; a split file must hold one")
            out[split] = parts["data"]
            shape = shape or shape_f
        return out, shape
    if fmt == "idx":
        arr = formats.read_idx(path)
    elif fmt == "npz":
        return formats.read_npz(path), None
    elif fmt == "npy":
        arr = formats.read_npy(path)
    elif fmt == "amat":
        arr = formats.read_amat(path, binary=False)
    elif fmt == "mat":
        arr = formats.read_mat(path)
    elif fmt == "text":
        arr = formats.read_text(path)
    else:  # pragma: no cover - detect_format returns only the above
        raise DataError(f"{path}: unknown format {fmt!r}")
    return {"data": arr}, None


def _as_examples(arr: np.ndarray, what: str) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Reshape to (M, n): 1-D -> one feature; (M, H, W) or (M, H, W, 1) / (M, 1, H, W) -> images."""
    if arr.ndim == 1:
        return arr.reshape(-1, 1), None
    if arr.ndim == 2:
        return arr, None
    if arr.ndim == 4 and arr.shape[1] == 1:  # (M, 1, H, W): one channel first
        arr = arr[:, 0]
    elif arr.ndim == 4 and arr.shape[3] == 1:  # (M, H, W, 1): one channel last
        arr = arr[..., 0]
    if arr.ndim == 3:
        return arr.reshape(arr.shape[0], -1), (int(arr.shape[1]), int(arr.shape[2]))
    raise DataError(f"{what} has shape {arr.shape}; expected (examples, features) or (examples, height, width)")


def _value_kind(parts: dict[str, np.ndarray], scale) -> tuple[str, float]:
    """'binary' (all 0/1), 'grey' (with its full-intensity scale) or 'real'."""
    lo = min(float(a.min()) for a in parts.values())
    hi = max(float(a.max()) for a in parts.values())
    if all(((a == 0) | (a == 1)).all() for a in parts.values()):
        return "binary", 1.0
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
            raise ConfigError(f"scale must be a positive number (the full-intensity grey level), got {scale!r}")
        if lo < 0 or hi > scale:
            raise DataError(f"values span [{lo:g}, {hi:g}], outside the grey-level range [0, {scale:g}] of scale")
        return "grey", float(scale)
    if lo >= 0 and hi <= 1:
        return "grey", 1.0
    integral = all(a.dtype.kind in "biu" or np.array_equal(a, np.round(a)) for a in parts.values())
    if lo >= 0 and hi <= 255 and integral:
        return "grey", 255.0
    return "real", 1.0


def load_path(path, **settings) -> Dataset:
    """Read a file or folder into a Dataset (see the module docstring for formats, binarization and splits).

    dataset.settings records source (the path), format, binarization (and threshold or seed), value_scale
    and how the splits were made."""
    path = Path(path)
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(sorted(unknown))} for data file {path}; allowed: {', '.join(SETTINGS)}"
        )
    opts = {k: v[0] for k, v in SETTINGS.items()}
    opts.update(settings)
    method = str(opts["binarize"]).lower()
    if method not in BINARIZE_CHOICES:
        raise ConfigError(f"unknown binarize={opts['binarize']!r}; choose one of {', '.join(BINARIZE_CHOICES)}")
    v_frac, t_frac = _fractions(opts["valid"], opts["test"])
    presplit = split_files_of(path)
    if not path.exists() and not presplit:
        raise DataError(f"no such file or folder: {path}")

    fmt = "split-files" if presplit else detect_format(path)
    parts, image_shape = read_arrays(path, fmt)
    for name in ("valid", "test"):  # a fraction the file's own split makes moot: said, not silently dropped
        if name in settings and name in parts:
            import warnings

            warnings.warn(f"{path}: {name}= cuts a {name} split from the rows, but the file has its own {name} part "
                          f"(its parts: {', '.join(parts)}): {name}= is ignored (drop it)", UserWarning, stacklevel=2)
    shaped = {}
    for key, arr in parts.items():
        shaped[key], shape_k = _as_examples(arr, f"{path}[{key}]" if key != "data" else str(path))
        image_shape = image_shape or shape_k
    widths = {k: a.shape[1] for k, a in shaped.items()}
    if len(set(widths.values())) > 1:
        raise DataError(f"{path}: splits have different numbers of features {widths}; they must agree")
    try:
        value_kind, scale = _value_kind(shaped, opts["scale"])
    except DataError as exc:  # the file named, as in every other data error
        raise DataError(f"{path}: {exc}") from None
    if value_kind != "binary" and _is_outcomes(shaped):
        return _categorical_dataset(path, fmt, shaped, v_frac, t_frac)
    if value_kind == "grey":  # not 0/1 and no binarize= given: an error naming the file, row, column and value
        from genlearn.data.spec_check import check_binary_values

        sources = {"split-folder": _split_files, "split-files": split_files_of}.get(fmt)
        check_binary_values(shaped, path, fmt, settings, sources(path) if sources else None)
    if value_kind == "real" and method != "none":
        lo = min(float(a.min()) for a in shaped.values())
        hi = max(float(a.max()) for a in shaped.values())
        raise DataError(
            f"{path}: values span [{lo:g}, {hi:g}]: neither 0/1 nor grey levels in [0, 1] or 0..255; "
            "pass binarize=none to keep real values, or scale=MAX if they are grey levels 0..MAX"
        )

    tensors = {k: torch.as_tensor(np.ascontiguousarray(a)) for k, a in shaped.items()}
    split_note = _make_splits(tensors, v_frac, t_frac)
    record = {"source": str(path), "format": fmt, "splits": split_note}
    train_intensity = None
    if value_kind == "binary":
        kind = "binary"
        out = {k: t.to(torch.float32) for k, t in tensors.items()}
        record["binarization"] = "none (data already 0/1)"
    elif method == "none":
        kind = "real"
        out = {k: t.to(torch.float32) for k, t in tensors.items()}
        record["binarization"] = "none (real values kept)"
    else:
        kind = "binary"
        intensity = {k: t.to(torch.float32) / scale for k, t in tensors.items()}
        out, train_intensity = binarize_splits(intensity, method, float(opts["threshold"]), int(opts["seed"]))
        record.update(binarization_record(method, opts["threshold"], opts["seed"]))
        record["value_scale"] = scale

    n = next(iter(out.values())).shape[1]
    if image_shape is None:
        side = math.isqrt(n)
        image_shape = (side, side) if side >= 2 and side * side == n else None
    if image_shape is not None and image_shape[0] * image_shape[1] != n:  # pragma: no cover - defensive
        image_shape = None
    return Dataset(name=_dataset_name(path), kind=kind, train=out["train"], valid=out.get("valid"),
                   test=out.get("test"), image_shape=image_shape, settings=record, train_intensity=train_intensity)


def _is_outcomes(parts: dict) -> bool:
    """One column of non-negative integers: outcomes of a categorical variable (a die, class labels)."""
    return all(a.shape[1] == 1 and float(a.min()) >= 0 and (a.dtype.kind in "biu" or np.array_equal(a, np.round(a)))
               for a in parts.values())


def _categorical_dataset(path: Path, fmt: str, parts: dict, v_frac: float, t_frac: float) -> Dataset:
    """kind "categorical": int64 outcomes (M,), K = largest outcome + 1 (over all splits)."""
    tensors = {k: torch.as_tensor(np.ascontiguousarray(a)).reshape(-1).to(torch.int64) for k, a in parts.items()}
    k = 1 + max(int(t.max()) for t in tensors.values())
    note = _make_splits(tensors, v_frac, t_frac)
    return Dataset(name=_dataset_name(path), kind="categorical", train=tensors["train"], valid=tensors.get("valid"),
                   test=tensors.get("test"), n_categories=k,
                   settings={"source": str(path), "format": fmt, "splits": note,
                             "binarization": f"none (one column of integer outcomes 0..{k - 1}: categorical)"})


def binarize_splits(intensity: dict, method: str, threshold: float = 0.5, seed: int = 0):
    """Binarize grey levels of every split. threshold: [g > t]; static: Bernoulli(g) drawn once per split with
    seeds seed, seed+1, seed+2 (train, valid, test); dynamic: as static, and the train intensities are returned
    so the trainer redraws train every epoch. Returns ({split: 0/1 float32}, train_intensity or None)."""
    draw = "static" if method == "dynamic" else method
    out = {}
    for i, split in enumerate(SPLITS):
        if intensity.get(split) is not None:
            out[split] = binarize_tensor(intensity[split], draw, threshold, seed + i)
    return out, (intensity["train"] if method == "dynamic" else None)


def binarization_record(method: str, threshold, seed) -> dict:
    if method == "threshold":
        return {"binarization": "threshold", "threshold": float(threshold)}
    return {"binarization": method, "seed": int(seed)}


def _fractions(valid, test) -> tuple[float, float]:
    for name, v in (("valid", valid), ("test", test)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ConfigError(f"{name} must be a fraction in [0, 1), got {v!r}")
    if valid + test >= 1:
        raise ConfigError(f"valid + test fractions must leave rows for training, got {valid} + {test} >= 1")
    return float(valid), float(test)


def _make_splits(tensors: dict, v_frac: float, t_frac: float) -> str:
    """Fill tensors['train'/'valid'/'test'] in place; return how the splits were made."""
    if "data" in tensors:
        data = tensors.pop("data")
        train, valid, test = split_arrays(data, (1 - v_frac - t_frac, v_frac, t_frac), seed=SPLIT_SEED)
        tensors.update(train=train, valid=valid, test=test)
        note = f"shuffled (seed {SPLIT_SEED}) into fractions {1 - v_frac - t_frac:g}/{v_frac:g}/{t_frac:g}"
    elif "train" not in tensors:
        raise DataError(f"the file has {', '.join(tensors)} but no train part; name the training array 'train'")
    else:
        missing = [s for s in ("valid", "test") if s not in tensors]
        note = "from the file(s)"
        if missing:
            fr = {"valid": v_frac if "valid" in missing else 0.0, "test": t_frac if "test" in missing else 0.0}
            train, valid, test = split_arrays(tensors["train"], (1 - fr["valid"] - fr["test"], fr["valid"],
                                                                  fr["test"]), seed=SPLIT_SEED)
            tensors["train"] = train
            for s, cut in (("valid", valid), ("test", test)):
                if s in missing:
                    tensors[s] = cut
            note += f"; {' and '.join(missing)} cut from train (seed {SPLIT_SEED})"
    for s in ("valid", "test"):
        if s in tensors and tensors[s].shape[0] == 0:
            del tensors[s]
    if tensors["train"].shape[0] == 0:
        raise DataError("no rows left for training; lower the valid/test fractions")
    return note


def _dataset_name(path: Path) -> str:
    name = path.name
    parts = name.split(".")
    if split_files_of(path) and len(parts) >= 3 and parts[-2] in SPLITS:  # NAME.train.data -> NAME
        return ".".join(parts[:-2])
    for suffix in (".gz", ".npz", ".npy", ".amat", ".mat", ".csv", ".txt", ".data", ".dat", ".tsv", ".idx"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or str(path)
