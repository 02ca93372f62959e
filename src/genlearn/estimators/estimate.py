"""The one result type of every likelihood, log-partition and divergence computation: a number that says how it
was obtained.

value +- stderr is the estimate (same units as value: nats for log Z, NLL and KL), [lower, upper] a bracket when
the method gives one (-inf / +inf on a side it does not bound), `method` a short name ("exact enumeration",
"closed-form", "ais", "monte-carlo", "mean-field lower bound", ...) and `details` whatever the method records
(AIS steps and chains, effective sample sizes, sample counts). An exact computation has stderr = 0 and
lower = upper = value."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Estimate:
    """value +- stderr (same units as value), with a lower/upper bracket when the method gives one.

    For an exact computation stderr = 0 and lower = upper = value. `float(estimate)` is its value."""

    value: float
    method: str
    stderr: float = 0.0
    lower: float = -math.inf
    upper: float = math.inf
    details: dict = field(default_factory=dict)

    @classmethod
    def exact(cls, value: float, method: str = "exact", details: dict | None = None) -> "Estimate":
        """An exact number: stderr 0 and the bracket [value, value]."""
        value = float(value)
        return cls(value, method, 0.0, value, value, dict(details or {}))

    @property
    def is_exact(self) -> bool:
        """True when the number is exact (zero standard error and a closed bracket at the value)."""
        return self.stderr == 0.0 and self.lower == self.value == self.upper

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict:
        """JSON-able: non-finite bounds and errors become None."""
        d = asdict(self)
        for key in ("lower", "upper", "value", "stderr"):
            if isinstance(d[key], float) and not math.isfinite(d[key]):
                d[key] = None
        return d
