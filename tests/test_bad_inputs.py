"""Bad inputs, table-driven: every malformed data file, data spec, option, `kl` and `sample` request below is refused
by the CLI with exit code 2, exactly one `genlearn: error:` line naming the problem, no traceback, and no --out
folder left behind; the Python API raises ValueError/TypeError (ConfigError/DataError) with the same message.
The good inputs next to them (an explicit binarize=, arrays as data, valid JSON for an infinite KL, seeded and
fresh sampling) are checked against an oracle."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import genlearn
from genlearn import validate
from genlearn.cli import main
from genlearn.errors import ConfigError, DataError, NumericalError

SMALL = "coin:n=40"  # a tiny data set for option cases: every case is refused before training


@pytest.fixture(autouse=True)
def _sixteen_gib(monkeypatch):
    """The memory estimates compare with the machine's memory: pin it, so that the cases do not depend on it."""
    monkeypatch.setattr(validate, "machine_memory", lambda: 16 * 2**30)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Small data files, good and bad, and one fitted run folder (product-bernoulli on 4x4 binary images)."""
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    binary = rng.integers(0, 2, size=(40, 16))
    np.savetxt(d / "good.csv", binary, fmt="%d", delimiter=",")
    two = binary.copy()
    two[1, 2] = 2
    np.savetxt(d / "two.csv", two, fmt="%d", delimiter=",")
    half = binary.astype(float)
    half[3, 4] = 0.5
    np.savetxt(d / "half.csv", half, fmt="%g", delimiter=",")
    np.savetxt(d / "grey07.csv", binary * 0.7, fmt="%g", delimiter=",")  # 0.7 everywhere a 1 was
    np.savetxt(d / "neg.csv", np.full((8, 3), -3), fmt="%d", delimiter=",")
    np.savetxt(d / "three.csv", binary[:, :3], fmt="%d", delimiter=",")
    bad_npy = binary.copy()
    bad_npy[5, 6] = 7
    np.save(d / "seven.npy", bad_npy)
    bad_train = binary.copy()
    bad_train[2, 0] = 3
    np.savez(d / "splits.npz", train=bad_train, test=binary[:10])
    (d / "header.csv").write_text("a,b,c\n0,1,0\n1,0,1\n")
    (d / "ragged.csv").write_text("0,1,0\n1,0,1\n1,0\n")
    (d / "empty.csv").write_text("")
    (d / "nan.csv").write_text("0,1\nnan,0\n1,1\n")
    (d / "existing.csv").write_text("0,1\n")
    run = d / "run"
    assert main(["fit", "product-bernoulli", "--data", str(d / "good.csv"), "--epochs", "1", "--out", str(run),
                 "--quiet"]) == 0
    return d


# (id, argv with {d} = the data folder, {out} = a fresh --out folder, {run} = a fitted run; words of the error)
CASES = [
    # -- data specs: types, ranges, contradictions, sizes ---------------------------------------------------------
    ("spec-p-abc", "fit bernoulli --data coin:p=abc", "data set 'coin': p must be a number in [0, 1]"),
    ("spec-seed-abc", "fit bernoulli --data coin:seed=abc", "data set 'coin': seed must be an integer"),
    ("spec-threshold-abc", "fit product-bernoulli --data digits:threshold=abc", "data set 'digits': threshold"),
    ("spec-p-range", "fit bernoulli --data coin:p=1.5", "got 1.5"),
    ("spec-n-zero", "fit bernoulli --data coin:n=0", "data set 'coin': n must be an integer >= 1"),
    ("spec-n-negative", "fit bernoulli --data coin:n=-5", "got -5"),
    ("spec-n-test-zero", "fit bernoulli --data coin:n=100,n_test=0", "data set 'coin': n_test"),
    ("spec-n-float", "fit bernoulli --data coin:n=2.5", "must be an integer"),
    ("spec-coin-memory", "fit bernoulli --data coin:n=10000000000", "needs about 156 GiB of memory"),
    ("spec-product-memory", "fit product-bernoulli --data product-bernoulli:dim=1000000000", "TiB of memory"),
    ("spec-teacher-memory", "fit boltzmann --data boltzmann-teacher:n=1000000", "n=1000000 units"),
    ("spec-gaussian-dim", "fit gaussian --data gaussian:dim=3,mean=1/2", "dim=3 contradicts the 2 values of mean"),
    ("spec-gaussian-lengths", "fit gaussian --data gaussian:mean=1/2,std=1/2/3", "mean has 2 values but std has 3"),
    ("spec-gaussian-std", "fit gaussian --data gaussian:std=0", "data set 'gaussian': std must be a number > 0"),
    ("spec-die-one-prob", "fit categorical --data die:probs=1", "at least 2 face probabilities"),
    ("spec-die-sum", "fit categorical --data die:probs=0.5/0.6", "sum to 1"),
    ("spec-die-k", "fit categorical --data die:k=1", "data set 'die': k must be an integer >= 2"),
    ("spec-die-k-probs", "fit categorical --data die:k=3,probs=0.5/0.5", "k=3 contradicts"),
    ("spec-bars-size", "fit rbm --data bars-and-stripes:size=9", "data set 'bars-and-stripes': size"),
    ("spec-unknown-setting", "fit bernoulli --data coin:bogus=1", "unknown setting(s) bogus"),
    ("spec-unknown-name", "fit bernoulli --data nosuchdata", "unknown data set 'nosuchdata'"),
    ("spec-no-value", "fit bernoulli --data coin:p", "bad data setting"),
    ("spec-binarize-choice", "fit product-bernoulli --data mnist:binarize=otsu", "unknown binarize='otsu'"),
    ("spec-teacher-scale", "fit boltzmann --data boltzmann-teacher:scale=-1", "data set 'boltzmann-teacher': scale"),
    ("spec-probs-range", "fit product-bernoulli --data product-bernoulli:probs=0.5/1.2", "got '0.5/1.2'"),
    # -- data files: values outside {0, 1} without binarize=, malformed files, path settings -------------------------
    ("file-two", "fit product-bernoulli --data {d}/two.csv", "two.csv: row 2, column 3 holds 2"),
    ("file-half", "fit product-bernoulli --data {d}/half.csv", "half.csv: row 4, column 5 holds 0.5"),
    ("file-grey07", "fit product-bernoulli --data {d}/grey07.csv", "holds 0.7"),
    ("file-npy", "fit product-bernoulli --data {d}/seven.npy", "seven.npy: row 6, column 7 holds 7"),
    ("file-npz", "fit product-bernoulli --data {d}/splits.npz", "splits.npz[train]: row 3, column 1 holds 3"),
    ("file-negative", "fit product-bernoulli --data {d}/neg.csv", "neg.csv: values span [-3, -3]"),
    ("file-header", "fit product-bernoulli --data {d}/header.csv", "row 1, column 1 holds 'a'"),
    ("file-ragged", "fit product-bernoulli --data {d}/ragged.csv", "row 3 has 2 values, expected 3"),
    ("file-empty", "fit product-bernoulli --data {d}/empty.csv", "is empty"),
    ("file-nan", "fit product-bernoulli --data {d}/nan.csv", "non-finite"),
    ("file-missing", "fit product-bernoulli --data {d}/missing.csv", "no such file or folder"),
    ("file-binarize", "fit product-bernoulli --data {d}/good.csv:binarize=bogus", "unknown binarize='bogus'"),
    ("file-fractions", "fit product-bernoulli --data {d}/good.csv:valid=0.7,test=0.5", "fractions"),
    ("file-threshold", "fit product-bernoulli --data {d}/good.csv:threshold=abc", "threshold must be a number in"),
    ("file-scale", "fit product-bernoulli --data {d}/half.csv:binarize=threshold,scale=-1", "scale must be a number >"),
    ("file-wrong-width", "fit bernoulli --data {d}/three.csv", "bernoulli models one binary variable"),
    ("data-dir-file", "fit product-bernoulli --data digits --data-dir {d}/good.csv",
     "good.csv is a file; give the folder that holds the named data sets' files"),
    # -- training options: types, ranges, contradictory or inapplicable flags --------------------------------------
    ("opt-threads", f"fit bernoulli --data {SMALL} --threads 0", "--threads must be a positive integer"),
    ("opt-gamma-negative", f"fit bernoulli --data {SMALL} --schedule exponential --gamma -1",
     "--gamma must be a decay"),
    ("opt-gamma-zero-step", f"fit bernoulli --data {SMALL} --schedule step --gamma 0", "in (0, 1]"),
    ("opt-momentum-gd", f"fit bernoulli --data {SMALL} --optimizer gd --momentum 0.5", "--momentum applies to"),
    ("opt-gamma-constant", f"fit bernoulli --data {SMALL} --gamma 0.5", "--gamma applies to --schedule"),
    ("opt-step-size-constant", f"fit bernoulli --data {SMALL} --step-size 3", "--step-size applies"),
    ("opt-final-fraction", f"fit bernoulli --data {SMALL} --final-lr-fraction 0.1", "--final-lr-fraction applies"),
    ("opt-batch-gd", f"fit bernoulli --data {SMALL} --batch-size 10", "--batch-size applies"),
    ("opt-ais-monitor-tractable", f"fit bernoulli --data {SMALL} --monitor-ais-steps 10", "--monitor-ais-steps"),
    ("opt-ais-monitor-small-rbm", "fit rbm --data bars-and-stripes:n=20 --hidden 2 --monitor-ais-steps 10",
     "monitored exactly"),
    ("opt-is-monitor", f"fit bernoulli --data {SMALL} --monitor-is-samples 5", "--monitor-is-samples applies"),
    ("opt-epochs-zero", f"fit bernoulli --data {SMALL} --epochs 0", "--epochs must be >= 1"),
    ("opt-epochs-negative", f"fit bernoulli --data {SMALL} --epochs -3", "--epochs must be >= 1, got -3"),
    ("opt-epochs-float", f"fit bernoulli --data {SMALL} --epochs 1.5", "--epochs must be an integer"),
    ("opt-seed-negative", f"fit bernoulli --data {SMALL} --seed -1", "--seed must be an integer in [0, 2^63 - 1]"),
    ("opt-seed-2-70", f"fit bernoulli --data {SMALL} --seed {2**70}", "--seed must be an integer in [0, 2^63 - 1]"),
    ("opt-weight-decay-nan", f"fit bernoulli --data {SMALL} --weight-decay nan",
     "--weight-decay must be a finite number"),
    ("opt-gamma-nan", f"fit bernoulli --data {SMALL} --gamma nan", "--gamma must be a finite number"),
    ("opt-lr-zero", f"fit bernoulli --data {SMALL} --lr 0", "--lr (the learning rate) must be a positive number"),
    ("opt-lr-negative", f"fit bernoulli --data {SMALL} --lr -1", "--lr (the learning rate) must be a positive number"),
    ("opt-optimizer", f"fit bernoulli --data {SMALL} --optimizer rmsprop", "--optimizer must be one of"),
    ("opt-ais-steps-zero", "fit rbm --data bars-and-stripes:n=20 --partition ais --ais-steps 0", "--ais-steps"),
    ("opt-partition-tractable", f"fit bernoulli --data {SMALL} --partition ais", "--partition ais applies"),
    ("opt-ais-chains", "fit rbm --data bars-and-stripes:n=20 --ais-chains 0", "--ais-chains"),
    ("opt-ais-rows-zero", "fit vae --data bars-and-stripes:n=20 --latent 2 --hidden 4 --ais-rows 0",
     "--ais-rows must be a positive integer, got 0"),
    ("opt-eval-iw-samples-zero", "fit vae --data bars-and-stripes:n=20 --latent 2 --hidden 4 --eval-iw-samples 0",
     "--eval-iw-samples must be a positive integer, got 0"),
    ("opt-partition-exact-intractable", "fit rbm --data product-bernoulli:dim=30,n=20 --hidden 30 --partition exact",
     "would enumerate 2^30 states of rbm"),
    ("opt-partition-mean-field-rbm", "fit rbm --data bars-and-stripes:n=20 --hidden 2 --partition mean-field",
     "mean-field is a bound for fully visible Boltzmann machines"),
    ("opt-partition-exact-vae", "fit vae --data bars-and-stripes:n=20 --partition exact",
     "does not apply to a latent-variable model"),
    ("opt-iw-samples-rbm", "fit rbm --data bars-and-stripes:n=20 --hidden 2 --eval-iw-samples 5",
     "apply to latent-variable models"),
    ("opt-patience", f"fit bernoulli --data {SMALL} --patience 0", "--patience must be >= 1"),
    ("opt-momentum-range", f"fit bernoulli --data {SMALL} --optimizer momentum --momentum 1.5", "momentum must be in"),
    ("opt-no-data", "fit bernoulli", "say which data to fit"),
    ("opt-unknown-family", f"fit nosuchmodel --data {SMALL}", "nosuchmodel"),
    ("opt-hidden-zero", "fit rbm --data bars-and-stripes:n=20 --hidden 0", "--hidden"),
    ("opt-resume-missing", "fit --resume {d}/no-such-run", "no-such-run"),
    ("opt-unknown-flag", f"fit bernoulli --data {SMALL} --epoch-count 3", "unrecognized arguments"),
    ("eval-seed", "eval {run} --seed -1 --partition ais", "--seed must be an integer in [0, 2^63 - 1]"),
    # -- kl -------------------------------------------------------------------------------------------------------
    ("kl-mc-tables", "kl --p 0.5,0.5 --q 0.4,0.6 --method mc", "method 'mc' does not apply to tables"),
    ("kl-not-numbers", "kl --p a,b --q 0.5,0.5", "neither a run folder nor comma-separated probabilities"),
    ("kl-sum", "kl --p 0.5,0.6 --q 0.5,0.5", "p must sum to 1"),
    ("kl-lengths", "kl --p 0.5,0.5 --q 0.3,0.3,0.4", "they must match"),
    ("kl-mixed", "kl --p 0.5,0.5 --q {run}", "not one of each"),
    ("kl-method", "kl --p 0.5,0.5 --q 0.5,0.5 --method bogus", "invalid choice"),
    # -- sample ---------------------------------------------------------------------------------------------------
    ("sample-steps-negative", "sample {run} --steps -1", "--steps must be a positive number"),
    ("sample-steps-exact-family", "sample {run} --steps 5", "--steps applies to models sampled by Gibbs"),
    ("sample-jpg", "sample {run} --out {d}/x.jpg", "cannot write samples as .jpg"),
    ("sample-too-many", "sample {run} -n 1000000000", "1000000000 samples of 16 features needs about"),
    ("sample-zero", "sample {run} -n 0", "-n must be a positive number"),
    ("sample-seed", "sample {run} --seed -1", "--seed must be an integer"),
    ("sample-no-run", "sample {d}/no-such-run", "no-such-run"),
    ("sample-existing", "sample {run} --out {d}/existing.csv", "exists; choose another --out"),
]


@pytest.mark.parametrize("argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cli_refuses(argv, words, files, tmp_path, refused):
    out = tmp_path / "out"
    text = argv.format(d=files, run=files / "run", out=out)
    if text.startswith("fit") and "--resume" not in text:
        text += f" --out {out} --quiet"
    refused(text.split(), words)
    assert not out.exists(), "a refused fit left its --out folder behind"
    assert not (files / "x.jpg").exists()


def test_table_is_broad():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


# -- the good inputs beside the bad ones --------------------------------------------------------------------------
def test_explicit_binarize_keeps_grey_levels(files):
    """An explicit binarize= reads the same file as grey levels: value 2 on scale 2 is intensity 1 > 0.5 -> 1, and
    0.7 (scale 1) -> 1 at threshold 0.5, 0 at threshold 0.8 (the oracle: [value / scale > threshold])."""
    from genlearn.data.registry import load_dataset

    two = load_dataset(f"{files}/two.csv:binarize=threshold,scale=2")
    raw = np.loadtxt(files / "two.csv", delimiter=",")
    both = torch.cat([two.train, two.valid, two.test])
    assert both.shape == raw.shape and float(both.sum()) == float((raw / 2 > 0.5).sum())
    grey = np.loadtxt(files / "grey07.csv", delimiter=",")
    for threshold, expected in ((0.5, grey > 0.5), (0.8, grey > 0.8)):
        ds = load_dataset(f"{files}/grey07.csv:binarize=threshold,threshold={threshold}")
        assert float(torch.cat([ds.train, ds.valid, ds.test]).sum()) == float(expected.sum())


def test_kl_infinite_is_valid_json(cli):
    code, out, _ = cli(["kl", "--p", "0.5,0.5", "--q", "1,0"])
    result = json.loads(out)  # Infinity would not parse as strict JSON
    assert code == 0 and result["kl"] is None and result["kl_infinite"] is True
    code, out, _ = cli(["kl", "--p", "0.5,0.5", "--q", "0.25,0.75"])
    result = json.loads(out)
    assert result["kl_infinite"] is False
    assert result["kl"] == pytest.approx(0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75), rel=1e-12)


def test_plain_progress_lines_off_a_terminal(files, tmp_path, cli):
    """Not on a terminal and without --quiet: no progress bar, one plain line per evaluation (eval_every 2 over 4
    epochs: epochs 2 and 4), each with the train NLL the run's history records."""
    code, _, err = cli(["fit", "product-bernoulli", "--data", f"{files}/good.csv", "--epochs", "4", "--eval-every",
                        "2", "--out", tmp_path / "run"])
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert code == 0 and [line.split()[1] for line in lines] == ["2/4", "4/4"], err
    assert "it/s" not in err and "\r" not in err
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    recorded = [r["train_nll"] for r in history if r["epoch"] in (2, 4)]
    shown = [float(line.split("train_nll=")[1].split()[0]) for line in lines]
    assert shown == pytest.approx(recorded, rel=1e-5)


def test_plain_lines_show_the_training_loss_where_no_nll_is_monitored(tmp_path, cli):
    """An RBM of 30 hidden units (2^30 states: no exact NLL every epoch, no --monitor-ais-steps) printed nothing
    for its whole fit off a terminal: each evaluation's line (every 2 epochs, and the last) shows the rule's loss."""
    code, _, err = cli(["fit", "rbm", "--data", "digits", "--hidden", "30", "--epochs", "3", "--eval-every", "2",
                        "--out", tmp_path / "run"])
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert code == 0 and [line.split()[:2] for line in lines] == [["epoch", "2/3"], ["epoch", "3/3"]], err
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    shown = [float(line.split("loss=")[1].split()[0]) for line in lines]
    assert "train_nll" not in history[-1]
    assert shown == pytest.approx([r["loss"] for r in history if r["epoch"] in (2, 3)], rel=1e-5)


def test_data_settings_the_spec_ignores_are_warned(files, tmp_path):
    """threshold= without binarize=threshold, seed= without a random binarization, and a valid=/test= fraction on a
    file with its own split were accepted and recorded as if used: one warning each now (not an error: runs
    recorded such specs and must still evaluate, refit and resume)."""
    from genlearn.data.registry import load_dataset

    rows = (np.random.default_rng(0).random((30, 4)) < 0.5).astype(np.float32)
    np.savez(tmp_path / "own.npz", train=rows[:20], test=rows[20:])
    for spec, words in (("digits:binarize=static,threshold=0.3", "threshold= applies to binarize=threshold, and "
                         "this spec binarizes by static: threshold= is ignored"),
                        ("digits:seed=3", "seed= applies to binarize=static|dynamic, and this spec binarizes by "
                         "threshold: seed= is ignored"),
                        (f"{files}/half.csv:binarize=threshold,seed=2", "seed= applies to binarize=static|dynamic"),
                        (f"{tmp_path}/own.npz:test=0.3", "test= cuts a test split from the rows, but the file has its "
                         "own test part")):
        with pytest.warns(UserWarning, match=re.escape(words)):
            load_dataset(spec)


def test_divergence_that_stays_finite_is_an_error(files, tmp_path, cli):
    """sgd at lr 1e6 sends the logits of a product of Bernoullis to +-1e5: a finite NLL far above the initial one
    is reported as divergence (exit 2), not as a finished run."""
    code, _, err = cli(["fit", "product-bernoulli", "--data", f"{files}/good.csv", "--optimizer", "sgd", "--lr",
                        "1e6", "--epochs", "3", "--out", tmp_path / "run", "--quiet"])
    assert code == 2 and "training diverged" in err and "Fit again with a smaller learning rate (--lr" in err, err
    from genlearn.checks import check_progress

    check_progress([{"epoch": 0, "train_nll": 10.0}, {"epoch": 5, "train_nll": 14.9}])  # within 0.5 |initial|
    with pytest.raises(NumericalError, match="rose from 10"):
        check_progress([{"epoch": 0, "train_nll": 10.0}, {"epoch": 5, "train_nll": 15.1}])


def test_a_diverged_run_says_so_in_eval_sample_and_report(files, tmp_path, cli):
    """The folder of a fit that diverged records why (diverged.json, of its run id): eval, sample and report call it
    diverged, not 'interrupted' (whose advice, --resume, only diverges again); --overwrite removes the record, and
    the record of another run id is not believed."""
    import shutil

    from genlearn.learning.run_folder import DIVERGED_FILE, read_run
    from genlearn.report.collect import read_run as read_record

    run = tmp_path / "run"
    code, _, err = cli(["fit", "product-bernoulli", "--data", f"{files}/good.csv", "--optimizer", "sgd", "--lr",
                        "1e6", "--epochs", "3", "--out", run, "--quiet"])
    assert code == 2 and (run / DIVERGED_FILE).is_file(), err
    status = read_run(run).status
    assert status.startswith("diverged (the train nll rose from") and "interrupted" not in status, status
    code, out, err = cli(["eval", run])
    assert code == 0 and json.loads(out)["run_status"] == status and "is diverged (" in err, err
    record = read_record(run, load_model=False)
    assert "training diverged (the train nll rose from" in record.status_note and "--resume" not in \
        record.status_note, record.status_note
    other = tmp_path / "other"
    shutil.copytree(run, other)
    data = json.loads((other / DIVERGED_FILE).read_text())
    (other / DIVERGED_FILE).write_text(json.dumps({**data, "run_id": "another"}))
    assert read_run(other).status.startswith("unfinished (interrupted")
    from genlearn.learning.run_folder import read_divergence

    epoch, run_id = data["epoch"], data["run_id"]  # a --resume that trained past it, then was interrupted: stale
    assert read_divergence(run, run_id, epoch) is not None and read_divergence(run, run_id, epoch + 1) is None
    code, _, err = cli(["fit", "product-bernoulli", "--data", f"{files}/good.csv", "--epochs", "3", "--out", run,
                        "--overwrite", "--quiet"])
    assert code == 0 and not (run / DIVERGED_FILE).exists() and read_run(run).status == "finished", err


def test_sample_grid_is_capped(tmp_path, monkeypatch):
    """A grid of big images: at most GRID_MAX_PIXELS canvas pixels (the first samples that fit, said in the title)
    and GRID_MAX_INCHES x 100 dpi a side. Scaled down for speed: a cap of 250000 pixels and 64 images of 200 x 200
    (64 x 1000 x 1000 images under the real cap of 16 x 10^6 are the same arithmetic)."""
    from PIL import Image

    from genlearn import plots

    monkeypatch.setattr(plots, "GRID_MAX_PIXELS", 250_000)
    shown = []
    monkeypatch.setattr(plots, "_image_canvas", lambda s, shape, cols, _f=plots._image_canvas: (
        shown.append(s.shape[0]), _f(s, shape, cols))[1])
    x = torch.rand(64, 200 * 200)
    path = plots.sample_grid(x, (200, 200), tmp_path / "grid.png", "big")
    assert shown == [6]  # floor(250000 / 200^2) images
    with Image.open(path) as img:
        assert max(img.size) <= plots.GRID_MAX_INCHES * 100 + 1 and min(img.size) >= 150


# -- Python API: the same validation, ValueError / TypeError ------------------------------------------------------
API_CASES = [
    ("model-none", lambda: genlearn.fit(None, SMALL), "model must be a family name"),
    ("data-int", lambda: genlearn.fit("bernoulli", 42), "data must be a data set name"),
    ("spec-type", lambda: genlearn.fit("bernoulli", "coin:p=abc"), "data set 'coin': p"),
    ("seed-str", lambda: genlearn.fit("bernoulli", SMALL, seed="abc"), "--seed must be an integer"),
    ("seed-float", lambda: genlearn.fit("bernoulli", SMALL, seed=1.5), "--seed must be an integer"),
    ("seed-huge", lambda: genlearn.fit("bernoulli", SMALL, seed=2**70), "[0, 2^63 - 1]"),
    ("epochs-bool", lambda: genlearn.fit("bernoulli", SMALL, epochs=True), "--epochs must be an integer"),
    ("epochs-zero", lambda: genlearn.fit("bernoulli", SMALL, epochs=0), "--epochs must be >= 1"),
    ("partition", lambda: genlearn.fit("bernoulli", SMALL, partition="bogus"), "partition must be one of"),
    ("partition-options", lambda: genlearn.fit("rbm", "bars-and-stripes:n=20", partition_options={"steps": 0}),
     "steps must be an integer >= 1"),
    ("typo", lambda: genlearn.fit("bernoulli", SMALL, epoch=5), "unknown option 'epoch' for model 'bernoulli' "
     "(did you mean 'epochs'?)"),
    ("momentum-gd", lambda: genlearn.fit("bernoulli", SMALL, momentum=0.5, out="run"), "--momentum applies"),
    ("seed-out", lambda: genlearn.fit("bernoulli", SMALL, seed=-1, out="run"), "--seed must be"),
    ("partition-out", lambda: genlearn.fit("bernoulli", SMALL, partition="ais", out="run"), "--partition ais"),
    ("array-grey", lambda: genlearn.fit("product-bernoulli", np.full((10, 3), 0.5)),
     "must be binary (0/1) for model 'product-bernoulli' but the array holds 0.5 at row 0, column 0"),
    ("array-3d", lambda: genlearn.fit("product-bernoulli", np.zeros((4, 2, 2, 2))), "2-D array"),
    ("kl-strings", lambda: genlearn.kl_divergence("a", "b"), "kl_divergence compares two models"),
    ("kl-mc-tables", lambda: genlearn.kl_divergence([0.5, 0.5], [0.4, 0.6], method="mc"), "does not apply"),
]


@pytest.mark.parametrize("call, words", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_refuses(call, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert isinstance(info.value, (ConfigError, DataError, ValueError)) and words in str(info.value)
    assert not any(tmp_path.iterdir()), "a refused fit left files (its out= folder) behind"


def test_api_and_cli_say_the_same(cli):
    with pytest.raises(ConfigError) as info:
        genlearn.fit("bernoulli", SMALL, seed=-1, plots=False)
    code, _, err = cli(["fit", "bernoulli", "--data", SMALL, "--seed", "-1", "--quiet"])
    assert code == 2 and err.strip() == f"genlearn: error: {info.value}"


def test_arrays_and_tensors_are_data(files):
    """A 0/1 numpy array and the same rows as a torch tensor fit exactly as the CSV file of those rows does (the
    same seed-0 shuffle into 0.8/0.1/0.1): the oracle is the file path of genlearn.data.files."""
    rows = np.loadtxt(files / "good.csv", delimiter=",")
    kw = dict(epochs=2, plots=False, progress=False)
    by_file = genlearn.fit("product-bernoulli", str(files / "good.csv"), **kw)
    by_array = genlearn.fit("product-bernoulli", rows.astype(np.int64), **kw)
    by_tensor = genlearn.fit("product-bernoulli", torch.as_tensor(rows, dtype=torch.float32), **kw)
    for run in (by_array, by_tensor):
        for split in ("train", "valid", "test"):
            assert torch.equal(getattr(run.dataset, split), getattr(by_file.dataset, split))
        assert run.metrics["test_nll"] == pytest.approx(by_file.metrics["test_nll"], rel=1e-12)


def test_density_estimator_validation_and_sampling():
    from genlearn.sklearn import DensityEstimator

    X = np.random.default_rng(0).integers(0, 2, size=(60, 4))
    with pytest.raises(ValueError, match="--epochs must be an integer, got 'abc'"):
        DensityEstimator(epochs="abc").fit(X)
    fresh = DensityEstimator(epochs=2, batch_size=None).fit(X)
    with pytest.raises(ValueError, match="n_samples must be a positive integer, got -1"):
        fresh.sample(-1)
    a, b = fresh.sample(200), fresh.sample(200)
    assert not np.array_equal(a, b), "unseeded sample() calls must draw fresh rows"
    np.testing.assert_array_equal(fresh.sample(50, random_state=3), fresh.sample(50, random_state=3))
    seeded = DensityEstimator(epochs=2, batch_size=None, random_state=0).fit(X)
    np.testing.assert_array_equal(seeded.sample(50), seeded.sample(50))


def test_help_is_fast_because_it_imports_no_torch():
    """`genlearn --help` builds only the command list: neither `import genlearn` nor the top-level help imports
    torch (which took ~4 of the 6 seconds the help took on a loaded 2-core machine)."""
    import subprocess
    import sys

    code = ("import sys\nfrom genlearn.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0\nassert 'torch' not in sys.modules, 'torch imported'\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr
    assert "sample" in done.stdout and "kl" in done.stdout  # the command list is complete


def test_run_sample_is_fresh_unless_seeded():
    run = genlearn.fit("product-bernoulli", np.random.default_rng(1).integers(0, 2, size=(50, 6)), epochs=1,
                       plots=False, progress=False)
    assert not torch.equal(run.sample(300), run.sample(300))
    assert torch.equal(run.sample(40, seed=7), run.sample(40, seed=7))
    with pytest.raises(ConfigError, match="n must be a positive integer"):
        run.sample(0)
    with pytest.raises(ConfigError, match=r"seed must be an integer in \[0, 2\^63 - 1\]"):
        run.sample(3, seed=2**70)


def test_a_missing_data_dir_is_a_warning(tmp_path, cli):
    """--data-dir of no folder beside data that need none was ignored without a word (a typo went unnoticed); it is
    a warning, since scripts pass a default folder that may be absent (a file there is an error)."""
    code, _, err = cli(["fit", "bernoulli", "--data", "coin:n=40", "--data-dir", tmp_path / "typo", "--epochs", "1",
                        "--out", tmp_path / "run", "--quiet"])
    assert code == 0 and f"genlearn: warning: --data-dir {tmp_path / 'typo'} does not exist" in err, err
