"""Drift of production inputs and answers against the reference profile, with Evidently.

Three groups of columns are compared, each column with its own two-sample test run by
Evidently (``ValueDrift``), against the reference profile made on the validation images:

- ``image``: the scalar :data:`~planets_mlops.monitoring.features.FEATURES` (data drift);
- ``embedding``: the components of the projected guard embedding (embedding drift);
- ``prediction``: the predicted class, the model's top class whether or not the guard
  recognised the image, as the reference holds it (prediction drift).

The decision (:class:`~planets_mlops.knobs.DriftParams`): a column drifts when its p-value
is below ``alpha / columns tested`` (Bonferroni: a window of in-distribution traffic raises
an alarm with probability below ``alpha``); the verdict is :data:`DRIFT` when at least
``drift_share`` of the columns (and at least one) drift, :data:`NO_DRIFT` otherwise, and
:data:`NOT_ENOUGH_DATA` when the window or the reference holds fewer than ``min_records``
records: a small window is never reported as free of drift.

Evidently and pandas are imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import html
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from planets_mlops.knobs import DriftParams
from planets_mlops.monitoring.features import FEATURES, PROJECTION_DIM
from planets_mlops.monitoring.records import Window
from planets_mlops.monitoring.reference import ReferenceProfile
from planets_mlops.monitoring.summary import (  # noqa: F401 - the verdicts, re-exported
    DRIFT,
    NO_DRIFT,
    NOT_ENOUGH_DATA,
    SUMMARY_FORMAT,
    VERDICTS,
    format_p,
    summary_markdown,
)

log = logging.getLogger(__name__)

EMBEDDING_COLUMNS = tuple(f"embedding_{i}" for i in range(PROJECTION_DIM))
PREDICTION_COLUMN = "prediction"
# The reference profile stores its values to 6 decimals; records are compared at the same
# precision, or the ties of discrete features (dark_fraction is a count of pixels over the
# pixel count) would split apart and a window of the reference's own images would "drift".
DECIMALS = 6


@dataclass(frozen=True)
class ColumnDrift:
    """One column's test.

    Attributes:
        column: The column (a feature, ``embedding_<i>`` or ``prediction``).
        group: ``image``, ``embedding`` or ``prediction``.
        test: The Evidently test that gave ``p_value``.
        statistic: The Kolmogorov-Smirnov distance D (numeric columns, the default test's
            statistic; in [0, 1]) or the chi-square statistic of the class counts against
            the reference's shares (prediction).
        p_value: Evidently's p-value.
        drifted: ``p_value`` is below the corrected threshold.
    """

    column: str
    group: str
    test: str
    statistic: float
    p_value: float
    drifted: bool


@dataclass(frozen=True)
class WindowInfo:
    """Which records were compared: model version, time window, what the reader skipped.

    ``truncated``: the window held more than ``max_records`` records, and the compared
    records are a uniform sample of all ``seen`` of them, drawn across the whole window.
    """

    model_version: str = ""
    start: str = ""
    end: str = ""
    objects: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    truncated: bool = False
    seen: int = -1


@dataclass(frozen=True)
class DriftResult:
    """The verdict of one window and the evidence behind it.

    Attributes:
        verdict: One of :data:`VERDICTS`.
        reason: One sentence saying why.
        records: Records in the window.
        reference_records: Images in the reference profile.
        threshold: The per-column p-value threshold (``alpha / len(columns)``).
        columns: Every tested column (empty for :data:`NOT_ENOUGH_DATA`).
        notes: Groups left out and why.
        params: The knobs the decision used.
        window: The window's description.
        seconds: Time spent in the tests.
    """

    verdict: str
    reason: str
    records: int
    reference_records: int
    threshold: float
    columns: list[ColumnDrift]
    notes: list[str]
    params: DriftParams
    window: WindowInfo
    seconds: float = 0.0

    @property
    def drifted(self) -> list[ColumnDrift]:
        """The columns that drifted, smallest p-value first."""
        return sorted((c for c in self.columns if c.drifted), key=lambda c: c.p_value)

    @property
    def drift_share(self) -> float:
        """Share of the tested columns that drifted (0 when none was tested)."""
        return len(self.drifted) / len(self.columns) if self.columns else 0.0

    def groups(self) -> dict[str, dict[str, int]]:
        """Per group: columns tested and drifted."""
        out: dict[str, dict[str, int]] = {}
        for column in self.columns:
            entry = out.setdefault(column.group, {"tested": 0, "drifted": 0})
            entry["tested"] += 1
            entry["drifted"] += int(column.drifted)
        return out

    def metadata(self) -> dict[str, float]:
        """Values for the KFP Metrics output: verdict as numbers, drift share, per-column figures."""
        values: dict[str, float] = {
            "drift": float(self.verdict == DRIFT),
            "enough_data": float(self.verdict != NOT_ENOUGH_DATA),
            "records": float(self.records),
            "reference_records": float(self.reference_records),
            "drift_share": self.drift_share,
            "drifted_columns": float(len(self.drifted)),
            "p_value_threshold": self.threshold,
        }
        for column in self.columns:
            # KFP metrics and the JSON summary must stay finite: an infinite chi-square (a
            # class the reference never predicted) is left out here and shown in the verdict.
            if math.isfinite(column.statistic):
                values[f"{column.column}_statistic"] = column.statistic
            values[f"{column.column}_p_value"] = column.p_value
        return values

    def summary(self) -> dict[str, Any]:
        """The result as JSON-able data (the ``summary`` artifact the alert step reads)."""
        return {
            "format": SUMMARY_FORMAT,
            "verdict": self.verdict,
            "reason": self.reason,
            "records": self.records,
            "reference_records": self.reference_records,
            "threshold": self.threshold,
            "drift_share": self.drift_share,
            "groups": self.groups(),
            "columns": [
                {**asdict(c), "statistic": c.statistic if math.isfinite(c.statistic) else None}
                for c in self.columns
            ],
            "notes": list(self.notes),
            "params": asdict(self.params),
            "window": asdict(self.window),
        }

    def to_markdown(self) -> str:
        """The verdict with its evidence, for the KFP UI."""
        return summary_markdown(self.summary())

    def provenance(self) -> dict[str, str]:
        """What each of the step's artifacts says it is about: the verdict, the version, the window."""
        return {
            "verdict": self.verdict,
            "model_version": self.window.model_version,
            "window_start": self.window.start,
            "window_end": self.window.end,
        }


def _frames(reference: ReferenceProfile, window: Window, use_embedding: bool) -> tuple[Any, Any]:
    import pandas as pd

    def frame(features: np.ndarray, embeddings: np.ndarray, predictions: list[str]) -> Any:
        features, embeddings = np.round(features, DECIMALS), np.round(embeddings, DECIMALS)
        data: dict[str, Any] = {name: features[:, i] for i, name in enumerate(FEATURES)}
        if use_embedding:
            data.update({name: embeddings[:, i] for i, name in enumerate(EMBEDDING_COLUMNS)})
        data[PREDICTION_COLUMN] = pd.Series(predictions, dtype="object")
        return pd.DataFrame(data)

    current = frame(window.features(), window.embeddings(), [r.closest_class for r in window.records])
    ref = frame(reference.features, reference.embeddings, list(reference.predictions))
    return ref, current


def _statistic(column: str, reference: Any, current: Any) -> float:
    from scipy import stats

    if column != PREDICTION_COLUMN:
        return float(stats.ks_2samp(reference, current).statistic)
    # The chi-square statistic of the current class counts against the reference's shares,
    # as Evidently's chisquare test computes it; a class the reference never predicted
    # makes it infinite, which is reported as such.
    keys = sorted(set(reference) | set(current))
    ref_counts = reference.value_counts()
    cur_counts = current.value_counts()
    scale = len(current) / len(reference)
    total = 0.0
    for key in keys:
        expected = float(ref_counts.get(key, 0)) * scale
        observed = float(cur_counts.get(key, 0))
        if expected == 0:
            return math.inf if observed else total
        total += (observed - expected) ** 2 / expected
    return total


EVIDENTLY_PROJECT = "planets-monitoring"


def add_to_workspace(snapshot: Any, workspace: str, name: str) -> str:
    """Add an Evidently snapshot to the project :data:`EVIDENTLY_PROJECT` of ``workspace``.

    ``workspace`` is a folder or an fsspec URL (``gs://BUCKET/evidently``): the one the
    Evidently UI serves (``kustomize/components/evidently-ui``). Returns the project's id.
    """
    from evidently.ui.workspace import Workspace

    ws = Workspace.create(workspace)
    found = ws.search_project(EVIDENTLY_PROJECT)
    project = found[0] if found else ws.create_project(EVIDENTLY_PROJECT, "Drift of production records")
    ws.add_run(project.id, snapshot, name=name)
    return str(project.id)


def _evidently_p_values(
    ref: Any,
    current: Any,
    columns: list[str],
    params: DriftParams,
    threshold: float,
    report_path: Path | None,
    workspace: str = "",
    run_name: str = "",
    notes: list[str] | None = None,
) -> dict[str, float]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    notes = [] if notes is None else notes
    numeric = [c for c in columns if c != PREDICTION_COLUMN]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=[PREDICTION_COLUMN])
    metrics = [ValueDrift(column=c, method=params.numeric_test, threshold=threshold) for c in numeric]
    metrics.append(ValueDrift(column=PREDICTION_COLUMN, method=params.prediction_test, threshold=threshold))
    # A class the reference never predicted has an expected count of 0: chi-square is then
    # infinite and p is 0 (drift), which NumPy would also warn about.
    with np.errstate(divide="ignore", invalid="ignore"):
        snapshot = Report(metrics).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(ref, data_definition=definition),
        )
    if report_path is not None:
        snapshot.save_html(str(report_path))
    if workspace:
        # The dashboard is a copy: failing to write it must not hide the verdict.
        try:
            add_to_workspace(snapshot, workspace, run_name)
            notes.append(f"report added to the Evidently workspace {workspace} (project {EVIDENTLY_PROJECT})")
        except Exception as exc:  # noqa: BLE001 - fsspec/gcsfs raise many kinds
            log.warning("could not add the report to the Evidently workspace %s: %s", workspace, exc)
            why = f"{type(exc).__name__}: {exc}"
            notes.append(f"the report could not be added to the Evidently workspace {workspace}: {why}")
    values: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        column = metric.get("config", {}).get("column")
        value = metric.get("value")
        if column in columns and isinstance(value, (int, float)):
            values[column] = float(value)
    missing = sorted(set(columns) - set(values))
    if missing:
        raise RuntimeError(f"Evidently returned no drift score for {missing}")
    return values


def not_enough_data_html(result: DriftResult) -> str:
    """The report page of a window too small to test (no Evidently report is made)."""
    return (
        "<!doctype html><meta charset='utf-8'><title>Drift check: not enough data</title>"
        f"<h1>Drift check: not enough data</h1><p>{html.escape(result.reason)}</p>"
        f"<pre>{html.escape(json.dumps(result.summary()['window'], indent=2))}</pre>"
    )


def detect_drift(
    reference: ReferenceProfile,
    window: Window,
    params: DriftParams | None = None,
    report_path: Path | None = None,
    info: WindowInfo | None = None,
    workspace: str = "",
) -> DriftResult:
    """Compare a window of production records with the reference profile.

    Args:
        reference: The model's reference profile (validation images).
        window: The production records (:func:`planets_mlops.monitoring.records.read_window`).
        params: The decision's knobs (defaults: :class:`DriftParams`).
        report_path: Where to write the Evidently report (HTML); None: no report.
        info: The window's description, carried into the result; by default only the
            reader's counts.
        workspace: An Evidently workspace (folder or ``gs://``) the report is also added
            to, for the Evidently UI; empty: none.

    Returns:
        The verdict, the per-column evidence and the window's description.
    """
    params = params or DriftParams()
    info = info or WindowInfo(
        objects=window.objects, skipped=dict(window.skipped), truncated=window.truncated, seen=window.seen
    )
    started = time.monotonic()
    records, ref_count = len(window.records), reference.count
    notes: list[str] = []

    def verdict_only(verdict: str, reason: str) -> DriftResult:
        return DriftResult(verdict, reason, records, ref_count, 0.0, [], notes, params, info)

    if records < params.min_records or ref_count < params.min_records:
        small = "the window" if records < params.min_records else "the reference profile"
        result = verdict_only(
            NOT_ENOUGH_DATA,
            f"{records} production records against {ref_count} reference images: {small} holds fewer "
            f"than min_records ({params.min_records}), too few to tell drift from noise. Widen the "
            "window (window_hours) or wait for more traffic.",
        )
        if report_path is not None:
            Path(report_path).write_text(not_enough_data_html(result))
        return result

    with_embedding = sum(1 for r in window.records if r.embedding)
    use_embedding = bool(reference.embeddings.shape[1]) and with_embedding == records
    if not reference.embeddings.shape[1]:
        notes.append(
            "the reference holds no embeddings (a model without a guard): embedding drift not tested"
        )
    elif not use_embedding:
        notes.append(
            f"{records - with_embedding} of {records} records hold no embedding: embedding drift not tested"
        )
    ref, current = _frames(reference, window, use_embedding)
    columns = [*FEATURES, *(EMBEDDING_COLUMNS if use_embedding else ()), PREDICTION_COLUMN]
    threshold = params.alpha / len(columns)
    run_name = f"{info.model_version or 'window'} {info.start} to {info.end}".strip()
    p_values = _evidently_p_values(
        ref, current, columns, params, threshold, report_path, workspace, run_name, notes
    )
    tested = []
    for column in columns:
        group = (
            "prediction"
            if column == PREDICTION_COLUMN
            else "embedding"
            if column in EMBEDDING_COLUMNS
            else "image"
        )
        p_value = p_values[column]
        tested.append(
            ColumnDrift(
                column=column,
                group=group,
                test=params.prediction_test if group == "prediction" else params.numeric_test,
                statistic=_statistic(column, ref[column], current[column]),
                p_value=p_value,
                drifted=bool(p_value < threshold) or math.isnan(p_value),
            )
        )
    needed = max(1, math.ceil(params.drift_share * len(columns) - 1e-9))
    drifted = sorted((c for c in tested if c.drifted), key=lambda c: c.p_value)
    if len(drifted) >= needed:
        named = ", ".join(f"{c.column} (p={format_p(c.p_value)})" for c in drifted[:5])
        verdict, reason = (
            DRIFT,
            (
                f"{len(drifted)} of {len(columns)} columns drifted (at least {needed} needed): {named}"
                + (" ..." if len(drifted) > 5 else "")
                + "."
            ),
        )
    else:
        verdict, reason = (
            NO_DRIFT,
            (
                f"{len(drifted)} of {len(columns)} columns drifted, fewer than the {needed} needed; "
                f"smallest p-value {format_p(min(p_values.values()))} against a threshold of {threshold:.2g}."
            ),
        )
    result = DriftResult(
        verdict,
        reason,
        records,
        ref_count,
        threshold,
        tested,
        notes,
        params,
        info,
        time.monotonic() - started,
    )
    log.info("drift check: %s (%d records, %d/%d columns drifted, %.1f s)", verdict, records,
             len(drifted), len(columns), result.seconds)  # fmt: skip
    return result


def window_bounds(
    window_end: str, window_hours: int, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """The window ``[end - window_hours, end)``; an empty ``window_end`` is ``now``.

    Raises:
        InvalidParameterError: ``window_end`` is not an ISO-8601 time.
    """
    from planets_mlops.errors import DataError, InvalidParameterError
    from planets_mlops.monitoring.records import parse_time

    if not window_end:
        end = (now or datetime.now(UTC)).astimezone(UTC)
    else:
        try:
            end = parse_time(window_end)
        except DataError as exc:
            raise InvalidParameterError(
                "window_end", window_end, "an ISO-8601 time such as 2026-12-04T10:00:00Z, or empty for now",
                "Leave it empty in a recurring run: each run then checks the hours before it.",
            ) from exc  # fmt: skip
    return end - timedelta(hours=window_hours), end


PRODUCTION_SOURCES = ("registry", "service")  # resolve_production's sources that follow production


def _check_location(records_uri: str, model_version: str, client: Any, named: bool = True) -> None:
    """An empty window: a typo in ``records_uri`` or ``model_version`` is an error, not "not enough data".

    ``named``: ``model_version`` was named by hand. A version that production names (the
    registry's alias or the service's ``/metadata``) and that has no record yet was deployed
    and not asked anything since: that is "not enough data", not a typo.

    Raises:
        planets_mlops.errors.NotFoundError: nothing under ``records_uri``, or no record of a
            hand-named ``model_version`` there in any hour.
    """
    from planets_mlops.errors import NotFoundError
    from planets_mlops.monitoring.records import recorded_versions, version_segment

    versions = recorded_versions(records_uri, client)
    segment = version_segment(model_version)
    if segment not in versions and not named:
        log.warning(
            "no record of production's version %r under %s yet (records of: %s): deployed and "
            "not asked anything since, or not writing its records",
            model_version, records_uri, ", ".join(versions[:10]),
        )  # fmt: skip
    elif segment not in versions:
        shown = ", ".join(versions[:10]) + (f" and {len(versions) - 10} more" if len(versions) > 10 else "")
        raise NotFoundError(
            f"No prediction record of model_version={model_version!r} (folder {segment!r}) under "
            f"records_uri={records_uri!r}, in any hour; it holds records of: {shown}. Check the "
            "version (the tag the service reports at /metadata). A version deployed only now has "
            "answered no request yet: run the check again once it has traffic."
        )


def check_window(
    records_uri: str,
    model_dir: Path,
    model_version: str,
    window_end: str = "",
    params: DriftParams | None = None,
    report_path: Path | None = None,
    client: Any = None,
    workspace: str = "",
    version_source: str = "",
) -> DriftResult:
    """Read the window of ``model_version``'s records and compare it with the model's reference.

    Args:
        records_uri: Root of the prediction records (a folder or ``gs://BUCKET/PREFIX``).
        model_dir: The model folder holding ``monitoring_reference.json``.
        model_version: The model tag the service writes its records under.
        window_end: End of the window (ISO-8601); empty: now.
        params: The decision's knobs.
        report_path: Where to write the Evidently report (HTML).
        client: A storage client for ``gs://`` roots (default: the project's).
        workspace: An Evidently workspace to add the report to (see :func:`add_to_workspace`).
        version_source: Where ``model_version`` came from (``resolve_production``'s source):
            ``registry`` or ``service`` (production now), else named by hand.

    Raises:
        planets_mlops.errors.NotFoundError: the model folder holds no reference profile; or
            the window is empty and ``records_uri`` holds no record at all, or none of a
            hand-named ``model_version`` in any hour (a typo in either is an error, not "not
            enough data"; production's new version with no record yet is "not enough data").
    """
    from planets_mlops.monitoring.records import read_window
    from planets_mlops.monitoring.reference import load_reference

    params = params or DriftParams()
    reference = load_reference(Path(model_dir))
    start, end = window_bounds(window_end, params.window_hours)
    window = read_window(records_uri, model_version, start, end, params.max_records, client)
    if window.seen <= 0 and not window.objects:
        _check_location(records_uri, model_version, client, named=version_source not in PRODUCTION_SOURCES)
    info = WindowInfo(
        model_version=model_version,
        start=start.isoformat(timespec="seconds"),
        end=end.isoformat(timespec="seconds"),
        objects=window.objects,
        skipped=dict(window.skipped),
        truncated=window.truncated,
        seen=window.seen,
    )
    if window.skipped:
        log.warning("skipped while reading the window: %s", window.skipped)
    return detect_drift(reference, window, params, report_path, info, workspace)


def check_model_window(
    records_uri: str,
    model_uri: str,
    model_version: str,
    window_end: str = "",
    params: DriftParams | None = None,
    report_path: Path | None = None,
    workspace: str = "",
    version_source: str = "",
) -> DriftResult:
    """What the ``detect_drift`` component calls: :func:`check_window` on the model at ``model_uri``.

    Args:
        records_uri: Root of the prediction records (a folder or ``gs://BUCKET/PREFIX``).
        model_uri: The served model's folder (``gs://`` or local); only the files the drift
            check reads are downloaded.
        model_version: The model tag the service writes its records under.
        window_end: End of the window (ISO-8601); empty: now.
        params: The decision's knobs.
        report_path: Where to write the Evidently report (HTML).
        workspace: An Evidently workspace to add the report to (see :func:`add_to_workspace`).
        version_source: Where ``model_version`` came from (see :func:`check_window`).

    Returns:
        The verdict and its evidence; :meth:`DriftResult.provenance` labels the artifacts.

    Raises:
        planets_mlops.errors.NotFoundError: see :func:`check_window`.
        planets_mlops.errors.DataError: ``model_uri`` holds no model folder with the drift
            check's files.
    """
    from planets_mlops.storage_paths import DRIFT_FILES, resolve_model_dir

    model_dir = resolve_model_dir(model_uri, DRIFT_FILES, param="model_uri")
    return check_window(
        records_uri,
        model_dir,
        model_version,
        window_end,
        params,
        report_path,
        workspace=workspace,
        version_source=version_source,
    )
