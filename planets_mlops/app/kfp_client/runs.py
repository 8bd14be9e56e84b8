"""Experiments and runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import kfp


def ensure_experiment(client: kfp.Client, name: str, namespace: str | None) -> str:
    """Get-or-create an experiment; returns its ID.

    ``kfp.Client.create_experiment`` looks the name up, then creates it; when another
    caller created it in between, the server refuses the duplicate name (409) and the
    experiment that caller made is the one to use.
    """
    import kfp_server_api

    try:
        experiment = client.create_experiment(name=name, namespace=namespace)
    except kfp_server_api.ApiException as exc:
        if exc.status != 409:
            raise
        experiment = client.get_experiment(experiment_name=name, namespace=namespace)
    return str(experiment.experiment_id)
