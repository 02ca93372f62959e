"""The variational learning rule of latent-variable models: maximise a lower bound of log P(x|theta).

For a batch x(1..B) and k importance samples z(1..k) ~ q(z|x) per row (reparameterised),

    log w_j = log P(x|z_j) + log p(z_j) - log q(z_j|x),
    L_k(x) = log (1/k) sum_j w_j  <=  log P(x|theta)            (nats; Burda et al. 2016),

L_1 is the ELBO and L_k (k > 1) the IWAE bound, non-decreasing in k in expectation. For k = 1 the rule uses the
family's `elbo` (model.elbo: the VAE computes KL(q(z|x) || N(0, I)) in closed form when it can, an estimator of
the same bound with lower variance) unless `kl_estimator` is "sampled" (log w of one sample). The rule descends
-(1/B) sum_m L_k(x_m), an upper bound of the batch NLL, so that mean(-L_k) - H(Q^) bounds D_KL(Q^||P_theta) from
above; the gap is E[log P(x) - L_k(x)] (for k = 1 the mean KL(q(z|x) || P(z|x,theta))).

KL warm-up (`warmup_epochs` W > 0): during epoch e (counted from 1) the weights are
log P(x|z) + beta_e (log p(z) - log q(z|x)) with beta_e = min(1, e / W); the value returned in those epochs is
the warm objective, not a bound. The epoch counter is the rule's state and is checkpointed."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from genlearn import numerics
from genlearn.errors import ConfigError
from genlearn.learning.rule_base import LearningRule, register_rule
from genlearn.models.base import LatentVariableModel
from genlearn.options import option


@dataclass(frozen=True)
class ELBOSettings:
    iw_samples: int = option(1, "importance samples k per row: 1 = the ELBO, k > 1 = the IWAE bound", minimum=1)
    warmup_epochs: int = option(0, "KL warm-up over this many epochs (0 = off)", minimum=0)
    kl_estimator: str = option("closed-form", "k = 1: the KL term of the ELBO in closed form where the family has "
                               "it (else sampled), or sampled: log q(z|x) - log p(z) at the one sample",
                               choices=("closed-form", "sampled"))


class ImportanceWeightedBound(LearningRule):
    """g = -d/dtheta (1/B) sum_m L_k(x_m) through reparameterised samples (module docstring): by the family's
    hand-written backward pass where it has one for the model (`model.bound_gradient`, e.g. the one-layer VAE's
    genlearn.models.vae_step), else by autograd. In the gradient, normalised importance weights below
    numerics.negligible_weight(k, dtype) count as 0 (together less than the dtype's unit roundoff of their row: below
    rounding; they would make denormal floats)."""

    name = "elbo"
    resumes_mid_epoch = True  # its state between minibatches is in state_tensors()
    Settings = ELBOSettings
    objective = "variational: -mean L_k(x), the ELBO (k = 1) or IWAE bound (k > 1), an upper bound of the NLL (nats)"

    def __init__(self, settings: dict | None = None):
        super().__init__(settings)
        self.epochs_done = 0

    def check(self, model):
        if not isinstance(model, LatentVariableModel):
            raise ConfigError(f"the learning rule {self.name!r} trains latent-variable models (e.g. vae), not a "
                              f"{getattr(model, 'name', model)!r} model; use the rule of its family")

    def kl_weight(self) -> float:
        """beta of the current epoch: min(1, e / W), e = epochs done + 1; 1 without warm-up."""
        w = self.config.warmup_epochs
        return 1.0 if w == 0 else min(1.0, (self.epochs_done + 1) / w)

    def compute_gradient(self, model, batch, generator):
        k = self.config.iw_samples
        with model.training_precision():  # e.g. bfloat16 matrix products when the model asks for them
            closed = self.config.kl_estimator == "closed-form"
            loss = model.bound_gradient(batch, k, generator, kl_weight=self.kl_weight(), closed_form_kl=closed)
            if loss is not None:  # the family's hand-written backward pass (e.g. genlearn.models.vae_step)
                return loss
            if k == 1 and closed:  # the family's ELBO (closed-form KL if any)
                bound = model.elbo(batch, generator, kl_weight=self.kl_weight())
            else:
                log_w = model.log_weights(batch, k, generator, kl_weight=self.kl_weight())
                bound = numerics.log_mean_exp(log_w)  # its gradient ignores negligible weights (denormals)
        loss = -bound.mean()
        loss.backward()
        return loss.detach()

    def end_epoch(self, model, train):
        self.epochs_done += 1

    def state_tensors(self):
        return {"epochs_done": torch.tensor(self.epochs_done, dtype=torch.long)}

    def load_state_tensors(self, tensors):
        unknown = set(tensors) - {"epochs_done"}
        if unknown:
            raise ConfigError(f"the learning rule {self.name!r} keeps epochs_done, not {', '.join(sorted(unknown))}")
        self.epochs_done = int(tensors["epochs_done"]) if "epochs_done" in tensors else 0

    def describe(self):
        k = self.config.iw_samples
        return {"objective": self.objective, "bound": "elbo" if k == 1 else f"iwae-{k}", "iw_samples": k,
                "warmup_epochs": self.config.warmup_epochs, "kl_estimator": self.config.kl_estimator,
                # which tanh and sigmoid kernels this machine runs (chosen by timings: the last bits depend on it)
                "elementwise": numerics.elementwise_record()}


register_rule("elbo", ImportanceWeightedBound)

__all__ = ["ELBOSettings", "ImportanceWeightedBound"]
