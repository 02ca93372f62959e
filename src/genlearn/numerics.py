"""Shared low-level numerics of binary models: Bernoulli sampling, column means, logits and base rates, tanh.

Every module (data, models, estimators, learning rules) may import this one; it imports nothing of genlearn
but the errors and the core kernels (uniform_kernels, logistic_kernels, kernel_timing), so it can never be part
of an import cycle."""
from __future__ import annotations

import contextlib
import contextvars
import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: 2^-24: float32 uniforms u = k 2^-24, k uniform in {0, ..., 2^24 - 1} (the resolution torch.rand gives float32)
_U24 = 2.0 ** -24
#: pseudo-count s of the smoothed base rate p_i = (mean_i + s) / (1 + 2 s) used to start AIS
BASE_RATE_SMOOTHING = 0.05


def uniform_(u: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Fill u (contiguous) with independent uniforms on [0, 1), in place.

    float32: u = k 2^-24 with k the low 24 bits of a 32-bit word; the words come two at a time from one 64-bit
    draw of the generator (both halves uniform: bit 63 of the draw is not used), which is ~1.7x faster than
    torch.rand and has the same 24-bit resolution; with numba, tensors of at least uniform_kernels.MIN_SIZE
    entries come from its compiled xoshiro128++ streams seeded by the generator (~7x faster, same resolution).
    Other dtypes: Tensor.uniform_."""
    if u.dtype != torch.float32:
        return u.uniform_(generator=generator)
    from genlearn import uniform_kernels

    if uniform_kernels.usable(u):
        return uniform_kernels.uniform_(u, generator)
    n = u.numel()
    words = torch.empty((n + 1) // 2, dtype=torch.int64, device=u.device).random_(generator=generator)
    k = words.view(torch.int32)[:n].bitwise_and_(0xFFFFFF).view(u.shape)
    return torch.mul(k, _U24, out=u)


def sample_bernoulli(p: Tensor, generator: torch.Generator | None = None, out: Tensor | None = None) -> Tensor:
    """Independent Bernoulli(p) draws as 0/1 in p's dtype: 1 where u < p, u ~ uniform[0, 1) from `uniform_`.
    `out` (p's shape and dtype) receives the draws."""
    u = uniform_(torch.empty(p.shape, dtype=p.dtype, device=p.device), generator)
    return torch.lt(u, p, out=u if out is None else out)


def column_means(x: Tensor, chunk: int = 8192) -> Tensor:
    """Mean of every column of x (M, n) in float64, summed a chunk of rows at a time (no float64 copy of x).

    A float32 x has each chunk summed in float32 (vectorised: ~25x faster than converting every element to
    float64 on the way) and the chunk sums added in float64. Exact for 0/1 and other integer-valued data, whose
    chunk sums stay integers below 2^24; other float32 data carry float32 rounding in each chunk's sum (relative
    error ~1e-7 sqrt(chunk) typically). Other dtypes are summed in float64."""
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for c in x.split(chunk):
        total += c.sum(0).double() if c.dtype == torch.float32 else c.sum(0, dtype=torch.float64)
    return total / x.shape[0]


def logit(p: Tensor, eps: float = 1e-6) -> Tensor:
    """log(p / (1 - p)) with p clipped to [eps, 1 - eps] so that closed-form MLEs of 0 or 1 stay finite."""
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


def base_rate_logits(x: Tensor, smoothing: float = BASE_RATE_SMOOTHING) -> Tensor:
    """Logits of the smoothed training means p_i = (mean_i + s) / (1 + 2 s), s = `smoothing` (a pseudo-count of
    s M on each outcome; Salakhutdinov & Murray used 0.05 M on the ones), float32."""
    p = (column_means(x) + smoothing) / (1.0 + 2.0 * smoothing)
    return (torch.log(p) - torch.log1p(-p)).float()


class _CompiledTanh(torch.autograd.Function):
    """y = tanh(a) by genlearn.logistic_kernels.tanh_ (on a copy of a); dy/da = 1 - y^2 (torch's tanh_backward)."""

    @staticmethod
    def forward(ctx, a: Tensor) -> Tensor:
        from genlearn import logistic_kernels

        y = logistic_kernels.tanh_(a.detach().clone())
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class _SigmoidTanh(torch.autograd.Function):
    """y = 2 sigmoid(2 a) - 1 = tanh(a); dy/da = 1 - y^2 (torch's tanh_backward)."""

    @staticmethod
    def forward(ctx, a: Tensor) -> Tensor:
        y = torch.sigmoid(a * 2).mul_(2).sub_(1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


#: the timed block of the tanh choice: a minibatch of 100 rows through 500 hidden units
TANH_BENCH_SHAPE = (100, 500)
_TANH_TIMES: dict[int, dict[str, float]] = {}  # torch threads -> seconds per call of each form


def tanh_timings() -> dict[str, float]:
    """Seconds per call on a TANH_BENCH_SHAPE float32 block, once per machine and thread count
    (genlearn.kernel_timing, genlearn.timing_cache): "tanh" torch.tanh(a); "sigmoid_form" 2 sigmoid(2a) - 1
    (three passes more, the sigmoid by genlearn.logistic_kernels.sigmoid_); "sigmoid" the sigmoid alone (what a
    tanh network whose affine maps absorb the factors runs: genlearn.models.vae.MLP.sigmoid_features). Measured,
    ns per entry, one core: AVX-512 EPYC tanh 2.5-3.3, sigmoid form 0.7-1.0; AVX2 3.4-3.5 and 1.6-2.1; AVX-512 Xeon
    tanh 0.3, sigmoid form ~1 (torch's tanh is fast there); with torch's scalar DEFAULT kernels tanh 2.8-3.2,
    sigmoid form 8.4-9.5."""
    from genlearn import kernel_timing, logistic_kernels, timing_cache

    threads = torch.get_num_threads()
    if threads not in _TANH_TIMES:
        def measure() -> dict:
            a = torch.randn(TANH_BENCH_SHAPE, generator=torch.Generator().manual_seed(0))
            candidates = {"tanh": lambda: torch.tanh(a),
                          "sigmoid_form": lambda: logistic_kernels.sigmoid_(a * 2).mul_(2).sub_(1),
                          "sigmoid": lambda: logistic_kernels.sigmoid_(a.clone())}
            if logistic_kernels.available():
                candidates["compiled"] = lambda: logistic_kernels.tanh_(a.clone())
            return kernel_timing.best_seconds(candidates)

        # remembered per machine (genlearn.timing_cache): the same forms in every process of this machine
        _TANH_TIMES[threads] = timing_cache.remembered(__file__, f"tanh_timings threads={threads}", measure)
    return _TANH_TIMES[threads]


def _sigmoid_form_wins(a: Tensor, form: str) -> bool:
    """Whether the timed `form` of tanh_timings is used instead of torch.tanh for a tensor like a (the margin
    logistic_kernels.MIN_SPEEDUP; GENLEARN_ELEMENTWISE forces it either way)."""
    if a.dtype != torch.float32 or a.device.type != "cpu":  # bfloat16: 2 sigmoid(2a) - 1 loses small values
        return False
    from genlearn import logistic_kernels

    forced = logistic_kernels.elementwise_override()
    if forced != "auto":
        return forced == "genlearn"
    times = tanh_timings()
    return times["tanh"] >= logistic_kernels.MIN_SPEEDUP * times[form]


#: the forms of tanh `tanh_form` chooses from, as the run records name them
TANH_FORMS = {"torch": "torch.tanh", "sigmoid_form": "2 sigmoid(2a) - 1",
              "compiled": "compiled (genlearn.logistic_kernels.tanh_)"}


_TANH_FORM_CACHE: dict = {}  # (dtype, device type, kernel-ready, timings, override) -> form


def tanh_form(a: Tensor) -> str:
    """Which form `tanh` and `tanh_` run for a tensor like a: "torch" (torch.tanh), "sigmoid_form"
    (2 sigmoid(2a) - 1) or "compiled" (genlearn.logistic_kernels.tanh_, one pass: contiguous float32 CPU tensors,
    numba present). genlearn's forms only for float32 on the CPU; GENLEARN_ELEMENTWISE=genlearn takes the compiled
    form where it can run, else the sigmoid form; by default the fastest of genlearn's forms by `tanh_timings`,
    where it is at least logistic_kernels.MIN_SPEEDUP times faster than torch.tanh. Measured, ns per entry on one
    AVX2 EPYC core (100 x 200): torch 3.4, sigmoid form 2.6, compiled 1.5. The answer is cached per kind of
    tensor, timings and override (a network asks once per layer and step: ~9 us uncached)."""
    import os

    times = _TANH_TIMES.get(torch.get_num_threads())
    ready = a.is_contiguous() and a.dim() >= 1 and a.numel() > 0 and not a.requires_grad
    key = (a.dtype, a.device.type, ready, None if times is None else tuple(times.items()),
           os.environ.get("GENLEARN_ELEMENTWISE"))
    form = _TANH_FORM_CACHE.get(key)
    if form is None:
        form = _TANH_FORM_CACHE[key] = _tanh_form(a)
    return form


def _tanh_form(a: Tensor) -> str:
    if a.dtype != torch.float32 or a.device.type != "cpu":  # bfloat16: 2 sigmoid(2a) - 1 loses small values
        return "torch"
    from genlearn import logistic_kernels

    compiled_ok = a.dim() >= 1 and a.numel() > 0 and logistic_kernels.usable(a.view(-1, a.shape[-1])) \
        if a.is_contiguous() else False
    forced = logistic_kernels.elementwise_override()
    if forced != "auto":
        return "torch" if forced == "torch" else ("compiled" if compiled_ok else "sigmoid_form")
    times = tanh_timings()
    forms = [f for f in ("compiled", "sigmoid_form") if f in times and (f != "compiled" or compiled_ok)]
    best = min(forms, key=times.__getitem__)
    return best if times["tanh"] >= logistic_kernels.MIN_SPEEDUP * times[best] else "torch"


def sigmoid_tanh_in_use(a: Tensor) -> bool:
    """Whether `tanh` computes tanh(a) as 2 sigmoid(2a) - 1 for a tensor like a (`tanh_form`)."""
    return tanh_form(a) == "sigmoid_form"


def folded_tanh_in_use(a: Tensor) -> bool:
    """Whether a tanh network without autograd runs as sigmoids with the factors folded into its affine maps
    (tanh(a) = 2 sigmoid(2a) - 1, one sigmoid pass per layer): as `sigmoid_tanh_in_use`, comparing torch.tanh with
    the sigmoid alone."""
    return _sigmoid_form_wins(a, "sigmoid")


def sigmoid_tanh(a: Tensor) -> Tensor:
    """tanh(a) computed as 2 sigmoid(2a) - 1, with autograd (derivative 1 - tanh(a)^2): the same function to
    rounding (within 2.4e-7 absolute in float32)."""
    return _SigmoidTanh.apply(a)


def tanh(a: Tensor) -> Tensor:
    """tanh(a) with autograd, in the form `tanh_form` chooses: the compiled kernel or `sigmoid_tanh` for float32
    where it is faster than torch's tanh on this CPU (AVX2 EPYC: compiled 2.3x, sigmoid form 1.3x; AVX-512 EPYC:
    sigmoid form ~3x), torch.tanh elsewhere (e.g. an AVX-512 Xeon, where torch's is 3x faster), on other devices
    and for other dtypes (in bfloat16, 2 sigmoid(2a) - 1 would lose the relative precision of small values). It is
    the hidden activation "tanh" of the VAE and GAN networks, whose importance-sampling and training passes spend
    much of their non-GEMM time in it."""
    form = tanh_form(a.detach())
    if form == "compiled":
        return _CompiledTanh.apply(a)
    if form == "sigmoid_form":
        return _SigmoidTanh.apply(a)
    return torch.tanh(a)


def tanh_(a: Tensor) -> Tensor:
    """tanh(a) in place, without autograd (a fresh temporary, e.g. a layer's pre-activations), in the form of
    `tanh_form`: the compiled kernel, 2 sigmoid(2a) - 1 by genlearn.logistic_kernels.sigmoid_, or torch's tanh_; no new
    tensor (a network's tanh layers on 5,000 x 200 importance samples each allocated and wrote a fresh 4 MB)."""
    form = tanh_form(a)
    if form != "torch":
        from genlearn import logistic_kernels

        if form == "compiled":
            return logistic_kernels.tanh_(a)
        return logistic_kernels.sigmoid_(a.mul_(2)).mul_(2).sub_(1)
    return a.tanh_()


def elementwise_record() -> dict:
    """What runs and benchmarks record: the tanh form and sigmoid kernel in use, and their timings."""
    from genlearn import logistic_kernels

    probe = torch.zeros(1, 1)
    times = tanh_timings()
    return {"elementwise_override": logistic_kernels.elementwise_override(), **logistic_kernels.record(),
            "tanh": TANH_FORMS[tanh_form(probe)],
            "tanh_folded_into_sigmoids": folded_tanh_in_use(probe),
            "tanh_ns_per_entry": {k: round(v * 1e9 / math.prod(TANH_BENCH_SHAPE), 3) for k, v in times.items()}}


def _reset_for_tests() -> None:
    _TANH_TIMES.clear()
    _TANH_FORM_CACHE.clear()


#: normalised importance weights below this count as 0 in the gradient of an importance-weighted bound: their terms
#: are below 1e-19 of the largest weight's (>= 1/k) and leave float32 or float64 sums unchanged to rounding, while
#: the products they would feed make denormal floats, which x86 CPUs compute ~100x slower (an IWAE-50 training step
#: on binarized MNIST took 2.4x longer with them, AVX-512). The floor of negligible_weight's threshold.
NEGLIGIBLE_WEIGHT = 2.0 ** -64

#: True: the threshold rises to u / k (u the unit roundoff of the weights' dtype), so that the weights left out of a
#: row together hold less than u of it; False: NEGLIGIBLE_WEIGHT alone (the gradient exact to summation order)
BELOW_ROUNDOFF = True


def negligible_weight(k: int, dtype: torch.dtype) -> float:
    """tau = max(NEGLIGIBLE_WEIGHT, u / k) for k normalised weights per row (sum_j w_j = 1), with u the unit roundoff:
    2^-53 for float64, 2^-24 for float32 (and narrower weights). The weights below tau together hold less than u of
    their row, so counting them as 0 changes the row's gradient sum_j w_j g_j by less than u max_j |g_j|, one
    rounding of its largest term in that dtype. In IWAE-50 training on binarized MNIST 44-57% of the weights are
    below 2^-24 / 50 against 10-21% below 2^-64, and the decoder's backward pass leaves their samples out
    (genlearn.models.vae_step)."""
    if not BELOW_ROUNDOFF:
        return NEGLIGIBLE_WEIGHT
    unit_roundoff = 2.0 ** -53 if dtype == torch.float64 else 2.0 ** -24  # float32's for float32 and narrower
    return max(NEGLIGIBLE_WEIGHT, unit_roundoff / k)


def negligible_to_zero_(w: Tensor) -> Tensor:
    """w with the entries below negligible_weight(k, w.dtype) set to 0, in place (w: normalised weights >= 0 over
    dimension 0, k = w.shape[0] of them per row)."""
    return w.masked_fill_(w < negligible_weight(w.shape[0], w.dtype), 0.0)


class _LogMeanExp(torch.autograd.Function):
    """L = logsumexp_j a_j - log k over dimension 0; dL/da_j = softmax(a)_j, those below negligible_weight as 0."""

    @staticmethod
    def forward(ctx, a: Tensor) -> Tensor:
        out = torch.logsumexp(a, 0) - math.log(a.shape[0])
        ctx.save_for_backward(a, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        a, out = ctx.saved_tensors
        w = torch.exp(a - (out + math.log(a.shape[0])))
        return negligible_to_zero_(w).mul_(grad)


def log_mean_exp(a: Tensor) -> Tensor:
    """log (1/k) sum_j exp(a_j) over dimension 0 (k = a.shape[0]): the IWAE bound L_k from its k log-weights, nats.
    Its gradient, the normalised weights, counts weights below negligible_weight(k, dtype) as 0 (below rounding; no
    denormal floats)."""
    return _LogMeanExp.apply(a)


#: the rows [start, stop) of a global batch of `total` rows that this process computes (data-parallel training,
#: genlearn.learning.distributed), or None: per-row noise is then drawn for all `total` rows and sliced
_ROW_SHARD: contextvars.ContextVar = contextvars.ContextVar("genlearn_row_shard", default=None)


def group_size(n: int) -> int:
    """The largest divisor of n in [8, 64] (0: none): the pixels per product in `softplus_row_sums_`."""
    return next((g for g in range(min(n, 64), 7, -1) if n % g == 0), 0)


def softplus_row_sums_(logits: Tensor) -> Tensor:
    """sum_i softplus(l_i) over the last dimension, without autograd, overwriting `logits` (a temporary), by

        softplus(l) = max(l, 0) + log(1 + e^-|l|),   sum_{i in g} log(1 + e^-|l_i|) = log prod_{i in g} (1 + e^-|l_i|)

    over groups g of G <= 64 consecutive entries (G the largest divisor of their number in [8, 64]): each factor is
    in [1, 2], so a group's product is at most 2^64, finite in float32. One exp per entry and one log per group,
    where softplus takes an exp and a log1p per entry: 1.5x faster on AVX2, whose log1p is not vectorised (3.4 ->
    2.3 ns per entry, one thread). The same figure up to float32 rounding: each product of G factors adds at most
    G ulps of relative error (~G 6e-8 nats per group, 1e-5 nats per 784 pixels, the order of the float32 sum's own
    error). Without such a divisor, F.softplus and a sum."""
    n = logits.shape[-1]
    G = group_size(n)
    if G == 0:
        return F.softplus(logits).sum(-1)
    flat = logits.reshape(-1, n)
    positive = flat.clamp_min(0.0).sum(-1)
    factors = flat.abs_().neg_().exp_().add_(1.0)
    logs = factors.view(flat.shape[0], n // G, G).prod(-1).log_().sum(-1)
    return logs.add_(positive).reshape(logits.shape[:-1])


def fast_softplus_row_sums_(logits: Tensor, bias: Tensor | None = None) -> Tensor:
    """sum_i softplus(l_i + b_i) over the last dimension of a temporary (possibly overwritten; b = 0 without `bias`):
    the compiled kernel where it takes the tensors (genlearn.logistic_kernels.row_sums: 2-D float32 CPU, numba
    present; the bias added in its pass), else `softplus_row_sums_` (torch passes) of logits + b."""
    from genlearn import logistic_kernels

    bias_ok = bias is None or (bias.dim() == 1 and logistic_kernels.usable(bias.detach().reshape(1, -1).contiguous()))
    if logits.dim() == 2 and logistic_kernels.usable(logits) and bias_ok:
        return logistic_kernels.row_sums(logits, bias)
    return softplus_row_sums_(logits if bias is None else logits.add_(bias))


def sigmoid_and_softplus_row_sums_(logits: Tensor, sigmoid_out: Tensor) -> Tensor:
    """sigmoid(l) written to `sigmoid_out`, and sum_i softplus(l_i) over the last dimension returned, without
    autograd, overwriting `logits` (a temporary), from the one sigmoid pass:

        softplus(l) = max(l, 0) - log sigmoid(|l|),   sigmoid(|l|) = 1/2 + |sigmoid(l) - 1/2|  in [1/2, 1],

    the logs summed as the log of products over groups of G <= 64 entries as in `softplus_row_sums_` (a group's
    product is at least 2^-64, a normal float32). Where a training pass needs both (the decoder's softplus sums and
    their gradient), this is 1.25x faster than a sigmoid and `softplus_row_sums_` (AVX2, one thread, 512 x 784
    logits: 2.4 against 3.0 ns per entry). Absolute error per entry ~6e-8 (1/2 + |s - 1/2| rounds to float32's
    spacing near 1), the order of `softplus_row_sums_`'s own."""
    torch.sigmoid(logits, out=sigmoid_out)
    n = logits.shape[-1]
    G = group_size(n)
    if G == 0:
        return F.softplus(logits).sum(-1)
    flat = logits.reshape(-1, n)
    positive = torch.relu(flat).sum(-1)
    upper = torch.sub(sigmoid_out.reshape(-1, n), 0.5, out=flat).abs_().add_(0.5)
    logs = upper.view(flat.shape[0], n // G, G).prod(-1).log_().sum(-1)
    return positive.sub_(logs).reshape(logits.shape[:-1])


#: rows per block in `softplus_row_sums`' forward pass: a 512 x 784 float32 copy (1.6 MB) stays in cache while
#: `softplus_row_sums_` makes its passes over it
SOFTPLUS_BLOCK_ROWS = 512


class _SoftplusRowSums(torch.autograd.Function):
    """s = sum_i softplus(l_i) over the last dimension; ds/dl_i = sigmoid(l_i)."""

    @staticmethod
    def forward(ctx, logits: Tensor) -> Tensor:
        n = logits.shape[-1]
        flat = logits.detach().reshape(-1, n)
        rows = flat.shape[0]
        out = torch.empty(rows, dtype=logits.dtype, device=logits.device)
        scratch = torch.empty((min(rows, SOFTPLUS_BLOCK_ROWS), n), dtype=logits.dtype, device=logits.device)
        for start in range(0, rows, SOFTPLUS_BLOCK_ROWS):
            stop = min(start + SOFTPLUS_BLOCK_ROWS, rows)
            out[start:stop] = softplus_row_sums_(scratch[: stop - start].copy_(flat[start:stop]))
        ctx.save_for_backward(logits)
        return out.reshape(logits.shape[:-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        (logits,) = ctx.saved_tensors
        return torch.sigmoid(logits).mul_(grad.unsqueeze(-1))


def softplus_row_sums(logits: Tensor) -> Tensor:
    """sum_i softplus(l_i) = sum_i log(1 + e^{l_i}) over the last dimension (nats when l are Bernoulli logits),
    with autograd: the forward pass is `softplus_row_sums_` on cache-sized copies of the rows (one exp per entry and
    one log per group of entries), the backward pass g sigmoid(l). The same function as F.softplus(l).sum(-1) to
    float32 rounding (~1e-5 nats per 784 entries), ~4x faster forward and backward with autograd on AVX2, where
    torch's softplus and its backward take 5-6 ns per entry (log1p not vectorised)."""
    return _SoftplusRowSums.apply(logits)


@contextlib.contextmanager
def row_shard(start: int, stop: int, total: int):
    """Within this context, `randn_rows` draws the noise of a global batch of `total` rows and returns rows
    [start, stop): a process of a data-parallel run that computes those rows of the batch uses the same random
    numbers for them as a single process computing the whole batch (and its generator advances as far)."""
    token = _ROW_SHARD.set((int(start), int(stop), int(total)))
    try:
        yield
    finally:
        _ROW_SHARD.reset(token)


def randn_rows(shape, row_dim: int, generator: torch.Generator | None = None, dtype=None, device=None) -> Tensor:
    """torch.randn(shape) whose dimension `row_dim` indexes the rows of a batch; inside `row_shard(start, stop,
    total)` with shape[row_dim] == stop - start, the draw is made for `total` rows and rows [start, stop) of it
    are returned (O(total) random numbers: cheap next to the model's products, which stay sharded)."""
    shard = _ROW_SHARD.get()
    if shard is None or shape[row_dim] != shard[1] - shard[0]:
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)
    start, stop, total = shard
    full = list(shape)
    full[row_dim] = total
    return torch.randn(full, generator=generator, dtype=dtype, device=device).narrow(row_dim, start, stop - start)


__all__ = ["BASE_RATE_SMOOTHING", "NEGLIGIBLE_WEIGHT", "TANH_BENCH_SHAPE", "base_rate_logits", "column_means",
           "elementwise_record", "fast_softplus_row_sums_", "folded_tanh_in_use", "log_mean_exp", "logit",
           "negligible_to_zero_", "negligible_weight", "randn_rows", "row_shard", "sample_bernoulli",
           "sigmoid_and_softplus_row_sums_", "sigmoid_tanh", "sigmoid_tanh_in_use", "softplus_row_sums",
           "softplus_row_sums_", "tanh", "tanh_", "tanh_timings", "uniform_"]
