"""`genlearn bench` (genlearn.bench): the side-by-side timing of genlearn's BernoulliRBM against scikit-learn's.
Its figures are the per-pair ratios of the sides' own seconds, in interleaved pairs with the same arguments; its
input checks give one clear error; the CLI writes JSON without replacing a file unasked."""
import json

import numpy as np
import pytest

from genlearn import bench
from genlearn.cli import main
from genlearn.errors import ConfigError, DataError


def _small(**kw):
    settings = dict(hidden=8, batch_size=50, learning_rate=0.05, pairs=3, settle=0.0, gemm_seconds=0.01,
                    log=lambda line: None)
    settings.update(kw)
    return bench.side_by_side(bench.synthetic_rows(200, visible=30, seed=1), **settings)


def test_pairs_alternate_and_both_sides_fit_the_same_arguments(monkeypatch):
    """Each pair fits both sides once, scikit-learn first in even pairs and last in odd ones, with the same
    n_components, batch_size, n_iter, learning_rate and random_state (the pair's number); the ratios are
    t(scikit-learn) / t(genlearn) of the same pair."""
    calls = []
    clock = iter(range(1, 100))

    def fake_fit_seconds(make, X):
        est = make()
        side = "scikit-learn" if type(est).__module__.startswith("sklearn") else "genlearn"
        params = {k: getattr(est, k) for k in ("n_components", "batch_size", "n_iter", "learning_rate",
                                                 "random_state")}
        calls.append((side, params))
        return float(next(clock)), est

    monkeypatch.setattr(bench, "fit_seconds", fake_fit_seconds)
    res = _small(pairs=3)
    assert [c[0] for c in calls] == ["scikit-learn", "genlearn", "genlearn", "scikit-learn",
                                     "scikit-learn", "genlearn"]
    for i in range(3):
        a, b = calls[2 * i][1], calls[2 * i + 1][1]
        assert a == b == {"n_components": 8, "batch_size": 50, "n_iter": 1, "learning_rate": 0.05, "random_state": i}
    assert res["seconds"] == {"scikit-learn": [1.0, 4.0, 5.0], "genlearn": [2.0, 3.0, 6.0]}
    ratios = res["ratio_vs_scikit_learn"]["genlearn"]
    assert ratios["pair_ratios"] == pytest.approx([0.5, 4.0 / 3.0, 5.0 / 6.0])
    assert ratios["median"] == pytest.approx(5.0 / 6.0)
    assert ratios["interval"] == pytest.approx([0.5, 4.0 / 3.0]) and ratios["interval_coverage"] == 0.75
    flops = 10.0 * 200 * 30 * 8
    assert res["epoch_flops"] == flops
    assert res["roofline_fraction"]["genlearn"] == pytest.approx(flops / 3.0 / (res["gemm_peak_gflops"] * 1e9))


def test_a_real_run_records_the_machine_and_the_resolved_precision():
    res = _small(pairs=1)
    assert res["machine"]["cpu_capability"] and "cpu_bf16_supported" in res["machine"]
    assert res["matmul_precision_resolved"] in ("full", "bfloat16")
    assert all(len(v) == 1 and v[0] > 0.0 for v in res["seconds"].values())
    assert res["rows"] == 200 and res["visible"] == 30
    json.dumps(res)  # JSON-ready


@pytest.mark.parametrize("rows,message", [
    (np.array([[0.0, 0.5], [1.0, 0.0]]), "row 0 column 1 is 0.5"),
    (np.array([[0.0, np.nan]]), "row 0 column 1 is nan"),
    (np.zeros((0, 4)), "non-empty 2-D"),
    (np.zeros(4), "non-empty 2-D"),
])
def test_rows_other_than_0_1_tables_are_one_clear_error(rows, message):
    with pytest.raises(DataError, match=message):
        bench.binary_rows(rows, "the rows")


@pytest.mark.parametrize("change,message", [
    ({"pairs": 0}, "--pairs"), ({"hidden": 0}, "--hidden"), ({"rows": 10}, "fewer than one batch"),
    ({"learning_rate": float("nan")}, "--lr"), ({"settle": -1.0}, "--settle"), ({"precision": "half"}, "one of"),
])
def test_impossible_settings_are_one_clear_error(change, message):
    settings = dict(rows=200, hidden=8, batch_size=50, learning_rate=0.01, pairs=1, settle=0.0, precision="auto")
    settings.update(change)
    with pytest.raises(ConfigError, match=message):
        bench.check_settings(**settings)


def test_the_cli_writes_json_and_never_replaces_a_file_unasked(tmp_path, capsys):
    out = tmp_path / "sub" / "bench.json"
    args = ["bench", "--rows", "200", "--hidden", "8", "--batch-size", "50", "--pairs", "2", "--settle", "0",
            "--gemm-seconds", "0.01", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "scikit-learn / genlearn" in printed and "CPU capability" in printed
    res = json.loads(out.read_text())
    assert res["rows"] == 200 and len(res["seconds"]["genlearn"]) == 2
    before = out.read_text()
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err and out.read_text() == before
    assert main(args + ["--overwrite", "--pairs", "1"]) == 0
    assert len(json.loads(out.read_text())["seconds"]["genlearn"]) == 1


@pytest.mark.parametrize("extra,message", [
    (["--pairs", "0"], "--pairs must be >= 1"), (["--rows", "0"], "--rows must be >= 1"),
    (["--gemm-seconds", "0"], "--gemm-seconds"), (["--rows", "20"], "fewer than one batch"),
])
def test_the_cli_rejects_impossible_settings_with_exit_2(extra, message, capsys):
    assert main(["bench", "--settle", "0", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_cli_rejects_gray_data_with_exit_2(tmp_path, capsys):
    path = tmp_path / "gray.npy"
    np.save(path, np.full((120, 5), 0.5, np.float32))
    for spec, message in ((str(path), "holds 0.5"), (f"{path}:binarize=none", "needs 0/1 rows")):
        assert main(["bench", "--data", spec, "--pairs", "1", "--settle", "0", "--hidden", "4"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_the_cli_side_runs_genlearn_fit_rbm_with_the_same_settings(tmp_path):
    """With cli=True a third side: `genlearn fit rbm` in a child process, its epoch's train_seconds."""
    res = _small(pairs=1, cli=True)
    child = res["cli"]["runs"][0]
    assert res["seconds"]["genlearn fit rbm"] == [child["train_seconds"]] and child["train_seconds"] > 0.0
    command = res["cli"]["command"]
    for flag in ("--hidden 8", "--batch-size 50", "--n-chains 50", "--lr 0.05", "--epochs 1", "--gradient pcd",
                 "--optimizer sgd", "--matmul-precision auto"):
        assert flag in command
    assert "genlearn fit rbm" in res["ratio_vs_scikit_learn"]


def _record(ratios_by_side, arguments=None):
    return {"rows": 200, "visible": 30, "arguments": arguments or {"n_components": 8, "batch_size": 50},
            "ratio_vs_scikit_learn": {side: {"pair_ratios": r} for side, r in ratios_by_side.items()}}


def test_pooling_joins_every_pair_of_every_run():
    """The pooled median and interval are those of all pairs together (not the median of the runs' medians)."""
    runs = {"a": _record({"genlearn": [1.0, 2.0, 3.0], "genlearn fit rbm": [4.0]}),
            "b": _record({"genlearn": [10.0, 11.0, 12.0, 13.0]})}
    pooled = bench.pool(runs)
    g = pooled["sides"]["genlearn"]
    assert g["pairs"] == 7 and g["runs"] == 2 and g["median"] == 10.0
    assert g["run_medians"] == [2.0, 11.5]
    low, high, coverage = bench.median_interval([1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0])
    assert g["interval"] == [low, high] and g["interval_coverage"] == coverage
    assert pooled["sides"]["genlearn fit rbm"]["pairs"] == 1
    with pytest.raises(ConfigError, match="differ in arguments"):
        bench.pool({"a": runs["a"], "c": _record({"genlearn": [1.0]}, {"n_components": 9, "batch_size": 50})})


def test_the_cli_pools_its_own_result_files(tmp_path, capsys):
    paths = []
    for name, ratios in (("a", [2.0, 3.0]), ("b", [4.0])):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(_record({"genlearn": ratios})))
    out = tmp_path / "pooled.json"
    assert main(["bench", "--pool", *map(str, paths), "--out", str(out)]) == 0
    assert "3.00x over 3 pairs" in capsys.readouterr().out
    assert json.loads(out.read_text())["sides"]["genlearn"]["pair_ratios"] == [2.0, 3.0, 4.0]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["bench", "--pool", str(bad)]) == 2
    assert "not a `genlearn bench --out` file" in capsys.readouterr().err
    assert main(["bench", "--pool", str(tmp_path / "missing.json")]) == 2
    assert "not a readable" in capsys.readouterr().err
    # the pooled summary over one of its own inputs (its pairs lost), timing flags that --pool ignores, a folder
    before = paths[0].read_text()
    assert main(["bench", "--pool", *map(str, paths), "--out", str(paths[0]), "--overwrite"]) == 2
    assert "is one of the --pool files" in capsys.readouterr().err and paths[0].read_text() == before
    assert main(["bench", "--pool", *map(str, paths), "--hidden", "9"]) == 2
    assert "--hidden is a setting of the timing; --pool times nothing" in capsys.readouterr().err
    assert main(["bench", "--pool", *map(str, paths), "--out", str(tmp_path), "--overwrite"]) == 2
    assert f"--out {tmp_path} is a folder" in capsys.readouterr().err


def test_without_threads_both_sides_get_the_count_chosen_for_the_load(monkeypatch, capsys):
    """One of two cores busy: the command uses one thread, and so must scikit-learn's BLAS (side_by_side's
    `threads`), else genlearn would be timed on one thread against scikit-learn on two."""
    import torch

    from genlearn import bench, cpu_load

    monkeypatch.setattr(cpu_load, "busy_cores", lambda *a, **k: 1.0)
    monkeypatch.setattr(cpu_load, "usable_cores", lambda: 2)
    seen = {}

    def fake_side_by_side(x, **kwargs):
        seen.update(kwargs, torch_threads=torch.get_num_threads())
        raise KeyboardInterrupt  # stop before any timing

    monkeypatch.setattr(bench, "side_by_side", fake_side_by_side)
    previous = torch.get_num_threads()
    try:
        assert main(["bench", "--rows", "200", "--hidden", "8", "--batch-size", "50"]) == 130
    finally:
        torch.set_num_threads(previous)
    assert seen["threads"] == 1 and seen["torch_threads"] == 1
    assert "using 1 thread" in capsys.readouterr().err
