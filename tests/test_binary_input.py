"""The linear layer on 0/1 rows as sums of selected rows inside autograd (genlearn.models.binary_input), and MADE's
use of it for the products that read its input: the same log-likelihoods and gradients as the dense products."""
import pytest
import torch

from genlearn import binary_kernels as bk
from genlearn.models import binary_input
from genlearn.models.made import MADE

pytestmark = pytest.mark.skipif(not bk.available(), reason="numba is not installed")


@pytest.fixture
def counted(monkeypatch):
    """Every product as sums where allowed (crossover above any density); counts of the sums that ran."""
    used = {"rows": 0, "stats": 0}
    real_rows, real_t = bk.RowIndex.addmm, bk.RowIndex.t_mm
    monkeypatch.setattr(bk.CHOOSER, "crossover", lambda *a: 1.01)
    monkeypatch.setattr(bk.RowIndex, "addmm", lambda *a: used.__setitem__("rows", used["rows"] + 1) or real_rows(*a))
    monkeypatch.setattr(bk.RowIndex, "t_mm", lambda *a: used.__setitem__("stats", used["stats"] + 1) or real_t(*a))
    return used


def _made(direct: bool, masks: int, hidden=(20, 15)) -> MADE:
    m = MADE(30, hidden=list(hidden), masks=masks, order="random", direct=direct, seed=1)
    with torch.no_grad():
        if direct:
            m.direct_weight.normal_(0.0, 0.3)
    return m


def _loss_and_grads(model: MADE, x: torch.Tensor, k: int) -> tuple:
    model.zero_grad()
    loss = -model.log_prob_mask(x, k).mean()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("direct,masks,hidden", [(True, 1, (20,)), (True, 3, (20, 15)), (False, 2, (20, 15))])
@pytest.mark.parametrize("density", [0.0, 0.2, 1.0])
def test_made_sums_equal_the_dense_products(monkeypatch, counted, direct, masks, hidden, density):
    """log P_k(x) and the gradient of every parameter, sums against dense products (float32 summation order);
    odd sizes, an empty row; the sums ran (forward and weight gradient of the first layer, and of A)."""
    model = _made(direct, masks, hidden)
    g = torch.Generator().manual_seed(4)
    x = (torch.rand(17, 30, generator=g) < density).float()
    x[3] = 0.0
    results = {}
    for sums in (False, True):
        monkeypatch.setattr(bk, "ENABLED", sums)
        results[sums] = _loss_and_grads(model, x, masks - 1)
    assert counted == {"rows": 1 + direct, "stats": 1 + direct}
    (loss0, grads0), (loss1, grads1) = results[False], results[True]
    assert torch.allclose(loss1, loss0, rtol=1e-6, atol=1e-6)
    for a, e in zip(grads1, grads0):
        assert torch.allclose(a, e, rtol=1e-5, atol=1e-6)
    # the gradients have their parameters' layouts (the input-major weights' transposes contiguous)
    assert all(p.grad.stride() == p.stride() for p in model.parameters())
    assert model.layers[0].weight.T.is_contiguous()


def test_made_keeps_the_dense_products_for_gray_levels_and_float64(counted):
    model = _made(True, 1)
    x = torch.rand(5, 30)  # gray levels: not 0/1 rows
    model.log_prob_mask(x, 0).sum().backward()
    model64 = _made(True, 1).double()
    model64.log_prob_mask((torch.rand(5, 30) < 0.3).double(), 0).sum().backward()
    assert counted == {"rows": 0, "stats": 0}


def test_a_stale_index_is_rebuilt_for_the_backward_pass(monkeypatch, counted):
    """Two forward passes of one model (its index then holds the second batch) before the first one's backward
    pass: the first batch's gradient, as the dense products give it."""
    model = _made(True, 1)
    g = torch.Generator().manual_seed(5)
    x1, x2 = ((torch.rand(9, 30, generator=g) < 0.3).float() for _ in range(2))
    model.zero_grad()
    loss1 = -model.log_prob_mask(x1, 0).mean()
    model.log_prob_mask(x2, 0)
    loss1.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    monkeypatch.setattr(bk, "ENABLED", False)
    _, dense = _loss_and_grads(model, x1, 0)
    for a, e in zip(grads, dense):
        assert torch.allclose(a, e, rtol=1e-5, atol=1e-6)


def test_the_input_gradient_and_a_smaller_batch(monkeypatch, counted):
    """dL/dx = dy W where the input asks for it; a batch smaller than the kept index's capacity."""
    W_t = torch.randn(12, 7, requires_grad=True)
    b = torch.randn(7, requires_grad=True)
    owner = torch.nn.Linear(1, 1)
    big = (torch.rand(10, 12) < 0.4).float()
    assert binary_input.rows_of(owner, big) is not None
    x = (torch.rand(4, 12) < 0.4).float().requires_grad_()
    rows = binary_input.rows_of(owner, x)
    y = rows.linear(W_t, b)
    weights = torch.randn(4, 7)
    (y * weights).sum().backward()
    got = [t.grad.clone() for t in (x, W_t, b)]
    for t in (x, W_t, b):
        t.grad = None
    (torch.addmm(b, x, W_t) * weights).sum().backward()
    for a, t in zip(got, (x, W_t, b)):
        assert torch.allclose(a, t.grad, rtol=1e-5, atol=1e-6)
    assert counted == {"rows": 1, "stats": 1}


def test_made_state_dict_round_trip_keeps_the_input_major_layout():
    model = _made(True, 2)
    state = {k: v.contiguous().clone() for k, v in model.state_dict().items()}
    other = _made(True, 2)
    other.load_state_dict(state)
    assert other.layers[0].weight.T.is_contiguous() and other.direct_weight.T.is_contiguous()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    x = (torch.rand(6, 30) < 0.3).float()
    assert torch.allclose(model.log_prob(x), other.log_prob(x))


def test_lbfgs_steps_a_made_with_input_major_weights_as_a_contiguous_one():
    """genlearn's L-BFGS gathers gradients by reshape (torch's view(-1) refuses an input-major weight's gradient):
    the same iterates as the same model with contiguous weights."""
    from genlearn.learning.convergence import LBFGS

    x = (torch.rand(40, 30, generator=torch.Generator().manual_seed(6)) < 0.3).float()
    models = [_made(True, 1), _made(True, 1)]
    plain = models[1]
    plain.load_state_dict(models[0].state_dict())
    plain.layers[0].weight = torch.nn.Parameter(plain.layers[0].weight.detach().contiguous())
    plain.direct_weight = torch.nn.Parameter(plain.direct_weight.detach().contiguous())
    assert not models[0].layers[0].weight.is_contiguous() and plain.layers[0].weight.is_contiguous()
    values = []
    for model in models:
        opt = LBFGS(model.parameters())

        def closure(model=model, opt=opt):
            opt.zero_grad()
            loss = -model.log_prob(x).mean()
            loss.backward()
            return loss

        values.append([float(opt.step(closure)) for _ in range(3)])
    assert values[0] == pytest.approx(values[1], rel=1e-5)
    for a, b in zip(models[0].parameters(), plain.parameters()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("density", [0.05, 0.5])
def test_order_agnostic_nade_sums_equal_the_dense_products(monkeypatch, counted, density):
    """Both 0/1 inputs of the order-agnostic NADE's first layer (x * m with W, the mask m with U) as sums: its
    training loss and every gradient as with the dense products, from the same observed sets."""
    from genlearn.models.nade import NADE

    model = NADE(30, hidden=20, order_agnostic=True, seed=2)
    assert model.W.T.is_contiguous() and model.U.T.is_contiguous()
    x = (torch.rand(13, 30, generator=torch.Generator().manual_seed(7)) < density).float()
    results = {}
    for sums in (False, True):
        monkeypatch.setattr(bk, "ENABLED", sums)
        model.zero_grad()
        loss = model.loss(x, torch.Generator().manual_seed(8))
        loss.backward()
        results[sums] = (loss.detach(), [p.grad.clone() for p in model.parameters()])
    assert counted == {"rows": 2, "stats": 2}
    assert torch.allclose(results[True][0], results[False][0], rtol=1e-6, atol=1e-6)
    for a, e in zip(results[True][1], results[False][1]):
        assert torch.allclose(a, e, rtol=1e-5, atol=1e-6)


def test_dense_rows_are_not_indexed(monkeypatch):
    """With the widths of its products given, a batch above the sums' crossovers is left to the dense products."""
    monkeypatch.setattr(bk.CHOOSER, "crossover", lambda *a: 0.3)
    monkeypatch.setattr(bk.RowIndex, "add", lambda *a: pytest.fail("indexed"))
    x = (torch.rand(8, 12) < 0.7).float()
    assert binary_input.rows_of(torch.nn.Linear(1, 1), x, widths=(5,)) is None


def test_fvsbn_sums_equal_the_dense_products(monkeypatch, counted):
    """The FVSBN's logits b + x (W * M)^T on a 0/1 batch as sums: its NLL and gradients as with the dense product,
    a random ordering; the weight stays input-major through a state_dict round trip."""
    from genlearn.models.fvsbn import FVSBN

    model = FVSBN(25, order="random", seed=3)
    with torch.no_grad():
        model.weight.copy_(torch.randn(25, 25, generator=torch.Generator().manual_seed(9)))
    x = (torch.rand(11, 25, generator=torch.Generator().manual_seed(10)) < 0.3).float()
    results = {}
    for sums in (False, True):
        monkeypatch.setattr(bk, "ENABLED", sums)
        model.zero_grad()
        loss = -model.log_prob(x).mean()
        loss.backward()
        results[sums] = (loss.detach(), model.weight.grad.clone(), model.bias.grad.clone())
    assert counted == {"rows": 1, "stats": 1}
    for a, e in zip(results[True], results[False]):
        assert torch.allclose(a, e, rtol=1e-5, atol=1e-6)
    assert torch.equal(results[True][1] * (1 - model.mask), torch.zeros(25, 25))  # masked entries get no gradient
    other = FVSBN(25, order="random", seed=3)
    other.load_state_dict({k: v.contiguous() for k, v in model.state_dict().items()})
    assert other.weight.T.is_contiguous() and torch.equal(other.weight, model.weight)


def test_mixture_e_step_sums_equal_the_float64_products(monkeypatch, counted):
    """The EM statistics of a mixture of Bernoullis on 0/1 rows with both data products as sums (x l^T and r^T x,
    float64): the float64 products' values to rounding; gray rows keep the products."""
    from genlearn.learning import em

    g = torch.Generator().manual_seed(11)
    x = (torch.rand(37, 19, generator=g) < 0.3).float()
    logits = torch.randn(5, 19, generator=g, dtype=torch.float64)
    log_w = torch.log_softmax(torch.randn(5, generator=g, dtype=torch.float64), 0)
    stats = {}
    for sums in (False, True):
        monkeypatch.setattr(bk, "ENABLED", sums)
        stats[sums] = em.e_step(x, log_w, logits, chunk=16)  # three chunks, the last one smaller
    assert counted == {"rows": 3, "stats": 3}
    for name in ("mass", "sums"):
        assert torch.allclose(getattr(stats[True], name), getattr(stats[False], name), rtol=1e-12, atol=1e-12)
    assert stats[True].log_lik == pytest.approx(stats[False].log_lik, rel=1e-12)
    em.e_step(torch.rand(6, 19, generator=g), log_w, logits)  # gray levels: no sums
    assert counted == {"rows": 3, "stats": 3}
