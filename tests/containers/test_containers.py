"""The project's images, built by ``make images``, run with Podman.

Whole pipelines run under ``kfp.local.DockerRunner`` through Podman's Docker-compatible
API, each task in the image the compiled IR names, as the image's non-root user. As on a
cluster, the containers share nothing with the host but the pipeline root: the git data
repository is served by ``git daemon``, the DVC remote and the production model live in
the GCS emulator, Label Studio is the real server, all on 127.0.0.1 (host network).
The serving image runs as a pod would: non-root, read-only root filesystem, bento fetched
from the emulator through ``BENTO_URI``.

Tests FAIL (not skip) when podman or an image is missing: ``make images`` builds them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kfp import compiler

from planets_mlops.components.images import (
    ALL_IMAGES,
    IMAGE_TAG,
    RUNTIME_IMAGE,
    SERVING_IMAGE,
    TRAINING_GPU_IMAGE,
)
from tests.support.fixtures.data import SMALL_CLASSES
from tests.support.fixtures.gcs import dvc_remote_config
from tests.support.fixtures.serving import TEST_REVISION
from tests.support.helpers import upload_to_gcs

IMAGE_USER = "10001"
TINY = {"train_epochs": 1, "train_conv_size": 8, "train_dense_size": 16, "train_output_classes": 3}


def podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def in_image(image: str, script: str, *options: str) -> subprocess.CompletedProcess[str]:
    return podman("run", "--rm", *options, image, "sh", "-c", script)


@pytest.fixture(scope="session")
def built_images() -> dict[str, str]:
    """The three images at this checkout's tag; fails with the command that builds them."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make containers-setup`", pytrace=False)
    missing = [ref for ref in ALL_IMAGES.values() if podman("image", "exists", ref).returncode != 0]
    if missing:
        pytest.fail(f"Images not built for this checkout: {missing}. Run `make images`.", pytrace=False)
    return dict(ALL_IMAGES)


@pytest.fixture(scope="session")
def podman_api(built_images) -> Iterator[str]:
    from planets_mlops.app.containers import podman_service

    with podman_service() as url:
        yield url


@pytest.fixture(scope="session")
def served_data_repo(tmp_path_factory, small_raw, gcs_emulator) -> Iterator[dict]:
    """A git + DVC data repository served by ``git daemon`` (push allowed), DVC remote on GCS."""
    from planets_mlops.app.containers import git_daemon
    from planets_mlops.datarepo import create_data_repo

    base = tmp_path_factory.mktemp("served")
    bucket = gcs_emulator.make_bucket("planets-dvc")
    remote_config = dvc_remote_config(gcs_emulator.url)
    commit = create_data_repo(
        small_raw, base / "repo", f"{bucket}/store", remote_config=remote_config, tag="v1"
    )
    with git_daemon(base) as url:
        yield {
            "url": f"{url}/repo",
            "repo": base / "repo",
            "commit": commit,
            "remote_config": remote_config,
        }


@pytest.fixture
def shared_root(tmp_path) -> Iterator[Path]:
    """A pipeline root the images' user can write to; removed afterwards."""
    from planets_mlops.app.containers import shared_pipeline_root

    root = shared_pipeline_root()
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def compiled_images(pipeline, tmp_path: Path) -> set[str]:
    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    spec = next(yaml.safe_load_all(path.read_text()))
    return {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}


def assert_ran_in_images(run, images: set[str]) -> None:
    log = run.log_file.read_text()
    for image in images:
        assert f"Found image {image!r}" in log, image
    # Written inside a container by the image's non-root user, not by this process.
    # (Metrics-only artifacts have no file; parameter-only tasks write only executor output.)
    files = {t: [p for p in r.artifacts.values() if p.exists()] for t, r in run.tasks.items()}
    assert all(files[t] for t in ("pull-data", "prepare-dataset", "train-model", "package-model"))
    owners = {t: {str(p.stat().st_uid) for p in paths} for t, paths in files.items() if paths}
    assert all(uids == {IMAGE_USER} for uids in owners.values()), owners


# ----------------------------------------------------------------------------- the images
def test_images_carry_their_tag_and_name_their_siblings(built_images):
    for name, ref in built_images.items():
        labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", ref).stdout)
        assert labels["org.opencontainers.image.version"] == IMAGE_TAG, name
    # Code inside the runtime image names the same serving image (deploy_model's default).
    inside = in_image(
        RUNTIME_IMAGE, "python -c 'from planets_mlops.components.images import ALL_IMAGES as A; print(A)'"
    )
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.strip() == repr(built_images)


@pytest.mark.parametrize("image", [RUNTIME_IMAGE, TRAINING_GPU_IMAGE, SERVING_IMAGE])
def test_images_run_as_non_root(built_images, image):
    result = in_image(image, "id -u", "--entrypoint", "")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == IMAGE_USER


@pytest.mark.parametrize("image", [RUNTIME_IMAGE, TRAINING_GPU_IMAGE])
def test_launcher_artifact_roots_are_writable_without_root(built_images, image):
    # The KFP launcher copies gs://b/p to /gcs/b/p (and minio/s3 alike) in the user's
    # container; the image user can create those trees, but not new folders at /.
    script = (
        "for r in /gcs /minio /s3 /oci; do mkdir -p $r/bucket/run/task && touch $r/bucket/run/task/out; done"
    )
    assert in_image(image, script).returncode == 0
    refused = in_image(image, "mkdir /elsewhere")
    assert refused.returncode != 0 and "Permission denied" in refused.stderr


def test_training_image_has_the_gpu_driver_paths_and_cuda_build(built_images):
    script = (
        'echo "$LD_LIBRARY_PATH"; echo "$PATH"; '
        "python -c 'import tensorflow as tf; "
        'print(tf.test.is_built_with_cuda(), len(tf.config.list_physical_devices("GPU")))\''
    )
    result = in_image(TRAINING_GPU_IMAGE, script)
    assert result.returncode == 0, result.stderr[-2000:]
    ld_path, path, tf_line = result.stdout.strip().splitlines()[-3:]
    assert "/usr/local/nvidia/lib64" in ld_path.split(":")
    assert "/usr/local/nvidia/bin" in path.split(":")
    assert tf_line == "True 0"  # the CUDA build, and no GPU on this machine


def test_training_image_fails_fast_when_its_gpu_is_not_usable(built_images):
    # The CUDA build with the driver path set, a GPU given, none visible (no device here).
    code = "from planets_mlops.accelerators import check_gpus; check_gpus()"
    result = podman("run", "--rm", "-e", "PLANETS_GPU_COUNT=1", TRAINING_GPU_IMAGE, "python", "-c", code)
    assert result.returncode != 0
    assert "AcceleratorError: train_model was given 1 GPU but TensorFlow sees none" in result.stderr
    assert "nvidia-smi" in result.stderr
    ok = podman("run", "--rm", TRAINING_GPU_IMAGE, "python", "-c", code)  # none given: trains on CPU
    assert ok.returncode == 0, ok.stderr[-2000:]


# ----------------------------------------------------------------------------- pipelines
def test_training_pipeline_in_its_images(podman_api, served_data_repo, shared_root, tmp_path):
    from planets_mlops.app.containers import docker_runner
    from planets_mlops.app.local import run_local
    from planets_mlops.pipelines.training import training

    images = compiled_images(training, tmp_path)
    assert images == {RUNTIME_IMAGE, TRAINING_GPU_IMAGE}
    run = run_local(
        training,
        shared_root,
        log_file=tmp_path / "run.log",
        runner=docker_runner(),
        data_repo_url=served_data_repo["url"],
        data_rev="v1",
        data_path="data/raw",
        dvc_remote_config=served_data_repo["remote_config"],
        **TINY,
    )
    assert set(run.tasks) == {
        "pull-data",
        "prepare-dataset",
        "train-model",
        "evaluate-model",
        "register-model",
        "package-model",
        "promote-model",
    }
    assert run.metadata("pull-data", "dataset")["commit"] == served_data_repo["commit"]
    assert run.tasks["evaluate-model"].parameters["promote"] is True
    assert (run.artifact("train-model", "model") / "model.onnx").is_file()
    # The reference profile is made in the training image (planets_mlops.monitoring installed).
    assert (run.artifact("train-model", "model") / "monitoring_reference.json").is_file()
    assert run.metadata("package-model", "bento")["bento_tag"].startswith("planets_classifier:")
    assert run.artifact("package-model", "bento").stat().st_size > 10_000
    assert_ran_in_images(run, images)
    # The training step handed its job to the warm training container the run started
    # (TensorFlow imported while pull and prepare ran), and its epochs are in its own log.
    train_log = (run.log_file.parent / "train-model.log").read_text()
    assert "Training in the warm trainer" in train_log and "progress: epoch 1 of" in train_log
    assert "new process" not in train_log
    assert not list(shared_root.glob(".warm-trainer-*"))


@pytest.fixture
def labelled_project(ls_client, ls_project):
    """4 correctly labelled extra images per class, 1 unlabelled (3 classes x 5 images)."""
    from planets_mlops.app.labelling_demo import extra_images, true_label

    ls_client.upload_images(ls_project.id, extra_images(SMALL_CLASSES, per_class=5))
    for n, task in enumerate(ls_client.export_tasks(ls_project.id)):
        if n % 5 != 4:
            ls_client.annotate(
                task["id"], [true_label(task["data"]["image"].rsplit("/", 1)[-1].split("-", 1)[1])]
            )
    return ls_project


def test_retraining_pipeline_in_its_images(
    podman_api, served_data_repo, gcs_emulator, ls_env, labelled_project, tiny_model, shared_root, tmp_path
):
    from planets_mlops.app.containers import docker_runner
    from planets_mlops.app.local import run_local
    from planets_mlops.datarepo import git
    from planets_mlops.pipelines.retraining import retraining

    bucket = gcs_emulator.make_bucket("planets-models")
    for path in tiny_model.iterdir():
        upload_to_gcs(path, f"{bucket}/production/model/{path.name}")
    images = compiled_images(retraining, tmp_path)
    assert images == {RUNTIME_IMAGE, TRAINING_GPU_IMAGE}
    branch = f"labels-containers-{labelled_project.id}"
    run = run_local(
        retraining,
        shared_root,
        log_file=tmp_path / "run.log",
        runner=docker_runner(),
        data_repo_url=served_data_repo["url"],
        data_rev="v1",
        dvc_remote_config=served_data_repo["remote_config"],
        label_studio_project=labelled_project.title,
        min_new_labels=5,
        publish_labels=True,
        publish_branch=branch,
        production_model_uri=f"{bucket}/production/model",
        min_improvement=-1.0,
        **TINY,
    )
    assert {
        "pull-data", "import-labels", "check-new-labels", "prepare-dataset", "train-model",
        "evaluate-model", "package-model", "push-predictions",
    } <= set(run.tasks)  # fmt: skip
    merged = run.metadata("import-labels", "merged")
    assert merged["new_labels"] == 12 and merged["published_new_version"] is True
    # Pushed through git daemon from inside the container; data pushed to the GCS remote.
    assert git(served_data_repo["repo"], "rev-parse", branch) == merged["commit"]
    assert run.metadata("prepare-dataset", "prepared")["split_method"] == "stable-over-base"
    assert "delta_val_accuracy" in run.metadata("evaluate-model", "metrics")
    assert run.metadata("push-predictions", "summary")["predicted_tasks"] == 3
    assert_ran_in_images(run, images)


# ----------------------------------------------------------------------------- serving
def test_serving_image_serves_a_bento_from_gcs(built_images, gcs_emulator, packaged_bento, tmp_path):
    import httpx

    from planets_mlops.app.containers import serve_container

    bucket = gcs_emulator.make_bucket("planets-artifacts")
    uri = f"{bucket}/pipeline-root/run-1/package-model/bento/planets.bento"
    upload_to_gcs(packaged_bento["archive"], uri)
    from planets_mlops.app.labelling_demo import extra_images

    image = extra_images(SMALL_CLASSES, per_class=1)[0]
    with serve_container(
        SERVING_IMAGE, uri, packaged_bento["bento_tag"], env={"PLANETS_WORKERS": "1"}
    ) as server:
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
            assert client.get("/readyz").status_code == 200
            metadata = client.get("/metadata").json()
            answer = client.post("/predict", files={"image": (image.name, image.read_bytes(), "image/jpeg")})
        user = podman("exec", server.container, "id", "-u").stdout.strip()
        read_only = podman("exec", server.container, "touch", "/opt/x")
    assert metadata["data_revision"] == TEST_REVISION and metadata["classes"] == list(SMALL_CLASSES)
    assert answer.status_code == 200 and answer.json()["prediction"] in SMALL_CLASSES
    assert user == IMAGE_USER
    assert read_only.returncode != 0 and "Read-only file system" in read_only.stderr


# ----------------------------------------------------------------------------- the task runner
def test_task_containers_ask_the_engine_once_and_are_removed(podman_api, built_images, shared_root):
    import os
    import uuid

    from kfp.local import config, docker_task_handler, status

    from planets_mlops.app import containers

    containers.docker_runner()  # installs run_task and run_container into kfp
    assert docker_task_handler.DockerTaskHandler.run is containers.run_task

    # This test's task containers carry a label of their own: the other tests of the tier,
    # running beside this one, start containers of the same image.
    label = f"planets-test={uuid.uuid4().hex}"

    def ours() -> set[str]:
        listed = podman("ps", "-a", "--filter", f"label={label}", "--format", "{{.ID}}")
        return set(listed.stdout.split())

    probe = podman("create", "--label", label, RUNTIME_IMAGE, "true").stdout.strip()
    assert ours() == {probe[:12]}  # the filter sees a container with the label
    podman("rm", probe)
    containers._ENGINE_ANSWERS.clear()
    containers.PHASES = []
    try:
        key, value = label.split("=")
        runner = config.DockerRunner(network_mode="host", labels={key: value})
        for command in (["true"], ["sh", "-c", f"touch {shared_root}/written"], ["false"]):
            handler = docker_task_handler.DockerTaskHandler(RUNTIME_IMAGE, command, str(shared_root), runner)
            expected = status.Status.FAILURE if command == ["false"] else status.Status.SUCCESS
            assert handler.run() == expected, command
        phases = containers.PHASES
    finally:
        containers.PHASES = None
    # The API version and info() were asked once for the three tasks, of this engine.
    assert set(containers._ENGINE_ANSWERS) == {(os.environ["DOCKER_HOST"], w) for w in ("version", "info")}
    assert (shared_root / "written").is_file()  # the pipeline root is mounted, read-write
    assert [set(p) for p in phases] == [{"image", "lookup", "start", "run", "logs", "remove"}] * 3
    assert ours() == set()  # every task container removed


def test_a_task_container_s_exit_status_and_whole_output_come_back(podman_api, built_images, capsys):
    """run_container sees the exit from the container's state (not Podman's slower ``wait``),
    and still returns the exit status and every line the task wrote, the last ones included."""
    import docker

    from planets_mlops.app import containers

    # One stream per script: the engine keeps each stream's records whole and in order, but
    # where both write, a record of one can fall inside a line of the other.
    scripts = {
        "stdout": "import sys\nfor i in range(20000): print('line', i)\nprint('last words'); sys.exit(3)",
        "stderr": "import sys\nfor i in range(20000): print('line', i, file=sys.stderr)\n"
        "print('last words', file=sys.stderr); sys.exit(3)",
    }
    expected = [f"line {i}" for i in range(20000)] + ["last words"]
    client = docker.from_env()
    try:
        for _ in range(2):
            for stream, script in scripts.items():
                code = containers.run_container(
                    client, RUNTIME_IMAGE, ["python", "-c", script], {}, network_mode="host"
                )
                out = capsys.readouterr().out
                assert code == 3
                lines = out.splitlines()
                assert lines[lines.index("line 0") :] == expected, stream
    finally:
        client.close()


def test_waiting_on_a_container_removed_meanwhile_fails_with_its_name(podman_api, built_images):
    import docker

    from planets_mlops.app import containers

    client = docker.from_env()
    try:
        container = client.containers.run(RUNTIME_IMAGE, ["sleep", "30"], detach=True, network_mode="host")
        podman("rm", "--force", "--time", "0", container.id)
        with pytest.raises(docker.errors.NotFound, match=container.id[:12]):
            containers.wait_for_exit(client, container.id)
    finally:
        client.close()
