"""Training on several nodes, opt-in, through a Kubeflow Trainer TrainJob of N workers.

Each worker runs :func:`planets_mlops.train.train_model` under ``MultiWorkerMirroredStrategy``.
Kubeflow Trainer v2 ships no TensorFlow runtime, so the suite ships its own
``ClusterTrainingRuntime`` (``kustomize/trainer-multiworker``): a JobSet of one
replicated job ``node`` whose pods run ``python -m planets_mlops.multiworker worker``. Each
pod learns its JobSet name, job index and completion index from its annotations (downward
API, set in the runtime), derives ``TF_CONFIG`` from them (:func:`tf_config`, a pure
function) and trains; worker 0 is the chief and writes the model folder.

The launching side (:func:`run_trainjob`, the ``train_multiworker`` component) copies the
prepared shards to a shared volume, creates the TrainJob (:func:`trainjob_manifest`: Kueue
queue label, deadline; the runtime sets the TTL), streams the chief's log, waits for
``Complete`` or ``Failed`` and returns the chief's model folder.

No cluster ran this here: the manifests are validated against the Trainer CRDs' schemas and
the training runs as two local worker processes (tests/servers/test_multiworker.py); the
launching step runs against a fake Kubernetes API (tests/pure/test_trainjob_manifests.py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from planets_mlops.errors import InvalidParameterError, PlanetsError

log = logging.getLogger(__name__)

TRAINER_API = ("trainer.kubeflow.org", "v1alpha1")
RUNTIME_NAME = "planets-tf-multiworker"
"""The ``ClusterTrainingRuntime`` the suite ships (kustomize/components/trainer-multiworker)."""
REPLICATED_JOB = "node"
PORT = 12345
"""The port each worker's collective-ops server listens on."""
SHARED_DIR = "/mnt/shared"
"""Where the runtime (and the launching step) mount the shared ``ReadWriteMany`` volume."""
SHARED_CLAIM = "planets-shared"
"""The ``ReadWriteMany`` claim of that volume (kustomize/trainer-multiworker/shared-volume.yaml)."""
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Set by the runtime from the pod's annotations (downward API), and by the TrainJob.
ENV_JOBSET = "PLANETS_JOBSET_NAME"
ENV_JOB_INDEX = "PLANETS_JOB_INDEX"
ENV_POD_INDEX = "PLANETS_POD_INDEX"
ENV_WORKERS = "PLANETS_NUM_WORKERS"
ENV_RUN_DIR = "PLANETS_RUN_DIR"
ENV_PARAMS = "PLANETS_TRAIN_PARAMS"


class TrainJobFailed(PlanetsError):
    """The TrainJob ended ``Failed`` (deadline, a crashed worker) or never finished."""


def worker_hostnames(
    jobset: str, workers: int, job_index: int = 0, replicated_job: str = REPLICATED_JOB
) -> list[str]:
    """The stable DNS names of a JobSet's pods: ``<jobset>-<rjob>-<job>-<pod>.<jobset>``.

    JobSet gives each pod of an indexed Job that hostname, under a headless Service named
    after the JobSet (its default subdomain).
    """
    if workers < 1:
        raise InvalidParameterError("workers", workers, "1 or more")
    return [f"{jobset}-{replicated_job}-{job_index}-{pod}.{jobset}" for pod in range(workers)]


def tf_config(hostnames: Iterable[str], index: int, port: int = PORT) -> dict[str, Any]:
    """``TF_CONFIG`` of worker ``index`` of a cluster of ``hostnames`` (worker 0 is the chief).

    Raises:
        InvalidParameterError: no hostnames, or ``index`` outside them.
    """
    hosts = list(hostnames)
    if not hosts:
        raise InvalidParameterError("hostnames", hosts, "at least one worker's hostname")
    if not 0 <= index < len(hosts):
        raise InvalidParameterError("index", index, f"0 to {len(hosts) - 1} (the worker's completion index)")
    return {
        "cluster": {"worker": [f"{host}:{port}" for host in hosts]},
        "task": {"type": "worker", "index": index},
    }


def tf_config_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """``TF_CONFIG`` from the variables the runtime sets (JobSet name, job and pod index, workers).

    Raises:
        InvalidParameterError: a variable is missing or not an integer where one is needed.
    """

    def number(name: str) -> int:
        raw = env.get(name, "")
        try:
            return int(raw)
        except ValueError:
            raise InvalidParameterError(
                name, raw, "an integer", "The runtime sets it from the pod's JobSet annotations."
            ) from None

    jobset = env.get(ENV_JOBSET, "")
    if not jobset:
        raise InvalidParameterError(ENV_JOBSET, jobset, "the JobSet's name (the TrainJob's)")
    hosts = worker_hostnames(jobset, number(ENV_WORKERS), number(ENV_JOB_INDEX))
    return tf_config(hosts, number(ENV_POD_INDEX))


def is_chief(config: Mapping[str, Any]) -> bool:
    """Worker 0 writes the model folder; the others write theirs to a scratch folder."""
    return int(config["task"]["index"]) == 0


def run_worker(
    prepared: Path, model_dir: Path, params: Any, config: Mapping[str, Any], keep_scratch: bool = False
) -> Any:
    """Train as one worker of ``config``'s cluster under ``MultiWorkerMirroredStrategy``.

    Every worker trains and writes a model folder (saving reads variables, which may take a
    collective step); the chief writes ``model_dir``, the others ``model_dir`` + ``-worker-N``,
    removed afterwards.

    Args:
        prepared: The prepared data set (on the shared volume).
        model_dir: Where the chief writes the model folder.
        params: The training parameters.
        config: This worker's ``TF_CONFIG`` (:func:`tf_config`).
        keep_scratch: Keep a non-chief worker's model folder (the tests compare it).

    Returns:
        The worker's :class:`planets_mlops.train.TrainResult`.
    """
    os.environ["TF_CONFIG"] = json.dumps(config)
    from planets_mlops.train import configure_tensorflow, train_model

    tf = configure_tensorflow(params.seed, params.threads)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    workers = len(config["cluster"]["worker"])
    out = Path(model_dir) if is_chief(config) else Path(f"{model_dir}-worker-{config['task']['index']}")
    result = train_model(Path(prepared), out, params, strategy=strategy, workers=workers)
    if not is_chief(config) and not keep_scratch:
        shutil.rmtree(out, ignore_errors=True)
    return result


@dataclass(frozen=True)
class TrainJobOptions:
    """What the launching step asks of the cluster.

    Attributes:
        workers: Nodes (pods) of the TrainJob, one replica each.
        image: The training image the workers run.
        queue: The Kueue ``LocalQueue`` (label ``kueue.x-k8s.io/queue-name``); empty: none.
        deadline_seconds: ``activeDeadlineSeconds``: the TrainJob fails after this long.
        cpu: CPU request = limit per worker.
        memory: Memory request = limit per worker.
        gpus: GPUs per worker (``nvidia.com/gpu``); 0: CPU.
        namespace: Where the TrainJob is created.
    """

    workers: int = 2
    image: str = ""
    queue: str = ""
    deadline_seconds: int = 3600
    cpu: str = "4"
    memory: str = "16Gi"
    gpus: int = 0
    namespace: str = "kubeflow"

    def __post_init__(self) -> None:
        """Refuse sizes the TrainJob could not run with."""
        if self.workers < 1:
            raise InvalidParameterError("workers", self.workers, "1 or more")
        if self.deadline_seconds < 1:
            raise InvalidParameterError("deadline_seconds", self.deadline_seconds, "1 or more seconds")
        if self.gpus < 0:
            raise InvalidParameterError("gpus", self.gpus, "0 (CPU) or more")


def trainjob_manifest(name: str, run_dir: str, params: Any, options: TrainJobOptions) -> dict[str, Any]:
    """The TrainJob: ``options.workers`` nodes of the suite's runtime on ``run_dir``'s shards.

    ``run_dir`` (on the shared volume) holds ``prepared/``; the chief writes ``model/``.
    """
    limits: dict[str, str] = {"cpu": options.cpu, "memory": options.memory}
    if options.gpus:
        limits["nvidia.com/gpu"] = str(options.gpus)
    labels = {"app.kubernetes.io/part-of": "planets-mlops"}
    if options.queue:
        labels[QUEUE_LABEL] = options.queue
    trainer: dict[str, Any] = {
        "numNodes": options.workers,
        "env": [
            {"name": ENV_WORKERS, "value": str(options.workers)},
            {"name": ENV_RUN_DIR, "value": run_dir},
            {"name": ENV_PARAMS, "value": json.dumps(asdict(params), sort_keys=True)},
        ],
        "resourcesPerNode": {"requests": dict(limits), "limits": dict(limits)},
    }
    if options.image:
        trainer["image"] = options.image
    return {
        "apiVersion": "/".join(TRAINER_API),
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": options.namespace, "labels": labels},
        "spec": {
            "runtimeRef": {
                "apiGroup": TRAINER_API[0],
                "kind": "ClusterTrainingRuntime",
                "name": RUNTIME_NAME,
            },
            "trainer": trainer,
            "activeDeadlineSeconds": options.deadline_seconds,
        },
    }


def trainjob_state(job: Mapping[str, Any]) -> str:
    """``Complete``, ``Failed`` or ``""`` (still running) from a TrainJob's conditions."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return str(condition["type"])
    return ""


def _failure_message(job: Mapping[str, Any]) -> str:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed":
            return f"{condition.get('reason', '')}: {condition.get('message', '')}"
    return ""


def chief_selector(name: str) -> str:
    """Label selector of the chief's pod (JobSet's labels: job 0, completion index 0)."""
    return (
        f"jobset.sigs.k8s.io/jobset-name={name},jobset.sigs.k8s.io/job-index=0,"
        "batch.kubernetes.io/job-completion-index=0"
    )


def run_trainjob(
    custom: Any,
    core: Any,
    prepared: Path,
    model_dir: Path,
    params: Any,
    options: TrainJobOptions,
    name: str,
    shared_dir: Path = Path(SHARED_DIR),
    poll_seconds: float = 10.0,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Copy the shards to the shared volume, run the TrainJob, copy the chief's model back.

    Args:
        custom: A ``kubernetes.client.CustomObjectsApi``.
        core: A ``kubernetes.client.CoreV1Api`` (the chief's log).
        prepared: The prepared data set.
        model_dir: Where the chief's model folder is copied.
        params: The training parameters (:class:`planets_mlops.knobs.TrainParams`).
        options: Workers, image, queue, deadline, sizes.
        name: The TrainJob's name (unique per run).
        shared_dir: The shared volume, as mounted in this step and in the workers.
        poll_seconds: Seconds between status reads.
        echo: Where the chief's log lines go.

    Returns:
        The finished TrainJob.

    Raises:
        TrainJobFailed: the TrainJob failed, or its deadline (plus a minute) passed
            without an end, or the chief wrote no model.
    """
    run_dir = Path(shared_dir) / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    shutil.copytree(prepared, run_dir / "prepared")
    manifest = trainjob_manifest(name, str(run_dir), params, options)
    group, version = TRAINER_API
    custom.create_namespaced_custom_object(group, version, options.namespace, "trainjobs", manifest)
    log.info("Created TrainJob %s/%s (%d workers)", options.namespace, name, options.workers)
    streamed = False
    give_up = time.monotonic() + options.deadline_seconds + 60
    while True:
        job = custom.get_namespaced_custom_object(group, version, options.namespace, "trainjobs", name)
        state = trainjob_state(job)
        if not streamed:
            streamed = _stream_chief_log(core, options.namespace, name, echo)
        if state == "Failed":
            raise TrainJobFailed(f"TrainJob {name} failed ({_failure_message(job)}); see its pods' logs.")
        if state == "Complete":
            break
        if time.monotonic() > give_up:
            raise TrainJobFailed(
                f"TrainJob {name} did not finish within activeDeadlineSeconds="
                f"{options.deadline_seconds} plus a minute."
            )
        time.sleep(poll_seconds)
    chief_model = run_dir / "model"
    if not chief_model.is_dir():
        raise TrainJobFailed(f"TrainJob {name} completed but its chief wrote no model at {chief_model}.")
    shutil.copytree(chief_model, model_dir, dirs_exist_ok=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    return dict(job)


def _stream_chief_log(core: Any, namespace: str, name: str, echo: Callable[[str], None]) -> bool:
    """Follow the chief's log to its end once its pod runs; False while it has none yet."""
    pods = core.list_namespaced_pod(namespace, label_selector=chief_selector(name)).items
    if not pods or pods[0].status.phase == "Pending":
        return False
    stream = core.read_namespaced_pod_log(
        pods[0].metadata.name, namespace, container=REPLICATED_JOB, follow=True, _preload_content=False
    )
    for line in stream.stream():
        echo(line.decode(errors="replace").rstrip("\n"))
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m planets_mlops.multiworker worker``: the runtime's entrypoint in each pod."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["worker"]:
        print("usage: python -m planets_mlops.multiworker worker", file=sys.stderr)
        return 2
    from planets_mlops.knobs import TrainParams

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = os.environ
    config = tf_config_from_env(env)
    params = TrainParams(**json.loads(env.get(ENV_PARAMS, "{}")))
    run_dir = Path(env[ENV_RUN_DIR])
    log.info("Worker %d of %s", config["task"]["index"], config["cluster"]["worker"])
    run_worker(run_dir / "prepared", run_dir / "model", params, config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
