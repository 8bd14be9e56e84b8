"""train.without_imports: the optional packages Keras would import with TensorFlow, left out of its import."""

import importlib
import sys

import pytest

from planets_mlops.train import without_imports


def test_a_package_not_imported_yet_fails_to_import_inside_and_imports_after():
    sys.modules.pop("wave", None)
    with without_imports(("wave",)):
        with pytest.raises(ImportError):
            importlib.import_module("wave")
        with pytest.raises(ImportError):
            import wave  # noqa: F401
    assert importlib.import_module("wave").__name__ == "wave"
    assert sys.modules["wave"] is not None


def test_a_package_imported_already_stays_importable_inside():
    import json

    with without_imports(("json",)):
        assert importlib.import_module("json") is json
    assert sys.modules["json"] is json


def test_a_failure_inside_leaves_the_packages_importable():
    sys.modules.pop("wave", None)
    with pytest.raises(RuntimeError), without_imports(("wave",)):
        raise RuntimeError("inside")
    assert "wave" not in sys.modules or sys.modules["wave"] is not None
    assert importlib.import_module("wave").__name__ == "wave"
