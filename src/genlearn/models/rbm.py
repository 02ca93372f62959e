"""Restricted Boltzmann machine with binary units.

    E(v, h) = -v.b - h.c - v^T W h,   P(v, h) = exp(-E(v, h)) / Z,   v in {0,1}^V, h in {0,1}^H
    F(v)    = -log sum_h exp(-E(v, h)) = -v.b - sum_j softplus(c_j + v.W_j)      (free energy, nats)
    P(h_j = 1 | v) = sigmoid(c_j + v.W_j),   P(v_i = 1 | h) = sigmoid(b_i + W_i.h)

Learning follows the KL gradient dD_KL(Q^||P)/dtheta = <dF/dtheta>_data - <dF/dtheta>_model, with
dF/dW = -v sigmoid(c + v W)^T, dF/db = -v, dF/dc = -sigmoid(c + v W). The negative (model) phase comes from

- "cd":    CD-k, k Gibbs sweeps started at the batch (Hinton 2002);
- "pcd":   persistent chains (Tieleman 2008) kept in the registered buffer `chains`, k sweeps per update;
- "exact": exact model moments by enumerating the smaller layer (at most 20 units).

`loss(x)` returns a scalar whose autograd gradient is exactly that estimate: for "cd"/"pcd" its value is
mean F(data) - mean F(negatives) (the CD objective, nats) and its gradient is computed by hand with
matrix products (no autograd graph: see `cd_gradient`), for "exact" its value is the exact NLL
mean F(x) + log Z. So any torch optimizer (momentum, weight decay, schedules) applies unchanged.

Likelihood: `log_partition(method="exact")` enumerates the smaller layer (up to 25 units, exact to float64
accumulation), method="ais" runs AIS from the data base rate with reverse AIS for the other side of the
bracket, "auto" picks exact when the smaller layer has <= 25 units and n 2^m <= 2^35 terms.
`tractable` (exact NLL monitored every epoch by the trainer) is True when the smaller layer has <= 16 units.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from genlearn.errors import ConfigError, DataError, IntractableError
from genlearn.models.base import MATMUL_PRECISIONS, EnergyModel, check_matmul_precision, check_positive_int
from genlearn.numerics import base_rate_logits, sample_bernoulli, uniform_
from genlearn.models.registry import ModelSpec, Option, register_model

GRADIENTS = ("cd", "pcd", "exact")
#: smaller layer size up to which the trainer monitors the exact NLL every epoch
TRACTABLE_LIMIT = 16
#: smaller layer size up to which gradient="exact" enumerates at every step
EXACT_GRADIENT_LIMIT = 20
#: method="auto" uses exact log Z when the smaller layer has at most this many units...
AUTO_EXACT_LIMIT = 25
#: ... and n_other * 2^m terms are at most this many
AUTO_EXACT_TERMS = 1 << 35
#: number of training rows kept (in a buffer) to start reverse AIS chains from
REVERSE_ROWS = 100


class _GivenGradient(torch.autograd.Function):
    """A scalar `value` whose gradient with respect to the parameters is the precomputed `grads`."""

    @staticmethod
    def forward(ctx, value, *params_and_grads):
        n = len(params_and_grads) // 2
        ctx.grads = params_and_grads[n:]
        return value.clone()

    @staticmethod
    def backward(ctx, grad_out):
        n = len(ctx.grads)
        if grad_out.numel() == 1 and float(grad_out) == 1.0:  # loss.backward(): no copy needed
            grads = ctx.grads
        else:
            grads = tuple(g * grad_out for g in ctx.grads)
        ctx.grads = None
        return (None, *grads, *([None] * n))


class RBM(EnergyModel):
    """Binary RBM with V visible and H hidden units, trained by CD-k, PCD-k or the exact gradient.

    Parameters: `weight` W (V x H), `visible_bias` b (V), `hidden_bias` c (H), initialised W ~ N(0, init_std^2)
    with `seed`, b = c = 0. Buffers (saved in checkpoints): `chains` (PCD chain states, n_chains x V),
    `base_rate_logits` (smoothed training means for AIS) and `reverse_rows` (training rows to start reverse
    AIS from), set from the training set at the end of each epoch (or from the first batch)."""

    name = "rbm"
    support = "binary"

    def __init__(self, n_visible: int, n_hidden: int = 16, k: int = 1, persistent: bool = False,
                 gradient: str | None = None, n_chains: int = 100, init_std: float = 0.01, seed: int = 0,
                 matmul_precision: str = "full"):
        super().__init__()
        self.matmul_precision = check_matmul_precision(matmul_precision)
        self.n_features = self.n_visible = check_positive_int(n_visible, "n_visible")
        self.n_hidden = check_positive_int(n_hidden, "the number of hidden units (--hidden)")
        self.k = check_positive_int(k, "the number of Gibbs steps k (--k)")
        self.n_chains = check_positive_int(n_chains, "the number of persistent chains (--n-chains)")
        if gradient is None:
            gradient = "pcd" if persistent else "cd"
        if gradient not in GRADIENTS:
            raise ConfigError(f"gradient must be one of {', '.join(GRADIENTS)}, got {gradient!r}")
        if persistent and gradient != "pcd":
            raise ConfigError(f"--persistent asks for PCD but --gradient is {gradient!r}; drop one of them")
        self.gradient = gradient
        if not (isinstance(init_std, (int, float)) and math.isfinite(init_std) and init_std >= 0):
            raise ConfigError(f"init_std must be a finite number >= 0, got {init_std!r}")
        self.init_std, self.seed = float(init_std), int(seed)
        m = min(self.n_visible, self.n_hidden)
        if gradient == "exact" and m > EXACT_GRADIENT_LIMIT:
            raise IntractableError(
                f"the exact gradient enumerates the smaller layer at every step: 2^{m} states, but it is limited "
                f"to {EXACT_GRADIENT_LIMIT} units. Use --gradient cd or pcd (with --k) instead.")
        g = torch.Generator().manual_seed(self.seed)
        self.weight = torch.nn.Parameter(torch.randn(self.n_visible, self.n_hidden, generator=g) * self.init_std)
        self.visible_bias = torch.nn.Parameter(torch.zeros(self.n_visible))
        self.hidden_bias = torch.nn.Parameter(torch.zeros(self.n_hidden))
        self.register_buffer("chains", torch.zeros(self.n_chains if gradient == "pcd" else 0, self.n_visible))
        self.register_buffer("chains_ready", torch.zeros((), dtype=torch.uint8))
        self.register_buffer("base_rate_logits", torch.zeros(self.n_visible))
        #: 0: not set, 1: from a batch, 2: from the whole training set
        self.register_buffer("base_rate_ready", torch.zeros((), dtype=torch.uint8))
        self.register_buffer("reverse_rows", torch.zeros(0, self.n_visible))
        self._log_z_cache: tuple | None = None

    # -- configuration -----------------------------------------------------------------------------
    @property
    def persistent(self) -> bool:
        return self.gradient == "pcd"

    @property
    def tractable(self) -> bool:  # exact NLL monitored by the trainer every epoch
        return min(self.n_visible, self.n_hidden) <= TRACTABLE_LIMIT

    def config(self) -> dict:
        return {"n_visible": self.n_visible, "n_hidden": self.n_hidden, "k": self.k,
                "persistent": self.persistent, "gradient": self.gradient, "n_chains": self.n_chains,
                "init_std": self.init_std, "seed": self.seed, "matmul_precision": self.matmul_precision}

    def _apply(self, fn, *args, **kwargs):  # .double(), .float(), .to(): parameters are new tensors
        self._log_z_cache = None
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # reverse_rows holds 0..REVERSE_ROWS rows: adopt the saved shape before loading
        key = prefix + "reverse_rows"
        if key in state_dict:
            self.reverse_rows = torch.zeros_like(state_dict[key], dtype=self.reverse_rows.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- energy, conditionals, sampling ----------------------------------------------------------
    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        """E(v, h) = -v.b - h.c - v^T W h per example (nats)."""
        v, h = v.to(self.weight.dtype), h.to(self.weight.dtype)
        return -(v @ self.visible_bias) - (h @ self.hidden_bias) - ((v @ self.weight) * h).sum(-1)

    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = -v.b - sum_j softplus(c_j + v.W_j) per example (nats); P(v) = exp(-F(v)) / Z."""
        v = v.to(self.weight.dtype)
        return -(v @ self.visible_bias) - torch.nn.functional.softplus(
            torch.addmm(self.hidden_bias, v, self.weight)).sum(-1)

    def hidden_probs(self, v: Tensor) -> Tensor:
        """P(h_j = 1 | v) = sigmoid(c + v W), (B x H)."""
        return torch.sigmoid(torch.addmm(self.hidden_bias, v.to(self.weight.dtype), self.weight))

    def visible_probs(self, h: Tensor) -> Tensor:
        """P(v_i = 1 | h) = sigmoid(b + h W^T), (B x V)."""
        return torch.sigmoid(torch.addmm(self.visible_bias, h.to(self.weight.dtype), self.weight.T))

    @torch.no_grad()
    def gibbs(self, v: Tensor, steps: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """`steps` block-Gibbs sweeps v -> h ~ P(h|v) -> v ~ P(v|h) from the rows v; returns the last v."""
        from genlearn.estimators.ais import gibbs_sweeps

        return gibbs_sweeps(self.weight.detach(), self.visible_bias.detach(), self.hidden_bias.detach(),
                            v.to(self.weight.dtype), steps, generator)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, steps: int = 1000) -> Tensor:
        """n draws (approximately) from P(v): `steps` Gibbs sweeps from uniformly random visible states."""
        n = check_positive_int(n, "the number of samples")
        steps = check_positive_int(steps, "the number of Gibbs steps")
        v0 = sample_bernoulli(torch.full((n, self.n_visible), 0.5, dtype=self.weight.dtype), generator)
        return self.gibbs(v0, steps, generator)

    # -- data-dependent state --------------------------------------------------------------------
    @torch.no_grad()
    def set_training_statistics(self, x: Tensor, full: bool = True) -> None:
        """Store the base rate (smoothed training means) for AIS and up to 100 rows to start reverse AIS."""
        self.base_rate_logits.copy_(base_rate_logits(x))
        self.base_rate_ready.fill_(2 if full else 1)
        m = x.shape[0]
        idx = torch.linspace(0, m - 1, min(m, REVERSE_ROWS)).round().long()
        self.reverse_rows = x[idx].to(self.reverse_rows.dtype).clone()

    def on_epoch_end(self, train: Tensor) -> None:
        if int(self.base_rate_ready) < 2:
            self.set_training_statistics(train, full=True)

    @torch.no_grad()
    def init_visible_bias(self, x: Tensor) -> "RBM":
        """b = logit of the smoothed training means (Hinton's practical guide), a good start for training."""
        self.visible_bias.copy_(base_rate_logits(x, smoothing=0.01))
        return self

    # -- learning ---------------------------------------------------------------------------------
    def _matmul_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.matmul_precision == "bfloat16" else self.weight.dtype

    def _workspace(self, batch: int, negatives: int) -> dict:
        """Buffers of one CD step, reused from step to step: rows [x; v~] (B+N, V), pre-activations and hidden
        probabilities (B+N, H), the per-row weights [-1/B ...; 1/N ...], the uniforms of the k sweeps
        (k, N, H+V), the hidden samples (N, H), visible probabilities (N, V) and the three gradients. With
        bfloat16 products: the 0/1 rows and hidden samples are also kept in bfloat16 (exactly), with a bfloat16
        copy of W and bfloat16 outputs of the products."""
        W = self.weight
        low = self._matmul_dtype()
        key = (batch, negatives, self.k, W.dtype, low, W.device)
        ws = getattr(self, "_cd_workspace", None)
        if ws is None or ws["key"] != key:
            rows = batch + negatives
            weights = torch.cat([torch.full((batch,), -1.0 / batch, dtype=W.dtype),
                                 torch.full((negatives,), 1.0 / negatives, dtype=W.dtype)])
            ws = {"key": key, "rows": torch.empty(rows, self.n_visible, dtype=W.dtype),
                  "pre": torch.empty(rows, self.n_hidden, dtype=W.dtype),
                  "probs": torch.empty(rows, self.n_hidden, dtype=W.dtype), "weights": weights,
                  "dW": torch.empty_like(W), "db": torch.empty_like(self.visible_bias),
                  "dc": torch.empty_like(self.hidden_bias),
                  "uniforms": torch.empty(self.k, negatives, self.n_hidden + self.n_visible, dtype=W.dtype),
                  "hidden": torch.empty(negatives, self.n_hidden, dtype=low),
                  "visible_probs": torch.empty(negatives, self.n_visible, dtype=W.dtype)}
            if low != W.dtype:
                ws.update({"rows_low": torch.empty(rows, self.n_visible, dtype=low),
                           "weight_low": torch.empty_like(W, dtype=low),
                           "pre_low": torch.empty(rows, self.n_hidden, dtype=low),
                           "visible_low": torch.empty(negatives, self.n_visible, dtype=low),
                           "probs_low": torch.empty(rows, self.n_hidden, dtype=low),
                           "dW_low": torch.empty_like(W, dtype=low)})
            self._cd_workspace = ws
        return ws

    @torch.no_grad()
    def _cd_step(self, x: Tensor, generator: torch.Generator | None) -> tuple:
        """One CD-k / PCD-k estimate of the KL gradient on batch x (B x V), with matrix products and no autograd:

            dW = -(x^T P(h|x)) / B + (v~^T P(h|v~)) / N,  db = -mean x + mean v~,  dc = -mean P(h|x) + mean P(h|v~)

        where v~ (N rows) are the negatives after k sweeps (from the batch for CD, from the persistent chains
        for PCD). dW is one product [x; v~]^T (w * [P(h|x); P(h|v~)]) with the row weights w = [-1/B; 1/N].
        Returns (value, dW, db, dc, v~), views of a reused workspace; value = mean F(x) - mean F(v~) (nats).

        matmul_precision="bfloat16": the four products take bfloat16 operands (the 0/1 states exactly, W and
        w * P(h|.) rounded to 8 significant bits, relative error <= 2^-9) with float32 accumulation, and return
        bfloat16 (torch has no float32-output bfloat16 product on CPU), so the pre-activations and dW are rounded
        the same way; biases, probabilities, sampling, db, dc and the value stay in the parameters' dtype."""
        W, b, c = self.weight, self.visible_bias, self.hidden_bias
        B = x.shape[0]
        pcd = self.gradient == "pcd"
        N = self.n_chains if pcd else B
        ws = self._workspace(B, N)
        low = "weight_low" in ws
        rows, pre, probs = ws["rows"], ws["pre"], ws["probs"]
        rows_m = ws["rows_low"] if low else rows  # the 0/1 rows [x; v~] as product operands
        Wm = ws["weight_low"].copy_(W) if low else W

        def hidden_pre(src: Tensor, out: Tensor, scratch: Tensor | None) -> None:  # out = c + src W
            if low:
                torch.mm(src, Wm, out=scratch)
                out.copy_(scratch).add_(c)
            else:
                torch.addmm(c, src, W, out=out)

        data, negatives = rows[:B], rows_m[B:]
        data.copy_(x)
        if low:
            rows_m[:B].copy_(data)
        hidden_pre(rows_m[:B], pre[:B], ws.get("pre_low", pre)[:B])
        torch.sigmoid(pre[:B], out=probs[:B])
        u, h, pv = ws["uniforms"], ws["hidden"], ws["visible_probs"]
        uniform_(u, generator)  # every uniform of the k sweeps in one draw: sweep i uses u[i, :, :H] then u[i, :, H:]
        H = self.n_hidden
        if pcd:
            if not int(self.chains_ready):
                self.chains.copy_(data[torch.arange(self.n_chains) % B])
                self.chains_ready.fill_(1)
            chain_pre = torch.empty(N, H, dtype=W.dtype)
            hidden_pre(self.chains.to(Wm.dtype), chain_pre, ws.get("pre_low", pre)[B:])
            torch.lt(u[0, :, :H], chain_pre.sigmoid_(), out=h)
        else:
            torch.lt(u[0, :, :H], probs[:B], out=h)
        for step in range(self.k):
            if low:
                torch.mm(h, Wm.T, out=ws["visible_low"])
                pv.copy_(ws["visible_low"]).add_(b).sigmoid_()
            else:
                torch.addmm(b, h, W.T, out=pv).sigmoid_()
            torch.lt(u[step, :, H:], pv, out=negatives)
            hidden_pre(negatives, pre[B:], ws.get("pre_low", pre)[B:])
            torch.sigmoid(pre[B:], out=probs[B:])
            if step < self.k - 1:
                torch.lt(u[step + 1, :, :H], probs[B:], out=h)
        if low:
            rows[B:].copy_(negatives)
        if pcd:
            self.chains.copy_(rows[B:])
        w = ws["weights"]
        # value: mean F(x) - mean F(v~) = sum_r w_r (v_r.b + sum_j softplus(pre_rj)), F(v) = -v.b - sum softplus
        free = torch.nn.functional.softplus(pre).sum(1).add_(torch.mv(rows, b))
        value = torch.dot(w, free)
        probs.mul_(w.unsqueeze(1))
        if low:
            torch.mm(rows_m.T, ws["probs_low"].copy_(probs), out=ws["dW_low"])
            ws["dW"].copy_(ws["dW_low"])
        else:
            torch.mm(rows.T, probs, out=ws["dW"])
        torch.mv(rows.T, w, out=ws["db"])
        torch.sum(probs, 0, out=ws["dc"])
        return value, ws["dW"], ws["db"], ws["dc"], rows[B:]

    def cd_gradient(self, x: Tensor, generator: torch.Generator | None = None, return_negatives: bool = False):
        """(value, dW, db, dc): the CD-k / PCD-k estimate of the KL gradient on batch x (see `_cd_step`; new
        tensors). With `return_negatives`, the negatives v~ are returned as a fifth element."""
        value, dW, db, dc, v = self._cd_step(x.to(self.weight.dtype), generator)
        out = (value, dW.clone(), db.clone(), dc.clone())
        return out + (v.clone(),) if return_negatives else out

    def _check_batch(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.n_visible:
            raise DataError(f"the RBM expects batches of shape (B, {self.n_visible}), got {tuple(x.shape)}")
        if int(self.base_rate_ready) == 0:
            self.set_training_statistics(x.detach(), full=False)

    def write_gradient(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Set p.grad of W, b, c to the KL-gradient estimate on batch x and return the objective value (the
        trainer's fast path: the same numbers as loss(x).backward() without an autograd graph or copies)."""
        if self.gradient == "exact":
            for p in self.parameters():
                p.grad = None
            loss = self.loss(x, generator)
            loss.backward()
            return loss.detach()
        self._check_batch(x)
        value, dW, db, dc, _ = self._cd_step(x.to(self.weight.dtype), generator)
        self.weight.grad, self.visible_bias.grad, self.hidden_bias.grad = dW, db, dc
        return value

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Scalar whose gradient is the KL-gradient estimate <dF/dtheta>_data - <dF/dtheta>_model on batch x
        (see the module docstring); value: CD objective (cd/pcd) or exact NLL (exact), nats per example."""
        self._check_batch(x)
        params = (self.weight, self.visible_bias, self.hidden_bias)
        if self.gradient == "exact":
            return self._exact_loss(x)
        value, dW, db, dc = self.cd_gradient(x, generator)
        return _GivenGradient.apply(value, *params, dW, db, dc)

    def _exact_loss(self, x: Tensor) -> Tensor:
        from genlearn.estimators.exact_rbm import rbm_exact_moments

        W, b, c = self.weight, self.visible_bias, self.hidden_bias
        log_z, e_vh, e_v, e_h = rbm_exact_moments(W, b, c, limit=EXACT_GRADIENT_LIMIT)
        with torch.no_grad():
            xd = x.to(W.dtype)
            ph0 = self.hidden_probs(xd)
            B = x.shape[0]
            dW = e_vh.to(W.dtype) - xd.T @ ph0 / B
            db = e_v.to(W.dtype) - xd.mean(0)
            dc = e_h.to(W.dtype) - ph0.mean(0)
            value = self.free_energy(xd).double().mean() + log_z
        return _GivenGradient.apply(value.to(W.dtype), W, b, c, dW, db, dc)

    # -- likelihood --------------------------------------------------------------------------------
    def _cached_log_z(self) -> float | None:
        """The exact log Z computed for exactly the current parameter values, else None. (The values are compared,
        not tensor version counters: fused optimizers update parameters without bumping those.)"""
        if self._log_z_cache is None:
            return None
        saved, value = self._log_z_cache
        current = (self.weight, self.visible_bias, self.hidden_bias)
        same = all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(saved, current))
        return value if same else None

    def log_partition(self, method: str = "auto", steps: int | None = None, chains: int = 100, seed: int = 0,
                      data: Tensor | None = None, reverse: bool = True, burn_in: int = 1000, kernel: str = "auto",
                      progress: bool = False, **unused):
        """log Z in nats as an Estimate.

        method: "exact" (enumerate the smaller layer, <= 25 units; IntractableError beyond), "ais" (AIS from the
        base rate with `steps` temperatures (default 14,500), `chains` chains, `seed`, and, with `reverse`, reverse
        AIS from training rows after `burn_in` Gibbs sweeps), "auto" (exact when the smaller layer has <= 25
        units and n 2^m <= 2^35, else ais). `data`: training rows for the base rate and reverse starts (else the
        stored statistics). `progress`: a progress bar over the AIS temperatures."""
        from genlearn.estimators import Estimate
        from genlearn.estimators.exact_rbm import check_exact_limit, rbm_log_partition

        if method not in ("auto", "exact", "ais"):
            raise ConfigError(f"unknown partition method {method!r}; choose auto, exact or ais")
        m = min(self.n_visible, self.n_hidden)
        n_other = max(self.n_visible, self.n_hidden)
        if method == "auto":
            method = "exact" if m <= AUTO_EXACT_LIMIT and n_other * 2.0 ** m <= AUTO_EXACT_TERMS else "ais"
        if method == "exact":
            check_exact_limit(m)
            value = self._cached_log_z()
            if value is None:
                value = rbm_log_partition(self.weight, self.visible_bias, self.hidden_bias, kernel=kernel)
                params = (self.weight, self.visible_bias, self.hidden_bias)
                self._log_z_cache = (tuple(p.detach().clone() for p in params), value)
            return Estimate.exact(value, "exact (enumerating the smaller layer)")
        from genlearn.estimators.ais import ais_log_partition

        if data is not None:
            data = self.check_input(data)
            base, rows = base_rate_logits(data), data
        else:
            base = self.base_rate_logits if int(self.base_rate_ready) else None
            rows = self.reverse_rows
        return ais_log_partition(self.weight, self.visible_bias, self.hidden_bias, base, steps=steps,
                                 chains=chains, seed=seed, reverse=reverse, reverse_start=rows, burn_in=burn_in,
                                 progress=progress)

    def log_prob(self, x: Tensor) -> Tensor:
        """log P(x) = -F(x) - log Z with the exact log Z (IntractableError when the smaller layer is too big)."""
        return -self.free_energy(x) - self.log_partition(method="exact").value

    def describe_training(self) -> dict:
        return {"rbm_gradient": self.gradient, "rbm_k": self.k}


def plot_filters(model: RBM, path, image_shape: tuple[int, int] | None = None, n: int = 100, title: str | None = None):
    """The weights of the first `n` hidden units (columns of W, one image each, scaled to [0, 1] per unit) as a
    PNG grid; image_shape defaults to a square side sqrt(V)."""
    from genlearn.plots import sample_grid

    W = model.weight.detach().float()[:, : min(n, model.n_hidden)].T
    if image_shape is None:
        side = int(round(math.sqrt(model.n_visible)))
        if side * side != model.n_visible:
            raise ConfigError(f"cannot show {model.n_visible} visible units as a square image; give image_shape")
        image_shape = (side, side)
    lo, hi = W.min(1, keepdim=True).values, W.max(1, keepdim=True).values
    return sample_grid((W - lo) / (hi - lo).clamp_min(1e-12), image_shape, path,
                       title or f"RBM filters (first {W.shape[0]} hidden units)")


def _as(kind: type, value, flag: str):
    """Options shared by name with other families may arrive as strings from the CLI: convert, or ConfigError."""
    if value is None or isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    try:
        if kind is bool:
            return str(value).lower() in ("1", "true", "yes")
        out = kind(value)
        if kind is int and float(value) != out:
            raise ValueError
        return out
    except (TypeError, ValueError):
        raise ConfigError(f"--{flag} must be {'an integer' if kind is int else 'a number'} for an RBM, got {value!r}")


def _build(dataset, options: dict) -> RBM:
    model = RBM(dataset.n_features, n_hidden=_as(int, options["hidden"], "hidden"), k=_as(int, options["k"], "k"),
                persistent=_as(bool, options["persistent"], "persistent"), gradient=options["gradient"],
                n_chains=_as(int, options["n_chains"], "n-chains"),
                init_std=_as(float, options["init_std"], "init-std"), seed=_as(int, options["init_seed"], "init-seed"),
                matmul_precision=options["matmul_precision"])
    if options["init_visible"] == "data":
        model.init_visible_bias(dataset.train)
    return model


register_model(ModelSpec(
    "rbm", RBM, "restricted Boltzmann machine (binary units), trained by CD-k, PCD-k or the exact gradient",
    ("binary",), _build,
    options={
        "hidden": Option(int, 16, "number of hidden units"),
        "k": Option(int, 1, "Gibbs sweeps per update (CD-k / PCD-k)"),
        "persistent": Option(bool, False, "persistent chains (PCD)"),
        "gradient": Option(str, None, "negative phase: cd, pcd or exact (default: pcd with --persistent, else cd)",
                           (None, "cd", "pcd", "exact")),
        "n_chains": Option(int, 100, "number of persistent chains (PCD)"),
        "init_std": Option(float, 0.01, "standard deviation of the initial weights"),
        "init_seed": Option(int, 0, "seed of the initial weights"),
        "init_visible": Option(str, "data", "initial visible biases: data (logits of the smoothed training means, "
                               "Hinton's practical guide) or zero", ("data", "zero")),
        "matmul_precision": Option(str, "full", "precision of the CD/PCD matrix products: full, or bfloat16 "
                                   "(mixed precision: bfloat16 operands, float32 accumulation; ~1.8x faster on "
                                   "CPUs with AVX512-BF16 or AMX, and on GPUs)", MATMUL_PRECISIONS),
    },
    train_defaults={"optimizer": "momentum", "lr": 0.05, "batch_size": 100, "momentum": 0.5},
))

__all__ = ["RBM", "plot_filters", "sample_bernoulli", "uniform_"]
