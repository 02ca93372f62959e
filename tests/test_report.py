"""`genlearn report` (genlearn.report): the HTML itself is validated, not looked at: well-formed (every element
closed in order, by html.parser), every figure embedded as a decodable non-empty PNG, every value of metrics.json
on the page, no external URL, the size cap; the comparison page over three families (an exact product of
Bernoullis, an RBM whose likelihood is AIS-estimated, a MADE ensemble of two masks) with one unreadable folder;
unfinished, legacy and published run folders; the demo's Markdown page; and the TensorBoard logger (skipped
without the tensorboard package)."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

import genlearn
from genlearn.cli import main
from genlearn.errors import ConfigError, RunError
from genlearn.report import build_report, write_report
from genlearn.report import html as H
from genlearn.report.collect import read_run
from genlearn.report.markdown import markdown_page

ROOT = Path(__file__).resolve().parents[1]
LEGACY = ROOT / "tests" / "fixtures" / "legacy_runs"
PUBLISHED = ROOT / "benchmarks" / "models"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
FIVE_MB = 5 * 1024 * 1024


class _Checker(HTMLParser):
    """Fails on an end tag that does not close the innermost open element; collects <img> and the attributes
    that point somewhere (src, href)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.images, self.links, self.errors = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.links.append(attrs[key])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def check_page(page: str) -> _Checker:
    """The validations every page must pass; returns the parser's findings for more specific checks."""
    assert page.startswith("<!DOCTYPE html>")
    parser = _Checker()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == [], (parser.errors, parser.stack)
    assert not re.search(r"(?i)(https?|ftp):", page), "an external URL on the page"
    for link in parser.links:  # images embedded, links within the page
        assert link.startswith(("data:image/png;base64,", "#")), link
    from PIL import Image

    for attrs in parser.images:
        data = base64.b64decode(attrs["src"].split(",", 1)[1], validate=True)
        assert data.startswith(H.PNG_SIGNATURE)
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            assert min(img.size) > 16 and max(img.size) <= H.MAX_IMAGE_SIDE
            lo, hi = img.convert("L").getextrema()
            assert lo < hi, "a blank image"
        assert attrs.get("alt")
    return parser


def leaves(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three families on the digits, a few epochs each (~10 s together), an unfinished copy of the first, a VAE
    with a 2-D latent, and a folder whose checkpoint is not JSON."""
    root = tmp_path_factory.mktemp("report-runs")
    common = {"optimizer": "adam", "batch_size": 100, "lr": 0.05, "progress": False}
    genlearn.fit("product-bernoulli", "digits", epochs=3, out=root / "exact", **common)
    genlearn.fit("rbm", "digits", hidden=26, epochs=2, partition="ais",
                 partition_options={"steps": 200, "chains": 20}, out=root / "rbm-ais",
                 **{**common, "optimizer": "sgd"})
    genlearn.fit("made", "digits", hidden="16", masks=2, epochs=2, out=root / "made-ensemble", **common)
    genlearn.fit("vae", "digits", latent=2, hidden="16", epochs=2, partition_options={"iw_samples": 50},
                 out=root / "vae", **{**common, "lr": 0.01})
    shutil.copytree(root / "exact", root / "unfinished")
    for name in ("metrics.json", "model.safetensors", "samples.png", "learning_curve.png"):
        (root / "unfinished" / name).unlink()
    bad = root / "corrupt"
    bad.mkdir()
    (bad / "checkpoint.json").write_text("{not json")
    return root


@pytest.fixture(scope="module")
def comparison(runs):
    return build_report([runs / "exact", runs / "rbm-ais", runs / "made-ensemble", runs / "corrupt"])


def test_comparison_of_three_families_with_one_unreadable_folder(runs, comparison):
    page = comparison.html
    check_page(page)
    assert [r.name for r in comparison.runs] == ["exact", "rbm-ais", "made-ensemble"]
    (folder, message), = comparison.errors
    assert folder == runs / "corrupt" and "not valid JSON" in message
    assert H.esc(str(runs / "corrupt")) in page and "could not be reported" in page
    table = re.search(r'<table class="comparison sortable">.*?</table>', page, re.S).group(0)
    assert table.count("<tr>") == 4  # header + the three runs
    for r in comparison.runs:
        assert f'href="#run-{r.name}"' in table and f'id="run-{r.name}"' in page
        assert H.fmt(r.metrics["test_nll"]) in table
    assert "<script>" in page and "sortable" in page
    # the AIS run: its method and bracket, as recorded
    m = comparison.runs[1].metrics
    assert m["test_nll_method"] == "ais" and m["log_z_method"] == "ais"
    assert f"[{H.fmt(m['test_nll_lower'])}, {H.fmt(m['test_nll_upper'])}]" in page
    assert f"[{H.fmt(m['log_z_lower'])}, {H.fmt(m['log_z_upper'])}]" in page
    assert "ESS" in page and "RBM filters" in page
    assert "overlaid learning curves" in page


def test_every_value_of_metrics_json_is_on_the_page(comparison):
    page = comparison.html
    for r in comparison.runs:
        metrics = json.loads((r.path / "metrics.json").read_text())
        metrics.pop("history")
        checked = 0
        for key, value in leaves(metrics):
            assert f"<td>{H.esc(key)}</td><td>{H.esc(H.raw_value(value))}</td>" in page, (r.name, key)
            checked += 1
        assert checked > 40


def test_the_likelihood_and_kl_tables_show_the_recorded_numbers(comparison):
    """The headline numbers as the tables show them, recomputed: bits/dim = nats / (D ln 2) and the decomposition
    D_KL(Q^||P) = NLL - H(Q^) against the recorded terms."""
    import math

    for r in comparison.runs:
        m = r.metrics
        d = m["data"]["n_features"]
        section = comparison.html.split(f'id="run-{r.name}"')[1].split("<h2")[0]
        for split in ("train", "valid", "test"):
            assert H.fmt(m[f"{split}_nll"]) in section
            assert m[f"{split}_bits_per_dim"] == pytest.approx(m[f"{split}_nll"] / (d * math.log(2)), rel=1e-9)
            assert H.fmt(m[f"{split}_bits_per_dim"]) in section
        assert m["kl_empirical"] == pytest.approx(m["train_nll"] - m["entropy_empirical"], rel=1e-9, abs=1e-9)
        kl_row = re.search(r"<td>D_KL\(Q\^\|\|P_theta\) = NLL - H\(Q\^\)</td><td[^>]*>([^<]*)</td>", section)
        assert kl_row.group(1) == H.fmt(m["train_nll"] - m["entropy_empirical"])
        methods = re.findall(r"<td>(train|valid|test) NLL</td>(?:<td[^>]*>[^<]*</td>){3}<td>([^<]*)</td>", section)
        expected = "AIS" if r.name == "rbm-ais" else "exact"
        assert [meth for _, meth in methods] == [expected] * 3


def test_figures_of_each_family(comparison, runs):
    page = comparison.html
    n_images = page.count('src="data:image/png;base64,')
    # exact: curve + samples; rbm: loss curve + samples + filters; made: curve + samples; the overlay
    assert n_images == 2 + 3 + 2 + 1
    assert "training objective" in page  # the RBM monitored no likelihood: its loss curve stands in


def test_single_run_pages_stay_under_the_cap(runs, tmp_path):
    for name in ("exact", "rbm-ais", "made-ensemble", "vae"):
        report = write_report([runs / name], tmp_path / f"{name}.html")
        check_page(report.html)
        assert (tmp_path / f"{name}.html").stat().st_size < FIVE_MB
        assert "Comparison" not in report.html and "<script>" not in report.html


def test_latent_model_shows_its_bounds_and_latent_plots(runs):
    report = build_report([runs / "vae"])
    page = report.html
    check_page(page)
    m = report.runs[0].metrics
    assert m["test_nll_method"] == "importance-sampling"
    assert "importance sampling with q(z|x), k = 50" in page
    assert f"<td>test -ELBO</td><td class=\"num\" data-v=\"{H.raw_value(-m['test_elbo'])}\">" in page
    for title in ("2-D latent manifold", "reconstructions", "latent encodings", "samples", "learning curves"):
        assert f'alt="vae: {title}"' in page
    assert H.fmt(m["kl_empirical_upper"]) in page and "upper bound (ELBO)" in page


def test_an_unfinished_run_says_so_and_is_drawn_from_its_checkpoint(runs):
    record = read_run(runs / "unfinished")
    assert record.status == "unfinished" and record.metrics == {} and record.model is not None
    report = build_report([runs / "unfinished"])
    page = report.html
    check_page(page)
    assert "unfinished: a checkpoint at epoch 3 of 3" in page and "--resume" in page
    assert "Last monitoring record (epoch 3)" in page
    assert "samples drawn for this report" in page and page.count("data:image/png") == 2


def test_a_run_whose_parameters_cannot_be_read_keeps_its_numbers(runs, tmp_path):
    shutil.copytree(runs / "made-ensemble", tmp_path / "broken")
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"truncated")
    (tmp_path / "broken" / "samples.png").unlink()
    report = build_report([tmp_path / "broken"])
    check_page(report.html)
    record = report.runs[0]
    assert record.model is None and record.model_error and report.errors == []
    assert H.fmt(record.metrics["test_nll"]) in report.html
    assert "the model could not be loaded" in report.html and 'alt="broken: samples"' not in report.html


def test_legacy_and_published_folders(tmp_path):
    legacy = sorted(p for p in LEGACY.iterdir() if p.is_dir())
    report = build_report(legacy, figures=False)  # the numbers of every earlier version's run
    check_page(report.html)
    assert len(report.runs) == len(legacy) and report.errors == []
    assert all(r.model is not None and r.status == "finished" for r in report.runs)
    for r in report.runs:
        assert H.fmt(r.metrics["test_nll"]) in report.html
    report = build_report([LEGACY / "rbm-pcd"])  # and the figures of one (none were stored then: all drawn)
    check_page(report.html)
    assert [f"{k}" for k in ("learning curves", "samples", "RBM filters") if f'alt="rbm-pcd: {k}"' in report.html] \
        == ["learning curves", "samples", "RBM filters"]
    published = PUBLISHED / "rbm-784x20-pcd"
    report = write_report([published], tmp_path / "published.html")
    check_page(report.html)
    m = report.runs[0].metrics
    assert report.runs[0].status == "finished" and H.fmt(m["test_nll"]) in report.html
    assert "RBM filters" in report.html and (tmp_path / "published.html").stat().st_size < FIVE_MB


def test_every_folder_unreadable_is_one_error(tmp_path):
    with pytest.raises(RunError, match="no run folder could be reported"):
        write_report([tmp_path / "missing", tmp_path], tmp_path / "r.html")
    with pytest.raises(ConfigError, match="at least one run folder"):
        build_report([])


def test_cap_png_scales_down_large_images():
    from PIL import Image

    noise = (torch.rand(1700, 2100, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    big = buf.getvalue()
    assert len(big) > H.MAX_IMAGE_BYTES
    capped = H.cap_png(big)
    with Image.open(io.BytesIO(capped)) as img:
        assert max(img.size) <= H.MAX_IMAGE_SIDE and img.size[0] / img.size[1] == pytest.approx(2100 / 1700, 0.01)
    assert len(capped) <= H.MAX_IMAGE_BYTES
    small = io.BytesIO()
    Image.fromarray(noise[:50, :60]).save(small, format="PNG")
    assert H.cap_png(small.getvalue()) == small.getvalue()
    with pytest.raises(ValueError, match="not a PNG"):
        H.cap_png(b"GIF89a")


def test_cli_report(runs, tmp_path, capsys):
    out = tmp_path / "page.html"
    code = main(["report", str(runs / "exact"), str(runs / "made-ensemble"), str(runs / "corrupt"),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0 and out.is_file()
    assert f"genlearn: warning: {runs / 'corrupt'} was not reported" in err and "2 run(s)" in err
    check_page(out.read_text())
    code = main(["report", str(runs / "exact"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("genlearn: error:") and "--overwrite" in err and "Traceback" not in err
    code = main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.html")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err


def test_markdown_page_embeds_its_images(tmp_path):
    from PIL import Image

    Image.linear_gradient("L").resize((80, 60)).save(tmp_path / "plot.png")
    (tmp_path / "report.md").write_text(
        "# A title\n\nSome **bold** and `code` text,\nwrapped over two lines <b>.\n\n## Section\n\n"
        "| N | value |\n|---|---|\n| 10 | 0.5 |\n| 100 | 0.25 |\n\n![a plot](plot.png) ![again](plot.png)\n\n"
        "- one\n- two\n")
    path = markdown_page(tmp_path / "report.md")
    page = path.read_text()
    assert path == tmp_path / "index.html"
    parser = check_page(page)
    assert len(parser.images) == 2 and [i["alt"] for i in parser.images] == ["a plot", "again"]
    assert "<h1>A title</h1>" in page and "<strong>bold</strong>" in page and "<code>code</code>" in page
    assert "wrapped over two lines &lt;b&gt;." in page
    assert '<td class="num">100</td><td class="num">0.25</td>' in page and "<li>two</li>" in page
    (tmp_path / "report.md").write_text("# t\n\n![gone](missing.png)\n")
    with pytest.raises(RunError, match="missing.png"):
        markdown_page(tmp_path / "report.md")


# ---------------------------------------------------------------------------------------------------- TensorBoard
def test_tensorboard_flag_without_the_package(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as without tensorboard
    from genlearn.report.tensorboard import TensorBoardLogger

    with pytest.raises(ConfigError, match=r"genlearn\[tensorboard\]"):
        TensorBoardLogger(tmp_path / "tb")
    code = main(["fit", "bernoulli", "--data", "coin:n=50", "--epochs", "2", "--out", str(tmp_path / "run"),
                 "--tensorboard", str(tmp_path / "tb"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "pip install 'genlearn[tensorboard]'" in err
    assert not (tmp_path / "run").exists()  # refused before anything was trained or written


def _events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_logs_the_monitoring_history(tmp_path):
    pytest.importorskip("tensorboard")
    from genlearn.report.tensorboard import TensorBoardLogger

    settings = dict(epochs=4, lr=0.05, optimizer="adam", batch_size=100, progress=False)
    logger = TensorBoardLogger(tmp_path / "tb", image_seconds=0)
    run = genlearn.fit("product-bernoulli", "digits", callbacks=[logger], **settings)
    logger.finish(run.metrics)
    acc = _events(tmp_path / "tb")
    tags = acc.Tags()
    history = run.metrics["history"]
    for key, tag in (("train_nll", "nll/train/exact"), ("valid_nll", "nll/valid/exact"),
                     ("train_kl", "kl/train_empirical"), ("lr", "lr")):
        logged = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert logged == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in history], tag
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3, 4]  # epoch 0's loss is NaN: not logged
    seconds = [e.value for e in acc.Scalars("time/epoch_seconds")]
    assert len(seconds) == 4 and all(s > 0 for s in seconds)
    assert sum(seconds) == pytest.approx(run.metrics["train_seconds"], rel=1e-4)
    images = acc.Images("samples")
    # one grid of 8 x 8 digits with 1-pixel borders (8 * 9 + 1 = 73 pixels a side), each pixel shown 7 x 7
    assert [e.step for e in images] == [1, 2, 3, 4] and all(e.width == e.height == 73 * 7 for e in images)
    assert acc.Scalars("final/test_nll")[0].value == pytest.approx(run.metrics["test_nll"], rel=1e-6)
    assert "final/methods/text_summary" in tags["tensors"]
    # logging changes nothing of the fit (the samples are drawn with their own generator)
    plain = genlearn.fit("product-bernoulli", "digits", **settings)
    strip = [{k: v for k, v in r.items() if "seconds" not in k} for r in plain.metrics["history"]]
    assert strip == [{k: v for k, v in r.items() if "seconds" not in k} for r in history]


def test_tensorboard_from_the_cli_with_ais_monitoring(tmp_path, capsys):
    """An RBM monitored by forward AIS: its NLLs are logged under their method, with the AIS effective sample
    size; the CLI writes the final metrics too."""
    pytest.importorskip("tensorboard")
    code = main(["fit", "rbm", "--data", "digits", "--hidden", "26", "--epochs", "2", "--optimizer", "sgd",
                 "--batch-size", "100", "--lr", "0.05", "--monitor-ais-steps", "50", "--partition", "ais",
                 "--ais-steps", "100", "--ais-chains", "10", "--out", str(tmp_path / "run"),
                 "--tensorboard", str(tmp_path / "tb"), "--quiet"])
    capsys.readouterr()
    assert code == 0
    acc = _events(tmp_path / "tb")
    scalars = acc.Tags()["scalars"]
    for tag in ("nll/train/ais_forward", "nll/valid/ais_forward", "ais/ess", "ais/log_z_forward",
                "time/epoch_seconds", "final/test_nll"):
        assert tag in scalars, tag
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert [e.value for e in acc.Scalars("ais/ess")] == pytest.approx([r["ais_ess"] for r in history], rel=1e-6)


def test_a_method_with_a_detail_keeps_the_kind_of_its_method():
    from genlearn.report.page import METHODS, _method

    assert _method("exact (enumerating the smaller layer)") == ("exact (enumerating the smaller layer)", "exact")
    assert _method("ais") == METHODS["ais"]
    assert _method("something new") == ("something new", "")


def test_a_single_loss_record_draws_no_curve_and_says_why():
    from genlearn.report.figures import _loss_curve

    assert _loss_curve([{"epoch": 60, "loss": -5.0}], "rbm") is None
    assert _loss_curve([{"epoch": 59, "loss": -5.1}, {"epoch": 60, "loss": -5.0}], "rbm")[:8] == b"\x89PNG\r\n\x1a\n"
