"""Fully visible Boltzmann machine: exact log Z / log P against brute force, the moment-difference gradient
against finite differences of the exact KL, Gibbs and exact samplers against exact moments, spins vs {0,1},
the gradient estimators (the "boltzmann-moments" learning rule) through the generic Trainer, their state through
checkpoints, the teacher data source and the CLI."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from genlearn.data.registry import load_dataset
from genlearn.errors import ConfigError, IntractableError
from genlearn.learning import TrainConfig, Trainer
from genlearn.learning.boltzmann_gradients import (data_moments, linear_response_moments,
                                                    mean_field_magnetizations)
from genlearn.models.boltzmann import (BoltzmannMachine, binary_to_spins, exact_statistics, spins_to_binary,
                                       symmetric_zero_diagonal)
from genlearn.learning.rules import make_rule
from genlearn.models.registry import build_model, rule_for


def moments_rule(estimator="exact", **settings):
    return make_rule("boltzmann-moments", {"estimator": estimator, **settings})


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matrices: one thread is faster on a shared 2-core machine (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_machine(n, scale=1.0, spins=False, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    b = torch.randn(n, generator=g, dtype=torch.float64) * scale
    a = torch.triu(torch.randn(n, n, generator=g, dtype=torch.float64), 1) * scale
    model = BoltzmannMachine(n, spins=spins).to(dtype)
    return model.set_parameters(b, a + a.T)


def brute_force_log_weights(model):
    """-E(x) for every x in {0,1}^n by itertools and explicit sums (no matrix code), float64."""
    b, W = model.bias.detach().double(), model.weights.detach().double()
    n = model.n_features
    out = {}
    for bits in itertools.product((0, 1), repeat=n):
        v = [2 * t - 1 for t in bits] if model.spins else list(bits)
        e = sum(float(b[i]) * v[i] for i in range(n))
        e += sum(float(W[i, j]) * v[i] * v[j] for i in range(n) for j in range(i + 1, n))
        out[bits] = e
    return out


# ----------------------------------------------------------------------------------------------- exact
@pytest.mark.parametrize("n,spins", [(1, False), (3, False), (5, False), (4, True)])
def test_log_partition_and_log_prob_equal_brute_force(n, spins):
    model = random_machine(n, spins=spins, seed=n)
    lw = brute_force_log_weights(model)
    log_z = math.log(sum(math.exp(v) for v in lw.values()))
    est = model.log_partition(method="exact")
    assert est.method == "exact enumeration" and est.stderr == 0
    assert est.value == pytest.approx(log_z, abs=1e-10)
    x = torch.tensor(list(lw), dtype=torch.float32)
    expected = torch.tensor([v - log_z for v in lw.values()], dtype=torch.float64)
    torch.testing.assert_close(model.log_prob(x).double(), expected, atol=1e-10, rtol=0)


def test_chunked_statistics_equal_single_pass():
    model = random_machine(7, seed=3)
    one = exact_statistics(model._log_weight64(), 7)
    chunked = exact_statistics(model._log_weight64(), 7, chunk_size=5)  # 26 uneven chunks, running rescaling
    assert chunked[0] == pytest.approx(one[0], abs=1e-12)
    torch.testing.assert_close(chunked[1], one[1], atol=1e-12, rtol=0)
    torch.testing.assert_close(chunked[2], one[2], atol=1e-12, rtol=0)
    # the moments are those of the brute-force distribution
    lw = brute_force_log_weights(model)
    x = torch.tensor(list(lw), dtype=torch.float64)
    p = torch.softmax(torch.tensor(list(lw.values()), dtype=torch.float64), 0)
    torch.testing.assert_close(one[1], p @ x, atol=1e-12, rtol=0)
    torch.testing.assert_close(one[2], x.T @ (p[:, None] * x), atol=1e-12, rtol=0)


def test_weights_are_symmetric_with_zero_diagonal():
    a = torch.randn(5, 5)
    w = symmetric_zero_diagonal(a)
    assert torch.equal(w, w.T) and torch.equal(torch.diagonal(w), torch.zeros(5))
    assert torch.equal(torch.triu(w, 1), torch.triu(a, 1))


# ------------------------------------------------------------------------------------------- gradients
def exact_kl(model, x):
    """D_KL(Q^||P) = NLL - H(Q^) by enumeration (float64)."""
    from genlearn.divergence import empirical_kl

    return empirical_kl(model, x)["kl"]


@pytest.mark.parametrize("spins", [False, True])
def test_moment_difference_gradient_equals_finite_difference_of_exact_kl(spins):
    torch.manual_seed(0)
    model = random_machine(4, scale=0.7, spins=spins, seed=11)
    x = torch.bernoulli(torch.full((40, 4), 0.4), generator=torch.Generator().manual_seed(5))
    model.zero_grad()
    value = moments_rule("exact").compute_gradient(model, x, None)
    grad_b, grad_a = model.bias.grad.clone(), model.coupling_param.grad.clone()
    # the model's own loss (what maximum-likelihood differentiates) has the same gradient and value
    model.zero_grad()
    loss = model.loss(x)
    loss.backward()
    torch.testing.assert_close(model.bias.grad, grad_b, atol=1e-12, rtol=0)
    torch.testing.assert_close(model.coupling_param.grad, grad_a, atol=1e-12, rtol=0)
    assert float(loss) == pytest.approx(float(value), abs=1e-12)
    # the analytic form, for the 0/1 parametrisation: <x>_P - <x>_Q^ and <x_i x_j>_P - <x_i x_j>_Q^
    if not spins:
        m, c = model.exact_moments()
        md, cd = data_moments(x)
        torch.testing.assert_close(grad_b, m - md, atol=1e-12, rtol=0)
        torch.testing.assert_close(torch.triu(grad_a, 1), torch.triu(c - cd, 1), atol=1e-12, rtol=0)
    eps = 1e-6
    for param, grad in ((model.bias, grad_b), (model.coupling_param, grad_a)):
        for idx in itertools.product(*(range(s) for s in param.shape)):
            with torch.no_grad():
                param[idx] += eps
                up = exact_kl(model, x)
                param[idx] -= 2 * eps
                down = exact_kl(model, x)
                param[idx] += eps
            assert grad[idx].item() == pytest.approx((up - down) / (2 * eps), abs=1e-7), (param.shape, idx)
    # the loss value of the exact estimator is the exact NLL of the batch
    assert float(model.loss(x)) == pytest.approx(exact_kl(model, x) + _entropy(x), abs=1e-10)


def _entropy(x):
    from genlearn.data.empirical import empirical_entropy

    return empirical_entropy(x)


def test_log_prob_is_differentiable_with_the_exact_gradient():
    """Autograd through log_prob gives the moment difference of the exact estimator's surrogate."""
    model = random_machine(4, seed=2)
    x = torch.bernoulli(torch.full((30, 4), 0.5), generator=torch.Generator().manual_seed(1))
    model.zero_grad()
    (-model.log_prob(x).mean()).backward()
    g_autograd = model.bias.grad.clone()
    model.zero_grad()
    moments_rule("exact").compute_gradient(model, x, None)
    torch.testing.assert_close(g_autograd, model.bias.grad, atol=1e-12, rtol=0)


def test_pseudo_likelihood_equals_enumerated_conditionals():
    model = random_machine(4, seed=7)
    x = torch.bernoulli(torch.full((25, 4), 0.5), generator=torch.Generator().manual_seed(2))
    lw = brute_force_log_weights(model)
    total = 0.0
    for row in x.tolist():
        bits = tuple(int(v) for v in row)
        for i in range(4):
            flipped = bits[:i] + (1 - bits[i],) + bits[i + 1:]
            total += lw[bits] - math.log(math.exp(lw[bits]) + math.exp(lw[flipped]))
    value = moments_rule("pseudo-likelihood").compute_gradient(model, x, None)
    assert float(value) == pytest.approx(-total / 25, abs=1e-10)


# ------------------------------------------------------------------------------------------- sampling
def _check_moments(samples, model, sigmas=4.5):
    """Sample <x_i>, <x_i x_j> within `sigmas` standard errors sqrt(p(1-p)/S) of the exact values."""
    m, c = model.exact_moments()
    ms, cs = data_moments(samples)
    s = samples.shape[0]
    for est, exact in ((ms, m), (cs, c)):
        se = torch.sqrt(exact * (1 - exact) / s).clamp_min(1e-4)
        z = ((est - exact).abs() / se).max()
        assert z < sigmas, f"max |z| = {float(z):.2f}"


def test_gibbs_samples_match_exact_marginals_and_pairwise_moments():
    model = random_machine(6, scale=0.8, seed=4, dtype=torch.float32)
    g = torch.Generator().manual_seed(123)
    samples = model.sample(20_000, generator=g, steps=30)  # 20,000 independent chains, 30 sweeps each
    _check_moments(samples, model)
    # and they are not exact draws from something else: the uniform start alone would fail
    with pytest.raises(AssertionError):
        _check_moments(torch.bernoulli(torch.full((20_000, 6), 0.5), generator=g), model)


def test_exact_sampling_matches_exact_moments():
    model = random_machine(8, scale=0.8, seed=9, dtype=torch.float32)
    samples = model.sample(50_000, generator=torch.Generator().manual_seed(0))
    assert samples.dtype == torch.float32 and set(samples.unique().tolist()) <= {0.0, 1.0}
    _check_moments(samples, model)


# -------------------------------------------------------------------------------------- spins vs 0/1
def test_spin_and_binary_parametrisations_agree_after_change_of_variables():
    spin = random_machine(5, spins=True, seed=21)
    h, J = spin.bias.detach(), spin.weights.detach()
    b, W = spins_to_binary(h, J)
    binary = BoltzmannMachine(5).double().set_parameters(b, W)
    x = torch.tensor(list(itertools.product((0.0, 1.0), repeat=5)))
    torch.testing.assert_close(spin.log_prob(x), binary.log_prob(x), atol=1e-12, rtol=0)
    # energies differ by the constant E_spin(0): E_spin(x) = E_binary(x) + E_spin(0)
    shift = spin.energy(torch.zeros(1, 5))
    torch.testing.assert_close(spin.energy(x), binary.energy(x) + shift, atol=1e-12, rtol=0)
    # the inverse map recovers (h, J), and the spin energy is -(h.s + 1/2 s.J.s) with s = 2x - 1
    h2, J2 = binary_to_spins(b, W)
    torch.testing.assert_close(h2, h, atol=1e-12, rtol=0)
    torch.testing.assert_close(J2, J, atol=1e-12, rtol=0)
    s = 2 * x.double() - 1
    torch.testing.assert_close(spin.energy(x), -(s @ h + 0.5 * ((s @ J) * s).sum(1)), atol=1e-12, rtol=0)
    # and both learn the same distribution: after a few exact gradient steps the KLs agree
    data = binary.sample(500, generator=torch.Generator().manual_seed(3))
    fits = []
    for spins in (False, True):
        m = BoltzmannMachine(5, spins=spins).double()
        opt = torch.optim.LBFGS(m.parameters(), max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                                line_search_fn="strong_wolfe")

        def closure(m=m, opt=opt):
            opt.zero_grad()
            loss = m.loss(data)
            loss.backward()
            return loss

        opt.step(closure)
        fits.append(m.log_prob(x).detach())
    torch.testing.assert_close(fits[0], fits[1], atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------- errors
def test_too_many_units_for_exact_raise_clear_errors():
    with pytest.raises(IntractableError, match="pcd"):
        moments_rule("exact").check(BoltzmannMachine(25))
    model = BoltzmannMachine(25)
    moments_rule("pcd").check(model)
    assert not model.tractable
    with pytest.raises(IntractableError, match="pcd"):
        model.loss(torch.zeros(1, 25))
    with pytest.raises(IntractableError, match="ais"):
        model.log_partition(method="exact")
    with pytest.raises(IntractableError):
        model.log_prob(torch.zeros(1, 25))
    with pytest.raises(ConfigError, match="estimator"):
        moments_rule("newton")
    with pytest.raises(ConfigError, match="learning rule"):
        BoltzmannMachine(3, gradient="pcd")
    ds = load_dataset("bars-and-stripes:size=5,n=10")  # 25 pixels
    with pytest.raises(IntractableError, match="pseudo-likelihood"):  # before any training
        Trainer(build_model("boltzmann", ds, gradient="exact"), ds, TrainConfig(epochs=1, progress=False),
                rule=make_rule(*rule_for("boltzmann", gradient="exact")))
    assert build_model("boltzmann", ds, gradient="pseudo-likelihood").n_features == 25


def test_estimates_of_log_z_bracket_the_exact_value():
    model = random_machine(10, scale=0.4, seed=8, dtype=torch.float32)
    exact = model.log_partition(method="exact").value
    ais = model.log_partition(method="ais", steps=300, chains=200, seed=1)
    assert ais.method == "ais" and abs(ais.value - exact) < max(4 * ais.stderr, 0.02)
    mf = model.log_partition(method="mean-field")
    assert mf.value <= exact + 1e-9  # the Gibbs variational bound
    assert mf.value > exact - 2.0


def _strongly_coupled() -> tuple[torch.Tensor, torch.Tensor]:
    """(b, W) of a 5-unit machine fitted exactly to two clusters of rows (all 0 / all 1): couplings of +-20-130, on
    which the parallel damped mean-field iteration cycles (M flips sign every iteration)."""
    b = torch.tensor([-2.71, -2.01, -285.01, -2.71, -2.71], dtype=torch.float64)
    W = torch.zeros(5, 5, dtype=torch.float64)
    for (i, j), w in {(0, 1): -32.44, (0, 2): 131.25, (0, 3): -24.44, (0, 4): -17.90, (1, 2): 117.25, (1, 3): -32.44,
                      (1, 4): -47.52, (2, 3): 131.25, (2, 4): 88.16, (3, 4): -17.90}.items():
        W[i, j] = W[j, i] = w
    return b, W


def test_mean_field_reaches_a_fixed_point_and_the_best_bound_where_parallel_updates_cycle():
    """The parallel damped iteration on _strongly_coupled() returned a point of a 2-cycle (residual 1.33) and a
    'bound' of -105 nats; sequential sweeps follow it to a fixed point, and the bound is the best of its restarts:
    between the best corner's -E(x) (a point mass is a product distribution) and the exact log Z. The same on
    random strongly coupled machines, whose bound fell below the best corner in 3 of 20 before the restarts."""
    from genlearn.enumeration import all_states

    b, W = _strongly_coupled()
    h, J = binary_to_spins(b, W)
    mag = mean_field_magnetizations(h, J, torch.zeros(5, dtype=torch.float64), 1000)
    assert float((torch.tanh(h + J @ mag) - mag).abs().max()) < 1e-8
    machines = [(b, W)]
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        A = torch.triu(4.0 * torch.randn(8, 8, generator=g, dtype=torch.float64), 1)
        machines.append((torch.randn(8, generator=g, dtype=torch.float64), A + A.T))
    for b, W in machines:
        n = b.numel()
        model = BoltzmannMachine(n).double()
        with torch.no_grad():
            model.bias.copy_(b)
            model.coupling_param.copy_(torch.triu(W, 1))
        states = all_states(n, dtype=torch.float64)
        corner = float((states @ b + 0.5 * ((states @ W) * states).sum(-1)).max())
        bound, exact = model.log_partition(method="mean-field").value, model.log_partition(method="exact").value
        assert corner - 1e-9 <= bound <= exact + 1e-9, (corner, bound, exact)


def test_mean_field_linear_response_is_accurate_for_weak_couplings_and_tap_more():
    from genlearn.data.teacher import teacher_machine

    teacher = teacher_machine(10, scale=0.2, field=0.3, seed=0)
    m, c = teacher.exact_moments()
    h, J = (t.detach().double() for t in teacher.spin_params())
    errors = []
    for tap in (False, True):
        mag = mean_field_magnetizations(h, J, torch.zeros(10, dtype=torch.float64), 500, tap)
        mm, cc = linear_response_moments(h, J, mag, tap)
        errors.append(max(float((mm - m).abs().max()), float((cc - c).abs().max())))
    assert errors[0] < 0.02 and errors[1] < errors[0] / 3, errors


# ------------------------------------------------------------------------------------------- learning
def _fit(model, ds, epochs, lr=0.05, schedule="constant", optimizer="adam", rule=None):
    cfg = TrainConfig(epochs=epochs, lr=lr, optimizer=optimizer, schedule=schedule, eval_every=10_000,
                      progress=False)
    return Trainer(model, ds, cfg, rule=rule).fit()


def test_trainer_with_exact_gradient_reaches_moment_matching():
    ds = load_dataset("boltzmann-teacher:n=6,samples=2000,scale=1.0,seed=3")
    model = BoltzmannMachine(6)
    state = _fit(model, ds, 1500, lr=1.0, optimizer="momentum")  # heavy ball, full batch, maximum-likelihood
    m, c = model.exact_moments()
    md, cd = data_moments(ds.train)
    assert float((m - md).abs().max()) < 1e-6 and float((c - cd).abs().max()) < 1e-6
    first, last = state.history[0], state.history[-1]
    assert last["kl_true"] < 0.05 * first["kl_true"]  # the teacher is learned (M = 2000)
    assert last["train_kl"] >= -1e-9


@pytest.mark.parametrize("gradient,tol", [("gibbs", 0.004), ("pcd", 0.005), ("mean-field", 0.008),
                                          ("tap", 0.006), ("pseudo-likelihood", 0.001)])
def test_approximate_gradients_learn_a_weakly_coupled_teacher(gradient, tol):
    """Each estimator reaches an exact KL to the teacher within `tol` nats of the exact-gradient fit."""
    ds = load_dataset("boltzmann-teacher:n=6,samples=2000,scale=0.5,seed=1")
    reference = _fit(BoltzmannMachine(6), ds, 400, schedule="cosine", rule=moments_rule()).history[-1]["kl_true"]
    state = _fit(BoltzmannMachine(6), ds, 400, schedule="cosine", rule=moments_rule(gradient, n_chains=500))
    kl0, kl = state.history[0]["kl_true"], state.history[-1]["kl_true"]
    assert kl < reference + tol and kl < 0.05 * kl0, (kl, reference, kl0)


@pytest.mark.parametrize("gradient,state", [("pcd", "chains"), ("mean-field", "magnetization")])
def test_estimator_state_is_checkpointed_and_resumes_exactly(tmp_path, gradient, state):
    """The PCD chains / the mean-field warm start are the rule's state: saved as rule.<name>, restored on resume,
    so 3 + 3 epochs equal 6 epochs bit for bit (parameters and state)."""
    from safetensors.torch import load_file

    from genlearn.runs import fit

    spec = "boltzmann-teacher:n=5,samples=300"
    kw = dict(gradient=gradient, optimizer="adam", lr=0.05, batch_size=100, plots=False, progress=False,
              **({"n_chains": 50} if gradient == "pcd" else {}))  # --n-chains is refused beside mean-field
    full = fit("boltzmann", spec, out=tmp_path / "full", epochs=6, **kw)
    fit("boltzmann", spec, out=tmp_path / "part", epochs=3, **kw)
    assert f"rule.{state}" in load_file(str(tmp_path / "part" / "checkpoint.safetensors"))
    resumed = fit("boltzmann", spec, out=tmp_path / "part", epochs=6, resume=True, plots=False)
    assert resumed.rule.settings()["estimator"] == gradient
    assert torch.equal(resumed.rule.state_tensors()[state], full.rule.state_tensors()[state])
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_a_pcd_run_saved_by_an_earlier_version_resumes_with_its_chains(tmp_path):
    """tests/fixtures/legacy_runs/boltzmann-pcd kept its chains in model buffers (chains, chains_ready,
    mf_magnetization) and its estimator in model_config: the model loads without them, the rule is derived from
    the old config and takes the old chains as its state."""
    import shutil
    from pathlib import Path

    from safetensors.torch import load_file

    from genlearn.runs import fit, load_run

    src = Path(__file__).parent / "fixtures" / "legacy_runs" / "boltzmann-pcd"
    old = load_file(str(src / "checkpoint.safetensors"))
    run = load_run(src)
    assert run.model.config() == {"n_features": 9, "spins": False}
    assert run.rule.settings() == {"estimator": "pcd", "k": 1, "n_chains": 100, "mf_iterations": 200}
    assert torch.equal(run.rule.state_tensors()["chains"], old["model.chains"])
    shutil.copytree(src, tmp_path / "run")
    resumed = fit(None, None, out=tmp_path / "run", epochs=4, resume=True, plots=False)
    assert resumed.metrics["gradient_estimator"] == "pcd" and resumed.metrics["epochs_run"] == 4
    assert resumed.rule.state_tensors()["chains"].shape == (100, 9)


# ------------------------------------------------------------------------------------------- data
def test_teacher_source_samples_its_truth():
    ds = load_dataset("boltzmann-teacher:n=7,samples=20000,scale=1.5,seed=2")
    assert ds.truth.n_features == 7 and ds.truth.spins
    assert ds.sizes() == {"train": 20000, "valid": 4000, "test": 4000}
    _check_moments(ds.train, ds.truth)
    same = load_dataset("boltzmann-teacher:n=7,samples=100,scale=1.5,seed=2")
    assert torch.equal(same.train, ds.train[:100])  # nested training sets for a fixed teacher
    other = load_dataset("boltzmann-teacher:n=7,samples=100,scale=1.5,seed=3,teacher_seed=2")
    assert torch.equal(other.truth.bias, ds.truth.bias) and not torch.equal(other.train, same.train)
    with pytest.raises(ConfigError):
        load_dataset("boltzmann-teacher:n=0")
    with pytest.raises(ConfigError):
        load_dataset("boltzmann-teacher:scale=-1")


# ------------------------------------------------------------------------------------------- CLI
def test_cli_fit_eval_sample(tmp_path, capsys):
    import json

    from genlearn.cli import main

    out = tmp_path / "bm"
    assert main(["fit", "boltzmann", "--data", "bars-and-stripes:size=3", "--gradient", "exact", "--epochs", "5",
                 "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--data", "bars-and-stripes:size=3"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["train_nll_method"] == "exact enumeration"
    from genlearn.runs import load_run

    run = load_run(out)
    ds = load_dataset("bars-and-stripes:size=3")
    expected = -float(run.model.log_prob(ds.test).double().mean())
    assert metrics["test_nll"] == pytest.approx(expected, abs=1e-5)
    assert metrics["kl_true"] == pytest.approx(float(
        -torch.log(torch.tensor(14.0)) - run.model.log_prob(ds.truth.patterns).double().mean()), abs=1e-5)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["gradient_estimator"] == "exact" and saved["model_config"] == {"n_features": 9, "spins": False}
    assert saved["rule"] == {"name": "boltzmann-moments", "settings": {"estimator": "exact", "k": 1, "n_chains": 100,
                                                                      "mf_iterations": 200}}
    assert main(["sample", str(out), "-n", "8", "--out", str(tmp_path / "s.csv")]) == 0
    assert main(["sample", str(out), "-n", "8", "--steps", "5", "--out", str(tmp_path / "g.csv")]) == 0
    rows = [line.split(",") for line in (tmp_path / "g.csv").read_text().split() if line]
    assert len(rows) == 8 and all(len(r) == 9 and set(r) <= {"0", "1", "0.0", "1.0"} for r in rows)
    assert main(["fit", "boltzmann", "--data", "bars-and-stripes:size=5", "--gradient", "exact", "--epochs", "1",
                 "--out", str(tmp_path / "big"), "--quiet"]) == 2
    assert "pcd" in capsys.readouterr().err


def test_bars_and_stripes_are_the_ground_states_of_a_pairwise_energy():
    """E = lam * sum_{2x2 blocks} (x_a + x_d - x_b - x_c)^2 is pairwise (x^2 = x); its zero set is exactly the
    14 bars-and-stripes 3x3 patterns, so KL(uniform B&S || P_lam) = log(1 + sum_{f>0} e^{-lam f} / 14) -> 0
    as lam -> infinity, ~ 64 e^{-lam} / 14 (64 states have f = 1), and is > 0 at every finite lam."""
    from genlearn.data.synthetic import bars_and_stripes_patterns
    from genlearn.divergence import kl_divergence
    from genlearn.models.table import PatternTable

    size, n = 3, 9
    q = torch.zeros(n, n, dtype=torch.float64)
    for i, j in itertools.product(range(size - 1), repeat=2):
        v = torch.zeros(n, dtype=torch.float64)
        v[i * size + j] = v[(i + 1) * size + j + 1] = 1
        v[i * size + j + 1] = v[(i + 1) * size + j] = -1
        q += torch.outer(v, v)
    off = q - torch.diag(torch.diagonal(q))
    patterns = bars_and_stripes_patterns(size)
    truth = PatternTable(patterns, torch.full((14,), 1 / 14))
    states = torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), dtype=torch.float64)
    for lam in (4.0, 12.0):
        model = BoltzmannMachine(n).double().set_parameters(-lam * torch.diagonal(q), -2 * lam * off)
        f = model.energy(states) / lam
        torch.testing.assert_close(f, ((states @ q) * states).sum(1), atol=1e-9, rtol=0)
        ground = states[f.abs() < 1e-9]
        assert ground.shape[0] == 14 and torch.equal(torch.unique(ground.float(), dim=0), torch.unique(patterns, dim=0))
        kl = kl_divergence(truth, model).value  # exact (enumeration): an Estimate with zero width
        n1 = int(((f - 1).abs() < 1e-9).sum())
        exact = math.log1p(sum(math.exp(-lam * float(v)) for v in f[f > 0.5]) / 14)
        assert n1 == 64 and kl == pytest.approx(exact, rel=1e-9) and kl > 0
    assert kl == pytest.approx(64 * math.exp(-12.0) / 14, rel=1e-3)


def test_energy_models_are_evaluated_in_float64_so_an_exact_kl_of_zero_is_zero():
    """A float32 Boltzmann machine / RBM with no couplings is the product of Bernoullis of its biases: their exact
    KL is 0, and the NLL of float32 parameters is their float64 sum. The free energies were float32 (only log Z was
    float64): KL -4e-8, and an exact MLE's empirical KL -8e-6."""
    from genlearn.divergence import kl_divergence
    from genlearn.likelihood import nll
    from genlearn.models.product import ProductBernoulli
    from genlearn.models.rbm import RBM

    g = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(6, generator=g)
    product = ProductBernoulli(6)
    with torch.no_grad():
        product.logits.copy_(logits)
    machine = BoltzmannMachine(6)
    with torch.no_grad():
        machine.bias.copy_(logits)
    rbm = RBM(6, 3)
    with torch.no_grad():
        rbm.weight.zero_()
        rbm.visible_bias.copy_(logits)
    for energy in (machine, rbm):
        assert all(p.dtype == torch.float32 for p in energy.parameters())
        for p, q in ((energy, product), (product, energy)):
            assert abs(kl_divergence(p, q).value) < 1e-12
    x = (torch.rand(50, 6, generator=g) < 0.4).float()
    exact = -float(product.double().log_prob(x.double()).mean())
    assert abs(nll(machine, x).value - exact) < 1e-12 and abs(nll(rbm, x).value - exact) < 1e-12
