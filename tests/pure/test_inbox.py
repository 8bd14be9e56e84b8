"""The production inbox: triage, bounded and idempotent writes, on a local folder and on a
real GCS emulator (fake-gcs-server), and reading back what an outsider may have put there."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest

from planets_mlops import inbox as ib
from planets_mlops.knobs import InboxParams
from tests.support.fixtures.data import PLANETS

IMAGES = sorted((PLANETS / "extra").glob("*.jpg"))[:8]

UNSURE = {"prediction": "Earth", "closest_class": "Earth", "probabilities": {"Earth": 0.5, "Moon": 0.45}}
SURE = {"prediction": "Moon", "closest_class": "Moon", "probabilities": {"Earth": 0.01, "Moon": 0.99}}
UNKNOWN = {
    "prediction": None,
    "closest_class": "Mars",
    "probabilities": {"Mars": 0.97, "Moon": 0.03},
    "recognised": False,
    "known_score": 0.3,
    "known_threshold": 0.6,
}


def test_triage_and_uncertainty_order_unknown_first_then_close_calls():
    assert ib.triage(UNKNOWN, 0.2) == ib.UNRECOGNISED
    assert ib.triage(UNSURE, 0.2) == ib.LOW_MARGIN
    assert ib.triage(SURE, 0.2) is None
    assert ib.margin(UNSURE["probabilities"]) == pytest.approx(0.05)
    assert ib.uncertainty(SURE) == pytest.approx(0.02)
    assert ib.uncertainty(UNSURE) == pytest.approx(0.95)
    assert ib.uncertainty(UNKNOWN) == pytest.approx(1.5)  # 1 + (1 - 0.3 / 0.6)
    assert ib.certainty(UNKNOWN) < ib.certainty(UNSURE) < ib.certainty(SURE)


def test_add_is_idempotent_and_bounded(tmp_path):
    inbox = ib.Inbox(ib.LocalStore(tmp_path / "inbox"), InboxParams(max_items=3))
    first = IMAGES[0].read_bytes()
    assert inbox.add(first, UNSURE, "model-a") == ib.ADDED
    assert inbox.add(first, UNKNOWN, "model-b") == ib.DUPLICATE  # same bytes: one item
    for path in IMAGES[1:3]:
        assert inbox.add(path.read_bytes(), UNSURE) == ib.ADDED
    assert inbox.add(IMAGES[3].read_bytes(), UNSURE) == ib.FULL
    assert inbox.count() == 3
    files = sorted(p.name for p in (tmp_path / "inbox").iterdir())
    assert len(files) == 6 and not [n for n in files if n.startswith(".tmp")]
    sha = hashlib.sha256(first).hexdigest()
    stored = json.loads((tmp_path / "inbox" / f"{sha}.json").read_text())
    assert stored["model"] == "model-a" and stored["reason"] == ib.LOW_MARGIN  # the first answer kept
    assert (tmp_path / "inbox" / f"{sha}.jpg").read_bytes() == first
    # Too large or not an image: never kept.
    small = ib.Inbox(ib.LocalStore(tmp_path / "small"), InboxParams(max_image_bytes=100))
    assert small.add(first, UNSURE) == ib.TOO_LARGE
    assert small.add(b"<html>", UNSURE) == ib.NOT_AN_IMAGE
    assert small.count() == 0


def test_concurrent_writers_of_one_image_make_one_item(tmp_path):
    store = ib.LocalStore(tmp_path / "inbox")
    data = IMAGES[0].read_bytes()
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(ib.Inbox(store).add(data, UNSURE))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(ib.ADDED) == 1 and results.count(ib.DUPLICATE) == 7
    assert len(list((tmp_path / "inbox").iterdir())) == 2


def test_items_come_back_hardest_first_and_outsider_objects_are_skipped(tmp_path):
    folder = tmp_path / "inbox"
    inbox = ib.Inbox(ib.LocalStore(folder))
    inbox.add(IMAGES[0].read_bytes(), UNSURE)
    inbox.add(IMAGES[1].read_bytes(), UNKNOWN)
    inbox.add(IMAGES[2].read_bytes(), {**UNSURE, "probabilities": {"Earth": 0.55, "Moon": 0.45}})
    # What someone else may have written to the bucket/folder:
    (folder / ("0" * 64 + ".json")).write_text("{not json")
    (folder / ("1" * 64 + ".json")).write_text(json.dumps({"format": ib.FORMAT, "sha256": "../../x"}))
    (folder / ("2" * 64 + ".json")).write_bytes(b" " * (ib.MAX_ITEM_JSON_BYTES + 1))
    orphan = ib.InboxItem("3" * 64, ".jpg", ib.LOW_MARGIN, 0.5, {}, "", 0.0)
    (folder / ("3" * 64 + ".json")).write_bytes(orphan.to_json())  # its image is missing
    (folder / "4.json").symlink_to("/etc/hostname")
    items, skipped = inbox.items()
    assert [item.reason for item in items] == [ib.UNRECOGNISED, ib.LOW_MARGIN, ib.LOW_MARGIN]
    assert [round(item.uncertainty, 2) for item in items] == [1.5, 0.95, 0.9]
    assert skipped == {"malformed_item": 3, "image_missing": 1}
    assert inbox.image(items[0]) == IMAGES[1].read_bytes()
    inbox.remove(items[0])
    assert len(inbox.items()[0]) == 2


def test_writer_keeps_only_what_triage_selects_off_the_request_path(tmp_path):
    inbox = ib.Inbox(ib.LocalStore(tmp_path / "inbox"), InboxParams(max_items=2, queue_size=8))
    writer = ib.InboxWriter(inbox, model="planets-classifier:abc")
    images = [p.read_bytes() for p in IMAGES[:4]]
    queued = writer.offer(images, [UNSURE, SURE, UNKNOWN, UNSURE])
    assert queued == 3
    assert writer.flush(timeout=30)
    writer.close()
    assert dict(writer.counts) == {ib.ADDED: 2, ib.FULL: 1}
    assert {item.model for item in inbox.items()[0]} == {"planets-classifier:abc"}


def test_settings_from_the_environment(tmp_path):
    assert ib.writer_from_env(env={}) is None
    uri, params = ib.params_from_env({ib.ENV_URI: str(tmp_path), ib.ENV_MAX_ITEMS: "5"})
    assert uri == str(tmp_path) and params.max_items == 5 and params.min_margin == InboxParams().min_margin
    with pytest.raises(Exception, match="PLANETS_INBOX_MAX_ITEMS"):
        ib.params_from_env({ib.ENV_URI: "x", ib.ENV_MAX_ITEMS: "many"})
    with pytest.raises(Exception, match="PLANETS_INBOX_MIN_MARGIN='2'"):
        ib.params_from_env({ib.ENV_URI: "x", ib.ENV_MIN_MARGIN: "2"})


def test_hostile_inbox_items_are_skipped_and_counted_not_a_crash(tmp_path):
    """Issue 26, defect 7: deep nesting (RecursionError) or a 400-digit number (OverflowError)
    in one inbox object crashed the reader, so the inbox tasks and the alert's push failed."""
    folder = tmp_path / "inbox"
    inbox = ib.Inbox(ib.LocalStore(folder))
    inbox.add(IMAGES[0].read_bytes(), UNSURE)
    good = json.loads(next(folder.glob("*.json")).read_text())
    hostile = {
        "5" * 64: "[" * 100_000 + "]" * 100_000,
        "6" * 64: json.dumps({**good, "sha256": "6" * 64, "uncertainty": 10**400}),
        "7" * 64: json.dumps({**good, "sha256": "7" * 64, "received_at": 10**400}),
        "8" * 64: json.dumps({**good, "sha256": "8" * 64}).replace(
            '"answer": ', '"answer": ' + "[" * 3000 + "]" * 3000 + ', "x": '
        ),
        "9" * 64: json.dumps({**good, "sha256": "9" * 64}).replace(
            '"received_at": ', '"received_at": 1e400, "x": '
        ),
    }
    for sha, text in hostile.items():
        (folder / f"{sha}.json").write_text(text)
        (folder / f"{sha}.jpg").write_bytes(IMAGES[1].read_bytes())
    items, skipped = inbox.items()
    assert [item.sha256 for item in items] == [good["sha256"]]
    assert skipped == {"malformed_item": 5}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PLANETS_INBOX_MAX_ITEMS", "0"),
        ("PLANETS_INBOX_MAX_ITEMS", "1e3"),
        ("PLANETS_INBOX_MIN_MARGIN", "2"),
        ("PLANETS_INBOX_MIN_MARGIN", "nan"),
        ("PLANETS_INBOX_MIN_MARGIN", "much"),
        ("PLANETS_INBOX", "gs://"),
        ("PLANETS_INBOX", "s3://bucket/inbox"),
    ],
)
def test_every_inbox_variable_is_checked_at_start_up_naming_it(name, value):
    """Issue 26, defect 6: a bad PLANETS_INBOX* value gave a pod whose worker restarted in a
    loop, and most messages named a field (max_items), not the variable. The serving settings,
    which every launcher reads before starting bentoml serve, now check them."""
    from planets_mlops.errors import InvalidParameterError
    from planets_mlops.service.settings import ServingSettings
    from planets_mlops.serving_entrypoint import main

    env = {"PLANETS_INBOX": "/tmp/inbox", name: value}
    with pytest.raises(InvalidParameterError) as caught:
        ServingSettings.from_env(env)
    message = str(caught.value)
    assert caught.value.name == name and name in message and repr(value) in message
    assert "Unset" in message or "e.g." in message or "Only gs://" in message
    # The serving image's entrypoint refuses it before downloading the bento.
    assert main({"BENTO_URI": "/nonexistent.bento", "BENTO_TAG": "a:b", **env}) == 2
