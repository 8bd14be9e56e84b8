"""What the GitLab twin needs that GitHub's runners have built in (``gh``, the auth action).

- :func:`gitlab_note`: post a merge request note, or update the sticky one carrying the
  report's marker.
- :func:`gitlab_merged_request`: the merge request a default-branch commit merged.
- :func:`gcp_credentials`: a Workload Identity Federation credential configuration for the
  CI job's OIDC token (the file Google's client libraries read; no key anywhere).
- :func:`id_token`: an ID token of the federated service account for an audience (the KFP
  API's and MLflow's ingress).

GitLab's API is reached with ``GITLAB_API_TOKEN`` (a project access token with ``api``
scope, kept as a protected, masked variable): ``CI_JOB_TOKEN`` cannot write notes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from planets_mlops.errors import InvalidParameterError, NotFoundError, PlanetsError

STS_URL = "https://sts.googleapis.com/v1/token"
IMPERSONATE_URL = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{}:generateAccessToken"
TIMEOUT_S = 30.0


def _gitlab(env: Mapping[str, str]) -> tuple[str, str, dict[str, str]]:
    missing = [k for k in ("CI_API_V4_URL", "CI_PROJECT_ID", "GITLAB_API_TOKEN") if not env.get(k)]
    if missing:
        raise InvalidParameterError(
            "environment",
            missing,
            "set",
            "GitLab sets CI_API_V4_URL and CI_PROJECT_ID; add GITLAB_API_TOKEN.",
        )
    base = f"{env['CI_API_V4_URL'].rstrip('/')}/projects/{env['CI_PROJECT_ID']}"
    return base, env["GITLAB_API_TOKEN"], {"PRIVATE-TOKEN": env["GITLAB_API_TOKEN"]}


def _call(method: str, url: str, headers: dict[str, str], **kwargs: Any) -> Any:
    import requests

    response = requests.request(method, url, headers=headers, timeout=TIMEOUT_S, **kwargs)
    if response.status_code >= 400:
        raise PlanetsError(f"GitLab API {method} {url.split('/projects/')[-1]}: HTTP {response.status_code}")
    return response.json() if response.content else None


def gitlab_note(mr: str, body: str, marker: str = "", env: Mapping[str, str] | None = None) -> str:
    """Post ``body`` on merge request ``mr``; with ``marker``, update the note starting with it.

    Returns:
        ``created`` or ``updated``.
    """
    base, _, headers = _gitlab(env if env is not None else os.environ)
    notes_url = f"{base}/merge_requests/{int(mr)}/notes"
    if marker:
        page = 1
        while True:
            notes = _call("GET", notes_url, headers, params={"per_page": 100, "page": page}) or []
            for note in notes:
                if str(note.get("body", "")).startswith(marker) and not note.get("system"):
                    _call("PUT", f"{notes_url}/{int(note['id'])}", headers, data={"body": body})
                    return "updated"
            if len(notes) < 100:
                break
            page += 1
    _call("POST", notes_url, headers, data={"body": body})
    return "created"


def gitlab_merged_request(commit: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{"number", "head_sha"}`` of the merged merge request that brought ``commit``; {} if none."""
    base, _, headers = _gitlab(env if env is not None else os.environ)
    requests_ = _call("GET", f"{base}/repository/commits/{commit}/merge_requests", headers) or []
    for found in requests_:
        if found.get("state") == "merged":
            return {"number": str(found["iid"]), "head_sha": str(found.get("sha", ""))}
    return {}


def gcp_credentials(token_file: Path, audience: str, service_account: str) -> dict[str, Any]:
    """A credential configuration exchanging the OIDC token in ``token_file`` (no key).

    Args:
        token_file: Where the CI job's OIDC token was written.
        audience: ``//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/R``.
        service_account: The service account to impersonate (its email).

    Raises:
        InvalidParameterError: an audience or service account of the wrong shape.
    """
    if not audience.startswith("//iam.googleapis.com/projects/") or "/providers/" not in audience:
        raise InvalidParameterError(
            "--audience",
            audience,
            "//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER",
        )
    if not service_account.endswith(".iam.gserviceaccount.com") or "@" not in service_account:
        raise InvalidParameterError("--service-account", service_account, "a service account email")
    return {
        "type": "external_account",
        "audience": audience,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": STS_URL,
        "credential_source": {"file": str(token_file)},
        "service_account_impersonation_url": IMPERSONATE_URL.format(service_account),
    }


def write_gcp_credentials(token: str, out: Path, audience: str, service_account: str) -> Path:
    """Write the OIDC token beside ``out`` and the configuration to ``out`` (both 0600)."""
    if not token:
        raise InvalidParameterError("--token-env", "", "the variable holding the job's OIDC token")
    token_file = out.with_suffix(".token")
    for path, text in (
        (token_file, token),
        (out, json.dumps(gcp_credentials(token_file, audience, service_account))),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    return out


def id_token(audience: str) -> str:
    """An ID token for ``audience`` of the service account the ambient credentials act as.

    Raises:
        NotFoundError: no Google credentials in the environment.
    """
    import google.auth
    import google.auth.transport.requests
    from google.auth import impersonated_credentials

    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise NotFoundError(
            "No Google credentials: set GOOGLE_APPLICATION_CREDENTIALS (`planets-mlops ci gcp-credentials`)."
        ) from exc
    target = getattr(credentials, "service_account_email", None)
    if not target:
        raise NotFoundError("The ambient Google credentials name no service account to mint an ID token for.")
    minting = impersonated_credentials.IDTokenCredentials(
        impersonated_credentials.Credentials(
            source_credentials=credentials,
            target_principal=target,
            target_scopes=["https://www.googleapis.com/auth/cloud-platform"],
        ),
        target_audience=audience,
        include_email=True,
    )
    minting.refresh(google.auth.transport.requests.Request())
    return str(minting.token)
