"""``planets-mlops upload``: pipelines as version ``<package version>-<git commit>``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from planets_mlops.app import kfp_client as kc
from planets_mlops.app.cli import options
from planets_mlops.app.cli.options import Parents
from planets_mlops.app.cli.output import EXIT_OK, emit, say
from planets_mlops.app.cli.versions import default_version_name


def register(sub: Any, parents: Parents) -> None:
    """Add the ``upload`` command to the subparsers ``sub``."""
    p = sub.add_parser(
        "upload",
        parents=[parents.common, parents.connection],
        help="upload pipelines as version <package version>-<git commit> (named planets-<pipeline>)",
    )
    p.add_argument("names", nargs="*", metavar="PIPELINE", help="default: all")
    p.add_argument("--version-name", help="override the version name")
    p.add_argument("--description", help="pipeline/version description")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Compile, then get-or-upload each pipeline's version (a rerun changes nothing)."""
    resolved = options.settings(args)  # a missing host fails before compiling
    source = args.source_factory()
    names = args.names or source.names
    for name in names:
        source.check(name)
        options.kfp_pipeline(args, name)  # a bad --pipeline-prefix fails before compiling
    packages = {}
    for name in names:
        packages[name] = source.compile(name, Path(args.out_dir) / "pipelines")
    # A dirty checkout names each version after its compiled package as well.
    version_names = {name: args.version_name or default_version_name(p) for name, p in packages.items()}
    client, settings = options.connect(args, resolved)
    rows = []
    for name, package in packages.items():
        kfp_name = options.kfp_pipeline(args, name)
        version_name = version_names[name]
        with options.api(settings, f"upload pipeline {kfp_name}"):
            pid, vid, uploaded = kc.upload_version(
                client, package, kfp_name, version_name, args.description, None
            )
        verb = "uploaded" if uploaded else "already uploaded"
        say(f"{verb} {kfp_name} version {version_name}")
        rows.append(
            {
                "pipeline": kfp_name,
                "version": version_name,
                "pipeline_id": pid,
                "version_id": vid,
                "uploaded": uploaded,
            }
        )
    emit(
        args,
        [
            f"{r['pipeline']}\t{r['version']}\tpipeline_id={r['pipeline_id']}\tversion_id={r['version_id']}"
            for r in rows
        ],
        rows,
    )
    return EXIT_OK
