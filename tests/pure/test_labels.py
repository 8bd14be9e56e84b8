"""Pure label rules: export parsing, one label per task, content-hash resolution (no server)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planets_mlops.errors import InvalidParameterError
from planets_mlops.labelstudio import labels as rules
from planets_mlops.labelstudio.predictions import build_predictions, is_unlabelled

CLASSES = ["Earth", "Jupiter", "Moon"]


def annotation(*choices, cancelled=False, author=1, ann_id=1, from_name="planet"):
    result = (
        []
        if not choices
        else [
            {
                "from_name": from_name,
                "to_name": "image",
                "type": "choices",
                "value": {"choices": list(choices)},
            }
        ]
    )
    return {
        "id": ann_id,
        "completed_by": author,
        "result": result,
        "was_cancelled": cancelled,
        "updated_at": f"2026-01-01T00:00:{ann_id:02d}Z",
    }


def task(*annotations, task_id=1, image="/data/upload/1/a.jpg"):
    return {"id": task_id, "data": {"image": image}, "annotations": list(annotations)}


def decide(raw):
    return rules.decide_label(rules.parse_task(raw), CLASSES)


@pytest.mark.parametrize(
    "raw, reason, label",
    [
        (task(annotation("Earth")), rules.ACCEPTED, "Earth"),
        (task(), rules.NO_ANNOTATION, None),
        (task(annotation(cancelled=True)), rules.CANCELLED, None),
        (task(annotation(cancelled=True), annotation(cancelled=True, ann_id=2)), rules.CANCELLED, None),
        (task(annotation(cancelled=True), annotation("Moon", ann_id=2)), rules.ACCEPTED, "Moon"),
        (task(annotation()), rules.EMPTY, None),
        (task(annotation("Earth", "Moon")), rules.MULTIPLE, None),
        (task(annotation("Pluto")), rules.UNKNOWN_LABEL, None),
        (task(annotation("earth")), rules.UNKNOWN_LABEL, None),  # labels are case-sensitive folder names
        (
            task(annotation("Earth"), annotation("Pluto", ann_id=2), annotation("Earth", ann_id=3)),
            rules.UNKNOWN_LABEL,
            None,
        ),
        (task(annotation("Earth"), annotation("Moon", ann_id=2)), rules.DISAGREEMENT, None),
        (
            task(annotation("Earth"), annotation("Moon", ann_id=2), annotation("Jupiter", ann_id=3)),
            rules.DISAGREEMENT,
            None,
        ),
        (
            task(annotation("Earth"), annotation("Earth", ann_id=2), annotation("Moon", ann_id=3)),
            rules.ACCEPTED,
            "Earth",
        ),
        (
            task(
                annotation("Earth"),
                annotation("Earth", ann_id=2, author=2),
                annotation("Moon", ann_id=3, author=3),
                annotation("Moon", ann_id=4, author=4),
            ),
            rules.DISAGREEMENT,
            None,
        ),
        (task(annotation("Earth"), annotation("Moon", ann_id=2, cancelled=True)), rules.ACCEPTED, "Earth"),
        (task(annotation("Earth", from_name="other")), rules.EMPTY, None),  # another control's choice
        ({"id": 3, "data": {}}, rules.MALFORMED, None),
        ({"data": {"image": "/x.jpg"}}, rules.MALFORMED, None),
        ("not a task", rules.MALFORMED, None),
    ],
)
def test_decide_label_rules(raw, reason, label):
    decision = decide(raw)
    assert (decision.reason, decision.label) == (reason, label)
    assert decision.accepted is (reason == rules.ACCEPTED)


def test_skips_carry_a_detail_for_the_log():
    assert "Pluto" in decide(task(annotation("Pluto"))).detail
    assert "{'Earth': 1, 'Moon': 1}" in decide(task(annotation("Earth"), annotation("Moon", ann_id=2))).detail


def accepted(task_id, label):
    return rules.Decision(task_id, f"/img/{task_id}", rules.ACCEPTED, label=label)


@pytest.mark.parametrize(
    "pairs, existing, kept, reasons",
    [
        ([(accepted(1, "Earth"), "a")], {}, [(1, "Earth")], {}),
        (
            [(accepted(2, "Earth"), "a"), (accepted(1, "Earth"), "a")],
            {},
            [(1, "Earth")],
            {rules.DUPLICATE_TASK: 1},
        ),
        ([(accepted(1, "Earth"), "a"), (accepted(2, "Moon"), "a")], {}, [], {rules.DUPLICATE_CONFLICT: 2}),
        ([(accepted(1, "Earth"), "a")], {"a": "Moon"}, [], {rules.DATASET_CONFLICT: 1}),
        (
            [(accepted(1, "Earth"), "a"), (accepted(2, "Earth"), "a")],
            {"a": "Earth"},
            [],
            {rules.ALREADY_IN_DATASET: 2},
        ),
        (
            [(accepted(1, "Earth"), "a"), (accepted(2, "Moon"), "b")],
            {"c": "Earth"},
            [(1, "Earth"), (2, "Moon")],
            {},
        ),
    ],
)
def test_resolve_content_rules(pairs, existing, kept, reasons):
    images, skipped = rules.resolve_content(pairs, existing)
    assert [(i.task_id, i.label) for i in images] == kept
    summary = rules.ImportSummary(images, skipped)
    assert summary.skip_counts() == reasons
    assert summary.total_tasks == len(pairs)


@pytest.mark.parametrize(
    "classes, match",
    [
        ([], "non-empty"),
        (["Earth", "Earth"], "duplicates"),
        (["../etc"], "folder name"),
        (["a/b"], "folder name"),
    ],
)
def test_validate_classes_rejects(classes, match):
    with pytest.raises(InvalidParameterError, match=match):
        rules.validate_classes(classes)


def test_labeling_config_round_trips():
    config = rules.parse_label_config(rules.labeling_config(CLASSES))
    assert config == rules.ChoicesConfig("planet", "image", "image", tuple(CLASSES))


@pytest.mark.parametrize("xml", ["<View><Text name='t' value='$t'/></View>", "<View", ""])
def test_parse_label_config_rejects_configs_without_image_choices(xml):
    with pytest.raises(InvalidParameterError, match="label_config"):
        rules.parse_label_config(xml)


def test_build_predictions_scores_and_format():
    import numpy as np

    logits = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]], np.float32)
    predictions = build_predictions([7, 8], logits, CLASSES, "v1")
    assert [p["task"] for p in predictions] == [7, 8]
    # Score = certainty = 0.5 + margin / 2: a tie (margin 0) is 0.5, a sure answer near 1.
    assert predictions[0]["score"] == pytest.approx(0.5, abs=1e-6)
    assert predictions[1]["score"] > 0.99
    assert predictions[1]["result"] == [
        {"from_name": "planet", "to_name": "image", "type": "choices", "value": {"choices": ["Earth"]}}
    ]
    assert {p["model_version"] for p in predictions} == {"v1"}


def test_prediction_scores_put_unrecognised_images_first_then_close_calls():
    import numpy as np

    logits = np.array([[9.0, 0.0, 0.0], [1.0, 0.9, 0.0], [9.0, 0.0, 0.0]], np.float32)
    predictions = build_predictions(
        [1, 2, 3], logits, CLASSES, "v1", known_scores=np.array([0.9, 0.9, 0.2]), threshold=0.5
    )
    scores = [p["score"] for p in predictions]
    # Task 3 is not recognised by the guard (0.2 < 0.5): 1 - (1 + 1 - 0.2 / 0.5) / 2 = 0.2.
    assert scores[2] == pytest.approx(0.2) and scores[2] < 0.5 < scores[1] < scores[0]
    assert sorted(predictions, key=lambda p: p["score"])[0]["task"] == 3
    # Its choice is still the closest class, for the labeller to confirm or correct.
    assert predictions[2]["result"][0]["value"]["choices"] == ["Earth"]


def test_is_unlabelled():
    assert is_unlabelled(rules.parse_task(task()))
    assert is_unlabelled(rules.parse_task(task(annotation(cancelled=True))))
    assert not is_unlabelled(rules.parse_task(task(annotation("Earth"))))


# -- properties ------------------------------------------------------------------------------

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
label = st.sampled_from([*CLASSES, "Pluto", "earth"])
ann = st.builds(
    lambda choices, cancelled, author, ann_id: annotation(
        *choices, cancelled=cancelled, author=author, ann_id=ann_id
    ),
    st.lists(label, max_size=2),
    st.booleans(),
    st.integers(1, 3),
    st.integers(1, 60),
)
tasks = st.builds(
    lambda anns, tid: task(*anns, task_id=tid), st.lists(ann, max_size=5), st.integers(1, 10_000)
)


@given(st.one_of(json_value, st.dictionaries(st.sampled_from(["id", "data", "annotations"]), json_value)))
@settings(max_examples=200, deadline=None)
def test_parse_never_raises_on_arbitrary_json(raw):
    decision = rules.decide_label(rules.parse_task(raw), CLASSES)
    assert decision.reason in (rules.ACCEPTED, *rules.SKIP_REASONS)


@given(tasks, st.randoms())
@settings(max_examples=200, deadline=None)
def test_decision_is_a_known_class_and_independent_of_annotation_order(raw, rnd):
    decision = decide(raw)
    if decision.accepted:
        assert decision.label in CLASSES
    shuffled = dict(raw, annotations=rnd.sample(raw["annotations"], len(raw["annotations"])))
    assert decide(shuffled).reason == decision.reason and decide(shuffled).label == decision.label


@given(
    st.lists(st.tuples(st.integers(1, 50), st.sampled_from(CLASSES), st.sampled_from("abcdef")), max_size=30),
    st.dictionaries(st.sampled_from("abcdef"), st.sampled_from(CLASSES), max_size=4),
)
@settings(max_examples=200, deadline=None)
def test_resolve_content_accounts_for_every_task_once(rows, existing):
    pairs = [(accepted(tid, lab), sha) for tid, lab, sha in rows]
    images, skipped = rules.resolve_content(pairs, existing)
    assert len(images) + len(skipped) == len(pairs)
    shas = [i.sha256 for i in images]
    assert len(shas) == len(set(shas)) and not set(shas) & set(existing)
    for image in images:  # an imported image has exactly one label among its tasks
        assert {lab for _, lab, sha in rows if sha == image.sha256} == {image.label}


def test_new_class_tasks_lists_accepted_labels_outside_the_data_set():
    decisions = [
        rules.Decision(1, "a", rules.ACCEPTED, "Earth"),
        rules.Decision(2, "b", rules.ACCEPTED, "Pluto"),
        rules.Decision(3, "c", rules.DISAGREEMENT, None),
        rules.Decision(4, "d", rules.ACCEPTED, "Pluto"),
        rules.Decision(5, "e", rules.ACCEPTED, "Ceres"),
    ]
    assert rules.new_class_tasks(decisions, ["Earth", "Moon"]) == {"Ceres": [5], "Pluto": [2, 4]}
    assert rules.new_class_tasks(decisions[:1], ["Earth"]) == {}


def test_refusing_new_classes_names_the_label_its_tasks_and_the_parameter():
    from planets_mlops.errors import NewClassError

    rules.refuse_new_classes({}, ["Earth"], "demo")  # nothing new: no error
    with pytest.raises(NewClassError) as caught:
        rules.refuse_new_classes({"Pluto": [2, 4, 6, 8, 10, 12]}, ["Earth", "Moon"], "demo")
    message = str(caught.value)
    assert "'Pluto' in 6 task(s) [2, 4, 6, 8, 10] ..." in message
    assert "allow_new_classes=True" in message and "['Earth', 'Moon']" in message
    assert "Nothing was imported" in message and "3 classes" in message


@pytest.mark.parametrize("name, ok", [("Pluto", True), ("Dwarf planet", True), ("../x", False), ("", False)])
def test_is_class_name(name, ok):
    assert rules.is_class_name(name) is ok


def _merged(accepted, published=None, base=None):
    from planets_mlops.labelstudio.importer import ImportResult, MergedDataset

    summary = rules.ImportSummary(
        accepted=[rules.LabelledImage(7, "/x.png", "a" * 64, "Moon")] if accepted else []
    )
    result = ImportResult(3, "planets", CLASSES, summary, 10, 10 + len(summary.accepted), {"Moon": 4}, 0.1)
    base = (
        {"commit": "c0ffee", "dvc_hash": "d1", "repo_url": "https://git/data.git"} if base is None else base
    )
    return MergedDataset(result, base, "data/raw", published)


@pytest.mark.parametrize("accepted", [False, True])
def test_merged_labels_that_are_not_published_are_in_no_commit(accepted):
    meta = _merged(accepted).metadata()
    assert meta["base_commit"] == "c0ffee" and meta["base_dvc_hash"] == "d1"
    assert meta["repo_url"] == "https://git/data.git" and meta["data_path"] == "data/raw"
    assert meta["new_labels"] == int(accepted) and meta["label_studio_project"] == "planets"
    # The base's commit would be wrong for a merge with new labels.
    assert (meta["commit"], meta["dvc_hash"]) == (("", "") if accepted else ("c0ffee", "d1"))
    assert meta["unpublished_changes"] is accepted
    assert _merged(accepted, base={"data_path": "data/x"}).metadata()["data_path"] == "data/x"


def test_a_published_merge_names_its_new_version():
    from planets_mlops.labelstudio.publish import PublishResult

    meta = _merged(True, PublishResult("labels", "beef", True, "d2")).metadata()
    assert (meta["commit"], meta["dvc_hash"], meta["unpublished_changes"]) == ("beef", "d2", False)
    assert meta["published_branch"] == "labels" and meta["published_new_version"] is True
    assert meta["base_commit"] == "c0ffee"
