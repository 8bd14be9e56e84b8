"""Against a REAL Label Studio server (session fixture): projects, uploads, annotations made
through the API, the import rules end to end, publishing a DVC version, predictions.

Nothing here is mocked. The server comes from ``.venv-labelstudio``
(``scripts/setup_label_studio.sh``); without it these tests fail with that instruction.
"""

from __future__ import annotations

import pytest
from kfp import dsl

from planets_mlops.app.labelling_demo import extra_images, true_label
from planets_mlops.errors import InvalidParameterError, LabelStudioError
from planets_mlops.labelstudio import labels as rules
from planets_mlops.labelstudio.client import LabelStudioClient
from planets_mlops.labelstudio.importer import import_labels
from tests.support.fixtures.data import PLANETS, SMALL_CLASSES
from tests.support.helpers import add_local_storage, make_artifact, tree_digest, upload_to_gcs


def task_by_image_name(tasks: list[dict], name: str) -> list[dict]:
    return [
        t
        for t in tasks
        if str(t["data"]["image"]).endswith("-" + name) or str(t["data"]["image"]).endswith("/" + name)
    ]


# -- connection, token, project ---------------------------------------------------------


def test_wrong_token_is_a_clear_error(label_studio):
    client = LabelStudioClient(label_studio.url, "not-the-token")
    with pytest.raises(LabelStudioError, match=r"refused the API token.*HTTP 401.*LABEL_STUDIO_API_KEY"):
        client.find_project("anything")


@pytest.mark.parametrize("project", ["No such project title", 987654])
def test_project_not_found(ls_client, project):
    with pytest.raises(LabelStudioError, match=r"project .* not found"):
        ls_client.find_project(project)


def test_get_or_create_matches_the_exact_title(ls_client):
    longer, _ = ls_client.get_or_create_project("Exact title match (copy)", SMALL_CLASSES)
    first, created = ls_client.get_or_create_project("Exact title match", SMALL_CLASSES)
    again, created_again = ls_client.get_or_create_project("Exact title match", SMALL_CLASSES)
    assert created and not created_again
    assert again.id == first.id != longer.id
    assert ls_client.find_project("Exact title match").id == first.id
    assert ls_client.find_project(str(first.id)).title == "Exact title match"


# -- import rules end to end --------------------------------------------------------------


@pytest.fixture
def labelled_project(ls_client, ls_project):
    """A project exercising every import rule through real uploads and API annotations."""
    pid = ls_project.id
    extras = extra_images(SMALL_CLASSES, per_class=4)
    base_image = sorted((PLANETS / "raw" / "Earth").iterdir())[0]  # in the small data set
    # extras[0] is uploaded twice (duplicate tasks); base_image comes from the data set.
    ls_client.upload_images(pid, [*extras, extras[0], base_image])
    add_local_storage(ls_client, pid, PLANETS / "extra")
    ls_client.import_tasks(
        pid,
        [
            {"data": {"image": f"/data/local-files/?d=planets/extra/{extras[1].name}"}},
            {"data": {"image": "/data/upload/999/does-not-exist.jpg"}},
        ],
    )
    tasks = ls_client.export_tasks(pid)
    local = [t for t in tasks if "local-files" in t["data"]["image"]]
    missing = [t for t in tasks if "does-not-exist" in t["data"]["image"]]
    by = {p.name: task_by_image_name(tasks, p.name) for p in [*extras, base_image]}
    truth = {p.name: true_label(p) for p in extras}
    expected: dict[str, int] = {}

    def label(task, *votes, cancelled=False):
        """One annotation per vote (or one cancelled annotation), as labellers in the UI."""
        for choice in votes or [None]:
            ls_client.annotate(task["id"], [choice] if choice else [], cancelled=cancelled)

    dup_a, dup_b = by[extras[0].name]
    label(dup_a, truth[extras[0].name])
    label(dup_b, truth[extras[0].name])
    expected[rules.DUPLICATE_TASK] = 1
    label(by[extras[1].name][0], truth[extras[1].name])  # accepted
    label(local[0], truth[extras[1].name])  # same bytes via local files
    expected[rules.DUPLICATE_TASK] += 1
    t = by[extras[2].name][0]  # majority 2 of 3
    other = "Moon" if truth[extras[2].name] != "Moon" else "Earth"
    label(t, truth[extras[2].name], truth[extras[2].name], other)
    t = by[extras[3].name][0]  # 1 vs 1: disagreement
    label(t, "Earth", "Jupiter")
    expected[rules.DISAGREEMENT] = 1
    label(by[extras[4].name][0], cancelled=True)  # skipped in the UI
    expected[rules.CANCELLED] = 1
    t = by[extras[5].name][0]  # cancelled + a real vote
    label(t, cancelled=True)
    label(t, truth[extras[5].name])
    label(by[extras[6].name][0], "Pluto")  # not a class
    expected[rules.UNKNOWN_LABEL] = 1
    label(by[base_image.name][0], "Moon")  # in the data set as Earth
    expected[rules.DATASET_CONFLICT] = 1
    label(missing[0], "Earth")
    expected[rules.IMAGE_MISSING] = 1
    label(by[extras[7].name][0], truth[extras[7].name])  # accepted
    # extras[8:] stay unannotated
    expected[rules.NO_ANNOTATION] = len(extras) - 8
    accepted = {truth[extras[i].name] for i in (0, 1, 2, 5, 7)}
    return {
        "project": ls_project,
        "expected": expected,
        "accepted_count": 5,
        "accepted_classes": accepted,
        "tasks": len(tasks),
    }


def test_import_applies_every_rule_and_counts_every_skip(ls_client, labelled_project, small_raw, tmp_path):
    result = import_labels(ls_client, labelled_project["project"].title, small_raw, tmp_path / "merged")
    meta = result.metadata()
    assert meta["skipped"] == labelled_project["expected"]
    assert meta["new_labels"] == labelled_project["accepted_count"]
    assert meta["tasks_total"] == labelled_project["tasks"] == meta["new_labels"] + meta["skipped_total"]
    assert set(meta["new_labels_per_class"]) <= labelled_project["accepted_classes"]
    imported = sorted((tmp_path / "merged").glob("*/ls-*"))
    assert len(imported) == 5 and all(p.suffix == ".jpg" for p in imported)
    for item in result.summary.accepted:
        assert (tmp_path / "merged" / item.label / f"ls-{item.sha256[:20]}.jpg").is_file()
    assert meta["num_files"] == meta["num_base_files"] + 5 == 65
    assert "task" in meta["skipped_examples"][rules.UNKNOWN_LABEL][0]


def test_import_is_repeatable_and_a_reimport_adds_nothing(ls_client, labelled_project, small_raw, tmp_path):
    title = labelled_project["project"].title
    first = import_labels(ls_client, title, small_raw, tmp_path / "one")
    second = import_labels(ls_client, title, small_raw, tmp_path / "two")
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "two")
    # Importing again on top of the merged data set: everything is already there.
    third = import_labels(ls_client, title, tmp_path / "one", tmp_path / "three")
    assert third.summary.accepted == [] and first.summary.accepted == second.summary.accepted
    # 5 imported images, 2 of them also in a duplicate task: 7 tasks already present.
    assert third.metadata()["skipped"][rules.ALREADY_IN_DATASET] == 7
    assert rules.DUPLICATE_TASK not in third.metadata()["skipped"]
    assert tree_digest(tmp_path / "three") == tree_digest(tmp_path / "one")


def test_empty_project_imports_nothing_and_says_so(ls_client, ls_project, small_raw, tmp_path, caplog):
    result = import_labels(ls_client, ls_project.id, small_raw, tmp_path / "merged")
    assert result.metadata()["new_labels"] == 0 and result.metadata()["tasks_total"] == 0
    assert tree_digest(tmp_path / "merged") == tree_digest(small_raw)
    assert "has no tasks" in caplog.text


def test_a_new_class_is_refused_by_default_and_added_when_allowed(ls_client, small_raw, tmp_path):
    from planets_mlops.errors import NewClassError

    # The project offers Mars, which the data set (Earth, Jupiter, Moon) does not have yet.
    project, _ = ls_client.get_or_create_project("New class Mars", (*SMALL_CLASSES, "Mars"))
    mars = extra_images(["Mars"], per_class=3)
    earth = extra_images(["Earth"], per_class=1)
    ls_client.upload_images(project.id, [*mars, *earth])
    for task in ls_client.export_tasks(project.id):
        name = str(task["data"]["image"]).rsplit("/", 1)[-1].split("-", 1)[1]
        ls_client.annotate(task["id"], [true_label(name)])
    with pytest.raises(NewClassError, match=r"'Mars' in 3 task\(s\).*allow_new_classes=True"):
        import_labels(ls_client, project.id, small_raw, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()  # refused before anything was written

    result = import_labels(ls_client, project.id, small_raw, tmp_path / "merged", allow_new_classes=True)
    meta = result.metadata()
    assert meta["new_classes"] == ["Mars"] and meta["new_labels"] == 4
    assert meta["class_counts"] == {"Earth": 21, "Jupiter": 20, "Mars": 3, "Moon": 20}
    assert len(list((tmp_path / "merged" / "Mars").glob("ls-*.jpg"))) == 3
    # Importing on top of the merged data set: Mars is a class now, nothing is new.
    again = import_labels(ls_client, project.id, tmp_path / "merged", tmp_path / "again")
    assert again.metadata()["new_classes"] == [] and again.metadata()["new_labels"] == 0


def test_project_without_choices_config_is_rejected(ls_client, small_raw, tmp_path):
    project = ls_client.sdk.projects.create(
        title="Text project",
        label_config=(
            '<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>'  # noqa: E501
        ),
    )
    with pytest.raises(InvalidParameterError, match="label_config"):
        import_labels(ls_client, project.id, small_raw, tmp_path / "merged")


def test_gs_and_local_files_images_and_undecodable_bytes(
    ls_client, ls_project, gcs_emulator, small_raw, tmp_path
):
    bucket = gcs_emulator.make_bucket("labelling-images")
    images = extra_images(SMALL_CLASSES, per_class=1)
    for path in images:
        upload_to_gcs(path, f"{bucket}/incoming/{path.name}")
    add_local_storage(ls_client, ls_project.id, PLANETS)
    choice = [
        {
            "result": [
                {
                    "from_name": "planet",
                    "to_name": "image",
                    "type": "choices",
                    "value": {"choices": [true_label(p)]},
                }
            ]
        }
        for p in images
    ]
    ls_client.import_tasks(
        ls_project.id,
        [
            *(
                {"data": {"image": f"{bucket}/incoming/{p.name}"}, "annotations": [c]}
                for p, c in zip(images, choice)
            ),
            {"data": {"image": f"{bucket}/incoming/absent.jpg"}, "annotations": [choice[0]]},
            {
                "data": {"image": "/data/local-files/?d=planets/README.md"},
                "annotations": [choice[0]],
            },  # not an image
        ],
    )
    result = import_labels(ls_client, ls_project.title, small_raw, tmp_path / "merged")
    assert result.metadata()["skipped"] == {rules.IMAGE_MISSING: 1, rules.IMAGE_UNDECODABLE: 1}
    assert result.metadata()["new_labels_per_class"] == {name: 1 for name in SMALL_CLASSES}


def test_import_skips_hostile_image_urls_and_keeps_the_rest(label_studio, ls_project, small_raw, tmp_path):
    from planets_mlops.knobs import ImageFetchParams
    from tests.support.hostile_http import DRIP_BYTES, hostile_server

    with hostile_server() as hostile:
        limits = ImageFetchParams(max_bytes=1024 * 1024, deadline_s=1.0, allow_hosts=(hostile.host_port,))
        client = LabelStudioClient(label_studio.url, label_studio.api_key, fetch_limits=limits)
        label = {"from_name": "planet", "to_name": "image", "type": "choices"}
        urls = {
            "image": f"{hostile.url}/image",
            "huge": f"{hostile.url}/huge-chunked",
            "drip": f"{hostile.url}/drip",
            "metadata": f"{hostile.url}/redirect?to=http://169.254.169.254/computeMetadata/v1/",
        }
        client.import_tasks(
            ls_project.id,
            [
                {
                    "data": {"image": url},
                    "annotations": [{"result": [{**label, "value": {"choices": [SMALL_CLASSES[0]]}}]}],
                }
                for url in urls.values()
            ],
        )
        result = import_labels(client, ls_project.id, small_raw, tmp_path / "merged")
    assert result.metadata()["skipped"] == {rules.IMAGE_MISSING: 3}
    details = {d.image: d.detail for d in result.summary.skipped}
    assert "over the limit of 1048576 bytes" in details[urls["huge"]]
    assert "took longer than 1 s" in details[urls["drip"]]
    assert "resolves to 169.254.169.254" in details[urls["metadata"]]
    assert [d.image for d in result.summary.accepted] == [urls["image"]]
    assert hostile.sent["/drip"] < DRIP_BYTES // 2


def test_task_images_of_the_server_itself_are_fetched_with_the_token(ls_client, ls_project, tmp_path):
    # The configured server is on 127.0.0.1, and the default limits allow no internal
    # address: the configured server is trusted all the same.
    image = extra_images(SMALL_CLASSES, per_class=1)[0]
    ls_client.upload_images(ls_project.id, [image])
    (task,) = ls_client.export_tasks(ls_project.id)
    assert ls_client.fetch_limits.allow_hosts == ()
    assert ls_client.fetch_image(task["data"]["image"]) == image.read_bytes()
    anonymous = LabelStudioClient(ls_client.url, "not-the-token")
    with pytest.raises(LabelStudioError, match="refused the API token"):
        anonymous.fetch_image(task["data"]["image"])


def test_unpublished_labels_give_the_model_the_provenance_of_what_it_trained_on(
    ls_env, ls_client, ls_project, data_repo, tmp_path
):
    from planets_mlops.components.import_labels import import_labels as component
    from planets_mlops.components.prepare_dataset import prepare_dataset
    from planets_mlops.components.train_model import train_model
    from planets_mlops.package import bento_labels
    from planets_mlops.pull import pull_dataset

    pulled = pull_dataset(str(data_repo["repo"]), "v1", "data/raw", tmp_path / "pulled")
    ls_client.upload_images(ls_project.id, extra_images(SMALL_CLASSES, per_class=2))
    for task in ls_client.export_tasks(ls_project.id):
        ls_client.annotate(
            task["id"], [true_label(task["data"]["image"].rsplit("/", 1)[-1].split("-", 1)[1])]
        )
    merged = make_artifact(dsl.Dataset, tmp_path / "merged")
    component.python_func(
        dataset=make_artifact(dsl.Dataset, tmp_path / "pulled", pulled.metadata()),
        merged=merged,
        project=ls_project.title,
        publish=False,  # the default: the merged data set is in no commit
    )
    assert merged.metadata["unpublished_changes"] is True
    assert merged.metadata["commit"] == "" and merged.metadata["dvc_hash"] == ""
    assert merged.metadata["base_commit"] == pulled.commit

    def prepare_and_train(dataset, name):
        prepared = make_artifact(dsl.Dataset, tmp_path / f"prepared-{name}")
        prepare_dataset.python_func(
            raw=dataset, prepared=prepared, preview=make_artifact(dsl.HTML, tmp_path / f"preview-{name}")
        )
        model = make_artifact(dsl.Model, tmp_path / f"model-{name}")
        train_model.python_func(
            prepared=prepared,
            model=model,
            history=make_artifact(dsl.Artifact, tmp_path / f"history-{name}"),
            metrics=make_artifact(dsl.Metrics, tmp_path / f"metrics-{name}"),
            curves=make_artifact(dsl.HTML, tmp_path / f"curves-{name}"),
            epochs=1,
            conv_size=8,
            dense_size=16,
        )
        return model.metadata

    on_merged = prepare_and_train(merged, "merged")
    on_base = prepare_and_train(make_artifact(dsl.Dataset, tmp_path / "pulled", pulled.metadata()), "base")
    # The base commit is no longer claimed as the data; the content hash tells them apart.
    assert on_merged["data_commit"] == "" and on_merged["data_base_commit"] == pulled.commit
    assert on_base["data_commit"] == pulled.commit
    assert on_merged["data_content_hash"].startswith("sha256:")
    assert on_merged["data_content_hash"] != on_base["data_content_hash"]
    labels = bento_labels("unpublished", "gs://m", {}, on_merged)
    assert labels["data_content_hash"] == on_merged["data_content_hash"]
    assert labels["data_base_commit"] == pulled.commit


# -- the component, publishing a DVC version ------------------------------------------------


def test_component_publishes_one_version_and_a_retry_makes_none(
    ls_env, ls_client, ls_project, data_repo, tmp_path
):
    from planets_mlops.components.import_labels import check_new_labels
    from planets_mlops.components.import_labels import import_labels as component
    from planets_mlops.datarepo import git
    from planets_mlops.pull import pull_dataset

    pulled = pull_dataset(str(data_repo["repo"]), "v1", "data/raw", tmp_path / "pulled")
    images = extra_images(SMALL_CLASSES, per_class=2)
    ls_client.upload_images(ls_project.id, images)
    for task in ls_client.export_tasks(ls_project.id):
        name = task["data"]["image"].rsplit("/", 1)[-1].split("-", 1)[1]
        ls_client.annotate(task["id"], [true_label(name)])
    branch = f"labels-{ls_project.id}"
    commits = []
    for attempt in range(2):
        merged = make_artifact(dsl.Dataset, tmp_path / f"merged{attempt}")
        component.python_func(
            dataset=make_artifact(dsl.Dataset, tmp_path / "pulled", pulled.metadata()),
            merged=merged,
            project=ls_project.title,
            classes=[],
            publish=True,
            data_repo_url=str(data_repo["repo"]),
            data_path="data/raw",
            publish_branch=branch,
            dvc_remote_config={},
        )
        commits.append(merged.metadata["published_commit"])
        assert merged.metadata["new_labels"] == 6 and merged.metadata["commit"] == commits[-1]
        assert merged.metadata["published_new_version"] is (attempt == 0)
        assert merged.metadata["base_commit"] == pulled.commit
        assert check_new_labels.python_func(merged=merged, min_new_labels=6).enough_new_labels is True
        assert check_new_labels.python_func(merged=merged, min_new_labels=7).enough_new_labels is False
    assert commits[0] == commits[1]
    log = git(data_repo["repo"], "log", "--format=%H %s", branch).splitlines()
    assert log[0].startswith(commits[0]) and "Import 6 labels" in log[0]
    assert git(data_repo["repo"], "rev-parse", f"{branch}~1") == pulled.commit
    # The published version pulls back as the merged data set, 60 + 6 files.
    again = pull_dataset(str(data_repo["repo"]), branch, "data/raw", tmp_path / "repulled")
    assert again.num_files == 66 and again.commit == commits[0]
    assert tree_digest(tmp_path / "repulled") == tree_digest(tmp_path / "merged0")


# -- predictions ----------------------------------------------------------------------------


def test_push_predictions_replaces_its_model_version(ls_env, ls_client, ls_project, tiny_model, tmp_path):
    from planets_mlops.components.push_predictions import push_predictions as component
    from planets_mlops.labelstudio.predictions import push_predictions

    images = extra_images(SMALL_CLASSES, per_class=3)
    ls_client.upload_images(ls_project.id, images)
    ls_client.import_tasks(ls_project.id, [{"data": {"image": "/data/upload/999/gone.jpg"}}])
    tasks = ls_client.export_tasks(ls_project.id)
    ls_client.annotate(tasks[0]["id"], ["Earth"])
    ls_client.annotate(tasks[1]["id"], cancelled=True)  # skipped: still worth a prediction
    for _ in range(2):
        result = push_predictions(ls_client, ls_project.title, tiny_model, "tiny-v1", low_confidence=0.9)
        assert result.predicted == len(images) - 1 and result.skipped == {rules.IMAGE_MISSING: 1}
    assert result.replaced == len(images) - 1
    assert ls_client.model_versions(ls_project.id) == {"tiny-v1": len(images) - 1}
    predictions = list(ls_client.sdk.predictions.list(task=tasks[2]["id"]))
    assert len(predictions) == 1
    prediction = predictions[0]
    assert prediction.model_version == "tiny-v1" and 0.5 <= prediction.score <= 1  # no guard: >= 0.5
    assert prediction.result[0]["value"]["choices"][0] in SMALL_CLASSES
    assert prediction.result[0]["from_name"] == rules.FROM_NAME
    assert list(ls_client.sdk.predictions.list(task=tasks[0]["id"])) == []

    # The component names the version after the model's bytes and adds it next to tiny-v1.
    model = make_artifact(dsl.Model, tiny_model)
    summary = make_artifact(dsl.Artifact, tmp_path / "summary.json")
    component.python_func(
        model=model, summary=summary, project=str(ls_project.id), model_version="", low_confidence=0.5
    )
    version = summary.metadata["model_version"]
    assert version.startswith("planets-") and summary.metadata["predicted_tasks"] == len(images) - 1
    assert ls_client.model_versions(ls_project.id) == {"tiny-v1": len(images) - 1, version: len(images) - 1}


def test_push_predictions_rejects_a_project_missing_model_classes(ls_client, tiny_model):
    project, _ = ls_client.get_or_create_project("Two classes only", ["Earth", "Mars"])
    with pytest.raises(InvalidParameterError, match=r"missing \['Jupiter', 'Moon'\]"):
        from planets_mlops.labelstudio.predictions import push_predictions

        push_predictions(ls_client, project.id, tiny_model, "v1")


def test_labelling_demo_is_idempotent(label_studio, tiny_model):
    from planets_mlops.app.labelling_demo import run_labelling_demo

    images = extra_images(SMALL_CLASSES, per_class=4)
    first = run_labelling_demo(
        label_studio.url,
        label_studio.api_key,
        title="Demo test",
        classes=SMALL_CLASSES,
        images=images,
        label_fraction=0.5,
        model_dir=tiny_model,
    )
    second = run_labelling_demo(
        label_studio.url,
        label_studio.api_key,
        title="Demo test",
        classes=SMALL_CLASSES,
        images=images,
        label_fraction=0.5,
        model_dir=tiny_model,
    )
    assert first.tasks == second.tasks == 12 and first.labelled == second.labelled == 6
    assert first.predictions["predicted_tasks"] == second.predictions["replaced_predictions"] == 6
    assert second.environment()["LABEL_STUDIO_URL"] == label_studio.url


# -- the production inbox --------------------------------------------------------------------


@pytest.mark.parametrize("batch", [25, 4], ids=["one-upload", "uploads-of-4"])
def test_inbox_becomes_tasks_hardest_first_without_duplicates(
    ls_client, ls_project, small_raw, tmp_path, monkeypatch, batch
):
    """Task ids follow the uncertainty, whether the images go up in one request or several."""
    from planets_mlops.inbox import Inbox, LocalStore
    from planets_mlops.labelstudio import inbox_transfer
    from planets_mlops.labelstudio.inbox_tasks import create_inbox_tasks
    from planets_mlops.labelstudio.inbox_transfer import inbox_to_tasks, task_hash

    monkeypatch.setattr(inbox_transfer, "UPLOAD_BATCH", batch)

    inbox = Inbox(LocalStore(tmp_path / "inbox"))
    images = extra_images(SMALL_CLASSES, per_class=2)
    # Margins 0.0, 0.1, ... 0.4 and one image the guard did not recognise (the hardest).
    for n, path in enumerate(images[:5]):
        p = 0.5 + n * 0.05
        inbox.add(path.read_bytes(), {"closest_class": "Moon", "probabilities": {"Moon": p, "Earth": 1 - p}})
    unknown = {
        "prediction": None,
        "closest_class": "Earth",
        "probabilities": {"Earth": 0.99, "Moon": 0.01},
        "recognised": False,
        "known_score": 0.1,
        "known_threshold": 0.5,
    }
    inbox.add(images[5].read_bytes(), unknown, model="prod")
    in_dataset = sorted((small_raw / "Earth").iterdir())[0]
    inbox.add(in_dataset.read_bytes(), unknown)  # already labelled in the data set
    expected = [item.sha256 for item in inbox.items()[0] if item.sha256 != ""]

    result = inbox_to_tasks(ls_client, ls_project.id, inbox, small_raw)
    assert result.created == 6 and result.skipped == {"already_in_dataset": 1}
    assert inbox.count() == 0  # every item is a task (or in the data set) now
    tasks = sorted(ls_client.export_tasks(ls_project.id), key=lambda t: t["id"])
    hashes = [task_hash(t) for t in tasks]
    assert hashes == [sha for sha in expected if sha in hashes] and len(hashes) == 6
    scores = [ls_client.sdk.predictions.list(task=t["id"])[0].score for t in tasks]
    assert scores == sorted(scores) and scores[0] < 0.5 <= scores[1]  # the unknown image first
    first = ls_client.sdk.predictions.list(task=tasks[0]["id"])[0]
    assert first.result[0]["value"]["choices"] == ["Earth"] and first.model_version == "inbox-prod"

    # The service keeps the same images again: no second task.
    for path in images[:2]:
        inbox.add(path.read_bytes(), {"closest_class": "Moon", "probabilities": {"Moon": 0.5, "Earth": 0.5}})
    # The step's own entry opens the inbox from its URI (what the component passes).
    again = create_inbox_tasks(ls_client, ls_project.id, str(tmp_path / "inbox"), small_raw)
    assert again.created == 0 and again.skipped == {"already_in_project": 2} and inbox.count() == 0
    assert len(ls_client.export_tasks(ls_project.id)) == 6


def test_a_drift_alert_pushes_the_inbox_to_label_studio(ls_env, ls_client, ls_project, tmp_path):
    # The monitoring pipeline's push action, through the raise_alert component, on the real server.
    import json

    from planets_mlops.components.raise_alert import raise_alert
    from planets_mlops.inbox import Inbox, LocalStore
    from planets_mlops.knobs import DriftParams
    from planets_mlops.monitoring import drift

    inbox = Inbox(LocalStore(tmp_path / "inbox"))
    for path in extra_images(SMALL_CLASSES, per_class=1):
        inbox.add(path.read_bytes(), {"closest_class": "Moon", "probabilities": {"Moon": 0.5, "Earth": 0.5}})
    columns = [drift.ColumnDrift("brightness", "image", "ks", 0.9, 1e-12, True)]
    window = drift.WindowInfo("m:1", "2026-12-04T08:00:00+00:00", "2026-12-04T10:00:00+00:00", 1, {})
    summary = drift.DriftResult(drift.DRIFT, "why", 120, 300, 0.0005, columns, [], DriftParams(), window)
    (tmp_path / "summary.json").write_text(json.dumps(summary.summary()))
    alert, decision = tmp_path / "alert.md", tmp_path / "decision.json"
    answer = raise_alert.python_func(
        summary=make_artifact(dsl.Artifact, tmp_path / "summary.json"),
        alert=make_artifact(dsl.Markdown, alert),
        decision=make_artifact(dsl.Artifact, decision),
        label_studio_project=ls_project.title,
        inbox_uri=str(tmp_path / "inbox"),
        push_to_label_studio=True,
    ).outcome
    (push,) = [
        a for a in json.loads(decision.read_text())["actions"] if a["action"] == "push_to_label_studio"
    ]
    assert push["taken"] and not push["failed"] and "brightness p=1e-12" in push["why"]
    assert push["outcome"].startswith(f"3 task(s) in project {ls_project.id}")
    assert len(ls_client.export_tasks(ls_project.id)) == 3 and inbox.count() == 0
    assert "push_to_label_studio" in answer and "| push_to_label_studio | yes |" in alert.read_text()
