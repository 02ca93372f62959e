"""Run folders validated when read, and kept consistent while written (issue 16, items 3 and 5).

Each damaged or foreign file of a run folder gives exit code 2 and ONE line `genlearn: error: ...` naming the file
(no traceback), for `genlearn eval`, `genlearn sample` and `genlearn fit --resume`, and says what still works.
Beside those: the checkpoint is one file (its JSON copy may be stale or absent), `--resume --data OTHER` is refused,
`--overwrite` leaves no file of the old run beside the new one, one writer per folder (lock with the holder's
PID; a stale lock is taken over), an unfinished folder is evaluated from its checkpoint and says so, files follow
the umask, and a full disk is one error that leaves the previous checkpoint intact. The CLI runs in-process."""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import genlearn
from genlearn.cli import main
from genlearn.errors import ConfigError, RunError
from genlearn.learning import checkpoint as ckpt
from genlearn.learning.lock import LOCK_FILE, RunLock, holder
from genlearn.learning.run_folder import META_KEY, read_header

DATA = "coin:p=0.3,n=200"
FIT = dict(epochs=2, plots=False, progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs of different families on the same data, and a second run of the first family."""
    root = tmp_path_factory.mktemp("runs")
    genlearn.fit("product-bernoulli", DATA, out=root / "pb", **FIT)
    genlearn.fit("mixture", DATA, out=root / "mix", components=2, **FIT)
    genlearn.fit("product-bernoulli", DATA, out=root / "pb2", seed=1, **FIT)
    return root


def _copy(runs: Path, tmp_path: Path, name: str = "pb") -> Path:
    target = tmp_path / name
    shutil.copytree(runs / name, target)
    return target


def cli(argv, capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error(rc: int, err: str, *needles: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, f"exit {rc}, stderr:\n{err}"
    assert len(lines) == 1 and lines[0].startswith("genlearn: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj))


# -- each damaged or foreign file: one line, exit 2, naming the file --------------------------------------------
def _damage_truncated_model(d, runs):
    _truncate(d / "model.safetensors")
    return "model.safetensors", "--resume"


def _damage_truncated_checkpoint(d, runs):
    _truncate(d / "checkpoint.safetensors", 0.9)
    return "checkpoint.safetensors", "final model"


def _damage_empty_checkpoint(d, runs):
    (d / "checkpoint.safetensors").write_bytes(b"")
    return "checkpoint.safetensors", "0 bytes"


def _damage_random_model(d, runs):
    (d / "model.safetensors").write_bytes(os.urandom(300))
    return "model.safetensors", "damaged"


def _damage_model_of_other_family(d, runs):
    shutil.copy(runs / "mix" / "model.safetensors", d / "model.safetensors")
    return "model.safetensors", "another model or run"


def _damage_checkpoint_of_other_family(d, runs):
    shutil.copy(runs / "mix" / "checkpoint.safetensors", d / "checkpoint.safetensors")
    return "checkpoint.json", "another run"


def _damage_checkpoint_of_other_run(d, runs):  # same family, other run: the run ids differ
    shutil.copy(runs / "pb2" / "checkpoint.safetensors", d / "checkpoint.safetensors")
    (d / "checkpoint.json").unlink()
    return "model.safetensors", "another run"


def _damage_metrics_of_other_run(d, runs):
    shutil.copy(runs / "pb2" / "metrics.json", d / "metrics.json")
    return "metrics.json", "another run"


def _damage_meta_without_model(d, runs):
    meta = json.loads((d / "checkpoint.json").read_text())
    del meta["model"]
    _write_json(d / "checkpoint.json", meta)
    return "checkpoint.json", "delete checkpoint.json"


def _damage_meta_is_list(d, runs):
    _write_json(d / "checkpoint.json", [1, 2, 3])
    return "checkpoint.json", "JSON list"


def _damage_metrics_is_list(d, runs):
    _write_json(d / "metrics.json", [1, 2])
    return "metrics.json", "JSON list"


def _damage_metrics_not_json(d, runs):
    (d / "metrics.json").write_text('{"test_nll": 0.6,')
    return "metrics.json", "not valid JSON"


def _damage_metrics_history_not_list(d, runs):
    metrics = json.loads((d / "metrics.json").read_text())
    metrics["history"] = 3
    _write_json(d / "metrics.json", metrics)
    return "metrics.json", "'history'"


def _published(d):
    """A published run's layout: checkpoint.json and model.safetensors only (benchmarks/models)."""
    (d / "checkpoint.safetensors").unlink()


def _damage_published_meta_without_model(d, runs):
    _published(d)
    meta = json.loads((d / "checkpoint.json").read_text())
    del meta["model"]
    _write_json(d / "checkpoint.json", meta)
    return "checkpoint.json", "no 'model'"


def _damage_published_unknown_family(d, runs):
    _published(d)
    meta = json.loads((d / "checkpoint.json").read_text())
    meta["model"] = "no-such-family"
    _write_json(d / "checkpoint.json", meta)
    return "checkpoint.json", "no-such-family"


def _damage_published_bad_config(d, runs):
    _published(d)
    meta = json.loads((d / "checkpoint.json").read_text())
    meta["model_config"] = {"n_features": "abc"}
    _write_json(d / "checkpoint.json", meta)
    return "checkpoint.json", "model_config"


def _damage_published_model_config_list(d, runs):
    _published(d)
    meta = json.loads((d / "checkpoint.json").read_text())
    meta["model_config"] = [1]
    _write_json(d / "checkpoint.json", meta)
    return "checkpoint.json", "'model_config' is a list"


def _damage_embedded_json(d, runs):  # a checkpoint whose header JSON is cut (written by hand)
    tensors = load_file(str(d / "checkpoint.safetensors"))
    save_file(tensors, str(d / "checkpoint.safetensors"), metadata={META_KEY: '{"model": "product-'})
    return "checkpoint.safetensors", "JSON in its header"


def _damage_checkpoint_wrong_shape(d, runs):
    tensors = load_file(str(d / "checkpoint.safetensors"))
    _, metadata = read_header(d / "checkpoint.safetensors")
    name = next(k for k in tensors if k.startswith("model."))
    tensors[name] = torch.zeros(7, 3)
    save_file(tensors, str(d / "checkpoint.safetensors"), metadata=metadata)
    return "checkpoint.safetensors", "has shape [7, 3]"


DAMAGES = [f for name, f in sorted(globals().items()) if name.startswith("_damage_")]


@pytest.mark.parametrize("damage", DAMAGES, ids=[f.__name__[8:] for f in DAMAGES])
@pytest.mark.parametrize("command", ["eval", "sample"])
def test_damaged_file_is_one_error(runs, tmp_path, capsys, damage, command):
    d = _copy(runs, tmp_path)
    name, needle = damage(d, runs)
    rc, out, err = cli([command, d], capsys)
    line = _one_error(rc, err, name, needle)
    assert "what still works" in line or "nothing in it" in line or "cannot be built" in line, line


@pytest.mark.parametrize("damage", [_damage_truncated_checkpoint, _damage_empty_checkpoint,
                                    _damage_checkpoint_wrong_shape, _damage_truncated_model],
                         ids=lambda f: f.__name__[8:])
def test_resume_of_damaged_run_says_what_still_works(runs, tmp_path, capsys, damage):
    d = _copy(runs, tmp_path)
    name, _ = damage(d, runs)
    if name == "model.safetensors":  # the checkpoint is intact: --resume repairs the final model and metrics
        rc, out, err = cli(["fit", "--resume", d, "--quiet"], capsys)
        assert rc == 0, err
        assert genlearn.load_run(d).finished
        return
    rc, out, err = cli(["fit", "--resume", d, "--quiet"], capsys)
    _one_error(rc, err, "checkpoint.safetensors", "what still works: the final model (model.safetensors) is intact")


def test_legacy_torn_pair_is_refused(runs, tmp_path):
    """A folder of an earlier version whose two files are of different epochs (a kill between its two writes)."""
    d = _copy(runs, tmp_path)
    meta = json.loads((d / "checkpoint.json").read_text())
    tensors = load_file(str(d / "checkpoint.safetensors"))
    save_file(tensors, str(d / "checkpoint.safetensors"), metadata={"epoch": str(meta["epoch"] + 1)})
    with pytest.raises(RunError, match="torn"):
        genlearn.fit(None, None, out=d, resume=True, plots=False, progress=False)


# -- the checkpoint is one file -----------------------------------------------------------------------------------
def test_checkpoint_json_is_a_copy(runs, tmp_path, capsys):
    """Without checkpoint.json, or with one a checkpoint behind (a kill between the two writes), the run still
    loads and resumes from checkpoint.safetensors alone."""
    d = _copy(runs, tmp_path)
    meta = json.loads((d / "checkpoint.json").read_text())
    stale = dict(meta, epoch=meta["epoch"] - 1)
    _write_json(d / "checkpoint.json", stale)
    assert genlearn.load_run(d).finished
    (d / "checkpoint.json").unlink()
    rc, out, err = cli(["eval", d], capsys)
    assert rc == 0, err
    run = genlearn.fit(None, None, out=d, resume=True, epochs=3, plots=False, progress=False)
    assert run.metrics["epochs_run"] == 3
    assert json.loads((d / "checkpoint.json").read_text())["epoch"] == 3


def test_old_run_folders_still_load():
    roots = [Path(__file__).parent / "fixtures" / "legacy_runs", Path(__file__).parents[1] / "benchmarks" / "models"]
    folders = [p for root in roots if root.is_dir() for p in sorted(root.iterdir()) if (p / "checkpoint.json").exists()]
    assert len(folders) >= 6
    for folder in folders:
        run = genlearn.load_run(folder)
        assert run.finished, folder


# -- resume, overwrite, lock, unfinished runs ---------------------------------------------------------------------
def test_resume_with_other_data_is_refused(runs, tmp_path, capsys):
    d = _copy(runs, tmp_path)
    rc, out, err = cli(["fit", "--resume", d, "--data", "coin:p=0.7,n=200", "--epochs", "3"], capsys)
    _one_error(rc, err, "coin:p=0.7,n=200", "not the data")
    with pytest.raises(ConfigError, match="not the data"):
        genlearn.fit(None, genlearn.load_dataset("coin:p=0.3,n=201"), out=d, resume=True, epochs=3)
    # the same data under another spelling are the same data
    run = genlearn.fit(None, "coin:n=200,p=0.3", out=d, resume=True, epochs=3, plots=False, progress=False)
    assert run.metrics["epochs_run"] == 3


def test_overwrite_supersedes_the_old_run(runs, tmp_path, monkeypatch, capsys):
    """An --overwrite interrupted after its first checkpoint leaves no model.safetensors / metrics.json of the old
    run beside it: eval sees the new, unfinished run (not the old metrics, no crash on other shapes)."""
    from genlearn.learning import trainer as trainer_mod

    d = _copy(runs, tmp_path, "mix")
    original = trainer_mod.Trainer.save

    def save_then_die(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise KeyboardInterrupt  # as if killed right after the new run's first checkpoint

    monkeypatch.setattr(trainer_mod.Trainer, "save", save_then_die)
    rc, out, err = cli(["fit", "product-bernoulli", "--data", DATA, "--out", d, "--overwrite", "--epochs", "3",
                        "--quiet"], capsys)
    assert rc == 130 and "Traceback" not in err
    monkeypatch.undo()
    assert sorted(p.name for p in d.iterdir()) == ["checkpoint.json", "checkpoint.safetensors"]
    rc, out, err = cli(["eval", d], capsys)
    assert rc == 0, err
    assert "unfinished" in err and json.loads(out)["model"] == "product-bernoulli"


def test_lock_refuses_a_second_writer_and_takes_over_a_stale_one(runs, tmp_path, capsys):
    d = _copy(runs, tmp_path)
    code = ("import fcntl, os, sys, time\n"
            f"fd = os.open({str(d / LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nos.write(fd, str(os.getpid()).encode())\n"
            "print('locked', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert holder(d) == proc.pid
        rc, out, err = cli(["fit", "--resume", d, "--epochs", "3", "--quiet"], capsys)
        _one_error(rc, err, f"being written by process {proc.pid}")
        rc, out, err = cli(["fit", "product-bernoulli", "--data", DATA, "--out", d, "--overwrite", "--quiet"], capsys)
        _one_error(rc, err, f"process {proc.pid}")
        (d / "metrics.json").unlink()  # an unfinished run being written: eval says so, with the writer's PID
        rc, out, err = cli(["eval", d], capsys)
        assert rc == 0 and f"being written by process {proc.pid}" in err and json.loads(out)["run_status"]
    finally:
        proc.kill()
        proc.wait()
    assert holder(d) is None  # the kernel dropped the dead holder's lock: the stale file is taken over
    assert (d / LOCK_FILE).read_text().strip() == str(proc.pid)
    run = genlearn.fit(None, None, out=d, resume=True, epochs=3, plots=False, progress=False)
    assert run.metrics["epochs_run"] == 3 and not (d / LOCK_FILE).exists()
    with RunLock(d):  # in one process too: a second lock of the same folder is refused
        with pytest.raises(RunError, match=f"process {os.getpid()}"):
            RunLock(d).acquire()


def test_refused_fit_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "new"
    rc, _, err = cli(["fit", "product-bernoulli", "--data", "coin:p=0.3,n=200", "--out", out, "--epochs", "1",
                      "--resume", tmp_path / "absent"], capsys)
    assert rc == 2 and not out.exists() and not (tmp_path / "absent").exists()


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        genlearn.fit("product-bernoulli", DATA, out=tmp_path / "r", **FIT)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "r").iterdir()}
    assert modes and all(m == 0o640 for m in modes.values()), modes


def test_full_disk_is_one_error_and_keeps_the_checkpoint(runs, tmp_path, capsys, monkeypatch):
    """A real write failure (a file-size limit below the checkpoint's size: EFBIG from the safetensors writer),
    then ENOSPC as the safetensors library reports it."""
    d = _copy(runs, tmp_path)
    before = (d / "checkpoint.safetensors").read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
    try:
        rc, out, err = cli(["fit", "--resume", d, "--epochs", "4", "--quiet"], capsys)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    _one_error(rc, err, "checkpoint.safetensors", "file size limit", "intact")
    assert (d / "checkpoint.safetensors").read_bytes() == before
    assert not list(d.glob(".*.tmp"))

    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(ckpt, "save_file", full)
    rc, out, err = cli(["fit", "--resume", d, "--epochs", "4", "--quiet"], capsys)
    _one_error(rc, err, "no space left on the device", "intact")
    assert (d / "checkpoint.safetensors").read_bytes() == before
