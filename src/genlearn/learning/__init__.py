"""The learning equation: one trainer loop for every family."""
from genlearn.learning.trainer import TrainConfig, Trainer

__all__ = ["TrainConfig", "Trainer"]
