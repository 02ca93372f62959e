"""`genlearn fit --init-from DIR` / genlearn.fit(init_from=DIR): a new run starts from another run's parameters.

Checked: the parameters the new run starts from are the source run's final ones (a step of learning rate 1e-30
leaves them equal to float32 rounding, while a fresh initialisation is far from them); another learning rule
(IWAE k = 4 after the ELBO) may continue them; the source is recorded in the checkpoint and metrics and survives a
resume; another family, another architecture, --resume beside it and --out equal to the source are one-line
errors that leave nothing written."""
from __future__ import annotations

import json

import pytest
import torch

import genlearn
from genlearn.cli import main
from genlearn.errors import ConfigError

DATA = "bars-and-stripes:size=2,n=300"
SMALL = {"latent": "2", "hidden": "8", "progress": False, "plots": False, "partition_options": {"iw_samples": 20}}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("init") / "source"
    run = genlearn.fit("vae", DATA, out=out, epochs=3, lr=3e-2, **SMALL)
    return out, {k: v.clone() for k, v in run.model.state_dict().items()}


def _largest_difference(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_a_run_starts_from_the_source_parameters(source, tmp_path):
    src, params = source
    started = genlearn.fit("vae", DATA, out=tmp_path / "b", epochs=1, lr=1e-30, init_from=src, **SMALL)
    fresh = genlearn.fit("vae", DATA, epochs=1, lr=1e-30, **SMALL)
    assert _largest_difference(started.model.state_dict(), params) < 1e-6
    assert _largest_difference(fresh.model.state_dict(), params) > 1e-2
    record = started.metrics["init_from"]
    assert record["run"] == str(src.resolve()) and record["status"] == "finished" and record["epoch"] == 3
    assert record["test_nll"] == json.loads((src / "metrics.json").read_text())["test_nll"]


def test_iwae_training_continues_an_elbo_run_and_resumes_with_its_record(source, tmp_path):
    src, params = source
    out = tmp_path / "iwae"
    genlearn.fit("vae", DATA, out=out, epochs=1, lr=1e-3, iw_samples=4, init_from=src, **SMALL)
    resumed = genlearn.fit(None, None, out=out, resume=True, epochs=2, progress=False, plots=False,
                           partition_options={"iw_samples": 20})
    assert resumed.metrics["init_from"]["run"] == str(src.resolve())
    assert resumed.metrics["rule"]["settings"]["iw_samples"] == 4 and resumed.metrics["epochs_run"] == 2
    moved = _largest_difference(resumed.model.state_dict(), params)
    assert 0 < moved < 0.5  # trained on from the source, not from a fresh initialisation


@pytest.mark.parametrize("model,options,needle", [
    ("made", {"hidden": "8"}, "of model 'vae'"),
    ("vae", {"latent": "3", "hidden": "8"}, "shape"),
    ("vae", {"latent": "2", "hidden": "8,8"}, "parameters differ"),
])
def test_another_family_or_architecture_is_refused(source, tmp_path, model, options, needle):
    src, _ = source
    with pytest.raises(ConfigError, match=needle):
        genlearn.fit(model, DATA, out=tmp_path / "r", epochs=1, init_from=src, progress=False, plots=False,
                     **options)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


@pytest.mark.parametrize("extra,needle", [(["--resume", "SRC"], "give one of them"),
                                          (["--out", "SRC", "--overwrite"], "also --out"),
                                          (["--out", "NEW"], "no run folder")])
def test_cli_refusals_are_one_line_and_keep_the_source(source, tmp_path, capsys, extra, needle):
    src, _ = source
    before = (src / "model.safetensors").read_bytes()
    init = str(tmp_path / "missing") if needle == "no run folder" else str(src)
    extra = [str(src) if a == "SRC" else str(tmp_path / "new") if a == "NEW" else a for a in extra]
    argv = ["fit", *(["vae", "--data", DATA] if "--resume" not in extra else []), "--init-from", init, *extra,
            "--epochs", "1", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genlearn: error:") and needle in err[0], err
    assert (src / "model.safetensors").read_bytes() == before


def test_cli_fit_from_a_run(source, tmp_path, capsys):
    src, params = source
    out = tmp_path / "cli"
    assert main(["fit", "vae", "--data", DATA, "--latent", "2", "--hidden", "8", "--iw-samples", "3", "--epochs", "1",
                 "--lr", "1e-30", "--init-from", str(src), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["init_from"]["run_id"] == json.loads((src / "metrics.json").read_text())["run_id"]
    reloaded = genlearn.load_run(out).model.state_dict()
    assert _largest_difference(reloaded, params) < 1e-6


def test_an_rbm_starts_from_an_rbm_run_with_its_own_data_statistics(tmp_path):
    """An RBM run holds 100 training rows for reverse AIS (reverse_rows) and the base rate: statistics of its data,
    not parameters. --init-from an RBM run was refused ("reverse_rows has shape (100, 9) there and (0, 9) here");
    now the parameters are copied exactly and the new run's data statistics are its own."""
    from genlearn.models.registry import build_model
    from genlearn.runs import start_from_run

    src = tmp_path / "src"
    source = genlearn.fit("rbm", "bars-and-stripes", hidden="8", epochs=1, out=src, progress=False, plots=False)
    assert tuple(source.model.reverse_rows.shape) == (100, 9)
    model = build_model("rbm", genlearn.load_dataset("bars-and-stripes"), hidden="8")
    record = start_from_run(model, "rbm", src)
    for name in ("weight", "visible_bias", "hidden_bias"):
        assert torch.equal(getattr(model, name), getattr(source.model, name)), name
    assert int(model.base_rate_ready) == 0 and tuple(model.reverse_rows.shape) == (0, 9)
    assert record["run"] == str(src.resolve())
    run = genlearn.fit("rbm", "bars-and-stripes", hidden="8", epochs=1, init_from=src, out=tmp_path / "b",
                       progress=False, plots=False)
    assert run.metrics["init_from"]["run"] == str(src.resolve()) and int(run.model.base_rate_ready) == 2
