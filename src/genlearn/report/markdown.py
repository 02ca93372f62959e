"""The demo's report as one self-contained HTML page: `genlearn demo` writes report.md, and this turns it into
index.html next to it, with every image it links to (a PNG of the same folder) embedded.

A converter for the subset of Markdown the package writes, not a general one: ATX headings (#, ##, ###),
paragraphs (consecutive lines), pipe tables with a separator row, lines of images ![alt](file.png), bullet lists
(- item), and inline **bold**, `code` and images. A line it does not know is kept as paragraph text (escaped)."""
from __future__ import annotations

import re
from pathlib import Path

from genlearn.errors import RunError
from genlearn.report import html as H

IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
INLINE = re.compile(r"(\*\*(.+?)\*\*|`([^`]+)`)")


def _inline(text: str) -> str:
    """Escaped text with **bold** and `code` (images are handled by the caller)."""
    out, pos = [], 0
    for m in INLINE.finditer(text):
        out.append(H.esc(text[pos:m.start()]))
        if m.group(2) is not None:
            out.append(f"<strong>{_inline(m.group(2))}</strong>")
        else:
            out.append(f"<code>{H.esc(m.group(3))}</code>")
        pos = m.end()
    out.append(H.esc(text[pos:]))
    return "".join(out)


def _images(line: str, folder: Path, missing: list) -> str:
    """A line of images (with any text between them) with each PNG of `folder` embedded."""
    out, pos = [], 0
    for m in IMAGE.finditer(line):
        out.append(_inline(line[pos:m.start()]))
        alt, src = m.group(1), m.group(2)
        path = folder / src
        if "://" in src or not path.is_file():
            missing.append(src)
            out.append(f'<span class="error">image {H.esc(src)} is missing</span>')
        else:
            out.append(H.img(path.read_bytes(), alt, alt))
        pos = m.end()
    out.append(_inline(line[pos:]))
    return "".join(out)


def _td(text: str) -> str:
    """A table cell; numbers right-aligned."""
    numeric = re.fullmatch(r"[-+]?[0-9][0-9.,]*(e[-+]?[0-9]+)?", text) is not None
    return f'<td class="num">{_inline(text)}</td>' if numeric else f"<td>{_inline(text)}</td>"


def _row(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_html(text: str, folder: Path, missing: list | None = None) -> str:
    """The HTML body of Markdown `text` whose images live in `folder`; the names of missing images are appended
    to `missing`."""
    missing = [] if missing is None else missing
    lines = text.splitlines()
    out, para, i = [], [], 0

    def flush():
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    while i < len(lines):
        line = lines[i].rstrip()
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if not stripped:
            flush()
        elif heading:
            flush()
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif stripped.startswith("|") and i + 1 < len(lines) and re.match(r"^\|?[\s:|-]+\|?$", lines[i + 1].strip()) \
                and "-" in lines[i + 1]:
            flush()
            headers = _row(stripped)
            i += 2
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_row(lines[i]))
                i += 1
            out.append(H.wide("<table><thead><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in headers)
                              + "</tr></thead><tbody>"
                              + "".join("<tr>" + "".join(_td(c) for c in r) + "</tr>" for r in rows)
                              + "</tbody></table>"))
            continue
        elif IMAGE.search(stripped) and not IMAGE.sub("", stripped).strip():
            flush()
            out.append(f"<div>{_images(stripped, folder, missing)}</div>")
        elif stripped.startswith("- "):
            flush()
            items = []
            while i < len(lines) and lines[i].strip().startswith("- "):
                items.append(f"<li>{_inline(lines[i].strip()[2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        else:
            para.append(stripped)
        i += 1
    flush()
    return "\n".join(out)


def markdown_page(md_path, out_path=None, title: str | None = None) -> Path:
    """index.html (or `out_path`) from the Markdown file `md_path`, images of its folder embedded; returns the path.
    RunError when the file is missing or an image it links to is missing."""
    md_path = Path(md_path)
    if not md_path.is_file():
        raise RunError(f"no Markdown report at {md_path}")
    text = md_path.read_text(encoding="utf-8")
    missing: list = []
    body = markdown_to_html(text, md_path.parent, missing)
    if missing:
        raise RunError(f"{md_path} links to image(s) not in {md_path.parent}: {', '.join(missing)}")
    first = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("# ")), None)
    out_path = Path(out_path) if out_path is not None else md_path.with_name("index.html")
    out_path.write_text(H.page(title or first or md_path.stem, body), encoding="utf-8")
    return out_path


__all__ = ["markdown_page", "markdown_to_html"]
