"""``planets-mlops run``: submit one run, of a local compile or an uploaded version."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from planets_mlops import params as pp
from planets_mlops.app import kfp_client as kc
from planets_mlops.app.cli import arguments, caching, options
from planets_mlops.app.cli.options import Parents
from planets_mlops.app.cli.output import EXIT_OK, say
from planets_mlops.app.cli.source import local_package
from planets_mlops.app.cli.versions import uncached_version, version_spec


def register(sub: Any, parents: Parents) -> None:
    """Add the ``run`` command to the subparsers ``sub``."""
    p = sub.add_parser(
        "run",
        parents=[parents.common, parents.connection, parents.submit],
        help="submit one run",
    )
    p.add_argument("pipeline", metavar="PIPELINE", help="pipeline name, or a compiled .yaml file")
    p.add_argument("--run-name", help="default: PIPELINE-YYYYmmdd-HHMMSS")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Check everything local first, then connect and submit; prints ``run_id=...``."""
    root = options.check_pipeline_root(args.pipeline_root)
    package: Path | None = None
    if args.version is None:
        name, package = local_package(args, args.source_factory)
        values = arguments.validate(arguments.from_flags(args), pp.read_pipeline_spec(package), name)
        if args.caching == "off":
            package = caching.package_without_cache(package, Path(args.out_dir) / "pipelines")
    else:
        name = args.pipeline
        values = arguments.from_flags(args)  # checked against the server's spec below
    client, settings = options.connect(args)
    with options.api(settings, f"submit a run of {name}"):
        pipeline_id = version_id = None
        if args.version is not None:
            pipeline_id, version = kc.resolve_version(client, name, args.version)
            version_id = version.pipeline_version_id
            values = arguments.validate(values, version_spec(version, args.version), name)
            if args.caching == "off":
                pipeline_id, version_id = uncached_version(
                    client, name, version, args.version, Path(args.out_dir) / "pipelines"
                )
        experiment_id = kc.ensure_experiment(client, args.experiment, settings.namespace)
        run_name = args.run_name or f"{name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
        run = client.run_pipeline(
            experiment_id=experiment_id,
            job_name=run_name,
            pipeline_package_path=str(package) if package else None,
            params=values,
            pipeline_id=pipeline_id,
            version_id=version_id,
            pipeline_root=root,
            service_account=args.service_account,
        )
    say(f"submitted run {run_name} with {len(values)} argument(s)")
    print(f"run_id={run.run_id}")
    return EXIT_OK
