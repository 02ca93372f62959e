"""LayoutSGD's plain steps (genlearn.learning.layouts: torch._fused_sgd_ called straight away) against
torch.optim.SGD(fused=True): the same parameters and momentum buffers to the bit, a transposed parameter updated
right, and torch's own step wherever the plain case does not hold (a refused kernel call:
tests/test_lean_adam.py)."""
from __future__ import annotations

import pytest
import torch
import torch.optim.sgd as torch_sgd

from genlearn.learning.layouts import LayoutSGD


from test_lean_adam import make_params as square_params, set_grads, steps_side_by_side


def make_params(dtype, seed=0, transposed=False):
    params = square_params(dtype, seed)
    if transposed:  # a weight stored input-major, as MADE's and the VAE's first layers are
        params[0] = torch.nn.Parameter(params[0].detach().T.contiguous().T)
    return params


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("settings", [{}, {"weight_decay": 0.01}, {"momentum": 0.9},
                                      {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
                                      {"momentum": 0.5, "dampening": 0.1}])
def test_equal_to_torch_fused_sgd_bit_for_bit(dtype, settings):
    ours, ref = make_params(dtype), make_params(dtype)
    opt = LayoutSGD(ours, lr=0.05, fused=True, **settings)
    opt_ref = torch.optim.SGD(ref, lr=0.05, fused=True, **settings)
    through_torch = []  # torch.optim.SGD.step's calls of its fused function (the direct path does not make them)
    real = torch_sgd._fused_sgd
    torch_sgd._fused_sgd = lambda *a, **k: (through_torch.append(1), real(*a, **k))[1]
    try:
        steps_side_by_side(opt, opt_ref, ours, ref, 10)
    finally:
        torch_sgd._fused_sgd = real
    for p, q in zip(ours, ref):
        assert torch.equal(p, q)
        if settings.get("momentum"):
            assert torch.equal(opt.state[p]["momentum_buffer"], opt_ref.state[q]["momentum_buffer"])
    # the reference's 10 steps, and ours only where momentum buffers had to be made first (its first step)
    assert len(through_torch) == 10 + (1 if settings.get("momentum") else 0)
    assert opt.state_dict()["state"].keys() == opt_ref.state_dict()["state"].keys()


def test_a_transposed_parameter_is_updated_as_torch_updates_a_contiguous_one():
    ours, ref = make_params(torch.float32, transposed=True), make_params(torch.float32, transposed=True)
    ref = [torch.nn.Parameter(p.detach().contiguous()) for p in ref]
    opt, opt_ref = LayoutSGD(ours, lr=0.1, momentum=0.9, fused=True), torch.optim.SGD(ref, lr=0.1, momentum=0.9)
    for step in range(4):
        set_grads(ours, step)
        set_grads(ref, step)
        ours[0].grad = ours[0].grad.contiguous()  # a gradient in another layout than its parameter
        opt.step()
        opt_ref.step()
    assert not ours[0].is_contiguous()
    for p, q in zip(ours, ref):
        assert torch.allclose(p, q, rtol=1e-6, atol=1e-7)


def test_torch_step_where_the_plain_case_does_not_hold():
    """A parameter without a gradient, a closure, not fused, a step hook, maximize: `_plain_lists` says None and
    torch.optim.SGD.step runs (the same update as torch's)."""
    cases = [({"fused": True}, {"skip": 1}), ({"fused": True}, {"closure": True}), ({"foreach": False}, {}),
             ({"fused": True}, {"hook": True}), ({"fused": True, "maximize": True}, {})]
    for kwargs, how in cases:
        ours, ref = make_params(torch.float32), make_params(torch.float32)
        opt, opt_ref = LayoutSGD(ours, lr=0.01, **kwargs), torch.optim.SGD(ref, lr=0.01, **kwargs)
        if how.get("hook"):
            opt.register_step_pre_hook(lambda *a: None)
        for step in range(3):
            set_grads(ours, step, how.get("skip"))
            set_grads(ref, step, how.get("skip"))
            closure = (lambda: torch.tensor(0.0)) if how.get("closure") else None
            if closure is None:
                assert opt._plain_lists() is None, (kwargs, how)
            opt.step(closure)
            opt_ref.step(closure)
        for p, q in zip(ours, ref):
            assert torch.equal(p, q), (kwargs, how)
    plain = LayoutSGD(make_params(torch.float32), lr=0.01, fused=True)
    set_grads(plain.param_groups[0]["params"], 0)
    assert plain._plain_lists() is not None  # the plain case, for contrast
