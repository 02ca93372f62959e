"""genlearn.models.vae_step: the hand-written training gradient of a one-layer VAE equals autograd's through
VAE.elbo / VAE.log_weights (float64, same random numbers) and central finite differences of the loss."""
from __future__ import annotations

import math

import pytest
import torch

from genlearn.learning.elbo import ImportanceWeightedBound
from genlearn.models import vae_step
from genlearn.models.vae import VAE

ACTIVATIONS = ("tanh", "relu", "softplus", "gated")
#: (k, closed-form KL, KL weight): the ELBO in closed form (with warm-up), sampled, IWAE in one block of logits
#: (7 x 23 rows) and in several (30 x 23 = 690 > BLOCK_ROWS rows)
CASES = [(1, True, 1.0), (1, True, 0.3), (1, False, 1.0), (7, False, 0.5), (30, False, 1.0)]


def small_vae(activation: str, dtype=torch.float64, seed: int = 1) -> VAE:
    model = VAE(20, latent=3, hidden=[6, 5], activation=activation, seed=seed).to(dtype)
    with torch.no_grad():  # log-variances past LOGVAR_RANGE's top (6): the first in every row, the second in some
        model.enc_top_head.linear.bias[3] += 8.0
        model.enc_top_head.linear.bias[4] += 5.5
    return model


def data(dtype=torch.float64, rows: int = 23) -> torch.Tensor:
    return torch.bernoulli(torch.full((rows, 20), 0.3), generator=torch.Generator().manual_seed(5)).to(dtype)


def autograd_loss(model, x, k, seed, beta, closed):
    g = torch.Generator().manual_seed(seed)
    if k == 1 and closed:
        return -model.elbo(x, g, kl_weight=beta).mean()
    log_w = model.log_weights(x, k, g, kl_weight=beta)
    return -(torch.logsumexp(log_w, 0) - math.log(k)).mean()


def gradients(model, x, k, seed, beta, closed, fused: bool):
    model.zero_grad(set_to_none=True)
    if fused:
        loss = model.bound_gradient(x, k, torch.Generator().manual_seed(seed), beta, closed)
        assert loss is not None and not loss.requires_grad
    else:
        loss = autograd_loss(model, x, k, seed, beta, closed)
        loss.backward()
    return float(loss), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.fixture(params=["compiled", "torch"])
def kernels(request, monkeypatch):
    """The pass with its compiled kernels (the Gaussian layer, the output layer) where numba is present, and with
    torch's operations only (as without numba)."""
    if request.param == "torch":
        from genlearn import gaussian_kernels, logistic_kernels

        monkeypatch.setattr(gaussian_kernels, "usable", lambda *a: False)
        monkeypatch.setattr(logistic_kernels, "usable", lambda *a: False)
    return request.param


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("k,closed,beta", CASES)
def test_gradient_equals_autograd_float64(activation, k, closed, beta, kernels):
    model, x = small_vae(activation), data()
    loss, grads = gradients(model, x, k, 3, beta, closed, fused=True)
    ref_loss, ref = gradients(model, x, k, 3, beta, closed, fused=False)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert set(grads) == set(ref)
    for name in ref:
        scale = float(ref[name].abs().max()) + 1e-300
        assert float((grads[name] - ref[name]).abs().max()) <= 1e-11 * scale, name
    # the log-variance clipped in every row gets no gradient
    assert float(grads["enc_top_head.linear.bias"][3]) == 0.0 == float(ref["enc_top_head.linear.bias"][3])


@pytest.mark.parametrize("activation", ("tanh", "gated"))
@pytest.mark.parametrize("k,closed", [(1, True), (30, False)])
def test_gradient_equals_autograd_float32(activation, k, closed, kernels):
    """The float32 path (compiled output layer and Gaussian layer where numba is present) to float32 rounding."""
    model, x = small_vae(activation, torch.float32), data(torch.float32)
    _, grads = gradients(model, x, k, 4, 1.0, closed, fused=True)
    _, ref = gradients(model, x, k, 4, 1.0, closed, fused=False)
    for name in ref:
        scale = float(ref[name].abs().max())
        assert float((grads[name] - ref[name]).abs().max()) <= 2e-5 * scale, name


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("gray", [False, True])
def test_flat_pass_equals_the_general_pass(activation, gray, monkeypatch):
    """The closed-form ELBO's flat pass (float32, numba present) gives the general pass's loss and gradients (the
    same operations in the same order), with the encoder's first layer as sums over a 0/1 batch and dense on gray
    levels, gradients accumulated onto existing ones and in their parameters' layouts; FLAT = False turns it off."""
    from genlearn import gaussian_kernels, logistic_kernels

    if not (logistic_kernels.available() and gaussian_kernels.available()):
        pytest.skip("the flat pass needs numba's kernels")
    model = VAE(300, latent=4, hidden=[40, 30], activation=activation, seed=2)
    g = torch.Generator().manual_seed(9)
    x = torch.rand(64, 300, generator=g) if gray else torch.bernoulli(torch.full((64, 300), 0.1), generator=g)
    if not gray:  # the sums' both products, whatever this machine's timing says
        monkeypatch.setattr(vae_step.binary_kernels, "faster_at", lambda *a: True)
    # the flat pass runs where torch's float32 products were chosen; the process's timing may pick oneDNN's
    monkeypatch.setenv("GENLEARN_FLOAT32_PRODUCTS", "torch")
    calls = []
    original = vae_step._flat_closed_pass
    monkeypatch.setattr(vae_step, "_flat_closed_pass", lambda *a: calls.append(1) or original(*a))
    results = []
    for flat in (True, False):
        monkeypatch.setattr(vae_step, "FLAT", flat)
        model.zero_grad(set_to_none=True)
        losses = [float(model.bound_gradient(x, 1, torch.Generator().manual_seed(s), 0.6)) for s in (1, 2)]
        results.append((losses, {n: p.grad.clone() for n, p in model.named_parameters()}))
    assert calls == [1, 1]  # both steps of the first run, none of the second
    (losses, grads), (ref_losses, ref) = results
    assert losses == pytest.approx(ref_losses, rel=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], ref[name], rtol=1e-5, atol=1e-6)
        assert grads[name].stride() == p.stride(), name


@pytest.mark.parametrize("k", [1, 30])
def test_bfloat16_products_match_autocast_within_bfloat16_rounding(k, monkeypatch):
    """Under the model's bfloat16 training precision (torch.autocast) the pass takes bfloat16 operands: its gradient
    is as far from the float32 gradient as autograd's under autocast is (bfloat16 keeps 8 significant bits), and
    farther than float32 rounding (the operands are bfloat16)."""
    model = VAE(784, latent=10, hidden=[64, 48], seed=1)
    x = torch.bernoulli(torch.full((40, 784), 0.13), generator=torch.Generator().manual_seed(0))
    _, exact = gradients(model, x, k, 3, 1.0, True, fused=False)  # float32, autograd
    if k == 1:  # 40 rows: every product under LOW_MIN_FLOPS keeps float32 operands
        with torch.autocast("cpu", dtype=torch.bfloat16):
            small = gradients(model, x, k, 3, 1.0, True, fused=True)[1]
        assert max(float((small[n] - exact[n]).norm() / exact[n].norm()) for n in exact) < 1e-4
    monkeypatch.setattr(vae_step, "LOW_MIN_FLOPS", 0.0)  # every product with bfloat16 operands
    results = {}
    for fused in (True, False):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert vae_step.usable(model, x)
            results[fused] = gradients(model, x, k, 3, 1.0, True, fused=fused)[1]
    for name in exact:
        norm = float(exact[name].norm())
        err_fused = float((results[True][name] - exact[name]).norm()) / norm
        err_autocast = float((results[False][name] - exact[name]).norm()) / norm
        assert 1e-4 < err_fused < 3e-2 and err_fused < 3 * err_autocast + 1e-3, (name, err_fused, err_autocast)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_rows_of_weight_zero_left_out_of_the_backward_pass(activation, monkeypatch):
    """IWAE: where enough importance weights are 0 (below NEGLIGIBLE_WEIGHT, raised here so that many of the 30
    weights per row are), the decoder's backward pass runs on the other rows only. The gradient is still autograd's
    through numerics.log_mean_exp (whose weights below NEGLIGIBLE_WEIGHT are 0 too), float64."""
    from genlearn import numerics

    monkeypatch.setattr(numerics, "NEGLIGIBLE_WEIGHT", 0.02)
    kept = []
    original = vae_step._weighted_rows
    monkeypatch.setattr(vae_step, "_weighted_rows", lambda g: kept.append(original(g)) or kept[-1])
    model, x, k = small_vae(activation), data(), 30
    loss, grads = gradients(model, x, k, 3, 0.7, False, fused=True)
    assert kept[0] is not None and 0 < kept[0].numel() < 0.95 * k * x.shape[0]  # the rows were left out
    model.zero_grad(set_to_none=True)
    log_w = model.log_weights(x, k, torch.Generator().manual_seed(3), kl_weight=0.7)
    ref_loss = -numerics.log_mean_exp(log_w).mean()
    ref_loss.backward()
    assert loss == pytest.approx(float(ref_loss), rel=1e-12)
    for name, p in model.named_parameters():
        scale = float(p.grad.abs().max()) + 1e-300
        assert float((grads[name] - p.grad).abs().max()) <= 1e-11 * scale, name
    # without leaving rows out: the same gradient
    monkeypatch.setattr(vae_step, "MIN_ZERO_FRACTION", 2.0)
    _, full = gradients(model, x, k, 3, 0.7, False, fused=True)
    assert kept[-1] is None
    for name in full:
        torch.testing.assert_close(grads[name], full[name], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("k,closed", [(1, True), (5, False)])
def test_gradient_equals_finite_differences(k, closed):
    """d loss / d theta_i against (loss(theta + h e_i) - loss(theta - h e_i)) / 2h with the same noise, float64."""
    model, x = small_vae("tanh"), data()
    _, grads = gradients(model, x, k, 7, 0.8, closed, fused=True)
    params = dict(model.named_parameters())
    picks = [("enc_top.first.0.weight", (2, 4)), ("enc_top_head.linear.weight", (1, 3)),
             ("enc_top_head.linear.bias", (4,)), ("dec.first.0.weight", (0, 1)), ("dec_out.bias", (5,))]
    h = 1e-6
    for name, idx in picks:
        p = params[name]
        with torch.no_grad():
            p[idx] += h
            up = float(autograd_loss(model, x, k, 7, 0.8, closed))
            p[idx] -= 2 * h
            down = float(autograd_loss(model, x, k, 7, 0.8, closed))
            p[idx] += h
        assert float(grads[name][idx]) == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-7), name


def test_gradient_accumulates_into_existing_grads():
    model, x = small_vae("relu"), data()
    _, once = gradients(model, x, 1, 3, 1.0, True, fused=True)
    model.bound_gradient(x, 1, torch.Generator().manual_seed(3))
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, 2 * once[name], rtol=1e-12, atol=0)


def test_not_used_where_it_does_not_apply(monkeypatch):
    x = data()
    two_layers = VAE(20, latent=[3, 2], hidden=[6], seed=0).double()
    vamp = VAE(20, latent=3, hidden=[6], prior="vampprior", pseudo_inputs=4, seed=0).double()
    assert two_layers.bound_gradient(x, 1) is None and vamp.bound_gradient(x, 1) is None
    model = small_vae("tanh")
    model.dec_out.bias.requires_grad_(False)  # a frozen parameter: autograd's pass handles it
    assert model.bound_gradient(x, 1) is None
    model.dec_out.bias.requires_grad_(True)
    with torch.no_grad():
        assert model.bound_gradient(x, 1) is None
    monkeypatch.setenv("GENLEARN_VAE_STEP", "autograd")
    assert model.bound_gradient(x, 1) is None


def test_learning_rule_uses_it_and_matches_autograd(monkeypatch):
    """The rule's gradient and loss on a batch, with the pass and with GENLEARN_VAE_STEP=autograd."""
    calls = []
    original = vae_step.loss_and_gradient
    monkeypatch.setattr(vae_step, "loss_and_gradient", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    x = data()
    results = []
    for mode in ("", "autograd"):
        monkeypatch.setenv("GENLEARN_VAE_STEP", mode)
        model = small_vae("gated")
        rule = ImportanceWeightedBound({"iw_samples": 4, "warmup_epochs": 3})
        rule.check(model)
        loss = rule.compute_gradient(model, x, torch.Generator().manual_seed(2))
        results.append((float(loss), {n: p.grad.clone() for n, p in model.named_parameters()}))
    assert len(calls) == 1  # only the first run took the hand-written pass
    (loss, grads), (ref_loss, ref) = results
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for name in ref:
        torch.testing.assert_close(grads[name], ref[name], rtol=1e-10, atol=1e-13)


def test_log_mean_exp_value_and_gradient():
    """L_k = logsumexp - log k; dL/da = the normalised weights, those below negligible_weight as exactly 0."""
    from genlearn import numerics

    a = torch.tensor([[0.0, -3.0], [-1.0, -2.0], [-60.0, 1.0], [-0.5, -200.0]], dtype=torch.float64,
                     requires_grad=True)
    value = numerics.log_mean_exp(a)
    torch.testing.assert_close(value, torch.logsumexp(a, 0) - math.log(4), rtol=1e-15, atol=0)
    value.sum().backward()
    w = torch.softmax(a.detach(), 0)
    tau = numerics.negligible_weight(4, torch.float64)
    assert float(w[2, 0]) < tau < float(w[0, 0])  # e^-60 / ~2.0: negligible
    expected = torch.where(w < tau, 0.0, w)
    torch.testing.assert_close(a.grad, expected, rtol=1e-14, atol=0)
    assert float(a.grad[2, 0]) == 0.0 and float(a.grad[3, 1]) == 0.0
    assert float(a.grad.sum(0).sub(1).abs().max()) < 1e-15  # the dropped weights are below rounding of 1


@pytest.mark.parametrize("dtype, unit_roundoff", [(torch.float32, 2.0 ** -24), (torch.float64, 2.0 ** -53)])
def test_negligible_weights_hold_less_than_one_rounding_of_their_row(dtype, unit_roundoff, monkeypatch):
    """tau = max(2^-64, u / k): the weights set to 0 hold less than u of each row (they sum to 1), so the row's
    weighted sum of per-sample gradients moves by less than u times its largest one; with BELOW_ROUNDOFF off only
    the weights below 2^-64 go."""
    from genlearn import numerics

    for k in (2, 50, 5000):
        assert numerics.negligible_weight(k, dtype) == max(2.0 ** -64, unit_roundoff / k)
    assert numerics.negligible_weight(2 ** 60, dtype) == 2.0 ** -64  # the floor: no denormal products
    g = torch.Generator().manual_seed(0)
    k, rows = 50, 400
    log_w = (torch.randn(k, rows, generator=g, dtype=torch.float64) * torch.linspace(0.1, 30, rows,
                                                                                     dtype=torch.float64)).to(dtype)
    w = torch.softmax(log_w, 0)
    kept = numerics.negligible_to_zero_(w.clone())
    dropped = (w - kept).to(torch.float64)
    assert float(dropped.sum(0).max()) < unit_roundoff  # every row: less than one unit roundoff of its weight
    assert int((dropped > 0).sum()) > k * rows // 10  # the wide rows do have such weights
    per_sample = torch.randn(k, rows, generator=g, dtype=torch.float64)  # stand-ins for the samples' gradients
    moved = ((w.double() - kept.double()) * per_sample).sum(0).abs()
    assert bool((moved <= unit_roundoff * per_sample.abs().max(0).values).all())
    monkeypatch.setattr(numerics, "BELOW_ROUNDOFF", False)
    assert numerics.negligible_weight(50, dtype) == 2.0 ** -64
    exact_to_rounding = numerics.negligible_to_zero_(w.clone())
    assert bool((exact_to_rounding == torch.where(w < 2.0 ** -64, 0.0, w)).all())
    assert int((exact_to_rounding > 0).sum()) > int((kept > 0).sum())


def test_iwae_gradient_without_weights_below_float32_roundoff_moves_below_float32_rounding(monkeypatch):
    """IWAE-30 in float64: leaving out the weights below float32's 2^-24 / k (here 39% of them: the decoder's sharp
    logits spread the log-weights over tens of nats; 3% are below 2^-64) moves the gradient by less than float32's
    unit roundoff relative to its norm, against the gradient that keeps every weight."""
    from genlearn import numerics

    model, x, k = VAE(20, latent=3, hidden=[6, 5], seed=1).double(), data(rows=40), 30
    with torch.no_grad():
        model.dec_out.weight.mul_(30.0)
    monkeypatch.setattr(numerics, "NEGLIGIBLE_WEIGHT", 0.0)
    monkeypatch.setattr(numerics, "BELOW_ROUNDOFF", False)
    _, exact = gradients(model, x, k, 3, 1.0, False, fused=True)
    monkeypatch.setattr(numerics, "negligible_weight", lambda k, dtype: 2.0 ** -24 / k)  # float32's threshold
    zeros = []
    original = vae_step._weighted_rows
    monkeypatch.setattr(vae_step, "_weighted_rows", lambda g: zeros.append(float((g == 0).double().mean())) or
                        original(g))
    _, grads = gradients(model, x, k, 3, 1.0, False, fused=True)
    assert zeros[0] > 0.3  # the samples left out
    moved = {n: float((grads[n] - exact[n]).norm() / exact[n].norm()) for n in exact}
    assert 0 < max(moved.values()) < 2.0 ** -24, moved


def test_usable_follows_the_parameters_after_its_first_answer():
    """`usable` lists a model's parameters once; their dtype, requires_grad and a replaced layer still count."""
    model = VAE(20, latent=3, hidden=[8], seed=0)
    x = torch.zeros(4, 20)
    assert vae_step.usable(model, x)
    model.dec_out.bias.requires_grad_(False)
    assert not vae_step.usable(model, x)
    model.dec_out.bias.requires_grad_(True)
    assert vae_step.usable(model.half(), x) is False and vae_step.usable(model.double(), x.double())
    model.dec_out = torch.nn.Linear(8, 20, bias=False).double()  # a layer without bias: not this pass's structure
    assert not vae_step.usable(model, x.double())
    assert not vae_step.usable(VAE(20, latent="2,3", hidden=[8], seed=0), x)
    with torch.no_grad():
        assert not vae_step.usable(VAE(20, latent=3, hidden=[8], seed=0), x)


@pytest.mark.parametrize("forward,stats", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("density", [0.0, 0.13, 1.0])
def test_first_layer_sums_over_binary_data_equal_the_dense_products(forward, stats, density, monkeypatch):
    """The encoder's first layer as sums of selected rows (forced on, each of its two products, densities 0, 1 and
    between, with odd shapes and empty rows) gives autograd's float32 gradient to summation order, the first
    weight's gradient in that weight's input-major layout."""
    from genlearn import binary_kernels

    if not binary_kernels.available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(binary_kernels, "faster_at", lambda d, kind, *a: {"rows": forward, "stats": stats}[kind])
    calls = []
    for name in ("addmm", "t_mm"):
        real = getattr(binary_kernels.RowIndex, name)
        monkeypatch.setattr(binary_kernels.RowIndex, name,
                            lambda self, *a, _n=name, _r=real: calls.append(_n) or _r(self, *a))
    model = VAE(37, latent=3, hidden=[13, 5], seed=2)
    W = model.enc_top.first[0].weight
    assert W.shape == (13, 37) and W.T.is_contiguous() and not W.is_contiguous()
    x = torch.bernoulli(torch.full((29, 37), density), generator=torch.Generator().manual_seed(1))
    x[3] = 0.0  # an empty row
    _, grads = gradients(model, x, 1, 4, 1.0, True, fused=True)
    assert calls == ["addmm"] * forward + ["t_mm"] * stats  # the sums ran where forced
    assert model.enc_top.first[0].weight.grad.stride() == W.stride()
    _, ref = gradients(model, x, 1, 4, 1.0, True, fused=False)  # autograd, the same noise
    for name in ref:
        scale = float(ref[name].abs().max()) + 1e-30
        assert float((grads[name] - ref[name]).abs().max()) <= 2e-5 * scale, name


def test_first_layer_keeps_the_dense_products_for_gray_levels(monkeypatch):
    """Entries other than 0/1 (indexing them fails the check) keep the dense products, with the same gradient."""
    from genlearn import binary_kernels

    monkeypatch.setattr(binary_kernels, "faster_at", lambda *a: True)
    calls = []
    monkeypatch.setattr(binary_kernels.RowIndex, "addmm", lambda *a: calls.append(1))
    model = VAE(20, latent=3, hidden=[6], seed=0)
    x = data(torch.float32)
    x[2, 5] = 0.5
    _, grads = gradients(model, x, 1, 4, 1.0, True, fused=True)
    _, ref = gradients(model, x, 1, 4, 1.0, True, fused=False)
    assert calls == []
    for name in ref:
        torch.testing.assert_close(grads[name], ref[name], rtol=2e-5, atol=1e-6)


def test_the_first_encoder_weight_stays_input_major_through_a_state_dict():
    """VAE stores enc_top.first[0].weight with its transpose contiguous; its state_dict entry is the usual (H x n)
    weight, and loading a contiguous one (an earlier version's checkpoint) keeps the layout and the values."""
    model, other = VAE(20, latent=3, hidden=[6], seed=0), VAE(20, latent=3, hidden=[6], seed=1)
    state = {k: v.contiguous() for k, v in other.state_dict().items()}
    assert state["enc_top.first.0.weight"].shape == (6, 20)
    model.load_state_dict(state)
    W = model.enc_top.first[0].weight
    assert W.T.is_contiguous() and not W.is_contiguous()
    assert torch.equal(W, other.enc_top.first[0].weight)


def test_first_layer_sums_for_a_smaller_last_batch(monkeypatch):
    """A batch smaller than the model's last one uses the first rows of its index: the same gradient as autograd."""
    from genlearn import binary_kernels

    if not binary_kernels.available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(binary_kernels, "faster_at", lambda *a: True)
    model = VAE(20, latent=3, hidden=[6], seed=0)
    big, small = data(torch.float32, rows=23), data(torch.float32, rows=23)[:9].clone()
    gradients(model, big, 1, 4, 1.0, True, fused=True)
    assert vae_step._INDEXES[model].capacity == 23
    _, grads = gradients(model, small, 1, 4, 1.0, True, fused=True)
    _, ref = gradients(model, small, 1, 4, 1.0, True, fused=False)
    for name in ref:
        torch.testing.assert_close(grads[name], ref[name], rtol=2e-5, atol=1e-6)
