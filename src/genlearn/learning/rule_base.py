"""The interface of a learning rule and the registry of rules (the rules themselves: genlearn.learning.rules, which
imports every rule module so that `make_rule` knows them all; see its docstring for the list).

A rule module defines a `LearningRule` subclass with typed `Settings` and calls `register_rule(name, cls)`."""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from genlearn import options
from genlearn.errors import ConfigError
from genlearn.models.base import GenerativeModel

@dataclass(frozen=True)
class NoSettings:
    """The settings of a rule without settings."""


class LearningRule(ABC):
    """How a model learns: the gradient (or closed-form step) of D_KL(Q^||P_theta) and the state it keeps.

    Class attributes: `name` (the registry name), `uses_optimizer` (False for rules that set the parameters
    themselves, e.g. EM's M-step), `resumes_mid_epoch` (its state between minibatches is all in state_tensors),
    `one_pass` (one epoch gives the final parameters), `Settings` (a frozen dataclass of typed settings made
    with genlearn.options.option), `objective` (one line: what the returned value is). Instances hold their
    settings in `self.config` (a `Settings` instance) and their state (chains, statistics)."""

    name: ClassVar[str] = ""
    uses_optimizer: ClassVar[bool] = True
    #: True when everything the rule carries from one minibatch to the next is in state_tensors(), so that a
    #: checkpoint may be taken between two minibatches (a Ctrl-C stops there); False (the safe default) for rules
    #: that accumulate over the epoch (EM's statistics), which then stop at the end of the epoch
    resumes_mid_epoch: ClassVar[bool] = False
    #: True when one epoch gives the rule's final parameters (a closed-form estimate): the flags of iterative
    #: fits (--epochs > 1, --patience, --tol, ...) are refused beside it (checks.check_training)
    one_pass: ClassVar[bool] = False
    Settings: ClassVar[type] = NoSettings
    objective: ClassVar[str] = ""

    def __init__(self, settings: dict | None = None):
        self.config = parse_settings(self.name, self.Settings, settings)

    # -- the interface the Trainer uses ------------------------------------------------------------
    def check(self, model: GenerativeModel) -> None:
        """Raise ConfigError (or IntractableError) when this rule cannot train `model`; the Trainer calls it
        once, before training, so a wrong pairing fails with one message instead of deep in the first batch."""

    @abstractmethod
    def compute_gradient(self, model: GenerativeModel, batch: Tensor, generator: torch.Generator) -> Tensor:
        """Set p.grad of the model's parameters to the (estimated) gradient of D_KL(Q^||P_theta) on `batch`
        (the Trainer has set every p.grad to None before) and return the objective value on the batch: a
        detached scalar, nats per example (see `objective`). `generator` is the Trainer's seeded generator."""

    def exact_objective(self, model: GenerativeModel) -> bool:
        """True when `compute_gradient` returns the exact objective on its batch (nats per example, at the
        parameters it was called with) and writes its exact gradient, if any: what a line search (L-BFGS) and the
        relative-change test of the Trainer (--rel-tol) need. False by default (estimates, bounds, energy gaps)."""
        return False

    def end_epoch(self, model: GenerativeModel, train: Tensor) -> None:
        """Called after the last batch of every epoch with the epoch's training rows (EM's M-step, the data
        statistics an RBM's AIS needs). Nothing by default."""

    def state_tensors(self) -> dict[str, Tensor]:
        """The rule's state to checkpoint (e.g. {"chains": ...}); {} for a stateless rule."""
        return {}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Restore what `state_tensors` returned (from a checkpoint)."""
        if tensors:
            raise ConfigError(f"the learning rule {self.name!r} keeps no state, but the checkpoint holds "
                              f"{', '.join(sorted(tensors))}")

    def settings(self) -> dict:
        """The settings as JSON values: make_rule(self.name, self.settings()) rebuilds this rule (state aside)."""
        return options.to_dict(self.config)

    def epoch_record(self) -> dict:
        """Numbers this rule adds to each monitoring record of the learning curve (e.g. an adversarial rule's
        player losses and divergence estimate over the last epoch); {} by default."""
        return {}

    def describe(self) -> dict:
        """What a run records about its learning in metrics.json (the objective and family-specific keys)."""
        return {"objective": self.objective}

    def record(self) -> dict:
        """{"name", "settings"}: what a checkpoint stores to rebuild the rule."""
        return {"name": self.name, "settings": self.settings()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings()!r})"


# ------------------------------------------------------------------------------------------------------
# the registry
# ------------------------------------------------------------------------------------------------------
RULES: dict[str, type[LearningRule]] = {}


def register_rule(name: str, cls: type[LearningRule]) -> type[LearningRule]:
    """Register a LearningRule subclass under `name` (its `name` attribute)."""
    if not (isinstance(cls, type) and issubclass(cls, LearningRule)):
        raise TypeError(f"a learning rule must subclass LearningRule, got {cls!r}")
    if cls.name != name:
        raise TypeError(f"learning rule class {cls.__name__} has name {cls.name!r}, registered as {name!r}")
    if not dataclasses.is_dataclass(cls.Settings):
        raise TypeError(f"the Settings of learning rule {name!r} must be a dataclass")
    RULES[name] = cls
    return cls


def parse_settings(name: str, cls: type, settings: dict | None):
    """A `cls` instance from a dict of settings (Python values or command-line strings): unknown names and bad
    values are one ConfigError each."""
    settings = dict(settings or {})
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)} for the learning rule {name!r}; its settings: "
                          f"{', '.join(known) or 'none'}")
    return options.parse(cls, settings, f"the learning rule {name!r}")


def _check_family(rule: LearningRule, model, cls: type, what: str) -> None:
    if not isinstance(model, cls):
        raise ConfigError(f"the learning rule {rule.name!r} trains {what}, not a {getattr(model, 'name', model)!r} "
                          "model; use the rule of its family (e.g. maximum-likelihood)")
