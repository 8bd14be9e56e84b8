"""The Kubernetes API boundary of a deploy.

Five calls (``ClusterApi``), and ``KubernetesApi``, the real implementation over the
official client (server-side apply with field manager ``planets-mlops`` and forced
conflicts). Tests replace this boundary only.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from planets_mlops.deploy import manifests

logger = logging.getLogger(__name__)


API_VERSIONS = {
    "Deployment": "apps/v1",
    "Service": "v1",
    "Pod": "v1",
    "InferenceService": manifests.KSERVE_API_VERSION,
    "Lease": "coordination.k8s.io/v1",
}


Json = dict[str, Any]


class ClusterConflict(Exception):
    """The API server refused a write: the object exists, or its resourceVersion moved."""


class ClusterApi(Protocol):
    """The only calls deploy() makes to the Kubernetes API server."""

    def get(self, kind: str, namespace: str, name: str) -> Json | None:
        """The object as JSON (camelCase keys, with status), or None if absent."""

    def apply(self, obj: Json) -> Json:
        """Server-side apply ``obj`` (field manager planets-mlops, force conflicts).

        A ``metadata.resourceVersion`` in ``obj`` is a precondition: ``ClusterConflict``
        when the stored object has another one.
        """

    def create(self, obj: Json) -> Json:
        """Create ``obj``; ``ClusterConflict`` when it exists already."""

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete an object; absent is fine."""

    def list_pods(self, namespace: str, label_selector: str) -> list[Json]:
        """Pods matching a label selector, as JSON."""


class KubernetesApi:
    """``ClusterApi`` over the official ``kubernetes`` client's dynamic client."""

    def __init__(self, api_client: Any = None, discovery_cache: str | None = None) -> None:
        """Use ``api_client``, else in-cluster config, else the local kubeconfig.

        Args:
            api_client: A configured ``kubernetes.client.ApiClient``.
            discovery_cache: File for the dynamic client's API discovery cache
                (default: one per API host in the temp directory).
        """
        from kubernetes import client, config  # type: ignore[import-untyped]
        from kubernetes.dynamic import DynamicClient  # type: ignore[import-untyped]

        if api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api_client = client.ApiClient()
        self._dynamic = DynamicClient(api_client, cache_file=discovery_cache)

    def _resource(self, kind: str) -> Any:
        return self._dynamic.resources.get(api_version=API_VERSIONS[kind], kind=kind)

    def get(self, kind: str, namespace: str, name: str) -> Json | None:
        """Read one object.

        Args:
            kind: Kubernetes kind, a key of ``API_VERSIONS`` (e.g. ``"Deployment"``).
            namespace: Namespace of the object.
            name: Name of the object.

        Returns:
            The object as a dict, or None when it does not exist.
        """
        from kubernetes.dynamic.exceptions import NotFoundError  # type: ignore[import-untyped]

        try:
            return self._resource(kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def apply(self, obj: Json) -> Json:
        """Server-side apply ``obj`` as the project's field manager, taking over conflicting fields.

        Args:
            obj: A complete manifest with ``kind`` and ``metadata.name``/``metadata.namespace``.

        Returns:
            The object as the API server stored it.
        """
        from kubernetes.dynamic.exceptions import ConflictError  # type: ignore[import-untyped]

        meta = obj["metadata"]
        try:
            result = self._resource(obj["kind"]).server_side_apply(
                body=obj,
                name=meta["name"],
                namespace=meta["namespace"],
                field_manager=manifests.FIELD_MANAGER,
                force_conflicts=True,
            )
        except ConflictError as exc:  # a resourceVersion precondition failed
            raise ClusterConflict(str(exc)) from exc
        return result.to_dict()

    def create(self, obj: Json) -> Json:
        """Create ``obj`` (fails when it exists).

        Args:
            obj: A complete manifest with ``kind`` and ``metadata.name``/``metadata.namespace``.

        Returns:
            The object as the API server stored it.

        Raises:
            ClusterConflict: the object exists already.
        """
        from kubernetes.dynamic.exceptions import ConflictError  # type: ignore[import-untyped]

        try:
            result = self._resource(obj["kind"]).create(body=obj, namespace=obj["metadata"]["namespace"])
        except ConflictError as exc:
            raise ClusterConflict(str(exc)) from exc
        return result.to_dict()

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete one object; an object that is already gone is not an error.

        Args:
            kind: Kubernetes kind, a key of ``API_VERSIONS``.
            namespace: Namespace of the object.
            name: Name of the object.
        """
        from kubernetes.dynamic.exceptions import NotFoundError  # type: ignore[import-untyped]

        try:
            self._resource(kind).delete(name=name, namespace=namespace)
        except NotFoundError:
            pass

    def list_pods(self, namespace: str, label_selector: str) -> list[Json]:
        """The pods of ``namespace`` that match ``label_selector``.

        Args:
            namespace: Namespace to list.
            label_selector: Kubernetes label selector, e.g. ``"app=planets-classifier"``.

        Returns:
            The pods as dicts (empty when none match).
        """
        pods = self._resource("Pod").get(namespace=namespace, label_selector=label_selector)
        return list(pods.to_dict().get("items", []))
