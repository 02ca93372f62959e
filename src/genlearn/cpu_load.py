"""How many CPU threads a command should use when the user does not say: the cores this process may run on,
less those that other work keeps busy right now.

Why: torch's threads wait for each other at the end of every parallel region, so one thread that shares its core
with another program holds all of them back. Measured on a 2-core EPYC (2026-12-06, `genlearn demo`): 25.0 s with
2 threads and 28.4 s with 1 on a quiet machine, but 91.0 s with 2 threads and 30.3 s with 1 while another program
kept one core busy (OMP_WAIT_POLICY=PASSIVE: 55.3 s quiet, 38.9 s busy; GOMP_SPINCOUNT=1000: 33.0 s / 63.6 s).

The busy cores are measured once, over `SAMPLE_SECONDS`, from the kernel's counters of time spent per state
(/proc/stat, Linux): busy = cores x (1 - idle share). Elsewhere nothing is measured and every core is used."""
from __future__ import annotations

import os
import time

#: how long the idle share is measured (seconds)
SAMPLE_SECONDS = 0.05


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one, else os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times(path: str = "/proc/stat") -> tuple[int, int] | None:
    """(idle, total) clock ticks of all CPUs since boot (idle includes iowait), or None where unreadable."""
    try:
        with open(path) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return ticks[3] + ticks[4], sum(ticks)


def busy_cores(seconds: float = SAMPLE_SECONDS, read=_cpu_times) -> float:
    """Cores kept busy by all processes over the next `seconds` (this one sleeps meanwhile): all cores x the
    non-idle share of the machine's CPU time; 0.0 where it cannot be measured."""
    first = read()
    time.sleep(seconds)
    second = read()
    if first is None or second is None or second[1] <= first[1]:
        return 0.0
    idle, total = second[0] - first[0], second[1] - first[1]
    return (os.cpu_count() or 1) * max(0.0, 1.0 - idle / total)


def threads_for_load(cores: int, busy: float) -> int:
    """Threads for `cores` usable cores when `busy` of them are taken: the free ones, rounded to the nearest, at
    least 1 (a quiet machine: every core)."""
    return max(1, min(cores, int(cores - busy + 0.5)))


__all__ = ["SAMPLE_SECONDS", "busy_cores", "threads_for_load", "usable_cores"]
