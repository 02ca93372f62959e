"""benchmarks/speed.py's statistics: the distribution-free interval for a median (common.median_interval) against
its binomial definition and a simulation, and --pool on result files."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import common  # noqa: E402


def _coverage(n: int, j: int) -> float:
    """P(x_(j) <= median < x_(n+1-j)) for n draws of a continuous distribution: 1 - 2 P(Binomial(n, 1/2) < j)."""
    return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(j)) / 2 ** n


@pytest.mark.parametrize("n, level, j", [(5, 0.95, 1), (6, 0.95, 1), (9, 0.95, 2), (9, 0.8, 3), (40, 0.95, 14),
                                         (54, 0.95, 20), (1, 0.95, 1)])
def test_the_interval_is_the_widest_order_statistics_that_reach_the_level(n, level, j):
    values = list(np.random.default_rng(n).permutation(np.arange(1.0, n + 1)))  # x_(i) = i, shuffled
    low, high, coverage = common.median_interval(values, level)
    assert (low, high) == (j, n + 1 - j)
    assert coverage == pytest.approx(_coverage(n, j))
    if n >= 6:  # enough values for the level: j reaches it and j + 1 does not
        assert _coverage(n, j) >= level > _coverage(n, j + 1)


def test_the_interval_covers_the_median_as_often_as_it_says():
    """Lognormal samples of 9 (skewed, like ratios of times): the 95% interval holds the true median (1.0) in
    its stated 96.1% of 4,000 draws, within 3 standard errors."""
    rng = np.random.default_rng(0)
    hits = 0
    trials = 4000
    for _ in range(trials):
        low, high, coverage = common.median_interval(np.exp(rng.normal(0.0, 0.3, 9)), 0.95)
        hits += low <= 1.0 <= high
    se = math.sqrt(coverage * (1 - coverage) / trials)
    assert abs(hits / trials - coverage) < 3 * se


def test_the_interval_refuses_no_values():
    with pytest.raises(ValueError, match="at least one value"):
        common.median_interval([])


def test_pool_merges_the_pairs_of_runs(tmp_path):
    runs = []
    for k, (sk, full) in enumerate([([3.0, 4.0, 5.0], [1.0, 1.0, 2.0]), ([6.0, 3.0], [2.0, 1.5])]):
        path = tmp_path / f"run{k}.json"
        path.write_text(json.dumps({"variants": ["full"], "seconds": {"sklearn": sk, "full": full}}))
        runs.append(path)
    out = tmp_path / "pooled.json"
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "speed.py"), "--pool", *map(str, runs), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    full = json.loads(out.read_text())["variants"]["full"]
    assert full["pair_ratios"] == [3.0, 4.0, 2.5, 3.0, 2.0] and full["pairs"] == 5 and full["runs"] == 2
    assert full["median_pair_ratio"] == 3.0 and full["run_medians"] == [3.0, 2.5]
    assert full["interval"] == [2.0, 4.0] and full["interval_coverage"] == pytest.approx(1 - 2 / 32)
    missing = subprocess.run([sys.executable, str(BENCHMARKS / "speed.py"), "--pool", str(tmp_path / "nope.json")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    for text, message in (("{", "is not JSON"), (out.read_text(), "is not the results of a speed.py run")):
        bad = tmp_path / "bad.json"
        bad.write_text(text)  # a truncated file; the pooled figures themselves
        proc = subprocess.run([sys.executable, str(BENCHMARKS / "speed.py"), "--pool", str(runs[0]), str(bad)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
