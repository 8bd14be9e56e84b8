"""The registry's acceptance story under kfp.local, against a real ``mlflow server``.

A training run registers version 1 and promotes it; a retraining run started with no
model URI compares against the ``production`` alias, registers version 2 and promotes it
when the gate says so; ``models rollback`` puts version 1 back; the release records show
every move. Small data (3 classes x 20 images), tiny models, real Label Studio.
"""

from __future__ import annotations

import json

import pytest

from planets_mlops.app import cli
from planets_mlops.app.local import run_local
from planets_mlops.pipelines.retraining import retraining
from planets_mlops.pipelines.training import training
from planets_mlops.registry import registry as reg
from planets_mlops.registry import tracking
from tests.servers.test_retraining import TINY, labelled_small_project  # noqa: F401 - a fixture


def test_train_register_promote_retrain_by_alias_and_roll_back(
    mlflow_client,
    model_name,
    data_repo,
    ls_env,
    labelled_small_project,  # noqa: F811 - the fixture imported above
    tmp_path,
    capsys,
):
    registry = {"tracking": True, "registered_model_name": model_name, "mlflow_experiment": model_name}
    first = run_local(
        training,
        tmp_path / "root",
        log_file=tmp_path / "training.log",
        data_repo_url=str(data_repo["repo"]),
        data_rev="v1",
        **TINY,
        **registry,
    )
    assert first.tasks["register-model"].parameters["version_registered"] is True
    assert first.tasks["promote-model"].parameters["production_version"] == "1"
    assert reg.alias_version(mlflow_client, model_name, "production") == "1"
    v1 = reg.version_info(mlflow_client, model_name, "1")
    assert v1["tags"]["planets.data_commit"] == data_repo["commit"]
    assert v1["tags"]["planets.bento_tag"] == first.metadata("package-model", "bento")["bento_tag"]
    assert json.loads(v1["tags"]["planets.images"])["runtime"]
    # The MLflow run shows the KFP Metrics artifact's values, the history and the reports.
    kfp_metrics = first.metadata("evaluate-model", "metrics")
    run = mlflow_client.get_run(v1["run_id"])
    assert kfp_metrics and {k: run.data.metrics[k] for k in kfp_metrics} == pytest.approx(kfp_metrics)
    assert run.data.params["train_epochs"] == "1" and run.data.params["prepare_grayscale"] == "false"
    assert run.data.tags["kfp.task_name"] == "register-model"
    epochs = mlflow_client.get_metric_history(v1["run_id"], "history.val_loss")
    assert [m.step for m in epochs] == [0]
    logged = {a.path for a in mlflow_client.list_artifacts(v1["run_id"], "evaluation")}
    assert {"evaluation/report.html", "evaluation/verdict.md", "evaluation/confusion_matrix.json"} <= logged
    parent = mlflow_client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.data.tags[tracking.TAG_KFP_RUN_ID] == run.data.tags[tracking.TAG_KFP_RUN_ID]
    assert "Release 1" in first.artifact("promote-model", "release").read_text()

    # Recurring retraining: no production_model_uri at all; the alias names the opponent.
    second = run_local(
        retraining,
        tmp_path / "root",
        log_file=tmp_path / "retraining.log",
        data_repo_url=str(data_repo["repo"]),
        data_rev="v1",
        label_studio_project=labelled_small_project.title,
        min_new_labels=5,
        push_new_predictions=False,
        min_improvement=-1.0,  # the gate then promotes whatever the noise does
        **TINY,
        **registry,
    )
    verdict = second.metadata("evaluate-model", "verdict")
    assert verdict["production_version"] == "1" and verdict["production_source"] == f"models:/{model_name}/1"
    assert "production_val_accuracy" in second.metadata("evaluate-model", "metrics")
    assert second.tasks["register-model"].parameters["version_registered"] is True
    promoted = second.tasks["evaluate-model"].parameters["promote"]
    assert promoted is True
    assert second.tasks["promote-model"].parameters["production_version"] == "2"
    assert reg.alias_version(mlflow_client, model_name, "production") == "2"
    v2 = reg.version_info(mlflow_client, model_name, "2")
    assert v2["tags"]["planets.label_studio_project"].startswith(labelled_small_project.title)
    assert v2["tags"]["planets.pipeline"] == "retraining"

    capsys.readouterr()  # the runs' progress lines
    code = cli.main(["models", "rollback", "--model", model_name, "--reason", "bad answers", "-o", "json"])
    out = capsys.readouterr().out
    assert code == 0, out
    rolled = json.loads(out)
    assert rolled["move"]["from_version"] == "2" and rolled["move"]["to_version"] == "1"
    assert reg.alias_version(mlflow_client, model_name, "production") == "1"
    moves = reg.moves(mlflow_client, model_name)
    assert [(m["from_version"], m["to_version"]) for m in moves] == [(None, "1"), ("1", "2"), ("2", "1")]
    assert [m["why"] for m in moves][-1] == "bad answers" and moves[1]["gate"]["promote"] == 1.0
    assert cli.main(["models", "list", "--model", model_name, "-o", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["aliases"]) for v in listed] == [("2", ["candidate"]), ("1", ["production"])]
    assert cli.main(["models", "show", "--model", model_name, "-o", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == "1" and shown["release"]["release"] == 3
    assert shown["release"]["reproduce"].startswith("planets-mlops run training")
    assert f"data_rev={data_repo['commit']}" in shown["release"]["reproduce"]
    assert "train_epochs=1 " in shown["release"]["reproduce"]
