"""Pull a data set directory from a git + DVC repository at a revision.

The data comes from the repository's DVC remote (a local folder or ``gs://``), never from
a working copy: a repository URL is cloned by DVC into a temporary folder with an empty
cache, so every byte is read from the remote.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planets_mlops.dataset import index_dataset
from planets_mlops.errors import DataError, DataSourceError

log = logging.getLogger(__name__)


@dataclass
class PullResult:
    """What was pulled, for the Dataset artifact's metadata."""

    repo_url: str
    rev: str
    commit: str
    path: str
    dvc_hash: str
    num_files: int
    class_counts: dict[str, int]
    skipped: dict[str, int]

    def metadata(self) -> dict[str, Any]:
        """Flat metadata for the Dataset artifact: provenance (repo, rev, commit, DVC hash) and counts."""
        return {
            "repo_url": self.repo_url,
            "rev": self.rev,
            "commit": self.commit,
            "data_path": self.path,
            "dvc_hash": self.dvc_hash,
            "num_files": self.num_files,
            "class_counts": self.class_counts,
            "num_classes": len(self.class_counts),
            "skipped": self.skipped,
        }


def _normalise_repo_url(repo_url: str) -> str:
    """A bare local path becomes ``file://`` so DVC clones it and really reads the remote."""
    if "://" in repo_url or repo_url.startswith("git@"):
        return repo_url
    path = Path(repo_url).expanduser().resolve()
    if not path.exists():
        raise DataSourceError(
            f"Data repository {repo_url!r} not found. Pass a git URL (https://, git@, file://) "
            "or an existing local repository path as data_repo_url."
        )
    return path.as_uri()


def _find_cause(exc: BaseException, names: tuple[str, ...]) -> BaseException | None:
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in names:
            return current
        current = current.__cause__ or current.__context__
    return None


def _explain(exc: Exception, repo_url: str, rev: str, path: str) -> DataSourceError:
    """Turn DVC / git / GCS failures into one error that names the input and the fix."""
    if _find_cause(exc, ("DefaultCredentialsError", "RefreshError")):
        return DataSourceError(
            f"No usable Google Cloud credentials to read the DVC remote of {repo_url!r} ({exc}). "
            "Set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or run on a "
            "cluster with Workload Identity bound to a service account that can read the bucket."
        )
    if _find_cause(exc, ("RevError",)):
        return DataSourceError(
            f"Unknown git revision data_rev={rev!r} in {repo_url!r}. "
            "Use an existing branch, tag or commit of the data repository."
        )
    if _find_cause(exc, ("CloneError", "NotDvcRepoError", "SCMError", "NoSCMError")):
        return DataSourceError(
            f"Cannot clone data repository data_repo_url={repo_url!r} as a DVC repository: "
            f"{exc}. Check the URL, network access and that the repository was initialised with DVC."
        )
    return DataSourceError(
        f"Cannot download data_path={path!r} from the DVC remote of {repo_url!r} at {rev!r}: "
        f"{type(exc).__name__}: {exc}. Check that the remote is reachable, that the data was "
        "pushed (`dvc push`), and the remote credentials."
    )


def check_gcs_credentials(remote_url: str, remote_settings: dict, repo_url: str) -> None:
    """Fail fast, with the fix, when a ``gs://`` remote has no credentials to use.

    Without this check gcsfs falls back to anonymous access or retries, and the user sees
    a 403/401 deep in a stack trace minutes later.
    """
    if not remote_url.startswith("gs://"):
        return
    if remote_settings.get("allow_anonymous_login") or remote_settings.get("credentialpath"):
        return
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError as exc:
        raise DataSourceError(
            f"Missing Google Cloud credentials for the DVC remote {remote_url!r} of {repo_url!r}: "
            f"{exc} Set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file that can read "
            "the bucket, or run on GKE with Workload Identity (see kustomize/overlays/gke)."
        ) from exc


def _check_remote_name(fs, remote: str, repo_url: str, rev: str) -> None:
    """An unknown remote name would otherwise surface as an untracked data_path."""
    if not remote:
        return
    configured = sorted(fs.repo.config.get("remote", {}))
    if remote not in configured:
        raise DataSourceError(
            f"dvc_remote={remote!r} is not a DVC remote of {repo_url!r} at {rev!r}; the "
            f"configured remotes are {configured or 'none'}. Pass one of them, or leave "
            "dvc_remote empty for the repository's default remote."
        )


def _remote_settings(fs, remote: str, remote_config: dict | None) -> tuple[str, dict]:
    config = fs.repo.config
    name = remote or config.get("core", {}).get("remote", "")
    settings = dict(config.get("remote", {}).get(name, {}))
    settings.update(remote_config or {})
    return str(settings.get("url", "")), settings


def _check_parents_readable(fs: Any, path: str) -> None:
    """Before calling ``path`` untracked: can its nearest existing parent be listed?

    A path inside a DVC-tracked folder exists only once the folder's listing (its ``.dir``
    object) is read from the remote; with a remote that cannot be read (a bad endpoint,
    key file or credentials) DVC answers "does not exist". Listing the parent raises that
    remote's error instead, which the caller turns into a remote error, not "not tracked".
    """
    from pathlib import PurePosixPath

    for parent in PurePosixPath(path).parents:
        if str(parent) in ("", ".") or not fs.exists(str(parent)):
            continue
        fs.ls(str(parent), detail=False)
        return


def pull_dataset(
    repo_url: str,
    rev: str,
    path: str,
    out_dir: Path,
    remote: str = "",
    remote_config: dict | None = None,
) -> PullResult:
    """Download ``path`` of ``repo_url`` at ``rev`` from its DVC remote into ``out_dir``.

    Args:
        repo_url: git URL of the data repository, or a local path to one.
        rev: branch, tag or commit.
        path: DVC-tracked folder inside the repository (class sub-folders of images).
        out_dir: where the folder's contents go; replaced if it exists.
        remote: name of the DVC remote to use; the repository's default when empty.
        remote_config: extra remote settings (e.g. ``endpointurl`` for a GCS emulator).

    Raises:
        DataSourceError: repository, revision, path or remote cannot be reached or read.
        DataError: the pulled folder is not a usable class-per-folder image data set.
    """
    from dvc.api import DVCFileSystem

    if not rev:
        raise DataSourceError("data_rev is empty: name a branch, tag or commit, e.g. 'main'.")
    if remote_config and remote_config.get("endpointurl"):
        # gcsfs otherwise probes a gRPC API on the custom endpoint and hangs for minutes.
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    url = _normalise_repo_url(repo_url)
    started = time.monotonic()
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    try:
        fs = DVCFileSystem(url, rev=rev, remote=remote or None, remote_config=remote_config or None)
        commit = fs.repo.get_rev()
        _check_remote_name(fs, remote, repo_url, rev)
        check_gcs_credentials(*_remote_settings(fs, remote, remote_config), repo_url)
        if not fs.exists(path):
            _check_parents_readable(fs, path)
            raise DataSourceError(
                f"data_path={path!r} is not tracked in {repo_url!r} at {rev!r}. Use the path of "
                "a DVC-tracked folder (the folder a .dvc file points to), e.g. 'data/raw'."
            )
        info = fs.info(path)
        if info.get("type") != "directory":
            raise DataError(
                f"data_path={path!r} in {repo_url!r} at {rev!r} is a file, not a folder of class "
                "sub-folders. Point data_path at the DVC-tracked data set folder."
            )
        dvc_hash = info.get("md5") or (info.get("dvc_info") or {}).get("md5") or ""
        fs.get(path, str(out_dir), recursive=True)
    except (DataError, DataSourceError):
        raise
    except Exception as exc:  # noqa: BLE001 - mapped to one clear error below
        raise _explain(exc, repo_url, rev, path) from exc
    finally:
        try:
            from dvc.repo.open_repo import clean_repos

            clean_repos()
        except Exception:  # noqa: BLE001 - cleanup only
            pass
    index = index_dataset(out_dir, verify=False)
    result = PullResult(
        repo_url=repo_url,
        rev=rev,
        commit=commit,
        path=path,
        dvc_hash=dvc_hash,
        num_files=len(index.files) + len(index.skipped),
        class_counts=index.class_counts,
        skipped=index.skipped_summary(),
    )
    log.info(
        "Pulled %s@%s (%s) %s: %d files, %d classes, dvc hash %s in %.1f s",
        repo_url,
        rev,
        commit[:12],
        path,
        result.num_files,
        len(result.class_counts),
        dvc_hash,
        time.monotonic() - started,
    )
    return result


def data_version(repo_url: str, rev: str, path: str) -> tuple[str, str]:
    """``(commit, DVC hash)`` of ``path`` of ``repo_url`` at ``rev``, without downloading the data.

    What a trigger keys on: the same hash is the same data, whatever branch name led to it.

    Raises:
        DataSourceError: the repository, revision or path cannot be read, or ``path`` is not
            tracked by DVC there.
    """
    from dvc.api import DVCFileSystem

    if not rev:
        raise DataSourceError("data_rev is empty: name a branch, tag or commit, e.g. 'main'.")
    url = _normalise_repo_url(repo_url)
    try:
        fs = DVCFileSystem(url, rev=rev)
        commit = fs.repo.get_rev()
        if not fs.exists(path):
            _check_parents_readable(fs, path)
            raise DataSourceError(f"data_path={path!r} is not tracked in {repo_url!r} at {rev!r}.")
        info = fs.info(path)
        dvc_hash = info.get("md5") or (info.get("dvc_info") or {}).get("md5") or ""
    except DataSourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped to one clear error below
        raise _explain(exc, repo_url, rev, path) from exc
    finally:
        try:
            from dvc.repo.open_repo import clean_repos

            clean_repos()
        except Exception:  # noqa: BLE001 - cleanup only
            pass
    return commit, dvc_hash
