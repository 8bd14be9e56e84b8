"""The release record of a promotion: what was promoted, from what, judged how, served where.

One record per alias move: JSON in the registry (an artifact of the version's run,
``releases/release-<sequence>.json``, named by the version tag ``planets.release``) and
Markdown for the KFP UI. Its ``reproduce`` field is the one command that trains the same
model again: the pipeline version whose images are pinned, at the data commit, with the
same parameters.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from planets_mlops import metric_names
from planets_mlops.registry.registry import Move

RELEASE_DIR = "releases"
# The version tags that carry lineage (see planets_mlops.components.register_model).
LINEAGE_TAGS = (
    "data_repo_url",
    "data_path",
    "data_commit",
    "data_dvc_hash",
    "data_content_hash",
    "data_base_commit",
    "code_revision",
    "git_commit",
    "package_version",
    "pipeline",
    "pipeline_version",
    "kfp_run_id",
    "images",
    "label_studio_project",
    "label_studio_export",
    "bento_tag",
    "bento_uri",
)


def lineage(tags: Mapping[str, str]) -> dict[str, str]:
    """The lineage part of a version's tags (``planets.<key>``), without the prefix."""
    return {key: tags[f"planets.{key}"] for key in LINEAGE_TAGS if f"planets.{key}" in tags}


def reproduce_command(line: Mapping[str, str], params: Mapping[str, Any]) -> str:
    """The command that trains this model again on Kubeflow, or a note why none can.

    Args:
        line: The version's lineage (:func:`lineage`).
        params: The run's parameters (prepare/train/gate), as recorded on the MLflow run.
    """
    commit = line.get("data_commit", "")
    if not commit:
        return (
            "not reproducible from git: the data was merged labels never published as a DVC version "
            f"(content hash {line.get('data_content_hash', '?')}); rerun with publish_labels=True"
        )
    pipeline = line.get("pipeline", "training")
    words = ["planets-mlops", "run", "training" if pipeline == "retraining" else pipeline]
    if line.get("pipeline_version"):
        words += ["--version", line["pipeline_version"]]
    words += [
        "--param",
        f"data_repo_url={line.get('data_repo_url', 'DATA_REPO_URL')}",
        "--param",
        f"data_rev={commit}",
    ]
    if line.get("data_path"):
        words += ["--param", f"data_path={line['data_path']}"]
    for key in sorted(params):
        if key.startswith(("prepare_", "train_")):
            words += ["--param", f"{key}={params[key]}"]
    return " ".join(shlex.quote(w) for w in words)


def release_record(
    move: Move,
    version: Mapping[str, Any],
    params: Mapping[str, Any],
    deployed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of one promotion.

    Args:
        move: The recorded alias move.
        version: :func:`planets_mlops.registry.registry.version_info` of the version moved to.
        params: The parameters of the version's run.
        deployed: The deploy step's endpoint metadata (revision, URL), once deployed.
    """
    line = lineage(version.get("tags", {}))
    images = line.pop("images", "")
    try:
        image_refs = json.loads(images) if images else {}
    except ValueError:
        image_refs = {"unreadable": images}
    return {
        "release": move.sequence,
        "model": move.record["model"],
        "alias": move.alias,
        "version": move.to_version,
        "from_version": move.from_version,
        "when": move.record["when"],
        "by": move.record["by"],
        "kfp_run_id": move.record.get("kfp_run_id", ""),
        "why": move.record["why"],
        "gate": metric_names.current(move.record.get("gate") or {}),
        "data": {k.removeprefix("data_"): v for k, v in line.items() if k.startswith("data_")},
        "code": {k: line[k] for k in ("code_revision", "git_commit", "package_version") if k in line},
        "pipeline": {k: line[k] for k in ("pipeline", "pipeline_version") if k in line},
        "images": image_refs,
        "bento": {k.removeprefix("bento_"): v for k, v in line.items() if k.startswith("bento_")},
        "labels": {
            k.removeprefix("label_studio_"): v for k, v in line.items() if k.startswith("label_studio_")
        },
        "mlflow_run_id": version.get("run_id", ""),
        "deployed": dict(deployed) if deployed else None,
        "reproduce": reproduce_command(line, params),
    }


def _value(value: Any) -> str:
    # Floats to 4 significant digits (a gate's p-value and accuracies come with 16).
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value) or "-"
    return str(value)


def _fields(title: str, fields: Mapping[str, Any]) -> str:
    shown = [f"  - {k}: `{_value(v)}`" for k, v in sorted(fields.items()) if v not in (None, "", {}, [])]
    return f"- {title}:\n" + "\n".join(shown) if shown else f"- {title}: none recorded"


def wrap_command(command: str) -> str:
    """``command`` one option per line, each line but the last ending in a backslash.

    The shell reads the result as the same command.
    """
    words = shlex.split(command)
    lines: list[str] = []
    for word in words:
        if word.startswith("--") or not lines:
            lines.append(shlex.quote(word))
        else:
            lines[-1] += " " + shlex.quote(word)
    return " \\\n    ".join(lines)


def to_markdown(record: Mapping[str, Any]) -> str:
    """The record as Markdown (the KFP UI renders a Markdown artifact): lists, rounded figures."""
    gate = record.get("gate") or {}
    rows = "\n".join(f"| {k} | {_value(v)} |" for k, v in sorted(gate.items())) or "| - | - |"
    images = "\n".join(f"- `{k}`: `{v}`" for k, v in sorted(record["images"].items())) or "- none recorded"
    deployed = record.get("deployed")
    served = (
        f"revision {deployed.get('revision')} at {deployed.get('endpoint_url')}"
        if deployed
        else "not deployed by this release"
    )
    moved = f"{record['from_version'] or 'none'} -> **{record['version']}**"
    reproduce = record["reproduce"]
    shown = wrap_command(reproduce) if reproduce.startswith("planets-mlops ") else reproduce
    return (
        f"# Release {record['release']} of {record['model']}: `{record['alias']}` {moved}\n\n"
        f"- when: {record['when']}, by {record['by']}"
        + (f", KFP run `{record['kfp_run_id']}`" if record.get("kfp_run_id") else "")
        + f"\n- why: {record['why']}\n"
        + _fields("data", record["data"])
        + "\n"
        + _fields("code", record["code"])
        + "\n"
        + _fields("bento", record["bento"])
        + "\n"
        + _fields("labels", record["labels"])
        + "\n"
        f"- MLflow run: `{record['mlflow_run_id']}`\n"
        f"- served: {served}\n\n"
        f"## Images\n\n{images}\n\n## Gate\n\n| figure | value |\n|---|---|\n{rows}\n\n"
        f"## Reproduce\n\n```bash\n{shown}\n```\n"
    )


def store_record(client: Any, record: Mapping[str, Any]) -> str:
    """Write the record as JSON to the registry; returns its artifact path.

    It goes to the run of the version (``releases/release-<n>.json``) and the version's tag
    ``planets.release`` names the latest one.
    """
    path = f"{RELEASE_DIR}/release-{int(record['release']):06d}.json"
    client.log_dict(record["mlflow_run_id"], dict(record), path)
    client.set_model_version_tag(record["model"], record["version"], "planets.release", path)
    return path


def load_record(client: Any, run_id: str, path: str) -> dict[str, Any]:
    """A stored release record."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="release-") as tmp:
        local = client.download_artifacts(run_id, path, tmp)
        return dict(json.loads(Path(local).read_text()))


def record_deployment(
    client: Any, model: str, version: str, endpoint: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Add what now serves to the latest release record of ``version``; returns the record.

    The version also gets the tag ``planets.deployed_revision``.
    """
    from planets_mlops.registry.registry import version_info

    info = version_info(client, model, version)
    client.set_model_version_tag(
        model, version, "planets.deployed_revision", str(endpoint.get("revision", ""))
    )
    path = info["tags"].get("planets.release")
    if not path:
        return None
    record = load_record(client, info["run_id"], path)
    record["deployed"] = dict(endpoint)
    client.log_dict(info["run_id"], record, path)
    return record


def record_deployment_safely(model: str, version: str, endpoint: Mapping[str, Any]) -> bool:
    """:func:`record_deployment` on the server of ``MLFLOW_TRACKING_URI``; errors are logged.

    The deploy has happened when this runs: a registry that is down must not turn a
    serving deployment into a failed step. Returns whether the record was updated.
    """
    import logging

    from planets_mlops.registry.settings import TrackingSettings

    try:
        record_deployment(TrackingSettings.from_env().client(), model, version, endpoint)
    except Exception as exc:  # noqa: BLE001 - logged with the fix; the bento serves
        logging.getLogger(__name__).error(
            "Deployed %s version %s (revision %s) but could not record it in the registry: %s. "
            "The deploy task's endpoint artifact holds the revision (model %s, version %s).",
            model, version, endpoint.get("revision"), exc, model, version,
        )  # fmt: skip
        return False
    return True
