"""A fit killed at random moments (SIGKILL and SIGINT, 20 kills) and resumed each time ends with exactly the
parameters and learning curve of an uninterrupted run with the same seed (issue 16, items 5 and 8).

Each fit is its own process running `genlearn.cli.main`. Starting python and torch costs seconds on a loaded
machine, so the processes are forked from one "zygote" that has imported genlearn once: each fork is a fresh
process (own PID, killed by the signal itself), started in milliseconds (the zygote also skips the plots, which
take seconds to draw and are no part of what is resumed). The kill times are random (the seed is
printed), drawn so that they land anywhere in a run: while it starts, in the middle of an epoch (SIGINT then
writes a checkpoint of that minibatch), while a checkpoint is written, during the final evaluation and writes.
When a chain of lives finishes before the 20 kills are spent, it is checked and a new chain starts.

Also: a kill exactly between the two writes of a checkpoint (in-process: the JSON copy's write fails), and a
Ctrl-C while the real `genlearn` command is still importing (one line, exit 130, no traceback)."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import genlearn
from genlearn.learning import checkpoint as ckpt
from genlearn.learning.run_folder import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
KILLS = 20
DATA = "bars-and-stripes:size=3"
FIT_ARGS = ["--optimizer", "adam", "--lr", "0.01", "--batch-size", "32", "--seed", "3", "--quiet"]
EPOCHS = 25
#: seconds a forked fit takes to start (parse, data, checkpoint) on a loaded 2-core machine, about
STARTUP = 0.4

ZYGOTE = r"""
import json, os, signal, sys, traceback
import torch
import genlearn.cli, genlearn.runs, genlearn.evaluation
torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # its first use imports torch._dynamo: seconds
genlearn.runs.write_plots = lambda *args, **kwargs: None  # plots are not what is resumed; they take seconds
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    sys.stdout.flush(); sys.stderr.flush()
    # the log files exist before the pid is reported: a kill in the child's first instant leaves them empty
    files = [(fd, os.open(req[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
             for fd, name in ((1, "stdout"), (2, "stderr"))]
    pid = os.fork()
    if pid == 0:
        rc = 1
        try:
            for fd, opened in files:
                os.dup2(opened, fd)
            os.chdir(req["cwd"])
            rc = genlearn.cli.main(req["argv"])
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(rc if isinstance(rc, int) else 1)
    for _, opened in files:
        os.close(opened)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"exit": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class Zygote:
    def __init__(self):
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=ROOT)
        self.n = 0
        assert json.loads(self.proc.stdout.readline())["ready"]  # python, torch and genlearn imported, once

    def start(self, argv: list, logs: Path) -> tuple[int, Path]:
        self.n += 1
        err = logs / f"{self.n}.err"
        req = {"argv": [str(a) for a in argv], "stdout": str(logs / f"{self.n}.out"), "stderr": str(err),
               "cwd": str(ROOT)}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the zygote died"
        return json.loads(line)["pid"], err

    def wait(self) -> int:
        return json.loads(self.proc.stdout.readline())["exit"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


def _final(folder: Path) -> tuple[dict, list]:
    state = load_file(str(folder / "model.safetensors"))
    history = json.loads((folder / "metrics.json").read_text())["history"]
    return state, history


def _same_run(folder: Path, reference: tuple[dict, list]) -> None:
    state, history = _final(folder)
    ref_state, ref_history = reference
    assert state.keys() == ref_state.keys()
    for k in state:
        assert torch.equal(state[k], ref_state[k]), f"{folder}: parameter {k} differs from the uninterrupted run"
    assert history == ref_history, f"{folder}: the learning curve differs from the uninterrupted run"


def _checkpoint_epoch(folder: Path) -> int | None:
    if not (folder / "checkpoint.safetensors").exists():
        return None
    _, meta = read_checkpoint(folder)  # every checkpoint a kill leaves is readable and consistent
    return meta["epoch"]


def test_kill_and_resume_20_times(zygote, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    first = ["fit", "fvsbn", "--data", DATA, "--epochs", EPOCHS, *FIT_ARGS]
    t0 = time.perf_counter()
    pid, err = zygote.start([*first, "--out", tmp_path / "reference"], logs)
    assert zygote.wait() == 0, err.read_text()
    duration = time.perf_counter() - t0  # of one uninterrupted life, start to finish
    reference = _final(tmp_path / "reference")

    seed = random.randrange(10**6)
    rng = random.Random(seed)
    kills, outcomes, chains, folder = 0, [], 0, None
    while kills < KILLS:
        if folder is None:
            chains += 1
            folder = tmp_path / f"chain{chains}"
        epoch = _checkpoint_epoch(folder)
        argv = [*first, "--out", folder] if epoch is None else ["fit", "--resume", folder, "--quiet"]
        # anywhere in what is left of the run (its start-up included), at most a third of a whole run per life
        left = duration * (1.0 - (epoch or 0) / EPOCHS) + STARTUP
        delay = rng.uniform(0.0, min(1.1 * left, duration / 3))
        how = rng.choice([signal.SIGKILL, signal.SIGINT])
        pid, err = zygote.start(argv, logs)
        time.sleep(delay)
        try:
            os.kill(pid, how)
        except ProcessLookupError:
            pass
        code = zygote.wait()
        text = err.read_text()
        assert "Traceback" not in text, f"seed {seed}: {text}"
        if code == 0:  # the run finished before the signal: it must be the uninterrupted run
            outcomes.append("finished")
            _same_run(folder, reference)
            folder = None
            continue
        if how == signal.SIGKILL:
            assert code == -signal.SIGKILL, f"seed {seed}: exit {code}: {text}"
        else:
            assert code == 130, f"seed {seed}: SIGINT gave exit {code}: {text}"
            assert text.strip().splitlines()[-1].startswith("genlearn: interrupted"), text
        kills += 1
        where = "killed" if how == signal.SIGKILL else (
            "in-epoch" if "minibatch" in text else "epoch-end" if "stopped after epoch" in text else "other")
        outcomes.append(f"{how.name}@{delay:.2f}s:{where}")
        _checkpoint_epoch(folder)
    if folder is not None:  # the last chain: resumed to the end (started again if its kill came before a checkpoint)
        resume = ["fit", "--resume", folder, "--quiet"]
        argv = [*first, "--out", folder] if _checkpoint_epoch(folder) is None else resume
        pid, err = zygote.start(argv, logs)
        assert zygote.wait() == 0, err.read_text()
        _same_run(folder, reference)
    print(f"seed {seed}: {kills} kills in {chains} chain(s): {', '.join(outcomes)}")
    assert kills == KILLS


def test_kill_between_the_two_checkpoint_writes(tmp_path, monkeypatch):
    """checkpoint.safetensors of epoch 3 written, its JSON copy not (the process dies between the two writes):
    the checkpoint of epoch 3 is read (not a mix of 3 and 2) and the resumed run is the uninterrupted one."""
    kw = dict(epochs=5, optimizer="adam", lr=0.01, batch_size=32, seed=3, plots=False, progress=False)
    ref = genlearn.fit("fvsbn", DATA, out=tmp_path / "ref", **kw)

    class Killed(BaseException):
        pass

    original = ckpt.write_json

    def write_json(path, obj):
        if Path(path).name == ckpt.META and obj.get("epoch") == 3:
            raise Killed
        original(path, obj)

    monkeypatch.setattr(ckpt, "write_json", write_json)
    with pytest.raises(Killed):
        genlearn.fit("fvsbn", DATA, out=tmp_path / "torn", **kw)
    monkeypatch.undo()
    folder = tmp_path / "torn"
    assert json.loads((folder / ckpt.META).read_text())["epoch"] == 2
    _, meta = read_checkpoint(folder)
    assert meta["epoch"] == 3
    run = genlearn.fit(None, None, out=folder, resume=True, plots=False, progress=False)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, run.model.state_dict()[k]), k
    assert run.metrics["history"] == ref.metrics["history"]


def test_ctrl_c_while_starting(tmp_path):
    """A SIGINT while the `genlearn` command still imports: one line, exit 130, no traceback, nothing written."""
    exe = Path(sys.executable).parent / "genlearn"
    if not exe.exists():
        pytest.skip("the genlearn command is not installed beside this python")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = []
    for i, delay in enumerate((0.3, 0.6, 0.9, 1.2, 1.5, 1.8)):  # numpy, torch, sklearn imports, first epoch
        out = tmp_path / f"r{i}"
        p = subprocess.Popen([str(exe), "fit", "fvsbn", "--data", DATA, "--epochs", "1000", "--out", str(out)],
                             stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        procs.append((p, delay, out))
    start = time.perf_counter()
    for p, delay, _ in procs:
        time.sleep(max(0.0, start + delay - time.perf_counter()))
        p.send_signal(signal.SIGINT)
    for p, delay, out in procs:
        _, err = p.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        assert p.returncode == 130, (delay, err)
        assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("genlearn: interrupted"), err


def test_start_up_guard_covers_numpy_torch_and_family_imports():
    """torch swallows a KeyboardInterrupt raised while it imports numpy (leaving numpy half-imported, a
    RecursionError later: a CI failure seen once), so the command imports both before Ctrl-C becomes an exception."""
    code = ("import sys, signal\nsys.argv[0] = 'genlearn'\nimport genlearn\n"
            "assert signal.getsignal(signal.SIGINT) is genlearn._interrupted_at_start\n"
            "from genlearn import cli\nimport genlearn.cli\n"
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)\n"
            "cli._import_under_guard(['models'])\nassert 'numpy' in sys.modules and 'torch' not in sys.modules\n"
            "cli._import_under_guard(['fit', 'fvsbn'])\nassert 'torch' in sys.modules\n"
            # the families too: a Ctrl-C while a dataclass is built is a RuntimeError, not a KeyboardInterrupt
            "assert 'genlearn.models.made' in sys.modules and 'genlearn.models.vae' in sys.modules\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_gan_ctrl_c_mid_epoch_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    """The adversarial rule stops within one minibatch too: a real SIGINT in minibatch 3 of a warm-start epoch and
    in minibatch 5 of an adversarial epoch (a critic step, then a generator step: critic_steps=1) each leave a
    checkpoint of that point (both players' parameters, the optimizer, the rule's step counter and running epoch
    sums), and the resumed chain ends with the parameters and learning curve (the rule's epoch means included) of
    the uninterrupted run."""
    from genlearn.learning.adversarial import FGAN
    from genlearn.learning.interrupt import Interrupted

    kw = dict(latent="1", hidden="8", critic_hidden="8", warm_start_epochs=1, critic_steps=1, samples_per_z=3,
              epochs=3, lr=0.01, batch_size=60, seed=5, plots=False, progress=False)
    data = "bars-and-stripes:size=2,n=300"  # 5 minibatches an epoch
    ref = genlearn.fit("gan", data, out=tmp_path / "ref", **kw)
    folder = tmp_path / "chain"
    original, calls = FGAN.compute_gradient, []

    def compute_gradient(self, model, batch, generator):
        calls.append(None)
        if len(calls) in stops:  # Ctrl-C while this minibatch runs: the checkpoint is of its end
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, model, batch, generator)

    monkeypatch.setattr(FGAN, "compute_gradient", compute_gradient)
    stops = {3}  # epoch 1 (the warm start), minibatch 3 of 5
    with pytest.raises(Interrupted, match="minibatch 3 of 5"):
        genlearn.fit("gan", data, out=folder, **kw)
    tensors, meta = read_checkpoint(folder)
    assert meta["epoch"] == 0 and meta["partial_epoch"] == {"batches_done": 3, "batches": 5}
    assert tensors["rule.epoch_counts"].tolist() == [3, 0, 3, 3]  # critic, generator, bound, ELBO steps so far
    calls.clear()
    stops = {2 + 4}  # the rest of epoch 1 (2 minibatches), then minibatch 4 of the adversarial epoch 2
    with pytest.raises(Interrupted, match="minibatch 4 of 5"):
        genlearn.fit(None, None, out=folder, resume=True, plots=False, progress=False)
    tensors, meta = read_checkpoint(folder)
    assert meta["epoch"] == 1 and meta["partial_epoch"]["batches_done"] == 4
    assert int(tensors["rule.step"]) == 4 and tensors["rule.epoch_counts"].tolist() == [2, 2, 4, 0]
    monkeypatch.undo()
    run = genlearn.fit(None, None, out=folder, resume=True, plots=False, progress=False)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, run.model.state_dict()[k]), k
    assert run.metrics["history"] == ref.metrics["history"]
    assert "generator_loss" in run.metrics["history"][-1] and "neg_elbo" in run.metrics["history"][1]


def test_pcd_sgd_ctrl_c_mid_epoch_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    """PCD-1 with plain SGD, whose epochs go through the rule's sgd_stepper (rows read in place, the checks made
    once per run of full batches): a SIGINT in minibatch 4 of epoch 1 and in minibatch 2 of epoch 2 leave
    checkpoints of those points (the chains and their kept probabilities with them), and the resumed chain ends
    with the parameters, chains and learning curve of the uninterrupted run."""
    from genlearn.learning.interrupt import Interrupted
    from genlearn.learning.rules import ContrastiveDivergence

    kw = dict(hidden=6, gradient="pcd", n_chains=20, optimizer="sgd", lr=0.05, epochs=3, batch_size=50, seed=2,
              plots=False, progress=False)
    data = "bars-and-stripes:size=3,n=260"  # 6 minibatches an epoch, the last one short
    ref = genlearn.fit("rbm", data, out=tmp_path / "ref", **kw)
    folder = tmp_path / "chain"
    original, calls = ContrastiveDivergence.sgd_stepper, []

    def sgd_stepper(self, *args, **kwargs):
        step = original(self, *args, **kwargs)

        def interrupting(rows, rows_np=None):
            calls.append(None)
            if len(calls) in stops:  # Ctrl-C while this minibatch runs: the checkpoint is of its end
                os.kill(os.getpid(), signal.SIGINT)
            return step(rows, rows_np)

        return interrupting

    monkeypatch.setattr(ContrastiveDivergence, "sgd_stepper", sgd_stepper)
    stops = {4}
    with pytest.raises(Interrupted, match="minibatch 4 of 6"):
        genlearn.fit("rbm", data, out=folder, **kw)
    tensors, meta = read_checkpoint(folder)
    assert meta["epoch"] == 0 and meta["partial_epoch"] == {"batches_done": 4, "batches": 6}
    assert "rule.chain_probs" in tensors
    calls.clear()
    stops = {2 + 2}  # the rest of epoch 1 (2 minibatches), then minibatch 2 of epoch 2
    with pytest.raises(Interrupted, match="minibatch 2 of 6"):
        genlearn.fit(None, None, out=folder, resume=True, plots=False, progress=False)
    monkeypatch.undo()
    run = genlearn.fit(None, None, out=folder, resume=True, plots=False, progress=False)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, run.model.state_dict()[k]), k
    ref_state, run_state = read_checkpoint(tmp_path / "ref")[0], read_checkpoint(folder)[0]
    for key in ("rule.chains", "rule.chain_probs"):
        assert torch.equal(ref_state[key], run_state[key]), key
    assert run.metrics["history"] == ref.metrics["history"]
