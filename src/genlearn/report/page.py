"""`genlearn report`: one self-contained HTML page for one run or a comparison of several.

Per run: the model, data and recipe; the likelihoods of every split in nats per example and bits per dimension,
each with how it was obtained (exact, quadrature, AIS with its bracket, importance sampling with its Monte Carlo
error, the ELBO bound) and its bracket; the KL decomposition D_KL(Q^||P_theta) = NLL - H(Q^) with the KL to the
truth when it is known; the figures (learning curves, samples, RBM filters, latent plots); and every value of
metrics.json. With several runs, a sortable comparison table and the learning curves overlaid first. A folder
that cannot be read gets a message of its own on the page, and the others are reported."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from genlearn.errors import ConfigError, GenlearnError, RunError
from genlearn.report import html as H
from genlearn.report.collect import RunRecord, read_run
from genlearn.report.figures import overlay_curves, run_figures

SPLITS = ("train", "valid", "test")
LN2 = math.log(2.0)
#: the largest width (CSS pixels) at which an image grid (samples, filters, reconstructions) is shown
GRID_WIDTH = 520
#: how each recorded method of a likelihood was obtained, and what kind of number it is
METHODS = {"exact": ("exact", "exact"),
           "quadrature": ("quadrature over z", "exact up to the grid"),
           "ais": ("AIS", "estimate; bracket from reverse AIS (log Z) or BDMC (latent z)"),
           "importance-sampling": ("importance sampling with q(z|x)", "estimate; an upper bound in expectation"),
           "mean-field": ("mean-field", "bound: log Z from below, so the NLL from below"),
           "elbo": ("-ELBO", "bound: an upper bound of the NLL")}


@dataclass
class Report:
    """What write_report made: the page, the runs on it, and a message per folder that could not be read."""

    html: str
    runs: list = field(default_factory=list)
    errors: list = field(default_factory=list)  # (folder, message)
    path: Path | None = None


def _method(method) -> tuple[str, str]:
    if method is None:
        return "not recorded", "an earlier version did not record the method"
    method = str(method)
    if method in METHODS:
        return METHODS[method]
    base = method.split(" (", 1)[0]  # e.g. "exact (enumerating the smaller layer)": the kind of "exact"
    return method, METHODS[base][1] if base in METHODS else ""


def _bits(record: RunRecord, nats, given=None):
    if given is not None:
        return given
    d = record.n_features
    return None if nats is None or not d else nats / (d * LN2)


def _bracket(lower, upper) -> str:
    """[lower, upper]; a dash when there is none or it is a point (an exact value records lower = upper)."""
    if (lower is None and upper is None) or lower == upper:
        return "\u2014"
    return f"[{H.fmt(lower)}, {H.fmt(upper)}]"


def likelihood_rows(record: RunRecord) -> list[list]:
    """The rows of the metrics table: one per split likelihood, the -ELBO bounds, AIS over z on the first test rows
    and log Z, each with its method, kind, stderr and bracket (nats per example; bits per dimension)."""
    m, rows = record.metrics, []
    for split in SPLITS:
        nll = m.get(f"{split}_nll")
        if f"{split}_nll" not in m:
            continue
        method = m.get(f"{split}_nll_method")
        label, kind = _method(method)
        if method == "ais":
            kind = ("estimate; bracket from reverse AIS on log Z" if m.get("log_z_method") == "ais"
                    else "estimate (AIS over z); bracket from BDMC, when run")
        if method == "importance-sampling" and m.get(f"{split}_iw_samples"):
            label += f", k = {m[f'{split}_iw_samples']:,}"
        if m.get(f"{split}_nll_rows"):
            label += f", first {m[f'{split}_nll_rows']:,} rows"
        rows.append([f"{split} NLL", H.cell(nll), H.cell(m.get(f"{split}_nll_stderr")),
                     H.cell(_bits(record, nll, m.get(f"{split}_bits_per_dim"))), label, kind,
                     _bracket(m.get(f"{split}_nll_lower"), m.get(f"{split}_nll_upper"))])
    for split in SPLITS:
        elbo = m.get(f"{split}_elbo")
        if elbo is not None:
            label, kind = METHODS["elbo"]
            rows.append([f"{split} -ELBO", H.cell(-elbo), H.cell(None), H.cell(_bits(record, -elbo)), label, kind,
                         "\u2014"])
    if m.get("ais_test_nll") is not None:
        gap = m.get("bdmc_gap")
        label = (f"AIS over z (HMC), first {m.get('ais_rows')} test rows, {m.get('ais_steps')} distributions x "
                 f"{m.get('ais_chains')} chains")
        bracket = "\u2014" if gap is None else f"BDMC gap {H.fmt(gap)} on {m.get('bdmc_rows')} simulated rows"
        rows.append(["test NLL (AIS rows)", H.cell(m["ais_test_nll"]), H.cell(m.get("ais_test_nll_stderr")),
                     H.cell(_bits(record, m["ais_test_nll"])), label, "estimate; an upper bound in expectation",
                     bracket])
        if m.get("ais_is_nll") is not None:
            rows.append(["same rows, IS", H.cell(m["ais_is_nll"]), H.cell(m.get("ais_is_nll_stderr")),
                         H.cell(_bits(record, m["ais_is_nll"])), METHODS["importance-sampling"][0],
                         METHODS["importance-sampling"][1], "\u2014"])
    if m.get("log_z") is not None:
        label, kind = _method(m.get("log_z_method"))
        details = m.get("log_z_details") or {}
        if details.get("steps"):
            label += f", {details['steps']:,} temperatures x {details.get('chains')} chains"
        if details.get("ess_forward") is not None:
            label += f", ESS {details['ess_forward']:.1f}"
        rows.append(["log Z", H.cell(m["log_z"]), H.cell(details.get("forward_stderr")), H.cell(None), label, kind,
                     _bracket(m.get("log_z_lower"), m.get("log_z_upper"))])
    return rows


def kl_rows(record: RunRecord) -> list[list]:
    """The KL decomposition D_KL(Q^||P_theta) = NLL(theta) - H(Q^) on the training rows, and D_KL(Q||P_theta) to
    the truth when it is known (nats)."""
    m, rows = record.metrics, []
    if not m:
        return rows
    label, _ = _method(m.get("train_nll_method"))
    if "train_nll" in m:
        rows.append(["NLL(theta) = -(1/M) sum log P(x_m)", H.cell(m.get("train_nll")), f"train rows, {label}"])
    if "entropy_empirical" in m:
        h = m.get("entropy_empirical")
        rows.append(["H(Q^), entropy of the empirical distribution", H.cell(h),
                     "exact (counts of the distinct training rows)" if h is not None
                     else "none: real-valued or dynamically binarized data"])
    if "kl_empirical" in m:
        kind = label if m.get("kl_empirical") is not None else "not defined here"
        bracket = ""
        if _bracket(m.get("kl_empirical_lower"), m.get("kl_empirical_upper")) != "\u2014":
            bracket = " " + _bracket(m.get("kl_empirical_lower"), m.get("kl_empirical_upper"))
        rows.append(["D_KL(Q^||P_theta) = NLL - H(Q^)", H.cell(m.get("kl_empirical")), kind + bracket])
    if m.get("kl_empirical_upper") is not None and "kl_empirical" not in m:
        rows.append(["D_KL(Q^||P_theta) <= -ELBO - H(Q^)", H.cell(m["kl_empirical_upper"]), "upper bound (ELBO)"])
    if m.get("kl_empirical_upper_is") is not None:
        rows.append(["D_KL(Q^||P_theta) <= IS NLL - H(Q^)", H.cell(m["kl_empirical_upper_is"]),
                     "upper bound in expectation (importance sampling)"])
    if "kl_true" in m:
        if m["kl_true"] is None:
            rows.append(["D_KL(Q||P_theta), the true Q", H.cell(None), m.get("kl_true_note") or "not computable"])
        else:
            how = str(m.get("kl_true_method") or "not recorded")
            if m.get("kl_true_stderr") is not None:
                how += f", stderr {H.fmt(m['kl_true_stderr'])}"
            if _bracket(m.get("kl_true_lower"), m.get("kl_true_upper")) != "\u2014":
                how += " " + _bracket(m.get("kl_true_lower"), m.get("kl_true_upper"))
            rows.append(["D_KL(Q||P_theta), the true Q", H.cell(m["kl_true"]), how])
    elif record.data.get("truth_known") is False:
        rows.append(["D_KL(Q||P_theta), the true Q", H.cell(None), "the true distribution of these data is unknown"])
    return rows


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += _flatten(v, name + ".")
        else:
            out.append((name, v))
    return out


#: how the summary shows a training setting that is unset (None); an unset setting not named here is left out
UNSET = {"batch_size": "full batch"}


def _settings(values: dict, unset: dict | None = None) -> str:
    """key=value, ... of recorded settings: true/false, lists of numbers as 1,2; unset ones as `unset` says."""
    parts = []
    for k, v in values.items():
        if v is None:
            if unset and k in unset:
                parts.append(unset[k])
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float, str)) for x in v):
            parts.append(f"{k}={','.join(H.raw_value(x) for x in v)}")
        else:
            parts.append(f"{k}={H.raw_value(v)}")
    return ", ".join(parts)


def _summary(record: RunRecord) -> str:
    m, meta = record.metrics, record.meta
    config = m.get("model_config") or meta.get("model_config") or {}
    rule = m.get("rule") or meta.get("rule")
    train = m.get("train_config") or meta.get("train_config") or {}
    data = record.data
    recipe = m.get("recipe") or meta.get("recipe")
    options = _settings(config)
    rows = [["model", record.model_name + (f": {options}" if options else "")]]
    if m.get("n_parameters") is not None:
        rows.append(["parameters", H.fmt(m["n_parameters"])])
    if rule:
        settings = _settings(rule.get("settings") or {})
        rows.append(["learning rule", rule.get("name", "?") + (f" ({settings})" if settings else "")])
    if m.get("objective"):
        rows.append(["objective", m["objective"]])
    what = [record.dataset]
    if data.get("spec") or meta.get("data_spec"):
        what.append(f"spec {data.get('spec') or meta.get('data_spec')}")
    if data.get("sizes"):
        what.append("sizes " + ", ".join(f"{k} {v:,}" for k, v in data["sizes"].items() if v is not None))
    for key in ("kind", "binarization", "source"):
        if data.get(key):
            what.append(f"{key} {data[key]}")
    if data.get("image_shape"):
        what.append("images {}x{}".format(*data["image_shape"]))
    rows.append(["data", "; ".join(what)])
    if recipe:
        overrides = recipe.get("overrides") or {}
        rows.append(["recipe", f"{recipe.get('name')}" + (f", overrides {H.raw_value(overrides)}" if overrides
                                                          else ", no overrides")])
    if train:
        keys = ("epochs", "optimizer", "lr", "batch_size", "schedule", "patience", "max_minutes", "tol", "rel_tol",
                "seed")
        rows.append(["training", _settings({k: train[k] for k in keys if k in train}, UNSET)])
    times = []
    for key, label in (("train_seconds", "training"), ("wall_seconds", "wall, with evaluation")):
        value = m.get(key) if m.get(key) is not None else (meta.get("state") or {}).get(key)
        if value is not None:
            times.append(f"{label} {value:,.1f} s")
    if times:
        rows.append(["time", "; ".join(times)])
    return H.table(None, rows, cls="summary")


def render_run(record: RunRecord, figures: list, anchor: str) -> str:
    """The section of one run."""
    out = [f'<h2 id="{H.esc(anchor)}">{H.esc(record.name)}: {H.esc(record.model_name)} on '
           f"{H.esc(record.dataset)}</h2>",
           f'<p><span class="status {record.status}">{record.status}</span> {H.esc_code(record.status_note)}<br>'
           f'<span class="note">folder {H.esc(record.path)}</span></p>', _summary(record)]
    out.append("<h3>Likelihoods (nats per example; bits per dimension)</h3>")
    rows = likelihood_rows(record)
    if rows:
        out.append(H.table(["quantity", "nats", "stderr", "bits/dim", "method", "kind", "bracket [lower, upper]"],
                           rows))
    else:
        out.append("<p>No final metrics: the run stopped before its final evaluation.</p>")
    last = next((r for r in reversed(record.history) if any(k.endswith(("nll", "kl", "elbo", "_is", "_ais"))
                                                              for k in r)), None)
    if record.status == "unfinished" and last is not None:
        keys = [k for k in last if k not in ("epoch", "step") and isinstance(last[k], (int, float))]
        out.append(f"<p>Last monitoring record (epoch {H.esc(last.get('epoch'))}), as the trainer measured it "
                   "(possibly on the first --monitor-rows rows or one ensemble member):</p>")
        out.append(H.table(["quantity", "value"], [[k, H.cell(last[k])] for k in keys]))
    kl = kl_rows(record)
    if kl:
        out.append("<h3>The KL decomposition D_KL(Q^||P_theta) = NLL(theta) - H(Q^) (nats)</h3>")
        out.append(H.table(["quantity", "nats", "how"], kl))
    if figures:
        out.append("<h3>Figures</h3><div>")
        out += [H.img(f.png, f"{record.name}: {f.title}", f"{f.title}: {f.caption}",
                      max_width=GRID_WIDTH if f.key in ("samples", "filters", "reconstructions") else None)
                for f in figures]
        out.append("</div>")
    if record.notes:
        out.append('<ul class="note">' + "".join(f"<li>{H.esc_code(n)}</li>" for n in record.notes) + "</ul>")
    if record.metrics:
        flat = _flatten(record.metrics)
        out.append(f"<details><summary>every value of metrics.json ({len(flat)})</summary>")
        out.append(H.table(["key", "value"], [[k, H.cell(v, numeric=False, html_content=H.esc(H.raw_value(v)))]
                                              for k, v in flat]))
        out.append("</details>")
    return "\n".join(out)


def _test_figure(record: RunRecord):
    """(value, method, lower, upper) of the run's headline likelihood, the final test NLL; Nones for a run without
    one (an unfinished run)."""
    m = record.metrics
    if m.get("test_nll") is not None:
        return m["test_nll"], m.get("test_nll_method"), m.get("test_nll_lower"), m.get("test_nll_upper")
    return None, None, None, None


def render_comparison(records: list[RunRecord], anchors: list[str], overlay: bool = True) -> str:
    """The comparison table (sortable) and the overlaid learning curves."""
    rows = []
    for r, anchor in zip(records, anchors):
        m = r.metrics
        test, method, lo, hi = _test_figure(r)
        kl = m.get("kl_empirical") if m.get("kl_empirical") is not None else m.get("kl_empirical_upper")
        kl_label = "" if m.get("kl_empirical") is not None or kl is None else " (upper bound)"
        link = f'<a href="#{H.esc(anchor)}">{H.esc(r.name)}</a>'
        rows.append([H.cell(r.name, numeric=False, html_content=link), r.model_name, r.dataset,
                     H.cell(r.status, numeric=False), H.cell(m.get("n_parameters")),
                     H.cell(m.get("epochs_run", (r.meta.get("state") or {}).get("epoch"))),
                     H.cell(m.get("train_nll")), H.cell(m.get("valid_nll")), H.cell(test),
                     _method(method)[0] if test is not None else "\u2014", _bracket(lo, hi),
                     H.cell(_bits(r, test, m.get("test_bits_per_dim"))),
                     H.cell(kl, html_content=H.esc(H.fmt(kl) + kl_label)), H.cell(m.get("kl_true")),
                     H.cell(m.get("train_seconds", (r.meta.get("state") or {}).get("train_seconds")))])
    headers = ["run", "model", "data", "status", "parameters", "epochs", "train NLL", "valid NLL", "test NLL",
               "test method", "test bracket", "test bits/dim", "D_KL(Q^||P)", "D_KL(Q||P) true", "train s"]
    out = ["<h2 id=\"comparison\">Comparison</h2>",
           "<p>Nats per example; click a column header to sort. Each likelihood is what the run's final "
           "evaluation recorded, with its method; unfinished runs have none.</p>",
           H.table(headers, rows, sortable=True, cls="comparison")]
    overlay = overlay_curves(records) if overlay else None
    if overlay is not None:
        out.append(H.img(overlay, "overlaid learning curves", "the monitored curves of every run; a curve labelled "
                         "with a quantity in brackets is that run's stand-in for the panel's (AIS, one ensemble "
                         "member, -ELBO or importance sampling)"))
    return "\n".join(out)


def build_report(directories, data_dir=None, title: str | None = None, samples: bool = True,
                 figures: bool = True) -> Report:
    """The report page over `directories` (run folders). A folder that cannot be read gets a message on the page
    (and in Report.errors) and the others are reported; ConfigError when no folder is given. samples=False draws
    no samples that the folder does not hold; figures=False shows the numbers only."""
    directories = [Path(d) for d in directories]
    if not directories:
        raise ConfigError("give at least one run folder, e.g. `genlearn report runs/coin --out report.html`")
    records, errors = [], []
    for d in directories:
        try:
            records.append(read_run(d))
        except GenlearnError as exc:
            errors.append((d, str(exc)))
    anchors = _anchors(records)
    sections = []
    for r, anchor in zip(records, anchors):
        sections.append(render_run(r, run_figures(r, data_dir, samples=samples) if figures else [], anchor))
    title = title or ("genlearn report: " + ", ".join(r.name for r in records) if records
                      else "genlearn report")
    body = [f"<h1>{H.esc(title)}</h1>",
            f'<p class="note">{len(records)} run(s) reported, {len(errors)} folder(s) unreadable; made by '
            f"<code>genlearn report</code> on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Fitting minimises "
            "D_KL(Q^||P_theta) = NLL(theta) - H(Q^); every likelihood says how it was obtained.</p>"]
    for d, message in errors:
        body.append(f'<div class="error"><strong>{H.esc(d)}</strong> could not be reported: {H.esc(message)}</div>')
    if len(records) > 1:
        body.append(render_comparison(records, anchors, overlay=figures))
    body += sections
    return Report(H.page(title, "\n".join(body), script=len(records) > 1), records, errors)


def _anchors(records: list[RunRecord]) -> list[str]:
    seen, out = {}, []
    for r in records:
        base = "run-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in r.name)
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return out


def write_report(directories, out, data_dir=None, title: str | None = None, overwrite: bool = True) -> Report:
    """build_report, written to `out` (an .html file); RunError when every folder is unreadable (the message lists
    each) or when `out` exists and overwrite is False."""
    out = Path(out)
    if out.exists() and out.is_dir():
        raise RunError(f"--out {out} is a folder; give a file name such as report.html")
    if out.suffix.lower() not in (".html", ".htm"):
        raise RunError(f"--out {out}: a report is one HTML page; give a file name ending in .html")
    above = next((a for a in out.parents if a.exists()), None)
    if above is not None and not above.is_dir():
        raise RunError(f"--out {out}: {above} is a file, not a folder; choose another --out")
    seen = {}
    for folder in directories:
        key = Path(folder).resolve()
        if key in seen:
            again = "" if str(seen[key]) == str(folder) else f" (also as {seen[key]})"
            raise RunError(f"the run {folder} is given twice{again}; give each run folder once")
        seen[key] = folder
    if out.exists() and not overwrite:
        raise RunError(f"{out} exists; choose another --out or pass --overwrite")
    report = build_report(directories, data_dir, title)
    if not report.runs:
        raise RunError("no run folder could be reported: " + "; ".join(f"{d}: {msg}" for d, msg in report.errors))
    out.parent.mkdir(parents=True, exist_ok=True)
    from genlearn.learning.checkpoint import atomic_write_bytes

    # a new file renamed over `out`: a link there is replaced, not written through, and a reader never sees half
    atomic_write_bytes(out, lambda tmp: Path(tmp).write_text(report.html, encoding="utf-8"))
    report.path = out
    return report


__all__ = ["Report", "build_report", "kl_rows", "likelihood_rows", "render_comparison", "render_run",
           "write_report"]
