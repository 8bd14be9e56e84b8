"""Artifacts on gs:// against fake-gcs-server: the bento archive the serving pod fetches,
and a production model folder that evaluate_model compares with. No mocked storage."""

from planets_mlops.app.dev.serve_local import bento_tag_of
from planets_mlops.serving_entrypoint import download
from planets_mlops.storage_paths import resolve_model_dir
from tests.support.helpers import sha256_file, upload_to_gcs


def test_serving_pod_fetches_the_bento_archive_from_gcs(gcs_emulator, packaged_bento, tmp_path):
    bucket = gcs_emulator.make_bucket("planets-artifacts")
    uri = f"{bucket}/pipeline-root/run-1/package-model/bento/planets.bento"
    upload_to_gcs(packaged_bento["archive"], uri)
    fetched = download(uri, tmp_path)
    assert sha256_file(fetched) == sha256_file(packaged_bento["archive"])
    assert bento_tag_of(fetched) == packaged_bento["bento_tag"]


def test_production_model_folder_on_gcs(gcs_emulator, tiny_model, small_prepared, tmp_path):
    from planets_mlops.evaluate import evaluate_model

    bucket = gcs_emulator.make_bucket("planets-models")
    for path in tiny_model.iterdir():
        upload_to_gcs(path, f"{bucket}/production/model/{path.name}")
    local = resolve_model_dir(f"{bucket}/production/model")
    assert {"model.onnx", "classes.json"} <= {p.name for p in local.iterdir()}
    result = evaluate_model(small_prepared, tiny_model, tmp_path / "r.html", production_model_dir=local)
    assert result.comparison is not None and result.comparison.delta_val_accuracy == 0.0


def test_missing_production_model_on_gcs_names_the_uri(gcs_emulator):
    import pytest

    from planets_mlops.errors import DataError

    bucket = gcs_emulator.make_bucket("planets-models")
    with pytest.raises(
        DataError, match=r"No objects under production_model_uri='gs://planets-models/nothing'"
    ):
        resolve_model_dir(f"{bucket}/nothing")


def _upload_model(tiny_model, bucket, prefix):
    for path in tiny_model.iterdir():
        upload_to_gcs(path, f"{bucket}/{prefix}/{path.name}")


def test_production_model_objects_named_with_dotdot_never_leave_the_folder(
    gcs_emulator, tiny_model, tmp_path, monkeypatch
):
    import tempfile

    import pytest

    from planets_mlops.errors import DataError
    from planets_mlops.storage import make_client

    bucket = gcs_emulator.make_bucket("planets-traversal")
    _upload_model(tiny_model, bucket, "production/model")
    # Anyone who can write under the prefix picks the object names.
    escape_name = f"escaped-{tmp_path.name}.txt"
    blob = make_client().bucket(bucket[len("gs://") :]).blob(f"production/model/../../{escape_name}")
    blob.upload_from_string(b"written outside the temp folder")
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))

    with pytest.raises(DataError, match=r"Refusing .*\.\./\.\./escaped-.*resolves outside"):
        resolve_model_dir(f"{bucket}/production/model")
    assert not (tmp_path / escape_name).exists()
    assert not (temp_root / escape_name).exists()
    assert list(temp_root.iterdir()) == []  # the partial download is removed too


def test_production_model_downloads_only_the_model_files(gcs_emulator, tiny_model, tmp_path):
    from planets_mlops.storage_paths import MODEL_FILES

    bucket = gcs_emulator.make_bucket("planets-extra")
    _upload_model(tiny_model, bucket, "production/model")
    extra = tmp_path / "extra.bin"
    extra.write_bytes(b"x" * 1024)
    upload_to_gcs(extra, f"{bucket}/production/model/checkpoints/big.bin")
    upload_to_gcs(extra, f"{bucket}/production/model/notes.txt")
    local = resolve_model_dir(f"{bucket}/production/model")
    names = sorted(str(p.relative_to(local)) for p in local.rglob("*"))
    assert names == sorted(set(MODEL_FILES) & {p.name for p in tiny_model.iterdir()})


def test_the_drift_step_reads_its_reference_from_a_model_on_gcs(gcs_emulator, tiny_model, tmp_path):
    from kfp.dsl import HTML, Artifact, Markdown, Metrics

    from planets_mlops.app.dev import traffic
    from planets_mlops.components.detect_drift import detect_drift
    from tests.support.helpers import make_artifact

    # The documented form: the model folder on gs://, the records in a folder. The drift step
    # needs monitoring_reference.json, which evaluation's download never fetched.
    bucket = gcs_emulator.make_bucket("planets-drift-model")
    _upload_model(tiny_model, bucket, "production/model")
    from tests.support.fixtures.data import PLANETS

    images = [path.read_bytes() for path in sorted((PLANETS / "raw" / "Mars").iterdir())[:3]]
    records = traffic.model_records(traffic.ModelRunner(tiny_model), images, "7")
    traffic.write_records(str(tmp_path / "records"), records)
    outputs = {
        "report": make_artifact(HTML, tmp_path / "report.html"),
        "metrics": make_artifact(Metrics, tmp_path / "metrics"),
        "verdict": make_artifact(Markdown, tmp_path / "verdict.md"),
        "summary": make_artifact(Artifact, tmp_path / "summary.json"),
    }
    answer = detect_drift.python_func(
        **outputs,
        records_uri=str(tmp_path / "records"),
        model_uri=f"{bucket}/production/model",
        model_version="7",
    ).drift_verdict
    assert answer == "not enough data"  # 3 records < min_records; the reference was read


def test_each_caller_downloads_the_files_it_names_and_no_others(gcs_emulator, tiny_model):
    from planets_mlops.storage_paths import DRIFT_FILES, EVALUATE_FILES

    bucket = gcs_emulator.make_bucket("planets-callers")
    _upload_model(tiny_model, bucket, "production/model")
    upload_to_gcs(tiny_model / "classes.json", f"{bucket}/production/model/unrelated.json")
    drift = resolve_model_dir(f"{bucket}/production/model", DRIFT_FILES, param="model_uri")
    assert sorted(p.name for p in drift.iterdir()) == ["classes.json", "monitoring_reference.json"]
    evaluate = resolve_model_dir(f"{bucket}/production/model", EVALUATE_FILES)
    assert sorted(p.name for p in evaluate.iterdir()) == sorted(
        ["model.onnx", "classes.json", "preprocess.json", "guard.json", "guard_bank.npy", "guard_images.npy"]
    )


def test_a_model_without_its_reference_is_refused_naming_the_parameter(gcs_emulator, tiny_model):
    import pytest

    from planets_mlops.errors import DataError
    from planets_mlops.storage_paths import DRIFT_FILES

    bucket = gcs_emulator.make_bucket("planets-noref")
    for path in tiny_model.iterdir():
        if path.name != "monitoring_reference.json":
            upload_to_gcs(path, f"{bucket}/old/model/{path.name}")
    with pytest.raises(
        DataError, match=r"model_uri='gs://planets-noref/old/model' lacks monitoring_reference"
    ):
        resolve_model_dir(f"{bucket}/old/model", DRIFT_FILES, param="model_uri")


def test_drift_downloads_still_refuse_names_outside_the_folder(
    gcs_emulator, tiny_model, tmp_path, monkeypatch
):
    import tempfile

    import pytest

    from planets_mlops.errors import DataError
    from planets_mlops.storage import make_client
    from planets_mlops.storage_paths import DRIFT_FILES

    bucket = gcs_emulator.make_bucket("planets-drift-traversal")
    _upload_model(tiny_model, bucket, "production/model")
    blob = make_client().bucket(bucket[len("gs://") :]).blob("production/model/../monitoring_reference.json")
    blob.upload_from_string(b"{}")
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))
    with pytest.raises(DataError, match=r"resolves outside"):
        resolve_model_dir(f"{bucket}/production/model", DRIFT_FILES, param="model_uri")
    assert list(temp_root.iterdir()) == []


def test_the_records_location_is_checked_on_gcs_too(gcs_emulator):
    """Issue 26, weak point: a typo in a gs:// records location is an error, not an empty window."""
    import pytest

    from planets_mlops.errors import NotFoundError
    from planets_mlops.monitoring import records as records_module
    from planets_mlops.storage import make_client

    bucket = gcs_emulator.make_bucket("planets-records-typo")
    client = make_client()
    client.bucket(bucket.removeprefix("gs://")).blob("records/m_1/2026-12-04/10/a.jsonl").upload_from_string(
        b""
    )
    assert records_module.recorded_versions(f"{bucket}/records", client) == ["m_1"]
    for typo in (f"{bucket}/recrods", "gs://planets-no-such-bucket/records"):
        with pytest.raises(NotFoundError, match="No prediction records at all"):
            records_module.recorded_versions(typo, client)
