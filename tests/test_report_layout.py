"""How the report pages and plots are laid out: learning-curve panels wrapped onto rows, log y-axes only across a
decade, whole-number epoch ticks, every table in its own sideways-scrolling box (the page itself never scrolls
sideways), status notes that say why a run stopped, settings and code shown as text rather than raw JSON or
Markdown, and the padded, enlarged sample grid of the TensorBoard logger."""
from __future__ import annotations

import io
import math
import shutil
from html.parser import HTMLParser

import pytest
import torch

import genlearn
from genlearn import plots
from genlearn.report import build_report
from genlearn.report import html as H
from genlearn.report.collect import read_run
from genlearn.report.figures import _loss_curve, overlay_curves
from genlearn.report.markdown import markdown_to_html
from genlearn.report.page import _bracket
from genlearn.report.tensorboard import sample_canvas


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures the plot functions close, kept open for inspection (closed at the end)."""
    import matplotlib.pyplot as plt

    kept, close = [], plt.close
    monkeypatch.setattr(plt, "close", kept.append)
    yield kept
    for fig in kept:
        close(fig)


def _gan_history(epochs: int = 20) -> list[dict]:
    """A monitoring history with the six panels of an adversarial fit (KLs within a factor of 1.2)."""
    out = [{"epoch": 0, "train_kl": 3.7, "train_nll": 6.3, "valid_nll": 6.3, "kl_true": 3.7}]
    for e in range(1, epochs + 1):
        kl = 3.7 - 0.02 * e
        out.append({"epoch": e, "train_kl": kl, "train_nll": kl + 2.6, "valid_nll": kl + 2.5, "kl_true": kl - 0.05,
                    "critic_loss": -0.1 * e, "generator_loss": -1.0, "divergence_estimate": 0.1 * e})
    return out


def _rows_of(fig) -> set[int]:
    return {ax.get_subplotspec().rowspan.start for ax in fig.axes}


def test_six_panels_wrap_onto_two_rows_of_three(tmp_path, figures):
    path = plots.learning_curve(_gan_history(), tmp_path / "curve.png", title="gan")
    fig, = figures
    assert len(fig.axes) == 6 and _rows_of(fig) == {0, 1}
    assert {ax.get_subplotspec().colspan.start for ax in fig.axes} == {0, 1, 2}
    fig.canvas.draw()
    assert min(ax.get_window_extent().width for ax in fig.axes) > 250  # pixels per panel, at the saved 100 dpi
    data = path.read_bytes()
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
    assert width <= plots.MAX_PANELS_PER_ROW * 400 and height >= 2 * 300
    assert H.cap_png(data) == data  # embedded as drawn, not scaled down


@pytest.mark.parametrize("n, grid", [(1, (1, 1)), (3, (1, 3)), (4, (2, 2)), (5, (2, 3)), (7, (3, 3))])
def test_panel_grid(n, grid):
    assert plots.panel_grid(n) == grid


def test_log_scale_only_when_the_values_span_a_decade(tmp_path, figures):
    flat = [{"epoch": e, "train_kl": 17.40 - 0.004 * e, "kl_true": 10.0 ** -e} for e in range(11)]
    plots.learning_curve(flat, tmp_path / "c.png")
    fig, = figures
    fig.canvas.draw()
    scales = {ax.get_title(): ax.get_yscale() for ax in fig.axes}
    assert scales == {plots.CURVE_KEYS["train_kl"]: "linear", plots.CURVE_KEYS["kl_true"]: "log"}
    linear = next(ax for ax in fig.axes if ax.get_yscale() == "linear")
    labels = [t.get_text() for t in linear.get_yticklabels() if t.get_text()]
    assert labels and all("10^" not in t and "times" not in t for t in labels)
    assert linear.yaxis.get_offset_text().get_text() == ""  # plain values, no "+1.7e1" offset
    assert all(abs(float(t.replace("\u2212", "-")) - 17.38) < 0.05 for t in labels)
    assert not plots.wants_log_scale([2.0, 19.9]) and plots.wants_log_scale([2.0, 20.0])
    assert not plots.wants_log_scale([0.0, 5.0]) and not plots.wants_log_scale([])


def _whole_ticks(ax) -> bool:
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    return len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


def test_epoch_axes_have_whole_number_ticks(tmp_path, figures):
    history = [{"epoch": e, "train_nll": 20.0 - e, "valid_nll": 21.0 - e, "loss": 3.0 - e} for e in range(4)]
    plots.learning_curve(history, tmp_path / "c.png")
    assert _loss_curve(history, "rbm") is not None

    class Run:
        name = "r"

    run = Run()
    run.history = history
    assert overlay_curves([run]) is not None
    assert len(figures) == 3
    for fig in figures:
        fig.canvas.draw()
        assert all(_whole_ticks(ax) for ax in fig.axes), [ax.get_xticks() for ax in fig.axes]


class _Tables(HTMLParser):
    """The open elements (tag, class) at each <table>."""

    def __init__(self):
        super().__init__()
        self.stack, self.tables = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append(list(self.stack))
        if tag not in ("img", "br", "meta"):
            self.stack.append((tag, dict(attrs).get("class", "")))

    def handle_endtag(self, tag):
        if tag not in ("img", "br", "meta"):
            assert self.stack and self.stack[-1][0] == tag
            self.stack.pop()


def _tables_outside_a_wide_box(page: str) -> int:
    parser = _Tables()
    parser.feed(page)
    assert parser.tables
    return sum(not any(tag == "div" and "wide" in cls.split() for tag, cls in open_) for open_ in parser.tables)


@pytest.fixture(scope="module")
def coin(tmp_path_factory):
    """A Bernoulli fitted by L-BFGS to a tolerance (converges in a few of its 30 epochs), full batch."""
    out = tmp_path_factory.mktemp("layout") / "coin"
    genlearn.fit("bernoulli", "coin:p=0.3,n=1000", epochs=30, out=out, progress=False)
    return out


def test_every_table_scrolls_in_a_box_of_its_own(coin, tmp_path):
    report = build_report([coin, coin.parent / "missing"])
    assert _tables_outside_a_wide_box(report.html) == 0
    assert ".wide { overflow-x: auto;" in report.html
    shutil.copytree(coin, tmp_path / "again")
    assert _tables_outside_a_wide_box(build_report([coin, tmp_path / "again"]).html) == 0  # with the comparison
    md = "# t\n\n| a | b | c |\n|---|---|---|\n| 1 | 2 | 3 |\n\ntext\n"
    assert _tables_outside_a_wide_box(markdown_to_html(md, tmp_path)) == 0


def test_a_converged_run_says_where_it_converged(coin):
    record = read_run(coin, load_model=False)
    m = record.metrics
    assert m["converged"] is True and m["epochs_run"] < 30
    conv = m["convergence"]
    assert f"{m['epochs_run']} of 30 epochs" in record.status_note
    assert f"converged at epoch {conv['epoch']} ({conv['test']}, value {conv['value']:.4g})" in record.status_note


def test_the_summary_shows_settings_not_raw_json(coin):
    page = build_report([coin]).html
    summary = page.split('class="summary"')[1].split("</table>")[0]
    assert "<td>bernoulli</td>" in summary  # no options: no trailing colon
    assert "null" not in summary and "full batch" in summary and "batch_size" not in summary
    assert "patience" not in summary and "max_minutes" not in summary and "tol=1e-07" in summary
    head = page.split("<details>")[0]
    assert "`" not in head and "<code>genlearn report</code>" in head


def test_a_run_with_every_epoch_trained_and_no_metrics_does_not_just_say_resume(coin, tmp_path):
    folder = tmp_path / "stopped"
    shutil.copytree(coin, folder)
    (folder / "metrics.json").unlink()
    record = read_run(folder, load_model=False)
    assert record.status == "unfinished"
    assert "if it was interrupted" in record.status_note and "diverged" in record.status_note
    page = build_report([folder]).html
    assert f"<code>genlearn fit --resume {H.esc(folder)}</code>" in page


def test_a_point_bracket_is_a_dash():
    assert _bracket(24.4486, 24.4486) == "\u2014" and _bracket(None, None) == "\u2014"
    assert _bracket(1.0, 2.0) == f"[{H.fmt(1.0)}, {H.fmt(2.0)}]"


def test_tensorboard_sample_grid_is_padded_and_enlarged():
    images = torch.rand(64, 8 * 8, generator=torch.Generator().manual_seed(0))
    grid = sample_canvas(images, (8, 8))
    side = 8 * 9 + 1  # 8 images of 8 pixels a row, a 1-pixel border around each
    scale = 512 // side
    assert grid.shape == (side * scale, side * scale) and scale >= 4
    assert torch.all(grid[:scale] == 0.5) and torch.all(grid[:, :scale] == 0.5)  # the borders
    assert torch.all(grid[9 * scale : 10 * scale] == 0.5)  # between the first and second row of images
    first = grid[scale : 9 * scale, scale : 9 * scale]  # the first image, each pixel a scale x scale block
    assert torch.equal(first[::scale, ::scale], images[0].reshape(8, 8))
    assert torch.equal(first, images[0].reshape(8, 8).repeat_interleave(scale, 0).repeat_interleave(scale, 1))
    tiny = sample_canvas(torch.ones(64, 9), (3, 3))  # 3x3 patterns: enlarged too
    assert min(tiny.shape) >= 256 and math.isclose(float(tiny.max()), 1.0)
