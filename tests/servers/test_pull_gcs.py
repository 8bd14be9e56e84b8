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
