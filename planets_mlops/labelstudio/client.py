"""Thin wrapper over label-studio-sdk 2.0.19 that turns failures into clear errors.

Everything that talks to Label Studio goes through :class:`LabelStudioClient`: project
get-or-create (exact title match), file upload, task import, annotations, predictions,
the JSON export and image download. Failures become :class:`LabelStudioError` naming the
URL/token/project and the fix; the SDK's own retries are off for writes (a retried POST
can duplicate data).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from planets_mlops.errors import InvalidParameterError, LabelStudioError
from planets_mlops.knobs import ImageFetchParams
from planets_mlops.labelstudio import fetch
from planets_mlops.labelstudio.fetch import ImageFetchError
from planets_mlops.labelstudio.labels import FROM_NAME, TO_NAME, labeling_config

if TYPE_CHECKING:  # the SDK costs ~4 s to import: only inside functions at run time
    from label_studio_sdk.core.request_options import RequestOptions

log = logging.getLogger(__name__)

URL_ENV = "LABEL_STUDIO_URL"
API_KEY_ENV = "LABEL_STUDIO_API_KEY"
UPLOAD_BATCH = 100
NO_RETRY = cast("RequestOptions", {"max_retries": 0})
_IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
}


def _describe_api_error(exc: Any) -> str:
    body = exc.body
    if isinstance(body, (dict, list)):
        text = json.dumps(body)
    else:
        text = str(body or "")
        if "<html" in text.lower():
            text = "(HTML error page)"
    return f"HTTP {exc.status_code}: {text[:300]}"


def _origin(url: Any) -> tuple[str, str, int]:
    """(scheme, host, port) of an ``httpx.URL``, the default port filled in."""
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
    return url.scheme, url.host, port


class LabelStudioClient:
    """A connection to one Label Studio server.

    Args:
        url: server URL; ``$LABEL_STUDIO_URL`` when empty.
        api_key: legacy token or personal access token; ``$LABEL_STUDIO_API_KEY`` when empty.
        timeout: seconds per HTTP request.
        fetch_limits: limits on downloading task images; ``PLANETS_FETCH_*`` from the
            environment when None (see :mod:`planets_mlops.labelstudio.fetch`).

    Raises:
        InvalidParameterError: URL or token missing or the URL is not http(s).
    """

    def __init__(
        self,
        url: str = "",
        api_key: str = "",
        timeout: float = 60.0,
        fetch_limits: ImageFetchParams | None = None,
    ) -> None:
        url = (url or os.environ.get(URL_ENV, "")).strip().rstrip("/")
        api_key = (api_key or os.environ.get(API_KEY_ENV, "")).strip()
        if not url.startswith(("http://", "https://")):
            raise InvalidParameterError(
                URL_ENV,
                url,
                "an http(s):// URL of the Label Studio server",
                f"Set {URL_ENV} (on a cluster: the key {URL_ENV} of the Secret 'label-studio').",
            )
        if not api_key:
            raise InvalidParameterError(
                API_KEY_ENV,
                "",
                "a Label Studio API token",
                f"Set {API_KEY_ENV} (Account & Settings > Access Token; on a cluster: the "
                f"key {API_KEY_ENV} of the Secret 'label-studio').",
            )
        self.fetch_limits = fetch_limits or fetch.limits_from_env()
        import httpx
        from label_studio_sdk import LabelStudio

        self.url = url
        origin = _origin(httpx.URL(url))

        def same_origin(request: httpx.Request) -> None:
            # Every request, redirects included, stays on the configured server: the SDK
            # follows redirects, and a 307/308 would resend a personal access token's
            # refresh request (the token in its body) to whatever host the answer names.
            if _origin(request.url) != origin:
                raise LabelStudioError(
                    f"Label Studio at {url} redirected a request to {request.url.scheme}://"
                    f"{request.url.netloc.decode('ascii', 'replace')}, another server; nothing is "
                    f"sent there (the API token goes only to {URL_ENV}). Set {URL_ENV} to the "
                    "address the server answers on itself."
                )

        http = httpx.Client(timeout=timeout, follow_redirects=True, event_hooks={"request": [same_origin]})
        # Always pass api_key: the SDK otherwise reads the environment at import time.
        self.sdk = LabelStudio(base_url=url, api_key=api_key, timeout=timeout, httpx_client=http)
        self._http = self.sdk._client_wrapper.httpx_client

    # -- error translation ------------------------------------------------------------

    @contextlib.contextmanager
    def errors(self, action: str, project: object = None) -> Iterator[None]:
        """Translate SDK / network failures while doing ``action`` into LabelStudioError."""
        import httpx
        from label_studio_sdk.core.api_error import ApiError

        try:
            yield
        except ApiError as exc:
            status = exc.status_code
            if status in (401, 403):
                raise LabelStudioError(
                    f"Label Studio at {self.url} refused the API token while {action} "
                    f"({_describe_api_error(exc)}). Set {API_KEY_ENV} to a valid token of a user "
                    "of that server (for a legacy token the organisation must allow legacy tokens)."
                ) from exc
            if status == 404 and project is not None:
                raise LabelStudioError(
                    f"Label Studio project {project!r} not found at {self.url} while {action}. "
                    "Pass the exact project title or its numeric id (see the Projects page)."
                ) from exc
            raise LabelStudioError(
                f"Label Studio at {self.url} failed while {action}: {_describe_api_error(exc)}"
            ) from exc
        except (httpx.ConnectError, httpx.TimeoutException, httpx.RemoteProtocolError) as exc:
            raise LabelStudioError(
                f"Cannot reach Label Studio at {URL_ENV}={self.url!r} while {action}: "
                f"{type(exc).__name__}: {exc}. Check the URL, that the server is running and "
                "reachable from here (on a cluster: the Secret 'label-studio' and network policy)."
            ) from exc

    def _request(self, method: str, path: str, action: str, **kwargs: Any) -> Any:
        """A raw authenticated request (for endpoints the SDK lacks); returns the response."""
        import httpx

        with self.errors(action):
            try:
                response = self._http.request(
                    path.lstrip("/"), method=method, request_options=NO_RETRY, **kwargs
                )
            except (httpx.ConnectError, httpx.TimeoutException):
                raise
        if response.status_code in (401, 403):
            raise LabelStudioError(
                f"Label Studio at {self.url} refused the API token while {action} "
                f"(HTTP {response.status_code}). Set {API_KEY_ENV} to a valid token."
            )
        return response

    # -- projects ---------------------------------------------------------------------

    def find_project(self, project: str | int) -> Any:
        """The project with this numeric id or exact title (lowest id if titles repeat).

        Args:
            project: Numeric id (as int or digits) or exact title.

        Returns:
            The SDK's project object.

        Raises:
            InvalidParameterError: ``project`` is empty.
            LabelStudioError: no such project, or the server/token fails.
        """
        key = str(project).strip()
        if not key:
            raise InvalidParameterError("project", project, "a project title or numeric id")
        if key.isdigit():
            with self.errors(f"reading project {key}", project=key):
                return self.sdk.projects.get(id=int(key))
        found = self._projects_titled(key)
        if not found:
            raise LabelStudioError(
                f"Label Studio project {key!r} not found at {self.url} (exact title match). "
                "Pass the exact project title or its numeric id, or create it first."
            )
        return found[0]

    def _projects_titled(self, title: str) -> list[Any]:
        # The server filters by case-insensitive substring: match exactly here.
        with self.errors(f"listing projects titled {title!r}"):
            listed: Any = self.sdk.projects.list(title=title)
            projects: list[Any] = [p for p in listed if p.title == title]
        projects.sort(key=lambda p: p.id)
        if len(projects) > 1:
            log.warning(
                "%d projects titled %r; using the oldest (id %s)", len(projects), title, projects[0].id
            )
        return projects

    def get_or_create_project(
        self, title: str, classes: Sequence[str], description: str = ""
    ) -> tuple[Any, bool]:
        """The project titled exactly ``title``, created with a Choices config if missing.

        Args:
            title: Exact project title.
            classes: Class names of the Choices config, used only when creating.
            description: Project description, used only when creating.

        Returns:
            ``(project, created)``.

        Raises:
            InvalidParameterError: ``classes`` is not a valid class list (when creating).
            LabelStudioError: the server is unreachable or refuses the token.
        """
        found = self._projects_titled(title)
        if found:
            return found[0], False
        config = labeling_config(classes)
        with self.errors(f"creating project {title!r}"):
            project = self.sdk.projects.create(
                title=title, label_config=config, description=description, request_options=NO_RETRY
            )
        log.info("Created Label Studio project %r (id %s)", title, project.id)
        return project, True

    # -- tasks ------------------------------------------------------------------------

    def upload_images(self, project_id: int, paths: Sequence[Path]) -> int:
        """Upload image files as tasks (one task per file); returns the task count added.

        Files are sent in batches; each task's image is the uploaded file.

        Args:
            project_id: Numeric id of the project.
            paths: Image files to upload.

        Raises:
            LabelStudioError: the server refuses a batch (status and body in the message).
        """
        added = 0
        for start in range(0, len(paths), UPLOAD_BATCH):
            batch = paths[start : start + UPLOAD_BATCH]
            handles = [open(p, "rb") for p in batch]  # noqa: SIM115 - closed below
            try:
                # One field name per file: with a repeated name only the last is imported.
                files = {
                    f"file{i}": (
                        Path(p).name,
                        h,
                        _IMAGE_TYPES.get(Path(p).suffix.lower(), "application/octet-stream"),
                    )
                    for i, (p, h) in enumerate(zip(batch, handles))
                }
                response = self._request(
                    "POST",
                    f"api/projects/{project_id}/import",
                    f"uploading {len(batch)} files to project {project_id}",
                    files=files,
                )
            finally:
                for h in handles:
                    h.close()
            if response.status_code >= 300:
                raise LabelStudioError(
                    f"Upload to project {project_id} failed: HTTP {response.status_code} {response.text[:300]}"  # noqa: E501
                )
            added += int(response.json().get("task_count", 0))
        log.info("Uploaded %d files (%d tasks) to project %s", len(paths), added, project_id)
        return added

    def import_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> int:
        """Import JSON tasks (``{"data": {...}, "annotations": [...], ...}``); returns the count.

        Args:
            project_id: Numeric id of the project.
            tasks: Task objects in Label Studio's import format.

        Raises:
            LabelStudioError: the server is unreachable or refuses the import.
        """
        with self.errors(f"importing {len(tasks)} tasks into project {project_id}", project=project_id):
            result = self.sdk.projects.import_tasks(
                id=project_id, request=cast(Any, list(tasks)), request_options=NO_RETRY
            )
        return int(getattr(result, "task_count", None) or len(tasks))

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of the project (annotated or not) with its annotations, as JSON.

        Args:
            project_id: Numeric id of the project.

        Returns:
            The export's task objects (read them with ``labels.parse_export``).

        Raises:
            LabelStudioError: the export fails or is not a list of tasks.
        """
        with self.errors(f"exporting project {project_id}", project=project_id):
            chunks = self.sdk.projects.exports.download_sync(
                id=project_id, export_type="JSON", download_all_tasks=True
            )
            raw = b"".join(chunks)
        try:
            tasks = json.loads(raw or b"[]")
        except json.JSONDecodeError as exc:
            raise LabelStudioError(
                f"Export of project {project_id} at {self.url} is not JSON: {raw[:200]!r}"
            ) from exc
        if not isinstance(tasks, list):
            raise LabelStudioError(
                f"Export of project {project_id} is not a list of tasks: {str(tasks)[:200]}"
            )
        return tasks

    # -- annotations and predictions -----------------------------------------------------

    def annotate(
        self,
        task_id: int,
        choices: Sequence[str] = (),
        cancelled: bool = False,
        from_name: str = FROM_NAME,
        to_name: str = TO_NAME,
    ) -> int:
        """Annotate a task as a labeller would in the UI; returns the annotation id.

        ``cancelled=True`` is the UI's "Skip" (empty result).

        Args:
            task_id: Id of the task.
            choices: Class names chosen (more than one only for tests of bad input).
            cancelled: Skip the task instead of labelling it.
            from_name: Name of the config's Choices tag.
            to_name: Name of the config's Image tag.
        """
        result = [] if cancelled or not choices else [choices_result(list(choices), from_name, to_name)]
        with self.errors(f"annotating task {task_id}"):
            annotation = self.sdk.annotations.create(
                id=task_id, result=result, was_cancelled=cancelled, request_options=NO_RETRY
            )
        return int(annotation.id)

    def model_versions(self, project_id: int) -> dict[str, int]:
        """Model versions with predictions in the project, and their prediction counts.

        Args:
            project_id: Numeric id of the project.

        Returns:
            Model version -> number of its predictions in the project.

        Raises:
            LabelStudioError: the listing fails.
        """
        response = self._request(
            "GET",
            f"api/projects/{project_id}/model-versions/",
            f"listing model versions of project {project_id}",
        )
        if response.status_code >= 300:
            raise LabelStudioError(f"Listing model versions failed: HTTP {response.status_code}")
        data = response.json()
        if isinstance(data, dict):
            return {str(k): int(v) for k, v in data.items()}
        return {str(item.get("model_version")): int(item.get("count", 0)) for item in data}

    def delete_model_version(self, project_id: int, model_version: str) -> int:
        """Delete every prediction of ``model_version`` in the project; returns the count.

        Args:
            project_id: Numeric id of the project.
            model_version: Model version whose predictions go.

        Raises:
            LabelStudioError: the listing or the deletion fails.
        """
        # The DELETE answers without a count: read it from the listing first.
        count = self.model_versions(project_id).get(model_version, 0)
        if not count:
            return 0
        response = self._request(
            "DELETE",
            f"api/projects/{project_id}/model-versions/",
            f"deleting predictions of model version {model_version!r}",
            json={"model_version": model_version},
        )
        if response.status_code >= 300:
            raise LabelStudioError(
                f"Deleting predictions of model version {model_version!r} in project {project_id} "
                f"failed: HTTP {response.status_code} {response.text[:300]}"
            )
        return count

    def import_predictions(self, project_id: int, predictions: Sequence[dict[str, Any]]) -> int:
        """Bulk-create predictions (``task``, ``result``, ``score``, ``model_version``).

        Args:
            project_id: Numeric id of the project.
            predictions: Prediction objects, e.g. from
                :func:`~planets_mlops.labelstudio.predictions.build_predictions`.

        Returns:
            The number of predictions sent.

        Raises:
            LabelStudioError: the server is unreachable or refuses the import.
        """
        if not predictions:
            return 0
        with self.errors(
            f"importing {len(predictions)} predictions into project {project_id}", project=project_id
        ):
            self.sdk.projects.import_predictions(
                id=project_id, request=cast(Any, list(predictions)), request_options=NO_RETRY
            )
        return len(predictions)

    # -- images -----------------------------------------------------------------------

    def fetch_image(self, url: str) -> bytes:
        """Bytes of a task's image, within :attr:`fetch_limits`.

        Supports files uploaded to Label Studio (``/data/upload/...``), local-files storage
        (``/data/local-files/?d=...``), other URLs on the same server (with the token),
        plain ``http(s)://`` URLs and ``gs://bucket/object`` (google-cloud-storage, with
        the pod's credentials). Limits and address checks: :mod:`planets_mlops.labelstudio.fetch`.

        Args:
            url: The task's image URL (its ``data.image``).

        Raises:
            ImageFetchError: the file is missing, unreadable, too big, too slow or at a
                refused address (the caller counts a skip).
            LabelStudioError: the server is unreachable or refuses the token.
        """
        with fetch.task_failure(url):
            if url.startswith("gs://"):
                return fetch.fetch_gcs(url, self.fetch_limits)
            parsed = urllib.parse.urlparse(url)
            own = urllib.parse.urlparse(self.url)
            if not parsed.scheme and not parsed.netloc:
                url = f"{self.url}/{url.lstrip('/')}"
            elif parsed.scheme not in ("http", "https"):
                raise ImageFetchError(
                    f"Unsupported image URL {url!r}: expected /data/..., http(s):// or gs://"
                )
            try:
                return fetch.fetch_http(
                    url,
                    self.fetch_limits,
                    trusted_origin=(own.scheme, own.netloc),
                    trusted_headers=self.sdk._client_wrapper.get_headers,
                )
            except fetch.FetchStatusError as exc:
                # A missing upload gives 500 (not 404) on 1.23: any other non-2xx means "no image".
                if exc.trusted and exc.status in (401, 403):
                    raise LabelStudioError(
                        f"Label Studio at {self.url} refused the API token while downloading {url} "
                        f"(HTTP {exc.status}). Set {API_KEY_ENV} to a valid token."
                    ) from exc
                raise


def choices_result(choices: list[str], from_name: str = FROM_NAME, to_name: str = TO_NAME) -> dict[str, Any]:
    """One Choices region, the shape of annotation and prediction results.

    Args:
        choices: Class names chosen.
        from_name: Name of the config's Choices tag.
        to_name: Name of the config's Image tag.

    Returns:
        ``{"type": "choices", "value": {"choices": [...]}, "from_name": ..., "to_name": ...}``.
    """
    return {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": choices}}
