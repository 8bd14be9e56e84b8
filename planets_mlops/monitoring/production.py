"""Which model a monitoring run judges: production, resolved when the run starts.

A schedule outlives deploys, so the ``monitoring`` pipeline does not name a model version:
each run asks the registry which version the ``production`` alias names (its
``planets.model_tag`` is the tag the service writes its records under, its
``planets.model_uri`` the model folder with the reference profile), or, with tracking off,
the deployed service's ``GET /metadata`` (``model_tag``, ``model_uri``). A version named
by hand still works (``model_version`` + ``model_uri``): the run then judges that one.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from planets_mlops.errors import DataError, InvalidParameterError, NotFoundError, PlanetsError
from planets_mlops.knobs import RegistryParams

log = logging.getLogger(__name__)

MODEL_TAG = "planets.model_tag"
MODEL_URI = "planets.model_uri"
MAX_METADATA_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Production:
    """The model a window is judged on, and where that answer came from.

    Attributes:
        model_version: The model tag the service writes records under.
        model_uri: The model folder (holds ``monitoring_reference.json``).
        registry_version: The registered version (empty when not from the registry).
        source: ``pinned``, ``registry`` or ``service``.
    """

    model_version: str
    model_uri: str
    registry_version: str
    source: str

    def metadata(self) -> dict[str, Any]:
        """Flat metadata for the step's outputs."""
        return asdict(self)


def from_registry(client: Any, name: str, model_uri: str = "") -> Production:
    """The version the ``production`` alias of ``name`` names now.

    Raises:
        NotFoundError: the alias names no version.
        DataError: that version carries no model tag (promoted before monitoring followed
            production) or no model folder.
    """
    from planets_mlops.registry import registry as reg

    version = reg.alias_version(client, name, reg.PRODUCTION)
    if version is None:
        raise NotFoundError(
            f"The 'production' alias of registered model {name!r} names no version: train and "
            "promote a model first, or pass model_version and model_uri."
        )
    tags = reg.version_info(client, name, version)["tags"]
    tag, uri = tags.get(MODEL_TAG, ""), model_uri or tags.get(MODEL_URI, "")
    if not tag or not uri:
        raise DataError(
            f"Version {version} of {name!r} has no {MODEL_TAG if not tag else MODEL_URI} tag (it was "
            "promoted before monitoring followed production). Promote it again with this version "
            "of the suite, or pass model_version and model_uri."
        )
    return Production(tag, uri, version, "registry")


def from_service(service_url: str, model_uri: str = "", timeout: float = 10.0) -> Production:
    """The model the deployed service at ``service_url`` serves (``GET /metadata``).

    Raises:
        InvalidParameterError: ``service_url`` is not an http(s) URL.
        PlanetsError: no answer, an error status, or no ``model_tag`` / ``model_uri``.
    """
    from urllib.parse import urlparse

    if urlparse(service_url).scheme not in ("http", "https"):
        raise InvalidParameterError(
            "service_url", service_url, "an http(s) URL",
            "e.g. http://planets-classifier.planets-serving.svc.cluster.local:3000",
        )  # fmt: skip
    url = service_url.rstrip("/") + "/metadata"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - scheme checked above
            data = json.loads(answer.read(MAX_METADATA_BYTES))
    except urllib.error.HTTPError as exc:
        raise PlanetsError(f"{url} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise PlanetsError(f"{url} gave no metadata: {getattr(exc, 'reason', exc)}") from exc
    tag = str(data.get("model_tag") or "") if isinstance(data, dict) else ""
    uri = model_uri or (str(data.get("model_uri") or "") if isinstance(data, dict) else "")
    if not tag or not uri:
        raise PlanetsError(f"{url} names no {'model_tag' if not tag else 'model_uri'}; pass model_uri.")
    return Production(tag, uri, "", "service")


def resolve_production(
    model_version: str, model_uri: str, registry: RegistryParams, service_url: str = ""
) -> Production:
    """The model to judge: ``model_version`` if named, else production now.

    Args:
        model_version: A model tag named by hand; empty: follow production.
        model_uri: Its model folder (needed with ``model_version``; otherwise it overrides
            the folder production names).
        registry: With ``tracking`` on, the ``production`` alias of ``model_name`` decides.
        service_url: With tracking off, the deployed service's base URL.

    Raises:
        InvalidParameterError: nothing to resolve from (no version, no tracking, no service).
    """
    if model_version:
        if not model_uri:
            raise InvalidParameterError(
                "model_uri", model_uri, "the folder of model_version's model",
                "Pass model_uri with model_version, or leave both empty to follow production.",
            )  # fmt: skip
        return Production(model_version, model_uri, "", "pinned")
    if registry.tracking:
        from planets_mlops.registry.settings import connect

        client = connect(registry, step="resolve_production")
        if client is not None:
            found = from_registry(client, registry.model_name, model_uri)
            log.info("production of %s is version %s (%s)", registry.model_name, found.registry_version,
                     found.model_version)  # fmt: skip
            return found
    if service_url:
        return from_service(service_url, model_uri, registry.timeout_s * 2)
    raise InvalidParameterError(
        "model_version", model_version, "a model tag, or a way to find production",
        "Set tracking=true (the registry's production alias), or service_url (the deployed "
        "service's /metadata), or name model_version and model_uri.",
    )  # fmt: skip
