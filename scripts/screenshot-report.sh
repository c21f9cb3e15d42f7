#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Renders an HTML report in headless Chromium and writes a full-page PNG, to look at a report as a
# reader sees it (issue: "the HTML report is looked at in headless Chromium").
#
#   scripts/screenshot-report.sh reports/out/comparison-1.html [OUT.png] [WIDTH_PX]
#
# Chromium is not a build or test dependency; install it with `apt-get install chromium` when wanted.
# Headless Chromium captures the window, not the page: the window is 8000 px tall, enough for a run
# report or a comparison of about ten alternatives; a longer page is cut at the bottom.
set -euo pipefail
if [[ $# -lt 1 || $# -gt 3 ]]; then
  echo "usage: $0 REPORT.html [OUT.png] [WIDTH_PX]" >&2
  exit 2
fi
html="$1"
png="${2:-${html%.html}.png}"
width="${3:-1280}"
if [[ ! -f "$html" ]]; then
  echo "$0: no such file: $html" >&2
  exit 1
fi
browser=""
for b in chromium chromium-browser google-chrome; do
  if command -v "$b" > /dev/null; then browser="$b"; break; fi
done
if [[ -z "$browser" ]]; then
  echo "$0: no Chromium found (apt-get install chromium)" >&2
  exit 1
fi
abs="$(cd "$(dirname "$html")" && pwd)/$(basename "$html")"
# --no-sandbox: root in a container has no user namespace for the sandbox. The report fetches nothing,
# and networking is switched off anyway so a stray external reference would show up as missing.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --disable-extensions \
  --proxy-server=127.0.0.1:9 --window-size="${width},8000" --screenshot="$png" "file://$abs" 2> /dev/null
echo "$png"
