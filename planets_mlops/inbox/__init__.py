"""The production inbox: images the service rejected or was unsure of, kept for labelling.

The service, when ``PLANETS_INBOX`` names a place (a local folder or ``gs://BUCKET/PREFIX``),
keeps each input that its guard did not recognise (``unrecognised``) or whose top two
class probabilities lie closer than ``PLANETS_INBOX_MIN_MARGIN`` (``low_margin``), with the
answer it gave. The retraining pipeline turns the inbox into Label Studio tasks
(:mod:`planets_mlops.labelstudio.inbox_transfer`), hardest first.

Layout: per item two objects named by the SHA-256 of the image bytes,
``<sha256>.<ext>`` (the image) and ``<sha256>.json`` (:class:`InboxItem`). The JSON is
written last and marks the item complete; readers list JSON objects only.

- Idempotent: the same image twice is one item (content-hash names; the first answer kept).
- Atomic: a local object is written to a temporary name in the same folder and renamed
  into place; a ``gs://`` object is created with the precondition ``if_generation_match=0``
  (created only if absent), so a concurrent writer of the same item never overwrites it.
- Bounded: an item is added only while the inbox holds fewer than ``max_items``, each
  image is at most ``max_image_bytes``. Writers in several processes may each add one
  item past the bound at the moment it fills, no more.
- Off the request path: :class:`InboxWriter` queues items (a bounded queue, dropped and
  counted when full) for one background thread, so a slow store never slows an answer.
- Outside input: a malformed, oversized or mismatched inbox object is skipped with a
  reason by :meth:`Inbox.items`, never trusted.

The parts: :mod:`.scores` (why an answer is kept, how hard it is), :mod:`.items` (an item's
document), :mod:`.storage` (the local and ``gs://`` stores), :mod:`.core` (the inbox over a
store) and :mod:`.writer` (the background writer and its ``PLANETS_INBOX*`` settings); this
package re-exports them.
"""

from __future__ import annotations

from planets_mlops.inbox.core import ADDED, DUPLICATE, FULL, NOT_AN_IMAGE, TOO_LARGE, Inbox
from planets_mlops.inbox.items import FORMAT, MAX_ITEM_JSON_BYTES, InboxItem, image_extension, is_sha256
from planets_mlops.inbox.scores import (
    LOW_MARGIN,
    REASONS,
    UNRECOGNISED,
    certainty,
    margin,
    triage,
    uncertainty,
)
from planets_mlops.inbox.storage import GcsStore, LocalStore, Store, open_store
from planets_mlops.inbox.writer import (
    ENV_MAX_ITEMS,
    ENV_MIN_MARGIN,
    ENV_URI,
    ENV_VARIABLES,
    InboxWriter,
    params_from_env,
    writer_from_env,
)

__all__ = [
    "ADDED",
    "DUPLICATE",
    "ENV_MAX_ITEMS",
    "ENV_MIN_MARGIN",
    "ENV_URI",
    "ENV_VARIABLES",
    "FORMAT",
    "FULL",
    "GcsStore",
    "Inbox",
    "InboxItem",
    "InboxWriter",
    "LOW_MARGIN",
    "LocalStore",
    "MAX_ITEM_JSON_BYTES",
    "NOT_AN_IMAGE",
    "REASONS",
    "Store",
    "TOO_LARGE",
    "UNRECOGNISED",
    "certainty",
    "image_extension",
    "is_sha256",
    "margin",
    "open_store",
    "params_from_env",
    "triage",
    "uncertainty",
    "writer_from_env",
]
