"""Where the tensors of a fit, an evaluation or a sampler live: `--device auto|cpu|cuda|cuda:N|mps`.

"auto" is the first accelerator present (CUDA, then Apple's MPS), else the CPU. A data set is moved to the
device once (`move_dataset`), before training; checkpoints are read on the CPU (safetensors) and copied into
the model's, optimizer's and rule's tensors wherever they live, so a run trained on a GPU resumes on a CPU and
back. Random numbers come from a torch.Generator on the device (`make_generator`); the state of a generator of
another device type cannot be restored (CPU: Mersenne twister, CUDA: Philox), so a run resumed across device
types reseeds (`restore_generator`) and continues with other random numbers."""
from __future__ import annotations

import copy
import dataclasses
import functools
import re

import torch

from genlearn.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DEVICE_HELP = ("where to compute: auto (a GPU when present, else the CPU), cpu, cuda, cuda:N or mps "
               "(default cpu)")


def keeps_torch_rng(function):
    """`function` run inside torch.random.fork_rng: torch's global CPU generator (and those of the CUDA devices, when
    CUDA is already initialised; forking them otherwise would initialise it) is in the same state after the call
    as before it, whatever the call reseeds (the Trainer's torch.manual_seed) or draws."""
    @functools.wraps(function)
    def kept(*args, **kwargs):
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=devices):
            return function(*args, **kwargs)

    return kept


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(spec=None) -> torch.device:
    """The torch.device of `spec`: None or "cpu" -> cpu; "auto" -> cuda (current device) when
    torch.cuda.is_available(), else mps when available, else cpu; "cuda", "cuda:N", "mps" -> that device,
    a ConfigError when it is absent. A torch.device is checked the same way."""
    if spec is None:
        return torch.device("cpu")
    text = str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m:
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: no CUDA GPU is available to this torch "
                              f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu "
                              "or auto")
        index = int(m.group(1)) if m.group(1) is not None else torch.cuda.current_device()
        count = torch.cuda.device_count()
        if index >= count:
            raise ConfigError(f"--device {spec}: there are {count} CUDA device(s), numbered 0..{count - 1}")
        return torch.device("cuda", index)
    if text == "mps":
        if not _mps_available():
            raise ConfigError("--device mps: Apple's MPS backend is not available here; use --device cpu or auto")
        return torch.device("mps")
    raise ConfigError(f"unknown device {spec!r}; choose one of {', '.join(DEVICE_CHOICES)}")


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """A torch.Generator on `device` seeded with `seed` (on the CPU the same stream as torch.Generator())."""
    return torch.Generator(device=device).manual_seed(int(seed))


def restore_generator(generator: torch.Generator, state: torch.Tensor, seed: int) -> bool:
    """Set `generator` to a checkpointed `state`; True when it could. A state of another device type (a GPU
    run resumed on a CPU, or back) cannot be restored: the generator is reseeded with `seed` and False returned."""
    try:
        generator.set_state(state.cpu())
        return True
    except (RuntimeError, ValueError):
        generator.manual_seed(int(seed))
        return False


def _to(value, device: torch.device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, torch.nn.Module):
        return copy.deepcopy(value).to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def move_dataset(dataset, device: torch.device):
    """A copy of `dataset` whose splits (train/valid/test, the dynamic-binarization intensities and the true
    distribution when it is a torch module) live on `device`; `dataset` itself when device is the CPU and the
    data are already there (no copy)."""
    device = torch.device(device)
    if device.type == "cpu" and all(getattr(dataset, s) is None or getattr(dataset, s).device.type == "cpu"
                                    for s in ("train", "valid", "test")):
        return dataset
    return dataclasses.replace(dataset, train=_to(dataset.train, device), valid=_to(dataset.valid, device),
                               test=_to(dataset.test, device), train_intensity=_to(dataset.train_intensity, device),
                               truth=_to(dataset.truth, device))


__all__ = ["DEVICE_CHOICES", "DEVICE_HELP", "make_generator", "move_dataset", "resolve_device", "restore_generator"]
