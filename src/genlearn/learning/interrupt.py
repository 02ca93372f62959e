"""Ctrl-C during a fit: stop within one minibatch, write a checkpoint of that exact point, and exit (code 130).

While `Trainer.fit` runs with a run folder (in the main thread, not data-parallel) the first SIGINT only sets a
flag (`StopOnSignal`); the trainer looks at it after every minibatch. Rules whose whole state between two
minibatches is in their state tensors (`LearningRule.resumes_mid_epoch`) stop there: the checkpoint then holds
the parameters, optimizer and RNG after minibatch k of the epoch, plus what is needed to finish that epoch
exactly as an uninterrupted run would (`EpochProgress`: the generator's state at the epoch's start, from which
the training rows and the minibatch order are drawn again, and the losses of the k minibatches). Other rules (EM,
whose statistics span the epoch) stop at the end of the epoch. Either way
`genlearn fit --resume DIR` continues to the very parameters an uninterrupted run reaches. A second SIGINT
raises KeyboardInterrupt at once (the last checkpoint stays intact)."""
from __future__ import annotations

import math
import signal
import threading
import time

import torch


class Interrupted(KeyboardInterrupt):
    """Raised by Trainer.fit after a SIGINT, once the checkpoint of the point it stopped at is written."""


class StopOnSignal:
    """While active: the first SIGINT sets `requested`, a second raises KeyboardInterrupt (main thread only;
    elsewhere, or when not enabled, nothing changes)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt("stopped at once (a second Ctrl-C); the last checkpoint written is intact: "
                                    "`genlearn fit --resume DIR` continues from it")
        self.requested = True

    def __enter__(self) -> "StopOnSignal":
        if self.enabled:
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.SIG_DFL)


def n_batches(trainer, m: int) -> int:
    """The number of minibatches of an epoch over m rows (Trainer._batches: one for gd or a batch >= m)."""
    cfg = trainer.cfg
    if cfg.optimizer == "gd" or cfg.batch_size is None or cfg.batch_size >= m:
        return 1
    return math.ceil(m / cfg.batch_size)


class EpochProgress:
    """Where the current epoch is: the generator's state at its start, the minibatches done and their losses.
    `start` begins an epoch, or the rest of one a checkpoint stopped in (Trainer.restore sets
    trainer.partial_epoch)."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.t0 = time.perf_counter()
        partial = getattr(trainer, "partial_epoch", None)
        trainer.partial_epoch = None
        self.losses: list = []
        self.sizes: list = []
        self.skip = 0
        self.resume_state = None
        if partial is None:
            self.start_state = trainer.generator.get_state()
        else:  # replay the epoch's draws up to where it stopped, then continue from the checkpoint's state
            self.start_state = partial["generator"]
            self.resume_state = trainer.generator.get_state()
            trainer.generator.set_state(self.start_state)
            self.skip = int(partial["batches_done"])
            self.losses = list(partial["losses"].unbind()) if partial["losses"].numel() else []
            self.sizes = [int(s) for s in partial["sizes"].tolist()]
        self.done = self.skip
        self.total = None

    def batches(self, iterator, m: int):
        """The epoch's minibatches from `iterator`, without those a resumed checkpoint had done (their draws are
        replayed so that the rest come in the same order)."""
        self.total = n_batches(self.trainer, m)
        iterator = iter(iterator)
        for _ in range(self.skip):
            next(iterator)
        if self.resume_state is not None:
            self.trainer.generator.set_state(self.resume_state)
        yield from iterator

    def after_batch(self) -> None:
        """After each minibatch: on a stop request, when the rule can resume here and minibatches remain, write
        the checkpoint of this point and raise Interrupted."""
        self.done += 1
        trainer = self.trainer
        stop = getattr(trainer, "stop", None)
        if (stop is None or not stop.requested or self.total is None or self.done >= self.total
                or not trainer.rule.resumes_mid_epoch):
            return
        trainer.save(partial=self)
        raise Interrupted(f"stopped in epoch {trainer.state.epoch + 1} after minibatch {self.done} of {self.total}; "
                          f"the checkpoint in {trainer.out_dir} holds that point: continue with "
                          f"`genlearn fit --resume {trainer.out_dir}`")

    def checkpoint(self) -> tuple[dict, dict, float]:
        """(tensors, meta entry, seconds spent) of a checkpoint taken in the middle of this epoch."""
        losses = torch.stack([v.detach().cpu() for v in self.losses]) if self.losses else torch.zeros(0)
        tensors = {"partial.generator": self.start_state.cpu(), "partial.losses": losses,
                   "partial.sizes": torch.tensor(self.sizes, dtype=torch.int64)}
        return tensors, {"batches_done": self.done, "batches": self.total}, time.perf_counter() - self.t0


def partial_from_checkpoint(tensors: dict, meta: dict) -> dict | None:
    """What EpochProgress needs to finish the epoch a checkpoint stopped in; None for an epoch-end checkpoint."""
    info = meta.get("partial_epoch")
    if not info:
        return None
    return {"generator": tensors["partial.generator"], "losses": tensors["partial.losses"],
            "sizes": tensors["partial.sizes"], "batches_done": int(info["batches_done"])}
