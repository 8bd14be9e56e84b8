"""``planets-mlops serve SOURCE``: serve a model here, as the serving image does.

SOURCE is a ``.bento`` file, a local run's folder (its ``package-model/bento``), a ``gs://`` or
``http(s)://`` URI of a bento, or ``models:/NAME@ALIAS`` (the bento the registry's version
names: its ``planets.bento_uri`` tag). The serving variables (``PLANETS_*``) are checked as the
image's entrypoint checks them, then ``bentoml serve`` runs in the foreground with the image's
command line (:func:`planets_mlops.serving_entrypoint.serve_command`) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from planets_mlops.app.cli.options import Parents
from planets_mlops.app.cli.output import say
from planets_mlops.errors import InvalidParameterError, NotFoundError

_MODELS_URI = re.compile(r"^models:/(?P<name>[^@/]+)@(?P<alias>[^@/]+)$")


def register(sub: Any, parents: Parents) -> None:
    """Add the ``serve`` command to the subparsers ``sub``."""
    p = sub.add_parser(
        "serve",
        parents=[parents.common],
        help="serve a bento here (a .bento file, a local run, gs:// or models:/NAME@ALIAS)",
        description="Serve a model on this machine with the serving image's settings and command.",
    )
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="a .bento file, a local run folder, a gs:// or http(s):// URI, or models:/NAME@ALIAS",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; the image: 0.0.0.0)"
    )
    p.add_argument("--port", type=int, default=3000, help="port (default 3000, as the image)")
    p.add_argument("--tracking-uri", help="with models:/: the MLflow server [MLFLOW_TRACKING_URI]")
    p.add_argument(
        "--bentoml-home", type=Path, help="BentoML store to import into (default: a temporary one)"
    )
    p.set_defaults(handler=handle)


def bento_of(source: str, args: argparse.Namespace, scratch: Path) -> Path:
    """The local ``.bento`` archive ``source`` names (downloaded into ``scratch`` when remote).

    Raises:
        NotFoundError: No such file or run folder, or the registry's version has no bento.
        InvalidParameterError: ``source`` is none of the accepted forms.
    """
    from planets_mlops.serving_entrypoint import download

    if match := _MODELS_URI.match(source):
        source = registry_bento_uri(match["name"], match["alias"], args)
    elif source.startswith("models:/"):
        raise InvalidParameterError(
            "SOURCE", source, "models:/NAME@ALIAS", "e.g. models:/planets-classifier@production"
        )
    if re.match(r"^(gs|https?)://", source):
        return download(source, scratch)
    path = Path(source.removeprefix("file://"))
    if path.is_dir():
        bento = path / "package-model" / "bento"
        if bento.is_file():
            return bento
        raise NotFoundError(
            f"{str(path)!r} is a folder without package-model/bento: pass a .bento file, or a local "
            "run's folder (the quickstart prints it: Pipeline finished in ... s: <folder>)."
        )
    if not path.is_file():
        raise NotFoundError(
            f"No bento at {str(path)!r}: pass an existing .bento file, a run folder or a URI."
        )
    return path


def registry_bento_uri(name: str, alias: str, args: argparse.Namespace) -> str:
    """The ``planets.bento_uri`` tag of the version ``alias`` names in the registry."""
    from planets_mlops.app.cli.models import client_of

    args.model = name
    client = client_of(args)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except Exception as exc:  # noqa: BLE001 - MLflow raises its own exception types
        raise NotFoundError(f"No version of {name!r} has the alias {alias!r}: {exc}") from exc
    uri = (version.tags or {}).get("planets.bento_uri", "")
    if not uri:
        raise NotFoundError(
            f"Version {version.version} of {name!r} ({alias}) records no bento (tag planets.bento_uri): "
            "it was registered but never packaged (the gate refused it?)."
        )
    say(f"models:/{name}@{alias} is version {version.version}: {uri}")
    return str(uri)


def handle(args: argparse.Namespace) -> int:
    """Resolve the bento, check the settings, import, serve until interrupted."""
    from planets_mlops.app.dev.serve_local import import_bento, server_env
    from planets_mlops.serving_entrypoint import check_serving_settings, serve_command

    check_serving_settings(os.environ)
    with tempfile.TemporaryDirectory(prefix="planets-serve-") as tmp:
        archive = bento_of(args.source, args, Path(tmp))
        home = (args.bentoml_home or Path(tmp) / "bentoml").resolve()
        tag = import_bento(archive, home)
        command = serve_command(tag, host=args.host, port=args.port)
        command = [sys.executable, "-m", *command]
        say(f"serving {tag} from {archive} at http://{args.host}:{args.port} (API page /, Ctrl-C stops)")
        process = subprocess.Popen(command, env=server_env(home))
        try:
            return process.wait()
        except KeyboardInterrupt:
            process.terminate()
            process.wait(timeout=30)
            return 130
