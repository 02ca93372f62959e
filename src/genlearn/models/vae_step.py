"""The training gradient of a one-layer VAE with the N(0, I) prior, by a hand-written backward pass.

For a batch x(1..B), k reparameterised samples z_j = mu + s eps_j (s = exp(logvar / 2), eps_j ~ N(0, I)) and
the KL weight beta (1 without warm-up), the rule "elbo" descends

    k = 1, closed-form KL:  loss = -(1/B) sum_m [log P(x_m|z_m) - beta KL(q(z|x_m) || N(0, I))],
                            KL = (1/2) sum_d (mu_d^2 + v_d - 1 - log v_d),  v = exp(logvar);
    otherwise:              loss = -(1/B) sum_m [logsumexp_j log w_jm - log k],
                            log w = log P(x|z) + beta (log N(z; 0, I) - log q(z|x))    (nats per example).

autograd would record ~100 small operations per step and replay them backwards; here the forward pass keeps
what the backward pass needs and the backward pass is written out (a few tens of tensor operations in all):

    g_jm = dloss / dlog w_jm = -(1/B) w~_jm         (w~: the weights normalised over j, those below
                                                     numerics.negligible_weight as 0; -1/B for k = 1)
    dloss/dl_jmi = g_jm (x_mi - sigmoid(l_jmi))     (l: the decoder's logits), then back through the decoder MLP
    dloss/dz_j = [decoder] - beta g_j z_j           (d log N(z; 0, I)/dz = -z)
    dloss/dmu = sum_j dloss/dz_j  (+ beta mu / B for the closed-form KL)
    dloss/dlogvar = sum_j dloss/dz_j (s eps_j / 2) + (beta / 2) sum_j g_j    (log q at fixed eps: -(1/2) per dim)
                    (closed form: + beta (v - 1) / (2 B)), zero where logvar was clipped (to the VAE's LOGVAR_RANGE),
    then back through the encoder MLP; each layer y = act(h W^T + b): dW = dpre^T h, db = sum_rows dpre,
    dh = dpre W (not for the data). A sample of weight 0 adds exactly 0 to all of these: where at least
    MIN_ZERO_FRACTION of the k B samples have it, the decoder's backward pass runs on the others only (IWAE-50 on
    binarized MNIST: 10-22% of them in the first epochs, 7-14% less time per epoch on an AVX2 core).

The closed-form ELBO in float32 on the CPU with numba present (the common case) runs as one flat sequence
(`_flat_closed_pass`): the same operations in the same order as the general pass, with the model's layers and its
tanh form looked up once per model (`_FlatPlan`) instead of being chosen per step (trainer epochs 7% shorter on an
AVX2 core). Compiled passes where numba is present (float32/float64 CPU): the output layer's log P(x|z) and
sigmoid(l) - x in one pass over the logits (logistic_kernels.bernoulli_rows_, float32), and for the closed-form ELBO
the Gaussian layer (z, s, KL forward; dmu, dlogvar backward) in one call each (genlearn.gaussian_kernels) instead of
~30 small torch operations; on 0/1 data the encoder's first layer as sums of selected rows (`_BinaryInput`, where
timed faster: 2.10 s against 2.25 s per binarized MNIST epoch on an AVX2 core). Products go straight to torch.addmm /
torch.mm where genlearn.products would choose torch anyway.

The same gradient as autograd through `VAE.elbo` / `VAE.log_weights` up to rounding (tests/test_vae_step.py
checks it in float64) from the same random numbers (eps is drawn with the same call, so a run takes the same path).
Used by the rule when `usable` says so: float32/float64, every parameter trained; under the model's bfloat16
training precision the larger products take bfloat16 operands (float32 results; the rest stays float32);
GENLEARN_VAE_STEP=autograd switches it off (for comparisons)."""
from __future__ import annotations

import math
import os
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor

from genlearn import binary_kernels, gaussian_kernels, logistic_kernels, numerics, products

_LOG_2PI = math.log(2 * math.pi)
#: rows of logits per block when k x B rows go through the output layer: a block stays in cache between the product
#: that makes it and the passes (softplus sums, sigmoids) that read it
BLOCK_ROWS = 512


def enabled() -> bool:
    """False when GENLEARN_VAE_STEP=autograd asks for autograd's backward pass instead."""
    return os.environ.get("GENLEARN_VAE_STEP", "").lower() != "autograd"


def _layers(mlp) -> list:
    """The linear maps of a one-input MLP, bottom up."""
    return [mlp.first[0], *mlp.rest]


#: model -> its parameters if its structure is one `loss_and_gradient` computes (one stochastic layer, the standard
#: prior, a one-input MLP on each side: fixed when a VAE is built), else None; looked up once per model (walking the
#: module tree each step cost ~50 us of a ~3 ms step)
_STRUCTURE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _parameters_if_supported(model) -> list | None:
    params = _STRUCTURE.get(model, False)
    if params is False or (params is not None and params[-2] is not model.dec_out.weight):  # new or replaced
        params = list(model.parameters())
        supported = (model.layers == 1 and model.prior == "standard" and len(model.enc_top.first) == 1
                     and len(model.dec.first) == 1
                     and len(params) == 2 * (len(_layers(model.enc_top)) + len(_layers(model.dec)) + 2))
        params = _STRUCTURE[model] = params if supported else None
    return params


def usable(model, x: Tensor) -> bool:
    """Whether `loss_and_gradient` computes this model's training gradient: one stochastic layer, the standard
    prior, a one-input MLP on each side, every parameter trained, float32 or float64, grad mode on, and no autocast
    other than the model's own bfloat16 one (`VAE.training_precision`), which the pass turns into bfloat16 operands."""
    if not (enabled() and torch.is_grad_enabled() and x.dim() == 2):
        return False
    params = _parameters_if_supported(model)
    if params is None:
        return False
    dtype, device = params[0].dtype, params[0].device.type
    autocast_ok = not torch.is_autocast_enabled(device) or (
        device == "cpu" and dtype == torch.float32 and torch.get_autocast_dtype(device) == torch.bfloat16)
    return (dtype in (torch.float32, torch.float64) and all(p.requires_grad and p.dtype == dtype for p in params)
            and autocast_ok)


#: under bfloat16 precision, products of fewer flops (2 m k n) keep float32 operands: below this the casts cost more
#: than the bfloat16 product saves (AMX, one core: 100 x 784 x 200, 31 MFLOP, 0.20 ms in float32 against 0.13 ms
#: with its casts; at 100 x 200 x 200 the casts ate the gain)
LOW_MIN_FLOPS = 2e7


class _Products:
    """The pass's matrix products: genlearn.products in the parameters' dtype, or (low=True, the model's bfloat16
    training precision) bfloat16 operands for the products of at least LOW_MIN_FLOPS, their results in float32;
    each operand is cast once however many products use it (a weight twice, a layer's input and its
    gradient twice), and everything between the products stays float32."""

    def __init__(self, low: bool, dtype: torch.dtype, device: torch.device):
        self.low = low
        self._cast: dict = {}  # id(tensor) -> (tensor, its bfloat16 copy): the tensor kept alive with its copy
        # torch's products straight away where genlearn.products would choose them anyway (~4 us less per call)
        self.direct = not low and (device.type != "cpu" or dtype != torch.float32 or products.choice() == "torch")

    def _bf16(self, t: Tensor) -> Tensor:
        hit = self._cast.get(id(t))
        if hit is None or hit[0] is not t:
            hit = self._cast[id(t)] = (t, t.to(torch.bfloat16))
        return hit[1]

    def _use_low(self, m: int, k: int, n: int) -> bool:
        return self.low and 2.0 * m * k * n >= LOW_MIN_FLOPS

    def linear(self, h: Tensor, W: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
        """h W^T + b (h: R x in); into `out` when given."""
        if self._use_low(h.shape[0], W.shape[1], W.shape[0]):
            r = F.linear(self._bf16(h), self._bf16(W), self._bf16(b))
            return r.float() if out is None else out.copy_(r)
        if self.direct:
            return torch.addmm(b, h, W.T) if out is None else torch.addmm(b, h, W.T, out=out)
        if out is None:
            return products.linear(h, W, b)
        return products.addmm(b, h, W.T, out=out)

    def weight_grad(self, dpre: Tensor, h: Tensor, W: Tensor) -> Tensor:
        """dpre^T h, in W's layout (for a W stored input-major, (h^T dpre)^T: the optimizer's fused kernel needs a
        gradient with its parameter's strides)."""
        if not W.is_contiguous() and W.T.is_contiguous():
            return self.weight_grad(h, dpre, W.T).T
        if self._use_low(dpre.shape[1], dpre.shape[0], h.shape[1]):
            return torch.mm(self._bf16(dpre).T, self._bf16(h)).float()
        return torch.mm(dpre.T, h) if self.direct else products.mm(dpre.T, h)

    def input_grad(self, dpre: Tensor, W: Tensor) -> Tensor:
        """dpre W."""
        if self._use_low(dpre.shape[0], dpre.shape[1], W.shape[1]):
            return torch.mm(self._bf16(dpre), self._bf16(W)).float()
        return torch.mm(dpre, W) if self.direct else products.mm(dpre, W)


# -- activations ---------------------------------------------------------------------------------------------------
def _activate(kind: str, pre: Tensor) -> tuple[Tensor, tuple]:
    """(y, what the derivative needs) for y = act(pre)."""
    if kind == "tanh":
        y = numerics.tanh_(pre)  # in place on the fresh pre-activations (2 sigmoid(2a) - 1 where that is faster)
        return y, (y,)
    if kind == "relu":
        y = torch.relu(pre)
        return y, (y,)
    if kind == "softplus":
        return F.softplus(pre), (pre,)
    a, g = pre.chunk(2, dim=-1)  # gated: y = a sigmoid(g)
    s = torch.sigmoid(g)
    return a * s, (a, s)


def _activation_backward(kind: str, dy: Tensor, saved: tuple) -> Tensor:
    """dloss/dpre from dloss/dy: tanh 1 - y^2, relu [y > 0], softplus sigmoid(pre), gated (s, a s (1 - s))."""
    if kind == "tanh":
        return torch.ops.aten.tanh_backward(dy, saved[0])
    if kind == "relu":
        return torch.ops.aten.threshold_backward(dy, saved[0], 0)
    if kind == "softplus":
        return torch.ops.aten.softplus_backward(dy, saved[0], 1, 20)
    a, s = saved
    return torch.cat([dy * s, torch.ops.aten.sigmoid_backward(dy * a, s)], -1)


# -- dense layers --------------------------------------------------------------------------------------------------
def _mlp_forward(P: _Products, mlp, kind: str, h: Tensor,
                 binary: "_BinaryInput | None" = None) -> tuple[Tensor, list]:
    """The MLP's output on rows h (R, .) and, per layer, (linear, input, activation terms); the first layer by
    `binary`'s sums where it says so."""
    tape = []
    for i, lin in enumerate(_layers(mlp)):
        if i == 0 and binary is not None and binary.forward:
            pre = binary.linear(lin, h)
        else:
            pre = P.linear(h, lin.weight, lin.bias)
        y, saved = _activate(kind, pre)
        tape.append((lin, h, saved))
        h = y
    return h, tape


def _linear_backward(P: _Products, lin, h: Tensor, dpre: Tensor, grads: dict, need_input: bool) -> Tensor | None:
    """Records dW = dpre^T h and db = sum_rows dpre; returns dh = dpre W when asked."""
    grads[lin.bias] = dpre.sum(0)
    grads[lin.weight] = P.weight_grad(dpre, h, lin.weight)
    return P.input_grad(dpre, lin.weight) if need_input else None


def _mlp_backward(P: _Products, tape: list, kind: str, dy: Tensor, grads: dict, need_input: bool,
                  binary: "_BinaryInput | None" = None) -> Tensor | None:
    for i in range(len(tape) - 1, -1, -1):
        lin, h, saved = tape[i]
        dpre = _activation_backward(kind, dy, saved)
        if i == 0 and binary is not None and binary.stats:
            binary.backward(lin, dpre, grads)
            return None
        dy = _linear_backward(P, lin, h, dpre, grads, need_input or i > 0)
    return dy


# -- the encoder's first layer on 0/1 data -------------------------------------------------------------------------
class _BinaryInput:
    """The encoder's first layer pre = b + x W^T on a 0/1 batch x (B x n) as sums of selected rows
    (genlearn.binary_kernels): row m of x W^T is the sum of the rows of W^T at the active pixels of x_m, and the
    weight's gradient dW^T = x^T dpre is, per pixel i, the sum of the rows dpre_m with x_mi = 1 (nnz(x) H additions
    each instead of 2 B n H flops; binarized MNIST has 13% ones). Each of the two is taken where
    binary_kernels.CHOOSER timed it faster at this batch's density on this CPU; the same results as the dense products
    up to float32 summation order. The batch is indexed once for both."""

    def __init__(self, index, forward: bool, stats: bool):
        self.index, self.forward, self.stats = index, forward, stats

    @classmethod
    def make(cls, P: _Products, model, lin, x: Tensor) -> "_BinaryInput | None":
        """The sums' plan for this batch, or None (dense products): float32 CPU rows of exact 0/1 entries, the
        weight stored input-major (VAE stores it so), full-precision products, and at least one of the two faster."""
        W, b = lin.weight, lin.bias
        if P.low or b is None or not (binary_kernels.usable(x) and binary_kernels.usable(W.T)):
            return None
        B, n = x.shape
        index = _row_index(model, B, n)
        if not index.add(x):  # entries other than 0/1 (gray levels): the dense products
            return None
        density, H = index.density(0, B), W.shape[0]
        forward = binary_kernels.faster_at(density, "rows", B, n, H)
        stats = binary_kernels.faster_at(density, "stats", B, n, H)
        return cls(index, forward, stats) if forward or stats else None

    def linear(self, lin, x: Tensor) -> Tensor:
        """b + x W^T (B x H)."""
        out = torch.empty(x.shape[0], lin.weight.shape[0], dtype=x.dtype)
        return self.index.addmm(0, x.shape[0], lin.weight.T, lin.bias, out)

    def backward(self, lin, dpre: Tensor, grads: dict) -> None:
        """Records dW = (x^T dpre)^T (in W's input-major layout) and db = sum_rows dpre."""
        grads[lin.bias] = dpre.sum(0)
        W = lin.weight
        grads[W] = self.index.t_mm(dpre.contiguous(), torch.empty(W.shape[1], W.shape[0], dtype=W.dtype)).T


#: model -> the RowIndex of its last batch (each model its own: other users of binary_kernels, or another model
#: trained in another thread, index their rows between this step's forward and backward passes)
_INDEXES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _row_index(model, B: int, n: int):
    """A RowIndex for at least B rows of length n, kept per model (a smaller last batch uses its first rows)."""
    index = _INDEXES.get(model)
    if index is None or index.capacity < B or index.V != n:
        index = _INDEXES[model] = binary_kernels.RowIndex(B, n)
    return index


# -- the output layer and log P(x|z) -------------------------------------------------------------------------------
def _softplus_sums(logits: Tensor) -> Tensor:
    """sum_i softplus(l_i) per row: the compiled kernel for float32 CPU blocks, else F.softplus."""
    if logistic_kernels.usable(logits):
        return logistic_kernels.row_sums(logits)
    return F.softplus(logits).sum(-1)


def _sigmoid_(a: Tensor) -> Tensor:
    return logistic_kernels.sigmoid_(a) if logistic_kernels.usable(a) else a.sigmoid_()


def _log_likelihood(P: _Products, h: Tensor, W: Tensor, b: Tensor, x: Tensor, k: int,
                    scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """(log P(x|z) (k, B), scale (sigmoid(l) - x) (k B, n)) for the decoder features h (k B, H), l = h W^T + b:
    log P(x|z) = sum_i x_i l_i - softplus(l_i), and sigmoid(l) - x = -d log P(x|z) / dl.

    For float32 CPU logits (numba present) one compiled pass per block computes both (logistic_kernels.bernoulli_rows_);
    the logits are made in blocks of BLOCK_ROWS rows, each consumed while in cache. Otherwise torch's passes: with one
    block, the data term read from the logits; with more, h . (W^T x) + b . x (one (B, n) x (n, H) product instead of
    k B n products)."""
    rows, B = h.shape[0], x.shape[0]
    out = torch.empty(rows, W.shape[0], dtype=W.dtype, device=W.device)
    log_lik = torch.empty(rows, dtype=W.dtype, device=W.device)
    fused = logistic_kernels.usable(out) and logistic_kernels.usable(x)
    data = None if fused or rows <= BLOCK_ROWS else (h.view(k, B, -1) * products.mm(x, W)).sum(-1) + x @ b
    for start in range(0, rows, BLOCK_ROWS):
        block = P.linear(h[start : start + BLOCK_ROWS], W, b, out=out[start : start + BLOCK_ROWS])
        if fused:
            log_lik[start : start + BLOCK_ROWS] = logistic_kernels.bernoulli_rows_(block, x, start, scale)
            continue
        if data is None:  # one block: the data term from the logits, before they become sigmoids
            data = (block.view(k, B, -1) * x).sum(-1)
        log_lik[start : start + BLOCK_ROWS] = _softplus_sums(block).neg_()
        _sigmoid_(block)
    if not fused:
        log_lik = data + log_lik.view(k, B)
        out.view(k, B, -1).sub_(x)
        if scale != 1.0:
            out.mul_(scale)
    return log_lik.view(k, B), out


# -- samples of weight 0 -----------------------------------------------------------------------------------------------
#: the decoder's backward pass skips the samples of weight 0 (below numerics.negligible_weight) when at least
#: this fraction of the k B rows has it: below, gathering the other rows costs about what it saves
MIN_ZERO_FRACTION = 0.05


def _weighted_rows(g: Tensor) -> Tensor | None:
    """The flat indices (into the k B decoder rows, sample-major) of the nonzero entries of g (k, B), or None when
    fewer than MIN_ZERO_FRACTION of them are 0. A row of weight 0 adds exactly 0 to every gradient (its dloss/dl is
    g (sigmoid(l) - x) = 0, and so is all that flows back from it), so leaving it out changes no gradient beyond the
    summation order."""
    flat = g.view(-1)
    kept = flat.nonzero().view(-1)
    return kept if flat.numel() - kept.numel() >= MIN_ZERO_FRACTION * flat.numel() else None


def _rows(t: Tensor, rows: Tensor, gathered: dict) -> Tensor:
    """t's given rows, gathered once per tensor (`gathered`: id -> (tensor, its rows), kept for one pass)."""
    hit = gathered.get(id(t))
    if hit is None or hit[0] is not t:
        hit = gathered[id(t)] = (t, t.index_select(0, rows))
    return hit[1]


def _tape_rows(tape: list, rows: Tensor, gathered: dict) -> list:
    """The MLP's tape (linear, input, activation terms) restricted to the given rows (a tensor that is both one layer's
    activation term and the next one's input, tanh's y, gathered once)."""
    return [(lin, _rows(h, rows, gathered), tuple(_rows(t, rows, gathered) for t in saved)) for lin, h, saved in tape]


# -- the closed-form ELBO's flat pass -------------------------------------------------------------------------------
#: False: the closed-form ELBO takes the general pass too (for comparisons and tests)
FLAT = True


class _FlatPlan:
    """What the closed-form ELBO's pass needs to know about a model, looked up once: its layers' parameters and its
    activation (tanh in the form numerics.tanh_form chose for this machine). With it the pass runs as one
    flat sequence of products and compiled kernels: the same operations as the general pass in the same order (the
    same results to the bit), without its per-step choices (~0.4 ms of a ~3.7 ms step, one AVX2 core)."""

    def __init__(self, model, key: tuple):
        self.key = key
        self.enc = [(lin.weight, lin.bias) for lin in _layers(model.enc_top)]
        self.head = (model.enc_top_head.linear.weight, model.enc_top_head.linear.bias)
        self.dec = [(lin.weight, lin.bias) for lin in _layers(model.dec)]
        self.out = (model.dec_out.weight, model.dec_out.bias)
        self.kind = model.activation
        form = numerics.tanh_form(torch.empty(1, self.enc[0][0].shape[0]))
        self.tanh_ = logistic_kernels.tanh_ if form == "compiled" else numerics.tanh_

    def activate(self, pre: Tensor) -> tuple[Tensor, tuple]:
        if self.kind == "tanh":
            y = self.tanh_(pre)
            return y, (y,)
        return _activate(self.kind, pre)

    def activation_backward(self, dy: Tensor, saved: tuple) -> Tensor:
        return _TANH_BACKWARD(dy, saved[0]) if self.kind == "tanh" else _activation_backward(self.kind, dy, saved)


_TANH_BACKWARD = torch.ops.aten.tanh_backward.default
#: (head, eps) as the pass makes them (contiguous float32 CPU rows, no graph): whether the Gaussian layer's compiled
#: passes take such tensors (numba present)
_GAUSSIAN_PROBE = (torch.zeros(1, 2), torch.zeros(1, 1))
#: model -> its _FlatPlan
_PLANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _flat_plan(model, x: Tensor) -> "_FlatPlan | None":
    """The model's plan where the flat pass computes its closed-form ELBO gradient: float32 CPU parameters and batch,
    numba's kernels present, torch's products chosen for float32 (genlearn.products), FLAT on; else None."""
    W = model.dec_out.weight
    if not (FLAT and W.dtype == torch.float32 and W.device.type == "cpu" and logistic_kernels.usable(x)
            and gaussian_kernels.usable(*_GAUSSIAN_PROBE) and products.choice() == "torch"):
        return None
    key = (W, os.environ.get("GENLEARN_ELEMENTWISE"), torch.get_num_threads())
    plan = _PLANS.get(model)
    if plan is None or plan.key[0] is not W or plan.key[1:] != key[1:]:
        plan = _PLANS[model] = _FlatPlan(model, key)
    return plan


def _weight_grad(dpre: Tensor, h: Tensor, W: Tensor) -> Tensor:
    """dpre^T h in W's layout (input-major W: (h^T dpre)^T)."""
    return torch.mm(dpre.T, h) if W.is_contiguous() else torch.mm(h.T, dpre).T


def _accumulate(p: Tensor, grad: Tensor) -> None:
    p.grad = grad if p.grad is None else p.grad + grad


def _flat_closed_pass(plan: _FlatPlan, model, x: Tensor, generator, beta: float, lo: float, hi: float,
                      draw_noise) -> Tensor:
    """The closed-form ELBO's loss and gradient (k = 1, module docstring) as `loss_and_gradient`'s general pass
    computes them, flat: the encoder's first layer as sums over a 0/1 batch where faster, the Gaussian layer and the
    output layer by their compiled kernels, every other product by torch."""
    B, n = x.shape
    W1 = plan.enc[0][0]
    index, forward, stats = None, False, False
    if binary_kernels.usable(x) and W1.T.is_contiguous() and binary_kernels.usable(W1.T):
        index = _row_index(model, B, n)
        if index.add(x):  # 0/1 rows: sums where they are faster at this density
            density, H = index.density(0, B), W1.shape[0]
            forward = binary_kernels.faster_at(density, "rows", B, n, H)
            stats = binary_kernels.faster_at(density, "stats", B, n, H)
    # encoder
    h, enc_saved = x, []
    for i, (W, b) in enumerate(plan.enc):
        pre = (index.addmm(0, B, W.T, b, torch.empty(B, W.shape[0])) if i == 0 and forward
               else torch.addmm(b, h, W.T))
        y, saved = plan.activate(pre)
        enc_saved.append((h, saved))
        h = y
    W_head, b_head = plan.head
    head_out = torch.addmm(b_head, h, W_head.T)
    D = head_out.shape[1] // 2
    eps = draw_noise(head_out[:, :D], None, generator)
    z, s, kl_sum = gaussian_kernels.closed_forward(head_out, eps, lo, hi)
    # decoder and log P(x|z); the logits become (sigmoid(l) - x) / B = dloss/dl
    g, dec_saved = z, []
    for W, b in plan.dec:
        y, saved = plan.activate(torch.addmm(b, g, W.T))
        dec_saved.append((g, saved))
        g = y
    W_out, b_out = plan.out
    dl = torch.addmm(b_out, g, W_out.T)
    loss = logistic_kernels.bernoulli_rows_(dl, x, 0, 1.0 / B).sum().sub_(beta * kl_sum).mul_(-1.0 / B)
    # backward
    _accumulate(b_out, dl.sum(0))
    _accumulate(W_out, _weight_grad(dl, g, W_out))
    dy = torch.mm(dl, W_out)
    for (W, b), (g_in, saved) in zip(reversed(plan.dec), reversed(dec_saved)):
        dpre = plan.activation_backward(dy, saved)
        _accumulate(b, dpre.sum(0))
        _accumulate(W, _weight_grad(dpre, g_in, W))
        dy = torch.mm(dpre, W)
    dhead = gaussian_kernels.closed_backward(head_out, eps, s, dy, beta / B, lo, hi)
    _accumulate(b_head, dhead.sum(0))
    _accumulate(W_head, _weight_grad(dhead, h, W_head))
    dy = torch.mm(dhead, W_head)
    for i in range(len(plan.enc) - 1, -1, -1):
        (W, b), (h_in, saved) = plan.enc[i], enc_saved[i]
        dpre = plan.activation_backward(dy, saved)
        _accumulate(b, dpre.sum(0))
        if i == 0 and stats:
            _accumulate(W, index.t_mm(dpre.contiguous(), torch.empty(W.shape[1], W.shape[0])).T)
        else:
            _accumulate(W, _weight_grad(dpre, h_in, W))
        if i > 0:
            dy = torch.mm(dpre, W)
    return loss


# -- the step ------------------------------------------------------------------------------------------------------
def loss_and_gradient(model, x: Tensor, k: int, generator, kl_weight: float, closed_form_kl: bool,
                      logvar_range: tuple[float, float], draw_noise) -> Tensor:
    """Accumulates dloss/dtheta into p.grad of every parameter and returns the loss (module docstring; nats per
    example). closed_form_kl: for k = 1, the KL term in closed form (else log w of the one sample); logvar_range:
    the encoder's clipping of logvar; draw_noise(mu, k or None, generator): the model's eps ~ N(0, I)."""
    lo, hi = logvar_range
    beta, kind = float(kl_weight), model.activation
    W_out, b_out = model.dec_out.weight, model.dec_out.bias
    dtype = W_out.dtype
    x = x.to(dtype)
    B, grads = x.shape[0], {}
    low = torch.is_autocast_enabled(x.device.type)  # autocast: the model's bfloat16
    if k == 1 and closed_form_kl and not low:
        plan = _flat_plan(model, x)
        if plan is not None:
            with torch.no_grad():
                return _flat_closed_pass(plan, model, x, generator, beta, lo, hi, draw_noise)
    P = _Products(low, dtype, x.device)
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        # encoder: (mu, logvar) of q(z|x)
        binary = _BinaryInput.make(P, model, model.enc_top.first[0], x)  # sums over the 0/1 batch where faster
        h_enc, enc_tape = _mlp_forward(P, model.enc_top, kind, x, binary)
        head = model.enc_top_head.linear
        head_out = P.linear(h_enc, head.weight, head.bias)
        mu, raw_logvar = head_out.chunk(2, dim=-1)
        closed = k == 1 and closed_form_kl
        eps = draw_noise(mu, None if closed else k, generator)
        compiled = closed and gaussian_kernels.usable(head_out, eps)  # the latent layer's ~30 small ops in 2 calls
        if compiled:
            z, s, kl_sum = gaussian_kernels.closed_forward(head_out, eps, lo, hi)
        else:
            logvar = raw_logvar.clamp(lo, hi)
            s = torch.exp(0.5 * logvar)
            z = mu + s * eps  # (B, D) or (k, B, D)
        D = mu.shape[-1]
        # decoder and log P(x|z)
        h_dec, dec_tape = _mlp_forward(P, model.dec, kind, z.reshape(-1, D))
        # (k, B) and sigmoid(l) - x, for the closed-form ELBO already times 1 / B = -dloss/dlog P(x|z)
        log_lik, residual = _log_likelihood(P, h_dec, W_out, b_out, x, k, 1.0 / B if closed else 1.0)
        if compiled:
            loss = log_lik.sum().sub_(beta * kl_sum).mul_(-1.0 / B)
        elif closed:
            v = torch.exp(logvar)
            kl = 0.5 * (mu.pow(2) + v - 1 - logvar).sum(-1)
            loss = -(log_lik[0] - beta * kl).mean()
        else:
            log_p = -0.5 * (_LOG_2PI + z.pow(2)).sum(-1)
            log_q = -0.5 * (_LOG_2PI + logvar + eps.pow(2)).sum(-1)
            log_w = (log_lik + beta * (log_p - log_q)).view(k, B)
            loss = -(torch.logsumexp(log_w, 0) - math.log(k)).mean()
            # dloss/dlog w, weights below numerics.negligible_weight as 0 (as numerics.log_mean_exp's gradient)
            g = numerics.negligible_to_zero_(torch.softmax(log_w, 0)).mul_(-1.0 / B)
        # backward: the output layer (dloss/dl = -g (x - sigmoid(l)), in place), the decoder, then z = mu + s eps
        kept = None if closed else _weighted_rows(g)
        if kept is None:
            dl = residual if closed else residual.view(k, B, -1).mul_(-g.unsqueeze(-1)).view(k * B, -1)
            dh = _linear_backward(P, model.dec_out, h_dec, dl, grads, True)
            dz = _mlp_backward(P, dec_tape, kind, dh, grads, True).view(k, B, D)
        else:  # the rows of weight 0 add exactly 0 to every gradient: the decoder's backward pass without them
            dl = residual.index_select(0, kept).mul_(g.view(-1, 1).index_select(0, kept).neg_())
            gathered: dict = {}  # each tape tensor gathered once (a layer's output is the next layer's input)
            dh = _linear_backward(P, model.dec_out, _rows(h_dec, kept, gathered), dl, grads, True)
            dz_kept = _mlp_backward(P, _tape_rows(dec_tape, kept, gathered), kind, dh, grads, True)
            dz = dz_kept.new_zeros(k * B, D).index_copy_(0, kept, dz_kept).view(k, B, D)
        if compiled:
            dhead = gaussian_kernels.closed_backward(head_out, eps, s, dz[0], beta / B, lo, hi)
        else:
            if closed:
                dz = dz[0]
                dmu = dz + (beta / B) * mu
                dlogvar = dz * s * eps * 0.5 + (0.5 * beta / B) * (v - 1)
            else:
                dz = dz - (beta * g).unsqueeze(-1) * z.view(k, B, D)
                dmu = dz.sum(0)
                dlogvar = (dz * eps.view(k, B, D)).sum(0) * s * 0.5 + (0.5 * beta) * g.sum(0).unsqueeze(-1)
            dlogvar = dlogvar * ((raw_logvar >= lo) & (raw_logvar <= hi))
            dhead = torch.cat([dmu, dlogvar], -1)
        dh_enc = _linear_backward(P, head, h_enc, dhead, grads, True)
        _mlp_backward(P, enc_tape, kind, dh_enc, grads, False, binary)
        for p, grad in grads.items():
            p.grad = grad if p.grad is None else p.grad + grad
    return loss


__all__ = ["BLOCK_ROWS", "enabled", "loss_and_gradient", "usable"]
