"""The small interface every model family implements (see DESIGN.md).

A model is a torch.nn.Module with
    log_prob(x)  -> log P(x|theta) per example, in nats (exact; IntractableError if it cannot be)
    sample(n)    -> n draws from P(X|theta)
    loss(x)      -> a scalar whose gradient is (an estimate of) dD_KL(Q^||P_theta)/dtheta on the batch x.
For models with an exact likelihood loss(x) = -mean log P(x|theta) = D_KL(Q^||P_theta) + H(Q^) on the batch.
"""
from __future__ import annotations

import contextlib
import functools
import math
import operator

import torch
from torch import Tensor

from genlearn.enumeration import require_enumerable  # noqa: F401  (re-exported for the families)
from genlearn.errors import ConfigError, DataError
from genlearn.numerics import column_means, logit  # noqa: F401  (re-exported for the families)
from genlearn.precision import MATMUL_PRECISIONS, check_matmul_precision  # noqa: F401  (re-exported)
from genlearn.validate import check_binary, check_categorical, check_real


class GenerativeModel(torch.nn.Module):
    """Base class. Subclasses set `name`, `support` ("binary", "categorical" or "real"), implement
    `log_prob`, `sample`, `config()` (constructor keyword arguments, JSON-able) and may override `loss`."""

    name: str = "model"
    support: str = "binary"
    #: True when log_prob is exact and cheap enough to monitor every epoch.
    tractable: bool = True

    n_features: int

    def __init_subclass__(cls, **kwargs):
        """Each family's own `log_prob` and `sample` are wrapped here, once, with the cheap checks of their arguments
        (no pass over the data's values: log_prob runs in training loops): `check_log_prob_shape` (the width of x)
        and `check_sample_count` (n). One clear error instead of a raw torch error or silently reshaped numbers."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if "log_prob" in own and not getattr(own["log_prob"], "_genlearn_checked", False):
            cls.log_prob = _shape_checked_log_prob(own["log_prob"])
        if "sample" in own and not getattr(own["sample"], "_genlearn_checked", False):
            cls.sample = _count_checked_sample(own["sample"])

    # -- the interface -------------------------------------------------------------------------------
    def log_prob(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Mean negative log-likelihood of the batch, nats per example: its gradient is dD_KL/dtheta."""
        return -self.log_prob(x).mean()

    def config(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> "GenerativeModel":
        """The model with the constructor arguments `config()` returned (families adapt older configs here)."""
        return cls(**config)

    # -- helpers shared by all families -------------------------------------------------------------
    @property
    def n_states(self) -> int | None:
        """Size of the discrete state space, or None for continuous models."""
        if self.support == "binary":
            return 2 ** self.n_features
        if self.support == "categorical":
            return int(self.n_categories)
        return None

    def log_partition(self, **kwargs):
        """log Z of a normalised model is 0 exactly."""
        from genlearn.estimators import Estimate

        return Estimate.exact(0.0, "normalised")

    def fit_closed_form(self, x: Tensor) -> "GenerativeModel":  # pragma: no cover - optional
        raise ConfigError(f"model {self.name!r} has no closed-form maximum-likelihood estimate")

    # -- ensembles (declared here so the trainer and evaluation need no discovery) -------------------------
    @property
    def ensemble_size(self) -> int:
        """K, the number of members of an ensemble model (MADE masks, NADE orderings) whose log_prob is
        log (1/K) sum_k P_k(x); 1 for every other model."""
        return 1

    #: the member the trainer monitors when it monitors one member of an ensemble (0 for a single model)
    monitor_member: int = 0

    def member_log_prob(self, x: Tensor, k: int) -> Tensor:
        """log P_k(x) of ensemble member k, nats per example; for a single model (K = 1) member 0 is the model."""
        if k != 0:
            raise ConfigError(f"model {self.name!r} is not an ensemble: it has member 0 only, not {k!r}")
        return self.log_prob(x)

    def check_input(self, x: Tensor) -> Tensor:
        """Validate the shape (and, for binary models, the values) of x at the model boundary."""
        if self.support == "binary":
            return check_binary(x, self.n_features)
        if self.support == "categorical":
            return check_categorical(x, self.n_categories)
        return check_real(x, self.n_features)


def check_sample_count(n) -> int:
    """n of `sample(n)` as an int >= 1 (any integer type: int, numpy or 0-d torch integers); ConfigError otherwise."""
    if not isinstance(n, bool):
        try:
            value = operator.index(n)
        except TypeError:
            value = None
        if value is not None and value >= 1:
            return value
    raise ConfigError(f"n must be a positive integer (the number of samples to draw), got {n!r}")


def check_log_prob_shape(model: GenerativeModel, x) -> None:
    """DataError unless x has the width of the model's examples: x.shape[-1] == n_features (a 1-D x of a
    1-feature model is M scalar examples, else one example), or 1-D outcomes (M,) / (M, 1) for a categorical
    model. Shape only, no values; x without a shape (a list) is left to the family. (The wrapped log_prob then
    gives one value per example: (...,) for x of shape (..., n), a scalar for one example.)"""
    shape = getattr(x, "shape", None)
    if shape is None:
        return
    shape = tuple(shape)
    if model.support == "categorical":
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise DataError(f"x for the categorical model {model.name!r} must be integer outcomes of shape (M,) or "
                            f"(M, 1), got shape {shape}")
        return
    n = model.n_features
    width = shape[-1] if len(shape) > 1 or (shape and n != 1) else 1
    if width != n:
        raise DataError(f"x has {width} columns but the {model.name!r} model has {n} features (x has shape {shape}); "
                        f"pass data of shape (M, {n}), like the data the model was built for")


def _shape_checked_log_prob(fn):
    @functools.wraps(fn)
    def log_prob(self, x, *args, **kwargs):
        check_log_prob_shape(self, x)
        if self.support == "categorical" or getattr(x, "shape", None) is None:
            return fn(self, x, *args, **kwargs)
        if not isinstance(x, Tensor):  # a numpy array: every family sees a tensor
            x = torch.as_tensor(x)
        if x.dim() == 2:
            return fn(self, x, *args, **kwargs)
        # one example (n,) -> a scalar; M scalar examples (M,) of a 1-feature model -> (M,); a batch of any
        # leading shape (..., n) -> (...): the family's own log_prob sees rows (M, n), as in training
        lead = x.shape[:-1] if x.dim() > 1 or self.n_features != 1 else x.shape
        return fn(self, x.reshape(-1, self.n_features), *args, **kwargs).reshape(lead)

    log_prob._genlearn_checked = True
    return log_prob


def _check_sample_memory(model, n: int) -> None:
    """Refuse, before torch allocates, n samples that cannot fit in memory: the float32 rows twice (the draws and
    their probabilities) and one activation per row and unit of the model's widest parameter dimension."""
    from genlearn.validate import check_memory

    width = max((int(d) for p in model.parameters() for d in p.shape), default=0)
    features = int(getattr(model, "n_features", 1) or 1)
    nbytes = float(n) * (2 * features + width) * 4
    if nbytes > SAMPLE_MEMORY_FREE:  # below it, no reading of the machine's memory (~50 us a call)
        check_memory(nbytes, f"{n:,} samples of {features} features", "draw fewer at a time")


#: sample() calls needing less than this many bytes skip the memory check
SAMPLE_MEMORY_FREE = 256 * 2**20


def _count_checked_sample(fn):
    @functools.wraps(fn)
    def sample(self, n, *args, **kwargs):
        n = check_sample_count(n)
        _check_sample_memory(self, n)
        x = fn(self, n, *args, **kwargs)
        # in the model's float dtype, as its log_prob (a model made .double() samples float64 rows)
        p = next((p for p in self.parameters() if p.is_floating_point()), None)
        if p is not None and isinstance(x, Tensor) and x.is_floating_point() and x.dtype != p.dtype:
            x = x.to(p.dtype)
        return x

    sample._genlearn_checked = True
    return sample


class EnergyModel(GenerativeModel):
    """P(x) = exp(-E(x)) / Z. Subclasses implement `free_energy` and `log_partition`."""

    tractable = False

    def free_energy(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_partition(self, method: str = "exact", **options):  # pragma: no cover - abstract
        """log Z in nats as an Estimate, by the named computation ("exact", "ais", ...); which one to use is
        decided by the likelihood policy, `genlearn.likelihood.log_partition(model, "auto")`."""
        raise NotImplementedError

    def exact_partition_size(self) -> tuple[int, int]:
        """(u, n): an exact log Z sums the 2^u states of u enumerated units, each costing about n operations
        (the likelihood policy's cost n 2^u). Default: every unit is enumerated, u = n = n_features; an RBM
        enumerates its smaller layer and sums the larger one in closed form."""
        return self.n_features, self.n_features

    def log_prob(self, x: Tensor) -> Tensor:
        log_z = self.log_partition(method="exact").value
        return -self.free_energy(x) - log_z


class LatentVariableModel(GenerativeModel):
    """P(x|theta) = integral p(z|theta) P(x|z,theta) dz over a continuous latent z in R^D, with an encoder
    q(z|x) (the proposal of importance sampling and the variational posterior of the ELBO).

    log P(x) has no closed form, so `log_prob` raises IntractableError: the likelihood policy
    (genlearn.likelihood) estimates it, by importance sampling with q as proposal or by AIS over z, and says how.
    Subclasses implement, with z of shape (..., D) and x of shape (B, n) broadcast against z's leading dims:

        sample_prior(n, generator) -> z (n, D)        log_prior(z) -> log p(z)  (...)
        log_likelihood(x, z) -> log P(x|z)  (...)     decoder_logits(z) -> (..., n)  (binary pixels)
        sample_posterior(x, k, generator) -> (z (k, B, D) reparameterised, log q(z|x) (k, B))
        posterior_mean(x) -> E_q[z|x] (B, D)

    `log_weights` gives the importance log-weights log w = log P(x|z) + log p(z) - log q(z|x), z ~ q(z|x), whose
    mean is the ELBO and whose log-mean-exp over k samples is the IWAE bound, both <= log P(x) (nats)."""

    tractable = False
    latent_dim: int
    #: False for a model without an encoder (a GAN's generator): no importance sampling with q(z|x); its
    #: likelihood comes from quadrature over z (latent_dim <= 2) or AIS over z (genlearn.likelihood.choose_method)
    has_encoder: bool = True

    def log_prob(self, x: Tensor) -> Tensor:
        from genlearn.errors import IntractableError

        raise IntractableError(
            f"model {self.name!r} is a latent-variable model: log P(x) = log integral p(z) P(x|z) dz has no closed "
            "form; estimate it with genlearn.likelihood.log_likelihoods(model, x) (importance sampling) or "
            "genlearn.likelihood.nll(model, x, method='ais')")

    @contextlib.contextmanager
    def frozen(self):
        """A context in which no parameter is tracked by autograd (requires_grad False, restored on exit): AIS over z
        differentiates log p(z) + beta log P(x|z) in z only, and tracked parameters would make every backward also
        compute their gradients. Families may also cache what depends on the parameters alone (the VampPrior's
        components)."""
        tracked = [p for p in self.parameters() if p.requires_grad]
        for p in tracked:
            p.requires_grad_(False)
        try:
            yield self
        finally:
            for p in tracked:
                p.requires_grad_(True)

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log P(x, z) = log P(x|z) + log p(z), nats, shape z.shape[:-1]."""
        return self.log_likelihood(x, z) + self.log_prior(z)

    def training_precision(self):
        """The context a learning rule computes the model's training bound in (e.g. bfloat16 autocast); none by
        default."""
        return contextlib.nullcontext()

    def elbo(self, x: Tensor, generator: torch.Generator | None = None, kl_weight: float = 1.0) -> Tensor:
        """ELBO(x) = E_q[log P(x|z) + kl_weight (log p(z) - log q(z|x))] per row, estimated with one reparameterised
        sample (nats; families may compute the KL term in closed form)."""
        return self.log_weights(x, 1, generator, kl_weight)[0]

    def bound_gradient(self, x: Tensor, k: int, generator: torch.Generator | None = None, kl_weight: float = 1.0,
                       closed_form_kl: bool = True) -> Tensor | None:
        """Accumulate d/dtheta of -mean_m L_k(x_m) (the ELBO for k = 1, with the family's closed-form KL when
        closed_form_kl) into p.grad without autograd and return that loss (nats per example), or None where the
        family has no such pass for this model: the learning rule then differentiates `elbo` / `log_weights`."""
        return None

    def log_weights(self, x: Tensor, k: int, generator: torch.Generator | None = None,
                    kl_weight: float = 1.0) -> Tensor:
        """(k, B) importance log-weights log P(x|z) + kl_weight (log p(z) - log q(z|x)), z ~ q(z|x)
        reparameterised (differentiable in theta); kl_weight < 1 is KL warm-up (1 = the true weights)."""
        z, log_q = self.sample_posterior(x, k, generator)
        return self.log_likelihood(x, z) + kl_weight * (self.log_prior(z) - log_q)


#: precision of a model's training matrix products: "auto" (bfloat16 only where this machine runs it faster,
#: resolved at run time by genlearn.precision), "full" (the parameters' dtype) or "bfloat16" (mixed: bfloat16
#: operands, float32 accumulation and outputs): MATMUL_PRECISIONS and check_matmul_precision, imported above


def check_positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def parse_sizes(value, flag: str, limit: int, counts: tuple[int, ...] | None = None) -> list[int]:
    """Layer sizes from an int, a list of ints or a string "200" / "200,200"; each in 1..limit; `counts`: the
    numbers of sizes allowed (None: any). One ConfigError naming `flag` otherwise."""
    if isinstance(value, str):
        try:
            value = [int(v) for v in value.replace(" ", "").split(",") if v != ""]
        except ValueError:
            raise ConfigError(f"{flag} must be sizes such as 50 or 40,40, got {value!r}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{flag} must name at least one size, got {value!r}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= limit:
            raise ConfigError(f"{flag}: every size must be an integer between 1 and {limit}, got {list(value)!r}")
    if counts is not None and len(value) not in counts:
        raise ConfigError(f"{flag} takes {' or '.join(map(str, counts))} sizes, got {list(value)!r}")
    return [int(v) for v in value]


def check_probability_vector(p, what: str) -> Tensor:
    p = torch.as_tensor(p, dtype=torch.float64)
    if p.ndim != 1 or p.numel() < 1:
        raise ConfigError(f"{what} must be a non-empty 1-D list of probabilities")
    if not torch.isfinite(p).all() or (p < 0).any():
        raise ConfigError(f"{what} must hold finite non-negative numbers, got {p.tolist()}")
    if not math.isclose(float(p.sum()), 1.0, abs_tol=1e-6):
        raise ConfigError(f"{what} must sum to 1, got sum {float(p.sum()):.6g}")
    return p


def check_parameter_vector(value, n: int, what: str, low: float | None = None, high: float | None = None,
                           low_open: bool = False) -> Tensor:
    """An explicit parameter value given to a constructor (a Gaussian's mean or std, Bernoulli probabilities) as a
    float32 vector of n entries, each finite and within [low, high] (low excluded with low_open); ConfigError naming
    the parameter and the first bad entry otherwise. Values on the meta device (no values) are not checked."""
    try:
        t = torch.as_tensor(value.detach() if isinstance(value, Tensor) else value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"{what} must be {n} number(s), one per feature, got {value!r}"[:300]) from None
    if t.numel() != n:
        raise ConfigError(f"{what} must be {n} number(s), one per feature, got {t.numel()} (shape {tuple(t.shape)})")
    t = t.reshape(n)
    if t.is_meta:
        return t
    bad = ~torch.isfinite(t)
    if low is not None:
        bad |= (t <= low) if low_open else (t < low)
    if high is not None:
        bad |= t > high
    if bad.any():
        i = int(torch.nonzero(bad)[0])
        if low is None and high is None:
            need = "finite numbers"
        elif high is None:
            need = f"finite numbers {'>' if low_open else '>='} {low:g}"
        else:
            need = f"numbers in [{low:g}, {high:g}]"
        where = what if n == 1 else f"{what}[{i}]"
        raise ConfigError(f"{where} is {t[i].item()}; {what} must hold {need}")
    return t


def reject_learning_settings(cls_name: str, got: dict, learning_keys: tuple, use: str) -> None:
    """Constructor keywords of earlier versions that are settings of the learning rule now: one ConfigError that
    says where they went (configs saved by earlier versions are read by `from_config`, which drops them)."""
    if not got:
        return
    moved = sorted(k for k in got if k in learning_keys)
    unknown = sorted(k for k in got if k not in learning_keys)
    if unknown:
        raise TypeError(f"{cls_name}() got unexpected keyword argument(s) {', '.join(unknown)}")
    raise ConfigError(f"{', '.join(moved)} {'is a setting' if len(moved) == 1 else 'are settings'} of the learning "
                      f"rule, not of the model: pass rule={use} to genlearn.fit or Trainer "
                      "(genlearn.learning.rules.make_rule)")


def reject_unknown(kind: str, got: dict) -> None:
    if got:
        raise ConfigError(f"unknown setting(s) for {kind}: {', '.join(sorted(got))}")


def as_float(x: Tensor) -> Tensor:
    if not isinstance(x, Tensor):
        x = torch.as_tensor(x)
    if not torch.is_floating_point(x):
        x = x.to(torch.float32)
    return x


__all__ = ["GenerativeModel", "EnergyModel", "LatentVariableModel", "DataError", "require_enumerable"]
