"""Run folders written before the family contract (issue 13) still work.

tests/fixtures/legacy_runs/ holds run folders written by the pre-contract main (commit b015d25): an RBM trained
by PCD, a mixture trained by EM, MADE with 2 masks, an order-agnostic NADE with 2 orderings, a Boltzmann machine
trained by PCD, and a die. For each (copied into a temporary folder first: the fixtures are never written):

- `load_run` rebuilds the model from the old checkpoint.json / model.safetensors;
- evaluating it again on its data (`evaluate`, and `genlearn eval DIR --split test`) reproduces the train/valid/
  test NLL of its metrics.json to 1e-4 nats, by the same kind of method (exact stays exact: the RBM's log Z is
  exact by enumerating its 8 hidden units);
- `genlearn sample DIR` draws samples of the data's shape and support;
- `fit(None, None, out=DIR, resume=True, epochs=E+1)` continues the old run (old optimizer, RNG and chains):
  one more epoch, one more learning-curve record, a finite NLL, and metrics.json keeps every key it had."""
from __future__ import annotations

import inspect
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import genlearn
from genlearn.models.registry import get_spec

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_runs"
EXPECTED = {"rbm-pcd", "mixture-em", "made-2", "oa-nade", "boltzmann-pcd", "die"}
RUNS = sorted(p.name for p in FIXTURES.iterdir() if (p / "checkpoint.json").is_file()) if FIXTURES.is_dir() else []
TOL = 1e-4

_NO_PLOTS = {"plots": False} if "plots" in inspect.signature(genlearn.fit).parameters else {}


def test_all_fixtures_present():
    assert EXPECTED <= set(RUNS), f"legacy run folders missing: {sorted(EXPECTED - set(RUNS))}"


def _legacy(name: str) -> tuple[dict, dict]:
    """(checkpoint.json, metrics.json) of the committed fixture, as written by the old main."""
    folder = FIXTURES / name
    return (json.loads((folder / "checkpoint.json").read_text()),
            json.loads((folder / "metrics.json").read_text()))


def _copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def _close(new, old, what: str) -> None:
    assert new is not None and math.isfinite(new), f"{what}: got {new!r}"
    assert abs(new - old) <= TOL, f"{what}: {new!r} now, {old!r} in the legacy metrics.json " \
                                  f"(difference {new - old:.3g})"


def _same_method(new: str, old: str, what: str) -> None:
    if "exact" in str(old):
        assert "exact" in str(new), f"{what}: the legacy figure was exact ({old!r}), now {new!r}"


@pytest.mark.parametrize("name", RUNS)
def test_load_run(name, tmp_path):
    meta, metrics = _legacy(name)
    run = genlearn.load_run(_copy(tmp_path, name))
    assert isinstance(run.model, get_spec(meta["model"]).cls)
    assert run.metrics.get("test_nll") == metrics["test_nll"]
    assert run.model.n_features == metrics["data"]["n_features"]


@pytest.mark.parametrize("name", RUNS)
def test_evaluate_reproduces_metrics(name, tmp_path):
    from genlearn.evaluation import evaluate

    meta, metrics = _legacy(name)
    run = genlearn.load_run(_copy(tmp_path, name))
    dataset = genlearn.load_dataset(meta["data_spec"])
    result = evaluate(run.model, dataset)
    for split in ("train", "valid", "test"):
        if metrics.get(f"{split}_nll") is None:
            continue
        _close(result.get(f"{split}_nll"), metrics[f"{split}_nll"], f"{name}: {split} NLL")
        _same_method(result.get(f"{split}_nll_method"), metrics[f"{split}_nll_method"], f"{name}: {split} NLL")


@pytest.mark.parametrize("name", RUNS)
def test_cli_eval_test_split(name, tmp_path, capsys):
    from genlearn.cli import main

    _, metrics = _legacy(name)
    folder = _copy(tmp_path, name)
    capsys.readouterr()
    rc = main(["eval", str(folder), "--split", "test"])
    out, err = capsys.readouterr()
    assert rc == 0, f"genlearn eval exited {rc}: {err}"
    result = json.loads(out)
    _close(result.get("test_nll"), metrics["test_nll"], f"{name}: genlearn eval --split test")
    _same_method(result.get("test_nll_method"), metrics["test_nll_method"], f"{name}: genlearn eval --split test")


@pytest.mark.parametrize("name", RUNS)
def test_cli_sample(name, tmp_path, capsys):
    from genlearn.cli import main

    _, metrics = _legacy(name)
    folder = _copy(tmp_path, name)
    target = tmp_path / "samples.csv"
    rc = main(["sample", str(folder), "-n", "7", "--out", str(target), "--seed", "1"])
    err = capsys.readouterr().err
    assert rc == 0, f"genlearn sample exited {rc}: {err}"
    rows = [[float(v) for v in line.split(",")] for line in target.read_text().splitlines() if line.strip()]
    data = metrics["data"]
    width = 1 if data["kind"] == "categorical" else data["n_features"]
    assert len(rows) == 7 and all(len(r) == width for r in rows), \
        f"expected 7 rows of {width} values, got {[len(r) for r in rows]}"
    values = torch.tensor(rows)
    if data["kind"] == "binary":
        assert ((values == 0) | (values == 1)).all()
    elif data["kind"] == "categorical":
        assert ((values >= 0) & (values < data["n_categories"]) & (values == values.round())).all()


@pytest.mark.parametrize("name", RUNS)
def test_resume_one_more_epoch(name, tmp_path):
    meta, metrics = _legacy(name)
    folder = _copy(tmp_path, name)
    epochs = metrics["epochs_run"]
    assert meta["state"]["epoch"] == epochs
    run = genlearn.fit(None, None, out=folder, resume=True, epochs=epochs + 1, progress=False, **_NO_PLOTS)
    assert run.metrics["epochs_run"] == epochs + 1
    history = run.metrics["history"]
    assert len(history) == len(metrics["history"]) + 1, "the learning curve did not grow by one record"
    assert history[-1]["epoch"] == epochs + 1
    assert history[: len(metrics["history"])] == _json_round_trip(metrics["history"]), \
        "the old learning-curve records changed"
    assert run.metrics.get("test_nll") is not None and math.isfinite(run.metrics["test_nll"]), \
        f"test NLL after resuming: {run.metrics.get('test_nll')!r}"
    reloaded = genlearn.load_run(folder)
    assert reloaded.metrics["epochs_run"] == epochs + 1
    missing = sorted(set(metrics) - set(reloaded.metrics))
    assert not missing, f"metrics.json lost key(s) it had before the contract: {missing}"


def _json_round_trip(obj):
    """The legacy history as the new run holds it in memory (NaN loss of epoch 0 written as null by _finite)."""
    def finite(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, list):
            return [finite(x) for x in v]
        return v

    return finite(obj)
