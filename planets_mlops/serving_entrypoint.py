"""Entrypoint of the serving image: fetch a bento archive, import it, serve it.

One pinned serving image serves every model, so deploying needs no Docker daemon and no
per-model image build: the pod gets ``BENTO_URI`` (``gs://...``, ``http(s)://...`` or a
local path) and ``BENTO_TAG`` (``name:version``), and at start this module downloads the
archive, imports it into ``$BENTOML_HOME`` (skipped when the tag is already there, e.g.
after a container restart on the same emptyDir), then replaces itself with
``bentoml serve <tag> --host 0.0.0.0 --port 3000``.

The store is looked up on disk and the archive imported in this process
(``bentoml.bentos.import_bento``), not with ``bentoml get`` and ``bentoml import``: each of
those is a process that imports BentoML's whole command line (0.8-1.0 s apiece on 2
cores), which was most of the image's start beyond ``bentoml serve``'s own.

Usage: ``python -m planets_mlops.serving_entrypoint``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

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


def import_archive(archive: Path) -> str:
    """Import a ``.bento`` archive into ``$BENTOML_HOME`` in this process; its tag."""
    import bentoml

    return str(bentoml.bentos.import_bento(str(Path(archive).resolve())).tag)


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
            imported = import_archive(archive)
            logger.info("Imported %s in %.1f s", imported, time.monotonic() - started)
    else:
        logger.info("Bento %s already imported; skipping download", tag)
    logger.info("Starting %s", " ".join(command))
    sys.stdout.flush()
    os.execvp(command[0], command)
    return 0  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main())
