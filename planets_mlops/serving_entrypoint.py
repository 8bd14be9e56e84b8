"""Entrypoint of the serving image: fetch a bento archive, import it, serve it.

One pinned serving image serves every model, so deploying needs no Docker daemon and no
per-model image build: the pod gets ``BENTO_URI`` (``gs://...``, ``http(s)://...`` or a
local path) and ``BENTO_TAG`` (``name:version``), and at start this module downloads the
archive, runs ``bentoml import`` (skipped when the tag is already in ``$BENTOML_HOME``,
e.g. after a container restart on the same emptyDir), then replaces itself with
``bentoml serve <tag> --host 0.0.0.0 --port 3000``.

Usage: ``python -m planets_mlops.serving_entrypoint``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
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
    """The ``bentoml import`` command line for a downloaded ``.bento`` archive."""
    return ["bentoml", "import", str(archive)]


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
    already = subprocess.run(["bentoml", "get", tag], capture_output=True, check=False)
    if already.returncode != 0:
        with tempfile.TemporaryDirectory(prefix="bento-") as tmp:
            archive = download(uri, Path(tmp))
            logger.info(
                "Downloaded %s (%d bytes) in %.1f s", uri, archive.stat().st_size, time.monotonic() - started
            )
            subprocess.run(import_command(archive), check=True)
    else:
        logger.info("Bento %s already imported; skipping download", tag)
    logger.info("Starting %s", " ".join(command))
    sys.stdout.flush()
    os.execvp(command[0], command)
    return 0  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main())
