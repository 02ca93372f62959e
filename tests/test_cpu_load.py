"""Threads for the load (genlearn.cpu_load): without --threads, a command that computes uses the cores other work
leaves free (one torch thread sharing its core with another program held the others back: `genlearn demo` took
91 s with 2 threads and 30 s with 1 while one of 2 cores was busy, 25 s / 28 s on a quiet machine)."""
from __future__ import annotations

import pytest
import torch

from genlearn import cpu_load
from genlearn.cli import main


def test_busy_cores_from_two_readings_of_the_cpu_counters(monkeypatch):
    """busy = cores x (1 - idle ticks / all ticks) between the two readings: 150 idle of 400 ticks on 2 CPUs is
    2 x (1 - 50/200) = 1.5 cores."""
    readings = iter([(100, 200), (150, 400)])
    monkeypatch.setattr(cpu_load.os, "cpu_count", lambda: 2)
    assert cpu_load.busy_cores(0.0, read=lambda: next(readings)) == pytest.approx(1.5)
    assert cpu_load.busy_cores(0.0, read=lambda: None) == 0.0  # unmeasurable: nothing busy


def test_the_counters_of_this_machine_are_read():
    times = cpu_load._cpu_times()
    if times is None:
        pytest.skip("no /proc/stat here")
    idle, total = times
    assert 0 <= idle <= total and total > 0
    assert 0.0 <= cpu_load.busy_cores(0.01) <= (cpu_load.os.cpu_count() or 1) + 1e-9


@pytest.mark.parametrize("cores, busy, threads", [(2, 0.02, 2), (2, 0.5, 2), (2, 1.0, 1), (2, 1.6, 1), (2, 2.0, 1),
                                                  (8, 3.2, 5), (1, 5.0, 1), (4, 0.0, 4)])
def test_threads_are_the_free_cores_rounded_and_at_least_one(cores, busy, threads):
    assert cpu_load.threads_for_load(cores, busy) == threads


@pytest.mark.parametrize("flags, threads, note",
                         [([], 1, True), (["--quiet"], 1, False), (["--threads", "2"], 2, False)])
def test_fit_without_threads_uses_the_free_cores(monkeypatch, capsys, tmp_path, flags, threads, note):
    monkeypatch.setattr(cpu_load, "busy_cores", lambda *a, **k: 1.0)
    monkeypatch.setattr(cpu_load, "usable_cores", lambda: 2)
    torch.set_num_threads(2)
    assert main(["fit", "bernoulli", "--data", "coin:n=30", "--epochs", "1", "--out", str(tmp_path / "r"),
                 *flags]) == 0
    err = capsys.readouterr().err
    assert torch.get_num_threads() == threads
    assert ("about 1.0 of 2 CPU cores are busy with other work: using 1 thread (--threads N to choose)" in err) == note
