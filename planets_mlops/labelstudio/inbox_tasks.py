"""The ``create_inbox_tasks`` step: the production inbox at a URI into Label Studio tasks.

The transfer itself (hardest first, no duplicates, an item leaves the inbox once it is a
task) is :func:`planets_mlops.labelstudio.inbox_transfer.inbox_to_tasks`, which the drift
alert's ``push_to_label_studio`` action runs too.
"""

from __future__ import annotations

from pathlib import Path

from planets_mlops.inbox import Inbox, open_store
from planets_mlops.labelstudio.client import LabelStudioClient
from planets_mlops.labelstudio.inbox_transfer import InboxTasksResult, inbox_to_tasks


def create_inbox_tasks(
    client: LabelStudioClient,
    project: str | int,
    inbox_uri: str,
    dataset_dir: Path | None = None,
    max_tasks: int = 0,
) -> InboxTasksResult:
    """What the ``create_inbox_tasks`` component calls: open the inbox at ``inbox_uri``, make its tasks.

    Args:
        client: Connection to Label Studio.
        project: Exact project title or numeric id.
        inbox_uri: The service's production inbox (a folder or ``gs://BUCKET/PREFIX``).
        dataset_dir: The current data set; its images make no task.
        max_tasks: Most tasks created in one call (the hardest ones); 0: all.

    Returns:
        Counts of created tasks, removed items and skipped items by reason.

    Raises:
        LabelStudioError: server, token or project problems.
        InvalidParameterError: the project's labelling config has no Choices over an Image.
    """
    return inbox_to_tasks(
        client, project, Inbox(open_store(inbox_uri)), Path(dataset_dir) if dataset_dir else None, max_tasks
    )
