"""The `genlearn` command end to end: fit, eval, sample, kl, lists, demo, resume, and bad input (exit 2)."""
import json

import numpy as np
import pytest
import torch

from genlearn import fit, load_run
from genlearn.cli import main
from genlearn.runs import MODEL_FILE


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fit_eval_sample(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "fit", "product-bernoulli", "--data", "digits", "--epochs", "20",
                              "--optimizer", "adam", "--lr", "0.1", "--batch-size", "200", "--out", out, "--quiet")
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("model", "dataset", "train_nll", "valid_nll", "test_nll", "entropy_empirical", "kl_empirical",
                "wall_seconds", "history"):
        assert key in metrics
    assert metrics["kl_empirical"] == pytest.approx(metrics["train_nll"] - metrics["entropy_empirical"])
    assert json.loads(stdout)["test_nll"] == pytest.approx(metrics["test_nll"])
    assert (out / "learning_curve.png").stat().st_size > 1000 and (out / "samples.png").exists()

    code, stdout, _ = run_cli(capsys, "eval", out, "--split", "test")
    assert code == 0 and json.loads(stdout)["test_nll"] == pytest.approx(metrics["test_nll"], rel=1e-9)

    code, _, _ = run_cli(capsys, "sample", out, "-n", "16", "--out", tmp_path / "grid.png")
    assert code == 0 and (tmp_path / "grid.png").stat().st_size > 500
    code, stdout, _ = run_cli(capsys, "sample", out, "-n", "5")
    rows = [list(map(float, r.split(","))) for r in stdout.strip().splitlines()]
    assert np.array(rows).shape == (5, 64) and set(np.unique(rows)) <= {0.0, 1.0}
    code, _, err = run_cli(capsys, "sample", out, "-n", "16", "--out", tmp_path / "grid.png")
    assert code == 2 and "exists" in err  # nothing overwritten without asking
    code, _, _ = run_cli(capsys, "sample", out, "-n", "3", "--out", tmp_path / "new" / "folder" / "s.csv")
    assert code == 0  # missing folders are made, as `report --out` makes them
    assert np.loadtxt(tmp_path / "new" / "folder" / "s.csv", delimiter=",").shape == (3, 64)


def test_fit_reports_kl_to_the_truth_and_reaches_mle(tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, "fit", "bernoulli", "--data", "coin:p=0.3,n=500", "--epochs", "300",
                              "--lr", "2", "--out", tmp_path / "coin", "--quiet")
    assert code == 0
    m = json.loads((tmp_path / "coin" / "metrics.json").read_text())
    run = load_run(tmp_path / "coin")
    assert m["kl_empirical"] == pytest.approx(0.0, abs=1e-8)  # gradient descent reached the MLE
    p = run.model.p
    assert m["kl_true"] == pytest.approx(0.3 * np.log(0.3 / p) + 0.7 * np.log(0.7 / (1 - p)), rel=1e-4)


def test_kl_command(tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, "kl", "--p", "0.5,0.5", "--q", "0.9,0.1")
    assert code == 0 and json.loads(stdout)["kl"] == pytest.approx(0.5108256237659905)
    for name, p in (("a", "0.2"), ("b", "0.7")):
        run_cli(capsys, "fit", "product-bernoulli", "--data", f"product-bernoulli:probs={p}/0.5,n=400",
                "--epochs", "200", "--lr", "2", "--out", tmp_path / name, "--quiet")
    code, stdout, _ = run_cli(capsys, "kl", "--p", tmp_path / "a", "--q", tmp_path / "b")
    ra, rb = load_run(tmp_path / "a").model, load_run(tmp_path / "b").model
    pa, pb = ra.probs.detach().double(), rb.probs.detach().double()
    expected = float((pa * torch.log(pa / pb) + (1 - pa) * torch.log((1 - pa) / (1 - pb))).sum())
    assert code == 0 and json.loads(stdout)["kl"] == pytest.approx(expected, rel=1e-5)


def test_lists(capsys):
    code, stdout, _ = run_cli(capsys, "models")
    assert code == 0 and "product-bernoulli" in stdout and "categorical" in stdout
    code, stdout, _ = run_cli(capsys, "datasets")
    assert code == 0 and "bars-and-stripes" in stdout and "digits" in stdout


@pytest.mark.parametrize("argv, message", [
    (["fit", "nosuchmodel", "--data", "digits"], "unknown model"),
    (["fit", "product-bernoulli", "--data", "digits", "--lr", "-1"], "learning rate"),
    (["fit", "product-bernoulli", "--data", "coin:p=2"], "p must be"),
    (["fit", "categorical", "--data", "digits"], "categorical data"),
    (["fit", "product-bernoulli", "--data", "/no/such/file.npz"], "no such file"),
    (["eval", "/no/such/run"], "no run folder"),
    (["kl", "--p", "0.5,0.6", "--q", "0.5,0.5"], "sum to 1"),
    (["sample", "/no/such/run"], "no run folder"),
    (["fit", "product-bernoulli", "--data", "digits", "--threads", "0"], "--threads must be a positive"),
])
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path):
    code, _, err = run_cli(capsys, *argv, *(["--out", tmp_path / "x"] if argv[0] == "fit" else []))
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    code, _, err = run_cli(capsys, "fit", "product-bernoulli", "--data", "digits", "--out", out, "--epochs", "1")
    assert code == 2 and "--overwrite" in err
    code, _, err = run_cli(capsys, "fit", "product-bernoulli", "--data", "digits", "--out", out, "--epochs", "1",
                           "--overwrite")
    assert code == 2 and (out / "notes.txt").read_text() == "precious"


def test_divergence_gives_clear_error(tmp_path, capsys):
    code, _, err = run_cli(capsys, "fit", "gaussian", "--data", "gaussian:mean=2,std=3,n=200", "--lr", "1e6",
                           "--optimizer", "sgd", "--batch-size", "10", "--out", tmp_path / "nan", "--quiet")
    assert code == 2 and "diverged" in err and "--lr" in err and "Traceback" not in err


def test_divergence_keeps_last_good_checkpoint(tmp_path):
    from genlearn.errors import NumericalError
    from genlearn.learning.checkpoint import load_checkpoint

    def explode(trainer, record):
        if trainer.state.epoch == 3:
            trainer.optimizer.param_groups[0]["lr"] = 1e6

    with pytest.raises(NumericalError, match=r"last good checkpoint \(epoch 3\)"):
        fit("gaussian", "gaussian:mean=2,std=3,n=200", out=tmp_path / "r", epochs=10, lr=0.01, optimizer="sgd",
            batch_size=10, callbacks=[explode], progress=False)
    tensors, meta = load_checkpoint(tmp_path / "r")
    assert meta["epoch"] == 3 and all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith("model."))


def test_wrong_data_kind_for_model(tmp_path, capsys):
    code, _, err = run_cli(capsys, "fit", "gaussian", "--data", "digits", "--out", tmp_path / "x")
    assert code == 2 and "real data" in err


class _Interrupt:
    def __init__(self, at):
        self.at = at

    def __call__(self, trainer, record):
        if trainer.state.epoch == self.at:
            raise KeyboardInterrupt


def test_resume_after_interruption_matches_uninterrupted(tmp_path, capsys):
    settings = dict(epochs=8, lr=0.05, optimizer="adam", batch_size=64, seed=7, progress=False)
    full = fit("product-bernoulli", "digits", out=tmp_path / "full", **settings)
    with pytest.raises(KeyboardInterrupt):
        fit("product-bernoulli", "digits", out=tmp_path / "cut", callbacks=[_Interrupt(3)], **settings)
    assert not (tmp_path / "cut" / MODEL_FILE).exists()
    code, _, _ = run_cli(capsys, "fit", "--resume", tmp_path / "cut", "--quiet")
    assert code == 0
    resumed = load_run(tmp_path / "cut")
    assert torch.equal(resumed.model.logits, full.model.logits)
    assert [r["train_nll"] for r in resumed.metrics["history"]] == [r["train_nll"] for r in full.metrics["history"]]

    before = {p.name: p.read_bytes() for p in (tmp_path / "full").iterdir() if p.is_file()}
    code, _, err = run_cli(capsys, "fit", "--resume", tmp_path / "full", "--quiet")  # complete: nothing to resume
    assert code == 2 and "is complete (8 of 8 epochs)" in err and "--epochs above 8" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "full").iterdir() if p.is_file()} == before  # as it was
    code, _, _ = run_cli(capsys, "fit", "--resume", tmp_path / "full", "--epochs", "9", "--quiet")
    assert code == 0 and load_run(tmp_path / "full").metrics["epochs_run"] == 9


def test_demo_fast(tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, "demo", "--out", tmp_path / "demo", "--fast", "--quiet")
    assert code == 0
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    # valid JSON, as JavaScript's JSON.parse reads it: no NaN, no Infinity
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text(), parse_constant=refuse)
    assert summary["digits"]["history"][0]["loss"] is None  # epoch 0 has no training loss: NaN in memory
    for name in ("coin", "die"):
        assert summary["gradient_descent"][name]["max_abs_gap_to_mle"] < 1e-4
    assert summary["die"][-1]["kl_true_mean"] == pytest.approx(summary["die"][-1]["asymptotic_kl"], rel=0.6)
    assert summary["digits"]["test_nll"] < 30  # independent pixels on 8x8 digits: about 24.8 nats
    bm = summary["boltzmann"]
    assert bm[1]["kl_true"] < bm[0]["kl_true"] / 3  # the KL to the teacher falls with M (~ d/(2M))
    assert all(r["kl_empirical"] >= 0 for r in bm)
    gan = summary["gan"]["fits"]  # section (f); its figures are checked in tests/test_demo.py
    assert [f["fit"] for f in gan] == ["kl", "js", "maximum likelihood"]
    assert all(f["kl_pq"] is None and f["kl_qp"] >= 0 for f in gan)  # D_KL(P||Q) infinite: JSON null
    for png in ("kl_vs_n.png", "gradient_descent.png", "digits_samples.png", "digits_learning_curve.png",
                "gan_patterns.png", "vae_bounds.png", "vae_manifold.png", "vae_encodings.png"):
        assert (tmp_path / "demo" / png).stat().st_size > 1000
    assert (tmp_path / "demo" / "gan_patterns.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "![" in report
    assert "## (f)" in report and "![P(x) of each pattern per fit](gan_patterns.png)" in report
    for f in gan:  # one table row per fit, D_KL(P||Q) printed as inf
        assert f"| {f['fit']} | {f['rule']}, rate {f['lr']:g} | {f['epochs']} | {f['kl_qp']:.3f} | inf |" in report
    latent = summary["latent"]  # section (g); its numbers are checked in tests/test_demo_latent.py
    assert "## (g)" in report and f"**{latent['test_nll_exact']:.3f}**" in report
    assert latent["test_nll_exact"] < summary["digits"]["test_nll"]  # the VAE beats independent pixels
    page = (tmp_path / "demo" / "index.html").read_text()  # the same report as one HTML page, images embedded
    assert page.count('src="data:image/png;base64,') == report.count("![") and "http" not in page
    assert f"<strong>{latent['test_nll_exact']:.3f}</strong>" in page
    # the formula of (e) is code, not an HTML tag to Markdown converters; every table scrolls inside the page
    assert "`dD_KL/dW_ij = <x_i x_j>_P - <x_i x_j>_Q^`" in report
    assert "<code>dD_KL/dW_ij = &lt;x_i x_j&gt;_P - &lt;x_i x_j&gt;_Q^</code>" in page
    assert page.count("<table") == page.count('<div class="wide"><table') >= 6
    from genlearn.demo import DEMO_FILES, check_report_folder

    assert {p.name for p in (tmp_path / "demo").iterdir()} == DEMO_FILES  # what a rerun may replace
    check_report_folder(tmp_path / "demo")  # its own report: a rerun writes there


@pytest.mark.parametrize("files,message", [
    ({"mydata.txt": "my own notes"}, "holds files that are not the demo's report (mydata.txt)"),
    ({"summary.json": '{"best": 1}'}, "its summary.json is not a demo report's"),
    ({"summary.json": "not json"}, "its summary.json is not a demo report's"),
])
def test_demo_refuses_a_folder_it_did_not_write_and_leaves_it_as_it_was(tmp_path, capsys, files, message):
    out = tmp_path / "mine"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    code, _, err = run_cli(capsys, "demo", "--out", out, "--fast", "--quiet")
    assert code == 2 and message in err and "Traceback" not in err
    assert {p.name: p.read_text() for p in out.iterdir()} == files


def test_each_family_converts_its_own_flags_with_one_message_format(capsys):
    """The same flag name has each family's own type (RBM --hidden: an integer; MADE --hidden: layer sizes),
    converted once, from the family's typed config; a bad value is one line naming the flag."""
    from genlearn.errors import ConfigError
    from genlearn.models.registry import get_spec

    assert get_spec("rbm").parse_options({"hidden": "4"}).hidden == 4
    assert get_spec("made").parse_options({"hidden": "500,500"}).hidden == (500, 500)
    assert get_spec("made").parse_options({"hidden": 300}).hidden == (300,)
    assert get_spec("mixture").parse_options({"em": "no"}).em is False
    with pytest.raises(ConfigError, match="--hidden must be an integer, got '500,500'"):
        get_spec("rbm").parse_options({"hidden": "500,500"})
    with pytest.raises(ConfigError, match="--order must be one of fixed, random, got 'sideways'"):
        get_spec("fvsbn").parse_options({"order": "sideways"})
    with pytest.raises(ConfigError, match="--components does not apply to model 'rbm'"):
        get_spec("rbm").parse_options({"components": 3})
    with pytest.raises(SystemExit) as stop:
        main(["fit", "rbm", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "--persistent" in text and "--components" not in text and "--masks" not in text


def test_time_budget_stops_after_the_epoch_that_spends_it(tmp_path):
    run = fit("product-bernoulli", "digits", out=tmp_path / "t", epochs=50, lr=0.05, optimizer="adam",
              batch_size=100, max_minutes=1e-9, progress=False)
    assert run.metrics["epochs_run"] == 1 and run.metrics["out_of_time"] is True
    resumed = fit(None, None, out=tmp_path / "t", resume=True, max_minutes=10.0, epochs=3, progress=False)
    assert resumed.metrics["epochs_run"] == 3 and resumed.metrics["out_of_time"] is False


def test_threads_option_sets_torch_threads(tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        code, _, _ = run_cli(capsys, "fit", "product-bernoulli", "--data", "coin:p=0.3,n=50", "--epochs", "2",
                             "--threads", "1", "--out", tmp_path / "t", "--quiet")
        assert code == 0 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_geometric_schedule_over_epochs_and_over_the_time_budget(tmp_path, capsys):
    """--schedule geometric: the rate of epoch e (1-based) of E is lr f^((e-1)/(E-1)), from lr to lr f in equal
    log steps; with max_minutes the exponent is the elapsed training time over the budget (clipped at 1); the
    resumed run continues the same rates; a final fraction outside (0, 1] is a clear error (exit code 2)."""
    import genlearn
    from genlearn.learning.trainer import TrainConfig, Trainer
    from genlearn.models import ProductBernoulli

    ds = genlearn.load_dataset("digits")
    rates = []
    cfg = TrainConfig(epochs=5, lr=0.1, optimizer="sgd", batch_size=500, schedule="geometric",
                      final_lr_fraction=0.01, progress=False)
    trainer = Trainer(ProductBernoulli(ds.n_features), ds, cfg,
                      callbacks=[lambda t, rec: rates.append(t.optimizer.param_groups[0]["lr"])])
    rates.append(trainer.optimizer.param_groups[0]["lr"])  # the rate of epoch 1; each callback: the next one's
    trainer.fit()
    assert rates[:5] == pytest.approx([0.1 * 0.01 ** (e / 4) for e in range(5)], rel=1e-12)
    assert rates[5] == pytest.approx(0.001, rel=1e-12)  # clipped at lr f after the last epoch
    timed = Trainer(ProductBernoulli(ds.n_features), ds, TrainConfig(
        epochs=5, lr=0.1, optimizer="sgd", schedule="geometric", final_lr_fraction=0.01, max_minutes=10.0,
        progress=False))
    for seconds, factor in ((0.0, 1.0), (150.0, 0.01 ** 0.25), (300.0, 0.1), (900.0, 0.01)):
        timed.state.train_seconds = seconds
        assert timed._geometric_factor(3) == pytest.approx(factor, rel=1e-12)
    settings = dict(epochs=6, lr=0.05, optimizer="adam", batch_size=64, seed=7, progress=False,
                    schedule="geometric", final_lr_fraction=0.05)
    full = fit("product-bernoulli", "digits", out=tmp_path / "full", **settings)
    with pytest.raises(KeyboardInterrupt):
        fit("product-bernoulli", "digits", out=tmp_path / "cut", callbacks=[_Interrupt(3)], **settings)
    code, _, _ = run_cli(capsys, "fit", "--resume", tmp_path / "cut", "--quiet")
    assert code == 0
    resumed = load_run(tmp_path / "cut")
    assert [r["lr"] for r in resumed.metrics["history"][1:]] == [r["lr"] for r in full.metrics["history"][1:]]
    assert torch.equal(resumed.model.logits, full.model.logits)
    code, _, err = run_cli(capsys, "fit", "product-bernoulli", "--data", "digits", "--schedule", "geometric",
                           "--final-lr-fraction", "0", "--out", tmp_path / "bad", "--quiet")
    assert code == 2 and "--final-lr-fraction must be in (0, 1]" in err


def test_plateau_schedule_lowers_the_rate_after_stalled_evaluations_and_resumes_the_same(tmp_path, capsys):
    """--schedule plateau: lr x gamma once the valid NLL has not improved for plateau_patience evaluations in a
    row (the count restarts after each decay and at each improvement), never below lr x final_lr_fraction; the
    rates of an interrupted and resumed run are those of the uninterrupted one; the flags are refused where they
    would do nothing."""
    import dataclasses
    import warnings

    import genlearn
    from genlearn.errors import ConfigError
    from genlearn.learning.trainer import TrainConfig, Trainer
    from genlearn.models import ProductBernoulli

    ds = genlearn.load_dataset("digits")
    cfg = TrainConfig(epochs=5, lr=0.1, optimizer="sgd", batch_size=500, schedule="plateau", gamma=0.5,
                      plateau_patience=2, final_lr_fraction=0.2, progress=False)
    trainer = Trainer(ProductBernoulli(ds.n_features), ds, cfg)
    rates = []
    for epoch, valid in enumerate([5.0, 4.0, 4.5, 4.6, 4.7, 4.8, 3.9, 4.0, 4.1, 4.2, 4.3, 4.4], start=1):
        trainer._early_stopping({"epoch": epoch, "valid_nll": valid})
        rates.append(trainer.optimizer.param_groups[0]["lr"])
    expected = [0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.025, 0.02, 0.02, 0.02, 0.02]
    assert rates == pytest.approx(expected, rel=1e-12)
    with warnings.catch_warnings():  # stepped here without an optimizer step
        warnings.simplefilter("ignore", UserWarning)
        trainer.schedule.step()  # the per-epoch step of the schedule keeps the decayed rate
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.02, rel=1e-12)
    no_valid = dataclasses.replace(ds, valid=None, labels=None)
    with pytest.raises(ConfigError, match="no validation split"):
        Trainer(ProductBernoulli(ds.n_features), no_valid, cfg)

    settings = dict(epochs=8, lr=0.8, optimizer="adam", batch_size=64, seed=3, progress=False, schedule="plateau",
                    gamma=0.5, plateau_patience=1, final_lr_fraction=0.01)
    full = fit("product-bernoulli", "digits", out=tmp_path / "full", **settings)
    full_rates = [r["lr"] for r in full.metrics["history"][1:]]
    assert min(full_rates) < 0.8  # the run did decay
    with pytest.raises(KeyboardInterrupt):
        fit("product-bernoulli", "digits", out=tmp_path / "cut", callbacks=[_Interrupt(4)], **settings)
    code, _, _ = run_cli(capsys, "fit", "--resume", tmp_path / "cut", "--quiet")
    assert code == 0
    resumed = load_run(tmp_path / "cut")
    assert [r["lr"] for r in resumed.metrics["history"][1:]] == full_rates
    assert torch.equal(resumed.model.logits, full.model.logits)
    code, _, err = run_cli(capsys, "fit", "product-bernoulli", "--data", "digits", "--plateau-patience", "3",
                           "--out", tmp_path / "bad", "--quiet")
    assert code == 2 and "--plateau-patience applies to --schedule plateau" in err
    code, _, err = run_cli(capsys, "fit", "product-bernoulli", "--data", "digits", "--schedule", "plateau",
                           "--gamma", "1", "--out", tmp_path / "bad", "--quiet")
    assert code == 2 and "--gamma must be a decay factor in (0, 1) for the plateau schedule" in err


def test_more_threads_than_cores_is_one_warning(monkeypatch, capsys):
    """--threads N above the usable cores warns once (it ran 10x slower at 10,000 threads on 2 cores, silently)."""
    from genlearn import cli

    threads = torch.get_num_threads()
    monkeypatch.setattr(cli, "_usable_cores", lambda: threads - 1 if threads > 1 else 0)
    cli._set_threads(threads)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--threads {threads} is more than the" in err
    monkeypatch.setattr(cli, "_usable_cores", lambda: threads)
    cli._set_threads(threads)
    assert capsys.readouterr().err == "" and torch.get_num_threads() == threads


@pytest.mark.parametrize("flags, words, again", [
    (["--data", "coin:p=0.3,n=1000"], "it converged at epoch", ["--tol", "1e-12"]),
    (["--data", "bars-and-stripes:size=2,n=100", "--optimizer", "adam", "--lr", "0.5", "--patience", "1",
      "--epochs", "200"], "it stopped early at epoch", None),
])
def test_resume_of_a_converged_or_stopped_run_is_refused(tmp_path, capsys, flags, words, again):
    """A run that converged (L-BFGS to its tolerance) or stopped early would not train another epoch: --resume
    used to re-evaluate it and rewrite metrics.json, exit 0. Now one error, the folder byte for byte as it was;
    a smaller --tol trains on."""
    run = tmp_path / "run"
    family = "bernoulli" if "coin" in flags[1] else "product-bernoulli"
    assert run_cli(capsys, "fit", family, *flags, "--out", run, "--quiet")[0] == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for extra in ([], ["--epochs", "5000"]):
        code, _, err = run_cli(capsys, "fit", "--resume", run, *extra, "--quiet")
        assert code == 2 and words in err and "nothing to resume" in err, err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    if again is not None:
        assert run_cli(capsys, "fit", "--resume", run, *again, "--quiet")[0] == 0


def test_resume_refuses_settings_that_would_not_apply(tmp_path, capsys):
    """A resumed run continues with its optimizer's restored state: --lr, --momentum, --seed... used to be ignored
    while metrics.json recorded them (and `--optimizer gd` crashed in the first epoch). Each is refused, the
    folder as it was; the recorded value itself, and --epochs / --max-minutes / --eval-every, are taken."""
    run = tmp_path / "run"
    assert run_cli(capsys, "fit", "product-bernoulli", "--data", "digits", "--optimizer", "adam", "--lr", "0.05",
                   "--epochs", "2", "--out", run, "--quiet")[0] == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for flags, words in ((["--optimizer", "gd"], "--optimizer (the run's: 'adam') cannot change on --resume"),
                         (["--lr", "0.1"], "--lr (the run's: 0.05) cannot change"),
                         (["--seed", "5"], "--seed (the run's: 0)"),
                         (["--keep-best"], "--keep-best (the run's: False)"),
                         (["--batch-size", "7"], "--batch-size"), (["--schedule", "cosine"], "--schedule")):
        code, _, err = run_cli(capsys, "fit", "--resume", run, "--epochs", "3", *flags, "--quiet")
        assert code == 2 and words in err and "--init-from DIR" in err, (flags, err)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    code, _, err = run_cli(capsys, "fit", "--resume", run, "--epochs", "3", "--lr", "0.05", "--eval-every", "1",
                           "--max-minutes", "5", "--quiet")
    assert code == 0 and load_run(run).metrics["epochs_run"] == 3, err


@pytest.mark.parametrize("schedule, flags, changed", [
    ("cosine", [], ["--epochs", "4"]),
    ("geometric", [], ["--epochs", "4"]),
    ("geometric", ["--max-minutes", "5"], ["--max-minutes", "10"])])
def test_resume_keeps_the_length_a_schedule_is_laid_over(tmp_path, capsys, schedule, flags, changed):
    """A cosine schedule over 2 epochs ends at rate 0; `--resume --epochs 4` used to restore it and climb back to
    the full rate (epochs 3, 4 at 0.5 lr, lr), recording "cosine, 4 epochs" that no fit reproduces. Refused; the
    same length resumes an interrupted run."""
    run = tmp_path / "run"
    assert run_cli(capsys, "fit", "product-bernoulli", "--data", "digits", "--optimizer", "sgd", "--lr", "0.5",
                   "--batch-size", "500", "--schedule", schedule, "--epochs", "2", *flags, "--out", run,
                   "--quiet")[0] == 0
    code, _, err = run_cli(capsys, "fit", "--resume", run, *changed, "--quiet")
    assert code == 2 and f"{changed[0]} cannot change on --resume of this run: its {schedule} schedule" in err, err
    assert "--init-from DIR" in err


def test_resume_of_a_run_whose_time_budget_is_spent_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(capsys, "fit", "rbm", "--data", "digits", "--hidden", "8", "--max-minutes", "0.0001",
                   "--out", run, "--quiet")[0] == 0
    code, _, err = run_cli(capsys, "fit", "--resume", run, "--quiet")
    assert code == 2 and "its --max-minutes budget of 0.0001 is spent; give a larger --max-minutes" in err, err
    assert run_cli(capsys, "fit", "--resume", run, "--max-minutes", "10", "--epochs", "2", "--quiet")[0] == 0
    assert load_run(run).metrics["epochs_run"] == 2


def test_a_resumed_run_is_evaluated_as_its_first_fit_said(tmp_path, capsys):
    """`fit rbm --partition ais --ais-steps 200 ...` interrupted, then `--resume` with no evaluation flags: the
    final log Z used to be computed with the default policy ("auto": exact here, the published 14,500 AIS steps on
    a large RBM), the run's own settings dropped. It is now AIS with the run's steps, chains and seed, as an
    uninterrupted fit gives."""
    common = ["--data", "digits", "--hidden", "6", "--optimizer", "sgd", "--lr", "0.05", "--batch-size", "200",
              "--partition", "ais", "--ais-steps", "200", "--ais-chains", "20", "--quiet"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run_cli(capsys, "fit", "rbm", *common, "--epochs", "2", "--out", whole)[0] == 0
    assert run_cli(capsys, "fit", "rbm", *common, "--epochs", "1", "--out", part)[0] == 0
    (part / "metrics.json").unlink()  # as if interrupted at its final evaluation
    code, _, err = run_cli(capsys, "fit", "--resume", part, "--epochs", "2", "--quiet")
    assert code == 0, err
    a, b = load_run(whole).metrics, load_run(part).metrics
    assert b["evaluation"] == a["evaluation"] and a["evaluation"]["partition"] == "ais"
    assert b["log_z_method"] == "ais" and b["log_z_details"]["steps"] == 200 and b["log_z_details"]["chains"] == 20
    assert b["test_nll"] == a["test_nll"] and b["log_z"] == a["log_z"]


def test_resume_with_more_epochs_under_eval_every_matches_the_longer_run(tmp_path, capsys):
    """--eval-every 2 --patience 2: a 3-epoch run evaluates at 0, 2 and (its last) 3; extended to 6 by --resume,
    that off-cadence evaluation used to count as a patience strike (stopped at 4, best 2, test NLL 25.275 against
    25.221). It is recorded but does not count: the same parameters and figures as the 6-epoch run."""
    common = ["--data", "digits", "--optimizer", "sgd", "--batch-size", "20", "--lr", "3", "--eval-every", "2",
              "--patience", "2", "--seed", "1", "--quiet"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run_cli(capsys, "fit", "product-bernoulli", *common, "--epochs", "6", "--out", whole)[0] == 0
    assert run_cli(capsys, "fit", "product-bernoulli", *common, "--epochs", "3", "--out", part)[0] == 0
    assert run_cli(capsys, "fit", "--resume", part, "--epochs", "6", "--quiet")[0] == 0
    a, b = load_run(whole), load_run(part)
    assert torch.equal(a.model.logits, b.model.logits)
    for key in ("epochs_run", "best_epoch", "stopped_early", "test_nll", "valid_nll"):
        assert a.metrics.get(key) == b.metrics.get(key), key
    assert [r["epoch"] for r in b.metrics["history"] if "valid_nll" in r] == [0, 2, 3, 4, 6]  # 3: recorded


def test_eval_warns_and_refit_refuses_when_the_runs_data_file_changed(tmp_path, capsys):
    """`--resume` refused a run whose data file changed since the fit; `eval` used to score the new rows as the
    run's without a word, and `refit` to train on them. eval now warns (its figures are on the data as they are
    now), refit refuses; unchanged data: no warning, and the refit's own eval sees its merged rows unchanged."""
    rng = np.random.default_rng(0)
    data = tmp_path / "rows.csv"
    np.savetxt(data, (rng.random((200, 6)) < 0.4).astype(int), fmt="%d", delimiter=",")
    run, refit_dir = tmp_path / "run", tmp_path / "refit"
    assert run_cli(capsys, "fit", "product-bernoulli", "--data", data, "--optimizer", "gd", "--epochs", "2",
                   "--out", run, "--quiet")[0] == 0
    code, _, err = run_cli(capsys, "eval", run, "--split", "test")
    assert code == 0 and "warning" not in err, err
    assert run_cli(capsys, "refit", run, "--out", refit_dir, "--quiet")[0] == 0
    code, _, err = run_cli(capsys, "eval", refit_dir, "--split", "test")
    assert code == 0 and "warning" not in err, err
    for folder in (run, refit_dir):  # the fit's own figures, printed again: no warning either
        code, _, err = run_cli(capsys, "eval", folder)
        assert code == 0 and "warning" not in err, err
    np.savetxt(data, (rng.random((200, 6)) < 0.4).astype(int), fmt="%d", delimiter=",")
    code, _, err = run_cli(capsys, "eval", run, "--split", "test")
    assert code == 0 and "have changed since it was fitted (their fingerprint differs)" in err, err
    code, out, err = run_cli(capsys, "eval", run)  # the fit's figures, said to be of the data as they were
    assert code == 0 and "these are the figures of the fit, on the data as they were" in err, err
    code, _, err = run_cli(capsys, "refit", run, "--out", tmp_path / "refit2", "--quiet")
    assert code == 2 and "a refit on other data would not be this run's" in err, err


def test_a_relative_data_path_is_recorded_absolute(tmp_path, capsys, monkeypatch):
    """`fit --data plain.csv` in the data's folder, `eval RUN --split test` from another: the run recorded the path
    as typed, so re-reading the data failed ("no such file or folder: plain.csv") anywhere else."""
    folder = tmp_path / "data"
    folder.mkdir()
    np.savetxt(folder / "plain.csv", (np.random.default_rng(0).random((100, 5)) < 0.4).astype(int), fmt="%d",
               delimiter=",")
    monkeypatch.chdir(folder)
    assert run_cli(capsys, "fit", "product-bernoulli", "--data", "plain.csv:valid=0.2", "--optimizer", "gd",
                   "--epochs", "1", "--out", tmp_path / "run", "--quiet")[0] == 0
    metrics = load_run(tmp_path / "run").metrics
    assert metrics["data"]["spec"] == f"{folder / 'plain.csv'}:valid=0.2"
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "eval", tmp_path / "run", "--split", "test")
    assert code == 0 and json.loads(out)["test_nll"] == pytest.approx(metrics["test_nll"], abs=1e-6), err


def test_fit_help_shows_the_defaults_that_hold_with_another_optimizer(capsys, monkeypatch):
    """product-bernoulli fits by L-BFGS (lr 1.0, 1000 epochs, tol 1e-7) unless the user picks another optimizer,
    which then starts from lr 0.1 and 100 epochs: the help says both (it said lr 1.0 alone)."""
    import re
    monkeypatch.setenv("COLUMNS", "400")  # no line breaks inside hyphenated names
    with pytest.raises(SystemExit):
        main(["fit", "product-bernoulli", "--help"])
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "(product-bernoulli default 1.0 with --optimizer lbfgs; 0.1 otherwise)" in text
    assert "(product-bernoulli default 1000 with --optimizer lbfgs; 100 otherwise)" in text
    assert "(product-bernoulli default 1e-07 with --optimizer lbfgs; unset otherwise)" in text
    assert "(product-bernoulli default lbfgs)" in text
    with pytest.raises(SystemExit):
        main(["fit", "nade", "--help"])
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "(nade default 0.001)" in text and "otherwise" not in text


def test_flags_are_matched_whole_and_unknown_ones_name_the_command(tmp_path, capsys):
    """`refit RUN --data coin` was read as --data-dir coin (an abbreviation) and ignored: flags are matched whole,
    and the error points to the command's own help."""
    with pytest.raises(SystemExit) as stop:
        main(["fit", "product-bernoulli", "--data", "digits", "--epo", "3", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "unrecognized arguments: --epo" in err, err
    assert "(see `genlearn fit product-bernoulli --help`)" in err, err
    with pytest.raises(SystemExit) as stop:
        main(["refit", str(tmp_path / "r"), "--out", str(tmp_path / "rf"), "--data", "coin"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --data coin (see `genlearn refit --help`)" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_ctrl_c_while_a_class_is_built_is_exit_130(monkeypatch, capsys):
    """Python 3.11 wraps a KeyboardInterrupt raised inside a class body's __set_name__ (a dataclass being built
    while the model families import) in a RuntimeError: a Ctrl-C at that moment printed a traceback (a kill-and-
    resume run caught it) instead of one line and exit 130. Other RuntimeErrors still propagate."""
    import genlearn.cli as cli

    def interrupted(argv):
        raise RuntimeError("Error calling __set_name__") from KeyboardInterrupt()

    monkeypatch.setattr(cli, "_main", interrupted)
    assert cli.main(["models"]) == 130 and capsys.readouterr().err == "genlearn: interrupted\n"

    def broken(argv):
        raise RuntimeError("something else")

    monkeypatch.setattr(cli, "_main", broken)
    with pytest.raises(RuntimeError, match="something else"):
        cli.main(["models"])
