"""The compiled passes of a VAE's Gaussian layer with the closed-form KL (genlearn.gaussian_kernels) against the
same formulas by torch with autograd, in float64 (to rounding) and float32, clipped log-variances included."""
from __future__ import annotations

import pytest
import torch

from genlearn import gaussian_kernels

pytestmark = pytest.mark.skipif(not gaussian_kernels.available(), reason="numba is not installed")
LO, HI = -8.0, 6.0


def inputs(dtype, B=17, D=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    head = torch.randn(B, 2 * D, generator=g, dtype=dtype) * 3
    head[0, D:] = torch.tensor([-9.0, 7.0, -8.0, 6.0, 0.0], dtype=dtype)[:D]  # beyond, at and inside the clip
    eps = torch.randn(B, D, generator=g, dtype=dtype)
    return head, eps


def reference(head, eps, dz, c):
    """z, s, KL and d(sum(dz * z) + c KL)/dhead by autograd."""
    head = head.clone().requires_grad_(True)
    D = eps.shape[1]
    mu, logvar = head[:, :D], head[:, D:].clamp(LO, HI)
    s = torch.exp(0.5 * logvar)
    z = mu + s * eps
    kl = 0.5 * (mu.pow(2) + torch.exp(logvar) - 1 - logvar).sum()
    ((dz * z).sum() + c * kl).backward()
    return z.detach(), s.detach(), float(kl), head.grad


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-13), (torch.float32, 2e-6)])
def test_forward_and_backward_against_autograd(dtype, rtol):
    head, eps = inputs(dtype)
    dz = torch.randn(eps.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    c = 0.3 / head.shape[0]
    z, s, kl = gaussian_kernels.closed_forward(head, eps, LO, HI)
    z_ref, s_ref, kl_ref, dhead_ref = reference(head, eps, dz, c)
    assert z.dtype == dtype and s.dtype == dtype
    torch.testing.assert_close(z, z_ref, rtol=rtol, atol=rtol)
    torch.testing.assert_close(s, s_ref, rtol=rtol, atol=0)
    assert kl == pytest.approx(kl_ref, rel=rtol)
    dhead = gaussian_kernels.closed_backward(head, eps, s, dz, c, LO, HI)
    torch.testing.assert_close(dhead, dhead_ref, rtol=rtol, atol=rtol * float(dhead_ref.abs().max()))
    D = eps.shape[1]
    assert dhead[0, D] == 0 and dhead[0, D + 1] == 0  # clipped log-variances: no gradient


def test_usable_only_for_matching_contiguous_cpu_tensors():
    head, eps = inputs(torch.float32)
    assert gaussian_kernels.usable(head, eps)
    assert not gaussian_kernels.usable(head.double(), eps)
    assert not gaussian_kernels.usable(head[:, :8], eps)
    assert not gaussian_kernels.usable(head.T.contiguous().T, eps)
    assert not gaussian_kernels.usable(head.requires_grad_(True), eps)
    assert not gaussian_kernels.usable(head.detach().half(), eps.half())
