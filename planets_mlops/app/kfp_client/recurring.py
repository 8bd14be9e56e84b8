"""Recurring runs: they cannot be edited, only replaced.

Replacing is create-then-delete-older. Two ``schedule`` calls for one job name may run at
the same time, and each sees some of the other's work; so every caller keeps the newest
recurring run it sees (by creation time, then ID) and deletes only older ones. All callers
agree on that order, so the newest one is never deleted and exactly one survives.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from planets_mlops.app.kfp_client.connection import list_all

if TYPE_CHECKING:
    import kfp


@dataclass(frozen=True)
class Replacement:
    """What :func:`replace_recurring_runs` did.

    Attributes:
        kept: ID of the recurring run that stays (the newest one named ``job_name``).
        removed: IDs of the recurring runs this call disabled and deleted, ``own``
            included when a newer one was created meanwhile.
        own: ID of the recurring run this caller created.
    """

    kept: str
    removed: list[str]
    own: str

    @property
    def superseded(self) -> bool:
        """True when another caller's newer recurring run won over ``own``."""
        return self.kept != self.own


def _order_key(run: Any) -> tuple[dt.datetime, str]:
    created = run.created_at or dt.datetime.min.replace(tzinfo=dt.UTC)
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    return created, str(run.recurring_run_id)


def recurring_runs_named(client: kfp.Client, experiment_id: str, job_name: str) -> list[Any]:
    """Every recurring run named ``job_name`` in the experiment, oldest first."""
    name_filter = json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": job_name}]}
    )
    runs = list_all(
        lambda **kw: client.list_recurring_runs(experiment_id=experiment_id, filter=name_filter, **kw),
        "recurring_runs",
    )
    # The filter is advisory here: older servers ignore it, so check the name too.
    return sorted((r for r in runs if r.display_name == job_name), key=_order_key)


def replace_recurring_runs(client: kfp.Client, experiment_id: str, job_name: str, own_id: str) -> Replacement:
    """Keep the newest recurring run named ``job_name``; disable and delete the others.

    ``own_id`` (just created by the caller) is kept unless a newer one exists, which only
    happens when another ``schedule`` of the same job ran at the same time. Only the
    experiment ``experiment_id`` is searched.

    Returns:
        Which run was kept and which were removed.
    """
    import kfp_server_api

    runs = recurring_runs_named(client, experiment_id, job_name)
    kept = runs[-1].recurring_run_id if runs else own_id
    removed = []
    for run in runs[:-1]:
        try:
            client.disable_recurring_run(run.recurring_run_id)
            client.delete_recurring_run(run.recurring_run_id)
        except kfp_server_api.ApiException as exc:
            if exc.status != 404:
                raise
            # A concurrent call of the same job deleted it first: the outcome is the same.
        else:
            removed.append(run.recurring_run_id)
    return Replacement(kept=kept, removed=removed, own=own_id)
