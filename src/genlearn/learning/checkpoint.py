"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, written atomically (a temporary
file in the same folder, then os.replace).

A checkpoint is ONE file, checkpoint.safetensors: its header metadata carries the JSON settings and state
("genlearn.meta"), so tensors and JSON always agree whatever moment a process is killed at. checkpoint.json,
written after it, is a readable copy (it lags by one checkpoint after a kill between the two writes, which is
harmless); a folder of an earlier version, without the embedded copy, is read from checkpoint.json and refused
when its two files are of different epochs (a torn checkpoint). Files follow the user's umask; a full disk is
one RunError, the previous checkpoint left intact. Validation of what is read: genlearn.learning.run_folder."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file


TENSORS = "checkpoint.safetensors"
META = "checkpoint.json"


def atomic_write_bytes(path: Path, write) -> None:
    """Call write(tmp_path), then rename tmp_path over path (mode 0666 less the umask, like any new file); a
    full disk (or quota, or file-size limit) is one RunError and `path` is left as it was."""
    from genlearn.learning.run_folder import file_mode, write_failed

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        try:
            write(tmp)
            os.chmod(tmp, file_mode())
        except Exception as exc:  # safetensors reports I/O errors as SafetensorError, json as OSError
            write_failed(path, exc)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=_json_default)
            f.write("\n")

    atomic_write_bytes(Path(path), write)


def _json_default(o):
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def flatten_optimizer_state(state: dict) -> tuple[dict, dict]:
    """Split an optimizer state_dict into safetensors-able tensors and a JSON-able rest."""
    tensors, scalars = {}, {}
    for idx, slots in state["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{idx}.{key}"] = value.detach().clone().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(directory: Path, tensors: dict, meta: dict) -> None:
    """checkpoint.safetensors (the tensors, with `meta` as JSON in its header: the checkpoint), then its readable
    copy checkpoint.json."""
    from genlearn.learning.run_folder import checkpoint_metadata

    directory = Path(directory)
    clean = {k: v.detach().clone().contiguous() for k, v in tensors.items()}
    header = checkpoint_metadata(meta, _json_default)
    atomic_write_bytes(directory / TENSORS, lambda tmp: save_file(clean, tmp, metadata=header))
    write_json(directory / META, meta)


def load_checkpoint(directory: Path, tensors_required: bool = True) -> tuple[dict, dict]:
    """(tensors, meta) of the checkpoint in `directory`, each file validated (one RunError naming the file and
    what is wrong: genlearn.learning.run_folder.read_checkpoint). With tensors_required=False a folder holding only
    checkpoint.json (a published run: final parameters in model.safetensors, no optimizer state) gives ({}, meta)."""
    from genlearn.learning.run_folder import read_checkpoint

    return read_checkpoint(Path(directory), tensors_required)


def record_divergence(out: Path, message: str, run_id, epoch) -> None:
    """{"run_id", "epoch", "error"} in DIVERGED_FILE: the folder's last checkpoint is of a fit that stopped because
    training diverged (genlearn.errors.NumericalError), so that `genlearn eval`, `sample` and `report` say so
    instead of calling the run interrupted. Removed when a later --resume of the run finishes (clear_divergence)."""
    from genlearn.learning.run_folder import DIVERGED_FILE

    write_json(Path(out) / DIVERGED_FILE, {"run_id": run_id, "epoch": epoch, "error": message})


def clear_divergence(out: Path) -> None:
    from genlearn.learning.run_folder import DIVERGED_FILE

    try:
        (Path(out) / DIVERGED_FILE).unlink()
    except FileNotFoundError:
        pass
