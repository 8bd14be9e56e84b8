#!/usr/bin/env bash
# Re-resolve the lock after editing pyproject.toml: `make lock`.
#
# requirements.lock is the one source of versions. The GPU training image needs TensorFlow's
# GPU build instead of tensorflow-cpu, plus the CUDA wheels it brings; its lock is derived
# here from requirements.lock (every shared package at the same exact version, checked by
# tests/pure/test_locks.py), so the GPU image is pinned exactly too.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
UV="${UV:-uv}"
TF_VERSION="$(sed -n 's/^tensorflow-cpu==//p' requirements.lock)"

"$UV" pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Runtime subset (no dev tools), CPU TensorFlow swapped for the GPU build of the same release.
"$UV" pip compile pyproject.toml --extra train --python-version 3.11 -c requirements.lock -q -o "$tmp/runtime.lock"
grep -v '^tensorflow-cpu==' "$tmp/runtime.lock" > "$tmp/gpu.in"
echo "tensorflow[and-cuda]==${TF_VERSION}" >> "$tmp/gpu.in"
"$UV" pip compile "$tmp/gpu.in" -c requirements.lock --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --no-header -q -o images/requirements-gpu.lock
echo "requirements.lock and images/requirements-gpu.lock updated"
