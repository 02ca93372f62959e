"""Annealed importance sampling (AIS) of log Z for a binary RBM (and, at the end of this module, for a fully
visible Boltzmann machine), with reverse AIS for the other side.

Target: p_1(v) = exp(-F(v)) / Z with F(v) = -v.b - sum_j softplus(c_j + v.W_j) (nats).
Base:   the *data base rate* model p_0(v) = prod_i Bernoulli(v_i; sigmoid(b0_i)) with b0 the logits of the
        smoothed training pixel means, and uniform hidden units, so that log Z_0 = sum_i softplus(b0_i) + H log 2.
Path:   f_beta(v) = (1 - beta) v.b0 + beta v.b + sum_j softplus(beta (c_j + v.W_j)),
        the visible marginal of the joint exp((1-beta) v.b0 + beta (v.b + h.c + v W h)) (Salakhutdinov & Murray
        2008); its Gibbs sweep h ~ sigmoid(beta a(v)), v ~ sigmoid((1-beta) b0 + beta (b + W h)) leaves it invariant
        and is reversible.

Forward AIS: v_0 ~ p_0, for k = 1..K: log w += f_{beta_k}(v_{k-1}) - f_{beta_{k-1}}(v_{k-1}), then one sweep at
beta_k. Then log Z ~= log Z_0 + log mean_c w_c, an unbiased estimate of Z whose log is a stochastic *lower*
bound of log Z (E[log Z^] <= log Z by Jensen).

Reverse AIS: the same with the path run from beta = 1 to 0, starting from samples of the model; it estimates
Z_0 / Z, so log Z ~= log Z_0 - log mean_c w_c is a stochastic *upper* bound of log Z when the start states are
exact model samples (here: training rows, or stored rows, brought to the model by `burn_in` Gibbs sweeps; a
poor start biases it). Forward and reverse chains run together in one batch (one matrix product per layer per
temperature), each chain with its own temperature.

Numerics: the chains and matrix products are float32; the per-step increment is computed as
softplus(y) - softplus(x) = -log1p(sigmoid(y) expm1(x - y)) with x - y = -(beta_k - beta_{k-1}) a, which is
accurate in float32 even though both softplus values are large, and the log weights accumulate in float64.
"""
from __future__ import annotations

import math
import time
import warnings

import torch
from torch import Tensor

from genlearn.errors import ConfigError
from genlearn.estimators.estimate import Estimate
from genlearn.numerics import BASE_RATE_SMOOTHING, base_rate_logits, sample_bernoulli, uniform_  # noqa: F401
from genlearn import binary_kernels, boltzmann_kernels, logistic_kernels, products, subset_kernels, uniform_kernels

#: the published schedule: steps of 1e-3 on [0, 0.5], 1e-4 on [0.5, 0.9], 1e-5 on [0.9, 1]
PUBLISHED_STEPS = 14_500
_SEGMENTS = ((0.0, 0.5, 500), (0.5, 0.9, 4000), (0.9, 1.0, 10000))
#: ESS below this fraction of the chains triggers a warning
ESS_WARN_FRACTION = 0.1
#: ... or below this many chains, whatever their number (ESS >= 1 always: 10% of 10 chains or fewer never warned)
ESS_WARN_MIN = 1.5


def ess_is_low(ess: float, chains: int) -> bool:
    """True when the forward chains' effective sample size ESS = (sum_c w_c)^2 / sum_c w_c^2 is below
    max(ESS_WARN_FRACTION x chains, ESS_WARN_MIN): a few chains carry the estimate (with two chains, one weight
    under 27% of the other). One chain (ESS = 1 always) cannot be judged: False."""
    return chains >= 2 and ess < max(ESS_WARN_FRACTION * chains, ESS_WARN_MIN)
#: the progress bar of `anneal` advances by this many temperatures at a time
PROGRESS_EVERY = 500


def annealing_schedule(steps: int | None = None) -> Tensor:
    """K + 1 inverse temperatures 0 = beta_0 < ... < beta_K = 1 (float64).

    steps=None or 14,500 gives the published schedule (1e-3 steps on [0, 0.5], 1e-4 on [0.5, 0.9], 1e-5 on
    [0.9, 1]); another K keeps its shape, splitting K over the three segments in the ratio 500 : 4000 : 10000."""
    steps = PUBLISHED_STEPS if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 3:
        raise ConfigError(f"AIS needs an integer number of steps >= 3, got {steps!r}")
    counts = [max(1, round(steps * n / PUBLISHED_STEPS)) for _, _, n in _SEGMENTS]
    counts[-1] = steps - counts[0] - counts[1]
    if counts[-1] < 1:
        counts = [1, 1, steps - 2]
    parts = [torch.zeros(1, dtype=torch.float64)]
    for (lo, hi, _), n in zip(_SEGMENTS, counts):
        parts.append(torch.linspace(lo, hi, n + 1, dtype=torch.float64)[1:])
    return torch.cat(parts)


def log_mean_exp(lw: Tensor) -> float:
    return float(torch.logsumexp(lw, 0) - math.log(lw.numel()))


def effective_sample_size(lw: Tensor) -> float:
    """(sum w)^2 / sum w^2 of importance weights given as log weights."""
    return float(torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)))


def log_mean_stderr(lw: Tensor) -> float:
    """Delta-method standard error of log(mean w): std(w) / (mean(w) sqrt(n))."""
    n = lw.numel()
    if n < 2:
        return math.inf
    w = torch.exp(lw - lw.max())
    return float(w.std() / (w.mean() * math.sqrt(n)))


@torch.no_grad()
def ais_bracket(forward: float, stderr: float, reverse: float, reverse_stderr: float) -> tuple[float, float]:
    """The bracket of log Z from forward AIS (a stochastic lower bound) and reverse AIS (a stochastic upper bound):
    [min(forward - 2 se_f, reverse - 2 se_r), max(reverse + 2 se_r, forward + 2 se_f)]. Usually forward - 2 se_f
    and reverse + 2 se_r; when noise makes the two estimates cross, the bracket still holds both with their
    errors (it used to shrink to [reverse, forward], or to end below the forward estimate it was reported with)."""
    return (min(forward - 2.0 * stderr, reverse - 2.0 * reverse_stderr),
            max(reverse + 2.0 * reverse_stderr, forward + 2.0 * stderr))


def gibbs_sweeps(W: Tensor, b: Tensor, c: Tensor, v: Tensor, sweeps: int, generator) -> Tensor:
    """`sweeps` Gibbs sweeps (h ~ P(h|v), v ~ P(v|h)) of the RBM from the rows v; returns the last v.

    After the first sweep (the chains then have roughly the model's density), where the visible states are sparse
    enough for the sums of selected rows (genlearn.binary_kernels' crossover), the other sweeps run as `anneal`'s
    at inverse temperature 1 throughout (its compiled kernels, the table of W's subset sums; its log weights, all
    0, are discarded): 1.65x faster for an RBM trained on MNIST (visible states 6% on), one or two AVX2 cores. With
    dense visible states those kernels gain nothing, and the sweeps stay torch's."""
    for i in range(sweeps):
        if i == 1 and _sparse_chains(v, W):
            W, b, c = (t.detach().contiguous() for t in (W, b, c))
            last = torch.empty(v.shape, dtype=W.dtype, device=W.device)
            # anneal sweeps between consecutive temperatures: (sweeps - 1) + 2 of them give the other sweeps
            anneal(W, b, c, b, v, torch.ones(sweeps + 1, v.shape[0], dtype=W.dtype, device=W.device), generator,
                   states=last)
            return last
        h = sample_bernoulli(torch.sigmoid(torch.addmm(c, v, W)), generator)
        v = sample_bernoulli(torch.sigmoid(torch.addmm(b, h, W.T)), generator)
    return v


def _sparse_chains(v: Tensor, W: Tensor) -> bool:
    """Whether the sums of selected rows would compute v W here (float32 CPU, numba, density below the crossover)."""
    if not (binary_kernels.usable(v) and binary_kernels.usable(W)):
        return False
    return binary_kernels.faster_at(float(v.mean()), "rows", v.shape[0], v.shape[1], W.shape[1] + 1)


@torch.no_grad()
def anneal(W: Tensor, b: Tensor, c: Tensor, b0: Tensor, v: Tensor, paths: Tensor, generator,
           progress: bool = False, states: Tensor | None = None) -> Tensor:
    """Run chains v (C x V) along their own temperature paths (K + 1 x C); returns log weights (C, float64)
    sum_k f_{beta_k}(v_{k-1}) - f_{beta_{k-1}}(v_{k-1}), where
    f_beta(v) = v.b0 + beta v.(b - b0) + sum_j softplus(beta (c_j + v.W_j)), so that
    f_{beta_k} - f_{beta_{k-1}} = dbeta v.d - sum_j log1p(sigmoid(beta_k a_j) expm1(-dbeta a_j)),
    dbeta = beta_k - beta_{k-1}, with a = c + v W and d = b - b0. The transition at beta_k is one Gibbs sweep
    h ~ sigmoid(beta_k a), v ~ sigmoid(b0 + beta_k (W h + d)). Every product and elementwise step writes into
    buffers allocated once (a step is ~16 tensor operations: on small matrices their count, not their
    arithmetic, sets the speed). `states` (C x V), when given, receives the chains' last states."""
    dtype = W.dtype
    n_chains, n_vis = v.shape
    n_hid = W.shape[1]
    d = (b - b0).to(dtype)
    # [W | d] and [c | 0]: one product gives the hidden pre-activations a = c + v W and the visible term v.d
    w_aug = torch.cat([W, d[:, None]], 1)
    dev = W.device  # every buffer on the parameters' device: no host round trip in the loop
    c_aug = torch.cat([c, torch.zeros(1, dtype=dtype, device=dev)])
    w_t = W.T.contiguous()                                         # h W^T + d: the visible term before beta
    lw = torch.zeros(n_chains, dtype=torch.float64, device=dev)
    paths = paths.to(device=dev, dtype=dtype)
    steps = paths.shape[0] - 1
    beta_cols = paths.unsqueeze(-1).unbind(0)                      # beta_k as (C, 1) columns
    dbeta = paths[1:] - paths[:-1]
    dbeta_rows, neg_dbeta_cols = dbeta.unbind(0), (-dbeta).unsqueeze(-1).unbind(0)
    v = v.to(dtype).clone()
    av = torch.empty(n_chains, n_hid + 1, dtype=dtype, device=dev)
    s = torch.empty(n_chains, n_hid, dtype=dtype, device=dev)
    e = torch.empty(n_chains, n_hid, dtype=dtype, device=dev)
    h = torch.empty(n_chains, n_hid, dtype=dtype, device=dev)
    inc = torch.empty(n_chains, dtype=dtype, device=dev)
    logits = torch.empty(n_chains, n_vis, dtype=dtype, device=dev)
    u = torch.empty(n_chains, n_hid + n_vis, dtype=dtype, device=dev)         # the uniforms of one sweep, drawn at once
    # the states v and h are 0/1: indexed as they are drawn (genlearn.binary_kernels.RowIndex), their products are
    # sums of selected rows where this CPU runs those faster at their density (v only if it starts 0/1 too)
    sums = binary_kernels.usable(v) and binary_kernels.usable(W)
    if sums:  # the kernels bound to the loop's buffers once (a step is ~10 calls: their checks would add ~10%)
        v_index, h_index = binary_kernels.RowIndex(n_chains, n_vis), binary_kernels.RowIndex(n_chains, n_hid)
        v_binary = v_index.add(v)
        hidden_pre_sums = v_index.bound_addmm(0, n_chains, w_aug, c_aug, av)
        visible_pre_sums = h_index.bound_addmm(0, n_chains, w_t, d, logits)
        draw_hidden = h_index.bound_sample(u[:, :n_hid], s, h)
        draw_visible = v_index.bound_sample(u[:, n_hid:], logits, v)
    # h W^T + d from a table of W's subset sums (genlearn.subset_kernels: W is the same at every temperature) where
    # this CPU runs that faster than the dense product; the sums of selected rows then only below their crossover
    # density divided by the table's speedup (the sums' time grows with the density, the table's does not)
    table_speedup = subset_kernels.speedup(n_chains, n_hid, n_vis) if sums else 0.0
    visible_pre_table = (subset_kernels.FixedSubsetProduct(n_chains, w_t).bound(h, d, logits, drawn=True)
                         if table_speedup >= subset_kernels.MIN_SPEEDUP else None)
    sums_factor = table_speedup
    # the annealing terms compiled (genlearn.logistic_kernels) for float32 CPU tensors
    fused = logistic_kernels.usable(s) and logistic_kernels.usable(av)
    if fused:
        increments = logistic_kernels.bound_anneal_increments(av, n_hid, s, inc)
        beta_np, dbeta_np = paths.numpy(), dbeta.contiguous().numpy()

    sigmoid_logits = logistic_kernels.bound_sigmoid(logits)  # the checks and the kernel choice once
    if uniform_kernels.usable(u):
        refill = uniform_kernels.bound_uniform(u, generator)
    else:
        def refill():
            uniform_(u, generator)

    def summed(index, width: int, factor: float = 1.0) -> bool:
        return binary_kernels.faster_at(factor * index.density(0, n_chains), "rows", n_chains, index.V, width)

    bar = _progress_bar(steps, progress)
    for k in range(1, steps + 1):
        if bar is not None and k % PROGRESS_EVERY == 0:
            bar.update(PROGRESS_EVERY)
        hidden_by_sums = sums and v_binary and summed(v_index, n_hid + 1)
        if hidden_by_sums:
            hidden_pre_sums()
        else:
            products.addmm(c_aug, v, w_aug, out=av)
        if fused:  # s = sigmoid(beta_k a), inc = dbeta v.d - sum_j log1p(s_j expm1(-dbeta a_j))
            increments(beta_np[k], dbeta_np[k - 1])
            lw.add_(inc)
        else:
            a = av[:, :n_hid]
            torch.mul(a, beta_cols[k], out=s).sigmoid_()
            torch.mul(a, neg_dbeta_cols[k - 1], out=e).expm1_().mul_(s).log1p_()
            torch.sum(e, 1, out=inc)
            lw.add_(torch.addcmul(inc.neg_(), dbeta_rows[k - 1], av[:, n_hid]))
        if k == steps:
            break
        refill()                                                   # the uniforms of this sweep
        if sums:                                                   # h ~ P_beta(h | v)
            draw_hidden()
        else:
            torch.lt(u[:, :n_hid], s, out=h)
        # the table beside the sums only: beside a dense GEMM (dense v) it measured no faster than the dense product
        # (0.96 against 0.94 ms on one AVX2 core), the GEMM's traffic evicting its 6.4 MB from the shared L3 cache
        table = visible_pre_table is not None and hidden_by_sums
        if sums and summed(h_index, n_vis, sums_factor if table else 1.0):
            visible_pre_sums()
        elif not (table and visible_pre_table()):
            products.addmm(d, h, w_t, out=logits)                  # W h + d
        torch.addcmul(b0, logits, beta_cols[k], out=logits)
        sigmoid_logits()                                           # P_beta(v_i = 1 | h)
        if sums:
            draw_visible()
            v_binary = True
        else:
            torch.lt(u[:, n_hid:], logits, out=v)
    if bar is not None:
        bar.close()
    if states is not None:
        states.copy_(v)
    return lw


def _progress_bar(steps: int, progress: bool):
    """A tqdm bar over the temperatures (updated every PROGRESS_EVERY of them), or None."""
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc="AIS", unit="temperature", unit_scale=True, leave=False, mininterval=0.5,
                disable=None)  # None: no bar when stderr is not a terminal


@torch.no_grad()
def ais_log_partition(W: Tensor, b: Tensor, c: Tensor, base_logits: Tensor | None = None, steps: int | None = None,
                      chains: int = 100, seed: int = 0, reverse: bool = True, reverse_start: Tensor | None = None,
                      burn_in: int = 1000, dtype=torch.float32, warn: bool = True,
                      progress: bool = False) -> Estimate:
    """AIS estimate of log Z (nats) of the RBM (W, b, c) from the base-rate model with logits `base_logits`
    (uniform visibles when None), with `steps` temperatures (default the published 14,500) and `chains`
    chains; with `reverse`, reverse AIS from `reverse_start` rows (cycled to `chains` rows; base-rate samples
    when None) after `burn_in` Gibbs sweeps at beta = 1. `progress`: a progress bar over the temperatures.

    Returns Estimate(value = forward estimate, stderr (delta method), lower, upper = `ais_bracket` (forward - 2
    stderr and reverse + 2 reverse stderr unless the two cross; without reverse: forward - 2 stderr, inf),
    details = {forward, reverse, forward_stderr, reverse_stderr, ess_forward, ess_reverse, forward_reverse_gap,
    steps, chains, seed, base, ...}).
    The forward and reverse estimates are stochastic lower and upper bounds (in expectation, by Jensen's
    inequality, the reverse one only for exact start samples); the two standard errors widen them for noise.
    Warns when the forward effective sample size is below 10% of the chains, or when forward and reverse
    disagree by more than 1 nat."""
    if isinstance(chains, bool) or not isinstance(chains, int) or chains < 2:
        raise ConfigError(f"AIS needs an integer number of chains >= 2, got {chains!r}")
    t0 = time.perf_counter()
    betas = annealing_schedule(steps)
    n_steps = betas.numel() - 1
    W, b, c = (t.detach().to(dtype).contiguous() for t in (W, b, c))
    n_vis, n_hid = W.shape
    base_name = "data base rate (smoothed training means)"
    if base_logits is None:
        base_logits, base_name = torch.zeros(n_vis), "uniform (no training means known)"
    b0 = base_logits.detach().to(device=W.device, dtype=dtype)
    log_z0 = float(torch.nn.functional.softplus(b0.double()).sum()) + n_hid * math.log(2.0)
    g = torch.Generator(device=W.device).manual_seed(int(seed))
    v_fwd = sample_bernoulli(torch.sigmoid(b0).expand(chains, n_vis), g)
    start_states, paths = [v_fwd], [betas[:, None].expand(-1, chains)]
    reverse_init = None
    if reverse:
        if reverse_start is not None and reverse_start.shape[0] > 0:
            rows = reverse_start.detach().to(device=W.device, dtype=dtype)
            idx = torch.arange(chains, device=W.device) % rows.shape[0]
            v_rev = rows[idx]
            reverse_init = f"{min(rows.shape[0], chains)} distinct training rows + {burn_in} Gibbs sweeps"
        else:
            v_rev = sample_bernoulli(torch.sigmoid(b0).expand(chains, n_vis), g)
            reverse_init = f"base-rate samples + {burn_in} Gibbs sweeps"
        v_rev = gibbs_sweeps(W, b, c, v_rev, burn_in, g)
        start_states.append(v_rev)
        paths.append(betas.flip(0)[:, None].expand(-1, chains))
    lw = anneal(W, b, c, b0, torch.cat(start_states), torch.cat(paths, 1).contiguous(), g, progress=progress)
    lw_f = lw[:chains]
    forward = log_z0 + log_mean_exp(lw_f)
    ess_f = effective_sample_size(lw_f)
    stderr = log_mean_stderr(lw_f)
    details = {"method": "AIS from the base rate" + (" + reverse AIS" if reverse else ""), "steps": n_steps,
               "chains": chains, "seed": int(seed), "base": base_name, "log_z_base": log_z0,
               "forward": forward, "forward_stderr": stderr, "ess_forward": ess_f}
    lower, upper = forward - 2.0 * stderr, math.inf
    if reverse:
        lw_r = lw[chains:]
        rev = log_z0 - log_mean_exp(lw_r)
        rev_se = log_mean_stderr(lw_r)
        details.update({"reverse": rev, "reverse_stderr": rev_se,
                        "ess_reverse": effective_sample_size(lw_r), "reverse_init": reverse_init,
                        "burn_in": burn_in, "forward_reverse_gap": rev - forward})
        if rev < forward:
            details["note"] = "forward and reverse estimates crossed (their difference is noise unless large)"
        lower, upper = ais_bracket(forward, stderr, rev, rev_se)
    details["seconds"] = time.perf_counter() - t0
    if warn and ess_is_low(ess_f, chains):
        warnings.warn(f"AIS: effective sample size {ess_f:.1f} of {chains} chains is low; the log Z estimate "
                      "may be far too low. Use more steps (e.g. 100,000) or chains.", RuntimeWarning, stacklevel=2)
    if warn and reverse and abs(details["forward_reverse_gap"]) > 1.0:
        warnings.warn(f"AIS: forward ({forward:.2f}) and reverse ({details['reverse']:.2f}) estimates of log Z "
                      "disagree by more than 1 nat; use more steps.", RuntimeWarning, stacklevel=2)
    return Estimate(forward, "ais", stderr, lower, upper, details)



# ------------------------------------------------------------------------------------------------------------
# fully visible Boltzmann machines
# ------------------------------------------------------------------------------------------------------------
def quadratic_energy64(x: Tensor, b: Tensor, W: Tensor, index=None) -> Tensor:
    """E(x) = -(b.x + 1/2 x.W.x) per row (W symmetric, zero diagonal), in x's dtype. With `index` (a
    binary_kernels.RowIndex of x's shape) and 0/1 rows, x W is the sum of the rows of W at each row's active units
    (compiled, in x's dtype: the dense product's value up to the order of its additions), else a product."""
    if index is not None and index.add(x.contiguous()):
        xw = index.addmm(0, x.shape[0], W, torch.zeros(W.shape[1], dtype=W.dtype), torch.empty_like(x))
    else:
        xw = x @ W
    return -(x @ b + 0.5 * (xw * x).sum(-1))


@torch.no_grad()
def boltzmann_gibbs_sweeps(x: Tensor, b: Tensor, W: Tensor, beta: Tensor, sweeps: int, generator) -> Tensor:
    """`sweeps` sequential-scan Gibbs sweeps of every chain (row of x) under P_beta(x) ∝ exp(-beta E(x)),
    E(x) = -(b.x + 1/2 x.W.x), each chain at its own inverse temperature (beta: (C, 1) or a scalar tensor):
    unit i is redrawn from P(x_i = 1 | x_-i) = sigmoid(beta (b_i + sum_j W_ij x_j)). Returns a new tensor."""
    x = x.clone()
    n = x.shape[1]
    beta = beta.reshape(-1) if beta.numel() > 1 else beta.reshape(())
    bk, Wk = b.detach().contiguous(), W.detach().contiguous()
    if boltzmann_kernels.usable(x, bk, Wk) and bool(((x == 0) | (x == 1)).all()):
        # compiled: the fields kept per chain and updated by the rows of W at each flip (the same uniforms and
        # decisions up to the order of float additions; genlearn.boltzmann_kernels)
        betas = beta.to(x.dtype).expand(x.shape[0]).contiguous()
        for _ in range(sweeps):
            u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            boltzmann_kernels.sweeps_(x, bk, Wk, betas, u.unsqueeze(0))
        return x
    for _ in range(sweeps):
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        for i in range(n):
            field = b[i] + x @ W[:, i]
            x[:, i] = (u[:, i] < torch.sigmoid(beta * field)).to(x.dtype)
    return x


@torch.no_grad()
def boltzmann_ais_log_partition(b: Tensor, W: Tensor, steps: int = 1000, chains: int = 100, seed: int = 0,
                                reverse: bool = True, reverse_start: Tensor | None = None, burn_in: int = 200,
                                log_z_offset: float = 0.0, warn: bool = True) -> Estimate:
    """AIS estimate of log Z (nats) of the fully visible Boltzmann machine P(x) ∝ exp(b.x + 1/2 x.W.x) on
    {0,1}^n, plus `log_z_offset` (a constant energy shift of the model's parametrisation, e.g. spins).

    Path: P_beta(x) ∝ exp(-beta E(x)) on beta = 0 .. 1 in `steps` equal steps, from the uniform distribution
    (log Z_0 = n log 2); one sequential Gibbs sweep per temperature. Forward chains start uniform and
    accumulate log w = -sum_k (beta_k - beta_{k-1}) E(x_{k-1}); log Z ~= log Z_0 + log mean w, a stochastic lower
    bound (Jensen). With `reverse`, as many chains run the path from beta = 1 down to 0, started from
    `reverse_start` rows (cycled; uniform states when None) after `burn_in` sweeps at beta = 1; they estimate
    Z_0 / Z, so log Z ~= log Z_0 - log mean w_rev, a stochastic upper bound when the starts are model samples.
    Forward and reverse chains run in one batch (float64).

    Returns Estimate(value = forward, stderr (delta method), lower, upper = `ais_bracket` (without reverse:
    forward - 2 stderr, inf), method "ais", details {forward, reverse, forward_stderr,
    reverse_stderr, ess_forward, ess_reverse, ess (= ess_forward), forward_reverse_gap, steps, chains, seed,
    burn_in, reverse_init, base}). Warns (when `warn`) on a forward ESS below 10% of the chains or forward and
    reverse more than 1 nat apart."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"AIS needs a positive integer number of steps, got {steps!r}")
    if isinstance(chains, bool) or not isinstance(chains, int) or chains < 2:
        raise ConfigError(f"AIS needs an integer number of chains >= 2, got {chains!r}")
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(int(seed))
    b, W = b.detach().double(), W.detach().double()
    n = b.numel()
    log_z0 = n * math.log(2.0)
    betas = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    starts = [torch.bernoulli(torch.full((chains, n), 0.5, dtype=torch.float64), generator=g)]
    paths = [betas[:, None].expand(-1, chains)]
    reverse_init = None
    if reverse:
        if reverse_start is not None and reverse_start.shape[0] > 0:
            rows = reverse_start.detach().double()
            # `chains` rows drawn at random without replacement (cycled when there are fewer): a data file in
            # some order (e.g. by class) would otherwise start every reverse chain in its first rows
            pick = torch.randperm(rows.shape[0], generator=g)[:chains] if rows.shape[0] > chains else \
                torch.arange(chains) % rows.shape[0]
            x_rev = rows[pick]
            reverse_init = f"{min(rows.shape[0], chains)} random data rows + {burn_in} Gibbs sweeps"
        else:
            x_rev = torch.bernoulli(torch.full((chains, n), 0.5, dtype=torch.float64), generator=g)
            reverse_init = f"uniform states + {burn_in} Gibbs sweeps"
        if burn_in:
            x_rev = boltzmann_gibbs_sweeps(x_rev, b, W, torch.ones((), dtype=torch.float64), burn_in, g)
        starts.append(x_rev)
        paths.append(betas.flip(0)[:, None].expand(-1, chains))
    x = torch.cat(starts)
    path = torch.cat(paths, 1)
    lw = torch.zeros(x.shape[0], dtype=torch.float64)
    # the chains' energies: x W as sums of rows of W over the active units where numba is installed (float64)
    index = binary_kernels.RowIndex(*x.shape) if binary_kernels.available() and boltzmann_kernels.ENABLED else None
    W = W.contiguous()
    for k in range(1, steps + 1):
        lw -= (path[k] - path[k - 1]) * quadratic_energy64(x, b, W, index)
        if k < steps:
            x = boltzmann_gibbs_sweeps(x, b, W, path[k][:, None], 1, g)
    lw_f = lw[:chains]
    forward = log_z0 + log_mean_exp(lw_f) + log_z_offset
    stderr = log_mean_stderr(lw_f)
    ess_f = effective_sample_size(lw_f)
    details = {"method": "AIS from the uniform distribution" + (" + reverse AIS" if reverse else ""),
               "steps": steps, "chains": chains, "seed": int(seed), "base": "uniform", "log_z_base": log_z0,
               "forward": forward, "forward_stderr": stderr, "ess_forward": ess_f, "ess": ess_f}
    lower, upper = forward - 2.0 * stderr, math.inf
    if reverse:
        lw_r = lw[chains:]
        rev = log_z0 - log_mean_exp(lw_r) + log_z_offset
        rev_se = log_mean_stderr(lw_r)
        details.update({"reverse": rev, "reverse_stderr": rev_se, "ess_reverse": effective_sample_size(lw_r),
                        "reverse_init": reverse_init, "burn_in": burn_in, "forward_reverse_gap": rev - forward})
        if rev < forward:
            details["note"] = "forward and reverse estimates crossed (their difference is noise unless large)"
        lower, upper = ais_bracket(forward, stderr, rev, rev_se)
    details["seconds"] = time.perf_counter() - t0
    if warn and ess_is_low(ess_f, chains):
        warnings.warn(f"AIS: effective sample size {ess_f:.1f} of {chains} chains is low; the log Z estimate "
                      "may be far too low. Use more steps or chains.", RuntimeWarning, stacklevel=2)
    if warn and reverse and abs(details["forward_reverse_gap"]) > 1.0:
        warnings.warn(f"AIS: forward ({forward:.2f}) and reverse ({details['reverse']:.2f}) estimates of log Z "
                      "disagree by more than 1 nat; use more steps.", RuntimeWarning, stacklevel=2)
    return Estimate(forward, "ais", stderr, lower, upper, details)


__all__ = ["PUBLISHED_STEPS", "ais_log_partition", "anneal", "annealing_schedule", "base_rate_logits",
           "boltzmann_ais_log_partition", "boltzmann_gibbs_sweeps", "effective_sample_size", "gibbs_sweeps"]
