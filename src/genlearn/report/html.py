"""Small HTML helpers for the self-contained report pages: escaping, tables (optionally sortable by a small inline
script, no framework), PNG figures embedded as base64 data URIs (capped in pixels and bytes), and the page shell
with its inline style. Nothing here refers to an external URL: a page opens without network access."""
from __future__ import annotations

import base64
import html
import io
import json
import math
import re

#: the largest side of an embedded image in pixels, and its largest size in bytes after PNG encoding: a figure
#: beyond either is scaled down (aspect kept) until it fits, so that a page with the default plots stays < 5 MB
MAX_IMAGE_SIDE = 1600
MAX_IMAGE_BYTES = 600_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
h3 { font-size: 1.05em; margin-top: 1.2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.sortable th { cursor: pointer; }
table.sortable th::after { content: " \\2195"; color: #999; font-size: 0.8em; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.8em; color: #555; max-width: 640px; }
.status { display: inline-block; padding: 0.1em 0.5em; border-radius: 0.3em; font-size: 0.85em; }
.finished { background: #e3f4e3; color: #1d5e1d; }
.unfinished { background: #fff2d6; color: #7a5200; }
.error { background: #fde4e4; color: #8a1010; border: 1px solid #e0a0a0; padding: 0.5em 0.8em; margin: 0.6em 0; }
.note { color: #555; font-size: 0.9em; }
code { background: #f5f5f5; padding: 0 0.2em; }
details { margin: 0.6em 0; }
.wide { overflow-x: auto; max-width: 100%; }
p, li, figcaption, h1, h2 { overflow-wrap: break-word; }
figure { max-width: calc(100% - 1em); }
"""

#: click a header of a table.sortable to sort its body by that column (numbers by value, using data-v when given);
#: a second click reverses the order
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var dir = th.dataset.dir === "asc" ? -1 : 1;
      th.dataset.dir = dir === 1 ? "asc" : "desc";
      function key(row) {
        var cell = row.cells[col], v = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
        var x = parseFloat(v);
        return isNaN(x) ? v.toLowerCase() : x;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) { return (typeof x === "number" ? -1 : 1) * dir; }
        return (x < y ? -1 : x > y ? 1 : 0) * dir;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def esc(value) -> str:
    """Text for HTML (quotes escaped too, so that it may also stand in an attribute)."""
    return html.escape(str(value), quote=True)


CODE_SPAN = re.compile(r"`([^`]+)`")


def esc_code(text) -> str:
    """esc(text) with each `span` in backticks as <code>span</code>."""
    return CODE_SPAN.sub(lambda m: f"<code>{m.group(1)}</code>", esc(text))


def fmt(value, digits: int = 4) -> str:
    """A number for a table: fixed with `digits` decimals for moderate magnitudes, else 4 significant digits in
    exponent form; None as an em dash; non-numbers as their text."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:.{digits}f}"
        return f"{value:.4g}"
    return str(value)


def raw_value(value) -> str:
    """A recorded value in full: floats with 10 significant digits, lists and dicts as JSON, None as null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def cell(value, numeric: bool | None = None, sort_value=None, html_content: str | None = None) -> dict:
    """A table cell: `value` shown through fmt (or `html_content` as given, already escaped); numbers are
    right-aligned and sort by their value (or by `sort_value`)."""
    if numeric is None:
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if sort_value is None and numeric and value is not None:
        sort_value = value
    return {"html": html_content if html_content is not None else esc(fmt(value)), "numeric": numeric,
            "sort": sort_value}


def wide(content: str) -> str:
    """`content` (a table) in a box that scrolls sideways when it is wider than the page, so the page does not."""
    return f'<div class="wide">{content}</div>'


def table(headers: list[str] | None, rows: list[list], sortable: bool = False, cls: str = "") -> str:
    """An HTML table (without a header row when headers is None) in a wide() box. A row item is a cell() dict, or
    any value (shown through fmt)."""
    classes = " ".join(c for c in (cls, "sortable" if sortable else "") if c)
    out = [f'<table class="{classes}">' if classes else "<table>"]
    if headers is not None:
        out += ["<thead><tr>", *(f"<th>{esc(h)}</th>" for h in headers), "</tr></thead>"]
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>")
        for item in row:
            c = item if isinstance(item, dict) and "html" in item else cell(item)
            attrs = ' class="num"' if c["numeric"] else ""
            if c.get("sort") is not None:
                attrs += f' data-v="{esc(raw_value(c["sort"]))}"'
            out.append(f"<td{attrs}>{c['html']}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return wide("".join(out))


def cap_png(data: bytes, max_side: int = MAX_IMAGE_SIDE, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The PNG `data`, scaled down (Lanczos, aspect kept) while its larger side exceeds max_side pixels or its
    encoding exceeds max_bytes; unchanged when it fits. Raises ValueError for bytes that are not a PNG image."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG image")
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        width, height = img.size
        if max(width, height) <= max_side and len(data) <= max_bytes:
            return data
        scale = min(1.0, max_side / max(width, height))
        while True:
            size = (max(1, int(width * scale)), max(1, int(height * scale)))
            buf = io.BytesIO()
            img.resize(size, Image.LANCZOS).save(buf, format="PNG", optimize=True)
            out = buf.getvalue()
            if len(out) <= max_bytes or min(size) <= 16:
                return out
            scale *= 0.75


def img(data: bytes, alt: str, caption: str | None = None, max_width: int | None = None) -> str:
    """A <figure> with the PNG embedded as a base64 data URI (capped by cap_png), and its caption; shown at most
    `max_width` CSS pixels wide when given (sample grids), else at most the page's width."""
    b64 = base64.b64encode(cap_png(data)).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    style = f' style="max-width: min(100%, {int(max_width)}px)"' if max_width else ""
    return f'<figure><img alt="{esc(alt)}"{style} src="data:image/png;base64,{b64}">{cap}</figure>'


def page(title: str, body: str, script: bool = False) -> str:
    """A whole HTML5 document: inline style, `body`, and the table-sorting script when asked."""
    js = f"<script>{SORT_SCRIPT}</script>" if script else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f"<body>{body}{js}</body></html>\n")


__all__ = ["MAX_IMAGE_BYTES", "MAX_IMAGE_SIDE", "cap_png", "cell", "esc", "esc_code", "fmt", "img", "page",
           "raw_value", "table", "wide"]
