"""A labelling demo: a local Label Studio with the bundled unlabelled images (scripts/labelling_demo.py).

:func:`run_labelling_demo` starts a server (or uses a given one), gets-or-creates a project,
uploads ``data/planets/extra`` images, labels some of them through the API as a person
would in the UI (the true class is recoverable from each demo file name), optionally
pushes a model's predictions to the rest, and returns what the retraining pipeline needs.
"""

from __future__ import annotations

import base64
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planets_mlops.labelstudio.client import LabelStudioClient

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTRA_DIR = REPO_ROOT / "data" / "planets" / "extra"
CLASSES = ("Earth", "Jupiter", "Mars", "Mercury", "Moon", "Neptune", "Pluto", "Saturn", "Uranus", "Venus")


def true_label(path: Path | str) -> str:
    """The class hidden in a demo file name (tests and demo only).

    The stem is reversed, URL-safe base64 of ``<Class>_<N>``: ``0AjMfhGdyFWR`` -> ``Earth_204``.
    """
    stem = Path(path).stem[::-1]
    decoded = base64.urlsafe_b64decode(stem + "=" * (-len(stem) % 4)).decode()
    return decoded.rsplit("_", 1)[0]


def extra_images(
    classes: Sequence[str] | None = None, per_class: int | None = None, folder: Path = EXTRA_DIR
) -> list[Path]:
    """Bundled unlabelled images, optionally only of ``classes`` and at most ``per_class`` each."""
    counts: dict[str, int] = {}
    chosen = []
    for path in sorted(folder.glob("*.jpg")):
        label = true_label(path)
        if classes is not None and label not in classes:
            continue
        if per_class is not None and counts.get(label, 0) >= per_class:
            continue
        counts[label] = counts.get(label, 0) + 1
        chosen.append(path)
    return chosen


@dataclass
class DemoResult:
    """What the quickstart passes to the retraining pipeline (and shows the user)."""

    url: str
    api_key: str
    project_id: int
    project_title: str
    tasks: int
    labelled: int
    predictions: dict[str, Any] = field(default_factory=dict)
    unlabelled: list[str] = field(default_factory=list)

    def environment(self) -> dict[str, str]:
        """Set these before running the pipeline locally (kfp.local tasks inherit them)."""
        return {"LABEL_STUDIO_URL": self.url, "LABEL_STUDIO_API_KEY": self.api_key}


def run_labelling_demo(
    url: str,
    api_key: str,
    title: str = "Planets demo",
    classes: Sequence[str] = CLASSES,
    images: Sequence[Path] | None = None,
    label_fraction: float = 0.5,
    model_dir: Path | None = None,
    model_version: str = "demo",
    seed: int = 0,
) -> DemoResult:
    """Fill a project with ``images`` (default: all bundled extras), label a share of them.

    Idempotent: an existing project with tasks is not uploaded to again, and tasks that
    already carry an annotation are not labelled twice.
    """
    client = LabelStudioClient(url, api_key)
    project, _ = client.get_or_create_project(title, classes, description="Planets labelling demo")
    images = list(images if images is not None else extra_images(classes))
    tasks = client.export_tasks(project.id)
    if not tasks:
        client.upload_images(project.id, images)
        tasks = client.export_tasks(project.id)
    by_name = {p.name: p for p in images}
    unlabelled = [t for t in tasks if not t.get("annotations")]
    rng = random.Random(seed)
    target = int(round(label_fraction * len(tasks))) - (len(tasks) - len(unlabelled))
    labelled = 0
    for task in rng.sample(unlabelled, max(0, min(target, len(unlabelled)))):
        name = _upload_name(task)
        if name in by_name:
            client.annotate(task["id"], [true_label(by_name[name])])
            labelled += 1
    predictions: dict[str, Any] = {}
    if model_dir is not None:
        from planets_mlops.labelstudio.predictions import push_predictions

        predictions = push_predictions(client, project.id, Path(model_dir), model_version).metadata()
    total_labelled = len(tasks) - len(unlabelled) + labelled
    left = sorted(_upload_name(t) for t in client.export_tasks(project.id) if not t.get("annotations"))
    log.info(
        "Demo project %r (id %s): %d tasks, %d labelled",
        project.title,
        project.id,
        len(tasks),
        total_labelled,
    )
    return DemoResult(
        url,
        api_key,
        int(project.id),
        str(project.title),
        len(tasks),
        total_labelled,
        predictions,
        unlabelled=left,
    )


def _upload_name(task: dict[str, Any]) -> str:
    """Original file name of an uploaded task (stored as ``<8 hex>-<name>``)."""
    return str(task.get("file_upload") or task["data"]["image"]).rsplit("/", 1)[-1].split("-", 1)[-1]
