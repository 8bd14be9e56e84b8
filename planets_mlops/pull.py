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

from planets_mlops.data_source import (
    check_parents_readable,
    dvc_filesystem,
    normalise_repo_url,
    open_filesystem,
    tree_hash,
)
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


# How long the endpoint check waits for a TCP connection to a remote's ``endpointurl``.
ENDPOINT_CONNECT_TIMEOUT_S = 10.0


def check_endpoint(remote_settings: dict, repo_url: str, path: str) -> None:
    """Fail fast when a remote's ``endpointurl`` (an emulator, MinIO...) refuses connections.

    gcsfs retries a refused connection six times with exponential backoff: a mistyped
    endpoint was a remote error only after about a minute. One TCP connection says so at
    once; anything past connecting (TLS, HTTP, credentials) is left to the real requests.

    Raises:
        DataSourceError: the endpoint's host does not resolve or does not accept a connection.
    """
    import socket
    from urllib.parse import urlsplit

    endpoint = str(remote_settings.get("endpointurl") or "")
    if not endpoint:
        return
    parts = urlsplit(endpoint)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise DataSourceError(f"endpointurl={endpoint!r} of the DVC remote of {repo_url!r}: {exc}") from exc
    try:
        socket.create_connection((parts.hostname or "", port), timeout=ENDPOINT_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise DataSourceError(
            f"Cannot download data_path={path!r} from the DVC remote of {repo_url!r}: its "
            f"endpointurl={endpoint!r} does not accept connections ({type(exc).__name__}: {exc}). "
            "Check that the remote is reachable at that address (is the emulator or object store "
            "running?), or fix endpointurl in the remote's configuration."
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


def is_local_remote(url: str) -> bool:
    """Whether a DVC remote's ``url`` is a folder on this machine (a path or ``file://``)."""
    return bool(url) and ("://" not in url or url.startswith("file://"))


def _remote_settings(fs, remote: str, remote_config: dict | None) -> tuple[str, dict]:
    config = fs.repo.config
    name = remote or config.get("core", {}).get("remote", "")
    settings = dict(config.get("remote", {}).get(name, {}))
    settings.update(remote_config or {})
    return str(settings.get("url", "")), settings


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
    if not rev:
        raise DataSourceError("data_rev is empty: name a branch, tag or commit, e.g. 'main'.")
    if remote_config and remote_config.get("endpointurl"):
        # gcsfs otherwise probes a gRPC API on the custom endpoint and hangs for minutes.
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    normalise_repo_url(repo_url)  # a missing local repository is refused before out_dir is emptied
    started = time.monotonic()
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    options = {"remote": remote or None, "remote_config": remote_config or None}
    with dvc_filesystem(repo_url, rev, path, **options) as fs:
        commit = fs.repo.get_rev()
        _check_remote_name(fs, remote, repo_url, rev)
        remote_url, settings = _remote_settings(fs, remote, remote_config)
        check_gcs_credentials(remote_url, settings, repo_url)
        check_endpoint(settings, repo_url, path)
        if not fs.exists(path):
            check_parents_readable(fs, path)
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
        dvc_hash = tree_hash(info)
        if is_local_remote(remote_url) and "type" not in settings:
            # From a remote folder DVC links each file with the remote's link types (reflink,
            # then copy), and its copy tries a reflink again: two new files, ioctls that ext4
            # refuses and unlinks per file, on a pool of threads that share one GIL. With the
            # link types set to copy and no pool, the bundled 1,500 images took 2.0 CPU s
            # against 4.2-4.9 (wall 2.0 against 2.7-3.1 s; on a quiet host 1.46 against
            # 1.36 s), the same files; a local run's pull shares the machine with the
            # training child importing TensorFlow. The repository is opened again with that
            # setting (DVC keeps its clone: ~10 ms).
            copy_config = {**(remote_config or {}), "type": ["copy"]}
            copying = open_filesystem(repo_url, rev, remote=remote or None, remote_config=copy_config)
            try:
                copying.get(path, str(out_dir), recursive=True, batch_size=1)
            finally:
                copying.close()  # same clone, same state folder: forgotten with ``fs``'s
        else:
            fs.get(path, str(out_dir), recursive=True)
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
