"""Adversarial learning of a Bernoulli generator P(x|theta) under an f-divergence (f-GAN, Nowozin et al. 2016), and
the exact maximum-likelihood reference of a small latent space (quadrature over z). All quantities in nats.

The f-divergence of the data distribution Q from the model P = P_theta, with the density ratio r(x) = Q(x)/P(x),

    D_f(Q||P) = sum_x P(x) f(r(x))  >=  sup_T  E_Q[T(x)] - E_P[f*(T(x))]                       (1)

(f convex, f(1) = 0, f* its convex conjugate; Fenchel's inequality, equality at T*(x) = f'(r(x))). A critic v(x)
(the model's `critic_value`, a real number per row) enters through an output activation T = g_f(v), chosen here so
that the optimal critic is the log density ratio for every divergence, v*(x) = log r(x):

    name        D_f(Q||P)                f(u)                              f*(t)                g_f(v)
    kl          sum Q log(Q/P)           u log u                           exp(t - 1)           1 + v
    reverse-kl  sum P log(P/Q)           -log u                            -1 - log(-t)         -exp(-v)
    js          (KL(Q||M) + KL(P||M))/2  (u log u - (1+u) log((1+u)/2))/2  -log(2 - e^(2t))/2   (log 2 - softplus(-v))/2
    hellinger   sum (sqrt Q - sqrt P)^2  (sqrt u - 1)^2                    t / (1 - t)          1 - exp(-v/2)

with M = (Q + P)/2 (so js <= log 2), and f*(g_f(v)) = exp(v), v - 1, (softplus(v) - log 2)/2, exp(v/2) - 1.

(Nowozin et al. table 2 uses other activations of the same conjugates; theirs have v*(x) = f'(r(x)) instead. The
js line is the original GAN: with D = sigmoid(v), (1) reads log 2 + (E_Q log D + E_P log(1 - D)) / 2.)

The rule "f-gan" alternates minibatches between the two players: of every critic_steps + 1 consecutive batches
(a step counter, checkpointed) the first critic_steps are critic steps and the last a generator step.

Critic step: B draws z ~ N(0, I) and M = samples_per_z Bernoulli rows x~ ~ P(x|z) of each (B M model rows, no
gradient into theta); the critic ascends (1) on the batch against them, i.e. descends

    -[mean_Q g_f(v) - mean_P f*(g_f(v))] + (lambda/2) [mean_Q v^2 + mean_P v^2]

(`critic_penalty` lambda: where P has no samples the bound alone lets v grow without limit, e.g. linearly for kl;
with the penalty v stays O(1/lambda)). Only the critic's parameters get a .grad. The penalty also shrinks v toward 0
everywhere (for kl the penalised optimum solves Q - P e^v = lambda (Q + P) v: v = -1.75 instead of -infinity where
Q = 0 at lambda = 0.1), and its cap e^(1/lambda) bounds the weight of an under-covered row: a large lambda flattens
the kl weights until the generator drops patterns (3x3 bars-and-stripes: 6-7 of 14 at lambda = 0.3, 12 at 0.1, all
14 in 4 of 5 seeds at 0.03 with 5 critic steps). A critic that lags the generator (few critic steps) lets the
generator squeeze a pattern out early in training; then it is never sampled again and, with the critic's estimate
as its only signal, never comes back.

Generator step: descends (1) in theta, whose theta-dependent part is -E_P[f*(T(x))]. Its exact gradient at the
optimal critic is that of D_f itself (envelope theorem):

    dD_f/dtheta = -E_P[ phi_f(r(x)) d log P(x|theta)/dtheta ],   phi_f(r) = f*(f'(r)) = r f'(r) - f(r)     (2)

with phi_f(r) = f*(g_f(log r)): r (kl: the importance weight, so (2) is -E_Q[d log P/dtheta], maximum likelihood),
log r - 1 (reverse-kl), (log((1 + r)/2))/2 (js), sqrt(r) - 1 (hellinger). The critic's estimate of r is
r^(x) = exp(v(x)); since sum_x P(x) r(x) = 1 for the true ratio, it is normalised over the model rows x_j of the
step to mean 1, v^ = v - log mean_j exp(v(x_j)) (a constant shift, no gradient), so that for kl the weights are
self-normalised importance weights as in the boundary-seeking GAN (Hjelm et al. 2018) and a critic that is off by
a constant does not rescale the step. (Hjelm et al. normalise over the M rows of each z instead; that drops the
between-z part of (2): a z that always draws the same over-produced pattern gets no gradient, and with the exact
critic on 3x3 bars-and-stripes it collapsed onto one pattern, where the normalisation over the step covers all 14.)
P(x|theta) is a mixture over z ~ N(0, I) and z does not depend on theta, so
E_P[h(x) d log P(x)/dtheta] = E_z E_{x|z}[h(x) d log P(x|z)/dtheta]. `estimator`:

- "score-function" (REINFORCE): for each of B draws z_b, M = samples_per_z rows x_bm ~ P(x|z_b), h_bm = phi_f(r^)
  at x_bm, and

      g^ = -(1/(B M)) sum_bm (h_bm - c_bm) d log P(x_bm|z_b)/dtheta,   log P(x|z) = sum_i x_i l_i - softplus(l_i),

  with the leave-one-out baseline c_bm = mean of h over the other M - 1 rows of the same z (over the other rows of
  the batch when M = 1): E[c_bm d log P(x_bm|z_b)] = 0 because c_bm does not depend on x_bm, so the baseline
  removes variance and no bias (the mean-1 normalisation uses every row of the step, a bias O(1/(B M))).
- "relaxation" (straight-through Gumbel-sigmoid, Bengio et al. 2013; Jang et al. 2017; Maddison et al. 2017): with
  logistic noise L = log u - log(1 - u), u ~ U(0, 1), the forward row is the exact Bernoulli draw
  x = 1[l + L > 0] and the backward pass uses the gradient of the relaxed s = sigmoid((l + L) / temperature):
  x_st = x + s - stopgrad(s), M rows per z; the generator descends -mean_bm f*(g_f(v^(x_st))) by autograd (biased,
  low variance; the critic only ever sees binary rows, and its slope at a binary row, which the relaxation follows,
  is not trained to say anything about the neighbouring rows). Only the generator's parameters get a .grad.

Packed critic (the model's `pack` m > 1, PacGAN, Lin et al. 2018): the critic sees packs of m rows of the same
batch (`GAN.pack_rows`: row b with rows b+1, ..., b+m-1, cyclically), data with data and model with model, so that
everything above holds with Q^m and P^m in place of Q and P: v*(pack) = sum_s log r(x_s), the bound is of
D_f(Q^m||P^m) (= m D_KL(Q||P) for kl), and in the score-function step the pack's log-probability is the sum of its
rows' log P(x_s|z_s), each row from its own z (the leave-one-out baseline of pack (m, b) comes from the packs
(m', b), m' != m, whose rows are drawn independently of it given the z's: still no bias).

The value returned for every batch is the bound (1) on it with the current critic (nats): the data rows of the
batch against the model rows drawn in that step. `epoch_record` adds the epoch's means of the critic loss, the
generator loss -mean_P f*(g_f(v)) and the divergence estimate to each monitoring record.

Warm start (`warm_start_epochs` W > 0, the GAN built with its auxiliary encoder q(z|x)): for the first W epochs
every batch is a critic step as above and, for the generator and the encoder, a step on the negative ELBO
-(1/B) sum_b [E_q log P(x_b|z) - KL(q(z|x_b)||N(0, I))] (`GAN.elbo`): maximum likelihood through its bound, as a
VAE with the generator as its decoder. Adversarial steps follow. Generators of discrete data are commonly
pretrained by maximum likelihood before adversarial training (SeqGAN, Yu et al. 2017; MaliGAN, Che et al. 2017),
and here it is what gives the score-function estimator modes to work with: that estimator weights the model's own
rows only, so a mode the generator never samples gets no gradient and never comes back. On binarized MNIST the
plain kl recipe kept 3 of 10 digits in 5-15% of the samples; started from 15 epochs of ELBO (10 of 10 digits),
adversarial epochs at a rate of 3e-4 kept all 10 (at 2e-3: 9 of 10, ones growing to 20%).

The rule "quadrature-likelihood" is the maximum-likelihood reference for a latent space of D <= 2: autograd of the
mean NLL with log P(x) = log integral N(z) P(x|z) dz by a randomly shifted grid over z (module docstring of
`QuadratureLikelihood`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from genlearn.errors import ConfigError
from genlearn.learning.rule_base import LearningRule, _check_family, register_rule
from genlearn.models.base import LatentVariableModel
from genlearn.models.gan import DIVERGENCES, ESTIMATORS, GAN
from genlearn.options import option

LOG2 = math.log(2.0)


# ------------------------------------------------------------------------------------------------------
# the f-divergences: f, f*, the output activation g_f and the fused f*(g_f(v)) (the table of the docstring)
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FDivergence:
    """One f-divergence D_f(Q||P) = sum_x P f(Q/P): generator f(u), conjugate f*(t), output activation T = g(v)
    with the optimal critic v* = log(Q/P), and f*(g(v)) in a numerically stable fused form (= phi_f(exp v))."""

    name: str
    f: Callable[[Tensor], Tensor]
    conjugate: Callable[[Tensor], Tensor]
    activation: Callable[[Tensor], Tensor]
    conjugate_of_activation: Callable[[Tensor], Tensor]


F_DIVERGENCES: dict[str, FDivergence] = {d.name: d for d in (
    FDivergence("kl", lambda u: u * torch.log(u), lambda t: torch.exp(t - 1),
                lambda v: 1 + v, lambda v: torch.exp(v)),
    FDivergence("reverse-kl", lambda u: -torch.log(u), lambda t: -1 - torch.log(-t),
                lambda v: -torch.exp(-v), lambda v: v - 1),
    FDivergence("js", lambda u: 0.5 * (u * torch.log(u) - (1 + u) * torch.log((1 + u) / 2)),
                lambda t: -0.5 * torch.log(2 - torch.exp(2 * t)),
                lambda v: 0.5 * (LOG2 - F.softplus(-v)), lambda v: 0.5 * (F.softplus(v) - LOG2)),
    FDivergence("hellinger", lambda u: (torch.sqrt(u) - 1) ** 2, lambda t: t / (1 - t),
                lambda v: 1 - torch.exp(-v / 2), lambda v: torch.exp(v / 2) - 1),
)}
assert tuple(F_DIVERGENCES) == DIVERGENCES


def variational_bound(divergence: str, v_data: Tensor, v_model: Tensor) -> Tensor:
    """mean_Q g_f(v) - mean_P f*(g_f(v)) over critic outputs on data rows and on model rows: a lower bound of
    D_f(Q||P) (in expectation) that equals it at v = log(Q/P), nats."""
    d = F_DIVERGENCES[divergence]
    return d.activation(v_data).mean() - d.conjugate_of_activation(v_model).mean()


def exact_bound(divergence: str, q: Tensor, p: Tensor, v: Tensor) -> Tensor:
    """sum_x Q(x) g_f(v(x)) - sum_x P(x) f*(g_f(v(x))) for two probability tables q, p and a critic table v."""
    d = F_DIVERGENCES[divergence]
    return (q * d.activation(v)).sum() - (p * d.conjugate_of_activation(v)).sum()


# ------------------------------------------------------------------------------------------------------
# the f-GAN rule
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FGANSettings:
    divergence: str = option("kl", "the f-divergence D_f(Q||P): kl, reverse-kl, js, hellinger", choices=DIVERGENCES)
    estimator: str = option("score-function", "the generator's gradient: score-function or relaxation "
                            "(straight-through Gumbel-sigmoid)", choices=ESTIMATORS)
    samples_per_z: int = option(32, "model rows x ~ P(x|z) per z (M per data row) in every step", minimum=1)
    critic_steps: int = option(5, "critic steps per generator step", minimum=1)
    temperature: float = option(0.5, "relaxation: temperature of the surrogate gradient (> 0)", minimum=0)
    critic_penalty: float = option(0.03, "lambda of the critic's penalty (lambda/2)(E_Q v^2 + E_P v^2)",
                                   minimum=0)
    warm_start_epochs: int = option(0, "epochs of maximum-likelihood warm start (negative ELBO of the generator "
                                    "with the model's auxiliary encoder; the critic learns alongside)", minimum=0)


class FGAN(LearningRule):
    """Adversarial learning under an f-divergence (module docstring): alternating critic and generator steps."""

    name = "f-gan"
    #: its state between minibatches (step counter, completed epochs, the epoch's running sums) is all in
    #: state_tensors(); both players' parameters and the optimizer's state are the trainer's
    resumes_mid_epoch = True
    Settings = FGANSettings
    objective = ("adversarial: the f-GAN variational lower bound of D_f(Q||P_theta) (nats), ascended by the critic "
                 "and descended by the generator")

    def __init__(self, settings: dict | None = None):
        super().__init__(settings)
        if not self.config.temperature > 0:
            raise ConfigError(f"--temperature must be > 0, got {self.config.temperature!r}")
        self.divergence = F_DIVERGENCES[self.config.divergence]
        self.step = 0
        self.epochs_done = 0  # completed epochs: the first warm_start_epochs are the warm start
        self._sums = self._zero_sums()
        self._last: dict = {}

    #: the running sums of the epoch, in the order of their state tensors
    SUMS = ("critic_loss", "generator_loss", "divergence_estimate", "neg_elbo")

    @classmethod
    def _zero_sums(cls) -> dict:
        return {k: [0.0, 0] for k in cls.SUMS}

    def _add(self, key: str, value: Tensor) -> None:
        s = self._sums[key]
        s[0] += float(value)
        s[1] += 1

    def check(self, model):
        _check_family(self, model, GAN, "a GAN (a Bernoulli generator with a critic)")
        if self.config.warm_start_epochs and not model.warm_start_encoder:
            raise ConfigError("--warm-start-epochs needs a GAN built with its warm-start encoder "
                              "(genlearn fit gan --warm-start-epochs N builds it)")

    def is_critic_step(self, step: int | None = None) -> bool:
        """True for a critic step: the first critic_steps of every critic_steps + 1 consecutive steps."""
        k = self.config.critic_steps
        return (self.step if step is None else step) % (k + 1) < k

    @property
    def warming_up(self) -> bool:
        """True during the maximum-likelihood warm start (the first warm_start_epochs epochs)."""
        return self.epochs_done < self.config.warm_start_epochs

    def compute_gradient(self, model, batch, generator):
        if self.warming_up:
            return self._warm_start_step(model, batch.to(model.gen_out.weight.dtype), generator)
        critic = self.is_critic_step()
        self.step += 1
        x = batch.to(model.gen_out.weight.dtype)
        if critic:
            return self._critic_step(model, x, generator)
        if self.config.estimator == "score-function":
            return self._score_function_step(model, x, generator)
        return self._relaxation_step(model, x, generator)

    @staticmethod
    def _set_grads(loss: Tensor, params: list) -> None:
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = torch.zeros_like(p) if g is None else g

    def _model_rows(self, model: GAN, b: int, generator) -> tuple[Tensor, Tensor]:
        """(logits (B, n) of B draws z ~ N(0, I), differentiable in theta; M = samples_per_z rows per z drawn from
        them (M, B, n), no gradient)."""
        logits = model.decoder_logits(model.sample_prior(b, generator))
        rows = model.sample_binary(logits.detach().expand(self.config.samples_per_z, *logits.shape), generator)
        return logits, rows

    def _critic_step(self, model: GAN, x: Tensor, generator) -> Tensor:
        with torch.no_grad():
            _, fake = self._model_rows(model, x.shape[0], generator)
        v_q, v_p = model.critic_value(model.pack_rows(x)), model.critic_value(model.pack_rows(fake))
        bound = variational_bound(self.config.divergence, v_q, v_p)
        lam = self.config.critic_penalty
        loss = -bound + 0.5 * lam * (v_q.pow(2).mean() + v_p.pow(2).mean()) if lam else -bound
        self._set_grads(loss, model.critic_parameters())
        self._add("critic_loss", loss.detach())
        self._add("divergence_estimate", bound.detach())
        return bound.detach()

    def _warm_start_step(self, model: GAN, x: Tensor, generator) -> Tensor:
        """One warm-start batch: a critic step against the current generator (its .grad), and the gradient of the
        negative ELBO, -(1/B) sum_b ELBO(x_b), in the generator's and the encoder's parameters (maximum likelihood
        through its bound, as a VAE). Returns the critic's bound on the batch (nats), as every other step."""
        bound = self._critic_step(model, x, generator)
        neg_elbo = -model.elbo(x, generator).mean()
        self._set_grads(neg_elbo, model.generator_parameters() + model.encoder_parameters())
        self._add("neg_elbo", neg_elbo.detach())
        return bound

    def _record_generator(self, bound: Tensor, gen_loss: Tensor) -> Tensor:
        self._add("generator_loss", gen_loss)
        self._add("divergence_estimate", bound)
        return bound

    def _score_function_step(self, model: GAN, x: Tensor, generator) -> Tensor:
        d, m = self.divergence, self.config.samples_per_z
        b = x.shape[0]
        logits, rows = self._model_rows(model, b, generator)  # (B, n) differentiable in theta; (M, B, n)
        with torch.no_grad():
            v = model.critic_value(model.pack_rows(rows))  # (M, B): one value per row, or per pack of rows
            bound = d.activation(model.critic_value(model.pack_rows(x))).mean() - d.conjugate_of_activation(v).mean()
            gen_loss = -d.conjugate_of_activation(v).mean()
            v_hat = v - (torch.logsumexp(v.reshape(-1), 0) - math.log(v.numel()))  # mean exp(v^) = 1
            h = d.conjugate_of_activation(v_hat)  # phi_f(r^), (M, B)
            if m > 1:
                baseline = (h.sum(0, keepdim=True) - h) / (m - 1)
            elif h.numel() > 1:
                baseline = (h.sum() - h) / (h.numel() - 1)
            else:
                baseline = torch.zeros_like(h)
            advantage = h - baseline
        log_lik = (rows * logits).sum(-1) - F.softplus(logits).sum(-1)  # log P(x_bm|z_b), (M, B)
        if model.pack > 1:  # log P of pack (m, b): its rows (m, b), ..., (m, b + pack - 1), drawn from their own z
            log_lik = sum(log_lik.roll(-s, dims=-1) for s in range(model.pack))
        surrogate = -(advantage * log_lik).mean()
        self._set_grads(surrogate, model.generator_parameters())
        return self._record_generator(bound.detach(), gen_loss)

    def _relaxation_step(self, model: GAN, x: Tensor, generator) -> Tensor:
        d, tau, m = self.divergence, self.config.temperature, self.config.samples_per_z
        logits = model.decoder_logits(model.sample_prior(x.shape[0], generator))  # (B, n)
        logits = logits.expand(m, *logits.shape)  # M rows per z: (M, B, n)
        u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype)
        tiny = torch.finfo(logits.dtype).tiny
        noise = torch.log(u + tiny) - torch.log1p(-u)  # logistic
        soft = torch.sigmoid((logits + noise) / tau)
        hard = (logits.detach() + noise > 0).to(logits.dtype)  # an exact Bernoulli(sigmoid(l)) draw
        rows = hard + soft - soft.detach()
        v = model.critic_value(model.pack_rows(rows))
        with torch.no_grad():
            shift = torch.logsumexp(v.detach().reshape(-1), 0) - math.log(v.numel())
            bound = (d.activation(model.critic_value(model.pack_rows(x))).mean()
                     - d.conjugate_of_activation(v.detach()).mean())
        loss = -d.conjugate_of_activation(v - shift).mean()
        self._set_grads(loss, model.generator_parameters())
        return self._record_generator(bound, -d.conjugate_of_activation(v.detach()).mean())

    def end_epoch(self, model, train):
        self._last = {k: s[0] / s[1] for k, s in self._sums.items() if s[1]}
        self._sums = self._zero_sums()
        self.epochs_done += 1

    def epoch_record(self) -> dict:
        """The last epoch's means: critic_loss (the critic's penalised negative bound), generator_loss
        (-mean_P f*(g_f(v)), the generator's part of the bound), divergence_estimate (the bound, nats), and in a
        warm-start epoch neg_elbo (the generator's negative ELBO, nats per example) instead of generator_loss."""
        return dict(self._last)

    def state_tensors(self):
        """The step counter, the completed epochs, and the current epoch's running sums (float64, exactly the
        Python floats) and counts of SUMS, so that a checkpoint between two minibatches resumes the epoch's means."""
        return {"step": torch.tensor(self.step, dtype=torch.long),
                "epochs_done": torch.tensor(self.epochs_done, dtype=torch.long),
                "epoch_sums": torch.tensor([self._sums[k][0] for k in self.SUMS], dtype=torch.float64),
                "epoch_counts": torch.tensor([self._sums[k][1] for k in self.SUMS], dtype=torch.long)}

    def load_state_tensors(self, tensors):
        keys = {"step", "epochs_done", "epoch_sums", "epoch_counts"}
        unknown = set(tensors) - keys
        if unknown:
            raise ConfigError(f"the learning rule {self.name!r} keeps {', '.join(sorted(keys))}, not "
                              f"{', '.join(sorted(unknown))}")
        self.step = int(tensors["step"]) if "step" in tensors else 0
        # runs saved before the warm start existed: their epochs were all adversarial
        self.epochs_done = int(tensors["epochs_done"]) if "epochs_done" in tensors else self.config.warm_start_epochs
        self._sums = self._zero_sums()  # checkpoints of epoch ends (and of older versions): nothing summed yet
        if "epoch_sums" in tensors:
            for k, total, count in zip(self.SUMS, tensors["epoch_sums"].tolist(), tensors["epoch_counts"].tolist()):
                self._sums[k] = [float(total), int(count)]

    def describe(self):
        cfg = self.config
        out = {"objective": self.objective, "divergence": cfg.divergence, "estimator": cfg.estimator,
               "critic_steps": cfg.critic_steps, "critic_penalty": cfg.critic_penalty}
        if cfg.warm_start_epochs:
            out["warm_start_epochs"] = cfg.warm_start_epochs
        if cfg.estimator == "score-function":
            out["samples_per_z"] = cfg.samples_per_z
        else:
            out["temperature"] = cfg.temperature
        return out


# ------------------------------------------------------------------------------------------------------
# the maximum-likelihood reference: autograd of the quadrature NLL (latent_dim <= 2)
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuadratureSettings:
    points: int = option(100, "grid points per latent axis", minimum=2)
    limit: float = option(6.0, "the grid covers z in [-limit, limit]^D", minimum=0)


class QuadratureLikelihood(LearningRule):
    """Maximum likelihood for a latent-variable model with a latent space of D <= 2 and a Bernoulli decoder:
    g = autograd of -(1/B) sum_m log P^(x_m), with

        log P^(x) = log sum_g h^D N(z_g; 0, I) P(x|z_g),   z_g = -limit + (g + u) h,  h = 2 limit / points,

    a grid of `points` per axis shifted by one u ~ U(0, 1)^D per step (so that E_u of the sum is exactly the
    integral over the box: the generator cannot hide transitions between fixed grid points). log P^ is a
    consistent estimate of log P(x) (biased low by Jensen's inequality, negligibly on a fine grid). Repeated rows of
    a batch are integrated once. The value is the batch's estimated NLL (nats per example); only the parameters the
    likelihood depends on get a .grad (a GAN's critic keeps None)."""

    name = "quadrature-likelihood"
    resumes_mid_epoch = True  # its state between minibatches is in state_tensors()
    Settings = QuadratureSettings
    objective = "maximum likelihood: autograd of the NLL by a randomly shifted quadrature over z (nats per example)"

    def __init__(self, settings: dict | None = None):
        super().__init__(settings)
        if not self.config.limit > 0:
            raise ConfigError(f"--limit must be > 0, got {self.config.limit!r}")

    def check(self, model):
        _check_family(self, model, LatentVariableModel, "latent-variable models")
        if model.latent_dim > 2:
            raise ConfigError(f"the learning rule {self.name!r} integrates over at most 2 latent dimensions; this "
                              f"model has {model.latent_dim}")

    def compute_gradient(self, model, batch, generator):
        cfg = self.config
        dim, p, lim = model.latent_dim, cfg.points, cfg.limit
        dtype = next(model.parameters()).dtype
        h = 2 * lim / p
        u = torch.rand(dim, generator=generator, dtype=torch.float64)
        axes = [(-lim + (torch.arange(p, dtype=torch.float64) + u[d]) * h) for d in range(dim)]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dim).to(dtype)  # (G, D)
        rows, inverse, counts = torch.unique(batch.to(dtype), dim=0, return_inverse=True, return_counts=True)
        logits = model.decoder_logits(grid)  # (G, n)
        ll = logits @ rows.T - F.softplus(logits).sum(-1, keepdim=True)  # (G, U)
        log_p = torch.logsumexp(ll + model.log_prior(grid)[:, None], 0) + dim * math.log(h)  # (U,)
        loss = -(counts.to(log_p.dtype) * log_p).sum() / batch.shape[0]
        loss.backward()
        return loss.detach()

    def describe(self):
        return {"objective": self.objective, "quadrature_points": self.config.points,
                "quadrature_limit": self.config.limit}


register_rule("f-gan", FGAN)
register_rule("quadrature-likelihood", QuadratureLikelihood)

__all__ = ["F_DIVERGENCES", "FDivergence", "FGAN", "FGANSettings", "QuadratureLikelihood", "exact_bound",
           "variational_bound"]
