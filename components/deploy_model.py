"""deploy_model: serve a packaged bento on Kubernetes, smoke-test it, roll back on failure.

The task needs a Kubernetes identity allowed to manage Deployments and Services (and
InferenceServices) in the serving namespace: run the pipeline with the service account
``planets-pipeline-runner`` (``kustomize/base``). The KFP IR carries no service account;
it is set per run (``kfp.Client().create_run_from_pipeline_func(...,
service_account="planets-pipeline-runner")`` or the run form in the UI). Disable caching
on the task (``task.set_caching_options(False)``): a deploy must run every time.
"""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from planets_mlops.components.images import RUNTIME_IMAGE
from planets_mlops.knobs import DeployParams, describe_knobs


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
@describe_knobs(DeployParams)
def deploy_model(
    bento: Input[Artifact],
    endpoint: Output[Artifact],
    name: str = "planets-classifier",
    namespace: str = "planets-serving",
    replicas: int = 1,
    serving_image: str = "",
    cpu_request: str = "500m",
    memory_request: str = "1Gi",
    cpu_limit: str = "2",
    memory_limit: str = "2Gi",
    timeout_s: int = 300,
    kserve: bool = False,
    gcs_credentials_secret: str = "",
    monitoring_uri: str = "",
    monitoring_sample: float = 1.0,
    inbox_uri: str = "",
    inbox_max_items: int = 1000,
    inbox_min_margin: float = 0.2,
    registered_model_name: str = "",
    registered_version: str = "",
):
    """Serve ``bento`` on Kubernetes, smoke-test it and roll back on failure.

    Args:
        bento: The packaged bento (its ``.uri`` and ``metadata['bento_tag']``).
        replicas: Pod count.
        serving_image: Empty: the serving image of this release
            (``planets_mlops.components.images.SERVING_IMAGE``).
        cpu_request: Container CPU request.
        memory_request: Container memory request.
        cpu_limit: Container CPU limit.
        memory_limit: Container memory limit.
        timeout_s: How long to wait for the rollout and the smoke test.
        kserve: Serve as a KServe InferenceService instead of a Deployment.
        gcs_credentials_secret: Secret with a GCS key for the pod (kind); empty on GKE.
        registered_model_name: With ``registered_version`` (what ``promote_model`` moved
            ``production`` to), the deployed revision is added to that version's release
            record (``MLFLOW_TRACKING_URI``); a registry error then is logged, not raised:
            the bento serves.
        registered_version: The registered version this bento is; empty or ``untracked``:
            nothing is recorded.

    Returns:
        endpoint: The URL, revision and tag that now serve.
    """
    import json
    from pathlib import Path

    from planets_mlops.components.images import SERVING_IMAGE
    from planets_mlops.deploy.apply import deploy_model as deploy

    info = deploy(
        bento_uri=bento.uri,
        bento_metadata=dict(bento.metadata),
        serving_image=serving_image or SERVING_IMAGE,
        name=name,
        namespace=namespace,
        replicas=replicas,
        cpu_request=cpu_request,
        memory_request=memory_request,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
        timeout_s=timeout_s,
        kserve=kserve,
        gcs_credentials_secret=gcs_credentials_secret,
        monitoring_uri=monitoring_uri,
        monitoring_sample=monitoring_sample,
        inbox_uri=inbox_uri,
        inbox_max_items=inbox_max_items,
        inbox_min_margin=inbox_min_margin,
        registered_model_name=registered_model_name,
        registered_version=registered_version,
    )
    endpoint.metadata.update(info)
    Path(endpoint.path).write_text(json.dumps(info, indent=2), encoding="utf-8")
