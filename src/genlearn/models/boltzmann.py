"""Fully visible Boltzmann machine (a pairwise Markov random field on binary units).

    P(x|b,W) = exp(-E(x)) / Z,   E(x) = -(b.x + 1/2 x.W.x),   Z = sum_{x in {0,1}^n} exp(-E(x)),

with W symmetric and zero on the diagonal (so 1/2 x.W.x = sum_{i<j} W_ij x_i x_j). Energies, log Z and
log P are in nats. With ``spins=True`` the same energy is written in spin variables s = 2x - 1 in {-1,+1}:
E(s) = -(h.s + 1/2 s.J.s); data, samples and log_prob are still 0/1 vectors x, only the parametrisation
changes. The change of variables between the two forms is exact (`spins_to_binary`, `binary_to_spins`):

    b = 2h - 2 J.1,  W = 4J,   and   E_spin(x) = E_binary(x) + E_spin(0).

Exact computations enumerate {0,1}^n in chunks (float64, log-sum-exp) up to n = 24; exact sampling is by
enumeration up to n = 20 and by Gibbs sampling beyond. The learning rule (`loss`) is the gradient of the
empirical KL, a difference of moments,

    dD_KL(Q^||P)/db_i  = <x_i>_P - <x_i>_Q^,    dD_KL(Q^||P)/dW_ij = <x_i x_j>_P - <x_i x_j>_Q^   (i < j),

with the model moments from the estimator chosen by ``gradient`` (see genlearn.learning.boltzmann_gradients).
"""
from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from genlearn.enumeration import (DEFAULT_CHUNK, MAX_ENUMERABLE, iter_states, log_sum_exp_over_states,
                                  states_from_codes)
from genlearn.errors import ConfigError, IntractableError
from genlearn.estimators.estimate import Estimate
from genlearn.models.base import EnergyModel, as_float, check_positive_int
from genlearn.models.registry import ModelSpec, Option, register_model

#: exact log Z, log_prob, KL and exact gradients up to this many units (2^24 states)
MAX_EXACT_UNITS = MAX_ENUMERABLE
#: exact sampling by enumeration up to this many units (a table of 2^20 probabilities); Gibbs beyond
MAX_EXACT_SAMPLING_UNITS = 20
#: Gibbs sweeps used by `sample` when exact sampling is impossible and no `steps` are given
DEFAULT_GIBBS_STEPS = 1000
#: the gradient estimators (CLI `--gradient`)
GRADIENTS = ("exact", "gibbs", "pcd", "mean-field", "tap", "pseudo-likelihood")
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
    E(x) = -(b.x + 1/2 x.W.x): unit i is redrawn from P(x_i = 1 | x_-i) = sigmoid(beta (b_i + sum_j W_ij x_j)).
    All chains are updated at once; returns a new tensor."""
    x = x.clone()
    b, W = b.to(x.dtype), W.to(x.dtype)
    n = x.shape[1]
    for _ in range(sweeps):
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype)
        for i in range(n):
            field = b[i] + x @ W[:, i]
            x[:, i] = (u[:, i] < torch.sigmoid(beta * field)).to(x.dtype)
    return x


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
    are unused). Both start at 0 (the uniform distribution).

    gradient: exact | gibbs (CD-k from the data) | pcd (k sweeps of `n_chains` persistent chains) |
    mean-field (naive mean field + linear response; biased unless couplings are weak) | tap (TAP/Onsager-
    corrected mean field + linear response; more accurate for weak couplings, but learning diverges for strong
    ones, e.g. an SK teacher at inverse temperature 0.5-1) | pseudo-likelihood (maximises
    sum_i log P(x_i|x_-i) instead of the likelihood: a different, consistent objective).
    `mf_iterations` bounds the damped mean-field fixed-point iterations per step."""

    name = "boltzmann"
    support = "binary"

    def __init__(self, n_features: int, spins: bool = False, gradient: str = "exact", k: int = 1,
                 n_chains: int = 100, mf_iterations: int = 200):
        super().__init__()
        self.n_features = check_positive_int(n_features, "n_features")
        if not isinstance(spins, bool):
            raise ConfigError(f"spins must be true or false, got {spins!r}")
        if gradient not in GRADIENTS:
            raise ConfigError(f"unknown Boltzmann-machine gradient {gradient!r}; choose one of {', '.join(GRADIENTS)}")
        if gradient == "exact" and self.n_features > MAX_EXACT_UNITS:
            raise IntractableError(
                f"the exact gradient of a Boltzmann machine with {self.n_features} units needs 2^{self.n_features}"
                f" = {2.0 ** self.n_features:.3g} states; it is limited to n <= {MAX_EXACT_UNITS}. Use --gradient pcd "
                "or --gradient pseudo-likelihood (or mean-field) instead; log Z, NLL and KL will then only be "
                "available as estimates (AIS)"
            )
        self.spins = spins
        self.gradient = gradient
        self.k = check_positive_int(k, "k (Gibbs sweeps per gradient step)")
        self.n_chains = check_positive_int(n_chains, "n_chains (persistent chains)")
        self.mf_iterations = check_positive_int(mf_iterations, "mf_iterations")
        n = self.n_features
        self.bias = torch.nn.Parameter(torch.zeros(n))
        self.coupling_param = torch.nn.Parameter(torch.zeros(n, n))
        # persistent state (checkpointed with the parameters, so that --resume continues exactly)
        self.register_buffer("chains", torch.zeros(self.n_chains if gradient == "pcd" else 0, n))
        self.register_buffer("chains_ready", torch.zeros((), dtype=torch.bool))
        self.register_buffer("mf_magnetization", torch.zeros(n if gradient in ("mean-field", "tap") else 0))
        self._exact_cache = None
        from genlearn.learning.boltzmann_gradients import make_estimator

        self.estimator = make_estimator(self)

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

    def log_partition(self, method: str = "auto", steps: int | None = None, chains: int | None = None,
                      seed: int | None = 0, **unused) -> Estimate:
        """log Z in nats. method: exact (enumeration, n <= 24), auto (exact when n <= 24, else AIS),
        ais (annealed importance sampling from the uniform distribution, `steps` temperatures, `chains`
        chains), mean-field (the naive mean-field lower bound log Z >= sum_i H(m_i) - <E>_m)."""
        if method == "exact" or (method == "auto" and self.n_features <= MAX_EXACT_UNITS):
            return Estimate.exact(self._exact(moments=False)[0], "exact enumeration")
        if method in ("ais", "auto"):
            return self.ais_log_partition(steps or 1000, chains or 100, 0 if seed is None else seed)
        if method == "mean-field":
            return self.mean_field_log_partition()
        raise ConfigError(f"unknown log Z method {method!r} for a Boltzmann machine; "
                          "use exact, auto, ais or mean-field")

    @torch.no_grad()
    def ais_log_partition(self, steps: int = 1000, chains: int = 100, seed: int = 0) -> Estimate:
        """Annealed importance sampling along P_beta ∝ 2^-n exp(-beta E(x)), beta = 0 .. 1 in `steps` equal
        steps, one Gibbs sweep per temperature: log Z = n log 2 + log mean_c w_c, with
        log w_c = -sum_k (beta_k - beta_{k-1}) E(x_{k-1}); stderr by the delta method (nats)."""
        steps, chains = check_positive_int(steps, "AIS steps"), check_positive_int(chains, "AIS chains")
        g = torch.Generator().manual_seed(int(seed))
        b, W = (t.detach().double() for t in self.binary_params())
        x = torch.bernoulli(torch.full((chains, self.n_features), 0.5, dtype=torch.float64), generator=g)
        log_w = torch.zeros(chains, dtype=torch.float64)
        betas = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        for k in range(1, steps + 1):
            log_w -= (betas[k] - betas[k - 1]) * quadratic_energy(x, b, W)
            x = gibbs_sweeps(x, b, W, 1, g, beta=float(betas[k]))
        shift = float(self.energy(torch.zeros(1, self.n_features)).double())  # E_model(x) = E_binary(x) + shift
        lse = torch.logsumexp(log_w, 0)
        value = float(lse) - math.log(chains) + self.n_features * math.log(2) - shift
        w = torch.exp(log_w - lse)  # normalised weights, sum 1
        rel_var = float(((w * chains - 1) ** 2).mean()) / chains  # var(mean w)/mean(w)^2
        stderr = math.sqrt(rel_var)
        return Estimate(value, "ais", stderr, value - 3 * stderr, value + 3 * stderr,
                        {"steps": steps, "chains": chains, "seed": int(seed), "ess": float(1 / (w ** 2).sum())})

    @torch.no_grad()
    def mean_field_log_partition(self) -> Estimate:
        """Naive mean-field (Gibbs variational) lower bound: log Z >= max_m sum_i H(m_i) - <E>_m, with
        <E>_m = -(b.m + 1/2 m.W.m) for a product distribution of means m (W has a zero diagonal)."""
        from genlearn.learning.boltzmann_gradients import mean_field_magnetizations

        b, W = (t.detach().double() for t in self.binary_params())
        h, J = binary_to_spins(b, W)
        mag = mean_field_magnetizations(h, J, torch.zeros_like(h), iterations=1000, tap=False)
        m = ((1 + mag) / 2).clamp(1e-300, 1 - 1e-16)
        entropy = -(m * torch.log(m) + (1 - m) * torch.log1p(-m)).sum()
        shift = float(self.energy(torch.zeros(1, self.n_features)).double())
        bound = float(entropy + b @ m + 0.5 * m @ W @ m) - shift
        return Estimate(bound, "mean-field lower bound", math.nan, bound, math.inf)

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
        """A scalar whose gradient is the (estimated) KL gradient <dE/dtheta>_data - <dE/dtheta>_model; its
        value depends on the estimator (exact: the batch NLL; see genlearn.learning.boltzmann_gradients)."""
        return self.estimator.loss(self, x, generator)

    def describe_training(self) -> dict:
        return {"gradient_estimator": self.gradient, "objective": self.estimator.objective}

    def config(self) -> dict:
        return {"n_features": self.n_features, "spins": self.spins, "gradient": self.gradient, "k": self.k,
                "n_chains": self.n_chains, "mf_iterations": self.mf_iterations}

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, spins={self.spins}, gradient={self.gradient!r}"


def _build(dataset, options: dict) -> BoltzmannMachine:
    return BoltzmannMachine(dataset.n_features, spins=bool(options["spins"]), gradient=options["gradient"],
                            k=options["k"], n_chains=options["n_chains"])


register_model(ModelSpec(
    "boltzmann", BoltzmannMachine,
    "fully visible Boltzmann machine exp(b.x + 1/2 x.W.x)/Z, exact up to 24 units",
    ("binary",), _build,
    options={
        "gradient": Option(str, "exact", "how the model moments of the KL gradient are obtained: exact "
                           "(enumeration, n <= 24), gibbs (CD-k from the data), pcd (persistent chains), mean-field, "
                           "tap, pseudo-likelihood (a different objective)",
                           GRADIENTS),
        "k": Option(int, 1, "Gibbs sweeps per gradient step for --gradient gibbs/pcd"),
        "n_chains": Option(int, 100, "persistent chains for --gradient pcd"),
        "spins": Option(bool, False, "parametrise the energy in spins s = 2x - 1 in {-1,+1}"),
    },
    train_defaults={"optimizer": "adam", "lr": 0.05},
))

__all__ = ["BoltzmannMachine", "GRADIENTS", "binary_to_spins", "exact_statistics", "gibbs_sweeps",
           "spins_to_binary"]
