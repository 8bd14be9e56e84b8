#!/usr/bin/env bash
# wrk, the load generator of benchmarks/bench_serving.py: installs Debian's wrk (as root or
# with sudo) when missing. One C thread drives the keep-alive connections for a few per cent
# of a core, so on 2 cores the server keeps nearly both (the asyncio client it replaces
# took 3-5 %, and shared the interpreter with the benchmark). Idempotent; without it the
# benchmark falls back to its asyncio client and says so.
set -euo pipefail

if command -v wrk >/dev/null; then
  exit 0
fi
SUDO=""
[[ "$(id -u)" -eq 0 ]] || SUDO="sudo"
echo "==> installing wrk (apt-get)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
