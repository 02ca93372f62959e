"""Generative adversarial network [`gan`] as a distribution P(X|theta) over binary vectors x in {0,1}^n:

    P(x|theta) = integral N(z; 0, I) prod_i Bern(x_i | sigmoid(l_i(z))) dz,   z in R^D,

with a generator MLP z -> Bernoulli logits l(z) over the n pixels. The model also holds a critic (discriminator)
MLP x -> v(x), a real number per binary row, that adversarial learning trains to estimate the log density ratio
log Q(x) / P(x|theta) between the data and the model (genlearn.learning.adversarial, rule "f-gan"). The critic is a
submodule so that it is checkpointed and resumed with the model, but it is NOT part of P(x|theta): log P(x),
sampling and every likelihood depend on the generator only.

There is no encoder (has_encoder = False): log P(x) is computed by the likelihood policy, by quadrature over z when
D <= 2 and by AIS over z (with a BDMC bracket) otherwise (genlearn.likelihood.choose_method); `log_prob` raises
IntractableError as for every latent-variable model. All densities are in nats.

The defaults are the recipe of benchmarks/gan_bars_and_stripes.py (3x3 bars-and-stripes, exact KL by quadrature,
5 seeds, 1,500 epochs): a 2-D latent space, the kl divergence (the only one that covers the 14 patterns: all 14 in
4 of 5 seeds and 13 in the fifth, where js and hellinger keep 6-7 and reverse-kl 2), the score-function estimator
(mean KL(Q||P) 0.13 nats and 10% of the mass outside the patterns, against 13.3 nats and 99% with the relaxation;
maximum likelihood of the same generator reaches 0.04 nats and 1%), 5 critic steps per generator step and a critic
penalty of 0.03 (with 2 steps and 0.1, kl lost 2 patterns in every seed, 2.2 nats: a lagging critic lets a
pattern's region of z shrink to nothing early on, and a pattern that is never sampled never comes back)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from genlearn.errors import IntractableError
from genlearn.models.base import LatentVariableModel, as_float, check_positive_int, column_means, logit
from genlearn.models.fvsbn import init_seed_generator
from genlearn.models.registry import ModelSpec, register_model
from genlearn.models.vae import (
    ACTIVATIONS,
    MAX_HIDDEN,
    MAX_LATENT,
    MLP,
    GaussianHead,
    _reparameterise,
    bernoulli_log_likelihood,
    parse_sizes,
    standard_normal_log_density,
)
from genlearn.options import option

#: the f-divergences the adversarial rule can descend (genlearn.learning.adversarial.F_DIVERGENCES)
DIVERGENCES = ("kl", "reverse-kl", "js", "hellinger")
#: how the generator's gradient is estimated through discrete samples
ESTIMATORS = ("score-function", "relaxation")


class GAN(LatentVariableModel):
    """n_features: n binary pixels; latent: D, the size of z ~ N(0, I); hidden: the generator's layer sizes;
    critic_hidden: the critic's layer sizes; activation: tanh, relu, softplus or gated (both MLPs); pack: rows per
    critic input (PacGAN, Lin et al. 2018; 1: the plain critic on one row; `pack_rows`); seed: the initial weights
    (uniform +-1/sqrt(fan in) from a generator seeded with it; the critic's output layer starts at zero, so that
    v(x) = 0, the density ratio 1, and every divergence estimate starts at 0); warm_start_encoder: also an
    auxiliary Gaussian encoder q(z|x) (the generator's layer sizes in reverse) for the maximum-likelihood warm
    start of the rule "f-gan" (`elbo`); like the critic it is not part of P(x|theta), and it is not used by any
    likelihood estimate (it is not trained after the warm start)."""

    name = "gan"
    support = "binary"
    has_encoder = False

    def __init__(self, n_features: int, latent: int = 2, hidden=(64, 64), critic_hidden=(32, 32),
                 activation: str = "tanh", pack: int = 1, seed: int = 0, warm_start_encoder: bool = False):
        super().__init__()
        from genlearn.errors import ConfigError

        self.n_features = n = check_positive_int(n_features, "n_features")
        self.latent = parse_sizes(latent, "--latent", MAX_LATENT, counts=(1,))[0]
        self.latent_dim = self.latent
        self.hidden = parse_sizes(hidden, "--hidden", MAX_HIDDEN)
        self.critic_hidden = parse_sizes(critic_hidden, "--critic-hidden", MAX_HIDDEN)
        if activation not in ACTIVATIONS:
            raise ConfigError(f"--activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        self.activation, self.seed = activation, int(seed)
        self.pack = check_positive_int(pack, "--pack")
        self.gen = MLP([self.latent], self.hidden, activation)  # z -> features
        self.gen_out = torch.nn.Linear(self.hidden[-1], n)  # features -> Bernoulli logits l(z)
        self.critic = MLP([n * self.pack], self.critic_hidden, activation)  # a pack of rows -> features
        self.critic_out = torch.nn.Linear(self.critic_hidden[-1], 1)  # features -> v(x)
        self.warm_start_encoder = bool(warm_start_encoder)
        if self.warm_start_encoder:  # registered last: the other modules' initial weights do not depend on it
            self.enc = MLP([n], list(reversed(self.hidden)), activation)  # x -> features
            self.enc_head = GaussianHead(self.hidden[0], self.latent)  # features -> (mu, log sigma^2) of q(z|x)
        g = init_seed_generator(seed)
        with torch.no_grad():  # uniform(+-1/sqrt(fan_in)) from the explicit generator: deterministic per seed
            for module in self.modules():
                if isinstance(module, torch.nn.Linear):
                    bound = 1.0 / math.sqrt(module.in_features)
                    module.weight.copy_((torch.rand(module.weight.shape, generator=g) * 2 - 1) * bound)
                    if module.bias is not None:
                        module.bias.copy_((torch.rand(module.bias.shape, generator=g) * 2 - 1) * bound)
            self.critic_out.weight.zero_()
            self.critic_out.bias.zero_()

    # -- the two players ----------------------------------------------------------------------------------------
    def generator_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters theta of P(x|theta) (generator MLP and its output layer)."""
        return list(self.gen.parameters()) + list(self.gen_out.parameters())

    def critic_parameters(self) -> list[torch.nn.Parameter]:
        """The critic's parameters (not part of P(x|theta))."""
        return list(self.critic.parameters()) + list(self.critic_out.parameters())

    def encoder_parameters(self) -> list[torch.nn.Parameter]:
        """The warm-start encoder's parameters (empty without one)."""
        if not self.warm_start_encoder:
            return []
        return list(self.enc.parameters()) + list(self.enc_head.parameters())

    def elbo(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The evidence lower bound of each row with the warm-start encoder, nats, shape (B,):

            ELBO(x) = E_q[log P(x|z)] - KL(q(z|x) || N(0, I)) <= log P(x|theta),
            KL = (1/2) sum_d (mu_d^2 + sigma_d^2 - 1 - log sigma_d^2),

        with one reparameterised draw z = mu + sigma eps for the expectation (Kingma & Welling 2014)."""
        if not self.warm_start_encoder:
            raise IntractableError(f"model {self.name!r} was built without the warm-start encoder "
                                   "(--warm-start-epochs 0): no ELBO")
        x = as_float(x).to(self.gen_out.weight.dtype)
        mu, logvar = self.enc_head(self.enc(x))
        z = _reparameterise(mu, logvar, None, generator)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
        return bernoulli_log_likelihood(self.decoder_logits(z), x) - kl

    def pack_rows(self, rows: Tensor) -> Tensor:
        """The critic's inputs from rows (..., B, n): (..., B, pack n), whose b-th is rows b, b+1, ..., b+pack-1 of
        the same batch (cyclically) side by side; `rows` itself when pack = 1. Rows drawn independently from Q (or
        from P) give packs drawn from Q^pack (P^pack), whose divergence the critic then estimates: for kl,
        D_KL(Q^m||P^m) = m D_KL(Q||P), the same minimiser; a critic that sees m rows at once can tell a generator
        that repeats itself (PacGAN). A batch of fewer than pack rows repeats rows within a pack."""
        if self.pack == 1:
            return rows
        return torch.cat([rows.roll(-s, dims=-2) for s in range(self.pack)], -1)

    def critic_value(self, x: Tensor) -> Tensor:
        """v(x), shape x.shape[:-1]: the critic's real output for binary (or relaxed) rows x (..., n), or packs of
        rows (..., pack n) from `pack_rows` when pack > 1. The f-GAN
        rule parametrises every divergence's critic T(x) = g_f(v(x)) so that the optimal critic has
        v*(x) = log Q(x) / P(x|theta), the log density ratio in nats."""
        x = as_float(x).to(self.critic_out.weight.dtype)
        return self.critic_out(self.critic(x)).squeeze(-1)

    # -- the LatentVariableModel interface ------------------------------------------------------------------------
    def log_prior(self, z: Tensor) -> Tensor:
        """log N(z; 0, I), nats, shape z.shape[:-1]."""
        return standard_normal_log_density(z)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """z ~ N(0, I), shape (n, D), in the parameters' dtype."""
        return torch.randn(n, self.latent, generator=generator, dtype=self.gen_out.weight.dtype)

    def decoder_logits(self, z: Tensor) -> Tensor:
        """l(z), shape (..., n): P(x_i = 1|z) = sigmoid(l_i(z))."""
        return self.gen_out(self.gen(z))

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log P(x|z) = sum_i x_i l_i(z) - softplus(l_i(z)), nats; x (B, n) broadcasts against z (..., B, D)."""
        return bernoulli_log_likelihood(self.decoder_logits(z), as_float(x).to(self.gen_out.weight.dtype))

    def sample_posterior(self, x: Tensor, k: int, generator: torch.Generator | None = None):
        raise IntractableError(f"model {self.name!r} has no encoder q(z|x): no posterior samples; its likelihood "
                               "comes from quadrature (latent <= 2) or AIS over z (genlearn.likelihood)")

    def posterior_mean(self, x: Tensor) -> Tensor:
        raise IntractableError(f"model {self.name!r} has no encoder q(z|x): no posterior mean E_q[z|x]")

    def log_weights(self, x: Tensor, k: int, generator: torch.Generator | None = None,
                    kl_weight: float = 1.0) -> Tensor:
        raise IntractableError(f"model {self.name!r} has no encoder q(z|x): no importance weights, no ELBO")

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise IntractableError(f"model {self.name!r} learns adversarially: train it with the rule 'f-gan' "
                               "(genlearn fit gan), whose gradients come from a critic, not from model.loss")

    @torch.no_grad()
    def sample_binary(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x_i = 1[u_i < sigmoid(l_i)], u_i ~ U(0, 1): Bernoulli draws (a non-finite logit gives 0, no error)."""
        u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
        return (u < torch.sigmoid(logits)).to(logits.dtype)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """z ~ N(0, I), then x_i ~ Bern(sigmoid(l_i(z))) independently; float32 rows (n, n_features)."""
        n = check_positive_int(n, "number of samples")
        return self.sample_binary(self.decoder_logits(self.sample_prior(n, generator)), generator).float()

    @torch.no_grad()
    def init_from_data(self, x: Tensor) -> "GAN":
        """The generator's output biases to the logits of the pixel means, so that the initial model has roughly
        the data's marginals."""
        x = self.check_input(x)
        self.gen_out.bias.copy_(logit(column_means(x), 1e-3).to(self.gen_out.bias.dtype))
        return self

    def config(self) -> dict:
        return {"n_features": self.n_features, "latent": self.latent, "hidden": list(self.hidden),
                "critic_hidden": list(self.critic_hidden), "activation": self.activation, "pack": self.pack,
                "seed": self.seed, "warm_start_encoder": self.warm_start_encoder}


@dataclass(frozen=True)
class GANConfig:
    """Options of `genlearn fit gan`."""

    latent: int = option(2, "size D of the latent z ~ N(0, I) (D <= 2: the likelihood is exact by quadrature "
                         "over z; larger: AIS over z)", minimum=1)
    hidden: tuple[int, ...] = option((64, 64), "generator layer sizes (z -> logits)", minimum=1)
    critic_hidden: tuple[int, ...] = option((32, 32), "critic layer sizes (x -> v(x))", minimum=1)
    activation: str = option("tanh", "hidden activation of both MLPs", choices=ACTIVATIONS)
    divergence: str = option("kl", "the f-divergence D_f(Q||P) descended: kl (mode covering, the maximum-"
                             "likelihood direction), reverse-kl, js (the original GAN), hellinger (squared)",
                             choices=DIVERGENCES)
    estimator: str = option("score-function", "the generator's gradient through discrete samples: score-function "
                            "(self-normalised importance weights, leave-one-out baseline) or relaxation "
                            "(straight-through Gumbel-sigmoid)", choices=ESTIMATORS)
    samples_per_z: int = option(32, "model rows x ~ P(x|z) per z (M per data row) in critic and generator steps",
                                minimum=1)
    critic_steps: int = option(5, "critic steps per generator step (alternating minibatches)", minimum=1)
    temperature: float = option(0.5, "relaxation: temperature of the Gumbel-sigmoid surrogate gradient", minimum=0)
    critic_penalty: float = option(0.03, "critic regulariser lambda: (lambda/2) E[v(x)^2] over data and model rows; "
                                   "bounds the critic's log-ratio where P has no samples", minimum=0)
    pack: int = option(1, "rows per critic input (PacGAN): the critic sees packs of this many rows of a batch, "
                       "data with data and model with model (1: one row)", minimum=1)
    warm_start_epochs: int = option(0, "maximum-likelihood warm start: the first N epochs train the generator as "
                                    "the decoder of a VAE (negative ELBO, with an auxiliary encoder) while the "
                                    "critic learns; adversarial learning after (0: none)", minimum=0)
    init_seed: int = option(0, "seed of the initial weights")


def _build(dataset, config: GANConfig) -> GAN:
    return GAN(dataset.n_features, latent=config.latent, hidden=list(config.hidden),
               critic_hidden=list(config.critic_hidden), activation=config.activation, pack=config.pack,
               seed=config.init_seed, warm_start_encoder=config.warm_start_epochs > 0).init_from_data(dataset.train)


def _rule(config: GANConfig) -> tuple[str, dict]:
    return "f-gan", {"divergence": config.divergence, "estimator": config.estimator,
                     "samples_per_z": config.samples_per_z, "critic_steps": config.critic_steps,
                     "temperature": config.temperature, "critic_penalty": config.critic_penalty,
                     "warm_start_epochs": config.warm_start_epochs}


def _step_memory(dataset, config: GANConfig, batch_rows: int) -> tuple[int, str, str]:
    """The critic's inputs in one step: B data rows and M = samples_per_z model rows per data row, as packs of
    `pack` rows of n features, B (1 + M) pack n float32 values, counted 3 times (the packs, the rolled copies
    `pack_rows` concatenates, their gradients): 12 B (1 + M) pack n bytes. Measured on digits (n = 64, B = 100,
    M = 32): pack 400 and 1600 raised the peak resident size by 1.6x and 1.8x the packs' 4 B (1 + M) pack n bytes."""
    b, m, pack, n = batch_rows, config.samples_per_z, config.pack, dataset.n_features
    return (12 * b * (1 + m) * pack * n,
            f"one training step of model 'gan' ({b} rows of a batch and {m} model rows per row (--samples-per-z), "
            f"in packs of {pack} rows (--pack) of {n} features)",
            "choose a smaller --pack, --samples-per-z or --batch-size")


register_model(ModelSpec(
    "gan", GAN, "generative adversarial network: Bernoulli generator z -> logits, critic on binary x; f-GAN "
    "training (kl, reverse-kl, js, hellinger), likelihood by quadrature (latent <= 2) or AIS over z",
    ("binary",), _build, GANConfig, rule=_rule,
    train_defaults={"optimizer": "adam", "lr": 2e-3, "batch_size": 100}, step_memory=_step_memory,
))


__all__ = ["DIVERGENCES", "ESTIMATORS", "GAN", "GANConfig"]
