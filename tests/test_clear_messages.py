"""Messages that name the user's real mistake (the s34 audit, section B): a missing flag value, an empty --p, the
flags of training settings (not their config names), one bound for --epochs, a recipe's own bad value named as
the recipe's, refit of a missing folder, a file or a damaged metrics.json, eval of a run on data of another kind,
NaN in the scikit-learn wrappers, and `genlearn --version`. Each assertion fails on the message it replaced."""
from __future__ import annotations

import json

import numpy as np
import torch
import pytest

import genlearn
from genlearn.errors import ConfigError

SMALL = "product-bernoulli:dim=3,n=30"


@pytest.mark.parametrize("argv, words", [
    (["fit", "rbm", "--data"], "expected one argument; write its value after it (--data VALUE)"),
    (["kl", "--p", "--q", "0.5,0.5"], "expected one argument; write its value after it (--p VALUE)"),
    (["kl", "--p", "-0.5,1.5", "--q", "0.5,0.5"], "a value that starts with '-' is written --p=VALUE"),
    (["kl", "--p", "", "--q", "0.5,0.5"], "--p is empty; give probabilities p1,p2,... or a run folder"),
    (["kl", "--p", "0.5,0.5", "--q", " "], "--q is empty"),
])
def test_missing_and_empty_values(refused, argv, words):
    refused(argv, words)


@pytest.mark.parametrize("flags, words", [
    (["--epochs", "-1"], "--epochs must be >= 1, got -1"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--final-lr-fraction", "2", "--schedule", "geometric"], "--final-lr-fraction must be in (0, 1], got 2.0"),
    (["--max-minutes", "-1"], "--max-minutes must be a positive number, got -1.0"),
    (["--lr", "-1"], "--lr (the learning rate) must be a positive number"),
])
def test_training_settings_are_named_by_their_flags(refused, tmp_path, flags, words):
    refused(["fit", "product-bernoulli", "--data", SMALL, "--quiet", "--out", tmp_path / "r", *flags], words)
    assert not (tmp_path / "r").exists()


def test_the_python_api_gives_the_same_bound_for_epochs():
    for epochs in (-1, 0):
        with pytest.raises(ConfigError, match=f"--epochs must be >= 1, got {epochs}"):
            genlearn.fit("product-bernoulli", SMALL, epochs=epochs, progress=False)


def test_a_recipe_file_s_own_bad_value_names_the_recipe(refused, tmp_path):
    recipe = tmp_path / "bad4.toml"
    recipe.write_text('summary = "x"\nmodel = "rbm"\ndata = "digits"\n[model_options]\nhidden = -4\n')
    line = refused(["fit", "--recipe", recipe, "--out", tmp_path / "r"], "--hidden must be >= 1, got -4")
    assert line.startswith(f"genlearn: error: recipe 'bad4' ({recipe}): ")
    recipe.write_text('summary = "x"\nmodel = "rbm"\ndata = "digits"\n[train]\nepochs = 2.5\n')
    refused(["fit", "--recipe", recipe, "--out", tmp_path / "r"], "recipe 'bad4'")
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "coin"
    genlearn.fit("product-bernoulli", "coin:n=30", epochs=1, out=out, progress=False, plots=False)
    return out


def test_refit_of_what_is_not_a_run(refused, tmp_path, finished_run):
    refused(["refit", tmp_path / "nonexist", "--out", tmp_path / "x"], "nonexist: no such folder")
    (tmp_path / "afile").write_text("precious")
    refused(["refit", tmp_path / "afile", "--out", tmp_path / "x"], "afile is a file, not a run folder")
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("precious")
    line = refused(["refit", finished_run, "--out", full], "exists and is not empty; choose another --out, or pass "
                                                            "--overwrite")
    assert "--resume" not in line and (full / "mine.txt").read_text() == "precious"


@pytest.mark.parametrize("damage, words", [
    (lambda m: m["data"]["sizes"].update(train="x"), "no number of training rows (data.sizes.train)"),
    (lambda m: m.pop("data"), "no number of training rows (data.sizes.train)"),
    (lambda m: m["data"].update(spec=3), "its data spec (data.spec) is 3, not a string"),
    (lambda m: m.pop("train_config"), "no training settings (train_config)"),
    (lambda m: m.update(model=None), "names no model"),
    (lambda m: m.update(best_epoch="two"), "best_epoch is 'two', not a number of epochs"),
])
def test_refit_of_a_damaged_metrics_file_says_it_is_damaged(refused, tmp_path, finished_run, damage, words):
    import shutil

    run = tmp_path / "damaged"
    shutil.copytree(finished_run, run)
    metrics = json.loads((run / "metrics.json").read_text())
    damage(metrics)
    (run / "metrics.json").write_text(json.dumps(metrics))
    line = refused(["refit", run, "--out", tmp_path / "x"], words)
    assert "metrics.json is damaged" in line and "given as an object" not in line


def test_eval_on_data_of_another_kind_names_model_and_data(refused, tmp_path, finished_run):
    refused(["eval", finished_run, "--data", "die"], "the model 'product-bernoulli' is for binary data, but the data "
                                                     "set 'die' is categorical; evaluate it on binary data")
    categorical = tmp_path / "die"
    genlearn.fit("categorical", "die", epochs=1, out=categorical, progress=False, plots=False)
    refused(["eval", categorical, "--data", "coin"], "the model 'categorical' is for categorical data, but the data "
                                                     "set 'coin' is binary")


@pytest.mark.parametrize("name", ["BernoulliRBM", "DensityEstimator", "VariationalAutoencoder"])
def test_wrappers_say_nan_is_not_a_density_model_s_input(name):
    import genlearn.sklearn as wrappers

    x = np.ones((10, 3))
    x[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"^X holds inf at row 2, column 1 \(1 NaN or inf values\); a density model "
                                         "needs finite values") as caught:
        getattr(wrappers, name)().fit(x)
    assert "HistGradientBoosting" not in str(caught.value)


def test_version(cli):
    code, out, _ = cli(["--version"])
    assert code == 0 and out.strip() == f"genlearn {genlearn.__version__}"


def test_under_torchrun_rank_0_alone_prints_the_epoch_lines(capsys):
    """`genlearn fit` piped to a log: one plain line per evaluation, printed by the writing rank only (every rank
    used to print its own copy)."""
    from types import SimpleNamespace

    from genlearn.cli import _plain_lines

    [line] = _plain_lines(SimpleNamespace(quiet=False), progress=False)
    record = {"epoch": 3, "train_nll": 1.5, "valid_nll": 1.75}
    for is_writer in (False, True):
        line(SimpleNamespace(cfg=SimpleNamespace(epochs=10), parallel=SimpleNamespace(is_writer=is_writer)), record)
    line(SimpleNamespace(cfg=SimpleNamespace(epochs=10), parallel=None), record)
    assert capsys.readouterr().err.splitlines() == ["epoch 3/10 train_nll=1.5 valid_nll=1.75"] * 2


def test_a_real_valued_family_reads_a_file_s_values_as_they_are(cli, tmp_path):
    """`fit gaussian --data real.npy` used to ask for `:binarize=none` by hand: a family of real data alone now
    reads the file unbinarized, records that spec (so `eval` reads it the same way), and its maximum-likelihood
    mean is the training rows' mean (the closed form)."""
    x = np.random.default_rng(0).normal(loc=[1.0, -2.0, 0.5], size=(200, 3)).astype(np.float32)
    np.save(tmp_path / "real.npy", x)
    code, _, err = cli(["fit", "gaussian", "--data", tmp_path / "real.npy", "--quiet", "--out", tmp_path / "g"])
    assert code == 0, err
    run = genlearn.load_run(tmp_path / "g")
    assert run.meta["data_spec"] == f"{tmp_path / 'real.npy'}:binarize=none"
    train = genlearn.load_dataset(run.meta["data_spec"]).train.numpy()
    np.testing.assert_allclose(run.model.mean.detach().numpy(), train.mean(0), atol=1e-4)
    code, out, err = cli(["eval", tmp_path / "g", "--split", "test"])
    assert code == 0 and json.loads(out)["data_spec"].endswith("binarize=none"), err


def test_a_categorical_family_says_what_a_file_should_hold(refused, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "cat2d.npy", rng.integers(0, 4, size=(100, 2)))
    np.save(tmp_path / "catfrac.npy", rng.random(100) * 3)
    takes = "but model 'categorical' takes one column of outcomes 0..K-1"
    refused(["fit", "categorical", "--data", tmp_path / "cat2d.npy", "--out", tmp_path / "c"],
            f"holds 2 columns, {takes}")
    refused(["fit", "categorical", "--data", tmp_path / "catfrac.npy", "--out", tmp_path / "c"],
            f"holds values that are not non-negative integers, {takes}")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("argv, words", [
    (["fit", "bernoulli", "--data", "coin", "--out", ""], "--out is empty; give a path"),
    (["fit", "bernoulli", "--data", "coin", "--data-dir", " ", "--out", "x"], "--data-dir is empty"),
    (["eval", ""], "RUN is empty"),
    (["report", ".", ""], "RUN is empty"),
    (["fit", "--resume", ""], "--resume is empty"),
])
def test_an_empty_path_is_refused_not_taken_for_a_default(refused, tmp_path, monkeypatch, argv, words):
    """`--out ""` used to write runs/MODEL-DATA, `--data-dir ""` to mean the current folder."""
    monkeypatch.chdir(tmp_path)
    refused(argv, words)
    assert not any(tmp_path.iterdir())


def test_a_closed_pipe_ends_the_command_quietly(finished_run):
    """`genlearn sample RUN -n 200000 | head -1`: the reader closes the pipe after one line; the command used to say
    `genlearn: error: [Errno 32] Broken pipe` and exit 2. Now it stops without a word, exit 0."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "genlearn", "sample", str(finished_run), "-n", "200000",
                             "--threads", "1"],  # no note on the machine's load: stderr empty
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert first.strip() in (b"0", b"1") and err == ""


def test_evaluation_flags_are_named_as_typed(refused, tmp_path, finished_run):
    """`--ais-steps` on a model with an exact likelihood used to be reported as the option "steps"."""
    refused(["fit", "bernoulli", "--data", "coin", "--ais-steps", "10", "--out", tmp_path / "x"],
            "the evaluation option(s) --ais-steps apply to energy and latent-variable models")
    refused(["eval", finished_run, "--ais-chains", "10", "--ais-steps", "5"],
            "option(s) --ais-chains, --ais-steps apply")


@pytest.mark.parametrize("argv, words", [
    (["fit", "made", "--data", "digits", "--mask-sampling", "random"], "--mask-sampling applies to several masks"),
    (["fit", "rbm", "--data", "digits", "--gradient", "exact", "--k", "1"], "--k applies to CD-k / PCD-k"),
    (["fit", "--recipe", "made-500", "--data", "digits", "--mask-sampling", "random"], "--mask-sampling applies"),
])
def test_a_typed_moot_flag_is_refused_even_at_its_default_value(refused, tmp_path, argv, words):
    """`--mask-sampling random` (the default) with one mask, `--k 1` (the default) with the exact gradient: typed on
    the command line, they used to be accepted and ignored; a recipe's or the API's options at their default still
    pass (a saved config may spell out every option)."""
    refused([*argv, "--epochs", "1", "--out", tmp_path / "r"], words)
    assert not (tmp_path / "r").exists()
    run = genlearn.fit("made", "bars-and-stripes:size=2,n=50", mask_sampling="random", epochs=1, progress=False,
                       plots=False)
    assert run.metrics["epochs_run"] == 1


@pytest.mark.parametrize("name", ["overwrite", "resume", "plots"])
def test_fit_flags_must_be_booleans(tmp_path, name):
    """overwrite="no" is a true string: it used to replace the run the user meant to keep."""
    out = tmp_path / "run"
    genlearn.fit("bernoulli", "coin:n=50", out=out, progress=False, plots=False)
    before = (out / "metrics.json").read_bytes()
    with pytest.raises(ConfigError, match=f"^{name} must be True or False, got str 'no'"):
        genlearn.fit("bernoulli", "coin:n=80", out=out, progress=False, **{"plots": False, name: "no"})
    assert (out / "metrics.json").read_bytes() == before


def test_kl_divergence_takes_runs_and_numpy_tables(finished_run):
    """A fitted Run stands for its model (it raised AttributeError 'support'); numpy tables are tables; a table
    of words is one ConfigError."""
    run = genlearn.load_run(finished_run)
    assert genlearn.kl_divergence(run, run).value == 0.0
    assert genlearn.kl_divergence(run, run.model).value == 0.0
    assert genlearn.kl_divergence(np.array([0.5, 0.5]), [0.9, 0.1]).value == pytest.approx(
        0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1), abs=1e-12)
    with pytest.raises(ConfigError, match="p must be a table of numbers"):
        genlearn.kl_divergence(["a", "b"], [0.9, 0.1])


def test_an_unusable_tensorboard_folder_is_refused_before_the_run_folder_exists(refused, tmp_path):
    pytest.importorskip("tensorboard")
    (tmp_path / "afile").write_text("x")
    refused(["fit", "bernoulli", "--data", "coin:n=50", "--tensorboard", tmp_path / "afile" / "sub", "--out",
             tmp_path / "r"], "afile is a file; give a folder")
    assert not (tmp_path / "r").exists()


def test_report_and_sample_replace_a_link_at_out_instead_of_writing_through_it(cli, tmp_path, finished_run):
    """--out LINK --overwrite used to write the page (or the CSV) into the link's target, here the run's own
    metrics.json; the new file is now renamed over the link."""
    metrics = finished_run / "metrics.json"
    before = metrics.read_bytes()
    for argv, name in ((["report", finished_run], "page.html"), (["sample", finished_run, "-n", "3"], "rows.csv")):
        link = tmp_path / name
        link.symlink_to(metrics)
        code, _, err = cli([*argv, "--out", link, "--overwrite"])
        assert code == 0, err
        assert not link.is_symlink() and metrics.read_bytes() == before


def test_real_samples_are_written_with_float32_precision(cli, tmp_path):
    """`genlearn sample` CSV rows of a gaussian run give back the float32 samples exactly (6 digits, %g, did not)."""
    x = np.random.default_rng(1).normal(size=(100, 2)).astype(np.float32)
    np.save(tmp_path / "real.npy", x)
    assert cli(["fit", "gaussian", "--data", tmp_path / "real.npy", "--quiet", "--out", tmp_path / "g"])[0] == 0
    code, out, _ = cli(["sample", tmp_path / "g", "-n", "50", "--seed", "3"])
    rows = np.array([[float(v) for v in line.split(",")] for line in out.splitlines()], dtype=np.float32)
    expected = genlearn.load_run(tmp_path / "g").sample(50, seed=3).numpy()
    assert code == 0 and np.array_equal(rows, expected)


def test_run_sample_and_log_prob_check_their_arguments(finished_run, tmp_path):
    """Run.sample takes numpy integers and names an argument the model's sampler does not take (TypeError before);
    Run.log_prob refuses a string (TypeError before) and returns numbers without an autograd graph."""
    run = genlearn.load_run(finished_run)
    assert run.sample(np.int64(4), seed=0).shape == (4, 1)
    with pytest.raises(ConfigError, match=r"^steps does not apply to sampling model 'product-bernoulli' \(it takes "
                                          "none\\)"):
        run.sample(3, steps=5)
    with pytest.raises(genlearn.DataError, match="log_prob takes rows as a tensor, a numpy array or a list, got str"):
        run.log_prob("abc")
    log_p = run.log_prob(np.array([[0.0], [1.0]]))
    assert not log_p.requires_grad and float(log_p.exp().sum()) == pytest.approx(1.0, abs=1e-6)
    rbm = genlearn.fit("rbm", "bars-and-stripes:size=2,n=50", hidden="4", epochs=1, out=tmp_path / "rbm",
                       progress=False, plots=False)
    assert rbm.sample(2, seed=0, steps=3).shape == (2, 4)
    with pytest.raises(ConfigError, match=r"bogus does not apply to sampling model 'rbm' \(it takes steps\)"):
        rbm.sample(2, bogus=1)


def test_resume_of_no_folder_and_with_overwrite(refused, tmp_path, finished_run):
    refused(["fit", "--resume", tmp_path / "nonexist"], "nonexist: no such folder, so no run to resume")
    assert not (tmp_path / "nonexist").exists()
    refused(["fit", "--resume", finished_run, "--overwrite", "--epochs", "5"],
            "--overwrite replaces a run, --resume continues it: give one of them")


def test_sample_out_a_folder_and_a_readable_grid(refused, cli, tmp_path):
    refused(["sample", ".", "--out", tmp_path], f"--out {tmp_path} is a folder; give a file in it")
    from PIL import Image

    from genlearn.plots import sample_grid

    sample_grid(torch.zeros(100_000, 64), (8, 8), tmp_path / "g.png", "x: 100000 samples")
    with Image.open(tmp_path / "g.png") as image:
        assert max(image.size) <= 2000  # 12,345 of the 8x8 images at most, 2 x 2 screen pixels per pixel
    assert empirical_entropy_of_one_pattern() == 0.0 and str(empirical_entropy_of_one_pattern()) == "0.0"


def empirical_entropy_of_one_pattern() -> float:
    from genlearn.data.empirical import empirical_entropy

    return empirical_entropy(torch.ones(5, 3))


def test_settings_that_would_be_ignored_are_refused(refused, finished_run, tmp_path):
    """A keyword for two probability tables (their KL is a finite sum), `report --data-dir` of no folder, and a
    non-finite number for a float flag (`inf` was "must be a number")."""
    with pytest.raises(ConfigError, match="bogus does not apply to two probability tables"):
        genlearn.kl_divergence([0.5, 0.5], [0.9, 0.1], bogus=1)
    refused(["report", finished_run, "--data-dir", tmp_path / "none", "--out", tmp_path / "r.html"],
            "no such folder")
    refused(["fit", "bernoulli", "--data", "coin", "--max-minutes", "inf", "--out", tmp_path / "x"],
            "--max-minutes must be a finite number, got 'inf'")
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "x").exists()


def test_tol_with_minibatches_names_the_batch_size_the_fit_has(refused, tmp_path):
    """The rbm family trains on batches of 100 by default: "drop --batch-size" told a user who gave none to drop it."""
    line = refused(["fit", "rbm", "--data", "digits", "--tol", "1e-3", "--out", tmp_path / "r"],
                   "it needs one batch per epoch, and this fit takes batches of 100 rows")
    assert "drop --batch-size" not in line


def test_an_empty_study_name_is_refused(refused, tmp_path):
    pytest.importorskip("optuna")
    refused(["tune", "--data", "coin:n=50", "--families", "bernoulli", "--study-name", "", "--out", tmp_path / "t"],
            "--study-name must be a non-empty name")


def test_kl_of_an_unfinished_run_says_it_uses_the_checkpoint(cli, tmp_path):
    out = tmp_path / "run"
    genlearn.fit("bernoulli", "coin:n=50", out=out, progress=False, plots=False)
    (out / "model.safetensors").unlink()  # as a fit stopped before its final model
    code, stdout, err = cli(["kl", "--p", out, "--q", out])
    assert code == 0 and json.loads(stdout)["kl"] == 0.0
    assert "warning:" in err and "using that checkpoint" in err, err


def test_bench_on_categorical_data_and_tune_without_a_completed_trial(refused, tmp_path):
    refused(["bench", "--data", "die"], "needs rows of 0/1 features, a non-empty 2-D table, got shape (1000,) (one "
                                        "column of outcomes: categorical data)")
    pytest.importorskip("optuna")
    # the queued baseline trial never started: not "1 trial(s) ran and none completed ... or more --trials"
    line = refused(["tune", "--data", "coin:n=50", "--families", "bernoulli", "--budget-minutes", "0.00001",
                    "--quiet", "--out", tmp_path / "t"], "started: the --budget-minutes was spent first")
    assert line.endswith("give a larger --budget-minutes") and "--trials" not in line


def test_report_of_a_study_folder_and_of_a_run_without_its_final_model(refused, cli, tmp_path, finished_run):
    import shutil

    study = tmp_path / "study"
    (study / "trials").mkdir(parents=True)
    refused(["report", study, "--out", tmp_path / "a.html"], "is a `genlearn tune` study, not a run: report its trials")
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "model.safetensors").unlink()  # `genlearn eval` calls this run unfinished: so does the report
    code, _, err = cli(["report", run, "--out", tmp_path / "b.html"])
    page = (tmp_path / "b.html").read_text()
    assert code == 0 and "unfinished: its final model (model.safetensors) is missing" in page, err


def test_the_command_shows_warnings_as_one_line_each(capsys, monkeypatch):
    """`genlearn ...` prints a Python warning as `genlearn: warning: MESSAGE` (a library's with its category and
    place), not Python's file path, line number and the source text of the warn call; main() called from Python
    (argv given) leaves the caller's warning display alone."""
    import warnings

    from genlearn import cli
    from genlearn.estimators import ais

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        before = warnings.showwarning
        assert cli.main(["models"]) == 0 and warnings.showwarning is before
        monkeypatch.setattr("sys.argv", ["genlearn", "models"])
        assert cli.main() == 0 and warnings.showwarning is not before
        capsys.readouterr()
        warnings.warn_explicit("AIS: effective sample size 1.0 of 100 chains is low", RuntimeWarning, ais.__file__, 9)
        warnings.warn_explicit("overflow encountered in exp", RuntimeWarning, "/lib/numpy/core.py", 7)
    assert capsys.readouterr().err.splitlines() == [
        "genlearn: warning: AIS: effective sample size 1.0 of 100 chains is low",
        "genlearn: warning: RuntimeWarning from core.py:7: overflow encountered in exp"]


@pytest.mark.parametrize("command", ["fit", "eval", "sample", "kl", "demo", "tune", "report", "refit", "bench"])
def test_every_command_whose_load_note_suggests_threads_takes_threads(command, capsys):
    """The note "using 1 thread (--threads N to choose)" is printed by every command that computes
    (cli._TORCH_COMMANDS): each of them takes --threads (`report` did not)."""
    from genlearn import cli

    assert command in cli._TORCH_COMMANDS
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert "--threads N" in capsys.readouterr().out
    assert set(cli._TORCH_COMMANDS) <= {"fit", "eval", "sample", "kl", "demo", "tune", "report", "refit", "bench"}


def test_monitoring_and_evaluation_flags_are_named_as_they_apply(refused, tmp_path):
    """--monitor-ais-steps on a VAE said its NLL "is computed exactly" (it is estimated); --eval-iw-samples on an
    exact family was named --iw-samples, the flag of `genlearn eval`, not the one typed."""
    refused(["fit", "vae", "--data", "digits", "--epochs", "1", "--monitor-ais-steps", "10", "--out", tmp_path / "a"],
            "the NLL of vae is monitored by importance sampling (--monitor-is-samples) or quadrature")
    refused(["fit", "product-bernoulli", "--data", "digits", "--eval-iw-samples", "10", "--out", tmp_path / "b"],
            "--iw-samples (in genlearn fit: --eval-iw-samples) apply to energy and latent-variable models")


def test_early_stopping_flags_need_a_monitored_valid_nll(refused, tmp_path):
    """--patience / --keep-best / --schedule plateau act on the monitored valid NLL: with none (an RBM whose exact
    log Z is too costly to monitor, without --monitor-ais-steps; data with no valid split) they were accepted and
    did nothing (best_epoch null, never stopped early)."""
    refused(["fit", "rbm", "--data", "digits", "--hidden", "30", "--epochs", "2", "--patience", "1", "--out",
             tmp_path / "a"], "--patience act(s) on the monitored valid NLL, but none would be monitored: this rbm's "
                              "exact log Z is too costly to monitor every epoch: add --monitor-ais-steps S")
    import numpy as np

    rows = tmp_path / "rows.csv"
    np.savetxt(rows, (np.random.default_rng(0).random((50, 4)) < 0.5).astype(int), fmt="%d", delimiter=",")
    refused(["fit", "product-bernoulli", "--data", f"{rows}:valid=0", "--optimizer", "adam", "--epochs", "2",
             "--keep-best", "--schedule", "plateau", "--out", tmp_path / "b"],
            "--keep-best, --schedule plateau act(s) on the monitored valid NLL, but none would be monitored: the "
            "data have no valid split")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
