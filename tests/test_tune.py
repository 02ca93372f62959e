"""`genlearn tune`: model selection by the validation NLL on Optuna (genlearn.tune, genlearn.search_space).

Oracles: a synthetic mixture of 3 product-Bernoulli components whose exact log-likelihood is known, so the
selected model's valid NLL is compared with the truth's; the test split is a counted property (read once, at
the end, never during the search); the recipe the search writes re-runs to the trial's valid NLL; the study's
database is read back with Optuna to check counts after an interrupted run and after two concurrent workers."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from genlearn import search_space as ss
from genlearn.data.dataset import Dataset
from genlearn.errors import ConfigError

N_FEATURES = 12


def mixture_truth():
    """Q(X): 3 equally likely components, each with p = 0.9 on its own block of 4 features and 0.1 elsewhere."""
    from genlearn.models.mixture import MixtureOfBernoulli

    q = MixtureOfBernoulli(N_FEATURES, components=3)
    p = torch.full((3, N_FEATURES), 0.1)
    for k in range(3):
        p[k, 4 * k: 4 * k + 4] = 0.9
    with torch.no_grad():
        q.logits.copy_(torch.log(p) - torch.log1p(-p))
        q.mix_logits.zero_()
    return q


def mixture_splits(seed: int = 0, sizes=(1200, 400, 400)):
    q = mixture_truth()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x = q.sample(sum(sizes), generator=g).float()
    a, b = sizes[0], sizes[0] + sizes[1]
    return q, x[:a], x[a:b], x[b:]


class CountingDataset(Dataset):
    """A Dataset whose test split counts how often it is read."""

    @property
    def test(self):
        self.__dict__["test_reads"] = self.__dict__.get("test_reads", 0) + 1
        return self.__dict__["_test"]

    @test.setter
    def test(self, value):
        self.__dict__["_test"] = value


def write_presplit(folder: Path, name: str = "mix") -> Path:
    """NAME.train.data / .valid.data / .test.data (comma-separated 0/1 rows) in `folder`; returns DIR/NAME."""
    _, train, valid, test = mixture_splits(sizes=(600, 200, 200))
    folder.mkdir(parents=True, exist_ok=True)
    for split, x in (("train", train), ("valid", valid), ("test", test)):
        np.savetxt(folder / f"{name}.{split}.data", x.numpy().astype(int), fmt="%d", delimiter=",")
    return folder / name


# -- the search --------------------------------------------------------------------------------------------
def test_finds_the_true_family_by_valid_nll_and_reads_test_once(tmp_path):
    pytest.importorskip("optuna")
    from genlearn.tune import tune

    q, train, valid, test = mixture_splits()
    ds = CountingDataset(name="mixture3", kind="binary", train=train, valid=valid, test=test)
    reads_during_search = []
    result = tune(ds, out=tmp_path / "t", families="product-bernoulli,mixture", trials=5, epochs=30, patience=5,
                  trial_minutes=1.0, seed=0, space={"mixture": {"components": ss.integer(2, 4)}},
                  log=lambda line: line.startswith("trial") and reads_during_search.append(
                      ds.__dict__.get("test_reads", 0)))
    s = result.summary
    assert reads_during_search and all(r == 0 for r in reads_during_search)  # never during the search
    assert ds.__dict__["test_reads"] == 1  # once, at the end
    assert s["n_trials"] == 5 and s["n_complete"] + s["n_pruned"] == 5
    with torch.no_grad():
        truth_valid = float(-q.log_prob(valid).double().mean())
        truth_test = float(-q.log_prob(test).double().mean())
    best = s["best"]
    assert best["family"] == "mixture" and best["model_options"]["components"] in (3, 4)
    assert abs(best["valid_nll"] - truth_valid) < 0.1  # the selected model is as good as the truth on valid
    products = [t["valid_nll"] for t in s["trials"] if t["family"] == "product-bernoulli" and t["valid_nll"]]
    assert products and min(products) > truth_valid + 1.0  # independent pixels cannot fit three clusters
    # the test figure is the best model's mean -log P over the test rows, with its 95% interval
    with torch.no_grad():
        nll = -result.best_run.model.log_prob(test).double()
    assert s["test_nll"] == pytest.approx(float(nll.mean()), abs=1e-5)
    half = 1.96 * float(nll.std()) / math.sqrt(len(nll))
    assert s["test_nll_ci95"] == pytest.approx([s["test_nll"] - half, s["test_nll"] + half], abs=1e-5)
    assert abs(s["test_nll"] - truth_test) < 0.15
    # every trial is a run folder; the best one's metrics gain the test figure; trials never saw the test split
    import json

    run_dir = tmp_path / "t" / best["run"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_nll"] == pytest.approx(s["test_nll"])
    for t in s["trials"]:
        m = json.loads((tmp_path / "t" / t["run"] / "metrics.json").read_text())
        assert m["data"]["sizes"]["test"] is None and m["train_config"]["seed"] == t["number"]
    assert (tmp_path / "t" / "study.db").is_file() and (tmp_path / "t" / "best.toml").is_file()


def test_presplit_folder_from_the_cli_and_the_recipe_reruns_the_best(tmp_path):
    pytest.importorskip("optuna")
    import json

    from genlearn.cli import main

    prefix = write_presplit(tmp_path / "data")
    out = tmp_path / "tune"
    rc = main(["tune", "--data", str(prefix), "--families", "mixture,fvsbn", "--trials", "3", "--epochs", "8",
               "--trial-minutes", "2", "--seed", "1", "--out", str(out), "--quiet"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"]["sizes"] == {"train": 600, "valid": 200, "test": 200}  # the files' own splits
    best = summary["best"]
    # `genlearn fit --recipe best.toml` re-runs the best configuration on the same data: the same valid NLL
    rc = main(["fit", "--recipe", str(out / "best.toml"), "--out", str(tmp_path / "rerun"), "--quiet"])
    assert rc == 0
    rerun = json.loads((tmp_path / "rerun" / "metrics.json").read_text())
    assert rerun["model"] == best["family"]
    assert rerun["valid_nll"] == pytest.approx(best["valid_nll"], abs=1e-4)
    assert rerun["test_nll"] == pytest.approx(summary["test_nll"], abs=1e-4)


def test_interrupted_study_continues(tmp_path, monkeypatch, capsys):
    pytest.importorskip("optuna")
    import optuna

    import genlearn.runs
    from genlearn.cli import main

    prefix = write_presplit(tmp_path / "data")
    out = tmp_path / "tune"
    argv = ["tune", "--data", str(prefix), "--families", "fvsbn,mixture", "--trials", "5", "--epochs", "6",
            "--no-prune", "--seed", "0", "--out", str(out), "--quiet"]
    real_fit, calls = genlearn.runs.fit, []

    def interrupted_fit(*args, **kwargs):  # the third trial is interrupted (Ctrl-C) in its second epoch
        calls.append(1)
        if len(calls) == 3:
            def ctrl_c(trainer, rec):
                if rec["epoch"] == 2:
                    raise KeyboardInterrupt
            kwargs["callbacks"] = [*kwargs["callbacks"], ctrl_c]
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(genlearn.runs, "fit", interrupted_fit)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err == "genlearn: interrupted; run the same `genlearn tune` command again to continue the study\n"
    storage = f"sqlite:///{out / 'study.db'}"
    first = optuna.load_study(study_name="genlearn-tune", storage=storage).trials
    before = {t.number: t.value for t in first if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(first) == 3 and len(before) == 2
    stopped = first[2]
    assert stopped.state == optuna.trial.TrialState.FAIL and stopped.user_attrs["interrupted"]
    assert (out / stopped.user_attrs["run"] / "checkpoint.json").is_file()  # resumable with genlearn fit --resume
    # the same command again continues the study up to 5 finished trials, keeping the first ones
    monkeypatch.setattr(genlearn.runs, "fit", real_fit)
    assert main(argv) == 0
    trials = optuna.load_study(study_name="genlearn-tune", storage=storage).trials
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 6 and len(done) == 5
    assert {t.number: t.value for t in done if t.number in before} == before
    assert [t.number for t in done] == [0, 1, 3, 4, 5]
    # the continuation's sampler is seeded anew (seed + trials so far): its first random draw is not trial 2's again
    assert trials[3].params != trials[2].params, (trials[2].params, trials[3].params)
    # the interrupted trial continues with `genlearn fit --resume`, without the test split, as it was fitted
    assert main(["fit", "--resume", str(out / stopped.user_attrs["run"]), "--quiet"]) == 0, capsys.readouterr().err
    resumed = json.loads((out / stopped.user_attrs["run"] / "metrics.json").read_text())
    assert resumed["data"]["sizes"]["test"] is None and "test_nll" not in resumed
    # the same --out with other families is refused rather than mixed into the study
    assert main([*argv[:4], "fvsbn", *argv[5:]]) == 2
    assert "was started with another --families" in capsys.readouterr().err


def test_an_interrupted_baseline_trial_is_queued_again(tmp_path, monkeypatch, capsys):
    """The family's baseline (its default settings, trial 0) interrupted by Ctrl-C: the continuation fits those
    settings again (it never did: the baseline was enqueued once, when the study was created); a baseline that
    failed with an error of its own is not queued again."""
    pytest.importorskip("optuna")
    import optuna

    import genlearn.runs
    from genlearn.cli import main

    prefix = write_presplit(tmp_path / "data")
    out = tmp_path / "tune"
    argv = ["tune", "--data", str(prefix), "--families", "mixture", "--trials", "2", "--epochs", "3", "--no-prune",
            "--seed", "0", "--out", str(out), "--quiet"]
    real_fit = genlearn.runs.fit

    def interrupted_fit(*args, **kwargs):  # the first trial is interrupted in its second epoch
        def ctrl_c(trainer, rec):
            if rec["epoch"] == 2:
                raise KeyboardInterrupt
        return real_fit(*args, **{**kwargs, "callbacks": [*kwargs["callbacks"], ctrl_c]})

    monkeypatch.setattr(genlearn.runs, "fit", interrupted_fit)
    assert main(argv) == 130
    monkeypatch.setattr(genlearn.runs, "fit", real_fit)
    assert main(argv) == 0, capsys.readouterr().err
    trials = optuna.load_study(study_name="genlearn-tune", storage=f"sqlite:///{out / 'study.db'}").trials
    assert trials[0].state == optuna.trial.TrialState.FAIL and trials[0].user_attrs["baseline"]
    again = [t for t in trials[1:] if t.user_attrs.get("requeued_from") == 0]
    assert len(again) == 1 and again[0].params == trials[0].params and again[0].user_attrs["baseline"]
    assert again[0].state == optuna.trial.TrialState.COMPLETE
    from genlearn.tune import _requeue_baselines

    study = optuna.load_study(study_name="genlearn-tune", storage=f"sqlite:///{out / 'study.db'}")
    assert _requeue_baselines(optuna, study) == []  # done now: not queued a third time
    memory = optuna.create_study()
    for x, error in ((1, "training diverged"), (2, None)):
        memory.enqueue_trial({"x": x}, user_attrs={"baseline": True})
        trial = memory.ask()
        if error:
            trial.set_user_attr("error", error)
        memory.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert _requeue_baselines(optuna, memory) == [1]  # the one that failed on its own is not queued again


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path):
    """Worker A is another process; worker B (this process) joins once A has started its first trial."""
    pytest.importorskip("optuna")
    import json

    import optuna

    from genlearn.tune import tune

    prefix = write_presplit(tmp_path / "data")
    out = tmp_path / "tune"
    code = "import sys; from genlearn.cli import main; sys.exit(main(sys.argv[1:]))"
    settings = dict(families="fvsbn,mixture", trials=6, epochs=40, patience=1000, prune=False)
    args = ["tune", "--data", prefix, "--families", "fvsbn,mixture", "--trials", 6, "--epochs", 40,
            "--patience", 1000, "--no-prune", "--seed", 1, "--out", out, "--quiet"]
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "trials" / "0000").is_dir() and proc.poll() is None:
        time.sleep(0.1)
    tune(str(prefix), out=out, seed=2, **settings)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    trials = optuna.load_study(study_name="genlearn-tune", storage=f"sqlite:///{out / 'study.db'}").trials
    counted = [t for t in trials if not t.user_attrs.get("surplus")]
    assert [t.number for t in trials] == list(range(len(trials)))  # no number lost or given twice
    assert len(counted) == 6 and all(t.state == optuna.trial.TrialState.COMPLETE for t in counted)
    assert len({t.user_attrs["worker"] for t in counted}) == 2  # both workers ran trials
    runs = [t.user_attrs["run"] for t in counted]
    assert len(set(runs)) == 6
    for t in counted:  # each trial's folder holds that trial's run (its seed is the trial number)
        m = json.loads((out / t.user_attrs["run"] / "metrics.json").read_text())
        assert m["train_config"]["seed"] == t.number and m["valid_nll"] == pytest.approx(t.value)
    folders = sorted(p.name for p in (out / "trials").iterdir())
    assert folders == sorted(Path(r).name for r in runs)  # no folder without its trial


def test_a_worker_stops_after_failures_in_a_row(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    import genlearn.tune
    from genlearn.errors import RunError

    monkeypatch.setattr(genlearn.tune, "MAX_FAILURES_IN_A_ROW", 3)
    _, train, valid, test = mixture_splits(sizes=(200, 100, 100))
    ds = Dataset(name="m", kind="binary", train=train, valid=valid, test=test)
    with pytest.raises(RunError, match="3 trials in a row failed; the last: training diverged"):
        genlearn.tune.tune(ds, out=tmp_path / "t", families="fvsbn", trials=20, epochs=3,
                           space={"fvsbn": {"lr": ss.fixed(1e30), "batch_size": ss.fixed(200)}})


# -- the pruner ----------------------------------------------------------------------------------------------
def test_family_median_pruner():
    optuna = pytest.importorskip("optuna")
    from genlearn.tune import _family_median_pruner

    study = optuna.create_study(pruner=_family_median_pruner(optuna, n_startup_trials=3, n_warmup_steps=2))
    dist = {"family": optuna.distributions.CategoricalDistribution(["a", "b"])}
    for family, curve in (("a", [5.0, 4.0, 3.0]), ("a", [5.0, 4.5, 3.5]), ("a", [6.0, 5.0, 4.0]),
                          ("b", [1.0, 1.0, 1.0]), ("b", [1.0, 1.0, 1.0]), ("b", [1.0, 1.0, 1.0])):
        study.add_trial(optuna.trial.create_trial(params={"family": family}, distributions=dist, value=curve[-1],
                                                  intermediate_values=dict(enumerate(curve))))

    # family a at step 2: the best-so-far of the others are 3.0, 3.5, 4.0 -> median 3.5
    for values, expected in (([5.0, 4.0, 3.6], True), ([5.0, 4.0, 3.4], False), ([5.0, 3.0], False)):
        trial = study.ask(dist)
        while trial.params["family"] != "a":  # a trial of family a: tell the others and ask again
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            trial = study.ask(dist)
        for step, v in enumerate(values):
            trial.report(v, step)
        # family b's curves (all 1.0) are not compared with family a's
        assert trial.should_prune() is expected, (values, expected)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


# -- errors ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("toml, words", [
    ("[nade]\nhiddn = {low = 16, high = 64}\n", ["'hiddn'", "neither an option of 'nade'"]),
    ("[nade]\nhidden = {low = 0, high = 64}\n", ["hidden", "--hidden must be >= 1"]),
    ("[nade]\nlr = {low = 0.0, high = 0.1, log = true}\n", ["log scale", "low must be > 0"]),
    ("[nade]\nactivation = [\"relu\", \"swish\"]\n", ["--activation must be one of"]),
    ("[made]\nhidden = {low = 16, high = 64}\n", ["'made'", "not among the searched families"]),
    ("[nade]\nhidden = {low = 64, high = 16}\n", ["low 64 > high 16"]),
    ("[nade\n", ["not valid TOML"]),
])
def test_bad_search_space_is_one_line_error(tmp_path, capsys, toml, words):
    pytest.importorskip("optuna")
    from genlearn.cli import main

    space = tmp_path / "space.toml"
    space.write_text(toml)
    rc = main(["tune", "--data", "coin:n=50", "--families", "nade", "--space", str(space), "--out",
               str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("genlearn: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err
    assert not (tmp_path / "t").exists()  # nothing started


@pytest.mark.parametrize("argv, words", [
    (["--families", "nade,nosuch"], ["unknown model 'nosuch'"]),
    (["--families", "nade", "--trials", "0"], ["--trials must be a positive integer"]),
    (["--families", "nade", "--trials", "x"], ["--trials must be an integer"]),
    ([], ["--families", "--preset uci"]),
    (["--families", "gaussian"], ["needs real data"]),
])
def test_bad_tune_settings_are_one_line_errors(tmp_path, capsys, argv, words):
    pytest.importorskip("optuna")
    from genlearn.cli import main

    rc = main(["tune", "--data", "coin:n=50", "--out", str(tmp_path / "t"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("genlearn: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err


def test_without_optuna_the_error_names_the_extra(monkeypatch, capsys, tmp_path):
    from genlearn.cli import main

    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    rc = main(["tune", "--data", "coin:n=50", "--families", "bernoulli", "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "genlearn[tune]" in err


def test_every_declared_space_is_valid():
    from genlearn.models.registry import list_models
    from genlearn.tune import PRESETS, _baseline, family_spaces

    searched = [s.name for s in list_models() if s.search_space]
    assert set(PRESETS["uci"].families) <= set(searched)
    spaces = family_spaces(searched)  # raises ConfigError for a bad declaration
    for family, space in spaces.items():
        base = _baseline(family, space)
        for name, p in space.items():  # the baseline trial lies in the space
            if p.kind in ("int", "float"):
                assert p.low <= base[f"{family}:{name}"] <= p.high
            elif p.kind == "choice":
                assert base[f"{family}:{name}"] in p.choices
            elif p.kind == "one_of":
                assert base[f"{family}:{name}"] in p.labels()
    # nade's baseline keeps its own defaults: one fixed ordering
    assert _baseline("nade", spaces["nade"])["nade:ordering"] == "order=fixed"


def test_space_toml_kinds():
    space = ss.space_from_toml("[nade]\nhidden = {low = 16, high = 256, log = true}\nlr = {low = 1e-4, high = 0.01}\n"
                               "activation = [\"relu\", \"tanh\"]\nbatch_size = 100\n")["nade"]
    assert space["hidden"] == ss.integer(16, 256, log=True)
    assert space["lr"] == ss.real(1e-4, 0.01)
    assert space["activation"] == ss.choice("relu", "tanh")
    assert space["batch_size"] == ss.fixed(100)
    with pytest.raises(ConfigError, match="a range is"):
        ss.space_from_toml("[nade]\nhidden = {low = 1}\n")


def test_option_sets_from_toml_and_their_checks():
    from genlearn.tune import family_spaces

    space = ss.space_from_toml('[nade]\nvariant = [{order = "fixed"}, {order_agnostic = true, orderings = 4}]\n')
    p = space["nade"]["variant"]
    assert p == ss.one_of({"order": "fixed"}, {"order_agnostic": True, "orderings": 4})
    assert p.labels() == ["order=fixed", "order_agnostic=True, orderings=4"]
    assert p.chosen("order_agnostic=True, orderings=4") == {"order_agnostic": True, "orderings": 4}
    # the user's sets replace the declared ones that touch the same settings
    merged = family_spaces(["nade"], space)["nade"]
    assert "ordering" not in merged and merged["variant"] == p
    merged = family_spaces(["nade"], {"nade": {"order": ss.fixed("random")}})["nade"]
    assert "ordering" not in merged and merged["order"] == ss.fixed("random")
    assert family_spaces(["nade"])["nade"]["ordering"].kind == "one_of"
    bad = [({"variant": ss.one_of({"order": "fixed"}), "order": ss.choice("fixed", "random")}, "set both"),
           ({"variant": ss.one_of({"ordr": "fixed"})}, "'ordr' is neither"),
           ({"variant": ss.one_of({"orderings": 0})}, "--orderings must be >= 1"),
           ({"order": ss.one_of({"order_agnostic": True})}, "is an option"),
           ({"variant": ss.one_of({"order": "fixed"}, {"order": "fixed"})}, "twice"),
           ({"variant": ss.one_of({})}, "at least one setting")]
    for entries, words in bad:
        with pytest.raises(ConfigError, match=words):
            family_spaces(["nade"], {"nade": entries})
    with pytest.raises(ConfigError, match="not both"):
        ss.space_from_toml('[nade]\nvariant = [{order = "fixed"}, "random"]\n')


def test_a_search_over_option_sets_gives_each_trial_one_whole_set(tmp_path):
    pytest.importorskip("optuna")
    from genlearn.tune import tune

    _, train, valid, test = mixture_splits(sizes=(300, 100, 100))
    ds = Dataset(name="mixture3", kind="binary", train=train, valid=valid, test=test)
    sets = ss.one_of({"order": "fixed"}, {"order_agnostic": True, "orderings": 3})
    result = tune(ds, out=tmp_path / "t", families="nade", trials=4, epochs=3, patience=3, trial_minutes=1.0,
                  seed=0, space={"nade": {"variant": sets, "hidden": ss.fixed(8)}}, log=lambda line: None)
    rows = result.summary["trials"]
    assert result.summary["n_failed"] == 0 and len(rows) == 4
    import json

    configs = [json.loads((tmp_path / "t" / t["run"] / "metrics.json").read_text())["model_config"] for t in rows]
    chosen = {(c["order_agnostic"], c["orderings"]) for c in configs}
    assert chosen <= {(False, 1), (True, 3)} and (False, 1) in chosen  # the baseline keeps nade's defaults
    assert result.summary["space"]["nade"]["variant"] == {"kind": "one_of", "choices": [
        {"order": "fixed"}, {"order_agnostic": True, "orderings": 3}]}


def test_a_trial_stops_when_its_wall_time_is_spent_even_with_training_time_left(tmp_path, monkeypatch):
    """The trial's clock (monitoring included) runs 20 s per reading here, while its training takes milliseconds:
    the trial ends after a few epochs with its best parameters, out of time, not pruned or failed."""
    pytest.importorskip("optuna")
    import json

    from genlearn import tune as tune_module

    ticks = iter(range(0, 10**6, 20))
    monkeypatch.setattr(tune_module, "_clock", lambda: float(next(ticks)))
    _, train, valid, test = mixture_splits(sizes=(300, 100, 100))
    ds = Dataset(name="mixture3", kind="binary", train=train, valid=valid, test=test)
    result = tune_module.tune(ds, out=tmp_path / "t", families="fvsbn", trials=1, epochs=10_000, patience=10_000,
                              trial_minutes=1.0, seed=0, prune=False, log=lambda line: None)
    row = result.summary["trials"][0]
    metrics = json.loads((tmp_path / "t" / row["run"] / "metrics.json").read_text())
    assert row["state"] == "complete" and metrics["out_of_time"] is True
    assert metrics["epochs_run"] == 3  # readings at 20, 40, 60 s after the start: 60 s is the trial's minute
    assert metrics["train_seconds"] < 60.0


def test_recipe_loader_takes_a_file(tmp_path):
    from genlearn.recipes import load_recipe

    path = tmp_path / "mine.toml"
    path.write_text('summary = "s"\nmodel = "bernoulli"\ndata = "coin:n=10"\n[train]\nepochs = 3\n')
    r = load_recipe(str(path))
    assert (r.name, r.model, r.data, r.train) == ("mine", "bernoulli", "coin:n=10", {"epochs": 3})
    with pytest.raises(ConfigError, match="no recipe file"):
        load_recipe(str(tmp_path / "absent.toml"))


def test_a_folder_of_other_files_is_refused_and_left_as_it_was(capsys, tmp_path):
    """tune writes summary.json and best.toml into --out: a folder that is not a study's (no trials/) and holds files
    is refused before anything runs, so a user's files of those names are not replaced."""
    from genlearn.cli import main

    out = tmp_path / "mine"
    out.mkdir()
    (out / "summary.json").write_text("my own notes")
    (out / "best.toml").write_text("my recipe")
    rc = main(["tune", "--data", "coin:n=50", "--families", "bernoulli", "--trials", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "is not a study's folder" in err and "best.toml" in err, err
    assert {p.name: p.read_text() for p in out.iterdir()} == {"summary.json": "my own notes", "best.toml": "my recipe"}


def test_the_hint_to_rerun_the_best_names_the_data_folder(capsys, tmp_path):
    """best.toml records a named data set by its name: the hint tune prints carries the --data-dir it was found in
    (without it, `genlearn fit --recipe OUT/best.toml` of e.g. nips could not find the data), and no --data-dir
    where none was given."""
    from genlearn.cli import main

    for extra, hint in ((["--data-dir", str(tmp_path)], f"best.toml --data-dir {tmp_path}`"), ([], "best.toml`")):
        out = tmp_path / f"t{len(extra)}"
        rc = main(["tune", "--data", "coin:n=50", "--families", "bernoulli", "--trials", "1", "--quiet",
                   "--out", str(out), *extra])
        err = capsys.readouterr().err
        assert rc == 0 and f"re-run the best trial with `genlearn fit --recipe {out / 'best.toml'}" in err, err
        assert hint in err, err


def test_a_continued_study_relabels_the_test_figure_of_its_earlier_best(tmp_path):
    """The test split was read for the best trial of an earlier run of the study; when a continuation chooses
    another trial, the earlier figure stays (it was read) under a label saying it is not the study's."""
    from types import SimpleNamespace

    from genlearn.tune import _relabel_earlier_best

    for name, label in (("0000", "genlearn tune (best of the study by valid NLL; test read once)"), ("0001", None)):
        (tmp_path / "trials" / name).mkdir(parents=True)
        metrics = {"test_nll": 20.0} if label else {}
        if label:
            metrics["test_scored_by"] = label
        (tmp_path / "trials" / name / "metrics.json").write_text(json.dumps(metrics))
    trials = [SimpleNamespace(number=n, user_attrs={"run": f"trials/000{n}"}) for n in (0, 1)]
    _relabel_earlier_best(trials, trials[1], tmp_path)
    earlier = json.loads((tmp_path / "trials" / "0000" / "metrics.json").read_text())
    assert earlier["test_nll"] == 20.0 and "since chosen trial 1" in earlier["test_scored_by"]
    assert json.loads((tmp_path / "trials" / "0001" / "metrics.json").read_text()) == {}


def test_fewer_trials_than_families_warns_and_counts_only_trials_that_ran(tmp_path, capsys):
    """--trials 1 over two families: the second family's baseline stays queued and never runs. tune said nothing,
    and its summary counted the queued trial (n_trials 2, family null); it warns now and counts what ran."""
    pytest.importorskip("optuna")
    from genlearn.cli import main

    out = tmp_path / "t"
    with pytest.warns(UserWarning, match="--trials 1 is fewer than the 2 families: .* product-bernoulli will get none"):
        rc = main(["tune", "--data", "coin:n=50", "--families", "bernoulli,product-bernoulli", "--trials", "1",
                   "--epochs", "2", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_trials"] == 1 and [r["family"] for r in summary["trials"]] == ["bernoulli"]


def test_trials_whose_settings_the_family_refuses_fail_and_stop_the_study(tmp_path, capsys):
    """A space whose every point the family refuses (--smoothing without --closed-form): each trial fails with
    that error and the study stops after 10 in a row. Deciding a trial's one-pass rule outside the fit's error
    handling looped forever, writing thousands of failed trials without a line."""
    pytest.importorskip("optuna")
    from genlearn.cli import main

    space = tmp_path / "space.toml"
    space.write_text("[product-bernoulli]\nclosed_form = false\nsmoothing = {low = 0.01, high = 1.0}\n")
    rc = main(["tune", "--data", "coin:n=50", "--families", "product-bernoulli", "--space", str(space),
               "--trials", "2", "--epochs", "2", "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert rc == 2 and "10 trials in a row failed" in err and "--smoothing applies to the closed-form" in err, err
