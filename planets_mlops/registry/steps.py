"""What the ``register_model`` and ``promote_model`` components do, on plain values.

Registration: the task's nested MLflow run gets the parameters, the Metrics artifact's
values under the same names, the per-epoch history, the confusion matrix, the reports and
the model folder; the folder becomes a version with its lineage as tags and the
``candidate`` alias. Promotion: the version gets its bento, ``production`` moves to it by
compare-and-set against the version the gate compared with, and the release record is
stored. Either fails before anything is written when the server is unreachable (unless
``allow_untracked``), and a failure half-way removes what it made.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planets_mlops import __version__, metric_names
from planets_mlops.errors import PromotionConflictError
from planets_mlops.knobs import RegistryParams
from planets_mlops.registry import registry as reg
from planets_mlops.registry import release as rel
from planets_mlops.registry import tracking
from planets_mlops.registry.settings import connect

log = logging.getLogger(__name__)

GATE_KEYS = metric_names.REGISTERED
VAL_ACCURACY_TAG = f"planets.{metric_names.VAL_ACCURACY}"
"""The version's tag with its validation accuracy (``models list`` shows it)."""


def git_commit() -> str:
    """The code's git commit: ``PLANETS_GIT_COMMIT``, else the checkout's HEAD, else ""."""
    pinned = os.environ.get("PLANETS_GIT_COMMIT", "").strip()
    if pinned:
        return pinned
    from planets_mlops.datarepo import git

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return ""
    try:
        return git(root, "rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return ""


def normalize_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Pipeline parameters with their knob's type again (KFP passes a dict's numbers as floats/strings).

    ``train_epochs`` arrives as ``"10.0"`` or ``10.0``; the knob's default (an int) says it
    is ``10``. Keys without a knob keep their value.
    """
    from planets_mlops.knobs import PIPELINE_KNOBS, defaults

    out: dict[str, Any] = {}
    for key, value in params.items():
        knob = PIPELINE_KNOBS.get(key)
        default = defaults(knob[0])[knob[1]] if knob else None
        try:
            if isinstance(default, bool):
                out[key] = value if isinstance(value, bool) else str(value).lower() in ("true", "1", "1.0")
            elif isinstance(default, int):
                out[key] = int(float(value))
            elif isinstance(default, float):
                out[key] = float(value)
            else:
                out[key] = value
        except (TypeError, ValueError):
            out[key] = value
    return out


def verdict_headline(path: str | Path) -> str:
    """The first line of the gate's verdict Markdown (the reason a move records)."""
    try:
        lines = [line.strip("# ").strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    except OSError:
        lines = []
    return next((line for line in lines if line), "gate: promote")[:500]


def confusion_from_metadata(metadata: Mapping[str, Any]) -> tuple[list[str], list[list[int]]]:
    """Classes and matrix from a KFP ``ClassificationMetrics`` artifact's metadata."""
    matrix = metadata.get("confusionMatrix", {}) or {}
    classes = [str(spec.get("displayName", "")) for spec in matrix.get("annotationSpecs", [])]
    rows = [[int(v) for v in row.get("row", [])] for row in matrix.get("rows", [])]
    return classes, rows


GATE_FILE = "evaluation/gate.json"
"""The gate's numbers in a registration's MLflow run (the pull request's report reads them)."""


def gate_record(verdict: Mapping[str, Any], promote: bool) -> dict[str, Any]:
    """What :data:`GATE_FILE` holds: the decision, the production compared with, every number."""
    gate = dict(verdict.get("gate") or {})
    return {
        **gate,
        "promote": bool(promote),
        "production_version": str(verdict.get("production_version", "") or ""),
        "production_source": str(verdict.get("production_source", "") or ""),
    }


@dataclass(frozen=True)
class Registration:
    """A registered version (or why there is none).

    Attributes:
        model_name: Registered model.
        version: The version made ("" when untracked).
        run: Its MLflow run (None when untracked).
        lineage: The lineage tags set on the version (``planets.`` prefix dropped).
        gate: The gate's figures (recorded again with the promotion).
        note: Why nothing was registered, when nothing was.
    """

    model_name: str
    version: str = ""
    run: tracking.RunRef | None = None
    lineage: dict[str, str] = field(default_factory=dict)
    gate: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def metadata(self) -> dict[str, Any]:
        """Metadata of the ``registered`` artifact."""
        return {
            "registered_model_name": self.model_name,
            "version": self.version,
            **(self.run.metadata() if self.run else {}),
            "lineage": self.lineage,
            "gate": self.gate,
            "note": self.note,
        }


def register_trained_model(
    params: RegistryParams,
    *,
    kfp_run_id: str,
    task_name: str,
    pipeline: str,
    run_params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    confusion: Mapping[str, Any],
    model_dir: Path,
    files: Mapping[str, Path],
    source: Mapping[str, Any],
    prepared: Mapping[str, Any],
    promote: bool,
    images: Mapping[str, str],
    code_revision: str,
    verdict: Mapping[str, Any] | None = None,
) -> Registration:
    """Log the run and register the model of one training/retraining run.

    Args:
        params: Registry knobs (``tracking`` must be on for anything to happen).
        kfp_run_id: The KFP run id.
        task_name: This task's name (``kfp.task_name`` of its nested run).
        pipeline: ``training`` or ``retraining``.
        run_params: The run's parameters (pipeline inputs).
        metrics: The evaluate step's Metrics values.
        confusion: The evaluate step's ClassificationMetrics metadata.
        model_dir: The trained model folder.
        files: Reports to log, by artifact path.
        source: Metadata of the data set that was prepared (pull or label import).
        prepared: Metadata of the prepared data set (content hash, commits).
        promote: The gate's verdict.
        images: Image references by name.
        code_revision: The image tag of this code (``<version>-<source digest>``).
        verdict: The verdict artifact's metadata: ``gate`` (every number of the gate),
            ``production_version`` (what production named when the gate compared). Logged
            as ``evaluation/gate.json``; the version is tagged with that production version,
            which a promotion at merge time expects to find still there.

    Returns:
        The registration; empty when tracking is off or skipped under ``allow_untracked``.

    Raises:
        TrackingError: the server is unreachable (and ``allow_untracked`` is off).
    """
    if not params.tracking:
        return Registration(params.model_name, note="tracking is off")
    client = connect(params, step="register_model")
    if client is None:
        return Registration(params.model_name, note="tracking server unreachable; allow_untracked=True")
    commit = git_commit()
    line = {
        "data_repo_url": str(source.get("repo_url", "")),
        "data_path": str(source.get("data_path", "")),
        "data_commit": str(prepared.get("source_commit", source.get("commit", ""))),
        "data_dvc_hash": str(prepared.get("source_dvc_hash", source.get("dvc_hash", ""))),
        "data_content_hash": str(prepared.get("data_content_hash", "")),
        "data_base_commit": str(prepared.get("source_base_commit", "")),
        "code_revision": code_revision,
        "git_commit": commit,
        "package_version": __version__,
        "pipeline": pipeline,
        "pipeline_version": f"{__version__}-{commit[:7]}" if commit else "",
        "kfp_run_id": kfp_run_id,
        "gate_production_version": str((verdict or {}).get("production_version", "") or ""),
        "images": json.dumps(dict(images), sort_keys=True),
    }
    if source.get("label_studio_project"):
        line["label_studio_project"] = (
            f"{source.get('label_studio_project')} (id {source.get('label_studio_project_id', '?')})"
        )
        line["label_studio_export"] = (
            f"{source.get('accepted', source.get('new_labels', '?'))} labels accepted, "
            f"{source.get('new_labels', '?')} new; merged content {line['data_content_hash'] or '?'}"
        )
    line = {k: v for k, v in line.items() if v}
    gate = {k: float(metrics[k]) for k in GATE_KEYS if isinstance(metrics.get(k), (int, float))}
    gate["promote"] = float(bool(promote))
    run_tags = {
        tracking.TAG_PIPELINE: pipeline,
        tracking.TAG_PIPELINE_VERSION: line.get("pipeline_version", __version__),
        "planets.code_revision": code_revision,
        **{f"planets.image.{name}": ref for name, ref in images.items()},
    }
    run = tracking.task_run(client, params.experiment, kfp_run_id, task_name, run_tags)
    try:
        classes, matrix = confusion_from_metadata(confusion)
        from planets_mlops.model_folder import read_history

        history = read_history(model_dir)
        tracking.log_training(
            client,
            run,
            params=normalize_params(run_params),
            metrics=metrics,
            history=history,
            classes=classes,
            confusion_matrix=matrix,
            files=files,
            model_dir=Path(model_dir),
        )
        if verdict:
            client.log_dict(run.run_id, gate_record(verdict, promote), GATE_FILE)
        version = reg.register_version(
            client,
            params.model_name,
            run.run_id,
            {f"planets.{k}": v for k, v in line.items()}
            | {"planets.gate_promote": str(bool(promote))}
            | (
                {VAL_ACCURACY_TAG: f"{gate[metric_names.VAL_ACCURACY]:.4f}"}
                if metric_names.VAL_ACCURACY in gate
                else {}
            ),
            description=(
                f"{pipeline} run {kfp_run_id}: {metric_names.VAL_ACCURACY} "
                f"{gate.get(metric_names.VAL_ACCURACY, float('nan')):.4f}"
            ),
        )
        client.update_run(run.run_id, status="FINISHED")
    except BaseException:
        client.update_run(run.run_id, status="FAILED")
        raise
    return Registration(params.model_name, version, run, line, gate)


@dataclass(frozen=True)
class Promotion:
    """The outcome of a promotion.

    Attributes:
        moved: True when ``production`` now names the version.
        version: The version (or "" when nothing was registered).
        record: The release record (empty when nothing moved).
        markdown: What the KFP UI shows: the record, or why nothing moved.
    """

    moved: bool
    version: str
    record: dict[str, Any]
    markdown: str

    def metadata(self) -> dict[str, Any]:
        """Metadata of the ``release`` artifact."""
        return {"moved": self.moved, "version": self.version, "release": self.record.get("release", 0)}

    def production(self) -> str:
        """The version production now names: ``untracked`` when nothing is tracked, empty when refused."""
        if not self.moved:
            return ""
        return self.version or "untracked"


def promote_registered(
    params: RegistryParams,
    *,
    registered: Mapping[str, Any],
    expected_version: str,
    why: str,
    bento_tag: str,
    bento_uri: str,
    kfp_run_id: str,
    move_production: bool = True,
    model_tag: str = "",
    model_uri: str = "",
) -> Promotion:
    """Move ``production`` to the registered version if it still names ``expected_version``.

    Args:
        params: Registry knobs.
        registered: Metadata of ``register_model``'s output (:meth:`Registration.metadata`).
        expected_version: The version production named when the gate compared ("" = none).
        why: The reason recorded with the move (the gate's verdict).
        bento_tag: The packaged bento of the version (a lineage tag from now on).
        bento_uri: Where that bento archive is.
        kfp_run_id: The KFP run promoting.
        move_production: Off: record the bento on the version and move nothing (the version waits for
            review; ``moved`` is False).
        model_tag: The bento's model tag: the service writes its prediction records under it,
            so monitoring finds production's records through it.
        model_uri: The model folder (with the reference profile monitoring compares with).

    Returns:
        The promotion; ``moved`` False with the refusal in ``markdown`` when another
        promotion won.

    Raises:
        TrackingError: the server is unreachable (and ``allow_untracked`` is off).
    """
    version = str(registered.get("version", "") or "")
    if not params.tracking or not version:
        note = registered.get("note") or "tracking is off"
        return Promotion(
            True,
            "",
            {},
            f"# Promotion: not recorded\n\nNothing registered ({note}): the gate's verdict alone decides.\n",
        )
    client = connect(params, step="promote_model")
    if client is None:
        return Promotion(
            True,
            version,
            {},
            "# Promotion: not recorded\n\nTracking server unreachable; allow_untracked=True.\n",
        )
    name = params.model_name
    client.set_model_version_tag(name, version, "planets.bento_tag", bento_tag)
    client.set_model_version_tag(name, version, "planets.bento_uri", bento_uri)
    for key, value in (("planets.model_tag", model_tag), ("planets.model_uri", model_uri)):
        if value:
            client.set_model_version_tag(name, version, key, value)
    if not move_production:
        return Promotion(
            False,
            version,
            {},
            f"# Promotion: held for review\n\nRelease is off for this run: version {version} of {name} "
            f"keeps the {reg.CANDIDATE} alias with its bento {bento_tag}; production does not move. "
            "Merging the reviewed change promotes it (`planets-mlops ci promote`).\n",
        )
    try:
        move = reg.move_alias(
            client,
            name,
            reg.PRODUCTION,
            version,
            expected=expected_version or None,
            why=why,
            by=f"kfp run {kfp_run_id}" if kfp_run_id else "",
            kfp_run_id=kfp_run_id,
            gate=registered.get("gate") or {},
            lock=reg.LockSettings(ttl_s=params.lock_ttl_s, wait_s=params.lock_wait_s),
        )
    except PromotionConflictError as exc:
        log.error("Promotion of %s version %s refused: %s", name, version, exc)
        return Promotion(False, version, {}, f"# Promotion refused\n\n{exc}\n")
    info = reg.version_info(client, name, version)
    run_params = dict(client.get_run(info["run_id"]).data.params) if info["run_id"] else {}
    record = rel.release_record(move, info, run_params)
    rel.store_record(client, record)
    return Promotion(True, version, record, rel.to_markdown(record))


def promote_model(
    params: RegistryParams,
    *,
    registered: Mapping[str, Any],
    verdict: Mapping[str, Any],
    verdict_path: str | Path,
    bento: Mapping[str, Any],
    bento_uri: str,
    kfp_run_id: str,
    move_production: bool = True,
) -> Promotion:
    """What the ``promote_model`` component calls: :func:`promote_registered` from its artifacts.

    Args:
        params: Registry knobs.
        registered: Metadata of ``register_model``'s output (:meth:`Registration.metadata`).
        verdict: Metadata of the gate's verdict: ``production_version`` is the version
            production named when the gate compared (the move expects to still find it).
        verdict_path: The gate's verdict Markdown; its headline is the reason the move records.
        bento: Metadata of the packaged bento: ``bento_tag``, ``model_tag``, ``model_uri``.
        bento_uri: Where that bento archive is.
        kfp_run_id: The KFP run promoting.
        move_production: Off: record the bento on the version and move nothing.

    Returns:
        The promotion (:meth:`Promotion.production` is the component's output).
    """
    return promote_registered(
        params,
        registered=registered,
        expected_version=str(verdict.get("production_version", "") or ""),
        why=verdict_headline(verdict_path),
        bento_tag=str(bento.get("bento_tag", "")),
        bento_uri=bento_uri,
        kfp_run_id=kfp_run_id,
        move_production=move_production,
        model_tag=str(bento.get("model_tag", "")),
        model_uri=str(bento.get("model_uri", "")),
    )
