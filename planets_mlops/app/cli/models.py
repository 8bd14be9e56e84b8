"""``planets-mlops models``: the registered model's versions, aliases, promotion and rollback.

Talks to the MLflow tracking server of ``--tracking-uri`` or ``MLFLOW_TRACKING_URI``
(credentials from ``MLFLOW_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``).
Every alias move goes through the registry's lock and compare-and-set, is recorded, and
gets a release record; ``rollback --deploy`` also serves the bento of the version it
points ``production`` back at.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from planets_mlops import metric_names
from planets_mlops.app.cli.options import Parents
from planets_mlops.app.cli.output import EXIT_OK, emit, print_table, say, wants_json
from planets_mlops.knobs import DeployParams, RegistryParams

HEADER = ("VERSION", "ALIASES", "CREATED", metric_names.VAL_ACCURACY.upper(), "DATA", "BENTO", "RUN")


def register(sub: Any, parents: Parents) -> None:
    """Add the ``models`` command and its sub-commands to ``sub``."""
    shared = argparse.ArgumentParser(add_help=False)
    g = shared.add_argument_group("registry")
    g.add_argument(
        "--tracking-uri", help="MLflow tracking server URL [MLFLOW_TRACKING_URI], e.g. http://127.0.0.1:5000"
    )
    g.add_argument(
        "--model",
        default=RegistryParams.model_name,
        help=f"registered model (default {RegistryParams.model_name})",
    )
    p = sub.add_parser(
        "models", help="registered model versions, aliases, promote and rollback (MLflow registry)"
    )
    models = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    common = [parents.common, shared]

    ls = models.add_parser("list", parents=common, help="every version, newest first, with its aliases")
    ls.set_defaults(handler=handle_list)

    show = models.add_parser("show", parents=common, help="one version: lineage, aliases, moves, release")
    which = show.add_mutually_exclusive_group()
    which.add_argument("--version", help="the version number")
    which.add_argument(
        "--alias", default="production", help="the version an alias names (default production)"
    )
    show.set_defaults(handler=handle_show)

    promote = models.add_parser(
        "promote", parents=common, help="point an alias at a version (compare-and-set, recorded)"
    )
    promote.add_argument("--version", required=True, help="the version to point the alias at")
    promote.add_argument("--alias", default="production", help="production (default) or candidate")
    promote.add_argument(
        "--expect",
        help="the version the alias must still name (default: what it names when the command starts; "
        "'none' for unset); anything else refuses the move",
    )
    promote.add_argument("--reason", required=True, help="why, recorded with the move")
    promote.set_defaults(handler=handle_promote)

    rollback = models.add_parser(
        "rollback", parents=common, help="point production back at the previous version (and redeploy)"
    )
    rollback.add_argument("--to", dest="to_version", help="the version (default: the one before the current)")
    rollback.add_argument("--reason", default="rollback", help="why, recorded with the move")
    rollback.add_argument(
        "--deploy", action="store_true", help="serve that version's bento (in-cluster Kubernetes credentials)"
    )
    rollback.add_argument("--serving-name", default=DeployParams.name, help="Deployment to update")
    rollback.add_argument(
        "--serving-namespace", default=DeployParams.namespace, help="namespace it serves in"
    )
    rollback.set_defaults(handler=handle_rollback)


def client_of(args: argparse.Namespace) -> Any:
    """The ``MlflowClient`` for ``--tracking-uri`` / ``MLFLOW_TRACKING_URI`` (checked reachable)."""
    from planets_mlops.registry.settings import TRACKING_URI_ENV, TrackingSettings

    env = dict(os.environ)
    if args.tracking_uri:
        env[TRACKING_URI_ENV] = args.tracking_uri
    settings = TrackingSettings.from_env(env)
    say(f"registry {settings.shown_uri} model {args.model}")
    return settings.client()


def _row(info: dict[str, Any]) -> tuple[str, ...]:
    # A version registered before one name per quantity has planets.val_acc.
    tags = metric_names.current(info["tags"], prefix="planets.")
    data = tags.get("planets.data_commit", "")[:10] or tags.get("planets.data_content_hash", "")[:10] or "-"
    return (
        info["version"],
        ",".join(info["aliases"]) or "-",
        info["created"][:19],
        tags.get(f"planets.{metric_names.VAL_ACCURACY}", "-"),
        data,
        tags.get("planets.bento_tag", "-"),
        info["run_id"] or "-",
    )


def handle_list(args: argparse.Namespace) -> int:
    """Print the versions as a table or JSON."""
    from planets_mlops.registry.registry import list_versions

    versions = list_versions(client_of(args), args.model)
    if wants_json(args):
        emit(args, [], versions)
        return EXIT_OK
    print_table(HEADER, [_row(v) for v in versions])
    return EXIT_OK


def handle_show(args: argparse.Namespace) -> int:
    """Print one version with the moves that concern it and its latest release record."""
    from planets_mlops.errors import NotFoundError
    from planets_mlops.registry import registry as reg
    from planets_mlops.registry.release import lineage, load_record

    client = client_of(args)
    reg.require_model(client, args.model)
    version = args.version or reg.alias_version(client, args.model, args.alias)
    if not version:
        raise NotFoundError(f"{args.alias!r} of {args.model!r} names no version. Pass --version N.")
    info = reg.version_info(client, args.model, version)
    moves = [
        m for m in reg.moves(client, args.model) if version in (m.get("to_version"), m.get("from_version"))
    ]
    path = info["tags"].get("planets.release")
    record = load_record(client, info["run_id"], path) if path and info["run_id"] else None
    data = {**info, "lineage": lineage(info["tags"]), "moves": moves, "release": record}
    lines = [
        f"version {info['version']} of {args.model}: aliases {', '.join(info['aliases']) or 'none'}",
        f"run {info['run_id']}  created {info['created']}  source {info['source']}",
        *(f"  {k}: {v}" for k, v in data["lineage"].items()),
        *(
            f"  move {m['sequence']}: {m['alias']} {m['from_version'] or 'none'} -> {m['to_version']} "
            f"by {m['by']} at {m['when']} ({m['why']})"
            for m in moves
        ),
    ]
    if record:
        lines.append(f"  reproduce: {record['reproduce']}")
    emit(args, lines, data)
    return EXIT_OK


def _move(
    args: argparse.Namespace, client: Any, alias: str, version: str, expected: str | None, why: str
) -> Any:
    from planets_mlops.registry import registry as reg
    from planets_mlops.registry import release as rel

    move = reg.move_alias(client, args.model, alias, version, expected=expected, why=why)
    info = reg.version_info(client, args.model, version)
    params = dict(client.get_run(info["run_id"]).data.params) if info["run_id"] else {}
    record = rel.release_record(move, info, params)
    if info["run_id"]:
        rel.store_record(client, record)
    return move, info, record


def handle_promote(args: argparse.Namespace) -> int:
    """Move the alias by compare-and-set; print the move."""
    from planets_mlops.registry import registry as reg

    client = client_of(args)
    reg.require_model(client, args.model)
    if args.expect is None:
        expected = reg.alias_version(client, args.model, args.alias)
    else:
        expected = None if args.expect.lower() == "none" else args.expect
    move, _, record = _move(args, client, args.alias, args.version, expected, args.reason)
    emit(
        args,
        [
            f"{args.alias} of {args.model}: {move.from_version or 'none'} -> {move.to_version} "
            f"(release {move.sequence})"
        ],
        {"move": move.record, "release": record},
    )
    return EXIT_OK


def handle_rollback(args: argparse.Namespace) -> int:
    """Point production back at the previous (or given) version; redeploy with ``--deploy``."""
    from planets_mlops.registry import registry as reg
    from planets_mlops.registry.release import record_deployment

    client = client_of(args)
    reg.require_model(client, args.model)
    current = reg.alias_version(client, args.model, reg.PRODUCTION)
    target = args.to_version or reg.previous_version(client, args.model)
    move, info, record = _move(args, client, reg.PRODUCTION, target, current, args.reason)
    deployed = None
    if args.deploy:
        deployed = deploy_version(client, args.model, info, args.serving_name, args.serving_namespace)
        record = record_deployment(client, args.model, target, deployed) or record
    emit(
        args,
        [
            f"production of {args.model}: {move.from_version} -> {move.to_version} (release {move.sequence})",
            *(
                [f"deployed revision {deployed.get('revision')} at {deployed.get('endpoint_url')}"]
                if deployed
                else []
            ),
        ],
        {"move": move.record, "release": record, "deployed": deployed},
    )
    return EXIT_OK


def deploy_version(
    client: Any, model: str, info: dict[str, Any], name: str, namespace: str
) -> dict[str, Any]:
    """Serve the bento of version ``info`` (its ``planets.bento_*`` tags); returns the endpoint.

    Raises:
        DataError: the version was never packaged (production already names it).
    """
    from planets_mlops.errors import DataError

    bento_uri, bento_tag = info["tags"].get("planets.bento_uri"), info["tags"].get("planets.bento_tag")
    if not bento_uri or not bento_tag:
        raise DataError(
            f"Version {info['version']} of {model} has no bento (tags planets.bento_uri/_tag): it was never "
            "packaged. production now names it; deploy a bento by hand or promote a packaged version."
        )
    from planets_mlops.components.images import SERVING_IMAGE
    from planets_mlops.deploy.apply import deploy_bento

    say(f"deploying {bento_tag} to {namespace}/{name}")
    return dict(
        deploy_bento(
            bento_uri=bento_uri,
            bento_metadata={"bento_tag": bento_tag},
            serving_image=SERVING_IMAGE,
            name=name,
            namespace=namespace,
        )
    )
