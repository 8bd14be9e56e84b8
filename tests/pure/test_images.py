"""Image names and Dockerfiles: tags from the source digest, bases as digest-pinned build
arguments, no registry stage, non-root users, the GPU driver path (no engine needed)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from planets_mlops import __version__
from planets_mlops.components import images
from planets_mlops.components.images import ALL_IMAGES, IMAGE_TAG, source_digest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {name: REPO / "images" / name / "Dockerfile" for name in ("runtime", "train-gpu", "serving")}


def copy_inputs(destination: Path) -> Path:
    for name in images.SOURCE_FILES:
        shutil.copy(REPO / name, destination / name)
    for name in images.SOURCE_DIRS:
        shutil.copytree(
            REPO / name, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    return destination


def test_the_tag_is_the_version_and_the_source_digest():
    assert IMAGE_TAG == f"{__version__}-{source_digest(REPO)[: images.DIGEST_LENGTH]}"
    assert set(ALL_IMAGES) == set(DOCKERFILES)
    assert all(ref.endswith(f"/{name}:{IMAGE_TAG}") for name, ref in ALL_IMAGES.items())


def test_any_code_change_changes_the_digest_and_caches_do_not(tmp_path):
    tree = copy_inputs(tmp_path)
    before = source_digest(tree)
    assert source_digest(tree) == before  # deterministic
    (tree / "components" / "__pycache__").mkdir(exist_ok=True)
    (tree / "components" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (tree / "planets_mlops" / ".mypy_cache").mkdir(exist_ok=True)
    assert source_digest(tree) == before
    for changed in ("components/train_model.py", "requirements.lock", "images/serving/Dockerfile"):
        path = tree / changed
        original = path.read_bytes()
        path.write_bytes(original + b"\n# changed\n")
        assert source_digest(tree) != before, changed
        path.write_bytes(original)
    (tree / "pipelines" / "new_module.py").write_text("X = 1\n")
    assert source_digest(tree) != before


def test_the_build_context_hashes_to_the_same_tag(tmp_path):
    # scripts/build_images.sh stages the context with this tar and tags from its digest.
    subprocess.run(
        f"tar -c --exclude=__pycache__ --exclude='*.pyc' --exclude='.*' pyproject.toml requirements.lock "
        f"README.md planets_mlops components pipelines images | tar -x -C {tmp_path}",
        shell=True,
        cwd=REPO,
        check=True,
    )
    assert source_digest(tmp_path) == source_digest(REPO)


def test_a_pinned_tag_wins(tmp_path):
    code = "from planets_mlops.components.images import ALL_IMAGES; print(ALL_IMAGES['serving'])"
    env = {
        "PATH": "/usr/bin:/bin",
        "PLANETS_IMAGE_TAG": "0.1.0-pinned",
        "PLANETS_IMAGE_REGISTRY": "r.example/p/",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "r.example/p/serving:0.1.0-pinned"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_bases_are_digest_pinned_build_args(name):
    text = DOCKERFILES[name].read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms == ["${PYTHON_IMAGE}"], froms  # one stage, no registry image (uv from PyPI)
    (default,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", default)
    assert "COPY --from" not in text and ":latest" not in text
    # The CA bundle is a build secret, never copied into a layer.
    assert not re.search(r"^(COPY|ADD)\s.*\.(crt|pem)\b", text, re.M)
    assert 'pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"' in text


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_images_run_as_a_non_root_user(name):
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILES[name].read_text(), re.M)
    assert users and users[-1] == "10001:10001"


def test_training_image_puts_the_gke_driver_on_the_paths():
    text = DOCKERFILES["train-gpu"].read_text()
    assert re.search(r"LD_LIBRARY_PATH=/usr/local/nvidia/lib64[:\s]", text)
    assert "PATH=/usr/local/nvidia/bin:${PATH}" in text


def test_the_launcher_artifact_roots_belong_to_the_user():
    for name in ("runtime", "train-gpu"):
        text = DOCKERFILES[name].read_text()
        assert "mkdir -p /gcs /minio /s3 /oci && chown 10001:10001 /gcs /minio /s3 /oci" in text, name
