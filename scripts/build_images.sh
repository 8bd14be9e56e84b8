#!/usr/bin/env bash
# Build and push the project's images with the tags components run.
#
# Tags come from components/images.py (registry from PLANETS_IMAGE_REGISTRY, tag = the
# package version), so what is pushed is exactly what the compiled pipelines reference.
#
# Usage (from anywhere; the build context is the repository root):
#   PLANETS_IMAGE_REGISTRY=europe-docker.pkg.dev/PROJECT/planets scripts/build_images.sh
#   scripts/build_images.sh --cloud-build            # gcloud builds submit, no local Docker
#   scripts/build_images.sh --load --only serving    # into the local Docker (kind), no push
# Options:
#   --only NAME      runtime | train-gpu | serving (repeatable; default: all three)
#   --load           load into the local Docker engine instead of pushing
#   --cloud-build    build and push on Google Cloud Build (needs gcloud and a project)
#   --platform P     target platform for buildx (default linux/amd64)
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3

mode=push
platform=linux/amd64
only=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --only) only+=("$2"); shift 2 ;;
    --load) mode=load; shift ;;
    --cloud-build) mode=cloud-build; shift ;;
    --platform) platform="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

version="$("$PYTHON" -c 'from planets_mlops import __version__; print(__version__)')"
registry="$("$PYTHON" -c 'from planets_mlops.components.images import registry; print(registry())')"
vcs_ref="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain -- planets_mlops components pipelines pyproject.toml requirements.lock images 2>/dev/null)" ]]; then
  echo "warning: uncommitted changes; the images will not match revision $vcs_ref" >&2
fi
if [[ ${#only[@]} -eq 0 ]]; then names=(runtime train-gpu serving); else names=("${only[@]}"); fi
for name in "${names[@]}"; do
  [[ -f "images/$name/Dockerfile" ]] || { echo "unknown image '$name': runtime | train-gpu | serving" >&2; exit 2; }
done

for name in "${names[@]}"; do
  tag="$("$PYTHON" -c "from planets_mlops.components.images import ALL_IMAGES; print(ALL_IMAGES['$name'])")"
  case "$tag" in *:latest|*:) echo "refusing to build $name as '$tag': no :latest" >&2; exit 1 ;; esac
  dockerfile="images/$name/Dockerfile"
  build_args=(--build-arg "VERSION=$version" --build-arg "REGISTRY=$registry" --build-arg "VCS_REF=$vcs_ref")
  echo "==> $name -> $tag ($mode)"
  case "$mode" in
    push|load)
      docker buildx build --platform "$platform" -f "$dockerfile" "${build_args[@]}" \
        -t "$tag" "--$mode" .
      ;;
    cloud-build)
      config="$(mktemp --suffix=.yaml)"
      cat > "$config" <<YAML
steps:
  - name: gcr.io/cloud-builders/docker
    env: ["DOCKER_BUILDKIT=1"]
    args: [build, -f, $dockerfile, --build-arg, VERSION=$version, --build-arg, REGISTRY=$registry,
           --build-arg, VCS_REF=$vcs_ref, -t, $tag, .]
images: ["$tag"]
options: {machineType: E2_HIGHCPU_8}
timeout: 3600s
YAML
      # Cloud Build uploads the whole context: leave out the heavy folders.
      ignore="$(mktemp)"
      printf '%s\n' .git .venv data '**/__pycache__' > "$ignore"
      gcloud builds submit --config "$config" --ignore-file="$ignore" .
      rm -f "$config" "$ignore"
      ;;
  esac
done
echo "done: ${names[*]} at version $version in $registry"
