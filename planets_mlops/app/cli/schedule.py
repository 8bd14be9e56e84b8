"""``planets-mlops schedule``: one recurring run per job name, replacing older ones."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from planets_mlops.app import kfp_client as kc
from planets_mlops.app import params as pp
from planets_mlops.app.cli import arguments, caching, options
from planets_mlops.app.cli.options import Parents
from planets_mlops.app.cli.output import EXIT_OK, emit, say
from planets_mlops.app.cli.versions import default_version_name, uncached_version, version_spec
from planets_mlops.errors import InvalidParameterError, KubeflowError


def register(sub: Any, parents: Parents) -> None:
    """Add the ``schedule`` command to the subparsers ``sub``."""
    p = sub.add_parser(
        "schedule",
        parents=[parents.common, parents.connection, parents.submit],
        help="create a recurring run, replacing older ones of that name",
    )
    p.add_argument("pipeline", metavar="PIPELINE", help="pipeline name")
    p.add_argument(
        "--cron",
        required=True,
        help="6 fields, seconds first: '0 0 3 * * *' = daily 03:00",
    )
    p.add_argument("--job-name", help="recurring run name (default: PIPELINE-recurring)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Upload (or resolve) the version, create the recurring run, remove older ones."""
    cron = kc.validate_cron(args.cron)
    identity = options.run_settings(args)
    resolved = options.settings(args)  # a missing host fails before compiling
    name = args.pipeline
    kfp_name = options.kfp_pipeline(args, name)
    values = options.prefixed_arguments(args, name, arguments.from_flags(args))
    if values.get("window_end"):
        # Every run of a schedule would check the same past window, forever.
        raise InvalidParameterError(
            "window_end",
            str(values["window_end"]),
            "empty in a recurring run (each run checks the hours before it)",
            "Drop --param window_end; check one past window with `planets-mlops run monitoring` instead.",
        )
    package = None
    if args.version is None:
        source = args.source_factory()
        source.check(name)
        say(f"compiling {name}")
        package = source.compile(name, Path(args.out_dir) / "pipelines")
        version_name = default_version_name(package)
        spec = pp.read_pipeline_spec(package)
        values = options.inherit_run_settings(arguments.validate(values, spec, name), spec, identity)
        if args.caching == "off":
            package = caching.package_without_cache(package, Path(args.out_dir) / "pipelines")
            version_name += caching.OFF_SUFFIX
    else:
        version_name = args.version
    job_name = args.job_name or f"{name}-recurring"
    client, settings = options.connect(args, resolved)
    with options.api(settings, f"schedule {job_name}"):
        if package is not None:
            pipeline_id, version_id, uploaded = kc.upload_version(client, package, kfp_name, version_name)
            if uploaded:
                say(f"uploaded {kfp_name} version {version_name}")
        else:
            pipeline_id, version = kc.resolve_version(client, kfp_name, version_name, name)
            version_id = version.pipeline_version_id
            spec = version_spec(version, version_name)
            values = options.inherit_run_settings(arguments.validate(values, spec, name), spec, identity)
            if args.caching == "off":
                pipeline_id, version_id = uncached_version(
                    client, kfp_name, version, version_name, Path(args.out_dir) / "pipelines"
                )
                version_name += caching.OFF_SUFFIX
        experiment_id = kc.ensure_experiment(client, args.experiment, settings.namespace)
        recurring = client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=job_name,
            description=f"{name} {version_name}, cron '{cron}'",
            cron_expression=cron,
            max_concurrency=1,
            no_catchup=True,
            params=values,
            pipeline_id=pipeline_id,
            version_id=version_id,
            pipeline_root=identity.pipeline_root,
            service_account=identity.service_account,
        )
        replaced = kc.replace_recurring_runs(client, experiment_id, job_name, recurring.recurring_run_id)
    report(args, replaced, job_name, f"{name} {version_name}", version_name, cron)
    return EXIT_OK


def report(
    args: argparse.Namespace, replaced: kc.Replacement, job_name: str, what: str, version_name: str, cron: str
) -> None:
    """Print the outcome of one ``schedule``; ``what`` is ``"<pipeline> <version>"``.

    Raises:
        KubeflowError: A concurrent ``schedule`` of the same job won (its run stays).
    """
    if replaced.superseded:
        emit(
            args,
            [f"removed_recurring_run_id={r}" for r in replaced.removed],
            {"recurring_run_id": None, "kept": replaced.kept, "removed_recurring_run_ids": replaced.removed},
        )
        raise KubeflowError(
            f"Another `schedule` of {job_name} ran at the same time and its recurring run "
            f"{replaced.kept} is newer, so it stays and this call's {replaced.own} was removed. "
            "Check which settings are live in the UI (Recurring runs); rerun "
            "`planets-mlops schedule` if this call's should win."
        )
    say(f"scheduled {job_name} ({what}) at '{cron}'; replaced {len(replaced.removed)} older recurring run(s)")
    emit(
        args,
        [
            f"recurring_run_id={replaced.own}",
            *(f"removed_recurring_run_id={r}" for r in replaced.removed),
        ],
        {
            "recurring_run_id": replaced.own,
            "job_name": job_name,
            "version": version_name,
            "cron": cron,
            "removed_recurring_run_ids": replaced.removed,
        },
    )
