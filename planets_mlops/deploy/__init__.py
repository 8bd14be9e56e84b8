"""Deploy a packaged bento to Kubernetes: manifests, server-side apply, rollout, rollback.

``manifests`` builds the objects as plain dicts, ``apply`` talks to the API server through
the small ``ClusterApi`` interface, waits for the rollout, smoke-tests the endpoint and
rolls back on failure. Nothing here imports ``kfp``; ``kubernetes`` is imported only by
the real ``KubernetesApi``.
"""

from planets_mlops.deploy.apply import ClusterApi, DeployResult, KubernetesApi, deploy
from planets_mlops.deploy.manifests import DeploySpec, desired_objects

__all__ = ["ClusterApi", "DeployResult", "DeploySpec", "KubernetesApi", "deploy", "desired_objects"]
