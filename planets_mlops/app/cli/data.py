"""``planets-mlops data init FOLDER --remote URL``: your images as a git + DVC data repository.

Checks the tree first (:func:`planets_mlops.app.your_data.check_layout`: classes, images per
class, nothing nested or loose) and refuses a bad layout, exit 2, having written nothing; then
builds the repository, pushes the images to the DVC remote and, with ``--git-remote``, the
commit and its tag; prints the arguments of a first training run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from planets_mlops.app.cli.options import Parents
from planets_mlops.app.cli.output import EXIT_OK, EXIT_USAGE, emit, report_error, say
from planets_mlops.errors import DataError


def register(sub: Any, parents: Parents) -> None:
    """Add the ``data`` command (``data init``) to the subparsers ``sub``."""
    p = sub.add_parser("data", help="your own images: build the git + DVC data repository")
    actions = p.add_subparsers(dest="data_action", required=True, metavar="ACTION")
    init = actions.add_parser(
        "init",
        parents=[parents.common],
        help="check a class-per-folder tree, version it with git + DVC, push it",
        description="Check FOLDER/<Class>/<image>, build a git + DVC repository holding it at "
        "--data-path, push the images to the DVC remote (and the commit to --git-remote). "
        "See docs/your-data.md.",
    )
    init.add_argument("folder", metavar="FOLDER", type=Path, help="one sub-folder of images per class")
    init.add_argument(
        "--remote",
        required=True,
        metavar="URL",
        help="DVC remote for the images: a folder or gs://bucket/path",
    )
    init.add_argument(
        "--repo",
        type=Path,
        default=Path("planets-data"),
        help="new folder for the repository (default planets-data)",
    )
    init.add_argument(
        "--git-remote", default="", metavar="URL", help="push the commit and tag there (origin)"
    )
    init.add_argument(
        "--data-path", default="data/raw", help="the images' folder in the repository (default data/raw)"
    )
    init.add_argument("--tag", default="v1", help="git tag of the commit (default v1)")
    init.add_argument(
        "--min-per-class", type=int, default=10, help="refuse a class with fewer usable images (default 10)"
    )
    init.set_defaults(handler=handle_init)


def handle_init(args: argparse.Namespace) -> int:
    """Check, build and push; refuse a bad layout with exit 2."""
    from planets_mlops.app.your_data import check_layout, init_data_repo

    try:
        layout = check_layout(args.folder, args.min_per_class)
    except DataError as exc:
        return report_error(args, exc, EXIT_USAGE)
    say(
        f"{layout.images} images in {len(layout.class_counts)} classes: "
        + ", ".join(f"{name} {n}" for name, n in layout.class_counts.items())
    )
    if layout.skipped:
        say(f"{len(layout.skipped)} file(s) not used (training skips them too):")
        for name, why in list(layout.skipped.items())[:10]:
            say(f"  {name}: {why}")
    for line in layout.advice:
        say(f"note: {line}")
    try:
        built = init_data_repo(layout, args.repo, args.remote, args.data_path, args.tag, args.git_remote)
    except DataError as exc:
        return report_error(args, exc, EXIT_USAGE)
    url = built.git_remote or str(built.repo)
    say(
        f"pushed the images to {built.remote}"
        + (f" and {built.tag} to {built.git_remote}" if built.git_remote else "")
    )
    emit(
        args,
        [
            f"repo={built.repo}",
            f"commit={built.commit}",
            f"tag={built.tag}",
            "First run, here:",
            f"  python -m planets_mlops.app.quickstart --data-repo {url} --data-rev {built.tag} "
            f"--data-path {built.data_path}",
            "On Kubeflow:",
            f"  planets-mlops run training --param data_repo_url={url} --param data_rev={built.tag} "
            f"--param data_path={built.data_path}",
        ],
        {
            "repo": str(built.repo),
            "commit": built.commit,
            "tag": built.tag,
            "remote": built.remote,
            "git_remote": built.git_remote,
            "data_path": built.data_path,
            "classes": layout.class_counts,
            "skipped": layout.skipped,
        },
    )
    return EXIT_OK
