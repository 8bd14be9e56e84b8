#!/usr/bin/env bash
# Headless Chromium for the report tests (tests/servers/test_report_pages.py) and the screenshots in
# docs/images (scripts/render_reports.py, scripts/render_ci_comment.py): installs Debian's
# chromium (as root or with sudo) when missing. Idempotent.
set -euo pipefail

if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
SUDO=""
[[ "$(id -u)" -eq 0 ]] || SUDO="sudo"
echo "==> installing chromium (apt-get)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
