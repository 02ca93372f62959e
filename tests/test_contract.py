"""The family contract (issue 13, item 8), checked for EVERY registered model family.

The cases come from the registry (`list_models()`), so a new family gets these tests without editing this file:
each family is fitted for a few epochs on small data of each kind it accepts, and then

1. normalisation: log P sums to 1 over all states (binary: the 2^n states; categorical: the K outcomes; real,
   n <= 2: a trapezoid quadrature); for energy models also exact log Z == brute-force logsumexp(-F(x));
2. sampling: shape (n, n_features) (the data's own shape), values in the support, and the same seed gives the
   same samples;
3. rebuild: `build_from_config(name, config())` (through JSON, as a run folder stores it) plus the state dict gives
   a model with the same config, bit-identical log P and the same samples;
4. save/load: `fit(..., out=DIR)` then `load_run(DIR)` gives the same parameters and bit-identical log P, and the
   saved test NLL is the NLL of the saved model;
5. resume: E epochs straight == E1 epochs then `fit(None, None, out=DIR, resume=True, epochs=E)`, and == a run
   of E epochs interrupted after E1 then resumed; every tensor of the state dict compared bit-exactly, and the
   learning-curve records too (a family that documents nondeterminism is compared to the tolerance it has in
   NONDETERMINISTIC);
6. bad options: `genlearn fit FAMILY ... --FLAG BAD` exits with 2 and writes exactly one line to stderr, starting
   `genlearn: error:` and naming the option, with no traceback, and no run folder is written; the bad values
   (an unknown choice, a non-number, a number below a declared minimum) are derived from the family's declared
   options (the typed dataclass `spec.config` when present, else the older `spec.options`).

Families run with their default options; CHEAP_OPTIONS overrides a default only where it is expensive, and
VARIANTS adds a few non-default learning paths whose state must survive a checkpoint (PCD chains, EM)."""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
import typing

import pytest
import torch

import genlearn
from genlearn.enumeration import all_states
from genlearn.models.registry import build_from_config, build_model, get_spec, list_models

#: E epochs for the straight run; the interrupted / shorter run stops after E1
EPOCHS, E1 = 3, 1
SEED = 0

#: small data of each kind; the first spec a family can be built on is used (a one-variable family such as
#: "bernoulli" rejects 5 features and falls through to the coin)
DATA = {
    "binary": ["product-bernoulli:dim=5,n=300", "bars-and-stripes:size=2,n=300", "coin:p=0.3,n=300"],
    "categorical": ["die:n=300"],
    "real": ["gaussian:dim=2,n=300", "gaussian:dim=1,n=300"],
}

#: overrides of default options that make the contract test slow without testing more. MADE and NADE default
#: to 500 hidden units (MNIST's size): on 5 features that costs several times the fit time of 16 units, for no
#: extra coverage, and each case runs 5 fits. Every other family's defaults are cheap on 5 binary features
#: (RBM 16 hidden: exact log Z by enumerating the visible layer; Boltzmann: the exact gradient over 2^5 states;
#: mixture: 10 components).
CHEAP_OPTIONS: dict[str, dict] = {
    "made": {"hidden": "16"},
    "nade": {"hidden": "16"},
    # a 2-D latent space, so that log P(x) of every state has a quadrature oracle (normalisation to 1e-4)
    "vae": {"latent": "2", "hidden": "16"},
}

#: non-default learning paths worth the same checks, chiefly resume: their state (persistent chains, EM
#: statistics, mask/ordering ensembles) must be checkpointed. Skipped when the family no longer has the option.
VARIANTS: list[tuple[str, dict]] = [
    ("rbm", {"persistent": True}),
    ("boltzmann", {"gradient": "pcd"}),
    ("mixture", {"em": True}),
    ("made", {"masks": 2}),
    ("nade", {"order_agnostic": True, "orderings": 2}),
    # the KL warm-up's epoch counter is the rule's state; the VampPrior's pseudo-inputs are parameters
    ("vae", {"prior": "vampprior", "pseudo_inputs": 10, "iw_samples": 3, "warmup_epochs": 2}),
]

#: family -> absolute tolerance of the resume comparison, for a family that documents nondeterministic training
#: (none does: everything is seeded and runs on one CPU thread, so the comparison is bit-exact)
NONDETERMINISTIC: dict[str, float] = {
    # the compiled NADE kernels (numba, fastmath) vectorise their sums over the hidden units, and how a sum is
    # split into vector lanes can follow the memory alignment of the freshly allocated arrays of a resumed run:
    # seen 3.5e-10 on W after 3 epochs, never more than float32 rounding
    "nade": 1e-6,
}


# -- the cases, from the registry ------------------------------------------------------------------------------
def _cases() -> list:
    cases = []
    for spec in list_models():
        for kind in spec.data_kinds:
            if kind in DATA:
                cases.append(pytest.param(spec.name, kind, dict(CHEAP_OPTIONS.get(spec.name, {})),
                                          id=f"{spec.name}-{kind}"))
    for name, options in VARIANTS:
        try:
            spec = get_spec(name)
        except genlearn.ConfigError:
            continue  # the family is gone; nothing to vary
        kind = next(k for k in spec.data_kinds if k in DATA)
        label = ",".join(f"{k}={v}" for k, v in options.items())
        cases.append(pytest.param(name, kind, {**CHEAP_OPTIONS.get(name, {}), **options}, id=f"{name}[{label}]"))
    return cases


CASES = _cases()


# -- declared options: the typed config (dataclass) when present, else the older Option table --------------------
@dataclasses.dataclass
class Declared:
    type: type | None
    default: object
    choices: tuple | None
    minimum: float | None = None  # a declared lower bound (typed configs: metadata "minimum")


def _plain_type(t, default):
    """int/float/str/bool from an annotation (resolved or a string), Optional[X] and Literal[...] included."""
    if isinstance(t, str):
        parts = [p.strip() for p in t.replace("Optional[", "").rstrip("]").split("|")]
        parts = [p for p in parts if p != "None"]
        t = {"int": int, "float": float, "str": str, "bool": bool}.get(parts[0]) if len(parts) == 1 else None
    origin = typing.get_origin(t)
    if origin is typing.Literal:
        return type(typing.get_args(t)[0])
    if origin is typing.Union or type(t).__name__ == "UnionType":
        args = [a for a in typing.get_args(t) if a is not type(None)]
        return _plain_type(args[0], default) if len(args) == 1 else None
    if t in (int, float, str, bool):
        return t
    return type(default) if isinstance(default, (int, float, str, bool)) else None


def declared_options(name: str) -> dict[str, Declared]:
    spec = get_spec(name)
    config = getattr(spec, "config", None)
    if config is not None and dataclasses.is_dataclass(config):
        cls = config if isinstance(config, type) else type(config)
        try:
            hints = typing.get_type_hints(cls, include_extras=False)
        except Exception:  # noqa: BLE001 - an unresolvable annotation: fall back to the raw one
            hints = {}
        out = {}
        for f in dataclasses.fields(cls):
            if f.metadata.get("cli", True) is False:
                continue  # declared as no command-line flag
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = None
            t = hints.get(f.name, f.type)
            choices = f.metadata.get("choices")
            if choices is None and typing.get_origin(t) is typing.Literal:
                choices = typing.get_args(t)
            out[f.name] = Declared(_plain_type(t, default), default, tuple(choices) if choices else None,
                                   f.metadata.get("minimum"))
        return out
    return {k: Declared(o.type, o.default, tuple(o.choices) if o.choices else None)
            for k, o in (getattr(spec, "options", None) or {}).items()}


def _bad_option_cases() -> list:
    """Per family: an unknown choice for its first choices option, a non-number for its first numeric option
    (an int before a float) and a value below the declared minimum of its first bounded numeric option (the
    typed configs declare bounds); a family without such options gets a non-number for the training's
    --batch-size."""
    cases = []
    for spec in list_models():
        opts = declared_options(spec.name)
        picked = []
        choice = next((k for k, o in opts.items() if o.choices), None)
        if choice is not None:
            picked.append((choice, "no-such-choice"))
        numeric = sorted((k for k, o in opts.items() if o.type in (int, float) and not o.choices),
                         key=lambda k: opts[k].type is not int)
        if numeric:
            picked.append((numeric[0], "not-a-number"))
        bounded = [k for k in numeric if opts[k].minimum is not None]
        if bounded:
            low = opts[bounded[0]].minimum
            picked.append((bounded[0], str(int(low) - 1) if opts[bounded[0]].type is int else str(low - 1.0)))
        if not picked:
            picked.append(("batch_size", "not-a-number"))
        for option, value in picked:
            cases.append(pytest.param(spec.name, option, value, id=f"{spec.name}--{option}={value}"))
    return cases


# -- helpers ----------------------------------------------------------------------------------------------------
def _dataset_for(name: str, kind: str, options: dict) -> str:
    """The first small data spec of `kind` the family can be built on with `options`."""
    errors = []
    for data in DATA[kind]:
        try:
            build_model(name, genlearn.load_dataset(data), **options)
            return data
        except genlearn.ConfigError as exc:
            errors.append(f"{data}: {exc}")
    pytest.fail(f"{name} cannot be built on any small {kind} data set of the contract test: {'; '.join(errors)} "
                "(add a data spec it accepts to DATA)")


def _states(dataset) -> torch.Tensor | None:
    """Every state of the data's space (binary: {0,1}^n; categorical: 0..K-1) in the data's dtype."""
    if dataset.kind == "binary":
        return all_states(dataset.n_features).to(dataset.train.dtype)
    if dataset.kind == "categorical":
        return torch.arange(dataset.n_categories).to(dataset.train.dtype)
    return None


def _probe(dataset) -> torch.Tensor:
    """Inputs on which two models are compared: every state (discrete data) and the test split."""
    states = _states(dataset)
    return dataset.test if states is None else torch.cat([states, dataset.test])


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def _log_prob(model, x) -> torch.Tensor:
    """log P(x): the model's own for exact families; for a latent-variable model (log_prob raises) the likelihood
    policy's importance-sampling estimate, seeded, so it is deterministic and what metrics.json reports."""
    if isinstance(model, genlearn.LatentVariableModel):
        from genlearn.likelihood import log_likelihoods

        return log_likelihoods(model, x)[0]
    return model.log_prob(x)


@torch.no_grad()
def _exact_log_prob(model, x) -> torch.Tensor:
    """log P(x) to quadrature accuracy for a latent-variable model with a 2-D latent space (dense grid over z)."""
    from genlearn.estimators.latent_ais import quadrature_log_marginal

    return quadrature_log_marginal(model.log_prior, model.log_likelihood, x, dim=model.latent_dim, points=401)


#: no plots in the run folders (matplotlib costs more than these fits) when this fit has the switch
_NO_PLOTS = {"plots": False} if "plots" in inspect.signature(genlearn.fit).parameters else {}


def _fit(name, data, out, options, **kwargs):
    return genlearn.fit(name, data, out=out, seed=SEED, progress=False, **_NO_PLOTS, **options, **kwargs)


def _resume(out, **kwargs):
    return genlearn.fit(None, None, out=out, resume=True, progress=False, **_NO_PLOTS, **kwargs)


def _assert_same_state(a: dict, b: dict, what: str, atol: float = 0.0) -> None:
    assert a.keys() == b.keys(), f"{what}: state dict keys differ: {sorted(set(a) ^ set(b))}"
    for k in a:
        x, y = a[k], b[k]
        assert x.shape == y.shape and x.dtype == y.dtype, f"{what}: {k} is {x.dtype}{tuple(x.shape)} vs " \
                                                          f"{y.dtype}{tuple(y.shape)}"
        if atol == 0.0:
            if not torch.equal(x, y):
                diff = (x.double() - y.double()).abs().max().item() if x.is_floating_point() else "n/a"
                pytest.fail(f"{what}: tensor {k!r} differs (max abs difference {diff})")
        else:
            torch.testing.assert_close(x, y, atol=atol, rtol=0, msg=f"{what}: tensor {k!r} differs")


def _comparable(history: list) -> list:
    """Learning-curve records without wall-clock fields."""
    return [{k: v for k, v in rec.items() if "second" not in k and "time" not in k} for rec in history]


class Fitted(typing.NamedTuple):
    name: str
    data: str
    options: dict
    dataset: object
    run: object
    dir: object


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """fitted(name, kind, options): the family fitted for EPOCHS epochs into a run folder (once per case)."""
    cache: dict = {}

    def get(name: str, kind: str, options: dict) -> Fitted:
        key = (name, kind, json.dumps(options, sort_keys=True))
        if key not in cache:
            missing = set(options) - set(declared_options(name))
            if missing:
                pytest.skip(f"{name} no longer declares option(s) {', '.join(sorted(missing))}")
            data = _dataset_for(name, kind, options)
            out = tmp_path_factory.mktemp(f"{name}-{kind}")
            run = _fit(name, data, out / "run", options, epochs=EPOCHS)
            cache[key] = Fitted(name, data, options, genlearn.load_dataset(data), run, out / "run")
        return cache[key]

    return get


# -- 1. normalisation ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kind,options", CASES)
def test_probabilities_sum_to_one(fitted, name, kind, options):
    f = fitted(name, kind, options)
    model, ds = f.run.model, f.dataset
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    tol = 1e-5 if dtype == torch.float64 else 1e-4
    states = _states(ds)
    if states is not None:
        lp = _exact_log_prob(model, states) if isinstance(model, genlearn.LatentVariableModel) else \
            _log_prob(model, states)
        assert lp.shape == (states.shape[0],), f"log_prob of {states.shape[0]} states has shape {tuple(lp.shape)}"
        assert torch.isfinite(lp).all() or (lp[~torch.isfinite(lp)] == -math.inf).all(), "log_prob is NaN or +inf"
        total = torch.logsumexp(lp.double(), 0).item()
        assert abs(total) < tol, f"log sum_x P(x) = {total:.3g} over the {states.shape[0]} states (should be 0)"
    else:
        if ds.n_features > 2:
            pytest.skip("real data with more than 2 dimensions: no cheap quadrature")
        _check_quadrature(model, ds.n_features, tol)
    if isinstance(model, genlearn.EnergyModel):
        assert states is not None, "an energy model on non-enumerable data"
        with torch.no_grad():
            brute = torch.logsumexp(-model.free_energy(states).double(), 0).item()
            exact = model.log_partition(method="exact")
        value = float(getattr(exact, "value", exact))
        assert abs(value - brute) < tol * max(1.0, abs(brute)), \
            f"exact log Z {value!r} != brute-force logsumexp(-F) {brute!r}"


@torch.no_grad()
def _check_quadrature(model, n: int, tol: float) -> None:
    """Trapezoid rule on a box of +-12 sample standard deviations (exponentially accurate for smooth, fast-
    decaying densities): integral of P(x) dx == 1."""
    s = model.sample(4000, generator=_gen()).double().reshape(4000, n)
    center, scale = s.mean(0), s.std(0).clamp_min(1e-3)
    points = 2001 if n == 1 else 401
    axes = [torch.linspace(float(c - 12 * w), float(c + 12 * w), points, dtype=torch.float64)
            for c, w in zip(center, scale)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, n)
    log_cell = sum(math.log(float(a[1] - a[0])) for a in axes)
    lp = model.log_prob(grid.float()).double()
    total = torch.logsumexp(lp, 0).item() + log_cell
    assert abs(total) < tol, f"log of the integral of P(x) dx = {total:.3g} (should be 0)"


# -- 2. sampling --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kind,options", CASES)
def test_sample_shape_and_support(fitted, name, kind, options):
    f = fitted(name, kind, options)
    model, ds = f.run.model, f.dataset
    n = 257
    with torch.no_grad():
        x = model.sample(n, generator=_gen(3))
        again = model.sample(n, generator=_gen(3))
    expected = (n,) + tuple(ds.train.shape[1:])
    assert tuple(x.shape) == expected, f"sample({n}) has shape {tuple(x.shape)}, the data have rows of {expected}"
    if ds.train.ndim == 2:
        assert x.shape[1] == model.n_features == ds.n_features
    if kind == "binary":
        assert ((x == 0) | (x == 1)).all(), f"binary samples outside {{0, 1}}: {x.unique().tolist()[:10]}"
    elif kind == "categorical":
        assert not x.is_floating_point() or (x == x.round()).all(), "categorical samples are not integers"
        assert ((x >= 0) & (x < ds.n_categories)).all(), f"categorical samples outside 0..{ds.n_categories - 1}"
    else:
        assert x.is_floating_point() and torch.isfinite(x).all(), "real samples not finite floats"
    assert torch.isfinite(_log_prob(model, x)).all(), "a sample has probability 0 under the model"
    assert torch.equal(x, again), "the same generator seed gave different samples"


# -- 3. rebuild from config() -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kind,options", CASES)
def test_rebuild_from_config(fitted, name, kind, options):
    f = fitted(name, kind, options)
    model, ds = f.run.model, f.dataset
    config = json.loads(json.dumps(model.config()))  # a run folder stores it as JSON
    rebuilt = build_from_config(name, config)
    assert type(rebuilt) is type(model)
    assert json.loads(json.dumps(rebuilt.config())) == config, "config() of the rebuilt model differs"
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    x = _probe(ds)
    assert torch.equal(_log_prob(rebuilt, x), _log_prob(model, x)), "rebuilt model's log_prob differs"
    with torch.no_grad():
        a, b = model.sample(64, generator=_gen(5)), rebuilt.sample(64, generator=_gen(5))
    assert torch.equal(a, b), "rebuilt model samples differently with the same generator seed"


# -- 4. save / load -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kind,options", CASES)
def test_save_load_round_trip(fitted, name, kind, options):
    f = fitted(name, kind, options)
    loaded = genlearn.load_run(f.dir)
    assert type(loaded.model) is type(f.run.model)
    assert loaded.model.config() == f.run.model.config()
    _assert_same_state(f.run.model.state_dict(), loaded.model.state_dict(), "load_run")
    x = _probe(f.dataset)
    assert torch.equal(_log_prob(loaded.model, x), _log_prob(f.run.model, x)), "loaded model's log_prob differs"
    assert loaded.metrics.get("epochs_run") == EPOCHS
    nll = -_log_prob(loaded.model, f.dataset.test).double().mean().item()
    assert loaded.metrics["test_nll"] == pytest.approx(nll, abs=1e-5), "metrics.json's test_nll is not the NLL " \
                                                                        "of the saved model"


# -- 5. resume ----------------------------------------------------------------------------------------------------
class _Interrupt:
    """Stops a fit after epoch `after` the way a user does (KeyboardInterrupt; the checkpoint is written)."""

    def __init__(self, after: int):
        self.after = after

    def __call__(self, trainer, record):
        if record.get("epoch") == self.after:
            raise KeyboardInterrupt


class _Count:
    """Counts the epochs a fit runs (a resume that silently started again from epoch 0 would match too)."""

    def __init__(self):
        self.epochs = 0

    def __call__(self, trainer, record):
        self.epochs += 1


@pytest.mark.parametrize("name,kind,options", CASES)
def test_resume_matches_uninterrupted(fitted, name, kind, options, tmp_path):
    f = fitted(name, kind, options)
    atol = NONDETERMINISTIC.get(name, 0.0)
    straight = genlearn.load_run(f.dir)

    # a shorter run continued to EPOCHS
    short = tmp_path / "short"
    _fit(name, f.data, short, options, epochs=E1)
    assert genlearn.load_run(short).metrics["epochs_run"] == E1
    count = _Count()
    resumed = _resume(short, epochs=EPOCHS, callbacks=[count])
    assert resumed.metrics["epochs_run"] == EPOCHS
    assert count.epochs == EPOCHS - E1, f"the resumed fit ran {count.epochs} epochs, not {EPOCHS - E1}"
    _assert_same_state(straight.model.state_dict(), resumed.model.state_dict(),
                       f"{E1} epochs + resume to {EPOCHS} vs {EPOCHS} straight", atol)
    _assert_same_state(straight.model.state_dict(), genlearn.load_run(short).model.state_dict(),
                       "the resumed run's folder", atol)
    if atol == 0.0:
        assert _comparable(resumed.metrics["history"]) == _comparable(straight.metrics["history"]), \
            "the learning curve of the resumed run differs"

    # a run of EPOCHS interrupted after E1 epochs (KeyboardInterrupt), resumed with its own settings
    cut = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        _fit(name, f.data, cut, options, epochs=EPOCHS, callbacks=[_Interrupt(E1)])
    count = _Count()
    resumed = _resume(cut, callbacks=[count])
    assert resumed.metrics["epochs_run"] == EPOCHS
    assert count.epochs == EPOCHS - E1, f"the resumed fit ran {count.epochs} epochs, not {EPOCHS - E1}"
    _assert_same_state(straight.model.state_dict(), resumed.model.state_dict(),
                       f"interrupted after {E1} of {EPOCHS} epochs and resumed vs straight", atol)


# -- 6. a bad option value: one line, exit code 2 -----------------------------------------------------------------
@pytest.mark.parametrize("name,option,value", _bad_option_cases())
def test_bad_option_gives_one_line_error(name, option, value, tmp_path, capsys):
    from genlearn.cli import main

    spec = get_spec(name)
    kind = next(k for k in spec.data_kinds if k in DATA)
    data = _dataset_for(name, kind, {})
    flag = "--" + option.replace("_", "-")
    argv = ["fit", name, "--data", data, "--out", str(tmp_path / "run"), "--epochs", "1", flag, value]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse exits by itself
        rc = exc.code
    except Exception as exc:  # noqa: BLE001 - what a user would see as a traceback
        pytest.fail(f"`genlearn {' '.join(argv)}` raised {type(exc).__name__}: {exc}")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, f"exit code {rc}, expected 2; stderr: {err!r}"
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("genlearn: error:"), \
        f"expected one line `genlearn: error: ...` on stderr, got {len(lines)}: {err!r}"
    words = {option, option.replace("_", "-"), option.replace("_", " ")}
    assert any(w in lines[0] for w in words), f"the message does not name the option {flag}: {lines[0]!r}"
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir()), \
        "a run folder was written despite the bad option"
