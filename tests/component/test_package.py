"""Packaging: pins, labels, the real bento build, the KFP component and its compiled IR."""

# No ``from __future__ import annotations``: KFP reads the pipeline's annotations as types.
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from kfp import dsl

from planets_mlops.app.dev.serve_local import bento_tag_of
from planets_mlops.components.images import RUNTIME_IMAGE
from planets_mlops.components.package_model import package_model as package_model_component
from planets_mlops.errors import DataError, InvalidParameterError
from planets_mlops.package import (
    SERVING_PACKAGES,
    SERVING_SOURCES,
    bento_labels,
    check_model_dir,
    package_model,
    serving_requirements,
)
from planets_mlops.service.settings import ServingSettings
from tests.support.helpers import compile_ir, make_artifact


def bento_yaml(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        return yaml.safe_load(tar.extractfile("./bento.yaml").read())


def archive_files(archive: Path) -> set[str]:
    with tarfile.open(archive) as tar:
        return {name.removeprefix("./") for name in tar.getnames()}


@pytest.mark.parametrize(
    ("line", "pin"),
    [
        ("bentoml==1.4.39", "bentoml==1.4.39"),
        ("Pillow==13.0.0 \\", "pillow==13.0.0"),
        ("python_multipart==0.0.34", "python-multipart==0.0.34"),
        ("numpy==2.4.6 ; python_version >= '3.11'", "numpy==2.4.6"),
    ],
)
def test_serving_requirements_are_exact_pins_from_the_lock(tmp_path: Path, line: str, pin: str) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"# via uv\n{line}\n    # via something\ntensorflow-cpu==2.21.0\n")
    pins = serving_requirements(lock)
    assert pin in pins
    assert len(pins) == len(SERVING_PACKAGES)
    assert all("==" in p for p in pins)
    assert not any(p.startswith("tensorflow") for p in pins)


def test_serving_requirements_fall_back_to_installed_versions(tmp_path: Path) -> None:
    from importlib import metadata

    pins = serving_requirements(tmp_path / "absent.lock")
    assert f"bentoml=={metadata.version('bentoml')}" in pins


def test_serving_requirements_name_a_package_that_is_nowhere(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no-such-dist-xyz"):
        serving_requirements(tmp_path / "absent.lock", packages=("no-such-dist-xyz",))


def test_bento_labels_are_strings_with_provenance_and_numeric_metrics() -> None:
    labels = bento_labels("abc", "gs://b/model", {"val_accuracy": 0.9123456789, "note": "x", "flag": True})
    assert labels == {"data_revision": "abc", "model_uri": "gs://b/model", "metric_val_accuracy": "0.912346"}
    assert bento_labels("", "", {})["data_revision"] == "unknown"


@pytest.mark.parametrize("missing", ["model.onnx", "classes.json", "preprocess.json"])
def test_check_model_dir_names_the_missing_file(tmp_path: Path, tiny_model: Path, missing: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.onnx", "classes.json", "preprocess.json"):
        if name != missing:
            (folder / name).write_bytes((tiny_model / name).read_bytes())
    with pytest.raises(DataError, match=missing):
        check_model_dir(folder)


def test_check_model_dir_rejects_a_bad_class_list(tmp_path: Path, tiny_model: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.onnx", "preprocess.json"):
        (folder / name).write_bytes((tiny_model / name).read_bytes())
    (folder / "classes.json").write_text("[]")
    with pytest.raises(DataError, match="non-empty list"):
        check_model_dir(folder)


def test_packaged_bento_carries_model_provenance_pins_and_only_serving_sources(
    packaged_bento: dict[str, Any],
) -> None:
    archive = packaged_bento["archive"]
    assert bento_tag_of(archive) == packaged_bento["bento_tag"]
    assert packaged_bento["bento_tag"].startswith("planets_classifier:")
    info = bento_yaml(archive)
    assert info["service"] == "planets_mlops.service.service:PlanetClassifier"
    assert info["labels"]["data_revision"] == "0123abcd"
    assert info["labels"]["model_uri"] == packaged_bento["model_dir"].as_uri()
    assert info["labels"]["metric_val_acc"] == "0.75"  # as given (fixtures/serving.TEST_METRICS)
    assert [m["tag"] for m in info["models"]] == [packaged_bento["model_tag"]]
    requirements = info["image"]["python_requirements"].split()
    assert set(packaged_bento["requirements"]) <= set(requirements)
    assert not any("tensorflow" in r or r.startswith("kfp") for r in requirements)
    sources = {
        name.removeprefix("src/")
        for name in archive_files(archive)
        if name.startswith("src/planets_mlops/") and name.endswith(".py")
    }
    assert sources == set(SERVING_SOURCES)
    assert info["services"][0]["config"]["metrics"] == {"enabled": False}
    # The model carries its guard and its monitoring reference profile.
    model_files = {name.rsplit("/", 1)[-1] for name in archive_files(archive) if name.startswith("models/")}
    assert {"guard.json", "guard_bank.npy", "guard_images.npy", "monitoring_reference.json"} <= model_files


def test_component_packages_real_artifacts(tmp_path: Path, tiny_model: Path) -> None:
    model = make_artifact(dsl.Model, tiny_model, {"data_commit": "feedbeef"})
    metrics = make_artifact(dsl.Metrics, tmp_path / "metrics")
    metrics.log_metric("val_accuracy", 0.5)
    bento = make_artifact(dsl.Model, tmp_path / "bento")
    package_model_component.python_func(model=model, metrics=metrics, bento=bento, version="v1")
    assert Path(bento.path).is_file()
    assert bento.metadata["bento_tag"] == "planets_classifier:v1" == bento_tag_of(Path(bento.path))
    assert bento.metadata["data_revision"] == "feedbeef"
    assert bento.metadata["model_uri"] == str(tiny_model)
    assert bento.metadata["classes"] == json.loads((tiny_model / "classes.json").read_text())
    labels = bento_yaml(Path(bento.path))["labels"]
    assert labels["metric_val_accuracy"] == "0.5"


def test_package_model_refuses_an_incomplete_model_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="model.onnx"):
        package_model(tmp_path, tmp_path / "out.bento")


def test_component_compiles_on_runtime_image_without_pip(tmp_path: Path) -> None:
    @dsl.pipeline(name="package-only")
    def package_only(model_uri: str = "gs://b/model", metrics_uri: str = "gs://b/metrics") -> None:
        model = dsl.importer(artifact_uri=model_uri, artifact_class=dsl.Model)
        metrics = dsl.importer(artifact_uri=metrics_uri, artifact_class=dsl.Metrics)
        package_model_component(model=model.output, metrics=metrics.output)

    path = tmp_path / "package.yaml"
    ir, _ = compile_ir(package_only, path)
    (executor,) = [e for name, e in ir["deploymentSpec"]["executors"].items() if "package-model" in name]
    assert executor["container"]["image"] == RUNTIME_IMAGE
    assert "pip install" not in " ".join(executor["container"]["command"])
    outputs = ir["components"]["comp-package-model"]["outputDefinitions"]["artifacts"]
    assert outputs["bento"]["artifactType"]["schemaTitle"] == "system.Model"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ServingSettings()),
        (
            {"PLANETS_WORKERS": "1", "PLANETS_METRICS": "true", "PLANETS_ACCESS_LOG": "on"},
            ServingSettings(workers=1, metrics=True, access_log=True),
        ),
        ({"PLANETS_TRACING": "yes"}, ServingSettings(tracing=True)),
        (
            {"PLANETS_MAX_UPLOAD_BYTES": "2048", "PLANETS_MAX_BATCH": "4", "PLANETS_ORT_THREADS": "2"},
            ServingSettings(max_upload_bytes=2048, max_batch=4, ort_threads=2),
        ),
    ],
)
def test_serving_settings_from_env(env: dict[str, str], expected: ServingSettings) -> None:
    assert ServingSettings.from_env(env) == expected


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"PLANETS_WORKERS": "0"}, "PLANETS_WORKERS"),
        ({"PLANETS_METRICS": "maybe"}, "PLANETS_METRICS"),
        ({"PLANETS_TRACING": "sometimes"}, "PLANETS_TRACING"),
        ({"PLANETS_MAX_UPLOAD_BYTES": "10MB"}, "PLANETS_MAX_UPLOAD_BYTES"),
    ],
)
def test_serving_settings_name_the_bad_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(InvalidParameterError, match=name):
        ServingSettings.from_env(env)


def _store(home: Path) -> dict[str, bytes]:
    """Every file of a BentoML home's bento and model stores, by path, with its bytes."""
    return {
        p.relative_to(home).as_posix(): p.read_bytes()
        for p in sorted(home.rglob("*"))
        if p.is_file() and p.relative_to(home).parts[0] in ("bentos", "models")
    }


def test_the_serving_entrypoint_imports_what_bentoml_imports(
    tmp_path: Path, packaged_bento: dict[str, Any]
) -> None:
    """The image unpacks the archive itself: the same stores as ``bentoml import``, file by file."""
    import os
    import subprocess
    import sys

    from planets_mlops.serving_entrypoint import import_archive, is_imported

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    tag = packaged_bento["bento_tag"]
    name = tag.partition(":")[0]
    env = {"BENTOML_HOME": str(ours)}
    assert not is_imported(tag, env) and not is_imported(f"{name}:latest", env)
    assert import_archive(packaged_bento["archive"], ours) == tag
    assert is_imported(tag, env) and is_imported(f"{name}:latest", env)
    assert not is_imported(f"{name}:other", env) and not is_imported(f"other:{tag.partition(':')[2]}", env)
    assert import_archive(packaged_bento["archive"], ours) == tag  # again: already there, unchanged
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    cli = {**os.environ, "BENTOML_HOME": str(theirs), "BENTOML_DO_NOT_TRACK": "True"}
    subprocess.run(
        [bentoml, "import", str(packaged_bento["archive"])], env=cli, capture_output=True, check=True
    )
    assert _store(ours) == _store(theirs)
    listed = subprocess.run(
        [bentoml, "get", tag, "-o", "json"],
        env={**cli, "BENTOML_HOME": str(ours)},
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["name"] == name
    assert not list((ours / "tmp").iterdir())  # the staging folder is gone


def test_the_serving_entrypoint_refuses_an_archive_entry_outside_it(tmp_path: Path) -> None:
    import io

    from planets_mlops.serving_entrypoint import import_archive

    archive = tmp_path / "evil.bento"
    with tarfile.open(archive, "w:xz") as tar:
        for entry, data in (("./bento.yaml", b"name: a\nversion: b\n"), ("../escape.txt", b"x")):
            member = tarfile.TarInfo(entry)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    with pytest.raises(InvalidParameterError, match="escape"):
        import_archive(archive, tmp_path / "home")
    assert not (tmp_path / "escape.txt").exists()


def test_the_archive_holds_what_bentoml_export_writes(tmp_path: Path) -> None:
    """write_archive: bentoml export's xz tar (shutil's ``xztar`` of the folder), at a faster preset."""
    import shutil

    from planets_mlops.package import ARCHIVE_PRESET, write_archive

    folder = tmp_path / "bento"
    (folder / "models" / "m" / "v1").mkdir(parents=True)
    (folder / "bento.yaml").write_text("name: planets_classifier\nversion: v1\n")
    (folder / "models" / "m" / "v1" / "model.onnx").write_bytes(np.random.default_rng(0).bytes(50_000))
    write_archive(folder, tmp_path / "ours.bento")
    theirs = shutil.make_archive(str(tmp_path / "theirs"), "xztar", str(folder))
    with tarfile.open(tmp_path / "ours.bento", "r:xz") as ours, tarfile.open(theirs, "r:xz") as reference:
        assert [m.name for m in ours.getmembers()] == [m.name for m in reference.getmembers()]
        assert [m.mode for m in ours.getmembers()] == [m.mode for m in reference.getmembers()]
        for member in (m for m in reference.getmembers() if m.isfile()):
            assert ours.extractfile(member.name).read() == reference.extractfile(member).read()  # type: ignore[union-attr]
    assert ARCHIVE_PRESET == 0
