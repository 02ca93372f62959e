"""genlearn.learning.model_precision: "auto" for NADE / MADE / VAE decided by timing the training step where the
product timing picks bfloat16; the copies leave the run exactly as the chosen precision given explicitly."""
import math

import pytest
import torch

import genlearn.precision as P
from genlearn import timing_cache
from genlearn.data import Dataset
from genlearn.learning import TrainConfig, Trainer
from genlearn.learning import model_precision as MP
from genlearn.learning.rules import make_rule
from genlearn.models.made import MADE


@pytest.fixture
def bf16_machine(monkeypatch, tmp_path):
    """A CPU where bfloat16 products measure `product` times faster, the steps `step` times (both mocked); the
    timing cache in a fresh folder. Returns the counts of step timings."""
    P._reset_for_tests()
    monkeypatch.setenv(timing_cache.ENV, str(tmp_path))
    timing_cache._reset_for_tests()
    state = {"steps_measured": 0}

    def configure(product=2.4, step=0.9, capable=True):
        monkeypatch.setattr(P, "bf16_capable", lambda device_type="cpu": capable)
        monkeypatch.setattr(P, "measure_bf16_speedup", lambda *a, **k: product)

        def steps(model, rule, batch):
            state["steps_measured"] += 1
            state["batch_rows"] = batch.shape[0]
            return step
        monkeypatch.setattr(MP, "measure_step_speedup", steps)
        return state

    yield configure
    P._reset_for_tests()
    timing_cache._reset_for_tests()


def _data(rows=200, n=784, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(rows, n, generator=g) < 0.13).float()


def _train_made(precision: str):
    x = _data()
    model = MADE(784, 128, seed=0, matmul_precision=precision)
    Trainer(model, Dataset("d", "binary", x), TrainConfig(epochs=1, lr=0.01, optimizer="adam", batch_size=100,
                                                          progress=False, seed=1)).fit()
    return model


@pytest.mark.parametrize("step, expected", [(0.9, "full"), (1.09, "full"), (1.1, "bfloat16")])
def test_made_auto_follows_the_timed_steps_and_trains_as_the_explicit_choice(bf16_machine, bfloat16_honoured,
                                                                             step, expected):
    state = bf16_machine(product=2.4, step=step)
    auto = _train_made("auto")
    assert state["steps_measured"] == 1 and state["batch_rows"] == 100
    assert auto.resolved_matmul_precision == expected and auto.step_bf16_speedup_measured == step
    explicit = _train_made(expected)
    for (name, a), (_, e) in zip(auto.state_dict().items(), explicit.state_dict().items()):
        assert torch.equal(a, e), name  # the timing's copies left the run as it was, bit for bit


def test_no_step_timing_where_bfloat16_is_not_capable_or_not_picked(bf16_machine):
    state = bf16_machine(product=0.05, capable=False)
    model = _train_made("auto")
    assert state["steps_measured"] == 0 and model.resolved_matmul_precision == "full"
    assert getattr(model, "step_bf16_speedup_measured", None) is None
    state = bf16_machine(product=2.4, step=3.0)
    small = MADE(10, 8, seed=0)  # products too small to gain: the model's own resolution says full, no timing
    Trainer(small, Dataset("d", "binary", _data(40, 10)), TrainConfig(epochs=1, batch_size=20, optimizer="adam",
                                                                      progress=False)).fit()
    assert state["steps_measured"] == 0 and small.resolved_matmul_precision == "full"


@pytest.mark.parametrize("precision", ["full", "bfloat16"])
def test_explicit_precisions_are_never_timed(bf16_machine, bfloat16_honoured, precision):
    state = bf16_machine(product=2.4, step=0.5)
    model = MADE(784, 128, seed=0, matmul_precision=precision)
    assert MP.settle_auto_precision(model, make_rule("maximum-likelihood"), _data(100)) is None
    assert state["steps_measured"] == 0


def test_vae_auto_is_settled_by_its_elbo_step_and_recorded(bf16_machine, tmp_path):
    import genlearn
    import numpy as np

    state = bf16_machine(product=2.4, step=0.95)
    np.savez(tmp_path / "rows.npz", train=_data(200).numpy(), valid=_data(50, seed=1).numpy(),
             test=_data(50, seed=2).numpy())
    run = genlearn.fit("vae", str(tmp_path / "rows.npz"), out=tmp_path / "run", epochs=1, batch_size=100,
                       latent="4", hidden="128", progress=False, plots=False, partition_options={"iw_samples": 10})
    assert state["steps_measured"] == 1
    assert run.metrics["matmul_precision_resolved"] == "full" and run.metrics["step_bf16_speedup_measured"] == 0.95
    # a --resume that only evaluates (the final files lost after the last epoch) records the same choice, from the
    # checkpoint of the epochs that made it (it recorded none: no step ran in the resuming process)
    (tmp_path / "run" / "metrics.json").unlink()
    (tmp_path / "run" / "model.safetensors").unlink()
    P._reset_for_tests()
    resumed = genlearn.fit(None, None, out=tmp_path / "run", resume=True, progress=False, plots=False)
    assert state["steps_measured"] == 1
    assert resumed.metrics["matmul_precision_resolved"] == "full"
    assert resumed.metrics["step_bf16_speedup_measured"] == 0.95


def test_a_resume_that_only_evaluates_records_the_cd_products_precision(tmp_path):
    """The RBM's CD/PCD rule records its products' precision (and the machine's facts) after its first step; a
    --resume after the last epoch runs no step, and took none of it before the checkpoint carried it."""
    import genlearn

    run = genlearn.fit("rbm", "digits", out=tmp_path / "run", hidden=8, persistent=True, epochs=1, progress=False,
                       plots=False)
    first = {k: v for k, v in run.metrics.items() if "precision" in k or k.startswith("cpu_")}
    assert first["matmul_precision_resolved"] in ("full", "bfloat16") and "cpu_capability" in first
    (tmp_path / "run" / "metrics.json").unlink()
    resumed = genlearn.fit(None, None, out=tmp_path / "run", resume=True, progress=False, plots=False)
    assert {k: v for k, v in resumed.metrics.items() if "precision" in k or k.startswith("cpu_")} == first


def test_the_real_measurement_is_positive_and_remembered(bfloat16_honoured, tmp_path, monkeypatch):
    monkeypatch.setenv(timing_cache.ENV, str(tmp_path))
    timing_cache._reset_for_tests()
    model, rule, batch = MADE(30, 16, seed=0), make_rule("maximum-likelihood"), _data(20, 30)
    s = MP.measure_step_speedup(model, rule, batch)
    assert math.isfinite(s) and s > 0
    before = [p.clone() for p in model.parameters()]
    MP.measure_step_speedup(model, rule, batch)
    assert all(torch.equal(a, b) and b.grad is None for a, b in zip(before, model.parameters()))
    timing_cache._reset_for_tests()
