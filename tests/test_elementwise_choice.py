"""The once-per-process choices between torch's elementwise kernels and genlearn's forms (the compiled sigmoid,
tanh as 2 sigmoid(2a) - 1, the tanh network folded into sigmoids), and the timing helper behind them.

Oracles: the decision rule itself (the measured ratio against logistic_kernels.MIN_SPEEDUP), with the timings
replaced by given figures; the environment override; a timing of two calls whose cost is known (a sleep)."""
from __future__ import annotations

import time

import pytest
import torch

from genlearn import kernel_timing, logistic_kernels, numerics
from genlearn.errors import ConfigError


@pytest.fixture(autouse=True)
def fresh_timings(monkeypatch):
    """Each test starts without cached timings and without GENLEARN_ELEMENTWISE; the cache is cleared after too."""
    monkeypatch.delenv("GENLEARN_ELEMENTWISE", raising=False)
    logistic_kernels._reset_for_tests()
    numerics._reset_for_tests()
    yield
    logistic_kernels._reset_for_tests()
    numerics._reset_for_tests()


def test_best_seconds_orders_calls_by_their_cost():
    calls = {"slow": 0, "fast": 0}

    def slow():
        calls["slow"] += 1
        time.sleep(0.002)

    def fast():
        calls["fast"] += 1

    best = kernel_timing.best_seconds({"slow": slow, "fast": fast}, seconds=0.05)
    assert set(best) == {"slow", "fast"}
    assert best["slow"] >= 0.002 > best["fast"] >= 0
    # warm-up and sizing calls, then ROUNDS rounds of at least 2 calls each
    assert calls["slow"] >= 2 + 2 * kernel_timing.ROUNDS and calls["fast"] >= 2 + 2 * kernel_timing.ROUNDS


def test_override_values_and_the_error_naming_the_variable(monkeypatch):
    assert logistic_kernels.elementwise_override() == "auto"
    for value in ("torch", "genlearn", " Torch "):
        monkeypatch.setenv("GENLEARN_ELEMENTWISE", value)
        assert logistic_kernels.elementwise_override() == value.strip().lower()
    monkeypatch.setenv("GENLEARN_ELEMENTWISE", "fastest")
    with pytest.raises(ConfigError, match="GENLEARN_ELEMENTWISE must be one of auto, torch, genlearn"):
        logistic_kernels.elementwise_override()


@pytest.mark.skipif(not logistic_kernels.available(), reason="numba is not installed")
@pytest.mark.parametrize("speedup,expected", [(2.0, True), (1.2, True), (1.19, False), (0.8, False)])
def test_compiled_sigmoid_only_when_measured_faster_by_the_margin(speedup, expected, monkeypatch):
    monkeypatch.setitem(logistic_kernels._SIGMOID_SPEEDUP, torch.get_num_threads(), speedup)
    assert logistic_kernels.compiled_sigmoid_in_use() is expected
    monkeypatch.setenv("GENLEARN_ELEMENTWISE", "torch")
    assert logistic_kernels.compiled_sigmoid_in_use() is False
    monkeypatch.setenv("GENLEARN_ELEMENTWISE", "genlearn")
    assert logistic_kernels.compiled_sigmoid_in_use() is True


@pytest.mark.skipif(not logistic_kernels.available(), reason="numba is not installed")
def test_sigmoid_goes_to_torch_when_torch_is_chosen(monkeypatch):
    """With torch's kernel chosen, sigmoid_ never calls the compiled one (replaced here by one that fails)."""
    monkeypatch.setitem(logistic_kernels._SIGMOID_SPEEDUP, torch.get_num_threads(), 0.8)

    def refuse(*args):
        raise AssertionError("the compiled sigmoid ran")

    monkeypatch.setattr(logistic_kernels, "_sigmoid_in_place", refuse)
    a = torch.randn(10, 784)
    torch.testing.assert_close(logistic_kernels.sigmoid_(a.clone()), torch.sigmoid(a), atol=0, rtol=0)
    monkeypatch.setitem(logistic_kernels._SIGMOID_SPEEDUP, torch.get_num_threads(), 3.0)
    with pytest.raises(AssertionError, match="compiled sigmoid ran"):
        logistic_kernels.sigmoid_(a.clone())


def test_each_timing_runs_once_per_thread_count(monkeypatch):
    runs = []
    real = kernel_timing.best_seconds

    def counting(candidates, seconds=0.05):
        runs.append(sorted(candidates))
        return real(candidates, 0.005)

    monkeypatch.setattr(kernel_timing, "best_seconds", counting)
    for _ in range(3):
        numerics.tanh_timings()
        logistic_kernels.sigmoid_speedup()
    tanh_forms = ["compiled", "sigmoid", "sigmoid_form", "tanh"] if logistic_kernels.available() \
        else ["sigmoid", "sigmoid_form", "tanh"]
    assert runs.count(tanh_forms) == 1
    assert runs.count(["compiled", "torch"]) == (1 if logistic_kernels.available() else 0)


@pytest.mark.parametrize("times,form,folded", [
    ({"tanh": 3.0, "sigmoid_form": 1.0, "sigmoid": 0.8}, True, True),    # an AVX-512 EPYC: tanh slow
    ({"tanh": 0.3, "sigmoid_form": 0.8, "sigmoid": 0.5}, False, False),  # an AVX-512 Xeon: torch's tanh fast
    ({"tanh": 1.0, "sigmoid_form": 0.9, "sigmoid": 0.5}, False, True),   # the three passes more lose, the fold wins
    ({"tanh": 1.0, "sigmoid_form": 1.0 / 1.2, "sigmoid": 1.0}, True, False),  # exactly the margin
])
def test_tanh_forms_chosen_by_the_timings_with_a_margin(times, form, folded, monkeypatch):
    monkeypatch.setitem(numerics._TANH_TIMES, torch.get_num_threads(), times)
    a = torch.zeros(3)
    assert numerics.sigmoid_tanh_in_use(a) is form
    assert numerics.folded_tanh_in_use(a) is folded
    assert not numerics.sigmoid_tanh_in_use(a.bfloat16()) and not numerics.sigmoid_tanh_in_use(a.double())
    assert not numerics.folded_tanh_in_use(a.bfloat16())
    monkeypatch.setenv("GENLEARN_ELEMENTWISE", "torch")
    assert not numerics.sigmoid_tanh_in_use(a) and not numerics.folded_tanh_in_use(a)
    monkeypatch.setenv("GENLEARN_ELEMENTWISE", "genlearn")  # genlearn's forms: the compiled tanh where it runs
    assert numerics.tanh_form(a) == ("compiled" if logistic_kernels.available() else "sigmoid_form")
    assert numerics.sigmoid_tanh_in_use(a[::2]) and numerics.folded_tanh_in_use(a)  # not contiguous: sigmoid form
    assert not numerics.sigmoid_tanh_in_use(a.bfloat16())  # bfloat16 never: 2 sigmoid(2a) - 1 loses small values
    assert numerics.tanh_form(a.bfloat16()) == "torch"


@pytest.mark.parametrize("times,form,strided_form", [
    # the AVX2 EPYC; a strided tensor cannot take the kernel: the sigmoid form, 1.3x torch's
    ({"tanh": 3.4, "sigmoid_form": 2.6, "sigmoid": 1.4, "compiled": 1.5}, "compiled", "sigmoid_form"),
    ({"tanh": 3.4, "sigmoid_form": 1.0, "sigmoid": 0.8, "compiled": 1.5}, "sigmoid_form", "sigmoid_form"),
    ({"tanh": 3.0, "sigmoid_form": 2.9, "sigmoid": 1.4, "compiled": 1.5}, "compiled", "torch"),
    ({"tanh": 0.3, "sigmoid_form": 0.8, "sigmoid": 0.5, "compiled": 0.9}, "torch", "torch"),  # the Xeon
    ({"tanh": 1.1, "sigmoid_form": 1.5, "sigmoid": 0.5, "compiled": 1.0}, "torch", "torch"),  # within the margin
])
def test_the_fastest_tanh_form_runs_where_it_beats_torch_by_the_margin(times, form, strided_form, monkeypatch):
    if not logistic_kernels.available():
        pytest.skip("numba is not installed")
    monkeypatch.setitem(numerics._TANH_TIMES, torch.get_num_threads(), times)
    a = torch.linspace(-3, 3, 12).reshape(3, 4)
    assert numerics.tanh_form(a) == form
    assert numerics.tanh_form(a.T) == strided_form
    torch.testing.assert_close(numerics.tanh_(a.clone()), torch.tanh(a), atol=2.4e-7, rtol=0)
    assert numerics.elementwise_record()["tanh"] == numerics.TANH_FORMS[form]


def test_the_record_says_what_runs(monkeypatch):
    monkeypatch.setitem(numerics._TANH_TIMES, torch.get_num_threads(),
                        {"tanh": 3e-5, "sigmoid_form": 1e-5, "sigmoid": 5e-6})
    monkeypatch.setitem(logistic_kernels._SIGMOID_SPEEDUP, torch.get_num_threads(), 0.5)
    rec = numerics.elementwise_record()  # (no compiled timing here: the sigmoid form is the fastest)
    assert rec["elementwise_override"] == "auto" and rec["tanh"] == "2 sigmoid(2a) - 1"
    assert rec["tanh_folded_into_sigmoids"] is True and rec["sigmoid_kernel"] == "torch"
    assert rec["tanh_ns_per_entry"]["tanh"] == pytest.approx(3e-5 * 1e9 / 50_000)
    monkeypatch.setenv("GENLEARN_ELEMENTWISE", "torch")
    rec = numerics.elementwise_record()
    assert rec["tanh"] == "torch.tanh" and rec["tanh_folded_into_sigmoids"] is False


@pytest.mark.parametrize("elementwise", ["torch", "genlearn"])
def test_tanh_in_place_and_the_mlp_that_uses_it(elementwise, monkeypatch):
    """numerics.tanh_ writes tanh(a) into a (both forms, against float64); a tanh MLP without autograd (which runs its
    fresh pre-activations through it) equals the same MLP with autograd, and from_first_layer leaves its input as
    it is."""
    from genlearn.models.vae import MLP

    monkeypatch.setenv("GENLEARN_ELEMENTWISE", elementwise)
    a = torch.randn(37, 23, generator=torch.Generator().manual_seed(1)) * 3
    exact = torch.tanh(a.double())
    b = a.clone()
    out = numerics.tanh_(b)
    assert out.data_ptr() == b.data_ptr()
    assert torch.allclose(out.double(), exact, rtol=0, atol=5e-7)
    torch.manual_seed(0)
    mlp = MLP([23], [11, 7], "tanh")
    with torch.enable_grad():
        reference = mlp(a)
    with torch.no_grad():
        assert torch.allclose(mlp(a), reference.detach(), rtol=0, atol=1e-6)
        pre = mlp.first_layer(a)
        kept = pre.clone()
        assert torch.allclose(mlp.from_first_layer(pre), reference.detach(), rtol=0, atol=1e-6)
        assert torch.equal(pre, kept)
