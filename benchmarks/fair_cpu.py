"""A CPU cgroup that gives a Podman container the weight of the processes it runs.

Podman puts a whole container in one cgroup (``libpod_parent``) that weighs as much as one
process of the machine, while the same work started as host processes (``bentoml serve``'s
workers, kfp.local's subprocess tasks) weighs one process each. On a shared machine the
container then gets less of the CPU than the same work outside it: 2 serving workers got
~0.65 of a core in their container against ~0.95 under ``bentoml serve`` (per-worker CPU
measured side by side, load average 5), which no code of the container explains. The
benchmarks that compare a container with host processes run the container under the
parent made here, so that both sides have the same share. Needs root (``/sys/fs/cgroup``);
on an idle machine it changes nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def fair_cpu_parent(name: str, processes: int) -> str | None:
    """A CPU cgroup ``/<name>`` whose weight is that of ``processes`` busy processes.

    cgroup v1 ``cpu.shares`` 1024 per process, or v2 ``cpu.weight`` 100 per process.

    Returns:
        The cgroup's path, for ``podman run --cgroup-parent`` (or the Docker API's
        ``cgroup_parent``); None where none can be made (a warning says why): the container
        then weighs as one process.
    """
    v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")
    controllers = v2 / "cgroup.subtree_control"
    found: tuple[Path, str, int] | None = None
    if (v1 / "cpu.shares").is_file():
        found = (v1 / name, "cpu.shares", 1024 * processes)
    elif controllers.is_file() and "cpu" in controllers.read_text().split():
        found = (v2 / name, "cpu.weight", 100 * processes)
    if found is None:
        log.warning("No cgroup v1 or v2 CPU controller found: the container weighs as one process")
        return None
    folder, knob, value = found
    try:
        folder.mkdir(exist_ok=True)
        (folder / knob).write_text(str(value))
    except OSError as exc:
        log.warning("No CPU cgroup for the container (%s): it weighs as one process", exc)
        return None
    return "/" + name
