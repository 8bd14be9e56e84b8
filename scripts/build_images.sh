#!/usr/bin/env bash
# Build (and push) the project's images with the tags the compiled pipelines name.
#
# Tags come from components/images.py: <registry>/<name>:<version>-<source digest>, the
# digest taken over the image build inputs, so a pipeline compiled from this checkout names
# exactly the images built from it. The build context is a staged copy of those inputs.
# The three images are the targets of one multi-stage images/Dockerfile (--target NAME);
# they share its first stages, so the engine's layer cache builds those once.
#
# Usage (from anywhere):
#   make images                                      # = --load --base local here (podman)
#   PLANETS_IMAGE_REGISTRY=europe-docker.pkg.dev/PROJECT/planets scripts/build_images.sh
#   scripts/build_images.sh --cloud-build            # gcloud builds submit, no local engine
#   scripts/build_images.sh --load --only serving    # into the local engine (kind, tests)
# Options:
#   --only NAME      runtime | train-gpu | serving (repeatable; default: all three)
#   --load           build into the local engine's image store instead of pushing
#   --push           build and push (the default)
#   --cloud-build    build and push on Google Cloud Build (needs gcloud and a project)
#   --engine E       podman | docker (default: podman when installed, else docker)
#   --base B         public: the digest-pinned python:3.11 slim image (default);
#                    local: a Python base built from Debian packages (scripts/base_image.sh,
#                    podman only), for machines that cannot reach a registry
#   --ca-bundle F    CA bundle for PyPI behind a TLS-re-signing proxy, passed as the build
#                    secret ca_bundle: used by the install steps, never stored in an image
#   --platform P     target platform (default linux/amd64)
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3

mode=push
platform=linux/amd64
base=public
ca_bundle=""
engine=""
only=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --only) only+=("$2"); shift 2 ;;
    --load) mode=load; shift ;;
    --push) mode=push; shift ;;
    --cloud-build) mode=cloud-build; shift ;;
    --engine) engine="$2"; shift 2 ;;
    --base) base="$2"; shift 2 ;;
    --ca-bundle) ca_bundle="$2"; shift 2 ;;
    --platform) platform="$2"; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "$engine" ]]; then
  if command -v podman >/dev/null; then engine=podman; else engine=docker; fi
fi
case "$engine" in podman|docker) ;; *) echo "--engine must be podman or docker, not '$engine'" >&2; exit 2 ;; esac
case "$base" in public|local) ;; *) echo "--base must be public or local, not '$base'" >&2; exit 2 ;; esac
if [[ -n "$ca_bundle" && ! -s "$ca_bundle" ]]; then
  echo "--ca-bundle $ca_bundle: no such file (the host's bundle is usually /etc/ssl/certs/ca-certificates.crt)" >&2
  exit 2
fi

vcs_ref="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain -- planets_mlops components pipelines pyproject.toml requirements.lock images 2>/dev/null)" ]]; then
  vcs_ref="${vcs_ref}-dirty"
fi
if [[ ${#only[@]} -eq 0 ]]; then names=(runtime train-gpu serving); else names=("${only[@]}"); fi
for name in "${names[@]}"; do
  case "$name" in runtime|train-gpu|serving) ;; *) echo "unknown image '$name': runtime | train-gpu | serving" >&2; exit 2 ;; esac
done

# The build context: exactly the inputs components/images.py hashes into the tag.
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
tar -c --exclude=__pycache__ --exclude='*.pyc' --exclude='.*' \
  pyproject.toml requirements.lock README.md planets_mlops components pipelines images | tar -x -C "$context"

# Tags from the staged copy, so they name exactly what is built even if the tree changes
# meanwhile (components/images.py computes the same digest from a checkout).
read -r version registry image_tag < <("$PYTHON" - "$context" <<'PY'
import sys
from pathlib import Path

from planets_mlops import __version__
from planets_mlops.components.images import DIGEST_LENGTH, registry, source_digest

print(__version__, registry(), f"{__version__}-{source_digest(Path(sys.argv[1]))[:DIGEST_LENGTH]}")
PY
)
build_args=(--build-arg "VERSION=$version" --build-arg "REGISTRY=$registry"
            --build-arg "IMAGE_TAG=$image_tag" --build-arg "VCS_REF=$vcs_ref")
if [[ "$base" == local ]]; then
  [[ "$engine" == podman ]] || { echo "--base local needs --engine podman" >&2; exit 2; }
  python_base="$(scripts/base_image.sh | tail -n 1)"
  build_args+=(--build-arg "PYTHON_IMAGE=$python_base")
fi
secret_args=()
[[ -n "$ca_bundle" ]] && secret_args=(--secret "id=ca_bundle,src=$ca_bundle")

summary=()
for name in "${names[@]}"; do
  tag="$registry/$name:$image_tag"
  case "$tag" in *:latest|*:) echo "refusing to build $name as '$tag': no :latest" >&2; exit 1 ;; esac
  dockerfile="$context/images/Dockerfile"
  echo "==> $name -> $tag ($mode, $engine, base $base)"
  started=$SECONDS
  case "$mode" in
    push|load)
      if [[ "$engine" == podman ]]; then
        nice -n 10 podman build --platform "$platform" --layers -f "$dockerfile" --target "$name" "${build_args[@]}" \
          "${secret_args[@]}" -t "$tag" "$context"
        [[ "$mode" == push ]] && podman push "$tag"
        size="$(podman image inspect --format '{{.Size}}' "$tag")"
      else
        DOCKER_BUILDKIT=1 docker buildx build --platform "$platform" -f "$dockerfile" --target "$name" "${build_args[@]}" \
          "${secret_args[@]}" -t "$tag" "--$mode" "$context"
        size="$(docker image inspect --format '{{.Size}}' "$tag" 2>/dev/null || echo 0)"
      fi
      summary+=("$(printf '%-10s %5d s  %6.2f GB  %s' "$name" $((SECONDS - started)) \
        "$(awk -v s="$size" 'BEGIN { print s / 1e9 }')" "$tag")")
      ;;
    cloud-build)
      config="$(mktemp --suffix=.yaml)"
      cat > "$config" <<YAML
steps:
  - name: gcr.io/cloud-builders/docker
    env: ["DOCKER_BUILDKIT=1"]
    args: [build, -f, images/Dockerfile, --target, $name, --build-arg, VERSION=$version, --build-arg, REGISTRY=$registry,
           --build-arg, IMAGE_TAG=$image_tag, --build-arg, VCS_REF=$vcs_ref, -t, $tag, .]
images: ["$tag"]
options: {machineType: E2_HIGHCPU_8}
timeout: 3600s
YAML
      gcloud builds submit --config "$config" "$context"
      rm -f "$config"
      ;;
  esac
done
echo "done: ${names[*]} at $image_tag in $registry"
current="$("$PYTHON" -c 'from planets_mlops.components.images import IMAGE_TAG; print(IMAGE_TAG)')"
if [[ "$current" != "$image_tag" ]]; then
  echo "warning: the sources changed during the build: pipelines compiled now name $current" >&2
fi
if [[ ${#summary[@]} -gt 0 ]]; then
  echo "image      build     size     tag"
  printf '%s\n' "${summary[@]}"
fi
