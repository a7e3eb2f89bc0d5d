#!/usr/bin/env bash
# The nightly report in a real browser: runs the demo pipeline (or takes an
# existing work dir), opens WORK_DIR/report/report.html in headless Chromium
# (Debian's package, installed when missing; needs root for apt), checks the
# rendered page has its plots and no external requests, and saves a
# screenshot. Not in CI: it needs apt and a browser.
# Usage: scripts/report-smoke.sh [WORK_DIR] [SCREENSHOT.png]
#   default WORK_DIR: out/pipeline-demo, after `labelgen run pipelines/demo.toml`
#   default SCREENSHOT: WORK_DIR/report-screenshot.png
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-}"
if [ -z "$work" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/labelgen-target}"
    cargo build --release
    echo "== labelgen run pipelines/demo.toml (a rerun with nothing new does nothing)"
    "$CARGO_TARGET_DIR/release/labelgen" run pipelines/demo.toml --quiet > /dev/null
    work=out/pipeline-demo
fi
html="$(realpath "$work")/report/report.html"
if [ ! -f "$html" ]; then
    echo "no $html: run a pipeline with a [report] section first" >&2
    exit 2
fi
shot="$(realpath -m "${2:-$work/report-screenshot.png}")"

browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
    echo "== installing Debian's chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
    browser="$(command -v chromium)"
fi
echo "== $("$browser" --version 2>/dev/null)"
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run)

# The page as the browser built it: every plot is an inline <svg>.
dom="$(mktemp)"
trap 'rm -f "$dom"' EXIT
"$browser" "${flags[@]}" --dump-dom "file://$html" > "$dom" 2> /dev/null
svgs="$(grep -o '<svg' "$dom" | wc -l)"
figures="$(grep -o '<figure' "$dom" | wc -l)"
echo "rendered DOM: $figures figures, $svgs inline SVG plots"
if [ "$svgs" -lt 1 ] || [ "$svgs" -ne "$figures" ]; then
    echo "FAIL: the plots are not inline SVG in the rendered page" >&2
    exit 1
fi
if grep -Eq '(src|href)="(https?:|//)' "$dom"; then
    echo "FAIL: the page loads external resources" >&2
    exit 1
fi

rm -f "$shot"
"$browser" "${flags[@]}" --window-size=1280,2000 --screenshot="$shot" "file://$html" 2> /dev/null
if [ ! -s "$shot" ]; then
    echo "FAIL: no screenshot at $shot" >&2
    exit 1
fi
python3 - "$shot" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
width, height = struct.unpack(">II", data[16:24])
print(f"screenshot {sys.argv[1]}: {width}x{height}, {len(data)} bytes")
PY
