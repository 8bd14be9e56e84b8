"""pull_data logic against real git + DVC repositories and real remotes.

The servers-tier tests of test_pull (the rest: tests/pure/test_pull.py).
"""

import pytest

from planets_mlops.datarepo import create_data_repo
from planets_mlops.errors import DataSourceError
from planets_mlops.pull import pull_dataset
from tests.pure.test_pull import _files
from tests.support.fixtures.data import copy_subset
from tests.support.fixtures.gcs import dvc_remote_config


def test_gcs_remote_through_emulator(gcs_emulator, tmp_path):
    """dvc-gs against fake-gcs-server: push when building the repo, pull in pull_dataset."""
    bucket = gcs_emulator.make_bucket("planets-dvc")
    raw = copy_subset(tmp_path / "raw", per_class=4)
    config = dvc_remote_config(gcs_emulator.url)
    commit = create_data_repo(raw, tmp_path / "repo", f"{bucket}/store", remote_config=config)
    # config.local (endpoint, anonymous login) is not cloned: pass it as the pipeline would.
    result = pull_dataset(str(tmp_path / "repo"), "main", "data/raw", tmp_path / "out", remote_config=config)
    assert result.commit == commit and result.num_files == 12
    assert _files(tmp_path / "out") == _files(raw)


def test_gcs_remote_without_credentials(gcs_emulator, tmp_path, monkeypatch):
    """No endpoint override and no credentials: real GCS would need them; the error says how."""
    raw = copy_subset(tmp_path / "raw", per_class=1)
    bucket = gcs_emulator.make_bucket("planets-nocreds")
    create_data_repo(
        raw, tmp_path / "repo", f"{bucket}/store", remote_config=dvc_remote_config(gcs_emulator.url)
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    with pytest.raises(DataSourceError, match="credentials|GOOGLE_APPLICATION_CREDENTIALS"):
        pull_dataset(
            str(tmp_path / "repo"),
            "main",
            "data/raw",
            tmp_path / "out",
            remote_config={"endpointurl": gcs_emulator.url},
        )


def test_a_gcs_remote_with_a_bad_configuration_is_a_remote_error_not_an_untracked_path(
    gcs_emulator, tmp_path, monkeypatch
):
    """Issue 26, weak point: a class folder inside the tracked folder exists only once the
    folder's listing is read from the remote, so a gs:// remote that could not be read (a
    bad endpoint, no credentials) was reported as "data_path ... is not tracked"."""
    from planets_mlops.app.dev.net import free_port

    raw = copy_subset(tmp_path / "raw", per_class=1)
    bucket = gcs_emulator.make_bucket("planets-badconfig")
    config = dvc_remote_config(gcs_emulator.url)
    create_data_repo(raw, tmp_path / "repo", f"{bucket}/store", remote_config=config)
    repo, inside = str(tmp_path / "repo"), f"data/raw/{sorted(p.name for p in raw.iterdir())[0]}"
    closed = {"endpointurl": f"http://127.0.0.1:{free_port()}", "allow_anonymous_login": True}
    with pytest.raises(DataSourceError, match=r"Cannot download data_path=.*remote is reachable"):
        pull_dataset(repo, "main", inside, tmp_path / "out", remote_config=closed)
    with pytest.raises(DataSourceError, match="is not tracked"):  # a readable remote: truly untracked
        pull_dataset(repo, "main", "data/raw/NoSuchClass", tmp_path / "out", remote_config=config)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    with pytest.raises(DataSourceError, match="credentials"):
        pull_dataset(repo, "main", inside, tmp_path / "out", remote_config={"endpointurl": gcs_emulator.url})
