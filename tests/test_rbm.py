"""RBM: energies, exact log Z and exact gradients against brute-force enumeration of the joint (v, h) states,
the CD/PCD rule's gradients against the exact gradient, exact-gradient training, Gibbs sampling against exact
marginals, PCD chains (owned by the learning rule) through checkpoints, and runs saved by earlier versions."""
import math

import pytest
import torch

from genlearn.enumeration import all_states
from genlearn.errors import ConfigError, IntractableError
from genlearn.estimators.exact_rbm import rbm_log_partition
from genlearn.learning.legacy import rule_from_legacy_config
from genlearn.learning.rules import make_rule
from genlearn.models.rbm import RBM


def cd_rule(k=1, persistent=False, n_chains=100, matmul_precision="full"):
    return make_rule("contrastive-divergence", {"k": k, "persistent": persistent, "n_chains": n_chains,
                                                "matmul_precision": matmul_precision})


def random_rbm(V, H, scale=1.0, seed=0) -> RBM:
    g = torch.Generator().manual_seed(seed)
    m = RBM(V, H).double()
    with torch.no_grad():
        m.weight.copy_(torch.randn(V, H, generator=g, dtype=torch.float64) * scale)
        m.visible_bias.copy_(torch.randn(V, generator=g, dtype=torch.float64))
        m.hidden_bias.copy_(torch.randn(H, generator=g, dtype=torch.float64))
    return m


def joint_log_weights(m: RBM) -> torch.Tensor:
    """-E(v, h) for every (v, h): (2^V, 2^H) float64, the brute-force oracle."""
    v = all_states(m.n_visible, torch.float64)
    h = all_states(m.n_hidden, torch.float64)
    return (v @ m.visible_bias)[:, None] + (h @ m.hidden_bias)[None, :] + v @ m.weight @ h.T


@torch.no_grad()
def test_free_energy_is_minus_log_sum_over_hidden_states():
    m = random_rbm(5, 4, seed=1)
    v = all_states(5, torch.float64)
    brute = -torch.logsumexp(joint_log_weights(m), 1)
    assert torch.allclose(m.free_energy(v), brute, atol=1e-12)
    h = all_states(4, torch.float64)
    e = torch.stack([m.energy(v, hh.expand(v.shape[0], -1)) for hh in h], 1)
    assert torch.allclose(-e, joint_log_weights(m), atol=1e-12)


@pytest.mark.parametrize("V,H", [(6, 4), (4, 7), (5, 5)])
@torch.no_grad()
def test_exact_log_z_equals_brute_force_in_both_orientations(V, H):
    m = random_rbm(V, H, scale=1.5, seed=V * 10 + H)
    brute = float(torch.logsumexp(joint_log_weights(m).reshape(-1), 0))
    assert m.log_partition(method="exact").value == pytest.approx(brute, abs=1e-10)
    for kernel in ("direct", "split"):
        lz = rbm_log_partition(m.weight, m.visible_bias, m.hidden_bias, kernel=kernel)
        assert lz == pytest.approx(brute, abs=1e-4)
    # log_prob normalises: sum_v P(v) = 1
    assert float(torch.logsumexp(m.log_prob(all_states(V, torch.float64)), 0)) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("V,H,scale", [(300, 12, 0.3), (12, 300, 0.3), (40, 10, 12.0)])
@torch.no_grad()
def test_split_kernel_matches_float64_direct_kernel(V, H, scale):
    """The fast float32 split kernel (used for 784 x 25) against the float64 direct sum; scale 12 drives the
    pre-activations past the float32 range, which must switch the kernel to float64."""
    m = random_rbm(V, H, scale=scale, seed=3)
    direct = rbm_log_partition(m.weight, m.visible_bias, m.hidden_bias, kernel="direct")
    split = rbm_log_partition(m.weight, m.visible_bias, m.hidden_bias, kernel="split")
    assert split == pytest.approx(direct, rel=2e-7, abs=1e-4)


def test_exact_log_z_beyond_the_limit_names_it_and_suggests_ais():
    m = RBM(784, 30)
    with pytest.raises(IntractableError, match=r"25 units.*AIS|ais"):
        m.log_partition(method="exact")
    with pytest.raises(IntractableError, match="25"):
        m.log_prob(torch.zeros(2, 784))
    with pytest.raises(IntractableError, match="cd or pcd"):
        make_rule("rbm-exact-gradient").check(RBM(100, 30))
    with pytest.raises(IntractableError, match="cd or pcd"):
        RBM(100, 30).loss(torch.zeros(2, 100))
    with pytest.raises(ConfigError, match="persistent"):
        rule_from_legacy_config("rbm", {"persistent": True, "gradient": "cd"})
    from genlearn.models.registry import rule_for

    with pytest.raises(ConfigError, match="persistent"):
        rule_for("rbm", persistent=True, gradient="cd")


def test_learning_settings_are_the_rules_not_the_models():
    """k, persistent, gradient, n_chains, matmul_precision left the RBM: passing one says where it went; a config of
    an earlier version is read by from_config (dropping them) and its rule derived from it."""
    with pytest.raises(ConfigError, match="learning rule"):
        RBM(5, 3, k=2)
    with pytest.raises(TypeError):
        RBM(5, 3, colour="red")
    old = {"n_visible": 64, "n_hidden": 8, "k": 3, "persistent": True, "gradient": "pcd", "n_chains": 50,
           "init_std": 0.01, "seed": 0, "matmul_precision": "bfloat16"}
    model = RBM.from_config(old)
    assert model.config() == {"n_visible": 64, "n_hidden": 8, "init_std": 0.01, "seed": 0}
    assert rule_from_legacy_config("rbm", old) == ("contrastive-divergence", {
        "k": 3, "persistent": True, "n_chains": 50, "matmul_precision": "bfloat16"})
    assert rule_from_legacy_config("rbm", {**old, "gradient": "exact", "persistent": False}) == (
        "rbm-exact-gradient", {})
    assert rule_from_legacy_config("rbm", {**old, "gradient": None, "persistent": False})[1]["persistent"] is False


def test_exact_gradient_equals_autograd_of_brute_force_nll():
    """The rbm-exact-gradient rule (by hand, no graph) and the model's loss (autograd, what maximum-likelihood
    uses) both give the gradient of the brute-force NLL over all joint states, and its value."""
    m = random_rbm(6, 4, seed=2)
    x = all_states(6, torch.float64)[torch.tensor([0, 3, 3, 17, 40, 63, 63, 63, 22])]
    value = make_rule("rbm-exact-gradient").compute_gradient(m, x, None)
    by_rule = [p.grad.clone() for p in (m.weight, m.visible_bias, m.hidden_bias)]
    m.zero_grad(set_to_none=True)
    loss = m.loss(x)
    loss.backward()
    assert float(value) == pytest.approx(float(loss), abs=1e-12)
    W, b, c = (p.detach().clone().requires_grad_() for p in (m.weight, m.visible_bias, m.hidden_bias))
    lw = (all_states(6, torch.float64) @ b)[:, None] + (all_states(4, torch.float64) @ c)[None, :] \
        + all_states(6, torch.float64) @ W @ all_states(4, torch.float64).T
    log_z = torch.logsumexp(lw.reshape(-1), 0)
    f = -(x @ b) - torch.nn.functional.softplus(x @ W + c).sum(-1)
    nll = f.mean() + log_z
    nll.backward()
    assert float(loss) == pytest.approx(float(nll), abs=1e-10)
    for p, q, r in zip((m.weight, m.visible_bias, m.hidden_bias), (W, b, c), by_rule):
        assert torch.allclose(p.grad, q.grad, atol=1e-10)
        assert torch.allclose(r, q.grad, atol=1e-10)


def test_exact_gradient_equals_finite_differences_of_the_exact_kl():
    """The exact rule's gradient against central differences of D_KL(Q^||P) computed by enumeration."""
    from genlearn.divergence import empirical_kl

    m = random_rbm(5, 3, scale=0.7, seed=8)
    x = all_states(5, torch.float64)[torch.tensor([1, 4, 4, 9, 17, 30, 31, 31])]
    make_rule("rbm-exact-gradient").compute_gradient(m, x, None)
    eps = 1e-6
    for p in (m.weight, m.visible_bias, m.hidden_bias):
        grad = p.grad.clone()
        for idx in ((0,) * p.ndim, tuple(s - 1 for s in p.shape)):
            with torch.no_grad():
                p[idx] += eps
                up = empirical_kl(m, x)["kl"]
                p[idx] -= 2 * eps
                down = empirical_kl(m, x)["kl"]
                p[idx] += eps
            assert float(grad[idx]) == pytest.approx((up - down) / (2 * eps), abs=1e-6)


@pytest.mark.parametrize("persistent,n_chains,k", [(False, 100, 1), (False, 100, 3), (True, 37, 2)])
def test_hand_written_cd_gradient_equals_autograd_of_the_surrogate(persistent, n_chains, k):
    """The fast path (matrix products by hand) has the gradient of mean F(x) - mean F(v~), v~ held fixed."""
    m = random_rbm(20, 7, scale=0.5, seed=4).float()
    rule = cd_rule(k=k, persistent=persistent, n_chains=n_chains)
    x = (torch.rand(50, 20, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    value, dW, db, dc, neg = rule.gradient(m, x, torch.Generator().manual_seed(9))
    assert neg.shape == (n_chains if persistent else 50, 20)
    W, b, c = (p.detach().double().requires_grad_() for p in (m.weight, m.visible_bias, m.hidden_bias))

    def free(v):
        return -(v.double() @ b) - torch.nn.functional.softplus(v.double() @ W + c).sum(-1)

    surrogate = free(x).mean() - free(neg).mean()
    surrogate.backward()
    assert float(value) == pytest.approx(float(surrogate), abs=1e-4)
    for mine, ref in ((dW, W.grad), (db, b.grad), (dc, c.grad)):
        assert torch.allclose(mine.double(), ref, atol=1e-5)
    # and compute_gradient routes exactly that gradient to p.grad (CD: same generator state, same negatives)
    if not persistent:
        for p in m.parameters():
            p.grad = None
        again = cd_rule(k=k).compute_gradient(m, x, torch.Generator().manual_seed(9))
        assert torch.equal(again, value)
        for p, mine in zip((m.weight, m.visible_bias, m.hidden_bias), (dW, db, dc)):
            assert torch.equal(p.grad, mine)


@pytest.mark.parametrize("k", [1, 3])
def test_pcd_draws_its_first_hidden_sample_from_the_chains_kept_probabilities(k):
    """PCD keeps P(h | v~) of each step (scikit-learn's PCD): the next step's first hidden sample is u < q with those
    probabilities q, not a draw from P(h | chains) under the current parameters. A float64 transcription of the
    sweeps with the same uniforms (drawn as cd_step draws them) gives the same negatives and the new q."""
    from genlearn.numerics import uniform_

    m = random_rbm(20, 7, scale=0.8, seed=11).float()
    W, b, c = (p.detach().double() for p in (m.weight, m.visible_bias, m.hidden_bias))
    rule = cd_rule(k=k, persistent=True, n_chains=13)
    x = (torch.rand(9, 20, generator=torch.Generator().manual_seed(2)) < 0.4).float()
    g = torch.Generator().manual_seed(5)
    rule.gradient(m, x, g)
    chains, q = rule.chains.double().clone(), rule.chain_probs.double().clone()
    assert torch.allclose(q, torch.sigmoid(c + chains @ W), atol=1e-6)  # P(h | v~) of the step
    with torch.no_grad():  # the next step's parameters differ from those q was computed with
        m.weight.add_(0.3)
    W = m.weight.detach().double()
    u = torch.empty(k, 13, 7 + 20)
    uniform_(u, torch.Generator().set_state(g.get_state()))
    u = u.double()
    h = (u[0, :, :7] < q).double()
    near = torch.zeros(13, dtype=torch.bool)  # rows with a uniform within float32 rounding of its probability
    for step in range(k):
        pv = torch.sigmoid(b + h @ W.T)
        near |= ((u[step, :, 7:] - pv).abs() < 1e-5).any(1)
        v = (u[step, :, 7:] < pv).double()
        ph = torch.sigmoid(c + v @ W)
        if step < k - 1:
            near |= ((u[step + 1, :, :7] - ph).abs() < 1e-5).any(1)
            h = (u[step + 1, :, :7] < ph).double()
    _, _, _, _, negatives = rule.gradient(m, x, g)
    assert int(near.sum()) <= 1
    assert torch.equal(negatives.double()[~near], v[~near])
    assert torch.allclose(rule.chain_probs.double()[~near], ph[~near], atol=1e-6)
    # from the current parameters instead (P(h | chains; theta_t)), the negatives would differ: the test can fail
    h_now = (u[0, :, :7] < torch.sigmoid(c + chains @ W)).double()
    assert not torch.equal(h_now, (u[0, :, :7] < q).double())


def test_a_pickled_pcd_rule_continues_as_the_original():
    """The rule pickles without its workspace (buffers and bound kernels) but with its chains and their hidden
    probabilities: the copy's next step equals the original's, given the same generator state."""
    import pickle

    m = random_rbm(20, 7, scale=0.8, seed=12).float()
    rule = cd_rule(k=1, persistent=True, n_chains=9)
    x = (torch.rand(9, 20, generator=torch.Generator().manual_seed(4)) < 0.4).float()
    g = torch.Generator().manual_seed(6)
    rule.gradient(m, x, g)
    copy = pickle.loads(pickle.dumps(rule))
    assert copy._workspace is None and torch.equal(copy.chain_probs, rule.chain_probs)
    state = g.get_state()
    ours = rule.gradient(m, x, g)
    theirs = copy.gradient(m, x, torch.Generator().set_state(state))
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def _angle(a: torch.Tensor, b: torch.Tensor) -> float:
    cos = float((a @ b) / (a.norm() * b.norm()))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def test_cd_and_pcd_gradients_point_near_the_exact_gradient():
    """On a tiny RBM (6 x 4) and a fixed data set, the averaged PCD gradient (20,000 chains at fixed parameters,
    i.e. model samples) is within 1 degree, CD-10 within 2 degrees and CD-1 within 8 degrees of the exact KL
    gradient (measured: about 0.3, 0.6 and 2.9 degrees), and CD-10 is closer than CD-1 (its bias shrinks with k)."""
    torch.manual_seed(0)
    base = random_rbm(6, 4, scale=0.7, seed=5).float()
    x = all_states(6)[torch.randint(0, 64, (400,), generator=torch.Generator().manual_seed(2))]
    make_rule("rbm-exact-gradient").compute_gradient(base, x, None)
    exact = torch.cat([base.weight.grad.reshape(-1), base.visible_bias.grad, base.hidden_bias.grad]).double()
    g = torch.Generator().manual_seed(3)

    def mean_grad(rule, calls, burn=0, batch=x):
        for _ in range(burn):
            rule.gradient(base, batch, g)
        acc = 0
        for _ in range(calls):
            _, dW, db, dc, _ = rule.gradient(base, batch, g)
            acc = acc + torch.cat([dW.reshape(-1), db, dc]).double()
        return acc / calls

    angles = {}
    for name, rule, calls, burn in (("cd1", cd_rule(k=1), 200, 0), ("cd10", cd_rule(k=10), 100, 0),
                                    ("pcd", cd_rule(persistent=True, n_chains=20000), 20, 30)):
        angles[name] = _angle(mean_grad(rule, calls, burn), exact)
    assert angles["pcd"] < 1.0, angles
    assert angles["cd10"] < 2.0, angles
    assert angles["cd1"] < 8.0, angles
    assert angles["cd10"] < angles["cd1"], angles


def test_exact_gradient_training_on_bars_and_stripes_drives_the_kl_down_monotonically():
    import genlearn
    from genlearn.learning.trainer import TrainConfig, Trainer

    ds = genlearn.load_dataset("bars-and-stripes:size=3")
    model = RBM(9, 6, init_std=0.5, seed=0)
    cfg = TrainConfig(epochs=60, lr=1.0, optimizer="gd", seed=0, progress=False)
    state = Trainer(model, ds, cfg, rule=make_rule("rbm-exact-gradient")).fit()
    kl = [r["train_kl"] for r in state.history]
    kl_true = [r["kl_true"] for r in state.history]
    assert all(b <= a + 1e-9 for a, b in zip(kl, kl[1:])), kl
    assert kl[-1] < 0.75 * kl[0]
    assert kl_true[-1] < 0.75 * kl_true[0]
    # the exact loss value is the exact training NLL
    assert state.history[-1]["train_nll"] == pytest.approx(float(model.loss(ds.train)), abs=1e-4)
    # maximum-likelihood (autograd of model.loss) follows the same path: the same gradient, float32 rounding apart
    ml = RBM(9, 6, init_std=0.5, seed=0)
    Trainer(ml, ds, cfg).fit()
    for p, q in zip(ml.parameters(), model.parameters()):
        assert torch.allclose(p, q, atol=1e-3)


def test_long_gibbs_chains_match_exact_marginals():
    m = random_rbm(5, 3, scale=1.0, seed=6).float()
    x = m.sample(40000, generator=torch.Generator().manual_seed(0), steps=100)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    codes = (x * (2 ** torch.arange(5))).sum(1).long()
    freq = torch.bincount(codes, minlength=32).double() / x.shape[0]
    p = torch.exp(m.double().log_prob(all_states(5, torch.float64)))
    sd = torch.sqrt(p * (1 - p) / x.shape[0])
    assert ((freq - p).abs() <= 5 * sd + 1e-4).all(), (freq - p).abs().max()
    assert 0.5 * float((freq - p).abs().sum()) < 0.02


def test_config_roundtrip_buffers_and_log_z_cache():
    m = RBM(12, 5, seed=3)
    rule = cd_rule(k=2, persistent=True, n_chains=8)
    assert m.tractable
    x = (torch.rand(30, 12, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    lz0 = m.log_partition(method="exact").value
    rule.compute_gradient(m, x, torch.Generator().manual_seed(1))
    assert int(m.base_rate_ready) == 1  # the first batch's statistics
    opt.step()
    rule.end_epoch(m, x)
    lz1 = m.log_partition(method="exact").value
    assert lz1 != lz0  # the cache follows the parameters
    assert lz1 == pytest.approx(rbm_log_partition(m.weight, m.visible_bias, m.hidden_bias), abs=1e-9)
    clone = RBM(**m.config())
    clone.load_state_dict(m.state_dict())
    assert set(m.state_dict()) == {"weight", "visible_bias", "hidden_bias", "base_rate_logits", "base_rate_ready",
                                   "reverse_rows"}
    assert rule.state_tensors()["chains"].shape == (8, 12)  # the chains are the rule's
    again = make_rule(rule.name, rule.settings())
    again.load_state_tensors(rule.state_tensors())
    assert torch.equal(again.chains, rule.chains) and again.settings() == rule.settings()
    assert torch.equal(clone.base_rate_logits, m.base_rate_logits) and int(clone.base_rate_ready) == 2
    assert torch.equal(clone.reverse_rows, m.reverse_rows) and clone.reverse_rows.shape == (30, 12)
    assert clone.log_partition(method="exact").value == pytest.approx(lz1, abs=1e-9)
    assert not RBM(784, 500).tractable


def test_cli_fit_eval_sample_end_to_end(tmp_path, capsys):
    """genlearn fit rbm / eval --partition exact|ais / sample, and the error for exact log Z on a large model."""
    import json

    from genlearn.cli import main
    from genlearn.runs import load_run

    run = tmp_path / "run"
    assert main(["fit", "rbm", "--data", "bars-and-stripes:size=3", "--hidden", "4", "--k", "2", "--persistent",
                 "--matmul-precision", "bfloat16", "--epochs", "3", "--out", str(run), "--quiet"]) == 0
    loaded = load_run(run)
    assert loaded.model.n_hidden == 4 and "k" not in loaded.model.config()
    assert loaded.rule.name == "contrastive-divergence"
    assert loaded.rule.settings() == {"k": 2, "persistent": True, "n_chains": 100, "matmul_precision": "bfloat16"}
    assert loaded.rule.chains.shape == (100, 9)
    assert int(loaded.model.base_rate_ready) == 2
    assert loaded.metrics["rbm_gradient"] == "pcd" and loaded.metrics["rbm_k"] == 2
    assert loaded.metrics["rule"]["name"] == "contrastive-divergence"
    capsys.readouterr()
    assert main(["eval", str(run), "--partition", "exact", "--split", "test"]) == 0
    exact = json.loads(capsys.readouterr().out)
    import genlearn

    ds = genlearn.load_dataset("bars-and-stripes:size=3")
    ref = -float(loaded.model.double().log_prob(ds.test.double()).mean())
    assert exact["test_nll"] == pytest.approx(ref, abs=1e-6) and exact["log_z_method"].startswith("exact")
    assert main(["eval", str(run), "--partition", "ais", "--ais-steps", "300", "--ais-chains", "20",
                 "--split", "test"]) == 0
    ais = json.loads(capsys.readouterr().out)
    assert ais["log_z_method"] == "ais" and ais["log_z_details"]["steps"] == 300
    assert ais["log_z_lower"] <= exact["log_z"] <= ais["log_z_upper"]
    # the Monte Carlo error of log Z at the top level (it was only inside log_z_details); 0 for the exact value
    assert ais["log_z_stderr"] == ais["log_z_details"]["forward_stderr"] > 0 and exact["log_z_stderr"] == 0
    assert abs(ais["test_nll"] - exact["test_nll"]) < 0.1
    out_csv = tmp_path / "s.csv"
    assert main(["sample", str(run), "-n", "5", "--steps", "10", "--out", str(out_csv)]) == 0
    rows = [line.split(",") for line in out_csv.read_text().split() if line.strip()]
    assert len(rows) >= 5 and all(v.strip() in ("0", "1", "0.0", "1.0") for v in rows[-1])
    # exact log Z of a model whose smaller layer has 26 units: exit code 2 and a message naming the limit and ais
    big = tmp_path / "big"
    assert main(["fit", "rbm", "--data", "product-bernoulli:dim=30,n=200", "--hidden", "26", "--epochs", "1",
                 "--out", str(big), "--quiet", "--partition", "ais"]) == 0
    capsys.readouterr()
    assert main(["eval", str(big), "--partition", "exact"]) == 2
    err = capsys.readouterr().err
    assert "25" in err and "ais" in err.lower()
    assert main(["fit", "rbm", "--data", "bars-and-stripes:size=3", "--matmul-precision", "half",
                 "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    assert "--matmul-precision must be one of auto, full, bfloat16" in capsys.readouterr().err


def test_trainer_monitors_an_intractable_rbm_by_ais_close_to_the_exact_nll():
    """An RBM whose exact log Z costs more than the likelihood policy allows every epoch (40 x 24: 40 2^24 terms)
    gets train/valid NLL estimates by forward AIS at every evaluation; they agree with the exact NLL (2^24
    states, enumerated once) within 0.5 nats."""
    import genlearn
    from genlearn.evaluation import split_nll
    from genlearn.learning.trainer import TrainConfig, Trainer
    from genlearn.likelihood import monitors_exactly

    ds = genlearn.load_dataset("product-bernoulli:dim=40,n=400,seed=1")
    model = RBM(40, 24, seed=0, init_std=0.1)
    assert not monitors_exactly(model)
    cfg = TrainConfig(epochs=2, lr=0.05, optimizer="momentum", batch_size=50, seed=0, progress=False,
                      monitor_ais_steps=3000)
    state = Trainer(model, ds, cfg, rule=cd_rule()).fit()
    last = state.history[-1]
    assert {"train_nll_ais", "valid_nll_ais", "log_z_ais", "ais_ess"} <= set(last)
    assert "train_nll" not in last
    exact = split_nll(model, ds.valid, partition="exact")["nll"]
    assert abs(last["valid_nll_ais"] - exact) < 0.5


@pytest.mark.parametrize("persistent,calls", [(False, 3), (True, 1)])
@pytest.mark.usefixtures("bfloat16_honoured")
def test_bfloat16_products_stay_within_their_rounding_of_full_precision(persistent, calls):
    """matmul_precision="bfloat16" against full precision from the same parameters and uniforms (CD-1, PCD-1):
    the products' operands and outputs are rounded to 8 significant bits (2^-9 relative), so a few samples flip
    where u is within ~1e-3 of P (measured: 0.02-0.1% of the negatives) and dW, db, dc differ by 0.6-1.6%
    (mostly through those flips), the value by < 0.1%."""
    g = torch.Generator().manual_seed(0)
    full = RBM(200, 64, seed=0)
    with torch.no_grad():
        full.weight.normal_(0, 0.3, generator=g)
        full.visible_bias.normal_(0, 1, generator=g)
        full.hidden_bias.normal_(0, 1, generator=g)
    low = RBM(200, 64, seed=0)
    low.load_state_dict(full.state_dict())
    rule_full = cd_rule(persistent=persistent, n_chains=30)
    rule_low = cd_rule(persistent=persistent, n_chains=30, matmul_precision="bfloat16")
    x = (torch.rand(50, 200, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    for call in range(calls):
        a = rule_full.gradient(full, x, torch.Generator().manual_seed(10 + call))
        b = rule_low.gradient(low, x, torch.Generator().manual_seed(10 + call))
        flipped = float((a[4] != b[4]).float().mean())
        assert flipped < 0.005, flipped
        assert float(a[0]) == pytest.approx(float(b[0]), rel=3e-3)
        for name, u, w in (("dW", a[1], b[1]), ("db", a[2], b[2]), ("dc", a[3], b[3])):
            rel = float((u - w).norm() / u.norm())
            assert rel < 0.04, (name, rel, flipped)
        assert not torch.equal(a[1], b[1])  # the bfloat16 path really ran
    rebuilt = make_rule(rule_low.name, rule_low.settings())
    assert rule_low.settings()["matmul_precision"] == "bfloat16" and rebuilt.config.matmul_precision == "bfloat16"


@pytest.mark.usefixtures("bfloat16_honoured")
def test_bfloat16_training_reaches_the_exact_nll_of_full_precision_training():
    """CD-1 on bars-and-stripes 3x3 (9 visible, 6 hidden), 40 epochs, seeds 0-2, full vs bfloat16 products: the
    mean exact training NLL agrees within 0.1 nats (measured 0.03; the seed-to-seed spread is 0.3) and both are
    far below the 9 ln 2 = 6.24 nats of the uniform distribution (measured 3.3; the data entropy is ln 14 = 2.64)."""
    import genlearn
    from genlearn.learning.trainer import TrainConfig, Trainer

    ds = genlearn.load_dataset("bars-and-stripes:size=3")
    mean_nll = {}
    for precision in ("full", "bfloat16"):
        nlls = []
        for seed in range(3):
            m = RBM(9, 6, seed=seed, init_std=0.1)
            cfg = TrainConfig(epochs=40, lr=0.1, optimizer="momentum", momentum=0.5, batch_size=10, seed=seed,
                              progress=False)
            Trainer(m, ds, cfg, rule=cd_rule(matmul_precision=precision)).fit()
            with torch.no_grad():
                nlls.append(-float(m.double().log_prob(ds.train.double()).mean()))
        mean_nll[precision] = sum(nlls) / len(nlls)
    assert mean_nll["full"] < 4.0 and mean_nll["bfloat16"] < 4.0, mean_nll
    assert abs(mean_nll["full"] - mean_nll["bfloat16"]) < 0.1, mean_nll


def test_unknown_matmul_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="matmul-precision"):
        cd_rule(matmul_precision="half")


def test_built_rbm_starts_from_the_data_base_rate_unless_told_zero():
    """build_model("rbm") sets b = logit of the smoothed training means (Hinton's practical guide), as the other
    families start from their data; init_visible="zero" keeps b = 0; anything else is a ConfigError."""
    import genlearn
    from genlearn.models.registry import build_model
    from genlearn.numerics import base_rate_logits

    ds = genlearn.load_dataset("digits")  # pixel means from 0 to 0.83
    model = build_model("rbm", ds, hidden=4)
    expected = base_rate_logits(ds.train, smoothing=0.01)
    assert torch.allclose(model.visible_bias, expected.to(model.visible_bias.dtype)) and expected.abs().max() > 3
    assert torch.count_nonzero(build_model("rbm", ds, hidden=4, init_visible="zero").visible_bias) == 0
    with pytest.raises(ConfigError, match="init-visible"):
        build_model("rbm", ds, hidden=4, init_visible="mean")


def test_pcd_chains_survive_save_and_resume_bit_exactly(tmp_path):
    """PCD-2 with 7 chains: 4 epochs straight == 2 epochs, then --resume to 4. The chains are the rule's state,
    saved as rule.chains in the checkpoint with the rule's record; parameters, AIS statistics and chains agree
    bit for bit."""
    from safetensors.torch import load_file

    from genlearn.runs import fit

    kw = dict(hidden=4, persistent=True, k=2, n_chains=7, batch_size=5, plots=False, progress=False)
    full = fit("rbm", "bars-and-stripes:size=3", out=tmp_path / "full", epochs=4, **kw)
    fit("rbm", "bars-and-stripes:size=3", out=tmp_path / "part", epochs=2, **kw)
    tensors = load_file(str(tmp_path / "part" / "checkpoint.safetensors"))
    assert tensors["rule.chains"].shape == (7, 9) and "model.chains" not in tensors
    assert tensors["rule.chain_probs"].shape == (7, 4)  # P(h | chains), the next step's first hidden sample
    import json

    meta = json.loads((tmp_path / "part" / "checkpoint.json").read_text())
    assert meta["rule"] == {"name": "contrastive-divergence",
                            "settings": {"k": 2, "persistent": True, "n_chains": 7, "matmul_precision": "auto"}}
    resumed = fit(None, None, out=tmp_path / "part", epochs=4, resume=True, plots=False)
    assert resumed.rule.settings() == full.rule.settings()
    assert torch.equal(resumed.rule.chains, full.rule.chains)
    assert torch.equal(resumed.rule.chain_probs, full.rule.chain_probs)
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_a_run_saved_by_an_earlier_version_loads_and_resumes_with_its_chains(tmp_path):
    """tests/fixtures/legacy_runs/rbm-pcd was written when the chains were model buffers and the learning settings
    constructor arguments: it loads, its rule is derived from the old config with the old chains as its state,
    and it resumes (the new checkpoint then has a rule record and rule.chains)."""
    import json
    import shutil
    from pathlib import Path

    from safetensors.torch import load_file

    from genlearn.runs import fit, load_run

    src = Path(__file__).parent / "fixtures" / "legacy_runs" / "rbm-pcd"
    old = load_file(str(src / "checkpoint.safetensors"))
    run = load_run(src)
    assert run.rule.name == "contrastive-divergence" and run.rule.config.persistent
    assert torch.equal(run.rule.chains, old["model.chains"])
    assert torch.equal(run.model.weight, load_file(str(src / "model.safetensors"))["weight"])
    work = tmp_path / "rbm-pcd"
    shutil.copytree(src, work)
    resumed = fit(None, None, out=work, epochs=3, resume=True, plots=False)
    assert resumed.metrics["epochs_run"] == 3 and resumed.metrics["rbm_gradient"] == "pcd"
    assert not torch.equal(resumed.rule.chains, old["model.chains"])
    meta = json.loads((work / "checkpoint.json").read_text())
    assert meta["rule"]["name"] == "contrastive-divergence"
    saved = load_file(str(work / "checkpoint.safetensors"))
    # the chains' hidden probabilities, absent from the old checkpoint, were computed from its chains and kept
    assert "rule.chains" in saved and saved["rule.chain_probs"].shape == (saved["rule.chains"].shape[0],
                                                                           run.model.n_hidden)


@pytest.mark.parametrize("V,H,scale", [(300, 12, 0.3), (12, 300, 0.3), (97, 9, 2.0), (3000, 6, 0.05), (400, 8, 6.0)])
@torch.no_grad()
def test_compiled_split_kernel_equals_its_torch_passes(V, H, scale, monkeypatch):
    """The split kernel's compiled pass (numba) against its torch passes on the same tables: the same sum to float32
    rounding of the group products; and both against the float64 direct sum. 3,000 visible units: products up to
    2^3000 (rescaled down); scale 6: factors down to e^-80 (rescaled up)."""
    from genlearn.estimators import exact_rbm

    if exact_rbm.numba is None:
        pytest.skip("numba is not installed")
    m = random_rbm(V, H, scale=scale, seed=5)
    calls = []
    real = exact_rbm._split_compiled
    monkeypatch.setattr(exact_rbm, "_split_compiled", lambda *a: calls.append(1) or real(*a))
    compiled = rbm_log_partition(m.weight, m.visible_bias, m.hidden_bias, kernel="split")
    monkeypatch.setattr(exact_rbm, "COMPILED", False)
    passes = rbm_log_partition(m.weight, m.visible_bias, m.hidden_bias, kernel="split")
    direct = rbm_log_partition(m.weight, m.visible_bias, m.hidden_bias, kernel="direct")
    assert calls == [1]
    assert compiled == pytest.approx(passes, rel=1e-7, abs=1e-5)
    assert compiled == pytest.approx(direct, rel=2e-7, abs=1e-4)


@pytest.mark.parametrize("visible, hidden", [(5, 3), (3, 6)])
def test_log_prob_is_differentiable_with_the_exact_log_z_gradient(visible, hidden):
    """Backpropagating through log P(x) = -F(x) - log Z gives the full gradient, log Z's part (the model moments)
    included: against central finite differences of the exact log-likelihood, in float64, for both orientations
    of the enumeration (hidden or visible layer smaller)."""
    torch.manual_seed(1)
    model = RBM(visible, hidden, init_std=0.7).double()
    with torch.no_grad():
        model.visible_bias.normal_(0, 0.5)
        model.hidden_bias.normal_(0, 0.5)
    x = (torch.rand(9, visible) < 0.4).double()
    model.log_prob(x).mean().backward()
    eps = 1e-6
    for p in (model.weight, model.visible_bias, model.hidden_bias):
        numeric = torch.zeros_like(p)
        for i in range(p.numel()):
            with torch.no_grad():
                p.view(-1)[i] += eps
                up = float(model.log_prob(x).mean())
                p.view(-1)[i] -= 2 * eps
                down = float(model.log_prob(x).mean())
                p.view(-1)[i] += eps
            numeric.view(-1)[i] = (up - down) / (2 * eps)
        assert torch.allclose(p.grad, numeric, atol=1e-7), (p.grad, numeric)
    with torch.no_grad():  # without autograd: the same values
        assert torch.allclose(model.log_prob(x), -model.free_energy(x) - model.log_partition().value)
