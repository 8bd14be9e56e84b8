"""KFP components: import Label Studio labels into the data set; gate on the number of new labels.

``import_labels`` reads ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY`` from the
environment (on a cluster from the Secret ``label-studio``, see
``pipelines.retraining.with_label_studio_secret``). Disable caching on the task: the
project changes between runs while the inputs do not.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from planets_mlops.components.images import RUNTIME_IMAGE
from planets_mlops.knobs import PIPELINE_KNOBS, LabelParams, describe_knobs


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
@describe_knobs(LabelParams, PIPELINE_KNOBS)
def import_labels(
    dataset: Input[Dataset],
    merged: Output[Dataset],
    project: str,
    classes: list = [],
    publish: bool = False,
    data_repo_url: str = "",
    data_path: str = "data/raw",
    publish_branch: str = "labels",
    dvc_remote_config: dict = {},
    allow_new_classes: bool = False,
):
    """Merge the human labels of Label Studio ``project`` (exact title or id) into ``dataset``.

    Rules and skip reasons: ``planets_mlops.labelstudio.labels``; every skipped task is
    counted in ``merged.metadata['skipped']``. Empty ``classes``: the data set's classes.
    ``publish`` commits the merged folder as a DVC version on ``publish_branch`` of
    ``data_repo_url`` (starting from the pulled commit) and pushes it; an unchanged data
    set makes no new commit. A label that the project offers but the data set lacks is a
    new class: refused with an error naming it, unless ``allow_new_classes``; then its
    folder is added and listed in ``merged.metadata['new_classes']``.

    Args:
        dataset: The pulled data set the labels are merged into.
        project: Label Studio project title or id.
        classes: The classes labels may take; empty: the data set's classes.
        data_repo_url: Git URL of the data repository (to publish to).
        dvc_remote_config: DVC remote settings used when publishing (no secrets: it is stored in the run).

    Returns:
        merged: The data set with the new labels; metadata counts new labels and skipped tasks.
    """
    from planets_mlops.labelstudio.client import LabelStudioClient
    from planets_mlops.labelstudio.importer import import_and_publish

    result = import_and_publish(
        LabelStudioClient(),
        project,
        dataset.path,
        merged.path,
        dict(dataset.metadata),
        classes=list(classes) or None,
        allow_new_classes=allow_new_classes,
        publish=publish,
        data_repo_url=data_repo_url,
        data_path=data_path,
        publish_branch=publish_branch,
        remote_config=dict(dvc_remote_config) or None,
    )
    merged.metadata.update(result.metadata())


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
@describe_knobs(LabelParams)
def check_new_labels(
    merged: Input[Dataset],
    min_new_labels: int = 1,
) -> NamedTuple("Outputs", [("enough_new_labels", bool)]):  # type: ignore[valid-type]
    """True when the import added at least ``min_new_labels`` images (retrain gate).

    Args:
        merged: import_labels's data set (metadata['new_labels']).

    Returns:
        enough_new_labels: Whether there are enough new labels to retrain.
    """
    import logging

    new = int(merged.metadata.get("new_labels", 0))
    enough = new >= min_new_labels
    logging.getLogger("check_new_labels").info(
        "%d new labels, minimum %d: %s", new, min_new_labels, "retrain" if enough else "skip retraining"
    )

    class Outputs(NamedTuple):
        enough_new_labels: bool

    return Outputs(enough)
