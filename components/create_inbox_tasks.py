"""KFP component: Label Studio tasks from the production inbox, hardest first.

Reads ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` from the environment (the Secret
``label-studio`` on a cluster). Disable caching on the task: the inbox and the project
change between runs while the inputs do not.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from planets_mlops.components.images import RUNTIME_IMAGE
from planets_mlops.knobs import LabelParams, describe_knobs


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
@describe_knobs(LabelParams)
def create_inbox_tasks(
    dataset: Input[Dataset],
    summary: Output[Artifact],
    project: str,
    inbox_uri: str,
    inbox_max_tasks: int = 0,
):
    """Turn the inbox at ``inbox_uri`` (a folder or ``gs://BUCKET/PREFIX``) into tasks of ``project``.

    Each item the service kept (not recognised by the guard, or a close call) becomes a task
    with the service's answer as a prediction whose score marks its uncertainty; tasks are
    created in decreasing uncertainty. Images already in the project or in ``dataset`` make
    no task. An item leaves the inbox once it is a task. ``inbox_max_tasks``: most tasks per run
    (the hardest), 0 for all.

    Args:
        dataset: The data set whose images make no task.
        project: Label Studio project title or id.
        inbox_uri: The service's production inbox (a folder or gs://BUCKET/PREFIX).

    Returns:
        summary: Counts of tasks made and of items skipped with why, as JSON.
    """
    import json
    from pathlib import Path

    from planets_mlops.labelstudio.client import LabelStudioClient
    from planets_mlops.labelstudio.inbox_tasks import create_inbox_tasks as create

    result = create(LabelStudioClient(), project, inbox_uri, Path(dataset.path), inbox_max_tasks)
    summary.metadata.update(result.metadata())
    Path(summary.path).write_text(json.dumps(result.metadata(), indent=2))
