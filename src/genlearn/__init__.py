"""genlearn: statistical machine learning of generative models.

Learn P(X|theta) by minimising D_KL(Q^||P_theta) = NLL(theta) - H(Q^) from samples, with exact likelihoods and
KL wherever the state space can be enumerated and honest estimates where it cannot."""
from genlearn.data import Dataset, EmpiricalDistribution, load_dataset
from genlearn.divergence import empirical_kl, kl_divergence, register_kl
from genlearn.errors import ConfigError, DataError, GenlearnError, IntractableError, NumericalError, RunError
from genlearn.estimators import Estimate
from genlearn.models import (Bernoulli, Categorical, EnergyModel, Gaussian, GenerativeModel, LatentVariableModel,
                             PatternTable, ProductBernoulli)

__version__ = "0.1.0"


def __getattr__(name):  # lazy: fit/load_run pull in the trainer and plotting only when used
    if name in ("fit", "load_run", "Run"):
        from genlearn import runs

        return getattr(runs, name)
    raise AttributeError(name)


__all__ = ["Bernoulli", "Categorical", "ConfigError", "DataError", "Dataset", "EmpiricalDistribution", "EnergyModel",
           "Estimate", "Gaussian", "GenerativeModel", "GenlearnError", "IntractableError", "LatentVariableModel",
           "NumericalError",
           "PatternTable", "ProductBernoulli", "RunError", "empirical_kl", "fit", "kl_divergence", "load_dataset",
           "load_run", "register_kl"]
