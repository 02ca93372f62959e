"""P(X|theta): one module per family, all behind GenerativeModel (models/base.py)."""
from genlearn.models.base import EnergyModel, GenerativeModel
from genlearn.models.categorical import Categorical
from genlearn.models.gaussian import Gaussian
from genlearn.models.product import Bernoulli, ProductBernoulli
from genlearn.models.table import PatternTable
from genlearn.models.registry import build_model, list_models, register_model

import genlearn.models.core_families  # noqa: E402,F401  (registers the families by CLI name)

#: family modules that register themselves on import (each is one file in this folder)
FAMILY_MODULES = ("boltzmann", "rbm", "mixture", "fvsbn", "nade", "made")


def _import_families() -> None:
    import importlib

    for name in FAMILY_MODULES:
        try:
            importlib.import_module(f"genlearn.models.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"genlearn.models.{name}":
                raise


__all__ = ["Bernoulli", "Categorical", "EnergyModel", "Gaussian", "GenerativeModel", "PatternTable",
           "ProductBernoulli", "build_model", "list_models", "register_model"]
