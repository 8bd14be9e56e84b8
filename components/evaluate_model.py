"""KFP component: metrics, confusion matrix and a readable report; compare with production."""

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output
from planets_mlops.components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def evaluate_model(
    prepared: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[HTML],
    production_model_uri: str = "",
    min_improvement: float = 0.0,
) -> bool:
    """Score ``model`` on the validation split; returns whether to promote it.

    ``production_model_uri`` is the model folder of the model in production (a local path
    or ``gs://...``, downloaded with the task's credentials); empty: no comparison, promote.
    """
    from planets_mlops.evaluate import evaluate_model as evaluate
    from planets_mlops.storage_paths import resolve_model_dir

    production = resolve_model_dir(production_model_uri) if production_model_uri else None
    result = evaluate(prepared.path, model.path, report.path, production, min_improvement)
    for key, value in result.metadata().items():
        metrics.log_metric(key, value)
    confusion.log_confusion_matrix(result.classes, result.confusion_matrix)
    return result.promote
