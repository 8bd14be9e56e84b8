"""The review artifact of a pull request: one training run's candidate against production.

:func:`collect` reads what a training or retraining run left in the MLflow registry (the
version it registered, the gate's numbers in ``evaluation/gate.json``, the confusion matrix,
the lineage tags, and the production version it was compared with); :func:`to_markdown`
writes it as the pull request's comment and :func:`to_dvc_tables` as ``dvc metrics diff``-
style tables for teams coming from the reference experiment's DVC + CML workflow.

Rendering is pure (a :class:`Review` in, Markdown out), so the comment has golden tests.
The confusion matrix is a Markdown table: no image host is needed.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planets_mlops import metric_names
from planets_mlops.errors import DataError, InvalidParameterError, NotFoundError
from planets_mlops.registry import steps

MARKER = "<!-- planets-mlops:model-gate -->"
"""First line of the sticky comment: the workflow finds and updates the comment carrying it."""

FORMATS = ("github", "gitlab", "markdown")
GATE_FILE = steps.GATE_FILE
CONFUSION_FILE = "evaluation/confusion_matrix.json"  # what tracking.log_training writes
MAX_ARTIFACT_BYTES = 4 * 1024 * 1024
"""Largest gate or confusion JSON read back (a 1000-class matrix is well under 1 MB)."""

# Metrics compared side by side (the evaluate step's names), in table order.
COMPARED_METRICS = (
    metric_names.VAL_ACCURACY,
    metric_names.VAL_LOSS,
    metric_names.F1_MACRO,
    metric_names.PRECISION_MACRO,
    metric_names.RECALL_MACRO,
    metric_names.GUARD_COVERAGE,
    metric_names.GUARD_UNSEEN_REJECTED,
)
# Parameters shown in the dvc-style params diff: the recipe, not the plumbing.
RECIPE_PREFIXES = ("prepare_", "train_", "data_rev", "data_path", "min_improvement", "gate_alpha")


@dataclass(frozen=True)
class Review:
    """Everything the comment shows, as plain values.

    Attributes:
        kfp_run_id: The KFP run that trained the candidate.
        model: The registered model.
        version: The version that run registered.
        pipeline: ``training`` or ``retraining``.
        gate: The gate's record (:func:`planets_mlops.registry.steps.gate_record`):
            ``promote``, ``reasons``, ``overall``, ``per_class``, ``new_classes``,
            ``forgotten_classes``, ``confidence``, ``alpha``, ``production_version``.
        metrics: The candidate run's metrics.
        production_metrics: The metrics of the production version's run ({} when none).
        params: The candidate run's parameters.
        production_params: The production version's run parameters ({} when none).
        classes: Class names, the confusion matrix's order.
        matrix: Confusion counts, rows true classes, columns predicted ones.
        lineage: The version's lineage tags (``planets.`` dropped): data commit, DVC hash...
        kfp_run_url: Link to the run in the KFP UI ("" when the UI address is not known).
        mlflow_run_url: Link to the candidate's MLflow run.
    """

    kfp_run_id: str
    model: str
    version: str
    pipeline: str
    gate: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    production_metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    production_params: dict[str, str] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    matrix: list[list[int]] = field(default_factory=list)
    lineage: dict[str, str] = field(default_factory=dict)
    kfp_run_url: str = ""
    mlflow_run_url: str = ""

    @property
    def promote(self) -> bool:
        """The gate's decision."""
        return bool(self.gate.get("promote", False))

    @property
    def production_version(self) -> str:
        """The production version the gate compared with ("" when there was none)."""
        return str(self.gate.get("production_version", "") or "")


# ----------------------------------------------------------------------------- formatting


def _cell(value: Any) -> str:
    """A Markdown table cell: pipes and line breaks cannot break the table."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _code(value: Any) -> str:
    text = _cell(value).replace("`", "'")
    return f"`{text}`" if text else "-"


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def _signed(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}"


def _p(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{value:.4g}"


def _interval(stats: Mapping[str, Any]) -> str:
    low, high = (list(stats.get("interval") or []) + [None, None])[:2]
    if low is None or high is None:
        return "-"
    return f"[{_signed(low)}, {_signed(high)}]"


def _pct(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{value:.1%}".replace("%", " %")


def _table(header: Sequence[str], align: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _folded(summary: str, body: list[str], flavor: str) -> list[str]:
    """A section that GitHub and GitLab fold (``<details>``); plain Markdown shows it as is."""
    if flavor == "markdown":
        return [f"**{summary}**", "", *body]
    return ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>"]


def headline(review: Review) -> str:
    """One line: the decision and the version (the job summary's and the check's title)."""
    decision = "PROMOTE" if review.promote else "KEEP PRODUCTION"
    against = f"production v{review.production_version}" if review.production_version else "no production"
    return f"Model gate: {decision} ({review.model} v{review.version} against {against})"


def _verdict_block(review: Review, flavor: str) -> list[str]:
    reasons = [str(r) for r in review.gate.get("reasons", [])]
    title = (
        "**PROMOTE**: the merge ships this version"
        if review.promote
        else ("**KEEP PRODUCTION**: the gate refuses this candidate")
    )
    if flavor == "github":
        kind = "TIP" if review.promote else "CAUTION"
        return [f"> [!{kind}]", f"> {title}", *(f"> - {_cell(r)}" for r in reasons)]
    return [f"> {title}", ">", *(f"> - {_cell(r)}" for r in reasons)]


def _comparison(review: Review) -> list[str]:
    overall = review.gate.get("overall")
    pct = round(float(review.gate.get("confidence", 0.95)) * 100)
    if not overall:
        return [
            f"No production model to compare with: candidate {metric_names.VAL_ACCURACY} "
            f"{_num(review.metrics.get(metric_names.VAL_ACCURACY))} "
            "on the validation split.",
        ]
    shared = review.gate.get("shared_classes") or []
    lines = [
        f"Candidate **v{review.version}** against production **v{review.production_version or '?'}**, "
        f"paired on {overall.get('images', '?')} validation images of the {len(shared)} classes both know.",
        "",
        *_table(
            (
                "",
                "production",
                "candidate",
                "delta",
                f"{pct} % paired interval",
                "wins",
                "losses",
                "McNemar p",
            ),
            ("---", "---:", "---:", "---:", "---", "---:", "---:", "---:"),
            [
                (
                    "accuracy",
                    _num(overall.get(metric_names.STATS_PRODUCTION)),
                    _num(overall.get(metric_names.STATS_CANDIDATE)),
                    _signed(overall.get(metric_names.STATS_DELTA)),
                    _interval(overall),
                    str(overall.get("wins", "-")),
                    str(overall.get("losses", "-")),
                    _p(overall.get("p_value")),
                )
            ],
        ),
    ]
    return lines


def _per_class(review: Review) -> list[str]:
    per_class = review.gate.get("per_class") or {}
    if not per_class:
        return []
    pct = round(float(review.gate.get("confidence", 0.95)) * 100)
    rows = []
    for name, stats in per_class.items():
        rows.append(
            (
                _cell(name),
                str(stats.get("images", "-")),
                _num(stats.get(metric_names.STATS_PRODUCTION)),
                _num(stats.get(metric_names.STATS_CANDIDATE)),
                _signed(stats.get(metric_names.STATS_DELTA)),
                _interval(stats),
                _p(stats.get("p_value")),
                "**worse**" if stats.get("worse") else "",
            )
        )
    return _table(
        ("class", "images", "production", "candidate", "delta", f"{pct} % interval", "McNemar p", "flag"),
        ("---", "---:", "---:", "---:", "---:", "---", "---:", "---"),
        rows,
    )


def _new_classes(review: Review) -> list[str]:
    new = review.gate.get("new_classes") or []
    forgotten = review.gate.get("forgotten_classes") or []
    lines: list[str] = []
    if new:
        lines += _table(
            ("new class", "images", "candidate recall"),
            ("---", "---:", "---:"),
            [(_cell(n.get("name", "")), str(n.get("images", "-")), _num(n.get("recall"))) for n in new],
        )
    else:
        lines.append("New classes: none.")
    if forgotten:
        lines += ["", f"Production classes the candidate lacks: {', '.join(_cell(c) for c in forgotten)}."]
    return lines


def _guard(review: Review) -> str:
    coverage = review.metrics.get(metric_names.GUARD_COVERAGE)
    if coverage is None:
        return "Open-set guard: none in this model folder."
    text = (
        f"Open-set guard: recognises {_pct(coverage)} of the validation images (threshold "
        f"{_num(review.metrics.get(metric_names.GUARD_THRESHOLD))}"
    )
    target = review.params.get("train_guard_coverage")
    text += f", target coverage {target})" if target else ")"
    if metric_names.GUARD_UNSEEN_REJECTED in review.metrics:
        text += (
            f"; rejects {_pct(review.metrics[metric_names.GUARD_UNSEEN_REJECTED])} of the unseen-class images"
        )
    production = review.production_metrics.get(metric_names.GUARD_COVERAGE)
    if production is not None:
        text += f". Production's guard: {_pct(production)}"
    return text + "."


def confusion_table(classes: Sequence[str], matrix: Sequence[Sequence[int]]) -> list[str]:
    """The confusion matrix as a Markdown table: rows true classes, columns predicted, diagonal bold."""
    if not classes or not matrix:
        return ["No confusion matrix was logged."]
    rows = []
    for i, (name, row) in enumerate(zip(classes, matrix)):
        cells = [f"**{v}**" if i == j else (str(v) if v else "·") for j, v in enumerate(row)]
        rows.append((f"**{_cell(name)}**", *cells, str(sum(row))))
    return _table(
        ("true \\ predicted", *(_cell(c) for c in classes), "images"),
        ("---", *(["---:"] * len(classes)), "---:"),
        rows,
    )


def _lineage(review: Review) -> list[str]:
    line = review.lineage
    data = _code(line.get("data_repo_url", ""))
    if line.get("data_path"):
        data += f" path {_code(line['data_path'])}"
    rows = [
        ("data revision", f"{_code(line.get('data_commit', ''))} of {data}"),
        ("DVC hash", _code(line.get("data_dvc_hash", ""))),
        ("content hash", _code(line.get("data_content_hash", ""))),
        ("reviewed commit", _code(line.get("ci.commit", line.get("git_commit", "")))),
        ("pipeline", f"{_code(review.pipeline)} version {_code(line.get('ci.pipeline_version', ''))}"),
        ("images", _code(line.get("code_revision", ""))),
        ("bento", _code(line.get("bento_tag", ""))),
    ]
    return _table(("lineage", ""), ("---", "---"), rows)


def _links(review: Review) -> str:
    kfp = (
        f"[KFP run `{review.kfp_run_id}`]({review.kfp_run_url})"
        if review.kfp_run_url
        else (f"KFP run `{review.kfp_run_id}`")
    )
    mlflow = f"[MLflow run]({review.mlflow_run_url})" if review.mlflow_run_url else "MLflow run"
    return f"{kfp} · {mlflow} · registered as `{review.model}` version {review.version}"


def to_markdown(review: Review, flavor: str = "github") -> str:
    """The pull request's comment (and job summary).

    Args:
        review: What to show.
        flavor: ``github`` (alerts, folded sections, the sticky marker), ``gitlab`` (folded
            sections, the marker) or ``markdown`` (plain CommonMark, nothing folded).

    Returns:
        A Markdown document ending in a newline.

    Raises:
        InvalidParameterError: an unknown flavor.
    """
    if flavor not in FORMATS:
        raise InvalidParameterError("--format", flavor, f"one of {', '.join(FORMATS)}")
    lines = [MARKER] if flavor != "markdown" else []
    lines += [
        f"## {headline(review)}",
        "",
        *_verdict_block(review, flavor),
        "",
        *_comparison(review),
        "",
    ]
    per_class = _per_class(review)
    if per_class:
        lines += [*_folded("Per class: delta, paired interval, McNemar p", per_class, flavor), ""]
    lines += [*_new_classes(review), "", _guard(review), ""]
    lines += [
        *_folded(
            "Confusion matrix (candidate, validation images)",
            confusion_table(review.classes, review.matrix),
            flavor,
        ),
        "",
    ]
    lines += [*_lineage(review), "", _links(review)]
    return "\n".join(lines) + "\n"


def to_dvc_tables(review: Review) -> str:
    """The report as ``dvc metrics diff --md`` and ``dvc params diff --md`` tables.

    Production (the version the gate compared with) stands where DVC puts ``HEAD``, the
    candidate where it puts ``workspace``; the gate's decision follows the tables.
    """
    base = f"production v{review.production_version}" if review.production_version else "production (none)"
    head = f"candidate v{review.version}"
    metric_rows = []
    for name in COMPARED_METRICS:
        new, old = review.metrics.get(name), review.production_metrics.get(name)
        if new is None and old is None:
            continue
        change = _signed(new - old) if new is not None and old is not None else "-"
        metric_rows.append(("evaluation", name, _num(old), _num(new), change))
    param_rows = []
    for name in sorted(set(review.params) | set(review.production_params)):
        if not name.startswith(RECIPE_PREFIXES):
            continue
        new_p, old_p = review.params.get(name, "-"), review.production_params.get(name, "-")
        if new_p != old_p:
            param_rows.append(("params", _cell(name), _cell(old_p), _cell(new_p)))
    lines = _table(("Path", "Metric", base, head, "Change"), ("---", "---", "---", "---", "---"), metric_rows)
    lines += [""]
    if param_rows:
        lines += _table(("Path", "Param", base, head), ("---", "---", "---", "---"), param_rows)
    else:
        lines.append("No recipe parameter changed.")
    lines += [
        "",
        f"{headline(review)}; data {_code(review.lineage.get('data_commit', ''))}, "
        f"DVC hash {_code(review.lineage.get('data_dvc_hash', ''))}.",
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- reading MLflow


def _read_json_artifact(client: Any, run_id: str, path: str) -> Any:
    with tempfile.TemporaryDirectory(prefix="review-") as tmp:
        try:
            local = Path(client.download_artifacts(run_id, path, tmp))
        except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing file
            raise NotFoundError(
                f"MLflow run {run_id} has no {path}: it was not registered by this suite's register_model "
                "(or by a version before the review report). Rerun the pipeline."
            ) from exc
        size = local.stat().st_size
        if size > MAX_ARTIFACT_BYTES:
            raise DataError(f"{path} of MLflow run {run_id} is {size} bytes, over {MAX_ARTIFACT_BYTES}.")
        try:
            return json.loads(local.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DataError(f"{path} of MLflow run {run_id} is not JSON: {exc}") from exc


def version_of_run(client: Any, model: str, kfp_run_id: str) -> dict[str, Any]:
    """The version of ``model`` that KFP run ``kfp_run_id`` registered (its lineage tag).

    Raises:
        NotFoundError: no version names that run.
    """
    from planets_mlops.registry.registry import list_versions

    found = [v for v in list_versions(client, model) if v["tags"].get("planets.kfp_run_id") == kfp_run_id]
    if not found:
        raise NotFoundError(
            f"No version of {model!r} was registered by KFP run {kfp_run_id!r}. A run registers one only "
            "with tracking=True and once its register-model step ran: see `planets-mlops status --run-id "
            f"{kfp_run_id}`."
        )
    return found[0]


def _run_values(client: Any, run_id: str | None) -> tuple[dict[str, float], dict[str, str], str]:
    if not run_id:
        return {}, {}, ""
    run = client.get_run(run_id)
    # A version registered before one name per quantity carries the old names (val_acc...).
    return metric_names.current(run.data.metrics), dict(run.data.params), str(run.info.experiment_id)


def collect(client: Any, model: str, kfp_run_id: str, tracking_uri: str = "", kfp_ui: str = "") -> Review:
    """The :class:`Review` of KFP run ``kfp_run_id`` from the registry.

    Args:
        client: An ``MlflowClient``.
        model: The registered model.
        kfp_run_id: The KFP run (``planets-mlops run`` prints it as ``run_id=``).
        tracking_uri: The MLflow server's address, for the run link.
        kfp_ui: The KFP UI's address, for the run link ("" for no link).

    Raises:
        NotFoundError: the run registered no version, or its gate record is missing.
        DataError: a gate or confusion record that is not JSON or too large.
    """
    from planets_mlops.registry.registry import version_info
    from planets_mlops.registry.release import lineage

    info = version_of_run(client, model, kfp_run_id)
    metrics, params, experiment = _run_values(client, info["run_id"])
    gate = _read_json_artifact(client, info["run_id"], GATE_FILE)
    confusion = _read_json_artifact(client, info["run_id"], CONFUSION_FILE)
    if not isinstance(gate, dict) or not isinstance(confusion, dict):
        raise DataError(f"The gate or confusion record of MLflow run {info['run_id']} is not a JSON object.")
    gate = metric_names.current_gate_record(gate)
    production_metrics: dict[str, float] = {}
    production_params: dict[str, str] = {}
    production = str(gate.get("production_version", "") or "")
    if production:
        try:
            production_run = version_info(client, model, production)["run_id"]
        except NotFoundError:
            production_run = None
        production_metrics, production_params, _ = _run_values(client, production_run)
    tags = info["tags"]
    line = lineage(tags)
    line.update({k.removeprefix("planets."): v for k, v in tags.items() if k.startswith("planets.ci.")})
    mlflow_url = (
        f"{tracking_uri.rstrip('/')}/#/experiments/{experiment}/runs/{info['run_id']}" if tracking_uri else ""
    )
    return Review(
        kfp_run_id=kfp_run_id,
        model=model,
        version=info["version"],
        pipeline=tags.get("planets.pipeline", "training"),
        gate=gate,
        metrics=metrics,
        production_metrics=production_metrics,
        params=params,
        production_params=production_params,
        classes=[str(c) for c in confusion.get("classes", [])],
        matrix=[[int(v) for v in row] for row in confusion.get("matrix", [])],
        lineage=line,
        kfp_run_url=f"{kfp_ui.rstrip('/')}/#/runs/details/{kfp_run_id}" if kfp_ui else "",
        mlflow_run_url=mlflow_url,
    )
