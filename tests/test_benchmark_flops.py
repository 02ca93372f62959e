"""The FLOP counts the benchmarks' rooflines are computed from, against torch's own count of the products an
autograd training step runs (torch.utils.flop_counter: 2 m k n per matrix product)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from genlearn.models.vae import VAE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import vae_speed  # noqa: E402


@pytest.mark.parametrize("k", [1, 5])
def test_vae_epoch_flops_are_those_of_a_dense_autograd_step(k):
    """vae_speed.epoch_gemm_flops(rows, k): the forward and backward products of the benchmark's network on `rows`
    examples with k samples each (no gradient for the data), as autograd's pass through VAE.elbo / log_weights."""
    model = VAE(784, latent=vae_speed.LATENT, hidden=list(vae_speed.HIDDEN), activation="tanh", seed=0)
    x = torch.bernoulli(torch.full((10, 784), 0.13), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    with FlopCounterMode(display=False) as counter:
        loss = -model.elbo(x, g).mean() if k == 1 else -torch.logsumexp(model.log_weights(x, k, g), 0).mean()
        loss.backward()
    assert counter.get_total_flops() == vae_speed.epoch_gemm_flops(10, k)
