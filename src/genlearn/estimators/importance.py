"""Importance sampling of a marginal likelihood P(x) = integral p(z) P(x|z) dz with a proposal q(z|x).

With z_1..z_k ~ q(z|x) and log-weights log w_j = log P(x|z_j) + log p(z_j) - log q(z_j|x) (nats),

    log P^(x) = log (1/k) sum_j w_j          (the IWAE bound L_k: E[log P^] <= log P(x), -> log P(x) as k grows),
    ELBO^(x)  = (1/k) sum_j log w_j          (an unbiased estimate of the ELBO, <= L_k),
    ESS(x)    = (sum_j w_j)^2 / sum_j w_j^2  (effective sample size, 1..k),
    Var[log P^] ~= (1/k) (mean w^2 / (mean w)^2 - 1) = (1/k)(k / ESS - 1)   (delta method).

The k samples are drawn in chunks of rows x samples (no per-row Python loop) and combined by streaming
log-sum-exp, in float64. The kernel takes the log-weight function, not a model (genlearn.likelihood passes
model.log_weights)."""
from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch
from torch import Tensor

from genlearn.errors import ConfigError
from genlearn.numerics import row_shard

#: rows x samples per chunk of decoder passes (bounded memory: about chunk x (n + hidden) floats). 5,000 keeps the
#: temporaries in cache-friendly, reused memory: 1.8x the GEMM roofline against 2.7x at 50,000 (vae_is_speed.py)
CHUNK = 5_000


@torch.no_grad()
def importance_log_marginal(log_weights: Callable, x: Tensor, k: int, generator: torch.Generator | None = None,
                            chunk: int = CHUNK, progress: bool = False, desc: str = "importance sampling",
                            shard: tuple[int, int] | None = None) -> dict:
    """Per-row {"log_p": log P^(x), "elbo": ELBO^(x), "ess": ESS(x), "variance": Var[log P^(x)]}, float64 tensors
    of shape (B,), from `log_weights(x_rows, s, generator) -> (s, rows)` called on chunks of at most `chunk`
    rows x samples.

    `shard` = (start, stop): only rows [start, stop) of x (tensors of shape (stop - start,)), with the random
    numbers the whole call gives them: the chunks of all B rows are followed, a chunk's per-row noise is drawn for
    all its rows and sliced (numerics.row_shard; log_weights draws it with numerics.randn_rows), and the chunks
    before `start` draw theirs on zero rows (no model products), so a data-parallel evaluation's figures do not
    depend on the number of processes."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"the number of importance samples must be a positive integer, got {k!r}")
    B = x.shape[0]
    first, last = (0, B) if shard is None else (int(shard[0]), int(shard[1]))
    rows = max(1, min(B, chunk // min(k, chunk)))
    samples = max(1, min(k, chunk // rows))
    out = {key: torch.empty(last - first, dtype=torch.float64) for key in ("log_p", "elbo", "ess", "variance")}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=last - first, desc=desc, unit="row", unit_scale=True, leave=False, mininterval=0.5,
                   disable=None)  # None: no bar when stderr is not a terminal
    for start in range(0, min(B, last), rows):
        stop = min(start + rows, B)
        if shard is None:
            lo, hi, draw = start, stop, contextlib.nullcontext()
        else:  # this chunk's rows in the shard (none before it), its noise drawn for all of the chunk's rows
            lo = min(max(start, first), stop)
            hi = max(lo, min(stop, last))
            draw = row_shard(lo - start, hi - start, stop - start)
        xb = x[lo:hi]
        lse = torch.full((xb.shape[0],), -math.inf, dtype=torch.float64)
        lse2 = lse.clone()
        total = torch.zeros(xb.shape[0], dtype=torch.float64)
        with draw:
            for s0 in range(0, k, samples):
                lw = log_weights(xb, min(samples, k - s0), generator).double()
                lse = torch.logaddexp(lse, torch.logsumexp(lw, 0))
                lse2 = torch.logaddexp(lse2, torch.logsumexp(2 * lw, 0))
                total += lw.sum(0)
        if hi == lo:
            continue
        sl = slice(lo - first, hi - first)
        out["log_p"][sl] = lse - math.log(k)
        out["elbo"][sl] = total / k
        ess = torch.exp(2 * lse - lse2)
        out["ess"][sl] = ess
        out["variance"][sl] = (k / ess - 1).clamp_min(0) / k
        if bar is not None:
            bar.update(xb.shape[0])
    if bar is not None:
        bar.close()
    return out


__all__ = ["CHUNK", "importance_log_marginal"]
