"""Turn the production inbox into Label Studio tasks: hardest first, with the model's answer.

Each inbox item (:mod:`planets_mlops.inbox`) becomes one task whose image is uploaded as
``inbox-<sha256>.<ext>``, so the task's file name carries the image's content hash:

- No duplicates: an item whose hash is already a task of the project, or an image of the
  data set, makes no new task (counted under ``already_in_project`` /
  ``already_in_dataset``).
- Hardest first: tasks are created in decreasing uncertainty, so task ids follow it (the
  images go up :data:`UPLOAD_BATCH` to a request, and Label Studio makes the tasks of one
  request in the order of its files), and each gets the answer the service gave as a
  prediction whose ``score`` is :func:`planets_mlops.inbox.certainty` (sort ascending in
  the Data Manager).
- An item is removed from the inbox only once it is a task (or already was), so a run
  that stops midway loses nothing and a rerun adds nothing twice.

Two steps make these tasks: ``create_inbox_tasks`` (:mod:`.inbox_tasks`) and the drift
alert's ``push_to_label_studio`` action (:mod:`planets_mlops.monitoring.alert`); the transfer
lives here, in a module of its own, so that neither step imports the other.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planets_mlops.errors import DataError, NotFoundError
from planets_mlops.inbox import Inbox, InboxItem, certainty
from planets_mlops.labelstudio import labels as rules
from planets_mlops.labelstudio.client import LabelStudioClient, choices_result
from planets_mlops.labelstudio.merge import hash_dataset
from planets_mlops.progress import Progress

log = logging.getLogger(__name__)

PREFIX = "inbox-"
MODEL_VERSION = "inbox"
# Inbox images sent in one upload request: one request an image was most of the drift
# alert's time (278 images, 42 s in a quickstart on a loaded machine).
UPLOAD_BATCH = 25


def upload_name(item: InboxItem) -> str:
    """The file name an item's image is uploaded under (its content hash)."""
    return f"{PREFIX}{item.sha256}{item.extension}"


def task_hash(task: dict[str, Any]) -> str | None:
    """The content hash in an inbox task's file name, or None for any other task."""
    image = task.get("data", {}).get("image") if isinstance(task.get("data"), dict) else None
    name = str(task.get("file_upload") or image or "").rsplit("/", 1)[-1]
    # Uploaded files are stored as "<8 hex>-<original name>".
    name = name.split("-", 1)[1] if "-" in name and not name.startswith(PREFIX) else name
    if not name.startswith(PREFIX):
        return None
    sha = name[len(PREFIX) :].split(".", 1)[0]
    return sha if len(sha) == 64 else None


@dataclass
class InboxTasksResult:
    """What one transfer did, for the step's metadata."""

    project_id: int
    created: int = 0
    removed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    hardest: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def metadata(self) -> dict[str, Any]:
        """Flat metadata: project, tasks created, items removed, skips, top uncertainties."""
        return {
            "label_studio_project_id": self.project_id,
            "inbox_tasks_created": self.created,
            "inbox_items_removed": self.removed,
            "inbox_skipped": self.skipped,
            "inbox_hardest_uncertainty": self.hardest[:5],
        }


def inbox_to_tasks(
    client: LabelStudioClient,
    project: str | int,
    inbox: Inbox,
    dataset_dir: Path | None = None,
    max_tasks: int = 0,
) -> InboxTasksResult:
    """Create a task (with a prediction) for every inbox item not yet in the project or data set.

    Args:
        client: Connection to Label Studio.
        project: Exact project title or numeric id.
        inbox: The production inbox.
        dataset_dir: The current data set (``<Class>/<image>``); its images make no task.
        max_tasks: Most tasks created in one call (the hardest ones); 0: all.

    Returns:
        Counts of created tasks, removed items and skipped items by reason.

    Raises:
        LabelStudioError: server, token or project problems.
        InvalidParameterError: the project's labelling config has no Choices over an Image.
    """
    started = time.monotonic()
    proj = client.find_project(project)
    config = rules.parse_label_config(proj.label_config or "")
    items, unreadable = inbox.items()
    skipped: Counter[str] = Counter(unreadable)
    in_project = {sha for sha in map(task_hash, client.export_tasks(proj.id)) if sha}
    in_dataset = set(hash_dataset(Path(dataset_dir))) if dataset_dir is not None else set()
    result = InboxTasksResult(project_id=int(proj.id))
    uploaded: list[InboxItem] = []
    pending: list[tuple[InboxItem, Path]] = []

    def upload() -> None:
        client.upload_images(proj.id, [path for _, path in pending])
        for item, path in pending:
            path.unlink()
            uploaded.append(item)
        pending.clear()

    progress = Progress("inbox item", len(items))
    with tempfile.TemporaryDirectory(prefix="inbox-tasks-") as scratch:
        for item in items:
            progress.step(uploaded=len(uploaded), skipped=sum(skipped.values()))
            if item.sha256 in in_project or item.sha256 in in_dataset:
                skipped["already_in_project" if item.sha256 in in_project else "already_in_dataset"] += 1
                inbox.remove(item)
                result.removed += 1
                continue
            if max_tasks and len(uploaded) + len(pending) >= max_tasks:
                skipped["over_max_tasks"] += 1
                continue
            try:
                data = inbox.image(item)
            except (DataError, NotFoundError) as exc:
                log.warning("Inbox item %s skipped: %s", item.sha256[:12], exc)
                skipped["image_unreadable"] += 1
                continue
            path = Path(scratch) / upload_name(item)
            path.write_bytes(data)
            in_project.add(item.sha256)
            pending.append((item, path))
            if len(pending) == UPLOAD_BATCH:
                upload()
        if pending:
            upload()
    if uploaded:
        task_of: dict[str, int] = {}
        for task in client.export_tasks(proj.id):
            sha = task_hash(task)
            if sha and (sha not in task_of or int(task["id"]) < task_of[sha]):
                task_of[sha] = int(task["id"])
        predictions = [_prediction(task_of[i.sha256], i, config) for i in uploaded if i.sha256 in task_of]
        client.import_predictions(proj.id, predictions)
        for item in uploaded:
            if item.sha256 in task_of:  # only what is surely a task leaves the inbox
                inbox.remove(item)
                result.removed += 1
                result.created += 1
                result.hardest.append(round(item.uncertainty, 4))
    result.skipped = dict(skipped)
    result.seconds = time.monotonic() - started
    log.info(
        "Inbox -> project %r: %d tasks created, %d items removed, skipped %s in %.1f s",
        proj.title,
        result.created,
        result.removed,
        result.skipped,
        result.seconds,
    )
    return result


def _prediction(task_id: int, item: InboxItem, config: rules.ChoicesConfig) -> dict[str, Any]:
    """The service's answer as a Label Studio prediction (no choice outside the config)."""
    closest = item.answer.get("closest_class") or item.answer.get("prediction")
    result = []
    if isinstance(closest, str) and closest in config.choices:
        result = [choices_result([closest], config.from_name, config.to_name)]
    return {
        "task": task_id,
        "model_version": f"{MODEL_VERSION}-{item.model}" if item.model else MODEL_VERSION,
        "score": round(certainty(item.answer), 6),
        "result": result,
    }
