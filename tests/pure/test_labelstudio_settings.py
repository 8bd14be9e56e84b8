"""Against a REAL Label Studio server (session fixture): projects, uploads, annotations made through
the API, the import rules end to end, publishing a DVC version, predictions.

The pure-tier tests of test_labelstudio (the rest: tests/servers/test_labelstudio.py).
"""

from __future__ import annotations

import pytest

from planets_mlops.errors import InvalidParameterError, LabelStudioError
from planets_mlops.labelstudio.client import LabelStudioClient


def test_unreachable_server_is_a_clear_error():
    client = LabelStudioClient("http://127.0.0.1:9", "some-token", timeout=5)
    with pytest.raises(
        LabelStudioError, match=r"Cannot reach Label Studio at LABEL_STUDIO_URL='http://127.0.0.1:9'"
    ):
        client.find_project("anything")


@pytest.mark.parametrize(
    "url, key, name",
    [
        ("", "tok", "LABEL_STUDIO_URL"),
        ("ftp://x", "tok", "LABEL_STUDIO_URL"),
        ("http://127.0.0.1:9", "", "LABEL_STUDIO_API_KEY"),
    ],
)
def test_missing_settings_name_the_variable(monkeypatch, url, key, name):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(InvalidParameterError, match=name):
        LabelStudioClient(url, key)
