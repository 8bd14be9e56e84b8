"""Pipelines and their versions: get-or-create on upload, resolve by name.

On the cluster a suite pipeline is named with the suite's prefix (``planets-training``...;
:func:`kfp_name`), and the pipelines the suite creates carry :data:`SUITE_MARKER` in their
description: ``upload`` adds versions only to those, never to a pipeline of the same name
that someone else made.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planets_mlops.app.kfp_client.connection import list_all
from planets_mlops.errors import InvalidParameterError, KubeflowError, NotFoundError
from planets_mlops.knobs import PIPELINE_PREFIX

if TYPE_CHECKING:
    import kfp

logger = logging.getLogger(__name__)

PREFIX_ENV = "PLANETS_PIPELINE_PREFIX"
# In the description of every pipeline the suite creates; upload refuses pipelines without it.
SUITE_MARKER = "[created by planets-mlops]"
_PREFIX = re.compile(r"[a-z0-9][a-z0-9.-]{0,40}")


class ForeignPipelineError(KubeflowError):
    """A pipeline of that name exists on the cluster but the suite did not create it."""


def pipeline_prefix(flag: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The prefix of the suite's pipeline names: ``flag``, else ``PLANETS_PIPELINE_PREFIX``, else the default.

    Raises:
        InvalidParameterError: not lower-case letters, digits, '.' or '-' (41 at most);
            empty is allowed (the bare names).
    """
    env = os.environ if environ is None else environ
    prefix = flag if flag is not None else env.get(PREFIX_ENV, PIPELINE_PREFIX)
    if prefix and not _PREFIX.fullmatch(prefix):
        raise InvalidParameterError(
            "--pipeline-prefix" if flag is not None else PREFIX_ENV,
            prefix,
            "lower-case letters, digits, '.' or '-', starting with a letter or digit",
            "e.g. planets- or team-a-planets-.",
        )
    return prefix


def kfp_name(name: str, prefix: str = PIPELINE_PREFIX) -> str:
    """The cluster's name of the suite pipeline ``name`` (``training`` -> ``planets-training``)."""
    return f"{prefix}{name}"


def suite_description(description: str | None) -> str:
    """A pipeline's description with the suite's marker."""
    return (
        f"{description} {SUITE_MARKER}"
        if description
        else f"Pipeline of the planets-mlops suite. {SUITE_MARKER}"
    )


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

    Re-running with the same version name changes nothing (a retried CI job is safe). A
    pipeline created here carries :data:`SUITE_MARKER` in its description; an existing
    pipeline without it was made by someone else and gets no version.

    Args:
        client: A connected ``kfp.Client``.
        package: The compiled pipeline YAML.
        pipeline_name: The pipeline's name on the cluster (:func:`kfp_name`).
        version_name: The version's name.
        description: Description of the pipeline (when created) and of the version.
        namespace: The namespace of a namespaced pipeline (multi-user).

    Returns:
        ``(pipeline_id, version_id, uploaded)``; ``uploaded`` is False when that version
        already existed.

    Raises:
        ForeignPipelineError: a pipeline named ``pipeline_name`` exists without the marker.
    """
    import kfp_server_api

    pipeline_id = find_pipeline_id(client, pipeline_name)
    if pipeline_id is not None:
        existing_pipeline = client.get_pipeline(pipeline_id)
        if SUITE_MARKER not in (existing_pipeline.description or ""):
            raise ForeignPipelineError(
                f"Pipeline {pipeline_name!r} ({pipeline_id}) on the cluster was not created by "
                "planets-mlops (its description lacks the suite's marker), so no version is added "
                f"to it. Upload under another name with --pipeline-prefix PREFIX (or {PREFIX_ENV}), "
                f"e.g. --pipeline-prefix team-a-{PIPELINE_PREFIX}."
            )
    else:
        # Create the pipeline empty, so the only versions are the ones named by us
        # (upload_pipeline would add a first version named like the pipeline).
        created = client._pipelines_api.pipeline_service_create_pipeline(
            pipeline=kfp_server_api.V2beta1Pipeline(
                display_name=pipeline_name, description=suite_description(description), namespace=namespace
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


def resolve_version(
    client: kfp.Client, pipeline_name: str, version_name: str, suite_name: str | None = None
) -> tuple[str, Any]:
    """``(pipeline_id, version)`` of an uploaded version.

    Args:
        client: A connected ``kfp.Client``.
        pipeline_name: The pipeline's name on the cluster (:func:`kfp_name`).
        version_name: The version's name.
        suite_name: The suite's name of the pipeline, for the hints (default ``pipeline_name``).

    Raises:
        NotFoundError: No such pipeline or version (says how to upload it).
    """
    command = f"planets-mlops upload {suite_name or pipeline_name}"
    pipeline_id = find_pipeline_id(client, pipeline_name)
    if pipeline_id is None:
        raise NotFoundError(f"Pipeline {pipeline_name!r} is not uploaded. Run `{command}` first.")
    version = find_version(client, pipeline_id, version_name)
    if version is None:
        raise NotFoundError(
            f"Pipeline {pipeline_name!r} has no version {version_name!r}. "
            f"Run `{command}` from that commit, "
            "or list versions in the UI (Pipelines -> "
            f"{pipeline_name})."
        )
    if version.pipeline_spec is None:
        # List responses may omit the spec; the single GET carries it.
        version = client.get_pipeline_version(pipeline_id, version.pipeline_version_id)
    return pipeline_id, version
