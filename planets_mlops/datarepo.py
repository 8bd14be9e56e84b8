"""Create and update a git + DVC data repository (the quickstart's and the tests' data source).

A data repository holds ``.dvc`` pointer files in git and the data itself in a DVC remote,
so ``pull_data`` at a git revision gets exactly the data of that revision.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "planets-mlops",
    "GIT_AUTHOR_EMAIL": "planets-mlops@localhost",
    "GIT_COMMITTER_NAME": "planets-mlops",
    "GIT_COMMITTER_EMAIL": "planets-mlops@localhost",
}


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` and return its stripped stdout.

    Args:
        repo: Working directory of the git command.
        *args: git arguments, e.g. ``"rev-parse", "HEAD"``.

    Raises:
        subprocess.CalledProcessError: git exited non-zero (``stderr`` holds its message).
    """
    env = {**os.environ, **GIT_IDENTITY}
    result = subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True)
    return result.stdout.strip()


def create_data_repo(
    source: Path,
    repo: Path,
    remote_url: str,
    data_path: str = "data/raw",
    remote_config: dict | None = None,
    tag: str | None = None,
) -> str:
    """Make a git + DVC repository at ``repo`` holding ``source`` at ``data_path``.

    Copies ``source``, ``dvc add``s it, pushes the data to ``remote_url`` (a folder or
    ``gs://``) and commits. Test-only remote settings (endpoint URL, anonymous login) go
    in ``.dvc/config.local``, which is not committed.

    Args:
        source: Folder to version (a class-per-folder data set).
        repo: Where to create the repository (created if missing).
        remote_url: DVC remote: a local folder or a ``gs://`` URL.
        data_path: Path of the data inside the repository.
        remote_config: Extra settings of the remote, kept out of git (``.dvc/config.local``).
        tag: Git tag to put on the commit, if any.

    Returns:
        The commit hash.
    """
    from dvc.repo import Repo

    repo = Path(repo).resolve()
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    # `dvc init` prints a welcome banner and logs it again at INFO: keep both out of the way.
    init_log = logging.getLogger("dvc.repo.init")
    level = init_log.level
    init_log.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            Repo.init(str(repo))
    finally:
        init_log.setLevel(level)
    with Repo(str(repo)) as dvc_repo:
        with dvc_repo.config.edit("repo") as conf:
            conf["core"]["remote"] = "storage"
            conf["core"]["autostage"] = True
            conf["remote"]["storage"] = {"url": remote_url}
        if remote_config:
            with dvc_repo.config.edit("local") as conf:
                conf["remote"]["storage"] = dict(remote_config)
    target = repo / data_path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)
    return commit_data(repo, data_path, "Add data set", tag=tag)


def commit_data(repo: Path, data_path: str, message: str, tag: str | None = None) -> str:
    """``dvc add`` + ``dvc push`` ``data_path`` and commit the pointer; idempotent.

    Args:
        repo: An existing git + DVC repository.
        data_path: Data folder inside ``repo`` to add.
        message: Commit message.
        tag: Git tag to move onto the resulting commit, if any.

    Returns:
        The commit hash (the existing HEAD when nothing changed).
    """
    from dvc.repo import Repo

    repo = Path(repo).resolve()
    with Repo(str(repo)) as dvc_repo:
        # In-process add resolves paths against the working directory: pass it absolute.
        dvc_repo.add(str(repo / data_path))
        pushed = dvc_repo.push()
    log.info("Pushed %s objects for %s", pushed, data_path)
    git(repo, "add", "-A")
    if git(repo, "status", "--porcelain"):
        git(repo, "commit", "-q", "-m", message)
    if tag:
        git(repo, "tag", "-f", tag)
    return git(repo, "rev-parse", "HEAD")
