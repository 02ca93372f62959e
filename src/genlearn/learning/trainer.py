"""The learning equation theta <- theta - eps * dD_KL(Q^||P_theta)/dtheta, for every model family.

The trainer knows nothing of families: it asks its learning rule (genlearn.learning.rules.LearningRule; by
default "maximum-likelihood", autograd of model.loss) for the gradient of every batch, which the rule writes to
p.grad (the KL gradient, exact or estimated), steps the optimizer (unless the rule sets the parameters itself,
as EM does, or, for plain SGD steps, applies theta <- theta - eps g itself: the RBM's CD/PCD `sgd_step`), calls
the rule's end_epoch after the last batch, checkpoints the rule's state, and after each epoch records the history
(train NLL and empirical KL D_KL(Q^||P) = NLL - H(Q^), valid NLL, and the exact KL to the truth when known), writes
a checkpoint, and applies early stopping on the validation NLL."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from genlearn import options
from genlearn.errors import ConfigError, IntractableError, NumericalError
from genlearn.learning import checkpoint as ckpt
from genlearn.learning.interrupt import EpochProgress, Interrupted, StopOnSignal, partial_from_checkpoint
from genlearn.options import option

OPTIMIZERS = ("gd", "sgd", "momentum", "adam", "lbfgs")
#: (metrics / checkpoint key, model attribute): what matmul_precision "auto" resolved to, and the step timing
RESOLVED_PRECISION = (("matmul_precision_resolved", "resolved_matmul_precision"),
                      ("step_bf16_speedup_measured", "step_bf16_speedup_measured"))
SCHEDULES = ("constant", "cosine", "exponential", "step", "geometric", "plateau", "piecewise")


@dataclass
class TrainConfig:
    """epochs: passes over the training set; lr: eps of the learning equation; optimizer: gd (full-batch
    gradient descent, the default of the theory), sgd (minibatch), momentum, adam; batch_size: None = the whole
    training set; schedule of eps: constant, cosine (to 0 at the last epoch), exponential (x gamma per epoch),
    step (x gamma every step_size epochs), geometric (lr f^p with f = final_lr_fraction and p the progress in
    [0, 1]: the elapsed training time over max_minutes when that is set, else (epoch - 1) / (epochs - 1) for
    the epoch about to run; equal steps in log lr, from lr to lr f), plateau (lr x gamma each time the monitored
    valid NLL has not improved for plateau_patience evaluations in a row, never below lr x final_lr_fraction:
    the rule of torch's ReduceLROnPlateau, its count kept in the run's state so that resume continues it),
    piecewise (lr x F_j from epoch E_j on, the pairs given as lr_steps "E1:F1,E2:F2,..." with E_1 < E_2 < ...;
    lr before E_1: e.g. the rates a plateau run chose, replayed by `genlearn refit`);
    patience: stop when the valid NLL has not improved for that many evaluations (epochs when eval_every = 1) and
    restore the best parameters (None = off; with eval_every > 1 the final evaluation off that cadence is recorded
    but does not count, nor for keep_best and the plateau rule: a longer run would not have made it);
    monitor_ais_steps: for energy models too large for an exact log Z (e.g. a 784 x 500 RBM), estimate the train/valid
    NLL at every evaluation by forward AIS with this many temperatures (100 chains; recorded as train_nll_ais /
    valid_nll_ais with the AIS effective sample size; forward AIS under-estimates log Z on average, so these are
    optimistic; None = off); monitor_ensemble: an ensemble of K members (MADE masks, NADE orderings) is monitored
    through one member by default (model.monitor_member, recorded as monitored_member, train_nll_member /
    valid_nll_member, early stopping on the latter; 1/K of the cost), True evaluates the whole ensemble at
    every evaluation. The final metrics of a fit always use the whole ensemble. Latent-variable models (VAE) are
monitored through -ELBO on train and valid (train_neg_elbo, valid_neg_elbo, with one seeded sample per row) and,
with monitor_is_samples = k, the importance-sampling valid NLL (valid_nll_is); early stopping uses the latter
when present, else valid_neg_elbo. monitor_rows: monitor the
    train/valid NLL on the first N rows of each split (None = all rows; the final metrics always use every row);
    keep_best: at the end of training, restore the parameters of the best monitored valid NLL (as early stopping
    does), even when training ran to its last epoch or its time budget; checkpoint_every: write the checkpoint
    every N epochs (and always after the last one): a large model's checkpoint (parameters, optimizer moments,
    best parameters) can take longer to write than an epoch takes to run. optimizer lbfgs: full-batch L-BFGS with a
    strong-Wolfe line search, one iteration per epoch (lr: its first trial step); tol / rel_tol: stop when the
    full-batch gradient has max_i |dD_KL/dtheta_i| <= tol, or when the training objective changed by at most
    rel_tol relative between two epochs (epochs is then the maximum; recorded as state.converged; see
    genlearn.learning.convergence)."""

    epochs: int = option(100, "passes over the training set", minimum=1)
    lr: float = option(0.1, "learning rate eps of theta <- theta - eps dD_KL/dtheta")
    optimizer: str = option("gd", "gd = full-batch gradient descent; sgd/momentum/adam use --batch-size; lbfgs = "
                            "full-batch L-BFGS with a line search (--lr: its first trial step)", choices=OPTIMIZERS)
    batch_size: int | None = option(None, "minibatch size (default: the whole training set)", minimum=1)
    momentum: float = option(0.9, "momentum coefficient for --optimizer momentum", minimum=0)
    weight_decay: float = option(0.0, "L2 penalty added to the gradient", minimum=0)
    schedule: str = option("constant", "learning-rate schedule (geometric: from --lr to --lr x --final-lr-fraction "
                           "in equal log steps, over --max-minutes of training time when given, else over the "
                           "epochs)", choices=SCHEDULES)
    gamma: float = option(0.99, "decay factor of the exponential/step/plateau schedules")
    step_size: int = option(10, "epochs between decays of the step schedule", minimum=1)
    final_lr_fraction: float = option(0.01, "geometric schedule: the last rate over --lr; plateau: the lowest")
    lr_steps: str | None = option(None, "piecewise schedule: 'E1:F1,E2:F2,...', the rate is lr x F_j from epoch "
                                  "E_j on (epochs counted from 1)")
    plateau_patience: int = option(5, "plateau schedule: evaluations without a better valid NLL before the rate is "
                                   "multiplied by --gamma", minimum=1)
    patience: int | None = option(None, "early stopping: epochs without a better valid NLL (default off)", minimum=1)
    max_minutes: float | None = option(None, "stop after this much training time, in minutes (default no limit)")
    seed: int = option(0, "random seed; the same seed gives the same run on the same machine")
    eval_every: int = option(1, "monitor the NLL/KL every N epochs (and after the last; early stopping, "
                             "--keep-best and the plateau rule use the evaluations every N epochs)", minimum=1)
    monitor_ais_steps: int | None = option(None, "RBMs too large for an exact log Z: monitor the train/valid NLL "
                                           "by forward AIS with this many temperatures (default off)", minimum=1)
    monitor_ensemble: bool = option(False, "mask/ordering ensembles: monitor the whole ensemble at every "
                                    "evaluation (default: one member, recorded as *_nll_member)")
    monitor_is_samples: int | None = option(None, "latent-variable models: also monitor the valid NLL by importance "
                                            "sampling with this many samples per row (default: the ELBO only)",
                                            minimum=1)
    monitor_rows: int | None = option(None, "monitor on the first N rows of train and valid (default all; the "
                                      "final metrics always use every row)", minimum=1)
    keep_best: bool = option(False, "at the end, restore the parameters of the best monitored valid NLL")
    checkpoint_every: int = option(1, "write the checkpoint every N epochs (and after the last)", minimum=1)
    # convergence tests, checked every epoch (genlearn.learning.convergence); --epochs is then the maximum
    tol: float | None = option(None, "stop when the full-batch gradient has max |dD_KL/dtheta_i| <= TOL "
                               "(nats per example; unset: run all --epochs)", minimum=0)
    rel_tol: float | None = option(None, "stop when the training objective changed by at most REL_TOL relative "
                                   "between two epochs (e.g. EM; unset: run all --epochs)", minimum=0)
    progress: bool = option(True, "progress bar", cli=False)

    def validate(self) -> "TrainConfig":
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ConfigError(f"--epochs must be a non-negative integer, got {self.epochs!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr (the learning rate) must be a positive number, got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not (isinstance(self.final_lr_fraction, (int, float)) and 0 < self.final_lr_fraction <= 1):
            raise ConfigError(f"--final-lr-fraction must be in (0, 1], got {self.final_lr_fraction!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ConfigError(f"--batch-size must be a positive integer, got {self.batch_size!r}")
        if self.max_minutes is not None and not (isinstance(self.max_minutes, (int, float)) and self.max_minutes > 0):
            raise ConfigError(f"--max-minutes must be a positive number, got {self.max_minutes!r}")
        if self.schedule == "piecewise" or self.lr_steps is not None:
            if self.schedule != "piecewise" or self.lr_steps is None:
                raise ConfigError("--lr-steps goes with --schedule piecewise, and that schedule needs --lr-steps "
                                  "(e.g. --lr-steps 10:0.5,20:0.25)")
            parse_lr_steps(self.lr_steps)
        if not isinstance(self.plateau_patience, int) or self.plateau_patience < 1:
            raise ConfigError(f"--plateau-patience must be a positive integer, got {self.plateau_patience!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ConfigError(f"--patience must be a positive integer, got {self.patience!r}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not isinstance(self.eval_every, int) or self.eval_every < 1:
            raise ConfigError(f"--eval-every must be a positive integer, got {self.eval_every!r}")
        if self.monitor_ais_steps is not None and (not isinstance(self.monitor_ais_steps, int)
                                                   or self.monitor_ais_steps < 1):
            raise ConfigError(f"--monitor-ais-steps must be a positive integer, got {self.monitor_ais_steps!r}")
        if self.monitor_rows is not None and (not isinstance(self.monitor_rows, int) or self.monitor_rows < 1):
            raise ConfigError(f"--monitor-rows must be a positive integer, got {self.monitor_rows!r}")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 1:
            raise ConfigError(f"--checkpoint-every must be a positive integer, got {self.checkpoint_every!r}")
        for name in ("tol", "rel_tol"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"--{name.replace('_', '-')} must be a non-negative number, got {value!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """From Python values or command-line strings, converted and checked field by field."""
        return options.parse(cls, d, "training")


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "lbfgs":
        from genlearn.learning.convergence import make_lbfgs

        return make_lbfgs(params, cfg)
    if cfg.optimizer == "adam":
        # the fused implementation is several times faster on CPU (one kernel for all parameters); LeanAdam calls
        # it without torch.optim.Adam's per-step bookkeeping (the same update)
        from genlearn.learning.lean_adam import LeanAdam

        fused = all(p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) for p in params)
        return LeanAdam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
    momentum = cfg.momentum if cfg.optimizer == "momentum" else 0.0
    fused = all(p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) for p in params)
    # LayoutSGD: the fused kernel needs each gradient and momentum buffer in its parameter's layout (a transposed
    # weight resumed from a checkpoint would otherwise be updated wrongly; genlearn.learning.layouts)
    from genlearn.learning.layouts import LayoutSGD

    try:  # one fused kernel for all parameters where this torch has it
        return LayoutSGD(params, lr=cfg.lr, momentum=momentum, weight_decay=cfg.weight_decay, fused=fused or None)
    except (RuntimeError, TypeError):
        return LayoutSGD(params, lr=cfg.lr, momentum=momentum, weight_decay=cfg.weight_decay)


def parse_lr_steps(text: str) -> list[tuple[int, float]]:
    """The (epoch, factor) pairs of a piecewise schedule "E1:F1,E2:F2,...": epochs >= 1, strictly increasing,
    factors > 0 (one-line ConfigError otherwise)."""
    steps = []
    for item in str(text).split(","):
        epoch, sep, factor = item.strip().partition(":")
        try:
            pair = (int(epoch), float(factor))
        except ValueError:
            pair = None
        if not sep or pair is None or pair[0] < 1 or not (math.isfinite(pair[1]) and pair[1] > 0):
            raise ConfigError(f"--lr-steps {text!r}: each step is EPOCH:FACTOR with EPOCH >= 1 and FACTOR > 0, "
                              f"e.g. 10:0.5,20:0.25 (got {item.strip()!r})")
        if steps and pair[0] <= steps[-1][0]:
            raise ConfigError(f"--lr-steps {text!r}: the epochs must increase (got {pair[0]} after {steps[-1][0]})")
        steps.append(pair)
    return steps


def piecewise_factor(steps: list[tuple[int, float]], epoch: int) -> float:
    """The rate over lr during epoch `epoch` (counted from 1): F_j of the last step with E_j <= epoch, else 1."""
    factor = 1.0
    for start, value in steps:
        if start <= epoch:
            factor = value
    return factor


def geometric_factor(final_lr_fraction: float, progress: float) -> float:
    """The geometric schedule's rate over lr: f^p, f = final_lr_fraction, p the progress clipped to [0, 1]
    (epochs done / (epochs - 1), or training seconds / the time budget)."""
    return final_lr_fraction ** min(max(progress, 0.0), 1.0)


def make_schedule(opt, cfg: TrainConfig):
    if cfg.schedule == "piecewise":  # LambdaLR passes the epochs done: the next epoch is one more
        steps = parse_lr_steps(cfg.lr_steps)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda done: piecewise_factor(steps, done + 1))
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    if cfg.schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.gamma)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0)


@dataclass
class TrainState:
    epoch: int = 0
    step: int = 0
    history: list = field(default_factory=list)
    best_valid: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    out_of_time: bool = False
    train_seconds: float = 0.0
    converged: bool | None = None  # under cfg.tol / cfg.rel_tol (None: no tolerance)
    convergence: dict | None = None  # the test, its last value, the epoch it was met
    lr_factor: float = 1.0  # plateau schedule: the rate over --lr
    plateau_count: int = 0  # plateau schedule: evaluations without a better valid NLL since the last decay


class Trainer:
    """Fits `model` to `dataset` with `config`; checkpoints to `out_dir` every epoch when given.

    `callbacks` are called as fn(trainer, record) after every epoch (a KeyboardInterrupt raised there, or by
    the user, stops training with the last checkpoint intact)."""

    def __init__(self, model, dataset, config: TrainConfig, out_dir: Path | None = None,
                 run_meta: dict | None = None, callbacks: list[Callable] | None = None, rule=None,
                 device=None, parallel=None):
        from genlearn.learning.rules import LearningRule, make_rule

        self.model, self.dataset, self.cfg = model, dataset, config.validate()
        if rule is None:
            rule = make_rule("maximum-likelihood")
        if not isinstance(rule, LearningRule):
            raise ConfigError(f"rule must be a LearningRule (genlearn.learning.rules.make_rule), got {rule!r}")
        rule.check(model)
        #: the learning rule: how each batch's gradient is obtained, and its state
        self.rule = rule
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.run_meta = run_meta or {}
        self.callbacks = callbacks or []
        # the device (genlearn.learning.devices: model and data moved once) and, under torchrun, the data-parallel
        # side of this process (genlearn.learning.distributed)
        from genlearn.learning.devices import make_generator, move_dataset, resolve_device

        self.parallel = parallel
        self.device = parallel.device if parallel is not None else resolve_device(device)
        model.to(self.device)
        self.dataset = move_dataset(dataset, self.device)
        self.generator = make_generator(self.device, config.seed)
        torch.manual_seed(int(config.seed))
        from genlearn.learning import convergence

        convergence.check(self)  # L-BFGS, --tol, --rel-tol: what the rule and the batches allow
        self._fit_dtype = convergence.prepare_model(self)  # L-BFGS fits small models in float64
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ConfigError(f"model {model.name!r} has no parameters to learn")
        self.optimizer = make_optimizer(params, self.cfg)
        self._epoch_started: float | None = None
        self._epoch_lr: float | None = None  # the rate of the epoch being trained (its record's "lr")
        self.state = TrainState()
        if self.cfg.schedule == "geometric":
            self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._geometric_factor)
        elif self.cfg.schedule == "plateau":
            if dataset.valid is None:
                raise ConfigError("--schedule plateau lowers the rate when the validation NLL stops improving, and "
                                  "this data set has no validation split; give data with one or choose another "
                                  "schedule")
            self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _: self.state.lr_factor)
        else:
            self.schedule = make_schedule(self.optimizer, self.cfg)
        self.best_params: dict | None = None
        self._sampler = None
        from genlearn.data.empirical import empirical_entropy

        self.entropy_train = empirical_entropy(dataset.train, dataset.kind) if dataset.train_intensity is None else None
        if parallel is not None:
            parallel.attach(self)

    # -- one epoch -------------------------------------------------------------------------------------
    def _batches(self, x: torch.Tensor):
        m = x.shape[0]
        if self._full_batch(m):
            yield x
            return
        from genlearn.learning.batches import MinibatchSampler

        key = (id(x), x._version, self.cfg.batch_size)
        if self._sampler is None or self._sampler[0] != key:  # binary data is bit-packed once per training set
            self._sampler = (key, MinibatchSampler(x, self.cfg.batch_size))
        yield from self._sampler[1].batches(self.generator)

    def _folded_sgd_step(self):
        """The rule's sgd_step (rules.ContrastiveDivergence: its gradient and p <- p - lr g in one, the same
        parameters up to float32 summation order with fewer passes over W) where this epoch's steps are plain SGD
        (the optimizer's plain_rate) on all of the model's parameters in one process without --tol's gradient
        check; else None (compute_gradient, then the optimizer's step)."""
        fold = getattr(self.rule, "sgd_step", None)
        plain_rate = getattr(self.optimizer, "plain_rate", None)
        if fold is None or plain_rate is None or self.parallel is not None or self.cfg.tol is not None \
                or not self.rule.uses_optimizer or self.cfg.optimizer == "lbfgs" or plain_rate() is None:
            return None
        params = {id(p) for p in self.optimizer.param_groups[0]["params"]}
        return fold if params == {id(p) for p in self.model.parameters()} else None

    def _full_batch(self, m: int) -> bool:
        """True when an epoch over m rows is one batch of them all (gd, L-BFGS, no batch size or one >= m)."""
        return self.cfg.optimizer in ("gd", "lbfgs") or self.cfg.batch_size is None or self.cfg.batch_size >= m

    def _batch_orders(self, x: torch.Tensor):
        """The row numbers of x of each minibatch, in the order (and from the generator's draws) of `_batches`."""
        m = x.shape[0]
        if self._full_batch(m):
            yield torch.arange(m)
            return
        from genlearn.learning.batches import batch_orders

        yield from batch_orders(m, self.cfg.batch_size, self.generator)

    def _sgd_stepper(self, x: torch.Tensor):
        """With a folded SGD step (`_folded_sgd_step`) and a training matrix in the model's dtype on its device:
        the rule's sgd_stepper over this epoch (x read in place at each batch's row numbers, the per-batch checks
        made once: rules.ContrastiveDivergence.sgd_stepper), the same parameters as the folded step on the
        sampler's batches; else None."""
        stepper = getattr(self.rule, "sgd_stepper", None)
        params = list(self.model.parameters())
        if (stepper is None or x.ndim != 2 or not params or x.dtype != params[0].dtype
                or x.device != params[0].device):
            return None
        m = x.shape[0]
        return stepper(self.model, x, self.optimizer.param_groups[0]["lr"], m if self._full_batch(m)
                       else self.cfg.batch_size, self.generator)

    def _rows_of(self, batch: torch.Tensor) -> torch.Tensor:
        """0, 1, ..., B-1 (int64) for a batch of B rows, kept: the batch as its own source of rows."""
        rows = getattr(self, "_batch_rows", None)
        if rows is None or rows.shape[0] != batch.shape[0]:
            rows = self._batch_rows = torch.arange(batch.shape[0])
        return rows

    def train_epoch(self) -> float:
        """One pass of the learning rule over the training set (every minibatch, then the end-of-epoch hooks);
        returns the mean objective per example. `fit` calls it in its loop; benchmarks call it to time epochs."""
        self._epoch_started = time.perf_counter()
        self._epoch_lr = self.optimizer.param_groups[0]["lr"]
        self.model.train()
        # the epoch's start, or where a checkpoint stopped in it (a Ctrl-C: genlearn.learning.interrupt)
        progress = EpochProgress(self)
        x = self.dataset.redraw_train(self.generator)
        if not getattr(self, "_precision_settled", False):  # "auto" by timing the model's step (bfloat16 CPUs)
            self._precision_settled = True
            if self.cfg.optimizer != "lbfgs" and x.shape[0] > 0:
                if self.parallel is not None:  # decided on rank 0, the same on every rank
                    self.parallel.settle_auto_precision(self.model, self.rule, x, self.cfg.batch_size)
                else:
                    from genlearn.learning.model_precision import settle_auto_precision

                    settle_auto_precision(self.model, self.rule, x[: self.cfg.batch_size])
        losses, sizes = progress.losses, progress.sizes
        rule, step = self.rule, self.rule.uses_optimizer
        # data-parallel: this rank's share of each batch, gradients summed over ranks (learning.distributed)
        compute = rule.compute_gradient if self.parallel is None else self.parallel.compute_gradient
        from genlearn.learning import convergence

        fold = self._folded_sgd_step()
        stepper = self._sgd_stepper(x) if fold is not None else None
        # with a stepper the "batches" are row numbers of x, which the rule reads in place
        for batch in progress.batches(self._batches(x) if stepper is None else self._batch_orders(x), x.shape[0]):
            if self.cfg.optimizer == "lbfgs":  # its line search evaluates the objective itself
                loss = convergence.lbfgs_step(self, batch, compute)
            elif stepper is not None:  # the rule's gradient and the plain SGD update in one, on x[batch]
                loss = stepper(batch)
                self.optimizer._opt_called = True
            elif fold is not None:  # the rule's gradient and the plain SGD update in one
                loss = fold(self.model, batch, self._rows_of(batch), self.optimizer.param_groups[0]["lr"],
                            self.generator)
                self.optimizer._opt_called = True  # torch's mark of a step taken (its LR schedulers check it)
            else:
                self.optimizer.zero_grad(set_to_none=True)
                loss = compute(self.model, batch, self.generator)
                if step and not convergence.gradient_converged(self):  # converged (--tol): no step
                    self.optimizer.step()
            self.state.step += 1
            # no per-minibatch synchronisation: the values are summed once per epoch (a non-finite loss shows
            # there, and non-finite parameters are caught just below either way)
            losses.append(loss.detach())
            sizes.append(batch.shape[0])
            progress.after_batch()  # a stop request: the checkpoint of this point, then Interrupted
        count = sum(sizes)
        weights = torch.tensor(sizes, dtype=torch.float64)
        total = float(torch.dot(torch.stack(losses).double().cpu(), weights)) if losses else 0.0
        if not math.isfinite(total):
            bad = next(i for i, v in enumerate(losses) if not torch.isfinite(v))
            self._diverged(f"the loss became {losses[bad].item()}", step=self.state.step - len(losses) + bad + 1)
        for name, p in self.model.named_parameters():
            if not torch.isfinite(p).all():
                self._diverged(f"parameter {name!r} became non-finite")
        (rule if self.parallel is None else self.parallel).end_epoch(self.model, x)
        if step:  # a rule that sets the parameters itself (EM) has no use for the rate
            self.schedule.step()
        self._epoch_started = None
        convergence.end_epoch(self, total / max(count, 1))  # --rel-tol
        return total / max(count, 1)

    def _geometric_factor(self, epochs_done: int) -> float:
        """final_lr_fraction^p for the next epoch: p = elapsed training seconds / (60 max_minutes) when a time
        budget is set, else epochs_done / (epochs - 1); p is clipped to [0, 1]."""
        cfg = self.cfg
        if cfg.max_minutes is not None:
            seconds = self.state.train_seconds
            if self._epoch_started is not None:  # called at the end of an epoch, before train_seconds counts it
                seconds += time.perf_counter() - self._epoch_started
            progress = seconds / (60.0 * cfg.max_minutes)
        else:
            progress = epochs_done / max(cfg.epochs - 1, 1)
        return geometric_factor(cfg.final_lr_fraction, progress)

    def _out_of_time(self) -> bool:
        if self.cfg.max_minutes is not None and self.state.train_seconds >= 60 * self.cfg.max_minutes:
            self.state.out_of_time = True
        return self.state.out_of_time

    def _finished(self) -> bool:
        """True when the loop will not run another epoch (last epoch, early stop, or the time budget spent)."""
        over = self.cfg.max_minutes is not None and self.state.train_seconds >= 60 * self.cfg.max_minutes
        return self.state.epoch >= self.cfg.epochs or self.state.stopped_early or over or bool(self.state.converged)

    def _diverged(self, what: str, step: int | None = None):
        where = f"at epoch {self.state.epoch + 1}, step {self.state.step + 1 if step is None else step}"
        kept = (f"; the last good checkpoint (epoch {self.state.epoch}) is kept in {self.out_dir}"
                if self.out_dir is not None and self.state.epoch > 0 else "")
        start = f", --init-from {self.out_dir} starts from that checkpoint" if kept else ""
        first = (" (at the first step the initial parameters or the penalty may be at fault too: e.g. --init-std, "
                 "--weight-decay)" if self.state.epoch == 0 and (step or self.state.step + 1) <= 1 else "")
        raise NumericalError(f"training diverged: {what} {where}{kept}. Fit again with a smaller learning rate "
                             f"(--lr; --overwrite replaces this run{start}){first}")

    # -- monitoring ------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, mean_loss: float) -> dict:
        """The monitoring record of this epoch. The likelihood policy decides what is affordable every epoch
        (`genlearn.likelihood.monitors_exactly`): normalised models and energy models whose exact log Z is cheap
        get the exact train/valid NLL (nats per example) and train KL; other energy models the forward-AIS NLL
        when cfg.monitor_ais_steps is set (`_ais_nll`). `kl_true`: the KL to a known truth when it is exact
        (closed form or enumeration) or, for continuous models, estimated."""
        from genlearn.divergence import kl_divergence
        from genlearn.likelihood import mean_nll, monitors_exactly

        if self.parallel is not None:  # each rank its rows, sums and counts reduced
            mean_nll = self.parallel.sharded(mean_nll)
        from genlearn.models.base import LatentVariableModel

        self.model.eval()
        train, valid = self._monitored(self.dataset.train), self._monitored(self.dataset.valid)
        # "lr": the rate the epoch ran with (a schedule steps at the end of the epoch, before this record)
        lr = self._epoch_lr if self._epoch_lr is not None else self.optimizer.param_groups[0]["lr"]
        rec = {"epoch": self.state.epoch, "step": self.state.step, "lr": lr, "loss": mean_loss}
        if self.model.ensemble_size > 1 and not self.cfg.monitor_ensemble:
            k = rec["monitored_member"] = int(self.model.monitor_member)
            rec["train_nll_member"] = mean_nll(self.model, train, member=k)
            if valid is not None:
                rec["valid_nll_member"] = mean_nll(self.model, valid, member=k)
        elif monitors_exactly(self.model):
            rec["train_nll"] = mean_nll(self.model, train)
            if self.entropy_train is not None and train is self.dataset.train:
                rec["train_kl"] = rec["train_nll"] - self.entropy_train
            if valid is not None:
                rec["valid_nll"] = mean_nll(self.model, valid)
        elif isinstance(self.model, LatentVariableModel):
            rec.update(self._latent_monitor(train, valid))
        elif self.cfg.monitor_ais_steps is not None:
            rec.update(self._ais_nll())
        if self.dataset.truth is not None:
            rec.update(self._kl_true(kl_divergence))
        rec.update(self.rule.epoch_record())
        return rec

    def _latent_monitor(self, train, valid) -> dict:
        """-ELBO (nats per example) on the monitored train and valid rows, the upper bound -ELBO - H(Q^) of the
        train KL, and the valid importance-sampling NLL when cfg.monitor_is_samples is set (seeded: every epoch
        sees the same random numbers). A model without an encoder (a GAN's generator): the train/valid NLL by
        quadrature over z when latent_dim <= 2, else nothing."""
        from genlearn.likelihood import QUADRATURE_MAX_DIM, latent_monitor, latent_nll

        if not self.model.has_encoder:  # no ELBO: the quadrature NLL when the latent space is small, else nothing
            if self.model.latent_dim > QUADRATURE_MAX_DIM:
                return {}
            out = {"train_nll": latent_nll(self.model, train, "quadrature").value}
            if self.entropy_train is not None and train is self.dataset.train:
                out["train_kl"] = out["train_nll"] - self.entropy_train
            if valid is not None:
                out["valid_nll"] = latent_nll(self.model, valid, "quadrature").value
            return out
        out = {"train_neg_elbo": latent_monitor(self.model, train, seed=0)["neg_elbo"]}
        if self.entropy_train is not None and train is self.dataset.train:
            out["train_kl_upper"] = out["train_neg_elbo"] - self.entropy_train
        if valid is not None:
            res = latent_monitor(self.model, valid, self.cfg.monitor_is_samples, seed=1)
            out["valid_neg_elbo"] = res["neg_elbo"]
            if "nll_is" in res:
                out["valid_nll_is"] = res["nll_is"]
        return out

    def _kl_true(self, kl_divergence) -> dict:
        """{"kl_true": D_KL(truth || model)} (nats) for the monitoring record: a registered closed form, else exact
        enumeration when the state space has at most likelihood.MONITOR_KL_STATES states (2^24 states of a
        neural model would cost minutes every epoch) and, for a latent model scored by quadrature over z, at most
        MONITOR_QUADRATURE_TERMS (state, grid point) terms, else the estimate kl_divergence gives for continuous
        models; {} when none is affordable (the final metrics still report it)."""
        from genlearn.likelihood import (MONITOR_KL_STATES, MONITOR_QUADRATURE_TERMS, QUADRATURE_MAX_DIM,
                                         QUADRATURE_POINTS)
        from genlearn.models.base import LatentVariableModel

        truth = self.dataset.truth
        try:
            return {"kl_true": kl_divergence(truth, self.model, method="closed-form").value}
        except ConfigError:
            pass
        if truth.n_states is not None and truth.n_states > MONITOR_KL_STATES:
            return {}
        model = self.model
        if (truth.n_states is not None and isinstance(model, LatentVariableModel)
                and model.latent_dim <= QUADRATURE_MAX_DIM
                and truth.n_states * QUADRATURE_POINTS ** model.latent_dim > MONITOR_QUADRATURE_TERMS):
            return {}  # each state's log P(x) a quadrature over z: too slow for every epoch
        try:
            return {"kl_true": kl_divergence(truth, self.model).value}
        except IntractableError:
            return {}

    def _monitored(self, x):
        """The rows monitored during training: the first cfg.monitor_rows rows of x (all when None)."""
        if x is None or self.cfg.monitor_rows is None:
            return x
        return x[: self.cfg.monitor_rows]

    def _ais_nll(self) -> dict:
        """Train/valid NLL (nats per example) of an energy model too large for exact monitoring, mean F(x) + log Z
        with log Z from forward AIS through the likelihood policy (cfg.monitor_ais_steps temperatures, 100 chains,
        seeded by the epoch, no reverse run): recorded as log_z_ais, ais_ess, train_nll_ais, valid_nll_ais.
        Forward AIS under-estimates log Z on average, so these NLLs are optimistic. {} for a normalised model or
        one without an AIS estimator."""
        import warnings

        from genlearn.likelihood import log_partition, nll
        from genlearn.models.base import EnergyModel

        if not isinstance(self.model, EnergyModel):
            return {}
        try:
            with warnings.catch_warnings():  # a short monitoring schedule has a low ESS by design: it is recorded
                warnings.simplefilter("ignore")
                log_z = log_partition(self.model, "ais", steps=self.cfg.monitor_ais_steps, chains=100,
                                      seed=self.state.epoch, reverse=False)
        except (ConfigError, IntractableError):
            return {}
        out = {"log_z_ais": log_z.value, "ais_ess": log_z.details.get("ess_forward"),
               "train_nll_ais": nll(self.model, self._monitored(self.dataset.train), log_z=log_z).value}
        if self.dataset.valid is not None:
            out["valid_nll_ais"] = nll(self.model, self._monitored(self.dataset.valid), log_z=log_z).value
        return out

    def _early_stopping(self, rec: dict) -> None:
        valid = next((rec[k] for k in ("valid_nll", "valid_nll_member", "valid_nll_ais", "valid_nll_is",
                                       "valid_neg_elbo") if rec.get(k) is not None), None)
        if (self.cfg.patience is None and not self.cfg.keep_best and self.cfg.schedule != "plateau") or valid is None:
            return
        if self.state.best_valid is None or valid < self.state.best_valid - 1e-9:
            self.state.best_valid, self.state.best_epoch, self.state.bad_epochs = valid, rec["epoch"], 0
            self.state.plateau_count = 0
            self.best_params = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.state.bad_epochs += 1
            self._plateau_decay(rec)
            if self.cfg.patience is not None and self.state.bad_epochs >= self.cfg.patience:
                self.state.stopped_early = True

    def _plateau_decay(self, rec: dict) -> None:
        """Plateau schedule: after plateau_patience evaluations in a row without a better valid NLL, lr <- lr x
        gamma (not below lr x final_lr_fraction), from the next epoch on; the new rate goes in the record."""
        if self.cfg.schedule != "plateau":
            return
        self.state.plateau_count += 1
        floor = self.cfg.final_lr_fraction
        if self.state.plateau_count >= self.cfg.plateau_patience and self.state.lr_factor > floor:
            self.state.lr_factor = max(self.state.lr_factor * self.cfg.gamma, floor)
            self.state.plateau_count = 0
            for group in self.optimizer.param_groups:
                group["lr"] = self.cfg.lr * self.state.lr_factor
            rec["lr_decayed_to"] = self.cfg.lr * self.state.lr_factor

    # -- checkpoints -----------------------------------------------------------------------------------
    def checkpoint_tensors(self) -> tuple[dict, dict]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        opt_tensors, opt_meta = ckpt.flatten_optimizer_state(self.optimizer.state_dict())
        tensors.update(opt_tensors)
        tensors["rng.generator"] = self.generator.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        if self.best_params is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_params.items()})
        tensors.update({f"rule.{k}": v for k, v in self.rule.state_tensors().items()})
        meta = {**self.run_meta, "model_config": self.model.config(), "rule": self.rule.record(),
                "train_config": self.cfg.to_dict(),
                "state": asdict(self.state), "optimizer": opt_meta, "schedule": self.schedule.state_dict(),
                "epoch": self.state.epoch}
        meta["training_record"] = self.training_record()
        return tensors, meta

    def training_record(self) -> dict:
        """What the training steps decided and the final metrics record: the rule's describe() (e.g. the CD
        products' resolved precision) and the model's resolved matmul precision, over the record of the
        checkpoint this run resumed from (so that a --resume that only evaluates still records them)."""
        record = dict(self.run_meta.get("training_record") or {})
        record.update(self.rule.describe())
        record.update({key: getattr(self.model, attr) for key, attr in RESOLVED_PRECISION
                       if getattr(self.model, attr, None) is not None})
        return record

    def save(self, partial=None) -> None:
        """Write the checkpoint; `partial` (an EpochProgress): one taken in the middle of an epoch."""
        if self.out_dir is not None:
            if self.parallel is not None:  # the whole rule state (all ranks' chains) on every rank
                self.parallel.sync_state(self.rule)
            tensors, meta = self.checkpoint_tensors()
            if partial is not None:
                more, meta["partial_epoch"], seconds = partial.checkpoint()
                tensors.update(more)
                meta["state"]["train_seconds"] += seconds
            if self.parallel is None or self.parallel.is_writer:  # data-parallel: rank 0 writes
                ckpt.save_checkpoint(self.out_dir, tensors, meta)

    def restore(self, tensors: dict, meta: dict) -> None:
        """Continue exactly where a checkpoint stopped: parameters, the learning rule's state, optimizer, schedule,
        RNG, history. (A checkpoint of an earlier version, without a "rule" record, kept the rule's state in model
        buffers: genlearn.learning.legacy moves it to the rule.)"""
        from genlearn.learning.legacy import legacy_rule_state, rule_record

        saved = rule_record(meta)
        if saved["name"] != self.rule.name:
            raise ConfigError(f"the checkpoint was trained with the learning rule {saved['name']!r}, but this trainer "
                              f"has {self.rule.name!r}; resume with the recorded rule (rule_from_record)")
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        rule_state = {k[5:]: v for k, v in tensors.items() if k.startswith("rule.")}
        if "rule" not in meta:
            rule_state = legacy_rule_state(tensors)
        self.rule.load_state_tensors(rule_state)
        self.optimizer.load_state_dict(ckpt.unflatten_optimizer_state(tensors, meta["optimizer"]))
        sched = dict(meta["schedule"])
        self.schedule.load_state_dict(sched)
        from genlearn.learning.devices import restore_generator  # another device type's state: reseeded

        restore_generator(self.generator, tensors["rng.generator"], int(self.cfg.seed) + int(meta["epoch"] or 0))
        torch.set_rng_state(tensors["rng.torch"])
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        self.best_params = best or None
        self.state = TrainState(**meta["state"])
        self.partial_epoch = partial_from_checkpoint(tensors, meta)  # stopped in an epoch: finish it first
        self.state.out_of_time = False  # a resumed run gets the (possibly larger) budget of its new settings
        from genlearn.learning.convergence import after_restore

        after_restore(self)

    # -- the loop --------------------------------------------------------------------------------------
    def fit(self) -> TrainState:
        from tqdm.auto import tqdm

        if self.state.epoch == 0 and not self.state.history:
            self.state.history.append(self.evaluate(float("nan")))
        bar = tqdm(total=self.cfg.epochs, initial=self.state.epoch, desc=f"fit {self.model.name}", unit="epoch",
                   disable=None if self.cfg.progress and (self.parallel is None or self.parallel.is_writer)
                   else True, leave=False)  # None: off when not a terminal; torchrun: rank 0's bar alone
        # Ctrl-C: stop after the current minibatch with a checkpoint of that point (genlearn.learning.interrupt)
        self.stop = StopOnSignal(enabled=self.out_dir is not None and self.parallel is None)
        try:
            self.stop.__enter__()
            while self.state.epoch < self.cfg.epochs and not (self.state.stopped_early or self.state.converged
                                                              or self._out_of_time()):
                t0 = time.perf_counter()
                mean_loss = self.train_epoch()
                self.state.epoch += 1
                self.state.train_seconds += time.perf_counter() - t0
                on_cadence = self.state.epoch % self.cfg.eval_every == 0
                if on_cadence or self._finished():
                    rec = self.evaluate(mean_loss)
                    self.state.history.append(rec)
                    # the final record off the --eval-every cadence is the run's last figures only: early stopping,
                    # keep-best and the plateau rule see the evaluations a longer run would also make, so that
                    # `--resume --epochs N` continues as the uninterrupted run of N epochs
                    if on_cadence:
                        self._early_stopping(rec)
                    bar.set_postfix({k: f"{rec[k]:.4g}" for k in ("train_nll", "valid_nll", "train_nll_member",
                                                                     "valid_nll_member", "valid_neg_elbo",
                                                                     "valid_nll_is", "kl_true") if k in rec})
                else:
                    rec = {"epoch": self.state.epoch, "step": self.state.step, "loss": mean_loss}
                if self.state.epoch % self.cfg.checkpoint_every == 0 or self._finished() or self.stop.requested:
                    self.save()
                bar.update(1)
                for fn in self.callbacks:
                    fn(self, rec)
                if self.stop.requested:
                    raise Interrupted(f"stopped after epoch {self.state.epoch}; the checkpoint in {self.out_dir} "
                                      f"holds it: continue with `genlearn fit --resume {self.out_dir}`")
        finally:
            self.stop.__exit__()
            self.stop = None
            bar.close()
        if self.parallel is not None:
            self.parallel.sync_state(self.rule)
        if (self.state.stopped_early or self.cfg.keep_best) and self.best_params is not None:
            self.model.load_state_dict(self.best_params)
        from genlearn.learning.convergence import restore_dtype

        restore_dtype(self)  # an L-BFGS fit in float64 hands the model back in its dtype
        return self.state
