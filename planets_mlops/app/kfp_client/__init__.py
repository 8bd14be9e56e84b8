"""A thin wrapper over ``kfp.Client``: connection settings, fast failures, clear errors.

``kfp`` is imported inside functions only, so importing this package (and ``--help``)
stays cheap and the rest of ``planets_mlops`` stays free of ``kfp``.

Connection settings come from flags or the environment:

=================  ==========================================================
``KFP_HOST``        API endpoint, e.g. ``http://localhost:8080`` (port-forward of
                    ``ml-pipeline-ui``) or ``https://kubeflow.example.com/pipeline``;
                    unset: ``KF_PIPELINES_ENDPOINT``, as ``kfp.Client`` reads it
``KFP_NAMESPACE``   profile namespace on multi-user Kubeflow (unset: single-user)
``KFP_TOKEN``       bearer token (e.g. ``gcloud auth print-identity-token`` or a
                    service-account token); unset: the file named by
                    ``KF_PIPELINES_SA_TOKEN_PATH``, if set
``KFP_COOKIES``     cookie header instead, e.g. ``authservice_session=...`` (Dex)
``KFP_VERIFY_SSL``  ``false`` to skip TLS verification (test clusters only)
``KFP_CA_BUNDLE``   CA bundle (PEM) for a private certificate authority
``KFP_TIMEOUT``     seconds for connecting and for each API call (default 10)
=================  ==========================================================

Run settings (``run``, ``schedule``), flags over the environment:

=======================  ====================================================
``KFP_SERVICE_ACCOUNT``  service account of the runs' pods (default
                         ``planets-pipeline-runner``; empty: the server's)
``KFP_PIPELINE_ROOT``    artifact root (unset: the namespace's ``kfp-launcher``)
=======================  ====================================================

Secrets (token, cookies) are never printed: :meth:`ConnectionSettings.describe` masks
them, and :func:`scrub` removes them from any error text.

Modules, one per seam:

- :mod:`.settings`: :class:`ConnectionSettings` (flags and environment), masking, scrubbing.
- :mod:`.connection`: the health check, ``kfp.Client`` with timeouts, error translation.
- :mod:`.cron`: local validation of KFP cron expressions.
- :mod:`.pipelines`: pipelines and their versions (get-or-create, resolve).
- :mod:`.runs`: experiments and runs.
- :mod:`.recurring`: recurring runs (replace by name).
"""

from planets_mlops.app.kfp_client.connection import (
    check_health,
    connect,
    list_all,
    translate_errors,
)
from planets_mlops.app.kfp_client.cron import validate_cron
from planets_mlops.app.kfp_client.pipelines import (
    PREFIX_ENV,
    SUITE_MARKER,
    ForeignPipelineError,
    find_pipeline_id,
    find_version,
    kfp_name,
    pipeline_prefix,
    resolve_version,
    spec_of,
    upload_version,
)
from planets_mlops.app.kfp_client.recurring import Replacement, recurring_runs_named, replace_recurring_runs
from planets_mlops.app.kfp_client.runs import ensure_experiment
from planets_mlops.app.kfp_client.settings import (
    DEFAULT_SERVICE_ACCOUNT,
    DEFAULT_TIMEOUT,
    ConnectionSettings,
    RunSettings,
    auth_headers,
    mask,
    scrub,
    scrub_text,
    secret_values,
)

__all__ = [
    "DEFAULT_SERVICE_ACCOUNT",
    "DEFAULT_TIMEOUT",
    "ConnectionSettings",
    "RunSettings",
    "Replacement",
    "auth_headers",
    "check_health",
    "connect",
    "ensure_experiment",
    "PREFIX_ENV",
    "SUITE_MARKER",
    "ForeignPipelineError",
    "kfp_name",
    "pipeline_prefix",
    "find_pipeline_id",
    "find_version",
    "list_all",
    "mask",
    "recurring_runs_named",
    "replace_recurring_runs",
    "resolve_version",
    "scrub",
    "scrub_text",
    "secret_values",
    "spec_of",
    "translate_errors",
    "upload_version",
    "validate_cron",
]
