"""An approximate number that says how it was obtained."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Estimate:
    """value +- stderr (same units as value), with a lower/upper bracket when the method gives one.

    For an exact computation stderr = 0 and lower = upper = value."""

    value: float
    method: str
    stderr: float = 0.0
    lower: float = -math.inf
    upper: float = math.inf
    details: dict = field(default_factory=dict)

    @classmethod
    def exact(cls, value: float, method: str = "exact") -> "Estimate":
        return cls(float(value), method, 0.0, float(value), float(value))

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("lower", "upper", "value", "stderr"):
            if isinstance(d[key], float) and not math.isfinite(d[key]):
                d[key] = None
        return d
