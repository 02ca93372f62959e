"""Plots written as PNG files: learning curves, sample grids, and for latent-variable models (VAE) reconstructions,
the 2-D latent manifold and the encodings of data. Matplotlib with the non-interactive Agg backend.

The latent plots take any model with the LatentVariableModel interface (`posterior_mean(x)`,
`decoder_logits(z)`, `latent_dim`, `n_features`): duck typing, no import of genlearn.models."""
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
              "valid_nll_member": "valid NLL, one ensemble member [nats]",
              "train_neg_elbo": "train -ELBO [nats]", "valid_neg_elbo": "valid -ELBO [nats]",
              "valid_nll_is": "valid NLL, importance sampling [nats]",
              "train_kl_upper": "train KL upper bound, -ELBO - H(Q^) [nats]",
              "critic_loss": "critic loss, -bound + penalty [nats]",
              "generator_loss": "generator loss, -E_P f*(T(x)) [nats]",
              "divergence_estimate": "D_f(Q||P) estimate, the critic's bound [nats]",
              "neg_elbo": "warm start: the generator's train -ELBO, epoch means [nats]"}
#: keys drawn together in one panel (one line each, with a legend), so that their difference is seen: the valid
#: -ELBO and the valid importance-sampling NLL of a latent-variable model (the gap is the bound's slack); the two
#: players' losses of adversarial learning (critic and generator, epoch means)
CURVE_PANELS = (("valid_neg_elbo", "valid_nll_is"), ("critic_loss", "generator_loss"))
#: title of a shared panel
PANEL_TITLES = {("valid_neg_elbo", "valid_nll_is"): "valid: -ELBO and NLL by importance sampling [nats]",
                ("critic_loss", "generator_loss"): "the two players' losses, epoch means [nats]"}


def _panels(keys: list[str]) -> list[tuple[str, ...]]:
    """The present keys grouped into panels, in CURVE_KEYS order: a CURVE_PANELS group (its present members)
    takes the place of its first present key; every other key has a panel of its own."""
    panels, placed = [], set()
    for key in keys:
        if key in placed:
            continue
        group = next((g for g in CURVE_PANELS if key in g), (key,))
        members = tuple(k for k in group if k in keys)
        placed.update(members)
        panels.append(members)
    return panels


#: at most this many panels side by side in learning_curve; more wrap onto further rows
MAX_PANELS_PER_ROW = 3


def panel_grid(n: int) -> tuple[int, int]:
    """(rows, columns) for n panels: at most MAX_PANELS_PER_ROW a row, the rows as even as they can be."""
    rows = max(1, math.ceil(n / MAX_PANELS_PER_ROW))
    return rows, max(1, math.ceil(n / rows))


def wants_log_scale(values) -> bool:
    """A log y-axis for these values: all positive and spanning a decade or more (max/min >= 10)."""
    values = [v for v in values if math.isfinite(v)]
    return bool(values) and min(values) > 0 and max(values) / min(values) >= 10


def integer_epochs(ax) -> None:
    """Whole-number ticks on the epoch axis."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def learning_curve(history: list[dict], path: Path, title: str = "learning curve") -> Path | None:
    """One panel per monitored quantity against the epoch (the groups of CURVE_PANELS share a panel, one line per
    quantity with a legend), at most MAX_PANELS_PER_ROW a row; log scale for the KLs that span a decade."""
    keys = [k for k in CURVE_KEYS if any(k in rec for rec in history)]
    if not keys:
        return None
    panels = _panels(keys)
    rows, cols = panel_grid(len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows + 0.3), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.remove()
    for ax, panel in zip(axes.flat, panels):
        curves = [[(r["epoch"], r[k]) for r in history if r.get(k) is not None] for k in panel]
        for key, pts in zip(panel, curves):
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None,
                    label=CURVE_KEYS[key])
        kls = [v for key, pts in zip(panel, curves) if key.endswith("kl") or key == "kl_true" for _, v in pts]
        if kls and len(kls) == sum(len(pts) for pts in curves) and wants_log_scale(kls):
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", useOffset=False)
            _zoom_past_the_start(ax, curves)
        ax.set_xlabel("epoch")
        integer_epochs(ax)
        if len(panel) == 1:
            ax.set_title(CURVE_KEYS[panel[0]], fontsize=9)
        else:
            ax.set_title(PANEL_TITLES.get(panel, ", ".join(CURVE_KEYS[k] for k in panel)), fontsize=9)
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _zoom_past_the_start(ax, curves: list[list[tuple[float, float]]]) -> None:
    """When the first record of the panel (the untrained model at epoch 0, e.g. -ELBO ~ 207 nats against ~90
    later) lies more than the later range away from all later values, the y-axis shows the later values only
    (10% margins) and a note gives the first value, so that the learning is not squashed into a flat line."""
    later = [v for pts in curves for (_, v) in pts[1:] if math.isfinite(v)]
    first = [pts[0] for pts in curves if pts and math.isfinite(pts[0][1])]
    if len(later) < 2 or not first:
        return
    lo, hi = min(later), max(later)
    span = max(hi - lo, 1e-12 * max(abs(hi), 1.0))
    outside = [(e, v) for e, v in first if v > hi + span or v < lo - span]
    if not outside:
        return
    ax.set_ylim(lo - 0.1 * span, hi + 0.1 * span)
    text = ", ".join(f"{v:.4g}" for _, v in outside)
    ax.annotate(f"epoch {outside[0][0]:g}: {text} (off the scale)", xy=(0.98, 0.97), xycoords="axes fraction",
                ha="right", va="top", fontsize=7, color="grey")


#: the caps of sample_grid: canvas pixels (16 images of 1000 x 1000) and figure inches a side (2000 px at 100 dpi)
GRID_MAX_PIXELS = 16_000_000
GRID_MAX_INCHES = 20.0


def sample_grid(samples: torch.Tensor, image_shape: tuple[int, int], path: Path, title: str | None = None) -> Path:
    """Samples (N, h*w) in [0, 1] as a near-square grid of h x w images, white = 1. Capped in size whatever the
    images: at most GRID_MAX_PIXELS canvas pixels and 2 x 2 screen pixels per image pixel (the first samples that
    fit; the title says how many) and a figure of at most GRID_MAX_INCHES inches a side at 100 dpi."""
    samples = torch.as_tensor(samples).detach().float().cpu()
    h, w = image_shape
    total = samples.shape[0]
    # ...and at least 2 x 2 screen pixels per image pixel on the largest figure (100,000 8x8 digits used to come
    # out smaller than a pixel each)
    readable = int((GRID_MAX_INCHES * 100 / 2) ** 2) // max((h + 1) * (w + 1), 1)
    n = max(1, min(total, GRID_MAX_PIXELS // max(h * w, 1), readable))
    samples = samples[:n]
    if n < total:
        title = f"{title or 'samples'} (the first {n} of {total})"
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = _image_canvas(samples, (h, w), cols)
    fig_w, fig_h = max(2.0, cols * w / 14), max(2.0, rows * h / 14)
    shrink = min(1.0, GRID_MAX_INCHES / max(fig_w, fig_h))
    fig, ax = plt.subplots(figsize=(max(2.0, fig_w * shrink), max(2.0, fig_h * shrink)))
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


# ---------------------------------------------------------------------------------------------- latent models
#: rows per chunk when a plot runs the encoder over many rows
ENCODE_CHUNK = 10_000


def _image_canvas(images: torch.Tensor, image_shape: tuple[int, int], cols: int, fill: float = 0.5) -> torch.Tensor:
    """Images (N, h*w) in [0, 1] tiled row by row, `cols` per row, with a 1-pixel `fill` border."""
    n = images.shape[0]
    rows = math.ceil(n / cols)
    h, w = image_shape
    canvas = torch.full((rows * (h + 1) + 1, cols * (w + 1) + 1), fill)
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = images[i].reshape(h, w)
    return canvas


def _check_image_shape(model, image_shape) -> tuple[int, int]:
    from genlearn.errors import ConfigError

    if image_shape is None or len(tuple(image_shape)) != 2:
        raise ConfigError(f"image_shape must be (height, width), got {image_shape!r}")
    h, w = (int(v) for v in image_shape)
    if h * w != int(model.n_features):
        raise ConfigError(f"image_shape {h}x{w} has {h * w} pixels but the model has {model.n_features} features")
    return h, w


def _check_latent(model) -> int:
    from genlearn.errors import ConfigError

    if not all(hasattr(model, a) for a in ("posterior_mean", "decoder_logits", "latent_dim")):
        raise ConfigError(f"model {getattr(model, 'name', model)!r} is not a latent-variable model (it needs "
                          "posterior_mean, decoder_logits and latent_dim, as a VAE has)")
    return int(model.latent_dim)


def _rows(model, x) -> torch.Tensor:
    x = torch.as_tensor(x)
    return model.check_input(x) if hasattr(model, "check_input") else x


@torch.no_grad()
def _posterior_means(model, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.posterior_mean(x[s : s + ENCODE_CHUNK]) for s in range(0, x.shape[0], ENCODE_CHUNK)])


def _canvas_figsize(canvas: torch.Tensor, image_height: int, extra_w: float = 0.3,
                    extra_h: float = 0.8) -> tuple[float, float]:
    """Figure size (inches at 100 dpi) showing a canvas at max(1.5, 24 / h) screen pixels per image pixel (3 for
    8x8 digits, 1.5 for 28x28 MNIST), plus room for labels and title; at most GRID_MAX_INCHES a side (big images are
    shown shrunk)."""
    scale = max(1.5, 24.0 / image_height) / 100.0
    scale = min(scale, GRID_MAX_INCHES / max(canvas.shape[0], canvas.shape[1]))
    return canvas.shape[1] * scale + extra_w, canvas.shape[0] * scale + extra_h


def _save(fig, path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def reconstructions(model, x, image_shape: tuple[int, int], path, n: int = 32,
                    generator: torch.Generator | None = None, title: str | None = None) -> Path:
    """n rows of x (the first n, or n drawn without replacement with `generator`) and their reconstructions: the
    decoder means sigmoid(decoder_logits(z)) at z = posterior_mean(x) = E_q[z|x] (no sampling). Originals and
    reconstructions alternate by rows of up to 16 images: row 2j holds originals, row 2j + 1 their
    reconstructions, column by column."""
    from genlearn.errors import ConfigError

    _check_latent(model)
    h, w = _check_image_shape(model, image_shape)
    x = _rows(model, x)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    n = min(n, x.shape[0])
    idx = torch.arange(n) if generator is None else torch.randperm(x.shape[0], generator=generator)[:n]
    originals = x[idx]
    with torch.no_grad():
        recon = torch.sigmoid(model.decoder_logits(model.posterior_mean(originals)))
    originals, recon = originals.detach().float().cpu(), recon.detach().float().cpu()
    cols = min(n, 16)
    tiles = []
    for start in range(0, n, cols):
        block = [originals[start : start + cols], recon[start : start + cols]]
        pad = cols - block[0].shape[0]
        if pad:  # a last, partial pair of rows: blank (grey) tiles
            block = [torch.cat([b, torch.full((pad, h * w), 0.5)]) for b in block]
        tiles += block
    canvas = _image_canvas(torch.cat(tiles), (h, w), cols)
    width, height = _canvas_figsize(canvas, h)
    fig, ax = plt.subplots(figsize=(max(4.5, width), height))
    ax.imshow(canvas.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    ax.set_title(title or f"{getattr(model, 'name', 'model')}: originals (odd rows) and reconstructions (even rows)\n"
                 "sigmoid(decoder_logits(z)) at z = posterior mean E_q[z|x]", fontsize=8)
    return _save(fig, path)


def latent_grid(grid: int) -> torch.Tensor:
    """The grid of a 2-D latent manifold: z = (Phi^-1(p_i), Phi^-1(p_j)) for p in linspace(0.05, 0.95, grid),
    Phi the standard normal CDF; shape (grid, grid, 2), [i, j] = (z_1 from p_j, z_2 from p_{grid-1-i}) so that
    z_1 grows to the right and z_2 upwards when the grid is drawn as an image."""
    q = torch.special.ndtri(torch.linspace(0.05, 0.95, grid, dtype=torch.float64))
    z1 = q.expand(grid, grid)
    z2 = q.flip(0)[:, None].expand(grid, grid)
    return torch.stack([z1, z2], -1)


def latent_manifold(model, image_shape: tuple[int, int], path, grid: int = 20, title: str | None = None) -> Path:
    """The learned manifold of a model with a 2-D latent space (latent_dim == 2): the decoder means
    sigmoid(decoder_logits(z)) on a grid x grid lattice of z at the standard-normal quantiles Phi^-1(p),
    p in linspace(0.05, 0.95, grid), in each dimension (Kingma & Welling 2014, fig. 4): equal prior mass between
    neighbours under a N(0, I) prior. z_1 grows to the right, z_2 upwards. ConfigError for latent_dim != 2."""
    from genlearn.errors import ConfigError

    d = _check_latent(model)
    if d != 2:
        raise ConfigError(f"a latent manifold is drawn for a 2-D latent space; model "
                          f"{getattr(model, 'name', 'model')!r} has latent_dim = {d} (fit it with --latent 2), "
                          "or plot its encodings (latent_encodings) instead")
    h, w = _check_image_shape(model, image_shape)
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 2:
        raise ConfigError(f"grid must be an integer >= 2, got {grid!r}")
    z = latent_grid(grid)
    dtype = next((p.dtype for p in model.parameters()), torch.float32) if hasattr(model, "parameters") \
        else torch.float32
    with torch.no_grad():
        means = torch.sigmoid(model.decoder_logits(z.reshape(-1, 2).to(dtype))).float().cpu()
    canvas = _image_canvas(means, (h, w), grid)
    width, height = _canvas_figsize(canvas, h, extra_w=0.9, extra_h=1.1)
    fig, ax = plt.subplots(figsize=(max(4.0, width), max(4.0, height)))
    ax.imshow(canvas.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ticks = sorted({0, grid - 1} | ({grid // 2} if grid % 2 else set()))
    q = z[0, :, 0]
    ax.set_xticks([1 + j * (w + 1) + (w - 1) / 2 for j in ticks], [f"{float(q[j]):.2f}" for j in ticks])
    ax.set_yticks([1 + i * (h + 1) + (h - 1) / 2 for i in ticks], [f"{float(z[i, 0, 1]):.2f}" for i in ticks])
    ax.set_xlabel("z_1 = Phi^-1(p)", fontsize=8)
    ax.set_ylabel("z_2 = Phi^-1(p)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(title or f"{getattr(model, 'name', 'model')}: decoder means sigmoid(decoder_logits(z)),\n"
                 f"z on a {grid}x{grid} grid of N(0,1) quantiles, p in [0.05, 0.95]", fontsize=8)
    return _save(fig, path)


#: at most this many distinct labels get one colour each and a legend; more get a colour bar
MAX_LEGEND_CLASSES = 20


def latent_encodings(model, x, labels, path, title: str | None = None) -> Path:
    """Scatter of the posterior means posterior_mean(x) = E_q[z|x]: their first two dimensions when latent_dim
    <= 2 (latent_dim 1: z_1 against the label, or against 0), else the first two principal components of the
    means (the axis labels say which, with the share of variance). Coloured by `labels` (one int per row of x:
    a legend for up to MAX_LEGEND_CLASSES classes, else a colour bar) when given, else one colour."""
    from genlearn.errors import DataError

    d = _check_latent(model)
    x = _rows(model, x)
    if labels is not None:
        labels = torch.as_tensor(labels).reshape(-1)
        if labels.shape[0] != x.shape[0]:
            raise DataError(f"latent_encodings: {x.shape[0]} rows but {labels.shape[0]} labels; give one label per "
                            "row (aligned with x)")
    means = _posterior_means(model, x).double().cpu()
    if d > 2:
        centred = means - means.mean(0)
        _, s, vt = torch.linalg.svd(centred, full_matrices=False)
        signs = torch.sign(vt.gather(1, vt.abs().argmax(1, keepdim=True)))  # largest loading positive: a fixed sign
        vt = vt * torch.where(signs == 0, torch.ones_like(signs), signs)
        xy = centred @ vt[:2].T
        share = (s.pow(2) / s.pow(2).sum().clamp_min(1e-300))[:2]
        xlabel = f"PC 1 of the posterior means E_q[z|x] ({100 * float(share[0]):.0f}% of variance)"
        ylabel = f"PC 2 of the posterior means E_q[z|x] ({100 * float(share[1]):.0f}% of variance)"
        what = f"2-D PCA of the {d}-D posterior means"
    elif d == 2:
        xy = means
        xlabel, ylabel, what = "z_1 = E_q[z_1|x]", "z_2 = E_q[z_2|x]", "posterior means"
    else:
        y = labels.double() if labels is not None else torch.zeros(means.shape[0], dtype=torch.float64)
        xy = torch.stack([means[:, 0], y], 1)
        xlabel, ylabel, what = "z_1 = E_q[z_1|x]", "label" if labels is not None else "", "1-D posterior means"
    xy = xy.numpy()
    fig, ax = plt.subplots(figsize=(5.5, 4.6))
    size = max(2.0, min(20.0, 4000.0 / max(1, xy.shape[0])))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, alpha=0.6, color="tab:blue", linewidths=0)
    else:
        classes = torch.unique(labels).tolist()
        lab = labels.numpy()
        if len(classes) <= MAX_LEGEND_CLASSES:
            cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
            for i, c in enumerate(classes):
                sel = lab == c
                ax.scatter(xy[sel, 0], xy[sel, 1], s=size, alpha=0.7, color=cmap(i), linewidths=0, label=str(c))
            ax.legend(title="label", fontsize=7, title_fontsize=7, markerscale=max(1.0, 12.0 / size),
                      loc="center left", bbox_to_anchor=(1.0, 0.5))
        else:
            points = ax.scatter(xy[:, 0], xy[:, 1], s=size, alpha=0.7, c=lab, cmap="viridis", linewidths=0)
            fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"{getattr(model, 'name', 'model')}: {what} of {xy.shape[0]} rows", fontsize=9)
    return _save(fig, path)
