"""Fits that run until they have converged: L-BFGS for full-batch fits with an exact objective, and the stopping
tests of the Trainer (`TrainConfig.tol`, `TrainConfig.rel_tol`), recorded as `converged` in the metrics.

Why L-BFGS. Maximum likelihood in an exponential family (a coin, a die, independent Bernoulli pixels, a fully
visible Boltzmann machine with its exact gradient) minimises a convex function of the natural parameters,
D_KL(Q^||P_theta) = log Z(theta) - theta . <T(x)>_Q^ - H(Q^), whose Hessian is the covariance of the sufficient
statistics T under P_theta: its scale depends on the data (p(1-p) for a coin, 1/sigma^2 for a Gaussian mean,
up to ~n^2/4 for a Boltzmann machine of n units), so a fixed gradient-descent rate is too small for one problem
and diverges on another. L-BFGS (Nocedal & Wright, ch. 7; `torch.optim.LBFGS`) builds a curvature model from
the last gradient differences and chooses every step length by a strong-Wolfe line search, so it needs no rate
(`lr` is the first trial step, 1 = the quasi-Newton step) and converges superlinearly near the optimum: a coin
in ~8 iterations, the 55-parameter Boltzmann machine of 10 units in ~80, where gradient descent at the old
default rate had not converged after 100 epochs. One Trainer epoch is one L-BFGS iteration (one full-batch
gradient plus the line search's evaluations), so the learning curve, checkpoints and `--resume` work as for
any optimizer. A line search compares objective values that differ by ~|g|^2 / h near the optimum (1e-12 nats
for |g| = 1e-7), below float32 resolution: models of at most `FLOAT64_MAX_PARAMS` parameters are therefore
fitted in float64 and handed back in their own dtype.

The stopping tests (checked every epoch; the maximum is `epochs`):
- `tol`: converged when the full-batch gradient at the current parameters has max_i |dD_KL/dtheta_i| <= tol
  (nats per example per unit of the parameter); those parameters are returned (no step is taken from them).
  Needs one batch per epoch (gd, lbfgs, or no --batch-size).
- `rel_tol`: converged when the training objective at the start of two consecutive epochs changed by at most
  rel_tol relative, |L_t - L_{t-1}| <= rel_tol |L_t|; for rules whose value is the exact objective at fixed
  parameters (EM's NLL before each M-step, the closed form, a full-batch exact gradient).
"""
from __future__ import annotations

import torch

from genlearn.errors import ConfigError

#: models up to this many parameters are fitted by L-BFGS in float64 (the line search needs the objective to
#: ~1e-15 relative); larger ones stay in their dtype
FLOAT64_MAX_PARAMS = 100_000
#: L-BFGS memory (pairs of gradient and step differences) and the most objective evaluations of one iteration
LBFGS_HISTORY = 50
LBFGS_MAX_EVALS = 25


class LBFGS(torch.optim.LBFGS):
    """`torch.optim.LBFGS`, one iteration per `step`, with a strong-Wolfe line search, whose state_dict holds
    tensors and plain numbers only (the memory's lists stacked into tensors), so that a checkpoint (safetensors +
    JSON) restores it exactly."""

    LISTS = ("old_dirs", "old_stps", "ro")

    def __init__(self, params, lr: float = 1.0, tolerance_grad: float = 0.0):
        super().__init__(params, lr=lr, max_iter=1, max_eval=LBFGS_MAX_EVALS, tolerance_grad=tolerance_grad,
                         tolerance_change=0.0, history_size=LBFGS_HISTORY, line_search_fn="strong_wolfe")

    def _gather_flat_grad(self):
        """The gradients as one vector in the parameters' logical (row-major) order, as torch's, but by reshape:
        a parameter stored transposed (MADE's and the VAE's input-major weights) has a gradient of its layout,
        which torch's view(-1) refuses."""
        return torch.cat([p.new_zeros(p.numel()) if p.grad is None else p.grad.to_dense().reshape(-1)
                          for p in self._params], 0)

    def state_dict(self) -> dict:
        sd = super().state_dict()
        packed = {}
        for idx, slots in sd["state"].items():
            out = {}
            for key, value in slots.items():
                if key == "al":  # scratch space of the two-loop recursion
                    continue
                if key in self.LISTS:
                    out[f"{key}_count"] = len(value)
                    if value:
                        out[key] = torch.stack([torch.as_tensor(v) for v in value]).clone()
                elif isinstance(value, torch.Tensor):
                    out[key] = value.detach().clone()
                else:
                    out[key] = value
            packed[idx] = out
        return {"state": packed, "param_groups": sd["param_groups"]}

    def load_state_dict(self, state_dict: dict) -> None:
        state = {}
        for idx, slots in state_dict["state"].items():
            slots = dict(slots)
            for key in self.LISTS:
                count = int(slots.pop(f"{key}_count", 0))
                stacked = slots.pop(key, None)
                slots[key] = [stacked[i].clone() for i in range(count)] if count else []
            state[idx] = slots
        super().load_state_dict({"state": state, "param_groups": state_dict["param_groups"]})


def make_lbfgs(params, cfg) -> LBFGS:
    """The L-BFGS optimizer of a TrainConfig: first trial step cfg.lr, and it takes no step from parameters whose
    gradient max-norm is at most cfg.tol (the same test the Trainer reports)."""
    if cfg.weight_decay:
        raise ConfigError("--weight-decay applies to gd, sgd, momentum and adam; L-BFGS minimises the objective as "
                          "it is (drop --weight-decay, or choose another --optimizer)")
    return LBFGS(params, lr=cfg.lr, tolerance_grad=0.0 if cfg.tol is None else float(cfg.tol))


def full_batch(cfg, n_rows: int) -> bool:
    """True when every epoch is one batch of all the training rows."""
    return cfg.optimizer in ("gd", "lbfgs") or cfg.batch_size is None or cfg.batch_size >= n_rows


def check(trainer) -> None:
    """ConfigError when the trainer's settings ask for something its rule or batches cannot give: L-BFGS or
    --tol with minibatches, L-BFGS or --rel-tol with a rule whose value is not its exact objective, --tol with a
    rule that takes no gradient steps."""
    cfg, rule, model = trainer.cfg, trainer.rule, trainer.model
    whole = full_batch(cfg, trainer.dataset.train.shape[0])
    exact = rule.exact_objective(model)
    if cfg.optimizer == "lbfgs":
        if cfg.batch_size is not None and cfg.batch_size < trainer.dataset.train.shape[0]:
            raise ConfigError("L-BFGS is a full-batch method: drop --batch-size (or choose --optimizer sgd, "
                              "momentum or adam for minibatches)")
        if getattr(trainer, "parallel", None) is not None:
            raise ConfigError("--optimizer lbfgs runs in one process (its line search needs the whole objective); "
                              "run it without torchrun, or choose sgd, momentum or adam")
        if not rule.uses_optimizer or not exact:
            raise ConfigError(f"--optimizer lbfgs needs the exact objective and its gradient (its line search compares "
                              f"values), which the learning rule {rule.name!r} does not give for "
                              f"{model.name!r}; use gd, sgd, momentum or adam")
    if cfg.tol is not None:
        if not rule.uses_optimizer:
            raise ConfigError(f"--tol is a tolerance on the gradient; the learning rule {rule.name!r} takes no "
                              "gradient steps: use --rel-tol (relative change of the objective per epoch)")
        if not whole:
            raise ConfigError(f"--tol tests the full-batch gradient: it needs one batch per epoch, and this fit "
                              f"takes batches of {cfg.batch_size} rows (the family's default or yours: give "
                              "--optimizer gd or lbfgs, or a --batch-size of at least the training rows)")
    if cfg.rel_tol is not None and not (exact and (whole or not rule.uses_optimizer)):
        raise ConfigError(f"--rel-tol compares the exact objective between epochs; the learning rule {rule.name!r} "
                          f"with these batches does not give it for {model.name!r} (use full-batch epochs and an "
                          "exact gradient, or a fixed number of --epochs)")


def prepare_model(trainer):
    """Cast a small model to float64 for an L-BFGS fit (see the module docstring); returns the dtype to hand it
    back in (None when nothing was cast)."""
    model = trainer.model
    params = list(model.parameters())
    if trainer.cfg.optimizer != "lbfgs" or sum(p.numel() for p in params) > FLOAT64_MAX_PARAMS:
        return None
    dtype = params[0].dtype
    if not dtype.is_floating_point or dtype == torch.float64:
        return None
    model.to(torch.float64)
    return dtype


def restore_dtype(trainer) -> None:
    """Hand the model back in the dtype it had before an L-BFGS fit cast it to float64 (after `fit`)."""
    dtype = getattr(trainer, "_fit_dtype", None)
    if dtype is not None:
        trainer.model.to(dtype)


def _gradient_max_norm(model) -> float:
    norms = [p.grad.detach().abs().max() for p in model.parameters() if p.grad is not None and p.grad.numel()]
    return float(torch.stack(norms).max()) if norms else 0.0


def _record_gradient(trainer, value: float) -> bool:
    """Record max|g| of the epoch; True (and state.converged) when it is at most cfg.tol."""
    cfg, state = trainer.cfg, trainer.state
    if cfg.tol is None:
        return False
    done = value <= cfg.tol
    state.converged = done
    previous = (state.convergence or {}).get("objective")  # the relative-change test's, when --rel-tol is set too
    state.convergence = {"criterion": "gradient", "test": f"max_i |dD_KL/dtheta_i| <= {cfg.tol:g}",
                         "tol": cfg.tol, "value": value, "epoch": state.epoch + 1 if done else None,
                         **({"objective": previous} if previous is not None else {})}
    return done


def gradient_converged(trainer) -> bool:
    """After a full batch's gradient is written (gd, sgd, momentum, adam): record its max-norm and say whether the
    step can be skipped because the parameters have converged (cfg.tol)."""
    if trainer.cfg.tol is None:
        return False
    return _record_gradient(trainer, _gradient_max_norm(trainer.model))


def lbfgs_step(trainer, batch, compute):
    """One L-BFGS iteration on `batch` (the whole training set); `compute(model, batch, generator)` writes the
    gradient and returns the objective (the rule's compute_gradient). Returns the objective at the start."""
    opt, model = trainer.optimizer, trainer.model
    if getattr(trainer, "_fit_dtype", None) is not None and next(model.parameters()).dtype != torch.float64:
        model.to(torch.float64)  # a second fit() (or train_epoch) after fit() handed the model back
    first: list = []

    def closure():
        opt.zero_grad(set_to_none=True)
        value = compute(model, batch, trainer.generator)
        if not first:
            first.append(value.detach())
            _record_gradient(trainer, _gradient_max_norm(model))
        return value

    opt.step(closure)
    return first[0]


def end_epoch(trainer, mean_loss: float) -> None:
    """After an epoch: the relative-change test (cfg.rel_tol) on the objective at the start of this epoch and of
    the one before (kept in state.convergence, so that a resumed run continues the test)."""
    cfg, state = trainer.cfg, trainer.state
    if cfg.rel_tol is None or state.converged:
        return
    previous = (state.convergence or {}).get("objective")
    record = {"criterion": "relative change", "test": f"|L_t - L_(t-1)| / |L_t| <= {cfg.rel_tol:g} (L: the "
              "training objective at the start of an epoch)", "tol": cfg.rel_tol, "value": None, "epoch": None,
              "objective": mean_loss}
    if previous is not None:
        record["value"] = abs(mean_loss - previous) / max(abs(mean_loss), 1e-300)
        if record["value"] <= cfg.rel_tol:
            record["epoch"] = state.epoch + 1
    state.converged = record["epoch"] is not None
    state.convergence = record


def after_restore(trainer) -> None:
    """A resumed run keeps its convergence record only under the same tolerance (a smaller one trains on)."""
    state, cfg = trainer.state, trainer.cfg
    record = state.convergence or {}
    wanted = cfg.tol if record.get("criterion") == "gradient" else cfg.rel_tol
    if state.converged and record.get("tol") != wanted:
        state.converged = False


def metrics(trainer) -> dict:
    """{"converged": true/false (null without a tolerance), "convergence": the test, its last value and the
    epoch it was met} for metrics.json."""
    state, cfg = trainer.state, trainer.cfg
    if cfg.tol is None and cfg.rel_tol is None:
        return {"converged": None}
    out = {"converged": bool(state.converged)}
    record = dict(state.convergence or {})
    if not record:
        record = {"criterion": "gradient" if cfg.tol is not None else "relative change", "value": None}
    record["max_epochs"] = cfg.epochs
    out["convergence"] = record
    return out


__all__ = ["FLOAT64_MAX_PARAMS", "LBFGS", "after_restore", "check", "end_epoch", "full_batch", "gradient_converged",
           "lbfgs_step", "make_lbfgs", "metrics", "prepare_model", "restore_dtype"]
