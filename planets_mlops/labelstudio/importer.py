"""Import the annotations of a Label Studio project into a copy of a data set.

export (all tasks) -> :mod:`labels` rules -> fetch and hash each accepted image ->
content rules -> :mod:`merge`. Every task ends up either imported or skipped with a reason
(``ImportSummary``), logged and returned for the artifact metadata.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planets_mlops.dataset import list_classes
from planets_mlops.labelstudio import labels as rules
from planets_mlops.labelstudio.client import ImageFetchError, LabelStudioClient
from planets_mlops.labelstudio.merge import hash_dataset, image_extension, merge_images, sha256_bytes
from planets_mlops.labelstudio.publish import PublishResult
from planets_mlops.progress import Progress

# Images downloaded at once: one request per labelled task, so the import waited on Label
# Studio's answer to each in turn (most of import-labels' time in the quickstart).
FETCH_THREADS = 4

log = logging.getLogger(__name__)


@dataclass
class ImportResult:
    """What an import did, for the merged Dataset artifact's metadata."""

    project_id: int
    project_title: str
    classes: list[str]
    summary: rules.ImportSummary
    num_base: int
    num_files: int
    class_counts: dict[str, int]
    seconds: float
    new_classes: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        """Flat metadata for the merged Dataset artifact.

        Returns:
            The project, the import summary's counts (accepted, skipped by reason), the
            merged data set's size and class counts, and the classes the import added.
        """
        return {
            "label_studio_project_id": self.project_id,
            "label_studio_project": self.project_title,
            **self.summary.metadata(),
            "num_base_files": self.num_base,
            "num_files": self.num_files,
            "num_classes": len(self.class_counts),
            "class_counts": self.class_counts,
            "new_classes": self.new_classes,
        }


def import_labels(
    client: LabelStudioClient,
    project: str | int,
    base_dir: Path,
    out_dir: Path,
    classes: list[str] | None = None,
    allow_new_classes: bool = False,
) -> ImportResult:
    """Merge the human labels of ``project`` into a copy of ``base_dir`` at ``out_dir``.

    Args:
        client: connection to Label Studio.
        project: exact project title or numeric id.
        base_dir: current data set (``<Class>/<image>``).
        out_dir: where the merged data set is written (replaced).
        classes: allowed labels; the class folders of ``base_dir`` when None.
        allow_new_classes: accept labels that are choices of the project (or in ``classes``)
            but not class folders of ``base_dir``, adding each as a new class folder.

    Raises:
        LabelStudioError: server unreachable, token refused, project not found.
        InvalidParameterError: the project's labelling config has no Choices over an Image.
        NewClassError: labellers used a label that is not a class of ``base_dir`` and
            ``allow_new_classes`` is False; nothing is written.
        DataError: ``base_dir`` is not a class-per-folder data set.
    """
    started = time.monotonic()
    known = list_classes(Path(base_dir))
    classes = rules.validate_classes(classes or known)
    proj = client.find_project(project)
    config = rules.parse_label_config(proj.label_config or "")
    # Offered to labellers but not classes yet: a label among them is a new class. A name
    # unsafe as a folder stays an unknown label.
    extra_choices = sorted(
        c for c in set(config.choices) - set(classes) - set(known) if rules.is_class_name(c)
    )
    if extra_choices:
        log.info("Project %r offers choices %s that are not classes yet", proj.title, extra_choices)
    tasks = client.export_tasks(proj.id)
    if not tasks:
        log.warning("Project %r (id %s) has no tasks: nothing to import", proj.title, proj.id)
    records = rules.parse_export(tasks, image_key=config.image_key, from_name=config.from_name)
    summary = rules.ImportSummary()
    pairs: list[tuple[rules.Decision, str]] = []
    payloads: dict[str, tuple[bytes, str]] = {}
    decisions = rules.decide_labels(records, [*classes, *extra_choices])
    new = rules.new_class_tasks(decisions, known)
    if not allow_new_classes:
        rules.refuse_new_classes(new, known, str(proj.title))
    progress = Progress("labelled task", len(decisions))
    with ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="fetch-image") as pool:
        fetched = _fetched_in_order(pool, client, [d for d in decisions if d.accepted])
        for decision in decisions:
            progress.step(images=len(pairs), skipped=len(summary.skipped))
            if not decision.accepted:
                summary.skipped.append(decision)
                continue
            _take(decision, next(fetched), summary, payloads, pairs)
    accepted, skipped = rules.resolve_content(pairs, hash_dataset(Path(base_dir)))
    summary.accepted.extend(accepted)
    summary.skipped.extend(skipped)
    merged = merge_images(
        Path(base_dir), Path(out_dir), [(item, *payloads[item.sha256]) for item in accepted]
    )
    for decision in summary.skipped:
        if decision.reason != rules.NO_ANNOTATION:
            log.warning("Skipped task %s (%s): %s", decision.task_id, decision.reason, decision.detail)
    added = sorted({item.label for item in accepted} - set(known))
    if added:
        log.warning("New class(es) %s added from project %r (allow_new_classes)", added, proj.title)
    result = ImportResult(
        new_classes=added,
        project_id=int(proj.id),
        project_title=str(proj.title),
        classes=classes,
        summary=summary,
        num_base=merged.num_base,
        num_files=merged.num_files,
        class_counts=merged.class_counts,
        seconds=time.monotonic() - started,
    )
    log.info(
        "Imported %d new labels from project %r (id %s) out of %d tasks; skipped %s; %d files in %.1f s",
        len(accepted),
        proj.title,
        proj.id,
        summary.total_tasks,
        summary.skip_counts(),
        merged.num_files,
        result.seconds,
    )
    return result


def _fetched_in_order(
    pool: ThreadPoolExecutor, client: LabelStudioClient, decisions: Sequence[rules.Decision]
) -> Iterator[bytes | ImageFetchError]:
    """Each decision's image (or why it could not be fetched), in order, fetched on ``pool``.

    A :class:`LabelStudioError` (server gone, token refused) is raised where its image is read.
    """

    def fetch(decision: rules.Decision) -> bytes | ImageFetchError:
        try:
            return client.fetch_image(decision.image)
        except ImageFetchError as exc:
            return exc

    return pool.map(fetch, decisions)


def _take(
    decision: rules.Decision,
    fetched: bytes | ImageFetchError,
    summary: rules.ImportSummary,
    payloads: dict[str, tuple[bytes, str]],
    pairs: list[tuple[rules.Decision, str]],
) -> None:
    """Record an accepted decision's fetched image, or why it is skipped."""
    if isinstance(fetched, ImageFetchError):
        summary.skipped.append(
            rules.Decision(
                decision.task_id, decision.image, rules.IMAGE_MISSING, decision.label, str(fetched)
            )
        )
        return
    extension = image_extension(fetched)
    if extension is None:
        summary.skipped.append(
            rules.Decision(
                decision.task_id,
                decision.image,
                rules.IMAGE_UNDECODABLE,
                decision.label,
                f"{len(fetched)} bytes are not a JPEG/PNG/GIF/BMP",
            )
        )
        return
    sha = sha256_bytes(fetched)
    payloads[sha] = (fetched, extension)
    pairs.append((decision, sha))


@dataclass
class MergedDataset:
    """What the ``import_labels`` component reports: the import, its base and its publication.

    Attributes:
        result: The import.
        base: The pulled data set's metadata (``commit``, ``dvc_hash``, ``repo_url``, ``data_path``).
        data_path: The data's path in the data repository, when ``base`` names none.
        published: The new DVC version, or None when the merge was not published.
    """

    result: ImportResult
    base: dict[str, Any]
    data_path: str
    published: PublishResult | None = None

    def metadata(self) -> dict[str, Any]:
        """Metadata of the merged Dataset artifact: the import, its lineage and its version.

        Merged labels that are not published are in no commit: ``commit`` and ``dvc_hash``
        are then empty (the base's would be wrong) and ``unpublished_changes`` is True.
        """
        base, changed = self.base, self.result.summary.accepted != []
        values = {
            **self.result.metadata(),
            "base_commit": base.get("commit", ""),
            "base_dvc_hash": base.get("dvc_hash", ""),
            "repo_url": base.get("repo_url", ""),
            "data_path": base.get("data_path", self.data_path),
            "commit": "" if changed else base.get("commit", ""),
            "dvc_hash": "" if changed else base.get("dvc_hash", ""),
            "unpublished_changes": changed,
        }
        if self.published is not None:
            values.update(self.published.metadata())
            values.update(
                {
                    "commit": self.published.commit,
                    "dvc_hash": self.published.dvc_hash,
                    "unpublished_changes": False,
                }
            )
        return values


def import_and_publish(
    client: LabelStudioClient,
    project: str | int,
    base_dir: Path,
    out_dir: Path,
    base: Mapping[str, Any],
    classes: list[str] | None = None,
    allow_new_classes: bool = False,
    publish: bool = False,
    data_repo_url: str = "",
    data_path: str = "data/raw",
    publish_branch: str = "labels",
    remote_config: dict | None = None,
) -> MergedDataset:
    """What the ``import_labels`` component calls: :func:`import_labels`, then publish the merge.

    Args:
        client: Connection to Label Studio.
        project: Exact project title or numeric id.
        base_dir: The pulled data set (``<Class>/<image>``).
        out_dir: Where the merged data set is written (replaced).
        base: The pulled data set's metadata: the lineage of the merge.
        classes: Allowed labels; the class folders of ``base_dir`` when None.
        allow_new_classes: Accept labels that are choices of the project but not classes.
        publish: Commit the merged folder as a DVC version on ``publish_branch`` of the data
            repository (starting from the pulled commit) and push it.
        data_repo_url: The data repository; empty: the base's ``repo_url``.
        data_path: The data's path in the data repository.
        publish_branch: The branch the merge is published on.
        remote_config: DVC remote settings used when publishing.

    Returns:
        The import and, when published, its new version (:meth:`MergedDataset.metadata`).

    Raises:
        See :func:`import_labels` and :func:`planets_mlops.labelstudio.publish.publish_dataset`.
    """
    result = import_labels(
        client, project, base_dir, out_dir, classes=classes, allow_new_classes=allow_new_classes
    )
    merged = MergedDataset(result, dict(base), data_path)
    if publish:
        from planets_mlops.labelstudio.publish import publish_dataset

        merged.published = publish_dataset(
            Path(out_dir),
            data_repo_url or merged.base.get("repo_url", ""),
            data_path,
            publish_branch,
            base_commit=merged.base.get("commit", ""),
            remote_config=remote_config,
            message=f"Import {len(result.summary.accepted)} labels from Label Studio project {result.project_title!r}",  # noqa: E501
        )
    return merged
