"""`genlearn tune --refit`: the selected trials trained again on train + valid (genlearn.tune_refit).

Oracles: a refit's rule (the trial's settings and seed, its best epoch count) reproduces the trial's own saved
model parameter for parameter when given the trial's rows; the refitted mixture's test NLL recomputed by hand from
the refitted run folders; the rows each refit trained on counted; the test split read once; a re-run reuses the
refits, and a run without --refit removes them."""
from __future__ import annotations

import json
import math

import pytest
import torch

from genlearn.data.dataset import Dataset
from genlearn.errors import ConfigError
from genlearn.tune_refit import check_refittable, refit_data, refit_settings


def _splits():
    from test_tune import mixture_splits

    _, train, valid, test = mixture_splits(sizes=(150, 400, 400))
    return train, valid, test


def _tune(tmp_path, refit=True, out="t"):
    from test_tune import CountingDataset

    from genlearn.tune import tune

    train, valid, test = _splits()
    ds = CountingDataset(name="mixture3", kind="binary", train=train, valid=valid, test=test)
    result = tune(ds, out=tmp_path / out, families="fvsbn,mixture", trials=5, epochs=15, patience=3,
                  trial_minutes=1.0, seed=0, prune=False, ensemble=4, refit=refit)
    return result.summary, ds


def test_refit_data_is_train_then_valid_and_nothing_else():
    train, valid, test = _splits()
    ds = Dataset(name="m", kind="binary", train=train, valid=valid, test=test, settings={"source": "x"})
    data = refit_data(ds)
    assert torch.equal(data.train, torch.cat([train, valid]))
    assert data.valid is None and data.test is None and data.settings["source"] == "x"


def test_dynamically_binarized_data_cannot_be_refitted():
    train, valid, _ = _splits()
    ds = Dataset(name="grey", kind="binary", train=train, valid=valid, train_intensity=train * 0.5)
    with pytest.raises(ConfigError, match="--no-refit"):
        check_refittable(ds)


def test_refit_settings_take_the_best_epoch_and_scale_the_time_budget():
    trial = {"epochs": 100_000, "patience": 20, "keep_best": True, "seed": 7, "max_minutes": 4.0, "lr": 0.01}
    s = refit_settings(trial, {"best_epoch": 38, "epochs_run": 58}, rows_ratio=1.25)
    assert s["epochs"] == 38 and s["patience"] is None and s["keep_best"] is False
    assert s["seed"] == 7 and s["lr"] == 0.01 and s["max_minutes"] == pytest.approx(5.0)
    assert refit_settings(trial, {"best_epoch": None, "epochs_run": 12}, 1.0)["epochs"] == 12


def test_the_refit_rule_on_the_trials_own_rows_gives_the_trials_model(tmp_path):
    """The premise of a refit: the trial's settings and seed, stopped at its best epoch, give back the model the
    trial kept (with keep_best), exactly; so a refit differs from its trial by the rows only."""
    pytest.importorskip("optuna")
    import genlearn
    from genlearn import options as opts
    from genlearn.models.registry import get_spec

    s, _ = _tune(tmp_path, refit=False)
    train, valid, _ = _splits()
    checked = 0
    for row in (r for r in s["trials"] if r["state"] == "complete"):
        trial_run = genlearn.load_run(tmp_path / "t" / row["run"])
        if trial_run.metrics["best_epoch"] == trial_run.metrics["epochs_run"] and checked:
            continue  # the interesting case is a trial that ran on past its best epoch
        settings = refit_settings(row["train"], trial_run.metrics, 1.0)
        config = get_spec(row["family"]).config
        model_options = {k: opts.convert(config, k, v) for k, v in row["model_options"].items()}
        again = genlearn.fit(row["family"], Dataset(name="mixture3", kind="binary", train=train, valid=valid),
                             plots=False, **settings, **model_options)
        for (name, a), b in zip(trial_run.model.state_dict().items(), again.model.state_dict().values()):
            assert torch.equal(a, b), (row["number"], name)
        checked += 1
    assert checked >= 2


def _refitted_mixture_nll(out, members, x) -> float:
    import genlearn

    with torch.no_grad():
        logp = torch.stack([genlearn.load_run(out / m["run"]).model.log_prob(x).double() for m in members])
    return float(-(torch.logsumexp(logp, 0) - math.log(len(members))).mean())


def test_tune_refits_the_chosen_ensemble_scores_it_once_and_reuses_it(tmp_path, monkeypatch, capsys):
    pytest.importorskip("optuna")
    import numpy as np
    from test_ensemble import _forcing_k, _mixture_nll, _ranked

    from genlearn.cli import main

    _forcing_k(monkeypatch, 3)
    s, ds = _tune(tmp_path)
    out, train, valid, test = tmp_path / "t", *_splits()
    assert ds.__dict__["test_reads"] == 1 and s["refitted"] and s["selected"] == "ensemble"
    r = s["refit"]
    assert [m["trial"] for m in r["members"]] == [t["number"] for t in _ranked(s, 3)]
    assert r["run"] == "refit/ensemble" and r["rows"] == 550
    for m in r["members"]:
        metrics = json.loads((out / m["run"] / "metrics.json").read_text())
        trial = json.loads((out / f"trials/{m['trial']:04d}" / "metrics.json").read_text())
        assert metrics["data"]["sizes"]["train"] == 550 and metrics["data"]["sizes"]["valid"] is None
        assert metrics["epochs_run"] == trial["best_epoch"] == m["epochs"]
    # the headline is the refitted mixture; the train-only mixture and the best trial keep their own figures
    assert s["test_nll"] == pytest.approx(_refitted_mixture_nll(out, r["members"], test), abs=1e-6)
    assert s["ensemble"]["test_nll"] == pytest.approx(_mixture_nll(out, _ranked(s, 3), test), abs=1e-6)
    assert s["best"]["test_nll"] == pytest.approx(_mixture_nll(out, _ranked(s, 1), test), abs=1e-6)
    assert s["test_nll"] != s["ensemble"]["test_nll"]
    data = tmp_path / "splits.npz"
    np.savez(data, train=train.numpy(), valid=valid.numpy(), test=test.numpy())
    capsys.readouterr()
    assert main(["eval", str(out / "refit" / "ensemble"), "--data", str(data), "--split", "test"]) == 0
    assert json.loads(capsys.readouterr().out)["test_nll"] == pytest.approx(s["test_nll"], abs=1e-6)
    # the study is finished: a re-run redoes only its end, with the refits reused
    again, ds2 = _tune(tmp_path)
    assert ds2.__dict__["test_reads"] == 1 and all(m["reused"] for m in again["refit"]["members"])
    assert again["test_nll"] == pytest.approx(s["test_nll"], abs=1e-9)
    # and an end without --refit removes them: the folder never contradicts the summary
    plain, _ = _tune(tmp_path, refit=False)
    assert "refit" not in plain and not (out / "refit").exists()
    assert plain["test_nll"] == pytest.approx(s["ensemble"]["test_nll"], abs=1e-9)


def test_a_refitted_best_trial_alone(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    from test_ensemble import _forcing_k, _ranked

    _forcing_k(monkeypatch, 1)
    s, ds = _tune(tmp_path)
    (best,) = _ranked(s, 1)
    assert ds.__dict__["test_reads"] == 1 and s["selected"] == "best trial"
    assert s["refit"]["run"] == f"refit/{best['number']:04d}"
    metrics = json.loads((tmp_path / "t" / s["refit"]["run"] / "metrics.json").read_text())
    assert metrics["test_nll"] == pytest.approx(s["test_nll"], abs=1e-9) and metrics["data"]["sizes"]["train"] == 550
    assert "test_nll" in s["best"] and s["best"]["test_nll"] != s["test_nll"]


def test_refit_flags_on_the_command_line(tmp_path, capsys):
    pytest.importorskip("optuna")
    from genlearn.cli import main

    assert main(["tune", "--data", "digits:binarize=dynamic", "--families", "fvsbn", "--refit", "--out",
                 str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-refit" in err[0] and not (tmp_path / "t").exists()
    from genlearn.tune import _resolve

    assert _resolve("uci", None, None, None, None, None, None)["refit"] is True
    assert _resolve("uci", None, None, None, None, None, None, refit=False)["refit"] is False
    assert _resolve(None, "fvsbn", None, None, None, None, None)["refit"] is False
