#!/usr/bin/env bash
# The Python base image, built from Debian packages with no container registry:
#   1. debootstrap a minimal Debian bookworm and import it as $DEBIAN_IMAGE;
#   2. build images/base/Dockerfile on it (python3 + venv) as $PYTHON_BASE_IMAGE.
# Each step is skipped when its image already exists (so CI pays it once per machine).
# Needs podman and debootstrap (scripts/setup_podman.sh) and root (debootstrap).
# Prints the Python base image reference on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_IMAGE="${DEBIAN_IMAGE:-localhost/planets-mlops/debian:bookworm}"
PYTHON_BASE_IMAGE="${PYTHON_BASE_IMAGE:-localhost/planets-mlops/python:3.11-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
NICE=(nice -n 10)

if ! podman image exists "$DEBIAN_IMAGE"; then
  rootfs="$(mktemp -d)"
  trap 'rm -rf "$rootfs"' EXIT
  echo "==> debootstrap bookworm (minbase) -> $DEBIAN_IMAGE" >&2
  "${NICE[@]}" debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >&2
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$DEBIAN_IMAGE" >&2
  rm -rf "$rootfs"
  trap - EXIT
fi

if ! podman image exists "$PYTHON_BASE_IMAGE"; then
  echo "==> images/base -> $PYTHON_BASE_IMAGE" >&2
  "${NICE[@]}" podman build -f images/base/Dockerfile --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" \
    -t "$PYTHON_BASE_IMAGE" images/base >&2
fi
echo "$PYTHON_BASE_IMAGE"
