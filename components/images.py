"""The one place that names container images.

Every component takes its ``base_image`` from here, and ``scripts/build_images.sh`` tags
what it builds from here too, so a compiled pipeline names exactly the images built from
the same code. The tag is ``<package version>-<source digest>``: the digest is a SHA-256
over everything the images are built from (the package's code under ``planets_mlops/``,
``components/``, ``pipelines/``, the Dockerfiles and locks under ``images/``,
``pyproject.toml`` and ``requirements.lock``). Any change to that code gives new tags, and
no component ever runs ``:latest`` or a mutable per-release tag.

Where the tag comes from, first match wins:

1. ``PLANETS_IMAGE_TAG``: set inside the images by the build (so ``deploy_model`` running in
   the runtime image names the serving image of its own build), or by hand to pin a tag.
2. The source digest of this checkout (a git clone or an editable install).
3. The package version alone, when no sources are at hand (installed from a wheel).

Override the registry with ``PLANETS_IMAGE_REGISTRY`` at compile time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from planets_mlops import __version__

DEFAULT_REGISTRY = "ghcr.io/planets-mlops"
# The image build inputs, relative to the repository root.
SOURCE_DIRS = ("planets_mlops", "components", "pipelines", "images")
SOURCE_FILES = ("pyproject.toml", "requirements.lock")
DIGEST_LENGTH = 12
_SKIPPED_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


def registry() -> str:
    """Registry prefix for every image, e.g. ``europe-docker.pkg.dev/proj/repo``."""
    return os.environ.get("PLANETS_IMAGE_REGISTRY", DEFAULT_REGISTRY).rstrip("/")


def source_root() -> Path | None:
    """The repository root holding this module's sources, or None (installed from a wheel)."""
    root = Path(__file__).resolve().parents[1]
    if all((root / name).is_file() for name in SOURCE_FILES) and (root / "images").is_dir():
        return root
    return None


def source_digest(root: Path) -> str:
    """SHA-256 (hex) over the image build inputs under ``root``: paths and contents, sorted.

    Compiled bytecode, tool caches and dot-files are left out: they are not build inputs.
    """
    paths = [root / name for name in SOURCE_FILES]
    for name in SOURCE_DIRS:
        paths += [p for p in (root / name).rglob("*") if p.is_file()]
    digest = hashlib.sha256()
    for path in sorted(paths):
        relative = path.relative_to(root)
        parts = relative.parts
        if _SKIPPED_PARTS & set(parts) or any(p.startswith(".") for p in parts) or path.suffix == ".pyc":
            continue
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def image_tag() -> str:
    """The tag every image of this code carries (see the module docstring)."""
    pinned = os.environ.get("PLANETS_IMAGE_TAG", "").strip()
    if pinned:
        return pinned
    root = source_root()
    if root is None:
        return __version__
    return f"{__version__}-{source_digest(root)[:DIGEST_LENGTH]}"


def image(name: str, tag: str | None = None) -> str:
    """Full reference of one of the project's images at ``tag`` (default: :func:`image_tag`)."""
    return f"{registry()}/{name}:{tag or image_tag()}"


IMAGE_TAG = image_tag()
# Component runtime: CPU, kfp + the project + DVC + ONNX Runtime + BentoML.
RUNTIME_IMAGE = image("runtime", IMAGE_TAG)
# Training: the same project on the TensorFlow GPU build.
TRAINING_GPU_IMAGE = image("train-gpu", IMAGE_TAG)
# Serving: BentoML + ONNX Runtime; fetches the bento archive at start.
SERVING_IMAGE = image("serving", IMAGE_TAG)

# Every image the project builds, by its target in images/Dockerfile; read by
# scripts/build_images.sh so the built tags are exactly the ones components run.
ALL_IMAGES = {"runtime": RUNTIME_IMAGE, "train-gpu": TRAINING_GPU_IMAGE, "serving": SERVING_IMAGE}
