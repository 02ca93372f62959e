"""Variational autoencoder [`vae`] (Kingma & Welling 2014; IWAE, Burda et al. 2016; VampPrior and the two-layer
hierarchy of Tomczak & Welling 2018): a latent-variable model of binary vectors x in {0,1}^n,

    P(x|theta) = integral p(z) P(x|z) dz,   P(x|z) = prod_i Bern(x_i | sigmoid(l_i(z))),

with an MLP decoder z -> logits l(z) and a Gaussian encoder q(z|x) = N(mu(x), diag exp(logvar(x))), an MLP,
reparameterised z = mu + exp(logvar / 2) * eps, eps ~ N(0, I).

Stochastic layers (`latent`: one size, or two sizes d1,d2):

- one layer: p(z) P(x|z), q(z|x);
- two layers, a plain top-down hierarchy with the inference network of Tomczak & Welling's HVAE:
  p(z2) p(z1|z2) P(x|z1,z2) and q(z2|x) q(z1|x,z2), every conditional a diagonal Gaussian (or the Bernoulli
  decoder) whose parameters come from an MLP; z = (z1, z2) concatenated (D = d1 + d2).

The top prior p(z_top) is N(0, I) (`prior="standard"`) or the VampPrior (`prior="vampprior"`), the mixture of the
encoder's posteriors at K learned pseudo-inputs u_k in [0,1]^n:  p(z_top) = (1/K) sum_k q(z_top|u_k).

Every density is in nats. log P(x) itself is intractable (`log_prob` raises): the ELBO / IWAE bounds and the
importance-sampling / AIS estimates of genlearn.likelihood use `log_weights`, `log_joint`, `sample_prior`."""
from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from genlearn import logistic_kernels, numerics, products
from genlearn.errors import ConfigError
from genlearn.models.base import (
    MATMUL_PRECISIONS,
    LatentVariableModel,
    as_float,
    check_matmul_precision,
    check_positive_int,
    column_means,
    logit,
    parse_sizes,
)
from genlearn.precision import resolve_for_model
from genlearn.models.fvsbn import init_seed_generator
from genlearn.models import vae_step
from genlearn.models.registry import ModelSpec, register_model
from genlearn.numerics import fast_softplus_row_sums_, randn_rows, sigmoid_and_softplus_row_sums_, softplus_row_sums
from genlearn.numerics import tanh as fast_tanh
from genlearn.options import option

ACTIVATIONS = ("tanh", "relu", "softplus", "gated")
PRIORS = ("standard", "vampprior")
MAX_LATENT = 10_000
MAX_HIDDEN = 100_000
#: the encoder's log-variances are clipped to this range (a posterior standard deviation between e^-4 = 0.018 and
#: e^3 = 20), which keeps the VampPrior's mixture densities and the AIS/HMC energies finite
LOGVAR_RANGE = (-8.0, 6.0)
LOG_2PI = math.log(2 * math.pi)
#: rows of logits per block in sum_i softplus(l_i): a block of 512 x 784 float32 logits (1.6 MB) stays in cache
#: between the product that makes it and the passes that consume it (without autograd, in one buffer kept between
#: calls: `softplus_sum`)
LOGIT_BLOCK_ROWS = 512
#: entries of the block buffer kept between calls without autograd: blocks have fewer rows for wider data, so that a
#: model of 200,000 pixels keeps 16 rows (12.8 MB), not 512 (410 MB)
KEPT_LOGITS = 512 * 1024
#: samples of z per data row from which log P(x|z) computes sum_i x_i l_i as h . (W^T x) + b . x (VAE.log_likelihood)
SHARED_DATA_TERM_SAMPLES = 16


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last dimension, nats."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def standard_normal_log_density(z: Tensor) -> Tensor:
    """log N(z; 0, I) = -(1/2) (D log 2 pi + sum_d z_d^2) over the last dimension (D entries), nats."""
    return -0.5 * (z.shape[-1] * LOG_2PI + z.square().sum(-1))


def _data_term(h: Tensor, x: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """sum_i x_i l_i = h . (W^T x) + b . x for the logits l = W h + b of the features h (..., B, H) against the data
    rows x (B, n): per row one dot product with the (B, H) vector W^T x, by torch.einsum (a matrix-vector product
    for one data row: 0.15 against 0.47 ms for an elementwise product and a sum over 5,000 x 200 features, one
    core); other shapes, and under autocast (where einsum would round h to bfloat16 too), as the broadcast product."""
    xW = x @ W
    if (x.dim() == 2 and h.dim() >= 2 and h.shape[-2] == x.shape[0]
            and not torch.is_autocast_enabled(h.device.type)):
        return torch.einsum("...bh,bh->...b", h, xW) + x @ b
    return (h * xW).sum(-1) + x @ b


class _BernoulliLogLikelihood(torch.autograd.Function):
    """sum_i x_i l_i - softplus(l_i) over the last dimension, the softplus sums by genlearn.logistic_kernels;
    d/dl_i = x_i - sigmoid(l_i). x is data (no gradient) and broadcasts against the logits."""

    @staticmethod
    def forward(ctx, logits: Tensor, x: Tensor) -> Tensor:
        n = logits.shape[-1]
        sums = logistic_kernels.row_sums(logits.detach().reshape(-1, n)).reshape(logits.shape[:-1])
        ctx.save_for_backward(logits, x)
        return (logits.detach() * x).sum(-1) - sums

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        logits, x = ctx.saved_tensors
        return (x - torch.sigmoid(logits)).mul_(grad.unsqueeze(-1)), None


def bernoulli_log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
    """log prod_i Bern(x_i | sigmoid(l_i)) = sum_i x_i l_i - softplus(l_i) = -sum_i softplus((1 - 2 x_i) l_i) for
    x_i in {0, 1}, nats; x broadcasts against logits. For contiguous float32 CPU logits the softplus sums come from
    the compiled kernel (genlearn.logistic_kernels; with autograd, gradient x_i - sigmoid(l_i)); otherwise one
    product and one F.softplus per pixel."""
    if (not x.requires_grad and x.dtype == logits.dtype
            and logistic_kernels.usable(logits.detach().reshape(-1, logits.shape[-1]))):
        return _BernoulliLogLikelihood.apply(logits, x)
    return -F.softplus(logits * (1 - 2 * x)).sum(-1)


class _LogitSoftplusSums(torch.autograd.Function):
    """s_r = sum_i softplus(l_ri), l = h W^T + b, with autograd: ds_r/dl_ri = sigmoid(l_ri).

    The forward pass makes the logits block by block of rows (a block stays in cache) and, from each block, both
    the softplus sums and the sigmoids the backward pass needs (torch.sigmoid and genlearn.logistic_kernels, or
    `sigmoid_and_softplus_row_sums_` without numba), so that the logits are never written to memory and read
    back. The backward pass scales the stored sigmoids by the incoming gradient, G = g sigmoid(l), and returns
    dh = G W, dW = G^T h, db = sum_r G_r."""

    @staticmethod
    def forward(ctx, h: Tensor, W: Tensor, b: Tensor, block_rows: int) -> Tensor:
        rows = h.detach().reshape(-1, h.shape[-1])
        W0, b0 = W.detach(), b.detach()
        sig = torch.empty(rows.shape[0], W.shape[0], dtype=W.dtype, device=W.device)
        out = torch.empty(rows.shape[0], dtype=W.dtype, device=W.device)
        for start in range(0, rows.shape[0], block_rows):
            block = products.linear(rows[start : start + block_rows], W0, b0)
            if logistic_kernels.usable(block):  # the compiled sums read the block while it is in cache
                torch.sigmoid(block, out=sig[start : start + block_rows])
                out[start : start + block_rows] = logistic_kernels.row_sums(block)
            else:
                out[start : start + block_rows] = sigmoid_and_softplus_row_sums_(block, sig[start : start + block_rows])
        ctx.save_for_backward(h, W, sig)
        return out.reshape(h.shape[:-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        h, W, sig = ctx.saved_tensors
        rows = h.reshape(-1, h.shape[-1])
        g = sig * grad.reshape(-1, 1)  # G = g sigmoid(l)
        grad_h = products.mm(g, W).reshape(h.shape) if ctx.needs_input_grad[0] else None
        grad_W = products.mm(g.T, rows) if ctx.needs_input_grad[1] else None
        grad_b = g.sum(0) if ctx.needs_input_grad[2] else None
        return grad_h, grad_W, grad_b, None


def softplus_sum(h: Tensor, W: Tensor, b: Tensor, block_rows: int | None = None) -> Tensor:
    """sum_i softplus(l_i) over the last dimension of the logits l = W h + b, shape h.shape[:-1], in W's dtype.

    The rows go through in blocks of `block_rows` (default LOGIT_BLOCK_ROWS), so that each block of logits is
    consumed while it is still in cache instead of being written to memory and read back (the same numbers: each
    row's sum is over its own logits): with autograd by _LogitSoftplusSums, which keeps the sigmoids for the gradient
    (under bfloat16 autocast, in one piece by `softplus_row_sums`); without, each block is h W^T into one buffer
    kept between calls (per thread) and its sums with the bias b added in their pass (the compiled kernel,
    genlearn.logistic_kernels). On one AVX-512 core an importance-sampling chunk (5,000 samples) of a tanh
    200-200 VAE took 15.9 ms that way against 16.4 ms with a fresh block of 5,000 rows and its bias written in by
    the product (and ~1 ms more in fresh blocks of 512); of a gated 300-300 VAE 30.8 against 31.2 ms
    (interleaved medians)."""
    rows = h.reshape(-1, h.shape[-1])
    block_rows = LOGIT_BLOCK_ROWS if block_rows is None else block_rows
    if torch.is_grad_enabled():
        if torch.is_autocast_enabled(h.device.type) or h.dtype != W.dtype:
            return softplus_row_sums(products.linear(h, W, b).to(W.dtype))
        return _LogitSoftplusSums.apply(h, W, b, block_rows)
    out = torch.empty(rows.shape[0], dtype=W.dtype, device=W.device)
    if torch.is_autocast_enabled(h.device.type) or rows.dtype != W.dtype:
        for start in range(0, rows.shape[0], block_rows):
            block = products.linear(rows[start : start + block_rows], W, b).to(W.dtype)
            out[start : start + block_rows] = fast_softplus_row_sums_(block)
        return out.reshape(h.shape[:-1])
    # the kept buffer holds at most KEPT_LOGITS entries (~2 MB of float32) unless a block of 16 rows needs more
    block_rows = min(block_rows, max(16, KEPT_LOGITS // max(W.shape[0], 1)))
    buffer = _logit_buffer(min(block_rows, rows.shape[0]), W.shape[0], W.dtype, W.device)
    sums = logistic_kernels.bound_row_sums(buffer, b, out) if logistic_kernels.usable(buffer) else None
    direct = products.choice() == "torch"
    for start in range(0, rows.shape[0], block_rows):
        part = rows[start : start + block_rows]
        block = buffer[: part.shape[0]]
        torch.mm(part, W.T, out=block) if direct else products.mm(part, W.T, out=block)
        if sums is not None:
            sums(part.shape[0], start)
        else:
            out[start : start + block_rows] = fast_softplus_row_sums_(block, b)
    return out.reshape(h.shape[:-1])


_BUFFERS = threading.local()


def _logit_buffer(rows: int, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A (rows, n) buffer for one block of logits, kept per Python thread and reused while the shape, dtype and device
    stay the same (each block is consumed before the next is made), so that it stays in cache between calls."""
    key = (rows, n, dtype, device)
    held = getattr(_BUFFERS, "held", None)
    if held is None or held[0] != key:
        held = _BUFFERS.held = (key, torch.empty(rows, n, dtype=dtype, device=device))
    return held[1]


def _apply(layer: torch.nn.Linear, x: Tensor) -> Tensor:
    """layer(x) = x W^T + b, through genlearn.products (oneDNN's float32 products where this CPU runs them faster)."""
    return products.linear(x, layer.weight, layer.bias)


class MLP(torch.nn.Module):
    """h = act(sum_j A_j x_j + b) through `hidden` layers. Several inputs enter the first layer as a sum of linear
    maps (equal to one linear map of their concatenation) so that an input of shape (B, .) broadcasts against one
    of shape (k, B, .) without copies. "gated": h = (A x + b) * sigmoid(C x + c) (gated dense layers)."""

    def __init__(self, inputs: list[int], hidden: list[int], activation: str):
        super().__init__()
        self.gated = activation == "gated"
        width = 2 if self.gated else 1
        self.act = {"tanh": fast_tanh, "relu": torch.relu, "softplus": F.softplus, "gated": None}[activation]
        self.first = torch.nn.ModuleList(torch.nn.Linear(d, width * hidden[0], bias=(i == 0))
                                         for i, d in enumerate(inputs))
        self.rest = torch.nn.ModuleList(torch.nn.Linear(a, width * b) for a, b in zip(hidden[:-1], hidden[1:]))
        self.out_features = hidden[-1]

    def _activate(self, pre: Tensor, fresh: bool = False) -> Tensor:
        """act(pre); in place when `pre` is a fresh temporary without a graph: tanh by numerics.tanh_, the gated
        a sigmoid(g) into a's half of pre (a view whose rows are 2 H apart, which the next product reads as is)."""
        in_place = fresh and not (torch.is_grad_enabled() and pre.requires_grad)
        if self.gated:
            a, g = pre.chunk(2, dim=-1)
            if in_place:
                return a.mul_(logistic_kernels.sigmoid_(g))  # (torch's sigmoid_ for the strided half)
            return a * torch.sigmoid(g)
        if in_place and self.act is fast_tanh:
            return numerics.tanh_(pre)
        return self.act(pre)

    def sigmoid_features(self, *xs: Tensor) -> Tensor:
        """s with forward(*xs) = 2 s - 1, for activation "tanh", without autograd: tanh(a) = 2 sigmoid(2a) - 1 with
        the affine maps folded into the weights, so that each layer is one product and one in-place sigmoid:

            s_1 = sigmoid(2 A x + 2 b),   s_j = sigmoid(4 W_j s_{j-1} + 2 (b_j - W_j 1)),

        (the next layer's W (2 s - 1) + b = 2 W s + (b - W 1)). The same function to float32 rounding: the factors
        are powers of 2, b - W 1 is rounded once; the sigmoids by genlearn.logistic_kernels.sigmoid_ (~3.5e-7
        relative). Three elementwise passes fewer per layer than `numerics.tanh`."""
        pre = products.linear(xs[0], 2 * self.first[0].weight, 2 * self.first[0].bias)
        for lin, x in zip(self.first[1:], xs[1:]):
            pre = pre + products.linear(x, 2 * lin.weight)
        s = logistic_kernels.sigmoid_(pre)
        for lin in self.rest:
            s = logistic_kernels.sigmoid_(products.linear(s, 4 * lin.weight, 2 * (lin.bias - lin.weight.sum(1))))
        return s

    def first_layer(self, *xs: Tensor) -> Tensor:
        """The first layer's pre-activation sum_j A_j x_j + b (inputs left out at the end contribute nothing)."""
        pre = _apply(self.first[0], xs[0])
        for lin, x in zip(self.first[1:], xs[1:]):
            pre = pre + _apply(lin, x)
        return pre

    def from_first_layer(self, pre: Tensor) -> Tensor:
        """The output given the first layer's pre-activation (left as it is)."""
        return self._from_first_layer(pre, fresh=False)

    def _from_first_layer(self, pre: Tensor, fresh: bool) -> Tensor:
        h = self._activate(pre, fresh)
        for lin in self.rest:
            h = self._activate(_apply(lin, h), fresh=True)
        return h

    def forward(self, *xs: Tensor) -> Tensor:
        return self._from_first_layer(self.first_layer(*xs), fresh=True)


class GaussianHead(torch.nn.Module):
    """(mu, logvar) of a diagonal Gaussian from features h; logvar clipped to LOGVAR_RANGE."""

    def __init__(self, features: int, dim: int):
        super().__init__()
        self.linear = torch.nn.Linear(features, 2 * dim)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        # float32 under bfloat16 autocast
        mu, logvar = _apply(self.linear, h).to(self.linear.weight.dtype).chunk(2, dim=-1)
        return mu, torch.clamp(logvar, *LOGVAR_RANGE)


def _reparameterise_with_density(mu: Tensor, logvar: Tensor, k: int | None, generator) -> tuple[Tensor, Tensor]:
    """(z, log N(z; mu, diag exp(logvar))) for z = mu + exp(logvar / 2) eps as in `_reparameterise`: the density from
    the noise, log N = -(1/2) (D log 2 pi + sum_d logvar_d + sum_d eps_d^2) ((z - mu)^2 / v = eps^2), the same
    function of the parameters as `gaussian_log_density(z, mu, logvar)` (so the same gradients) in two passes over
    the draws instead of five."""
    eps = _reparameterise_noise(mu, k, generator)
    z = mu + torch.exp(0.5 * logvar) * eps
    return z, -0.5 * (mu.shape[-1] * LOG_2PI + logvar.sum(-1) + eps.square().sum(-1))


def _reparameterise(mu: Tensor, logvar: Tensor, k: int | None, generator) -> Tensor:
    """z = mu + exp(logvar / 2) eps, eps ~ N(0, I); with k, k draws stacked in front: (k, *mu.shape). The rows of
    eps are those of the whole batch when a data-parallel process computes a shard of it (numerics.randn_rows); the
    rows are the next-to-last dimension of eps (mu (B, D), or (k, B, D) for z1 given k draws of z2)."""
    return mu + torch.exp(0.5 * logvar) * _reparameterise_noise(mu, k, generator)


def _reparameterise_noise(mu: Tensor, k: int | None, generator) -> Tensor:
    """eps ~ N(0, I) of `_reparameterise`: shape mu.shape, or (k, *mu.shape) with k."""
    shape = mu.shape if k is None else (k, *mu.shape)
    return randn_rows(shape, len(shape) - 2, generator, dtype=mu.dtype, device=mu.device)


class VAE(LatentVariableModel):
    """n_features: n binary pixels; latent: [d] (one stochastic layer) or [d1, d2] (two, z2 on top); hidden: the
    sizes of every MLP's deterministic layers (the generative MLPs use them in reverse); activation: tanh, relu,
    softplus or gated; prior: "standard" N(0, I) or "vampprior" with `pseudo_inputs` K; seed: initial weights;
    matmul_precision: "auto" (bfloat16 only where this machine runs it faster, genlearn.precision), "full", or
    "bfloat16" for the matrix products of training (`training_precision()`: bfloat16
    operands under torch.autocast, the densities summed in float32); likelihoods are always in full precision.

    The encoder's first weight `enc_top.first[0].weight` (H x n) is stored input-major (its transpose contiguous)
    for the training step's sums over 0/1 data: index it, or use `reshape(-1)` rather than `view(-1)`."""

    name = "vae"
    support = "binary"

    def __init__(self, n_features: int, latent=50, hidden=(200, 200), activation: str = "tanh",
                 prior: str = "standard", pseudo_inputs: int = 500, seed: int = 0, matmul_precision: str = "auto"):
        super().__init__()
        self.matmul_precision = check_matmul_precision(matmul_precision)
        self.n_features = n = check_positive_int(n_features, "n_features")
        self.latent = parse_sizes(latent, "--latent", MAX_LATENT, counts=(1, 2))
        self.hidden = parse_sizes(hidden, "--hidden", MAX_HIDDEN)
        if activation not in ACTIVATIONS:
            raise ConfigError(f"--activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if prior not in PRIORS:
            raise ConfigError(f"--prior must be one of {', '.join(PRIORS)}, got {prior!r}")
        self.activation, self.prior, self.seed = activation, prior, int(seed)
        self.pseudo_inputs = check_positive_int(pseudo_inputs, "--pseudo-inputs")
        self.latent_dim = sum(self.latent)
        self.layers = len(self.latent)
        hid, rev = self.hidden, list(reversed(self.hidden))
        top = self.latent[-1]
        # q(z_top|x): the encoder of a one-layer VAE, q(z2|x) of the hierarchy; the VampPrior reuses it
        self.enc_top = MLP([n], hid, activation)
        self.enc_top_head = GaussianHead(hid[-1], top)
        if self.layers == 2:
            d1, d2 = self.latent
            self.enc_bottom = MLP([n, d2], hid, activation)  # q(z1|x, z2)
            self.enc_bottom_head = GaussianHead(hid[-1], d1)
            self.prior_bottom = MLP([d2], rev, activation)  # p(z1|z2)
            self.prior_bottom_head = GaussianHead(rev[-1], d1)
            self.dec = MLP([d1, d2], rev, activation)  # P(x|z1, z2)
        else:
            self.dec = MLP([top], rev, activation)  # P(x|z)
        self.dec_out = torch.nn.Linear(rev[-1], n)
        if prior == "vampprior":
            self.pseudo = torch.nn.Parameter(torch.full((self.pseudo_inputs, n), 0.5))
        self._vamp_cache: tuple | None = None  # the VampPrior's component terms while frozen()
        g = init_seed_generator(seed)
        with torch.no_grad():  # uniform(+-1/sqrt(fan_in)) from the explicit generator: deterministic per seed
            for module in self.modules():
                if isinstance(module, torch.nn.Linear):
                    bound = 1.0 / math.sqrt(module.in_features)
                    module.weight.copy_((torch.rand(module.weight.shape, generator=g) * 2 - 1) * bound)
                    if module.bias is not None:
                        module.bias.copy_((torch.rand(module.bias.shape, generator=g) * 2 - 1) * bound)
            if prior == "vampprior":
                self.pseudo.copy_(0.5 + 0.01 * torch.randn(self.pseudo.shape, generator=g))
        # the encoder's first weight W (H x n) stored input-major, W^T contiguous: the rows of W^T that a 0/1 image
        # selects are then contiguous, as the training step's sums of selected rows need (genlearn.models.vae_step);
        # the module still sees W (H x n), its state_dict entry is unchanged, and loading one keeps this layout
        first = self.enc_top.first[0]
        first.weight = torch.nn.Parameter(first.weight.detach().T.contiguous().T)

    # -- the pieces --------------------------------------------------------------------------------------------
    def _split(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        """(z1, z2) of a two-layer z = (z1, z2); (z, None) for one layer."""
        if self.layers == 1:
            return z, None
        return z[..., : self.latent[0]], z[..., self.latent[0]:]

    def encode_top(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of q(z_top|x) (z for one layer, z2 for two)."""
        return self.enc_top_head(self.enc_top(x))

    def pseudo_input_values(self) -> Tensor:
        """The VampPrior's pseudo-inputs u_k = hardtanh(pseudo_k, 0, 1) in [0, 1]^n, shape (K, n)."""
        return F.hardtanh(self.pseudo, 0.0, 1.0)

    def _vamp_terms(self) -> tuple[Tensor, Tensor, Tensor]:
        """The VampPrior's components N(mu_k, diag v_k), (mu_k, log v_k) the encoder at u_k, as the float64 terms of
        log N(z; mu_k, v_k) = -(z^2 . 1/v_k - 2 z . mu_k/v_k + c_k) / 2: (1/v (d, K), mu/v (d, K),
        c = sum_j mu_kj^2/v_kj + log v_kj + log 2 pi (K,)). Cached while frozen()."""
        if self._vamp_cache is not None:
            return self._vamp_cache
        mu, logvar = self.encode_top(self.pseudo_input_values())  # (K, d)
        mu, logvar = mu.double(), logvar.double()
        inv = torch.exp(-logvar)
        return inv.T, (mu * inv).T, (mu.pow(2) * inv).sum(-1) + logvar.sum(-1) + mu.shape[-1] * LOG_2PI

    @torch.no_grad()
    def prior_box(self, sds: float = 8.0) -> float:
        """The half-width L of a box [-L, L]^d holding the prior: sds standard deviations around the standard
        prior's 0 (L = sds) or around every VampPrior component, L = max_k,j |mu_kj| + sds sqrt(v_kj) (at least
        sds); for quadrature over z (genlearn.likelihood.quadrature)."""
        if self.prior == "standard":
            return float(sds)
        inv_t, mu_inv_t, _ = self._vamp_terms()
        reach = (mu_inv_t / inv_t).abs() + sds * inv_t.rsqrt()
        return max(float(sds), float(reach.max()))

    def log_prior_top(self, z_top: Tensor) -> Tensor:
        """log p(z_top): N(0, I), or the VampPrior log (1/K) sum_k N(z; mu_k, diag v_k) with (mu_k, log v_k) the
        encoder at u_k; the quadratic forms sum_j (z_j - mu_kj)^2 / v_kj as matrix products, in float64."""
        if self.prior == "standard":
            return standard_normal_log_density(z_top)
        inv_t, mu_inv_t, const = self._vamp_terms()
        zz = z_top.reshape(-1, z_top.shape[-1]).double()
        log_comp = -0.5 * (zz.pow(2) @ inv_t - 2 * zz @ mu_inv_t + const)  # (N, K)
        out = torch.logsumexp(log_comp, -1) - math.log(self.pseudo_inputs)
        return out.to(z_top.dtype).reshape(z_top.shape[:-1])

    @contextlib.contextmanager
    def frozen(self):
        """LatentVariableModel.frozen, with the VampPrior's component terms computed once for the whole context
        (the encoder on the K pseudo-inputs is otherwise re-run at every log p(z))."""
        with super().frozen():
            if self.prior == "vampprior":
                with torch.no_grad():
                    self._vamp_cache = self._vamp_terms()
            try:
                yield self
            finally:
                self._vamp_cache = None

    def sample_top_prior(self, n: int, generator=None) -> Tensor:
        top = self.latent[-1]
        dtype = self.dec_out.weight.dtype
        if self.prior == "standard":
            return torch.randn(n, top, generator=generator, dtype=dtype, device=self.dec_out.weight.device)
        ks = torch.randint(self.pseudo_inputs, (n,), generator=generator, device=self.pseudo.device)
        mu, logvar = self.encode_top(self.pseudo_input_values()[ks])
        return _reparameterise(mu, logvar, None, generator)

    # -- the LatentVariableModel interface ------------------------------------------------------------------------
    def log_prior(self, z: Tensor) -> Tensor:
        """log p(z): log p(z_top) (+ log p(z1|z2) for two layers), nats, shape z.shape[:-1]."""
        z1, z2 = self._split(z)
        if self.layers == 1:
            return self.log_prior_top(z1)
        mu, logvar = self.prior_bottom_head(self.prior_bottom(z2))
        return self.log_prior_top(z2) + gaussian_log_density(z1, mu, logvar)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """z ~ p(z), shape (n, D) (ancestral: z2 ~ p(z2), then z1 ~ p(z1|z2))."""
        top = self.sample_top_prior(n, generator)
        if self.layers == 1:
            return top
        mu, logvar = self.prior_bottom_head(self.prior_bottom(top))
        return torch.cat([_reparameterise(mu, logvar, None, generator), top], -1)

    def decoder_features(self, z: Tensor) -> Tensor:
        """h(z), the decoder's last hidden layer (..., H): l(z) = W h(z) + b."""
        z1, z2 = self._split(z)
        return self.dec(z1) if self.layers == 1 else self.dec(z1, z2)

    def decoder_logits(self, z: Tensor) -> Tensor:
        """l(z), shape (..., n): P(x_i = 1|z) = sigmoid(l_i(z))."""
        return _apply(self.dec_out, self.decoder_features(z)).to(self.dec_out.weight.dtype)  # float32 under autocast

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log P(x|z) = sum_i x_i l_i(z) - softplus(l_i(z)), nats; x (B, n) broadcasts against z (..., B, D).

        With l = W h + b and k >= SHARED_DATA_TERM_SAMPLES samples of z per row (importance sampling, IWAE), the
        first sum is h . (W^T x) + b . x: one (B, n) x (n, H) product per row instead of an elementwise product over
        the k x B x n logits (about 1.15x faster importance sampling). With fewer samples (the ELBO's one) that
        product would cost more than it saves: there it is -sum_i softplus((1 - 2 x_i) l_i)."""
        W, b = self.dec_out.weight, self.dec_out.bias
        x = as_float(x).to(W.dtype)
        if self._folds_tanh(z):  # h = 2 s - 1: l = W h + b = (2 W) s + (b - W 1)
            z1, z2 = self._split(z)
            h = self.dec.sigmoid_features(z1) if self.layers == 1 else self.dec.sigmoid_features(z1, z2)
            W, b = 2 * W, b - W.sum(1)
        else:
            h = self.decoder_features(z)
        if h.numel() // h.shape[-1] < SHARED_DATA_TERM_SAMPLES * max(1, x.numel() // x.shape[-1]):
            return bernoulli_log_likelihood(products.linear(h, W, b).to(W.dtype), x)
        return _data_term(h.to(W.dtype), x, W, b) - softplus_sum(h, W, b)

    def _folds_tanh(self, z: Tensor) -> bool:
        """Whether log_likelihood runs the decoder through MLP.sigmoid_features: a tanh decoder without autograd
        (importance sampling, AIS energies), float32 on a CPU where a sigmoid is faster than torch.tanh
        (numerics.folded_tanh_in_use: e.g. AVX2; not on an AVX-512 Xeon, whose torch.tanh is as fast)."""
        return (self.activation == "tanh" and not torch.is_grad_enabled() and numerics.folded_tanh_in_use(z)
                and not torch.is_autocast_enabled(z.device.type))

    def sample_posterior(self, x: Tensor, k: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(z, log q(z|x)): k reparameterised draws per row, z (k, B, D), log q (k, B) in nats."""
        x = as_float(x).to(self.dec_out.weight.dtype)
        mu, logvar = self.encode_top(x)
        top, log_q = _reparameterise_with_density(mu, logvar, k, generator)
        if self.layers == 1:
            return top, log_q
        mu1, logvar1 = self.enc_bottom_head(self.enc_bottom(x, top))
        z1, log_q1 = _reparameterise_with_density(mu1, logvar1, None, generator)
        return torch.cat([z1, top], -1), log_q + log_q1

    def posterior_proposal(self, x: Tensor) -> tuple:
        """q(z|x) for the rows x (B, n) as (sample(k, generator) -> z (k, B, D), log_density(z) -> log q(z|x) (...,
        B) in nats, differentiable in z): the start of AIS from the encoder (estimators.latent_ais). What depends on
        x alone (q(z_top|x), and for two layers the data's share of q(z1|x, z2)'s first layer) is computed once,
        without autograd; log_density(z) = log N(z_top; mu(x), v(x)) (+ log N(z1; mu1(x, z2), v1(x, z2)))."""
        x = as_float(x).to(self.dec_out.weight.dtype)
        with torch.no_grad():
            mu, logvar = self.encode_top(x)
            data_share = self.enc_bottom.first_layer(x) if self.layers == 2 else None

        def bottom(z2: Tensor) -> tuple[Tensor, Tensor]:  # (mu1, logvar1) of q(z1|x, z2)
            pre = data_share + _apply(self.enc_bottom.first[1], z2)
            return self.enc_bottom_head(self.enc_bottom.from_first_layer(pre))

        def sample(k: int, generator: torch.Generator | None = None) -> Tensor:
            with torch.no_grad():
                top = _reparameterise(mu, logvar, k, generator)
                if self.layers == 1:
                    return top
                mu1, logvar1 = bottom(top)
                return torch.cat([_reparameterise(mu1, logvar1, None, generator), top], -1)

        def log_density(z: Tensor) -> Tensor:
            z1, z2 = self._split(z)
            if self.layers == 1:
                return gaussian_log_density(z1, mu, logvar)
            mu1, logvar1 = bottom(z2)
            return gaussian_log_density(z2, mu, logvar) + gaussian_log_density(z1, mu1, logvar1)

        return sample, log_density

    @torch.no_grad()
    def posterior_mean(self, x: Tensor) -> Tensor:
        """The encoder's means (B, D): mu(x) for one layer; (mu1(x, mu2(x)), mu2(x)) for two."""
        x = as_float(x).to(self.dec_out.weight.dtype)
        mu, _ = self.encode_top(x)
        if self.layers == 1:
            return mu
        mu1, _ = self.enc_bottom_head(self.enc_bottom(x, mu))
        return torch.cat([mu1, mu], -1)

    def elbo(self, x: Tensor, generator: torch.Generator | None = None, kl_weight: float = 1.0) -> Tensor:
        """ELBO(x) = E_q[log P(x|z)] - KL(q(z|x) || p(z)) per row with one reparameterised sample (nats). With
        one layer and the standard prior the KL is computed in closed form, 0.5 sum_j (mu_j^2 + v_j - 1 - log v_j)
        (lower variance than the sampled log p(z) - log q(z|x)); otherwise log w of one sample."""
        if self.layers == 2 or self.prior != "standard":
            return super().elbo(x, generator, kl_weight)
        mu, logvar = self.encode_top(as_float(x).to(self.dec_out.weight.dtype))
        z = _reparameterise(mu, logvar, None, generator)
        kl = 0.5 * (mu.pow(2) + torch.exp(logvar) - 1 - logvar).sum(-1)
        return self.log_likelihood(x, z) - kl_weight * kl

    def bound_gradient(self, x: Tensor, k: int, generator: torch.Generator | None = None, kl_weight: float = 1.0,
                       closed_form_kl: bool = True) -> Tensor | None:
        """LatentVariableModel.bound_gradient by the hand-written backward pass of genlearn.models.vae_step (one
        stochastic layer, standard prior), else None."""
        x = as_float(x)
        if not vae_step.usable(self, x):
            return None
        return vae_step.loss_and_gradient(self, x, k, generator, kl_weight, closed_form_kl, LOGVAR_RANGE,
                                          _reparameterise_noise)

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """-mean ELBO of the batch with one sample per row, nats per example (>= the mean NLL)."""
        return -self.elbo(x, generator).mean()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """z ~ p(z), then x_i ~ Bern(sigmoid(l_i(z))) independently."""
        n = check_positive_int(n, "number of samples")
        probs = torch.sigmoid(self.decoder_logits(self.sample_prior(n, generator)))
        return torch.bernoulli(probs, generator=generator).float()

    @torch.no_grad()
    def init_from_data(self, x: Tensor) -> "VAE":
        """The decoder's output biases to the logits of the pixel means; the VampPrior's pseudo-inputs to training
        rows pulled towards 1/2 (u = 0.05 + 0.9 x, so that hardtanh passes their gradient)."""
        x = self.check_input(x)
        self.dec_out.bias.copy_(logit(column_means(x), 1e-3).to(self.dec_out.bias.dtype))
        if self.prior == "vampprior":
            if self.pseudo_inputs > x.shape[0]:
                raise ConfigError(f"--pseudo-inputs {self.pseudo_inputs} is more than the {x.shape[0]} training rows; "
                                  "a VampPrior needs at most one pseudo-input per training row")
            rows = torch.randperm(x.shape[0], generator=init_seed_generator(self.seed))[: self.pseudo_inputs]
            self.pseudo.copy_(0.05 + 0.9 * x[rows].to(self.pseudo.dtype))
        return self

    def training_precision(self):
        """The context the learning rule computes its bound in: bfloat16 matrix products under torch.autocast when
        matmul_precision resolves to "bfloat16" (faster only on CPUs with AVX512-BF16 or AMX, and on GPUs; "auto"
        decides by genlearn.precision, sized by a 100-row minibatch through the first layer), else none."""
        device = self.dec_out.weight.device
        flops = 2.0 * 100 * self.n_features * (self.hidden[0] if self.hidden else self.latent[0])
        return torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=resolve_for_model(self, device, flops) == "bfloat16")

    @classmethod
    def from_config(cls, config: dict) -> "VAE":
        """Runs saved before matmul_precision existed trained in full precision."""
        config.setdefault("matmul_precision", "full")
        return cls(**config)

    def config(self) -> dict:
        return {"n_features": self.n_features, "latent": list(self.latent), "hidden": list(self.hidden),
                "activation": self.activation, "prior": self.prior, "pseudo_inputs": self.pseudo_inputs,
                "seed": self.seed, "matmul_precision": self.matmul_precision}


@dataclass(frozen=True)
class VAEConfig:
    """Options of `genlearn fit vae`."""

    latent: tuple[int, ...] = option((50,), "latent sizes: one stochastic layer (e.g. 50) or two, bottom first "
                                     "(e.g. 40,40: p(z2) p(z1|z2) P(x|z1,z2))", minimum=1)
    hidden: tuple[int, ...] = option((200, 200), "deterministic layer sizes of every MLP (encoders; the "
                                     "generative MLPs use them in reverse)", minimum=1)
    activation: str = option("tanh", "hidden activation (gated: gated dense layers)", choices=ACTIVATIONS)
    prior: str = option("standard", "prior of the top latent layer: standard N(0, I) or vampprior (a mixture of "
                        "the encoder's posteriors at learned pseudo-inputs)", choices=PRIORS)
    pseudo_inputs: int = option(500, "number K of VampPrior pseudo-inputs (at most the training rows)", minimum=1)
    iw_samples: int = option(1, "importance samples k per row in training: 1 = the ELBO, k > 1 = the IWAE bound",
                             minimum=1)
    warmup_epochs: int = option(0, "KL warm-up: the weight of log p(z) - log q(z|x) grows linearly to 1 over "
                                "this many epochs (0 = off)", minimum=0)
    kl_estimator: str = option("closed-form", "ELBO training (k = 1): the KL term in closed form (one layer, "
                               "standard prior; lower variance) or sampled at the one sample",
                               choices=("closed-form", "sampled"))
    matmul_precision: str = option("auto", "precision of the training bound's matrix products: auto (bfloat16 "
                                   "only where this machine runs it faster), full, or bfloat16 "
                                   "(bfloat16 operands, float32 densities; faster only on CPUs with AVX512-BF16 "
                                   "or AMX); likelihoods are always computed in full precision",
                                   choices=MATMUL_PRECISIONS)
    init_seed: int = option(0, "seed of the initial weights")


def _build(dataset, config: VAEConfig) -> VAE:
    return VAE(dataset.n_features, latent=list(config.latent), hidden=list(config.hidden),
               activation=config.activation, prior=config.prior, pseudo_inputs=config.pseudo_inputs,
               seed=config.init_seed, matmul_precision=config.matmul_precision).init_from_data(dataset.train)


def _rule(config: VAEConfig) -> tuple[str, dict]:
    return "elbo", {"iw_samples": config.iw_samples, "warmup_epochs": config.warmup_epochs,
                    "kl_estimator": config.kl_estimator}


register_model(ModelSpec(
    "vae", VAE, "variational autoencoder: Bernoulli decoder, Gaussian encoder, 1 or 2 stochastic layers, "
    "standard or VampPrior; ELBO or IWAE-k training", ("binary",), _build, VAEConfig, rule=_rule,
    train_defaults={"optimizer": "adam", "lr": 1e-3, "batch_size": 100},
))


__all__ = ["VAE", "VAEConfig", "gaussian_log_density", "standard_normal_log_density"]
