"""Pure rules that turn a Label Studio JSON export into labelled images (no I/O, no SDK).

The rules, applied in this order (each skipped task is counted under its reason):

Per task (:func:`decide_label`):
    1. ``malformed_task``     the task has no id or no ``data.<image key>`` URL.
    2. ``no_annotation``      nobody annotated the task yet.
    3. Every annotation counts as one vote, whoever made it (Label Studio keeps one
       annotation per labeller and task when edited in the UI; extra ones are deliberate).
    4. ``cancelled``          every remaining annotation was cancelled ("Skip" in the UI).
       Cancelled annotations never vote.
    5. ``empty_annotation``   annotations were submitted but none chose a class.
    6. ``multiple_choices``   an annotation chose more than one class (the project's Choices
                              are single-choice; the server does not enforce it).
    7. ``unknown_label``      an annotation chose a name outside the class list (the server
                              accepts any label); the whole task waits for a fix rather than
                              being outvoted, since it shows a config/class-list mismatch.
                              A choice the project's labelling config offers but the data
                              set lacks is a *new class*: the import refuses it with an
                              error unless ``allow_new_classes`` (see
                              :func:`refuse_new_classes`), and then adds its folder.
    8. ``disagreement``       no class has a strict majority of the votes (ties included):
                              a human must adjudicate; the latest vote does not win.

Per image content (:func:`resolve_content`, after the image bytes are fetched and hashed):
    9. ``image_missing`` / ``image_undecodable``: the image cannot be fetched or decoded.
    10. ``duplicate_conflict``     the same bytes appear in several tasks with different
                                   labels: all of them are skipped.
    11. ``duplicate_task``         the same bytes with the same label in several tasks: the
                                   lowest task id is imported, the others counted here.
    12. ``conflicts_with_dataset`` the bytes are already in the data set under another class:
                                   the versioned data set wins until someone fixes it.
    13. ``already_in_dataset``     the bytes are already there under the same class (e.g. a
                                   re-import): nothing to add.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from planets_mlops.errors import InvalidParameterError, NewClassError

ACCEPTED = "accepted"
MALFORMED = "malformed_task"
NO_ANNOTATION = "no_annotation"
CANCELLED = "cancelled"
EMPTY = "empty_annotation"
MULTIPLE = "multiple_choices"
UNKNOWN_LABEL = "unknown_label"
DISAGREEMENT = "disagreement"
IMAGE_MISSING = "image_missing"
IMAGE_UNDECODABLE = "image_undecodable"
DUPLICATE_CONFLICT = "duplicate_conflict"
DUPLICATE_TASK = "duplicate_task"
DATASET_CONFLICT = "conflicts_with_dataset"
ALREADY_IN_DATASET = "already_in_dataset"

SKIP_REASONS = (
    MALFORMED,
    NO_ANNOTATION,
    CANCELLED,
    EMPTY,
    MULTIPLE,
    UNKNOWN_LABEL,
    DISAGREEMENT,
    IMAGE_MISSING,
    IMAGE_UNDECODABLE,
    DUPLICATE_CONFLICT,
    DUPLICATE_TASK,
    DATASET_CONFLICT,
    ALREADY_IN_DATASET,
)

# Names used by the labelling config this project creates (labeling_config()).
FROM_NAME = "planet"
TO_NAME = "image"
IMAGE_KEY = "image"

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ .-]*$")


@dataclass(frozen=True)
class Vote:
    """One annotation of a task, reduced to what the rules need."""

    annotation_id: int
    choices: tuple[str, ...]
    cancelled: bool
    author: str
    updated_at: str


@dataclass(frozen=True)
class TaskRecord:
    """One exported task: its id, image URL and annotations (``votes``)."""

    task_id: int | None
    image: str
    votes: tuple[Vote, ...]
    problem: str = ""


@dataclass(frozen=True)
class Decision:
    """The outcome for one task: a label (reason ``accepted``) or a skip reason."""

    task_id: int | None
    image: str
    reason: str
    label: str | None = None
    detail: str = ""

    @property
    def accepted(self) -> bool:
        """True when the task's label is taken into the data set."""
        return self.reason == ACCEPTED


@dataclass(frozen=True)
class LabelledImage:
    """An accepted task whose image bytes were fetched: content hash and label."""

    task_id: int
    image: str
    sha256: str
    label: str


@dataclass
class ImportSummary:
    """Everything an import decided, for the artifact metadata and the log."""

    accepted: list[LabelledImage] = field(default_factory=list)
    skipped: list[Decision] = field(default_factory=list)

    @property
    def total_tasks(self) -> int:
        """Number of tasks decided: accepted plus skipped."""
        return len(self.accepted) + len(self.skipped)

    def skip_counts(self) -> dict[str, int]:
        """Skip reason -> number of tasks, in ``SKIP_REASONS`` order, leaving out reasons with none."""
        counts = Counter(d.reason for d in self.skipped)
        return {reason: counts[reason] for reason in SKIP_REASONS if counts[reason]}

    def class_counts(self) -> dict[str, int]:
        """Class -> number of accepted images, sorted by class name."""
        return dict(sorted(Counter(item.label for item in self.accepted).items()))

    def metadata(self, max_examples: int = 20) -> dict[str, Any]:
        """Counts plus the first few skipped tasks per reason (ids and details)."""
        examples: dict[str, list[str]] = defaultdict(list)
        for decision in self.skipped:
            if len(examples[decision.reason]) < max_examples:
                examples[decision.reason].append(f"task {decision.task_id}: {decision.detail}".strip(": "))
        return {
            "tasks_total": self.total_tasks,
            "new_labels": len(self.accepted),
            "new_labels_per_class": self.class_counts(),
            "skipped_total": len(self.skipped),
            "skipped": self.skip_counts(),
            "skipped_examples": dict(examples),
        }


# ---------------------------------------------------------------------------------------
# Labelling config


def validate_classes(classes: Sequence[str]) -> list[str]:
    """Check a class list (non-empty, unique, folder-safe names); returns it as a list.

    Args:
        classes: Class names, e.g. the data set's class folders.

    Raises:
        InvalidParameterError: empty list, duplicates, or a name unsafe as a folder name.
    """
    names = list(classes)
    if not names:
        raise InvalidParameterError(
            "classes",
            names,
            "a non-empty list of class names",
            "Pass the data set's class folders, e.g. ['Earth', 'Mars'].",
        )
    duplicates = sorted(n for n, c in Counter(names).items() if c > 1)
    if duplicates:
        raise InvalidParameterError("classes", names, "unique names", f"Remove duplicates {duplicates}.")
    for name in names:
        if not is_class_name(name):
            raise InvalidParameterError(
                "classes",
                name,
                "letters, digits, '_', '-', '.', spaces (a folder name)",
                "Rename the class; it becomes a folder of the data set.",
            )
    return names


def is_class_name(name: object) -> bool:
    """Whether ``name`` is usable as a class (and so as a folder name)."""
    return isinstance(name, str) and bool(_NAME_RE.match(name)) and name not in (".", "..")


def labeling_config(classes: Sequence[str]) -> str:
    """The project's labelling config: one image, single-choice classes.

    Args:
        classes: Class names (checked with :func:`validate_classes`).

    Returns:
        The XML labelling config.
    """
    names = validate_classes(classes)
    choices = "\n".join(f'    <Choice value="{_xml_attr(n)}"/>' for n in names)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="${IMAGE_KEY}"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>"
    )


def _xml_attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


@dataclass(frozen=True)
class ChoicesConfig:
    """The Choices control of a project's labelling config."""

    from_name: str
    to_name: str
    image_key: str
    choices: tuple[str, ...]


def parse_label_config(xml: str) -> ChoicesConfig:
    """Find the (first) ``<Choices>`` over an ``<Image>`` in a labelling config.

    Raises:
        InvalidParameterError: the XML does not parse or has no Choices over an Image.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise InvalidParameterError("label_config", xml[:200], "well-formed XML") from exc
    images = {el.get("name"): (el.get("value") or "").lstrip("$") for el in root.iter("Image")}
    for el in root.iter("Choices"):
        to_name = el.get("toName", "")
        if el.get("name") and to_name in images:
            choices = tuple(c.get("value", "") for c in el.iter("Choice"))
            return ChoicesConfig(el.get("name", ""), to_name, images[to_name], choices)
    raise InvalidParameterError(
        "label_config",
        xml[:200],
        "a config with <Choices toName=...> over an <Image>",
        "Create the project with planets_mlops.labelstudio.labels.labeling_config(classes).",
    )


# ---------------------------------------------------------------------------------------
# Export parsing


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _choices_of(result: Any, from_name: str | None) -> tuple[str, ...]:
    found: list[str] = []
    if not isinstance(result, list):
        return ()
    for region in result:
        if not isinstance(region, dict) or region.get("type", "choices") != "choices":
            continue
        if from_name and region.get("from_name") not in (None, from_name):
            continue
        value = region.get("value")
        choices = value.get("choices") if isinstance(value, dict) else None
        if isinstance(choices, list):
            found.extend(str(c) for c in choices)
    return tuple(found)


def parse_task(task: Any, image_key: str = IMAGE_KEY, from_name: str | None = FROM_NAME) -> TaskRecord:
    """Reduce one exported task to a :class:`TaskRecord`; never raises.

    A task that is not a dict, has no integer id or no image URL gets ``problem`` set.

    A task that cannot be read gets a ``problem`` instead of raising, so one bad task is
    counted as a skip and never stops the import.

    Args:
        task: One task object of a JSON export.
        image_key: Key of the image URL in ``task["data"]``.
        from_name: Only annotation results of this Choices tag count (None: any).
    """
    if not isinstance(task, dict):
        return TaskRecord(None, "", (), problem=f"task is a {type(task).__name__}, not an object")
    task_id = _as_int(task.get("id"))
    data = task.get("data")
    image = data.get(image_key) if isinstance(data, dict) else None
    votes: list[Vote] = []
    annotations = task.get("annotations")
    for i, ann in enumerate(annotations if isinstance(annotations, list) else []):
        if not isinstance(ann, dict):
            continue
        author = ann.get("completed_by")
        if isinstance(author, dict):
            author = author.get("id", author.get("email"))
        ann_id = _as_int(ann.get("id"))
        votes.append(
            Vote(
                annotation_id=ann_id if ann_id is not None else -1 - i,
                choices=_choices_of(ann.get("result"), from_name),
                cancelled=bool(ann.get("was_cancelled")),
                # An unknown author is its own labeller: never merged with someone else.
                author=str(author) if author is not None else f"anonymous-{i}",
                updated_at=str(ann.get("updated_at") or ann.get("created_at") or ""),
            )
        )
    problem = ""
    if task_id is None:
        problem = f"task has no integer id ({task.get('id')!r})"
    elif not isinstance(image, str) or not image:
        problem = f"task has no data.{image_key} URL"
    return TaskRecord(task_id, image if isinstance(image, str) else "", tuple(votes), problem)


def parse_export(
    tasks: Iterable[Any], image_key: str = IMAGE_KEY, from_name: str | None = FROM_NAME
) -> list[TaskRecord]:
    """Parse a JSON export (a list of task objects) into records, in the export's order.

    Args:
        tasks: The export, as from :meth:`LabelStudioClient.export_tasks`.
        image_key: Key of the image URL in each task's ``data``.
        from_name: Only annotation results of this Choices tag count (None: any).
    """
    return [parse_task(t, image_key=image_key, from_name=from_name) for t in tasks]


# ---------------------------------------------------------------------------------------
# Rules


def decide_label(record: TaskRecord, classes: Sequence[str]) -> Decision:
    """Apply rules 1-8 of the module docstring to one task.

    Args:
        record: The task, from :func:`parse_task`.
        classes: The data set's classes; a label outside them is a skip.

    Returns:
        The accepted label, or the first rule that skips the task.
    """
    tid, image = record.task_id, record.image
    if record.problem:
        return Decision(tid, image, MALFORMED, detail=record.problem)
    if not record.votes:
        return Decision(tid, image, NO_ANNOTATION)
    votes = [v for v in record.votes if not v.cancelled]
    if not votes:
        return Decision(tid, image, CANCELLED, detail=f"{len(record.votes)} annotation(s), all cancelled")
    labelled = [v for v in votes if v.choices]
    if not labelled:
        return Decision(tid, image, EMPTY, detail=f"{len(votes)} annotation(s) without a choice")
    multiple = [v for v in labelled if len(v.choices) > 1]
    if multiple:
        return Decision(
            tid,
            image,
            MULTIPLE,
            detail=f"annotation {multiple[0].annotation_id} chose {list(multiple[0].choices)}",
        )
    allowed = set(classes)
    unknown = sorted({v.choices[0] for v in labelled if v.choices[0] not in allowed})
    if unknown:
        return Decision(
            tid, image, UNKNOWN_LABEL, detail=f"label(s) {unknown} not in the class list {list(classes)}"
        )
    counts = Counter(v.choices[0] for v in labelled)
    label, top = counts.most_common(1)[0]
    if top * 2 <= len(labelled):
        return Decision(tid, image, DISAGREEMENT, detail=f"votes {dict(sorted(counts.items()))}")
    return Decision(tid, image, ACCEPTED, label=label)


def decide_labels(records: Iterable[TaskRecord], classes: Sequence[str]) -> list[Decision]:
    """:func:`decide_label` over every record."""
    return [decide_label(r, classes) for r in records]


def new_class_tasks(decisions: Iterable[Decision], known: Sequence[str]) -> dict[str, list[int | None]]:
    """Labels of accepted decisions that are not classes of the data set yet.

    Args:
        decisions: Outcomes of :func:`decide_labels`.
        known: The data set's classes.

    Returns:
        New label -> ids of the tasks that chose it, sorted by label.
    """
    found: dict[str, list[int | None]] = defaultdict(list)
    known_set = set(known)
    for decision in decisions:
        if decision.accepted and decision.label not in known_set:
            found[str(decision.label)].append(decision.task_id)
    return dict(sorted(found.items()))


def refuse_new_classes(new: Mapping[str, Sequence[int | None]], known: Sequence[str], project: str) -> None:
    """Raise the error that stops an import which would add classes without permission.

    Args:
        new: New label -> task ids, from :func:`new_class_tasks`; nothing happens when empty.
        known: The data set's classes.
        project: The project's title, for the message.

    Raises:
        NewClassError: ``new`` is not empty. The message names each label, a few of its
            tasks, and the parameter ``allow_new_classes``.
    """
    if not new:
        return
    described = "; ".join(
        f"{label!r} in {len(ids)} task(s) {ids[:5]}{' ...' if len(ids) > 5 else ''}"
        for label, ids in new.items()
    )
    raise NewClassError(
        f"Labellers of project {project!r} used label(s) that are not classes of the data set "
        f"{list(known)}: {described}. Nothing was imported. To add them as new classes (the model is "
        f"then retrained with {len(known) + len(new)} classes), set allow_new_classes=True; otherwise "
        "relabel those tasks or remove the choice from the project's labelling config."
    )


def resolve_content(
    labelled: Iterable[tuple[Decision, str]], existing: Mapping[str, str]
) -> tuple[list[LabelledImage], list[Decision]]:
    """Apply rules 10-13 to accepted tasks paired with the SHA-256 of their image bytes.

    Args:
        labelled: ``(accepted decision, sha256)`` pairs.
        existing: sha256 -> class of every image already in the data set.

    Returns:
        The images to add (at most one per hash, none already present) and the skipped
        decisions; every input appears in exactly one of the two lists.
    """
    groups: dict[str, list[Decision]] = defaultdict(list)
    for decision, sha in labelled:
        groups[sha].append(decision)
    accepted: list[LabelledImage] = []
    skipped: list[Decision] = []

    def skip(d: Decision, reason: str, detail: str) -> None:
        skipped.append(Decision(d.task_id, d.image, reason, label=d.label, detail=detail))

    for sha, decisions in groups.items():
        decisions.sort(key=lambda d: (d.task_id is None, d.task_id or 0))
        labels = sorted({str(d.label) for d in decisions})
        ids = [d.task_id for d in decisions]
        if len(labels) > 1:
            for d in decisions:
                skip(d, DUPLICATE_CONFLICT, f"same image in tasks {ids} labelled {labels}")
            continue
        label = labels[0]
        present = existing.get(sha)
        if present is not None and present != label:
            for d in decisions:
                skip(
                    d,
                    DATASET_CONFLICT,
                    f"image is already in the data set as {present!r}, labelled {label!r}",
                )
            continue
        if present == label:
            for d in decisions:
                skip(d, ALREADY_IN_DATASET, f"already in the data set as {label!r}")
            continue
        first, rest = decisions[0], decisions[1:]
        accepted.append(LabelledImage(int(first.task_id or 0), first.image, sha, label))
        for d in rest:
            skip(d, DUPLICATE_TASK, f"same image as task {first.task_id}")
    return accepted, skipped
