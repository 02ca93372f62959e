"""Products with a 0/1 left operand as sums of selected rows (genlearn.binary_kernels) and their use in the RBM's
CD/PCD step (genlearn.learning.rbm_gradients).

Oracle: the float64 dense product of the same operands; the sums must agree with it to float32 summation-order
tolerance for densities 0, 1 and in between, odd shapes, empty rows and columns; the CD step with the sums must
give the dense step's gradients and negatives."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genlearn import binary_kernels as bk

pytestmark = pytest.mark.skipif(not bk.available(), reason="numba (the `fast` extra) is not installed")


def _tol(x: torch.Tensor, M: torch.Tensor) -> float:
    """float32 summation-order tolerance: 64 ulps of the largest sum of |terms| that one entry adds up."""
    return 64 * 2.0 ** -24 * max(1.0, float((x.double() @ M.double().abs()).max()))


@pytest.mark.parametrize("density", [0.0, 0.03, 0.13, 0.5, 1.0])
@pytest.mark.parametrize("R,V,H", [(100, 784, 500), (7, 13, 5), (1, 1, 1), (33, 65, 129)])
def test_rows_addmm_and_rows_t_mm_equal_the_dense_products(density, R, V, H):
    g = torch.Generator().manual_seed(R * 1000 + V + H)
    x = (torch.rand(R, V, generator=g) < density).float()
    if R > 2:
        x[1] = 0.0  # an empty row
        x[:, 0] = 0.0  # an empty column (a pixel off in every row)
    W, b, P = torch.randn(V, H, generator=g), torch.randn(H, generator=g), torch.randn(R, H, generator=g)
    out = torch.full((R, H), float("nan"))
    bk.rows_addmm(x, W, b, out)
    expected = b.double() + x.double() @ W.double()
    assert torch.allclose(out.double(), expected, rtol=0, atol=_tol(x, W))
    stats = torch.full((V, H), float("nan"))
    bk.rows_t_mm(x, P, stats)
    assert torch.allclose(stats.double(), x.double().T @ P.double(), rtol=0, atol=_tol(x.T, P))


def test_the_row_index_appends_rows_and_counts_entries_other_than_0_and_1():
    x = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([[1.0, 0.0, 0.0]])
    index = bk.RowIndex(4, 3)
    assert index.add(x, 0) and index.add(y, 2)
    assert index.ends[:3].tolist() == [2, 3, 7]  # row q in its slot q V .. ends[q]
    assert index.indices[:2].tolist() == [1, 2] and index.indices[6:7].tolist() == [0]
    assert index.count(0, 3) == 3 and index.count(2, 3) == 1
    assert index.density(0, 3) == pytest.approx(3 / 9) and index.density(1, 2) == 0.0
    assert not index.add(torch.tensor([[0.0, 0.5, 1.0]]), 3)
    assert not index.add(torch.tensor([[float("nan"), 0.0, 1.0]]), 3)
    with pytest.raises(ValueError, match="do not fit"):
        index.add(torch.zeros(2, 3), 3)


@pytest.mark.parametrize("density", [0.0, 0.2, 1.0])
def test_sampling_with_the_index_equals_the_comparison_and_its_products(density):
    """(u < p) drawn and indexed in one pass, from rows of a wider uniform block (strided rows), equals torch.lt;
    the index then gives the dense products of the samples."""
    g = torch.Generator().manual_seed(11)
    R, V, H = 17, 40, 9
    block = torch.rand(R, V + 5, generator=g)
    u, p = block[:, 5:], torch.full((R, V), density)
    p[3] = torch.rand(V, generator=g)
    out = torch.full((R, V), float("nan"))
    index = bk.RowIndex(R + 2, V)
    index.add(torch.ones(2, V), 0)
    index.sample(u, p, out, r0=2)
    assert torch.equal(out, (u < p).float())
    W, b = torch.randn(V, H, generator=g), torch.randn(H, generator=g)
    got = index.addmm(2, 2 + R, W, b, torch.empty(R, H))
    assert torch.allclose(got.double(), b.double() + out.double() @ W.double(), rtol=0, atol=_tol(out, W))
    P = torch.randn(R + 2, H, generator=g)
    rows = torch.cat([torch.ones(2, V), out])
    stats = index.t_mm(P, torch.empty(V, H))
    assert torch.allclose(stats.double(), rows.double().T @ P.double(), rtol=0, atol=_tol(rows.T, P))


def test_bound_calls_equal_the_checked_ones():
    """bound_addmm / bound_sample run the same kernels on the buffers bound once (AIS's loop)."""
    g = torch.Generator().manual_seed(4)
    R, V, H = 9, 30, 7
    u, p = torch.rand(R, V + 3, generator=g)[:, 3:], torch.rand(R, V, generator=g) * 0.4
    W, b = torch.randn(V, H, generator=g), torch.randn(H, generator=g)
    x, out = torch.empty(R, V), torch.empty(R, H)
    index = bk.RowIndex(R, V)
    draw, product = index.bound_sample(u, p, x), index.bound_addmm(0, R, W, b, out)
    draw()
    product()
    assert torch.equal(x, (u < p).float())
    assert torch.equal(out, index.addmm(0, R, W, b, torch.empty(R, H)))
    assert torch.allclose(out.double(), b.double() + x.double() @ W.double(), rtol=0, atol=_tol(x, W))
    with pytest.raises(ValueError, match="must be"):
        index.bound_addmm(0, R, W, b, torch.empty(R + 1, H))


def test_only_exact_zeros_are_skipped():
    """The kernels count a nonzero as 1 (they are for 0/1 operands): a row of 1s gives the column sums of W."""
    W = torch.arange(12.0).reshape(4, 3)
    out = torch.empty(2, 3)
    bk.rows_addmm(torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]), W, torch.ones(3), out)
    assert out.tolist() == [[1.0 + 0 + 6, 1.0 + 1 + 7, 1.0 + 2 + 8], [1.0, 1.0, 1.0]]


def test_bad_operands_are_refused():
    with pytest.raises(ValueError, match="contiguous"):
        bk.rows_addmm(torch.ones(3, 4).T, torch.ones(3, 2), torch.ones(2), torch.empty(4, 2))
    with pytest.raises(ValueError, match="dtype"):
        bk.rows_t_mm(torch.ones(3, 4, dtype=torch.float64), torch.ones(3, 2), torch.empty(4, 2))


def test_the_chooser_finds_a_crossover_inside_its_grid(monkeypatch):
    """Its interpolation: sums at 0.5, 0.7, 0.9, 1.1, ... the dense time cross 1 between the 3rd and 4th density;
    sums slower everywhere: never (0.0)."""
    times = iter([t for r in (0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7, 1.9) for t in (r, 1.0)])  # (sums, dense) per density
    monkeypatch.setattr(bk, "_best_time", lambda f, *a, **k: next(times))
    lo, hi = bk.Chooser.DENSITIES[2], bk.Chooser.DENSITIES[3]
    assert bk.Chooser._measure("rows", 4, 5, 3) == pytest.approx(lo + 0.5 * (hi - lo))
    monkeypatch.setattr(bk, "_best_time", lambda f, *a, **k: 1.0)
    assert bk.Chooser._measure("stats", 4, 5, 3) == 0.0


@pytest.mark.parametrize("persistent", [False, True])
def test_cd_step_with_sums_equals_the_dense_step(monkeypatch, persistent):
    from genlearn.learning import rbm_gradients as rg

    V, H, B = 50, 30, 20
    g = torch.Generator().manual_seed(3)
    W = 0.3 * torch.randn(V, H, generator=g)
    b, c = torch.randn(V, generator=g) - 1.0, torch.randn(H, generator=g) - 1.0
    x = (torch.rand(B, V, generator=g) < 0.15).float()
    chains = (torch.rand(B, V, generator=g) < 0.15).float()
    results, used = {}, []
    real_rows, real_t, real_add = bk.RowIndex.addmm, bk.RowIndex.t_mm, bk.RowIndex.add
    monkeypatch.setattr(bk.RowIndex, "add", lambda *a: used.append("index") or real_add(*a))
    monkeypatch.setattr(bk.RowIndex, "addmm", lambda *a: used.append("rows") or real_rows(*a))
    monkeypatch.setattr(bk.RowIndex, "t_mm", lambda *a: used.append("stats") or real_t(*a))
    for sums in (False, True):
        monkeypatch.setattr(bk, "ENABLED", sums)
        monkeypatch.setattr(bk.CHOOSER, "crossover", lambda *a: 1.01)  # every product as sums when allowed
        ws = rg.cd_workspace(None, W, B, B, 2)
        ch = chains.clone() if persistent else None
        gen = torch.Generator().manual_seed(5)
        out = rg.cd_step(W, b, c, x, 2, gen, ws, chains=ch)
        results[sums] = [t.clone() for t in out]
        if persistent:  # a second step from the chains the first one left (reusing their index)
            results[sums] += [t.clone() for t in rg.cd_step(W, b, c, x.flip(0), 2, gen, ws, chains=ch)]
    # per step: x, the k = 2 negatives, the chains
    assert used.count("stats") == 1 + persistent and used.count("rows") == (3 + persistent) * (1 + persistent)
    assert used.count("index") == 1 + 2 * persistent  # the batch each step; the chains only at the first step
    for step in range(1 + persistent):
        (v0, dW0, db0, dc0, neg0), (v1, dW1, db1, dc1, neg1) = (r[5 * step:5 * step + 5] for r in
                                                                (results[False], results[True]))
        assert torch.equal(neg0, neg1)  # the same uniforms decide the same states (pre-activations far from ties)
        for a, e in ((v1, v0), (dW1, dW0), (db1, db0), (dc1, dc0)):
            assert torch.allclose(a, e, rtol=1e-5, atol=1e-6)


def test_cd_step_keeps_dense_products_for_gray_batches(monkeypatch):
    from genlearn.learning import rbm_gradients as rg

    monkeypatch.setattr(bk.CHOOSER, "crossover", lambda *a: 1.01)
    monkeypatch.setattr(bk.RowIndex, "addmm", lambda *a: pytest.fail("sums on gray levels"))
    monkeypatch.setattr(bk.RowIndex, "t_mm", lambda *a: pytest.fail("sums on gray levels"))
    W = torch.randn(6, 4)
    x = torch.rand(3, 6)  # gray levels in (0, 1): not 0/1 rows
    ws = rg.cd_workspace(None, W, 3, 3, 1)
    rg.cd_step(W, torch.zeros(6), torch.zeros(4), x, 1, torch.Generator().manual_seed(0), ws)


def test_the_environment_turns_the_sums_off(monkeypatch):
    from genlearn.errors import ConfigError

    x = torch.zeros(4, 8)
    monkeypatch.setattr(bk.CHOOSER, "crossover", lambda *a: 1.01)
    assert bk.usable(x) and bk.faster_at(0.0, "rows", 4, 8, 3)
    monkeypatch.setenv("GENLEARN_BINARY_SUMS", "off")
    assert not bk.usable(x)
    monkeypatch.setenv("GENLEARN_BINARY_SUMS", "sometimes")
    with pytest.raises(ConfigError, match="GENLEARN_BINARY_SUMS must be auto or off"):
        bk.usable(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8, torch.int32, torch.int64])
def test_count_non_binary_against_torch(dtype):
    """The compiled count of entries other than 0 and 1 equals torch's count, for 0/1 data with planted values
    (NaN, +-inf, -0.0, 0.5, 2, -1, tiny): floats and integers; None for what the kernel does not take."""
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(301, 17, generator=g) < 0.3).to(dtype)
    assert bk.count_non_binary(x) is None  # small: torch's checks (no kernel loaded at a small run's start)
    assert bk.count_non_binary(x, min_entries=0) == 0
    planted = [2, -1] if not dtype.is_floating_point else [float("nan"), float("inf"), -float("inf"), -0.0, 0.5,
                                                             2.0, -1.0, 1e-45, 1.0 + 2**-23]
    if dtype == torch.uint8:
        planted = [2, 255]
    flat = x.view(-1)
    for i, v in enumerate(planted):
        flat[7 + 13 * i] = v
    expected = int(((x != 0) & (x != 1)).sum()) if not dtype.is_floating_point else int(
        (~((x == 0) | (x == 1))).sum())
    assert bk.count_non_binary(x, min_entries=0) == expected > 0
    assert bk.count_non_binary(x.T, min_entries=0) is None  # not contiguous
    assert bk.count_non_binary(torch.ones(3, dtype=torch.bool), min_entries=0) is None
    big = torch.zeros(bk.COMPILED_COUNT_MIN, dtype=dtype)
    big[5] = 2
    assert bk.count_non_binary(big) == 1  # from COMPILED_COUNT_MIN entries on, the compiled count


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_count_outside_unit_equals_numpy(dtype):
    """The compiled count of entries outside [0, 1] (NaN and inf included) equals numpy's, above and below the
    size where the kernel takes over."""
    from genlearn.binary_kernels import COMPILED_COUNT_MIN, count_outside_unit

    rng = np.random.default_rng(0)
    for size in (1000, COMPILED_COUNT_MIN + 7):
        x = rng.random(size).astype(dtype)
        x[[3, 17, 500]] = [-0.5, 1.0000001, np.nan]
        x[-1] = np.inf
        expected = int(np.count_nonzero(~((x >= 0) & (x <= 1))))
        assert expected == 4 and count_outside_unit(x.reshape(-1, 1)) == expected
