"""NADE, the neural autoregressive distribution estimator [`nade`] (Larochelle & Murray 2011; order-agnostic
training and ensembles as in Uria, Murray & Larochelle 2014).

For an ordering o (o_d = the dimension predicted at step d), with shared weights W (H x n), c (H), V (n x H'),
b (n) and, for order-agnostic models, mask weights U (H x n):
    a_d = c + sum_{e<d} (W[:, o_e] x_{o_e} + U[:, o_e]),    h_d = act(a_d)   [h_d <- act(c2 + W2 h_d) if 2 layers]
    P(x_{o_d} = 1 | x_{o_<d}) = sigmoid(b_{o_d} + V[o_d] . h_d),     log P_o(x) = sum_d log P(x_{o_d} | x_{o_<d}).
The a_d of all n steps come from one exclusive cumulative sum over d of the per-step contributions, so a whole
log-likelihood costs O(nH) per example (not n separate networks of O(nH) each); a second hidden layer adds
O(n H H2). (U is the "mask input" of Uria et al.: the input is (x * m, m), m = indicator of the observed dims,
so the network knows which zeros are observed and which are missing.)

Order-agnostic training (`order_agnostic=True`): for each example an ordering and a split d ~ U{0..n-1} are
drawn (from the trainer's generator); only the set of the first d dimensions matters, so one pass gives the
conditionals of all n - d unobserved dims and the loss
    -(n / (n - d)) sum_{j unobserved} log P(x_j | x_observed)
is an unbiased estimate of E_o[-log P_o(x)] (the set is drawn without sorting, see `sample_observed_sets`).
The model is then the ensemble over K fixed orderings drawn once from `seed` (`orderings`):
log P(x) = logsumexp_k log P_{o_k}(x) - log K, exact and deterministic. Sampling from the ensemble:
k ~ uniform, then ancestral sampling along o_k.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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
)
from genlearn.precision import resolve_for_model
from genlearn.models.fvsbn import (
    ORDERS,
    bernoulli_log_prob,
    check_int,
    check_order,
    init_seed_generator,
)
from genlearn.models.made import ACTIVATIONS, activation_fn, parse_hidden
from genlearn.models.registry import ModelSpec, register_model
from genlearn import search_space as ss
from genlearn.options import option

MAX_ORDERINGS = 1024
#: elements of one (batch x block x H) slab of the blocked pass; ~4 MB of float32 so that it stays in cache
SLAB_ELEMENTS = 1_000_000


def _act_and_grad(name: str):
    """(act, d act / d a expressed with a and h = act(a))."""
    if name == "relu":
        return torch.relu, lambda a, h: (a > 0).to(a.dtype)
    if name == "sigmoid":
        return torch.sigmoid, lambda a, h: h * (1 - h)
    return torch.tanh, lambda a, h: 1 - h * h


class _OneLayerNADE(torch.autograd.Function):
    """Fused one-hidden-layer NADE pass over blocks of the ordering, O(nH) time per example and O(H) state:

        a_d = c + sum_{e<d} (x_e w_e + u_e),   l_d = v_d . act(a_d)          (ordering coordinates)

    Forward keeps only the carries a at the block starts; backward recomputes each block in reverse order and
    uses suffix sums of dL/da: dL/dw_e = sum_b x_be sum_{d>e} dL/da_bd,  dL/du_e = sum_b sum_{d>e} dL/da_bd,
    dL/dv_d = sum_b g_bd h_bd,  dL/dc = sum_{b,d} dL/da_bd,  dL/dx_be = w_e . sum_{d>e} dL/da_bd.
    No (batch x n x H) tensor is ever materialised."""

    @staticmethod
    def forward(ctx, xo, wo, uo, c, vo, act_name: str):
        act, _ = _act_and_grad(act_name)
        bsz, n = xo.shape
        block = max(1, min(n, SLAB_ELEMENTS // max(bsz * wo.shape[1], 1)))
        out = torch.empty(bsz, n, dtype=wo.dtype)
        carry = c.expand(bsz, -1).clone()
        starts = []
        for s in range(0, n, block):
            e = min(s + block, n)
            starts.append(carry.clone())
            contrib = xo[:, s:e, None] * wo[s:e]
            if uo is not None:
                contrib += uo[s:e]
            a = torch.cumsum(contrib, 1)
            a.sub_(contrib).add_(carry.unsqueeze(1))          # exclusive prefix sums + the carry
            carry += contrib.sum(1)
            out[:, s:e] = torch.einsum("bsh,sh->bs", act(a), vo[s:e])
        ctx.save_for_backward(xo, wo, uo if uo is not None else torch.empty(0), vo, torch.stack(starts, 1))
        ctx.block, ctx.act_name, ctx.has_u = block, act_name, uo is not None
        return out

    @staticmethod
    def backward(ctx, g):
        xo, wo, uo, vo, starts = ctx.saved_tensors
        act, dact = _act_and_grad(ctx.act_name)
        bsz, n = xo.shape
        g = g.contiguous()
        gw, gv = torch.zeros_like(wo), torch.zeros_like(vo)
        gu = torch.zeros_like(wo) if ctx.has_u else None
        gc = torch.zeros(wo.shape[1], dtype=wo.dtype)
        gx = torch.zeros_like(xo) if ctx.needs_input_grad[0] else None
        suffix = torch.zeros(bsz, wo.shape[1], dtype=wo.dtype)   # sum of dL/da over the later blocks
        blocks = list(range(0, n, ctx.block))
        for i in reversed(range(len(blocks))):
            s = blocks[i]
            e = min(s + ctx.block, n)
            contrib = xo[:, s:e, None] * wo[s:e]
            if ctx.has_u:
                contrib += uo[s:e]
            a = torch.cumsum(contrib, 1)
            a.sub_(contrib).add_(starts[:, i].unsqueeze(1))
            h = act(a)
            gs = g[:, s:e]
            gv[s:e] = torch.einsum("bs,bsh->sh", gs, h)
            da = (gs.unsqueeze(-1) * vo[s:e]).mul_(dact(a, h))
            gc += da.sum((0, 1))
            later = torch.flip(torch.cumsum(torch.flip(da, (1,)), 1), (1,))  # sum_{d >= e} within the block
            later.sub_(da).add_(suffix.unsqueeze(1))                       # sum_{d > e} over everything
            suffix += da.sum(1)
            gw[s:e] = torch.einsum("bs,bsh->sh", xo[:, s:e], later)
            if gx is not None:
                gx[:, s:e] = torch.einsum("bsh,sh->bs", later, wo[s:e])
            if ctx.has_u:
                gu[s:e] = later.sum(0)
        return gx, gw, gu, gc, gv, None


class _CompiledOneLayerNADE(torch.autograd.Function):
    """The same pass as `_OneLayerNADE`, fused per example by the vectorised numba kernels of `nade_kernels`
    (on the project's machine, one thread, 784 x 500: ~1,700 training and ~12,000 evaluation examples per second;
    same numbers to float rounding)."""

    @staticmethod
    def forward(ctx, xo, wo, uo, c, vo, act_name: str):
        from genlearn.models import nade_kernels

        xo, wo, c, vo = (t.detach().contiguous() for t in (xo, wo, c, vo))
        uo = uo.detach().contiguous() if uo is not None else None
        ctx.save_for_backward(xo, wo, uo if uo is not None else torch.empty(0), c, vo)
        ctx.act_name, ctx.has_u = act_name, uo is not None
        return nade_kernels.forward(xo, wo, uo, c, vo, act_name)

    @staticmethod
    def backward(ctx, g):
        from genlearn.models import nade_kernels

        xo, wo, uo, c, vo = ctx.saved_tensors
        gx, gw, gu, gc, gv = nade_kernels.backward(xo, wo, uo if ctx.has_u else None, c, vo, ctx.act_name,
                                                   g.contiguous(), want_gx=ctx.needs_input_grad[0])
        return gx, gw, gu, gc, gv, None


def _is_identity(ordering: Tensor) -> bool:
    """Whether the ordering visits the dimensions in their own order 0..n-1."""
    return bool(torch.equal(ordering, torch.arange(ordering.numel(), device=ordering.device)))


def _one_layer_pass(xo, wo, uo, c, vo, act_name: str, kernel: str):
    """The fused one-hidden-layer pass: compiled (numba) when `kernel` allows it and the tensors suit it, else
    the blocked torch implementation."""
    from genlearn.models import nade_kernels

    compiled = (kernel in ("auto", "numba") and nade_kernels.available() and wo.device.type == "cpu"
                and wo.dtype in (torch.float32, torch.float64) and xo.dtype == wo.dtype)
    if kernel == "numba" and not compiled:
        raise ConfigError("kernel='numba' needs numba installed and float32/float64 CPU tensors; use kernel='auto'")
    fn = _CompiledOneLayerNADE if compiled else _OneLayerNADE
    return fn.apply(xo, wo, uo, c, vo, act_name)


def stratified_uniform(batch: int, generator: torch.Generator | None = None) -> Tensor:
    """t_i = (pi_i + v_i) / B for a random permutation pi of {0..B-1} and v_i ~ U(0, 1): each t_i is U(0, 1),
    and the batch holds exactly one t in each stratum [k/B, (k+1)/B). Returns (batch, 1) float32."""
    dev = None if generator is None else generator.device  # drawn where the generator lives (CPU or GPU)
    perm = torch.randperm(batch, generator=generator, device=dev).float()
    return ((perm + torch.rand(batch, generator=generator, device=dev)) / batch)[:, None]


def sample_observed_sets(batch: int, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Random observed sets S for order-agnostic training, and the weight of each row's loss.

    Each row draws t ~ U(0, 1), stratified over the batch (`stratified_uniform`: the rows' fractions observed
    cover [0, 1) evenly while each row keeps its distribution; on trained binarized-MNIST models the standard
    deviation of a 100-row batch loss fell 18-34%, see benchmarks/oa_nade_gradient_variance.py), and observes
    dim j when u_j < t (u_j ~ U(0, 1)): then
    P(S) = integral t^|S| (1 - t)^(n - |S|) dt = 1 / ((n + 1) C(n, |S|)), so |S| is uniform on {0..n} and S is
    uniform given |S| -- the split of a uniformly random ordering at a uniform d, without sorting n numbers
    per row. Rows with |S| = n (probability 1/(n + 1)) have nothing to predict and get weight 0; the others get
    (n + 1) / (n - |S|), so that sum_{j not in S} loss_j * weight is unbiased for the mean over orderings of the
    whole-sequence loss (the n / (n - d) of d ~ U{0..n-1}, times (n + 1) / n for the dropped rows).
    Returns observed (batch, n) bool and weight (batch,) float32."""
    dev = None if generator is None else generator.device
    u = torch.rand(batch, n, generator=generator, device=dev)
    observed = u < stratified_uniform(batch, generator)
    d = observed.sum(1)
    weight = torch.where(d < n, (n + 1) / (n - d).clamp(min=1).float(), torch.zeros((), device=dev))
    return observed, weight


class NADE(GenerativeModel):
    """n_features: n; hidden: H (int) or [H, H2] (optional second hidden layer); order: "fixed" (identity
    first ordering) or "random"; order_agnostic: train over random orderings with the mask input;
    orderings: K orderings averaged at test time (order-agnostic models only); activation of the hidden
    layers; seed: initial weights and the orderings; matmul_precision: "auto" (bfloat16 only where this machine
    runs it faster, genlearn.precision; resolved at the first training pass), "full", or "bfloat16" for the matrix
    products of the order-agnostic training pass (bfloat16 operands, float32 accumulation, under
    torch.autocast; likelihoods, sampling and the fixed-order pass always run in the parameters' dtype).

    With order_agnostic, W (H x n) and U are stored input-major (their transposes contiguous): index them, or use
    `reshape(-1)` rather than `view(-1)`; their state_dict entries are unchanged."""

    name = "nade"
    support = "binary"

    def __init__(self, n_features: int, hidden=500, order: str = "fixed", order_agnostic: bool = False,
                 orderings: int = 1, activation: str = "relu", seed: int = 0, matmul_precision: str = "auto"):
        super().__init__()
        self.n_features = n = check_positive_int(n_features, "n_features")
        self.hidden = parse_hidden(hidden)
        if len(self.hidden) > 2:
            raise ConfigError(f"NADE has one or two hidden layers (--hidden H or H,H2), got {self.hidden}")
        self.order = check_order(order)
        self.order_agnostic = bool(order_agnostic)
        self.orderings = check_int(orderings, "orderings", 1, MAX_ORDERINGS)
        if self.orderings > 1 and not self.order_agnostic:
            raise ConfigError("--orderings > 1 (a test-time ensemble over orderings) needs a model trained for "
                              "all orderings: add --order-agnostic, or use --orderings 1")
        self.matmul_precision = check_matmul_precision(matmul_precision)
        self.activation = activation
        self._act = activation_fn(activation)
        self.seed = int(seed)
        #: use the fused pass for one hidden layer (False: plain autograd over a (B, n, H) tensor)
        self.fused = True
        #: implementation of the fused pass: "auto" (numba when installed, else torch), "numba" or "torch"
        self.kernel = "auto"
        g = init_seed_generator(seed)
        h1 = self.hidden[0]
        h_last = self.hidden[-1]

        def uniform(shape, fan_in):
            return (torch.rand(shape, generator=g) * 2 - 1) / math.sqrt(fan_in)

        self.W = torch.nn.Parameter(uniform((h1, n), n))
        self.c = torch.nn.Parameter(torch.zeros(h1))
        self.U = torch.nn.Parameter(uniform((h1, n), n)) if self.order_agnostic else None
        if self.order_agnostic:  # W and U stored input-major (W^T, U^T contiguous): the first layer sums their rows
            # over its 0/1 inputs; the state_dict entries are unchanged, and loading one keeps this layout
            self.W = torch.nn.Parameter(self.W.detach().T.contiguous().T)
            self.U = torch.nn.Parameter(self.U.detach().T.contiguous().T)
        if len(self.hidden) == 2:
            self.W2 = torch.nn.Parameter(uniform((self.hidden[1], h1), h1))
            self.c2 = torch.nn.Parameter(torch.zeros(self.hidden[1]))
        else:
            self.W2 = self.c2 = None
        self.V = torch.nn.Parameter(uniform((n, h_last), h_last))
        self.b = torch.nn.Parameter(torch.zeros(n))
        orders = torch.empty(self.orderings, n, dtype=torch.long)
        for k in range(self.orderings):
            orders[k] = torch.arange(n) if (k == 0 and order == "fixed") else torch.randperm(n, generator=g)
        self.register_buffer("order_table", orders)

    @torch.no_grad()
    def init_from_data(self, x: Tensor) -> "NADE":
        """Output biases to the logits of the pixel means."""
        self.b.copy_(logit(column_means(self.check_input(x)), 1e-3).to(self.b.dtype))
        return self

    def ordering(self, k: int = 0) -> Tensor:
        return self.order_table[k]

    # -- the O(nH) forward pass ------------------------------------------------------------------------
    def _top(self, h: Tensor) -> Tensor:
        if self.W2 is not None:
            h = self._act(products.linear(h, self.W2, self.c2))
        return h

    def ordered_logits(self, x: Tensor, ordering: Tensor) -> Tensor:
        """Logits of P(x_{o_d} = 1 | x_{o_<d}) for d = 0..n-1 (B, n), in ordering coordinates, by one exclusive
        cumulative sum over d of W[:, o_d] x_{o_d} (+ U[:, o_d]); with one hidden layer by a fused pass (the
        numba kernels of `nade_kernels` when installed, else the blocked `_OneLayerNADE`: same numbers, a fraction
        of the memory traffic)."""
        x = as_float(x).to(self.W.dtype)
        if self.W2 is None and self.fused and _is_identity(ordering):  # no gathers (nor their scatters back)
            uo = self.U.T if self.U is not None else None
            return _one_layer_pass(x, self.W.T, uo, self.c, self.V, self.activation, self.kernel) + self.b
        xo = x[:, ordering]                                 # (B, n)
        wo = self.W.T[ordering]                             # (n, H)
        if self.W2 is None and self.fused:
            uo = self.U.T[ordering] if self.U is not None else None
            return _one_layer_pass(xo, wo, uo, self.c, self.V[ordering], self.activation,
                                   self.kernel) + self.b[ordering]
        contrib = xo.unsqueeze(-1) * wo                     # (B, n, H): step d adds W[:, o_d] x_{o_d}
        if self.U is not None:
            contrib = contrib + self.U.T[ordering]          # ... and the mask weight U[:, o_d]
        a = F.pad(torch.cumsum(contrib[:, :-1], dim=1), (0, 0, 1, 0)) + self.c
        h = self._top(self._act(a))                         # (B, n, H_last)
        return torch.einsum("bnh,nh->bn", h, self.V[ordering]) + self.b[ordering]

    def conditional_logits(self, x: Tensor, k: int = 0) -> Tensor:
        """l_i(x) with ordering k (B, n), indexed by dimension: P(x_i = 1 | x_{before i}) = sigmoid(l_i)."""
        o = self.ordering(k)
        lo = self.ordered_logits(x, o)
        out = torch.empty_like(lo)
        out[:, o] = lo
        return out

    def log_prob_ordering(self, x: Tensor, k: int = 0) -> Tensor:
        """log P_{o_k}(x) in nats."""
        o = self.ordering(k)
        return bernoulli_log_prob(self.ordered_logits(x, o), as_float(x)[:, o])

    @property
    def ensemble_size(self) -> int:
        """K, the number of orderings averaged by log_prob (members of the ensemble)."""
        return self.orderings

    def member_log_prob(self, x: Tensor, k: int) -> Tensor:
        """log P_{o_k}(x) of ensemble member (ordering) k alone, nats (what the trainer monitors for K > 1)."""
        return self.log_prob_ordering(x, k)

    @property
    def monitor_member(self) -> int:
        """The member the trainer monitors: the first random ordering. (With order="fixed", ordering 0 is the
        identity, which an order-agnostic model fits worse than a typical ordering: measured 6-9 nats on
        binarized MNIST in the first epochs, train and valid alike, so it would be a pessimistic proxy.)"""
        return 1 if self.order == "fixed" and self.orderings > 1 else 0

    def log_prob(self, x: Tensor) -> Tensor:
        """log P(x) in nats: the single ordering, or logsumexp_k log P_{o_k}(x) - log K for an ensemble."""
        if self.orderings == 1:
            return self.log_prob_ordering(x, 0)
        lp = torch.stack([self.log_prob_ordering(x, k) for k in range(self.orderings)])
        return torch.logsumexp(lp, 0) - math.log(self.orderings)

    # -- order-agnostic training --------------------------------------------------------------------
    def masked_logits(self, x: Tensor, observed: Tensor) -> Tensor:
        """Logits of P(x_j = 1 | x_observed) for every j (B, n), given a 0/1 mask of observed dims (B, n).

        Both inputs of the first layer, x * m and m, are 0/1: their products with W^T and U^T (stored input-major)
        are sums of selected rows where this CPU runs them faster at their density (genlearn.models.binary_input;
        the same numbers up to float32 summation order), else dense."""
        x = as_float(x).to(self.W.dtype)
        m = observed.to(x.dtype)
        a = self._input_product(x * m, self.W, self.c, 0)
        if self.U is not None:
            a = a + self._input_product(m, self.U, None, 1)
        return products.linear(self._top(self._act(a)), self.V, self.b)

    def _input_product(self, x: Tensor, W: Tensor, bias: Tensor | None, slot: int) -> Tensor:
        """b + x W^T for a 0/1 input x: sums of the rows of W^T (binary_input, index `slot`) where faster."""
        rows = binary_input.rows_of(self, x, slot, widths=(W.shape[0],)) if W.T.is_contiguous() else None
        return products.linear(x, W, bias) if rows is None else rows.linear(W.T, bias)

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Fixed order: the exact NLL (nats per example). Order-agnostic: the unbiased estimate
        -(n/(n-d)) sum_{j unobserved} log P(x_j | x_observed) averaged over the batch, with a random ordering
        and split d ~ U{0..n-1} per example drawn from `generator` (as `sample_observed_sets` draws them)."""
        if not self.order_agnostic:
            return -self.log_prob_ordering(x, 0).mean()
        x = as_float(x).to(self.W.dtype)
        observed, weight = sample_observed_sets(x.shape[0], x.shape[1], generator)
        flops = 2.0 * x.shape[0] * x.shape[1] * self.hidden[0]
        mixed = resolve_for_model(self, x.device, flops) == "bfloat16"
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=mixed):
            logits = self.masked_logits(x, observed)
        logits = logits.to(x.dtype)
        ll = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        ll = (ll * (~observed)).sum(-1) * weight.to(x.dtype)
        return -ll.mean()

    # -- sampling ------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """k ~ uniform over the K orderings, then ancestral sampling along o_k, updating a_d in O(H) a step."""
        n = check_positive_int(n, "number of samples")
        ks = (torch.randint(self.orderings, (n,), generator=generator) if self.orderings > 1
              else torch.zeros(n, dtype=torch.long))
        x = torch.zeros(n, self.n_features, dtype=self.W.dtype)
        for k in torch.unique(ks).tolist():
            rows = torch.nonzero(ks == k).flatten()
            xk = torch.zeros(rows.numel(), self.n_features, dtype=x.dtype)
            a = self.c.expand(rows.numel(), -1).clone()
            for i in self.ordering(k).tolist():
                h = self._top(self._act(a))
                p = torch.sigmoid(h @ self.V[i] + self.b[i])
                xk[:, i] = torch.bernoulli(p, generator=generator)
                a += xk[:, i : i + 1] * self.W[:, i]
                if self.U is not None:
                    a += self.U[:, i]
            x[rows] = xk
        return x.float()

    @classmethod
    def from_config(cls, config: dict) -> "NADE":
        """Runs saved before matmul_precision existed trained in full precision."""
        config.setdefault("matmul_precision", "full")
        return cls(**config)

    def config(self) -> dict:
        return {"n_features": self.n_features, "hidden": list(self.hidden), "order": self.order,
                "order_agnostic": self.order_agnostic, "orderings": self.orderings,
                "activation": self.activation, "seed": self.seed, "matmul_precision": self.matmul_precision}


@dataclass(frozen=True)
class NADEConfig:
    """Options of `genlearn fit nade`."""

    hidden: tuple[int, ...] = option((500,), "hidden layer sizes: H, or H,H2 for a second hidden layer", minimum=1)
    order: str = option("fixed", "ordering: fixed (identity) or random", choices=ORDERS)
    order_agnostic: bool = option(False, "train over random orderings (Uria et al. 2014) with the mask input")
    orderings: int = option(1, f"orderings K averaged at test time (order-agnostic only, 1..{MAX_ORDERINGS})",
                            minimum=1)
    activation: str = option("relu", "hidden activation", choices=ACTIVATIONS)
    init_seed: int = option(0, "seed of the initial weights and of the orderings")
    matmul_precision: str = option("auto", "precision of the order-agnostic training products: auto (bfloat16 "
                                   "only where this machine runs it faster), full, or bfloat16 "
                                   "(bfloat16 operands, float32 accumulation; ~1.6x faster only on CPUs with "
                                   "AVX512-BF16 or AMX); likelihoods are always computed in full precision",
                                   choices=MATMUL_PRECISIONS)


def _build(dataset, config: NADEConfig) -> NADE:
    return NADE(dataset.n_features, hidden=list(config.hidden), order=config.order,
                order_agnostic=config.order_agnostic, orderings=config.orderings, activation=config.activation,
                seed=config.init_seed, matmul_precision=config.matmul_precision).init_from_data(dataset.train)


register_model(ModelSpec(
    "nade", NADE, "neural autoregressive distribution estimator (fixed order or order-agnostic ensembles)",
    ("binary",), _build, NADEConfig, train_defaults={"optimizer": "adam", "lr": 1e-3, "batch_size": 100},
    search_space={"hidden": ss.integer(16, 512, log=True), "activation": ss.choice("relu", "sigmoid", "tanh"),
                  # one ordering (fixed or random), or an order-agnostic ensemble of 32 (Uria et al. 2014)
                  "ordering": ss.one_of({"order": "fixed"}, {"order": "random"},
                                        {"order_agnostic": True, "orderings": 32}),
                  "lr": ss.real(1e-4, 1e-2, log=True),
                  "batch_size": ss.choice(16, 32, 64, 128), "weight_decay": ss.choice(0.0, 1e-6, 1e-5, 1e-4, 1e-3),
                  "schedule": ss.choice("constant", "geometric")},
))


__all__ = ["NADE"]
