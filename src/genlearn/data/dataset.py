"""The one kind of object every data source returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from genlearn.errors import ConfigError

SPLITS = ("train", "valid", "test")


@dataclass
class Dataset:
    """Samples split into train/valid/test.

    kind: "binary" (float32 0/1, shape (M, n)), "categorical" (int64 outcomes, shape (M,)) or "real"
    (float32, shape (M, n)). `truth` is the true distribution Q(X) when it is known (synthetic sources).
    `settings` records how the data were made (source, seed, binarization...) for metrics.json."""

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
            **self.settings,
        }


def split_arrays(x: Tensor, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Shuffle rows with a fixed seed and cut them into train/valid/test by the given fractions."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=g)
    n_train = int(round(fractions[0] * x.shape[0]))
    n_valid = int(round(fractions[1] * x.shape[0]))
    x = x[perm]
    return x[:n_train], x[n_train : n_train + n_valid], x[n_train + n_valid :]
