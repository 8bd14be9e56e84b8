"""The reference profile: what production inputs are compared with.

Made at training time on the validation images (images the model was not fitted on), it
ships in the model folder beside the guard, and so in the bento's model:

``monitoring_reference.json``::

    {"format": "planets-reference/1", "features": [names], "feature_rows": [[...], ...],
     "embedding_dim": D, "embedding_rows": [[...], ...], "predictions": [class, ...],
     "classes": [class, ...], "count": n}

``feature_rows`` follow :data:`~planets_mlops.monitoring.features.FEATURES`,
``embedding_rows`` are the :func:`~planets_mlops.monitoring.features.project_embeddings` of
the guard's embeddings (empty for a model without one), ``predictions`` the model's
predicted class of each image. JSON, not pickle: the file comes from an artifact store and
is read with a size bound.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from planets_mlops.errors import DataError, NotFoundError
from planets_mlops.model_folder import REFERENCE_FILE
from planets_mlops.monitoring.features import FEATURES, PROJECTION_DIM, image_features, project_embeddings
from planets_mlops.monitoring.records import read_json_file

FORMAT = "planets-reference/1"
# Rows kept at most (a stratified-free, seeded sample beyond it): drift tests need hundreds.
MAX_ROWS = 5000
MAX_FILE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class ReferenceProfile:
    """Per-image features, projected embeddings and predictions of the validation images."""

    features: np.ndarray
    embeddings: np.ndarray
    predictions: list[str]
    classes: list[str]

    @property
    def count(self) -> int:
        """The number of reference images."""
        return len(self.features)

    def prediction_shares(self) -> dict[str, float]:
        """The share of each class among the predictions (every class listed)."""
        counts = Counter(self.predictions)
        total = max(len(self.predictions), 1)
        return {name: counts.get(name, 0) / total for name in self.classes}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to :data:`REFERENCE_FILE`."""
        return {
            "format": FORMAT,
            "features": list(FEATURES),
            "feature_rows": np.round(self.features, 6).tolist(),
            "embedding_dim": PROJECTION_DIM if len(self.embeddings) else 0,
            "embedding_rows": np.round(self.embeddings, 6).tolist(),
            "predictions": list(self.predictions),
            "classes": list(self.classes),
            "count": self.count,
        }

    def save(self, folder: Path) -> Path:
        """Write :data:`REFERENCE_FILE` into ``folder``; returns its path."""
        path = Path(folder) / REFERENCE_FILE
        path.write_text(json.dumps(self.to_dict(), allow_nan=False))
        return path


def build_reference(
    tensors: Any,
    predictions: list[str],
    classes: list[str],
    embeddings: Any = None,
    max_rows: int = MAX_ROWS,
    seed: int = 0,
    features: Any = None,
) -> ReferenceProfile:
    """The profile of validation images (model-input tensors) and the model's answers on them.

    Beyond ``max_rows`` images a seeded sample is kept. ``features``: the images'
    :func:`image_features`, computed already (``tensors`` is then not read: training passes
    them chunk by chunk, so the split is never whole in memory).
    """
    features = image_features(tensors) if features is None else np.asarray(features)
    if len(predictions) != len(features):
        raise DataError(f"{len(predictions)} predictions for {len(features)} reference images")
    projected = project_embeddings(embeddings) if embeddings is not None else np.zeros((len(features), 0))
    keep = np.arange(len(features))
    if len(keep) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(keep), size=max_rows, replace=False))
    return ReferenceProfile(
        features=features[keep],
        embeddings=projected[keep] if projected.shape[1] else np.zeros((len(keep), 0)),
        predictions=[predictions[i] for i in keep],
        classes=list(classes),
    )


def has_reference(folder: Path) -> bool:
    """Whether ``folder`` (a model folder) holds a reference profile."""
    return (Path(folder) / REFERENCE_FILE).is_file()


def load_reference(folder: Path) -> ReferenceProfile:
    """The reference profile of a model folder, checked.

    Raises:
        planets_mlops.errors.NotFoundError: the folder has no profile (a model trained before
            profiles existed: retrain it, or monitor without a reference).
        planets_mlops.errors.DataError: the file is too large, malformed or of another
            feature set.
    """
    path = Path(folder) / REFERENCE_FILE
    if not path.is_file() or path.is_symlink():
        raise NotFoundError(
            f"{path} does not exist: the model has no monitoring reference. Retrain it with this "
            "version of the suite, which writes one beside the guard."
        )
    data = read_json_file(path, MAX_FILE_BYTES, "a reference profile")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{path} is not a {FORMAT} file.")
    if data.get("features") != list(FEATURES):
        raise DataError(f"{path} was made with other features ({data.get('features')}); retrain the model.")
    try:
        features = np.asarray(data["feature_rows"], dtype=np.float64).reshape(-1, len(FEATURES))
        dim = int(data["embedding_dim"])
        embeddings = np.asarray(data["embedding_rows"], dtype=np.float64).reshape(len(features), dim)
        predictions = [str(p) for p in data["predictions"]]
        classes = [str(c) for c in data["classes"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path} is malformed: {exc}") from exc
    if (
        len(predictions) != len(features)
        or not np.all(np.isfinite(features))
        or not np.all(np.isfinite(embeddings))
    ):
        raise DataError(f"{path} is malformed: row counts differ or values are not finite.")
    return ReferenceProfile(features, embeddings, predictions, classes)
