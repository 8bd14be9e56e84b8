"""Recurring runs: they cannot be edited, only replaced."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from planets_mlops.app.kfp_client.connection import list_all

if TYPE_CHECKING:
    import kfp


def replace_recurring_runs(client: kfp.Client, experiment_id: str, job_name: str, keep_id: str) -> list[str]:
    """Disable then delete every recurring run named ``job_name`` except ``keep_id``.

    Only the experiment ``experiment_id`` is searched.

    Returns:
        IDs of the recurring runs removed.
    """
    name_filter = json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": job_name}]}
    )
    runs = list_all(
        lambda **kw: client.list_recurring_runs(experiment_id=experiment_id, filter=name_filter, **kw),
        "recurring_runs",
    )
    removed = []
    for run in runs:
        # The filter is advisory here: older servers ignore it, so check the name too.
        if run.display_name != job_name or run.recurring_run_id == keep_id:
            continue
        client.disable_recurring_run(run.recurring_run_id)
        client.delete_recurring_run(run.recurring_run_id)
        removed.append(run.recurring_run_id)
    return removed
