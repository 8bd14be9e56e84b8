"""KFP component: DVC-pull a data set folder from a git repository at a revision."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from planets_mlops.components.images import RUNTIME_IMAGE
from planets_mlops.knobs import DataParams, describe_knobs


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
@describe_knobs(DataParams)
def pull_data(
    dataset: Output[Dataset],
    repo_url: str,
    rev: str = "main",
    path: str = "data/raw",
    remote: str = "",
    remote_config: dict = {},
):
    """Pull ``path`` of the git + DVC repository ``repo_url`` at ``rev`` from its DVC remote.

    GCS credentials come from the environment (Workload Identity or
    GOOGLE_APPLICATION_CREDENTIALS). ``remote_config`` adds DVC remote settings such as
    ``{"endpointurl": ...}``; never put secrets in it (it is stored in the run).

    Args:
        repo_url: Git URL of the data repository (https or ssh).
        remote_config: DVC remote settings added to the remote (no secrets: it is stored in the run).

    Returns:
        dataset: The pulled class-per-folder data set; metadata names the repository, commit and DVC hash.
    """
    from planets_mlops.components.task_exit import end_when_written

    end_when_written()  # once the outputs are written, the process ends without teardown
    from planets_mlops.pull import pull_dataset

    result = pull_dataset(repo_url, rev, path, dataset.path, remote=remote, remote_config=remote_config)
    dataset.metadata.update(result.metadata())
