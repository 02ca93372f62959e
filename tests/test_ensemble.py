"""The equal-weight ensemble of fitted models (genlearn.models.ensemble) and `genlearn tune --ensemble K`.

Oracles: exact enumeration of the 2^6 states (the ensemble's P sums to 1 and equals the mean of its members'
probabilities state by state), Jensen's inequality per row, sample frequencies against the enumerated P, a
rebuilt model from its config and parameters; for tune, the ensemble's valid NLL recomputed by hand from the
trials' own models for every k, the k chosen by valid NLL alone, the test split read once, and the ensemble's
run folder scored again by `genlearn eval`."""
from __future__ import annotations

import json
import math

import pytest
import torch

from genlearn.enumeration import all_states
from genlearn.errors import ConfigError
from genlearn.models.ensemble import Ensemble
from genlearn.models.fvsbn import FVSBN
from genlearn.models.mixture import MixtureOfBernoulli
from genlearn.models.registry import build_from_config

N = 6


def _members() -> list:
    torch.manual_seed(0)
    a, b, c = FVSBN(N, seed=1), MixtureOfBernoulli(N, components=3, seed=2), FVSBN(N, order="random", seed=3)
    with torch.no_grad():
        for m in (a, b, c):
            for p in m.parameters():
                p.normal_(0.0, 1.5)
    return [m.double() for m in (a, b, c)]  # float64: the sums below are checked to 1e-9


def test_probabilities_are_the_members_mean_and_sum_to_one():
    members = _members()
    ens = Ensemble(members)
    x = all_states(N).double()
    with torch.no_grad():
        p = ens.log_prob(x).exp()
        mean = torch.stack([m.log_prob(x).double().exp() for m in members]).mean(0)
        each = torch.stack([m.log_prob(x).double() for m in members])
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-9)
    assert torch.allclose(p, mean, rtol=1e-9, atol=0)
    assert bool((ens.log_prob(x).detach() >= each.mean(0) - 1e-12).all())  # Jensen, row by row
    assert ens.ensemble_size == 3 and torch.equal(ens.member_log_prob(x, 1), members[1].log_prob(x))


def test_samples_follow_the_mixture():
    ens = Ensemble(_members())
    x = ens.sample(40_000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (40_000, N) and set(x.unique().tolist()) <= {0.0, 1.0}
    weights = 2 ** torch.arange(N)
    freq = torch.bincount((x.long() * weights).sum(1), minlength=2 ** N).double() / len(x)
    states = all_states(N).double()
    p = torch.zeros(2 ** N, dtype=torch.float64)
    with torch.no_grad():
        p[(states.long() * weights).sum(1)] = ens.log_prob(states).exp()
    assert 0.5 * float((freq - p).abs().sum()) < 0.03  # total variation; a wrong member draw moves it far more


def test_rebuilt_from_its_config_and_parameters():
    ens = Ensemble(_members())
    copy = build_from_config("ensemble", json.loads(json.dumps(ens.config()))).double()
    copy.load_state_dict(ens.state_dict())
    x = all_states(N).double()
    with torch.no_grad():
        assert torch.equal(copy.log_prob(x), ens.log_prob(x))


@pytest.mark.parametrize("members,needle", [
    ([], "at least one"),
    ("rbm", "exact, tractable"),
    ("sizes", "same data"),
])
def test_bad_members_are_refused(members, needle):
    from genlearn.models.rbm import RBM

    if members == "rbm":
        members = [FVSBN(N), RBM(N, 3)]
    elif members == "sizes":
        members = [FVSBN(N), FVSBN(N + 1)]
    with pytest.raises(ConfigError, match=needle):
        Ensemble(members)


# -- genlearn tune --ensemble K --------------------------------------------------------------------------------
def _tune(tmp_path, ensemble=4, train_rows=150):
    from test_tune import CountingDataset, mixture_splits

    from genlearn.tune import tune

    _, train, valid, test = mixture_splits(sizes=(train_rows, 400, 400))
    ds = CountingDataset(name="mixture3", kind="binary", train=train, valid=valid, test=test)
    result = tune(ds, out=tmp_path / "t", families="fvsbn,mixture", trials=5, epochs=15, patience=3,
                  trial_minutes=1.0, seed=0, prune=False, ensemble=ensemble)
    return result.summary, ds, (train, valid, test)


def _ranked(summary, k: int) -> list:
    return sorted((t for t in summary["trials"] if t["state"] == "complete"), key=lambda t: t["valid_nll"])[:k]


def _mixture_nll(out, trials, x) -> float:
    """-mean log (1/k) sum_j P_j(x) of the trials' own saved models, by hand."""
    import genlearn

    with torch.no_grad():
        logp = torch.stack([genlearn.load_run(out / t["run"]).model.log_prob(x).double() for t in trials])
    return float(-(torch.logsumexp(logp, 0) - math.log(len(trials))).mean())


def test_tune_chooses_the_ensemble_size_by_valid_nll_and_reads_test_once(tmp_path):
    pytest.importorskip("optuna")
    s, ds, (_, valid, _) = _tune(tmp_path)
    assert ds.__dict__["test_reads"] == 1
    e = s["ensemble"]
    by_k = [_mixture_nll(tmp_path / "t", _ranked(s, k), valid) for k in range(1, 5)]
    assert e["valid_nll_by_k"] == pytest.approx(by_k, abs=1e-9)
    assert e["k"] == 1 + by_k.index(min(by_k)) and e["valid_nll"] == pytest.approx(min(by_k))
    assert [m["trial"] for m in e["members"]] == [t["number"] for t in _ranked(s, e["k"])]
    assert s["selected"] == ("ensemble" if e["k"] > 1 else "best trial")


def _forcing_k(monkeypatch, k: int):
    """choose_ensemble as if the valid NLL had chosen k members (the writing and scoring paths, deterministic)."""
    import genlearn
    import genlearn.tune as tune_module

    real = tune_module.choose_ensemble

    def forced(complete, out, *args, **kwargs):
        chosen = real(complete, out, *args, **kwargs)
        ranked = sorted(complete, key=lambda t: t.value)[:k]
        models = [genlearn.load_run(out / t.user_attrs["run"]).model for t in ranked]
        chosen.update(k=k, valid_nll=chosen["valid_nll_by_k"][k - 1],
                      members=[{"trial": t.number, "run": t.user_attrs["run"]} for t in ranked],
                      model=Ensemble(models) if k > 1 else None)
        return chosen

    monkeypatch.setattr(tune_module, "choose_ensemble", forced)


def test_a_chosen_ensemble_is_scored_once_and_written_as_a_run_folder(tmp_path, monkeypatch, capsys):
    pytest.importorskip("optuna")
    import numpy as np

    from genlearn.cli import main

    _forcing_k(monkeypatch, 3)
    s, ds, (train, valid, test) = _tune(tmp_path)
    out, e = tmp_path / "t", s["ensemble"]
    assert ds.__dict__["test_reads"] == 1 and s["selected"] == "ensemble" and e["k"] == 3
    expected = _mixture_nll(out, _ranked(s, 3), test)
    assert s["test_nll"] == pytest.approx(expected, abs=1e-6) and e["test_nll"] == s["test_nll"]
    assert s["best"]["test_nll"] == pytest.approx(_mixture_nll(out, _ranked(s, 1), test), abs=1e-6)
    metrics = json.loads((out / "ensemble" / "metrics.json").read_text())
    assert metrics["valid_nll"] == pytest.approx(_mixture_nll(out, _ranked(s, 3), valid), abs=1e-6)
    # the folder is read back by `genlearn eval` (scored again on the rows it is given) and `genlearn sample`
    data = tmp_path / "splits.npz"
    np.savez(data, train=train.numpy(), valid=valid.numpy(), test=test.numpy())
    assert main(["eval", str(out / "ensemble"), "--data", str(data), "--split", "test"]) == 0
    assert json.loads(capsys.readouterr().out)["test_nll"] == pytest.approx(expected, abs=1e-6)
    assert main(["sample", str(out / "ensemble"), "-n", "4", "--seed", "0"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 4 and all(set(r.split(",")) <= {"0", "1"} for r in rows)


def test_without_a_better_mixture_the_best_trial_is_kept(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    _forcing_k(monkeypatch, 1)
    stale = tmp_path / "t" / "ensemble"  # what an earlier end of the study chose: no longer the result
    stale.mkdir(parents=True)
    (tmp_path / "t" / "trials").mkdir()  # a study's folder (tune refuses a folder of other files)
    (stale / "model.safetensors").write_bytes(b"old")
    s, ds, _ = _tune(tmp_path, ensemble=3)
    assert ds.__dict__["test_reads"] == 1
    assert s["selected"] == "best trial" and s["ensemble"]["k"] == 1
    assert not (tmp_path / "t" / "ensemble").exists() and "test_nll" not in s["best"]


def test_bad_ensemble_setting_is_one_line(tmp_path, capsys):
    pytest.importorskip("optuna")
    from genlearn.cli import main

    assert main(["tune", "--data", "digits", "--families", "fvsbn", "--ensemble", "0", "--out",
                 str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ensemble must be a positive integer" in err[0]
    assert not (tmp_path / "t").exists()


def test_trials_whose_run_folder_cannot_be_read_are_left_out(tmp_path):
    optuna = pytest.importorskip("optuna")
    import shutil

    from genlearn.tune import choose_ensemble

    s, ds, _ = _tune(tmp_path, ensemble=1)  # no ensemble at the end: chosen below, by hand
    study = optuna.load_study(study_name="genlearn-tune", storage=f"sqlite:///{tmp_path / 't' / 'study.db'}")
    complete = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    ranked = sorted(complete, key=lambda t: t.value)
    assert len(ranked) >= 4 and "ensemble" not in s
    shutil.rmtree(tmp_path / "t" / ranked[1].user_attrs["run"])  # as if written by a worker on another machine
    chosen = choose_ensemble(complete, tmp_path / "t", ds, 3, say=lambda line: None)
    assert [x["trial"] for x in chosen["left_out_trials"]] == [ranked[1].number]
    assert len(chosen["valid_nll_by_k"]) == 3
    assert ranked[1].number not in [m["trial"] for m in chosen["members"]]
