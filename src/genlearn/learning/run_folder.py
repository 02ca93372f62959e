"""The files of a run folder, validated when read, and what keeps a run folder consistent while it is written.

A run folder (written by genlearn.runs.fit) holds

    checkpoint.safetensors  the checkpoint: parameters, optimizer, RNG, rule state, and in its header metadata the
                            JSON settings and state ("genlearn.meta"); one file, so one atomic replace
    checkpoint.json         a readable copy of that JSON (may lag one checkpoint behind after a kill)
    model.safetensors       the final parameters (header: the run id and the epoch they are of)
    metrics.json            the final metrics (with the run id)
    .genlearn.lock          the writer's lock (genlearn.learning.lock)

Every file is checked before it is used: the safetensors header against the file's size (a truncated file), the
JSON schema of checkpoint.json / metrics.json, the family and model_config against the registry, the tensor
names and shapes against the model the config builds (a file of another family or run), the run id shared by all
files of one run. A problem is one RunError that names the file, says what is wrong, and what still works (e.g.
`--resume` of a run whose final model is intact). A run is *finished* when its final model and metrics are of
the checkpoint's epoch; otherwise (being written, interrupted, or being continued by --resume) readers use the
last checkpoint and say the run is unfinished (`RunFiles.status`)."""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genlearn.errors import ConfigError, GenlearnError, RunError

TENSORS = "checkpoint.safetensors"
META = "checkpoint.json"
MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
#: written when a fit stops because training diverged (record_divergence): what eval, sample and report then say
DIVERGED_FILE = "diverged.json"
#: the key of the checkpoint's JSON in the safetensors header metadata, and the format tag beside it
META_KEY = "genlearn.meta"
FORMAT = "genlearn-checkpoint-2"
#: bytes per element of each safetensors dtype
DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}
MAX_HEADER = 100_000_000  # the safetensors library's own limit


# ------------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------------
def file_mode() -> int:
    """0666 less the process umask: the mode of a file created with open() (tempfile's are 0600)."""
    try:  # Linux: read the umask without changing it (os.umask would, for a moment, for every thread)
        with open("/proc/self/status") as f:
            return 0o666 & ~next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
        return 0o666 & ~mask


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def write_failed(path: Path, exc: Exception):
    """Raise the RunError of a failed write of `path` (its temporary file is removed by the caller and `path`
    itself is untouched): a full disk, quota or file-size limit says so; anything else that is not an OSError
    is re-raised as it is (a bug, not the disk)."""
    path = Path(path)
    code = getattr(exc, "errno", None)
    if code is None:  # SafetensorError: "... I/O error: No space left on device (os error 28)"
        m = re.search(r"os error (\d+)", str(exc))
        code = int(m.group(1)) if m else None
        if code is None and type(exc).__name__ != "SafetensorError":
            raise exc
    if code in _NO_SPACE:
        what = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
                errno.EFBIG: "the file size limit is reached"}[code]
        raise RunError(f"cannot write {path}: {what}; the previous {path.name} (if any) is intact. Free space, "
                       f"then continue with `genlearn fit --resume {path.parent}`") from None
    reason = os.strerror(code) if code is not None else str(exc)
    raise RunError(f"cannot write {path}: {reason}") from None


def checkpoint_metadata(meta: dict, default) -> dict[str, str]:
    """The safetensors header metadata of a checkpoint: the format tag, the epoch, and the whole JSON."""
    return {"format": FORMAT, "epoch": str(meta.get("epoch")), "run_id": str(meta.get("run_id", "")),
            META_KEY: json.dumps(meta, default=default)}


def model_metadata(meta: dict, epoch: int) -> dict[str, str]:
    """The header metadata of model.safetensors: which run and epoch the final parameters are of."""
    return {"format": FORMAT, "epoch": str(epoch), "run_id": str(meta.get("run_id", ""))}


def new_identity(dataset) -> dict:
    """{"run_id", "data_fingerprint"} of a new run: a random id shared by every file of the run, and a hash
    of its data (genlearn fit --resume refuses other data)."""
    return {"run_id": uuid.uuid4().hex, "data_fingerprint": fingerprint(dataset)}


def fingerprint(dataset) -> str:
    """blake2b of the data's splits (shape, dtype and values) and of the grey levels of dynamic binarization."""
    h = hashlib.blake2b(digest_size=16)
    for name in ("train", "valid", "test", "train_intensity"):
        x = getattr(dataset, name, None)
        h.update(name.encode())
        if x is None:
            h.update(b"-")
            continue
        x = x.detach().cpu().contiguous()
        h.update(f"{tuple(x.shape)}{x.dtype}".encode())
        h.update(x.view(torch.uint8).numpy().tobytes() if x.numel() else b"")
    return h.hexdigest()


def data_unchanged(meta: dict, dataset) -> bool | None:
    """Whether `dataset`, loaded again from the run's recorded spec, holds the data the run was fitted on (its
    recorded fingerprint, with or without the test split, which a `genlearn tune` trial never saw); None when the
    run recorded no fingerprint."""
    from genlearn.data.refit_rows import without_test

    recorded = meta.get("data_fingerprint")
    if recorded is None:
        return None
    return fingerprint(dataset) == recorded or (dataset.test is not None
                                                and fingerprint(without_test(dataset)) == recorded)


def check_resume_data(out: Path, meta: dict, data, dataset) -> None:
    """`fit --resume DIR --data OTHER`: refused when the data differ from those the run was fitted on (by the
    recorded fingerprint, else by the spec); also when the recorded spec now gives other data."""
    recorded = meta.get("data_fingerprint")
    spec = meta.get("data_spec")
    if recorded is not None:
        if fingerprint(dataset) == recorded:
            return
        if data is not None:
            raise ConfigError(f"--data {_show(data)} is not the data the run in {out} was fitted on "
                              f"({spec or 'in-memory data'}); --resume continues a run on its own data: drop --data, "
                              "or start a new fit with --out elsewhere")
        raise ConfigError(f"the data {spec!r} of the run in {out} have changed since it started (their fingerprint "
                          "differs); restore them, or start a new fit")
    if data is not None and not _is_dataset(data) and spec is not None and str(data) != spec:
        raise ConfigError(f"--data {data!r} is not the data the run in {out} was fitted on ({spec!r}); --resume "
                          "continues a run on its own data: drop --data, or start a new fit with --out elsewhere")


def _is_dataset(data) -> bool:
    return hasattr(data, "train") and hasattr(data, "kind")


def _show(data) -> str:
    return f"{data!r}" if isinstance(data, (str, Path)) else f"({type(data).__name__})"


#: the files of a run, in the order an --overwrite removes them: first those that mark a run finished, the
#: checkpoint last, so that a folder is at every moment either the old run (perhaps unfinished) or empty
SUPERSEDE_ORDER = (METRICS_FILE, MODEL_FILE, "learning_curve.png", "samples.png", "reconstructions.png",
                   "latent_manifold.png", "latent_encodings.png", DIVERGED_FILE, META, TENSORS)


def read_divergence(directory: Path, run_id, epoch=None) -> str | None:
    """Why the run's fit diverged (the first clause of its error), when DIVERGED_FILE is of this run and its last
    checkpoint (`epoch`) is not past the epoch it diverged at (a --resume that trained on, then was interrupted,
    is an interrupted run); else None."""
    path = Path(directory) / DIVERGED_FILE
    if not path.is_file():
        return None
    try:
        record = read_json(path, "the record of a diverged fit")
    except DamagedFile:
        return None
    if record.get("run_id") != run_id or not isinstance(record.get("error"), str):
        return None
    if isinstance(epoch, int) and isinstance(record.get("epoch"), int) and epoch > record["epoch"]:
        return None
    why = record["error"].removeprefix("training diverged: ")
    return why.split("; the ")[0].split(". Fit again")[0]


def supersede(out: Path) -> None:
    """--overwrite: remove the old run's files (and stale temporary files) before the new run writes anything.
    Readers never see a new checkpoint beside an old run's final model or metrics (and the run id recorded in
    every file tells them apart if they did)."""
    out = Path(out)
    for name in SUPERSEDE_ORDER:
        try:
            (out / name).unlink()
        except FileNotFoundError:
            pass
    for p in out.glob(".*.tmp"):
        try:
            p.unlink()
        except OSError:
            pass
    tb = out / "tensorboard"  # a logger's folder of the old run, if any
    if tb.is_dir():
        shutil.rmtree(tb, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------
# reading: the safetensors header, the JSON files
# ------------------------------------------------------------------------------------------------------
def read_header(path: Path) -> tuple[dict, dict]:
    """({tensor name: (dtype, shape)}, metadata) of a safetensors file, checked against the file's size: one
    RunError for a file that is truncated, empty, or not safetensors."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise _damaged(path, f"it has {size} bytes, not even the 8-byte length of a safetensors header")
            n = int.from_bytes(head, "little")
            if n > size - 8 or n > MAX_HEADER:
                raise _damaged(path, f"truncated or not safetensors: its header claims {n} bytes, the file has "
                                     f"{size}")
            raw = f.read(n)
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _damaged(path, "its header is not valid JSON (truncated or not safetensors)") from None
    if not isinstance(header, dict):
        raise _damaged(path, "its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _damaged(path, "its header metadata is not a table of strings")
    entries, end = {}, 0
    for name, info in header.items():
        if not isinstance(info, dict):
            raise _damaged(path, f"the header entry of tensor {name!r} is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPE_SIZES:
            raise _damaged(path, f"tensor {name!r} has an unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise _damaged(path, f"tensor {name!r} has an invalid shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise _damaged(path, f"tensor {name!r} has invalid data offsets {offsets!r}")
        if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_SIZES[dtype]:
            raise _damaged(path, f"tensor {name!r} of shape {shape} does not fill its {offsets[1] - offsets[0]} "
                                 "bytes")
        entries[name] = (dtype, tuple(shape))
        end = max(end, offsets[1])
    if end != size - 8 - n:
        raise _damaged(path, f"truncated: its tensors take {end} bytes, the file holds {size - 8 - n} after the "
                             "header" if end > size - 8 - n else
                       f"{size - 8 - n - end} bytes after its last tensor (not a file genlearn wrote)")
    return entries, metadata


def load_tensors(path: Path) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file, validated (read_header) before it is read."""
    from safetensors.torch import load_file

    entries, metadata = read_header(path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # SafetensorError and OSError: the file changed or is damaged beyond the header
        raise _damaged(path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    return tensors, metadata


def read_json(path: Path, what: str = "a JSON object") -> dict:
    """The JSON object in `path`; RunError when it is unreadable, not JSON, or not an object."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        obj = json.loads(text)
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise _damaged(path, f"it is not valid JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(obj, dict):
        raise _damaged(path, f"it holds a JSON {type(obj).__name__.replace('dict', 'object')}, not {what}")
    return obj


class DamagedFile(RunError):
    """A file of a run folder that cannot be used; `.path` names it."""

    def __init__(self, path: Path, message: str):
        super().__init__(message)
        self.path = Path(path)


def _damaged(path: Path, what: str) -> DamagedFile:
    return DamagedFile(path, f"{path} is damaged or not a genlearn file: {what}")


# ------------------------------------------------------------------------------------------------------
# the schema of checkpoint.json and metrics.json
# ------------------------------------------------------------------------------------------------------
_TYPES = {"object": dict, "list": list, "string": str, "integer": int}
#: key -> (JSON type, required for resuming, required at all); "model" (the family) is required where a model is
#: rebuilt from the folder (read_run, --resume), not of a bare Trainer's checkpoint (load_checkpoint)
META_SCHEMA = {"model": ("string", False, False), "model_config": ("object", True, True),
               "train_config": ("object", True, False), "state": ("object", True, False),
               "optimizer": ("object", True, False), "schedule": ("object", True, False),
               "epoch": ("integer", True, False), "rule": ("object", False, False),
               "model_options": ("object", False, False), "recipe": ("object", False, False),
               "run_id": ("string", False, False), "data_fingerprint": ("string", False, False),
               "partial_epoch": ("object", False, False)}
METRICS_SCHEMA = {"history": "list", "data": "object", "evaluation": "object", "train_config": "object",
                  "model_config": "object", "rule": "object", "run_id": "string", "epochs_run": "integer",
                  "model": "string"}


def _type_name(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def check_meta(meta: dict, path: Path, training: bool, family: bool = True) -> None:
    """The schema of a checkpoint's JSON (training=True: everything --resume needs; family: the model's family)."""
    for key, (kind, for_training, always) in META_SCHEMA.items():
        if key not in meta:
            if always or (training and for_training) or (key == "model" and family):
                raise _damaged(path, f"it has no {key!r} entry" + (" (needed to resume the run)" if not always
                                                                   else ""))
            continue
        value = meta[key]
        if key == "data_spec":
            continue
        ok = isinstance(value, _TYPES[kind]) and not isinstance(value, bool)
        if not ok and not (key in ("rule", "recipe", "run_id", "data_fingerprint") and value is None):
            raise _damaged(path, f"its {key!r} is {_type_name(value)}, not {'an' if kind[0] in 'aeiou' else 'a'} "
                                 f"{kind}")
    if not isinstance(meta.get("data_spec"), (str, type(None))):
        raise _damaged(path, f"its 'data_spec' is {_type_name(meta['data_spec'])}, not a string")
    if training:
        state, opt = meta["state"], meta["optimizer"]
        if not isinstance(state.get("epoch"), int) or not isinstance(state.get("history", []), list):
            raise _damaged(path, "its 'state' has no integer 'epoch' or its 'history' is not a list")
        if not isinstance(opt.get("param_groups"), list) or not isinstance(opt.get("scalars", {}), dict):
            raise _damaged(path, "its 'optimizer' has no list 'param_groups' or its 'scalars' are not an object")
    rule = meta.get("rule")
    if isinstance(rule, dict) and not (isinstance(rule.get("name"), str)
                                       and isinstance(rule.get("settings", {}), dict)):
        raise _damaged(path, "its 'rule' is not {\"name\": ..., \"settings\": {...}}")


def check_metrics(metrics: dict, path: Path) -> None:
    for key, kind in METRICS_SCHEMA.items():
        value = metrics.get(key)
        if value is not None and (not isinstance(value, _TYPES[kind]) or isinstance(value, bool)):
            raise _damaged(path, f"its {key!r} is {_type_name(value)}, not {'an' if kind[0] in 'aeiou' else 'a'} "
                                 f"{kind}")
    shape = (metrics.get("data") or {}).get("image_shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) == 2
                                  and all(type(d) is int and d > 0 for d in shape)):
        raise _damaged(path, f"its data.image_shape {shape!r} is not [height, width]")


def build_model(meta: dict, path: Path):
    """The model checkpoint.json describes (family and model_config), with its parameters uninitialised."""
    from genlearn.models.registry import build_from_config

    try:
        return build_from_config(meta["model"], meta["model_config"])
    except GenlearnError as exc:
        raise _damaged(path, f"its model {meta['model']!r} with that model_config cannot be built ({exc})") from None
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError, OverflowError, IndexError) as exc:
        raise _damaged(path, f"its model_config does not describe a {meta['model']!r} model ({type(exc).__name__}: "
                             f"{exc})") from None


#: model buffers of run folders of an earlier version (the learning rule's state, genlearn.learning.legacy)
LEGACY_BUFFERS = {"chains", "chains_ready", "mf_magnetization"}


def check_shapes(entries: dict, model, path: Path, prefix: str, family: str, required: bool = True) -> None:
    """The tensors named `prefix + name` in `entries` ({name: (dtype, shape)}) against `model`: every parameter
    present with its shape, nothing that is neither a parameter nor a buffer of the model (buffers may change
    shape with the state they hold, e.g. an RBM's AIS rows; load_state_dict checks them)."""
    have = {k[len(prefix):]: v for k, v in entries.items() if k.startswith(prefix)}
    if not have and not required:
        return
    params = {k: tuple(p.shape) for k, p in model.named_parameters()}
    buffers = {k for k, _ in model.named_buffers()} | LEGACY_BUFFERS
    missing = sorted(set(params) - set(have))
    extra = sorted(set(have) - set(params) - buffers)
    if missing or extra:
        parts = ([f"lacks {', '.join(prefix + k for k in missing[:3])}"] if missing else []) + (
            [f"has unexpected {', '.join(prefix + k for k in extra[:3])}"] if extra else [])
        raise _damaged(path, f"its tensors are not those of the {family!r} model its run records ("
                             f"{'; '.join(parts)}): a file from another model or run?")
    for k, want in params.items():
        shape = have[k][1]
        if shape != want:
            raise _damaged(path, f"tensor {prefix + k} has shape {list(shape)}, the {family!r} model its run records "
                                 f"has {list(want)}: a file from another model or run?")


# ------------------------------------------------------------------------------------------------------
# reading a run
# ------------------------------------------------------------------------------------------------------
def read_checkpoint(directory: Path, tensors_required: bool = True, build: bool = False) -> tuple[dict, dict]:
    """(tensors, meta) of the checkpoint in `directory`, validated: the header and schema of each file, the
    checkpoint's tensors against the model its JSON describes, and (a folder of an earlier version) the two files
    of the same epoch. tensors_required=False: a folder with checkpoint.json alone gives ({}, meta). build: the
    checkpoint must name its model's family (to rebuild the model). A problem is one RunError that says what
    still works."""
    directory = Path(directory)
    meta_path, tensor_path = directory / META, directory / TENSORS
    if not tensor_path.exists() and (tensors_required or not meta_path.exists()):
        if meta_path.exists():
            raise RunError(f"{directory} holds no {TENSORS} (its {META} alone cannot be resumed: a published run "
                           f"keeps the final model only){_remains(directory, tensor_path)}")
        raise RunError(f"{directory} holds no checkpoint ({META} and {TENSORS}); is it a `genlearn fit` output "
                       "folder?")
    try:
        if not tensor_path.exists():
            meta = read_json(meta_path, "the checkpoint's settings")
            check_meta(meta, meta_path, training=False, family=build)
            return {}, meta
        entries, metadata = read_header(tensor_path)
        if META_KEY in metadata:  # the checkpoint is this one file; checkpoint.json is a copy
            try:
                meta = json.loads(metadata[META_KEY])
            except ValueError:
                raise _damaged(tensor_path, "the JSON in its header is not valid") from None
            if not isinstance(meta, dict):
                raise _damaged(tensor_path, "the JSON in its header is not an object")
            _check_copy(meta, meta_path)
            where = tensor_path
        else:  # an earlier version's pair of files
            if not meta_path.exists():
                raise RunError(f"{directory} holds {TENSORS} without {META} (a checkpoint of an earlier version "
                               f"keeps its settings there){_remains(directory, tensor_path)}")
            meta = read_json(meta_path, "the checkpoint's settings")
            where = meta_path
            if "epoch" in metadata and metadata["epoch"] != str(meta.get("epoch")):
                raise RunError(f"the checkpoint in {directory} is torn: {TENSORS} is of epoch {metadata['epoch']} "
                               f"but {META} of epoch {meta.get('epoch')} (an interruption between their two writes, "
                               f"by a genlearn of an earlier version); it cannot be resumed exactly"
                               f"{_remains(directory, tensor_path)}")
        check_meta(meta, where, training=True, family=build)
        if "model" in meta:  # a run's checkpoint (a bare Trainer's has no family name)
            model = build_model(meta, where)
            check_shapes(entries, model, tensor_path, "model.", meta["model"])
            check_shapes(entries, model, tensor_path, "best.", meta["model"], required=False)
        for name in ("rng.generator", "rng.torch"):
            if name in entries and (entries[name][0] != "U8" or len(entries[name][1]) != 1):
                raise _damaged(tensor_path, f"its {name} is not a byte vector (an RNG state)")
        if "rng.generator" not in entries:
            raise _damaged(tensor_path, "it has no rng.generator (the random state needed to resume)")
        bad = [k for k in entries if k.startswith("optimizer.") and not re.fullmatch(r"optimizer\.\d+\..+", k)]
        if bad:
            raise _damaged(tensor_path, f"its tensor {bad[0]!r} is not named optimizer.<index>.<slot>")
        tensors, _ = load_tensors(tensor_path)
    except RunError as exc:
        if isinstance(exc, DamagedFile) and "what still works" not in str(exc):
            raise RunError(f"{exc}{_remains(directory, exc.path)}") from None
        raise
    return tensors, meta


def _check_copy(meta: dict, meta_path: Path) -> None:
    """checkpoint.json beside a checkpoint with its own JSON: a readable copy of the same run (it may lag behind)."""
    if not meta_path.exists():
        return
    fix = (f"; what still works: {TENSORS} holds the whole checkpoint: delete {META} (it is written again at the "
           "next checkpoint) and run the command again")
    try:
        copy = read_json(meta_path, "the checkpoint's settings")
        check_meta(copy, meta_path, training=False, family="model" in meta)
        if copy.get("run_id") != meta.get("run_id") or copy.get("model") != meta.get("model"):
            raise _damaged(meta_path, f"it is not the copy of the {TENSORS} beside it (run {copy.get('run_id')} of "
                                      f"model {copy.get('model')!r}; the checkpoint: run {meta.get('run_id')} of "
                                      f"{meta.get('model')!r}): a file from another run?")
    except DamagedFile as exc:
        raise DamagedFile(meta_path, f"{exc}{fix}") from None


def _remains(directory: Path, damaged: Path) -> str:
    """'; what still works: ...' for a folder whose file `damaged` cannot be used."""
    directory = Path(directory)
    model_ok = False
    if damaged.name != MODEL_FILE and (directory / MODEL_FILE).exists():
        try:
            read_header(directory / MODEL_FILE)
            model_ok = True
        except RunError:
            pass
    if damaged.name == META:  # without an embedded copy (_check_copy) the settings are lost
        return "; nothing in it can be resumed or evaluated without its settings: start a new fit"
    if damaged.name == TENSORS and model_ok:
        return (f"; what still works: the final model ({MODEL_FILE}) is intact: delete {damaged.name} to evaluate or "
                f"sample it (`genlearn eval {directory}`); the run cannot be resumed, start a new fit to train more")
    if damaged.name in (MODEL_FILE, METRICS_FILE) and (directory / TENSORS).exists():
        return (f"; what still works: the checkpoint is intact: `genlearn fit --resume {directory}` writes the final "
                f"model and metrics again")
    return "; nothing in it can be resumed or evaluated: start a new fit"


@dataclass
class RunFiles:
    """What `read_run` found in a run folder: the model (its parameters loaded), the checkpoint's JSON and
    tensors, the final metrics ({} for an unfinished run), and whether the run is finished."""

    model: object
    meta: dict
    tensors: dict
    metrics: dict
    finished: bool
    #: the PID of the process writing the folder now, if any
    writer: int | None = None
    notes: list = field(default_factory=list)
    #: why the last fit of an unfinished run stopped, when training diverged (read_divergence)
    diverged: str | None = None

    @property
    def status(self) -> str:
        """One line for people: finished, or why not."""
        if self.finished:
            return "finished"
        epoch, epochs = self.meta.get("epoch"), (self.meta.get("train_config") or {}).get("epochs")
        partial = self.meta.get("partial_epoch") or {}
        where = f"epoch {epoch}" + (f" of {epochs}" if epochs is not None else "")
        if partial:
            where += f" and {partial.get('batches_done')} of {partial.get('batches')} minibatches of the next"
        if self.diverged is not None and self.writer is None:
            return (f"diverged ({self.diverged}; its last checkpoint is of {where}): fit again with a smaller "
                    "learning rate")
        how = (f"being written by process {self.writer}" if self.writer is not None
               else "interrupted or still being evaluated")
        return f"unfinished ({how}; its last checkpoint is of {where})"


def read_run(directory) -> RunFiles:
    """Every file of the run folder `directory`, validated, with the model's parameters loaded: the final model
    of a finished run, else the last checkpoint's."""
    from genlearn.learning.lock import holder

    directory = Path(directory)
    if not directory.is_dir():
        what = "is a file, not a run folder" if directory.exists() else "does not exist"
        raise RunError(f"no run folder at {directory}: it {what}; give the --out folder of a `genlearn fit`")
    model_path, metrics_path = directory / MODEL_FILE, directory / METRICS_FILE
    has_model = model_path.exists()
    tensors, meta = read_checkpoint(directory, tensors_required=not has_model, build=True)
    where = directory / (TENSORS if tensors else META)
    model = build_model(meta, where)
    final_meta = {}
    if has_model:
        try:
            entries, final_meta = read_header(model_path)
            check_shapes(entries, model, model_path, "", meta["model"])
            if final_meta.get("run_id") and meta.get("run_id") and final_meta["run_id"] != meta["run_id"]:
                raise _damaged(model_path, f"it is of another run ({final_meta['run_id']}) than the checkpoint "
                                           f"({meta['run_id']})")
        except DamagedFile as exc:
            raise RunError(f"{exc}{_remains(directory, model_path)}") from None
    metrics = {}
    if metrics_path.exists():
        try:
            metrics = read_json(metrics_path, "the run's metrics")
            check_metrics(metrics, metrics_path)
            if metrics.get("run_id") and meta.get("run_id") and metrics["run_id"] != meta["run_id"]:
                raise _damaged(metrics_path, f"it is of another run ({metrics['run_id']}) than the checkpoint "
                                             f"({meta['run_id']})")
        except DamagedFile as exc:
            raise RunError(f"{exc}{_remains(directory, metrics_path)}") from None
    epoch = meta.get("epoch")
    if not tensors:  # a published run: checkpoint.json and the final model
        finished = has_model
    else:
        finished = (has_model and bool(metrics) and not meta.get("partial_epoch")
                    and metrics.get("epochs_run", epoch) == epoch
                    and final_meta.get("epoch", str(epoch)) == str(epoch))
    if finished:
        state, _ = load_tensors(model_path)
    else:
        state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        metrics = {}
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise _damaged(model_path if finished else directory / TENSORS,
                       f"its parameters do not load into the {meta['model']!r} model ({str(exc).splitlines()[0]})"
                       ) from None
    return RunFiles(model, meta, tensors, metrics, finished, holder(directory) if not finished else None,
                    diverged=None if finished else read_divergence(directory, meta.get("run_id"), meta.get("epoch")))


def restore(trainer, tensors: dict, meta: dict, directory: Path) -> None:
    """trainer.restore(tensors, meta), with what the checks cannot see (the optimizer's groups, the rule's state)
    reported as one RunError naming the checkpoint."""
    try:
        trainer.restore(tensors, meta)
    except GenlearnError as exc:
        raise RunError(f"the checkpoint in {directory} cannot be resumed: {exc}") from None
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as exc:
        raise RunError(f"the checkpoint in {directory} cannot be resumed: its state does not fit its own settings "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                       f"{_remains(Path(directory), Path(directory) / TENSORS)}") from None
