"""The learning equation: one trainer loop for every family, and the learning rules handed to it."""
from genlearn.learning.rules import LearningRule, list_rules, make_rule, register_rule
from genlearn.learning.trainer import TrainConfig, Trainer

__all__ = ["LearningRule", "TrainConfig", "Trainer", "list_rules", "make_rule", "register_rule"]
