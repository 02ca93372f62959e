"""scikit-learn's 8x8 digits (1797 images, grey levels 0..16), binarized: the embedded default data set.

Split with a fixed seed (0) into 1258 train / 270 valid / 269 test (70 / 15 / 15 %). The class labels (0..9,
load_digits().target) are split with the same indices, so that `dataset.labels[split][m]` is the digit of row m
of that split (they are never used to train)."""
from __future__ import annotations

import torch

from genlearn.data.binarize import binarize
from genlearn.data.dataset import Dataset, split_indices
from genlearn.data.sources import register_source


@register_source(
    "digits", "scikit-learn 8x8 digits, binarized (threshold at half intensity by default); embedded",
    {"binarize": ("threshold", "threshold | static | dynamic"), "threshold": (0.5, "for binarize=threshold"),
     "seed": (0, "binarize=static|dynamic: seed of the draws (the split is fixed)")},
)
def digits(settings, data_dir=None) -> Dataset:
    from sklearn.datasets import load_digits

    raw = load_digits()
    intensity = torch.as_tensor(raw.data, dtype=torch.float32) / 16.0
    target = torch.as_tensor(raw.target, dtype=torch.int64)
    indices = split_indices(intensity.shape[0], (0.7, 0.15, 0.15), seed=0)
    train_i, valid_i, test_i = (intensity[idx] for idx in indices)
    method, seed = settings["binarize"], int(settings["seed"])
    static = "static" if method == "dynamic" else method
    parts = [binarize(x, static, settings["threshold"], seed + i) for i, x in enumerate((train_i, valid_i, test_i))]
    return Dataset(
        name="digits", kind="binary", train=parts[0], valid=parts[1], test=parts[2], image_shape=(8, 8),
        settings={"source": "sklearn.datasets.load_digits", "binarization": method,
                  **({"threshold": settings["threshold"]} if method == "threshold" else {"seed": seed})},
        train_intensity=train_i if method == "dynamic" else None,
        labels={name: target[idx] for name, idx in zip(("train", "valid", "test"), indices)},
    )
