"""Compiled (numba) passes of a VAE's diagonal Gaussian layer q(z|x) = N(mu, diag(v)) with the closed-form KL to
N(0, I), forward and backward in one loop each, where torch would run some 30 small operations on (B, D) tensors
(each ~5-10 us of dispatch on one core, against ~1 us of arithmetic for B D = 5,000 entries).

The encoder's head gives h = [mu | r] (B x 2D); logvar = clip(r, lo, hi), s = e^(logvar / 2), eps ~ N(0, I):

    forward:   z = mu + s eps,   KL = sum_{b,d} (1/2) (mu^2 + s^2 - 1 - logvar)       (nats, summed over the batch)
    backward:  given g = dloss/dz and c = beta / B (the loss's weight of KL per example),
               dloss/dmu = g + c mu,
               dloss/dr  = (1/2) g s eps + (c / 2) (s^2 - 1)   where lo <= r <= hi, else 0 (the clip's derivative)

float32 or float64 (compiled for each), C-contiguous CPU arrays; the KL accumulates in float64. `available()` is
False without numba: callers keep torch's operations."""
from __future__ import annotations

import math

from genlearn.binary_kernels import available  # numba present (the `fast` extra)

if available():
    import numpy as np
    from numba import njit

    # float32 constants: with float32 arrays the arithmetic (and exp) stays float32, with float64 arrays it is float64
    _HALF, _ONE = np.float32(0.5), np.float32(1.0)

    @njit(cache=True)
    def _closed_forward(head, eps, lo, hi, z, s):  # pragma: no cover - compiled
        B, D = eps.shape
        kl = 0.0
        for b in range(B):
            for d in range(D):
                mu = head[b, d]
                logvar = min(max(head[b, D + d], lo), hi)
                sd = math.exp(_HALF * logvar)
                s[b, d] = sd
                z[b, d] = mu + sd * eps[b, d]
                kl += _HALF * (mu * mu + sd * sd - _ONE - logvar)
        return kl

    @njit(cache=True)
    def _closed_backward(head, eps, s, dz, c, lo, hi, dhead):  # pragma: no cover - compiled
        B, D = eps.shape
        for b in range(B):
            for d in range(D):
                g = dz[b, d]
                dhead[b, d] = g + c * head[b, d]
                r = head[b, D + d]
                sd = s[b, d]
                dhead[b, D + d] = _HALF * (g * sd * eps[b, d] + c * (sd * sd - _ONE)) if lo <= r <= hi else 0


def usable(head, eps) -> bool:
    """Whether the compiled passes take these tensors: numba present, CPU, the same float32/float64 dtype, 2-D and
    contiguous, head (B, 2D) and eps (B, D), no graph."""
    import torch

    return (available() and head.device.type == "cpu" and head.dtype in (torch.float32, torch.float64)
            and eps.dtype == head.dtype and head.dim() == 2 and eps.dim() == 2 and head.is_contiguous()
            and eps.is_contiguous() and head.shape == (eps.shape[0], 2 * eps.shape[1])
            and not head.requires_grad and not eps.requires_grad)


def closed_forward(head, eps, lo: float, hi: float):
    """(z, s, KL summed over the batch as a float) for head = [mu | r] and eps (module docstring)."""
    import torch

    z, s = torch.empty_like(eps), torch.empty_like(eps)
    h = head.numpy()
    kl = _closed_forward(h, eps.numpy(), h.dtype.type(lo), h.dtype.type(hi), z.numpy(), s.numpy())
    return z, s, float(kl)


def closed_backward(head, eps, s, dz, c: float, lo: float, hi: float):
    """dloss/dhead (B x 2D) from dloss/dz (module docstring); dz is made contiguous in head's dtype."""
    import torch

    dhead = torch.empty_like(head)
    dz = dz.to(head.dtype).contiguous()
    h = head.numpy()
    t = h.dtype.type
    _closed_backward(h, eps.numpy(), s.numpy(), dz.numpy(), t(c), t(lo), t(hi), dhead.numpy())
    return dhead


__all__ = ["available", "closed_backward", "closed_forward", "usable"]
