"""``planets-mlops ci``: the steps of the pull-request and merge workflows that are not runs.

- ``init``: write the GitHub Actions workflows (or the GitLab CI twin) and the schedules file.
- ``record RUN``: tag the version the run registered with the reviewed commit and request.
- ``promote``: at merge, promote the reviewed version (commit or tree, data revision, gate
  checked; compare-and-set against the production the gate saw), optionally deploy it.
- ``note``, ``merged-request``, ``gcp-credentials``, ``id-token``: what GitLab's jobs need that
  GitHub's runners have (``gh``, the auth action).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from planets_mlops.app.cli.options import Parents
from planets_mlops.app.cli.output import EXIT_OK, emit, say
from planets_mlops.knobs import DeployParams, RegistryParams


def register(sub: Any, parents: Parents) -> None:
    """Add the ``ci`` command and its actions to ``sub``."""
    registry = argparse.ArgumentParser(add_help=False)
    g = registry.add_argument_group("registry")
    g.add_argument("--tracking-uri", help="MLflow tracking server URL [MLFLOW_TRACKING_URI]")
    g.add_argument("--model", default=RegistryParams.model_name, help="registered model")
    p = sub.add_parser("ci", help="CI/CD: write the workflows; record, promote and note reviewed models")
    actions = p.add_subparsers(dest="ci_command", required=True, metavar="ACTION")

    init = actions.add_parser("init", parents=[parents.common], help="write the workflow templates")
    init.add_argument("--provider", choices=("github", "gitlab"), required=True)
    init.add_argument("--repo", default=".", help="the repository's root (default: here)")
    init.add_argument("--install-spec", help="what the workflows pip-install (default: this release)")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.set_defaults(handler=handle_init)

    record = actions.add_parser(
        "record", parents=[parents.common, registry], help="tag a run's version with the reviewed commit"
    )
    record.add_argument("run_id", metavar="RUN", help="the KFP run id")
    record.add_argument("--commit", required=True, help="the reviewed commit (the pull request's head)")
    record.add_argument("--pr", default="", help="the pull (merge) request number")
    record.add_argument("--pipeline-version", default="", help="the uploaded pipeline version's name")
    record.set_defaults(handler=handle_record)

    promote = actions.add_parser(
        "promote", parents=[parents.common, registry], help="at merge: promote the reviewed version"
    )
    promote.add_argument("--merged-commit", required=True, help="the commit on main")
    promote.add_argument(
        "--reviewed-commit", help="the pull request's head commit (default: the merged commit)"
    )
    data = promote.add_mutually_exclusive_group()
    data.add_argument("--data-rev", help="the data revision the merged commit declares")
    data.add_argument("--params-file", help="read it from this params.yaml (data: rev:)")
    promote.add_argument("--repo", default=".", help="the checkout (compares the commits' trees)")
    promote.add_argument("--deploy", action="store_true", help="serve the version's bento")
    promote.add_argument("--serving-name", default=DeployParams.name)
    promote.add_argument("--serving-namespace", default=DeployParams.namespace)
    promote.add_argument("--summary", help="write the merged request's comment (Markdown) here")
    promote.set_defaults(handler=handle_promote)

    note = actions.add_parser("note", parents=[parents.common], help="GitLab: note a merge request")
    note.add_argument("--mr", required=True, help="the merge request iid")
    note.add_argument("--file", required=True, help="the Markdown body")
    note.add_argument("--sticky", action="store_true", help="update the note with the report's marker")
    note.set_defaults(handler=handle_note)

    merged = actions.add_parser(
        "merged-request", parents=[parents.common], help="GitLab: the merge request a commit merged"
    )
    merged.add_argument("--commit", required=True)
    merged.set_defaults(handler=handle_merged_request)

    creds = actions.add_parser(
        "gcp-credentials",
        parents=[parents.common],
        help="keyless Google credentials from the job's OIDC token",
    )
    creds.add_argument("--token-env", required=True, help="the variable holding the OIDC token")
    creds.add_argument("--audience", required=True, help="the workload identity provider's audience")
    creds.add_argument("--service-account", required=True, help="the service account to act as")
    creds.add_argument("--out", required=True, help="where to write the credential configuration")
    creds.set_defaults(handler=handle_gcp_credentials)

    token = actions.add_parser(
        "id-token", parents=[parents.common], help="an ID token of the ambient service account"
    )
    token.add_argument("--audience", required=True)
    token.set_defaults(handler=handle_id_token)


def handle_init(args: argparse.Namespace) -> int:
    """Write the provider's workflow files and the schedules file."""
    from planets_mlops.app.cicd import render_templates, write_templates

    written = write_templates(render_templates(args.provider, args.install_spec), Path(args.repo), args.force)
    say(f"wrote {len(written)} file(s); docs/ci.md sets up the identities and variables they use")
    emit(args, [str(p) for p in written], [str(p) for p in written])
    return EXIT_OK


def handle_record(args: argparse.Namespace) -> int:
    """Tag the run's version with the reviewed commit."""
    from planets_mlops.app.cicd import record_review
    from planets_mlops.app.cli.models import client_of

    version = record_review(
        client_of(args), args.model, args.run_id, args.commit, args.pr, args.pipeline_version
    )
    emit(args, [f"version={version}"], {"version": version, "commit": args.commit, "pr": args.pr})
    return EXIT_OK


def _data_rev(args: argparse.Namespace) -> str:
    from planets_mlops.app import params as pp
    from planets_mlops.knobs import DataParams

    if args.data_rev:
        return str(args.data_rev)
    if args.params_file:
        return str(
            pp.merge_arguments(pp.load_params_file(args.params_file), []).get("data_rev", DataParams.rev)
        )
    return DataParams.rev


def handle_promote(args: argparse.Namespace) -> int:
    """Promote the reviewed version for this merge; deploy it with ``--deploy``."""
    from planets_mlops.app.cicd import merged_markdown, promote_reviewed, same_tree
    from planets_mlops.app.cli.models import client_of, deploy_version
    from planets_mlops.registry.release import record_deployment

    client = client_of(args)
    reviewed = args.reviewed_commit or args.merged_commit
    shipped = promote_reviewed(
        client,
        args.model,
        merged_commit=args.merged_commit,
        reviewed_commit=reviewed,
        data_rev=_data_rev(args),
        trees_equal=lambda a, b: same_tree(Path(args.repo), a, b),
    )
    say(f"production of {args.model}: {shipped.previous or 'none'} -> {shipped.version}")
    deployed = None
    if args.deploy:
        deployed = deploy_version(client, args.model, shipped.info, args.serving_name, args.serving_namespace)
        record_deployment(client, args.model, shipped.version, deployed)
    if args.summary:
        Path(args.summary).write_text(
            merged_markdown(shipped, args.model, args.merged_commit, deployed), encoding="utf-8"
        )
    emit(
        args,
        [
            f"version={shipped.version}",
            f"previous={shipped.previous or ''}",
            *([f"revision={deployed.get('revision', '')}"] if deployed else []),
        ],
        {"version": shipped.version, "previous": shipped.previous, "pr": shipped.pr, "deployed": deployed},
    )
    return EXIT_OK


def handle_note(args: argparse.Namespace) -> int:
    """Post (or update, with ``--sticky``) a merge request note."""
    from planets_mlops.app.ci_provider import gitlab_note
    from planets_mlops.app.review import MARKER

    body = Path(args.file).read_text(encoding="utf-8")
    outcome = gitlab_note(args.mr, body, MARKER if args.sticky else "")
    emit(args, [f"note={outcome}"], {"note": outcome})
    return EXIT_OK


def handle_merged_request(args: argparse.Namespace) -> int:
    """Print ``number=`` and ``head_sha=`` (shell-sourceable; empty when none)."""
    from planets_mlops.app.ci_provider import gitlab_merged_request
    from planets_mlops.app.cicd import check_commit

    found = gitlab_merged_request(check_commit("--commit", args.commit))
    emit(args, [f"number={found.get('number', '')}", f"head_sha={found.get('head_sha', '')}"], found)
    return EXIT_OK


def handle_gcp_credentials(args: argparse.Namespace) -> int:
    """Write the credential configuration for the job's OIDC token."""
    from planets_mlops.app.ci_provider import write_gcp_credentials

    out = write_gcp_credentials(
        os.environ.get(args.token_env, ""), Path(args.out), args.audience, args.service_account
    )
    emit(args, [str(out)], {"path": str(out)})
    return EXIT_OK


def handle_id_token(args: argparse.Namespace) -> int:
    """Print an ID token for the audience (to stdout only)."""
    from planets_mlops.app.ci_provider import id_token

    print(id_token(args.audience))
    return EXIT_OK
