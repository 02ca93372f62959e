"""The fused CD-1 / PCD-1 step (genlearn.cd_kernels through rbm_gradients.cd_step) against a float64 oracle of the
same step with the same uniforms, and against the step of single kernels; its fallbacks (gray batches, densities
above the sums' crossover)."""
import pytest
import torch

from genlearn import binary_kernels as bk
from genlearn import cd_kernels
from genlearn.learning import rbm_gradients as rg

pytestmark = pytest.mark.skipif(not cd_kernels.available(), reason="numba is not installed")


def _problem(V, H, B, N, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = 0.3 * torch.randn(V, H, generator=g)
    b, c = torch.randn(V, generator=g) - 1.0, torch.randn(H, generator=g) - 0.5
    x = (torch.rand(B, V, generator=g) < density).float()
    chains = (torch.rand(N, V, generator=g) < 0.2).float()
    chain_probs = torch.rand(N, H, generator=g)
    u = torch.rand(1, N, H + V, generator=g)
    return W, b, c, x, chains, chain_probs, u


def _sampled(states, u, p):
    """states = [u < p] (p in float64), up to ties closer than float32's rounding of p."""
    expected = (u.double() < p).to(states.dtype)
    return bool(((states == expected) | ((u.double() - p).abs() < 1e-5)).all())


def _oracle(W, b, c, x, h, v, chain_probs, u, pcd):
    """The step in float64 from its own samples h and v~ (which the test checks against the float64
    probabilities): (value, dW, db, dc, P(h|v~))."""
    W, b, c, x, h, v = (t.double() for t in (W, b, c, x, h, v))
    B, N, H = x.shape[0], v.shape[0], W.shape[1]
    p_data = torch.sigmoid(c + x @ W)
    q = chain_probs.double() if pcd else p_data
    assert _sampled(h, u[0, :, :H], q)
    assert _sampled(v, u[0, :, H:], torch.sigmoid(b + h @ W.T))
    p_neg = torch.sigmoid(c + v @ W)

    def free(rows):
        return -(rows @ b) - torch.nn.functional.softplus(c + rows @ W).sum(1)

    value = free(x).mean() - free(v).mean()
    dW = -(x.T @ p_data) / B + (v.T @ p_neg) / N
    db = -x.mean(0) + v.mean(0)
    dc = -p_data.mean(0) + p_neg.mean(0)
    return value, dW, db, dc, p_neg


def _close(actual, expected, scale=1.0):
    return torch.allclose(actual.double(), expected, rtol=1e-5, atol=2e-6 * scale)


@pytest.mark.parametrize("pcd", [False, True])
@pytest.mark.parametrize("density", [0.0, 0.13, 0.5, 1.0])
def test_the_fused_step_equals_the_float64_step(monkeypatch, pcd, density):
    """Every product as sums (crossover above 1): odd shapes, N != B for PCD, densities 0 and 1 (every row empty,
    every row full)."""
    monkeypatch.setattr(bk.CHOOSER, "crossover", lambda *a: 1.01)
    V, H, B = 37, 23, 9
    N = 6 if pcd else B
    W, b, c, x, chains, chain_probs, u = _problem(V, H, B, N, density)
    ws = rg.cd_workspace(None, W, B, N, 1)
    value, dW, db, dc, neg = rg.cd_step(W, b, c, x, 1, None, ws, chains if pcd else None, uniforms=u,
                                        chain_probs=chain_probs if pcd else None)
    assert "fused" in ws  # the fused passes ran
    ev, edW, edb, edc, ep = _oracle(W, b, c, x, ws["hidden"], neg, chain_probs, u, pcd)
    assert _close(value, ev, 10.0) and _close(dW, edW) and _close(db, edb) and _close(dc, edc)
    if pcd:
        assert torch.equal(chains, neg)  # the chains advanced to v~
        assert _close(ws["chain_probs"], ep)  # P(h|v~) kept for the next step


@pytest.mark.parametrize("tasks", [1, 3, 50])
def test_any_split_of_the_rows_into_tasks_gives_the_same_step(monkeypatch, tasks):
    """The passes' row loops in 1, 3 or 50 tasks (more tasks than rows: some empty): the float64 step still."""
    monkeypatch.setattr(bk.CHOOSER, "crossover", lambda *a: 1.01)
    monkeypatch.setattr(cd_kernels, "tasks", lambda: tasks)
    V, H, B, N = 37, 23, 9, 6
    W, b, c, x, chains, chain_probs, u = _problem(V, H, B, N, 0.13)
    ws = rg.cd_workspace(None, W, B, N, 1)
    value, dW, db, dc, neg = rg.cd_step(W, b, c, x, 1, None, ws, chains, uniforms=u, chain_probs=chain_probs)
    assert ws["fused"]["tasks"] == tasks
    ev, edW, edb, edc, ep = _oracle(W, b, c, x, ws["hidden"], neg, chain_probs, u, True)
    assert _close(value, ev, 10.0) and _close(dW, edW) and _close(db, edb) and _close(dc, edc)
    assert _close(ws["chain_probs"], ep)


def test_the_fused_step_equals_the_step_of_single_kernels(monkeypatch):
    """Two PCD steps with the same generator through both: the same samples, gradients equal to float32
    summation order; also the second step's h drawn from the kept P(h|v~)."""
    V, H, B = 60, 40, 12
    W, b, c, x, chains, chain_probs, _ = _problem(V, H, B, B, 0.15, seed=4)
    results = {}
    for fused in (True, False):
        monkeypatch.setattr(cd_kernels, "ENABLED", fused)
        ws = rg.cd_workspace(None, W, B, B, 1)
        ch, probs, gen, out = chains.clone(), chain_probs.clone(), torch.Generator().manual_seed(2), []
        for step in range(2):
            value, dW, db, dc, neg = rg.cd_step(W, b, c, x.roll(step, 0), 1, gen, ws, ch, chain_probs=probs)
            out += [value.clone(), dW.clone(), db.clone(), dc.clone(), neg.clone()]
            probs = ws["chain_probs"]
        results[fused] = out
        assert ("fused" in ws) == fused
    for a, e in zip(results[True], results[False]):
        if e.dim() == 2 and e.shape[1] == V:
            assert torch.equal(a, e)  # the negatives
        else:
            assert torch.allclose(a, e, rtol=1e-5, atol=1e-6)


def test_a_gray_batch_takes_the_general_step(monkeypatch):
    """Entries other than 0 and 1: the fused data pass returns -1 and the general step runs with the same uniforms
    (dense products): the same result as with the fused passes off."""
    V, H, B = 20, 10, 5
    W, b, c, _, _, _, u = _problem(V, H, B, B, 0.2)
    x = torch.rand(B, V, generator=torch.Generator().manual_seed(9))
    out = {}
    for fused in (True, False):
        monkeypatch.setattr(cd_kernels, "ENABLED", fused)
        ws = rg.cd_workspace(None, W, B, B, 1)
        out[fused] = [t.clone() for t in rg.cd_step(W, b, c, x, 1, torch.Generator().manual_seed(1), ws)]
    for a, e in zip(out[True], out[False]):
        assert torch.equal(a, e)


@pytest.mark.parametrize("pcd", [True, False])
def test_dense_products_above_the_crossover(monkeypatch, pcd):
    """Sums for the batch (B rows) only: the negatives' product (N rows) and the statistics dense, inside the
    fused step; the result still equals the float64 step (the tail then scales the negatives' probabilities and,
    for PCD, keeps them: the negative pass did neither)."""
    V, H, B = 30, 16, 8
    N = 5 if pcd else B
    W, b, c, x, chains, chain_probs, u = _problem(V, H, B, N, 0.2, seed=3)
    if not pcd:
        chains = chain_probs = None
    asked = []  # the plan asks for the batch's limit first, then the negatives', then the statistics'
    monkeypatch.setattr(bk.CHOOSER, "crossover", lambda kind, R, *a: asked.append(kind) or (
        1.01 if len(asked) == 1 else 0.0))
    ws = rg.cd_workspace(None, W, B, N, 1)
    dense_calls = []
    real_addmm, real_mm, real_bound = rg.products.addmm, rg.products.mm, rg.products.bound_addmm
    monkeypatch.setattr(rg.products, "addmm", lambda *a, **k: dense_calls.append("addmm") or real_addmm(*a, **k))

    def bound_addmm(*args):  # the fused step's h W^T, bound once per workspace
        run = real_bound(*args)
        return lambda: dense_calls.append("addmm") or run()
    monkeypatch.setattr(rg.products, "bound_addmm", bound_addmm)
    monkeypatch.setattr(rg.products, "mm", lambda *a, **k: dense_calls.append("mm") or real_mm(*a, **k))
    value, dW, db, dc, neg = rg.cd_step(W, b, c, x, 1, None, ws, chains, uniforms=u, chain_probs=chain_probs)
    assert "fused" in ws and dense_calls == ["addmm", "addmm", "mm"]  # h W^T, then v~ W and the statistics
    assert asked == ["rows", "rows", "stats"]
    ev, edW, edb, edc, ep = _oracle(W, b, c, x, ws["hidden"], neg, chain_probs, u, pcd)
    assert _close(value, ev, 10.0) and _close(dW, edW) and _close(db, edb) and _close(dc, edc)
    if pcd:
        assert _close(ws["chain_probs"], ep)


def test_a_dense_batch_takes_the_general_step(monkeypatch):
    """More ones in the batch than the sums take: the general step (which then takes dense products)."""
    V, H, B = 24, 12, 6
    W, b, c, x, chains, chain_probs, u = _problem(V, H, B, B, 0.5)
    monkeypatch.setattr(bk.CHOOSER, "crossover", lambda *a: 0.1)
    general = []
    monkeypatch.setattr(rg.products, "addmm", lambda *a, **k: general.append(1) or torch.addmm(*a, **k))
    ws = rg.cd_workspace(None, W, B, B, 1)
    value, dW, db, dc, neg = rg.cd_step(W, b, c, x, 1, None, ws, chains, uniforms=u, chain_probs=chain_probs)
    assert len(general) == 3  # x W, h W^T, v~ W: all dense
    ev, edW, edb, edc, _ = _oracle(W, b, c, x, ws["hidden"], neg, chain_probs, u, True)
    assert _close(value, ev, 10.0) and _close(dW, edW) and _close(db, edb) and _close(dc, edc)


@pytest.mark.parametrize("setting", [{"k": 2}, {"elementwise": "torch"}, {"chain_probs": None}])
def test_the_general_step_where_the_fused_one_does_not_apply(monkeypatch, setting):
    """CD-2, GENLEARN_ELEMENTWISE=torch and PCD without kept hidden probabilities keep the general step."""
    V, H, B = 20, 10, 5
    W, b, c, x, chains, chain_probs, _ = _problem(V, H, B, B, 0.2)
    if "elementwise" in setting:
        monkeypatch.setenv("GENLEARN_ELEMENTWISE", setting["elementwise"])
    k = setting.get("k", 1)
    ws = rg.cd_workspace(None, W, B, B, k)
    rg.cd_step(W, b, c, x, k, torch.Generator().manual_seed(0), ws, chains,
               chain_probs=setting.get("chain_probs", chain_probs))
    assert "fused" not in ws


def test_the_bound_uniforms_are_those_of_uniform_():
    """The fused step refills its uniforms by a call bound once per generator: the numbers of numerics.uniform_
    for the same generator state, step after step, and a new generator is bound anew."""
    from genlearn.numerics import uniform_

    W = torch.zeros(40, 30)
    ws = rg.cd_workspace(None, W, 10, 10, 1)
    for seed in (1, 2):
        gen, ref = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        for _ in range(2):
            assert torch.equal(rg._refill_uniforms(ws, gen).clone(), uniform_(torch.empty(1, 10, 70), ref))
