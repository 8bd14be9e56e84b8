"""Artifacts on gs:// against fake-gcs-server: the bento archive the serving pod fetches,
and a production model folder that evaluate_model compares with. No mocked storage."""

from planets_mlops.serve_local import bento_tag_of
from planets_mlops.serving_entrypoint import download
from planets_mlops.storage import upload_file
from planets_mlops.storage_paths import resolve_model_dir
from tests.helpers import sha256_file


def test_serving_pod_fetches_the_bento_archive_from_gcs(gcs_emulator, packaged_bento, tmp_path):
    bucket = gcs_emulator.make_bucket("planets-artifacts")
    uri = f"{bucket}/pipeline-root/run-1/package-model/bento/planets.bento"
    upload_file(packaged_bento["archive"], uri)
    fetched = download(uri, tmp_path)
    assert sha256_file(fetched) == sha256_file(packaged_bento["archive"])
    assert bento_tag_of(fetched) == packaged_bento["bento_tag"]


def test_production_model_folder_on_gcs(gcs_emulator, tiny_model, small_prepared, tmp_path):
    from planets_mlops.evaluate import evaluate_model

    bucket = gcs_emulator.make_bucket("planets-models")
    for path in tiny_model.iterdir():
        upload_file(path, f"{bucket}/production/model/{path.name}")
    local = resolve_model_dir(f"{bucket}/production/model")
    assert sorted(p.name for p in local.iterdir()) == sorted(p.name for p in tiny_model.iterdir())
    result = evaluate_model(small_prepared, tiny_model, tmp_path / "r.html", production_model_dir=local)
    assert result.comparison is not None and result.comparison.delta_val_acc == 0.0


def test_missing_production_model_on_gcs_names_the_uri(gcs_emulator):
    import pytest

    from planets_mlops.errors import DataError

    bucket = gcs_emulator.make_bucket("planets-models")
    with pytest.raises(
        DataError, match=r"No objects under production_model_uri='gs://planets-models/nothing'"
    ):
        resolve_model_dir(f"{bucket}/nothing")
