"""Package a trained model folder as a BentoML bento and export it as a ``.bento`` archive.

Steps, all inside a private ``BENTOML_HOME`` (never ``~/bentoml``):

1. save the model folder (``model.onnx``, ``classes.json``, ``preprocess.json``) to the
   model store as ``planets-classifier``, with the class list, the preprocessing config,
   the evaluation metrics and the provenance as labels/metadata;
2. build the bento from a small build context holding only the serving modules of this
   package (the service imports :func:`planets_mlops.preprocess.preprocess_image`, the
   function ``prepare_dataset`` used, never a copy), with exact pins for the serving
   dependencies taken from ``requirements.lock``;
3. export it as one archive file, ready for ``bentoml import`` in the serving image
   (:func:`write_archive`: the archive ``bentoml export`` writes, at a faster xz preset).

BentoML keeps its stores in process-wide singletons fixed at import, so steps 1-3 run in
a child Python process whose ``BENTOML_HOME`` is the private folder; the caller never
imports BentoML and two packagings in one process cannot see each other's stores.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from planets_mlops.errors import DataError, InvalidParameterError, PlanetsError
from planets_mlops.model_folder import (
    OPTIONAL_FILES,
    REQUIRED_FILES,
    missing_files,
    read_classes,
    read_preprocess,
)

log = logging.getLogger(__name__)

MODEL_NAME = "planets-classifier"
BENTO_NAME = "planets_classifier"
SERVICE_IMPORT = "planets_mlops.service.service:PlanetClassifier"
# What the model store keeps of a model folder (planets_mlops.model_folder): the required
# files, and the guard, the monitoring reference and the history when the folder has them.
MODEL_FILES = REQUIRED_FILES
OPTIONAL_MODEL_FILES = OPTIONAL_FILES
# The modules the service imports: the bento carries exactly these, so the serving image
# never needs TensorFlow, DVC or kfp.
SERVING_SOURCES = (
    "planets_mlops/__init__.py",
    "planets_mlops/errors.py",
    "planets_mlops/safejson.py",
    "planets_mlops/imaging.py",
    "planets_mlops/guard.py",
    "planets_mlops/imagestats.py",
    "planets_mlops/inbox/__init__.py",
    "planets_mlops/inbox/core.py",
    "planets_mlops/inbox/items.py",
    "planets_mlops/inbox/scores.py",
    "planets_mlops/inbox/storage.py",
    "planets_mlops/inbox/writer.py",
    "planets_mlops/knobs.py",
    "planets_mlops/metric_names.py",
    "planets_mlops/model_folder.py",
    "planets_mlops/monitoring/__init__.py",
    "planets_mlops/monitoring/features.py",
    "planets_mlops/monitoring/records.py",
    "planets_mlops/monitoring/writer.py",
    "planets_mlops/storage.py",
    "planets_mlops/preprocess.py",
    "planets_mlops/service/__init__.py",
    "planets_mlops/service/settings.py",
    "planets_mlops/service/uploads.py",
    "planets_mlops/service/inference.py",
    "planets_mlops/service/coalesce.py",
    "planets_mlops/service/decoding.py",
    "planets_mlops/service/decode_worker.py",
    "planets_mlops/service/protocol.py",
    "planets_mlops/service/listening.py",
    "planets_mlops/service/service.py",
)
# Distributions the service process imports, pinned exactly in the bento.
SERVING_PACKAGES = (
    "bentoml",
    "onnxruntime",
    "numpy",
    "pillow",
    "starlette",
    "python-multipart",
    "uvloop",
    "httptools",
    # gs:// stores of the inbox and the prediction records (imported only when one is set).
    "google-cloud-storage",
)
PACKAGE_ROOT = Path(__file__).resolve().parent
DEFAULT_LOCK = PACKAGE_ROOT.parent / "requirements.lock"


class PackagingError(PlanetsError):
    """BentoML could not save the model, build the bento or export it."""


@dataclass(frozen=True)
class PackageSpec:
    """Everything the child process needs to package one model (JSON-serialisable)."""

    model_dir: str
    output_path: str
    requirements: list[str]
    labels: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    version: str = ""


@dataclass(frozen=True)
class PackageResult:
    """The exported bento.

    Attributes:
        bento_tag: Tag of the bento, for ``bentoml import`` and ``bentoml serve``.
        model_tag: Tag of the model in the bento.
        size_bytes: Size of the ``.bento`` archive.
        requirements: The exact serving pins built into the bento.
        labels: Bento and model labels (provenance and headline metrics).
        classes: Class names of the model.
        seconds: Duration of the packaging.
        data_revision: Data revision the model was trained on (``unknown`` when not given).
        model_uri: URI of the packaged model artifact.
    """

    bento_tag: str
    model_tag: str
    size_bytes: int
    requirements: list[str]
    labels: dict[str, str]
    classes: list[str]
    seconds: float
    data_revision: str
    model_uri: str

    def metadata(self) -> dict[str, Any]:
        """Metadata of the bento Model artifact; ``bento_tag`` names it for ``bentoml import``."""
        return {
            "bento_tag": self.bento_tag,
            "model_tag": self.model_tag,
            "data_revision": self.data_revision,
            "model_uri": self.model_uri,
            "classes": self.classes,
            "size_bytes": self.size_bytes,
            "serving_requirements": self.requirements,
            "framework": "onnxruntime",
        }


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def serving_requirements(
    lock_file: Path | None = None, packages: Iterable[str] = SERVING_PACKAGES
) -> list[str]:
    """Exact ``name==version`` pins of the serving dependencies.

    Read from ``requirements.lock`` when it is there (a checkout); otherwise from the
    installed distributions, which in the runtime image were installed from that lock.

    Args:
        lock_file: The lock to read; default the repository's ``requirements.lock``.
        packages: Distribution names to pin.

    Returns:
        ``name==version`` pins, in the order of ``packages``.

    Raises:
        DataError: a serving package is neither in the lock nor installed.
    """
    wanted = {_normalise(name): name for name in packages}
    pins: dict[str, str] = {}
    lock_file = DEFAULT_LOCK if lock_file is None else Path(lock_file)
    if lock_file.is_file():
        for line in lock_file.read_text().splitlines():
            line = line.split("#")[0].strip()
            if "==" not in line or line.startswith("-"):
                continue
            name, _, version = line.partition("==")
            name = _normalise(name.split("[")[0])
            if name in wanted:
                pins[name] = f"{wanted[name]}=={version.split(';')[0].split()[0]}"
        source = str(lock_file)
    else:
        source = "installed distributions"
    from importlib import metadata

    for key, name in wanted.items():
        if key not in pins:
            try:
                pins[key] = f"{name}=={metadata.version(name)}"
            except metadata.PackageNotFoundError as exc:
                raise DataError(
                    f"Serving dependency {name!r} is neither in {str(lock_file)!r} nor installed. "
                    "Add it to pyproject.toml and recompile requirements.lock."
                ) from exc
    log.info("Serving pins from %s: %s", source, ", ".join(pins.values()))
    return [pins[key] for key in wanted]


def check_model_dir(model_dir: Path) -> tuple[list[str], dict[str, Any]]:
    """Validate a model folder; return its classes and preprocessing config.

    Args:
        model_dir: A folder written by ``train_model``.

    Returns:
        The class names and the preprocessing config as a dict.

    Raises:
        DataError: a required file is missing or unreadable.
    """
    model_dir = Path(model_dir)
    missing = missing_files(model_dir, MODEL_FILES)
    if missing:
        raise DataError(
            f"Model folder {str(model_dir)!r} lacks {missing}. Pass the model artifact written "
            "by train_model (it has model.onnx, classes.json, preprocess.json)."
        )
    from planets_mlops.preprocess import PreprocessConfig

    try:
        classes = read_classes(model_dir)
        preprocess = PreprocessConfig.from_dict(read_preprocess(model_dir))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"Model folder {str(model_dir)!r} has an unreadable classes.json or preprocess.json: {exc}"
        ) from exc
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise DataError(
            f"classes.json in {str(model_dir)!r} must be a non-empty list of names, got {classes!r}."
        )
    return classes, preprocess.to_dict()


PROVENANCE_LABELS = ("data_content_hash", "data_base_commit", "data_dvc_hash")


def bento_labels(
    data_revision: str,
    model_uri: str,
    metrics: Mapping[str, Any],
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Bento/model labels: provenance and the headline metrics, all as strings.

    Args:
        data_revision: Data revision the model was trained on; empty: ``unknown``.
        model_uri: URI of the model artifact; empty: ``unknown``.
        metrics: Metrics; numbers become ``metric_<name>`` labels, other values are dropped.
        provenance: The model's data provenance; its :data:`PROVENANCE_LABELS` become
            labels of the same name (the content hash tells apart data sets that share a
            commit, e.g. labels merged but not published).

    Returns:
        Label name -> value.
    """
    labels = {"data_revision": data_revision or "unknown", "model_uri": model_uri or "unknown"}
    for key in PROVENANCE_LABELS:
        if (provenance or {}).get(key):
            labels[key] = str(provenance[key])  # type: ignore[index]
    for key, value in sorted(metrics.items()):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            labels[f"metric_{key}"] = f"{float(value):.6g}"
    return labels


def _run_child(
    spec: PackageSpec, model_dir: Path, bentoml_home: Path | None, timeout_s: float
) -> dict[str, Any]:
    """Package ``spec`` in a child Python process with a private ``BENTOML_HOME``."""
    with tempfile.TemporaryDirectory(prefix="package-model-") as tmp:
        home = Path(bentoml_home) if bentoml_home else Path(tmp) / "bentoml"
        spec_file = Path(tmp) / "spec.json"
        result_file = Path(tmp) / "result.json"
        spec_file.write_text(json.dumps(asdict(spec)))
        env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
        command = [sys.executable, "-m", "planets_mlops.package", str(spec_file), str(result_file)]
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False, cwd=tmp
        )
        if done.returncode != 0:
            raise PackagingError(
                f"Packaging {str(model_dir)!r} failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
            )
        return json.loads(result_file.read_text())


def package_model(
    model_dir: Path,
    output_path: Path,
    *,
    metrics: Mapping[str, Any] | None = None,
    data_revision: str = "",
    model_uri: str = "",
    provenance: Mapping[str, Any] | None = None,
    version: str = "",
    lock_file: Path | None = None,
    bentoml_home: Path | None = None,
    timeout_s: float = 600.0,
) -> PackageResult:
    """Save ``model_dir`` to a private model store, build a bento, export it to ``output_path``.

    Args:
        model_dir: Folder written by :func:`planets_mlops.train.train_model`.
        output_path: Where the ``.bento`` archive goes (any file name; the KFP artifact
            path has no extension, which ``bentoml import`` accepts).
        metrics: Evaluation metrics (numbers are kept, other values dropped), recorded as
            model metadata, bento labels and served by ``GET /metadata``.
        data_revision: Data revision the model was trained on (label ``data_revision``);
            empty: ``unknown``.
        model_uri: URI of the model artifact (label ``model_uri``).
        provenance: The model artifact's metadata; see :func:`bento_labels`.
        version: Bento and model version; empty lets BentoML generate one.
        lock_file: Lock to take the serving pins from (default: the repository's).
        bentoml_home: BentoML home to use; default a temporary folder removed afterwards.
        timeout_s: Limit for the packaging child process.

    Returns:
        The bento and model tags, archive size, serving pins, labels, classes, duration
        and provenance.

    Raises:
        DataError: the model folder is incomplete.
        PackagingError: BentoML failed (its output is in the message).
    """
    started = time.monotonic()
    model_dir = Path(model_dir)
    classes, _ = check_model_dir(model_dir)
    numeric = {
        k: float(v)
        for k, v in (metrics or {}).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    spec = PackageSpec(
        model_dir=str(model_dir.resolve()),
        output_path=str(Path(output_path).resolve()),
        requirements=serving_requirements(lock_file),
        labels=bento_labels(data_revision, model_uri, numeric, provenance),
        metrics=numeric,
        version=version,
    )
    Path(spec.output_path).parent.mkdir(parents=True, exist_ok=True)
    info = _run_child(spec, model_dir, bentoml_home, timeout_s)
    result = PackageResult(
        bento_tag=info["bento_tag"],
        model_tag=info["model_tag"],
        size_bytes=info["size_bytes"],
        requirements=info["requirements"],
        labels=info["labels"],
        classes=classes,
        seconds=round(time.monotonic() - started, 2),
        data_revision=data_revision or "unknown",
        model_uri=model_uri,
    )
    log.info(
        "Packaged %s as bento %s (%d bytes) in %.1f s",
        model_dir,
        result.bento_tag,
        result.size_bytes,
        result.seconds,
    )
    return result


def _build_context(root: Path) -> Path:
    """A build context with only the serving modules of this package."""
    source_root = PACKAGE_ROOT.parent
    for relative in SERVING_SOURCES:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source_root / relative, target)
    return root


def _package_in_this_process(spec: PackageSpec) -> dict[str, Any]:
    """Steps 1-3; runs in the child process, whose BENTOML_HOME is private."""
    import bentoml

    model_dir = Path(spec.model_dir)
    classes = read_classes(model_dir)
    preprocess = read_preprocess(model_dir)
    model_tag = f"{MODEL_NAME}:{spec.version}" if spec.version else MODEL_NAME
    with bentoml.models.create(
        model_tag,
        labels=spec.labels,
        metadata={
            "classes": classes,
            "preprocess": preprocess,
            "metrics": spec.metrics,
            "format": "onnx",
            "input_name": "image",
        },
    ) as model:
        for name in MODEL_FILES + OPTIONAL_MODEL_FILES:
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, Path(model.path) / name)
    with tempfile.TemporaryDirectory(prefix="bento-ctx-") as ctx:
        build_ctx = _build_context(Path(ctx))
        bento = bentoml.bentos.build(
            SERVICE_IMPORT,
            name=BENTO_NAME,
            labels=spec.labels,
            description="Planets classifier: ONNX Runtime behind BentoML (docs/serving.md).",
            include=list(SERVING_SOURCES),
            python={"packages": spec.requirements, "lock_packages": False},
            models=[str(model.tag)],
            version=spec.version or None,
            build_ctx=str(build_ctx),
        )
    # Export to a temporary name first: a half-written archive must never sit at the
    # artifact path of a retried task.
    partial = Path(spec.output_path + ".partial.bento")
    with tempfile.TemporaryDirectory(prefix="bento-export-") as exported:
        # BentoML's export with its models, as a folder; archived here at a faster preset.
        folder = Path(bento.export(exported + "/bento/", output_format="folder"))
        write_archive(folder, partial)
    os.replace(partial, spec.output_path)
    return {
        "bento_tag": str(bento.tag),
        "model_tag": str(model.tag),
        "size_bytes": Path(spec.output_path).stat().st_size,
        "requirements": spec.requirements,
        "labels": spec.labels,
    }


ARCHIVE_PRESET = 0
"""The xz preset of the ``.bento`` archive: 0, LZMA's fast mode. ``bentoml export`` uses 6,
which took 2.4 CPU s of the packaging's ~4 s for an archive 1 % smaller (3.59 against 3.63 MB:
the ONNX weights hardly compress); preset 0 took 0.7 s."""


def write_archive(bento_dir: Path, archive: Path, preset: int = ARCHIVE_PRESET) -> None:
    """Write the ``.bento`` archive of the bento folder ``bento_dir``, as ``bentoml export`` writes it.

    An xz-compressed tar whose entries are the folder's, under ``./``, in the same order
    (``bentoml import`` and :func:`planets_mlops.serving_entrypoint.import_archive` read it),
    compressed at ``preset``.
    """
    import tarfile

    with tarfile.open(archive, "w:xz", preset=preset) as tar:  # type: ignore[call-overload]
        tar.add(str(bento_dir), arcname=".")


def _main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    spec_file, result_file = Path(argv[0]), Path(argv[1])
    spec = PackageSpec(**json.loads(spec_file.read_text()))
    result_file.write_text(json.dumps(_package_in_this_process(spec)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(
            InvalidParameterError(
                "argv", sys.argv[1:], "SPEC_JSON RESULT_JSON", "This entry point is for package_model()."
            )
        )
    sys.exit(_main(sys.argv[1:]))
