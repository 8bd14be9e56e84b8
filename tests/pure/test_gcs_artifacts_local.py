"""Artifacts on gs:// against fake-gcs-server: the bento archive the serving pod fetches, and a
production model folder that evaluate_model compares with. No mocked storage.

The pure-tier tests of test_gcs_artifacts (the rest: tests/servers/test_gcs_artifacts.py).
"""

from planets_mlops.storage_paths import resolve_model_dir


def test_local_production_model_link_out_of_the_folder_is_refused(tiny_model, tmp_path):
    import shutil

    import pytest

    from planets_mlops.errors import DataError

    folder = tmp_path / "production"
    shutil.copytree(tiny_model, folder)
    secret = tmp_path / "secret.json"
    secret.write_text('["a"]')
    (folder / "classes.json").unlink()
    (folder / "classes.json").symlink_to(secret)
    with pytest.raises(DataError, match=r"classes\.json.*resolves outside"):
        resolve_model_dir(str(folder))


def test_local_production_model_without_onnx_names_what_is_missing(tiny_model, tmp_path):
    import shutil

    import pytest

    from planets_mlops.errors import DataError

    folder = tmp_path / "production"
    shutil.copytree(tiny_model, folder)
    (folder / "model.onnx").unlink()
    with pytest.raises(DataError, match=r"lacks model\.onnx"):
        resolve_model_dir(str(folder))
    assert resolve_model_dir(str(tiny_model)) == tiny_model
