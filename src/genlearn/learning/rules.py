"""Learning rules: how theta moves, as objects handed to the one Trainer (genlearn.learning.trainer).

The learning equation is theta <- theta - eps * g, where g is the gradient, exact or estimated, of the empirical
KL divergence on a batch x(1..B),

    D_KL(Q^||P_theta) = -(1/B) sum_m log P(x(m)|theta) - H(Q^)       (nats per example),

or, for EM, a closed-form step that never increases it. A model says what the distribution is; a rule says how
g is obtained and what state that needs (persistent chains, mean-field magnetisations, EM statistics). The
Trainer uses only the interface declared by `LearningRule`; per epoch it does

    for each batch:  p.grad = None for every parameter;  value = rule.compute_gradient(model, batch, generator)
                     if rule.uses_optimizer: optimizer.step()
    rule.end_epoch(model, train)

and it checkpoints `rule.state_tensors()` (under a "rule." prefix) with the rule's name and `settings()`, so that
`--resume` rebuilds the rule with `make_rule` and continues bit for bit.

Registered rules (`make_rule(name, settings)`; settings are typed, see each `Settings` dataclass):

- "maximum-likelihood" {}: g = autograd of model.loss(batch) (the mean NLL for every tractable family; the
  order-agnostic NADE / MADE losses are the models' own unbiased estimates of it).
- "contrastive-divergence" {k, persistent, n_chains, matmul_precision}: the RBM's CD-k / PCD-k estimate
  g = <dF/dtheta>_batch - <dF/dtheta>_negatives, the negatives after k block-Gibbs sweeps from the batch (CD) or
  from persistent chains owned by the rule (PCD); kernels in genlearn.learning.rbm_gradients.
- "rbm-exact-gradient" {}: the RBM's exact g with the model moments by enumerating the smaller layer (<= 20).
- "boltzmann-moments" {estimator, k, n_chains, mf_iterations}: a fully visible Boltzmann machine's
  g = <dE/dtheta>_data - <dE/dtheta>_model with the model moments from `estimator` (exact, gibbs, pcd,
  mean-field, tap, or pseudo-likelihood, a different objective); genlearn.learning.boltzmann_gradients.
- "em" {smoothing, weight_smoothing, reseed, min_mass}: EM for the mixture of Bernoullis: E-step statistics per
  batch, the closed-form (MAP) M-step at the end of each epoch, no optimizer step (genlearn.learning.em).
- "closed-form" {smoothing}: the closed-form estimate (model.fit_closed_form) at the end of each epoch: the
  MLE, or add-a smoothing for Bernoulli models; no optimizer step.
- "elbo" {iw_samples, warmup_epochs}: latent-variable models (VAE): autograd of -mean L_k(x), the ELBO (k = 1)
  or the IWAE bound (k > 1), with KL warm-up (genlearn.learning.elbo).
- "f-gan" {divergence, estimator, samples_per_z, critic_steps, critic_penalty, temperature}: adversarial learning
  of a GAN's generator under a chosen f-divergence through its variational bound, the critic and the generator
  stepped on alternating minibatches; "quadrature-likelihood": maximum likelihood of a generator with a latent
  space of at most 2 dimensions by autograd of its quadrature NLL (genlearn.learning.adversarial).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from genlearn.errors import ConfigError
from genlearn.learning.rbm_gradients import (cd_sgd_step, cd_step, cd_workspace, checked_sgd_step, exact_gradient,
                                             sgd_step_checks)
from genlearn.models.base import MATMUL_PRECISIONS, GenerativeModel
from genlearn.options import option


from genlearn.learning.rule_base import (  # noqa: F401  (re-exported: the rules' public interface)
    RULES,
    LearningRule,
    NoSettings,
    _check_family,
    parse_settings,
    register_rule,
)
from genlearn.learning import elbo as _elbo  # noqa: F401,E402  (registers "elbo")
from genlearn.learning import adversarial as _adversarial  # noqa: F401,E402  (registers "f-gan", "quadrature-likelihood")


def make_rule(name: str, settings: dict | None = None) -> LearningRule:
    """The learning rule `name` with `settings` (defaults for those not given); ConfigError for an unknown name
    or setting."""
    if name not in RULES:
        raise ConfigError(f"unknown learning rule {name!r}; known: {', '.join(sorted(RULES))}")
    return RULES[name](settings)


def rule_from_record(record: dict) -> LearningRule:
    """The rule of a checkpoint's {"name", "settings"} record."""
    return make_rule(record["name"], record.get("settings") or {})


def list_rules() -> list[str]:
    return sorted(RULES)



# ------------------------------------------------------------------------------------------------------
# maximum likelihood by autograd
# ------------------------------------------------------------------------------------------------------
class MaximumLikelihood(LearningRule):
    """g = d model.loss(batch) / dtheta by autograd. For a tractable family model.loss = -(1/B) sum log P(x|theta),
    the batch NLL, so g is the exact gradient of D_KL(Q^||P_theta) on the batch (they differ by H(Q^), which does
    not depend on theta); families whose loss is an unbiased estimate (order-agnostic NADE, MADE with mask
    sampling) give an unbiased estimate of it."""

    name = "maximum-likelihood"
    resumes_mid_epoch = True  # its state between minibatches is in state_tensors()
    objective = "maximum likelihood: autograd of model.loss(batch), the mean NLL (nats per example)"

    def compute_gradient(self, model, batch, generator):
        loss = model.loss(batch, generator=generator)
        loss.backward()
        return loss.detach()

    def exact_objective(self, model):
        """The batch NLL is exact for a tractable model with the default loss, -mean log P(x|theta), and for a
        model that declares its own loss exact (`exact_loss`, e.g. the Boltzmann machine's enumeration)."""
        default = bool(model.tractable) and type(model).loss is GenerativeModel.loss
        return bool(getattr(model, "exact_loss", default))


# ------------------------------------------------------------------------------------------------------
# RBM: CD-k / PCD-k and the exact gradient
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContrastiveDivergenceSettings:
    k: int = option(1, "Gibbs sweeps per update (CD-k / PCD-k)", minimum=1)
    persistent: bool = option(False, "persistent chains (PCD-k): the negatives continue from the last update's")
    n_chains: int = option(100, "number of persistent chains (PCD)", minimum=1)
    matmul_precision: str = option("auto", "precision of the CD/PCD matrix products: auto (bfloat16 only where this "
                                   "machine runs it faster, genlearn.precision), full, or bfloat16 (bfloat16 "
                                   "operands, float32 accumulation)", choices=MATMUL_PRECISIONS)


def chain_probs_for(chain_probs: Tensor | None, W: Tensor, n_chains: int) -> Tensor | None:
    """The persistent chains' hidden probabilities where they fit n_chains x H in W's dtype and device (converted
    where only the dtype or device differ), else None (the step then computes them from the chains)."""
    if chain_probs is None or chain_probs.shape != (n_chains, W.shape[1]):
        return None
    return chain_probs.to(W) if (chain_probs.dtype, chain_probs.device) != (W.dtype, W.device) else chain_probs


def fresh_chain_probs(chains: Tensor, W: Tensor, c: Tensor) -> Tensor:
    """P(h | chains; theta) = sigmoid(c + chains W) (N x H): the kept hidden probabilities of new persistent
    chains (or of a checkpoint's chains without them), which a PCD step would otherwise compute itself."""
    return torch.sigmoid(torch.addmm(c, chains, W))


class ContrastiveDivergence(LearningRule):
    """CD-k (Hinton 2002) / PCD-k (Tieleman 2008) for a binary RBM:

        g = (1/B) sum_m dF(x_m)/dtheta - (1/N) sum_n dF(v~_n)/dtheta,

    with the N negatives v~ after k block-Gibbs sweeps from the batch (CD, N = B) or from `n_chains` persistent
    chains (PCD; they start at the first batch's rows, cycled, and are owned and checkpointed by this rule). The
    returned value is the CD objective mean F(x) - mean F(v~) (nats per example, not a likelihood). Matrix
    products by hand, reused buffers, bfloat16 products on request (genlearn.learning.rbm_gradients.cd_step).
    The rule also stores the RBM's AIS data statistics (model.set_training_statistics)."""

    name = "contrastive-divergence"
    resumes_mid_epoch = True  # its state between minibatches is in state_tensors()
    Settings = ContrastiveDivergenceSettings
    objective = "maximum likelihood, CD-k/PCD-k gradient; loss = mean F(data) - mean F(negatives) (nats)"

    def __init__(self, settings: dict | None = None):
        super().__init__(settings)
        self.chains: Tensor | None = None
        # P(h | chains) from the step that produced the chains: the next step's first hidden sample is drawn from
        # them (scikit-learn's PCD), which saves the product chains W; checkpointed with the chains
        self.chain_probs: Tensor | None = None
        self._workspace: dict | None = None
        self._precision: tuple | None = None  # (device, rows of the first step, resolved precision)
        self._step_speedup: float | None = None  # cd_precision's measured step speedup, where it decided "auto"

    def __getstate__(self):
        """Pickled without the step's workspace (buffers and kernels bound to them: rebuilt at the next step)."""
        state = self.__dict__.copy()
        state["_workspace"] = None
        return state

    def check(self, model):
        from genlearn.models.rbm import RBM

        _check_family(self, model, RBM, "an RBM")

    def resolved_precision(self, W: Tensor, rows: int, batch: int | None = None, density=None) -> str:
        """matmul_precision resolved for products of `rows` rows with W (V x H) on W's device (genlearn.precision:
        "auto" is bfloat16 only where this machine runs it faster); resolved at the first step on a device (from
        its batch size), so a short last batch of an epoch keeps the precision of the others. On a CPU, where the
        product's timing would pick bfloat16 for "auto", the step itself decides (genlearn.learning.cd_precision:
        the float32 step's sums over sparse 0/1 rows can beat bfloat16's dense products): `batch` (B) and
        `density()` (the first batch's fraction of ones) give its shapes; without them the product decides. An
        explicit "bfloat16" that runs natively is honoured, and warned about once where its step was timed slower
        than the float32 step."""
        from genlearn.precision import AUTO_MIN_FLOPS, resolve_matmul_precision

        if self._precision is None or self._precision[0] != W.device:
            flops = 2.0 * rows * W.shape[0] * W.shape[1]
            requested = self.config.matmul_precision
            resolved = resolve_matmul_precision(requested, W.device, flops)
            self._step_speedup = None
            if resolved == "bfloat16" and flops >= AUTO_MIN_FLOPS and W.device.type == "cpu" and batch is not None \
                    and density is not None and W.dtype == torch.float32:
                from genlearn.learning import cd_precision

                cfg = self.config
                shape = (W.shape[0], W.shape[1], batch, cfg.n_chains if cfg.persistent else batch, cfg.k,
                         cfg.persistent, float(density()))
                if requested == "auto":
                    resolved, self._step_speedup = cd_precision.auto_step_precision(*shape)
                else:  # explicit: honoured; a slower step is said once
                    self._step_speedup = cd_precision.step_speedup(*shape)
                    cd_precision.warn_if_slower(self._step_speedup)
            self._precision = (W.device, rows, resolved)
        return self._precision[2]

    def _step_state(self, model, B: int, first_rows) -> tuple:
        """(chains, their kept hidden probabilities) for a PCD step on B rows, (None, None) for CD, with the
        workspace made for it; the chains start at the first batch's rows (first_rows(): that batch in W's dtype),
        cycled, with P(h | chains; theta) as their first kept probabilities."""
        cfg = self.config
        W = model.weight
        chains = None
        if cfg.persistent:
            if self.chains is None:
                self.chains = first_rows()[torch.arange(cfg.n_chains) % B].clone()
                self.chain_probs = None
            elif self.chains.shape != (cfg.n_chains, model.n_visible):
                raise ConfigError(f"the persistent chains have shape {tuple(self.chains.shape)}, but the rule has "
                                  f"n_chains={cfg.n_chains} for {model.n_visible} visible units")
            elif self.chains.dtype != W.dtype or self.chains.device != W.device:
                self.chains = self.chains.to(W)
            chains = self.chains
        N = cfg.n_chains if cfg.persistent else B
        precision = self.resolved_precision(W, max(B, N), B, lambda: first_rows().mean().item())
        self._workspace = cd_workspace(self._workspace, W, B, N, cfg.k, precision)
        if not cfg.persistent:
            return None, None
        probs = chain_probs_for(self.chain_probs, W, N)
        if probs is None:  # computed here once, so that every step may take the fused passes
            probs = self.chain_probs = fresh_chain_probs(chains, W, model.hidden_bias)
        return chains, probs

    @torch.no_grad()
    def compute_gradient(self, model, batch, generator):
        model.check_batch(batch)
        W, b, c = model.weight, model.visible_bias, model.hidden_bias
        x = batch.to(W.dtype)
        chains, probs = self._step_state(model, x.shape[0], lambda: x)
        value, dW, db, dc, _ = cd_step(W, b, c, x, self.config.k, generator, self._workspace, chains,
                                       chain_probs=probs)
        if chains is not None:
            self.chain_probs = self._workspace["chain_probs"]
        W.grad, b.grad, c.grad = dW, db, dc
        return value

    @torch.no_grad()
    def sgd_step(self, model, source: Tensor, order: Tensor, lr: float, generator,
                 with_value: bool = True) -> Tensor | None:
        """One plain SGD step theta <- theta - lr g on the batch source[order] (source: rows in W's dtype, order:
        int64 row numbers), g as compute_gradient's; the parameters change in place and no p.grad is written.
        Returns the CD objective, or None without `with_value` (its pass is then skipped where it can be). The
        same parameters as compute_gradient followed by p -= lr p.grad, up to float32 summation order
        (rbm_gradients.cd_sgd_step: with the fused passes the batch is read in place and the update applied as
        the tail sums dW). The model's first statistics (check_batch) come from the first batch it sees."""
        W, b, c = model.weight, model.visible_bias, model.hidden_bias
        if source.dtype != W.dtype or source.ndim != 2 or source.shape[1] != model.n_visible:
            value = self._sgd_step_of_batch(model, source.index_select(0, order), lr, generator)  # its message
            return value if with_value else None
        if int(model.base_rate_ready) == 0:
            model.check_batch(source.index_select(0, order))
        chains, probs = self._step_state(model, order.shape[0], lambda: source.index_select(0, order))
        value = cd_sgd_step(W, b, c, source, order, lr, self.config.k, generator, self._workspace, chains, probs,
                            with_value)
        if chains is not None:
            self.chain_probs = self._workspace["chain_probs"]
        return value

    def sgd_stepper(self, model, source: Tensor, lr: float, batch_size: int, generator, with_value: bool = True):
        """A function step(rows, rows_np=None) that makes `sgd_step(model, source, rows, lr, generator, with_value)`
        on successive batches of one pass (rows: int64 row numbers of source, rows_np: rows.numpy() if at hand),
        bit for bit: once a full batch (batch_size rows) has been stepped, the checks that sgd_step makes per
        batch (the model's statistics, the source, the chains and workspace, rbm_gradients.sgd_step_checks) hold
        for the next full batches, and those go to rbm_gradients.checked_sgd_step directly. A short batch goes
        through sgd_step. Valid while nothing else changes the model, the rule or the source between its calls."""
        W, b, c = model.weight, model.visible_bias, model.hidden_bias
        bs, k = int(batch_size), self.config.k
        steady = None  # (workspace, chains, fusable) that hold for the next full batch

        @torch.no_grad()
        def step(rows: Tensor, rows_np=None) -> Tensor | None:
            nonlocal steady
            if steady is not None and rows.shape[0] == bs:
                ws, chains, fusable = steady
                probs = None if chains is None else self.chain_probs
                value = checked_sgd_step(W, b, c, source, rows, rows.numpy() if rows_np is None else rows_np, lr, k,
                                         generator, ws, chains, probs, with_value, fusable)
                if chains is not None:
                    self.chain_probs = ws["chain_probs"]
                return value
            value = self.sgd_step(model, source, rows, lr, generator, with_value)
            steady = None
            if (rows.shape[0] == bs and int(model.base_rate_ready) != 0 and source.dtype == W.dtype
                    and source.ndim == 2 and source.shape[1] == model.n_visible):
                ws, chains = self._workspace, self.chains if self.config.persistent else None
                if chains is None or self.chain_probs is ws["chain_probs"]:
                    probs = None if chains is None else self.chain_probs
                    steady = (ws, chains, sgd_step_checks(W, b, c, source, k, ws, chains, probs))
            return value

        return step

    @torch.no_grad()
    def sgd_pass(self, model, source: Tensor, order: Tensor, lr: float, batch_size: int, generator,
                 with_value: bool = True) -> list | None:
        """`sgd_step` on each batch source[order[s:s + batch_size]] in turn (one pass of plain SGD); returns the
        steps' values, or None without `with_value`. The same parameters, chains and random numbers as those calls,
        bit for bit (through `sgd_stepper`: 2.6-5% less per PCD-1 epoch at 784 x 500 on two AVX2 cores than
        sgd_step per batch, in interleaved A/Bs)."""
        bs, n = int(batch_size), order.shape[0]
        order_np = order.numpy()
        step = self.sgd_stepper(model, source, lr, bs, generator, with_value)
        values = [step(order[s:s + bs], order_np[s:s + bs]) for s in range(0, n, bs)]
        return values if with_value else None

    def _sgd_step_of_batch(self, model, batch: Tensor, lr: float, generator) -> Tensor:
        value = self.compute_gradient(model, batch, generator)
        for p in (model.weight, model.visible_bias, model.hidden_bias):
            p.sub_(p.grad, alpha=lr)
            p.grad = None
        return value

    def gradient(self, model, batch: Tensor, generator: torch.Generator | None = None) -> tuple:
        """(value, dW, db, dc, negatives) of one step as new tensors: what compute_gradient writes to p.grad
        (which it also does here) and the negatives v~. Advances the persistent chains like a training step."""
        value = self.compute_gradient(model, batch, generator)
        ws, B = self._workspace, batch.shape[0]
        return value, ws["dW"].clone(), ws["db"].clone(), ws["dc"].clone(), ws["rows"][B:].clone()

    def end_epoch(self, model, train):
        if int(model.base_rate_ready) < 2:
            model.set_training_statistics(train, full=True)

    def state_tensors(self):
        state = {} if self.chains is None else {"chains": self.chains}
        if self.chains is not None and self.chain_probs is not None:
            state["chain_probs"] = self.chain_probs
        return state

    def load_state_tensors(self, tensors):
        unknown = set(tensors) - {"chains", "chain_probs"}
        if unknown:
            raise ConfigError(f"unknown state {', '.join(sorted(unknown))} for the learning rule {self.name!r}")
        if "chains" in tensors and not self.config.persistent:
            raise ConfigError("the checkpoint holds persistent chains, but the contrastive-divergence rule is not "
                              "persistent")
        self.chains = tensors["chains"].clone() if "chains" in tensors else None
        # checkpoints written before the chains' hidden probabilities were kept have none: the first step after
        # the resume computes them from the chains
        self.chain_probs = tensors["chain_probs"].clone() if "chains" in tensors and "chain_probs" in tensors \
            else None

    def describe(self):
        from genlearn.precision import precision_record

        rec = {"rbm_gradient": "pcd" if self.config.persistent else "cd", "rbm_k": self.config.k,
               "objective": self.objective}
        if self._precision is not None:  # the precision the products ran in (after the first step)
            rec.update(precision_record(self.config.matmul_precision, self._precision[2], self._precision[0]))
            if getattr(self, "_step_speedup", None) is not None:  # "auto" decided by timing the steps
                rec["cd_step_bf16_speedup_measured"] = round(self._step_speedup, 3)
            if self._precision[2] == "full" and torch.device(self._precision[0]).type == "cpu":
                from genlearn import logistic_kernels, products

                rec.update(products.record())  # the library of the float32 products (oneDNN or torch.mm)
                rec["elementwise"] = logistic_kernels.record()  # the sigmoid kernel (compiled or torch's)
        return rec


class RBMExactGradient(LearningRule):
    """The exact KL gradient of a small binary RBM:

        g = (1/B) sum_m dF(x_m)/dtheta + d log Z/dtheta,   d log Z/d(W, b, c) = (E_P[v h^T], E_P[v], E_P[h]),

    with the model moments by enumerating the 2^m states of the smaller layer (m <= 20, float64). The value is
    the exact batch NLL mean F(x) + log Z (nats per example)."""

    name = "rbm-exact-gradient"
    resumes_mid_epoch = True  # its state between minibatches is in state_tensors()
    objective = "maximum likelihood, exact gradient (model moments by enumerating the smaller layer)"

    def check(self, model):
        from genlearn.models.rbm import RBM, check_exact_gradient_limit

        _check_family(self, model, RBM, "an RBM")
        check_exact_gradient_limit(model)

    @torch.no_grad()
    def compute_gradient(self, model, batch, generator):
        from genlearn.models.rbm import EXACT_GRADIENT_LIMIT

        model.check_batch(batch)
        W, b, c = model.weight, model.visible_bias, model.hidden_bias
        value, dW, db, dc = exact_gradient(W, b, c, batch, EXACT_GRADIENT_LIMIT)
        W.grad, b.grad, c.grad = dW, db, dc
        return value

    def end_epoch(self, model, train):
        if int(model.base_rate_ready) < 2:
            model.set_training_statistics(train, full=True)

    def exact_objective(self, model):
        return True

    def describe(self):
        return {"rbm_gradient": "exact", "objective": self.objective}


# ------------------------------------------------------------------------------------------------------
# fully visible Boltzmann machine: moment estimators
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoltzmannMomentsSettings:
    estimator: str = option("exact", "how the model moments are obtained: exact (enumeration, n <= 24), gibbs "
                            "(CD-k from the data), pcd (persistent chains), mean-field, tap, pseudo-likelihood (a "
                            "different objective)",
                            choices=("exact", "gibbs", "pcd", "mean-field", "tap", "pseudo-likelihood"))
    k: int = option(1, "Gibbs sweeps per gradient step (gibbs, pcd)", minimum=1)
    n_chains: int = option(100, "persistent chains (pcd)", minimum=1)
    mf_iterations: int = option(200, "damped mean-field fixed-point iterations per step (mean-field, tap)",
                                minimum=1)


class BoltzmannMoments(LearningRule):
    """The KL gradient of a fully visible Boltzmann machine, E(x) = -(b.x + 1/2 x.W.x):

        g = <dE/dtheta>_Q^ - <dE/dtheta>_P,   i.e. dD/db_i = <x_i>_P - <x_i>_Q^,  dD/dW_ij = <x_i x_j>_P - <x_i x_j>_Q^,

    as the autograd gradient of the surrogate <E>_data - <E>_model (model moments held fixed) with the model
    moments from `estimator` (see genlearn.learning.boltzmann_gradients; "pseudo-likelihood" differentiates
    the negative log pseudo-likelihood instead). The estimator's state (PCD chains, the mean-field
    magnetisation) is this rule's state, checkpointed for --resume."""

    name = "boltzmann-moments"
    resumes_mid_epoch = True  # its state between minibatches is in state_tensors()
    Settings = BoltzmannMomentsSettings

    def __init__(self, settings: dict | None = None):
        from genlearn.learning.boltzmann_gradients import make_estimator

        super().__init__(settings)
        cfg = self.config
        self.estimator = make_estimator(cfg.estimator, cfg.k, cfg.n_chains, cfg.mf_iterations)

    @property
    def objective(self) -> str:  # type: ignore[override]
        return self.estimator.objective

    def check(self, model):
        from genlearn.errors import IntractableError
        from genlearn.models.boltzmann import MAX_EXACT_UNITS, BoltzmannMachine

        _check_family(self, model, BoltzmannMachine, "a fully visible Boltzmann machine")
        n = model.n_features
        if self.config.estimator == "exact" and n > MAX_EXACT_UNITS:
            raise IntractableError(
                f"the exact gradient of a Boltzmann machine with {n} units needs 2^{n} = {2.0 ** n:.3g} states; it "
                f"is limited to n <= {MAX_EXACT_UNITS}. Use --gradient pcd or --gradient pseudo-likelihood (or "
                "mean-field) instead; log Z, NLL and KL will then only be available as estimates (AIS)")

    def compute_gradient(self, model, batch, generator):
        loss = self.estimator.loss(model, batch, generator)
        loss.backward()
        return loss.detach()

    def exact_objective(self, model):
        """exact: the batch NLL and its gradient; pseudo-likelihood: its own objective, exactly; the others give
        estimated or approximate moments and an energy gap."""
        return self.config.estimator in ("exact", "pseudo-likelihood")

    def state_tensors(self):
        return self.estimator.state_tensors()

    def load_state_tensors(self, tensors):
        self.estimator.load_state_tensors(tensors)

    def describe(self):
        return {"gradient_estimator": self.config.estimator, "objective": self.objective}


# ------------------------------------------------------------------------------------------------------
# EM for the mixture of Bernoullis
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EMSettings:
    smoothing: float = option(0.0, "Beta pseudo-counts a of the M-step, p = (S + a) / (N + 2a)", minimum=0)
    weight_smoothing: float = option(0.0, "Dirichlet pseudo-counts of the mixture weights", minimum=0)
    reseed: bool = option(True, "move a collapsed component onto the worst-explained training example")
    min_mass: float = option(1e-3, "responsibility mass (examples) below which a component has collapsed",
                             minimum=0)


class EM(LearningRule):
    """Expectation-maximisation for the mixture of Bernoullis, one EM iteration per Trainer epoch:

    E-step, per batch: r_mk = P(k|x_m) at the parameters of the epoch's start, accumulated as N_k = sum_m r_mk and
    S_ki = sum_m r_mk x_mi (float64); M-step, at the end of the epoch (closed form, MAP under Beta / Dirichlet
    pseudo-counts a = smoothing, a_pi = weight_smoothing):

        p_ki = (S_ki + a) / (N_k + 2a),   pi_k = (N_k + a_pi) / (M + K a_pi),

    then collapsed components (N_k < min_mass) are re-seeded when `reseed`. Without smoothing no iteration
    decreases the log-likelihood (Dempster et al. 1977). No gradient and no optimizer step: the batch size only
    bounds memory. The value returned per batch is its NLL at the epoch's parameters (nats per example).
    `history` holds one record per M-step (the train NLL before it, re-seeded components)."""

    name = "em"
    uses_optimizer = False
    Settings = EMSettings

    def __init__(self, settings: dict | None = None):
        super().__init__(settings)
        self._stats = None
        self.history: list[dict] = []

    @property
    def objective(self) -> str:  # type: ignore[override]
        cfg = self.config
        if cfg.smoothing or cfg.weight_smoothing:
            return (f"MAP by EM (Beta pseudo-counts {cfg.smoothing:g}, Dirichlet pseudo-counts "
                    f"{cfg.weight_smoothing:g}); loss = NLL before the M-step (nats)")
        return "maximum likelihood by EM (closed-form M-step per epoch); loss = NLL before the M-step (nats)"

    def check(self, model):
        from genlearn.models.mixture import MixtureOfBernoulli

        _check_family(self, model, MixtureOfBernoulli, "a mixture of Bernoullis")

    @torch.no_grad()
    def compute_gradient(self, model, batch, generator):
        from genlearn.learning.em import EMStats, e_step

        stats = e_step(batch, model.log_weights.detach(), model.logits.detach())
        if self._stats is None:
            self._stats = EMStats.zeros(model.components, model.n_features, device=model.logits.device)
        self._stats.add(stats)
        return torch.tensor(-stats.log_lik / max(stats.count, 1), dtype=torch.float64)

    @torch.no_grad()
    def end_epoch(self, model, train):
        """The closed-form M-step from the statistics of the epoch (a fresh E-step over `train` if the batches
        did not cover it exactly once), then re-seeding of collapsed components."""
        from genlearn.learning.em import e_step, m_step, reseed_collapsed

        cfg = self.config
        stats, self._stats = self._stats, None
        if stats is None or stats.count != train.shape[0]:
            stats = e_step(train, model.log_weights.detach(), model.logits.detach())
        log_w, logits = m_step(stats, cfg.smoothing, cfg.weight_smoothing, previous_logits=model.logits.detach(),
                               min_mass=cfg.min_mass)
        rec = {"train_nll_before": -stats.log_lik / stats.count}
        if cfg.reseed:
            seeded = reseed_collapsed(train, log_w, logits, stats, cfg.min_mass)
            if seeded:
                rec["reseeded"] = seeded
        model.set_parameters(log_w, logits)
        self.history.append(rec)

    def exact_objective(self, model):
        """The value of an epoch is the exact NLL at the parameters of its start (the E-step's)."""
        return True


# ------------------------------------------------------------------------------------------------------
# closed form
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClosedFormSettings:
    smoothing: float = option(0.0, "pseudo-counts a of the estimate p = (S + a) / (M + 2a) (product Bernoullis; "
                              "0 = the maximum-likelihood estimate)", minimum=0)


class ClosedForm(LearningRule):
    """theta = argmin_theta D_KL(Q^||P_theta) in closed form (`model.fit_closed_form`), computed at the end of
    every epoch from all the epoch's training rows: the MLE (p_i = S_i / M for product Bernoullis with
    S_i = sum_m x_mi, the frequencies for a die, mean and covariance for a Gaussian), or for Bernoulli models with
    `smoothing` a > 0 the add-a estimate p_i = (S_i + a) / (M + 2a), the posterior mean under a Beta(a, a)
    prior. One epoch is enough; no optimizer step. The value returned per batch is the batch NLL before the
    update (nats per example)."""

    name = "closed-form"
    resumes_mid_epoch = True  # its state between minibatches is in state_tensors()
    uses_optimizer = False
    one_pass = True
    Settings = ClosedFormSettings
    objective = "closed-form estimate: maximum likelihood, or add-a smoothing p = (S + a) / (M + 2a)"

    def check(self, model) -> None:
        if type(model).fit_closed_form is GenerativeModel.fit_closed_form:
            raise ConfigError(f"model {model.name!r} has no closed-form estimate; use maximum-likelihood")
        if self.config.smoothing and model.support != "binary":
            raise ConfigError(f"closed-form smoothing applies to Bernoulli models, not {model.name!r}")

    @torch.no_grad()
    def compute_gradient(self, model, batch, generator):
        return -model.log_prob(batch).double().mean().float()

    def exact_objective(self, model):
        return True

    def end_epoch(self, model, train) -> None:
        if self.config.smoothing:
            model.fit_closed_form(train, smoothing=self.config.smoothing)
        else:
            model.fit_closed_form(train)


for _cls in (MaximumLikelihood, ContrastiveDivergence, RBMExactGradient, BoltzmannMoments, EM, ClosedForm):
    register_rule(_cls.name, _cls)

__all__ = ["EM", "BoltzmannMoments", "ClosedForm", "ContrastiveDivergence", "LearningRule", "MaximumLikelihood",
           "RBMExactGradient", "RULES", "list_rules", "make_rule", "parse_settings", "register_rule",
           "rule_from_record"]
