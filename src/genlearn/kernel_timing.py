"""Timing of interchangeable kernels, for the choices genlearn makes once per process (which library computes a
product, which implementation computes an elementwise function): the same arithmetic runs at different speeds on
different CPUs (e.g. torch's float32 tanh took 2.5-3.3 ns per entry on one AVX-512 EPYC and 0.3 ns on an AVX-512
Xeon), so the choice is measured on the machine, not read from its instruction set.

`best_seconds(candidates)`: each candidate (a call without arguments) is called once to warm it, then timed in 5
alternating rounds of repeated calls (about `seconds` in all); its figure is the best round's seconds per call.
Alternating the rounds spreads the machine's drift over every candidate alike. Imports nothing of genlearn."""
from __future__ import annotations

import time
from collections.abc import Callable

#: rounds of repeated calls per candidate, alternating between candidates
ROUNDS = 5


def best_seconds(candidates: dict[str, Callable[[], object]], seconds: float = 0.05) -> dict[str, float]:
    """{name: best seconds per call over ROUNDS alternating rounds}; repetitions per round sized from one call so
    that all rounds of all candidates take about `seconds` (2 to 200 calls per round)."""
    reps, best = {}, {}
    per_candidate = seconds / max(1, len(candidates)) / ROUNDS
    for name, call in candidates.items():
        call()
        t0 = time.perf_counter()
        call()
        reps[name] = max(2, min(200, int(per_candidate / max(time.perf_counter() - t0, 1e-7))))
        best[name] = float("inf")
    for _ in range(ROUNDS):
        for name, call in candidates.items():
            t0 = time.perf_counter()
            for _ in range(reps[name]):
                call()
            best[name] = min(best[name], (time.perf_counter() - t0) / reps[name])
    return best


__all__ = ["ROUNDS", "best_seconds"]
