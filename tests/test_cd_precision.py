"""genlearn.learning.cd_precision: "auto" for the CD step decided by timing the float32 and bfloat16 steps, the
timing remembered per machine, shapes and density bucket."""
import math

import pytest
import torch

from genlearn import timing_cache
from genlearn.learning import cd_precision as C
from genlearn.precision import STEP_MIN_SPEEDUP


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(timing_cache.ENV, str(tmp_path))
    timing_cache._reset_for_tests()
    yield tmp_path
    timing_cache._reset_for_tests()


@pytest.mark.parametrize("density, bucket", [(0.132, 0.14), (0.0, 0.02), (1.0, 0.98), (0.5, 0.5), (0.011, 0.02),
                                             (0.99, 0.98)])
def test_density_bucket(density, bucket):
    assert C.density_bucket(density) == pytest.approx(bucket)


def test_density_bucket_rejects_nan():
    with pytest.raises(ValueError, match="density must be finite"):
        C.density_bucket(float("nan"))


@pytest.mark.parametrize("persistent, k", [(True, 1), (False, 1), (True, 2)])
def test_the_measurement_runs_both_steps_and_is_positive(bfloat16_honoured, persistent, k):
    s = C.measure_step_speedup(24, 12, 8, 6, k, persistent, 0.3)
    assert math.isfinite(s) and s > 0


def test_the_timed_steps_run_in_their_precisions(bfloat16_honoured):
    """The bfloat16 stepper keeps a bfloat16 copy of W (its products dense in bfloat16); the float32 one does not,
    and its step changes W (a plain SGD step, as in training)."""
    from genlearn.learning import rbm_gradients

    seen = []
    real = rbm_gradients.cd_sgd_step

    def spy(W, b, c, source, order, lr, k, generator, ws, *rest, **kw):
        seen.append(("weight_low" in ws, W.clone()))
        out = real(W, b, c, source, order, lr, k, generator, ws, *rest, **kw)
        seen[-1] = seen[-1] + (W.clone(),)
        return out

    rbm_gradients.cd_sgd_step = spy
    try:
        for precision in ("full", "bfloat16"):
            C._stepper(30, 10, 8, 8, 1, True, 0.2, precision)()
    finally:
        rbm_gradients.cd_sgd_step = real
    assert [low for low, _, _ in seen] == [False, True]
    assert all(not torch.equal(before, after) for _, before, after in seen)


def test_the_speedup_is_remembered_per_shape_and_density_bucket(cache_dir, monkeypatch):
    calls = []

    def fake(V, H, B, N, k, persistent, density):
        calls.append((V, H, B, N, k, persistent, density))
        return 0.8 + len(calls)

    monkeypatch.setattr(C, "measure_step_speedup", fake)
    assert C.step_speedup(784, 500, 100, 100, 1, True, 0.132) == 1.8
    assert C.step_speedup(784, 500, 100, 100, 1, True, 0.135) == 1.8  # the same bucket: read back, not timed
    assert calls == [(784, 500, 100, 100, 1, True, 0.14)]
    assert C.step_speedup(784, 500, 100, 100, 1, True, 0.3) == 2.8  # another bucket
    assert C.step_speedup(784, 500, 100, 100, 1, False, 0.132) == 3.8  # CD, not PCD
    timing_cache._reset_for_tests()  # a new process: read from the file
    assert C.step_speedup(784, 500, 100, 100, 1, True, 0.133) == 1.8 and len(calls) == 3
    assert any(p.name.startswith("timings-cd_precision-") for p in cache_dir.iterdir())


@pytest.mark.parametrize("speedup, expected", [(STEP_MIN_SPEEDUP - 1e-6, "full"), (STEP_MIN_SPEEDUP, "bfloat16"),
                                               (0.3, "full"), (2.5, "bfloat16")])
def test_auto_step_precision_needs_the_margin(monkeypatch, speedup, expected):
    monkeypatch.setattr(C, "step_speedup", lambda *a: speedup)
    assert C.auto_step_precision(784, 500, 100, 100, 1, True, 0.13) == (expected, speedup)
