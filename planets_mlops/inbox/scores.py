"""Why an answer is kept: the guard did not recognise the image, or its top two classes are close.

And how hard an item is to label (:func:`uncertainty`, :func:`certainty`), hardest first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)


UNRECOGNISED = "unrecognised"


LOW_MARGIN = "low_margin"


REASONS = (UNRECOGNISED, LOW_MARGIN)


def margin(probabilities: Mapping[str, float]) -> float:
    """Top class probability minus the second one (1.0 with a single class)."""
    values = sorted((float(v) for v in probabilities.values()), reverse=True)
    if not values:
        return 0.0
    return values[0] - (values[1] if len(values) > 1 else 0.0)


def uncertainty(answer: Mapping[str, Any]) -> float:
    """How hard an answer is, in [0, 2]; higher is harder.

    A recognised image (or one without a guard) scores ``1 - margin`` in [0, 1]. An image
    the guard did not recognise scores above 1: ``1 + (1 - known_score / threshold)``, the
    further from known images the higher. So sorting by uncertainty puts unknown images
    first, then the closest calls.

    Args:
        answer: One answer of the service (:func:`planets_mlops.service.inference.answers`).
    """
    if answer.get("recognised") is False:
        threshold = float(answer.get("known_threshold") or 0.0)
        score = float(answer.get("known_score") or 0.0)
        closeness = min(max(score / threshold, 0.0), 1.0) if threshold > 0 else 0.0
        return 2.0 - closeness
    return 1.0 - min(max(margin(answer.get("probabilities") or {}), 0.0), 1.0)


def certainty(answer: Mapping[str, Any]) -> float:
    """``1 - uncertainty / 2`` in [0, 1]: Label Studio's prediction score (lowest = hardest)."""
    return 1.0 - uncertainty(answer) / 2.0


def triage(answer: Mapping[str, Any], min_margin: float) -> str | None:
    """Why an answer belongs in the inbox: ``unrecognised``, ``low_margin``, or None."""
    if answer.get("recognised") is False:
        return UNRECOGNISED
    if margin(answer.get("probabilities") or {}) < min_margin:
        return LOW_MARGIN
    return None
