"""P(X|theta): one module per family, all behind GenerativeModel (models/base.py); each family module
registers itself (models/registry.py finds them by scanning this folder)."""
from genlearn.models.base import EnergyModel, GenerativeModel, LatentVariableModel
from genlearn.models.categorical import Categorical
from genlearn.models.gaussian import Gaussian
from genlearn.models.product import Bernoulli, ProductBernoulli
from genlearn.models.registry import build_model, list_models, register_model
from genlearn.models.table import PatternTable

__all__ = ["Bernoulli", "Categorical", "EnergyModel", "Gaussian", "GenerativeModel", "LatentVariableModel",
           "PatternTable", "ProductBernoulli", "build_model", "list_models", "register_model"]
