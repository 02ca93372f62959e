"""Model families by CLI name. Adding a family = one module in genlearn/models/ that defines the distribution, its
typed config and calls `register_model`, plus its tests; the family modules are found by scanning this folder.

A family declares
    config:  a dataclass of its options made with genlearn.options.option (type, default, choices, help): the CLI
             flags of `genlearn fit FAMILY`, the validation, the run folder's record and the scikit-learn
             wrapper's `options` all come from it;
    build:   (dataset, config) -> model, the distribution P(X|theta) for that data set;
    rule:    (config) -> (rule name, settings), the learning rule it learns with by default (see
             genlearn.learning.rules: "maximum-likelihood", "contrastive-divergence", "em", ...);
    train_defaults: trainer settings the family works best with when the user does not say (optimizer, lr...);
    converge: (config) -> the settings of a fit run to convergence (e.g. L-BFGS with --tol), used by default;
    search_space: the ranges `genlearn tune` samples ({option or training field: genlearn.search_space.Param}).
Models are rebuilt from a run folder with `build_from_config(name, model.config())`."""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from genlearn import options as opts
from genlearn.errors import ConfigError

#: modules of this folder that register no family (an ensemble is built from fitted runs, not fitted: models.ensemble)
NOT_FAMILIES = {"base", "registry", "table", "nade_kernels", "ensemble"}


@dataclass(frozen=True)
class Option:
    """A family option as the listing commands show it (derived from the family's config dataclass)."""

    type: type
    default: object
    help: str
    choices: tuple | None = None


@dataclass(frozen=True)
class NoOptions:
    """The config of a family without options."""


def maximum_likelihood(config) -> tuple[str, dict]:
    """The default learning rule: autograd of the model's loss (the exact NLL for tractable families)."""
    return "maximum-likelihood", {}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    cls: type
    summary: str
    data_kinds: tuple[str, ...]
    build: Callable  # (dataset, config) -> GenerativeModel
    config: type = NoOptions
    rule: Callable = maximum_likelihood  # (config) -> (rule name, settings)
    #: trainer settings this family works best with when the user does not say (e.g. optimizer, lr)
    train_defaults: dict = field(default_factory=dict)
    #: what `genlearn tune` searches: {family option or training field: genlearn.search_space.Param}
    search_space: dict = field(default_factory=dict)
    #: (config) -> the trainer settings of the family's fit to convergence under these options (e.g. L-BFGS to a
    #: gradient tolerance, epochs = the maximum): over train_defaults unless the user chooses another optimizer
    #: or, for a full-batch optimizer, a batch size (see `training_defaults`); None: train_defaults alone
    converge: Callable | None = None
    #: (dataset, config, batch rows) -> (bytes, what, fix): the activations one training step holds where they can
    #: outgrow the parameters (e.g. a packed critic's inputs), checked by checks.check_model_memory; None: none
    step_memory: Callable | None = None

    def training_defaults(self, options: dict | None = None, given: dict | None = None) -> dict:
        """The trainer settings a fit of this family starts from under model `options`, before the user's own
        training settings `given` are laid over them: train_defaults, then the `converge` settings unless `given`
        chooses an optimizer other than theirs, or a batch size while theirs is a full-batch optimizer (a user who
        picks the optimizer picks its rate and epochs too)."""
        defaults = dict(self.train_defaults)
        if self.converge is None:
            return defaults
        given = {k: v for k, v in (given or {}).items() if v is not None}
        profile = dict(self.converge(self.parse_options(options)) or {})
        ours = profile.get("optimizer")
        if ours is not None and (given.get("optimizer", ours) != ours or "batch_size" in given):
            return defaults
        return {**defaults, **profile}

    @property
    def options(self) -> dict[str, Option]:
        """{name: Option(type, default, help, choices)} of the config's fields."""
        types_ = opts.field_types(self.config)
        return {f.name: Option(types_[f.name][0], f.default, f.metadata.get("help", ""), f.metadata.get("choices"))
                for f in dataclasses.fields(self.config)}

    def parse_options(self, options: dict | None):
        """The family's config from user values (Python values or command-line strings), validated."""
        return opts.parse(self.config, options, f"model {self.name!r}")


#: the default fit of a family whose maximum-likelihood problem is convex (or has an exact objective) on one
#: batch: L-BFGS with a line search until max_i |dD_KL/dtheta_i| <= 1e-7 nats, at most 1000 iterations
#: (why: genlearn.learning.convergence)
LBFGS_TO_CONVERGENCE = {"optimizer": "lbfgs", "lr": 1.0, "epochs": 1000, "tol": 1e-7}


def lbfgs_to_convergence(config=None) -> dict:
    """`ModelSpec.converge` of the convex families: LBFGS_TO_CONVERGENCE."""
    return dict(LBFGS_TO_CONVERGENCE)


MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    if not dataclasses.is_dataclass(spec.config):
        raise TypeError(f"the config of family {spec.name!r} must be a dataclass")
    MODELS[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    """Import every family module of this folder once (each registers itself)."""
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name not in NOT_FAMILIES:
            importlib.import_module(f"genlearn.models.{info.name}")


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_model(name: str, dataset, **options):
    """Build model `name` for `dataset` from its options (checked against the family's config)."""
    spec = _spec_for(name, dataset)
    return spec.build(dataset, spec.parse_options(options))


def _spec_for(name: str, dataset) -> ModelSpec:
    """The spec of family `name`, which must model data of the kind of `dataset`."""
    spec = get_spec(name)
    if dataset.kind not in spec.data_kinds:
        raise ConfigError(
            f"model {name!r} needs {' or '.join(spec.data_kinds)} data, but {dataset.name!r} is {dataset.kind}"
        )
    return spec


@dataclass(frozen=True)
class ModelSize:
    """The memory a model holds before training: `parameters` elements in `parameter_bytes` bytes, its buffers
    (masks, orderings) in `buffer_bytes`, and `width`, the largest dimension of any of its tensors (the units of its
    widest layer: one activation per row there when it computes on a batch)."""

    parameters: int
    parameter_bytes: int
    buffer_bytes: int
    width: int


def size_of(model) -> ModelSize:
    """The ModelSize of a built model (real or on the meta device): sum of numel x element size of its
    parameters, of its buffers."""
    params, buffers = list(model.parameters()), list(model.buffers())
    width = max((d for t in params + buffers for d in t.shape), default=0)
    return ModelSize(sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params),
                     sum(b.numel() * b.element_size() for b in buffers), int(width))


def model_size(name: str, dataset, **options) -> ModelSize:
    """The ModelSize of family `name` built for `dataset` under `options`, without allocating it: the family's
    build runs on torch's meta device (tensors with shapes and dtypes, no storage), so a model of 10^10
    parameters is sized in milliseconds. Equal to size_of(build_model(name, dataset, **options))."""
    import torch

    spec = _spec_for(name, dataset)
    config = spec.parse_options(options)
    with torch.device("meta"):
        model = spec.build(dataset, config)
    return size_of(model)


def rule_for(name: str, **options) -> tuple[str, dict]:
    """(rule name, settings) of the learning rule family `name` learns with under these options."""
    spec = get_spec(name)
    return spec.rule(spec.parse_options(options))


def build_from_config(name: str, config: dict):
    """The model of a saved run from its config (a family may adapt configs of older versions: `from_config`);
    "ensemble" is the mixture of fitted models genlearn.tune builds (genlearn.models.ensemble)."""
    if name == "ensemble":
        from genlearn.models.ensemble import Ensemble

        return Ensemble.from_config(dict(config), build=build_from_config)
    cls = get_spec(name).cls
    return cls.from_config(dict(config))


def list_models() -> list[ModelSpec]:
    _ensure_loaded()
    return [MODELS[k] for k in sorted(MODELS)]
