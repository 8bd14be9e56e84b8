"""Image names and the Dockerfile: tags from the source digest, one multi-stage Dockerfile
whose targets are the images, its base a digest-pinned build argument, no registry stage,
non-root users, bytecode compiled at build, the GPU driver path (no engine needed)."""

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
DOCKERFILE = REPO / "images" / "Dockerfile"
TARGETS = ("runtime", "train-gpu", "serving")
FROM = re.compile(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", re.M | re.I)


def stages(text: str) -> dict[str, tuple[str, str]]:
    """Each stage of a Dockerfile by name: (what it is built FROM, its instructions)."""
    found = list(FROM.finditer(text))
    ends = [m.start() for m in found[1:]] + [len(text)]
    return {m.group(2): (m.group(1), text[m.end() : end]) for m, end in zip(found, ends, strict=True)}


def chain(name: str) -> str:
    """The instructions of a target and of every stage it is built on, first stage first."""
    built = stages(DOCKERFILE.read_text())
    parts = []
    while name in built:
        base, body = built[name]
        parts.insert(0, body)
        name = base
    return "".join(parts)


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
    assert set(ALL_IMAGES) == set(TARGETS)
    assert all(ref.endswith(f"/{name}:{IMAGE_TAG}") for name, ref in ALL_IMAGES.items())


def test_any_code_change_changes_the_digest_and_caches_do_not(tmp_path):
    tree = copy_inputs(tmp_path)
    before = source_digest(tree)
    assert source_digest(tree) == before  # deterministic
    (tree / "components" / "__pycache__").mkdir(exist_ok=True)
    (tree / "components" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (tree / "planets_mlops" / ".mypy_cache").mkdir(exist_ok=True)
    assert source_digest(tree) == before
    for changed in ("components/train_model.py", "requirements.lock", "images/Dockerfile"):
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


def test_one_dockerfile_builds_every_image_from_one_pinned_base():
    text = DOCKERFILE.read_text()
    built = stages(text)
    assert set(TARGETS) <= set(built) and set(ALL_IMAGES) <= set(built)
    # One stage from the base; every other stage from an earlier stage of this file, so no
    # registry image is needed (uv comes from PyPI), and the targets share their first layers.
    names = list(built)
    assert built[names[0]][0] == "${PYTHON_IMAGE}"
    for n, name in enumerate(names[1:], start=1):
        assert built[name][0] in names[:n], (name, built[name][0])
    assert all(chain(name).startswith(built[names[0]][1]) for name in TARGETS)
    (default,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", default)
    assert "COPY --from" not in text and ":latest" not in text
    # The CA bundle is a build secret, never copied into a layer.
    assert not re.search(r"^(COPY|ADD)\s.*\.(crt|pem)\b", text, re.M)
    assert 'pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"' in text
    # Besides it only the Debian-built base for machines without a registry (scripts/base_image.sh).
    assert sorted((REPO / "images").rglob("Dockerfile")) == [
        DOCKERFILE,
        REPO / "images" / "base" / "Dockerfile",
    ]


@pytest.mark.parametrize("name", TARGETS)
def test_images_run_as_a_non_root_user(name):
    users = re.findall(r"^USER\s+(\S+)", chain(name), re.M)
    assert users and users[-1] == "10001:10001"


@pytest.mark.parametrize("name", TARGETS)
def test_images_carry_their_name_and_tag_and_build_those_last(name):
    body = stages(DOCKERFILE.read_text())[name][1]
    assert f'org.opencontainers.image.title="planets-mlops-{name}"' in body
    assert 'org.opencontainers.image.version="${IMAGE_TAG}"' in body
    # The per-commit arguments come after the last RUN: a new commit rebuilds only the labels.
    assert "RUN " not in body[body.index("ARG IMAGE_TAG") :]


@pytest.mark.parametrize("name", TARGETS)
def test_every_package_is_installed_from_the_lock_with_its_bytecode(name):
    # PYTHONDONTWRITEBYTECODE=1 in the images: without .pyc compiled at build, every task and
    # server compiles what it imports (TensorFlow, KFP, BentoML) from source at each start.
    installs = re.findall(r"uv pip install ([^&\n]*)", stages(DOCKERFILE.read_text())[name][1])
    assert installs and all("--compile-bytecode" in line for line in installs), installs
    assert all(re.search(r"-r \S+\.lock|--no-deps --no-build-isolation", line) for line in installs)
    assert "PYTHONDONTWRITEBYTECODE=1" in chain(name)


def test_training_image_puts_the_gke_driver_on_the_paths():
    text = chain("train-gpu")
    assert re.search(r"LD_LIBRARY_PATH=/usr/local/nvidia/lib64[:\s]", text)
    assert "PATH=/usr/local/nvidia/bin:${PATH}" in text
    assert "/usr/local/nvidia" not in chain("runtime")


def test_the_launcher_artifact_roots_belong_to_the_user():
    for name in ("runtime", "train-gpu"):
        assert "mkdir -p /gcs /minio /s3 /oci && chown 10001:10001 /gcs /minio /s3 /oci" in chain(name), name
