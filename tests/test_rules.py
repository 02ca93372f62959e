"""Learning rules as objects (genlearn.learning.rules): the registry and its errors, the settings record that
rebuilds a rule, the maximum-likelihood rule's gradient against finite differences of the exact KL, a rule
defined outside the package driving the one Trainer, and the derivation of rules for runs saved before rules
were objects (genlearn.learning.legacy)."""
from __future__ import annotations

import json

import pytest
import torch

from genlearn.data.dataset import Dataset
from genlearn.errors import ConfigError
from genlearn.learning import TrainConfig, Trainer
from genlearn.learning.legacy import legacy_rule_state, rule_from_legacy_config, rule_record
from genlearn.learning.rules import (RULES, LearningRule, list_rules, make_rule, register_rule,
                                     rule_from_record)
from genlearn.models.registry import build_model


def test_the_registered_rules_and_their_default_settings():
    assert list_rules() == ["boltzmann-moments", "closed-form", "contrastive-divergence", "elbo", "em", "f-gan",
                            "maximum-likelihood", "quadrature-likelihood", "rbm-exact-gradient"]
    assert make_rule("elbo").settings() == {"iw_samples": 1, "warmup_epochs": 0, "kl_estimator": "closed-form"}
    assert make_rule("closed-form").settings() == {"smoothing": 0.0} and not make_rule("closed-form").uses_optimizer
    assert make_rule("maximum-likelihood").settings() == {}
    assert make_rule("contrastive-divergence").settings() == {"k": 1, "persistent": False, "n_chains": 100,
                                                              "matmul_precision": "auto"}
    assert make_rule("boltzmann-moments").settings() == {"estimator": "exact", "k": 1, "n_chains": 100,
                                                         "mf_iterations": 200}
    assert make_rule("em").settings() == {"smoothing": 0.0, "weight_smoothing": 0.0, "reseed": True,
                                          "min_mass": 1e-3}
    assert not make_rule("em").uses_optimizer and make_rule("contrastive-divergence").uses_optimizer


@pytest.mark.parametrize("name", sorted(RULES))
def test_a_rule_is_rebuilt_from_its_json_record(name):
    settings = {"contrastive-divergence": {"k": 3, "persistent": True, "n_chains": 7},
                "boltzmann-moments": {"estimator": "tap", "mf_iterations": 50},
                "em": {"smoothing": 0.5, "reseed": False},
                "elbo": {"iw_samples": 5, "warmup_epochs": 3}}.get(name, {})
    rule = make_rule(name, settings)
    record = json.loads(json.dumps(rule.record()))
    again = rule_from_record(record)
    assert type(again) is type(rule) and again.settings() == rule.settings() and again.name == name
    assert isinstance(rule.describe()["objective"], str)


def test_unknown_rules_and_settings_are_one_config_error_each():
    with pytest.raises(ConfigError, match=r"unknown learning rule 'newton'.*maximum-likelihood"):
        make_rule("newton")
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) colour, size for the learning rule 'em'; its "
                                          r"settings: smoothing, weight_smoothing, reseed, min_mass"):
        make_rule("em", {"colour": 1, "size": 2})
    with pytest.raises(ConfigError, match="for the learning rule 'maximum-likelihood'; its settings: none"):
        make_rule("maximum-likelihood", {"k": 1})
    with pytest.raises(ConfigError, match="--k must be >= 1"):
        make_rule("contrastive-divergence", {"k": 0})
    with pytest.raises(ConfigError, match="--k must be an integer"):
        make_rule("contrastive-divergence", {"k": 1.5})
    # command-line strings are converted
    assert make_rule("contrastive-divergence", {"k": "2", "persistent": "true"}).settings()["k"] == 2


def test_a_rule_refuses_a_model_of_another_family_before_training():
    ds = Dataset("t", "binary", torch.zeros(4, 3))
    mixture = build_model("mixture", ds, components=2)
    for name in ("contrastive-divergence", "rbm-exact-gradient", "boltzmann-moments"):
        with pytest.raises(ConfigError, match=f"'{name}' trains"):
            Trainer(mixture, ds, TrainConfig(epochs=1, progress=False), rule=make_rule(name))
    with pytest.raises(ConfigError, match="LearningRule"):
        Trainer(mixture, ds, TrainConfig(epochs=1, progress=False), rule="em")


def test_maximum_likelihood_gradient_equals_finite_differences_of_the_exact_kl():
    """For a tractable family (a mixture, exact log P) the maximum-likelihood rule's gradient is dD_KL(Q^||P)/dtheta
    with D_KL computed by enumeration (genlearn.divergence.empirical_kl), and its value the batch NLL."""
    from genlearn.divergence import empirical_kl

    x = torch.bernoulli(torch.full((30, 5), 0.4), generator=torch.Generator().manual_seed(0))
    model = build_model("mixture", Dataset("t", "binary", x), components=3).double()
    value = make_rule("maximum-likelihood").compute_gradient(model, x.double(), None)
    assert float(value) == pytest.approx(-float(model.log_prob(x.double()).mean()), abs=1e-12)
    eps = 1e-6
    for p in model.parameters():
        grad = p.grad.clone()
        for idx in ((0,) * p.ndim, tuple(s - 1 for s in p.shape)):
            with torch.no_grad():
                p[idx] += eps
                up = empirical_kl(model, x)["kl"]
                p[idx] -= 2 * eps
                down = empirical_kl(model, x)["kl"]
                p[idx] += eps
            assert float(grad[idx]) == pytest.approx((up - down) / (2 * eps), abs=1e-7)


class HalfStep(LearningRule):
    """A rule defined outside the package: half the maximum-likelihood gradient, with a step counter as state."""

    name = "half-step"
    objective = "half the NLL"

    def __init__(self, settings=None):
        super().__init__(settings)
        self.steps = torch.zeros((), dtype=torch.int64)

    def compute_gradient(self, model, batch, generator):
        loss = 0.5 * model.loss(batch, generator=generator)
        loss.backward()
        self.steps += 1
        return loss.detach()

    def state_tensors(self):
        return {"steps": self.steps}

    def load_state_tensors(self, tensors):
        self.steps = tensors["steps"].clone()


def test_a_new_rule_is_one_class_and_the_trainer_checkpoints_its_state(tmp_path):
    from genlearn.learning import checkpoint as ckpt

    register_rule("half-step", HalfStep)
    try:
        ds = Dataset("t", "binary", torch.bernoulli(torch.full((40, 4), 0.3),
                                                    generator=torch.Generator().manual_seed(1)))
        cfg = TrainConfig(epochs=3, lr=0.2, optimizer="sgd", batch_size=10, progress=False)
        a = build_model("product-bernoulli", ds)
        trainer = Trainer(a, ds, cfg, out_dir=tmp_path, rule=make_rule("half-step"))
        trainer.fit()
        tensors, meta = ckpt.load_checkpoint(tmp_path)
        assert meta["rule"] == {"name": "half-step", "settings": {}} and int(tensors["rule.steps"]) == 12
        b = build_model("product-bernoulli", ds)
        Trainer(b, ds, TrainConfig(epochs=3, lr=0.1, optimizer="sgd", batch_size=10, progress=False)).fit()
        for p, q in zip(a.parameters(), b.parameters()):  # half the gradient at twice the rate: the same steps
            assert torch.allclose(p, q, atol=1e-6)
        restored = Trainer(build_model("product-bernoulli", ds), ds, cfg, rule=rule_from_record(meta["rule"]))
        restored.restore(tensors, meta)
        assert int(restored.rule.steps) == 12
    finally:
        RULES.pop("half-step", None)
    with pytest.raises(TypeError):
        register_rule("other-name", HalfStep)


def test_rules_of_runs_saved_by_earlier_versions():
    assert rule_from_legacy_config("boltzmann", {"n_features": 9, "spins": False, "gradient": "tap", "k": 2,
                                                 "n_chains": 10, "mf_iterations": 30}) == (
        "boltzmann-moments", {"estimator": "tap", "k": 2, "n_chains": 10, "mf_iterations": 30})
    assert rule_from_legacy_config("mixture", {"components": 4, "em": False}) == ("maximum-likelihood", {})
    assert rule_from_legacy_config("mixture", {"em": True, "smoothing": 1.0}) == (
        "em", {"smoothing": 1.0, "weight_smoothing": 0.0, "reseed": True, "min_mass": 1e-3})
    assert rule_from_legacy_config("made", {"hidden": [16], "masks": 2}) == ("maximum-likelihood", {})
    meta = {"model": "rbm", "model_config": {"n_visible": 6, "n_hidden": 2, "gradient": "exact"}}
    assert rule_record(meta) == {"name": "rbm-exact-gradient", "settings": {}}
    assert rule_record({**meta, "rule": {"name": "em", "settings": {}}}) == {"name": "em", "settings": {}}
    # model buffers of the old checkpoints: chains only once started, the mean-field magnetisation when present
    chains = torch.ones(3, 4)
    assert legacy_rule_state({"model.chains": chains, "model.chains_ready": torch.tensor(1, dtype=torch.uint8)}) \
        == {"chains": chains}
    assert legacy_rule_state({"model.chains": chains, "model.chains_ready": torch.tensor(False)}) == {}
    assert legacy_rule_state({"model.chains": torch.zeros(0, 4), "model.chains_ready": torch.tensor(False),
                              "model.mf_magnetization": torch.zeros(0)}) == {}
    mag = torch.full((4,), 0.2)
    assert legacy_rule_state({"model.mf_magnetization": mag})["magnetization"] is mag


def test_fit_takes_a_rule_for_an_instance_or_a_family_and_refuses_two_answers(tmp_path):
    from genlearn.models.rbm import RBM
    from genlearn.runs import fit

    kw = dict(epochs=2, progress=False, plots=False)
    run = fit(RBM(9, 3), "bars-and-stripes:size=3", rule=("contrastive-divergence", {"k": 3}), **kw)
    assert run.rule.settings()["k"] == 3 and run.metrics["rule"]["name"] == "contrastive-divergence"
    assert run.metrics["rbm_gradient"] == "cd" and run.metrics["rbm_k"] == 3
    run = fit("rbm", "bars-and-stripes:size=3", hidden=3, rule=make_rule("rbm-exact-gradient"), **kw)
    assert run.metrics["rbm_gradient"] == "exact"
    plain = fit(build_model("mixture", Dataset("t", "binary", torch.zeros(2, 9)), components=2),
                "bars-and-stripes:size=3", **kw)
    assert plain.rule.name == "maximum-likelihood"
    with pytest.raises(ConfigError, match=r"learning option\(s\) k of 'rbm' and rule="):
        fit("rbm", "bars-and-stripes:size=3", hidden=3, k=2, rule="rbm-exact-gradient", **kw)
    fit("rbm", "bars-and-stripes:size=3", hidden=3, out=tmp_path / "run", **kw)
    with pytest.raises(ConfigError, match="recorded"):
        fit(None, None, out=tmp_path / "run", resume=True, epochs=3, rule="rbm-exact-gradient", plots=False)


def test_closed_form_rule_gives_the_add_a_estimate_in_one_epoch(tmp_path):
    """product-bernoulli --closed-form --smoothing a: after one epoch p_i = (S_i + a) / (M + 2a) exactly (the
    oracle computed here from the counts), the optimizer never steps, and the run records the rule; without
    smoothing it is the MLE, which gradient descent only approaches; a model with no closed form is refused."""
    import genlearn

    ds = genlearn.load_dataset("product-bernoulli:dim=6,n=200,seed=3")
    run = genlearn.fit("product-bernoulli", ds, closed_form=True, smoothing=0.5, epochs=1, progress=False,
                       plots=False)
    counts, m = ds.train.double().sum(0), ds.train.shape[0]
    assert torch.allclose(run.model.probs.double(), (counts + 0.5) / (m + 1.0), atol=1e-6)
    assert run.metrics["rule"] == {"name": "closed-form", "settings": {"smoothing": 0.5}}
    mle = genlearn.fit("product-bernoulli", ds, closed_form=True, epochs=1, progress=False, plots=False)
    assert torch.allclose(mle.model.probs.double(), (counts / m).clamp(1e-6, 1 - 1e-6), atol=1e-6)
    with pytest.raises(ConfigError, match="no closed-form estimate"):
        genlearn.fit("fvsbn", ds, rule="closed-form", epochs=1, progress=False, plots=False)
    with pytest.raises(ConfigError, match="add --closed-form"):
        genlearn.fit("product-bernoulli", ds, smoothing=0.5, epochs=1, progress=False, plots=False)
