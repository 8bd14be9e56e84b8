"""The option groups commands share, and what they resolve to.

``common`` (verbosity, output folder), ``connection`` (where the KFP API is and how to
authenticate) and ``submit`` (run arguments and settings) are argparse parent parsers;
each command picks the groups it needs.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from planets_mlops.app import kfp_client as kc
from planets_mlops.app.cli.output import say
from planets_mlops.errors import InvalidParameterError
from planets_mlops.knobs import PIPELINE_PREFIX, PRESETS

DEFAULT_EXPERIMENT = "planets"


@dataclass(frozen=True)
class Parents:
    """The shared option groups, as argparse parent parsers."""

    common: argparse.ArgumentParser
    connection: argparse.ArgumentParser
    submit: argparse.ArgumentParser


def parents() -> Parents:
    """Fresh parent parsers (argparse copies their actions into each command)."""
    return Parents(_common(), _connection(), _submit())


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    common.add_argument("--out-dir", default="build", help="where compiled YAML goes (default: build)")
    common.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="results on stdout as text lines (default) or one JSON document",
    )
    return common


def _connection() -> argparse.ArgumentParser:
    conn = argparse.ArgumentParser(add_help=False)
    g = conn.add_argument_group("connection (flags override the environment)")
    g.add_argument("--host", help="KFP API URL [KFP_HOST, else KF_PIPELINES_ENDPOINT]")
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
    g.add_argument(
        "--pipeline-prefix",
        help=f"prefix of the suite's pipeline names on the cluster [{kc.PREFIX_ENV}, default "
        f"{PIPELINE_PREFIX}: {PIPELINE_PREFIX}training, ...]",
    )
    return conn


def kfp_pipeline(args: argparse.Namespace, name: str) -> str:
    """The cluster's name of the suite pipeline ``name`` (``planets-training``; ``--pipeline-prefix``).

    Raises:
        InvalidParameterError: a prefix that is not lower-case letters, digits, '.' or '-'.
    """
    return kc.kfp_name(name, kc.pipeline_prefix(getattr(args, "pipeline_prefix", None)))


def prefixed_arguments(args: argparse.Namespace, name: str, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the monitoring pipeline's ``retraining_pipeline`` following ``--pipeline-prefix``.

    A monitoring run starts the retraining pipeline by its name on the cluster; unless the
    arguments name it, it is the one this prefix uploads.
    """
    prefix = kc.pipeline_prefix(getattr(args, "pipeline_prefix", None))
    if name != "monitoring" or "retraining_pipeline" in values or prefix == PIPELINE_PREFIX:
        return values
    return {**values, "retraining_pipeline": kc.kfp_name("retraining", prefix)}


def _submit() -> argparse.ArgumentParser:
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
        "--preset",
        choices=sorted(PRESETS),
        default="suite",
        help="recipe: suite (the defaults) or reference (the reference experiment's grayscale "
        "chapter 2.5 settings); --params-file and --param win over it",
    )
    s.add_argument(
        "--experiment",
        default=DEFAULT_EXPERIMENT,
        help=f"experiment, created if missing (default: {DEFAULT_EXPERIMENT})",
    )
    s.add_argument(
        "--pipeline-root",
        metavar="GS_URI",
        help="artifact root, e.g. gs://BUCKET/kfp [KFP_PIPELINE_ROOT; default: the namespace's kfp-launcher]",
    )
    s.add_argument(
        "--service-account",
        help="Kubernetes service account of the run's pods [KFP_SERVICE_ACCOUNT, default "
        f"{kc.DEFAULT_SERVICE_ACCOUNT}; '' for the KFP server's own default]",
    )
    s.add_argument(
        "--caching",
        choices=("on", "off"),
        help="on: tasks cache as compiled (steps that read or change the outside world "
        "never cache); off: no task caches, at any level (default: as compiled)",
    )
    s.add_argument(
        "--version",
        metavar="VERSION_NAME",
        help="use this uploaded pipeline version instead of compiling locally",
    )
    return submit


# ----------------------------------------------------------------- resolved values


def check_pipeline_root(root: str | None) -> str | None:
    """``--pipeline-root`` without its trailing slash, or None when not given.

    Raises:
        InvalidParameterError: Not a ``gs://``, ``s3://`` or ``minio://`` bucket URI.
    """
    if root is None:
        return None
    if not re.match(r"^(gs|s3|minio)://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$", root):
        raise InvalidParameterError(
            "--pipeline-root",
            root,
            "a URI like gs://BUCKET/PREFIX",
            "e.g. --pipeline-root gs://planets-artifacts/kfp",
        )
    return root.rstrip("/")


# Inputs of a pipeline that starts runs itself (monitoring's alert), and the run setting
# each one inherits when not given: the runs it starts run as it does.
INHERITED = {"retraining_service_account": "service_account", "retraining_pipeline_root": "pipeline_root"}


def run_settings(args: argparse.Namespace) -> kc.RunSettings:
    """The run's service account and pipeline root (flags, then the environment, then defaults).

    Raises:
        InvalidParameterError: A pipeline root that is not a bucket URI.
    """
    resolved = kc.RunSettings.resolve(args.service_account, args.pipeline_root)
    return kc.RunSettings(resolved.service_account, check_pipeline_root(resolved.pipeline_root))


def inherit_run_settings(values: dict[str, Any], spec: dict[str, Any], run: kc.RunSettings) -> dict[str, Any]:
    """``values`` plus the run settings for the pipeline's ``retraining_*`` inputs not given."""
    inputs = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    inherited = {
        name: getattr(run, attr)
        for name, attr in INHERITED.items()
        if name in inputs and name not in values and getattr(run, attr)
    }
    return {**values, **inherited}


def settings(args: argparse.Namespace) -> kc.ConnectionSettings:
    """Connection settings from the flags, then the environment."""
    return kc.ConnectionSettings.resolve(
        host=args.host,
        namespace=args.namespace,
        token=args.token,
        cookies=args.cookies,
        verify_ssl=False if args.no_verify_ssl else None,
        ca_bundle=args.ca_bundle,
        timeout=args.timeout,
    )


def connect(
    args: argparse.Namespace, resolved: kc.ConnectionSettings | None = None
) -> tuple[Any, kc.ConnectionSettings]:
    """``(kfp.Client, settings)``, after a fast health check.

    Args:
        args: The parsed flags.
        resolved: Settings already resolved from them (commands resolve them before
            compiling, so a missing host fails at once); resolved here when None.
    """
    resolved = resolved or settings(args)
    say(f"connecting to {resolved.describe()}")
    return kc.connect(resolved), resolved


@contextlib.contextmanager
def api(resolved: kc.ConnectionSettings, action: str) -> Iterator[None]:
    """KFP calls: errors translated, and kfp.Client's own prints sent to stderr.

    ``kfp.Client`` prints "Run details: <link>" to stdout; this CLI keeps stdout for its
    own results.
    """
    with kc.translate_errors(resolved, action), contextlib.redirect_stdout(sys.stderr):
        yield
