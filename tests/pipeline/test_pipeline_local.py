"""Whole pipelines under kfp.local (SubprocessRunner, this environment) on small data."""

import json

from planets_mlops.app.local import run_local
from planets_mlops.pipelines.training import training


def test_training_pipeline_end_to_end(data_repo, tmp_path):
    run = run_local(
        training,
        tmp_path / "root",
        log_file=tmp_path / "run.log",
        data_repo_url=str(data_repo["repo"]),
        data_rev="v1",
        data_path="data/raw",
        train_epochs=1,
        train_conv_size=8,
        train_dense_size=16,
        train_output_classes=3,
    )
    # Promoted (no production model to beat) -> packaged; deploy=False -> not deployed.
    # tracking=False: register and promote record nothing, and the verdict alone decides.
    assert set(run.tasks) == {
        "pull-data",
        "prepare-dataset",
        "train-model",
        "evaluate-model",
        "register-model",
        "package-model",
        "promote-model",
    }
    assert run.tasks["register-model"].parameters["version_registered"] is False
    assert run.tasks["promote-model"].parameters["production_version"] == "untracked"
    assert run.metadata("pull-data", "dataset")["commit"] == data_repo["commit"]
    metrics = run.metadata("evaluate-model", "metrics")
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["val_loss"] > 0
    assert run.tasks["evaluate-model"].parameters["promote"] is True
    assert (run.artifact("train-model", "model") / "model.onnx").is_file()
    manifest = json.loads((run.artifact("prepare-dataset", "prepared") / "manifest.json").read_text())
    assert manifest["splits"]["validation"]["count"] == 12
    bento = run.metadata("package-model", "bento")
    assert bento["bento_tag"].startswith("planets_classifier:")
    assert bento["data_revision"] == data_repo["commit"]
    assert run.artifact("package-model", "bento").stat().st_size > 10_000
    assert "Task 'evaluate-model' finished with status" in run.log_file.read_text().replace(
        "\x1b[96m", ""
    ).replace("\x1b[0m", "")
    assert all(task.seconds > 0 for task in run.tasks.values())
    # The training step trained in the child the run started with TensorFlow imported
    # (planets_mlops.warm_trainer), and its epochs are in the step's own log.
    train_log = (run.log_file.parent / "train-model.log").read_text()
    assert "Training in the warm trainer" in train_log and "progress: epoch 1 of 1" in train_log
    assert "new process" not in train_log
