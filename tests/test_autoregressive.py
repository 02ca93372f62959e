"""FVSBN, NADE and MADE: oracles are exact enumeration of {0,1}^n, autograd Jacobians (the autoregressive
property), a naive per-dimension NADE, enumeration of all orderings, and a known teacher model."""
import itertools
import math

import numpy as np
import pytest
import torch

from genlearn.data import Dataset
from genlearn.enumeration import all_states
from genlearn.errors import ConfigError
from genlearn.learning import TrainConfig, Trainer
from genlearn.models.fvsbn import FVSBN
from genlearn.models.made import MADE
from genlearn.models.nade import NADE
from genlearn.models.product import ProductBernoulli
from genlearn.models.registry import build_model


def randomize(model, seed, scale=1.0):
    """Random parameters (non-zero everywhere) so that every allowed dependency is present."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return model


FACTORIES = {
    "fvsbn-fixed": lambda n: FVSBN(n),
    "fvsbn-random": lambda n: FVSBN(n, order="random", seed=3),
    "nade-1": lambda n: NADE(n, 16, activation="sigmoid"),
    "nade-random-relu": lambda n: NADE(n, 12, order="random", seed=2),
    "nade-2-layers": lambda n: NADE(n, [12, 8], activation="tanh"),
    "oa-nade-ensemble": lambda n: NADE(n, [10, 7], order_agnostic=True, orderings=4, seed=5),
    "made-1": lambda n: MADE(n, 20, activation="sigmoid"),
    "made-2-layers": lambda n: MADE(n, [20, 16], activation="tanh"),
    "made-masks-random-order": lambda n: MADE(n, [24, 24], masks=3, order="random", seed=1),
    "made-no-direct": lambda n: MADE(n, [24], masks=2, order="random", seed=4, direct=False),
}


def members(model):
    """(k, conditional-logit function) of every ensemble member."""
    count = getattr(model, "masks", None) or getattr(model, "orderings", 1)
    return [(k, (lambda x, k=k: model.conditional_logits(x, k))) for k in range(count)]


def rank_of(model, k):
    order = model.ordering if isinstance(model, FVSBN) else model.ordering(k)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_probabilities_sum_to_one_over_all_states(name):
    n = {"fvsbn-fixed": 12, "nade-1": 11, "made-1": 12}.get(name, 10)
    model = randomize(FACTORIES[name](n), 0, 0.5).double()
    total = torch.exp(model.log_prob(all_states(n, dtype=torch.float64))).sum()
    assert abs(float(total) - 1.0) < 1e-9


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_autoregressive_property_exact_zero_gradients(name):
    """d l_i / d x_j == 0 exactly whenever j is at or after i in the ordering, and not all others are 0."""
    n = 10
    model = randomize(FACTORIES[name](n), 1).double()
    x = torch.bernoulli(torch.full((n,), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(2))
    for k, fn in members(model):
        jac = torch.autograd.functional.jacobian(lambda v: fn(v.unsqueeze(0))[0], x)  # (i, j)
        rank = rank_of(model, k)
        forbidden = rank.unsqueeze(0) >= rank.unsqueeze(1)  # j at or after i
        assert torch.all(jac[forbidden] == 0), f"member {k}: output depends on a later input"
        assert (jac[~forbidden] != 0).float().mean() > 0.5  # the allowed dependencies are really used


def naive_nade_logits(model, x, k=0):
    """The definition, one dimension at a time: a_d = c + sum_{e<d} W[:, o_e] x_{o_e} (+ U[:, o_e])."""
    o = model.ordering(k).tolist()
    out = torch.empty_like(x)
    for d, i in enumerate(o):
        before = o[:d]
        a = model.c + x[:, before] @ model.W[:, before].T
        if model.U is not None:
            a = a + model.U[:, before].sum(1)
        h = model._act(a)
        if model.W2 is not None:
            h = model._act(h @ model.W2.T + model.c2)
        out[:, i] = h @ model.V[i] + model.b[i]
    return out


@pytest.mark.parametrize("name", ["nade-1", "nade-random-relu", "nade-2-layers", "oa-nade-ensemble"])
def test_nade_cumulative_sum_equals_naive_per_dimension_computation(name):
    model = randomize(FACTORIES[name](11), 4).double()
    x = torch.bernoulli(torch.full((7, 11), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    for k, fn in members(model):
        assert torch.allclose(fn(x), naive_nade_logits(model, x, k), atol=1e-10)


def test_order_agnostic_masked_pass_equals_the_ordered_pass():
    """The training pass with an observed set S gives the conditionals of step |S| of any ordering starting
    with S (the Uria et al. mask input makes this exact)."""
    model = randomize(NADE(9, [8, 6], order_agnostic=True, seed=1), 3).double()
    x = torch.bernoulli(torch.full((5, 9), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    o = torch.randperm(9, generator=torch.Generator().manual_seed(2))
    ordered = model.ordered_logits(x, o)
    for d in range(9):
        observed = torch.zeros(5, 9, dtype=torch.bool)
        observed[:, o[:d]] = True
        masked = model.masked_logits(x, observed)
        assert torch.allclose(masked[:, o[d]], ordered[:, d], atol=1e-10)


def test_order_agnostic_loss_is_unbiased_for_the_mean_over_all_orderings():
    n = 4
    model = randomize(NADE(n, 6, order_agnostic=True, seed=1), 5, 0.7).double()
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    exact = sum(-float(torch.nn.functional.logsigmoid(
        (2 * x[:, list(o)] - 1) * model.ordered_logits(x, torch.tensor(o))).sum(-1).mean())
        for o in itertools.permutations(range(n))) / math.factorial(n)
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([model.loss(x.repeat(500, 1), generator=g).detach() for _ in range(40)])
    se = float(draws.std()) / math.sqrt(len(draws))
    assert abs(float(draws.mean()) - exact) < 4 * se + 1e-3, (float(draws.mean()), exact, se)


def test_observed_sets_are_a_uniform_split_of_a_uniform_ordering():
    """|S| uniform on {0..n} and S uniform given |S|: each subset has probability 1/((n+1) C(n,|S|)); weights
    (n+1)/(n-|S|), and 0 for the full set."""
    from genlearn.models.nade import sample_observed_sets
    n, draws = 3, 160_000
    observed, weight = sample_observed_sets(draws, n, torch.Generator().manual_seed(0))
    codes = (observed.long() * (2 ** torch.arange(n))).sum(1)
    counts = torch.bincount(codes, minlength=2 ** n).double()
    sizes = torch.tensor([bin(c).count("1") for c in range(2 ** n)])
    expected = torch.tensor([draws / ((n + 1) * math.comb(n, int(k))) for k in sizes], dtype=torch.float64)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 24.3, (chi2, counts, expected)    # 7 degrees of freedom: P(chi2 > 24.3) = 0.001
    d = observed.sum(1)
    assert torch.equal(weight[d == n], torch.zeros(int((d == n).sum())))
    assert torch.allclose(weight[d < n], (n + 1) / (n - d[d < n]).float())


def test_stratified_fractions_hold_one_per_stratum_and_are_each_uniform():
    """stratified_uniform(B): exactly one t in each [k/B, (k+1)/B), and each row's t is U(0, 1) across
    batches (Kolmogorov-Smirnov on row 0 over 4,000 batches, P-value > 0.001)."""
    from scipy import stats
    from genlearn.models.nade import stratified_uniform
    g = torch.Generator().manual_seed(0)
    for batch in (1, 7, 100):
        t = stratified_uniform(batch, g).squeeze(1)
        assert torch.equal(torch.sort((t * batch).floor().long()).values, torch.arange(batch))
    first_rows = torch.stack([stratified_uniform(10, g)[0, 0] for _ in range(4000)])
    assert stats.kstest(first_rows.numpy(), "uniform").pvalue > 1e-3


@pytest.mark.parametrize("make", [
    lambda precision: NADE(30, 40, order_agnostic=True, seed=3, matmul_precision=precision),
    lambda precision: MADE(30, [40, 40], masks=3, order="random", seed=3, matmul_precision=precision),
    lambda precision: MADE(30, 40, seed=3, matmul_precision=precision),
], ids=["oa-nade", "made-masks", "made-direct"])
@pytest.mark.usefixtures("bfloat16_honoured")
def test_bfloat16_training_products_give_nearly_the_same_loss_and_gradients(make):
    """matmul_precision="bfloat16" rounds the products' operands to 8 significant bits: with the same
    observed sets (NADE) or mask (MADE), the loss and the gradients stay within ~1-3% of full precision;
    likelihoods do not change."""
    x = torch.bernoulli(torch.full((64, 30), 0.4), generator=torch.Generator().manual_seed(1))
    grads, losses, log_probs = {}, {}, {}
    for precision in ("full", "bfloat16"):
        model = make(precision).init_from_data(x)
        with torch.no_grad():  # MADE's direct weights start at 0: give them a part in the products
            for p in model.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        loss = model.loss(x, generator=torch.Generator().manual_seed(7))
        loss.backward()
        losses[precision] = float(loss)
        grads[precision] = torch.cat([p.grad.flatten() for p in model.parameters()])
        log_probs[precision] = model.log_prob(x)
    assert torch.equal(log_probs["bfloat16"], log_probs["full"])
    assert abs(losses["bfloat16"] - losses["full"]) < 0.01 * abs(losses["full"])
    rel = float((grads["bfloat16"] - grads["full"]).norm() / grads["full"].norm())
    assert 0 < rel < 0.03, rel
    with pytest.raises(ConfigError, match="matmul_precision"):
        make("half")


@pytest.mark.parametrize("name", ["made-masks-random-order", "oa-nade-ensemble"])
def test_ensemble_is_the_mean_of_member_probabilities_and_deterministic(name):
    model = randomize(FACTORIES[name](8), 6, 0.5).double()
    twin = randomize(FACTORIES[name](8), 6, 0.5).double()
    x = all_states(8, dtype=torch.float64)
    member_lp = (torch.stack([model.log_prob_mask(x, k) for k in range(model.masks)]) if isinstance(model, MADE)
                 else torch.stack([model.log_prob_ordering(x, k) for k in range(model.orderings)]))
    assert torch.allclose(model.log_prob(x), torch.log(torch.exp(member_lp).mean(0)), atol=1e-12)
    assert torch.equal(model.log_prob(x), twin.log_prob(x))
    assert (member_lp.max(0).values - member_lp.min(0).values).max() > 1e-3  # members really differ


@pytest.mark.parametrize("name", ["fvsbn-random", "nade-2-layers", "oa-nade-ensemble", "made-masks-random-order",
                                  "made-1", "made-no-direct"])
def test_ancestral_samples_match_exact_marginals(name):
    n, m = 10, 20_000
    model = randomize(FACTORIES[name](n), 7, 0.8)
    x = model.sample(m, generator=torch.Generator().manual_seed(0)).double()
    states = all_states(n, dtype=torch.float64)
    prob = torch.exp(model.double().log_prob(states))
    tol = 4.5 * math.sqrt(0.25 / m)  # 4.5 standard errors of a frequency (0.016)
    assert (x.mean(0) - prob @ states).abs().max() < tol
    pair = torch.einsum("s,si,sj->ij", prob, states, states)
    assert ((x.T @ x) / m - pair).abs().max() < tol


def test_trainer_fits_a_teacher_fvsbn_to_small_kl():
    """Teacher-student: MLE by the generic Trainer on 5000 samples gets exact KL(teacher||student) ~ p/(2M)."""
    n = 6
    teacher = randomize(FVSBN(n), 11, 1.0)
    x = teacher.sample(5000, generator=torch.Generator().manual_seed(1))
    student = FVSBN(n)
    Trainer(student, Dataset("teacher", "binary", x), TrainConfig(epochs=200, lr=0.1, optimizer="adam",
                                                                  progress=False, eval_every=100)).fit()
    s = all_states(n, dtype=torch.float64)
    lt, ls = teacher.double().log_prob(s), student.double().log_prob(s)
    kl = float((torch.exp(lt) * (lt - ls)).sum())
    assert kl < 0.01, kl


@pytest.mark.parametrize("name,opts", [("nade", {"hidden": "16", "order_agnostic": True, "orderings": 3}),
                                       ("made", {"hidden": "16,12", "masks": 2, "order": "random"}),
                                       ("fvsbn", {"order": "random"})])
def test_trainer_reduces_nll_and_config_rebuilds_the_model(name, opts):
    g = torch.Generator().manual_seed(0)
    proto = 0.1 + 0.8 * (torch.rand(3, 10, generator=g) < 0.5).float()  # 3 sharp clusters
    x = torch.bernoulli(proto[torch.randint(0, 3, (600,), generator=g)], generator=g)
    truth = torch.logsumexp(torch.distributions.Bernoulli(probs=proto).log_prob(x[:, None, :]).sum(-1), 1) - math.log(3)
    ds = Dataset("clusters", "binary", x[:500], valid=x[500:])
    model = build_model(name, ds, **opts)
    state = Trainer(model, ds, TrainConfig(epochs=30, lr=0.02, optimizer="adam", batch_size=50,
                                           progress=False, monitor_ensemble=True)).fit()
    independent = ProductBernoulli(10).fit_closed_form(ds.train)
    baseline = float(-independent.log_prob(ds.valid).mean())       # ~5.4 nats
    true_nll = float(-truth[500:].mean())                           # ~4.4 nats (the true mixture)
    got = state.history[-1]["valid_nll"]
    assert got < baseline - 0.5 * (baseline - true_nll), (got, baseline, true_nll)
    twin = type(model)(**model.config())
    twin.load_state_dict(model.state_dict())
    assert torch.equal(twin.log_prob(x), model.log_prob(x))


@pytest.mark.parametrize("make", [
    lambda: MADE(10, 0), lambda: MADE(10, [500, 0]), lambda: MADE(10, "abc"), lambda: MADE(10, []),
    lambda: MADE(10, 8, masks=0), lambda: MADE(10, 8, masks=100_000), lambda: MADE(10, 8, order="sideways"),
    lambda: MADE(10, 8, mask_sampling="sometimes"), lambda: MADE(10, 8, activation="cubic"),
    lambda: NADE(10, 0), lambda: NADE(10, [4, 4, 4]), lambda: NADE(10, 4, orderings=0),
    lambda: NADE(10, 4, orderings=4), lambda: NADE(10, 4, order_agnostic=True, orderings=5000),
    lambda: FVSBN(10, order="backwards"), lambda: FVSBN(0),
])
def test_bad_settings_raise_config_error(make):
    with pytest.raises(ConfigError):
        make()


@pytest.mark.parametrize("argv", [["fvsbn", "--order", "random"],
                                  ["nade", "--hidden", "8", "--order-agnostic", "--orderings", "3"],
                                  ["nade", "--hidden", "8", "--order-agnostic", "--matmul-precision", "bfloat16"],
                                  ["made", "--hidden", "12,12", "--masks", "2"],
                                  ["made", "--hidden", "12", "--no-direct"],
                                  ["made", "--hidden", "12", "--matmul-precision", "bfloat16"]])
def test_cli_fit_eval_sample(tmp_path, capsys, argv):
    import json

    from genlearn.cli import main

    out = tmp_path / "run"
    assert main(["fit", *argv, "--data", "bars-and-stripes", "--epochs", "5", "--optimizer", "adam",
                 "--lr", "0.02", "--out", str(out), "--quiet"]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert main(["eval", str(out)]) == 0
    assert abs(json.loads(capsys.readouterr().out)["test_nll"] - fitted["test_nll"]) < 1e-9
    assert main(["sample", str(out), "-n", "4", "--out", str(tmp_path / "s.csv")]) == 0
    assert (tmp_path / "s.csv").exists()
    if argv[0] == "made":  # the direct connection is on by default and --no-direct turns it off
        config = json.loads((out / "metrics.json").read_text())["model_config"]
        assert config["direct"] == ("--no-direct" not in argv)


@pytest.mark.parametrize("argv,word", [(["made", "--hidden", "0"], "hidden"), (["made", "--masks", "0"], "masks"),
                                       (["nade", "--orderings", "4"], "order-agnostic"),
                                       (["nade", "--matmul-precision", "half"], "matmul-precision"),
                                       (["made", "--matmul-precision", "half"], "matmul-precision")])
def test_cli_bad_settings_exit_2(tmp_path, capsys, argv, word):
    from genlearn.cli import main

    assert main(["fit", *argv, "--data", "bars-and-stripes", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert word in capsys.readouterr().err


@pytest.mark.parametrize("activation,agnostic", [("relu", False), ("sigmoid", True), ("tanh", False)])
def test_nade_fused_pass_gradients_match_autograd_and_finite_differences(activation, agnostic, monkeypatch):
    """The hand-written backward of the blocked one-layer pass against (a) autograd through the plain
    (B, n, H) formula and (b) finite differences (torch.autograd.gradcheck), with several blocks."""
    import genlearn.models.nade as nade_module

    monkeypatch.setattr(nade_module, "SLAB_ELEMENTS", 3 * 5 * 4)  # force blocks of 4 dims
    model = randomize(NADE(11, 5, activation=activation, order_agnostic=agnostic, order="random", seed=1), 2)
    model = model.double()
    x = torch.bernoulli(torch.full((3, 11), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(3))
    x.requires_grad_(True)
    params = [x] + list(model.parameters())
    fused = torch.autograd.grad(model.log_prob_ordering(x, 0).sum(), params)
    model.fused = False
    plain = torch.autograd.grad(model.log_prob_ordering(x, 0).sum(), params)
    for a, b in zip(fused, plain):
        assert torch.allclose(a, b, atol=1e-10)
    model.fused = True
    o = model.ordering(0)
    args = (x[:, o].detach().clone().requires_grad_(True), model.W.T[o].detach().clone().requires_grad_(True),
            model.U.T[o].detach().clone().requires_grad_(True) if agnostic else None,
            model.c.detach().clone().requires_grad_(True), model.V[o].detach().clone().requires_grad_(True),
            activation)
    if activation == "relu":  # keep pre-activations away from the kink for finite differences
        with torch.no_grad():
            args[3].add_(10.0)
    assert torch.autograd.gradcheck(nade_module._OneLayerNADE.apply, args, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("sampling", ["random", "cycle"])
def test_mask_sampling_loss_is_one_member_nll_and_visits_every_mask(sampling):
    model = randomize(MADE(8, 16, masks=3, order="random", mask_sampling=sampling, seed=2), 1, 0.5).double()
    x = all_states(8, dtype=torch.float64)[::7]
    members_nll = [float(-model.log_prob_mask(x, k).mean()) for k in range(3)]
    g = torch.Generator().manual_seed(0)
    seen = []
    for _ in range(30):
        value = float(model.loss(x, generator=g))
        seen.append(min(range(3), key=lambda k: abs(members_nll[k] - value)))
        assert min(abs(v - value) for v in members_nll) < 1e-12
    assert set(seen) == {0, 1, 2}
    if sampling == "random":  # the same generator seed gives the same sequence of masks
        g2 = torch.Generator().manual_seed(0)
        values = [float(model.loss(x, generator=g2)) for _ in range(30)]
        again = [min(range(3), key=lambda k: abs(members_nll[k] - v)) for v in values]
        assert again == seen


def test_made_direct_connection_contains_the_fvsbn():
    """With the hidden-to-output weights at zero, MADE with direct connections is exactly an FVSBN with
    the same (strictly lower-triangular) weights and biases."""
    n = 9
    made = randomize(MADE(n, 7), 3).double()
    fvsbn = FVSBN(n).double()
    with torch.no_grad():
        made.out.weight.zero_()
        fvsbn.weight.copy_(torch.tril(made.direct_weight, -1))
        fvsbn.bias.copy_(made.out.bias)
    x = all_states(n, dtype=torch.float64)
    assert torch.allclose(made.log_prob(x), fvsbn.log_prob(x), atol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("order_agnostic", [False, True])
def test_nade_compiled_kernel_equals_the_torch_pass(activation, order_agnostic):
    """The numba kernels give the torch blocked pass's log-likelihoods and gradients (float64, to 1e-10)."""
    pytest.importorskip("numba")
    x = torch.bernoulli(torch.full((6, 11), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(4))
    # rows with no visited one, all ones, and ones only at the first and the last step: the kernels without the
    # mask input recompute act(a) only after a one, so these bound its runs of unchanged a
    edge = torch.zeros(4, 11, dtype=torch.float64)
    edge[1] = 1
    edge[2, 0] = edge[2, -1] = 1
    edge[3, -1] = 1
    x = torch.cat([x, edge])
    results = []
    for kernel in ("numba", "torch"):
        model = randomize(NADE(11, 9, activation=activation, order="random", order_agnostic=order_agnostic,
                               seed=3), 5, 0.7).double()
        model.kernel = kernel
        lp = model.log_prob_ordering(x, 0)
        lp.sum().backward()
        results.append((lp.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (lp_a, grads_a), (lp_b, grads_b) = results
    assert torch.allclose(lp_a, lp_b, atol=1e-10, rtol=0)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-10, rtol=0), name


def test_rational_tanh_is_within_float32_rounding_of_tanh():
    """The kernels' float32 tanh: |error| <= 3.8e-8 (a float32 ulp below 1 is 6.0e-8) on a dense grid across
    the clamp, odd, saturating, and NaN stays NaN."""
    from genlearn.models.nade_kernels import tanh_rational

    x = np.concatenate([np.linspace(-12, 12, 400_001), np.geomspace(1e-30, 1, 1000)])
    err = np.abs(tanh_rational(x) - np.tanh(x))
    assert err.max() <= 3.8e-8
    small = np.geomspace(1e-30, 1e-3, 200)
    assert np.allclose(tanh_rational(small), np.tanh(small), rtol=1e-8, atol=0)   # relative precision near 0
    assert np.array_equal(tanh_rational(-x), -tanh_rational(x))
    assert abs(tanh_rational(40.0) - 1) < 3.8e-8 and np.isnan(tanh_rational(np.nan))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("order_agnostic", [False, True])
def test_nade_float32_kernel_with_rational_activations_equals_the_float64_pass(activation, order_agnostic):
    """In float32 the kernels evaluate tanh/sigmoid by the rational approximation: log-likelihoods and gradients
    stay within float32 rounding of the float64 torch pass (37 hidden units: SIMD lanes and their remainder)."""
    pytest.importorskip("numba")
    x = torch.bernoulli(torch.full((16, 23), 0.3, dtype=torch.float64), generator=torch.Generator().manual_seed(5))
    model = randomize(NADE(23, 37, activation=activation, order="random", order_agnostic=order_agnostic,
                           seed=2), 6, 1.5).double()
    model.kernel = "torch"
    ref = model.log_prob_ordering(x, 0)
    ref.sum().backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.float()
    model.kernel = "numba"
    lp = model.log_prob_ordering(x.float(), 0)
    lp.sum().backward()
    assert torch.allclose(lp.double(), ref, atol=2e-5, rtol=1e-6)
    for name, g in ref_grads.items():
        got = dict(model.named_parameters())[name].grad.double()
        assert torch.allclose(got, g, atol=2e-5 * g.abs().max().item(), rtol=0), name


def test_made_runs_saved_before_the_direct_connection_still_load():
    from genlearn.models.registry import build_from_config

    old = MADE(6, 5, direct=False)
    config = old.config()
    del config["direct"]  # what older versions wrote
    model = build_from_config("made", config)
    model.load_state_dict(old.state_dict())
    x = all_states(6, dtype=torch.float32)
    assert not model.direct and torch.equal(model.log_prob(x), old.log_prob(x))


@pytest.mark.parametrize("name,opts", [("nade", {"hidden": "8", "order_agnostic": True, "orderings": 4}),
                                       ("made", {"hidden": "8", "masks": 3})])
def test_ensembles_are_monitored_through_one_member_and_reported_in_full(name, opts):
    """By default the trainer monitors an ensemble through one member (train/valid_nll_member, early stopping
    on it); the final metrics of a fit are those of the whole ensemble."""
    from genlearn.divergence import mean_nll
    from genlearn.runs import fit

    g = torch.Generator().manual_seed(1)
    x = (torch.rand(300, 8, generator=g) < torch.linspace(0.1, 0.9, 8)).float()
    ds = Dataset("ramp", "binary", x[:200], valid=x[200:])
    model = build_model(name, ds, **opts)
    run = fit(model, ds, epochs=4, lr=0.02, optimizer="adam", batch_size=50, progress=False, plots=False)
    last = run.metrics["history"][-1]
    k = 1 if name == "nade" else 0  # a NADE with order="fixed" monitors its first random ordering
    assert "valid_nll" not in last and last["monitored_member"] == k
    assert run.metrics["valid_nll"] == pytest.approx(mean_nll(model, ds.valid), abs=1e-9)
    member = -float(model.double().member_log_prob(x[200:].double(), k).mean())
    assert last["valid_nll_member"] == pytest.approx(member, abs=1e-5)
    assert abs(run.metrics["valid_nll"] - member) > 1e-4  # the ensemble is not the member
    # early stopping follows the monitored member
    model = build_model(name, ds, **opts)
    trainer = Trainer(model, ds, TrainConfig(epochs=6, lr=0.05, optimizer="adam", batch_size=50, patience=2,
                                             progress=False))
    state = trainer.fit()
    assert state.best_valid == min(r["valid_nll_member"] for r in state.history[1:])  # [0]: before training


def test_ensemble_nll_with_progress_bar_is_the_same_number(capsys, monkeypatch):
    import sys

    from genlearn.divergence import mean_nll

    model = MADE(9, 7, masks=5, order="random", seed=2)
    x = (torch.rand(300, 9, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    direct = -float(model.double().log_prob(x.double()).mean())
    quiet = mean_nll(model, x)
    mean_nll(model, x, progress=True, desc="test NLL")
    assert capsys.readouterr().err == ""  # stderr is not a terminal: no bar (issue 16)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: the bar
    shown = mean_nll(model, x, progress=True, desc="test NLL")
    assert shown == quiet and quiet == pytest.approx(direct, abs=1e-12)
    assert "test NLL" in capsys.readouterr().err


def test_nade_kernels_keep_torchs_thread_count():
    """Starting numba's OpenMP threads must not change torch's: a `--threads 1` run stays at one thread (it became
    two, the machine's default, after the first compiled NADE pass)."""
    pytest.importorskip("numba")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        model = NADE(7, 5, seed=0)
        model.kernel = "numba"
        model.log_prob(torch.ones(3, 7)).sum().backward()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
