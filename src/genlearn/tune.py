"""Model selection by the validation NLL: `genlearn tune`, a hyperparameter search on Optuna.

The validation NLL, -(1/M_v) sum_m log P(x_m|theta) over the valid rows (nats per example), equals
D_KL(Q_v||P_theta) + H(Q_v): minimising it over families and settings minimises the validation KL. Each trial
samples a family and its settings from the family's declared search space (`ModelSpec.search_space`, see
genlearn.search_space) with Optuna's TPE sampler, and is an ordinary `genlearn fit` run folder
DIR/trials/NNNN trained on the train split. The learning curve is reported to a pruner at every evaluation
(the monitored valid NLL), which stops a trial whose best valid NLL so far is worse than the median of the
earlier trials of the same family at the same epoch. The test split is held out of the search: trials get a
data set without it, and only the best trial (lowest final valid NLL) is scored on it, once, at the end.

Storage: Optuna's SQLite database DIR/study.db by default, or any database URL Optuna supports (`storage=`,
e.g. postgresql://...), so that several workers (processes or machines) share one study: trial numbers come
from the database, a worker stops when the study holds `trials` finished or running trials, and a worker that
dies leaves its trial to the heartbeat (failed after a grace period). Running `tune` again on the same DIR
continues the study (the finished trials count; an interrupted trial is recorded as failed, its run folder
kept and resumable with `genlearn fit --resume`; a family's interrupted baseline trial, its default settings,
is queued again).

Outputs in DIR: study.db, trials/NNNN/ (run folders; the best one's metrics.json gains its test NLL),
summary.json (settings, the trials table, the best configuration, its test NLL with a 95% interval), and
best.toml, a recipe that `genlearn fit --recipe DIR/best.toml` re-runs.

Ensembles (`ensemble=K`, `--ensemble K`; the uci preset's K is 16): the equal-weight mixture of the k best
completed trials, P(x) = (1/k) sum_j P_j(x) (genlearn.models.ensemble), with k in 1..K chosen by the valid NLL
alone; on small data the trials' own errors partly cancel (nips, 400 training rows: about 2 nats). When the
chosen k > 1 the mixture is written as DIR/ensemble/ (a run folder for `genlearn eval` / `sample`), the summary's
headline test NLL is the mixture's, and the single best trial's stays under "best". Both are scored from the one
read of the test split, after every choice is made.

Refit (`refit=True`, `--refit`; on in the uci preset): after those choices, the selected trials are trained again
on train + valid, each for its best epoch count (genlearn.tune_refit), into DIR/refit/; the refitted selection is
then the headline (summary "refit", "refitted": true), and the train-only mixture and best trial keep their own
test figures from the same read."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from genlearn import options as opts
from genlearn import search_space as ss
from genlearn.data.refit_rows import without_test
from genlearn.errors import ConfigError, GenlearnError, RunError

STUDY_FILE = "study.db"
SUMMARY_FILE = "summary.json"
RECIPE_FILE = "best.toml"
TRIALS_DIR = "trials"
ENSEMBLE_DIR = "ensemble"
DEFAULT_STUDY = "genlearn-tune"
#: the valid-split keys of a monitoring record, in the trainer's order of preference (its early stopping)
MONITORED_VALID = ("valid_nll", "valid_nll_member", "valid_nll_ais", "valid_nll_is", "valid_neg_elbo")
#: heartbeat of a running trial in the database (seconds), and how long a silent trial lives before it is failed
HEARTBEAT_SECONDS, GRACE_SECONDS = 30, 120
#: a worker stops when this many of its trials in a row failed (diverged, impossible settings)
MAX_FAILURES_IN_A_ROW = 10


@dataclass(frozen=True)
class Preset:
    """A generic search setting: the families searched, the trial count and budgets, the per-trial training
    budget (max_minutes of training time, epochs, patience on the valid NLL) and the pruner's warm-up."""

    summary: str
    families: tuple[str, ...]
    trials: int
    budget_minutes: float | None
    trial_minutes: float
    epochs: int
    patience: int
    warmup_epochs: int
    #: the most trials the final equal-weight ensemble may hold (its size is chosen by the valid NLL; 1: none)
    ensemble: int = 1
    #: refit the selected trials on train + valid for their best epoch count before the test (genlearn.tune_refit)
    refit: bool = False


PRESETS = {
    # Binary tabular data of the UCI / density-estimation-benchmark kind (tens to hundreds of features, hundreds
    # to tens of thousands of rows): the tractable families that hold the published figures there, each over
    # its declared space; trials of at most 10 minutes of training, early stopping after 20 epochs without a
    # better valid NLL. Nothing in it refers to a particular data set.
    "uci": Preset("tractable families for binary tabular data (UCI / density-estimation benchmark kind)",
                  ("fvsbn", "nade", "made", "mixture"), trials=100, budget_minutes=None, trial_minutes=10.0,
                  epochs=100_000, patience=20, warmup_epochs=10, ensemble=16, refit=True),
}
#: used when no preset is given (families come from --families)
DEFAULTS = Preset("", (), trials=20, budget_minutes=None, trial_minutes=5.0, epochs=200, patience=10,
                  warmup_epochs=5)


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("genlearn tune needs Optuna, an optional dependency: pip install 'genlearn[tune]' "
                          "(or pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own lines say what failed
    return optuna


# -- the search space ----------------------------------------------------------------------------------------
def family_spaces(families, space: dict | None = None) -> dict[str, dict[str, ss.Param]]:
    """{family: {setting: Param}}: each family's declared space with the user's entries (`space`, {family:
    {setting: Param}}) on top, checked against the family's config and TrainConfig."""
    from genlearn.learning.trainer import TrainConfig
    from genlearn.models.registry import get_spec

    space = dict(space or {})
    extra = sorted(set(space) - set(families))
    if extra:
        raise ConfigError(f"the search space names {', '.join(map(repr, extra))}, which is not among the searched "
                          f"families ({', '.join(families)}); add it to --families or drop its table")
    out = {}
    for family in families:
        spec = get_spec(family)
        mine = space.get(family, {})
        mine_sets = set(mine) | {k for p in mine.values() for k in p.settings()}
        # a declared one_of entry gives way to the user's entries that set any of its settings
        declared = {k: p for k, p in spec.search_space.items() if k in mine or not (p.settings() & mine_sets)}
        merged = {**declared, **mine}
        out[family] = ss.check_space(merged, spec.config, TrainConfig, family)
    return out


def _pname(family: str, name: str) -> str:
    return f"{family}:{name}"


def _suggest(trial, name: str, p: ss.Param):
    if p.kind == "int":
        return trial.suggest_int(name, int(p.low), int(p.high), log=p.log)
    if p.kind == "float":
        return trial.suggest_float(name, float(p.low), float(p.high), log=p.log)
    if p.kind == "choice":
        return trial.suggest_categorical(name, list(p.choices))
    if p.kind == "one_of":
        return p.chosen(trial.suggest_categorical(name, p.labels()))
    return p.value


def _suggest_all(trial, family: str, space: dict) -> dict:
    """{setting: value} of one trial: each entry suggested; a one_of entry contributes its chosen settings."""
    values = {}
    for name, p in space.items():
        value = _suggest(trial, _pname(family, name), p)
        if p.kind == "one_of":
            values.update(value)
        else:
            values[name] = value
    return values


def _baseline(family: str, space: dict) -> dict:
    """The enqueued first trial of a family: its own defaults where the space allows them (else the geometric or
    arithmetic middle of a range, the first choice), so every family is tried at least once."""
    from genlearn.learning.trainer import TrainConfig
    from genlearn.models.registry import get_spec

    spec = get_spec(family)
    fields = {f.name: f.default for f in dataclasses.fields(spec.config)}
    fields.update({f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name not in fields})
    fields.update(spec.train_defaults)
    params = {"family": family}
    for name, p in space.items():
        default = _unwrap(fields.get(name))
        if p.kind in ("int", "float"):
            if isinstance(default, (int, float)) and not isinstance(default, bool) and p.low <= default <= p.high:
                value = default
            else:
                value = math.sqrt(p.low * p.high) if p.log else (p.low + p.high) / 2
            params[_pname(family, name)] = int(round(value)) if p.kind == "int" else float(value)
        elif p.kind == "choice":
            params[_pname(family, name)] = default if default in p.choices else p.choices[0]
        elif p.kind == "one_of":  # the set that keeps the family's defaults, else the first
            keeps = [c for c in p.choices if all(_unwrap(fields.get(k)) == v for k, v in c)]
            params[_pname(family, name)] = ss.option_set_label((keeps or p.choices)[0])
    return params


def _unwrap(value):
    return value[0] if isinstance(value, tuple) and len(value) == 1 else value


def _describe_space(spaces: dict) -> dict:
    return {f: {k: p.describe() for k, p in sorted(s.items())} for f, s in spaces.items()}


# -- pruning -------------------------------------------------------------------------------------------------
def _family_median_pruner(optuna, n_startup_trials: int, n_warmup_steps: int):
    """A median-stopping pruner that compares a trial only with earlier trials of its own family (families learn
    at different speeds per epoch): prune at epoch t when the trial's best valid NLL up to t is worse than the
    median of the best-up-to-t of at least n_startup_trials finished or pruned trials of the family."""

    class FamilyMedianPruner(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            step = trial.last_step
            if step is None or step < n_warmup_steps:
                return False
            family = trial.params.get("family")
            mine = [v for s, v in trial.intermediate_values.items() if s <= step and math.isfinite(v)]
            if not mine:
                return False
            states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            refs = []
            for t in study.get_trials(deepcopy=False, states=states):
                if t.params.get("family") != family:
                    continue
                values = [v for s, v in t.intermediate_values.items() if s <= step and math.isfinite(v)]
                if values:
                    refs.append(min(values))
            if len(refs) < n_startup_trials:
                return False
            refs.sort()
            k = len(refs)
            median = refs[k // 2] if k % 2 else (refs[k // 2 - 1] + refs[k // 2]) / 2
            return min(mine) > median

    return FamilyMedianPruner()


# -- the study -----------------------------------------------------------------------------------------------
class _Surplus(Exception):
    """A trial started after the study already held its `trials` (another worker took the last slot)."""


def _storage(optuna, url: str):
    kwargs = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}  # several workers wait for the write lock
    import warnings

    error = None
    for _ in range(20):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the heartbeat is marked experimental
                return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS,
                                                  grace_period=GRACE_SECONDS, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any driver error (no such database, driver missing) is one line
            error = exc
            if "UNIQUE constraint" not in str(exc) and "already exists" not in str(exc):
                break
            time.sleep(0.25)  # two workers creating the tables of a new database at once: the other one won
    first = str(error).splitlines()[0] if str(error) else ""
    raise ConfigError(f"cannot open the study storage {_redact(url)} ({type(error).__name__}: {first}); give a "
                      "database URL Optuna supports, e.g. sqlite:///DIR/study.db or postgresql://user:password@host/db")


def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _counted(optuna, study) -> int:
    """Trials that count towards the study's total: finished (complete or pruned) or running, not surplus."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)
    return sum(1 for t in study.get_trials(deepcopy=False, states=states) if not t.user_attrs.get("surplus"))


def _resolve(preset: str | None, families, trials, budget_minutes, trial_minutes, epochs, patience,
             ensemble=None, refit=None) -> dict:
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    base = PRESETS[preset] if preset else DEFAULTS
    if isinstance(families, str):
        families = [f.strip() for f in families.split(",") if f.strip()]
    families = tuple(families) if families else base.families
    if not families:
        raise ConfigError("say which families to search with --families (e.g. --families nade,made,fvsbn,mixture), "
                          "or give --preset uci")
    if len(set(families)) != len(families):
        raise ConfigError(f"--families lists a family twice: {','.join(families)}")
    settings = {"families": families,
                "trials": base.trials if trials is None else trials,
                "budget_minutes": base.budget_minutes if budget_minutes is None else budget_minutes,
                "trial_minutes": base.trial_minutes if trial_minutes is None else trial_minutes,
                "epochs": base.epochs if epochs is None else epochs,
                "patience": base.patience if patience is None else patience,
                "warmup_epochs": base.warmup_epochs,
                "ensemble": base.ensemble if ensemble is None else ensemble,
                "refit": base.refit if refit is None else refit}
    if not isinstance(settings["refit"], bool):
        raise ConfigError(f"refit must be true or false, got {settings['refit']!r}")
    for name, low in (("trials", 1), ("epochs", 1), ("patience", 1), ("ensemble", 1)):
        v = settings[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"--{name} must be a positive integer, got {v!r}")
    for name in ("budget_minutes", "trial_minutes"):
        v = settings[name]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0
                              or not math.isfinite(v)):
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive number of minutes, got {v!r}")
    if settings["trials"] < len(settings["families"]):  # each family's baseline is a trial: some never run
        import warnings

        left = settings["families"][settings["trials"]:]
        warnings.warn(f"--trials {settings['trials']} is fewer than the {len(settings['families'])} families: each "
                      f"family's first trial is its default settings, and {', '.join(left)} will get none; give "
                      "--trials at least that many to try every family", UserWarning, stacklevel=3)
    return settings


@dataclass
class TuneResult:
    """What `tune` returns: the summary written to DIR/summary.json, the study, and the best trial's run."""

    summary: dict
    study: object
    best_run: object
    out: Path


def tune(data, *, out, families=None, trials: int | None = None, budget_minutes: float | None = None,
         preset: str | None = None, space: dict | None = None, storage: str | None = None,
         study_name: str = DEFAULT_STUDY, trial_minutes: float | None = None, epochs: int | None = None,
         patience: int | None = None, data_dir=None, seed: int | None = None, prune: bool = True,
         ensemble: int | None = None, refit: bool | None = None, log=None) -> TuneResult:
    """Search families and settings by the validation NLL (see the module docstring); returns a TuneResult.

    data: a spec ("adult", "PATH/nltcs", "PATH/nltcs.train.data", an npz with train/valid/test) or a Dataset
    with a valid split. families: names or "a,b,c" (default: the preset's). trials: the study's total number of
    finished (complete or pruned) trials, over every worker and re-run. budget_minutes: wall time of this call
    after which no new trial starts (and which caps each trial's training time). trial_minutes: each trial's
    training time, and its wall time with the monitoring (checked after every epoch); epochs / patience: its
    other bounds. space: {family: {setting: Param}} on top of the declared spaces. ensemble: the most trials in
    the final equal-weight ensemble (size chosen by the valid NLL; 1: the best trial alone; default: the preset's).
    refit: train the selected trials again on train + valid, for their best epoch counts, and score those on the
    test split (genlearn.tune_refit; default: the preset's).
    storage: an Optuna database URL (default sqlite:///OUT/study.db). seed: the TPE sampler's seed (give
    different workers different seeds). log: a function of one string for progress lines (None: silent)."""
    optuna = _optuna()
    from genlearn.data.dataset import Dataset
    from genlearn.data.registry import load_dataset
    from genlearn.models.registry import get_spec, model_size

    t_start = time.perf_counter()
    say = log or (lambda text: None)
    settings = _resolve(preset, families, trials, budget_minutes, trial_minutes, epochs, patience, ensemble, refit)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        raise ConfigError(f"--seed of the TPE sampler must be an integer in [0, 2^32 - 1], got {seed!r}")
    if not isinstance(study_name, str) or not study_name.strip():
        raise ConfigError(f"--study-name must be a non-empty name, got {study_name!r}")
    families = settings["families"]
    spaces = family_spaces(families, space)
    if isinstance(data, Dataset):
        dataset, spec = data, data.settings.get("spec")
    elif isinstance(data, str) and data.strip():
        dataset, spec = load_dataset(data, data_dir), data
    else:
        raise ConfigError("say which data to tune on with --data (a name, a file, or a folder of "
                          "NAME.train/valid/test.data files)")
    for family in families:
        kinds = get_spec(family).data_kinds
        if dataset.kind not in kinds:
            raise ConfigError(f"model {family!r} needs {' or '.join(kinds)} data, but {dataset.name!r} is "
                              f"{dataset.kind}; drop it from --families")
        try:  # the family's own checks of the data's shape (e.g. bernoulli: one variable), on the meta device
            model_size(family, dataset)
        except GenlearnError as e:
            raise ConfigError(f"model {family!r} cannot be fitted to {dataset.name!r}: {e}; drop it from --families"
                              ) from None
    if dataset.valid is None:
        raise ConfigError(f"data set {dataset.name!r} has no valid split, and tune selects by the validation NLL; "
                          "give pre-split data (NAME.valid.data) or a file that genlearn splits")
    search = without_test(dataset)
    if settings["refit"]:
        from genlearn.tune_refit import check_refittable

        check_refittable(search)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; give a folder")
    if out.is_dir() and not (out / TRIALS_DIR).is_dir() and any(out.iterdir()):
        names = sorted(p.name for p in out.iterdir())
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise RunError(f"--out {out} holds files ({shown}) and is not a study's folder (it has no {TRIALS_DIR}/); "
                       "tune writes summary.json and best.toml there: give a new or empty folder, or a study's "
                       "folder to continue it")
    created = not out.exists()
    (out / TRIALS_DIR).mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out / STUDY_FILE).resolve()}"
    record = {"data": spec, "dataset": dataset.name, "families": list(families), "space": _describe_space(spaces)}
    try:
        study = _open_study(optuna, url, study_name, record, spaces, seed, prune, settings["warmup_epochs"])
    except BaseException:
        if created:  # the study could not be opened: no --out folder is left behind
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # marked experimental
        optuna.storages.fail_stale_trials(study)  # trials of dead workers (no heartbeat for GRACE_SECONDS) fail
    for number in _requeue_baselines(optuna, study):
        say(f"trial {number:4d} was a family's baseline and was interrupted: queued again")

    def objective(trial):
        return _run_trial(optuna, trial, study, search, spec, data_dir, spaces, settings, out, t_start, say)

    # one trial at a time, so that the count is checked between trials (several workers share the study)
    failures = 0
    while True:
        if settings["budget_minutes"] is not None and _left_seconds(settings, t_start) < 1.0:
            say(f"tune: the budget of {settings['budget_minutes']:g} min is spent")
            break
        if _counted(optuna, study) >= settings["trials"]:
            break
        study.optimize(objective, n_trials=1, catch=(GenlearnError, _Surplus))
        mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == _worker()]
        last = mine[-1] if mine else None
        failures = failures + 1 if last is not None and "error" in last.user_attrs else 0
        if failures >= MAX_FAILURES_IN_A_ROW:
            raise RunError(f"{failures} trials in a row failed; the last: {last.user_attrs['error']} "
                           f"(see {out / TRIALS_DIR}); narrow the search space (--space) or drop the family")

    return _finish(optuna, study, dataset, search, spec, data_dir, settings, spaces, url, study_name, out,
                   t_start, say)


def _open_study(optuna, url: str, name: str, record: dict, spaces: dict, seed, prune: bool, warmup: int):
    """Create the study (enqueueing one baseline trial per family) or load it, refusing one of other settings."""
    import warnings

    storage = _storage(optuna, url)
    def tpe(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multivariate / group TPE are marked experimental
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)

    sampler = tpe(seed)
    pruner = (_family_median_pruner(optuna, n_startup_trials=3, n_warmup_steps=warmup) if prune
              else optuna.pruners.NopPruner())
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize", sampler=sampler,
                                    pruner=pruner)
        study.set_user_attr("genlearn", record)
        for family, space in spaces.items():
            study.enqueue_trial(_baseline(family, space), user_attrs={"baseline": True}, skip_if_exists=True)
        return study
    except optuna.exceptions.DuplicatedStudyError:
        pass
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    if seed is not None:  # a continuation: seed + trials so far, else its random start-up draws repeat the first run's
        study.sampler = tpe(int(seed) + len(study.get_trials(deepcopy=False)))
    saved = study.user_attrs.get("genlearn")
    if saved is None:  # another worker created it a moment ago and has not written its settings yet
        for _ in range(50):
            time.sleep(0.1)
            saved = optuna.load_study(study_name=name, storage=storage).user_attrs.get("genlearn")
            if saved is not None:
                break
    if saved is not None:
        for key, what in (("families", "--families"), ("space", "search space"), ("data", "--data")):
            if json.dumps(saved.get(key), sort_keys=True) != json.dumps(record.get(key), sort_keys=True):
                raise ConfigError(f"the study {name!r} in {_redact(url)} was started with another {what} "
                                  f"({saved.get(key) if key != 'space' else 'its spaces are in its summary.json'}); "
                                  "re-run it with the same settings, or give another --out / --study-name")
    return study


def _requeue_baselines(optuna, study) -> list[int]:
    """Queue again each baseline trial (a family's default settings, enqueued when the study was created) that
    failed without an error of its own (interrupted, or its worker died) and has no other trial of the same
    settings waiting, running or done: a continuation would otherwise never fit it. Returns their numbers."""
    failed = optuna.trial.TrialState.FAIL
    trials = study.get_trials(deepcopy=False)

    def params(t):
        return dict(t.system_attrs.get("fixed_params", t.params))

    alive = [params(t) for t in trials if t.user_attrs.get("baseline") and t.state != failed]
    requeued = []
    for t in trials:
        if t.user_attrs.get("baseline") and t.state == failed and "error" not in t.user_attrs \
                and params(t) not in alive:
            study.enqueue_trial(params(t), user_attrs={"baseline": True, "requeued_from": t.number})
            alive.append(params(t))
            requeued.append(t.number)
    return requeued


def _left_seconds(settings: dict, t_start: float) -> float:
    if settings["budget_minutes"] is None:
        return math.inf
    return 60.0 * settings["budget_minutes"] - (time.perf_counter() - t_start)


def _run_trial(optuna, trial, study, search, spec, data_dir, spaces, settings, out: Path, t_start, say):
    """One trial: sample a family and its settings, fit a run folder on train (monitored on valid, reported to
    the pruner), return its final valid NLL (nats per example)."""
    from genlearn.learning.rules import make_rule
    from genlearn.learning.trainer import TrainConfig
    from genlearn.models.registry import rule_for
    from genlearn.runs import fit

    earlier = [t for t in study.get_trials(deepcopy=False, states=(
        optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING))
        if t.number < trial.number and not t.user_attrs.get("surplus")]
    if len(earlier) >= settings["trials"]:
        trial.set_user_attr("surplus", True)
        raise _Surplus(f"trial {trial.number}: the study already holds {settings['trials']} trials")
    family = trial.suggest_categorical("family", list(spaces))
    values = _suggest_all(trial, family, spaces[family])
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    train = {"epochs": settings["epochs"], "patience": settings["patience"], "keep_best": True,
             "seed": trial.number, "max_minutes": settings["trial_minutes"], "progress": False}
    left = _left_seconds(settings, t_start) / 60.0
    if left < train["max_minutes"]:
        train["max_minutes"] = max(left, 0.05)
    train.update({k: v for k, v in values.items() if k in train_names})
    model_options = {k: opts.convert(_config(family), k, v) for k, v in values.items() if k not in train_names}
    try:
        one_pass = make_rule(*rule_for(family, **model_options)).one_pass
    except GenlearnError:  # settings the family refuses: the fit below raises it again, as this trial's error
        one_pass = False
    if one_pass:  # a closed form: one epoch, nothing to stop early
        for key in ("epochs", "patience", "keep_best"):
            train.pop(key, None)
    run_dir = out / TRIALS_DIR / f"{trial.number:04d}"
    trial.set_user_attr("run", str(run_dir.relative_to(out)))
    trial.set_user_attr("worker", _worker())
    trial.set_user_attr("model_options", opts_json(model_options))
    trial.set_user_attr("train", opts_json({k: v for k, v in train.items() if k != "progress"}))

    def report(trainer, rec):
        if _clock() - t0 >= 60.0 * train["max_minutes"]:
            # the trial's wall time (training and monitoring) is spent: the trainer stops after this epoch, as
            # at the end of its training-time budget (an exact evaluation can cost far more than an epoch)
            trainer.state.out_of_time = True
        value = next((rec[k] for k in MONITORED_VALID if rec.get(k) is not None), None)
        if value is None or not math.isfinite(value):
            return
        trial.report(float(value), step=int(rec["epoch"]))
        if trial.should_prune():
            trial.set_user_attr("pruned_at_epoch", int(rec["epoch"]))
            raise optuna.TrialPruned(f"pruned at epoch {rec['epoch']}: valid NLL {value:.4f}")

    t0 = _clock()
    try:
        run = fit(family, search, out=run_dir, overwrite=True, data_spec=spec, data_dir=data_dir,
                  callbacks=[report], plots=False, **train, **model_options)
    except optuna.TrialPruned:
        say(f"trial {trial.number:4d} {family:18s} pruned at epoch {trial.user_attrs.get('pruned_at_epoch')} "
            f"({_clock() - t0:.0f} s)")
        raise
    except KeyboardInterrupt:
        trial.set_user_attr("interrupted", True)
        raise
    except GenlearnError as exc:
        trial.set_user_attr("error", str(exc))
        say(f"trial {trial.number:4d} {family:18s} failed: {exc}")
        raise
    m = run.metrics
    valid = m.get("valid_nll")
    for key in ("train_nll", "valid_nll", "epochs_run", "best_epoch", "wall_seconds", "n_parameters",
                "valid_nll_method"):
        if m.get(key) is not None:
            trial.set_user_attr(key, m[key])
    if valid is None or not math.isfinite(valid):
        raise GenlearnError(f"trial {trial.number}: no finite valid NLL ({m.get('valid_nll_method')})")
    say(f"trial {trial.number:4d} {family:18s} valid NLL {valid:.4f} ({m.get('epochs_run')} epochs, "
        f"{_clock() - t0:.0f} s)")
    return float(valid)


def _clock() -> float:
    """Seconds (time.perf_counter), the clock of a trial's wall-time budget."""
    return time.perf_counter()


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _config(family: str):
    from genlearn.models.registry import get_spec

    return get_spec(family).config


def opts_json(values: dict) -> dict:
    """JSON-ready option values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


# -- the end: test once, summary, recipe ---------------------------------------------------------------------
def score_test(model, dataset) -> dict:
    """Test NLL of `model` (nats per example) from ONE read of dataset.test: the mean of -log P(x_m) over the test
    rows, its standard error std/sqrt(M) and the 95% interval mean +- 1.96 stderr (the sampling error over test
    rows; for an energy model with an estimated log Z, that estimate's own bracket is reported beside it)."""
    x = dataset.test
    if x is None:
        raise ConfigError(f"data set {dataset.name!r} has no test split to score the best trial on")
    return score_rows(model, x)


def score_rows(model, x) -> dict:
    """score_test's figures on the rows x (nats per example): mean -log P, stderr, 95% interval, method."""
    import torch

    from genlearn.likelihood import log_likelihoods
    from genlearn.models.base import EnergyModel, LatentVariableModel

    with torch.no_grad():
        logp, log_z = log_likelihoods(model, x)
    nll = -logp.double()
    m = nll.shape[0]
    mean = float(nll.mean())
    stderr = float(nll.std(unbiased=True)) / math.sqrt(m) if m > 1 else math.nan
    out = {"test_nll": mean, "test_nll_stderr": stderr, "test_nll_ci95": [mean - 1.96 * stderr, mean + 1.96 * stderr],
           "test_rows": m, "test_bits_per_dim": mean / (math.log(2) * model.n_features)}
    if isinstance(model, LatentVariableModel):
        out["test_nll_method"] = "importance-sampling"
    elif isinstance(model, EnergyModel):  # -F(x) - log Z: log Z exact or estimated (with its bracket)
        out["test_nll_method"] = f"log Z {log_z.method}"
        out["log_z"], out["log_z_lower"], out["log_z_upper"] = log_z.value, log_z.lower, log_z.upper
    else:
        out["test_nll_method"] = "exact"
    return out


def _trial_rows(optuna, study) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus") or t.state == optuna.trial.TrialState.WAITING:  # never started: no trial
            continue
        a = t.user_attrs
        rows.append({"number": t.number, "state": t.state.name.lower(), "family": t.params.get("family"),
                     "valid_nll": t.value, "train_nll": a.get("train_nll"), "epochs_run": a.get("epochs_run"),
                     "pruned_at_epoch": a.get("pruned_at_epoch"), "wall_seconds": a.get("wall_seconds"),
                     "model_options": a.get("model_options"), "train": a.get("train"), "run": a.get("run"),
                     "worker": a.get("worker"), "baseline": bool(a.get("baseline")),
                     **({"error": a["error"]} if "error" in a else {}),
                     **({"interrupted": True} if a.get("interrupted") else {})})
    return rows


def _relabel_earlier_best(complete, best, out: Path) -> None:
    """A continued study that chose another best trial: the test figure an earlier run of the study scored on its
    best trial stays (the test split was read for it) under a label that says it is no longer the study's choice."""
    from genlearn.learning import checkpoint as ckpt

    for trial in complete:
        if trial.number == best.number or "run" not in trial.user_attrs:
            continue
        path = out / trial.user_attrs["run"] / "metrics.json"
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        label = metrics.get("test_scored_by")
        if isinstance(label, str) and label.startswith("genlearn tune (best of the study"):
            metrics["test_scored_by"] = (f"genlearn tune, as the best trial of the study then (a continuation has "
                                         f"since chosen trial {best.number}: its test figure is the study's)")
            ckpt.write_json(path, metrics)


def _finish(optuna, study, dataset, search, spec, data_dir, settings, spaces, url, study_name, out: Path,
            t_start: float, say) -> TuneResult:
    from genlearn.learning import checkpoint as ckpt
    from genlearn.runs import _finite, load_run, write_plots

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        ran = len([t for t in study.get_trials(deepcopy=False) if t.state != optuna.trial.TrialState.WAITING])
        if not ran:  # the queued baselines wait for a trial that never started
            raise RunError(f"no trial of the study {study_name!r} started: the --budget-minutes was spent first; "
                           "give a larger --budget-minutes")
        raise RunError(f"no trial of the study {study_name!r} completed ({ran} trial(s) ran and none completed; see "
                       f"{out / TRIALS_DIR}); give a larger --budget-minutes or --trial-minutes, or more --trials")
    best = min(complete, key=lambda t: t.value)
    run_dir = out / best.user_attrs["run"]
    run = load_run(run_dir)
    # every choice (the best trial, the ensemble's size) is made on the valid split before the test split is read
    chosen = choose_ensemble(complete, out, search, settings["ensemble"], say) if settings["ensemble"] > 1 else None
    refits = _refit(complete, best, chosen, out, search, spec, data_dir, say) if settings["refit"] else None
    x_test = dataset.test  # the one read of the test split
    if x_test is None:
        raise ConfigError(f"data set {dataset.name!r} has no test split to score the best trial on")
    _relabel_earlier_best(complete, best, out)
    test = score_rows(run.model, x_test)
    metrics = dict(run.metrics)
    metrics.update(test)
    metrics["test_scored_by"] = "genlearn tune (best of the study by valid NLL; test read once)"
    ckpt.write_json(run_dir / "metrics.json", _finite(metrics))
    write_plots(run.model, search, metrics.get("history") or [], run_dir)
    family = best.params["family"]
    best_cfg = {"trial": best.number, "family": family, "valid_nll": best.value,
                "train_nll": best.user_attrs.get("train_nll"), "model_options": best.user_attrs["model_options"],
                "train": best.user_attrs["train"], "run": best.user_attrs["run"]}
    rows = _trial_rows(optuna, study)
    states = [r["state"] for r in rows]
    wall = time.perf_counter() - t_start
    summary = {"study": study_name, "storage": _redact(url), "data": spec, "data_dir": data_dir,
               "dataset": search.describe() | {"sizes": {**search.sizes(), "test": test["test_rows"]}},
               "families": list(settings["families"]),
               "settings": {k: v for k, v in settings.items() if k != "families"},
               "space": _describe_space(spaces), "selection": "lowest final valid NLL (nats per example)",
               "n_trials": len(rows), "n_complete": states.count("complete"), "n_pruned": states.count("pruned"),
               "n_failed": states.count("fail"), "best": best_cfg, **test,
               "units": "nats per example", "wall_seconds": wall,
               "trial_seconds_total": sum(r["wall_seconds"] or 0.0 for r in rows),
               "recipe": RECIPE_FILE, "trials": rows}
    if chosen is not None:
        summary["selected"] = "best trial"
        summary["ensemble"] = {k: v for k, v in chosen.items() if k != "model"}
        if chosen["k"] > 1:
            ens_test = score_rows(chosen["model"], x_test)
            write_ensemble(out / ENSEMBLE_DIR, chosen, search, spec, data_dir, ens_test)
            summary["best"].update({k: test[k] for k in ("test_nll", "test_nll_stderr", "test_nll_ci95")})
            summary["ensemble"].update({"run": ENSEMBLE_DIR, **ens_test})
            summary.update({"selected": "ensemble", **ens_test})
    if refits is not None:
        _score_refit(refits, summary, test, x_test, out, search, spec, data_dir)
    else:
        from genlearn.tune_refit import remove_stale

        remove_stale(out)
    if summary.get("selected") != "ensemble" and (out / ENSEMBLE_DIR).is_dir():
        import shutil  # an earlier end of this study chose a mixture that this one does not: it is not the result

        shutil.rmtree(out / ENSEMBLE_DIR)
    ckpt.write_json(out / SUMMARY_FILE, _finite(summary))
    recipe_text = recipe_toml(best_cfg, spec, dataset.name, test, len(rows))
    ckpt.atomic_write_bytes(out / RECIPE_FILE, lambda tmp: Path(tmp).write_text(recipe_text))
    say(f"tune: best trial {best.number} ({family}) valid NLL {best.value:.4f}, test NLL {test['test_nll']:.4f} "
        f"+- {1.96 * test['test_nll_stderr']:.4f}; {out / SUMMARY_FILE}, recipe {out / RECIPE_FILE}")
    if "refit" in summary:
        r = summary["refit"]
        say(f"tune: the selection refitted on {r['rows']} rows (train + valid): test NLL {r['test_nll']:.4f} "
            f"+- {1.96 * r['test_nll_stderr']:.4f}; {out / r['run']}")
    if summary.get("selected") == "ensemble":
        e = summary["ensemble"]
        say(f"tune: selected the ensemble of the {e['k']} best trials, valid NLL {e['valid_nll']:.4f}, test NLL "
            f"{e['test_nll']:.4f} +- {1.96 * e['test_nll_stderr']:.4f}; {out / ENSEMBLE_DIR}")
    return TuneResult(_finite(summary), study, run, out)


def _refit(complete, best, chosen, out: Path, search, spec, data_dir, say) -> list[dict]:
    """The selection (the chosen ensemble's members, else the best trial) refitted on train + valid."""
    from genlearn.tune_refit import refit_trials

    numbers = [m["trial"] for m in chosen["members"]] if chosen is not None and chosen["k"] > 1 else [best.number]
    by_number = {t.number: t for t in complete}
    trials = [{"trial": n, "family": by_number[n].params["family"], "run": by_number[n].user_attrs["run"],
               "model_options": by_number[n].user_attrs["model_options"], "train": by_number[n].user_attrs["train"]}
              for n in numbers]
    return refit_trials(trials, out, search, spec, data_dir, say)


def _score_refit(refits: list[dict], summary: dict, test: dict, x_test, out: Path, search, spec, data_dir) -> None:
    """Score the refitted selection on the test rows already read; write its run folder's figures; make it the
    summary's headline (the best trial keeps its own test figures under "best")."""
    from genlearn.learning import checkpoint as ckpt
    from genlearn.models.ensemble import Ensemble
    from genlearn.runs import _finite
    from genlearn.tune_refit import REFIT_DIR, refit_data

    models = [r["model"] for r in refits]
    model = Ensemble(models) if len(models) > 1 else models[0]
    figures = score_rows(model, x_test)
    records = [{k: v for k, v in r.items() if k != "model"} for r in refits]
    if len(models) > 1:
        run = f"{REFIT_DIR}/{ENSEMBLE_DIR}"
        write_ensemble(out / run, {"k": len(models), "members": records, "model": model,
                                   "selection": "the selected trials refitted on train + valid"},
                       refit_data(search), spec, data_dir, figures)
    else:
        run = records[0]["run"]
        path = out / run / "metrics.json"
        metrics = json.loads(path.read_text())
        metrics.update(figures)
        metrics["test_scored_by"] = "genlearn tune (the best trial refitted on train + valid; test read once)"
        ckpt.write_json(path, _finite(metrics))
    summary["best"].update({k: test[k] for k in ("test_nll", "test_nll_stderr", "test_nll_ci95")})
    summary["refit"] = {"run": run, "rows": records[0]["rows"], "members": records,
                        "epochs": "each trial's best epoch (its early-stopping point on valid)", **figures}
    summary.update({"refitted": True, **figures})


def choose_ensemble(complete: list, out: Path, search, k_max: int, say) -> dict | None:
    """The equal-weight mixture of the k best completed trials (by final valid NLL) with the lowest valid NLL,
    k in 1..k_max: mean over the valid rows of -log (1/k) sum_{j<=k} P_j(x) (nats per example). Trials whose model
    has no exact log P(x) (energy, latent-variable) or whose run folder is not here are left out. Returns {"k",
    "members", "valid_nll", "valid_nll_by_k", "model", ...} (k = 1: no mixture beat the best trial; "model" is then
    None), or None when fewer than two trials can be members. Reads the valid split only."""
    import torch

    from genlearn.models.base import EnergyModel, LatentVariableModel
    from genlearn.models.ensemble import Ensemble
    from genlearn.runs import load_run

    members, left_out = [], []
    for t in sorted(complete, key=lambda t: t.value):
        if len(members) == k_max:
            break
        try:  # a trial of a worker on another machine (a shared --storage) has its folder there
            model = load_run(out / t.user_attrs["run"]).model
        except GenlearnError as exc:
            left_out.append({"trial": t.number, "why": str(exc)[:200]})
            continue
        if isinstance(model, (EnergyModel, LatentVariableModel)) or not model.tractable:
            left_out.append({"trial": t.number, "why": f"{model.name}: no exact log P(x)"})
            continue
        members.append((t, model))
    if len(members) < 2:
        return None
    with torch.no_grad():
        logp = torch.stack([model.log_prob(search.valid).double() for _, model in members])
    by_k = [float(-(torch.logsumexp(logp[:k], dim=0) - math.log(k)).mean()) for k in range(1, len(members) + 1)]
    k = 1 + min(range(len(by_k)), key=lambda i: by_k[i])
    chosen = {"k": k, "k_max": k_max, "valid_nll": by_k[k - 1], "valid_nll_by_k": by_k,
              "members": [{"trial": t.number, "family": t.params.get("family"), "valid_nll": t.value,
                           "run": t.user_attrs["run"]} for t, _ in members[:k]],
              "left_out_trials": left_out,
              "selection": "the k best completed trials by valid NLL, k with the lowest valid NLL of their mixture",
              "model": Ensemble([model for _, model in members[:k]]) if k > 1 else None}
    say(f"tune: valid NLL of the mixture of the k best trials, k = 1..{len(by_k)}: "
        + ", ".join(f"{v:.3f}" for v in by_k) + f"; k = {k}")
    return chosen


def write_ensemble(folder: Path, chosen: dict, search, spec, data_dir, test: dict) -> None:
    """The chosen ensemble as a run folder `folder` (replaced if there): model.safetensors (every member's
    parameters), checkpoint.json (the members' families and configs, the data) and metrics.json (train and
    valid NLL, the test figures, the members), which `genlearn eval` / `sample` and load_run read back."""
    import shutil

    import torch
    from safetensors.torch import save_file

    from genlearn.evaluation import evaluate
    from genlearn.learning import checkpoint as ckpt
    from genlearn.runs import _finite

    model = chosen["model"]
    record = {k: v for k, v in chosen.items() if k != "model"}
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    ckpt.atomic_write_bytes(folder / "model.safetensors", lambda tmp: save_file(state, tmp))
    meta = {"model": model.name, "model_config": model.config(), "dataset": search.name, "data_spec": spec,
            "data_dir": None if data_dir is None else str(data_dir),
            "rule": {"name": "maximum-likelihood", "settings": {}}, "ensemble": record}
    ckpt.write_json(folder / "checkpoint.json", _finite(meta))
    with torch.no_grad():
        figures = evaluate(model, search)  # train and valid (the search's data set has no test split)
    metrics = {"model": model.name, "dataset": search.name, "data": search.describe(), "model_config": model.config(),
               "n_parameters": sum(p.numel() for p in model.parameters()), **figures, **test,
               "test_scored_by": "genlearn tune (ensemble chosen by valid NLL; test read once)",
               "evaluation": {"partition": "auto"}, "ensemble": record,
               "units": "nats per example (bits_per_dim in bits per dimension)"}
    ckpt.write_json(folder / "metrics.json", _finite(metrics))


def _data_for_recipe(spec: str | None, name: str) -> str:
    """The data spec a recipe can re-load: a path made absolute (the recipe may be run from elsewhere)."""
    from genlearn.data.files import split_files_of
    from genlearn.data.sources import SOURCES, parse_spec

    if not spec:
        return name
    head, sep, rest = spec.partition(":")
    if parse_spec(spec)[0] not in SOURCES and (Path(head).exists() or split_files_of(head)):
        return str(Path(head).resolve()) + sep + rest
    return spec


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))  # a basic TOML string: JSON's escapes are TOML's


def recipe_toml(best: dict, spec: str | None, dataset_name: str, test: dict, n_trials: int) -> str:
    """The best configuration as a recipe file (genlearn.recipes format) that `genlearn fit --recipe FILE`
    re-runs: family, data, model options, training settings and the figure it produced."""
    summary = f"best of genlearn tune ({n_trials} trials) on {dataset_name}: {best['family']}"
    lines = [f"summary = {_toml_value(summary)}",
             f"model = {_toml_value(best['family'])}", f"data = {_toml_value(_data_for_recipe(spec, dataset_name))}",
             "", "[model_options]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in sorted(best["model_options"].items()) if v is not None]
    lines += ["", "[train]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in sorted(best["train"].items()) if v is not None]
    lines += ["", "[figure]", 'metric = "test_nll"', f"value = {_toml_value(round(test['test_nll'], 4))}",
              f"ci95 = {_toml_value([round(v, 4) for v in test['test_nll_ci95']])}",
              f"valid_nll = {_toml_value(round(best['valid_nll'], 4))}", 'split = "test"',
              f"source = {_toml_value('genlearn tune, trial ' + str(best['trial']))}", ""]
    return "\n".join(lines)


# -- the command ---------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `genlearn tune`."""
    p.add_argument("--data", metavar="DATASET",
                   help="NAME[:key=value,...], a file, a folder of NAME.train/valid/test.data files, one of those "
                        "files or their prefix DIR/NAME, or an .npz with train/valid/test arrays")
    p.add_argument("--data-dir", metavar="DIR", help="where named real data sets live (or env GENLEARN_DATA)")
    p.add_argument("--families", metavar="A,B,...",
                   help="model families to search (e.g. nade,made,fvsbn,mixture,rbm; default: the preset's)")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="a generic setting: " + "; ".join(f"{k}: {v.summary}" for k, v in PRESETS.items()))
    p.add_argument("--trials", metavar="N", help="finished trials in the study, over all workers and re-runs "
                   f"(default {DEFAULTS.trials}; uci {PRESETS['uci'].trials})")
    p.add_argument("--budget-minutes", metavar="M", help="wall time of this worker after which no trial starts "
                   "(default none)")
    p.add_argument("--trial-minutes", metavar="M", help="time of one trial: its training, and its wall time "
                   "with the monitoring (default "
                   f"{DEFAULTS.trial_minutes:g}; uci {PRESETS['uci'].trial_minutes:g})")
    p.add_argument("--epochs", metavar="N", help=f"epochs of one trial (default {DEFAULTS.epochs}; uci: "
                   "bounded by --trial-minutes)")
    p.add_argument("--patience", metavar="N", help="early stopping of one trial: epochs without a better valid NLL "
                   f"(default {DEFAULTS.patience}; uci {PRESETS['uci'].patience})")
    p.add_argument("--space", metavar="FILE", help="a TOML file of search ranges over the families' own, one "
                   "table per family: hidden = {low = 16, high = 256, log = true}, activation = [\"relu\", "
                   "\"tanh\"], batch_size = 100")
    p.add_argument("--out", metavar="DIR", help="output folder: study.db, trials/, summary.json, best.toml "
                   "(default runs/tune-DATASET)")
    p.add_argument("--storage", metavar="URL", help="Optuna database URL shared by several workers (default "
                   "sqlite:///OUT/study.db), e.g. postgresql://user:password@host/db")
    p.add_argument("--study-name", metavar="NAME", default=DEFAULT_STUDY, help=f"(default {DEFAULT_STUDY})")
    p.add_argument("--seed", metavar="N", help="seed of the TPE sampler (give each worker its own)")
    p.add_argument("--ensemble", metavar="K", help="the most trials in the final equal-weight ensemble: the "
                   "mixture of the k best trials, k in 1..K chosen by the valid NLL (1: the best trial alone; "
                   f"default {DEFAULTS.ensemble}; uci {PRESETS['uci'].ensemble})")
    p.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                   help="train the selected trials (the ensemble's members, else the best trial) again on train + "
                        "valid, each for the epochs at which its valid NLL was best, and score those on the test "
                        "split (default: off; uci: on)")
    p.add_argument("--no-prune", action="store_true", help="no pruning of poor learning curves")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--threads", type=int, metavar="N", default=None,
                   help="CPU threads for torch (default: the cores other work leaves free when it starts)")


def _number(args, name: str, kind):
    value = getattr(args, name)
    if value is None:
        return None
    try:
        out = kind(value)
    except ValueError:
        raise ConfigError(f"--{name.replace('_', '-')} must be {'an integer' if kind is int else 'a number'}, "
                          f"got {value!r}") from None
    return out


def cmd_tune(args) -> int:
    """`genlearn tune`: prints the summary's headline as JSON."""
    space = None
    if args.space:
        path = Path(args.space)
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise ConfigError(f"no search-space file {path}: it {what}; give a TOML file (see `genlearn tune --help`)")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"--space {path} is not a UTF-8 text file (byte {exc.start}); give a TOML file of "
                              "search ranges (see `genlearn tune --help`)") from None
        space = ss.space_from_toml(text, str(path))
    _optuna()
    data = args.data
    if not data:
        raise ConfigError("say which data to tune on with --data (e.g. --data adult --data-dir DIR, or "
                          "--data PATH/nltcs for PATH/nltcs.train.data, .valid.data, .test.data)")
    out = args.out or f"runs/tune-{Path(data.split(':')[0]).name.replace('.', '_')}"
    result = tune(data, out=out, families=args.families, trials=_number(args, "trials", int),
                  budget_minutes=_number(args, "budget_minutes", float), preset=args.preset, space=space,
                  storage=args.storage, study_name=args.study_name, trial_minutes=_number(args, "trial_minutes", float),
                  epochs=_number(args, "epochs", int), patience=_number(args, "patience", int), data_dir=args.data_dir,
                  seed=_number(args, "seed", int), prune=not args.no_prune, ensemble=_number(args, "ensemble", int),
                  refit=args.refit,
                  log=None if args.quiet else (lambda text: print(text, file=sys.stderr, flush=True)))
    s = result.summary
    keys = ("data", "n_trials", "n_complete", "n_pruned", "n_failed", "best", "selected", "test_nll", "test_nll_ci95",
            "test_nll_method", "wall_seconds")
    shown = {k: s.get(k) for k in keys if k in s}
    if s.get("selected") == "ensemble":
        e = s["ensemble"]
        shown["ensemble"] = {"k": e["k"], "trials": [m["trial"] for m in e["members"]], "valid_nll": e["valid_nll"],
                             "run": str(result.out / e["run"])}
    if s.get("refitted"):
        r = s["refit"]
        shown["refit"] = {"rows": r["rows"], "trials": [m["trial"] for m in r["members"]],
                          "run": str(result.out / r["run"])}
    print(json.dumps(shown, indent=2))
    data_dir = f" --data-dir {s['data_dir']}" if s.get("data_dir") else ""  # a named set: where it was found
    print(f"summary in {result.out / SUMMARY_FILE}; re-run the best trial with `genlearn fit --recipe "
          f"{result.out / RECIPE_FILE}{data_dir}`", file=sys.stderr)
    if s.get("refitted"):
        print(f"the test NLL is that of the selection refitted on train + valid, {result.out / s['refit']['run']} "
              "(`genlearn eval` / `genlearn sample` it)", file=sys.stderr)
    elif s.get("selected") == "ensemble":
        print(f"the selected ensemble is {result.out / ENSEMBLE_DIR} (`genlearn eval` / `genlearn sample` it)",
              file=sys.stderr)
    return 0


__all__ = ["PRESETS", "Preset", "TuneResult", "add_arguments", "choose_ensemble", "cmd_tune", "family_spaces",
           "recipe_toml", "score_rows", "score_test", "tune", "write_ensemble"]
