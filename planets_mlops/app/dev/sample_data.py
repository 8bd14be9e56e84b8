"""The bundled data set of a checkout, whole or a few classes of it (tests and benchmarks)."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
PLANETS = REPO_ROOT / "data" / "planets"
SMALL_CLASSES = ("Earth", "Jupiter", "Moon")


def copy_subset(destination: Path, classes=SMALL_CLASSES, per_class: int = 20) -> Path:
    """Copy the first ``per_class`` images of each class of the bundled data set."""
    for name in classes:
        target = destination / name
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted((PLANETS / "raw" / name).iterdir())[:per_class]:
            shutil.copy(path, target / path.name)
    return destination
