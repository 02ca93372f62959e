"""Plots written as PNG files: learning curves, sample grids. Matplotlib with the non-interactive Agg backend."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

CURVE_KEYS = {"train_kl": "train D_KL(Q^||P) [nats]", "train_nll": "train NLL [nats]",
              "valid_nll": "valid NLL [nats]", "kl_true": "D_KL(Q||P) to the truth [nats]",
              "train_nll_ais": "train NLL, forward AIS [nats]", "valid_nll_ais": "valid NLL, forward AIS [nats]",
              "train_nll_member": "train NLL, one ensemble member [nats]",
              "valid_nll_member": "valid NLL, one ensemble member [nats]"}


def learning_curve(history: list[dict], path: Path, title: str = "learning curve") -> Path | None:
    """One panel per monitored quantity against the epoch; log scale for the KLs when all are positive."""
    keys = [k for k in CURVE_KEYS if any(k in rec for rec in history)]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = [(r["epoch"], r[key]) for r in history if r.get(key) is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
        if key.endswith("kl") or key == "kl_true":
            if pts and all(p[1] > 0 for p in pts):
                ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(CURVE_KEYS[key], fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def sample_grid(samples: torch.Tensor, image_shape: tuple[int, int], path: Path, title: str | None = None) -> Path:
    """Samples (N, h*w) in [0, 1] as a near-square grid of h x w images, white = 1."""
    samples = torch.as_tensor(samples).detach().float().cpu()
    n = samples.shape[0]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w = image_shape
    canvas = torch.full((rows * (h + 1) + 1, cols * (w + 1) + 1), 0.5)
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = samples[i].reshape(h, w)
    fig, ax = plt.subplots(figsize=(max(2.0, cols * w / 14), max(2.0, rows * h / 14)))
    ax.imshow(canvas.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_filters(model, path, image_shape: tuple[int, int] | None = None, n: int = 100, title: str | None = None):
    """The weights of the first `n` hidden units of an RBM (columns of W, one image each, scaled to [0, 1] per
    unit) as a PNG grid; image_shape defaults to a square side sqrt(V)."""
    from genlearn.errors import ConfigError

    W = model.weight.detach().float()[:, : min(n, model.n_hidden)].T
    if image_shape is None:
        side = int(round(math.sqrt(model.n_visible)))
        if side * side != model.n_visible:
            raise ConfigError(f"cannot show {model.n_visible} visible units as a square image; give image_shape")
        image_shape = (side, side)
    lo, hi = W.min(1, keepdim=True).values, W.max(1, keepdim=True).values
    return sample_grid((W - lo) / (hi - lo).clamp_min(1e-12), image_shape, path,
                       title or f"RBM filters (first {W.shape[0]} hidden units)")
