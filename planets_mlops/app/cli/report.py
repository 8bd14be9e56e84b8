"""``planets-mlops report RUN``: the pull request's review comment for one training run.

Reads the MLflow registry (``--tracking-uri`` or ``MLFLOW_TRACKING_URI``): the version the
KFP run registered, the gate's numbers, the confusion matrix and the lineage. ``--check``
makes the exit code the gate's decision: 0 promote, 5 keep production (other codes are
errors, as for every command), so a workflow tells a refusal from a broken step.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from planets_mlops.app.cli.options import Parents
from planets_mlops.app.cli.output import EXIT_OK, say
from planets_mlops.knobs import RegistryParams

EXIT_REFUSED = 5
"""``report --check``: the gate keeps production."""


def register(sub: Any, parents: Parents) -> None:
    """Add the ``report`` command to the subparsers ``sub``."""
    p = sub.add_parser(
        "report",
        parents=[parents.common],
        help="the review comment of a training run: candidate against production (Markdown)",
    )
    p.add_argument("run_id", metavar="RUN", help="the KFP run id (`planets-mlops run` prints run_id=...)")
    p.add_argument(
        "--format",
        choices=("github", "gitlab", "markdown"),
        default="markdown",
        help="github: alerts, folded tables and the sticky marker; gitlab: folded tables and the marker; "
        "markdown: plain (default)",
    )
    p.add_argument(
        "--style",
        choices=("review", "dvc"),
        default="review",
        help="review: the comment (default); dvc: `dvc metrics diff`/`params diff`-style tables",
    )
    p.add_argument(
        "--check", action="store_true", help=f"exit 0 when the gate promotes, {EXIT_REFUSED} when it refuses"
    )
    p.add_argument("--tracking-uri", help="MLflow tracking server URL [MLFLOW_TRACKING_URI]")
    p.add_argument("--model", default=RegistryParams.model_name, help="registered model")
    p.add_argument(
        "--kfp-ui", default=os.environ.get("KFP_UI", ""), help="KFP UI URL for the run link [KFP_UI]"
    )
    p.add_argument("--file", help="write the report here instead of stdout")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Collect the run's review from the registry and print it."""
    from planets_mlops.app.cli.models import client_of
    from planets_mlops.app.review import collect, headline, to_dvc_tables, to_markdown

    client = client_of(args)
    tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    review = collect(client, args.model, args.run_id, tracking_uri=tracking_uri, kfp_ui=args.kfp_ui)
    text = to_dvc_tables(review) if args.style == "dvc" else to_markdown(review, args.format)
    if args.file:
        with open(args.file, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    say(headline(review))
    if args.check and not review.promote:
        return EXIT_REFUSED
    return EXIT_OK
