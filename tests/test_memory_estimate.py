"""Model sizes refused before they are allocated (issue 16): a family's parameters and buffers are sized by building
it on torch's meta device (registry.model_size), and a fit whose parameters, gradients and optimizer state
(checks.fit_bytes) exceed the machine's memory is one ConfigError naming the options that make it large, the memory
it needs and the memory there is; `genlearn sample` counts the activations of the model's widest layer.

Oracles: the bytes of the real model's tensors (numel x element size), the tensors a real optimizer holds after a
step, closed-form parameter counts (n h + n + h for an RBM, n^2 + n for a Boltzmann machine, K + K n for a
mixture). The machine's memory is pinned to 16 GiB so that the cases do not depend on the machine."""
from __future__ import annotations

import pytest
import torch

import genlearn
from genlearn import validate
from genlearn.checks import check_model_memory, fit_bytes
from genlearn.cli import main
from genlearn.data import load_dataset
from genlearn.errors import ConfigError
from genlearn.models.registry import build_model, model_size

GIB = 2**30
BINARY = "product-bernoulli:dim=7,n=30"
WIDE = "product-bernoulli:dim=200000,n=4"  # 200000 features, 4 rows: small data, wide models


@pytest.fixture(autouse=True)
def _sixteen_gib(monkeypatch):
    monkeypatch.setattr(validate, "machine_memory", lambda: 16 * GIB)


@pytest.fixture(scope="module")
def data():
    return {"binary": load_dataset(BINARY), "real": load_dataset("gaussian:dim=3,n=30"),
            "categorical": load_dataset("die"), "coin": load_dataset("coin:n=30")}


SMALL = [  # (family, data kind, options): each family, its layouts of parameters and buffers
    ("bernoulli", "coin", {}), ("product-bernoulli", "binary", {}), ("categorical", "categorical", {}),
    ("gaussian", "real", {}), ("gaussian", "real", {"covariance": "full"}), ("boltzmann", "binary", {}),
    ("fvsbn", "binary", {"order": "random"}), ("mixture", "binary", {"components": 5}),
    ("rbm", "binary", {"hidden": 11, "init_visible": "data"}),
    ("made", "binary", {"hidden": "13,6", "masks": 3}), ("made", "binary", {"hidden": "5", "direct": False}),
    ("nade", "binary", {"hidden": "9"}), ("nade", "binary", {"hidden": "9", "order_agnostic": True, "orderings": 3}),
    ("vae", "binary", {"latent": "3,2", "hidden": "10,8"}),
    ("vae", "binary", {"latent": "2", "hidden": "6", "prior": "vampprior", "pseudo_inputs": 4}),
    ("gan", "binary", {"latent": "3", "hidden": "6,5", "critic_hidden": "4", "pack": 2, "warm_start_epochs": 1}),
]


@pytest.mark.parametrize("family,kind,options", SMALL, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(SMALL)])
def test_the_meta_estimate_is_the_real_model(data, family, kind, options):
    ds = data[kind]
    est = model_size(family, ds, **options)
    real = build_model(family, ds, **options)
    params, buffers = list(real.parameters()), list(real.buffers())
    assert est.parameters == sum(p.numel() for p in params) > 0
    assert est.parameter_bytes == sum(p.numel() * p.element_size() for p in params)
    assert est.buffer_bytes == sum(b.numel() * b.element_size() for b in buffers)
    assert est.width == max(d for t in params + buffers for d in t.shape)
    assert torch.empty(2).device.type == "cpu"  # the meta device was only the build's


def test_huge_models_are_sized_without_allocating(data):
    """Closed-form counts of models of terabytes, sized in milliseconds (nothing is allocated)."""
    n = data["binary"].n_features
    h = 2_000_000_000
    rbm = model_size("rbm", data["binary"], hidden=h)
    assert rbm.parameters == n * h + n + h and rbm.parameter_bytes == 4 * rbm.parameters and rbm.width == h
    wide = load_dataset(WIDE)
    assert model_size("boltzmann", wide).parameters == 200_000**2 + 200_000
    assert model_size("mixture", wide, components=100_000).parameters == 100_000 + 100_000 * 200_000


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_fit_bytes_is_what_the_trainer_holds(data, optimizer):
    """After a real step: parameters + gradients + the optimizer's state tensors + buffers = fit_bytes."""
    from genlearn.learning import TrainConfig, Trainer
    from genlearn.learning.rules import make_rule

    ds = data["binary"]
    options = {"hidden": "13,6", "masks": 2}
    model = build_model("made", ds, **options)
    trainer = Trainer(model, ds, TrainConfig.from_dict({"optimizer": optimizer, "epochs": 1, "batch_size": 10,
                                                        "progress": False}), rule=make_rule("maximum-likelihood"))
    trainer.fit()
    held = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    held += sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    held += sum(t.numel() * t.element_size() for state in trainer.optimizer.state.values() for t in state.values()
                if isinstance(t, torch.Tensor) and t.ndim > 0)  # Adam's step count is a 0-d tensor
    assert fit_bytes(model_size("made", ds, **options), optimizer) == held


def test_the_limit_is_the_machine_memory(data, monkeypatch):
    ds, options = data["binary"], {"hidden": "40"}
    need = fit_bytes(model_size("nade", ds, **options), "adam")
    monkeypatch.setattr(validate, "machine_memory", lambda: need)
    check_model_memory("nade", ds, options, {"optimizer": "adam"})  # exactly fits
    monkeypatch.setattr(validate, "machine_memory", lambda: need - 1)
    with pytest.raises(ConfigError, match=r"model 'nade' with --hidden 40 on 7 features \(.* parameters"):
        check_model_memory("nade", ds, options, {"optimizer": "adam"})


HUGE = [  # (argv after `fit`, the flags the message names)
    (["made", "--data", BINARY, "--hidden", "100000,100000"], ["--hidden"]),
    (["rbm", "--data", BINARY, "--hidden", "2000000000", "--k", "3"], ["--hidden"]),
    (["mixture", "--data", WIDE, "--components", "100000"], ["--components"]),
    (["vae", "--data", BINARY, "--latent", "10000", "--hidden", "100000,100000"], ["--hidden", "--latent"]),
    (["nade", "--data", WIDE, "--hidden", "100000"], ["--hidden"]),
    (["gan", "--data", BINARY, "--critic-hidden", "100000,100000", "--divergence", "js"], ["--critic-hidden"]),
    (["boltzmann", "--data", WIDE], []),
]


@pytest.mark.parametrize("argv,flags", HUGE, ids=[a[0] for a, _ in HUGE])
def test_huge_models_are_refused_before_anything_is_written(tmp_path, capsys, argv, flags):
    out = tmp_path / "run"
    code = main(["fit", *argv, "--epochs", "1", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("genlearn: error: model "), err
    assert "needs about" in err and "more than the 16 GiB available" in err and "Traceback" not in err
    named = err.partition("choose a smaller ")[2].partition(" or fewer features")[0].split(", ")
    assert sorted(named) == flags and all(f" {f} " in err for f in flags) if flags else (
        "on 200000 features" in err and "choose fewer features or a smaller family" in err)
    assert not out.exists()
    # the Python API: the same error, nothing written
    family, options = argv[0], dict(zip(argv[1::2], argv[2::2]))
    data = options.pop("--data")
    kwargs = {k[2:].replace("-", "_"): v for k, v in options.items()}
    with pytest.raises(ConfigError) as e:
        genlearn.fit(family, data, out=out, epochs=1, progress=False, plots=False, **kwargs)
    assert f"genlearn: error: {e.value}" == lines[0]
    assert not out.exists()


def test_sample_counts_the_widest_layer(tmp_path, capsys):
    """400000 rows of 4 features are 26 MB, but MADE's 50000 hidden units hold 400000 x 50000 float32
    activations (75 GiB): refused; a few rows are drawn."""
    run = tmp_path / "made"
    fitted = genlearn.fit("made", "bars-and-stripes:size=2,n=50", hidden="50000", epochs=1, out=run, plots=False,
                          progress=False)
    code = main(["sample", str(run), "-n", "400000", "--out", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("genlearn: error: 400000 samples of 4 features through a layer of 50000 units needs "
                             "about 74.5 GiB") and "ask for fewer (-n)" in err[0]
    assert not (tmp_path / "s.csv").exists()
    with pytest.raises(ConfigError, match="through a layer of 50000 units"):
        fitted.sample(400000)
    assert main(["sample", str(run), "-n", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_sklearn_wrappers_refuse_huge_models():
    import numpy as np

    from genlearn.sklearn import DensityEstimator, VariationalAutoencoder

    x = np.random.default_rng(0).integers(0, 2, size=(20, 7)).astype(float)
    with pytest.raises(ConfigError, match=r"model 'rbm' with --hidden 2000000000 on 7 features .* needs about"):
        DensityEstimator("rbm", options={"hidden": 2_000_000_000}).fit(x)
    with pytest.raises(ConfigError, match=r"model 'vae' with .*--hidden 100000,100000 on 7 features"):
        VariationalAutoencoder(latent=2, hidden=(100_000, 100_000)).fit(x)


def test_sklearn_rbm_refuses_huge_layers_and_chains(monkeypatch):
    """BernoulliRBM is checked before anything is allocated: 32 bytes per weight plus 48 per unit and row of the
    chains and minibatch (sklearn.BernoulliRBM._check_memory). 10^8 hidden units on 6 features are 110 GiB; 10^9
    persistent chains (batch_size) 11.4 TiB. The same sizes scaled to a 1 MiB machine are refused, and accepted
    with the memory they need."""
    import numpy as np

    from genlearn.sklearn import BernoulliRBM

    x = np.random.default_rng(0).integers(0, 2, size=(60, 6)).astype(float)
    with pytest.raises(ConfigError, match=r"6 visible x 100,000,000 hidden units \(n_components\) .* needs about "
                                          r"110 GiB .* choose a smaller n_components or batch_size"):
        BernoulliRBM(n_components=10**8, n_iter=1).fit(x)
    with pytest.raises(ConfigError, match=r"1,000,000,000 persistent chains \(batch_size\) needs about 11.4 TiB"):
        BernoulliRBM(batch_size=10**9, n_iter=1).partial_fit(x)
    need = 32 * (6 * 2000 + 6 + 2000) + 48 * (10 + 10) * (6 + 2000)
    monkeypatch.setattr(validate, "machine_memory", lambda: need - 1)
    with pytest.raises(ConfigError, match="2,000 hidden units"):
        BernoulliRBM(n_components=2000, n_iter=1).fit(x)
    monkeypatch.setattr(validate, "machine_memory", lambda: need)
    assert BernoulliRBM(n_components=2000, n_iter=1).fit(x).components_.shape == (2000, 6)


def test_sklearn_samples_are_sized_before_they_are_drawn():
    """sample(n) of every wrapper counts its float32 rows, their text and float64 copy (16 bytes per value) and the
    widest layer's activations: 10^10 rows of 6 features are 0.87 TiB plus 4 bytes x width per row."""
    import numpy as np

    from genlearn.sklearn import BernoulliRBM, DensityEstimator, VariationalAutoencoder

    x = np.random.default_rng(0).integers(0, 2, size=(40, 6)).astype(float)
    fitted = [BernoulliRBM(n_components=4, n_iter=1, random_state=0).fit(x),
              DensityEstimator("mixture", options={"components": 10}, epochs=1, random_state=0).fit(x),
              VariationalAutoencoder(latent=2, hidden=4, epochs=1, eval_iw_samples=2, random_state=0).fit(x)]
    for estimator, layer in zip(fitted, ["", " through a layer of 10 units", ""]):
        with pytest.raises(ConfigError, match=rf"^10000000000 samples of 6 features{layer} needs about .* ask for "
                                              r"fewer \(n_samples\)"):
            estimator.sample(10**10)
        assert estimator.sample(3, random_state=1).shape == (3, 6)


def test_stored_rows_are_not_a_layer():
    """An RBM's widest tensor can be a buffer (100 rows kept for reverse AIS): the sample check counts only the
    parameters' dimensions (checks.layer_width), so 64 visible x 8 hidden units have no layer wider than a row,
    and 6 visible x 500 hidden units have one of 500."""
    from genlearn.checks import check_sample_model, layer_width
    from genlearn.models.rbm import RBM

    narrow = RBM(64, 8)
    narrow.reverse_rows = torch.zeros(100, 64)
    assert layer_width(narrow) == 64
    with pytest.raises(ConfigError, match=r"^100000000000 samples of 64 features needs about"):
        check_sample_model(10**11, narrow, None)
    with pytest.raises(ConfigError, match=r"^100000000000 samples of 6 features through a layer of 500 units"):
        check_sample_model(10**11, RBM(6, 500), None)


def test_a_packed_critic_is_sized_before_training(tmp_path, capsys):
    """`fit gan --pack m` feeds its critic B (1 + M) packs of m rows per step (B batch rows, M = samples_per_z):
    12 B (1 + M) m n bytes (gan._step_memory). --pack 100000 on 64 features: 12 x 100 x 33 x 10^5 x 64 bytes =
    236 GiB, refused before a run folder exists; the Python wrapper with batch_size 10 needs a tenth (23.6 GiB)."""
    import numpy as np

    from genlearn.sklearn import DensityEstimator

    out = tmp_path / "g"
    code = main(["fit", "gan", "--data", "digits", "--quiet", "--epochs", "1", "--pack", "100000", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert ("one training step of model 'gan' (100 rows of a batch and 32 model rows per row (--samples-per-z), "
            "in packs of 100000 rows (--pack) of 64 features) needs about 236 GiB") in err[0]
    assert "choose a smaller --pack, --samples-per-z or --batch-size" in err[0] and not out.exists()
    x = np.random.default_rng(0).integers(0, 2, size=(200, 64)).astype(float)
    with pytest.raises(ConfigError, match=r"\(10 rows of a batch .* needs about 23.6 GiB"):
        DensityEstimator("gan", options={"pack": 100000}, batch_size=10, epochs=1).fit(x)
