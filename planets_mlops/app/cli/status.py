"""``planets-mlops status``: recent runs, their state, task counts and metrics."""

from __future__ import annotations

import argparse
import json
from typing import Any

from planets_mlops.app.cli import options
from planets_mlops.app.cli.options import Parents
from planets_mlops.app.cli.output import EXIT_OK, print_table, wants_json
from planets_mlops.errors import NotFoundError

HEADER = ("RUN ID", "NAME", "STATE", "CREATED", "DURATION", "TASKS", "METRICS")


def register(sub: Any, parents: Parents) -> None:
    """Add the ``status`` command to the subparsers ``sub``."""
    p = sub.add_parser("status", parents=[parents.common, parents.connection], help="recent runs and state")
    p.add_argument("--experiment", help="only this experiment")
    p.add_argument("--run-id", help="only this run")
    p.add_argument("--limit", type=int, default=10, help="how many runs (default 10)")
    p.add_argument("--json", action="store_true", help="the same as --output json")
    p.set_defaults(handler=handle)


def run_summary(run: Any) -> dict[str, Any]:
    """State, timing, task counts and any metrics the REST API carries for one run."""
    tasks = (run.run_details.task_details or []) if run.run_details else []
    states: dict[str, int] = {}
    for task in tasks:
        states[str(task.state)] = states.get(str(task.state), 0) + 1
    metrics: dict[str, Any] = {}
    for plugin, output in (run.plugins_output or {}).items():
        for key, value in (output.entries or {}).items():
            metrics[f"{plugin}.{key}"] = getattr(value, "value", value)
    created, finished = run.created_at, run.finished_at
    duration = None
    if created and finished and finished.year > 1970:
        duration = round((finished - created).total_seconds(), 1)
    return {
        "run_id": run.run_id,
        "name": run.display_name,
        "state": str(run.state) if run.state else "UNKNOWN",
        "created_at": created.isoformat() if created else None,
        "duration_s": duration,
        "tasks": states,
        "metrics": metrics,
        "error": run.error.message if run.error else None,
    }


def fetch_runs(client: Any, args: argparse.Namespace, namespace: str | None) -> list[Any]:
    """The one run of ``--run-id``, or the newest ``--limit`` runs, with task details.

    Raises:
        NotFoundError: ``--experiment`` names no experiment.
    """
    if args.run_id:
        return [client.get_run(args.run_id)]
    experiment_id = None
    if args.experiment:
        try:
            experiment = client.get_experiment(experiment_name=args.experiment, namespace=namespace)
        except ValueError as exc:
            raise NotFoundError(f"Experiment {args.experiment!r} not found: {exc}") from exc
        experiment_id = experiment.experiment_id
    listed = client.list_runs(
        page_size=args.limit,
        sort_by="created_at desc",
        experiment_id=experiment_id,
        namespace=namespace,
    )
    # The list omits task details; one GET per run fills them in.
    return [client.get_run(r.run_id) for r in (listed.runs or [])]


def table_row(row: dict[str, Any]) -> tuple[str, ...]:
    """One summary as the cells of the status table."""
    tasks = ", ".join(f"{n} {s.lower()}" for s, n in sorted(row["tasks"].items()))
    metrics = ", ".join(f"{k}={v}" for k, v in row["metrics"].items()) or "-"
    return (
        row["run_id"],
        row["name"] or "",
        row["state"],
        (row["created_at"] or "")[:19],
        f"{row['duration_s']} s" if row["duration_s"] is not None else "-",
        tasks or "-",
        metrics,
    )


def handle(args: argparse.Namespace) -> int:
    """Print the runs as a table (errors below it) or as JSON."""
    client, settings = options.connect(args)
    with options.api(settings, "list runs"):
        runs = fetch_runs(client, args, settings.namespace)
    rows = [run_summary(run) for run in runs]
    if wants_json(args):
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no runs")
        return EXIT_OK
    print_table(HEADER, [table_row(row) for row in rows])
    for row in rows:
        if row["error"]:
            print(f"{row['run_id']}: {row['error']}")
    return EXIT_OK
