"""Recipes (genlearn.recipes) and the published parameters (benchmarks/models/NAME).

Every shipped recipe must name a family, validate against the family's config and the TrainConfig, and carry
its figure; `genlearn fit --recipe` must run through the product and record the recipe and the overrides;
every published run folder must re-evaluate to the figure its metrics.json states (on ../shared/data)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from genlearn.cli import main
from genlearn.errors import ConfigError
from genlearn.learning.trainer import TrainConfig
from genlearn.likelihood import PARTITION_METHODS
from genlearn.models.registry import get_spec
from genlearn.recipes import list_recipes, load_recipe, recipe_names

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PUBLISHED = ROOT / "benchmarks" / "models"


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_validates_against_its_family_and_the_trainer(name):
    recipe = load_recipe(name)
    spec = get_spec(recipe.model)
    spec.parse_options(recipe.model_options)
    TrainConfig.from_dict(recipe.train).validate()
    assert recipe.evaluation.get("partition", "auto") in PARTITION_METHODS
    assert set(recipe.evaluation) <= {"partition", "steps", "chains", "seed", "iw_samples", "train_iw_samples",
                                      "ais_rows", "ais_leapfrog", "bdmc_rows"}
    fig = recipe.figure
    assert fig["metric"] == "test_nll" and math.isfinite(fig["value"]) and fig["cost"] and fig["machine"]


def test_the_headline_figures_have_recipes():
    """The README's headline figures (binarized MNIST): each has a recipe that states it."""
    figures = {r.figure["value"] for r in list_recipes()}
    for value in (129.77, 97.95, 87.98, 91.37, 88.55, 86.91, 148.66, 87.56, 205.79):
        assert value in figures, value


def test_unknown_recipe_is_one_clear_error(capsys):
    with pytest.raises(ConfigError, match="unknown recipe 'nope'; known: "):
        load_recipe("nope")
    assert main(["fit", "--recipe", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genlearn: error: unknown recipe")


def test_fit_recipe_records_the_recipe_and_the_overrides(tmp_path, capsys):
    """A recipe's settings, then every flag given beside it (a family option and a training flag), through the
    same fit as any other run; the data override is recorded too."""
    out = tmp_path / "run"
    rc = main(["fit", "--recipe", "fvsbn", "--data", "digits", "--epochs", "2", "--order", "random",
               "--quiet", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"] == {"name": "fvsbn", "overrides": {"epochs": 2, "order": "random", "data": "digits"},
                                 "evaluation": {}}
    assert metrics["train_config"]["epochs"] == 2 and metrics["epochs_run"] == 2
    assert metrics["train_config"]["optimizer"] == "adam" and metrics["train_config"]["gamma"] == 0.99  # recipe
    assert metrics["model_config"]["order"] == "random"
    assert metrics["evaluation"] == {"partition": "auto"}


def test_resuming_a_recipe_run_keeps_its_evaluation_settings(tmp_path, capsys):
    """hvae-vampprior evaluates with 20 importance samples on train/valid (not the default 100): a run resumed with
    `genlearn fit --resume DIR` (no evaluation flags) is evaluated the same way; an evaluation flag given at the
    first fit stays recorded as an override and is kept too; and a recipe given as a file path keeps its
    [evaluation] table on resume even after the file is gone (the run records the table)."""
    out = tmp_path / "run"
    small = ["--data", "digits", "--hidden", "8", "--pseudo-inputs", "10", "--warmup-epochs", "0", "--quiet"]
    rc = main(["fit", "--recipe", "hvae-vampprior", "--epochs", "1", *small, "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    first = json.loads((out / "metrics.json").read_text())
    assert (first["test_iw_samples"], first["train_iw_samples"]) == (5000, 20)
    assert main(["fit", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0, capsys.readouterr().err
    again = json.loads((out / "metrics.json").read_text())
    assert again["epochs_run"] == 2 and (again["test_iw_samples"], again["train_iw_samples"]) == (5000, 20)
    out2 = tmp_path / "run2"
    rc = main(["fit", "--recipe", "hvae-vampprior", "--epochs", "1", *small, "--eval-iw-samples", "7",
               "--out", str(out2)])
    assert rc == 0, capsys.readouterr().err
    assert main(["fit", "--resume", str(out2), "--epochs", "2", "--quiet"]) == 0, capsys.readouterr().err
    assert json.loads((out2 / "metrics.json").read_text())["test_iw_samples"] == 7
    recipe_file = tmp_path / "my-vae.toml"
    from genlearn.recipes import _files

    text = _files()["hvae-vampprior"].read_text()
    recipe_file.write_text(text.replace("iw_samples = 5000", "iw_samples = 30"))
    out3 = tmp_path / "run3"
    rc = main(["fit", "--recipe", str(recipe_file), "--epochs", "1", *small, "--out", str(out3)])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((out3 / "metrics.json").read_text())["test_iw_samples"] == 30
    recipe_file.unlink()
    assert main(["fit", "--resume", str(out3), "--epochs", "2", "--quiet"]) == 0, capsys.readouterr().err
    resumed = json.loads((out3 / "metrics.json").read_text())
    assert (resumed["test_iw_samples"], resumed["train_iw_samples"]) == (30, 20)


def test_a_recipe_run_takes_another_partition_method(tmp_path, capsys):
    """`fit --recipe rbm-784x20-cd1 --partition ais` (its recipe evaluates exactly): the run is evaluated by AIS with
    the flags given (it failed: "unknown partition option 'partition'"), records the override, and an old run
    without its evaluation record is evaluated the same way (runs.recipe_evaluation)."""
    from genlearn.runs import recipe_evaluation

    out = tmp_path / "run"
    rc = main(["fit", "--recipe", "rbm-784x20-cd1", "--data", "digits", "--epochs", "1", "--partition", "ais",
               "--ais-steps", "100", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluation"] == {"partition": "ais", "steps": 100, "seed": 0}
    assert metrics["test_nll_method"] == "ais" and metrics["log_z_details"]["steps"] == 100
    assert recipe_evaluation(metrics["recipe"]) == ("ais", {"steps": 100, "seed": 0})
    rbm = {"name": "rbm-784x500", "overrides": {"evaluation": {"partition": "exact"}}}
    assert recipe_evaluation(rbm, "rbm") == ("exact", {})  # an energy model's AIS options go with AIS alone
    gan = {"name": "gan-js", "overrides": {"evaluation": {"partition": "auto"}}}
    partition, options = recipe_evaluation(gan, "gan")  # a latent model's options hold under any method
    assert partition == "auto" and options["ais_rows"] == 1000 and options["bdmc_rows"] == 100


def test_fit_recipe_rejects_a_family_other_than_its_own(tmp_path, capsys):
    assert main(["fit", "rbm", "--recipe", "fvsbn", "--data", "digits", "--out", str(tmp_path / "x")]) == 2
    assert "fits model 'fvsbn', not 'rbm'" in capsys.readouterr().err


def test_recipes_command_lists_every_recipe_with_its_figure(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for r in list_recipes():
        assert r.name in out and f"test_nll {r.figure['value']}" in out


def _published():
    return sorted(p.name for p in PUBLISHED.iterdir() if (p / "checkpoint.json").exists()) if PUBLISHED.exists() else []


@pytest.mark.parametrize("name", _published())
def test_published_folder_is_small_and_loads(name):
    from genlearn import load_run

    folder = PUBLISHED / name
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 5 * 2**20
    run = load_run(folder)
    x = run.sample(3)
    assert x.shape == (3, run.model.n_features)


@pytest.mark.shared
@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is absent")
# not the RBM 784x500 (AIS at 100,000 temperatures: ten minutes) nor the 128-ordering NADE (2-4 minutes): their
# `genlearn eval` figures are in benchmarks/RESULTS.md
@pytest.mark.parametrize("name", [n for n in _published() if "784x500" not in n and n != "oa-nade"])
def test_published_parameters_reproduce_their_figure(name, capsys):
    """`genlearn eval benchmarks/models/NAME --data-dir DIR` gives the figure of RESULTS (exact likelihoods)."""
    metrics = json.loads((PUBLISHED / name / "metrics.json").read_text())
    assert main(["eval", str(PUBLISHED / name), "--data-dir", str(SHARED), "--split", "test"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert abs(got["test_nll"] - metrics["test_nll"]) <= 0.05


def test_a_recipe_that_continues_another_needs_its_run(tmp_path, capsys):
    """`continues = "NAME"`: the recipe starts from a finished run of recipe NAME, so without --init-from it is
    one line naming the two commands, and nothing is written; with it the run starts from that run's parameters."""
    base = tmp_path / "base.toml"
    base.write_text('summary = "a tiny VAE"\nmodel = "vae"\ndata = "bars-and-stripes:size=2,n=300"\n'
                    '[model_options]\nlatent = "2"\nhidden = "8"\n[train]\nepochs = 2\n[evaluation]\niw_samples = 20\n')
    follow = tmp_path / "follow.toml"
    text = base.read_text().replace('summary = "a tiny VAE"', 'summary = "IWAE after it"\ncontinues = "base"')
    follow.write_text(text.replace('hidden = "8"', 'hidden = "8"\niw_samples = 4'))
    out = tmp_path / "follow-run"
    assert main(["fit", "--recipe", str(follow), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "continues a finished run of recipe 'base'" in err[0] and "--init-from" in err[0]
    assert not out.exists()
    assert main(["fit", "--recipe", str(base), "--out", str(tmp_path / "base-run"), "--quiet"]) == 0
    assert main(["fit", "--recipe", str(follow), "--out", str(out), "--init-from", str(tmp_path / "base-run"),
                 "--quiet"]) == 0
    capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["init_from"]["run"] == str((tmp_path / "base-run").resolve())
    assert metrics["rule"]["settings"]["iw_samples"] == 4
    assert load_recipe(str(follow)).continues == "base"
    bad = tmp_path / "bad.toml"
    bad.write_text(base.read_text().replace('summary = "a tiny VAE"', 'summary = "x"\ncontinues = 3'))
    with pytest.raises(ConfigError, match="continues must be the name of a recipe"):
        load_recipe(str(bad))
