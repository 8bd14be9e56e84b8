"""The ``retraining`` pipeline: compiled IR, and whole runs under kfp.local against a real
Label Studio server and a real git + DVC data repository (3 classes x 20 images, tiny model)."""

from __future__ import annotations

import pytest

from planets_mlops.app.labelling_demo import extra_images, true_label
from planets_mlops.app.local import run_local
from planets_mlops.pipelines.retraining import retraining
from tests.support.fixtures.data import SMALL_CLASSES

TINY = {"train_epochs": 1, "train_conv_size": 8, "train_dense_size": 16, "train_output_classes": 3}


@pytest.fixture
def labelled_small_project(ls_client, ls_project):
    """4 correctly labelled extra images per class, plus 3 unlabelled and 1 wrong-class label."""
    images = extra_images(SMALL_CLASSES, per_class=5)
    ls_client.upload_images(ls_project.id, images)
    tasks = ls_client.export_tasks(ls_project.id)
    for n, task in enumerate(tasks):
        name = task["data"]["image"].rsplit("/", 1)[-1].split("-", 1)[1]
        if n % 5 == 4:
            continue
        ls_client.annotate(task["id"], [true_label(name) if n != 0 else "Saturn"])
    return ls_project


def test_retraining_end_to_end(ls_env, labelled_small_project, data_repo, tiny_model, tmp_path):
    from planets_mlops.datarepo import git

    branch = f"labels-e2e-{labelled_small_project.id}"
    run = run_local(
        retraining,
        tmp_path / "root",
        log_file=tmp_path / "run.log",
        data_repo_url=str(data_repo["repo"]),
        data_rev="v1",
        label_studio_project=labelled_small_project.title,
        min_new_labels=5,
        publish_labels=True,
        publish_branch=branch,
        # Compared with a "production" model; a negative margin makes the promotion certain.
        production_model_uri=str(tiny_model),
        min_improvement=-1.0,
        **TINY,
    )
    assert {
        "pull-data",
        "import-labels",
        "check-new-labels",
        "prepare-dataset",
        "train-model",
        "evaluate-model",
        "package-model",
        "push-predictions",
    } <= set(run.tasks)
    merged = run.metadata("import-labels", "merged")
    assert merged["new_labels"] == 11 and merged["skipped"] == {"no_annotation": 3, "unknown_label": 1}
    assert merged["num_files"] == 71 and merged["published_new_version"] is True
    assert git(data_repo["repo"], "rev-parse", branch) == merged["commit"]
    prepared = run.metadata("prepare-dataset", "prepared")
    assert prepared["source_commit"] == merged["commit"]
    # The pulled data set's files keep their split: production never trained on validation.
    assert prepared["split_method"] == "stable-over-base"
    assert prepared["validation_count"] == 12 + 2  # base validation + int(0.2 * 11) new images
    assert run.tasks["evaluate-model"].parameters["promote"] is True
    assert "delta_val_accuracy" in run.metadata("evaluate-model", "metrics")
    assert run.metadata("package-model", "bento")["bento_tag"]
    pushed = run.metadata("push-predictions", "summary")
    assert pushed["predicted_tasks"] == 3 and pushed["model_version"].startswith("planets-")


def test_retraining_stops_before_training_without_enough_labels(
    ls_env, labelled_small_project, data_repo, tmp_path
):
    run = run_local(
        retraining,
        tmp_path / "root",
        log_file=tmp_path / "run.log",
        data_repo_url=str(data_repo["repo"]),
        data_rev="v1",
        label_studio_project=labelled_small_project.title,
        min_new_labels=12,
        **TINY,
    )
    assert run.tasks["check-new-labels"].parameters["enough_new_labels"] is False
    assert set(run.tasks) == {"pull-data", "import-labels", "check-new-labels"}


def test_retraining_adds_a_class_from_labels(ls_env, ls_client, data_repo, tiny_model, tmp_path):
    """Labellers use Mars, which the data set lacks: with allow_new_classes the retrained model
    has four classes, and the gate compares it with the 3-class production on the shared ones."""
    project, _ = ls_client.get_or_create_project("Retraining adds Mars", (*SMALL_CLASSES, "Mars"))
    ls_client.upload_images(project.id, extra_images(["Mars"], per_class=10))
    for task in ls_client.export_tasks(project.id):
        name = str(task["data"]["image"]).rsplit("/", 1)[-1].split("-", 1)[1]
        ls_client.annotate(task["id"], [true_label(name)])
    run = run_local(
        retraining,
        tmp_path / "root",
        log_file=tmp_path / "run.log",
        data_repo_url=str(data_repo["repo"]),
        data_rev="v1",
        label_studio_project=project.title,
        min_new_labels=5,
        allow_new_classes=True,
        production_model_uri=str(tiny_model),
        push_new_predictions=False,
        **{**TINY, "train_output_classes": 4},
    )
    merged = run.metadata("import-labels", "merged")
    assert merged["new_classes"] == ["Mars"] and merged["class_counts"]["Mars"] == 10
    assert run.metadata("train-model", "model")["classes"] == ["Earth", "Jupiter", "Mars", "Moon"]
    prepared = run.metadata("prepare-dataset", "prepared")
    metrics = run.metadata("evaluate-model", "metrics")
    # The comparison covers the 12 base validation images (the classes production knows);
    # the 2 validation images of Mars (int(0.2 * 10)) are reported as the new class's recall.
    assert prepared["validation_count"] == 12 + 2
    assert metrics["gate_images"] == 12
    assert 0.0 <= metrics["new_class_recall_Mars"] <= 1.0
    verdict = (run.artifact("evaluate-model", "verdict")).read_text()
    assert "## New classes" in verdict and "| Mars | 2 |" in verdict
    # A new class stands in for the required gain: only "worse beyond noise" could refuse it.
    not_worse = metrics["gate_overall_worse"] == 0 and metrics["gate_classes_worse"] == 0
    assert run.tasks["evaluate-model"].parameters["promote"] is not_worse
    assert ("package-model" in run.tasks) is run.tasks["evaluate-model"].parameters["promote"]


def test_retraining_from_the_inbox_labels_is_promoted(
    ls_env, ls_client, data_repo, tiny_model, packaged_bento, tmp_path
):
    """The loop on the small data set: a real served bento keeps the changed images it rejects
    or is unsure of in its inbox; the inbox becomes Label Studio tasks (as the drift alert does);
    they are labelled through the API from the true classes; retraining on those labels is
    promoted by the gate against the production model on the same images."""
    from planets_mlops.app.dev.serve_local import classify_files, serve_bento
    from planets_mlops.app.production_loop import changed_copies, label_inbox_tasks
    from planets_mlops.inbox import Inbox, LocalStore, triage
    from planets_mlops.knobs import InboxParams
    from planets_mlops.labelstudio.inbox_transfer import inbox_to_tasks

    changed, truth = changed_copies(
        extra_images(SMALL_CLASSES, per_class=15), "swap_rb", tmp_path / "changed"
    )
    env = {"PLANETS_WORKERS": "1", "PLANETS_INBOX": str(tmp_path / "inbox")}
    with serve_bento(packaged_bento["archive"], env=env, ready_timeout=60) as server:
        answers = classify_files(server.url, changed)
    inbox = Inbox(LocalStore(tmp_path / "inbox"))
    kept = inbox.count()
    # Exactly the answers the guard rejected or whose margin was small (45 < the writer's queue).
    assert kept == sum(triage(a, InboxParams().min_margin) is not None for a in answers) >= 10

    project, _ = ls_client.get_or_create_project("Inbox labels retraining", SMALL_CLASSES)
    made = inbox_to_tasks(ls_client, project.id, inbox)
    assert made.created == kept and inbox.count() == 0
    labelled = label_inbox_tasks(ls_client, project.id, truth)
    assert labelled == kept

    run = run_local(
        retraining,
        tmp_path / "root",
        log_file=tmp_path / "run.log",
        data_repo_url=str(data_repo["repo"]),
        data_rev="v1",
        label_studio_project=project.title,
        min_new_labels=5,
        production_model_uri=str(tiny_model),
        push_new_predictions=False,
        **{**TINY, "train_epochs": 6, "train_lr": 0.01},
    )
    merged = run.metadata("import-labels", "merged")
    assert merged["new_labels"] == labelled and merged["num_files"] == 60 + labelled
    metrics = run.metadata("evaluate-model", "metrics")
    # The gate's images: the 12 base validation images and the labelled changed images the
    # split held back from training, the same for both models.
    assert metrics["gate_images"] == 12 + int(0.2 * labelled)
    assert (
        metrics["gate_overall_worse"] == 0 and metrics["val_accuracy"] >= metrics["production_val_accuracy"]
    )
    assert run.tasks["evaluate-model"].parameters["promote"] is True
    assert run.metadata("package-model", "bento")["bento_tag"]
