"""KFP component: pre-label the unlabelled tasks of a Label Studio project with a model.

Reads ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` from the environment (the Secret
``label-studio`` on a cluster). Disable caching on the task: the project changes between runs.
"""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from planets_mlops.components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def push_predictions(
    model: Input[Model],
    summary: Output[Artifact],
    project: str,
    model_version: str = "",
    low_confidence: float = 0.5,
):
    """Write ``model``'s predictions (top class, max-softmax score) to every unlabelled task.

    Empty ``model_version``: ``planets-<first 12 hex of sha256(model.onnx)>``, so the same
    model always replaces its own predictions and a new model adds a new version.

    Args:
        model: The model folder whose predictions are pushed.
        project: Label Studio project title or id.
        model_version: Label Studio model version of the predictions; empty: derived from model.onnx.
        low_confidence: Top-class scores below this count as low-confidence tasks in the summary.

    Returns:
        summary: Counts of tasks predicted, predictions replaced, tasks skipped and low-confidence, as JSON.
    """
    import hashlib
    import json
    from pathlib import Path

    from planets_mlops.labelstudio.client import LabelStudioClient
    from planets_mlops.labelstudio.predictions import push_predictions as push
    from planets_mlops.model_folder import ONNX_FILE

    version = (
        model_version
        or "planets-" + hashlib.sha256((Path(model.path) / ONNX_FILE).read_bytes()).hexdigest()[:12]
    )
    result = push(LabelStudioClient(), project, Path(model.path), version, low_confidence=low_confidence)
    summary.metadata.update(result.metadata())
    Path(summary.path).write_text(json.dumps(result.metadata(), indent=2))
