"""The one place that names container images.

Every component takes its ``base_image`` from here. Tags derive from the package version,
so a release bumps every image at once and no component ever runs ``:latest``.
Override the registry with ``PLANETS_IMAGE_REGISTRY`` at compile time.
"""

from __future__ import annotations

import os

from planets_mlops import __version__

DEFAULT_REGISTRY = "ghcr.io/planets-mlops"


def registry() -> str:
    """Registry prefix for every image, e.g. ``europe-docker.pkg.dev/proj/repo``."""
    return os.environ.get("PLANETS_IMAGE_REGISTRY", DEFAULT_REGISTRY).rstrip("/")


def image(name: str, version: str = __version__) -> str:
    """Full reference of one of the project's images at ``version``."""
    return f"{registry()}/{name}:{version}"


# Component runtime: CPU, kfp + the project + DVC + ONNX Runtime + BentoML.
RUNTIME_IMAGE = image("runtime")
# Training: the same project on the TensorFlow GPU build.
TRAINING_GPU_IMAGE = image("train-gpu")
# Serving: BentoML + ONNX Runtime; fetches the bento archive at start.
SERVING_IMAGE = image("serving")

# Every image the project builds, by the name of its folder under images/; read by
# scripts/build_images.sh so the pushed tags are exactly the ones components run.
ALL_IMAGES = {"runtime": RUNTIME_IMAGE, "train-gpu": TRAINING_GPU_IMAGE, "serving": SERVING_IMAGE}
