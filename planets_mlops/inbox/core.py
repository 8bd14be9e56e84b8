"""The inbox over a store: add an item (idempotent, bounded), list, read and remove items."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from planets_mlops.errors import DataError, NotFoundError
from planets_mlops.inbox.items import (
    MAX_ITEM_JSON_BYTES,
    InboxItem,
    image_extension,
)
from planets_mlops.inbox.scores import (
    LOW_MARGIN,
    triage,
    uncertainty,
)
from planets_mlops.inbox.storage import Store
from planets_mlops.knobs import InboxParams

log = logging.getLogger(__name__)


ADDED = "added"


DUPLICATE = "duplicate"


FULL = "full"


TOO_LARGE = "too_large"


NOT_AN_IMAGE = "not_an_image"


class Inbox:
    """The inbox at one location, with its bounds.

    Args:
        store: Where the objects live (:func:`open_store`).
        params: Bounds and the low-margin threshold.
    """

    def __init__(self, store: Store, params: InboxParams | None = None) -> None:
        self.store = store
        self.params = params or InboxParams()

    def count(self) -> int:
        """Complete items in the inbox."""
        return len(self.store.list_names(".json"))

    def add(self, image: bytes, answer: Mapping[str, Any], model: str = "", reason: str | None = None) -> str:
        """Keep ``image`` with ``answer`` unless it is already there, too large, or the inbox is full.

        Args:
            image: The image bytes as received.
            answer: The service's answer for it.
            model: The answering model's tag.
            reason: Why it is kept; :func:`triage` of the answer when None.

        Returns:
            ``added``, ``duplicate``, ``full``, ``too_large`` or ``not_an_image``.
        """
        if len(image) > self.params.max_image_bytes:
            return TOO_LARGE
        extension = image_extension(image)
        if extension is None:
            return NOT_AN_IMAGE
        sha = hashlib.sha256(image).hexdigest()
        names = set(self.store.list_names(".json"))
        if f"{sha}.json" in names:
            return DUPLICATE
        if len(names) >= self.params.max_items:
            return FULL
        item = InboxItem(
            sha256=sha,
            extension=extension,
            reason=reason or triage(answer, self.params.min_margin) or LOW_MARGIN,
            uncertainty=round(uncertainty(answer), 6),
            answer=_plain(answer),
            model=model,
            received_at=round(time.time(), 3),
        )
        # Image first: a JSON object always has its image.
        self.store.put_if_absent(item.image_name, image)
        return ADDED if self.store.put_if_absent(f"{sha}.json", item.to_json()) else DUPLICATE

    def items(self) -> tuple[list[InboxItem], dict[str, int]]:
        """Every readable item, hardest first; unreadable objects are counted by reason.

        Returns:
            Items sorted by decreasing uncertainty (then hash), and skip reason -> count.
        """
        items: list[InboxItem] = []
        skipped: Counter[str] = Counter()
        images = set(self.store.list_names(""))
        for name in self.store.list_names(".json"):
            try:
                item = InboxItem.from_json(self.store.get(name, MAX_ITEM_JSON_BYTES), name)
            except (DataError, NotFoundError) as exc:
                log.warning("Skipped inbox object %s: %s", name, exc)
                skipped["malformed_item"] += 1
                continue
            if item.image_name not in images:
                skipped["image_missing"] += 1
                continue
            items.append(item)
        items.sort(key=lambda item: (-item.uncertainty, item.sha256))
        return items, dict(skipped)

    def image(self, item: InboxItem) -> bytes:
        """The item's image bytes, checked against its hash.

        Raises:
            DataError: the object is too large or its bytes do not hash to the item's name.
        """
        data = self.store.get(item.image_name, self.params.max_image_bytes)
        if hashlib.sha256(data).hexdigest() != item.sha256:
            raise DataError(f"{self.store.uri}/{item.image_name} does not match its hash")
        return data

    def remove(self, item: InboxItem) -> None:
        """Delete an item (JSON first, so a reader never sees an item without its image)."""
        self.store.delete(f"{item.sha256}.json")
        self.store.delete(item.image_name)


def _plain(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The answer's JSON-able fields, probabilities rounded (keeps the item small)."""
    keep = ("prediction", "closest_class", "recognised", "known_score", "known_threshold")
    plain: dict[str, Any] = {k: answer[k] for k in keep if k in answer}
    probabilities = answer.get("probabilities") or {}
    plain["probabilities"] = {str(k): round(float(v), 6) for k, v in probabilities.items()}
    return plain
