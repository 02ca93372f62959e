#!/usr/bin/env bash
# Render an HTML report (default: the demo's, reports/demo/index.html) in headless Chromium (Debian's `chromium`)
# and save a screenshot of it, to look at: `make demo && scripts/check_report.sh`.
#   scripts/check_report.sh [PAGE.html] [SCREENSHOT.png] [HEIGHT]   (defaults: reports/demo/index.html,
#   reports/demo/index.png, 6000 pixels; width 1280). Also prints the page's size and the number of embedded images.
# Needs chromium (sudo apt-get install -y chromium); exits 2 with one line when it or the page is missing.
set -euo pipefail
page="${1:-reports/demo/index.html}"
shot="${2:-${page%.html}.png}"
height="${3:-6000}"
browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
    echo "check_report: error: chromium is not installed (sudo apt-get install -y chromium)" >&2
    exit 2
fi
if [ ! -f "$page" ]; then
    echo "check_report: error: no page at $page (run \`make demo\` or \`genlearn report RUN --out $page\`)" >&2
    exit 2
fi
url="file://$(cd "$(dirname "$page")" && pwd)/$(basename "$page")"
args=(--headless --disable-gpu --hide-scrollbars --no-first-run --window-size="1280,$height" --screenshot="$shot")
if [ "$(id -u)" = "0" ]; then args+=(--no-sandbox); fi  # Chromium refuses to run as root with its sandbox
"$browser" "${args[@]}" "$url" 2>/dev/null
if [ ! -s "$shot" ]; then
    echo "check_report: error: chromium wrote no screenshot to $shot" >&2
    exit 2
fi
images=$(grep -o 'src="data:image/png;base64,' "$page" | wc -l)
echo "rendered $page ($(du -k "$page" | cut -f1) KiB, $images embedded images) -> $shot"
