#!/usr/bin/env bash
# Podman for the container tests and image builds: installs it (Debian/Ubuntu, as root or
# with sudo) when missing, and writes the engine settings a VM without systemd needs.
#
# /etc/containers/containers.conf is written only when it does not exist:
#   - default_ulimits: Podman otherwise raises RLIMIT_NOFILE/NPROC above a VM's hard limit
#     and the OCI runtime fails with "setrlimit ... Operation not permitted";
#   - runtime = runc: crun fails with "cgroups in hybrid mode not supported" (cgroup v1);
#   - cgroup_manager = cgroupfs: there is no systemd to manage cgroups.
# Idempotent; a second run only checks that a container starts.
set -euo pipefail

SUDO=""
[[ "$(id -u)" -eq 0 ]] || SUDO="sudo"

if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "==> installing podman, runc, debootstrap (apt-get)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq podman runc debootstrap >/dev/null
fi

conf=/etc/containers/containers.conf
if [[ ! -f "$conf" ]]; then
  echo "==> writing $conf (ulimits, runc, cgroupfs)"
  $SUDO mkdir -p /etc/containers
  $SUDO tee "$conf" >/dev/null <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
fi
podman --version
