"""A linear layer whose input is 0/1 rows (binary data), as sums of selected rows inside autograd.

For a batch x in {0,1}^(B x n) and a weight stored input-major, W^T (n x H),

    forward   y = b + x W^T:   y_m = b + sum of the rows of W^T at the active entries of x_m,
    backward  dL/dW^T = x^T dy:  per input i, the sum of the rows dy_m with x_mi = 1,   dL/db = sum_m dy_m,

nnz(x) H additions each instead of 2 B n H flops (binarized MNIST: 13% ones). Each of the two products is taken
as sums only where genlearn.binary_kernels.CHOOSER timed them faster on this CPU at the batch's density for the
layer's shape, else as the dense product (genlearn.products); both give the same numbers up to float32 summation
order. The batch is indexed once (`rows_of`) for every layer that reads it (MADE: the first hidden layer and the
direct input-to-output weights). Used where the tensors allow it: float32 CPU, contiguous, exact 0/1 entries,
no autocast; otherwise callers keep their dense products."""
from __future__ import annotations

import weakref

import torch
from torch import Tensor

from genlearn import binary_kernels, products

#: owner module -> {slot: RowIndex} (a model's own, so that another model's batch cannot overwrite it between a
#: forward pass and its backward pass; the backward pass re-indexes its batch if the owner indexed another one since)
_INDEXES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_ZEROS: dict = {}


class BinaryRows:
    """A 0/1 batch x (B x n) indexed for sums of selected rows (`rows_of` makes it)."""

    def __init__(self, x: Tensor, index, density: float):
        self.x, self.index, self.density = x, index, density
        self.token = index.token = object()  # which batch the index holds now

    def faster(self, kind: str, width: int) -> bool:
        """Whether the sums beat the dense product of this batch with a matrix of `width` columns (kind "rows":
        x W^T; "stats": x^T dy)."""
        B, n = self.x.shape
        return binary_kernels.faster_at(self.density, kind, B, n, width)

    def fresh_index(self):
        """The index, holding this batch again if its owner has indexed another one since."""
        if self.index.token is not self.token:
            self.index.add(self.x.detach())
            self.index.token = self.token
        return self.index

    def linear(self, weight_t: Tensor, bias: Tensor | None) -> Tensor:
        """b + x W^T for W^T (n x H, contiguous; its gradient through autograd, input-major) and b (H) or None."""
        return _BinaryRowsLinear.apply(self.x, weight_t, bias, self)


def rows_of(owner: torch.nn.Module, x: Tensor, slot: int = 0, widths: tuple[int, ...] | None = None
            ) -> BinaryRows | None:
    """x indexed for the sums (kept per `owner` and `slot`: a model with two 0/1 inputs indexes them in two slots),
    or None where they cannot be used: x not a contiguous 2-D float32 CPU tensor, entries other than exactly 0 and
    1, autocast on, or the sums disabled (binary_kernels.usable). With `widths` (the output widths of the products
    that will read x), also None, without indexing, where x's density is above the sums' crossovers for all of
    them (dense rows: the index would go unused)."""
    if torch.is_autocast_enabled("cpu") or not binary_kernels.usable(x):
        return None
    B, n = x.shape
    if widths is not None:
        density = float(x.detach().mean())
        if not any(binary_kernels.faster_at(density, kind, B, n, w) for w in widths for kind in ("rows", "stats")):
            return None
    slots = _INDEXES.setdefault(owner, {})
    index = slots.get(slot)
    if index is None or index.capacity < B or index.V != n:
        index = slots[slot] = binary_kernels.RowIndex(B, n)
    if not index.add(x.detach()):
        index.token = None
        return None
    return BinaryRows(x, index, index.density(0, B))


def usable_weight(weight_t: Tensor) -> bool:
    """Whether a weight W^T (n x H) can be summed by rows: float32 CPU, contiguous."""
    return binary_kernels.usable(weight_t)


def _zeros(width: int) -> Tensor:
    if width not in _ZEROS:
        if len(_ZEROS) > 16:
            _ZEROS.clear()
        _ZEROS[width] = torch.zeros(width)
    return _ZEROS[width]


class _BinaryRowsLinear(torch.autograd.Function):
    """y = b + x W^T on an indexed 0/1 batch (module docstring); x's own gradient, where asked, is dy W."""

    @staticmethod
    def forward(ctx, x: Tensor, weight_t: Tensor, bias: Tensor | None, rows: BinaryRows) -> Tensor:
        B, H = x.shape[0], weight_t.shape[1]
        out = torch.empty(B, H, dtype=x.dtype)
        b = bias if bias is not None else _zeros(H)
        if rows.faster("rows", H) and usable_weight(weight_t):
            rows.fresh_index().addmm(0, B, weight_t, b.detach().contiguous(), out)
        else:
            products.addmm(b, x, weight_t, out=out)
        ctx.rows, ctx.has_bias = rows, bias is not None
        ctx.save_for_backward(weight_t)
        return out

    @staticmethod
    def backward(ctx, dy: Tensor):
        rows, (weight_t,) = ctx.rows, ctx.saved_tensors
        x = rows.x.detach()
        dx = dweight = dbias = None
        if ctx.needs_input_grad[0]:
            dx = products.mm(dy, weight_t.T)
        if ctx.needs_input_grad[1]:
            dweight = torch.empty(x.shape[1], dy.shape[1], dtype=dy.dtype)
            if rows.faster("stats", dy.shape[1]):
                rows.fresh_index().t_mm(dy.contiguous(), dweight)
            else:
                products.mm(x.T, dy, out=dweight)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            dbias = dy.sum(0)
        return dx, dweight, dbias, None


__all__ = ["BinaryRows", "rows_of", "usable_weight"]
