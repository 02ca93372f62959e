"""Data-parallel training on torch.distributed: one training run spread over N processes (`torchrun`).

    torchrun --nproc-per-node N -m genlearn fit FAMILY --data ... --batch-size B ...

Every process (rank r of N) holds the whole data set and the same model, generator and optimizer state. Per
minibatch of the global batch of B rows (the same permutation on every rank: the generators stay in step), rank
r computes the contiguous rows [s_r, s_r + B_r) of it (B_r = B // N, plus one for the first B % N ranks: a
deterministic split without padding), and the gradients are reduced so that every rank steps with the gradient
of the whole batch,

    g = sum_r (B_r / B) g_r,      g_r = gradient of the mean objective over rank r's rows,

by one all_reduce (sum) of the flattened gradients (explicit, not DistributedDataParallel: the RBM rules write
p.grad themselves, and one code path serves both kinds). Random numbers that belong to rows (the VAE's
reparameterisation noise, the Gibbs uniforms of CD/PCD) are drawn for all B rows (or all N persistent chains) on
every rank and sliced (genlearn.numerics.row_shard), so a run's random stream, and hence its parameters, do not
depend on the number of processes (up to the order of float32 sums). Per rule:

- autograd rules (maximum likelihood, ELBO/IWAE, Boltzmann moments, ...): the rule on the rank's rows, then the
  weighted gradient sum above;
- contrastive divergence: the data term on the rank's rows, the negatives on its share of the chains (PCD: the
  persistent chains are split across ranks; CD: the negatives of its rows), with row weights -1/B and 1/N so
  that the sum over ranks is the 1-process estimate; the chains are gathered before every checkpoint; its
  matmul precision is resolved once, on rank 0 as one process would (so an explicit "bfloat16" that the CPU
  would emulate runs float32) and broadcast, so that every rank runs its products alike (so is the "auto" of
  NADE, MADE and the VAE, by `settle_auto_precision`);
- EM: the E-step statistics N_k, S_ki, log-likelihood and count of the rank's rows, summed over ranks before
  the closed-form M-step (identical on every rank).

Rules whose random draws depend on the shard itself (the order-agnostic NADE's orderings stratified over the
batch, the f-GAN's samples) train correctly data-parallel but with other random numbers than one process; the
ranks' generators are realigned to rank 0's after every epoch, so the permutations stay common. The Boltzmann
machine's persistent chains (boltzmann-moments) do not depend on the batch: every rank runs them alike.

Only rank 0 writes checkpoints, metrics and plots. A checkpoint holds the full state (all chains), so a run
resumes with the same or another number of processes. Monitoring NLLs and the final evaluation are sharded
without padding (shard_bounds) and reduced exactly as float64 sums and counts (`sharded_mean_nll`;
genlearn.evaluation.evaluate(parallel=...)): every rank scores its contiguous rows of each split with the
family's per-row estimator (exact log P, free energies F, the importance-sampling estimates of a VAE with sums of
squares for the row spread, quadrature over z), so rank 0 writes the 1-process figures up to the order of the
sums. Importance sampling follows the 1-process chunks and draws each chunk's noise for all its rows (row_shard),
skipping the draws of the rows before the shard: its figures do not depend on the number of processes. Shared
quantities stay on rank 0, after the shards: log Z (exact enumeration or AIS), the entropy, the KL to a known
truth, AIS over z and BDMC. Backend: gloo on CPU, NCCL on CUDA."""
from __future__ import annotations

import datetime
import os
import sys

import torch
import torch.distributed as dist
from torch import Tensor

from genlearn.errors import ConfigError
from genlearn.learning.devices import resolve_device
from genlearn.numerics import row_shard, uniform_

#: the environment variables torchrun sets in every process
ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous share of n rows: n // W rows each, one more for the first n % W ranks
    (shares are disjoint, cover all rows, and differ in size by at most one; no padding)."""
    base, extra = divmod(int(n), int(world_size))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def env_world_size() -> int:
    """WORLD_SIZE of the torchrun environment (1 when not launched by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer; launch with torchrun") from None


class DataParallel:
    """The data-parallel side of one process: its rank among `world_size`, its device, and the reductions the
    Trainer calls instead of the rule's own `compute_gradient` / `end_epoch` (module docstring)."""

    def __init__(self, rank: int, world_size: int, device: torch.device):
        self.rank, self.world_size, self.device = int(rank), int(world_size), torch.device(device)
        self.rule = self.trainer = None

    # -- set-up -------------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, device=None, timeout_minutes: float = 30.0) -> tuple["DataParallel | None", torch.device]:
        """(DataParallel, device) when this process was launched by torchrun with WORLD_SIZE > 1, else
        (None, resolve_device(device)). Under torchrun "auto" and "cuda" mean cuda:LOCAL_RANK (one GPU per
        process); the process group is initialised with NCCL on CUDA, gloo otherwise."""
        world = env_world_size()
        if world <= 1:
            return None, resolve_device(device)
        missing = [k for k in ENV if k not in os.environ]
        if missing:
            raise ConfigError(f"WORLD_SIZE={world} but {', '.join(missing)} are not set; launch with torchrun "
                              "(torchrun --nproc-per-node N -m genlearn fit ...)")
        local = int(os.environ["LOCAL_RANK"])
        spec = "cpu" if device is None else str(device).lower()
        if spec in ("auto", "cuda") and torch.cuda.is_available():
            spec = f"cuda:{local % torch.cuda.device_count()}"
        dev = resolve_device(spec)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if dev.type not in ("cpu", "cuda"):
            raise ConfigError(f"data-parallel training runs on CPUs (gloo) or CUDA GPUs (NCCL), not {dev.type}")
        if not dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
        return cls(dist.get_rank(), dist.get_world_size(), dev), dev

    @property
    def is_writer(self) -> bool:
        """True on the rank that writes checkpoints, metrics and plots (rank 0)."""
        return self.rank == 0

    def attach(self, trainer) -> None:
        """Bind to the trainer's rule and generator and make every rank start from rank 0's parameters and
        buffers."""
        self.rule, self.trainer = trainer.rule, trainer
        with torch.no_grad():
            for t in list(trainer.model.parameters()) + list(trainer.model.buffers()):
                if t.is_floating_point() or t.dtype in (torch.int64, torch.int32, torch.uint8, torch.bool):
                    self._broadcast_(t.data)

    def barrier(self) -> None:
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    # -- collectives ------------------------------------------------------------------------------------
    def _comm(self, t: Tensor) -> Tensor:
        """t on the communication device (NCCL needs CUDA tensors, gloo takes CPU ones), contiguous (a parameter
        stored transposed, as the VAE's first encoder weight, is sent as a contiguous copy)."""
        want = self.device if self.device.type == "cuda" else torch.device("cpu")
        return t.to(want).contiguous()

    def all_reduce_(self, t: Tensor) -> Tensor:
        """Sum t over ranks in place."""
        c = self._comm(t)
        dist.all_reduce(c, op=dist.ReduceOp.SUM)
        if c is not t:
            t.copy_(c)
        return t

    def _broadcast_(self, t: Tensor) -> None:
        c = self._comm(t if t.dtype != torch.bool else t.to(torch.uint8))
        dist.broadcast(c, src=0)
        if c is not t:
            t.copy_(c)

    def broadcast_generator(self, generator: torch.Generator) -> None:
        """Give every rank rank 0's generator state."""
        state = generator.get_state()
        c = self._comm(state.clone())
        dist.broadcast(c, src=0)
        generator.set_state(c.cpu())

    # -- the trainer's hooks ----------------------------------------------------------------------------
    def shard(self, n: int) -> tuple[int, int]:
        return shard_bounds(n, self.rank, self.world_size)

    def compute_gradient(self, model, batch: Tensor, generator: torch.Generator) -> Tensor:
        """What rule.compute_gradient is in one process, over all ranks: p.grad = the gradient of the whole
        batch on every rank; returns the objective of the whole batch (nats per example)."""
        from genlearn.learning.rules import EM, ContrastiveDivergence

        rule = self.rule
        B = batch.shape[0]
        if isinstance(rule, ContrastiveDivergence):
            value = self._cd(model, batch, generator)
        else:
            start, stop = self.shard(B)
            if stop > start:
                with row_shard(start, stop, B):
                    value = rule.compute_gradient(model, batch[start:stop], generator).double() * ((stop - start) / B)
                if rule.uses_optimizer:
                    for p in model.parameters():
                        if p.grad is not None:
                            p.grad.mul_((stop - start) / B)
            else:  # fewer rows than ranks: this rank adds nothing
                value = torch.zeros((), dtype=torch.float64)
                if isinstance(rule, EM) and rule._stats is None:
                    from genlearn.learning.em import EMStats

                    rule._stats = EMStats.zeros(model.components, model.n_features, device=model.logits.device)
        if rule.uses_optimizer:
            self._reduce_grads(model)
        value = self.all_reduce_(value.detach().to(torch.float64).reshape(1))[0]
        if B < self.world_size:  # a rank without rows drew no random numbers: realign the generators
            self.broadcast_generator(generator)
        return value

    def end_epoch(self, model, train: Tensor) -> None:
        """EM: sum the epoch's E-step statistics over ranks, then the rule's M-step (the same on every rank);
        other rules: the rule's end_epoch (deterministic functions of the full training set)."""
        from genlearn.learning.rules import EM

        rule = self.rule
        if isinstance(rule, EM) and rule._stats is not None:
            s = rule._stats
            self.all_reduce_(s.mass)
            self.all_reduce_(s.sums)
            tail = self.all_reduce_(torch.tensor([s.log_lik, float(s.count)], dtype=torch.float64))
            s.log_lik, s.count = float(tail[0]), int(round(float(tail[1])))
        rule.end_epoch(model, train)
        # rules whose random draws depend on the shard's size (e.g. the order-agnostic NADE's stratified orderings)
        # leave the generators of the ranks in different states: rank 0's goes to all before the next epoch's
        # permutation (a no-op for the rules above, whose ranks draw alike)
        if self.trainer is not None:
            self.broadcast_generator(self.trainer.generator)

    def sync_state(self, rule) -> None:
        """Make the rule's state whole on every rank before it is checkpointed: PCD's chains and their hidden
        probabilities (each rank has advanced only its share) are assembled by a sum of zero-filled copies (exact:
        x + 0 = x)."""
        from genlearn.learning.rules import ContrastiveDivergence

        if isinstance(rule, ContrastiveDivergence) and rule.config.persistent and rule.chains is not None:
            start, stop = self.shard(rule.chains.shape[0])
            full = torch.zeros_like(rule.chains)
            full[start:stop] = rule.chains[start:stop]
            rule.chains.copy_(self.all_reduce_(full))
            if rule.chain_probs is not None:  # the chains' hidden probabilities, assembled the same way (exact)
                full = torch.zeros_like(rule.chain_probs)
                full[start:stop] = rule.chain_probs[start:stop]
                rule.chain_probs.copy_(self.all_reduce_(full))

    def sharded(self, mean_nll):
        """mean_nll (genlearn.likelihood.mean_nll, or any mean over rows such as mean_free_energy) over ranks: each
        rank sums over its contiguous rows, float64 sums and counts are all-reduced; the result equals the
        1-process mean up to float64 rounding."""
        def sharded_mean_nll(model, x, *args, **kwargs):
            return sharded_mean_nll_of(self, mean_nll, model, x, *args, **kwargs)

        return sharded_mean_nll

    # -- internals ----------------------------------------------------------------------------------------
    def _reduce_grads(self, model) -> None:
        """p.grad <- sum over ranks, one all_reduce per parameter dtype; a parameter without a gradient on any
        rank keeps p.grad = None (a flag per parameter travels with the buffer)."""
        groups: dict = {}
        for p in model.parameters():
            if p.requires_grad:
                groups.setdefault(p.dtype, []).append(p)
        for dtype, params in groups.items():
            parts = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), dtype=dtype, device=p.device)
                     for p in params]
            flags = torch.tensor([p.grad is not None for p in params], dtype=dtype, device=params[0].device)
            flat = self.all_reduce_(torch.cat(parts + [flags]))
            offset = 0
            for i, p in enumerate(params):
                n = p.numel()
                if flat[-len(params) + i] > 0:
                    g = flat[offset:offset + n].view_as(p)
                    if p.grad is None:
                        p.grad = torch.empty_like(p).copy_(g)  # the parameter's layout (the fused Adam needs it)
                    else:
                        p.grad.copy_(g)
                offset += n

    @torch.no_grad()
    def _cd(self, model, batch: Tensor, generator: torch.Generator) -> Tensor:
        """CD-k / PCD-k over ranks: this rank's data rows and its share of the negatives, with the uniforms of
        all negatives drawn (the 1-process draw) and its rows used; row weights -1/B, 1/N (cd_workspace totals)."""
        from genlearn.learning.rbm_gradients import cd_step, cd_workspace
        from genlearn.learning.rules import chain_probs_for, fresh_chain_probs

        rule = self.rule
        model.check_batch(batch)
        cfg = rule.config
        W, b, c = model.weight, model.visible_bias, model.hidden_bias
        B = batch.shape[0]
        start, stop = self.shard(B)
        x = batch[start:stop].to(W.dtype)
        chains = None
        if cfg.persistent:
            N = cfg.n_chains
            if rule.chains is None:  # the whole first batch's rows, cycled, as in one process
                rule.chains = batch.to(W.dtype)[torch.arange(N, device=batch.device) % B].clone()
            elif rule.chains.shape != (N, model.n_visible):
                raise ConfigError(f"the persistent chains have shape {tuple(rule.chains.shape)}, but the rule has "
                                  f"n_chains={N} for {model.n_visible} visible units")
            elif rule.chains.dtype != W.dtype or rule.chains.device != W.device:
                rule.chains = rule.chains.to(W)
            n_start, n_stop = self.shard(N)
            chains = rule.chains[n_start:n_stop]
            # the whole N x H, as in one process (computed for new chains); this rank reads its rows
            rule.chain_probs = chain_probs_for(rule.chain_probs, W, N)
            if rule.chain_probs is None:
                rule.chain_probs = fresh_chain_probs(rule.chains, W, c)
        else:
            N, n_start, n_stop = B, start, stop
        V, H = W.shape
        u = torch.empty(cfg.k, N, H + V, dtype=W.dtype, device=W.device)
        uniform_(u, generator)
        precision = self._cd_precision(rule, W, max(stop - start, n_stop - n_start), stop - start, x)
        rule._workspace = cd_workspace(rule._workspace, W, stop - start, n_stop - n_start, cfg.k, precision,
                                       totals=(B, N))
        probs = rule.chain_probs[n_start:n_stop] if cfg.persistent else None
        value, dW, db, dc, _ = cd_step(W, b, c, x, cfg.k, generator, rule._workspace, chains,
                                       uniforms=u[:, n_start:n_stop], chain_probs=probs)
        if cfg.persistent:  # this rank's rows of P(h | v~) for the next step (sync_state assembles all rows)
            rule.chain_probs[n_start:n_stop].copy_(rule._workspace["chain_probs"])
        W.grad, b.grad, c.grad = dW, db, dc
        return value.double()

    def settle_auto_precision(self, model, rule, x: Tensor, batch_size: int) -> None:
        """The "auto" precision of a model that resolves it itself (NADE, MADE, VAE) with float32 CPU parameters,
        the same on every rank: rank 0 settles it on its share of the first batch_size rows of x as one process
        would (genlearn.learning.model_precision: the step's timing where the product's picks bfloat16, else
        float32) and broadcasts the choice, which every rank fixes in its model; rank 0 keeps the measured
        speedup for its metrics."""
        params = list(model.parameters())
        if (getattr(model, "matmul_precision", None) != "auto" or getattr(model, "_matmul_resolution", None)
                is not None or not params or params[0].device.type != "cpu" or params[0].dtype != torch.float32):
            return
        from genlearn.learning.model_precision import settle_auto_precision

        choice = torch.zeros(1, dtype=torch.uint8)
        if self.rank == 0:
            start, stop = self.shard(min(batch_size, x.shape[0]))
            settle_auto_precision(model, rule, x[start:stop])
            resolution = getattr(model, "_matmul_resolution", None)
            choice[0] = int(resolution is not None and resolution[1] == "bfloat16")
        self._broadcast_(choice)
        model._matmul_resolution = (("cpu", "auto"), "bfloat16" if int(choice[0]) else "full")
        model.resolved_matmul_precision = model._matmul_resolution[1]

    def _cd_precision(self, rule, W: Tensor, rows: int, batch: int, x: Tensor) -> str:
        """The CD rule's matmul precision, the same on every rank: rank 0 resolves it at the first step as one
        process would, for its own shard's products (rule.resolved_precision: "auto" by the product's and then
        the step's timing; an explicit "bfloat16" that this CPU would emulate runs float32, said once), and
        broadcasts the choice, which every rank keeps in the rule (rank 0's run records it)."""
        if rule._precision is None or rule._precision[0] != W.device:
            choice = torch.zeros(1, dtype=torch.uint8)
            if self.rank == 0:
                choice[0] = int(rule.resolved_precision(W, rows, batch, lambda: x.mean().item()) == "bfloat16")
            self._broadcast_(choice)
            rule._precision = (W.device, rows, "bfloat16" if int(choice[0]) else "full")
        return rule._precision[2]


def free_port() -> int:
    """A TCP port free on localhost now (for MASTER_PORT of a local run)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _local_entry(local_rank: int, world_size: int, port: int, threads: int, fn, args) -> None:
    os.environ.update({"RANK": str(local_rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(world_size),
                       "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(threads)
    try:
        fn(*args)
    except BaseException:
        shutdown(synchronize=False)  # the other ranks may never reach a barrier
        raise
    # A normal end: wait for every rank, then leave without tearing gloo and the store down or running the
    # interpreter's teardown. Both raced with the other ranks' exits now and then and aborted a process that had
    # done all its work ("terminate called without an active exception", SIGABRT; seen under load, also with a
    # barrier before destroy_process_group). The operating system closes the sockets.
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_local(fn, world_size: int, *args, threads: int = 1, timeout_s: float | None = None) -> None:
    """Run fn(*args) in `world_size` new processes on this machine with the environment torchrun would give
    them (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free MASTER_PORT) and `threads` torch threads
    each; fn must be importable (module level). What torchrun --nproc-per-node does, from Python (tests,
    notebooks); an exception in a process is raised here."""
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ConfigError(f"world_size must be a positive integer, got {world_size!r}")
    ctx = mp.start_processes(_local_entry, args=(world_size, free_port(), threads, fn, args), nprocs=world_size,
                             join=False, start_method="spawn")
    while not ctx.join(timeout_s):
        pass


def shutdown(synchronize: bool = True) -> None:
    """Leave the process group, if this process is in one (after a data-parallel fit; harmless otherwise).
    synchronize (a normal end): a barrier first, so that no rank tears its gloo connections (and rank 0 the
    store) down while another still uses them (a race that aborts a process after its work, "terminate called
    without an active exception"). Processes of run_local do not come here on a normal end: they pass a barrier
    and exit without any teardown (_local_entry), which a barrier here alone did not make safe."""
    if dist.is_available() and dist.is_initialized():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def sharded_mean_nll_of(parallel: DataParallel, mean_nll, model, x: Tensor, *args, **kwargs) -> float:
    """-(1/M) sum_m log P(x_m) with rank r evaluating its contiguous rows (shard_bounds): the float64 sums
    -log P and the counts are all-reduced, so every rank gets the mean over all M rows."""
    m = x.shape[0]
    start, stop = parallel.shard(m)
    total = torch.zeros(2, dtype=torch.float64)
    if stop > start:
        total[0] = mean_nll(model, x[start:stop], *args, **kwargs) * (stop - start)
        total[1] = stop - start
    parallel.all_reduce_(total)
    return float(total[0] / total[1])


__all__ = ["DataParallel", "ENV", "env_world_size", "shard_bounds", "run_local", "sharded_mean_nll_of",
           "shutdown"]
