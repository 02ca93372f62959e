"""The figures of a run for the report, as PNG bytes: its learning curve (genlearn.plots.learning_curve over the
run's history), sample grids, RBM filters, and for latent-variable models reconstructions, encodings and the 2-D
manifold. A plot that `genlearn fit` already wrote to the folder is embedded as it is; a missing one is drawn
from the rebuilt model (an unfinished run, a published folder without plots); one that needs the data set
(reconstructions, encodings) is drawn only when the data set loads here. Also the overlay of several runs'
learning curves for the comparison page."""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from genlearn import plots
from genlearn.report.collect import RunRecord, load_dataset_of

#: samples drawn for a grid, and RBM hidden units shown as filters
N_SAMPLES = 64
N_FILTERS = 100
#: the first of these keys present in a run's history is its curve on the overlay's train / valid panel
TRAIN_CURVES = ("train_nll", "train_nll_ais", "train_nll_member", "train_neg_elbo")
VALID_CURVES = ("valid_nll", "valid_nll_ais", "valid_nll_member", "valid_nll_is", "valid_neg_elbo")


@dataclass
class Figure:
    key: str
    title: str
    png: bytes
    caption: str


def _draw(fn, *args, **kwargs) -> bytes | None:
    """Run a genlearn.plots function that writes a PNG to a path; its bytes (None when it drew nothing)."""
    with tempfile.TemporaryDirectory(prefix="genlearn-report-") as tmp:
        path = Path(tmp) / "figure.png"
        result = fn(*args, path, **kwargs)  # every genlearn.plots function takes the path after its data
        if result is None or not path.is_file():
            return None
        return path.read_bytes()


def _file(record: RunRecord, name: str) -> bytes | None:
    path = record.path / name
    if path.is_file():
        data = path.read_bytes()
        if data.startswith(b"\x89PNG"):
            return data
        record.notes.append(f"{name} in the run folder is not a PNG image; not shown")
    return None


def _loss_curve(history: list, title: str) -> bytes | None:
    """The learning rule's mean training objective per epoch, for runs whose history monitors no likelihood
    (e.g. a large RBM trained without --monitor-ais-steps: loss = mean F(data) - mean F(negatives))."""
    pts = [(r["epoch"], r["loss"]) for r in history if isinstance(r.get("loss"), (int, float))
           and math.isfinite(r["loss"])]
    if len(pts) < 2:  # one point is no curve (e.g. a published folder that keeps only the last record)
        return None
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
    ax.set_xlabel("epoch")
    plots.integer_epochs(ax)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_title("training objective of the learning rule (loss, epoch mean)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    with tempfile.TemporaryDirectory(prefix="genlearn-report-") as tmp:
        path = Path(tmp) / "loss.png"
        plots._save(fig, path)
        return path.read_bytes()


def run_figures(record: RunRecord, data_dir=None, samples: bool = True) -> list[Figure]:
    """The figures of one run (see the module docstring); every figure not drawn says why in record.notes."""
    figs: list[Figure] = []
    title = f"{record.model_name} on {record.dataset}"
    # the curve genlearn fit drew from the same final history, else drawn here (an unfinished run's is newer)
    curve = _file(record, "learning_curve.png") if record.status == "finished" else None
    if curve is None and record.history:
        curve = _draw(plots.learning_curve, record.history, title=title)
    if curve is not None:
        figs.append(Figure("learning_curve", "learning curves", curve,
                           "monitored every --eval-every epochs; nats per example (the first record is the "
                           "untrained model at epoch 0)"))
    else:
        loss = _loss_curve(record.history, title)
        if loss is not None:
            figs.append(Figure("learning_curve", "learning curve (training objective)", loss,
                               "no likelihood was monitored during training; the curve is the learning rule's "
                               "objective"))
        else:
            record.notes.append("no learning curve: the run recorded fewer than two epochs of monitoring "
                                "history")
    model = record.model
    shape = record.image_shape
    dataset = None
    if shape is None and model is not None and not record.data:  # an unfinished run: ask the data set
        dataset = load_dataset_of(record, data_dir)
        shape = tuple(dataset.image_shape) if dataset is not None and dataset.image_shape else None
    stored = _file(record, "samples.png")
    if stored is not None:
        figs.append(Figure("samples", "samples", stored, "samples.png as written by genlearn fit"))
    elif samples and model is not None and shape is not None:
        try:
            with torch.no_grad():
                x = model.sample(N_SAMPLES, generator=torch.Generator().manual_seed(0))
            png = _draw(plots.sample_grid, x, shape, title=f"{record.model_name}: {N_SAMPLES} samples (seed 0)")
            figs.append(Figure("samples", "samples", png, f"{N_SAMPLES} samples drawn for this report (seed 0)"))
        except Exception as exc:  # noqa: BLE001 - a model that cannot sample still gets its numbers reported
            record.notes.append(f"no samples: sampling failed ({type(exc).__name__}: {exc})")
    elif model is None and record.model_error:
        record.notes.append(f"the model could not be loaded ({record.model_error}): no samples or filters")
    if model is not None and _is_rbm(model):
        try:
            n_v = int(model.n_visible)
            filter_shape = shape if shape is not None and shape[0] * shape[1] == n_v else None
            if filter_shape is None and math.isqrt(n_v) ** 2 != n_v:
                record.notes.append(f"no RBM filters: {n_v} visible units are not an image")
            else:
                n = min(N_FILTERS, int(model.n_hidden))
                png = _draw(plots.plot_filters, model, image_shape=filter_shape, n=n)
                figs.append(Figure("filters", "RBM filters", png,
                                   f"the weights W[:, j] of the first {n} hidden units, each scaled to [0, 1]"))
        except Exception as exc:  # noqa: BLE001
            record.notes.append(f"no RBM filters ({type(exc).__name__}: {exc})")
    if model is not None and _is_latent(model):
        figs += _latent_figures(record, model, shape, dataset, data_dir)
    return figs


def _is_rbm(model) -> bool:
    return all(hasattr(model, a) for a in ("weight", "n_visible", "n_hidden"))


def _is_latent(model) -> bool:
    return all(hasattr(model, a) for a in ("latent_dim", "decoder_logits"))


def _latent_figures(record: RunRecord, model, shape, dataset, data_dir) -> list[Figure]:
    figs = []
    d = int(model.latent_dim)
    has_encoder = bool(getattr(model, "has_encoder", False))
    wanted = []
    if shape is not None and d == 2:
        wanted.append("latent_manifold.png")
    if has_encoder:
        if shape is not None:
            wanted.append("reconstructions.png")
        wanted.append("latent_encodings.png")
    captions = {"latent_manifold.png": ("2-D latent manifold", "decoder means on a grid of N(0, 1) quantiles of z"),
                "reconstructions.png": ("reconstructions", "test rows (odd rows) and their reconstructions at the "
                                        "posterior mean (even rows)"),
                "latent_encodings.png": ("latent encodings", "posterior means E_q[z|x] of the test rows")}
    for name in wanted:
        title, caption = captions[name]
        png = _file(record, name)
        if png is None:
            try:
                if name == "latent_manifold.png":
                    png = _draw(plots.latent_manifold, model, shape)
                else:
                    if dataset is None:
                        dataset = load_dataset_of(record, data_dir)
                    if dataset is None:
                        continue
                    split = next((s for s in ("test", "valid", "train") if getattr(dataset, s) is not None), None)
                    if split is None:
                        continue
                    x = dataset.split(split)
                    if name == "reconstructions.png":
                        png = _draw(plots.reconstructions, model, x, shape, n=32)
                    else:
                        png = _draw(plots.latent_encodings, model, x, dataset.split_labels(split))
                caption += " (drawn for this report)"
            except Exception as exc:  # noqa: BLE001
                record.notes.append(f"no {title} ({type(exc).__name__}: {exc})")
                continue
        if png is not None:
            figs.append(Figure(name[:-4], title, png, caption))
    return figs


def overlay_curves(records: list[RunRecord]) -> bytes | None:
    """One figure with the runs' learning curves overlaid: the train NLL (or its stand-in: AIS, one ensemble
    member, -ELBO), the valid NLL (or its stand-in), the KL to the truth and the critic's divergence estimate, a
    panel each where at least one run has it, one line per run labelled with the quantity it shows."""
    panels = [("train NLL [nats]", TRAIN_CURVES), ("valid NLL [nats]", VALID_CURVES),
              ("D_KL(Q||P) to the truth [nats]", ("kl_true",)),
              ("critic's D_f estimate [nats]", ("divergence_estimate",))]
    drawn = []
    for title, keys in panels:
        lines = []
        for r in records:
            key = next((k for k in keys if any(rec.get(k) is not None for rec in r.history)), None)
            if key is not None:
                pts = [(rec["epoch"], rec[key]) for rec in r.history
                       if isinstance(rec.get(key), (int, float)) and math.isfinite(rec[key])]
                if pts:
                    label = r.name if key == keys[0] else f"{r.name} ({plots.CURVE_KEYS.get(key, key)})"
                    lines.append((label, pts))
        if lines:
            drawn.append((title, lines))
    if not drawn:
        return None
    import matplotlib.pyplot as plt

    rows, cols = plots.panel_grid(len(drawn))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows + 0.3), squeeze=False)
    for ax in axes.flat[len(drawn):]:
        ax.remove()
    for ax, (title, lines) in zip(axes.flat, drawn):
        for label, pts in lines:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, marker="." if len(pts) < 50 else None)
        if title.startswith("D_KL") and plots.wants_log_scale([v for _, pts in lines for _, v in pts]):
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel("epoch")
        plots.integer_epochs(ax)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle("learning curves of the compared runs", fontsize=10)
    with tempfile.TemporaryDirectory(prefix="genlearn-report-") as tmp:
        path = Path(tmp) / "overlay.png"
        plots._save(fig, path)
        return path.read_bytes()


__all__ = ["Figure", "overlay_curves", "run_figures"]
