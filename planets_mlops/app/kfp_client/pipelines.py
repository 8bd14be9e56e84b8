"""Pipelines and their versions: get-or-create on upload, resolve by name."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planets_mlops.app.kfp_client.connection import list_all
from planets_mlops.errors import NotFoundError

if TYPE_CHECKING:
    import kfp

logger = logging.getLogger(__name__)


def spec_of(pipeline_spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The pipeline spec of a stored version, or None when it has none.

    A stored spec may wrap ``pipeline_spec`` and ``platform_spec`` when kfp-kubernetes
    settings are present.
    """
    if not pipeline_spec:
        return None
    if "root" in pipeline_spec:
        return dict(pipeline_spec)
    inner = pipeline_spec.get("pipeline_spec")
    return dict(inner) if isinstance(inner, Mapping) else None


def find_pipeline_id(client: kfp.Client, name: str) -> str | None:
    """ID of the pipeline whose display name is ``name``, or None."""
    return client.get_pipeline_id(name)


def find_version(client: kfp.Client, pipeline_id: str, version_name: str) -> Any | None:
    """The version of ``pipeline_id`` named ``version_name``, or None."""
    versions = list_all(
        lambda **kw: client.list_pipeline_versions(pipeline_id, sort_by="created_at desc", **kw),
        "pipeline_versions",
    )
    for version in versions:
        if version_name in (version.display_name, getattr(version, "name", None)):
            return version
    return None


def upload_version(
    client: kfp.Client,
    package: Path,
    pipeline_name: str,
    version_name: str,
    description: str | None = None,
    namespace: str | None = None,
) -> tuple[str, str, bool]:
    """Get-or-create the pipeline, then get-or-upload the version.

    Re-running with the same version name changes nothing (a retried CI job is safe).

    Returns:
        ``(pipeline_id, version_id, uploaded)``; ``uploaded`` is False when that version
        already existed.
    """
    import kfp_server_api

    pipeline_id = find_pipeline_id(client, pipeline_name)
    if pipeline_id is None:
        # Create the pipeline empty, so the only versions are the ones named by us
        # (upload_pipeline would add a first version named like the pipeline).
        created = client._pipelines_api.pipeline_service_create_pipeline(
            pipeline=kfp_server_api.V2beta1Pipeline(
                display_name=pipeline_name, description=description, namespace=namespace
            )
        )
        pipeline_id = created.pipeline_id
        logger.info("created pipeline %s (%s)", pipeline_name, pipeline_id)
    existing = find_version(client, pipeline_id, version_name)
    if existing is not None:
        return pipeline_id, existing.pipeline_version_id, False
    version = client.upload_pipeline_version(
        pipeline_package_path=str(package),
        pipeline_version_name=version_name,
        pipeline_id=pipeline_id,
        description=description,
    )
    return pipeline_id, version.pipeline_version_id, True


def resolve_version(client: kfp.Client, pipeline_name: str, version_name: str) -> tuple[str, Any]:
    """``(pipeline_id, version)`` of an uploaded version.

    Raises:
        NotFoundError: No such pipeline or version (says how to upload it).
    """
    pipeline_id = find_pipeline_id(client, pipeline_name)
    if pipeline_id is None:
        raise NotFoundError(
            f"Pipeline {pipeline_name!r} is not uploaded. Run `planets-mlops upload {pipeline_name}` first."
        )
    version = find_version(client, pipeline_id, version_name)
    if version is None:
        raise NotFoundError(
            f"Pipeline {pipeline_name!r} has no version {version_name!r}. "
            f"Run `planets-mlops upload {pipeline_name}` from that commit, "
            "or list versions in the UI (Pipelines -> "
            f"{pipeline_name})."
        )
    if version.pipeline_spec is None:
        # List responses may omit the spec; the single GET carries it.
        version = client.get_pipeline_version(pipeline_id, version.pipeline_version_id)
    return pipeline_id, version
