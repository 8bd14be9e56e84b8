"""``--caching``: what a run may reuse, applied to the pipeline spec itself.

The compiled spec already says which tasks may cache: every task, except those compiled
with caching off because they read or change the outside world (pulling a data revision
that moves, importing or checking labels, pushing predictions, deploying). Those never
cache, whatever the flag says.

- ``--caching on``: the compiled settings, unchanged.
- ``--caching off``: no task caches, at any level (tasks inside conditions too, which
  ``kfp.Client``'s own ``enable_caching`` does not reach).

``kfp.Client``'s ``enable_caching`` is never used: it turns caching on for the side-effect
steps as well, and is silently ignored for uploaded versions and recurring runs. So
``--caching off`` submits a spec rewritten here; for an uploaded version or a schedule
that spec is uploaded (once) as version ``<version>-caching-off`` and referenced.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from planets_mlops.app.params import load_ir_documents
from planets_mlops.monitoring.trigger import CACHING_OFF_SUFFIX as OFF_SUFFIX


def container_tasks(spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every task that runs a container, at any level (root and sub-DAGs)."""
    components = spec.get("components") or {}
    dags = [spec.get("root", {}).get("dag", {})]
    dags += [c["dag"] for c in components.values() if "dag" in c]
    for dag in dags:
        for task in (dag.get("tasks") or {}).values():
            if "dag" not in components.get(task.get("componentRef", {}).get("name", ""), {}):
                yield task


def without_cache(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the pipeline spec ``spec`` in which no task, at any level, caches."""
    out = copy.deepcopy(dict(spec))
    for task in container_tasks(out):
        task["cachingOptions"] = {**(task.get("cachingOptions") or {}), "enableCache": False}
    return out


def package_documents(stored: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The YAML documents of a package from a stored version's ``pipeline_spec``.

    A stored spec is the pipeline spec itself, or wraps ``pipeline_spec`` and
    ``platform_spec`` (kfp-kubernetes settings), which must travel with it.
    """
    if "root" in stored:
        return [dict(stored)]
    docs = [dict(stored["pipeline_spec"])]
    if stored.get("platform_spec"):
        docs.append(dict(stored["platform_spec"]))
    return docs


def write_without_cache(documents: list[dict[str, Any]], path: Path) -> Path:
    """Write ``documents`` as a package at ``path``, the pipeline spec without caching."""
    docs = [without_cache(documents[0]), *documents[1:]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def package_without_cache(package: Path, out_dir: Path) -> Path:
    """``out_dir/<name>-caching-off.yaml``: a compiled ``package`` with nothing cached."""
    docs = load_ir_documents(package.read_text())
    return write_without_cache(docs, out_dir / (package.stem + OFF_SUFFIX + ".yaml"))
