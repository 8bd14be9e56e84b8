"""pull_data logic against real git + DVC repositories and real remotes.

The local-folder remote and the gs:// remote (fake-gcs-server on 127.0.0.1) are real: the
repository is cloned by DVC with an empty cache, so every byte comes from the remote.
"""

import shutil

import pytest

from planets_mlops.data_source import data_version
from planets_mlops.datarepo import commit_data, create_data_repo, git
from planets_mlops.errors import DataSourceError
from planets_mlops.pull import check_endpoint, is_local_remote, pull_dataset
from tests.support.fixtures.data import copy_subset


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_pull_at_tag_reads_the_remote(data_repo, small_raw, tmp_path):
    result = pull_dataset(data_repo["url"], "v1", "data/raw", tmp_path / "out")
    assert _files(tmp_path / "out") == _files(small_raw)
    for path in (tmp_path / "out").rglob("*.jpg"):
        assert path.read_bytes() == (small_raw / path.relative_to(tmp_path / "out")).read_bytes()
    meta = result.metadata()
    assert meta["commit"] == data_repo["commit"]
    assert meta["num_files"] == 60 and meta["class_counts"] == {"Earth": 20, "Jupiter": 20, "Moon": 20}
    assert meta["dvc_hash"].endswith(".dir")
    dvc_file = (data_repo["repo"] / "data" / "raw.dvc").read_text()
    assert meta["dvc_hash"] in dvc_file


def test_a_local_remote_is_copied_file_by_file_and_a_chosen_link_type_is_kept(
    data_repo, small_raw, tmp_path, monkeypatch
):
    """From a remote folder DVC's link step is skipped: one reflink tried per file, not two.

    ``system.reflink`` is DVC's own, wrapped to count its calls (it still runs). DVC links
    each file with the remote's link types (reflink, then copy) and its copy tries a reflink
    again: ext4 refuses both, and they cost a third of the bundled data set's pull. With the
    link types set to copy, only the copy's own try is left. A caller who names link types
    in ``remote_config`` gets them.
    """
    from dvc_objects.fs import system

    tries = []
    real = system.reflink

    def counted(source, destination):
        tries.append(source)
        return real(source, destination)

    monkeypatch.setattr(system, "reflink", counted)
    pull_dataset(data_repo["url"], "v1", "data/raw", tmp_path / "out")
    assert len(tries) == 60
    assert _files(tmp_path / "out") == _files(small_raw)
    for path in (tmp_path / "out").rglob("*.jpg"):
        assert path.read_bytes() == (small_raw / path.relative_to(tmp_path / "out")).read_bytes()

    tries.clear()
    chosen = pull_dataset(
        data_repo["url"], "v1", "data/raw", tmp_path / "chosen", remote_config={"type": ["reflink", "copy"]}
    )
    assert len(tries) == 120 and chosen.num_files == 60
    assert _files(tmp_path / "chosen") == _files(small_raw)


def test_a_pull_leaves_no_state_of_its_clone_behind(data_repo, tmp_path, monkeypatch):
    """DVC keeps a state folder per repository path; each pull's clone is new, so it is removed.

    ``DVC_SITE_CACHE_DIR`` (DVC's own setting) points DVC's machine-wide folder at this test's.
    """
    site = tmp_path / "dvc-site"
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(site))
    for attempt in range(2):
        result = pull_dataset(data_repo["url"], "v1", "data/raw", tmp_path / f"out{attempt}")
        assert result.num_files == 60
        assert (site / "repo").is_dir() and list((site / "repo").iterdir()) == []
    assert data_version(data_repo["url"], "v1", "data/raw")[0] == data_repo["commit"]
    assert list((site / "repo").iterdir()) == []


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("/srv/dvc-remote", True),
        ("../dvc-remote", True),
        ("file:///srv/dvc-remote", True),
        ("gs://bucket/dvc", False),
        ("s3://bucket/dvc", False),
        ("remote://storage/sub", False),
        ("", False),
    ],
)
def test_is_local_remote(url, local):
    assert is_local_remote(url) is local


def test_revision_selects_the_data_version(tmp_path):
    raw = copy_subset(tmp_path / "raw", per_class=5)
    repo = tmp_path / "repo"
    first = create_data_repo(raw, repo, str(tmp_path / "remote"))
    shutil.copytree(raw / "Moon", repo / "data" / "raw" / "Mars")
    second = commit_data(repo, "data/raw", "Add Mars")
    git(repo, "branch", "more-data")
    assert first != second
    old = pull_dataset(str(repo), first, "data/raw", tmp_path / "old")
    new = pull_dataset(str(repo), "more-data", "data/raw", tmp_path / "new")
    assert old.commit == first and sorted(old.class_counts) == ["Earth", "Jupiter", "Moon"]
    assert new.commit == second and new.class_counts["Mars"] == 5
    assert old.dvc_hash != new.dvc_hash


def test_unknown_revision(data_repo, tmp_path):
    with pytest.raises(
        DataSourceError, match=r"Unknown git revision data_rev='no-such-tag'.*branch, tag or commit"
    ):
        pull_dataset(data_repo["url"], "no-such-tag", "data/raw", tmp_path / "out")


def test_untracked_path(data_repo, tmp_path):
    with pytest.raises(DataSourceError, match=r"data_path='data/nothing'"):
        pull_dataset(data_repo["url"], "v1", "data/nothing", tmp_path / "out")


def test_unknown_remote_names_the_remote_and_lists_the_configured_ones(data_repo, tmp_path):
    with pytest.raises(
        DataSourceError,
        match=r"dvc_remote='no-such-remote' is not a DVC remote of .* configured remotes are \['storage'\]",
    ):
        pull_dataset(data_repo["url"], "v1", "data/raw", tmp_path / "out", remote="no-such-remote")
    assert not (tmp_path / "out").exists()


def test_missing_repository(tmp_path):
    with pytest.raises(DataSourceError, match="not found.*data_repo_url"):
        pull_dataset(str(tmp_path / "missing"), "main", "data/raw", tmp_path / "out")


def test_unreachable_remote(tmp_path):
    raw = copy_subset(tmp_path / "raw", per_class=2)
    remote = tmp_path / "remote"
    create_data_repo(raw, tmp_path / "repo", str(remote))
    shutil.rmtree(remote)
    with pytest.raises(DataSourceError, match=r"Cannot download data_path='data/raw'.*remote is reachable"):
        pull_dataset(str(tmp_path / "repo"), "main", "data/raw", tmp_path / "out")


def test_an_endpoint_that_refuses_connections_is_a_remote_error_at_once():
    # gcsfs would retry a refused connection with backoff for about a minute (the servers
    # tier checks the whole pull against a closed port: tests/servers/test_pull_gcs.py).
    import socket

    from planets_mlops.app.dev.net import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(
        DataSourceError, match=rf"data_path='data/raw'.*endpointurl='{closed}'.*remote is reachable"
    ):
        check_endpoint({"endpointurl": closed}, "repo", "data/raw")
    with pytest.raises(DataSourceError, match=r"endpointurl='http://127.0.0.1:99999'"):
        check_endpoint({"endpointurl": "http://127.0.0.1:99999"}, "repo", "data/raw")
    with socket.create_server(("127.0.0.1", 0)) as listening:  # accepts: nothing to say
        check_endpoint({"endpointurl": f"http://127.0.0.1:{listening.getsockname()[1]}"}, "repo", "data/raw")
    check_endpoint({"url": "gs://bucket/store"}, "repo", "data/raw")  # no endpoint: Google's own


def test_data_commits_need_no_global_git_identity(tmp_path, monkeypatch):
    # `make setup` leaves the user's git config alone, so commits into data repositories
    # must carry their own identity: run them with an empty HOME and no system config.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    raw = copy_subset(tmp_path / "raw", per_class=2)
    repo = tmp_path / "repo"
    commit = create_data_repo(raw, repo, str(tmp_path / "remote"), tag="v1")
    assert git(repo, "log", "-1", "--format=%an <%ae>", commit) == "planets-mlops <planets-mlops@localhost>"
    assert not (home / ".gitconfig").exists() and not (home / ".config" / "git").exists()
