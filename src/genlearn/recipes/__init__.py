"""Named configurations that reproduce the published figures: `genlearn fit --recipe NAME`.

A recipe is a TOML file in this folder: the model family and its options, the data set, the training settings,
how the final likelihood is obtained, and the figure the recipe produced (value, metric, split, machine, cost).
Running one goes through the same `genlearn.fit` as every other fit, so a figure quoted from a recipe is one a
user can re-run:

    genlearn recipes                                     # name, figure, cost
    genlearn fit --recipe made-32 --data-dir DIR [--max-minutes M] [--lr ...]   # overrides are recorded
    genlearn fit --recipe runs/tune/best.toml        # a recipe file (what `genlearn tune` writes)

A recipe with `continues = "NAME"` starts from the parameters of a finished run of recipe NAME (e.g. IWAE
training continued from the `vae` recipe's run): it is refused without `--init-from DIR` naming that run.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from genlearn.errors import ConfigError

#: the keys a recipe file may hold
RECIPE_KEYS = {"summary", "model", "data", "threads", "model_options", "train", "evaluation", "figure", "continues"}


@dataclass(frozen=True)
class Recipe:
    """name: the file's stem; model: a family name; data: a data spec (NAME[:key=value,...]);
    model_options / train / evaluation: keyword arguments of `genlearn.fit` (model options, TrainConfig fields,
    and `partition` / `partition_options` of the final likelihood); threads: CPU threads the figure was measured
    with (used when the user gives none); figure: what it produced (value, metric, published, cost, machine...);
    continues: the recipe whose finished run this one starts from (`--init-from DIR`), or None."""

    name: str
    summary: str
    model: str
    data: str
    model_options: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)
    figure: dict = field(default_factory=dict)
    threads: int | None = None
    continues: str | None = None

    def fit_kwargs(self, overrides: dict | None = None) -> dict:
        """Keyword arguments of genlearn.fit: the recipe's model options and training settings, then the
        overrides (TrainConfig fields or model options) on top."""
        kwargs = {**self.model_options, **self.train}
        kwargs.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return kwargs

    def describe(self) -> dict:
        return {"name": self.name, "summary": self.summary, "model": self.model, "data": self.data,
                "model_options": self.model_options, "train": self.train, "evaluation": self.evaluation,
                "threads": self.threads, "figure": self.figure,
                **({"continues": self.continues} if self.continues else {})}


def _files() -> dict:
    folder = resources.files(__name__)
    return {p.name[:-5]: p for p in folder.iterdir() if p.name.endswith(".toml")}


def recipe_names() -> list[str]:
    return sorted(_files())


def load_recipe(name: str) -> Recipe:
    """The recipe called `name`, or the recipe file at the path `name` (a `.toml` file, e.g. the best.toml that
    `genlearn tune` writes; its name is the file's stem); ConfigError naming the known ones when there is none."""
    files = _files()
    path = Path(name)
    if name not in files and (name.endswith(".toml") or path.is_file()):
        if not path.is_file():
            raise ConfigError(f"no recipe file {name}; give the path of a .toml recipe or a name from "
                              "`genlearn recipes`")
        source, name = path, path.stem
    elif name not in files:
        raise ConfigError(f"unknown recipe {name!r}; known: {', '.join(sorted(files))} (see `genlearn recipes`)")
    else:
        source = files[name]
    try:
        raw = tomllib.loads(source.read_text())
    except tomllib.TOMLDecodeError as exc:  # a broken file shipped with the package is a bug, said plainly
        raise ConfigError(f"recipe {name!r} is not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the recipe file {source} ({exc})") from None
    unknown = set(raw) - RECIPE_KEYS
    if unknown or not {"model", "data", "summary"} <= set(raw):
        what = (f"unknown key(s) {', '.join(sorted(unknown))}" if unknown else
                f"no {', '.join(sorted({'model', 'data', 'summary'} - set(raw)))}")
        raise ConfigError(f"recipe {name!r} has {what}; a recipe must have model, data and summary, and only "
                          f"{sorted(RECIPE_KEYS)}")
    for key in ("summary", "model", "data"):
        if not isinstance(raw[key], str):
            raise ConfigError(f"recipe {name!r}: {key} must be a string, got {raw[key]!r}")
    threads = raw.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"recipe {name!r}: threads must be a positive integer, got {threads!r}")
    continues = raw.get("continues")
    if continues is not None and not isinstance(continues, str):
        raise ConfigError(f"recipe {name!r}: continues must be the name of a recipe, got {continues!r}")
    for key in ("model_options", "train", "evaluation", "figure"):
        if not isinstance(raw.get(key, {}), dict):
            raise ConfigError(f"recipe {name!r}: {key} must be a table [{key}] of key = value lines, got "
                              f"{raw[key]!r}")
    _check_settings(name, source, raw["model"], raw.get("model_options", {}), raw.get("train", {}))
    return Recipe(name=name, summary=raw["summary"], model=raw["model"], data=raw["data"],
                  model_options=dict(raw.get("model_options", {})), train=dict(raw.get("train", {})),
                  evaluation=dict(raw.get("evaluation", {})), figure=dict(raw.get("figure", {})),
                  threads=raw.get("threads"), continues=continues)


def _check_settings(name: str, source, model: str, model_options: dict, train: dict) -> None:
    """The recipe's own model and settings, checked when it is read: the family's options (its typed config) and
    the training settings (TrainConfig); a ConfigError names the recipe and its file, so that a bad value is not
    taken for one of the user's flags."""
    from genlearn import options as opts
    from genlearn.learning.trainer import TrainConfig
    from genlearn.models.registry import get_spec

    try:
        get_spec(model).parse_options(model_options)
        opts.parse(TrainConfig, train, "a recipe's [train] table").validate()
    except ConfigError as exc:
        raise ConfigError(f"recipe {name!r} ({source}): {exc}") from None


def list_recipes() -> list[Recipe]:
    return [load_recipe(n) for n in recipe_names()]


__all__ = ["Recipe", "list_recipes", "load_recipe", "recipe_names"]
