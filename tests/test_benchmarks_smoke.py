"""Every benchmark script runs in its --smoke mode (embedded or synthetic data, seconds of work, no data
directory) and writes the figures it exists to measure: finite numbers under the keys its results JSON is read by.

The scripts run as a user runs them (`python benchmarks/X.py --smoke --out FILE`, one thread each), two at a
time, once for the module."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

#: script -> the figures its smoke run must produce ("a.b.c": results["a"]["b"]["c"]; "*" runs over a list)
EXPECTED = {
    "baselines": ["digits.train_nll", "digits.valid_nll", "digits.test_nll", "digits.test_bits_per_dim",
                  "digits.smoothing.alpha", "digits.wall_seconds"],
    "boltzmann_teacher": ["teacher.rows.*.kl_true", "teacher.rows.*.moment_error", "teacher.rows.*.train_seconds",
                          "bars_and_stripes.3x3.recipes.adam.final_kl", "bars_and_stripes.3x3.block_energy_kl.*.kl",
                          "bars_and_stripes_estimators.rows.*.kl_true", "seconds.teacher"],
    "boltzmann_speed": ["sweep_speedup", "pcd_epoch_speedup", "ais_speedup", "sweep_median_seconds.compiled",
                        "pcd_epoch_median_seconds.torch", "ais_log_z.compiled.*", "ais_log_z.torch.*",
                        "settings.threads"],
    "made_speed": ["gemm_gflops_100x784x500", "gemm_gflops_2048", "made_epoch_seconds_best",
                   "made_dense_epoch_seconds_best", "made_sums_speedup_median", "fvsbn_sums_speedup_median",
                   "made_no_direct_epoch_seconds_best", "made_bf16_epoch_seconds_best",
                   "made_epoch_fraction_of_roofline", "nade_train_examples_per_second",
                   "nade_eval_examples_per_second", "oa_nade_train_examples_per_second",
                   "oa_nade_train_bf16_examples_per_second", "oa_nade_train_dense_examples_per_second",
                   "made32_eval_seconds",
                   "made32_eval_check_mean_nll_untrained", "settings.threads"],
    "publish_run": ["digits.test_nll", "digits.reloaded_test_nll", "digits.bytes", "digits.float16_change"],
    "oa_nade_gradient_variance": ["independent.gradient_total_variance", "stratified.gradient_total_variance",
                                  "independent.loss_sd", "stratified.loss_mean",
                                  "variance_ratio_stratified_to_independent"],
    "rbm_binarized_mnist": ["rbm25-cd3.test", "rbm25-cd3.train", "rbm20-pcd.test", "rbm20-cd1.test",
                            "rbm500.train_seconds", "rbm500.curve.*.test_nll_forward",
                            "rbm500.ais_published_schedule.test_nll_forward",
                            "rbm500.ais_published_schedule.test_nll_reverse", "rbm500.ais_raise.test_nll_forward",
                            "wall_seconds"],
    "rbm_speed": ["gemm_peak_gflops", "gemm_peak_gflops_bfloat16", "epoch_seconds", "epoch_seconds_bfloat16",
                  "roofline_fraction", "roofline_fraction_bfloat16", "sklearn_epoch_seconds", "ratio_vs_sklearn",
                  "ais_seconds", "ais_seconds_without_table", "ais_table_speedup_measured", "ais_forward_log_z",
                  "ais_forward_reverse.forward", "ais_forward_reverse.reverse", "ais_raise_seconds",
                  "exact_logz_784x25", "peak_rss_mb", "rss_after_data_mb"],
    "gan_bars_and_stripes": ["configs.*.kl_qp_mean", "configs.*.mass_outside_mean", "configs.*.patterns_covered_mean",
                             "configs.*.seeds_all_covered", "configs.*.runs.*.normalisation_error", "wall_seconds"],
    "gan_binarized_mnist": [f"{r}.{k}" for r in ("gan-kl", "gan-js")
                            for k in ("test_nll", "test_nll_lower", "test_nll_upper", "ais_test_nll",
                                      "ais_test_nll_stderr", "ais_test_nll_lower", "ais_test_nll_upper", "bdmc_gap",
                                      "ais_kl_empirical", "class_histogram.*",
                                      "confident_fraction", "classes_within_5_15", "class_tv_to_reference",
                                      "wall_seconds", "ais_seconds")]
    + ["settings.classifier.test_accuracy", "settings.classifier.train_seconds", "reference.class_histogram.*",
       "reference.confident_fraction", "reference.classes_within_5_15"],
    "vae_binarized_mnist": [f"{r}.{k}" for r in ("vae", "iwae-50", "hvae-vampprior")
                            for k in ("test_nll", "test_nll_stderr", "elbo", "wall_seconds", "target")]
    + ["hvae-vampprior.ais_test_nll", "hvae-vampprior.bdmc_gap", "hvae-vampprior.ais_is_nll",
       "vae-refit.test_nll", "vae-refit.test_nll_stderr", "vae-refit.wall_seconds", "vae-refit.epochs_run"],
    "speed": ["gemm_peak_gflops", "settle_seconds", "seconds.sklearn.*", "seconds.auto.*", "seconds_median.full",
              "seconds.cli.*", "seconds.unfused.*", "ratio_vs_sklearn.unfused",
              "ratio_vs_sklearn.cli", "cli_wall_seconds.*", "ratio_interval_vs_sklearn.full.*",
              "ratio_interval_coverage",
              "ratio_vs_sklearn.auto", "ratio_vs_sklearn.full", "roofline_fraction.auto",
              "machine.bf16_speedup_measured", "machine.sparse_speedup_xW", "machine.load_average_at_end.*"],
    "vae_speed": ["vae.genlearn_seconds_median", "iwae.genlearn_seconds_median", "vae.genlearn_loss_per_example.*",
                  "vae.roofline_seconds", "iwae.roofline_fraction.genlearn", "settings.gemm_peak_gflops",
                  "iwae.check_after_training.genlearn.neg_elbo", "settings.threads"],
    "gpu_check": ["recipe_epochs.made-32.epoch_seconds", "recipe_epochs.rbm-784x20-cd1.epoch_seconds",
                  "recipe_epochs.vae.epoch_seconds", "recipe_epochs.mixture-500.epoch_seconds",
                  "rbm.cd1_epoch_seconds", "rbm.ais_seconds", "rbm.log_z_ais", "total_seconds"],
    "data_parallel_scaling": ["by_processes.1.epoch_seconds", "by_processes.2.epoch_seconds",
                              "by_processes.2.all_reduce_seconds", "by_processes.2.cpu_seconds_by_rank.*",
                              "speedup", "efficiency", "cpu_speedup_bound"],
    "vae_ais": ["is_nll", "is_nll_stderr", "runs.encoder.10.ais_nll", "runs.encoder.10.bdmc_gap",
                "runs.encoder.10.ais_minus_is", "runs.prior.3.ais_nll", "runs.prior.3.seconds", "settings.rows"],
    "vae_is_speed": ["is_seconds", "roofline_seconds", "ratio_to_roofline", "achieved_gflops", "flops.total",
                     "gemm_gflops.dec3", "breakdown_one_chunk.gemm_fraction", "probe.roofline_seconds"],
    "tractable_binarized_mnist": [f"{m}.{k}" for m in ("mixture", "fvsbn", "nade", "oa-nade", "made", "made-32")
                                  for k in ("test_nll", "valid_nll", "train_seconds", "epochs", "curve.*.epoch")]
    + ["oa-nade.test_nll_single_member", "made-32.test_nll_single_member", "oa-nade.curve.*.valid_nll_member",
       "made.curve.*.valid_nll", "made.curve.*.seconds"],
    "tractable_uci": [f"digits.{m}.{k}" for m in ("mixture", "fvsbn", "nade", "oa-nade", "made", "made-masks")
                      for k in ("test_nll", "valid_nll", "wall_seconds")]
    + ["digits.mixture.runs.*.valid_nll", "digits.made.curve.*.valid_nll", "digits.made.epochs"],
    "nade_eval_speed": ["median_seconds.rational", "median_seconds.libm", "ns_per_activation.rational",
                        "speedup_rational_over_libm", "max_abs_log_prob_difference", "seconds.rational.*"],
    "nade_speed": ["train_examples_per_second.runs.*", "train_examples_per_second.per-step.*",
                   "median_examples_per_second.runs", "ratio_runs_over_per_step", "density"],
    "uci_tune": ["digits.test_nll", "digits.ci95.*", "digits.valid_nll", "digits.test_nll_stderr",
                 "digits.best_trial_test_nll", "digits.best_trial_valid_nll",
                 "digits.wall_seconds"],
}


def figures(results, path: str) -> list:
    """The values at a dotted path ("*" takes every element of a list); a missing key raises KeyError."""
    values = [results]
    for part in path.split("."):
        if part == "*":
            values = [v for value in values for v in value]
        else:
            values = [value[part] for value in values]
    return values


def run_smoke(script: str, folder: Path) -> tuple[subprocess.CompletedProcess, Path]:
    out = folder / f"{script}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
           "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / f"{script}.py"), "--smoke", "--out", str(out)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    return proc, out


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("benchmarks")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {s: pool.submit(run_smoke, s, folder) for s in EXPECTED}
        return {s: f.result() for s, f in futures.items()}


def test_every_script_is_covered():
    scripts = {p.stem for p in BENCHMARKS.glob("*.py")} - {"common"}
    assert scripts == set(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_smoke_run_writes_its_figures(script, smoke_runs):
    proc, out = smoke_runs[script]
    assert proc.returncode == 0, f"{script} --smoke failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    results = json.loads(out.read_text())
    for path in EXPECTED[script]:
        values = figures(results, path)
        assert values, f"{script}: no values at {path}"
        for v in values:
            assert isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), \
                f"{script}: {path} = {v!r} is not a finite number"


def test_figures_reads_nested_keys_and_fails_on_missing_ones():
    results = {"a": {"rows": [{"x": 1.0}, {"x": 2.0}]}}
    assert figures(results, "a.rows.*.x") == [1.0, 2.0]
    with pytest.raises(KeyError):
        figures(results, "a.rows.*.y")
