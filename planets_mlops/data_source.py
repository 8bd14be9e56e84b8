"""Reading a git + DVC data repository: its URL, its errors, and the version of its data.

Two steps read a data repository: ``pull_data`` (:mod:`planets_mlops.pull`) downloads a
folder of it, and the drift alert keys a retraining on the version of its data
(:func:`data_version`, :mod:`planets_mlops.monitoring.trigger`). What both need lives here,
so that neither step imports the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from planets_mlops.errors import DataSourceError, PlanetsError


def normalise_repo_url(repo_url: str) -> str:
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


def find_cause(exc: BaseException, names: tuple[str, ...]) -> BaseException | None:
    """The first exception in ``exc``'s chain (causes, then contexts) whose class is one of ``names``."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in names:
            return current
        current = current.__cause__ or current.__context__
    return None


def explain(exc: Exception, repo_url: str, rev: str, path: str) -> DataSourceError:
    """Turn DVC / git / GCS failures into one error that names the input and the fix."""
    if find_cause(exc, ("DefaultCredentialsError", "RefreshError")):
        return DataSourceError(
            f"No usable Google Cloud credentials to read the DVC remote of {repo_url!r} ({exc}). "
            "Set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or run on a "
            "cluster with Workload Identity bound to a service account that can read the bucket."
        )
    if find_cause(exc, ("RevError",)):
        return DataSourceError(
            f"Unknown git revision data_rev={rev!r} in {repo_url!r}. "
            "Use an existing branch, tag or commit of the data repository."
        )
    if find_cause(exc, ("CloneError", "NotDvcRepoError", "SCMError", "NoSCMError")):
        return DataSourceError(
            f"Cannot clone data repository data_repo_url={repo_url!r} as a DVC repository: "
            f"{exc}. Check the URL, network access and that the repository was initialised with DVC."
        )
    return DataSourceError(
        f"Cannot download data_path={path!r} from the DVC remote of {repo_url!r} at {rev!r}: "
        f"{type(exc).__name__}: {exc}. Check that the remote is reachable, that the data was "
        "pushed (`dvc push`), and the remote credentials."
    )


def check_parents_readable(fs: Any, path: str) -> None:
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


def data_version(repo_url: str, rev: str, path: str) -> tuple[str, str]:
    """``(commit, DVC hash)`` of ``path`` of ``repo_url`` at ``rev``, without downloading the data.

    What a trigger keys on: the same hash is the same data, whatever branch name led to it.

    Raises:
        DataSourceError: the repository, revision or path cannot be read, or ``path`` is not
            tracked by DVC there.
    """
    if not rev:
        raise DataSourceError("data_rev is empty: name a branch, tag or commit, e.g. 'main'.")
    with dvc_filesystem(repo_url, rev, path) as fs:
        commit = fs.repo.get_rev()
        if not fs.exists(path):
            check_parents_readable(fs, path)
            raise DataSourceError(f"data_path={path!r} is not tracked in {repo_url!r} at {rev!r}.")
        return commit, tree_hash(fs.info(path))


@contextmanager
def dvc_filesystem(repo_url: str, rev: str, path: str, **options: Any) -> Iterator[Any]:
    """A ``DVCFileSystem`` of ``repo_url`` at ``rev`` (``options``: ``remote``, ``remote_config``).

    Any error that is not the project's own, raised opening it or in the ``with`` body,
    becomes one :class:`DataSourceError` that names the repository, revision and ``path``
    (:func:`explain`); DVC's cached clones are cleaned up on the way out.
    """
    fs = None
    try:
        fs = open_filesystem(repo_url, rev, **options)
        yield fs
    except PlanetsError:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped to one clear error
        raise explain(exc, repo_url, rev, path) from exc
    finally:
        try:
            from dvc.repo.open_repo import clean_repos

            if fs is not None:
                forget_clone_state(fs)
            clean_repos()
        except Exception:  # noqa: BLE001 - cleanup only
            pass


def open_filesystem(repo_url: str, rev: str, **options: Any) -> Any:
    """A ``DVCFileSystem`` of ``repo_url`` at ``rev``; inside :func:`dvc_filesystem`, which cleans up.

    A second one of the same repository and revision in that block reuses DVC's clone (the
    pull opens one with other remote settings).
    """
    from dvc.api import DVCFileSystem

    return DVCFileSystem(normalise_repo_url(repo_url), rev=rev, **options)


def forget_clone_state(fs: Any) -> None:
    """Remove what DVC keeps on this machine for the temporary clone behind ``fs``.

    DVC keeps a folder of state for each repository it opens (``/var/tmp/dvc/repo/<hash>``,
    its data index and file states, ~0.3 MB after a pull of the bundled data set), keyed by
    the repository's path. Every pull reads a fresh clone in a temporary folder, so every
    pull left a folder there that nothing would read again: 4,017 of them, 801 MB, on the
    machine that ran this project's tests. The state of a repository that is not such a
    clone (a user's own checkout) is left alone. Closes ``fs``.
    """
    import shutil

    from dvc.repo.open_repo import CLONES

    repo = vars(fs).get("repo")  # a cached property: None when the repository was never opened
    fs.close()
    if repo is None:
        return
    clones = [Path(folder) for folder, _ in CLONES.values()]
    # A repository read at a git revision has root "/" in its git tree; its checkout is the scm's.
    checkout = getattr(getattr(repo, "scm", None), "root_dir", None) or repo.root_dir
    if not any(Path(checkout).is_relative_to(folder) for folder in clones):
        return
    shutil.rmtree(repo.site_cache_dir, ignore_errors=True)


def tree_hash(info: dict[str, Any]) -> str:
    """The DVC hash (``md5``) in a ``DVCFileSystem.info`` entry; empty when it has none."""
    return str(info.get("md5") or (info.get("dvc_info") or {}).get("md5") or "")
