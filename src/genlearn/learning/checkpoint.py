"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, each written atomically
(a temporary file in the same folder, then os.replace), tensors first so the JSON never points ahead."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from genlearn.errors import RunError

TENSORS = "checkpoint.safetensors"
META = "checkpoint.json"


def atomic_write_bytes(path: Path, write) -> None:
    """Call write(tmp_path), then rename tmp_path over path."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
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
    directory = Path(directory)
    clean = {k: v.detach().clone().contiguous() for k, v in tensors.items()}
    epoch = {"epoch": str(meta.get("epoch"))}
    atomic_write_bytes(directory / TENSORS, lambda tmp: save_file(clean, tmp, metadata=epoch))
    write_json(directory / META, meta)


def load_checkpoint(directory: Path, tensors_required: bool = True) -> tuple[dict, dict]:
    """(tensors, meta) of the checkpoint in `directory`. With tensors_required=False a folder holding only
    checkpoint.json (a published run: final parameters in model.safetensors, no optimizer state) gives ({}, meta)."""
    directory = Path(directory)
    meta_path, tensor_path = directory / META, directory / TENSORS
    if not meta_path.exists() or (tensors_required and not tensor_path.exists()):
        raise RunError(f"{directory} holds no checkpoint ({META} and {TENSORS}); is it a `genlearn fit` output folder?")
    try:
        meta = json.loads(meta_path.read_text())
        tensors = load_file(str(tensor_path)) if tensor_path.exists() else {}
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise RunError(f"the checkpoint in {directory} is unreadable or truncated ({exc}); refit the model") from None
    return tensors, meta
