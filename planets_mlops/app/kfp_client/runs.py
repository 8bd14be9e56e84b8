"""Experiments and runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import kfp


def ensure_experiment(client: kfp.Client, name: str, namespace: str | None) -> str:
    """Get-or-create an experiment; returns its ID."""
    experiment = client.create_experiment(name=name, namespace=namespace)
    return str(experiment.experiment_id)
