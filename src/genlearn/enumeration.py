"""All states of {0,1}^n in chunks: the oracle for exact log Z, exact expectations and exact KL.

States are coded by integers c = sum_i x_i 2^i; a chunk holds at most `chunk_size` states so that memory stays
bounded (chunk_size x n float values). Sums over states are accumulated in float64 with log-sum-exp."""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor

from genlearn.errors import IntractableError

#: largest n for which exact enumeration over {0,1}^n is allowed (2^24 = 16.8 million states)
MAX_ENUMERABLE = 24
DEFAULT_CHUNK = 1 << 16


def require_enumerable(n: int, limit: int = MAX_ENUMERABLE, what: str = "exact enumeration",
                       suggestion: str = "an approximate method") -> None:
    """Raise IntractableError when 2**n states are more than an exact computation may enumerate."""
    if n > limit:
        raise IntractableError(
            f"{what} needs 2^{n} = {2.0 ** n:.3g} states; exact enumeration is limited to n <= {limit}. "
            f"Use {suggestion} instead."
        )


def states_from_codes(codes: Tensor, n: int, dtype=torch.float32) -> Tensor:
    """Binary rows x with sum_i x_i 2^i = code."""
    bits = torch.arange(n, dtype=torch.int64)
    return ((codes.unsqueeze(-1) >> bits) & 1).to(dtype)


def iter_states(n: int, chunk_size: int = DEFAULT_CHUNK, dtype=torch.float32, limit: int = MAX_ENUMERABLE,
                what: str = "exact enumeration") -> Iterator[Tensor]:
    """Yield all 2^n binary states in order of their code, `chunk_size` at a time."""
    require_enumerable(n, limit, what)
    total = 1 << n
    for start in range(0, total, chunk_size):
        codes = torch.arange(start, min(start + chunk_size, total), dtype=torch.int64)
        yield states_from_codes(codes, n, dtype)


def all_states(n: int, dtype=torch.float32, limit: int = MAX_ENUMERABLE) -> Tensor:
    """All 2^n states at once (for small n)."""
    return torch.cat(list(iter_states(n, 1 << min(n, 20), dtype, limit)))


@torch.no_grad()
def log_sum_exp_over_states(log_weight: Callable[[Tensor], Tensor], n: int, chunk_size: int = DEFAULT_CHUNK,
                            limit: int = MAX_ENUMERABLE, what: str = "exact log Z") -> float:
    """log sum_{x in {0,1}^n} exp(log_weight(x)), float64, chunked. With log_weight = -E this is log Z."""
    acc = torch.tensor(-torch.inf, dtype=torch.float64)
    for states in iter_states(n, chunk_size, limit=limit, what=what):
        acc = torch.logaddexp(acc, torch.logsumexp(log_weight(states).double(), 0))
    return float(acc)


@torch.no_grad()
def log_probs_table(model, chunk_size: int = DEFAULT_CHUNK) -> Tensor:
    """log P(x) for every state x of a discrete model, float64, indexed by state code (or outcome)."""
    if model.support == "categorical":
        return model.log_prob(torch.arange(model.n_categories)).double()
    if model.support != "binary":
        from genlearn.errors import ConfigError

        raise ConfigError(f"model {model.name!r} is continuous; its states cannot be enumerated")
    return torch.cat([model.log_prob(s).double() for s in iter_states(model.n_features, chunk_size)])


@torch.no_grad()
def expectation(model, f: Callable[[Tensor], Tensor], chunk_size: int = DEFAULT_CHUNK) -> Tensor:
    """E_P[f(x)] = sum_x P(x) f(x) over {0,1}^n, float64; f maps (B, n) states to (B, ...) values."""
    total = None
    for states in iter_states(model.n_features, chunk_size):
        p = torch.exp(model.log_prob(states).double())
        term = torch.einsum("b,b...->...", p, f(states).double())
        total = term if total is None else total + term
    return total
