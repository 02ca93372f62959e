"""LeanAdam (genlearn.learning.lean_adam) against torch.optim.Adam(fused=True): the same parameters and states to
the bit over many steps (weight decay, a rate changed by a scheduler, float32 and float64), checkpoints that load
into either, and torch's own step wherever the plain case does not hold."""
from __future__ import annotations

import copy

import pytest
import torch

from genlearn.learning import lean_adam
from genlearn.learning.lean_adam import LeanAdam


def make_params(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*shape, generator=g, dtype=dtype)) for shape in [(7, 5), (5,), (3, 2, 4)]]


def set_grads(params, seed, skip=None):
    g = torch.Generator().manual_seed(seed)
    for i, p in enumerate(params):
        p.grad = None if i == skip else torch.randn(p.shape, generator=g, dtype=p.dtype)


def steps_side_by_side(opt, opt_ref, ours, ref, steps):
    """`steps` steps of both optimizers on the same gradients, the rate halved every 3 steps by a scheduler."""
    sched, sched_ref = (torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5) for o in (opt, opt_ref))
    for step in range(steps):
        set_grads(ours, step)
        set_grads(ref, step)
        opt.step()
        opt_ref.step()
        sched.step()
        sched_ref.step()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_equal_to_torch_fused_adam_bit_for_bit(dtype, weight_decay):
    ours, ref = make_params(dtype), make_params(dtype)
    opt = LeanAdam(ours, lr=0.01, weight_decay=weight_decay, fused=True)
    opt_ref = torch.optim.Adam(ref, lr=0.01, weight_decay=weight_decay, fused=True)
    calls = []
    real = torch._fused_adam_
    torch._fused_adam_ = lambda *a, **k: (calls.append(1), real(*a, **k))[1]
    try:
        steps_side_by_side(opt, opt_ref, ours, ref, 12)
    finally:
        torch._fused_adam_ = real
    for p, q in zip(ours, ref):
        assert torch.equal(p, q)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p][key], opt_ref.state[q][key])
    assert len(calls) >= 11  # the direct call ran after the first step (which creates the states through torch's)


def test_checkpoints_are_torch_adams():
    ours, ref = make_params(torch.float32), make_params(torch.float32)
    opt = LeanAdam(ours, lr=0.01, fused=True)
    for step in range(3):
        set_grads(ours, step)
        opt.step()
    other = torch.optim.Adam(ref, lr=0.01, fused=True)
    other.load_state_dict(copy.deepcopy(opt.state_dict()))  # (load_state_dict keeps the tensors it is given)
    with torch.no_grad():
        for p, q in zip(ours, ref):
            q.copy_(p)
    again = LeanAdam(make_params(torch.float32), lr=0.01, fused=True)
    again.load_state_dict(copy.deepcopy(other.state_dict()))
    assert again._plain_lists() is None  # no gradients yet
    set_grads(ours, 9)
    set_grads(ref, 9)
    opt.step()
    other.step()
    for p, q in zip(ours, ref):
        assert torch.equal(p, q)


def test_torch_step_where_the_plain_case_does_not_hold():
    """A parameter without a gradient, a closure, amsgrad, not fused, a step hook: no direct call (`_plain_lists`
    says None), torch.optim.Adam.step runs and equals torch's update."""
    cases = [({"fused": True}, {"skip": 1}), ({"fused": True}, {"closure": True}),
             ({"fused": True, "amsgrad": True}, {}), ({"foreach": False}, {}), ({"fused": True}, {"hook": True})]
    for kwargs, how in cases:
        ours, ref = make_params(torch.float32), make_params(torch.float32)
        opt, opt_ref = LeanAdam(ours, lr=0.01, **kwargs), torch.optim.Adam(ref, lr=0.01, **kwargs)
        if how.get("hook"):
            opt.register_step_pre_hook(lambda *a: None)
        for step in range(3):
            set_grads(ours, step, how.get("skip"))
            set_grads(ref, step, how.get("skip"))
            closure = (lambda: torch.tensor(0.0)) if how.get("closure") else None
            if step > 0 and closure is None:
                assert opt._plain_lists() is None, (kwargs, how)
            opt.step(closure)
            opt_ref.step(closure)
        for p, q in zip(ours, ref):
            assert torch.equal(p, q), (kwargs, how)
    plain = LeanAdam(make_params(torch.float32), lr=0.01, fused=True)
    set_grads(plain.param_groups[0]["params"], 0)
    plain.step()
    assert plain._plain_lists() is not None  # the plain case, for contrast


@pytest.mark.parametrize("lean", ["adam", "sgd"])
def test_a_kernel_that_refuses_the_call_falls_back_once_and_for_all(monkeypatch, lean):
    """LeanAdam's and LayoutSGD's direct kernel calls, refused (another torch's signature): torch's step runs, the
    same update, and the direct call is not tried again."""
    from genlearn.learning.layouts import LayoutSGD

    cls, kernel, torch_cls = {"adam": (LeanAdam, "_fused_adam_", torch.optim.Adam),
                              "sgd": (LayoutSGD, "_fused_sgd_", torch.optim.SGD)}[lean]
    ours, ref = make_params(torch.float32), make_params(torch.float32)
    opt, opt_ref = cls(ours, lr=0.01, fused=True), torch_cls(ref, lr=0.01, fused=True)
    set_grads(ours, 0)
    set_grads(ref, 0)
    opt.step()
    opt_ref.step()
    real = getattr(torch, kernel)

    refused = []

    def other_signature(*args, **kwargs):
        if not refused:  # the first call, the direct one: refused before any update
            refused.append(1)
            raise TypeError("unexpected keyword argument")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, kernel, other_signature)
    monkeypatch.setattr(cls, "_kernel_ok", True)
    set_grads(ours, 1)
    set_grads(ref, 1)
    opt.step()
    opt_ref.step()
    assert cls._kernel_ok is False and refused
    for p, q in zip(ours, ref):
        assert torch.equal(p, q)
        if lean == "adam":
            assert torch.equal(opt.state[p]["step"], opt_ref.state[q]["step"])
    assert lean_adam.LeanAdam is LeanAdam


@pytest.mark.parametrize("adam_class_wrapped", [True, False])
def test_step_hooks_run_once_per_step_as_with_torch(monkeypatch, adam_class_wrapped):
    """LeanAdam's step goes without torch's step wrapper, so with hooks it runs torch's step inside that wrapper
    itself: each pre/post hook (the optimizer's and the global ones) once per step, the update torch's. Both when
    torch has already wrapped Adam.step (an Adam was made in this process) and when it has not."""
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    ours, ref = make_params(torch.float32), make_params(torch.float32)
    opt, opt_ref = LeanAdam(ours, lr=0.01, fused=True), torch.optim.Adam(ref, lr=0.01, fused=True)
    assert getattr(torch.optim.Adam.step, "hooked", False)  # torch has wrapped Adam.step (an Adam exists)
    if not adam_class_wrapped:  # as in a process where no torch Adam was made
        monkeypatch.setattr(torch.optim.Adam, "step", torch.optim.Adam.step.__wrapped__)
    counts = {"pre": 0, "post": 0, "global": 0}
    own = [opt.register_step_pre_hook(lambda *a: counts.__setitem__("pre", counts["pre"] + 1)),
           opt.register_step_post_hook(lambda *a: counts.__setitem__("post", counts["post"] + 1))]
    handle = register_optimizer_step_pre_hook(
        lambda o, *a: counts.__setitem__("global", counts["global"] + (o is opt)))
    try:
        for step in range(4):
            set_grads(ours, step)
            set_grads(ref, step)
            opt.step()
            opt_ref.step()
    finally:
        handle.remove()
    assert counts == {"pre": 4, "post": 4, "global": 4}
    for p, q in zip(ours, ref):
        assert torch.equal(p, q)
    assert getattr(torch.optim.Adam.step, "hooked", False) is adam_class_wrapped  # the branch meant ran
    # a hook removed again: the next step is the plain one (the direct kernel call) and equals torch's
    for h in own:
        h.remove()
    post = []
    handle = register_optimizer_step_post_hook(lambda o, *a: post.append(o))
    set_grads(ours, 5)
    set_grads(ref, 5)
    opt.step()
    opt_ref.step()
    handle.remove()
    set_grads(ours, 6)
    set_grads(ref, 6)
    assert opt._plain_lists() is not None
    opt.step()
    opt_ref.step()
    assert post.count(opt) == 1
    for p, q in zip(ours, ref):
        assert torch.equal(p, q)


def test_zero_grad_sets_none_or_zeros():
    params = make_params(torch.float32)
    opt = LeanAdam(params, lr=0.01, fused=True)
    set_grads(params, 0)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("via_torch_step", [False, True])
def test_a_transposed_parameter_with_a_contiguous_state_steps_correctly(via_torch_step):
    """A parameter stored transposed (the VAE's first encoder weight) whose Adam state was loaded contiguous (from a
    checkpoint): the update equals the one of a contiguous parameter. torch's fused kernel walks them as flat memory
    and would mix up the entries; LeanAdam gives the state (and a gradient) the parameter's layout first."""
    g = torch.Generator().manual_seed(3)
    start = torch.randn(6, 4, generator=g)
    grads = [torch.randn(6, 4, generator=g) for _ in range(4)]
    plain = torch.nn.Parameter(start.clone())
    transposed = torch.nn.Parameter(start.T.contiguous().T)
    assert not transposed.is_contiguous()
    opts = [LeanAdam([p], lr=0.1, fused=True) for p in (plain, transposed)]
    for step, grad in enumerate(grads):
        for p, opt in zip((plain, transposed), opts):
            p.grad = grad.clone()  # contiguous: a layout other than the transposed parameter's
            if via_torch_step and p is transposed:
                opt._torch_step()
            else:
                opt.step()
        if step == 1:  # a checkpoint's round trip: the state comes back contiguous
            state = copy.deepcopy(opts[1].state_dict())
            for s in state["state"].values():
                s["exp_avg"], s["exp_avg_sq"] = s["exp_avg"].contiguous(), s["exp_avg_sq"].contiguous()
            opts[1] = LeanAdam([transposed], lr=0.1, fused=True)
            opts[1].load_state_dict(state)
    torch.testing.assert_close(transposed.detach(), plain.detach(), rtol=0, atol=0)
    assert opts[1].state[transposed]["exp_avg"].stride() == transposed.stride()


@pytest.mark.parametrize("fused", [True, False])
def test_layout_sgd_steps_a_transposed_parameter_with_a_contiguous_momentum_buffer(fused):
    """SGD with momentum on a parameter stored transposed (MADE's first weight) whose momentum buffer was loaded
    contiguous from a checkpoint: the same updates as a contiguous parameter (torch's fused SGD kernel, given the
    mismatched layouts, updates the wrong entries: a resumed MADE run drifted 0.34 from the uninterrupted one)."""
    from genlearn.learning.layouts import LayoutSGD

    g = torch.Generator().manual_seed(4)
    start = torch.randn(5, 3, generator=g)
    grads = [torch.randn(5, 3, generator=g) for _ in range(4)]
    plain = torch.nn.Parameter(start.clone())
    transposed = torch.nn.Parameter(start.T.contiguous().T)
    opts = [LayoutSGD([p], lr=0.1, momentum=0.9, fused=fused) for p in (plain, transposed)]
    for step, grad in enumerate(grads):
        for p, opt in zip((plain, transposed), opts):
            p.grad = grad.clone()
            opt.step()
        if step == 1:
            state = copy.deepcopy(opts[1].state_dict())
            for s in state["state"].values():
                s["momentum_buffer"] = s["momentum_buffer"].contiguous()
            opts[1] = LayoutSGD([transposed], lr=0.1, momentum=0.9, fused=fused)
            opts[1].load_state_dict(state)
    torch.testing.assert_close(transposed.detach(), plain.detach(), rtol=0, atol=0)
    assert opts[1].state[transposed]["momentum_buffer"].stride() == transposed.stride()
