"""A distribution given by a table of binary patterns and their probabilities (for example the uniform
distribution over bars-and-stripes, or the empirical distribution Q^ of a data set).

log P(x) = log q_k if x is pattern k, and -inf for a pattern outside the table."""
from __future__ import annotations

import torch
from torch import Tensor

from genlearn.errors import ConfigError
from genlearn.models.base import GenerativeModel, as_float


def pattern_codes(x: Tensor) -> Tensor:
    """Integer code sum_i x_i 2^i of each binary row (n <= 62)."""
    n = x.shape[-1]
    if n > 62:
        raise ConfigError(f"patterns of {n} bits cannot be coded as 64-bit integers (at most 62)")
    weights = (2 ** torch.arange(n, dtype=torch.int64))
    return (x.to(torch.int64) * weights).sum(-1)


class PatternTable(GenerativeModel):
    """Fixed (not learned) distribution over the listed binary patterns."""

    name = "pattern-table"
    support = "binary"

    def __init__(self, patterns: Tensor, probs: Tensor):
        super().__init__()
        patterns = as_float(patterns)
        probs = torch.as_tensor(probs, dtype=torch.float64)
        if patterns.ndim != 2 or probs.shape != (patterns.shape[0],):
            raise ConfigError("patterns must be (K, n) and probs (K,)")
        if patterns.shape[0] == 0 or patterns.shape[1] == 0:
            raise ConfigError(f"a pattern table needs at least one pattern of at least one bit, got patterns of shape "
                              f"{tuple(patterns.shape)}")
        if not patterns.is_meta:
            bad = (patterns != 0) & (patterns != 1)
            if bad.any():
                i, j = torch.nonzero(bad)[0].tolist()
                raise ConfigError(f"patterns must be binary (0/1), but row {i}, column {j} is {patterns[i, j].item()}")
            if not torch.isfinite(probs).all() or (probs < 0).any() or not probs.sum() > 0:
                raise ConfigError(f"probs must be finite non-negative weights with a positive sum, got "
                                  f"{probs.tolist()}"[:300])
        self.n_features = patterns.shape[1]
        codes = pattern_codes(patterns)
        if not codes.is_meta and torch.unique(codes).numel() != codes.numel():
            raise ConfigError("patterns holds the same pattern more than once; list each pattern once with its total "
                              "probability")
        order = torch.argsort(codes)
        self.register_buffer("patterns", patterns[order])
        self.register_buffer("codes", codes[order])
        self.register_buffer("probs", probs[order] / probs.sum())

    @classmethod
    def from_samples(cls, x: Tensor) -> "PatternTable":
        """The empirical distribution Q^(x) = (1/M) sum_m [x = x_m] of binary rows x as a table: its distinct
        patterns with their frequencies."""
        from genlearn.data.empirical import EmpiricalDistribution

        emp = EmpiricalDistribution.from_samples(x, "binary")
        return cls(emp.patterns, emp.probs)

    def log_prob(self, x: Tensor) -> Tensor:
        codes = pattern_codes(as_float(x))
        pos = torch.searchsorted(self.codes, codes).clamp_max(self.codes.numel() - 1)
        found = self.codes[pos] == codes
        out = torch.full(codes.shape, -torch.inf, dtype=torch.float64)
        out[found] = torch.log(self.probs[pos[found]])
        return out

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        idx = torch.multinomial(self.probs, n, replacement=True, generator=generator)
        return self.patterns[idx].clone()

    def config(self) -> dict:
        return {"n_features": self.n_features, "n_patterns": int(self.codes.numel())}
