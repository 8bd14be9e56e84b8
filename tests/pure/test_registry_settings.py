"""The registry logic against a real ``mlflow server`` (SQLite, artifacts on the GCS emulator).

The pure-tier tests of test_registry (the rest: tests/servers/test_registry.py).
"""

from __future__ import annotations

import time

import pytest

from planets_mlops.app.dev.net import free_port
from planets_mlops.errors import InvalidParameterError, TrackingError
from planets_mlops.knobs import RegistryParams
from planets_mlops.registry.settings import TrackingSettings, connect


def test_unreachable_server_fails_fast_naming_the_uri(monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()
    with pytest.raises(TrackingError, match="unreachable") as caught:
        connect(RegistryParams(tracking=True, timeout_s=2.0))
    assert uri in str(caught.value) and "MLFLOW_TRACKING_URI" in str(caught.value)
    assert time.monotonic() - started < 30  # a dead server must not hang a step for minutes
    assert connect(RegistryParams(tracking=True, allow_untracked=True, timeout_s=2.0)) is None
    assert connect(RegistryParams(tracking=False)) is None
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(InvalidParameterError, match="MLFLOW_TRACKING_URI"):
        connect(RegistryParams(tracking=True))


def test_the_secret_never_overrides_the_kfp_mlflow_plugin():
    from planets_mlops.registry.settings import secret_env

    secret = {
        "PLANETS_MLFLOW_TRACKING_URI": "http://ours:5000",
        "PLANETS_MLFLOW_TRACKING_TOKEN": "our-token",
    }
    # Plugin off: the Secret's values become MLflow's.
    assert secret_env(secret) == {
        "MLFLOW_TRACKING_URI": "http://ours:5000",
        "MLFLOW_TRACKING_TOKEN": "our-token",
    }
    # Plugin on with another server: its URI stays, and our token is not sent there.
    plugin = {
        **secret,
        "MLFLOW_TRACKING_URI": "http://kubeflow-mlflow:8080",
        "MLFLOW_TRACKING_AUTH": "kubernetes",
    }
    assert secret_env(plugin) == {}
    # Plugin on with the same server and no credentials of its own: our token is used.
    assert secret_env({**secret, "MLFLOW_TRACKING_URI": "http://ours:5000/"}) == {
        "MLFLOW_TRACKING_TOKEN": "our-token"
    }
    # The plugin's own credentials win.
    same = {**secret, "MLFLOW_TRACKING_URI": "http://ours:5000", "MLFLOW_TRACKING_TOKEN": "plugin-token"}
    assert secret_env(same) == {}
    assert TrackingSettings.from_env(secret).tracking_uri == "http://ours:5000"


def test_a_tracking_uri_password_is_never_printed():
    """Issue 26, weak point: an MLflow URI's password was printed in the unreachable message."""
    from planets_mlops.registry.settings import redact_uri

    uri = f"http://alice:s3cret@127.0.0.1:{free_port()}"
    with pytest.raises(TrackingError) as caught:
        TrackingSettings(uri, timeout_s=1.0).client()
    assert "s3cret" not in str(caught.value) and "alice:***@127.0.0.1" in str(caught.value)
    assert redact_uri("https://host:5000/x") == "https://host:5000/x"
    assert redact_uri("https://u:p@host/x") == "https://u:***@host/x"
