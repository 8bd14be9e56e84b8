"""The production inbox: triage, bounded and idempotent writes, on a local folder and on a real GCS
emulator (fake-gcs-server), and reading back what an outsider may have put there.

The servers-tier tests of test_inbox (the rest: tests/pure/test_inbox.py).
"""

from __future__ import annotations

import hashlib

from planets_mlops import inbox as ib
from planets_mlops.knobs import InboxParams
from tests.support.fixtures.data import PLANETS

IMAGES = sorted((PLANETS / "extra").glob("*.jpg"))[:8]


UNSURE = {"prediction": "Earth", "closest_class": "Earth", "probabilities": {"Earth": 0.5, "Moon": 0.45}}


UNKNOWN = {
    "prediction": None,
    "closest_class": "Mars",
    "probabilities": {"Mars": 0.97, "Moon": 0.03},
    "recognised": False,
    "known_score": 0.3,
    "known_threshold": 0.6,
}


def test_gcs_inbox_is_bounded_idempotent_and_atomic(gcs_emulator):
    bucket = gcs_emulator.make_bucket("planets-inbox")
    store = ib.open_store(f"{bucket}/serving/inbox")
    assert isinstance(store, ib.GcsStore)
    inbox = ib.Inbox(store, InboxParams(max_items=2))
    data = IMAGES[0].read_bytes()
    assert inbox.add(data, UNSURE) == ib.ADDED
    assert inbox.add(data, UNKNOWN) == ib.DUPLICATE
    # The generation precondition: a second create of an existing object is refused.
    sha = hashlib.sha256(data).hexdigest()
    assert store.put_if_absent(f"{sha}.json", b"overwrite?") is False
    assert inbox.add(IMAGES[1].read_bytes(), UNKNOWN) == ib.ADDED
    assert inbox.add(IMAGES[2].read_bytes(), UNKNOWN) == ib.FULL
    items, skipped = inbox.items()
    assert [item.reason for item in items] == [ib.UNRECOGNISED, ib.LOW_MARGIN] and skipped == {}
    assert inbox.image(items[1]) == data
    # A stray object is skipped; objects of a deeper prefix are not the inbox's.
    store.put_if_absent("f" * 64 + ".json", b"[]")
    ib.GcsStore(f"{bucket}/serving/inbox/old").put_if_absent("a" * 64 + ".json", b"{}")
    assert inbox.items()[1] == {"malformed_item": 1}
    inbox.remove(items[0])
    assert inbox.count() == 2  # the stray object is still counted against the bound


def test_the_served_model_keeps_unsure_inputs_in_the_inbox(packaged_bento, tmp_path):
    """A real ``bentoml serve`` with ``PLANETS_INBOX`` set: answers are unchanged, and each
    unsure input lands in the inbox once, however often it is sent."""
    import time

    import httpx

    from planets_mlops.app.dev.serve_local import serve_bento

    folder = tmp_path / "inbox"
    env = {
        "PLANETS_WORKERS": "1",
        ib.ENV_URI: str(folder),
        # Every answer of two or more classes has a margin below 1: all are kept.
        ib.ENV_MIN_MARGIN: "1.0",
        ib.ENV_MAX_ITEMS: "2",
    }
    with serve_bento(packaged_bento["archive"], env=env, ready_timeout=90) as server:
        expected_reason = {}
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
            for path in [IMAGES[0], IMAGES[0], IMAGES[1], IMAGES[2]]:
                response = client.post(
                    "/predict", files={"image": (path.name, path.read_bytes(), "image/jpeg")}
                )
                assert response.status_code == 200 and "probabilities" in response.json()
                # The guard's rejection wins over a low margin as the reason to keep an input.
                rejected = response.json().get("recognised") is False
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                expected_reason[digest] = ib.UNRECOGNISED if rejected else ib.LOW_MARGIN
            deadline = time.monotonic() + 20
            while ib.Inbox(ib.LocalStore(folder)).count() < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
    items, skipped = ib.Inbox(ib.LocalStore(folder)).items()
    # Bounded at 2; IMAGES[0] sent twice is one item.
    assert skipped == {} and len(items) == 2
    assert {item.sha256 for item in items} == {hashlib.sha256(p.read_bytes()).hexdigest() for p in IMAGES[:2]}
    assert {item.sha256: item.reason for item in items} == {
        item.sha256: expected_reason[item.sha256] for item in items
    }
    assert all(item.model.startswith("planets-classifier:") for item in items)
