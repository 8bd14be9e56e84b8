"""Entrypoint of the serving image: fetch a bento archive, import it, serve it.

One pinned serving image serves every model, so deploying needs no Docker daemon and no
per-model image build: the pod gets ``BENTO_URI`` (``gs://...``, ``http(s)://...`` or a
local path) and ``BENTO_TAG`` (``name:version``), and at start this module downloads the
archive, imports it into ``$BENTOML_HOME`` (skipped when the tag is already there, e.g.
after a container restart on the same emptyDir), then replaces itself with
``bentoml serve <tag> --host 0.0.0.0 --port 3000``.

The store is looked up on disk and the archive unpacked into it by this module
(:func:`is_imported`, :func:`import_archive`), not with ``bentoml get`` and ``bentoml
import``: each of those is a process that imports BentoML's whole command line (0.8-1.0 s
apiece on 2 cores), which was most of the image's start beyond ``bentoml serve``'s own.

Usage: ``python -m planets_mlops.serving_entrypoint``.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from planets_mlops.errors import InvalidParameterError

logger = logging.getLogger(__name__)

DEFAULT_PORT = 3000


def serve_command(tag: str, host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> list[str]:
    """The ``bentoml serve`` command line for an imported bento.

    Args:
        tag: Bento tag ``name:version``.
        host: Address to bind; all interfaces inside a pod.
        port: Port; the manifests' probes and Service use 3000.

    Raises:
        InvalidParameterError: empty tag or port out of range.
    """
    if not tag or ":" not in tag:
        raise InvalidParameterError(
            "BENTO_TAG",
            tag,
            "a bento tag 'name:version'",
            "Set env BENTO_TAG to the tag the packaging step exported.",
        )
    if not 0 < int(port) < 65536:
        raise InvalidParameterError("BENTO_PORT", port, "a TCP port from 1 to 65535")
    return ["bentoml", "serve", tag, "--host", host, "--port", str(int(port))]


def import_command(archive: str | Path) -> list[str]:
    """The ``bentoml import`` command line for a downloaded ``.bento`` archive (for a shell)."""
    return ["bentoml", "import", str(archive)]


def bentoml_home(env: Mapping[str, str]) -> Path:
    """BentoML's home folder: ``$BENTOML_HOME``, else ``~/bentoml`` (BentoML's default)."""
    return Path(env.get("BENTOML_HOME") or Path.home() / "bentoml")


def is_imported(tag: str, env: Mapping[str, str]) -> bool:
    """Whether the bento ``name:version`` is in the bento store of ``$BENTOML_HOME``.

    What ``bentoml get`` answers, read from the store's layout
    (``bentos/<name>/<version>/bento.yaml``; ``<name>/latest`` names the newest version).
    """
    name, _, version = tag.partition(":")
    folder = bentoml_home(env) / "bentos" / name.lower()
    if version.lower() == "latest":
        latest = folder / "latest"
        if not latest.is_file():
            return False
        version = latest.read_text().strip()
    return (folder / version.lower() / "bento.yaml").is_file()


def _checked_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The archive's folders and files, refusing any other entry and any path leaving it."""
    members = []
    for member in tar.getmembers():
        parts = PurePosixPath(member.name).parts
        if member.name.startswith("/") or ".." in parts or not (member.isdir() or member.isfile()):
            raise InvalidParameterError(
                "BENTO_URI",
                member.name,
                "a bento archive of plain folders and files inside it",
                "Point it at the archive package_model exported.",
            )
        members.append(member)
    return members


def _tar_bytes(archive: Path) -> bytes:
    """The archive's tar stream, decompressed once (xz, gzip or none).

    Held in memory (a bento is a few MB): walking a compressed stream's members and then
    extracting them would decompress it twice, the larger part of an import.
    """
    import gzip
    import lzma

    with Path(archive).open("rb") as file:
        magic = file.read(6)
        file.seek(0)
        if magic == b"\xfd7zXZ\x00":
            return lzma.LZMADecompressor().decompress(file.read())
        if magic[:2] == b"\x1f\x8b":
            return gzip.decompress(file.read())
        return file.read()


def import_archive(archive: Path, home: Path) -> str:
    """Import a ``.bento`` archive into the BentoML home ``home``, as ``bentoml import`` does.

    Without BentoML: the archive (an xz tar written by ``bentoml export``) is unpacked into
    ``home/tmp``, its models are moved into the model store (``models/<name>/<version>``,
    unless there already) and the rest into the bento store (``bentos/<name>/<version>``),
    each ``latest`` naming the new version. ``bentoml import`` did the same in a process
    that imported BentoML (0.8 s), and in this process it cost 0.7 s inside the image
    against ~0.1 s for this. ``test_the_serving_entrypoint_imports_what_bentoml_imports``
    compares the two stores file by file.

    Returns:
        The bento's tag, ``name:version``.

    Raises:
        InvalidParameterError: not a bento archive, or an entry that is no plain file or
            folder or that points outside it.
    """
    import yaml

    try:
        with tarfile.open(fileobj=io.BytesIO(_tar_bytes(archive))) as tar:
            members = _checked_members(tar)
            found = [m for m in members if PurePosixPath(m.name).parts[-1:] == ("bento.yaml",)]
            root = [m for m in found if PurePosixPath(m.name).parts in (("bento.yaml",), (".", "bento.yaml"))]
            document = tar.extractfile(root[0]) if root else None
            info = yaml.safe_load(document.read()) if document else None
            if not isinstance(info, dict) or "name" not in info or "version" not in info:
                raise InvalidParameterError(
                    "BENTO_URI", str(archive), "a .bento archive with a bento.yaml naming it"
                )
            name, version = str(info["name"]).lower(), str(info["version"]).lower()
            (home / "tmp").mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix="import-", dir=home / "tmp"))
            # Members checked above; Python's own "data" filter too where it has one (3.11.4+).
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(staging, members=members, **safe)  # type: ignore[arg-type]
    except (tarfile.TarError, OSError) as exc:
        raise InvalidParameterError("BENTO_URI", str(archive), f"a readable .bento archive ({exc})") from exc
    try:
        models = staging / "models"
        for model in sorted(models.iterdir()) if models.is_dir() else []:
            for folder in sorted(p for p in model.iterdir() if p.is_dir()):
                target = home / "models" / model.name / folder.name
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    folder.rename(target)
                (target.parent / "latest").write_text(folder.name)
        shutil.rmtree(models, ignore_errors=True)
        target = home / "bentos" / name / version
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(target)
        (target.parent / "latest").write_text(version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return f"{name}:{version}"


def settings(env: Mapping[str, str]) -> tuple[str, str, int]:
    """Read (uri, tag, port) from the environment.

    Raises:
        InvalidParameterError: BENTO_URI missing or of an unsupported scheme.
    """
    uri = env.get("BENTO_URI", "")
    scheme = urllib.parse.urlparse(uri).scheme
    if not uri or scheme not in ("gs", "http", "https", "file", ""):
        raise InvalidParameterError(
            "BENTO_URI",
            uri,
            "a gs://, http(s)://, file:// URI or a local path of a .bento archive",
            "The deploy step sets it from the bento artifact's URI.",
        )
    return uri, env.get("BENTO_TAG", ""), int(env.get("BENTO_PORT", str(DEFAULT_PORT)))


def check_serving_settings(env: Mapping[str, str]) -> None:
    """Validate every ``PLANETS_*`` serving variable before anything is downloaded.

    ``bentoml serve`` would report a bad value as an unrelated import error; failing here
    names the variable, its value and the fix in the pod's log.

    Raises:
        InvalidParameterError: a serving variable is invalid.
    """
    from planets_mlops.service.settings import ServingSettings

    ServingSettings.from_env(env)
    for hint in ServingSettings.unknown_variables(env):
        logger.warning("Not a serving setting, ignored: %s", hint)


def download(uri: str, dest_dir: Path) -> Path:
    """Fetch the archive at ``uri`` into ``dest_dir``; return the local path.

    Raises:
        InvalidParameterError: a local path that does not exist.
    """
    parsed = urllib.parse.urlparse(uri)
    target = dest_dir / (Path(parsed.path).name or "model.bento")
    if parsed.scheme == "gs":
        from google.cloud import storage  # type: ignore[import-untyped]  # serving image only

        blob = storage.Client().bucket(parsed.netloc).blob(parsed.path.lstrip("/"))
        blob.download_to_filename(str(target))
    elif parsed.scheme in ("http", "https"):
        with urllib.request.urlopen(uri, timeout=300) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out)
    else:
        source = Path(parsed.path if parsed.scheme == "file" else uri)
        if not source.is_file():
            raise InvalidParameterError(
                "BENTO_URI",
                uri,
                "an existing .bento file",
                "Mount the archive into the pod or use a gs:// URI.",
            )
        return source
    return target


def main(env: Mapping[str, str] | None = None, argv: Sequence[str] | None = None) -> int:
    """Download, import, then exec ``bentoml serve`` (never returns on success).

    Returns:
        2 when a ``PLANETS_*`` serving variable is invalid (logged, naming it).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    env = os.environ if env is None else env
    try:
        check_serving_settings(env)
    except InvalidParameterError as exc:
        logger.error("%s", exc)
        return 2
    uri, tag, port = settings(env)
    command = serve_command(tag, port=port)
    started = time.monotonic()
    if not is_imported(tag, env):
        with tempfile.TemporaryDirectory(prefix="bento-") as tmp:
            archive = download(uri, Path(tmp))
            logger.info(
                "Downloaded %s (%d bytes) in %.1f s", uri, archive.stat().st_size, time.monotonic() - started
            )
            imported = import_archive(archive, bentoml_home(env))
            logger.info("Imported %s in %.1f s", imported, time.monotonic() - started)
    else:
        logger.info("Bento %s already imported; skipping download", tag)
    logger.info("Starting %s", " ".join(command))
    sys.stdout.flush()
    os.execvp(command[0], command)
    return 0  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main())
