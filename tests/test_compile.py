"""Compile every pipeline and assert selected fields of the IR (not a golden file)."""

from planets_mlops.components.images import RUNTIME_IMAGE, TRAINING_GPU_IMAGE
from planets_mlops.pipelines import PIPELINES
from planets_mlops.pipelines.compile import compile_all, compile_pipeline

from tests.helpers import load_ir


def _executor(spec, task):
    return spec["deploymentSpec"]["executors"][f"exec-{task}"]["container"]


def test_every_pipeline_compiles(tmp_path):
    paths = compile_all(tmp_path)
    assert {p.stem for p in paths} == set(PIPELINES)
    for path in paths:
        spec, _ = load_ir(path)
        assert spec["pipelineInfo"]["name"] == path.stem


def test_training_ir_images_gpu_and_caching(tmp_path):
    spec, platform = load_ir(compile_pipeline("training", tmp_path))
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"pull-data", "prepare-dataset", "train-model", "evaluate-model", "condition-1"}
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
        compile_pipeline("training", tmp_path, GpuOptions(count=4, node_pool="a100", shm_size="8Gi"))
    )
    assert _executor(spec, "train-model")["resources"]["accelerator"]["resourceCount"] == "4"
    train_platform = platform["deploymentSpec"]["executors"]["exec-train-model"]
    assert train_platform["nodeSelector"]["labels"]["cloud.google.com/gke-nodepool"] == "a100"
    assert train_platform["emptyDirMounts"][0]["sizeLimit"] == "8Gi"

    spec, platform = load_ir(compile_pipeline("training", tmp_path, GpuOptions(count=0)))
    assert "accelerator" not in _executor(spec, "train-model")["resources"]
    assert "exec-train-model" not in platform.get("deploymentSpec", {}).get("executors", {})


def test_cli_compile_passes_gpu_flags(tmp_path):
    from planets_mlops.app.cli import main

    assert (
        main(["compile", "training", "--gpu-count", "2", "--out-dir", str(tmp_path), "--no-components"]) == 0
    )
    spec, _ = load_ir(tmp_path / "pipelines" / "training.yaml")
    assert _executor(spec, "train-model")["resources"]["accelerator"]["resourceCount"] == "2"


def _inner_tasks(spec, *conditions):
    tasks = {}
    for name in conditions:
        tasks.update(spec["components"][f"comp-{name}"]["dag"]["tasks"])
    return tasks


def test_package_and_deploy_are_gated_and_never_cached(tmp_path):
    spec, _ = load_ir(compile_pipeline("training", tmp_path))
    gate = spec["root"]["dag"]["tasks"]["condition-1"]
    assert "evaluate-model" in gate["triggerPolicy"]["condition"]
    inner = _inner_tasks(spec, "condition-1", "condition-2")
    assert set(inner) >= {"package-model", "deploy-model", "condition-2"}
    assert "pipelinechannel--deploy" in inner["condition-2"]["triggerPolicy"]["condition"]
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
    for task in ("pull-data", "import-labels", "push-predictions", "deploy-model"):
        assert all_tasks[task]["cachingOptions"].get("enableCache") in (None, False), task
