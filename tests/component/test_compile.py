"""Compile every pipeline and assert selected fields of the IR (not a golden file)."""

import pytest
import yaml

from planets_mlops.app.params import load_ir_documents
from planets_mlops.components.images import RUNTIME_IMAGE, TRAINING_GPU_IMAGE
from planets_mlops.errors import InvalidParameterError
from planets_mlops.pipelines import PIPELINES
from planets_mlops.pipelines.compile import compile_all, compile_pipeline
from planets_mlops.pipelines.platform import STEP_TIMEOUTS
from tests.support.helpers import load_ir


def _executor(spec, task):
    return spec["deploymentSpec"]["executors"][f"exec-{task}"]["container"]


def test_every_pipeline_compiles(tmp_path):
    paths = compile_all(tmp_path)
    assert {p.stem for p in paths} == set(PIPELINES)
    for path in paths:
        spec, _ = load_ir(path)
        assert spec["pipelineInfo"]["name"] == path.stem


def test_the_ir_reader_reads_what_the_pure_python_loader_reads(tmp_path):
    # load_ir_documents parses with libyaml (where PyYAML has it) for speed: same documents.
    for path in compile_all(tmp_path):
        text = path.read_text()
        assert load_ir_documents(text) == list(yaml.safe_load_all(text)), path.name


def test_training_ir_images_gpu_and_caching(tmp_path):
    spec, platform = load_ir(compile_pipeline("training", tmp_path))
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {
        "pull-data",
        "prepare-dataset",
        "train-model",
        "evaluate-model",
        "register-model",
        "condition-1",
    }
    for task in ("pull-data", "prepare-dataset", "evaluate-model"):
        assert _executor(spec, task)["image"] == RUNTIME_IMAGE
    train = _executor(spec, "train-model")
    assert train["image"] == TRAINING_GPU_IMAGE
    assert ":latest" not in train["image"]
    resources = train["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "1"
    # No runtime pip install: the images carry kfp and the project.
    for name, executor in spec["deploymentSpec"]["executors"].items():
        command = " ".join(executor["container"]["command"])
        assert "pip install" not in command, name

    # Steps with outside effects never reuse a cached result; pure steps may.
    assert tasks["pull-data"].get("cachingOptions", {}).get("enableCache") in (None, False)
    assert tasks["prepare-dataset"]["cachingOptions"]["enableCache"] is True
    assert tasks["train-model"]["cachingOptions"]["enableCache"] is True

    train_platform = platform["deploymentSpec"]["executors"]["exec-train-model"]
    assert train_platform["nodeSelector"]["labels"] == {"cloud.google.com/gke-nodepool": "gpu-pool"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in train_platform[
        "tolerations"
    ]
    (shm,) = train_platform["emptyDirMounts"]
    assert shm["mountPath"] == "/dev/shm" and shm["medium"] == "Memory" and shm["sizeLimit"] == "2Gi"


def test_training_parameters_follow_params_yaml(tmp_path):
    spec, _ = load_ir(compile_pipeline("training", tmp_path))
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    for name in (
        "data_repo_url",
        "data_rev",
        "data_path",
        "prepare_seed",
        "prepare_split",
        "prepare_image_size",
        "prepare_grayscale",
        "train_lr",
        "train_epochs",
        "train_conv_size",
        "train_dense_size",
        "train_seed",
    ):
        assert name in parameters, name
    assert parameters["train_lr"]["defaultValue"] == 0.001
    assert parameters["prepare_seed"]["defaultValue"] == 5241


def test_gpu_placement_is_a_compile_time_option(tmp_path):
    from planets_mlops.pipelines.platform import GpuOptions

    spec, platform = load_ir(
        compile_pipeline("training", tmp_path, GpuOptions(node_pool="a100", shm_size="8Gi"))
    )
    assert _executor(spec, "train-model")["resources"]["accelerator"]["resourceCount"] == "1"
    train_platform = platform["deploymentSpec"]["executors"]["exec-train-model"]
    assert train_platform["nodeSelector"]["labels"]["cloud.google.com/gke-nodepool"] == "a100"
    assert train_platform["emptyDirMounts"][0]["sizeLimit"] == "8Gi"
    assert spec["root"]["dag"]["tasks"]["train-model"]["taskInfo"]["name"] == "Train model (GPU)"

    spec, platform = load_ir(compile_pipeline("training", tmp_path, GpuOptions(count=0)))
    assert "accelerator" not in _executor(spec, "train-model")["resources"]
    cpu_train = platform["deploymentSpec"]["executors"]["exec-train-model"]
    assert not {"nodeSelector", "tolerations", "emptyDirMounts"} & set(cpu_train)
    # The display name says where it runs: no "(GPU)" on a CPU-only build.
    assert spec["root"]["dag"]["tasks"]["train-model"]["taskInfo"]["name"] == "Train model (CPU)"


@pytest.mark.parametrize("count", [9, -1])
def test_gpu_counts_the_training_cannot_use_are_refused(count):
    from planets_mlops.pipelines.platform import GpuOptions

    # Beyond one node's GPUs (or negative): reserved and never scheduled, so refused at compile time.
    with pytest.raises(InvalidParameterError, match=rf"gpu count={count}.*0 \(CPU only\) to 8"):
        GpuOptions(count=count)


def test_cli_compile_two_gpus_reserves_both_on_one_node(tmp_path):
    from planets_mlops.app.cli import main

    # train_model trains one replica per GPU (MirroredStrategy), so two are asked of one node.
    code = main(["compile", "training", "--gpu-count", "2", "--out-dir", str(tmp_path), "--no-components"])
    assert code == 0
    spec, platform = load_ir(tmp_path / "pipelines" / "training.yaml")
    assert _executor(spec, "train-model")["resources"]["accelerator"]["resourceCount"] == "2"
    assert "nodeSelector" in platform["deploymentSpec"]["executors"]["exec-train-model"]


def test_cli_compile_refuses_more_gpus_than_a_node_has(tmp_path, capsys):
    from planets_mlops.app.cli import main

    code = main(["compile", "training", "--gpu-count", "9", "--out-dir", str(tmp_path), "--no-components"])
    assert code == 2
    assert "MirroredStrategy" in capsys.readouterr().err
    assert not (tmp_path / "pipelines" / "training.yaml").exists()


def test_cli_compile_passes_gpu_flags(tmp_path):
    from planets_mlops.app.cli import main

    assert (
        main(["compile", "training", "--gpu-count", "0", "--out-dir", str(tmp_path), "--no-components"]) == 0
    )
    spec, _ = load_ir(tmp_path / "pipelines" / "training.yaml")
    assert "accelerator" not in _executor(spec, "train-model")["resources"]


def test_cpu_fallback_fits_one_node_of_the_documented_pool(tmp_path):
    from planets_mlops.pipelines.platform import CPU_POOL_ALLOCATABLE, GpuOptions, quantity

    # docs/cluster-setup.md's default pool is e2-standard-4 (4 vCPU, 16 GB); a request above
    # what GKE leaves to pods there keeps the training pod Pending forever.
    spec, _ = load_ir(compile_pipeline("training", tmp_path, GpuOptions(count=0)))
    train = _executor(spec, "train-model")["resources"]
    cpu_free, memory_free = (quantity(n, v) for n, v in zip(("cpu", "memory"), CPU_POOL_ALLOCATABLE))
    assert quantity("cpu", train["resourceCpuLimit"]) <= cpu_free - 0.5
    assert quantity("memory", train["resourceMemoryLimit"]) <= memory_free - 2**30
    assert train["resourceCpuRequest"] == train["resourceCpuLimit"]


def test_cli_compile_sizes_the_training_task(tmp_path, capsys):
    from planets_mlops.app.cli import main

    args = ["compile", "training", "--out-dir", str(tmp_path), "--no-components"]
    assert main([*args, "--gpu-count", "0", "--cpu", "2", "--memory", "6Gi"]) == 0
    train = _executor(load_ir(tmp_path / "pipelines" / "training.yaml")[0], "train-model")["resources"]
    assert (train["resourceCpuLimit"], train["resourceMemoryLimit"]) == ("2", "6Gi")
    assert "accelerator" not in train
    assert main([*args, "--memory", "12Gi"]) == 0  # GPU build: only the memory changes
    train = _executor(load_ir(tmp_path / "pipelines" / "training.yaml")[0], "train-model")["resources"]
    assert (train["resourceCpuLimit"], train["resourceMemoryLimit"]) == ("4", "12Gi")
    assert main([*args, "--cpu", "lots"]) == 2
    err = capsys.readouterr().err
    assert "cpu" in err and "'lots'" in err and "quantity" in err


def test_gke_autopilot_selects_gpus_by_accelerator(tmp_path):
    from planets_mlops.app.cli import main

    # Autopilot manages its node pools: gke-nodepool=gpu-pool matches no node there, the
    # accelerator label matches on Autopilot and on Standard GPU pools alike.
    args = ["compile", "training", "--out-dir", str(tmp_path), "--no-components"]
    assert (
        main([*args, "--gpu-node-label", "cloud.google.com/gke-accelerator", "--gpu-node-pool", "nvidia-l4"])
        == 0
    )
    _, platform = load_ir(tmp_path / "pipelines" / "training.yaml")
    selector = platform["deploymentSpec"]["executors"]["exec-train-model"]["nodeSelector"]["labels"]
    assert selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}


def _inner_tasks(spec, *conditions):
    tasks = {}
    for name in conditions:
        tasks.update(spec["components"][f"comp-{name}"]["dag"]["tasks"])
    return tasks


def test_package_and_deploy_are_gated_and_never_cached(tmp_path):
    spec, _ = load_ir(compile_pipeline("training", tmp_path))
    gate = spec["root"]["dag"]["tasks"]["condition-1"]
    assert "evaluate-model" in gate["triggerPolicy"]["condition"]
    inner = _inner_tasks(spec, "condition-1", "condition-2", "condition-3")
    assert set(inner) >= {"package-model", "promote-model", "deploy-model", "condition-2", "condition-3"}
    # Deployed only when the production alias moved (or nothing is tracked), and when asked.
    assert "promote-model" in inner["condition-2"]["triggerPolicy"]["condition"]
    assert "pipelinechannel--deploy" in inner["condition-3"]["triggerPolicy"]["condition"]
    # release off (a pull request's run): promote-model records the bento and moves nothing.
    moves = inner["promote-model"]["inputs"]["parameters"]["move_production"]
    assert moves["componentInputParameter"] == "pipelinechannel--release"
    assert inner["deploy-model"]["cachingOptions"].get("enableCache") in (None, False)
    assert inner["package-model"]["cachingOptions"]["enableCache"] is True
    for task in ("package-model", "deploy-model"):
        assert _executor(spec, task)["image"] == RUNTIME_IMAGE


def test_retraining_secrets_as_env_and_side_effect_steps_uncached(tmp_path):
    spec, platform = load_ir(compile_pipeline("retraining", tmp_path))
    executors = platform["deploymentSpec"]["executors"]
    for task in ("exec-import-labels", "exec-push-predictions"):
        (secret,) = executors[task]["secretAsEnv"]
        assert secret["secretName"] == "label-studio"
        assert {m["envVar"] for m in secret["keyToEnv"]} == {"LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"}
    train = executors["exec-train-model"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in train["tolerations"]
    assert _executor(spec, "train-model")["image"] == TRAINING_GPU_IMAGE
    all_tasks = {**spec["root"]["dag"]["tasks"]}
    for component in spec["components"].values():
        all_tasks.update(component.get("dag", {}).get("tasks", {}))
    for task in ("pull-data", "import-labels", "check-new-labels", "push-predictions", "deploy-model"):
        assert all_tasks[task]["cachingOptions"].get("enableCache") in (None, False), task


# ----------------------------------------------------------- resources, retries, credentials

CPU_STEPS = {
    "training": {
        "pull-data",
        "prepare-dataset",
        "evaluate-model",
        "register-model",
        "package-model",
        "promote-model",
        "deploy-model",
    },
    "retraining": {
        "pull-data",
        "import-labels",
        "check-new-labels",
        "create-inbox-tasks",
        "prepare-dataset",
        "evaluate-model",
        "register-model",
        "package-model",
        "promote-model",
        "deploy-model",
        "push-predictions",
    },
    "monitoring": {"resolve-production", "detect-drift", "raise-alert"},
}
GPU_STEPS = {"training": {"train-model"}, "retraining": {"train-model"}, "monitoring": set()}
# Every step is safe to run twice except deploy_model: it fails only after its rollout or
# smoke test failed and it rolled back, and a retry would serve that bento again.
NOT_RETRIED = {"deploy-model", "raise-alert"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compile each (pipeline, gpu, cluster) once per module; returns (spec, platform)."""
    cache = {}

    def get(name, gpu=None, cluster=None):
        key = (name, gpu, cluster)
        if key not in cache:
            out = tmp_path_factory.mktemp("ir")
            cache[key] = load_ir(compile_pipeline(name, out, gpu, cluster))
        return cache[key]

    return get


def _all_tasks(spec):
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return {name: task for name, task in tasks.items() if not name.startswith("condition-")}


@pytest.mark.parametrize("name", sorted(CPU_STEPS))
def test_every_task_has_requests_and_limits(compiled, name):
    from planets_mlops.pipelines.platform import GpuOptions

    for gpu in (GpuOptions(), GpuOptions(count=0, cpu="2", memory="4Gi")):
        spec, _ = compiled(name, gpu)
        tasks = _all_tasks(spec)
        assert set(tasks) == CPU_STEPS[name] | GPU_STEPS[name]
        for task in tasks:
            resources = _executor(spec, task)["resources"]
            for key in (
                "resourceCpuRequest",
                "resourceMemoryRequest",
                "resourceCpuLimit",
                "resourceMemoryLimit",
            ):
                assert resources.get(key), (name, task, key)
            assert resources["cpuRequest"] <= resources["cpuLimit"], task
            assert resources["memoryRequest"] <= resources["memoryLimit"], task
        if not GPU_STEPS[name]:
            continue
        # Training's main container: requests == limits (the pod is still Burstable: KFP's
        # init container and Argo's wait container have no limits).
        train = _executor(spec, "train-model")["resources"]
        assert train["resourceCpuRequest"] == train["resourceCpuLimit"] == gpu.sizes[0]
        assert train["resourceMemoryRequest"] == train["resourceMemoryLimit"] == gpu.sizes[1]


@pytest.mark.parametrize("name", sorted(CPU_STEPS))
def test_idempotent_steps_retry_with_backoff_and_deploy_does_not(compiled, name):
    spec, _ = compiled(name)
    for task_name, task in _all_tasks(spec).items():
        policy = task["retryPolicy"]
        if task_name in NOT_RETRIED:
            # An explicit 0 (omitted in the IR): the controller's default limit never applies.
            assert policy.get("maxRetryCount", 0) == 0, task_name
            continue
        assert policy["maxRetryCount"] == 3, task_name
        assert policy["backoffDuration"] == "30s" and policy["backoffFactor"] == 2.0, task_name
        # Argo's deadline for all attempts (tests/component/test_argo_retries.py), not a cap on one wait.
        assert policy["backoffMaxDuration"] == f"{4 * STEP_TIMEOUTS[task_name] + 210}s", task_name


def test_pipelines_built_for_kfp_local_do_not_retry(tmp_path):
    # kfp.local sleeps through every backoff: a failing local step must fail at once.
    from kfp import compiler

    from planets_mlops.pipelines.retraining import retraining
    from planets_mlops.pipelines.training import training

    for pipeline in (training, retraining):
        path = tmp_path / "local.yaml"
        compiler.Compiler().compile(pipeline, str(path))
        spec, _ = load_ir(path)
        assert not [t for t, task in _all_tasks(spec).items() if "retryPolicy" in task]


def test_gke_build_mounts_no_key(compiled):
    spec, platform = compiled("retraining")
    for executor in platform.get("deploymentSpec", {}).get("executors", {}).values():
        assert "secretAsVolume" not in executor
    for executor in spec["deploymentSpec"]["executors"].values():
        names = {e["name"] for e in executor["container"].get("env", [])}
        assert "GOOGLE_APPLICATION_CREDENTIALS" not in names
    deploy = _inner_deploy_inputs(spec)
    assert deploy["gcs_credentials_secret"]["runtimeValue"]["constant"] == ""


@pytest.mark.parametrize("name", ["training", "retraining"])
def test_the_deploy_step_passes_the_monitoring_inputs_to_the_pods(compiled, name):
    deploy = _inner_deploy_inputs(compiled(name)[0])
    assert deploy["monitoring_uri"]["componentInputParameter"] == "pipelinechannel--serving_monitoring_uri"
    assert (
        deploy["monitoring_sample"]["componentInputParameter"] == "pipelinechannel--serving_monitoring_sample"
    )


@pytest.mark.parametrize("name", ["training", "retraining"])
def test_the_deploy_step_can_turn_on_the_production_inbox(compiled, name):
    spec, _ = compiled(name)
    deploy = _inner_deploy_inputs(spec)
    assert deploy["inbox_uri"]["componentInputParameter"] == "pipelinechannel--serving_inbox_uri"
    assert spec["root"]["inputDefinitions"]["parameters"]["serving_inbox_uri"]["defaultValue"] == ""


def _inner_deploy_inputs(spec):
    return _all_tasks(spec)["deploy-model"]["inputs"]["parameters"]


@pytest.mark.parametrize("name", sorted(CPU_STEPS))
def test_kind_build_gives_steps_the_key_and_serving_a_separate_one(compiled, name):
    from planets_mlops.pipelines.platform import KIND, GpuOptions

    spec, platform = compiled(name, GpuOptions(count=0), KIND)
    executors = platform["deploymentSpec"]["executors"]
    for task in _all_tasks(spec):
        (volume,) = executors[f"exec-{task}"]["secretAsVolume"]
        assert volume["secretName"] == "gcs-credentials" and volume["mountPath"] == "/var/secrets/gcs"
        env = {e["name"]: e["value"] for e in _executor(spec, task).get("env", [])}
        # The KFP launcher runs in the step's container and reads the same variable.
        assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/var/secrets/gcs/key.json"
    if name == "monitoring":
        return  # nothing trains or deploys
    assert "accelerator" not in _executor(spec, "train-model")["resources"]
    assert "tolerations" not in executors["exec-train-model"]
    # Serving pods get the read-only key, never the pipeline's writable one.
    deploy = _inner_deploy_inputs(spec)
    assert deploy["gcs_credentials_secret"]["runtimeValue"]["constant"] == "gcs-serving-credentials"


def test_serving_cannot_be_given_the_pipeline_key():
    from planets_mlops.pipelines.platform import ClusterOptions

    with pytest.raises(InvalidParameterError, match="serving_gcs_key_secret='k'.*read-only"):
        ClusterOptions(gcs_key_secret="k", serving_gcs_key_secret="k")


def test_monitoring_alert_is_gated_on_drift_uncached_and_its_secrets_optional(compiled):
    spec, platform = compiled("monitoring")
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"resolve-production", "detect-drift", "condition-1"}
    assert tasks["condition-1"]["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--detect-drift-drift_verdict'] == 'drift'"
    )
    all_tasks = _all_tasks(spec)
    for task in ("resolve-production", "detect-drift", "raise-alert"):
        assert all_tasks[task]["cachingOptions"].get("enableCache") in (None, False), task
        assert _executor(spec, task)["image"] == RUNTIME_IMAGE
    secrets = {
        s["secretName"]: s for s in platform["deploymentSpec"]["executors"]["exec-raise-alert"]["secretAsEnv"]
    }
    assert set(secrets) == {"monitoring-webhook", "label-studio"}
    assert all(s.get("optional") for s in secrets.values())
    assert {m["envVar"] for m in secrets["monitoring-webhook"]["keyToEnv"]} == {"MONITORING_WEBHOOK_URL"}


def test_monitoring_follows_production_and_its_alert_starts_runs_as_its_own_run(compiled):
    # Issue 22 items 3 and 5: no model version is pinned in the pipeline (production is
    # resolved when each run starts), and the alert pod learns its namespace and service
    # account from the downward API and carries the label the pipelines-token PodDefault selects.
    from planets_mlops.monitoring.trigger import NAMESPACE_ENV, SERVICE_ACCOUNT_ENV, TOKEN_LABEL

    spec, platform = compiled("monitoring")
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["model_version"]["defaultValue"] == "" and inputs["model_uri"]["defaultValue"] == ""
    assert inputs["tracking"]["defaultValue"] is False and inputs["service_url"]["defaultValue"] == ""
    drift_inputs = spec["root"]["dag"]["tasks"]["detect-drift"]["inputs"]["parameters"]
    for name in ("model_version", "model_uri"):
        assert drift_inputs[name]["taskOutputParameter"] == {"producerTask": "resolve-production",
                                                              "outputParameterKey": name}  # fmt: skip
    executors = platform["deploymentSpec"]["executors"]
    (mlflow,) = executors["exec-resolve-production"]["secretAsEnv"]
    assert mlflow["secretName"] == "mlflow-tracking" and mlflow["optional"]
    alert = executors["exec-raise-alert"]
    assert {e["name"]: e["fieldPath"] for e in alert["fieldPathAsEnv"]} == {
        NAMESPACE_ENV: "metadata.namespace",
        SERVICE_ACCOUNT_ENV: "spec.serviceAccountName",
    }
    assert alert["podMetadata"]["labels"] == dict([TOKEN_LABEL])
    assert "podMetadata" not in executors.get("exec-detect-drift", {})  # only the alert gets the token
    alert_inputs = _all_tasks(spec)["raise-alert"]["inputs"]["parameters"]
    for name in ("retraining_service_account", "retraining_pipeline_root", "retraining_cooldown_hours"):
        assert alert_inputs[name]["componentInputParameter"] == f"pipelinechannel--{name}"


def test_no_pipeline_creates_volumes(compiled):
    # kustomize/base/runner-rbac.yaml grants no PVC rights (KFP's driver needs them only
    # for kfp-kubernetes CreatePVC/DeletePVC tasks): keep it that way or grant them.
    for name in CPU_STEPS:
        text = yaml.safe_dump(compiled(name)).lower()
        assert "createpvc" not in text and "deletepvc" not in text and "pvcmount" not in text, name


# What KFP 2.17's MLflow plugin sets in a step's container when a cluster turns it on
# (backend/src/v2/common/plugins/mlflow/handler.go RetrieveUserContainerEnvVars and
# backend/src/common/plugins/mlflow/config.go BuildCredentialEnvVars).
PLUGIN_ENV = {
    "MLFLOW_RUN_ID",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_WORKSPACE",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
}


@pytest.mark.parametrize("name", sorted(CPU_STEPS))
def test_no_step_sets_a_variable_the_mlflow_plugin_sets(compiled, name):
    from planets_mlops.pipelines.platform import KIND

    for cluster in (None, KIND):
        spec, platform = compiled(name, None, cluster)
        executors = platform.get("deploymentSpec", {}).get("executors", {})
        mlflow_steps = 0
        for executor_name, executor in spec["deploymentSpec"]["executors"].items():
            names = [e["name"] for e in executor["container"].get("env", [])]
            for secret in executors.get(executor_name, {}).get("secretAsEnv", []):
                names += [pair["envVar"] for pair in secret["keyToEnv"]]
                mlflow_steps += secret["secretName"] == "mlflow-tracking"
            assert not PLUGIN_ENV & set(names), (executor_name, sorted(PLUGIN_ENV & set(names)))
            assert len(names) == len(set(names)), executor_name
        assert mlflow_steps or name == "monitoring"


def test_frames_of_code_run_from_a_string_are_resolved_once():
    # KFP's task setters call inspect.stack(): for a frame with no file on disk, such as
    # code run from a string (pytest-xdist's workers run execnet that way), inspect walked
    # every loaded module on every call. index_frozen_modules keeps the walk's answer.
    import inspect
    import sys

    from planets_mlops.pipelines import platform

    name = "<code run from a string: test_compile>"
    seen = {}

    def probe():
        frame = sys._getframe(1)
        seen["walked"] = inspect.getmodule(frame, name)
        platform.index_frozen_modules()
        seen["kept"] = inspect.getmodule(frame, name)

    exec(compile("probe()", name, "exec"), {"probe": probe})
    assert seen["walked"] is None and seen["kept"] is None
    assert inspect.modulesbyfile[name] == platform._NO_MODULE
