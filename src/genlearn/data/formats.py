"""Readers of the file formats real binary data sets come in. Each returns numpy arrays and checks its own format,
raising one DataError that names the file, what is wrong and how to fix it.

    IDX     (MNIST, Fashion-MNIST; raw or gzip) -> read_idx         array of the header's shape and dtype
    .npz    (numpy archive)                     -> read_npz         {"train", "valid", "test"} or {"data"}
    .npy    (one numpy array)                   -> read_npy         array
    .amat   (binarized MNIST text, 0/1)         -> read_amat        (M, n) array
    text    (UCI csv / space-separated)         -> read_text        (M, n) float64 array
    folder of PNG images                        -> read_png_folder  (M, H*W) grey levels in [0, 1], (H, W)

Values are never rescaled here except PNG grey levels (8-bit k -> k/255, 16-bit k -> k/65535); deciding what is
binary and binarizing grey levels is the job of `genlearn.data.files`."""
from __future__ import annotations

import gzip
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from genlearn.errors import DataError

#: IDX type code (third byte of the magic number) -> big-endian numpy dtype
IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
GZIP_MAGIC = b"\x1f\x8b"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
MAT_MAGIC = b"MATLAB"
SPLIT_KEYS = ("train", "valid", "test")
#: other spellings of the split keys found in published archives (MADE's dna.npz: train_data, ...)
SPLIT_ALIASES = {"train": ("train", "train_data", "x_train", "trainx"),
                 "valid": ("valid", "valid_data", "validation", "val", "x_valid", "validx"),
                 "test": ("test", "test_data", "x_test", "testx")}


# -- helpers ------------------------------------------------------------------------------------------------
def _check_file(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such file: {path}")
    if not path.is_file():
        raise DataError(f"{path} is not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); the file is incomplete, download or write it again")
    return path


#: files that mark a genlearn run folder (a fitted model), as genlearn.learning.run_folder writes them; named here
#: because the data layer may not import the learning layer
RUN_FOLDER_FILES = ("checkpoint.safetensors", "checkpoint.json", "model.safetensors", "metrics.json")


def run_folder_marker(folder) -> str | None:
    """The name of the first run-folder file (RUN_FOLDER_FILES) in `folder`, or None: a genlearn run folder, not
    data, when not None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    return next((name for name in RUN_FOLDER_FILES if (folder / name).is_file()), None)


def check_not_run_folder(folder) -> None:
    """Raise DataError when `folder`, about to be read as data, is a genlearn run folder (a fitted model)."""
    marker = run_folder_marker(folder)
    if marker is not None:
        raise DataError(f"{folder} is a genlearn run folder (a fitted model: it holds {marker}), not data; give a "
                        "data file, a folder of images or a data-set name (see `genlearn datasets`)")


def read_bytes(path) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic number (whatever the file name)."""
    path = _check_file(path)
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path} is a corrupt or truncated gzip file ({exc}); download it again") from None
        if not raw:
            raise DataError(f"{path} is empty once decompressed; download it again")
    return raw


def check_gzip_name(path) -> None:
    """Raise DataError when the file's name ends in .gz but its content is not gzip (no magic bytes 1f 8b)."""
    path = _check_file(path)
    if path.name.lower().endswith(".gz"):
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head != GZIP_MAGIC:
            raise DataError(f"{path} ends in .gz but is not gzip-compressed (it does not start with the gzip magic "
                            f"bytes 1f 8b); rename it to {path.name[:-3] or 'a name'} without .gz if it holds "
                            "plain data, or compress it with gzip")


def sniff(path) -> str:
    """Format from content: 'idx', 'npy', 'npz', 'mat', 'gzip' (not IDX inside) or 'text'."""
    path = _check_file(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:2] == GZIP_MAGIC:
        with gzip.open(path, "rb") as fh:
            try:
                head = fh.read(4)
            except (OSError, EOFError, zlib.error):
                return "gzip"
        return "idx" if _looks_like_idx(head) else "gzip"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(ZIP_MAGIC):
        return "npz"
    if head.startswith(MAT_MAGIC):
        return "mat"
    if _looks_like_idx(head):
        return "idx"
    return "text"


def _looks_like_idx(head: bytes) -> bool:
    return len(head) >= 4 and head[0] == 0 and head[1] == 0 and head[2] in IDX_DTYPES and 1 <= head[3] <= 4


# -- IDX ------------------------------------------------------------------------------------------------------
def read_idx(path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), raw or gzip.

    Layout: magic = [0, 0, type code, number of dimensions d], then d big-endian uint32 sizes, then
    prod(sizes) values of the type code's big-endian dtype. Returns a native-endian array of shape `sizes`
    (uint8 for MNIST images (N, 28, 28) and labels (N,))."""
    raw = read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: IDX header truncated ({len(raw)} bytes, at least 4 needed)")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{path}: bad IDX magic number {raw[:4].hex()} (must start with two zero bytes); "
            "this is not an IDX file (MNIST/Fashion-MNIST train-images-idx3-ubyte[.gz]...)"
        )
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX dtype code 0x{code:02X} (known: {known}); the file is corrupt")
    if not 1 <= ndim <= 4:
        raise DataError(f"{path}: IDX header says {ndim} dimensions; 1 to 4 are supported")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated ({len(raw)} bytes, {header} needed for {ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got < expected:
        raise DataError(
            f"{path}: IDX file truncated: header shape {shape} needs {expected} data bytes, file holds {got}; "
            "download it again"
        )
    if got > expected:
        raise DataError(
            f"{path}: IDX file has {got - expected} bytes after the {expected} data bytes its header "
            f"shape {shape} describes; the file is corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path, array) -> None:
    """Write `array` as an IDX file (gzip when the name ends in .gz); the inverse of read_idx."""
    array = np.asarray(array)
    codes = {v.newbyteorder("=").str[1:]: k for k, v in IDX_DTYPES.items()}
    key = array.dtype.newbyteorder("=").str[1:]
    if key not in codes:
        raise DataError(f"IDX cannot store dtype {array.dtype}; use uint8, int8, int16, int32, float32, float64")
    data = bytes([0, 0, codes[key], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(array.dtype.newbyteorder(">")).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


# -- numpy ----------------------------------------------------------------------------------------------------
def _checked_array(arr, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise DataError(f"{what} holds dtype {arr.dtype}; numeric arrays (bool, int, float) are needed")
    if arr.size == 0:
        if arr.ndim >= 2 and arr.shape[0] > 0:
            raise DataError(f"{what} holds {arr.shape[0]} examples but no features (shape {arr.shape}: zero "
                            "columns); save an array of shape (examples, features) with at least one feature column")
        raise DataError(f"{what} is empty (shape {arr.shape}); at least one example is needed")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            # row and column counted from 1, as the text files' messages count them
            at = (f"row {where[0] + 1}, column {where[1] + 1}" if len(where) == 2
                  else f"index {list(where)} (from 0)")
            raise DataError(
                f"{what} contains {arr[where]} at {at} ({int(bad.sum())} non-finite values); "
                "remove or impute NaN/inf entries first"
            )
    return arr


def read_npy(path) -> np.ndarray:
    """One array from a .npy file (no pickles), checked numeric, non-empty and finite."""
    path = _check_file(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise _npy_error(path, exc) from None
    except Exception as exc:  # OSError, EOFError; zipfile.BadZipFile when it starts like a zip archive
        raise DataError(f"{path}: corrupt or truncated .npy file ({type(exc).__name__}: {exc})") from None
    if not isinstance(arr, np.ndarray):  # np.load opened a .npz archive
        arr.close()
        raise DataError(f"{path} is a .npz archive, not one .npy array; name it .npz")
    return _checked_array(arr, str(path))


def _npy_layout(path: Path):
    """(shape, dtype, data offset) from the header of a .npy file, or None when the header cannot be read."""
    from numpy.lib import format as npy_format

    try:
        with open(path, "rb") as fh:
            version = npy_format.read_magic(fh)
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, _, dtype = read_header(fh)
            return shape, dtype, fh.tell()
    except Exception:  # a truncated or damaged header: ValueError, EOFError, SyntaxError...
        return None


def _npy_error(path: Path, exc: Exception) -> DataError:
    """The DataError for a .npy file np.load refused with `exc` (a ValueError): an object array, a file shorter
    than its header announces, or a damaged header."""
    size = path.stat().st_size
    if "Object arrays" in str(exc):
        return DataError(f"{path} holds an object array (dtype object): object arrays are refused (loading them "
                         "would run pickle); save a numeric array (bool, int or float)")
    layout = _npy_layout(path)
    if layout is None:
        if "EOF" in str(exc):
            return DataError(f"{path} is truncated: the file ({size} bytes) ends inside its .npy header; the file is "
                             "incomplete, write it again (numpy.save) or download it again")
        return DataError(f"{path}: the .npy header is damaged ({exc}); write the file again with numpy.save")
    shape, dtype, offset = layout
    needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size - offset < needed:
        return DataError(f"{path} is truncated: its header announces a {dtype} array of shape {tuple(shape)} "
                         f"({needed} data bytes) but the file holds only {max(size - offset, 0)}; the file is "
                         "incomplete, write it again (numpy.save) or download it again")
    return DataError(f"{path}: cannot read as .npy ({exc}); write it again with numpy.save")


def read_npz(path) -> dict[str, np.ndarray]:
    """Arrays of a .npz archive: {"train", "valid", "test"} (those present) when the archive has split keys
    (also spelled train_data/valid_data/test_data...), else {"data": the one array}. Every array is checked
    numeric, non-empty and finite."""
    path = _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on archives written by Python 2; they read fine
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                found = {}
                for split, aliases in SPLIT_ALIASES.items():
                    lower = {k.lower(): k for k in keys}
                    hit = next((lower[a] for a in aliases if a in lower), None)
                    if hit is not None:
                        found[split] = archive[hit]
                if not found:
                    arrays = {k: archive[k] for k in keys}
                    big = [k for k, v in arrays.items() if np.ndim(v) >= 1]
                    if len(big) != 1:
                        raise DataError(
                            f"{path} holds arrays {', '.join(keys) or '(none)'}; expected keys train/valid/test or "
                            "a single array"
                        )
                    found = {"data": arrays[big[0]]}
    except DataError:
        raise
    except ValueError as exc:
        hint = "; object arrays are refused (loading them would run pickle), save numeric arrays" if (
            "Object arrays" in str(exc)) else "; write it again with numpy.savez"
        raise DataError(f"{path}: cannot read as .npz ({exc}){hint}") from None
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError, zlib.error
        raise DataError(f"{path}: corrupt or truncated .npz archive ({type(exc).__name__}: {exc}); write it again "
                        "(numpy.savez) or copy it again from its source") from None
    return {k: _checked_array(v, f"{path}[{k!r}]") for k, v in found.items()}


def read_mat(path) -> np.ndarray:
    """The one array of a MATLAB v5 file (some copies of binarized_mnist_*.amat are MAT-files holding 'X')."""
    from scipy.io import loadmat

    path = _check_file(path)
    try:
        content = loadmat(path)
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError on corrupt files
        raise DataError(f"{path}: corrupt MATLAB file ({type(exc).__name__}: {exc})") from None
    arrays = {k: v for k, v in content.items() if not k.startswith("__")}
    if len(arrays) != 1:
        raise DataError(f"{path}: MATLAB file holds {', '.join(arrays) or 'no arrays'}; expected a single array")
    return _checked_array(next(iter(arrays.values())), str(path))


# -- text -----------------------------------------------------------------------------------------------------
def read_text(path, delimiter: str | None = "auto", binary: bool = False) -> np.ndarray:
    """Rows of numbers, one example per line, separated by commas or white space (delimiter="auto" picks ','
    when the first line has one). Blank lines are skipped. Returns float64 (M, n).

    Every row must have the same number of values ("row R has C values, expected N" otherwise); with
    binary=True every value must be 0 or 1. A name ending in .gz must hold gzip (a plain file so named is refused:
    the name says it is compressed)."""
    check_gzip_name(path)
    raw = read_bytes(path)
    if raw.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path} starts with a byte-order mark (as spreadsheet programs write); save it as plain "
                        "text (ASCII, e.g. CSV without BOM), one example per line")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file (byte {exc.start} is not ASCII); expected numbers") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path} holds no data (only blank lines); expected one example per line")
    if all(line.lstrip().startswith("#") for line in lines):
        raise DataError(f"{path} holds only comment lines (#); expected one example per line")
    if delimiter == "auto":
        delimiter = "," if "," in lines[0] else None
    try:
        arr = np.loadtxt(lines, delimiter=delimiter, dtype=np.float64, ndmin=2)
    except ValueError:
        _explain_text_error(path, lines, delimiter)
        raise  # pragma: no cover - _explain_text_error always raises
    arr = _checked_array(arr, str(path))
    if binary:
        check_binary_array(arr, str(path))
    return arr


def _explain_text_error(path, lines, delimiter) -> None:
    """Find the row that numpy refused and raise a DataError that names it."""
    expected = None
    for r, line in enumerate(lines, start=1):
        values = [v.strip() for v in (line.split(delimiter) if delimiter else line.split())]
        if expected is None:
            expected = len(values)
        if len(values) != expected:
            raise DataError(f"{path}: row {r} has {len(values)} values, expected {expected} (as in row 1)")
        for c, v in enumerate(values, start=1):
            try:
                float(v)
            except ValueError:
                hint = " (a header line? remove it: one example per line, numbers only)" if r == 1 else ""
                other = next((sep for sep in ";|" if sep in v and sep != delimiter), None)
                if other is not None:  # another separator: the whole row reads as one value
                    hint = (f" (values separated by {other!r}? genlearn reads commas, tabs or white space: replace "
                            f"{other!r} by ',')")
                raise DataError(f"{path}: row {r}, column {c} holds {v!r}, which is not a number{hint}") from None
    raise DataError(f"{path}: cannot parse as numbers separated by {delimiter or 'white space'!r}")


def check_binary_array(arr: np.ndarray, what: str) -> None:
    """Raise DataError naming the first entry of `arr` (2-D) that is neither 0 nor 1."""
    if arr.dtype.kind in "bu" and arr.max() <= 1:  # one fast pass for unsigned integers
        return
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{what}: row {r + 1}, column {c + 1} holds {arr[r, c]:g}; binary data must be 0 or 1 "
            f"({int(bad.sum())} such values)"
        )


def read_amat(path, binary: bool = True) -> np.ndarray:
    """Binarized MNIST in the original text .amat format: one example per line, space-separated 0/1 values.
    Copies that are really MATLAB files (some carry the .amat name) are read with scipy."""
    if sniff(path) == "mat":
        arr = read_mat(path)
        if arr.ndim != 2:
            raise DataError(f"{path}: MATLAB array has shape {arr.shape}; expected (examples, features)")
        if binary:
            check_binary_array(arr, str(path))
        return arr
    return read_text(path, delimiter=None, binary=binary)


# -- PNG folders ------------------------------------------------------------------------------------------------
def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def png_files(folder) -> list[Path]:
    """PNG files under `folder` (sub-folders included), in natural order (2.png before 10.png)."""
    folder = Path(folder)
    return sorted((p for p in folder.rglob("*") if p.suffix.lower() == ".png" and p.is_file()),
                  key=lambda p: _natural_key(p.relative_to(folder)))


def read_png(path) -> np.ndarray:
    """One PNG as grey levels in [0, 1], shape (H, W): colour is converted to luminance (ITU-R 601),
    8-bit level k becomes k/255, 16-bit k/65535, 1-bit stays 0/1."""
    from PIL import Image, UnidentifiedImageError

    path = _check_file(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "1":
                return np.asarray(img, dtype=np.float64)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                return arr / (65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0)
            return np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: not a readable PNG image ({exc})") from None


def read_png_folder(folder) -> tuple[np.ndarray, tuple[int, int]]:
    """All PNG images of a folder as (M, H*W) grey levels in [0, 1] (row-major pixels) and their (H, W).
    Every image must have the same size."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    check_not_run_folder(folder)
    files = png_files(folder)
    run = next((f.parent for f in files if run_folder_marker(f.parent) is not None), None)
    if run is not None:  # e.g. a `genlearn tune` output: its trials/NNNN are run folders
        raise DataError(f"{folder} holds genlearn run folders (fitted models, e.g. {run.relative_to(folder)}), not "
                        "data; give a data file, a folder of images or a data-set name (see `genlearn datasets`)")
    if not files:
        raise DataError(f"{folder} holds no .png images; put one image per example there")
    first = read_png(files[0])
    out = np.empty((len(files), first.size), dtype=np.float32)
    out[0] = first.reshape(-1)
    for i, f in enumerate(files[1:], start=1):
        img = read_png(f)
        if img.shape != first.shape:
            raise DataError(
                f"image {f.relative_to(folder)} is {img.shape[0]}x{img.shape[1]} (HxW) but "
                f"{files[0].relative_to(folder)} is {first.shape[0]}x{first.shape[1]}; all images must have "
                "the same size"
            )
        out[i] = img.reshape(-1)
    return out, (int(first.shape[0]), int(first.shape[1]))
