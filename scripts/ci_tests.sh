#!/usr/bin/env bash
# Every test tier, with the images built meanwhile: what `make ci` (and so .ci/run) runs
# after the set-up.
#
# On a fresh machine `make images` takes minutes (the train-gpu image alone is 7.4 GB of
# CUDA wheels), and only the container tier needs the images. So the build runs in the
# background (niced, its log in build/images.log) while every other tier runs on two
# processes; the container tier runs last, once the images exist. With podman's layer
# cache warm the build takes seconds and this is `make images && make test`.
#
# Usage: scripts/ci_tests.sh [extra pytest arguments]
# Exit status: the first failure among the other tiers, the build and the container tier
# (all three always run, so one CI log shows every failure).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

mkdir -p build
log=build/images.log
pytest=(.venv/bin/python -m pytest -q)
if .venv/bin/python -c "import xdist" 2>/dev/null; then
  pytest+=(-n "${TEST_WORKERS:-2}" --dist loadfile)
fi

echo "==> make images, in the background (log: $log)"
# Its own process group, so that an interrupted run stops the build too.
setsid make images >"$log" 2>&1 &
images=$!
trap 'kill -- -"$images" 2>/dev/null' INT TERM

status=0
echo "==> every tier but the container tier"
"${pytest[@]}" -m "not containers" "$@" || status=$?

echo "==> waiting for make images"
if wait "$images"; then
  grep -E '^(runtime|train-gpu|serving) ' "$log" || tail -n 5 "$log"
  echo "==> the container tier"
  "${pytest[@]}" -m containers "$@" || { rc=$?; [[ $status -ne 0 ]] || status=$rc; }
else
  rc=$?
  cat "$log"
  echo "make images failed (exit $rc; log above): the container tier did not run" >&2
  [[ $status -ne 0 ]] || status=$rc
fi
exit "$status"
