"""`genlearn refit RUN`: a finished fit trained again on its train + valid rows (genlearn.refit), and the piecewise
learning-rate schedule that replays a plateau run's rates.

Oracles: the rates a piecewise schedule gives each epoch, enumerated by hand; the refit's rate at every epoch equal
to the rate the refitted run ran that epoch with (read from both histories); the refit's parameters equal to those
of an explicit fit on the concatenated train + valid rows with the replayed schedule; the rows counted; the test
split's figure recomputed from the refitted model."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from genlearn.errors import ConfigError, RunError
from genlearn.learning.trainer import TrainConfig, make_schedule, parse_lr_steps, piecewise_factor
from genlearn.data.refit_rows import merged_rows
from genlearn.refit import plateau_lr_steps, refit, refit_train_settings


def _rates(cfg: TrainConfig, epochs: int) -> list[float]:
    """The rate each epoch 1..epochs runs with under cfg's schedule (read before each epoch's step)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    schedule = make_schedule(opt, cfg)
    rates = []
    for _ in range(epochs):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    return rates


def test_piecewise_schedule_gives_each_epoch_its_stated_rate():
    cfg = TrainConfig(lr=1.0, schedule="piecewise", lr_steps="3:0.5,5:0.25,6:0.1").validate()
    assert _rates(cfg, 8) == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.1, 0.1, 0.1])
    assert piecewise_factor(parse_lr_steps("1:0.3"), 1) == 0.3


@pytest.mark.parametrize("bad", ["0:0.5", "3:-1", "3", "3:x", "4:0.5,2:0.25", "2:0.5,2:0.25", "3:nan"])
def test_bad_lr_steps_are_one_error(bad):
    with pytest.raises(ConfigError, match="--lr-steps"):
        TrainConfig(schedule="piecewise", lr_steps=bad).validate()


def test_lr_steps_and_the_piecewise_schedule_go_together():
    with pytest.raises(ConfigError, match="goes with --schedule piecewise"):
        TrainConfig(schedule="piecewise").validate()
    with pytest.raises(ConfigError, match="goes with --schedule piecewise"):
        TrainConfig(schedule="constant", lr_steps="2:0.5").validate()


def test_plateau_rates_read_from_a_history():
    # every epoch evaluated: a record's rate is its epoch's
    history = [{"epoch": e, "lr": r} for e, r in enumerate([1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.125])]
    assert plateau_lr_steps(history, 1.0, 7) == "3:0.5,5:0.25,7:0.125"
    assert plateau_lr_steps(history, 1.0, 6) == "3:0.5,5:0.25"
    assert plateau_lr_steps(history, 1.0, 2) is None
    # every second epoch evaluated: the rate of a record ran since the previous record
    sparse = [{"epoch": 0, "lr": 1}, {"epoch": 2, "lr": 1}, {"epoch": 4, "lr": 0.5}, {"epoch": 6, "lr": 0.5}]
    assert plateau_lr_steps(sparse, 1.0, 6) == "3:0.5"


def test_refit_settings_keep_the_run_but_its_valid_choices():
    metrics = {"train_config": {**TrainConfig(lr=0.1, schedule="plateau", gamma=0.5, patience=3, keep_best=True,
                                              max_minutes=10.0, optimizer="adam").to_dict()},
               "best_epoch": 4, "epochs_run": 7,
               "history": [{"epoch": e, "lr": r}
                           for e, r in enumerate([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025])]}
    train = refit_train_settings(metrics, 1.25)
    assert train["epochs"] == 4 and train["schedule"] == "piecewise" and train["lr_steps"] == "3:0.5"
    assert "max_minutes" not in train and train["optimizer"] == "adam"  # a cap only: the epochs are the plan
    geometric = {**metrics, "train_config": {**metrics["train_config"], "schedule": "geometric"}}
    assert refit_train_settings(geometric, 1.25)["max_minutes"] == pytest.approx(12.5)  # its rate follows time
    assert "patience" not in train and "keep_best" not in train and "gamma" not in train  # defaults: off
    TrainConfig.from_dict(train)


@pytest.mark.parametrize("schedule", ["cosine", "geometric"])
def test_refit_replays_a_schedule_laid_over_the_runs_planned_epochs(schedule):
    """Cosine (and geometric without a time budget) over the run's 10 planned epochs, best epoch 3: the refit runs
    epochs 1..3 at the rates the run's epochs 1..3 ran with, not the same schedule annealed over 3 epochs."""
    run = TrainConfig(lr=3.0, optimizer="sgd", batch_size=20, schedule=schedule, epochs=10, final_lr_fraction=0.01,
                      patience=1)
    metrics = {"train_config": run.to_dict(), "best_epoch": 3, "epochs_run": 4, "history": []}
    train = refit_train_settings(metrics, 1.2)
    assert train["schedule"] == "piecewise" and train["epochs"] == 3
    refit_cfg = TrainConfig.from_dict({**run.to_dict(), **train})
    if schedule == "cosine":  # torch's own schedule over 10 epochs
        ran = _rates(run, 3)
        over_three = _rates(TrainConfig.from_dict({**run.to_dict(), "epochs": 3}), 3)
    else:  # lr f^(d / (E - 1)) with d the epochs done (the Trainer's rule)
        ran = [3.0 * 0.01 ** (d / 9) for d in range(3)]
        over_three = [3.0 * 0.01 ** (d / 2) for d in range(3)]
    assert _rates(refit_cfg, 3) == pytest.approx(ran, rel=1e-11)
    assert _rates(refit_cfg, 3) != pytest.approx(over_three)


@pytest.fixture
def data_file(tmp_path):
    """A pre-split binary npz: 10 features with unequal means, 300 / 60 / 80 rows."""
    rng = np.random.default_rng(1)
    means = np.linspace(0.1, 0.9, 10)
    parts = {s: (rng.random((n, 10)) < means).astype(np.uint8) for s, n in (("train", 300), ("valid", 60),
                                                                               ("test", 80))}
    path = tmp_path / "toy.npz"
    np.savez(path, **parts)
    return path, parts


def _plateau_run(path, out):
    from genlearn.runs import fit

    # a rate far too high for the valid NLL to keep improving: the plateau rule lowers it several times
    return fit("fvsbn", str(path), out=out, optimizer="adam", lr=0.3, batch_size=50, epochs=14,
               schedule="plateau", gamma=0.5, plateau_patience=1, final_lr_fraction=0.01, patience=6,
               keep_best=True, seed=3, progress=False, plots=False)


def test_refit_replays_the_runs_rates_on_train_and_valid_rows(tmp_path, data_file):
    from genlearn.likelihood import mean_nll
    from genlearn.runs import fit

    path, parts = data_file
    first = _plateau_run(path, tmp_path / "run")
    rates = [h["lr"] for h in first.metrics["history"]]
    best = first.metrics["best_epoch"]
    assert len(set(rates[1:best + 1])) > 1, "the run must lower its rate before its best epoch for this test"
    again = refit(tmp_path / "run", tmp_path / "refit", progress=False)
    m = again.metrics
    assert m["data"]["sizes"] == {"train": 360, "valid": None, "test": 80}
    assert m["epochs_run"] == best and m["train_config"]["schedule"] == "piecewise"
    assert m["recipe"]["refit_of"]["epochs"] == best and "valid_nll" not in m
    # record e holds the rate epoch e ran with, in the run and in the refit
    replayed = [h["lr"] for h in m["history"]]
    assert replayed[1:best + 1] == pytest.approx(rates[1:best + 1])
    # the same as an explicit fit on the concatenated rows, parameter for parameter
    rows = merged_rows(_loaded(path))
    assert torch.equal(rows.train, torch.as_tensor(np.concatenate([parts["train"], parts["valid"]]),
                                                   dtype=torch.float32))
    explicit = fit("fvsbn", rows, optimizer="adam", lr=0.3, batch_size=50, epochs=best, seed=3, progress=False,
                   plots=False, schedule="piecewise", lr_steps=m["train_config"]["lr_steps"])
    for (name, a), (_, b) in zip(again.model.state_dict().items(), explicit.model.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    test = torch.as_tensor(parts["test"], dtype=torch.float32)
    assert m["test_nll"] == pytest.approx(mean_nll(again.model, test), abs=1e-6)


def _loaded(path):
    from genlearn.data.registry import load_dataset

    return load_dataset(str(path))


def test_refit_keeps_the_runs_start(tmp_path, data_file):
    """A run started with --init-from is refitted from the same start."""
    from genlearn.runs import fit

    path, _ = data_file
    fit("fvsbn", str(path), out=tmp_path / "start", optimizer="adam", lr=0.05, batch_size=50, epochs=2,
        progress=False, plots=False)
    fit("fvsbn", str(path), out=tmp_path / "run", optimizer="adam", lr=0.01, batch_size=50, epochs=3, patience=2,
        keep_best=True, init_from=tmp_path / "start", progress=False, plots=False)
    again = refit(tmp_path / "run", tmp_path / "refit", progress=False)
    assert again.metrics["init_from"]["run"] == str((tmp_path / "start").resolve())
    # the pipeline refitted stage by stage: the start's refit, then the run's from it
    start = refit(tmp_path / "start", tmp_path / "start-refit", progress=False)
    both = refit(tmp_path / "run", tmp_path / "both", progress=False, init_from=tmp_path / "start-refit")
    assert both.metrics["init_from"]["run"] == str((tmp_path / "start-refit").resolve())
    assert both.metrics["init_from"]["run_id"] == start.metrics["run_id"]
    differs = [not torch.equal(a, b) for a, b in zip(both.model.state_dict().values(),
                                                      again.model.state_dict().values())]
    assert any(differs)


def test_refit_refuses_what_it_cannot_do(tmp_path, data_file):
    path, _ = data_file
    with pytest.raises(RunError, match="no finished run"):
        refit(tmp_path, tmp_path / "out", progress=False)
    _plateau_run(path, tmp_path / "run")
    with pytest.raises(ConfigError, match="the run to refit"):
        refit(tmp_path / "run", tmp_path / "run", progress=False)
    refit(tmp_path / "run", tmp_path / "refit", progress=False)
    with pytest.raises(RunError, match="overwrite"):  # the user's folder is not replaced without asking
        refit(tmp_path / "run", tmp_path / "refit", progress=False)
    (tmp_path / "run" / "checkpoint.json").write_text("")  # damaged: one RunError naming it, not a JSON traceback
    with pytest.raises(RunError, match="checkpoint.json"):
        refit(tmp_path / "run", tmp_path / "refit2", progress=False)


def test_refit_cli_writes_the_run_and_errors_exit_2(tmp_path, data_file):
    path, _ = data_file
    _plateau_run(path, tmp_path / "run")
    cmd = [sys.executable, "-m", "genlearn", "refit", str(tmp_path / "run"), "--out", str(tmp_path / "r"),
           "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["test_nll"] == json.loads((tmp_path / "r" / "metrics.json").read_text())["test_nll"]
    bad = subprocess.run(cmd[:3] + [str(tmp_path / "nothing"), "--out", str(tmp_path / "x")], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1


def test_an_interrupted_refit_resumes_on_its_own_rows(tmp_path, data_file):
    """`genlearn fit --resume` of a refit continues on train + valid, and ends where an uninterrupted refit ends;
    `genlearn eval` scores its train figure on those rows."""
    from genlearn.learning.interrupt import Interrupted
    from genlearn.runs import fit

    path, _ = data_file
    _plateau_run(path, tmp_path / "run")
    whole = refit(tmp_path / "run", tmp_path / "whole", progress=False)

    def stop_after_two(trainer, record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises((KeyboardInterrupt, Interrupted)):
        refit(tmp_path / "run", tmp_path / "cut", progress=False, callbacks=[stop_after_two])
    resumed = fit(None, None, out=tmp_path / "cut", resume=True, progress=False, plots=False)
    assert resumed.metrics["data"]["sizes"]["train"] == 360
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    done = subprocess.run([sys.executable, "-m", "genlearn", "eval", str(tmp_path / "whole"), "--split", "train"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["train_nll"] == pytest.approx(whole.metrics["train_nll"], abs=1e-5)
    valid = subprocess.run([sys.executable, "-m", "genlearn", "eval", str(tmp_path / "whole"), "--split", "valid"],
                           capture_output=True, text=True)
    assert valid.returncode == 2 and "no valid split: a refit trains on its valid rows" in valid.stderr


@pytest.mark.parametrize("family, options", [
    ("mixture", {"components": 3, "em": True}),  # EM: no optimizer flags may be given
    ("fvsbn", {}),  # the family's own full-batch defaults
    ("fvsbn", {"optimizer": "adam", "batch_size": 50, "lr": 0.01}),
    ("rbm", {"hidden": 8, "persistent": True, "optimizer": "sgd", "batch_size": 50, "lr": 0.05}),
])
def test_a_refit_trains_with_the_runs_own_settings(tmp_path, data_file, family, options):
    """Every training setting of the refit is the run's, but the epochs (its best), early stopping and the kept
    best (no valid rows)."""
    from genlearn.runs import fit

    path, _ = data_file
    first = fit(family, str(path), out=tmp_path / "run", epochs=5, patience=2, keep_best=True, seed=4,
                progress=False, plots=False, **options)
    again = refit(tmp_path / "run", tmp_path / "refit", progress=False)
    ours, theirs = again.metrics["train_config"], first.metrics["train_config"]
    assert ours["epochs"] == (first.metrics["best_epoch"] or first.metrics["epochs_run"])
    assert ours["patience"] is None and ours["keep_best"] is False
    assert {k: v for k, v in ours.items() if k not in ("epochs", "patience", "keep_best", "progress")} == {
        k: v for k, v in theirs.items() if k not in ("epochs", "patience", "keep_best", "progress")}


def test_a_refit_is_not_refitted(tmp_path, data_file):
    path, _ = data_file
    _plateau_run(path, tmp_path / "run")
    refit(tmp_path / "run", tmp_path / "refit", progress=False)
    with pytest.raises(ConfigError, match="already a refit"):
        refit(tmp_path / "refit", tmp_path / "again", progress=False)


@pytest.mark.parametrize("schedule", ["cosine", "exponential", "geometric"])
def test_each_history_record_holds_the_rate_its_epoch_ran_with(tmp_path, data_file, schedule):
    """Record e's "lr" is the rate epoch e ran with under every schedule (it used to be the next epoch's under
    all but plateau: a cosine run's last record said 0.0); record 0 the initial rate."""
    from genlearn.runs import fit

    path, _ = data_file
    gamma = {"gamma": 0.5} if schedule == "exponential" else {}
    run = fit("product-bernoulli", str(path), optimizer="sgd", lr=0.5, batch_size=100, epochs=4, schedule=schedule,
              progress=False, plots=False, **gamma)
    recorded = [h["lr"] for h in run.metrics["history"]]
    if schedule == "geometric":  # lr f^(d / (E - 1)), d the epochs done
        ran = [0.5 * 0.01 ** (d / 3) for d in range(4)]
    else:
        ran = _rates(TrainConfig(lr=0.5, optimizer="sgd", schedule=schedule, epochs=4, **gamma), 4)
    assert recorded[0] == 0.5 and recorded[1:] == pytest.approx(ran, rel=1e-12)


def test_refit_of_a_closed_form_run(tmp_path, data_file):
    """A closed-form run's one epoch is its family's default, so the refit's settings left it out and the refit
    record's epochs raised KeyError: the refit is the closed form on train + valid, one epoch."""
    import torch

    from genlearn.runs import fit

    path, _ = data_file
    fit("product-bernoulli", str(path), out=tmp_path / "run", closed_form=True, progress=False, plots=False)
    again = refit(tmp_path / "run", tmp_path / "refit", progress=False)
    assert again.metrics["epochs_run"] == 1 and again.metrics["recipe"]["refit_of"]["epochs"] == 1
    rows = again.dataset.train
    assert torch.allclose(torch.sigmoid(again.model.logits), rows.mean(0).clamp(1e-6, 1 - 1e-6), atol=1e-6)
