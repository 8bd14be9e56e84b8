"""The service's side of monitoring: the features' fast path and the record writer."""

from __future__ import annotations

import numpy as np
import pytest

from planets_mlops.monitoring import features

pytestmark = pytest.mark.pure


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_saturation_equals_the_spread_across_channels(seed: int) -> None:
    images = np.random.default_rng(seed).random((5, 9, 7, 3), dtype=np.float32)
    images[0, 0, 0] = [np.nan, 0.5, 0.2]
    values = features.image_features(images)[:, features.FEATURES.index("saturation")]
    expected = (images.max(axis=-1) - images.min(axis=-1)).mean(axis=(1, 2))
    np.testing.assert_array_equal(values, expected.astype(np.float64))
