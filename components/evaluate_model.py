"""KFP component: metrics, confusion matrix, a readable report and the promotion verdict."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from planets_mlops.components.images import RUNTIME_IMAGE
from planets_mlops.knobs import PIPELINE_KNOBS, EvaluateParams, RegistryParams, describe_knobs


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
@describe_knobs(EvaluateParams, RegistryParams, PIPELINE_KNOBS)
def evaluate_model(
    prepared: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[HTML],
    verdict: Output[Markdown],
    production_model_uri: str = "",
    min_improvement: float = 0.0,
    gate_alpha: float = 0.05,
    gate_confidence: float = 0.95,
    bootstrap_resamples: int = 2000,
    bootstrap_seed: int = 0,
    tracking: bool = False,
    registered_model_name: str = "planets-classifier",
    run_name: str = "",
) -> NamedTuple("Outputs", [("promote", bool)]):  # type: ignore[valid-type]
    """Score ``model`` on the validation split; returns whether to promote it.

    ``production_model_uri`` is the model folder of the model in production (a local path
    or ``gs://...``, downloaded with the task's credentials); empty: no comparison, promote.
    Otherwise both models classify the same images and the gate of
    ``planets_mlops.gate`` decides: not worse beyond noise (exact McNemar at
    ``gate_alpha``, overall and per class), and a gain of ``min_improvement`` or a new
    class. ``verdict`` shows the decision with its numbers (bootstrap intervals at
    ``gate_confidence``) in the KFP UI.

    With ``tracking`` and no ``production_model_uri``, the opponent is the version the
    ``production`` alias of ``registered_model_name`` names (``MLFLOW_TRACKING_URI``); an
    explicit URI still wins. ``verdict.metadata['production_version']`` is the version
    production named, which the promotion expects to still find there.

    Args:
        prepared: The prepared data set; its validation split is scored.
        model: The candidate model folder.
        production_model_uri: Model folder of the production model (a path or gs://); empty:
            the production alias with tracking, else no comparison and the candidate is promoted.
        run_name: The pipeline run's name, shown in the report's header (the pipeline passes
            KFP's run name; empty: not shown).

    Returns:
        metrics: Validation metrics, the guard's figures and, against production, the gate's numbers.
        confusion: The confusion matrix, for the KFP UI.
        report: The evaluation report (per class, confusion matrix, mistakes) as HTML.
        verdict: The gate's decision with its numbers as Markdown.
        promote: Whether to promote the candidate.
    """
    from planets_mlops.components.task_exit import end_when_written

    end_when_written()  # once the outputs are written, the process ends without teardown
    from planets_mlops.evaluate import evaluate_candidate
    from planets_mlops.knobs import EvaluateParams, RegistryParams

    evaluation = evaluate_candidate(
        prepared.path,
        model.path,
        report.path,
        verdict.path,
        EvaluateParams(
            min_improvement=min_improvement,
            gate_alpha=gate_alpha,
            gate_confidence=gate_confidence,
            bootstrap_resamples=bootstrap_resamples,
            bootstrap_seed=bootstrap_seed,
        ),
        RegistryParams(tracking=tracking, model_name=registered_model_name),
        production_model_uri,
        model_metadata=model.metadata,
        data_metadata=prepared.metadata,
        run_name=run_name,
    )
    result = evaluation.result
    metrics.metadata.update(result.metadata())
    confusion.log_confusion_matrix(result.classes, result.confusion_matrix)
    verdict.metadata.update(evaluation.verdict_metadata())

    class Outputs(NamedTuple):
        promote: bool

    return Outputs(result.promote)
