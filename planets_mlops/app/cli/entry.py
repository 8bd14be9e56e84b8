"""The console entry point: the root parser, and errors mapped to exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from planets_mlops import __version__
from planets_mlops.app.cli import (
    ci,
    compile_,
    data,
    models,
    options,
    report,
    run,
    schedule,
    schedule_sync,
    serve,
    status,
    upload,
)
from planets_mlops.app.cli.output import (
    EXIT_CONNECTION,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    log_handler,
    report_error,
)
from planets_mlops.app.cli.parser import Parser
from planets_mlops.app.cli.source import PipelineSource, pipeline_source
from planets_mlops.errors import (
    InvalidParameterError,
    KubeflowConnectionError,
    NotFoundError,
    PlanetsError,
    TrackingError,
)

# In help order; each has register(subparsers, parents) and handle(args).
COMMANDS = (compile_, upload, run, schedule, schedule_sync, status, models, report, ci, data, serve)


def build_parser(
    source_factory: Callable[[], PipelineSource] = pipeline_source,
) -> argparse.ArgumentParser:
    """The argument parser; ``source_factory`` supplies the pipelines (tests swap it)."""
    parser = Parser(
        prog="planets-mlops",
        description="Compile, upload, run and schedule the planets pipelines on Kubeflow "
        "Pipelines; list, promote and roll back registered models. Exit codes: 0 ok, 1 error, "
        "2 bad input, 3 connection/auth, 4 not found.",
    )
    parser.add_argument("--version-info", action="version", version=f"planets-mlops {__version__}")
    # ``schedule sync`` runs each entry through the whole CLI (``run_command``): handed down
    # here, so that no command module imports this one back.
    parser.set_defaults(source_factory=source_factory, verbose=False, run_command=main)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shared = options.parents()
    for command in COMMANDS:
        command.register(sub, shared)
    return parser


def main(
    argv: Sequence[str] | None = None,
    source_factory: Callable[[], PipelineSource] = pipeline_source,
) -> int:
    """Entry point of the ``planets-mlops`` console script; returns the exit code."""
    parser = build_parser(source_factory)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["schedule", "sync"]:  # `schedule PIPELINE` takes a name; `sync` is no pipeline
        argv = ["schedule-sync", *argv[2:]]
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors
        return int(exc.code or 0)
    root = logging.getLogger()
    handler = log_handler(args)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return _handle(args)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def _handle(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args) or EXIT_OK)
    except InvalidParameterError as exc:
        return report_error(args, exc, EXIT_USAGE)
    except (KubeflowConnectionError, TrackingError) as exc:
        return report_error(args, exc, EXIT_CONNECTION)
    except NotFoundError as exc:
        return report_error(args, exc, EXIT_NOT_FOUND)
    except PlanetsError as exc:
        return report_error(args, exc, EXIT_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug or library error: still exit 1, no crash dump
        return report_error(args, exc, EXIT_ERROR, unexpected=True)
