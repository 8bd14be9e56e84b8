"""``planets-mlops run``: submit one run, of a local compile or an uploaded version."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import time
from pathlib import Path
from typing import Any

from planets_mlops.app import kfp_client as kc
from planets_mlops.app import params as pp
from planets_mlops.app.cli import arguments, caching, options
from planets_mlops.app.cli.options import Parents
from planets_mlops.app.cli.output import EXIT_OK, emit, say, wants_json
from planets_mlops.app.cli.source import local_package
from planets_mlops.app.cli.versions import uncached_version, version_spec
from planets_mlops.errors import InvalidParameterError, KubeflowError

DEFAULT_WAIT_TIMEOUT = 6 * 3600.0
# Terminal states of a KFP v2 run (V2beta1RuntimeState).
END_STATES = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})


def register(sub: Any, parents: Parents) -> None:
    """Add the ``run`` command to the subparsers ``sub``."""
    p = sub.add_parser(
        "run",
        parents=[parents.common, parents.connection, parents.submit],
        help="submit one run",
    )
    p.add_argument("pipeline", metavar="PIPELINE", help="pipeline name, or a compiled .yaml file")
    p.add_argument("--run-name", help="default: PIPELINE-YYYYmmdd-HHMMSS")
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait for the run to end; exit 0 only if it SUCCEEDED (1 otherwise)",
    )
    p.add_argument(
        "--wait-timeout",
        type=float,
        default=DEFAULT_WAIT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up waiting after this long (default {DEFAULT_WAIT_TIMEOUT:g}; the run goes on)",
    )
    p.add_argument("--poll-interval", type=float, default=10.0, help=argparse.SUPPRESS)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Check everything local first, then connect and submit; prints ``run_id=...``."""
    # Cheap checks first: a missing host or a bad params file fails before compiling.
    identity = options.run_settings(args)
    resolved = options.settings(args)
    values = arguments.from_flags(args)
    if args.wait_timeout <= 0:
        raise InvalidParameterError("--wait-timeout", args.wait_timeout, "a positive number of seconds")
    package: Path | None = None
    if args.version is None:
        name, package = local_package(args, args.source_factory)
        values = options.prefixed_arguments(args, name, values)
        spec = pp.read_pipeline_spec(package)
        values = options.inherit_run_settings(arguments.validate(values, spec, name), spec, identity)
        if args.caching == "off":
            package = caching.package_without_cache(package, Path(args.out_dir) / "pipelines")
    else:
        name = args.pipeline  # values are checked against the server's spec below
        values = options.prefixed_arguments(args, name, values)
    client, settings = options.connect(args, resolved)
    with options.api(settings, f"submit a run of {name}"):
        pipeline_id = version_id = None
        if args.version is not None:
            kfp_name = options.kfp_pipeline(args, name)
            pipeline_id, version = kc.resolve_version(client, kfp_name, args.version, name)
            version_id = version.pipeline_version_id
            spec = version_spec(version, args.version)
            values = options.inherit_run_settings(arguments.validate(values, spec, name), spec, identity)
            if args.caching == "off":
                pipeline_id, version_id = uncached_version(
                    client, kfp_name, version, args.version, Path(args.out_dir) / "pipelines"
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
            pipeline_root=identity.pipeline_root,
            service_account=identity.service_account,
        )
    say(
        f"submitted run {run_name} with {len(values)} argument(s), as "
        f"{identity.service_account or 'the server default service account'}"
    )
    result: dict[str, Any] = {"run_id": run.run_id, "name": run_name}
    if not wants_json(args):
        print(f"run_id={run.run_id}")  # at once: --wait may take hours
    if not args.wait:
        emit(args, [], result)
        return EXIT_OK
    with options.api(settings, f"follow run {run.run_id}"):
        state, error = wait_for_run(client, run.run_id, args.wait_timeout, args.poll_interval)
    emit(args, [f"state={state}"], {**result, "state": state, "error": error})
    if state != "SUCCEEDED":
        raise KubeflowError(
            f"Run {run.run_id} ended {state}" + (f": {error}" if error else "") + ". See its logs "
            f"in the UI, or `planets-mlops status --run-id {run.run_id}`."
        )
    return EXIT_OK


# Task entries of a run's details that are KFP's machinery, not the pipeline's steps.
_MACHINERY = re.compile(r"^(root|.*-driver|executor|dag)$")
TASK_END_STATES = frozenset({*END_STATES, "CACHED"})


def _seconds(task: Any) -> str:
    start, end = getattr(task, "start_time", None), getattr(task, "end_time", None)
    try:
        return f" in {(end - start).total_seconds():.0f} s" if start and end else ""
    except TypeError:
        return ""


class StepReporter:
    """Says each step of a run as it starts and as it ends (from the run's task details)."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def update(self, run: Any) -> None:
        """Say every step whose state changed since the last call."""
        details = getattr(run, "run_details", None)
        for task in getattr(details, "task_details", None) or []:
            name = str(task.display_name or task.task_id or "")
            state = str(task.state) if task.state else "PENDING"
            if not name or _MACHINERY.match(name) or self.seen.get(name) == state:
                continue
            before = self.seen.get(name)
            self.seen[name] = state
            if state in TASK_END_STATES:
                ran = state not in ("SKIPPED", "CACHED")
                if ran and (before is None or before in ("PENDING", "RUNTIME_STATE_UNSPECIFIED")):
                    say(f"  > {name} started")  # it began and ended between two polls
                error = getattr(getattr(task, "error", None), "message", None)
                mark = "+" if state in ("SUCCEEDED", "CACHED", "SKIPPED") else "!"
                say(f"  {mark} {name}: {state}{_seconds(task)}" + (f": {error}" if error else ""))
            elif state == "RUNNING":
                say(f"  > {name} started")


def wait_for_run(client: Any, run_id: str, timeout: float, poll: float) -> tuple[str, str | None]:
    """Poll the run until it ends, saying each step as it starts and ends.

    Returns:
        ``(state, error message or None)``.

    Raises:
        KubeflowError: Still not ended after ``timeout`` seconds (the run keeps going).
    """
    deadline = time.monotonic() + timeout
    last = None
    steps = StepReporter()
    while True:
        run = client.get_run(run_id)
        state = str(run.state) if run.state else "UNKNOWN"
        if state != last:
            say(f"run {run_id}: {state}")
            last = state
        steps.update(run)
        if state in END_STATES:
            return state, run.error.message if run.error else None
        if time.monotonic() + poll > deadline:
            raise KubeflowError(
                f"Run {run_id} is still {state} after --wait-timeout {timeout:g} s; it keeps "
                f"running. Follow it with `planets-mlops status --run-id {run_id}`."
            )
        time.sleep(poll)
