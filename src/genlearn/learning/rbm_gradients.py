"""Gradient kernels of a binary RBM: pure tensor functions of W (V x H), b (V), c (H) and a batch.

    E(v, h) = -v.b - h.c - v^T W h,   F(v) = -v.b - sum_j softplus(c_j + v.W_j)   (free energy, nats)

The gradient of the empirical KL is a difference of free-energy derivatives,

    dD_KL(Q^||P)/dtheta = <dF/dtheta>_Q^ - <dF/dtheta>_P,
    dF/dW = -v sigmoid(c + v W)^T,   dF/db = -v,   dF/dc = -sigmoid(c + v W),

and the kernels here differ only in where the model expectation <.>_P comes from:

- `cd_step`: CD-k (Hinton 2002) from k block-Gibbs sweeps started at the batch, or PCD-k (Tieleman 2008)
  from k sweeps of persistent chains (given by the caller, updated in place);
- `exact_gradient`: the exact moments of P by enumerating the smaller layer (genlearn.estimators.exact_rbm).

Everything is computed without an autograd graph; the learning rules of genlearn.learning.rules write the
results into p.grad. Every product of the CD step has a 0/1 left operand (the batch, the chains, the sampled
states): with float32 parameters on the CPU, the visible rows [x; v~] are indexed once per step
(genlearn.binary_kernels.RowIndex, compiled) and their products x W and [x; v~]^T P are sums of selected rows when
their density is below the crossover that `binary_kernels.CHOOSER` timed on this CPU for the shape, else dense
products (genlearn.products); the hidden samples' product stays dense. Both give the same numbers up to float32
summation order; binary_kernels.ENABLED = False keeps the dense products. CD-1 and PCD-1 (with the chains' kept
hidden probabilities) with float32 parameters on the CPU run as genlearn.cd_kernels' three compiled passes around
the one dense product b + h W^T (five calls per step instead of ~30; `_fused_step`); cd_kernels.ENABLED = False
keeps the step below. `cd_sgd_step` is a step and its plain SGD update in one: with the fused passes, the batch is
read from its source rows in place and the tail subtracts lr dW row by row (the Trainer's plain SGD epochs and the
scikit-learn wrapper's passes take it through rules.ContrastiveDivergence.sgd_stepper, which makes the step's
checks once per run of full batches and calls `checked_sgd_step`); a caller that does not use the step's value
(the wrapper) passes with_value=False and the tail skips the value's softplus pass."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from genlearn.models.base import MATMUL_PRECISIONS
from genlearn.numerics import fast_softplus_row_sums_, uniform_
from genlearn import binary_kernels, cd_kernels, logistic_kernels, products, uniform_kernels


def matmul_dtype(W: Tensor, precision: str) -> torch.dtype:
    return torch.bfloat16 if precision == "bfloat16" else W.dtype


def cd_workspace(previous: dict | None, W: Tensor, batch: int, negatives: int, k: int,
                 precision: str = "full", totals: tuple[int, int] | None = None) -> dict:
    """Buffers of one CD step, reused from step to step (returned unchanged when `previous` fits): rows [x; v~]
    (B+N, V), pre-activations and hidden probabilities (B+N, H), the per-row weights [-1/B ...; 1/N ...], the
    uniforms of the k sweeps (k, N, H+V), the hidden samples (N, H), visible probabilities (N, V) and the three
    gradients. With bfloat16 products: the 0/1 rows and hidden samples are also kept in bfloat16 (exactly), with
    a bfloat16 copy of W and bfloat16 outputs of the products. `totals` = (B_total, N_total): the row weights
    become [-1/B_total ...; 1/N_total ...], so that this process's gradient and value are its share of those of
    a batch of B_total rows and N_total negatives split over several processes (their sum over the processes)."""
    V, H = W.shape
    low = matmul_dtype(W, precision)
    key = (batch, negatives, k, W.dtype, low, W.device, totals)
    if previous is not None and previous["key"] == key:
        return previous
    rows = batch + negatives
    dev = W.device
    b_total, n_total = totals if totals is not None else (batch, negatives)
    weights = torch.cat([torch.full((batch,), -1.0 / b_total, dtype=W.dtype, device=dev),
                         torch.full((negatives,), 1.0 / n_total, dtype=W.dtype, device=dev)])
    ws = {"key": key, "rows": torch.empty(rows, V, dtype=W.dtype, device=dev),
          "pre": torch.empty(rows, H, dtype=W.dtype, device=dev),
          "probs": torch.empty(rows, H, dtype=W.dtype, device=dev), "weights": weights,
          "dW": torch.empty_like(W), "db": torch.empty(V, dtype=W.dtype, device=dev),
          "dc": torch.empty(H, dtype=W.dtype, device=dev),
          "uniforms": torch.empty(k, negatives, H + V, dtype=W.dtype, device=dev),
          "hidden": torch.empty(negatives, H, dtype=low, device=dev),
          "visible_probs": torch.empty(negatives, V, dtype=W.dtype, device=dev),
          "chain_probs": torch.empty(negatives, H, dtype=W.dtype, device=dev),
          "free": torch.empty(rows, dtype=W.dtype, device=dev)}
    if low != W.dtype:
        ws.update({"rows_low": torch.empty(rows, V, dtype=low, device=dev),
                   "weight_low": torch.empty_like(W, dtype=low),
                   "pre_low": torch.empty(rows, H, dtype=low, device=dev),
                   "visible_low": torch.empty(negatives, V, dtype=low, device=dev),
                   "probs_low": torch.empty(rows, H, dtype=low, device=dev),
                   "dW_low": torch.empty_like(W, dtype=low)})
    return ws


def _identity(t: Tensor) -> tuple:
    """Where t's values live and how often they were written in place (torch's version counter): equal identities
    mean equal values."""
    return (t.data_ptr(), t._version, tuple(t.shape), t.dtype)


@torch.no_grad()
def cd_step(W: Tensor, b: Tensor, c: Tensor, x: Tensor, k: int, generator: torch.Generator | None,
            ws: dict, chains: Tensor | None = None, uniforms: Tensor | None = None,
            chain_probs: Tensor | None = None) -> tuple:
    """One CD-k (chains=None) or PCD-k estimate of the KL gradient on batch x (B x V, in W's dtype):

        dW = -(x^T P(h|x)) / B + (v~^T P(h|v~)) / N,  db = -mean x + mean v~,  dc = -mean P(h|x) + mean P(h|v~)

    where v~ (N rows) are the negatives after k block-Gibbs sweeps started at the batch (CD, N = B) or at the
    persistent `chains` (PCD, N x V in W's dtype, overwritten with v~). dW is one product
    [x; v~]^T (w * [P(h|x); P(h|v~)]) with the row weights w = [-1/B; 1/N]. `ws` is the workspace of
    `cd_workspace(..., batch=B, negatives=N, k)`. Returns (value, dW, db, dc, v~), views of the workspace
    (overwritten by the next call); value = mean F(x) - mean F(v~) (nats per example, the CD objective).

    All uniforms of the k sweeps are drawn in one call: sweep i uses u[i, :, :H] for the hidden layer and
    u[i, :, H:] for the visible layer (so the same generator state gives the same negatives). `uniforms` (k, N,
    H+V), when given, are used instead of a draw from `generator` (a data-parallel process passes its chains'
    rows of the draw for all chains).

    PCD's first hidden sample: with `chain_probs` (N x H, W's dtype) given, it is drawn from those probabilities,
    P(h | chains) as the step that produced the chains computed them (with its parameters, theta_{t-1}), as
    scikit-learn's BernoulliRBM keeps its chains' hidden samples; without them, from P(h | chains; theta_t),
    which costs one more product (chains W). Both are PCD (the chain's state carried over an update is (v~, h) in
    the first case, v~ in the second). Every PCD step leaves P(h | v~; theta_t) in ws["chain_probs"] for the next.

    With a bfloat16 workspace the four products take bfloat16 operands (the 0/1 states exactly, W and
    w * P(h|.) rounded to 8 significant bits, relative error <= 2^-9) with float32 accumulation, and return
    bfloat16 (torch has no float32-output bfloat16 product on CPU), so the pre-activations and dW are rounded
    the same way; biases, probabilities, sampling, db, dc and the value stay in the parameters' dtype."""
    B = x.shape[0]
    pcd = chains is not None
    if pcd and chain_probs is not None:
        _check_chain_probs(chain_probs, W, ws["chain_probs"].shape[0])
    if _fusable(W, b, c, x, k, ws, chains, chain_probs):
        if uniforms is None:
            uniforms = _refill_uniforms(ws, generator)
        out = _fused_step(W, b, c, x, ws, chains, uniforms, chain_probs)
        if out is not None:
            return out
    low = "weight_low" in ws
    rows, pre, probs = ws["rows"], ws["pre"], ws["probs"]
    rows_m = ws["rows_low"] if low else rows  # the 0/1 rows [x; v~] as product operands
    Wm = ws["weight_low"].copy_(W) if low else W
    data, negatives = rows[:B], rows_m[B:]
    N = negatives.shape[0]
    data.copy_(x)
    H = W.shape[1]
    # sums of selected rows need exact 0/1 operands: sampled states are; the batch and the first chains may not be.
    # `index` holds the active columns of the rows [x; v~] (the chains' rows while they are the operand), indexed
    # once and used by both of their products. The hidden samples' product h W^T stays dense: they are on at
    # ~40% (MNIST, 500 units), above the crossover, and the sums would need W^T copied every step (~0.9 ms).
    sums = not low and binary_kernels.usable(data) and binary_kernels.usable(W)
    if sums:
        if "index" not in ws:
            ws["index"] = binary_kernels.RowIndex(B + N, W.shape[0])
        index = ws["index"]
        sums = index.add(data, 0)

    def sums_at(idx, lo: int, hi: int, kind: str, width: int) -> bool:
        return binary_kernels.faster_at(idx.density(lo, hi), kind, hi - lo, idx.V, width)

    def hidden_pre(src: Tensor, out: Tensor, scratch: Tensor | None, lo: int | None = None) -> None:
        """out = c + src W; src is rows lo.. of `index` when lo is given (sums where they are faster)."""
        if low:
            torch.mm(src, Wm, out=scratch)
            out.copy_(scratch).add_(c)
        elif lo is not None and sums_at(index, lo, lo + src.shape[0], "rows", H):
            index.addmm(lo, lo + src.shape[0], W, c, out)
        else:
            products.addmm(c, src, W, out=out)

    if low:
        rows_m[:B].copy_(data)
    hidden_pre(rows_m[:B], pre[:B], ws.get("pre_low", pre)[:B], 0 if sums else None)
    if "sigmoids" not in ws:  # bound to the workspace's rows once (sigmoid_'s checks cost ~20 us a call)
        ws["sigmoids"] = tuple(logistic_kernels.bound_sigmoid(t) for t in (probs[:B], probs[B:], ws["visible_probs"]))
    data_sigmoid, negative_sigmoid, visible_sigmoid = ws["sigmoids"]
    probs[:B].copy_(pre[:B])
    data_sigmoid()
    u, h, pv = ws["uniforms"], ws["hidden"], ws["visible_probs"]
    if uniforms is None:
        uniform_(u, generator)
    else:
        u = uniforms
    if pcd and chain_probs is not None:
        torch.lt(u[0, :, :H], chain_probs, out=h)
    elif pcd:
        chain_pre = torch.empty(N, H, dtype=W.dtype, device=W.device)
        chain_rows = chains.to(Wm.dtype)
        # the chains are the last step's negatives, still indexed as rows B.. unless they changed since (their
        # storage and version counter tell); else indexed now (those rows are overwritten by v~ below)
        indexed = sums and (ws.get("indexed_chains", (None, None))[1] == _identity(chain_rows)
                            or (binary_kernels.usable(chain_rows) and index.add(chain_rows, B)))
        hidden_pre(chain_rows, chain_pre, ws.get("pre_low", pre)[B:], B if indexed else None)
        torch.lt(u[0, :, :H], logistic_kernels.sigmoid_(chain_pre), out=h)
    else:
        torch.lt(u[0, :, :H], probs[:B], out=h)
    for step in range(k):
        if low:
            torch.mm(h, Wm.T, out=ws["visible_low"])
            pv.copy_(ws["visible_low"]).add_(b).sigmoid_()
        else:
            products.addmm(b, h, W.T, out=pv)
            visible_sigmoid()
        if sums:
            index.sample(u[step, :, H:], pv, negatives, B)
        else:
            torch.lt(u[step, :, H:], pv, out=negatives)
        hidden_pre(negatives, pre[B:], ws.get("pre_low", pre)[B:], B if sums else None)
        probs[B:].copy_(pre[B:])
        negative_sigmoid()
        if step < k - 1:
            torch.lt(u[step + 1, :, :H], probs[B:], out=h)
    if low:
        rows[B:].copy_(negatives)
    if pcd:
        chains.copy_(rows[B:])
        ws["chain_probs"].copy_(probs[B:])  # P(h | v~; theta_t): the next step's first hidden sample
        # the tensor is kept with its identity, so that its storage cannot be freed and reused by another
        ws["indexed_chains"] = (chains, _identity(chains)) if sums else (None, None)
    w = ws["weights"]
    # value: mean F(x) - mean F(v~) = sum_r w_r (v_r.b + sum_j softplus(pre_rj)), F(v) = -v.b - sum softplus
    free = fast_softplus_row_sums_(pre).add_(torch.mv(rows, b))  # pre is overwritten (not needed after)
    value = torch.dot(w, free)
    probs.mul_(w.unsqueeze(1))
    if low:
        torch.mm(rows_m.T, ws["probs_low"].copy_(probs), out=ws["dW_low"])
        ws["dW"].copy_(ws["dW_low"])
    elif sums and sums_at(index, 0, B + N, "stats", H):
        index.t_mm(probs, ws["dW"])
    else:
        products.mm(rows.T, probs, out=ws["dW"])
    torch.mv(rows.T, w, out=ws["db"])
    torch.sum(probs, 0, out=ws["dc"])
    return value, ws["dW"], ws["db"], ws["dc"], rows[B:]


def _check_chain_probs(chain_probs: Tensor, W: Tensor, N: int) -> None:
    H = W.shape[1]
    if chain_probs.shape != (N, H) or chain_probs.dtype != W.dtype or chain_probs.device != W.device:
        raise ValueError(f"cd_step: chain_probs must be {N} x {H} in {W.dtype} on {W.device}, got "
                         f"{tuple(chain_probs.shape)} in {chain_probs.dtype} on {chain_probs.device}")


def _refill_uniforms(ws: dict, generator: torch.Generator | None) -> Tensor:
    """ws["uniforms"] refilled with `uniform_`'s numbers from the generator, by a call bound to the buffer and the
    generator once (uniform_kernels.bound_uniform: ~30 us less per step)."""
    bound = ws.get("bound_uniform")
    if bound is None or bound[0] is not generator:
        u = ws["uniforms"]
        run = uniform_kernels.bound_uniform(u, generator) if uniform_kernels.usable(u) else \
            (lambda: uniform_(u, generator))
        ws["bound_uniform"] = bound = (generator, run)
    bound[1]()
    return ws["uniforms"]


def _max_ones(kind: str, R: int, V: int, H: int) -> int:
    """The most ones R 0/1 rows of length V may have for the sums of selected rows to take their product with a
    V x H matrix (kind "rows") or their statistics (kind "stats"): below binary_kernels.CHOOSER's crossover
    density (-1: never)."""
    import math

    crossover = binary_kernels.CHOOSER.crossover(kind, R, V, H)
    return math.ceil(crossover * R * V) - 1 if crossover > 0.0 else -1


def _fused_plan(W: Tensor, b: Tensor, c: Tensor, ws: dict, pcd: bool) -> dict:
    """The numpy views and sums limits of `_fused_step`, kept in the workspace while the parameters' storage and
    the thread count stay (the views and slices of the workspace's buffers that every step passes to the
    kernels), and its dense product b + h W^T bound to its library (products.bound_addmm: ~17 us of checks a step
    fewer)."""
    key = (W.data_ptr(), b.data_ptr(), c.data_ptr(), tuple(W.shape), pcd, torch.get_num_threads())
    plan = ws.get("fused")
    if plan is not None and plan["key"] == key:
        return plan
    V, H = W.shape
    R = ws["rows"].shape[0]
    N = ws["hidden"].shape[0]
    B = R - N
    if "index" not in ws:
        ws["index"] = binary_kernels.RowIndex(R, V)
    index = ws["index"]
    pre, probs, free = ws["pre"].numpy(), ws["probs"].numpy(), ws["free"].numpy()
    u = ws["uniforms"][0].numpy()  # (N, H + V): the hidden layer's uniforms, then the visible layer's
    binary_kernels._threads()  # numba's thread count, as torch's (part of the key)
    plan = {"key": key, "B": B, "H": H, "W": W.detach().numpy(), "b": b.detach().numpy(), "c": c.detach().numpy(),
            "rows": ws["rows"].numpy(), "pre": pre, "probs": probs, "free": free,
            "h": ws["hidden"].numpy(), "a": ws["visible_probs"].numpy(), "w": ws["weights"].numpy(),
            "dW": ws["dW"].numpy(), "db": ws["db"].numpy(), "dc": ws["dc"].numpy(),
            "keep": ws["chain_probs"].numpy() if pcd else np.empty((0, H), np.float32),
            "no_chains": np.empty((0, V), np.float32), "no_weights": np.empty(0, np.float32),
            "w_data": ws["weights"].numpy()[:B],
            "start": np.empty((2, V + 1), np.int64),
            "max_data": _max_ones("rows", B, V, H), "max_negatives": _max_ones("rows", N, V, H),
            "max_stats": _max_ones("stats", R, V, H), "tasks": cd_kernels.tasks(),
            "data": (pre[:B], probs[:B], free[:B]), "negatives": (pre[B:], probs[B:], free[B:]),
            "uniforms": (ws["uniforms"], u[:, :H], u[:, H:]), "index": (index.ends, index.indices, index.rows),
            "dense": products.bound_addmm(b, ws["hidden"], W.T, ws["visible_probs"]),  # b + h W^T
            "chains": (None, None)}  # (the chains tensor last seen, its numpy view)
    ws["fused"] = plan
    return plan


def _batch_order(ws: dict, B: int) -> np.ndarray:
    """0, 1, ..., B-1 (int64), kept in the workspace: the rows of a batch given as its own source."""
    order = ws.get("batch_order")
    if order is None or order.shape[0] != B:
        order = ws["batch_order"] = np.arange(B, dtype=np.int64)
    return order


def _fused_step(W: Tensor, b: Tensor, c: Tensor, source: Tensor, ws: dict, chains: Tensor | None, uniforms: Tensor,
                chain_probs: Tensor | None, order: np.ndarray | None = None, lr: float = 0.0,
                with_value: bool = True) -> tuple | None:
    """`cd_step` for k = 1 by genlearn.cd_kernels' three passes around the one dense product b + h W^T: the same
    results up to float32 summation order, or None (nothing returned or changed, the uniforms unused) where the
    batch has entries other than 0 and 1 or too many ones for the sums (the caller then takes the general step).
    The batch is `source` (B x V), or with `order` (B row numbers, int64) the rows source[order]. With lr > 0 the
    step applies the plain SGD update W -= lr dW, b -= lr db, c -= lr dc in place (the tail subtracts each row of
    dW as it sums it) and returns (value, None, None, None, v~). Without `with_value` (an SGD step whose caller
    does not use the value) the value's softplus pass is skipped and the value returned is None."""
    pcd = chains is not None
    plan = _fused_plan(W, b, c, ws, pcd)
    B, H = plan["B"], plan["H"]
    if order is None:
        order = _batch_order(ws, B)
    ends, indices, index_rows = plan["index"]
    pre_d, probs_d, free_d = plan["data"]
    pre_n, probs_n, free_n = plan["negatives"]
    buffer, u_hidden, u_visible = plan["uniforms"]
    if uniforms is not buffer:
        u = uniforms[0].numpy()
        u_hidden, u_visible = u[:, :H], u[:, H:]
    binary_kernels._threads()
    tasks = plan["tasks"]
    if pcd:
        q = plan["keep"] if chain_probs is ws["chain_probs"] else chain_probs.numpy()
        if plan["chains"][0] is not chains:
            plan["chains"] = (chains, chains.numpy())
        chains_np = plan["chains"][1]
    else:
        q, chains_np = probs_d, plan["no_chains"]
    ones_data = cd_kernels._data_pass(source.numpy(), order, 0, ends, indices, plan["W"], plan["b"],
                                      plan["c"], pre_d, probs_d, free_d, u_hidden, q, plan["h"], plan["max_data"],
                                      plan["w_data"] if pcd else plan["no_weights"], tasks)  # PCD: P scaled there
    if ones_data < 0 or ones_data > plan["max_data"]:
        return None
    rows = ws["rows"]
    plan["dense"]()  # b + h W^T: the visible pre-activations
    ones_negatives = cd_kernels._negative_pass(
        plan["a"], u_visible, plan["rows"][B:], chains_np, ends, indices, B,
        plan["W"], plan["b"], plan["c"], pre_n, probs_n, free_n, plan["max_negatives"], plan["w"], plan["keep"],
        tasks)
    R = B + probs_n.shape[0]
    scale_hi = B  # rows the tail still scales: scale_lo..scale_hi-1 (CD's batch; the negatives where dense)
    if ones_negatives > plan["max_negatives"]:  # dense: pre~ = c + v~ W, P(h|v~), v~.b
        products.addmm(c, rows[B:], W, out=ws["pre"][B:])
        logistic_kernels.sigmoid_(ws["probs"][B:].copy_(ws["pre"][B:]))
        torch.mv(rows[B:], b, out=ws["free"][B:])
        scale_hi = R
    stats = ones_data + ones_negatives <= plan["max_stats"]
    value = cd_kernels._tail(plan["pre"], plan["probs"], plan["free"], plan["w"], plan["keep"], B, ends, indices,
                             plan["start"], index_rows, plan["dW"], plan["db"], plan["dc"], stats, plan["W"],
                             plan["b"], plan["c"], B if pcd else 0, scale_hi, lr, with_value, tasks)
    if not stats:
        torch.index_select(source, 0, torch.from_numpy(order), out=rows[:B])
        products.mm(rows.T, ws["probs"], out=ws["dW"])
        if lr > 0.0:
            W.sub_(ws["dW"], alpha=lr)
    if pcd:
        ws["indexed_chains"] = (chains, _identity(chains))
    value = torch.scalar_tensor(value, dtype=W.dtype) if with_value else None  # 3.9 us, torch.tensor 7.3 us
    if lr > 0.0:  # written through numpy: torch's version counters say the values changed
        for p in (W, b, c):
            torch.autograd.graph.increment_version(p)
        return value, None, None, None, rows[B:]
    return value, ws["dW"], ws["db"], ws["dc"], rows[B:]


def _fusable(W: Tensor, b: Tensor, c: Tensor, x: Tensor, k: int, ws: dict, chains: Tensor | None,
             chain_probs: Tensor | None) -> bool:
    """Whether the step may run as genlearn.cd_kernels' passes: CD-1, or PCD-1 with the chains' kept hidden
    probabilities; float32 parameters, batch and chains on the CPU, contiguous; the sums of selected rows and the
    compiled sigmoid allowed (binary_kernels.usable, GENLEARN_ELEMENTWISE not "torch")."""
    if k != 1 or "weight_low" in ws or not (cd_kernels.ENABLED and cd_kernels.available()):
        return False
    if not (binary_kernels.usable(W) and logistic_kernels.elementwise_override() != "torch"):
        return False  # the environment's switches are read once here, by usable(W) and elementwise_override()
    if chains is not None and (chain_probs is None or not chain_probs.is_contiguous()
                               or not _rows_usable(chains)):
        return False
    return (_rows_usable(x) and b.is_contiguous() and c.is_contiguous() and b.dtype == c.dtype == W.dtype)


def _rows_usable(x: Tensor) -> bool:
    """binary_kernels.usable(x) without its environment switch (read once per step by `_fusable`)."""
    return (x.dtype == torch.float32 and x.device.type == "cpu" and x.is_contiguous() and x.dim() == 2
            and x.shape[0] > 0)


@torch.no_grad()
def cd_sgd_step(W: Tensor, b: Tensor, c: Tensor, source: Tensor, order: Tensor, lr: float, k: int,
                generator: torch.Generator | None, ws: dict, chains: Tensor | None = None,
                chain_probs: Tensor | None = None, with_value: bool = True) -> Tensor | None:
    """One plain SGD step of CD-k / PCD-k, W -= lr dW, b -= lr db, c -= lr dc with (dW, db, dc) = `cd_step`'s
    gradient on the batch x = source[order] (order: B row numbers, int64; ws = cd_workspace(..., batch=B), the
    other arguments as for cd_step). Returns the step's value, mean F(x) - mean F(v~) (nats per example), or None
    without `with_value` (the scikit-learn wrapper, which reports no per-step value: the fused passes then skip
    the value's softplus pass).
    Where `cd_step` would take the fused passes (CD-1, PCD-1 with kept probabilities, float32 on the CPU), the
    batch is read from `source` in place and the tail subtracts each row of lr dW as it sums it (dW is never
    stored; ~3 MB less memory traffic and four torch calls fewer per step at 784 x 500); else x is gathered and
    cd_step's gradient applied. The same parameters as cd_step followed by the three subtractions, up to float32
    summation order."""
    fusable = sgd_step_checks(W, b, c, source, k, ws, chains, chain_probs)
    return checked_sgd_step(W, b, c, source, order, order.numpy(), lr, k, generator, ws, chains, chain_probs,
                            with_value, fusable)


def sgd_step_checks(W: Tensor, b: Tensor, c: Tensor, source: Tensor, k: int, ws: dict, chains: Tensor | None,
                    chain_probs: Tensor | None) -> bool:
    """`cd_sgd_step`'s checks: the chains' kept probabilities fit the workspace (ValueError otherwise); returns
    whether the fused passes may take steps on these tensors (the `fusable` of checked_sgd_step)."""
    if chain_probs is not None:
        _check_chain_probs(chain_probs, W, ws["chain_probs"].shape[0])
    return _fusable(W, b, c, source, k, ws, chains, chain_probs)


def checked_sgd_step(W: Tensor, b: Tensor, c: Tensor, source: Tensor, order: Tensor, order_np: np.ndarray, lr: float,
                     k: int, generator: torch.Generator | None, ws: dict, chains: Tensor | None,
                     chain_probs: Tensor | None, with_value: bool, fusable: bool) -> Tensor | None:
    """`cd_sgd_step` after its checks: `fusable` is sgd_step_checks' answer for these tensors and order_np is
    order.numpy(). A pass of steps on the same tensors (rules.ContrastiveDivergence.sgd_pass) makes the checks
    once and calls this for each batch."""
    uniforms = None
    if fusable:
        uniforms = _refill_uniforms(ws, generator)
        out = _fused_step(W, b, c, source, ws, chains, uniforms, chain_probs, order_np, lr, with_value)
        if out is not None:
            return out[0]
    value, dW, db, dc, _ = cd_step(W, b, c, source.index_select(0, order), k, generator, ws, chains, uniforms,
                                   chain_probs)
    for p, g in ((W, dW), (b, db), (c, dc)):
        p.sub_(g, alpha=lr)
    return value if with_value else None


@torch.no_grad()
def exact_gradient(W: Tensor, b: Tensor, c: Tensor, x: Tensor, limit: int) -> tuple:
    """The exact KL gradient on batch x by enumerating the smaller layer (at most `limit` units):

        dW = E_P[v h^T] - x^T P(h|x) / B,   db = E_P[v] - mean x,   dc = E_P[h] - mean P(h|x),

    with the model moments E_P[.] from `rbm_exact_moments` (float64, rounded to W's dtype). Returns
    (value, dW, db, dc) with value = mean F(x) + log Z, the exact NLL of the batch (nats per example)."""
    from genlearn.estimators.exact_rbm import rbm_exact_moments

    log_z, e_vh, e_v, e_h = rbm_exact_moments(W, b, c, limit=limit)
    xd = x.to(W.dtype)
    ph0 = torch.sigmoid(torch.addmm(c, xd, W))
    B = x.shape[0]
    dW = e_vh.to(W.dtype) - xd.T @ ph0 / B
    db = e_v.to(W.dtype) - xd.mean(0)
    dc = e_h.to(W.dtype) - ph0.mean(0)
    free = -(xd @ b) - torch.nn.functional.softplus(torch.addmm(c, xd, W)).sum(-1)
    value = (free.double().mean() + log_z).to(W.dtype)
    return value, dW, db, dc


__all__ = ["MATMUL_PRECISIONS", "cd_sgd_step", "cd_step", "cd_workspace", "checked_sgd_step", "exact_gradient",
           "matmul_dtype", "sgd_step_checks"]
