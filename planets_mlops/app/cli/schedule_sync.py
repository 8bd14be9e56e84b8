"""``planets-mlops schedule sync FILE``: the recurring runs a repository file declares.

Schedules are reviewed like code: the file (``.planets/schedules.yaml``) lists each
recurring run, a pull request's checks run ``--check`` (every entry's cron and arguments
checked against the compiled pipeline, no cluster needed), and the merge runs the sync.
Each entry goes through exactly what ``planets-mlops schedule`` does (upload, create,
replace older runs of that name); ``--prune`` then removes the recurring runs the CLI made
in the file's experiment that the file no longer names.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from planets_mlops.app.cli.options import Parents
from planets_mlops.app.cli.output import EXIT_OK, emit, say
from planets_mlops.errors import KubeflowError

# What `planets-mlops schedule` writes as a recurring run's description.
_MADE_BY_CLI = re.compile(r"^\S+ \S+, cron '[^']*'$")
_CONNECTION_FLAGS = ("host", "namespace", "token", "cookies", "ca_bundle", "timeout")


def register(sub: Any, parents: Parents) -> None:
    """Add ``schedule-sync`` (spelt ``schedule sync`` on the command line) to ``sub``."""
    p = sub.add_parser(
        "schedule-sync",
        parents=[parents.common, parents.connection],
        help="`schedule sync FILE`: make the recurring runs what a schedules file declares",
    )
    p.add_argument("file", metavar="FILE", help="the schedules file, e.g. .planets/schedules.yaml")
    p.add_argument("--check", action="store_true", help="only check the file against the compiled pipelines")
    p.add_argument(
        "--prune",
        action="store_true",
        help="remove the CLI-made recurring runs of the file's experiment that it no longer names",
    )
    p.set_defaults(handler=handle)


def _passthrough(args: argparse.Namespace) -> list[str]:
    flags = []
    for name in _CONNECTION_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    if getattr(args, "no_verify_ssl", False):
        flags.append("--no-verify-ssl")
    return flags + ["--out-dir", args.out_dir]


def _check(args: argparse.Namespace, entries: list[Any]) -> None:
    from planets_mlops.app import params as pp
    from planets_mlops.app.cli import arguments
    from planets_mlops.knobs import preset_arguments

    source = args.source_factory()
    for entry in entries:
        source.check(entry.pipeline)
        package = source.compile(entry.pipeline, Path(args.out_dir) / "pipelines")
        file_params = pp.load_params_file(entry.params_file) if entry.params_file else {}
        values = pp.merge_arguments({**preset_arguments(entry.preset or "suite"), **file_params}, [])
        values.update(entry.params)
        arguments.validate(values, pp.read_pipeline_spec(package), entry.pipeline)
        say(f"{entry.name}: {entry.pipeline} at '{entry.cron}' checks")


def _prune(args: argparse.Namespace, experiment: str, keep: set[str]) -> list[str]:
    from planets_mlops.app import kfp_client as kc
    from planets_mlops.app.cli import options

    client, settings = options.connect(args)
    removed = []
    with options.api(settings, f"prune the recurring runs of {experiment}"):
        experiment_id = kc.ensure_experiment(client, experiment, settings.namespace)
        runs = kc.list_all(
            lambda **kw: client.list_recurring_runs(experiment_id=experiment_id, **kw), "recurring_runs"
        )
        for run in runs:
            if run.display_name in keep or not _MADE_BY_CLI.match(run.description or ""):
                continue
            client.disable_recurring_run(run.recurring_run_id)
            client.delete_recurring_run(run.recurring_run_id)
            say(f"removed {run.display_name} ({run.recurring_run_id}): no longer in the file")
            removed.append(run.recurring_run_id)
    return removed


def handle(args: argparse.Namespace) -> int:
    """Check the file; then schedule every entry (and prune) unless ``--check``."""
    from planets_mlops.app.cicd import load_schedules, schedule_argv

    experiment, entries = load_schedules(Path(args.file))
    if args.check:
        _check(args, entries)
        emit(args, [f"checked={len(entries)}"], {"checked": [e.name for e in entries]})
        return EXIT_OK
    failed = []
    for entry in entries:
        say(f"syncing {entry.name}")
        # The CLI's own entry point (``run_command``, set by the parser), as `planets-mlops schedule`.
        code = args.run_command(schedule_argv(entry, experiment, _passthrough(args)), args.source_factory)
        if code != EXIT_OK:
            failed.append(f"{entry.name} (exit {code})")
    if failed:
        raise KubeflowError(
            f"{len(failed)} of {len(entries)} schedule(s) failed: {', '.join(failed)}. The others are live; "
            "fix the file and merge again (a sync is safe to repeat). Nothing was pruned."
        )
    removed = _prune(args, experiment, {e.name for e in entries}) if args.prune else []
    emit(
        args,
        [f"synced={len(entries)}", *(f"removed_recurring_run_id={r}" for r in removed)],
        {"synced": [e.name for e in entries], "removed": removed},
    )
    return EXIT_OK
