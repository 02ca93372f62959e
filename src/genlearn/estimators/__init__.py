"""Estimators of what is not tractable; every estimate carries its method and uncertainty."""
from genlearn.estimators.estimate import Estimate

__all__ = ["Estimate"]
