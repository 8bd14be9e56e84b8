"""Commit a merged data set as a new DVC version on a branch of the data repository.

Check-then-create: the data is ``dvc add``-ed in a fresh clone; when its hash equals the
branch's, git sees no change and no commit (and no push) is made, so a retried import
publishes nothing new.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from planets_mlops.datarepo import commit_data, git
from planets_mlops.errors import DataSourceError, InvalidParameterError

log = logging.getLogger(__name__)


@dataclass
class PublishResult:
    """Where a merged data set was published, and whether that made a new version.

    Attributes:
        branch: Branch of the data repository that holds the data.
        commit: The branch's head commit after publishing.
        created: True when a new commit was made (False: the data was already there).
        dvc_hash: The data folder's DVC hash (``md5`` of its ``.dvc`` pointer), or ``""``.
    """

    branch: str
    commit: str
    created: bool
    dvc_hash: str = ""

    def metadata(self) -> dict[str, object]:
        """The publication fields for the merged Dataset artifact's metadata (``published_*``)."""
        return {
            "published_branch": self.branch,
            "published_commit": self.commit,
            "published_new_version": self.created,
            "published_dvc_hash": self.dvc_hash,
        }


def publish_dataset(
    merged: Path,
    repo_url: str,
    data_path: str,
    branch: str,
    base_commit: str = "",
    message: str = "Import labels from Label Studio",
    remote_config: dict | None = None,
) -> PublishResult:
    """Make ``data_path`` on ``branch`` of ``repo_url`` equal ``merged`` and push it.

    The branch starts at ``base_commit`` (the pulled revision) when it does not exist yet.

    Raises:
        InvalidParameterError: empty repository URL, data path or branch.
        DataSourceError: clone, DVC push or git push fails.
    """
    for name, value in (("data_repo_url", repo_url), ("data_path", data_path), ("publish_branch", branch)):
        if not value:
            raise InvalidParameterError(name, value, "a non-empty value when publish=True")
    from dvc.repo import Repo

    work = Path(tempfile.mkdtemp(prefix="publish-"))
    try:
        try:
            git(work, "clone", "-q", repo_url, str(work / "repo"))
            repo = work / "repo"
            remote_branch = git(repo, "ls-remote", "--heads", "origin", branch)
            if remote_branch:
                git(repo, "checkout", "-q", "-B", branch, f"origin/{branch}")
            else:
                git(repo, "checkout", "-q", "-b", branch, *([base_commit] if base_commit else []))
            before = git(repo, "rev-parse", "HEAD")
            if remote_config:
                with Repo(str(repo)) as dvc_repo:
                    name = dvc_repo.config["core"].get("remote")
                    with dvc_repo.config.edit("local") as conf:
                        conf["remote"][name] = dict(remote_config)
            target = repo / data_path
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(merged, target)
            commit = commit_data(repo, data_path, message)
            created = commit != before
            dvc_hash = _dvc_hash(repo / f"{data_path}.dvc")
            if created or not remote_branch:
                git(repo, "push", "-q", "origin", f"{branch}:refs/heads/{branch}")
        except subprocess.CalledProcessError as exc:
            raise DataSourceError(
                f"Publishing to {repo_url!r} branch {branch!r} failed: `{' '.join(exc.cmd)}`: "
                f"{(exc.stderr or '').strip()[:500]}. Check push rights to the data repository."
            ) from exc
        except (DataSourceError, InvalidParameterError):
            raise
        except Exception as exc:  # noqa: BLE001 - DVC raises many types; one clear error
            raise DataSourceError(
                f"Publishing {data_path!r} to {repo_url!r} branch {branch!r} failed in DVC: "
                f"{type(exc).__name__}: {exc}. Check the DVC remote and its credentials."
            ) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info(
        "Published %s on %s@%s (%s)",
        data_path,
        branch,
        commit[:12],
        "new version" if created else "unchanged, no new version",
    )
    return PublishResult(branch=branch, commit=commit, created=created, dvc_hash=dvc_hash)


def _dvc_hash(pointer: Path) -> str:
    import yaml

    try:
        outs = yaml.safe_load(pointer.read_text()).get("outs") or [{}]
        return str(outs[0].get("md5", ""))
    except (OSError, AttributeError, yaml.YAMLError):
        return ""
