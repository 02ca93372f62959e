"""MADE, the masked autoencoder for distribution estimation [`made`] (Germain et al. 2015).

A feed-forward net x -> h^1 -> ... -> h^L -> logits whose weight matrices are multiplied by binary masks so that
output i depends only on the inputs that come before i in an ordering. With degrees m^0(i) = position of input i
in the ordering (1..n) and hidden degrees m^l(k) in {min m^{l-1}, ..., n - 1}:
    M^l_kj = [m^l(k) >= m^{l-1}(j)]  (hidden layers),   M^out_ik = [m^0(i) > m^L(k)]  (output layer),
    h^l = act(b^l + (W^l * M^l) h^{l-1}),   P(x_i = 1 | x_{<i}) = sigmoid(c_i + ((V * M^out) h^L)_i
                                                                        + ((A * M^dir) x)_i),
    M^dir_ij = [m^0(i) > m^0(j)],   log P(x) = sum_i log P(x_i | x_{<i})  (nats, exact).

The direct input-to-output term A (`direct=True`, the default; the "Output" direct connection of the MADE
paper's MNIST experiments) contains the FVSBN as the special case V = 0, so early dimensions in the ordering,
which see few hidden units, still get a logistic regression on all the inputs before them.

Connectivity-agnostic training: `masks` = K connectivities (orderings and hidden degrees) drawn once from
`seed` (so they are deterministic and saved with the model); each training minibatch uses one of them
(`mask_sampling`: "random", drawn from the trainer's generator, or "cycle" through them in turn), and the
model is the ensemble  log P(x) = logsumexp_k log P_k(x) - log K  (the average of the K probabilities).
With order="fixed" all K masks share the identity ordering and differ only in the hidden connectivity; with
order="random" each mask also has its own random ordering. Sampling from the ensemble: k ~ uniform, then
ancestral sampling with mask k (n passes of the network).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from genlearn import products
from genlearn.errors import ConfigError
from genlearn.models import binary_input
from genlearn.models.base import (
    MATMUL_PRECISIONS,
    GenerativeModel,
    as_float,
    check_matmul_precision,
    check_positive_int,
    column_means,
    logit,
    parse_sizes,
)
from genlearn.precision import resolve_for_model
from genlearn.models.fvsbn import (
    ORDERS,
    bernoulli_log_prob,
    check_int,
    check_order,
    init_seed_generator,
    make_ordering,
)
from genlearn.models.registry import ModelSpec, register_model
from genlearn import search_space as ss
from genlearn.options import option

MAX_MASKS = 1024
MAX_HIDDEN = 100_000
ACTIVATIONS = ("relu", "sigmoid", "tanh")
MASK_SAMPLING = ("cycle", "random")


def parse_hidden(hidden, flag: str = "--hidden") -> list[int]:
    """Hidden layer sizes from an int (one layer), a list of ints, or a string "500" / "500,500"."""
    return parse_sizes(hidden, flag, MAX_HIDDEN)


def activation_fn(name: str):
    if name not in ACTIVATIONS:
        raise ConfigError(f"--activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[name]


class MADE(GenerativeModel):
    """n_features: n; hidden: layer sizes; masks: K connectivities (1 = a single fixed mask); order: "fixed" or
    "random"; mask_sampling: how training picks a mask ("cycle" or "random"); activation of the hidden layers;
    direct: add the masked input-to-output weights A (see the module docstring); seed: initial weights and the
    masks; matmul_precision: "auto" (bfloat16 only where this machine runs it faster, genlearn.precision; resolved
    at the first training loss), "full", or "bfloat16" for the training loss's matrix products (bfloat16 operands,
    float32 accumulation, under torch.autocast; log_prob, sampling and evaluation stay in full precision).

    The weights that read the input, `layers[0].weight` (H x n) and `direct_weight` (n x n), are stored input-major
    (their transposes contiguous) for the sums over 0/1 batches: index them, or use `reshape(-1)` rather than
    `view(-1)`; their state_dict entries are unchanged."""

    name = "made"
    support = "binary"

    def __init__(self, n_features: int, hidden=500, masks: int = 1, order: str = "fixed",
                 mask_sampling: str = "random", activation: str = "relu", seed: int = 0,
                 direct: bool = True, matmul_precision: str = "auto"):
        super().__init__()
        self.matmul_precision = check_matmul_precision(matmul_precision)
        self.n_features = n = check_positive_int(n_features, "n_features")
        self.hidden = parse_hidden(hidden)
        self.masks = check_int(masks, "masks", 1, MAX_MASKS)
        self.order = check_order(order)
        if mask_sampling not in MASK_SAMPLING:
            raise ConfigError(f"--mask-sampling must be one of {', '.join(MASK_SAMPLING)}, got {mask_sampling!r}")
        self.mask_sampling = mask_sampling
        self.activation = activation
        self._act = activation_fn(activation)
        self.seed = int(seed)
        g = init_seed_generator(seed)
        sizes = [n] + self.hidden
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = torch.nn.Linear(sizes[-1], n)
        self.direct = bool(direct)
        self.direct_weight = torch.nn.Parameter(torch.zeros(n, n)) if self.direct else None
        for lin in list(self.layers) + [self.out]:  # uniform(+-1/sqrt(fan_in)) from the explicit generator
            bound = 1.0 / math.sqrt(lin.in_features)
            with torch.no_grad():
                lin.weight.copy_((torch.rand(lin.weight.shape, generator=g) * 2 - 1) * bound)
                lin.bias.copy_((torch.rand(lin.bias.shape, generator=g) * 2 - 1) * bound)
        # degrees of every mask: deg_0 (K, n) = positions 1..n of the inputs; deg_l (K, H_l)
        deg0 = torch.empty(self.masks, n, dtype=torch.long)
        degs = [torch.empty(self.masks, h, dtype=torch.long) for h in self.hidden]
        for k in range(self.masks):
            ordering = make_ordering(n, order, g)
            deg0[k, ordering] = torch.arange(1, n + 1)
            low = 1
            for layer, h in enumerate(self.hidden):
                high = max(n - 1, low)
                degs[layer][k] = torch.randint(low, high + 1, (h,), generator=g)
                if not degs[layer].is_meta:  # a meta build (registry.model_size) has shapes, no degrees
                    low = int(degs[layer][k].min())
        self.register_buffer("deg0", deg0)
        for layer, d in enumerate(degs):
            self.register_buffer(f"deg{layer + 1}", d)
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))
        self._cache = None
        # the weights that read the input x (the first layer's W^1, H x n, and the direct A, n x n) stored
        # input-major (their transposes contiguous): the rows of W^T that a 0/1 batch selects are then contiguous,
        # as the sums of selected rows need (genlearn.models.binary_input); the modules still see W and A, the
        # state_dict entries are unchanged, and loading one keeps this layout
        first = self.layers[0]
        first.weight = torch.nn.Parameter(first.weight.detach().T.contiguous().T)
        if self.direct:
            self.direct_weight = torch.nn.Parameter(self.direct_weight.detach().T.contiguous().T)

    # -- masks ---------------------------------------------------------------------------------------
    def degrees(self, k: int) -> list[Tensor]:
        return [getattr(self, f"deg{layer}")[k] for layer in range(len(self.hidden) + 1)]

    def ordering(self, k: int = 0) -> Tensor:
        """The ordering of mask k: ordering[d] = the dimension predicted at step d."""
        return torch.argsort(self.deg0[k])

    def mask_matrices(self, k: int) -> list[Tensor]:
        """[M^1, ..., M^L, M^out] (+ M^dir with `direct`) for mask k (float, in the dtype of the weights); cached
        for the last k."""
        dtype = self.out.weight.dtype
        bufs = [getattr(self, f"deg{layer}") for layer in range(len(self.hidden) + 1)]
        key = (k, dtype, tuple((id(b), b._version) for b in bufs))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        d = self.degrees(k)
        mats = [(d[layer + 1].unsqueeze(1) >= d[layer].unsqueeze(0)).to(dtype) for layer in range(len(self.hidden))]
        mats.append((d[0].unsqueeze(1) > d[-1].unsqueeze(0)).to(dtype))
        if self.direct:
            mats.append((d[0].unsqueeze(1) > d[0].unsqueeze(0)).to(dtype))
        self._cache = (key, mats, {})
        return mats

    def _input_masks(self, k: int) -> list[Tensor]:
        """The transposes (contiguous) of the masks of the weights that read x: [M^1^T] (+ [M^dir^T] with
        `direct`), for the sums over a 0/1 batch; cached with `mask_matrices(k)`."""
        mats = self.mask_matrices(k)
        extra = self._cache[2]
        if "input" not in extra:
            extra["input"] = [mats[0].T.contiguous()] + ([mats[-1].T.contiguous()] if self.direct else [])
        return extra["input"]

    # -- the network ---------------------------------------------------------------------------------
    def conditional_logits(self, x: Tensor, k: int = 0) -> Tensor:
        """l_i(x) with mask k (B, n), indexed by dimension: P(x_i = 1 | x_{<i}) = sigmoid(l_i).

        On a 0/1 batch (float32 CPU, no autocast) the products that read x, x (W^1 * M^1)^T and x (A * M^dir)^T,
        are sums of selected rows of the masked weights' transposes where this CPU runs them faster
        (genlearn.models.binary_input; the same numbers up to float32 summation order)."""
        x = h = as_float(x).to(self.out.weight.dtype)
        mats = self.mask_matrices(k)
        n_layers = len(self.layers)
        first = self.layers[0]
        rows = binary_input.rows_of(self, x) if first.weight.T.is_contiguous() else None
        if rows is not None:
            masks_t = self._input_masks(k)
            h = self._act(rows.linear(first.weight.T * masks_t[0], first.bias))
        for layer, (lin, m) in enumerate(zip(self.layers, mats[:n_layers])):
            if layer > 0 or rows is None:
                h = self._act(products.linear(h, lin.weight * m, lin.bias))
        out = products.linear(h, self.out.weight * mats[n_layers], self.out.bias)
        if self.direct:
            if rows is not None and self.direct_weight.T.is_contiguous():
                out = out + rows.linear(self.direct_weight.T * masks_t[1], None)
            else:
                out = torch.addmm(out, x, (self.direct_weight * mats[n_layers + 1]).T)  # autocast applies to addmm
        return out

    def log_prob_mask(self, x: Tensor, k: int) -> Tensor:
        """log P_k(x) in nats for the autoregressive model of mask k."""
        return bernoulli_log_prob(self.conditional_logits(x, k), as_float(x))

    @property
    def ensemble_size(self) -> int:
        """K, the number of masks averaged by log_prob (members of the ensemble)."""
        return self.masks

    def member_log_prob(self, x: Tensor, k: int) -> Tensor:
        """log P_k(x) of ensemble member (mask) k alone, nats (what the trainer monitors for K > 1)."""
        return self.log_prob_mask(x, k)

    #: the member the trainer monitors
    monitor_member = 0

    def log_prob(self, x: Tensor) -> Tensor:
        """Ensemble: logsumexp_k log P_k(x) - log K (nats, exact; K = 1 is the single-mask MADE)."""
        if self.masks == 1:
            return self.log_prob_mask(x, 0)
        lp = torch.stack([self.log_prob_mask(x, k) for k in range(self.masks)])
        return torch.logsumexp(lp, 0) - math.log(self.masks)

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """-mean log P_k(x) for the mask k of this minibatch (connectivity-agnostic training); with one mask
        this is the exact NLL in nats per example (up to the rounding of bfloat16 products, if chosen)."""
        if self.masks == 1:
            k = 0
        elif self.mask_sampling == "random":
            k = int(torch.randint(self.masks, (1,), generator=generator, device=x.device))
        else:
            k = int(self.step_count) % self.masks
        if self.training and self.masks > 1:
            self.step_count += 1
        flops = 2.0 * x.shape[0] * x.shape[-1] * self.hidden[0]
        with torch.autocast(x.device.type, dtype=torch.bfloat16,
                            enabled=resolve_for_model(self, x.device, flops) == "bfloat16"):
            logits = self.conditional_logits(x, k)
        return -bernoulli_log_prob(logits.to(self.out.weight.dtype), as_float(x)).mean()

    @torch.no_grad()
    def init_from_data(self, x: Tensor) -> "MADE":
        """Output biases to the logits of the pixel means."""
        self.out.bias.copy_(logit(column_means(self.check_input(x)), 1e-3).to(self.out.bias.dtype))
        return self

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """k ~ uniform{1..K} per sample, then x_{o_d} ~ Bernoulli(sigmoid(l_{o_d}(x))) for d = 1..n."""
        n = check_positive_int(n, "number of samples")
        ks = (torch.randint(self.masks, (n,), generator=generator) if self.masks > 1
              else torch.zeros(n, dtype=torch.long))
        x = torch.zeros(n, self.n_features, dtype=self.out.weight.dtype)
        with torch.no_grad():
            for k in torch.unique(ks).tolist():
                rows = torch.nonzero(ks == k).flatten()
                x[rows] = self._sample_mask(k, rows.numel(), generator)
        return x.float()

    def _sample_mask(self, k: int, count: int, generator: torch.Generator | None) -> Tensor:
        """`count` rows drawn from the model of mask k: x_{o_d} ~ Bernoulli(sigmoid(l_{o_d}(x))) for d = 1..n, the
        masked weights formed once (conditional_logits forms them at every call: 784 calls of ~5 ms per mask) and
        only the logit of unit o_d computed at step d: l_i = h(x) . (V * M^out)_i + c_i [+ x . (A * M^dir)_i]. The
        first layer's pre-activations a = b + x (W^1 * M^1)^T are kept and updated as each x_i is drawn
        (a += x_i (W^1 * M^1)_{:, i}), so a step costs O(hidden) there instead of a product with all n inputs."""
        mats = self.mask_matrices(k)
        n_layers = len(self.layers)
        first = self.layers[0].weight * mats[0]  # (H1, n)
        deeper = [(lin.weight * m, lin.bias) for lin, m in zip(self.layers[1:], mats[1:n_layers])]
        out_w = self.out.weight * mats[n_layers]
        direct_w = self.direct_weight * mats[n_layers + 1] if self.direct else None
        dtype = self.out.weight.dtype
        xk = torch.zeros(count, self.n_features, dtype=dtype)
        pre = self.layers[0].bias.detach().to(dtype).expand(count, -1).clone()
        for i in self.ordering(k).tolist():
            h = self._act(pre)
            for w, b in deeper:
                h = self._act(torch.addmm(b, h, w.T))
            logit = h @ out_w[i] + self.out.bias[i]
            if direct_w is not None:
                logit = logit + xk @ direct_w[i]
            xi = torch.bernoulli(torch.sigmoid(logit), generator=generator)
            xk[:, i] = xi
            pre.addr_(xi, first[:, i])
        return xk

    @classmethod
    def from_config(cls, config: dict) -> "MADE":
        """Runs saved before the direct connection existed have no "direct" key and no direct weights."""
        config.setdefault("direct", False)
        config.setdefault("matmul_precision", "full")  # runs saved before matmul_precision trained in full
        return cls(**config)

    def config(self) -> dict:
        return {"n_features": self.n_features, "hidden": list(self.hidden), "masks": self.masks,
                "order": self.order, "mask_sampling": self.mask_sampling, "activation": self.activation,
                "seed": self.seed, "direct": self.direct, "matmul_precision": self.matmul_precision}


@dataclass(frozen=True)
class MADEConfig:
    """Options of `genlearn fit made`."""

    hidden: tuple[int, ...] = option((500,), "hidden layer sizes, e.g. 500 or 500,500", minimum=1)
    masks: int = option(1, f"number of masks K used in training and averaged at test (1..{MAX_MASKS})", minimum=1)
    order: str = option("fixed", "input ordering: fixed (identity) or random (one per mask)", choices=ORDERS)
    mask_sampling: str = option("random", "how a training minibatch picks its mask: random (from the trainer's "
                                "generator) or cycle (in turn)", choices=MASK_SAMPLING)
    activation: str = option("relu", "hidden activation", choices=ACTIVATIONS)
    init_seed: int = option(0, "seed of the initial weights and of the masks")
    direct: bool = option(True, "masked direct input-to-output weights (as in the MADE paper's MNIST runs)")
    matmul_precision: str = option("auto", "precision of the training loss's matrix products: auto (bfloat16 "
                                   "only where this machine runs it faster), full, or bfloat16 "
                                   "(bfloat16 operands, float32 accumulation; faster only on CPUs with "
                                   "AVX512-BF16 or AMX); likelihoods are always computed in full precision",
                                   choices=MATMUL_PRECISIONS)


def _build(dataset, config: MADEConfig) -> MADE:
    return MADE(dataset.n_features, hidden=list(config.hidden), masks=config.masks, order=config.order,
                mask_sampling=config.mask_sampling, activation=config.activation, seed=config.init_seed,
                direct=config.direct, matmul_precision=config.matmul_precision).init_from_data(dataset.train)


register_model(ModelSpec(
    "made", MADE, "masked autoencoder (MADE): one or more masked hidden layers, mask ensembles", ("binary",),
    _build, MADEConfig, train_defaults={"optimizer": "adam", "lr": 1e-3, "batch_size": 100},
    # one mask, or a small ensemble of random orderings and masks (trained with mask sampling). Larger ensembles
    # (64-256 masks) are a space file away (benchmarks/spaces/made_masks_64_256.toml: dna 79.73 against 81.23);
    # in the preset they cost a pass per mask at every validation and did not help (dna 82.42, uci_tune.json)
    search_space={"hidden": ss.integer(32, 1024, log=True), "masks": ss.choice(1, 4, 16, 64, 256),
                  "order": ss.choice("fixed", "random"), "activation": ss.choice("relu", "tanh"),
                  "lr": ss.real(1e-4, 1e-2, log=True), "batch_size": ss.choice(16, 32, 64, 128),
                  "weight_decay": ss.choice(0.0, 1e-6, 1e-5, 1e-4, 1e-3),
                  "schedule": ss.choice("constant", "geometric")},
))


__all__ = ["MADE", "parse_hidden"]
