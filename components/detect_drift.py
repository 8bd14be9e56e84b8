"""KFP component: drift of a window of production records against the model's reference (Evidently).

Reads records that keep arriving while its inputs stay the same: disable caching on the task.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Markdown, Metrics, Output

from planets_mlops.components.images import RUNTIME_IMAGE
from planets_mlops.knobs import DriftParams, describe_knobs


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
@describe_knobs(DriftParams)
def detect_drift(
    report: Output[HTML],
    metrics: Output[Metrics],
    verdict: Output[Markdown],
    summary: Output[Artifact],
    records_uri: str,
    model_uri: str,
    model_version: str,
    window_end: str = "",
    window_hours: int = 24,
    alpha: float = 0.01,
    drift_share: float = 0.05,
    min_records: int = 50,
    numeric_test: str = "ks",
    prediction_test: str = "chisquare",
    max_records: int = 20000,
    evidently_workspace: str = "",
    version_source: str = "",
) -> NamedTuple("Outputs", [("drift_verdict", str)]):  # type: ignore[valid-type]
    """Compare ``model_version``'s records of the last ``window_hours`` with its reference profile.

    ``records_uri`` is the root the service writes prediction records to (a folder or
    ``gs://BUCKET/PREFIX``); ``model_uri`` the model folder (``gs://`` or local) holding
    ``monitoring_reference.json``. Every image feature, embedding component and the predicted
    class is tested (``numeric_test`` / ``prediction_test``, Evidently); a column drifts below
    ``alpha`` divided by the columns tested, and the verdict is ``drift`` when at least
    ``drift_share`` of them do. Fewer than ``min_records`` records: ``not enough data``.
    ``window_end`` (ISO-8601) ends the window; empty: now. With ``evidently_workspace`` (a
    folder or ``gs://BUCKET/PREFIX``) the report is also added to that Evidently workspace,
    which the optional Evidently UI serves. Returns the verdict;
    ``report`` is Evidently's report, ``verdict`` the evidence, ``summary`` the JSON the
    alert step reads.

    Args:
        records_uri: Root of the service's prediction records (a folder or gs://BUCKET/PREFIX).
        model_uri: The served model's folder (gs:// or local), holding monitoring_reference.json.
        model_version: The model version the service reports at /metadata; its records are read.
        window_end: End of the window (ISO-8601); empty: when the step starts.
        evidently_workspace: Evidently workspace (a folder or gs://BUCKET/PREFIX) the report is
            added to, for the Evidently UI; empty: none.
        version_source: Where model_version came from (resolve-production's source): registry or
            service (production now: a version with no record yet is not enough data); empty or
            pinned: named by hand (a version with no record anywhere is an error).

    Returns:
        report: Evidently's drift report as HTML.
        metrics: The verdict as numbers, records read, drifted columns and per-column p-values.
        verdict: The evidence as Markdown.
        summary: The JSON the alert step reads.
        drift_verdict: The verdict: drift, no drift or not enough data.
    """
    import json
    from pathlib import Path

    from planets_mlops.knobs import DriftParams
    from planets_mlops.monitoring.drift import check_model_window

    params = DriftParams(
        alpha=alpha,
        drift_share=drift_share,
        min_records=min_records,
        numeric_test=numeric_test,
        prediction_test=prediction_test,
        window_hours=window_hours,
        max_records=max_records,
    )
    result = check_model_window(
        records_uri,
        model_uri,
        model_version,
        window_end,
        params,
        Path(report.path),
        workspace=evidently_workspace,
        version_source=version_source,
    )
    metrics.metadata.update(result.metadata())
    Path(verdict.path).write_text(result.to_markdown())
    Path(summary.path).write_text(json.dumps(result.summary(), indent=1))
    verdict.metadata.update(result.provenance())
    summary.metadata.update(result.provenance())
    report.metadata.update(result.provenance())

    class Outputs(NamedTuple):
        drift_verdict: str

    return Outputs(result.verdict)
