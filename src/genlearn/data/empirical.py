"""The empirical distribution Q^(x) = (1/M) sum_m [x = x_m]: its unique patterns, frequencies and entropy
H(Q^) = -sum_x Q^(x) log Q^(x) in nats (0 log 0 = 0). (As a model usable wherever one is:
`genlearn.models.table.PatternTable.from_samples(x)`.)"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class EmpiricalDistribution:
    patterns: Tensor  # (K, n) binary patterns, or (K,) categorical outcomes
    counts: Tensor  # (K,) int64
    kind: str

    @classmethod
    def from_samples(cls, x: Tensor, kind: str = "binary") -> "EmpiricalDistribution":
        if kind == "categorical":
            values, counts = torch.unique(torch.as_tensor(x).long().reshape(-1), return_counts=True)
        elif kind == "binary":
            from genlearn.data.bitpack import unique_rows

            values, counts = unique_rows(torch.as_tensor(x))
        else:
            raise ValueError("an empirical distribution of real-valued data has no finite entropy")
        return cls(values, counts, kind)

    @property
    def n_samples(self) -> int:
        return int(self.counts.sum())

    @property
    def probs(self) -> Tensor:
        """Frequencies Q^(pattern_k) = count_k / M, float64."""
        c = self.counts.double()
        return c / c.sum()

    def entropy(self) -> float:
        """H(Q^) in nats."""
        p = self.probs
        return float(-(p * torch.log(p)).sum()) + 0.0  # + 0.0: one pattern gives 0.0, not -0.0


def empirical_entropy(x: Tensor, kind: str = "binary") -> float | None:
    """H(Q^) in nats of the samples x, or None for real-valued data (no finite entropy)."""
    if kind == "real":
        return None
    return EmpiricalDistribution.from_samples(x, kind).entropy()
