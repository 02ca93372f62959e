"""Devices and data-parallel training (genlearn.learning.devices, genlearn.learning.distributed), on CPU.

The data-parallel tests spawn 2 local processes with gloo (distributed.run_local: what torchrun does) once for
the module, and compare with 1-process runs of the same seed and global batch:

- MADE (maximum likelihood, SGD with momentum), RBM PCD-1 (chains split over the ranks), VAE (ELBO, Adam) and
  the mixture's EM: the parameters after >= 13 steps (EM: 3 iterations) agree to 1e-5 relative
  (max |a - b| <= 1e-5 max |b| per tensor: float32 sums in another order);
- a sharded evaluation (each rank its rows, float64 sums and counts all-reduced) equals the 1-process NLL;
- the final metrics are sharded too: `evaluate(parallel=...)` on the 1-process runs' models (MADE exact, RBM free
  energies with log Z on rank 0, VAE importance sampling with the 1-process random numbers) equals their
  metrics.json, and a 2-process fit's final NLLs equal the 1-process fit's (to the 1e-5 of its parameters);
- a run stopped after 1 epoch on 1 process and resumed on 2 (RBM PCD), and one stopped on 2 and resumed on 1
  (MADE), finish and equal the uninterrupted 1-process run.

The global batch of 99 rows splits 50/49 over 2 ranks and the last batch of the 1258 digits rows (70 rows)
35/35; 51 persistent chains split 26/25: unequal shards are covered."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from safetensors.torch import load_file

from genlearn.errors import ConfigError
from genlearn.learning import devices
from genlearn.learning.distributed import run_local, shard_bounds

DATA = "digits"
RTOL = 1e-5
JOBS = {
    "made": ("made", {"hidden": 32, "optimizer": "momentum", "lr": 0.05, "batch_size": 99, "epochs": 1}),
    "made2": ("made", {"hidden": 32, "optimizer": "momentum", "lr": 0.05, "batch_size": 99, "epochs": 2}),
    "rbm": ("rbm", {"hidden": 16, "persistent": True, "n_chains": 51, "optimizer": "sgd", "lr": 0.05,
                    "batch_size": 99, "epochs": 2}),
    "vae": ("vae", {"latent": 2, "hidden": "32", "optimizer": "adam", "lr": 0.003, "batch_size": 99, "epochs": 1}),
    "mixture": ("mixture", {"components": 4, "batch_size": 99, "epochs": 3}),
}
EVAL = {"vae": {"iw_samples": 10}}
#: rows of the 2-process importance-sampling check at likelihood.IS_SAMPLES samples per row
IS_ROWS = 40


def _fit(name: str, out: Path, **overrides):
    from genlearn.runs import fit

    model, kwargs = JOBS[name]
    return fit(model, DATA, out=out, overwrite=True, plots=False, progress=False, device="cpu",
               partition_options=EVAL.get(name), **{**kwargs, **overrides})


def _worker(root: str) -> None:
    """Every rank: the 2-process runs, the resume of a 1-process checkpoint, and a sharded evaluation."""
    import torch.distributed as dist

    from genlearn.learning.distributed import DataParallel
    from genlearn.likelihood import mean_nll
    from genlearn.runs import fit, load_run

    root = Path(root)
    for name in ("made", "rbm", "vae", "mixture"):
        _fit(name, root / "two" / name)
    from genlearn import precision

    with mock.patch.object(precision, "cpu_capability", return_value="AVX2"), \
            mock.patch.object(precision, "bf16_speedup", return_value=0.02):  # bfloat16 emulated: 50x slower
        _fit("rbm", root / "two" / "rbm_bf16", matmul_precision="bfloat16")
    from genlearn.learning import model_precision

    # MADE's "auto" where the product's timing picks bfloat16: rank 0's step timing says 2.0x, rank 1's would say
    # 0.5x; settled once on rank 0 and broadcast, rank 1 never times
    with mock.patch.object(precision, "bf16_capable", return_value=True), \
            mock.patch.object(model_precision, "product_choice", return_value="bfloat16"), \
            mock.patch.object(model_precision, "measure_step_speedup",
                              side_effect=lambda *a: 2.0 if dist.get_rank() == 0 else 0.5):
        run = _fit("made", root / "two" / "made_auto")
    (root / f"made_auto_rank{dist.get_rank()}.json").write_text(json.dumps(
        {"resolved": run.model.resolved_matmul_precision,
         "speedup": getattr(run.model, "step_bf16_speedup_measured", None)}))
    fit(None, None, out=root / "resume_rbm", resume=True, plots=False, progress=False, epochs=2)
    parallel, _ = DataParallel.from_env("cpu")
    model = load_run(root / "one" / "made").model
    from genlearn.data.registry import load_dataset

    test = load_dataset(DATA).test
    value = parallel.sharded(mean_nll)(model, test)
    rows = parallel.shard(test.shape[0])
    if dist.get_rank() == 0:
        (root / "sharded.json").write_text(json.dumps({"nll": value, "rows": rows}))
    from genlearn.evaluation import evaluate
    from genlearn.likelihood import latent_nll

    dataset = load_dataset(DATA)
    for name in ("made", "rbm", "vae"):  # the final metrics of the 1-process runs' models, sharded
        got = evaluate(load_run(root / "one" / name).model, dataset, parallel=parallel, **EVAL.get(name, {}))
        assert (got == {}) == (dist.get_rank() != 0)
        if got:
            (root / f"evaluate_{name}.json").write_text(json.dumps(got))
    # 5,000 samples per row: one row per chunk, rank 1 skips the draws of rank 0's 20 rows
    est = latent_nll(load_run(root / "one" / "vae").model, test[:IS_ROWS], parallel=parallel)
    if dist.get_rank() == 0:
        (root / "is.json").write_text(json.dumps({"value": est.value, "stderr": est.stderr, **est.details}))
    from genlearn.models.gan import GAN  # a generator without encoder: quadrature over z, sharded

    quad = latent_nll(GAN(64, latent=2, hidden=(16,)), test[:IS_ROWS], "quadrature", parallel=parallel)
    if dist.get_rank() == 0:
        (root / "quadrature.json").write_text(json.dumps({"value": quad.value, "rows": quad.details["rows"]}))


def _params(run_dir: Path) -> dict:
    return load_file(str(run_dir / "model.safetensors"))


#: parameters near 0 (the RBM's hidden biases, ~1e-3 after two epochs) are sums of learning rate x gradients whose
#: terms are O(1) probabilities: their float32 rounding over the ranks' other summation orders is absolute (~1e-8
#: for 20 steps at rate 0.05), so the relative bound takes max(scale, this floor)
SCALE_FLOOR = 1e-2


def _assert_params_close(a: dict, b: dict, rtol: float = RTOL) -> None:
    assert a.keys() == b.keys()
    for k in a:
        scale = max(float(b[k].abs().max()), SCALE_FLOOR) if b[k].numel() and b[k].is_floating_point() else 1.0
        diff = float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0
        assert diff <= rtol * max(scale, 1e-12), f"{k}: max |diff| {diff:.3g} > {rtol} x {scale:.3g}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp")
    for name in ("made", "made2", "rbm", "vae", "mixture"):
        _fit(name, root / "one" / name)
    _fit("rbm", root / "resume_rbm", epochs=1)
    run_local(_worker, 2, str(root), threads=1, timeout_s=5)
    return root


@pytest.mark.parametrize("name", ["made", "rbm", "vae", "mixture"])
def test_two_processes_equal_one(runs, name):
    one, two = runs / "one" / name, runs / "two" / name
    _assert_params_close(_params(two), _params(one))
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert (m1["world_size"], m2["world_size"]) == (1, 2)
    assert m2["epochs_run"] == m1["epochs_run"]
    # the per-epoch objective (all-reduced over ranks) is the 1-process one
    for r1, r2 in zip(m1["history"][1:], m2["history"][1:]):
        assert r2["loss"] == pytest.approx(r1["loss"], rel=1e-5, abs=1e-6)
    # the final NLLs (sharded over the 2 ranks; the VAE's by importance sampling) are the 1-process ones, up to the
    # 1e-5 of the parameters
    for split in ("train", "valid", "test"):
        assert m2[f"{split}_nll"] == pytest.approx(m1[f"{split}_nll"], rel=1e-5)


def test_a_models_auto_precision_is_settled_on_rank_0_for_every_rank(runs):
    """NADE / MADE / VAE "auto" under torchrun: rank 0 times the step (model_precision) and every rank takes its
    choice; the other ranks never time (their mocked timing would have said float32)."""
    ranks = [json.loads((runs / f"made_auto_rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["resolved"] for r in ranks] == ["bfloat16", "bfloat16"]
    assert ranks[0]["speedup"] == 2.0 and ranks[1]["speedup"] is None
    metrics = json.loads((runs / "two" / "made_auto" / "metrics.json").read_text())
    assert metrics["matmul_precision_resolved"] == "bfloat16" and metrics["step_bf16_speedup_measured"] == 2.0


def test_the_cd_precision_is_resolved_once_for_every_rank(runs):
    """Under torchrun the CD rule's matmul precision is resolved as in one process, on rank 0, and broadcast: an
    explicit "bfloat16" that the CPU would emulate runs float32 products on both ranks (the parameters equal the
    1-process float32 run's), and the runs record what "bfloat16" and "auto" resolved to."""
    _assert_params_close(_params(runs / "two" / "rbm_bf16"), _params(runs / "one" / "rbm"))
    emulated = json.loads((runs / "two" / "rbm_bf16" / "metrics.json").read_text())
    assert emulated["matmul_precision"] == "bfloat16" and emulated["matmul_precision_resolved"] == "full"
    auto = json.loads((runs / "two" / "rbm" / "metrics.json").read_text())
    assert auto["matmul_precision"] == "auto" and auto["matmul_precision_resolved"] == "full"


@pytest.mark.parametrize("name", ["made", "rbm", "vae"])
def test_sharded_final_evaluation_equals_unsharded(runs, name):
    """evaluate(parallel=...) over 2 ranks on the 1-process run's model gives the metrics.json of that run (the
    unsharded evaluation of the same model): MADE in float64 to 1e-12; the RBM's float32 free energies and the
    VAE's float32 log-weights (the same random numbers, other row blocks) to 1e-6."""
    got = json.loads((runs / f"evaluate_{name}.json").read_text())
    want = json.loads((runs / "one" / name / "metrics.json").read_text())
    assert {"train_nll", "valid_nll", "test_nll"} <= got.keys()
    rel = 1e-12 if name == "made" else 1e-6
    for key, value in got.items():
        if isinstance(value, float):
            assert value == pytest.approx(want[key], rel=rel), key
        elif not isinstance(value, dict):
            assert value == want[key], key
    if name == "vae":  # importance sampling: a standard error, and the same 10 samples per row
        assert got["test_iw_samples"] == 10 and got["test_nll_stderr"] > 0


def test_sharded_importance_sampling_uses_the_one_process_samples(runs):
    """The IS estimate at 5,000 samples per row (one row per chunk) over 2 ranks equals the 1-process estimate,
    with its Monte Carlo error, mean ELBO and ESS and the spread over rows (from sums of squares); other samples
    (another seed) would move it by far more than the tolerance."""
    from genlearn.data.registry import load_dataset
    from genlearn.likelihood import latent_nll
    from genlearn.runs import load_run

    model = load_run(runs / "one" / "vae").model
    rows = load_dataset(DATA).test[:IS_ROWS]
    got = json.loads((runs / "is.json").read_text())
    want = latent_nll(model, rows)
    assert got["rows"] == IS_ROWS and got["iw_samples"] == 5000
    for key, value in {"value": want.value, "stderr": want.stderr, "elbo": want.details["elbo"],
                       "ess_mean": want.details["ess_mean"], "row_stderr": want.details["row_stderr"]}.items():
        assert got[key] == pytest.approx(value, rel=1e-6), key
    other = latent_nll(model, rows, seed=1)
    assert abs(other.value - want.value) > 10 * 1e-6 * abs(want.value)  # 8e-5 relative


def test_sharded_quadrature_equals_unsharded(runs):
    from genlearn.data.registry import load_dataset
    from genlearn.likelihood import latent_nll
    from genlearn.models.gan import GAN

    got = json.loads((runs / "quadrature.json").read_text())
    want = latent_nll(GAN(64, latent=2, hidden=(16,)), load_dataset(DATA).test[:IS_ROWS], "quadrature")
    assert got["rows"] == IS_ROWS
    assert got["value"] == pytest.approx(want.value, rel=1e-6)


def test_importance_sampling_shards_are_rows_of_the_whole_call():
    """importance_log_marginal(shard=(a, b)) gives rows [a, b) of the whole call, whatever the chunks (several
    rows per chunk, or one row in several sample chunks), for one- and two-layer VAEs (z1's noise given k draws of
    z2 is sliced on its row dimension) and empty or partial shards."""
    from genlearn.estimators.importance import importance_log_marginal
    from genlearn.models.vae import VAE

    x = (torch.rand(23, 12, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    for options in ({"latent": 2, "hidden": 8}, {"latent": [3, 2], "hidden": 8, "prior": "vampprior",
                                                 "pseudo_inputs": 5}):
        model = VAE(12, **options).eval()
        for k, chunk in ((7, 30), (40, 30)):
            full = importance_log_marginal(model.log_weights, x, k, torch.Generator().manual_seed(3), chunk=chunk)
            for a, b in ((0, 9), (9, 23), (4, 5), (11, 11)):
                part = importance_log_marginal(model.log_weights, x, k, torch.Generator().manual_seed(3), chunk=chunk,
                                               shard=(a, b))
                for key, value in full.items():
                    assert part[key].shape == (b - a,)
                    torch.testing.assert_close(part[key], value[a:b], rtol=1e-5, atol=1e-5)


def test_two_process_runs_differ_from_another_seed(runs, tmp_path):
    """The tolerance above can fail: a run with another seed is far outside it."""
    other = _fit("made", tmp_path / "made-seed1", seed=1, init_seed=1)
    with pytest.raises(AssertionError):
        _assert_params_close(_params(other.dir), _params(runs / "two" / "made"))


def test_pcd_chains_checkpointed_whole(runs):
    """Rank 0's checkpoint holds all 51 chains, assembled from both ranks, equal to the 1-process chains."""
    one = load_file(str(runs / "one" / "rbm" / "checkpoint.safetensors"))["rule.chains"]
    two = load_file(str(runs / "two" / "rbm" / "checkpoint.safetensors"))["rule.chains"]
    assert two.shape == (51, 64)
    assert torch.equal(one, two)


def test_sharded_evaluation_equals_unsharded(runs):
    from genlearn.data.registry import load_dataset
    from genlearn.likelihood import mean_nll
    from genlearn.runs import load_run

    got = json.loads((runs / "sharded.json").read_text())
    assert got["rows"] == [0, 135]  # 269 rows: 135 + 134, no padding
    test = load_dataset(DATA).test
    assert got["nll"] == pytest.approx(mean_nll(load_run(runs / "one" / "made").model, test), rel=1e-12)


def test_resume_one_process_run_on_two(runs):
    m = json.loads((runs / "resume_rbm" / "metrics.json").read_text())
    assert m["epochs_run"] == 2 and m["world_size"] == 2
    _assert_params_close(_params(runs / "resume_rbm"), _params(runs / "one" / "rbm"))


def test_resume_two_process_run_on_one(runs, tmp_path):
    from genlearn.runs import fit

    shutil.copytree(runs / "two" / "made", tmp_path / "made")
    run = fit(None, None, out=tmp_path / "made", resume=True, plots=False, progress=False, epochs=2)
    assert run.metrics["epochs_run"] == 2 and run.metrics["world_size"] == 1
    _assert_params_close(_params(tmp_path / "made"), _params(runs / "one" / "made2"))


def test_shard_bounds_disjoint_and_complete():
    for n in (0, 1, 5, 99, 100):
        for w in (1, 2, 3, 7):
            bounds = [shard_bounds(n, r, w) for r in range(w)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [b - a for a, b in bounds]
            assert max(sizes) - min(sizes) <= 1


def test_row_shard_noise_is_the_whole_batch_noise():
    from genlearn.numerics import randn_rows, row_shard

    g_full, g = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    full = randn_rows((2, 7, 3), 1, g_full)
    with row_shard(4, 7, 7):
        part = randn_rows((2, 3, 3), 1, g)
    assert torch.equal(part, full[:, 4:7])
    assert torch.equal(g.get_state(), g_full.get_state())  # the generator advanced as far as the whole draw
    plain = randn_rows((3, 3), 0, torch.Generator().manual_seed(5))  # no context: a plain draw
    assert torch.equal(plain, torch.randn((3, 3), generator=torch.Generator().manual_seed(5)))


# -- devices ----------------------------------------------------------------------------------------------
def test_auto_picks_a_gpu_when_present():
    with mock.patch("torch.cuda.is_available", return_value=True), \
            mock.patch("torch.cuda.current_device", return_value=0):
        assert devices.resolve_device("auto") == torch.device("cuda", 0)
    with mock.patch("torch.cuda.is_available", return_value=False), \
            mock.patch.object(devices, "_mps_available", return_value=False):
        assert devices.resolve_device("auto") == torch.device("cpu")
    with mock.patch("torch.cuda.is_available", return_value=False), \
            mock.patch.object(devices, "_mps_available", return_value=True):
        assert devices.resolve_device("auto") == torch.device("mps")
    with mock.patch("torch.cuda.is_available", return_value=True), \
            mock.patch("torch.cuda.device_count", return_value=2):
        assert devices.resolve_device("cuda:1") == torch.device("cuda", 1)
        with pytest.raises(ConfigError, match="2 CUDA device"):
            devices.resolve_device("cuda:2")


def test_bad_or_absent_devices_are_one_clear_error():
    assert devices.resolve_device(None) == devices.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        devices.resolve_device("tpu")
    with mock.patch("torch.cuda.is_available", return_value=False):
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            devices.resolve_device("cuda")


def test_cli_device_flag_and_python_m(tmp_path, capsys):
    from genlearn.cli import main

    out = tmp_path / "run"
    assert main(["fit", "product-bernoulli", "--data", "digits", "--epochs", "1", "--out", str(out), "--device",
                 "auto", "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text())["device"] == "cpu"
    with mock.patch("torch.cuda.is_available", return_value=False):
        assert main(["eval", str(out), "--device", "cuda"]) == 2
    assert "genlearn: error: --device cuda: no CUDA GPU" in capsys.readouterr().err
    # python -m genlearn (what torchrun -m genlearn runs): the same command and error format
    env = {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
    bad = subprocess.run([sys.executable, "-m", "genlearn", "sample", str(out), "-n", "2", "--device", "cuda",
                          "--threads", "1"],  # no note on the load of the machine before the error
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("genlearn: error: --device cuda: no CUDA GPU")
    assert "Traceback" not in bad.stderr


def test_generator_state_of_another_device_reseeds():
    g = torch.Generator().manual_seed(3)
    assert devices.restore_generator(g, torch.Generator().manual_seed(9).get_state(), seed=0)
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(9).get_state())
    assert not devices.restore_generator(g, torch.zeros(16, dtype=torch.uint8), seed=4)  # a CUDA (Philox) state
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(4).get_state())


# -- GPU (skipped without CUDA) -----------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["made", "rbm", "vae", "mixture"])
def test_gpu_fit_matches_cpu_and_resumes_on_cpu(name, tmp_path):
    """A family trained on the GPU ends near the CPU run (different kernels and random streams for the
    stochastic rules: compared through the NLL, not the parameters) and its checkpoint resumes on the CPU."""
    from genlearn.runs import fit

    model, kwargs = JOBS[name]
    gpu = fit(model, DATA, out=tmp_path / "gpu", plots=False, progress=False, device="cuda",
              partition_options=EVAL.get(name), **kwargs)
    assert gpu.metrics["device"].startswith("cuda")
    cpu = _fit(name, tmp_path / "cpu")
    key = "test_nll" if gpu.metrics.get("test_nll") is not None else "test_elbo"
    assert gpu.metrics[key] == pytest.approx(cpu.metrics[key], rel=0.05)
    if name in ("made", "mixture"):  # deterministic rules: the same parameters up to float32 kernels
        _assert_params_close(_params(tmp_path / "gpu"), _params(tmp_path / "cpu"), rtol=1e-3)
    back = fit(None, None, out=tmp_path / "gpu", resume=True, plots=False, progress=False, device="cpu",
               epochs=kwargs["epochs"] + 1)
    assert back.metrics["epochs_run"] == kwargs["epochs"] + 1 and back.metrics["device"] == "cpu"


def test_shutdown_waits_for_every_rank_before_leaving_unless_a_rank_failed(monkeypatch):
    """A rank that destroys its process group while another still uses it aborts the process (SIGABRT, seen in
    local scaling runs): a normal end passes a barrier first; after an exception there is none (the other
    ranks may never reach it)."""
    from genlearn.learning import distributed as D

    calls = []
    monkeypatch.setattr(D.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(D.dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(D.dist, "destroy_process_group", lambda: calls.append("destroy"))
    D.shutdown()
    assert calls == ["barrier", "destroy"]
    calls.clear()
    D.shutdown(synchronize=False)
    assert calls == ["destroy"]
