"""The registry client against a tracking server that answers its health check, then stalls.

Moved from the pure tier (tests/pure/test_registry_settings.py): it waits out every attempt's
timeout on a real HTTP server on 127.0.0.1 (about 20 s), and this is the tier that may wait.
"""

from __future__ import annotations

import time

import pytest

from planets_mlops.errors import NotFoundError, TrackingError
from planets_mlops.registry import registry as reg
from planets_mlops.registry.settings import TrackingSettings


def test_a_stalled_tracking_server_is_a_tracking_error_within_the_budget():
    """Issue 26, defect 8: against a server that answers its health check but stalls every
    API call, `models list` waited 96 s (30 s x 3 attempts), then said "No registered model"
    (exit 4). A real HTTP server on 127.0.0.1 that never answers /api/ stands in for it."""
    from planets_mlops.registry.settings import call_budget_s
    from tests.support.hostile_http import hostile_server

    with hostile_server() as stalled:
        client = TrackingSettings(stalled.url, timeout_s=1.0).client()
        started = time.monotonic()
        with pytest.raises(
            TrackingError, match="failed while reading registered model 'planets-x'"
        ) as caught:
            reg.list_versions(client, "planets-x")
        elapsed = time.monotonic() - started
        with pytest.raises(TrackingError, match="failed while reading version '3'"):
            reg.version_info(client, "planets-x", "3")
    assert not isinstance(caught.value, NotFoundError)
    assert "MLFLOW_TRACKING_URI" in str(caught.value)
    assert elapsed < call_budget_s(1.0) + 5, elapsed  # bounded: about 3 x 2 s, not 3 x 30 s
    assert [path for path, _ in stalled.requests].count("/health") == 1
