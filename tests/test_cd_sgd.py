"""Plain SGD steps of CD-1 / PCD-1 with the update applied inside the fused passes (rbm_gradients.cd_sgd_step,
rules.ContrastiveDivergence.sgd_step, and their users: the scikit-learn wrapper's passes and the Trainer's plain
SGD steps) against cd_step's gradient followed by p -= lr g, with the same uniforms; their fallbacks."""
import warnings

import numpy as np
import pytest
import torch

from genlearn import binary_kernels as bk
from genlearn import cd_kernels
from genlearn.learning import rbm_gradients as rg

pytestmark = pytest.mark.skipif(not cd_kernels.available(), reason="numba is not installed")


def _problem(V=50, H=30, rows=40, B=10, N=10, density=0.15, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = 0.3 * torch.randn(V, H, generator=g)
    b, c = torch.randn(V, generator=g) - 1.0, torch.randn(H, generator=g) - 0.5
    source = (torch.rand(rows, V, generator=g) < density).float()
    order = torch.randperm(rows, generator=g)[:B]
    chains = (torch.rand(N, V, generator=g) < 0.2).float()
    chain_probs = torch.rand(N, H, generator=g)
    return W, b, c, source, order, chains, chain_probs


def _both(W, b, c, source, order, chains, chain_probs, lr=0.05, k=1):
    """((W, b, c, value, chains, kept probs) after cd_sgd_step, the same after cd_step and p -= lr g), each from
    copies of the inputs and a generator seeded alike, and the first's workspace."""
    out, spaces = [], []
    for fold in (True, False):
        P = [t.clone() for t in (W, b, c)]
        ch = None if chains is None else chains.clone()
        probs = None if chain_probs is None else chain_probs.clone()
        ws = rg.cd_workspace(None, W, order.shape[0], order.shape[0] if ch is None else ch.shape[0], k)
        gen = torch.Generator().manual_seed(3)
        if fold:
            value = rg.cd_sgd_step(*P, source, order, lr, k, gen, ws, ch, probs)
        else:
            value, dW, db, dc, _ = rg.cd_step(*P, source[order], k, gen, ws, ch, chain_probs=probs)
            for p, g in zip(P, (dW, db, dc)):
                p.sub_(g, alpha=lr)
        out.append((*P, value, ch, ws["chain_probs"].clone()))
        spaces.append(ws)
    return out, spaces[0]


def _assert_same(a, e, pcd):
    for x, y in zip(a[:3], e[:3]):  # W, b, c: to float32 summation order
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    assert float(a[3]) == pytest.approx(float(e[3]), rel=1e-5, abs=1e-5)
    if pcd:
        assert torch.equal(a[4], e[4])  # the same negatives
        torch.testing.assert_close(a[5], e[5], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pcd", [False, True])
@pytest.mark.parametrize("dense_stats", [False, True])
def test_the_folded_step_equals_the_gradient_then_the_update(monkeypatch, pcd, dense_stats):
    """The batch read from its source rows in place and the update applied in the tail (every product as sums,
    dW never stored) or with dW by the dense product (the statistics' crossover at 0: the caller's update): the
    same parameters as cd_step's gradient and the three subtractions."""
    monkeypatch.setattr(bk.CHOOSER, "crossover", lambda kind, *a: 0.0 if dense_stats and kind == "stats" else 1.01)
    W, b, c, source, order, chains, chain_probs = _problem()
    calls = []
    original = cd_kernels._tail
    monkeypatch.setattr(cd_kernels, "_tail", lambda *a: calls.append(a[-3]) or original(*a))
    (folded, plain), ws = _both(W, b, c, source, order, chains if pcd else None, chain_probs if pcd else None)
    assert calls and calls[0] == pytest.approx(0.05)  # the fused passes took the rate
    assert not torch.equal(folded[0], W)  # the parameters moved
    _assert_same(folded, plain, pcd)


def test_the_folded_step_moves_the_version_counters_and_keeps_dW(monkeypatch):
    """The parameters change through numpy views: their version counters move as after p.sub_ (caches keyed on
    them see the change), and the workspace's dW is left as it was (the update never stores it)."""
    monkeypatch.setattr(bk.CHOOSER, "crossover", lambda *a: 1.01)
    W, b, c, source, order, chains, chain_probs = _problem()
    ws = rg.cd_workspace(None, W, 10, 10, 1)
    ws["dW"].fill_(7.0)
    versions = [p._version for p in (W, b, c)]
    rg.cd_sgd_step(W, b, c, source, order, 0.05, 1, torch.Generator().manual_seed(0), ws, chains, chain_probs)
    assert all(p._version > v for p, v in zip((W, b, c), versions))
    assert bool((ws["dW"] == 7.0).all())


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("pcd", [False, True])
def test_a_step_without_its_value_moves_the_parameters_alike(monkeypatch, fused, pcd):
    """with_value=False (the scikit-learn wrapper's steps): None returned, the fused tail told to skip the value's
    softplus pass, and the parameters, chains and kept probabilities bit-equal to those of the step with its value
    (the value pass writes none of them); the general step (fused passes off) returns None too."""
    monkeypatch.setattr(bk.CHOOSER, "crossover", lambda *a: 1.01)
    monkeypatch.setattr(cd_kernels, "ENABLED", fused)
    flags = []
    original = cd_kernels._tail
    monkeypatch.setattr(cd_kernels, "_tail", lambda *a: flags.append(a[-2]) or original(*a))
    W, b, c, source, order, chains, chain_probs = _problem()
    out = []
    for with_value in (True, False):
        P = [t.clone() for t in (W, b, c)]
        ch, probs = (chains.clone(), chain_probs.clone()) if pcd else (None, None)
        ws = rg.cd_workspace(None, W, 10, 10, 1)
        value = rg.cd_sgd_step(*P, source, order, 0.05, 1, torch.Generator().manual_seed(3), ws, ch, probs,
                               with_value=with_value)
        assert (value is None) == (not with_value)
        out.append([*P, *((ch, ws["chain_probs"]) if pcd else ())])
    assert flags == ([True, False] if fused else [])
    assert not torch.equal(out[0][0], W)
    for a, e in zip(*out):
        assert torch.equal(a, e)


@pytest.mark.parametrize("case", ["gray", "cd-2", "off"])
def test_fallbacks_take_the_gradient_then_the_update(monkeypatch, case):
    """A gray batch (the fused data pass refuses it), CD-2, and the fused passes switched off: cd_step's general
    step on the gathered batch, then the update, the same numbers."""
    W, b, c, source, order, chains, chain_probs = _problem()
    k = 2 if case == "cd-2" else 1
    if case == "gray":
        source = source * 0.5 + 0.25
    if case == "off":
        monkeypatch.setattr(cd_kernels, "ENABLED", False)
    tails = []
    original = cd_kernels._tail
    monkeypatch.setattr(cd_kernels, "_tail", lambda *a: tails.append(1) or original(*a))
    (folded, plain), _ = _both(W, b, c, source, order, chains, chain_probs, k=k)
    assert not tails  # the fused tail never ran
    _assert_same(folded, plain, True)


def _rule_and_model(persistent=True):
    from genlearn.learning.rules import make_rule
    from genlearn.models.rbm import RBM

    model = RBM(50, 30, init_std=0.1, seed=1)
    rule = make_rule("contrastive-divergence", {"k": 1, "persistent": persistent, "n_chains": 10})
    rule.check(model)
    return model, rule


def test_the_rule_step_equals_compute_gradient_then_the_update():
    """Six steps of rules.ContrastiveDivergence.sgd_step (the first one without kept probabilities, the last on a
    short batch of 7 rows: a workspace of its own) against compute_gradient and p -= lr p.grad: the same
    parameters, chains and kept probabilities; no p.grad written."""
    _, _, _, source, _, _, _ = _problem(rows=60)
    runs = []
    for fold in (True, False):
        model, rule = _rule_and_model()
        gen = torch.Generator().manual_seed(5)
        for step in range(6):
            order = torch.arange(step * 10, step * 10 + (10 if step < 5 else 7))
            if fold:
                rule.sgd_step(model, source, order, 0.1, gen)
                assert all(p.grad is None for p in model.parameters())
            else:
                rule.compute_gradient(model, source[order], gen)
                with torch.no_grad():
                    for p in model.parameters():
                        p.sub_(p.grad, alpha=0.1)
        runs.append([t.detach().clone() for t in (*model.parameters(), rule.chains, rule.chain_probs)])
    for a, e in zip(*runs):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_new_chains_start_with_their_hidden_probabilities(monkeypatch, fused):
    """New PCD chains (the first batch's rows) get P(h | chains; theta_0) as their kept probabilities, so that
    the first step takes the fused passes too (one tail call), and that step equals cd_step drawing its first
    hidden sample from the chains itself (chain_probs=None: one more product) with the same uniforms."""
    monkeypatch.setattr(bk.CHOOSER, "crossover", lambda *a: 1.01)  # the sums (and so the fused passes) at any density
    monkeypatch.setattr(cd_kernels, "ENABLED", fused)
    tails = []
    original = cd_kernels._tail
    monkeypatch.setattr(cd_kernels, "_tail", lambda *a: tails.append(1) or original(*a))
    _, _, _, source, _, _, _ = _problem(rows=60)
    order = torch.arange(10)
    model, rule = _rule_and_model()
    W, b, c = (t.detach().clone() for t in model.parameters())
    rule.sgd_step(model, source, order, 0.1, torch.Generator().manual_seed(5))
    assert len(tails) == (1 if fused else 0)
    ws = rg.cd_workspace(None, W, 10, 10, 1)
    value, dW, db, dc, negatives = rg.cd_step(W, b, c, source[order], 1, torch.Generator().manual_seed(5), ws,
                                              source[order].clone(), chain_probs=None)
    assert torch.equal(rule.chains, negatives)
    for p, g, p0 in zip(model.parameters(), (dW, db, dc), (W, b, c)):
        torch.testing.assert_close(p.detach(), p0 - 0.1 * g, rtol=1e-5, atol=1e-6)
    expected = torch.sigmoid(source[order] @ W + c)  # what a new rule's chains start with, before the step
    fresh_model, fresh_rule = _rule_and_model()
    fresh_rule._step_state(fresh_model, 10, lambda: source[order])
    torch.testing.assert_close(fresh_rule.chain_probs, expected, rtol=1e-5, atol=1e-6)


def test_the_rule_step_refuses_a_source_of_the_wrong_width():
    from genlearn.errors import DataError

    model, rule = _rule_and_model()
    with pytest.raises(DataError, match=r"batches of shape \(B, 50\)"):
        rule.sgd_step(model, torch.zeros(20, 49), torch.arange(10), 0.1, None)


def test_the_wrapper_pass_uses_the_folded_step(monkeypatch):
    """genlearn.sklearn.BernoulliRBM's passes go through sgd_pass (fit: rows by the epoch's permutation;
    partial_fit: in order), without the steps' values, and end where compute_gradient with the update would."""
    from genlearn.learning.rules import ContrastiveDivergence
    from genlearn.sklearn import BernoulliRBM

    X = (np.random.default_rng(0).random((95, 40)) < 0.2).astype(np.float64)
    calls = []
    original = ContrastiveDivergence.sgd_pass
    monkeypatch.setattr(ContrastiveDivergence, "sgd_pass", lambda self, *a, **k: calls.append((a[2].clone(), a[4], k))
                        or original(self, *a, **k))
    folded = BernoulliRBM(n_components=12, batch_size=20, n_iter=2, random_state=0).fit(X)
    assert len(calls) == 2 and all(bs == 20 and k == {"with_value": False} for _, bs, k in calls)
    assert sorted(calls[0][0].tolist()) == list(range(95)) and calls[0][0].tolist() != list(range(95))
    BernoulliRBM(n_components=12, batch_size=20, random_state=0).partial_fit(X)
    assert calls[-1][0].tolist() == list(range(95))  # partial_fit: in order
    monkeypatch.delattr(ContrastiveDivergence, "sgd_pass")  # the pass of compute_gradient and p.sub_
    plain = BernoulliRBM(n_components=12, batch_size=20, n_iter=2, random_state=0).fit(X)
    np.testing.assert_allclose(folded.components_, plain.components_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(folded.intercept_visible_, plain.intercept_visible_, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("case", ["pcd", "cd", "gray batch", "fused off"])
def test_a_pass_equals_its_steps_bit_for_bit(monkeypatch, case):
    """rules.ContrastiveDivergence.sgd_pass (the checks made once per run of full batches) against sgd_step on
    each batch: the same values, parameters, chains and kept probabilities, bit for bit, over two passes of 67 rows
    in batches of 10 (a short last batch); a gray batch in the middle falls back to the general step; with the
    fused passes off every step is the general one. The steady steps did take the fused passes."""
    monkeypatch.setattr(bk.CHOOSER, "crossover", lambda *a: 1.01)
    if case == "fused off":
        monkeypatch.setattr(cd_kernels, "ENABLED", False)
    _, _, _, source, _, _, _ = _problem(rows=67)
    order = torch.randperm(67, generator=torch.Generator().manual_seed(1))
    if case == "gray batch":
        source[order[30:40]] = 0.5  # the fourth batch of each pass
    tails, stepped = [], []
    original = cd_kernels._tail
    monkeypatch.setattr(cd_kernels, "_tail", lambda *a: tails.append(1) or original(*a))
    runs = []
    for by_pass in (True, False):
        model, rule = _rule_and_model(persistent=case != "cd")
        gen = torch.Generator().manual_seed(5)
        values = []
        for _ in range(2):
            if by_pass:
                step = rule.sgd_step
                rule.sgd_step = lambda *a, **k: stepped.append(1) or step(*a, **k)
                values += rule.sgd_pass(model, source, order, 0.1, 10, gen)
                del rule.sgd_step
            else:
                values += [rule.sgd_step(model, source, order[s:s + 10], 0.1, gen) for s in range(0, 67, 10)]
        chains = [] if case == "cd" else [rule.chains, rule.chain_probs]
        runs.append(([float(v) for v in values], [t.detach().clone() for t in (*model.parameters(), *chains)]))
    assert runs[0][0] == runs[1][0] and len(runs[0][0]) == 14
    for a, e in zip(runs[0][1], runs[1][1]):
        assert torch.equal(a, e)
    assert (len(tails) > 0) == (case != "fused off")
    assert len(stepped) == 4  # per pass: its first batch and its short last one; the others went straight through
    model, rule = _rule_and_model()
    assert rule.sgd_pass(model, source, order, 0.1, 10, None, with_value=False) is None


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_the_trainer_folds_plain_sgd_steps_only(monkeypatch, optimizer):
    """Trainer.train_epoch with plain SGD steps calls the rule's sgd_step (no optimizer step) and ends where
    compute_gradient with LayoutSGD's step would; with momentum it keeps compute_gradient and the optimizer."""
    from genlearn import Dataset
    from genlearn.learning.rules import ContrastiveDivergence
    from genlearn.learning.trainer import TrainConfig, Trainer

    x = (torch.rand(120, 40, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    ds = Dataset(name="toy", kind="binary", train=x, valid=None, test=None)
    calls = []
    original = ContrastiveDivergence.sgd_step
    monkeypatch.setattr(ContrastiveDivergence, "sgd_step", lambda self, *a: calls.append(1) or original(self, *a))
    results = []
    for fold in (True, False):
        if not fold:
            monkeypatch.setattr(Trainer, "_folded_sgd_step", lambda self: None)
        model, rule = _rule_and_model_of_width(40)
        cfg = TrainConfig(epochs=2, lr=0.05, optimizer=optimizer, batch_size=30, seed=0, progress=False)
        trainer = Trainer(model, ds, cfg, rule=rule)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. torch's "lr_scheduler.step() before optimizer.step()"
            losses = [trainer.train_epoch() for _ in range(2)]
        results.append(([p.detach().clone() for p in model.parameters()], losses))
        if fold:
            # sgd_step on the first batch of each epoch; the others through the rule's sgd_stepper
            assert len(calls) == (2 if optimizer == "sgd" else 0)
    (folded, folded_losses), (plain, plain_losses) = results
    for a, e in zip(folded, plain):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)
    assert folded_losses == pytest.approx(plain_losses, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("batch_size", [50, 120, None])
def test_the_trainer_steps_rows_in_place_as_on_its_sampled_batches(monkeypatch, batch_size, fused):
    """The Trainer's plain SGD epochs through the rule's sgd_stepper (x read in place at each batch's row numbers,
    the last batch short with 120 rows in batches of 50) reach, bit for bit, the parameters, chains and losses of
    the folded step on the sampler's unpacked batches, and draw the same random numbers; with the fused passes
    (which then took every step) and without."""
    from genlearn import Dataset
    from genlearn.learning.trainer import TrainConfig, Trainer

    monkeypatch.setattr(bk.CHOOSER, "crossover", lambda *a: 1.01 if fused else 0.0)
    tails = []
    original = cd_kernels._tail
    monkeypatch.setattr(cd_kernels, "_tail", lambda *a: tails.append(1) or original(*a))

    x = (torch.rand(120, 40, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    ds = Dataset(name="toy", kind="binary", train=x, valid=None, test=None)
    runs = []
    for in_place in (True, False):
        if not in_place:
            monkeypatch.setattr(Trainer, "_sgd_stepper", lambda self, x: None)
        model, rule = _rule_and_model_of_width(40)
        cfg = TrainConfig(epochs=2, lr=0.05, optimizer="sgd", batch_size=batch_size, seed=0, progress=False)
        trainer = Trainer(model, ds, cfg, rule=rule)
        losses = [trainer.train_epoch() for _ in range(2)]
        runs.append((losses, [t.clone() for t in (*model.parameters(), rule.chains, rule.chain_probs)],
                     trainer.generator.get_state()))
    assert runs[0][0] == runs[1][0]
    for a, e in zip(runs[0][1], runs[1][1]):
        assert torch.equal(a, e)
    assert torch.equal(runs[0][2], runs[1][2])
    steps = 2 * 2 * {50: 3, 120: 1, None: 1}[batch_size]
    assert len(tails) == (steps if fused else 0)


def _rule_and_model_of_width(V):
    from genlearn.learning.rules import make_rule
    from genlearn.models.rbm import RBM

    model = RBM(V, 20, init_std=0.1, seed=1)
    rule = make_rule("contrastive-divergence", {"k": 1, "persistent": True, "n_chains": 30})
    rule.check(model)
    return model, rule
