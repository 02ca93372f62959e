"""The rows a refit trains on: a data set's train rows followed by its valid rows, with no valid split.

`genlearn refit` (genlearn.refit) and `genlearn tune --refit` (genlearn.tune_refit) train a model again on them
once every choice has been made on the valid split; a refitted run's folder records it (recipe.refit_of), and
`as_trained` gives its rows back when the run is resumed or evaluated."""
from __future__ import annotations

import dataclasses

import torch

from genlearn.errors import ConfigError

#: the refitted run's data set records this in its settings
REFIT_ROWS = "train and valid rows together (genlearn refit): no held-out split but test"


def merged_rows(dataset):
    """`dataset` with train = its train rows then its valid rows, no valid split, its test split kept."""
    from genlearn.data.dataset import Dataset

    if dataset.train_intensity is not None:
        raise ConfigError(f"cannot refit on {dataset.name!r}: it is binarized dynamically from grey levels, and its "
                          "valid rows have none to redraw from")
    if dataset.valid is None:
        raise ConfigError(f"{dataset.name!r} has no valid split: a run on it has nothing to refit with")
    values = {f.name: getattr(dataset, f.name) for f in dataclasses.fields(Dataset)}
    values.update(train=torch.cat([dataset.train, dataset.valid]), valid=None,
                  settings={**dataset.settings, "rows": REFIT_ROWS})
    labels = values.get("labels")
    if labels:
        both = [labels.get("train"), labels.get("valid")]
        values["labels"] = ({"train": torch.cat(both), "test": labels.get("test")}
                            if all(v is not None for v in both) else None)
    return Dataset(**values)


def as_trained(meta: dict, dataset):
    """The rows a run trained on: `dataset` as loaded from the run's recorded spec, merged as the refit merged it
    when the run (its checkpoint or metrics record `meta`) is a refit; else `dataset` itself."""
    if ((meta.get("recipe") or {}).get("refit_of")) and dataset.valid is not None:
        return merged_rows(dataset)
    return dataset


def without_test(dataset):
    """The data set without its test split (and its labels): what `genlearn tune`'s trials see (the test split is
    read once, for the study's choice); the settings record it (`test_held_out`)."""
    from genlearn.data.dataset import Dataset

    values = {f.name: getattr(dataset, f.name) for f in dataclasses.fields(Dataset) if f.name != "test"}
    if values.get("labels"):
        values["labels"] = {k: v for k, v in values["labels"].items() if k != "test"} or None
    values["settings"] = {**dataset.settings, "test_held_out": "by genlearn tune (scored once, at the end)"}
    return Dataset(**values)
