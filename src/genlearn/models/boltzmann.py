"""Fully visible Boltzmann machine (a pairwise Markov random field on binary units).

    P(x|b,W) = exp(-E(x)) / Z,   E(x) = -(b.x + 1/2 x.W.x),   Z = sum_{x in {0,1}^n} exp(-E(x)),

with W symmetric and zero on the diagonal (so 1/2 x.W.x = sum_{i<j} W_ij x_i x_j). Energies, log Z and
log P are in nats. With ``spins=True`` the same energy is written in spin variables s = 2x - 1 in {-1,+1}:
E(s) = -(h.s + 1/2 s.J.s); data, samples and log_prob are still 0/1 vectors x, only the parametrisation
changes. The change of variables between the two forms is exact (`spins_to_binary`, `binary_to_spins`):

    b = 2h - 2 J.1,  W = 4J,   and   E_spin(x) = E_binary(x) + E_spin(0).

Exact computations enumerate {0,1}^n in chunks (float64, log-sum-exp) up to n = 24; exact sampling is by
enumeration up to n = 20 and by Gibbs sampling beyond. The gradient of the empirical KL is a difference of
moments,

    dD_KL(Q^||P)/db_i  = <x_i>_P - <x_i>_Q^,    dD_KL(Q^||P)/dW_ij = <x_i x_j>_P - <x_i x_j>_Q^   (i < j);

`loss(x)` (the exact batch NLL, n <= 24) has exactly that gradient. The model is only the distribution: how
it learns (exact, CD-k, PCD, mean-field, TAP, pseudo-likelihood) is the "boltzmann-moments" learning rule
(genlearn.learning.rules, estimators in genlearn.learning.boltzmann_gradients).
"""
from __future__ import annotations

from dataclasses import dataclass

import functools
import math

import torch
from torch import Tensor

from genlearn.enumeration import (DEFAULT_CHUNK, MAX_ENUMERABLE, iter_states, log_sum_exp_over_states,
                                  states_from_codes)
from genlearn.errors import ConfigError, IntractableError
from genlearn.estimators.ais import boltzmann_gibbs_sweeps
from genlearn.estimators.estimate import Estimate
from genlearn.models.base import EnergyModel, as_float, check_positive_int, reject_learning_settings
from genlearn.models.registry import ModelSpec, lbfgs_to_convergence, register_model
from genlearn.options import option

#: exact log Z, log_prob, KL and exact gradients up to this many units (2^24 states)
MAX_EXACT_UNITS = MAX_ENUMERABLE
#: exact sampling by enumeration up to this many units (a table of 2^20 probabilities); Gibbs beyond
MAX_EXACT_SAMPLING_UNITS = 20
#: Gibbs sweeps used by `sample` when exact sampling is impossible and no `steps` are given
DEFAULT_GIBBS_STEPS = 1000
#: the gradient estimators of the "boltzmann-moments" learning rule (CLI `--gradient`)
GRADIENTS = ("exact", "gibbs", "pcd", "mean-field", "tap", "pseudo-likelihood")
#: constructor settings of earlier versions that now belong to the learning rule (dropped by `from_config`)
LEGACY_LEARNING_KEYS = ("gradient", "k", "n_chains", "mf_iterations")
#: buffers of earlier versions that now belong to the learning rule (dropped when a state dict is loaded)
LEGACY_BUFFERS = ("chains", "chains_ready", "mf_magnetization")
_CACHED_STATES_MAX = 16


# --------------------------------------------------------------------------------------------------------
# pure tensor kernels
# --------------------------------------------------------------------------------------------------------
def symmetric_zero_diagonal(a: Tensor) -> Tensor:
    """W = triu(A, 1) + triu(A, 1)^T: symmetric with zero diagonal; W_ij (i < j) is the parameter A_ij."""
    upper = torch.triu(a, diagonal=1)
    return upper + upper.T


def spins_to_binary(h: Tensor, J: Tensor) -> tuple[Tensor, Tensor]:
    """0/1 parameters of the spin model: b = 2h - 2 J.1, W = 4J (E differs by the constant E_spin(0))."""
    return 2 * h - 2 * J.sum(1), 4 * J


def binary_to_spins(b: Tensor, W: Tensor) -> tuple[Tensor, Tensor]:
    """Spin parameters of the 0/1 model: h = b/2 + W.1/4, J = W/4 (inverse of `spins_to_binary`)."""
    return b / 2 + W.sum(1) / 4, W / 4


def quadratic_energy(x: Tensor, bias: Tensor, weights: Tensor) -> Tensor:
    """E = -(bias.x + 1/2 x.weights.x) per row of x (weights symmetric, zero diagonal)."""
    return -(x @ bias + 0.5 * ((x @ weights) * x).sum(-1))


@functools.lru_cache(maxsize=8)
def _all_states64(n: int) -> Tensor:
    return states_from_codes(torch.arange(1 << n, dtype=torch.int64), n, torch.float64)


def state_chunks(n: int, chunk_size: int = DEFAULT_CHUNK, what: str = "exact enumeration"):
    """All 2^n states as float64 rows, in code order, `chunk_size` at a time (one cached chunk when n <= 16
    and the chunk can hold them all)."""
    if n <= _CACHED_STATES_MAX and chunk_size >= 1 << n:
        yield _all_states64(n)
    else:
        yield from iter_states(n, chunk_size, dtype=torch.float64, limit=MAX_EXACT_UNITS, what=what)


@torch.no_grad()
def exact_statistics(log_weight, n: int, chunk_size: int = DEFAULT_CHUNK) -> tuple[float, Tensor, Tensor]:
    """One chunked pass over {0,1}^n with P(x) = exp(log_weight(x)) / Z, float64:
    returns (log Z, <x> (n,), <x x^T> (n, n)). Chunks are merged with running log-sum-exp rescaling."""
    log_z = torch.tensor(-math.inf, dtype=torch.float64)
    m = torch.zeros(n, dtype=torch.float64)
    c = torch.zeros(n, n, dtype=torch.float64)
    for states in state_chunks(n, chunk_size, "an exact Boltzmann-machine computation"):
        lw = log_weight(states).double()
        lz = torch.logsumexp(lw, 0)
        p = torch.exp(lw - lz)
        new = torch.logaddexp(log_z, lz)
        old_w, chunk_w = torch.exp(log_z - new), torch.exp(lz - new)
        m = old_w * m + chunk_w * (p @ states)
        c = old_w * c + chunk_w * (states.T @ (p.unsqueeze(1) * states))
        log_z = new
    return float(log_z), m, c


@torch.no_grad()
def gibbs_sweeps(x: Tensor, b: Tensor, W: Tensor, sweeps: int, generator: torch.Generator | None = None,
                 beta: float = 1.0) -> Tensor:
    """`sweeps` sequential-scan Gibbs sweeps of every chain (row of x) under P_beta(x) ∝ exp(-beta E(x)),
    E(x) = -(b.x + 1/2 x.W.x): unit i is redrawn from P(x_i = 1 | x_-i) = sigmoid(beta (b_i + sum_j W_ij x_j))
    (the kernel of genlearn.estimators.ais, at one temperature). Returns a new tensor."""
    return boltzmann_gibbs_sweeps(x, b.to(x.dtype), W.to(x.dtype), torch.tensor(float(beta), dtype=x.dtype),
                                  sweeps, generator)


@torch.no_grad()
def mean_field_magnetizations(h: Tensor, J: Tensor, init: Tensor, iterations: int = 200, tap: bool = False,
                              damping: float = 0.5, tol: float = 1e-10) -> Tensor:
    """Damped fixed-point iteration of the spin mean-field equations, float64:
    naive  M_i = tanh(h_i + sum_j J_ij M_j);
    TAP    M_i = tanh(h_i + sum_j J_ij M_j - M_i sum_j J_ij^2 (1 - M_j^2))  (Onsager reaction term);
    M <- damping M + (1 - damping) tanh(field), stopping when max |tanh(field) - M| < tol. Strong couplings can
    lock the parallel update in a cycle (M flipping sign every iteration); when it has not converged after
    `iterations`, sequential sweeps follow (`sequential_mean_field`: one unit at a time, which for the naive
    equations is coordinate ascent of the mean-field bound and converges)."""
    mag = init.clone().double()
    J2 = J * J
    change = math.inf
    for _ in range(iterations):
        field = h + J @ mag
        if tap:
            field = field - mag * (J2 @ (1 - mag * mag))
        new = torch.tanh(field)
        change = float((new - mag).abs().max()) if mag.numel() else 0.0
        mag = damping * mag + (1 - damping) * new
        if change < tol:
            return mag
    return sequential_mean_field(h, J, mag, iterations, tap, tol) if mag.numel() else mag


#: random starts of the mean-field bound's ascent (BoltzmannMachine.mean_field_log_partition), beside two fixed ones
MF_RESTARTS = 8


def sequential_mean_field(h: Tensor, J: Tensor, init: Tensor, sweeps: int = 1000, tap: bool = False,
                          tol: float = 1e-10) -> Tensor:
    """Sequential (Gauss-Seidel) sweeps of the spin mean-field equations, float64: for i = 1..n in turn,
    M_i <- tanh(h_i + sum_j J_ij M_j [- M_i sum_j J_ij^2 (1 - M_j^2) with TAP]), stopping when no unit moved
    by tol in a sweep. For the naive equations each update maximises the mean-field bound over M_i with the
    others fixed (J has a zero diagonal), so the bound never decreases and the sweeps reach a fixed point."""
    hn, Jn = h.detach().double().cpu().numpy(), J.detach().double().cpu().numpy()
    m = init.detach().double().cpu().numpy().copy()
    J2 = Jn * Jn if tap else None
    for _ in range(sweeps):
        change = 0.0
        for i in range(m.shape[0]):
            field = hn[i] + Jn[i] @ m
            if tap:
                field -= m[i] * (J2[i] @ (1.0 - m * m))
            new = math.tanh(field)
            change = max(change, abs(new - m[i]))
            m[i] = new
        if change < tol:
            break
    return torch.from_numpy(m).to(init.device)


@torch.no_grad()
def sample_by_enumeration(log_weight, n: int, count: int, generator: torch.Generator | None = None) -> Tensor:
    """`count` exact draws from P(x) ∝ exp(log_weight(x)) over {0,1}^n by inverting the float64 CDF."""
    lw = torch.cat([log_weight(s).double() for s in state_chunks(n, what="exact sampling")])
    cdf = torch.cumsum(torch.softmax(lw, 0), 0)
    u = torch.rand(count, generator=generator, dtype=torch.float64) * cdf[-1]
    codes = torch.searchsorted(cdf, u, right=True).clamp_max(cdf.numel() - 1)
    return states_from_codes(codes, n, torch.float32)


# --------------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------------
class BoltzmannMachine(EnergyModel):
    """Fully visible Boltzmann machine on n binary units (see the module docstring for the formulas).

    Parameters: `bias` (b, or h with spins) and `coupling_param` A, an unconstrained n x n matrix whose strict
    upper triangle holds the couplings: W = triu(A, 1) + triu(A, 1)^T (the lower triangle and diagonal of A
    are unused). Both start at 0 (the uniform distribution). The learning settings of earlier versions
    (gradient, k, n_chains, mf_iterations) are those of the "boltzmann-moments" learning rule now:
    exact | gibbs (CD-k from the data) | pcd (k sweeps of `n_chains` persistent chains) | mean-field (naive
    mean field + linear response; biased unless couplings are weak) | tap (TAP/Onsager-corrected mean field +
    linear response; more accurate for weak couplings, but learning diverges for strong ones, e.g. an SK teacher
    at inverse temperature 0.5-1) | pseudo-likelihood (maximises sum_i log P(x_i|x_-i) instead of the
    likelihood: a different, consistent objective)."""

    name = "boltzmann"
    support = "binary"
    #: `loss` is the exact batch NLL with its exact gradient (n <= MAX_EXACT_UNITS): maximum likelihood by L-BFGS
    exact_loss = True
    #: reverse AIS starts from training rows given as `data` (the model stores none): genlearn.evaluation passes
    #: the training split, without which the reverse chains start uniform and need not be model samples
    ais_reverse_from_data = True

    def __init__(self, n_features: int, spins: bool = False, **legacy):
        super().__init__()
        reject_learning_settings("BoltzmannMachine", legacy, LEGACY_LEARNING_KEYS,
                                 "make_rule('boltzmann-moments', {'estimator': ..., 'k': ..., 'n_chains': ...})")
        self.n_features = check_positive_int(n_features, "n_features")
        if not isinstance(spins, bool):
            raise ConfigError(f"spins must be true or false, got {spins!r}")
        self.spins = spins
        n = self.n_features
        self.bias = torch.nn.Parameter(torch.zeros(n))
        self.coupling_param = torch.nn.Parameter(torch.zeros(n, n))
        self._exact_cache = None

    @classmethod
    def from_config(cls, config: dict) -> "BoltzmannMachine":
        """Rebuild from `config()`; configs of earlier versions carry learning settings, which are dropped."""
        return cls(**{k: v for k, v in config.items() if k not in LEGACY_LEARNING_KEYS})

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in LEGACY_BUFFERS:  # learning state of earlier versions: the learning rule's now
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- parameters ------------------------------------------------------------------------------------
    @property
    def tractable(self) -> bool:  # the trainer then monitors the exact NLL and KL every epoch
        return self.n_features <= MAX_EXACT_UNITS

    @property
    def weights(self) -> Tensor:
        """The symmetric, zero-diagonal coupling matrix (W, or J with spins)."""
        return symmetric_zero_diagonal(self.coupling_param)

    def binary_params(self) -> tuple[Tensor, Tensor]:
        """(b, W) of the 0/1 form E(x) = -(b.x + 1/2 x.W.x) + const, differentiable."""
        if self.spins:
            return spins_to_binary(self.bias, self.weights)
        return self.bias, self.weights

    def spin_params(self) -> tuple[Tensor, Tensor]:
        """(h, J) of the spin form E(s) = -(h.s + 1/2 s.J.s) + const, differentiable."""
        if self.spins:
            return self.bias, self.weights
        return binary_to_spins(self.bias, self.weights)

    @torch.no_grad()
    def set_parameters(self, bias, weights) -> "BoltzmannMachine":
        """Set b (or h) and the symmetric W (or J) in the model's own parametrisation."""
        bias = torch.as_tensor(bias, dtype=self.bias.dtype).reshape(-1)
        weights = torch.as_tensor(weights, dtype=self.bias.dtype)
        n = self.n_features
        if bias.shape != (n,) or weights.shape != (n, n):
            raise ConfigError(f"a Boltzmann machine with {n} units needs a bias of shape ({n},) and ({n}, {n}) weights")
        if not torch.allclose(weights, weights.T) or bool(torch.diagonal(weights).abs().max() > 0):
            raise ConfigError("Boltzmann-machine weights must be symmetric with a zero diagonal")
        self.bias.copy_(bias)
        self.coupling_param.copy_(torch.triu(weights, 1))
        return self

    # -- energies and the partition function -----------------------------------------------------------
    def _energy_with(self, x: Tensor, bias: Tensor, weights: Tensor) -> Tensor:
        x = as_float(x).to(bias.dtype)
        if self.spins:
            x = 2 * x - 1
        return quadratic_energy(x, bias, weights)

    def energy(self, x: Tensor) -> Tensor:
        """E(x) in nats per row of the 0/1 data x (in spin variables s = 2x - 1 when spins=True)."""
        return self._energy_with(x, self.bias, self.weights)

    def free_energy(self, x: Tensor) -> Tensor:
        """For a fully visible model the free energy is the energy."""
        return self.energy(x)

    def mean_energy(self, m: Tensor, c: Tensor) -> Tensor:
        """<E> under any distribution of 0/1 vectors with moments m = <x>, C = <x x^T>, in float64 and
        differentiable in the parameters (E is linear in x and x x^T; with spins <s> = 2m - 1 and
        <s_i s_j> = 4C_ij - 2m_i - 2m_j + 1)."""
        bias, weights = self.bias.double(), self.weights.double()
        m, c = m.double(), c.double()
        if self.spins:
            c = 4 * c - 2 * m.unsqueeze(0) - 2 * m.unsqueeze(1) + 1
            m = 2 * m - 1
        return -(bias @ m + 0.5 * (weights * c).sum())

    def _log_weight64(self):
        bias, weights = self.bias.detach().double(), self.weights.detach().double()
        return lambda states: -self._energy_with(states, bias, weights)

    def exact_statistics(self) -> tuple[float, Tensor, Tensor]:
        """(log Z, <x>, <x x^T>) of the model by enumeration, float64; cached while the parameters are unchanged."""
        if self.n_features > MAX_EXACT_UNITS:
            raise IntractableError(
                f"exact log Z of a Boltzmann machine with {self.n_features} units needs 2^{self.n_features} states "
                f"(limit n <= {MAX_EXACT_UNITS}); only estimates are available: use log_partition(method='ais') "
                "(genlearn eval --partition ais) or the mean-field lower bound"
            )
        return self._exact(moments=True)

    def _exact(self, moments: bool) -> tuple:
        """(log Z, <x>, <x x^T>), or (log Z, None, None) when moments are not needed (a cheaper pass)."""
        if self.n_features > MAX_EXACT_UNITS:
            self.exact_statistics()  # raises the IntractableError
        cache = self._exact_cache
        b, a = self.bias.detach(), self.coupling_param.detach()
        if (cache is not None and cache[0].dtype == b.dtype and torch.equal(cache[0], b)
                and torch.equal(cache[1], a) and (cache[2][1] is not None or not moments)):
            return cache[2]
        if moments:
            stats = exact_statistics(self._log_weight64(), self.n_features)
        else:
            stats = (log_sum_exp_over_states(self._log_weight64(), self.n_features, limit=MAX_EXACT_UNITS,
                                             what="exact log Z"), None, None)
        self._exact_cache = (b.clone(), a.clone(), stats)
        return stats

    def exact_moments(self) -> tuple[Tensor, Tensor]:
        """Exact <x> and <x x^T> (float64) by enumeration."""
        _, m, c = self.exact_statistics()
        return m, c

    def log_partition(self, method: str = "exact", steps: int | None = None, chains: int | None = None,
                      seed: int | None = 0, reverse: bool = True, data: Tensor | None = None, burn_in: int = 200,
                      **unused) -> Estimate:
        """log Z in nats as an Estimate, by the named computation (the choice between them, "auto", is the
        likelihood policy's: `genlearn.likelihood.log_partition(model)`).

        method: "exact" (enumeration of {0,1}^n, n <= 24, float64; cached for the current parameters), "ais"
        (annealed importance sampling from the uniform distribution along exp(-beta E), `steps` (default 1000)
        equal steps, `chains` (default 100) chains, `seed`; with `reverse`, as many reverse chains from `data`
        rows (uniform states when None) after `burn_in` Gibbs sweeps give the upper side of the bracket: see
        `genlearn.estimators.ais.boltzmann_ais_log_partition`), "mean-field" (the naive mean-field lower bound
        log Z >= max_m sum_i H(m_i) - <E>_m)."""
        if method == "exact":
            return Estimate.exact(self._exact(moments=False)[0], "exact enumeration")
        if method == "ais":
            from genlearn.estimators.ais import boltzmann_ais_log_partition

            with torch.no_grad():
                b, W = (t.detach() for t in self.binary_params())
                shift = float(self.energy(torch.zeros(1, self.n_features)).double())  # E_model = E_binary + shift
            rows = None if data is None else self.check_input(data)
            return boltzmann_ais_log_partition(b, W, steps=1000 if steps is None else steps,
                                               chains=100 if chains is None else chains,
                                               seed=0 if seed is None else int(seed), reverse=reverse,
                                               reverse_start=rows, burn_in=burn_in, log_z_offset=-shift)
        if method == "mean-field":
            return self.mean_field_log_partition()
        if method == "auto":
            raise ConfigError("BoltzmannMachine.log_partition computes log Z by a named method (exact, ais or "
                              "mean-field); the automatic choice is genlearn.likelihood.log_partition(model, 'auto')")
        raise ConfigError(f"unknown log Z method {method!r} for a Boltzmann machine; use exact, ais or mean-field")

    @torch.no_grad()
    def mean_field_log_partition(self) -> Estimate:
        """Naive mean-field (Gibbs variational) lower bound: log Z >= max_m sum_i H(m_i) - <E>_m, with
        <E>_m = -(b.m + 1/2 m.W.m) for a product distribution of means m (W has a zero diagonal)."""
        b, W = (t.detach().double() for t in self.binary_params())
        h, J = binary_to_spins(b, W)
        shift = float(self.energy(torch.zeros(1, self.n_features)).double())

        def bound(mag):  # any product distribution gives a lower bound: the best of the fixed points reached
            m = ((1 + mag) / 2).clamp(1e-300, 1 - 1e-16)
            entropy = -(m * torch.log(m) + (1 - m) * torch.log1p(-m)).sum()
            return float(entropy + b @ m + 0.5 * m @ W @ m) - shift

        zero = torch.zeros_like(h)
        g = torch.Generator().manual_seed(0)
        # the bound has local maxima when couplings are strong: sequential ascent from the uniform start, the
        # fields' signs and MF_RESTARTS random corners (seeded), after the parallel iteration's fixed point
        starts = [zero, torch.tanh(h)] + [0.99 * (2 * torch.randint(0, 2, h.shape, generator=g).double() - 1).to(h)
                                          for _ in range(MF_RESTARTS)]
        value = max([bound(mean_field_magnetizations(h, J, zero, iterations=1000, tap=False))]
                    + [bound(sequential_mean_field(h, J, start, sweeps=1000)) for start in starts])
        return Estimate(value, "mean-field lower bound", math.nan, value, math.inf,
                        {"restarts": len(starts) + 1})

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log P(x) = -E(x) - log Z in nats (n <= 24); differentiable (d log Z/dtheta = -<dE/dtheta>_P)."""
        out = -self.energy(x)
        if torch.is_grad_enabled() and self.bias.requires_grad:
            log_z, m, c = self.exact_statistics()
            e_model = self.mean_energy(m, c)  # d(-<E>)/dtheta with the model moments held fixed = d log Z/dtheta
            return out - (log_z + e_model.detach() - e_model).to(out.dtype)
        return out - self._exact(moments=False)[0]

    # -- sampling --------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, steps: int | None = None) -> Tensor:
        """n draws (float32 0/1 rows): exact by enumeration when n_features <= 20 and `steps` is None;
        otherwise `steps` (default 1000) Gibbs sweeps of n independent chains started uniformly at random."""
        n = check_positive_int(n, "number of samples")
        if steps is None and self.n_features <= MAX_EXACT_SAMPLING_UNITS:
            return sample_by_enumeration(self._log_weight64(), self.n_features, n, generator)
        steps = DEFAULT_GIBBS_STEPS if steps is None else check_positive_int(steps, "Gibbs steps")
        return self.gibbs(torch.bernoulli(torch.full((n, self.n_features), 0.5), generator=generator), steps, generator)

    @torch.no_grad()
    def gibbs(self, x: Tensor, sweeps: int, generator: torch.Generator | None = None) -> Tensor:
        """`sweeps` Gibbs sweeps of the chains x (rows, 0/1), float32."""
        b, W = (t.detach() for t in self.binary_params())
        return gibbs_sweeps(as_float(x).to(b.dtype), b, W, sweeps, generator)

    # -- learning --------------------------------------------------------------------------------------
    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The exact NLL of the batch, mean E(x) + log Z in nats (float64; n <= 24, IntractableError beyond), written
        through the moments as <E>_{m_data, C_data} + log Z so that its gradient is the exact KL gradient
        <dE/dtheta>_data - <dE/dtheta>_model with both moments accumulated in float64:
        loss = <E>_data - <E>_model + stop_gradient(<E>_model) + log Z, model moments (m, C) by enumeration."""
        if self.n_features > MAX_EXACT_UNITS:
            raise IntractableError(
                f"the exact gradient of a Boltzmann machine with {self.n_features} units needs 2^{self.n_features}"
                f" = {2.0 ** self.n_features:.3g} states; it is limited to n <= {MAX_EXACT_UNITS}. Use --gradient pcd "
                "or --gradient pseudo-likelihood (or mean-field) instead; log Z, NLL and KL will then only be "
                "available as estimates (AIS)")
        log_z, m, c = self.exact_statistics()
        xd = as_float(x).double()
        e_data = self.mean_energy(xd.mean(0), xd.T @ xd / xd.shape[0])
        e_model = self.mean_energy(m, c)
        return e_data - e_model + e_model.detach() + log_z

    def config(self) -> dict:
        return {"n_features": self.n_features, "spins": self.spins}

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, spins={self.spins}"


@dataclass(frozen=True)
class BoltzmannConfig:
    """Options of `genlearn fit boltzmann` (all but spins are the learning rule's)."""

    spins: bool = option(False, "parametrise the energy in spins s = 2x - 1 in {-1,+1}")
    gradient: str = option("exact", "how the model moments of the KL gradient are obtained: exact (enumeration, "
                           f"n <= {MAX_EXACT_UNITS}), gibbs (CD-k from the data), pcd (persistent chains), "
                           "mean-field, tap, pseudo-likelihood (a different objective)", choices=GRADIENTS)
    k: int = option(1, "Gibbs sweeps per gradient step for --gradient gibbs/pcd", minimum=1)
    n_chains: int = option(100, "persistent chains for --gradient pcd", minimum=1)
    mf_iterations: int = option(200, "damped mean-field fixed-point iterations per step (mean-field, tap)",
                                minimum=1)


def _build(dataset, config: BoltzmannConfig) -> BoltzmannMachine:
    return BoltzmannMachine(dataset.n_features, spins=config.spins)  # the other options are the rule's


def _converge(config: BoltzmannConfig) -> dict:
    """The exact gradient (a concave log-likelihood) and the pseudo-likelihood (a convex objective of its own) are
    fitted by L-BFGS to convergence (registry.LBFGS_TO_CONVERGENCE); the estimated gradients keep train_defaults."""
    return lbfgs_to_convergence() if config.gradient in ("exact", "pseudo-likelihood") else {}


def _rule(config: BoltzmannConfig) -> tuple[str, dict]:
    """The KL gradient <dE/dtheta>_data - <dE/dtheta>_model with the model moments from `gradient`."""
    return "boltzmann-moments", {"estimator": config.gradient, "k": config.k, "n_chains": config.n_chains,
                                 "mf_iterations": config.mf_iterations}


register_model(ModelSpec(
    "boltzmann", BoltzmannMachine,
    f"fully visible Boltzmann machine exp(b.x + 1/2 x.W.x)/Z, exact up to {MAX_EXACT_UNITS} units",
    ("binary",), _build, BoltzmannConfig, _rule, train_defaults={"optimizer": "adam", "lr": 0.05},
    converge=_converge,
))


__all__ = ["BoltzmannMachine", "GRADIENTS", "binary_to_spins", "exact_statistics", "gibbs_sweeps",
           "mean_field_magnetizations", "sequential_mean_field", "spins_to_binary"]
