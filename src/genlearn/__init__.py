"""genlearn: statistical machine learning of generative models.

Learn P(X|theta) by minimising D_KL(Q^||P_theta) = NLL(theta) - H(Q^) from samples, with exact likelihoods and
KL wherever the state space can be enumerated and honest estimates where it cannot."""
import os as _os
import signal as _signal
import sys as _sys


def _interrupted_at_start(signum, frame):  # pragma: no cover - exercised by tests/test_kill_resume.py
    _sys.stderr.write("genlearn: interrupted while starting; nothing was written\n")
    _os._exit(130)


# the `genlearn` command: a Ctrl-C while it imports its modules (seconds on a loaded machine) is one line, exit 130;
# genlearn.cli.main takes over as soon as it runs (a library import elsewhere changes nothing)
if _os.path.basename(_sys.argv[0] if _sys.argv else "") in ("genlearn", "genlearn.exe", "genlearn-script.py"):
    _signal.signal(_signal.SIGINT, _interrupted_at_start)

__version__ = "0.1.0"

#: the public names and the modules they live in: imported on first use (PEP 562), so that `import genlearn` and
#: `genlearn --help` do not import torch (seconds on a loaded machine)
_LAZY = {"Dataset": "genlearn.data", "EmpiricalDistribution": "genlearn.data", "load_dataset": "genlearn.data",
         "empirical_kl": "genlearn.divergence", "kl_divergence": "genlearn.divergence",
         "register_kl": "genlearn.divergence", "Estimate": "genlearn.estimators",
         **{name: "genlearn.errors" for name in ("ConfigError", "DataError", "GenlearnError", "IntractableError",
                                                 "NumericalError", "RunError")},
         **{name: "genlearn.models" for name in ("Bernoulli", "Categorical", "EnergyModel", "Gaussian",
                                                 "GenerativeModel", "LatentVariableModel", "PatternTable",
                                                 "ProductBernoulli")},
         "fit": "genlearn.runs", "load_run": "genlearn.runs", "Run": "genlearn.runs"}


def __getattr__(name):
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):  # a subpackage (`genlearn.models.registry` after a bare `import genlearn`)
        try:
            return importlib.import_module(f"genlearn.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"genlearn.{name}":
                raise
    raise AttributeError(f"module 'genlearn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["Bernoulli", "Categorical", "ConfigError", "DataError", "Dataset", "EmpiricalDistribution", "EnergyModel",
           "Estimate", "Gaussian", "GenerativeModel", "GenlearnError", "IntractableError", "LatentVariableModel",
           "NumericalError",
           "PatternTable", "ProductBernoulli", "RunError", "empirical_kl", "fit", "kl_divergence", "load_dataset",
           "load_run", "register_kl"]
