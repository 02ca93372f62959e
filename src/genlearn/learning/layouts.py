"""Optimizer states in their parameters' memory layout, for torch's fused CPU kernels.

torch's fused Adam and SGD kernels walk a parameter, its gradient and its states (Adam's moments, SGD's momentum
buffer) as flat memory, so where their strides differ they silently combine entries of different positions. That
happens for a parameter stored transposed (MADE's, the order-agnostic NADE's and the VAE's input-major weights)
whose state was loaded contiguous from a checkpoint (a resumed run), or whose gradient came back contiguous.
`match_layout` gives the gradient and the states their parameter's strides (a copy where they differ);
`LayoutSGD` is torch.optim.SGD doing so before each step (genlearn.learning.lean_adam.LeanAdam does it for Adam).

LayoutSGD's plain steps (one parameter group, fused, no closure, no step hooks or gradient scaling, not maximize
or differentiable, a float rate; momentum 0 or every momentum buffer made by an earlier step) call torch's fused
kernel straight away, `torch._fused_sgd_`, the kernel torch.optim.SGD(fused=True) calls (the same update to the
bit), without torch.optim.SGD.step's per-step bookkeeping and step wrapper (~0.25 ms of a PCD step of an RBM
784 x 500 on two AVX2 cores, ~15% of the step)."""
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


def has_step_hooks(optimizer: torch.optim.Optimizer) -> bool:
    """Whether step pre/post hooks are registered on this optimizer or globally (torch's step wrapper runs them)."""
    import torch.optim.optimizer as module

    return any((getattr(optimizer, "_optimizer_step_pre_hooks", None),
                getattr(optimizer, "_optimizer_step_post_hooks", None),
                getattr(module, "_global_optimizer_pre_hooks", None),
                getattr(module, "_global_optimizer_post_hooks", None)))


def gradients_to_none(optimizer: torch.optim.Optimizer) -> None:
    """Every parameter's gradient to None: torch's zero_grad(set_to_none=True) without its profiler range."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


def flat_operands(p: torch.Tensor, *tensors):
    """p and tensors of its layout as a fused kernel takes them: a 2-D parameter stored transposed as the
    contiguous transposes (the update is elementwise; the kernel runs faster on contiguous memory)."""
    if not p.is_contiguous() and p.dim() == 2 and p.T.is_contiguous():
        return (p.T, *(None if t is None else t.T for t in tensors))
    return (p, *tensors)


class LayoutSGD(torch.optim.SGD):
    """torch.optim.SGD (plain, momentum, fused or not) whose step first gives every gradient and momentum buffer its
    parameter's layout (`torch_step_in_layout`); plain steps go straight to the fused kernel (module docstring)."""

    _kernel_ok = hasattr(torch, "_fused_sgd_")

    def _plain_lists(self):
        """(params, grads, momentum buffers) of the plain case, else None."""
        if not self._kernel_ok or len(self.param_groups) != 1 or has_step_hooks(self) \
                or getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None:
            return None
        group = self.param_groups[0]
        if not group["fused"] or group["maximize"] or group["differentiable"] or not isinstance(group["lr"], float):
            return None
        momentum = group["momentum"] != 0
        params, grads, buffers = [], [], []
        for p in group["params"]:
            g, state = p.grad, self.state.get(p) or {}
            if g is None or g.is_sparse or (momentum and state.get("momentum_buffer") is None):
                return None
            if g.stride() != p.stride() or (momentum and state["momentum_buffer"].stride() != p.stride()):
                g = match_layout(p, state)
            p, g, buf = flat_operands(p, g, state["momentum_buffer"] if momentum else None)
            params.append(p)
            grads.append(g)
            if momentum:
                buffers.append(buf)
        return params, grads, buffers

    def plain_rate(self) -> float | None:
        """lr where step() is p <- p - lr p.grad for every parameter (one group; no momentum, weight decay,
        maximize, step hooks or gradient scaling; a float rate), else None. A learning rule that can apply that
        update itself (rules.ContrastiveDivergence.sgd_step) may then do so instead of writing p.grad for step()."""
        if len(self.param_groups) != 1 or has_step_hooks(self) or getattr(self, "grad_scale", None) is not None \
                or getattr(self, "found_inf", None) is not None:
            return None
        group = self.param_groups[0]
        if group["momentum"] != 0 or group["weight_decay"] != 0 or group["maximize"] or group["differentiable"] \
                or not isinstance(group["lr"], float):
            return None
        return group["lr"]

    @torch.no_grad()
    def step(self, closure=None):
        lists = None if closure is not None else self._plain_lists()
        if lists is None:
            return torch_step_in_layout(self, torch.optim.SGD.step, closure)
        params, grads, buffers = lists
        group = self.param_groups[0]
        try:
            torch._fused_sgd_(params, grads, buffers, weight_decay=group["weight_decay"], momentum=group["momentum"],
                              lr=group["lr"], dampening=group["dampening"], nesterov=group["nesterov"],
                              maximize=False, is_first_step=False, grad_scale=None, found_inf=None)
        except (TypeError, RuntimeError):  # another torch's kernel: its signature refused before any update
            LayoutSGD._kernel_ok = False
            return torch_step_in_layout(self, torch.optim.SGD.step, closure)
        return None

    step.hooked = True  # torch's wrapper is not put around this step (it runs SGD's step inside the wrapper)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Every parameter's gradient to None without torch's profiler range (`gradients_to_none`), or torch's
        zero_grad for set_to_none=False."""
        if not set_to_none:
            return super().zero_grad(set_to_none)
        gradients_to_none(self)
        return None


__all__ = ["LayoutSGD", "flat_operands", "gradients_to_none", "has_step_hooks", "match_layout",
           "torch_step_in_layout"]
