"""One exception family: every error a user can cause is a GenlearnError with a message that names the
problem and how to fix it. The CLI prints the message on one line and exits with code 2. DataError, ConfigError
and RunError (a bad run-folder argument) are also ValueErrors, as Python (and scikit-learn) code expects of bad
input."""


class GenlearnError(Exception):
    """Base class of every error genlearn raises on purpose."""


class DataError(GenlearnError, ValueError):
    """The data are missing, malformed, or do not fit the model (non-binary values, NaN, wrong shape...)."""


class ConfigError(GenlearnError, ValueError):
    """A setting is impossible or inconsistent (negative learning rate, unknown model, zero components...)."""


class IntractableError(GenlearnError):
    """An exact computation was asked for on a state space too large to enumerate."""


class NumericalError(GenlearnError):
    """Training diverged: the loss or a parameter became NaN or infinite."""


class RunError(GenlearnError, ValueError):
    """A run directory is missing, incomplete, or would be overwritten."""
