#!/usr/bin/env bash
# The Debian tools `make setup` adds beside the venvs, each installed (as root or with sudo)
# only when missing, in one apt-get run. Idempotent.
# - chromium: headless, for the report tests (tests/servers/test_report_pages.py) and the
#   screenshots in docs/images (scripts/render_reports.py, scripts/render_ci_comment.py);
# - wrk: the load generator of benchmarks/bench_serving.py. One C thread drives the
#   keep-alive connections for a few per cent of a core, so on 2 cores the server keeps
#   nearly both (the asyncio client it replaces took 3-5 %, and shared the interpreter with
#   the benchmark); without it the benchmark falls back to that client and says so.
set -euo pipefail

missing=()
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
command -v wrk >/dev/null || missing+=(wrk)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
SUDO=""
[[ "$(id -u)" -eq 0 ]] || SUDO="sudo"
echo "==> installing ${missing[*]} (apt-get)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
