"""Model families by CLI name. Adding a family = one module that calls `register_model`, plus its tests.

Each entry says which data kinds it accepts, its CLI options (name -> Option) and how to build a model for a
data set from those options. Models are rebuilt from `model.config()` with `build_from_config`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from genlearn.errors import ConfigError


@dataclass(frozen=True)
class Option:
    type: type
    default: object
    help: str
    choices: tuple | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    cls: type
    summary: str
    data_kinds: tuple[str, ...]
    build: Callable  # (dataset, options: dict) -> GenerativeModel
    options: dict = field(default_factory=dict)
    #: trainer settings this family works best with when the user does not say (e.g. optimizer, lr)
    train_defaults: dict = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    MODELS[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    """Import every family module (lazily, so that family modules may import the core freely)."""
    from genlearn.models import _import_families

    _import_families()


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_model(name: str, dataset, **options):
    """Build model `name` for `dataset`, checking the data kind and that every option applies."""
    spec = get_spec(name)
    if dataset.kind not in spec.data_kinds:
        raise ConfigError(
            f"model {name!r} needs {' or '.join(spec.data_kinds)} data, but {dataset.name!r} is {dataset.kind}"
        )
    unknown = {k for k, v in options.items() if v is not None} - set(spec.options)
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in sorted(unknown))
        raise ConfigError(f"{flags} does not apply to model {name!r}")
    full = {k: o.default for k, o in spec.options.items()}
    full.update({k: coerce_option(v, spec.options[k], k) for k, v in options.items() if v is not None})
    for key, opt in spec.options.items():
        if opt.choices and full[key] not in opt.choices:
            raise ConfigError(f"--{key.replace('_', '-')} must be one of {', '.join(map(str, opt.choices))}")
    return spec.build(dataset, full)


def coerce_option(value, opt: Option, name: str):
    """Convert a string given on the command line to the option's type (flags shared by families with
    different types arrive as strings)."""
    if not isinstance(value, str) or opt.type is str:
        return value
    flag = "--" + name.replace("_", "-")
    if opt.type is bool:
        if value.lower() in ("true", "yes", "1"):
            return True
        if value.lower() in ("false", "no", "0"):
            return False
        raise ConfigError(f"{flag} must be true or false, got {value!r}")
    try:
        return opt.type(value)
    except ValueError:
        raise ConfigError(f"{flag} must be {opt.type.__name__}, got {value!r}") from None


def build_from_config(name: str, config: dict):
    """The model of a saved run from its config (a family may adapt configs of older versions: `from_config`)."""
    cls = get_spec(name).cls
    return cls.from_config(dict(config)) if hasattr(cls, "from_config") else cls(**config)


def list_models() -> list[ModelSpec]:
    _ensure_loaded()
    return [MODELS[k] for k in sorted(MODELS)]
