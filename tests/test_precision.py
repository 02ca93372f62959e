"""matmul_precision "auto" (genlearn.precision): bfloat16 only where the machine runs it faster, decided from the
capability and a measured speedup (both mocked here), recorded by the rule, and a one-line warning for an explicit
bfloat16 that is emulated."""
import math
import warnings

import numpy as np
import pytest
import torch

import genlearn.precision as P
from genlearn import timing_cache
from genlearn.errors import ConfigError
from genlearn.learning import cd_precision
from genlearn.learning.legacy import rule_from_legacy_config
from genlearn.learning.rules import make_rule
from genlearn.models.made import MADE
from genlearn.models.nade import NADE
from genlearn.models.rbm import RBM
from genlearn.models.vae import VAE

BIG = 2.0 * 100 * 784 * 500  # the flops of a training product of binarized MNIST


@pytest.fixture
def machine(monkeypatch):
    """Mock the CPU: set capability, oneDNN bf16 support and the measured bf16 speedup; counts measurements."""
    P._reset_for_tests()
    monkeypatch.setenv(timing_cache.ENV, "off")  # every process measures: the mocked timing is what counts
    timing_cache._reset_for_tests()
    state = {"measured": 0}

    def configure(capability="AVX512", supported=True, speedup=2.0, native=None, step_speedup=None):
        """step_speedup: the CD rule's timed steps' speedup (genlearn.learning.cd_precision); None: `speedup`."""
        monkeypatch.setattr(P, "cpu_capability", lambda: capability)
        monkeypatch.setattr(P, "cpu_bf16_supported", lambda: supported)
        monkeypatch.setattr(P, "cpu_native_bf16", lambda: native)  # None: flags unknown, the timing decides

        def measure(device_type="cpu", shape=P.BENCH_SHAPE, seconds=0.05):
            state["measured"] += 1
            state["shape"] = shape
            return speedup
        monkeypatch.setattr(P, "measure_bf16_speedup", measure)

        def measure_steps(V, H, B, N, k, persistent, density):
            state["steps_measured"] = state.get("steps_measured", 0) + 1
            state["step_shape"] = (V, H, B, N, k, persistent, density)
            return speedup if step_speedup is None else step_speedup
        monkeypatch.setattr(cd_precision, "step_speedup", measure_steps)
        return state

    cd_precision._WARNED.clear()
    yield configure
    P._reset_for_tests()
    cd_precision._WARNED.clear()
    timing_cache._reset_for_tests()


def test_auto_is_full_where_bfloat16_is_emulated_without_measuring(machine):
    state = machine(capability="AVX2", supported=False, speedup=0.02)
    assert P.resolve_matmul_precision("auto", "cpu", BIG) == "full"
    assert state["measured"] == 0  # the capability alone decides
    state = machine(capability="AVX512", supported=False, speedup=0.02)
    assert P.resolve_matmul_precision("auto", "cpu", BIG) == "full"


def test_auto_is_bfloat16_only_where_measured_faster(machine):
    state = machine(capability="AVX512", supported=True, speedup=2.0)
    assert P.resolve_matmul_precision("auto", "cpu", BIG) == "bfloat16"
    assert P.resolve_matmul_precision("auto", torch.device("cpu")) == "bfloat16"
    assert state["measured"] == 1  # once per process
    # AVX512 without native bf16 dot products (oneDNN emulates with AVX512 core): measured slower -> full
    P._reset_for_tests()
    machine(capability="AVX512", supported=True, speedup=0.6)
    assert P.resolve_matmul_precision("auto", "cpu", BIG) == "full"
    # a gain below the threshold is not worth the rounding
    P._reset_for_tests()
    machine(capability="AVX512", supported=True, speedup=P.AUTO_MIN_SPEEDUP - 0.05)
    assert P.resolve_matmul_precision("auto", "cpu", BIG) == "full"


def test_the_cpu_flags_decide_before_any_timing(machine):
    state = machine(capability="AVX512", supported=True, speedup=3.0, native=False)  # AVX-512 without BF16
    assert P.resolve_matmul_precision("auto", "cpu", BIG) == "full" and state["measured"] == 0
    P._reset_for_tests()
    state = machine(capability="AVX512", supported=True, speedup=0.5, native=True)
    assert P.resolve_matmul_precision("auto", "cpu", BIG) == "full"  # a slow timing (a loaded machine) -> full
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # native bfloat16 instructions: no "emulated" warning
        assert P.resolve_matmul_precision("bfloat16", "cpu", BIG) == "bfloat16"
    assert P.precision_record("auto", "full")["cpu_native_bf16"] is True


def test_auto_is_full_for_products_too_small_to_gain(machine):
    state = machine(speedup=3.0)
    assert P.resolve_matmul_precision("auto", "cpu", flops=2.0 * 10 * 9 * 6) == "full"
    assert state["measured"] == 0


def test_emulated_bfloat16_falls_back_to_full_and_warns_once_with_the_slowdown(machine):
    machine(capability="AVX2", supported=False, speedup=0.02)
    assert P.resolve_matmul_precision("full", "cpu", BIG) == "full"
    with pytest.warns(RuntimeWarning, match=r"50\.0x slower than float32 on this CPU \(AVX2; emulated.*float32") as rec:
        assert P.resolve_matmul_precision("bfloat16", "cpu", BIG) == "full"
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.resolve_matmul_precision("bfloat16", "cpu", BIG) == "full"  # warned once per process
    P._reset_for_tests()
    machine(capability="AVX512", supported=True, speedup=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # native: no warning
        assert P.resolve_matmul_precision("bfloat16", "cpu", BIG) == "bfloat16"


def test_unknown_precision_is_one_config_error():
    with pytest.raises(ConfigError, match="matmul_precision must be one of auto, full, bfloat16, got 'half'"):
        P.resolve_matmul_precision("half")
    with pytest.raises(ConfigError, match="auto, full, bfloat16"):
        make_rule("contrastive-divergence", {"matmul_precision": "fp16"})


def test_the_measurement_is_real_and_positive():
    s = P.measure_bf16_speedup("cpu", shape=(8, 16, 8), seconds=0.002)
    assert math.isfinite(s) and s > 0


def test_the_cpu_speedup_is_remembered_per_machine_and_thread_count(monkeypatch, tmp_path):
    monkeypatch.setenv(timing_cache.ENV, str(tmp_path))
    timing_cache._reset_for_tests()
    P._reset_for_tests()
    calls = []
    monkeypatch.setattr(P, "bf16_capable", lambda device_type="cpu": True)
    monkeypatch.setattr(P, "measure_bf16_speedup", lambda *a, **k: calls.append(k.get("shape")) or 2.5)
    try:
        assert P.bf16_speedup("cpu") == 2.5 and calls == [P.BENCH_SHAPE]
        P._reset_for_tests()
        timing_cache._reset_for_tests()  # a new process on the same machine: read back, not measured
        assert P.bf16_speedup("cpu") == 2.5 and len(calls) == 1
        P._reset_for_tests()
        torch.set_num_threads(2)  # another thread count: measured again
        assert P.bf16_speedup("cpu") == 2.5 and len(calls) == 2
    finally:
        P._reset_for_tests()
        timing_cache._reset_for_tests()


@pytest.mark.parametrize("speedup, expected", [(2.0, "bfloat16"), (0.02, "full")])
def test_the_rbm_rule_runs_and_records_what_auto_resolved_to(machine, speedup, expected):
    state = machine(capability="AVX512" if speedup > 1 else "AVX2", supported=speedup > 1, speedup=speedup)
    model = RBM(784, 500, seed=0)
    rule = make_rule("contrastive-divergence", {"persistent": True, "n_chains": 100})
    x = (torch.rand(100, 784, generator=torch.Generator().manual_seed(0)) < 0.13).float()
    rule.compute_gradient(model, x, torch.Generator().manual_seed(1))
    assert ("weight_low" in rule._workspace) == (expected == "bfloat16")
    rec = rule.describe()
    assert rec["matmul_precision"] == "auto" and rec["matmul_precision_resolved"] == expected
    assert rec["cpu_capability"] in ("AVX512", "AVX2") and rule.settings()["matmul_precision"] == "auto"
    cd = make_rule("contrastive-divergence")
    cd.compute_gradient(model, x, torch.Generator().manual_seed(1))
    cd.compute_gradient(model, x[:3], torch.Generator().manual_seed(1))  # a short last batch keeps the choice
    assert cd.describe()["matmul_precision_resolved"] == expected
    # the steps are timed only where the product's timing picked bfloat16 (twice: one per rule), at the rule's
    # shapes and the first batch's density
    assert state.get("steps_measured", 0) == (2 if expected == "bfloat16" else 0)
    if expected == "bfloat16":
        V, H, B, N, k, persistent, density = state["step_shape"]
        assert (V, H, B, N, k, persistent) == (784, 500, 100, 100, 1, False)
        assert density == pytest.approx(x.mean().item())
        assert rec["cd_step_bf16_speedup_measured"] == 2.0


@pytest.mark.parametrize("step_speedup, expected", [(0.77, "full"), (1.09, "full"), (1.1, "bfloat16")])
def test_auto_for_the_cd_rule_follows_the_timed_steps_not_the_product(machine, step_speedup, expected):
    """Where bfloat16 products are 2.4x faster but the float32 step (sums over the sparse rows, compiled passes)
    beats the bfloat16 step, "auto" is full precision: the step decides, with its own 1.1 margin."""
    state = machine(capability="AVX512", supported=True, speedup=2.4, native=True, step_speedup=step_speedup)
    model = RBM(784, 500, seed=0)
    rule = make_rule("contrastive-divergence", {"persistent": True, "n_chains": 50})
    x = (torch.rand(100, 784, generator=torch.Generator().manual_seed(0)) < 0.13).float()
    rule.sgd_step(model, x, torch.arange(100), 0.01, torch.Generator().manual_seed(1))
    assert state["steps_measured"] == 1 and state["step_shape"][:6] == (784, 500, 100, 50, 1, True)
    assert ("weight_low" in rule._workspace) == (expected == "bfloat16")
    rec = rule.describe()
    assert rec["matmul_precision_resolved"] == expected and rec["cd_step_bf16_speedup_measured"] == step_speedup
    assert rec["bf16_speedup_measured"] == 2.4  # the product's timing, recorded beside the steps'


def test_explicit_full_never_times_the_steps(machine):
    state = machine(capability="AVX512", supported=True, speedup=2.4, native=True, step_speedup=0.5)
    rule = make_rule("contrastive-divergence", {"matmul_precision": "full"})
    x = (torch.rand(100, 784, generator=torch.Generator().manual_seed(0)) < 0.13).float()
    rule.compute_gradient(RBM(784, 500, seed=0), x, torch.Generator().manual_seed(1))
    assert state.get("steps_measured", 0) == 0
    assert rule.describe()["matmul_precision_resolved"] == "full"


@pytest.mark.parametrize("step_speedup, warns", [(0.78, True), (1.0, False), (1.6, False)])
def test_explicit_native_bfloat16_is_honoured_and_a_slower_step_warned_once(machine, step_speedup, warns):
    state = machine(capability="AVX512", supported=True, speedup=2.4, native=True, step_speedup=step_speedup)
    x = (torch.rand(100, 784, generator=torch.Generator().manual_seed(0)) < 0.13).float()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two rules, one process: one warning
            rule = make_rule("contrastive-divergence", {"matmul_precision": "bfloat16"})
            rule.compute_gradient(RBM(784, 500, seed=0), x, torch.Generator().manual_seed(1))
    said = [str(w.message) for w in caught if "CD step measured" in str(w.message)]
    assert len(said) == (1 if warns else 0)
    if warns:
        assert "1.28x slower than in float32" in said[0] and "'auto' would choose float32" in said[0]
    assert state["steps_measured"] == 2 and "weight_low" in rule._workspace
    rec = rule.describe()
    assert rec["matmul_precision_resolved"] == "bfloat16" and rec["cd_step_bf16_speedup_measured"] == step_speedup


def test_sklearn_reports_the_resolved_precision(machine):
    from genlearn.sklearn import BernoulliRBM

    machine(capability="AVX2", supported=False, speedup=0.02)
    X = (np.random.default_rng(0).random((40, 8)) < 0.3).astype(np.float32)
    est = BernoulliRBM(n_components=4, n_iter=1, random_state=0).fit(X)
    assert est.matmul_precision == "auto" and est.matmul_precision_ == "full"


def test_models_default_to_auto_and_old_configs_keep_their_precision(machine):
    machine(speedup=2.0)
    assert NADE(10, 8).matmul_precision == MADE(10, 8).matmul_precision == VAE(10, 2, [8]).matmul_precision == "auto"
    for cls, model in ((NADE, NADE(10, 8)), (MADE, MADE(10, 8)), (VAE, VAE(10, 2, [8]))):
        old = {k: v for k, v in model.config().items() if k != "matmul_precision"}
        assert cls.from_config(old).matmul_precision == "full"  # saved before the option: trained in full
        assert cls.from_config({**old, "matmul_precision": "bfloat16"}).matmul_precision == "bfloat16"
    assert rule_from_legacy_config("rbm", {"n_visible": 9, "n_hidden": 3})[1]["matmul_precision"] == "full"


def test_autoregressive_models_resolve_auto_by_their_product_size(machine):
    machine(speedup=2.0)
    small = MADE(10, 8)
    small.loss(torch.zeros(4, 10))
    assert small.resolved_matmul_precision == "full"
    big = MADE(784, 500)
    big.loss(torch.zeros(100, 784))
    assert big.resolved_matmul_precision == "bfloat16"
    big.loss(torch.zeros(3, 784))  # a short last batch keeps the first batch's choice
    assert big.resolved_matmul_precision == "bfloat16"
    big.matmul_precision = "full"  # a changed request is resolved again
    big.loss(torch.zeros(100, 784))
    assert big.resolved_matmul_precision == "full"
    machine(capability="AVX2", supported=False, speedup=0.02)
    P._reset_for_tests()
    other = MADE(784, 500)
    other.loss(torch.zeros(100, 784))
    assert other.resolved_matmul_precision == "full"


def test_explicit_bfloat16_is_measured_when_torch_dispatches_below_the_cpus_flags(machine):
    """ATEN_CPU_CAPABILITY=avx2 / ONEDNN_MAX_CPU_ISA=AVX2 on a CPU whose flags list avx512_bf16: the products are
    emulated (measured 24x slower on this project's machine), so the flags alone must not honour bfloat16."""
    state = machine(capability="AVX2", supported=False, speedup=0.042, native=True)
    with pytest.warns(RuntimeWarning, match=r"23\.8x slower than float32 on this CPU \(AVX2"):
        assert P.resolve_matmul_precision("bfloat16", "cpu", BIG) == "full"
    assert state["measured"] == 1


@pytest.mark.parametrize("capability,supported,native,shape", [
    ("AVX2", False, False, "emulated"),  # emulated: the small, cheap timing (only the warning's figure depends on it)
    ("AVX512", True, True, "full"),      # capable: the minibatch-sized product decides "auto"
])
def test_the_bfloat16_timing_is_small_where_bfloat16_is_emulated(machine, capability, supported, native, shape):
    state = machine(capability=capability, supported=supported, speedup=0.02 if shape == "emulated" else 2.0,
                    native=native)
    P.bf16_speedup("cpu")
    assert state["shape"] == (P.EMULATED_BENCH_SHAPE if shape == "emulated" else P.BENCH_SHAPE)
    assert 2 * math.prod(P.EMULATED_BENCH_SHAPE) < 2 * math.prod(P.BENCH_SHAPE) / 8
