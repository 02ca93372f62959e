"""P(X|theta): one module per family, all behind GenerativeModel (models/base.py)."""
from genlearn.models.base import EnergyModel, GenerativeModel
from genlearn.models.categorical import Categorical
from genlearn.models.gaussian import Gaussian
from genlearn.models.product import Bernoulli, ProductBernoulli
from genlearn.models.table import PatternTable
from genlearn.models.registry import build_model, list_models, register_model

import genlearn.models.core_families  # noqa: E402,F401  (registers the families by CLI name)

__all__ = ["Bernoulli", "Categorical", "EnergyModel", "Gaussian", "GenerativeModel", "PatternTable",
           "ProductBernoulli", "build_model", "list_models", "register_model"]
