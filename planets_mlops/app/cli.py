"""``planets-mlops``: compile, upload, run and schedule the pipelines on Kubeflow.

Progress goes to stderr, results (IDs, paths, tables) to stdout. Exit codes:

= ===========================================================================
0 success
1 any other failure (a KFP API error, a compile error, a bug)
2 usage or bad input: unknown option, unknown or mistyped parameter, malformed cron,
  URI or params file
3 cannot connect or not authorised: unreachable host, TLS, 401/403, expired token
4 not found: unknown pipeline name, missing file, pipeline/version/experiment not on
  the server, missing gs:// object
= ===========================================================================

``kfp`` is imported inside the commands only, so ``--help`` and argument errors are fast.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import logging
import os
import pkgutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planets_mlops import __version__
from planets_mlops import params as pp
from planets_mlops.app import kfp_client as kc
from planets_mlops.errors import (
    InvalidParameterError,
    KubeflowConnectionError,
    NotFoundError,
    PlanetsError,
)

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CONNECTION, EXIT_NOT_FOUND = 0, 1, 2, 3, 4
DEFAULT_EXPERIMENT = "planets"


def say(message: str) -> None:
    """Progress line on stderr (stdout stays parseable)."""
    print(f"[planets-mlops] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ pipeline source


@dataclass
class PipelineSource:
    """The pipelines the CLI knows, by kebab-case name, and how to compile one.

    ``compile_fn(name, out_dir) -> Path`` is ``pipelines.compile.compile_pipeline`` when
    that module exists; otherwise the function is compiled here with ``kfp.compiler``.
    """

    pipelines: Mapping[str, Callable[..., Any]]
    compile_fn: Callable[..., Path] | None = None

    @property
    def names(self) -> list[str]:
        return sorted(self.pipelines)

    def check(self, name: str) -> None:
        if name not in self.pipelines:
            raise NotFoundError(
                f"Unknown pipeline {name!r}: known pipelines are "
                f"{self.names}. Check the name, or pass a compiled .yaml "
                "file."
            )

    def compile(self, name: str, out_dir: Path, gpu: Any = None) -> Path:
        self.check(name)
        out_dir.mkdir(parents=True, exist_ok=True)
        if self.compile_fn is not None:
            return Path(
                self.compile_fn(name, out_dir, gpu) if gpu is not None else self.compile_fn(name, out_dir)
            )
        from kfp import compiler

        path = out_dir / f"{name}.yaml"
        compiler.Compiler().compile(self.pipelines[name], str(path))
        return path


def pipeline_source() -> PipelineSource:
    """The project's pipelines: ``pipelines.PIPELINES`` (+ ``pipelines.compile``)."""
    try:
        module = importlib.import_module("planets_mlops.pipelines")
    except ImportError as exc:
        raise PlanetsError(
            f"Cannot import the `pipelines` package: {exc}. Run from the "
            "repository root or install the project."
        ) from exc
    registry = getattr(module, "PIPELINES", None)
    if not isinstance(registry, Mapping):
        raise PlanetsError(
            "pipelines.PIPELINES (name -> @dsl.pipeline function) is missing; no pipeline to work on yet."
        )
    compile_fn = None
    try:
        compile_fn = importlib.import_module("planets_mlops.pipelines.compile").compile_pipeline
    except (ImportError, AttributeError):
        logger.debug("pipelines.compile.compile_pipeline missing; compiling directly")
    return PipelineSource(dict(registry), compile_fn)


def discover_components(package: str = "planets_mlops.components") -> dict[str, Any]:
    """Module-level ``BaseComponent`` objects of every module in ``package``, by name.

    A component re-exported by another module is counted once, where it is defined.

    Raises:
        PlanetsError: A module fails to import, or two modules define the same name.
    """
    from kfp.dsl.base_component import BaseComponent

    pkg = importlib.import_module(package)
    found: dict[str, Any] = {}
    where: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        modname = f"{package}.{info.name}"
        try:
            module = importlib.import_module(modname)
        except Exception as exc:
            raise PlanetsError(f"Cannot import {modname}: {exc}") from exc
        for attr, obj in vars(module).items():
            if attr.startswith("_") or not isinstance(obj, BaseComponent):
                continue
            func = getattr(obj, "python_func", None)
            if getattr(func, "__module__", modname) != modname:
                continue
            if attr in found and found[attr] is not obj:
                raise PlanetsError(
                    f"Component name {attr!r} is defined in both {where[attr]} and {modname}; rename one."
                )
            found[attr], where[attr] = obj, modname
    return found


def compile_components(out_dir: Path, package: str = "planets_mlops.components") -> list[Path]:
    """Write each component to ``out_dir/<name>.yaml`` (for ``load_component_from_file``)."""
    from kfp import compiler

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, component in discover_components(package).items():
        path = out_dir / f"{name}.yaml"
        compiler.Compiler().compile(component, str(path))
        paths.append(path)
    return paths


# -------------------------------------------------------------------------- helpers


def git_short_commit(cwd: Path | None = None) -> tuple[str, bool]:
    """``(short commit, dirty)`` of the checkout at ``cwd``.

    Raises:
        InvalidParameterError: Not a git checkout, or no commit yet.
    """
    from planets_mlops.datarepo import git

    where = cwd or Path.cwd()
    try:
        commit = git(where, "rev-parse", "--short=7", "HEAD")
        dirty = bool(git(where, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError) as exc:
        raise InvalidParameterError(
            "version name",
            None,
            "derived from the git commit",
            "Run inside the git checkout with at least one commit, or pass --version-name.",
        ) from exc
    return commit, dirty


def default_version_name() -> str:
    """``<package version>-<short git commit>``; warns on a dirty checkout."""
    commit, dirty = git_short_commit()
    if dirty:
        say(
            f"warning: uncommitted changes; version {__version__}-{commit} will not match that commit exactly"
        )
    return f"{__version__}-{commit}"


def _check_pipeline_root(root: str | None) -> str | None:
    if root is None:
        return None
    import re

    if not re.match(r"^(gs|s3|minio)://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$", root):
        raise InvalidParameterError(
            "--pipeline-root",
            root,
            "a URI like gs://BUCKET/PREFIX",
            "e.g. --pipeline-root gs://planets-artifacts/kfp",
        )
    return root.rstrip("/")


def _caching(value: str | None) -> bool | None:
    # None means "not asked": the compile-time caching settings stay untouched.
    return None if value is None else value == "on"


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    file_params = pp.load_params_file(args.params_file) if args.params_file else {}
    return pp.merge_arguments(file_params, args.param or [])


def _settings(args: argparse.Namespace) -> kc.ConnectionSettings:
    return kc.ConnectionSettings.resolve(
        host=args.host,
        namespace=args.namespace,
        token=args.token,
        cookies=args.cookies,
        verify_ssl=False if args.no_verify_ssl else None,
        ca_bundle=args.ca_bundle,
        timeout=args.timeout,
    )


def _connect(args: argparse.Namespace) -> tuple[Any, kc.ConnectionSettings]:
    settings = _settings(args)
    say(f"connecting to {settings.describe()}")
    return kc.connect(settings), settings


def _local_package(
    args: argparse.Namespace, source_factory: Callable[[], PipelineSource]
) -> tuple[str, Path]:
    """``(pipeline name, compiled file)`` for a registry name or a .yaml path."""
    target = args.pipeline
    if target.endswith((".yaml", ".yml")) or "/" in target:
        path = Path(target)
        spec = pp.read_pipeline_spec(path)
        return str(spec.get("pipelineInfo", {}).get("name", path.stem)), path
    source = source_factory()
    source.check(target)
    say(f"compiling {target}")
    return target, source.compile(target, Path(args.out_dir) / "pipelines")


@contextlib.contextmanager
def _api(settings: kc.ConnectionSettings, action: str) -> Iterator[None]:
    """KFP calls: errors translated, and kfp.Client's own prints ("Run details: <link>")
    sent to stderr so stdout carries only this CLI's results.
    """
    with kc.translate_errors(settings, action), contextlib.redirect_stdout(sys.stderr):
        yield


# ------------------------------------------------------------------------- commands


def _gpu_options(args: argparse.Namespace) -> Any:
    """Compile-time GPU placement from flags; None keeps the pipeline's defaults."""
    given = {
        "count": args.gpu_count,
        "node_pool": args.gpu_node_pool,
        "node_pool_label": args.gpu_node_label,
        "shm_size": args.shm_size,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return None
    from planets_mlops.pipelines.platform import GpuOptions

    if given.get("count", 1) < 0:
        raise InvalidParameterError("--gpu-count", given["count"], "0 (CPU only) or more")
    return GpuOptions(**given)


def cmd_compile(args: argparse.Namespace) -> int:
    start = time.monotonic()
    source = args.source_factory()
    names = args.names or source.names
    for name in names:
        source.check(name)
    out = Path(args.out_dir)
    for name in names:
        t0 = time.monotonic()
        path = source.compile(name, out / "pipelines", _gpu_options(args))
        say(f"compiled pipeline {name} in {time.monotonic() - t0:.2f} s")
        print(path)
    if not args.no_components:
        t0 = time.monotonic()
        paths = compile_components(out / "components", args.components_package)
        for path in paths:
            print(path)
        say(f"compiled {len(paths)} component(s) in {time.monotonic() - t0:.2f} s")
    say(f"done: {len(names)} pipeline(s) in {time.monotonic() - start:.2f} s")
    return EXIT_OK


def cmd_upload(args: argparse.Namespace) -> int:
    source = args.source_factory()
    names = args.names or source.names
    for name in names:
        source.check(name)
    version_name = args.version_name or default_version_name()
    packages = {}
    for name in names:
        packages[name] = source.compile(name, Path(args.out_dir) / "pipelines")
    client, settings = _connect(args)
    for name, package in packages.items():
        with _api(settings, f"upload pipeline {name}"):
            pid, vid, uploaded = kc.upload_version(
                client, package, name, version_name, args.description, None
            )
        verb = "uploaded" if uploaded else "already uploaded"
        say(f"{verb} {name} version {version_name}")
        print(f"{name}\t{version_name}\tpipeline_id={pid}\tversion_id={vid}")
    return EXIT_OK


def _version_spec(version: Any, where: str) -> dict[str, Any]:
    spec = kc.spec_of(version.pipeline_spec)
    if spec is None:
        raise InvalidParameterError(
            "pipeline version",
            where,
            "one with a pipeline spec",
            "Re-upload it with `planets-mlops upload`.",
        )
    return spec


def _validated(args: argparse.Namespace, spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    return pp.validate_arguments(_arguments(args), pp.pipeline_inputs(spec), name)


def cmd_run(args: argparse.Namespace) -> int:
    root = _check_pipeline_root(args.pipeline_root)
    caching = _caching(args.caching)
    package: Path | None = None
    if args.version is None:
        name, package = _local_package(args, args.source_factory)
        arguments = _validated(args, pp.read_pipeline_spec(package), name)
    else:
        name = args.pipeline
        arguments = _arguments(args)  # checked against the server's spec below
    client, settings = _connect(args)
    with _api(settings, f"submit a run of {name}"):
        pipeline_id = version_id = None
        if args.version is not None:
            pipeline_id, version = kc.resolve_version(client, name, args.version)
            version_id = version.pipeline_version_id
            arguments = pp.validate_arguments(
                arguments,
                pp.pipeline_inputs(_version_spec(version, args.version)),
                name,
            )
        experiment_id = kc.ensure_experiment(client, args.experiment, settings.namespace)
        run_name = args.run_name or f"{name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
        extra: dict[str, Any] = {}
        if caching is not None:
            extra["enable_caching"] = caching
        run = client.run_pipeline(
            experiment_id=experiment_id,
            job_name=run_name,
            pipeline_package_path=str(package) if package else None,
            params=arguments,
            pipeline_id=pipeline_id,
            version_id=version_id,
            pipeline_root=root,
            service_account=args.service_account,
            **extra,
        )
    say(f"submitted run {run_name} with {len(arguments)} argument(s)")
    print(f"run_id={run.run_id}")
    return EXIT_OK


def cmd_schedule(args: argparse.Namespace) -> int:
    cron = kc.validate_cron(args.cron)
    root = _check_pipeline_root(args.pipeline_root)
    caching = _caching(args.caching)
    name = args.pipeline
    arguments = _arguments(args)
    package = None
    if args.version is None:
        source = args.source_factory()
        source.check(name)
        version_name = default_version_name()
        say(f"compiling {name}")
        package = source.compile(name, Path(args.out_dir) / "pipelines")
        arguments = pp.validate_arguments(arguments, pp.pipeline_inputs(pp.read_pipeline_spec(package)), name)
    else:
        version_name = args.version
    job_name = args.job_name or f"{name}-recurring"
    client, settings = _connect(args)
    with _api(settings, f"schedule {job_name}"):
        if package is not None:
            pipeline_id, version_id, uploaded = kc.upload_version(client, package, name, version_name)
            if uploaded:
                say(f"uploaded {name} version {version_name}")
        else:
            pipeline_id, version = kc.resolve_version(client, name, version_name)
            version_id = version.pipeline_version_id
            arguments = pp.validate_arguments(
                arguments,
                pp.pipeline_inputs(_version_spec(version, version_name)),
                name,
            )
        experiment_id = kc.ensure_experiment(client, args.experiment, settings.namespace)
        extra: dict[str, Any] = {}
        if caching is not None:
            extra["enable_caching"] = caching
        recurring = client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=job_name,
            description=f"{name} {version_name}, cron '{cron}'",
            cron_expression=cron,
            max_concurrency=1,
            no_catchup=True,
            params=arguments,
            pipeline_id=pipeline_id,
            version_id=version_id,
            pipeline_root=root,
            service_account=args.service_account,
            **extra,
        )
        removed = kc.replace_recurring_runs(client, experiment_id, job_name, recurring.recurring_run_id)
    say(
        f"scheduled {job_name} ({name} {version_name}) at '{cron}'; replaced "
        f"{len(removed)} older recurring run(s)"
    )
    print(f"recurring_run_id={recurring.recurring_run_id}")
    for old in removed:
        print(f"removed_recurring_run_id={old}")
    return EXIT_OK


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


def cmd_status(args: argparse.Namespace) -> int:
    client, settings = _connect(args)
    with _api(settings, "list runs"):
        if args.run_id:
            runs = [client.get_run(args.run_id)]
        else:
            experiment_id = None
            if args.experiment:
                try:
                    experiment = client.get_experiment(
                        experiment_name=args.experiment, namespace=settings.namespace
                    )
                except ValueError as exc:
                    raise NotFoundError(f"Experiment {args.experiment!r} not found: {exc}") from exc
                experiment_id = experiment.experiment_id
            listed = client.list_runs(
                page_size=args.limit,
                sort_by="created_at desc",
                experiment_id=experiment_id,
                namespace=settings.namespace,
            )
            # The list omits task details; one GET per run fills them in.
            runs = [client.get_run(r.run_id) for r in (listed.runs or [])]
    rows = [run_summary(run) for run in runs]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no runs")
        return EXIT_OK
    header = ("RUN ID", "NAME", "STATE", "CREATED", "DURATION", "TASKS", "METRICS")
    table = [header]
    for row in rows:
        tasks = ", ".join(f"{n} {s.lower()}" for s, n in sorted(row["tasks"].items()))
        metrics = ", ".join(f"{k}={v}" for k, v in row["metrics"].items()) or "-"
        table.append(
            (
                row["run_id"],
                row["name"] or "",
                row["state"],
                (row["created_at"] or "")[:19],
                f"{row['duration_s']} s" if row["duration_s"] is not None else "-",
                tasks or "-",
                metrics,
            )
        )
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for row in rows:
        if row["error"]:
            print(f"{row['run_id']}: {row['error']}")
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def build_parser(
    source_factory: Callable[[], PipelineSource] = pipeline_source,
) -> argparse.ArgumentParser:
    """The argument parser; ``source_factory`` supplies the pipelines (tests swap it)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    common.add_argument("--out-dir", default="build", help="where compiled YAML goes (default: build)")

    conn = argparse.ArgumentParser(add_help=False)
    g = conn.add_argument_group("connection (flags override the environment)")
    g.add_argument("--host", help="KFP API URL [KFP_HOST]")
    g.add_argument("--namespace", help="profile namespace, multi-user only [KFP_NAMESPACE]")
    g.add_argument(
        "--token",
        help="bearer token [KFP_TOKEN]; prefer the variable, flags show in `ps`",
    )
    g.add_argument("--cookies", help="Cookie header, e.g. authservice_session=... [KFP_COOKIES]")
    g.add_argument("--ca-bundle", help="CA bundle PEM [KFP_CA_BUNDLE]")
    g.add_argument(
        "--no-verify-ssl",
        action="store_true",
        help="skip TLS verification [KFP_VERIFY_SSL=false]",
    )
    g.add_argument(
        "--timeout",
        type=float,
        help=f"seconds per connection and API call [KFP_TIMEOUT, default {kc.DEFAULT_TIMEOUT:g}]",
    )

    submit = argparse.ArgumentParser(add_help=False)
    s = submit.add_argument_group("run settings")
    s.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="pipeline argument (repeatable), value read as YAML",
    )
    s.add_argument(
        "--params-file",
        metavar="PARAMS_YAML",
        help="params.yaml (prepare:/train:/data: sections); --param wins",
    )
    s.add_argument(
        "--experiment",
        default=DEFAULT_EXPERIMENT,
        help=f"experiment, created if missing (default: {DEFAULT_EXPERIMENT})",
    )
    s.add_argument(
        "--pipeline-root",
        metavar="GS_URI",
        help="artifact root, e.g. gs://BUCKET/kfp (default: the cluster's)",
    )
    s.add_argument("--service-account", help="Kubernetes service account for the pods")
    s.add_argument(
        "--caching",
        choices=("on", "off"),
        help="override compile-time caching for root-level tasks (default: "
        "leave the compiled settings alone)",
    )
    s.add_argument(
        "--version",
        metavar="VERSION_NAME",
        help="use this uploaded pipeline version instead of compiling locally",
    )

    parser = argparse.ArgumentParser(
        prog="planets-mlops",
        description="Compile, upload, run and schedule the planets pipelines on Kubeflow "
        "Pipelines. Exit codes: 0 ok, 1 error, 2 bad input, 3 connection/auth, "
        "4 not found.",
    )
    parser.add_argument("--version-info", action="version", version=f"planets-mlops {__version__}")
    parser.set_defaults(source_factory=source_factory, verbose=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compile", parents=[common], help="compile pipelines and components to IR YAML")
    p.add_argument("names", nargs="*", metavar="PIPELINE", help="default: all")
    p.add_argument("--no-components", action="store_true", help="skip build/components/*.yaml")
    p.add_argument("--gpu-count", type=int, help="GPUs for the training task (0: CPU only; default 1)")
    p.add_argument("--gpu-node-pool", help="node pool of GPU nodes (default gpu-pool)")
    p.add_argument("--gpu-node-label", help="node label naming pools (default cloud.google.com/gke-nodepool)")
    p.add_argument("--shm-size", help="size of the memory-backed /dev/shm of the training task (default 2Gi)")
    p.add_argument("--components-package", default="planets_mlops.components", help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_compile)

    p = sub.add_parser(
        "upload",
        parents=[common, conn],
        help="upload pipelines as version <package version>-<git commit>",
    )
    p.add_argument("names", nargs="*", metavar="PIPELINE", help="default: all")
    p.add_argument("--version-name", help="override the version name")
    p.add_argument("--description", help="pipeline/version description")
    p.set_defaults(handler=cmd_upload)

    p = sub.add_parser("run", parents=[common, conn, submit], help="submit one run")
    p.add_argument("pipeline", metavar="PIPELINE", help="pipeline name, or a compiled .yaml file")
    p.add_argument("--run-name", help="default: PIPELINE-YYYYmmdd-HHMMSS")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser(
        "schedule",
        parents=[common, conn, submit],
        help="create a recurring run, replacing older ones of that name",
    )
    p.add_argument("pipeline", metavar="PIPELINE", help="pipeline name")
    p.add_argument(
        "--cron",
        required=True,
        help="6 fields, seconds first: '0 0 3 * * *' = daily 03:00",
    )
    p.add_argument("--job-name", help="recurring run name (default: PIPELINE-recurring)")
    p.set_defaults(handler=cmd_schedule)

    p = sub.add_parser("status", parents=[common, conn], help="recent runs and state")
    p.add_argument("--experiment", help="only this experiment")
    p.add_argument("--run-id", help="only this run")
    p.add_argument("--limit", type=int, default=10, help="how many runs (default 10)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(handler=cmd_status)
    return parser


def main(
    argv: Sequence[str] | None = None,
    source_factory: Callable[[], PipelineSource] = pipeline_source,
) -> int:
    """Entry point of the ``planets-mlops`` console script; returns the exit code."""
    parser = build_parser(source_factory)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or EXIT_OK)
    except InvalidParameterError as exc:
        return _fail(args, exc, EXIT_USAGE)
    except KubeflowConnectionError as exc:
        return _fail(args, exc, EXIT_CONNECTION)
    except NotFoundError as exc:
        return _fail(args, exc, EXIT_NOT_FOUND)
    except PlanetsError as exc:
        return _fail(args, exc, EXIT_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug or library error: still exit 1, no crash dump
        return _fail(args, exc, EXIT_ERROR, unexpected=True)


def _fail(args: argparse.Namespace, exc: BaseException, code: int, unexpected: bool = False) -> int:
    text = str(exc)
    with_secrets = [getattr(args, "token", None), getattr(args, "cookies", None)]
    with_secrets += [os.environ.get("KFP_TOKEN"), os.environ.get("KFP_COOKIES")]
    for secret in with_secrets:
        if secret:
            text = text.replace(secret, "***")
    prefix = f"unexpected {type(exc).__name__}: " if unexpected else ""
    print(f"error: {prefix}{text}", file=sys.stderr)
    if args.verbose:
        traceback.print_exception(exc, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
