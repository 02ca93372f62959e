"""The one kind of object every data source returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from genlearn.errors import ConfigError, DataError

SPLITS = ("train", "valid", "test")


@dataclass
class Dataset:
    """Samples split into train/valid/test.

    kind: "binary" (float32 0/1, shape (M, n)), "categorical" (int64 outcomes, shape (M,)) or "real"
    (float32, shape (M, n)). `truth` is the true distribution Q(X) when it is known (synthetic sources).
    `settings` records how the data were made (source, seed, binarization...) for metrics.json.
    `labels`: class labels where the source has them (digits, MNIST-format IDX with its label files), a dict
    split name -> int64 tensor of shape (M,) aligned with that split's rows; None when unknown. Labels are never
    used for training (the models are unsupervised): they colour plots of the latent space."""

    name: str
    kind: str
    train: Tensor
    valid: Tensor | None = None
    test: Tensor | None = None
    image_shape: tuple[int, int] | None = None
    n_categories: int | None = None
    #: a genlearn model (log_prob, sample) of the true distribution; typed loosely: data sit below models
    truth: object | None = None
    settings: dict = field(default_factory=dict)
    #: for dynamic binarization: grey levels in [0, 1] from which train is redrawn every epoch
    train_intensity: Tensor | None = None
    #: split name -> int64 class labels aligned with the rows of that split; None when the data have no labels
    labels: dict | None = None

    def __post_init__(self):
        if self.labels is not None:
            self.labels = check_labels(self.labels, {s: getattr(self, s) for s in SPLITS})

    @property
    def n_features(self) -> int:
        return 1 if self.kind == "categorical" else int(self.train.shape[1])

    def split(self, name: str) -> Tensor:
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        data = getattr(self, name)
        if data is None:
            raise ConfigError(f"data set {self.name!r} has no {name!r} split")
        return data

    def sizes(self) -> dict:
        return {s: (None if getattr(self, s) is None else int(getattr(self, s).shape[0])) for s in SPLITS}

    def split_labels(self, name: str) -> Tensor | None:
        """The int64 class labels of split `name` (aligned with its rows), or None when they are unknown."""
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return None if self.labels is None else self.labels.get(name)

    def redraw_train(self, generator: torch.Generator) -> Tensor:
        """Dynamic binarization: a fresh Bernoulli(intensity) draw of the training set."""
        if self.train_intensity is None:
            return self.train
        return torch.bernoulli(self.train_intensity, generator=generator)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "n_features": self.n_features,
            "n_categories": self.n_categories,
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "sizes": self.sizes(),
            "truth_known": self.truth is not None,
            "labels": self.labels is not None,
            **self.settings,
        }


def check_labels(labels: dict, splits: dict) -> dict:
    """labels as {split: int64 tensor (M,)} for the splits present, checked against the rows of each split
    (`splits`: name -> Tensor or None); DataError when a split is unknown or absent or a length differs."""
    if not isinstance(labels, dict):
        raise DataError(f"labels must be a dict split name -> class labels, got {type(labels).__name__}")
    out = {}
    for name, y in labels.items():
        if name not in SPLITS:
            raise DataError(f"labels given for an unknown split {name!r}; splits are {', '.join(SPLITS)}")
        if y is None:
            continue
        rows = splits.get(name)
        if rows is None:
            raise DataError(f"labels given for the split {name!r}, which the data set does not have")
        y = torch.as_tensor(y)
        if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
            raise DataError(f"labels of the {name!r} split must be integers, got dtype {y.dtype}")
        y = y.to(torch.int64).reshape(-1)
        if y.shape[0] != rows.shape[0]:
            raise DataError(f"the {name!r} split has {rows.shape[0]} rows but {y.shape[0]} labels; labels must be "
                            "aligned with the rows")
        out[name] = y
    return out


def split_indices(n: int, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Row indices of train/valid/test: a permutation of range(n) from a fixed seed, cut by the fractions. Index
    every array that is aligned with the rows (images, labels) with the same indices to keep them aligned."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_train = int(round(fractions[0] * n))
    n_valid = int(round(fractions[1] * n))
    return perm[:n_train], perm[n_train : n_train + n_valid], perm[n_train + n_valid :]


def split_arrays(x: Tensor, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Shuffle rows with a fixed seed and cut them into train/valid/test by the given fractions
    (x indexed by `split_indices(len(x), fractions, seed)`)."""
    return tuple(x[idx] for idx in split_indices(x.shape[0], fractions, seed))
