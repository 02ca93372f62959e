"""genlearn.timing_cache: one-off timings remembered across processes, per machine and measuring module; off by
GENLEARN_TIMING_CACHE=off; unreadable files ignored; the products' and the sums' choices use it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from genlearn import timing_cache


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(timing_cache.ENV, str(tmp_path / "cache"))
    timing_cache._reset_for_tests()
    yield tmp_path / "cache"
    timing_cache._reset_for_tests()


def test_a_value_is_measured_once_and_then_read_back(cache_dir, tmp_path):
    module = tmp_path / "measuring.py"
    module.write_text("# kernels v1\n")
    calls = []
    assert timing_cache.remembered(str(module), "shape a", lambda: calls.append(1) or 1.5) == 1.5
    assert timing_cache.remembered(str(module), "shape a", lambda: calls.append(1) or 9.0) == 1.5
    assert timing_cache.remembered(str(module), "shape b", lambda: calls.append(1) or 2.5) == 2.5
    assert len(calls) == 2
    (file,) = cache_dir.glob("timings-measuring-*.json")
    data = json.loads(file.read_text())
    assert data["values"] == {"shape a": 1.5, "shape b": 2.5} and data["machine"]["cpu"]
    timing_cache._reset_for_tests()  # a new process: read from the file
    assert timing_cache.remembered(str(module), "shape a", lambda: calls.append(1) or 9.0) == 1.5
    assert timing_cache.record()["timings_remembered"] == 1 and len(calls) == 2
    module.write_text("# kernels v2\n")  # a changed measuring module: new measurements, in another file
    timing_cache._reset_for_tests()
    assert timing_cache.remembered(str(module), "shape a", lambda: calls.append(1) or 7.0) == 7.0
    assert len(list(cache_dir.glob("timings-measuring-*.json"))) == 2


def test_off_measures_every_time_and_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv(timing_cache.ENV, "off")
    monkeypatch.setenv("HOME", str(tmp_path))
    timing_cache._reset_for_tests()
    values = iter([1.0, 2.0])
    assert timing_cache.remembered(__file__, "x", lambda: next(values)) == 1.0
    assert timing_cache.remembered(__file__, "x", lambda: next(values)) == 2.0
    assert timing_cache.record() == {"timing_cache": "off", "timings_remembered": 0, "timings_measured": 2}
    assert not any(tmp_path.rglob("*.json"))
    timing_cache._reset_for_tests()


def test_an_unreadable_or_unwritable_cache_is_ignored(cache_dir, tmp_path, monkeypatch):
    cache_dir.mkdir(parents=True)
    module = tmp_path / "m.py"
    module.write_text("x = 1\n")
    timing_cache.remembered(str(module), "a", lambda: 1.0)
    (file,) = cache_dir.glob("*.json")
    file.write_text("{ truncated")
    timing_cache._reset_for_tests()
    assert timing_cache.remembered(str(module), "a", lambda: 3.0) == 3.0  # measured again, the file rewritten
    assert json.loads(file.read_text())["values"] == {"a": 3.0}
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the directory should be")
    timing_cache._reset_for_tests()
    monkeypatch.setenv(timing_cache.ENV, str(blocked / "cache"))
    assert timing_cache.remembered(str(module), "a", lambda: 4.0) == 4.0  # measured, nothing written, no error


def test_the_default_directory_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv(timing_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert timing_cache.directory() == tmp_path / "genlearn"


def test_a_dict_of_timings_round_trips(cache_dir, tmp_path):
    module = tmp_path / "forms.py"
    module.write_text("x = 1\n")
    times = {"tanh": 3e-6, "compiled": 1.2e-6}
    assert timing_cache.remembered(str(module), "forms", lambda: times) == times
    timing_cache._reset_for_tests()
    assert timing_cache.remembered(str(module), "forms", lambda: {"tanh": 1.0}) == times


def test_a_second_process_reuses_every_timing(cache_dir):
    """Two fresh processes ask for the float32 products' speedup, a sums crossover, the compiled sigmoid's speedup
    and the tanh forms' timings: the first measures and stores them, the second reads them (the same values)
    without measuring."""
    code = ("import json, torch; torch.set_num_threads(1)\n"
            "from genlearn import products, binary_kernels, logistic_kernels, numerics, timing_cache\n"
            "v = [products.onednn_speedup(), binary_kernels.CHOOSER.crossover('rows', 20, 30, 10),\n"
            "     logistic_kernels.sigmoid_speedup(), numerics.tanh_timings()]\n"
            "print(json.dumps([v, timing_cache.record()]))\n")
    env = {**os.environ, timing_cache.ENV: str(cache_dir)}
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                      check=True).stdout) for _ in range(2)]
    (v1, rec1), (v2, rec2) = runs
    assert v1 == v2
    from genlearn import binary_kernels

    measured = 4 if binary_kernels.available() else 2  # without numba: no crossover, no compiled sigmoid to time
    assert rec1["timings_measured"] == measured and rec1["timings_remembered"] == 0
    assert rec2["timings_measured"] == 0 and rec2["timings_remembered"] == measured
