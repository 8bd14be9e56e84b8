"""Deploy a packaged bento to Kubernetes: manifests, server-side apply, rollout, rollback.

``manifests`` builds the objects as plain dicts; ``apply`` deploys them: it talks to the API
server through the small ``ClusterApi`` interface (``cluster``), holds the target's lease
(``lease``), waits for the rollout and rolls back on failure (``rollout``) and smoke-tests
the endpoint (``smoke``). Nothing here imports ``kfp``; ``kubernetes`` is imported only by
the real ``KubernetesApi``.
"""

from planets_mlops.deploy.apply import DeployResult, deploy
from planets_mlops.deploy.cluster import ClusterApi, KubernetesApi
from planets_mlops.deploy.manifests import DeploySpec, desired_objects

__all__ = ["ClusterApi", "DeployResult", "DeploySpec", "KubernetesApi", "deploy", "desired_objects"]
