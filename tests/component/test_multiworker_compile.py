"""Training on several nodes as a compile option (--train-nodes): the IR with it on and off.

Compile-only: no cluster ran a TrainJob here (docs/scaling.md). What runs the TrainJob is
tested in tests/pure/test_trainjob_manifests.py and tests/servers/test_multiworker.py.
"""

import pytest

from planets_mlops.components.images import TRAINING_GPU_IMAGE
from planets_mlops.errors import InvalidParameterError
from planets_mlops.knobs import MAX_TRAINJOB_DEADLINE_S, MultiWorkerParams
from planets_mlops.multiworker import SHARED_CLAIM, SHARED_DIR
from planets_mlops.pipelines.compile import compile_pipeline
from planets_mlops.pipelines.platform import STEP_RESOURCES, STEP_TIMEOUTS, GpuOptions
from tests.support.helpers import load_ir

TRAINING = ("training", "retraining")
ON = MultiWorkerParams(nodes=3, queue="team-a", deadline_seconds=7200)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compile each (pipeline, gpu, multiworker) once per module; returns (spec, platform, text)."""
    cache = {}

    def get(name, multiworker=None, gpu=None):
        key = (name, multiworker, gpu)
        if key not in cache:
            path = compile_pipeline(name, tmp_path_factory.mktemp("ir"), gpu, None, multiworker)
            cache[key] = (*load_ir(path), path.read_text())
        return cache[key]

    return get


def _tasks(spec):
    """Every task of the pipeline, in the root DAG and inside its conditions, by name."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def _renamed(value, old, new):
    """``value`` (a task's inputs, nested) with every mention of task/component ``old`` as ``new``."""
    if isinstance(value, dict):
        return {_renamed(k, old, new): _renamed(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, old, new) for v in value]
    if isinstance(value, str):
        return value.replace(old, new)
    return value


@pytest.mark.parametrize("name", [*TRAINING, "monitoring"])
def test_off_by_default_and_one_node_leaves_the_ir_unchanged(compiled, name):
    # The option is off unless asked for: nodes=1 compiles exactly what no option compiles.
    assert MultiWorkerParams().nodes == 1 and not MultiWorkerParams().on
    default_text = compiled(name)[2]
    assert compiled(name, MultiWorkerParams())[2] == default_text
    assert "train-multiworker" not in default_text and "pvcMount" not in default_text


def test_a_pipeline_that_trains_nothing_ignores_the_option(compiled):
    assert compiled("monitoring", ON)[2] == compiled("monitoring")[2]


@pytest.mark.parametrize("name", TRAINING)
def test_several_nodes_train_with_train_multiworker_on_the_shared_volume(compiled, name):
    spec, platform, _ = compiled(name, ON)
    tasks = _tasks(spec)
    assert "train-multiworker" in tasks and "train-model" not in tasks
    assert "exec-train-model" not in spec["deploymentSpec"]["executors"]
    assert tasks["train-multiworker"]["taskInfo"]["name"] == "Train model (3 nodes, GPU)"
    # Fed by the prepared data set, like train_model.
    prepared = tasks["train-multiworker"]["inputs"]["artifacts"]["prepared"]["taskOutputArtifact"]
    assert prepared == {"producerTask": "prepare-dataset", "outputArtifactKey": "prepared"}

    executor = platform["deploymentSpec"]["executors"]["exec-train-multiworker"]
    (mount,) = executor["pvcMount"]
    assert mount["mountPath"] == SHARED_DIR == "/mnt/shared"
    assert mount["constant"] == SHARED_CLAIM == "planets-shared"
    # The launching task waits for the TrainJob on a CPU node: no GPU, no GPU node pool.
    assert not {"nodeSelector", "tolerations", "emptyDirMounts"} & set(executor)
    container = spec["deploymentSpec"]["executors"]["exec-train-multiworker"]["container"]
    assert container["image"] == TRAINING_GPU_IMAGE
    assert "accelerator" not in container["resources"]
    sizes = STEP_RESOURCES["train-multiworker"]
    assert container["resources"]["resourceCpuLimit"] == sizes.cpu_limit
    assert container["resources"]["resourceMemoryLimit"] == sizes.memory_limit
    # Its pod outlives the TrainJob's deadline, with room for the copies.
    assert int(executor["activeDeadlineSeconds"]) == STEP_TIMEOUTS["train-multiworker"]
    assert STEP_TIMEOUTS["train-multiworker"] >= ON.deadline_seconds + 30 * 60
    retry = tasks["train-multiworker"]["retryPolicy"]
    assert retry["maxRetryCount"] == 3


@pytest.mark.parametrize("name", TRAINING)
def test_the_trainjob_gets_the_knobs_and_each_worker_the_training_tasks_placement(compiled, name):
    gpu = GpuOptions(count=2, cpu="6", memory="24Gi")
    spec, _, _ = compiled(name, ON, gpu)
    inputs = _tasks(spec)["train-multiworker"]["inputs"]["parameters"]

    def constant(key):
        return inputs[key]["runtimeValue"]["constant"]

    assert constant("workers") == 3
    assert constant("queue") == "team-a"
    assert constant("deadline_seconds") == 7200
    assert constant("namespace") == "kubeflow"
    assert constant("gpus_per_worker") == 2
    assert (constant("cpu_per_worker"), constant("memory_per_worker")) == ("6", "24Gi")
    # The training knobs stay pipeline inputs, as train_model takes them.
    prefix = "pipelinechannel--" if name == "retraining" else ""
    for knob in ("lr", "epochs", "conv_size", "dense_size", "batch_size", "seed", "augment"):
        assert inputs[knob]["componentInputParameter"] == f"{prefix}train_{knob}", knob


@pytest.mark.parametrize("name", TRAINING)
def test_the_chiefs_model_feeds_the_same_downstream_steps(compiled, name):
    # Every other task is the same task with the same inputs, the training task renamed in
    # them: evaluate, register, package (and push-predictions) read train-multiworker's model.
    off, _, _ = compiled(name)
    on, _, _ = compiled(name, ON)
    off_tasks = {k: v for k, v in _tasks(off).items() if k != "train-model"}
    on_tasks = {k: v for k, v in _tasks(on).items() if k != "train-multiworker"}
    assert set(off_tasks) == set(on_tasks)
    readers = set()
    for task_name, task in off_tasks.items():
        expected = _renamed(task, "train-model", "train-multiworker")
        assert on_tasks[task_name].get("inputs") == expected.get("inputs"), task_name
        assert on_tasks[task_name].get("dependentTasks") == expected.get("dependentTasks"), task_name
        if expected != task:
            readers.add(task_name)
    assert {"evaluate-model", "register-model", "package-model"} <= readers
    if name == "retraining":
        assert "push-predictions" in readers
    model = _tasks(on)["evaluate-model"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
    assert model == {"producerTask": "train-multiworker", "outputArtifactKey": "model"}
    # The pipeline's inputs are the same: the option is compile-time, not a run parameter.
    assert on["root"]["inputDefinitions"] == off["root"]["inputDefinitions"]


def test_cli_compile_train_nodes(tmp_path, capsys):
    from planets_mlops.app.cli import main

    args = ["compile", "training", "--out-dir", str(tmp_path), "--no-components"]
    assert main([*args, "--train-nodes", "4", "--train-queue", "ml", "--gpu-count", "0"]) == 0
    spec, platform = load_ir(tmp_path / "pipelines" / "training.yaml")
    inputs = _tasks(spec)["train-multiworker"]["inputs"]["parameters"]
    assert inputs["workers"]["runtimeValue"]["constant"] == 4
    assert inputs["queue"]["runtimeValue"]["constant"] == "ml"
    assert inputs["gpus_per_worker"]["runtimeValue"]["constant"] == 0
    # --gpu-count 0: each worker gets the CPU training task's size (fits one e2-standard-4).
    assert inputs["cpu_per_worker"]["runtimeValue"]["constant"] == GpuOptions(count=0).sizes[0]
    assert platform["deploymentSpec"]["executors"]["exec-train-multiworker"]["pvcMount"]

    assert main([*args, "--train-nodes", "0"]) == 2
    assert "--train-nodes=0" in capsys.readouterr().err
    # A TrainJob setting without a TrainJob would be dropped without a word: refused.
    assert main([*args, "--train-queue", "ml"]) == 2
    err = capsys.readouterr().err
    assert "--train-queue='ml'" in err and "--train-nodes 2" in err


def test_trainjob_deadlines_fit_the_launching_tasks_own():
    assert MAX_TRAINJOB_DEADLINE_S + 30 * 60 == STEP_TIMEOUTS["train-multiworker"]
    MultiWorkerParams(nodes=2, deadline_seconds=MAX_TRAINJOB_DEADLINE_S)
    with pytest.raises(InvalidParameterError, match="--train-deadline-seconds"):
        MultiWorkerParams(nodes=2, deadline_seconds=MAX_TRAINJOB_DEADLINE_S + 1)
    with pytest.raises(InvalidParameterError, match="--train-nodes"):
        MultiWorkerParams(nodes=-1)
