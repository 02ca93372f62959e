"""Optimizer states in their parameters' memory layout, for torch's fused CPU kernels.

torch's fused Adam and SGD kernels walk a parameter, its gradient and its states (Adam's moments, SGD's momentum
buffer) as flat memory, so where their strides differ they silently combine entries of different positions. That
happens for a parameter stored transposed (MADE's, the order-agnostic NADE's and the VAE's input-major weights)
whose state was loaded contiguous from a checkpoint (a resumed run), or whose gradient came back contiguous.
`match_layout` gives the gradient and the states their parameter's strides (a copy where they differ);
`LayoutSGD` is torch.optim.SGD doing so before each step (genlearn.learning.lean_adam.LeanAdam does it for Adam)."""
from __future__ import annotations

import torch


def match_layout(p: torch.Tensor, state: dict) -> torch.Tensor:
    """p.grad and p's state tensors of p's shape with p's strides (copied where they differ); returns p.grad."""
    if p.grad.stride() != p.stride():
        p.grad = torch.empty_like(p).copy_(p.grad)
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
            state[key] = torch.empty_like(p).copy_(value)
    return p.grad


def torch_step_in_layout(optimizer: torch.optim.Optimizer, step, closure=None):
    """`step` (a torch optimizer class's step function) on `optimizer` after `match_layout` of every parameter with a
    dense gradient, inside torch's step wrapper (profiler range, step pre/post hooks) as torch runs that class."""
    with torch.no_grad():
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None and not p.grad.is_sparse:
                    match_layout(p, optimizer.state.get(p) or {})
    if getattr(step, "hooked", False):  # an instance of the class has put the wrapper on it: run the step inside it
        return step(optimizer, closure)
    return torch.optim.Optimizer.profile_hook_step(step)(optimizer, closure)


class LayoutSGD(torch.optim.SGD):
    """torch.optim.SGD (plain, momentum, fused or not) whose step first gives every gradient and momentum buffer its
    parameter's layout (`torch_step_in_layout`)."""

    def step(self, closure=None):
        return torch_step_in_layout(self, torch.optim.SGD.step, closure)

    step.hooked = True  # torch's wrapper is not put around this step (it runs SGD's step inside the wrapper)


__all__ = ["LayoutSGD", "match_layout", "torch_step_in_layout"]
