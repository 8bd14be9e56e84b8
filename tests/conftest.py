"""Session-wide test settings and the fixtures that start real servers.

The environment below must be set before gcsfs, google.auth or google.cloud.storage are
imported anywhere: without it gcsfs probes a gRPC API over TLS on the emulator's port
and google.auth probes the GCE metadata server, and DVC operations hang for minutes.
"""

import os
import sys
from pathlib import Path

# Bytecode: where the shell sets PYTHONDONTWRITEBYTECODE (this machine does) and the venv
# holds no .pyc, every process (the test run, each kfp.local task, each server) compiled
# TensorFlow, KFP and the rest from source: 11 of the 15 CPU seconds of `import tensorflow`.
# Compiled once into build/pycache (PEP 3147 prefix, outside the source tree, removed by
# `make clean`) and reused by this process and every subprocess it starts.
os.environ["PYTHONPYCACHEPREFIX"] = os.environ.get("PYTHONPYCACHEPREFIX") or str(
    Path(__file__).resolve().parents[1] / "build" / "pycache"
)
os.environ["PYTHONDONTWRITEBYTECODE"] = ""
sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"]
sys.dont_write_bytecode = False

import pytest  # noqa: E402

from planets_mlops.app.dev.gcs_emulator import use_emulator_environment  # noqa: E402

use_emulator_environment()  # the same settings the benchmarks use
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

pytest_plugins = [
    "tests.support.fixtures.data",
    "tests.support.fixtures.gcs",
    "tests.support.fixtures.serving",
    "tests.support.fixtures.labelstudio",
    "tests.support.fixtures.mlflow",
    "tests.support.fixtures.monitoring",
]

# ----------------------------------------------------------------------------- test tiers
# A test's tier is the folder it lives in (tests/<tier>/test_*.py), and nothing else: no
# markers in the files, no guessing from fixtures. tests/support/ holds what they share.
TIERS = ("pure", "component", "pipeline", "servers", "install", "containers")
# Fixtures that start a real server: a test using one belongs in a tier that may wait for it.
SERVER_FIXTURES = {
    "gcs_emulator", "label_studio", "ls_client", "ls_env", "ls_project", "label_studio_project",
    "bento_server", "served", "mlflow_server", "mlflow_env", "mlflow_client",
}  # fmt: skip
FAST_TIERS = ("pure", "component")


def tier_of(path) -> str:
    """The tier of a test file: the name of its folder under tests/."""
    from pathlib import Path

    relative = Path(path).resolve().relative_to(Path(__file__).resolve().parent)
    if len(relative.parts) != 2 or relative.parts[0] not in TIERS:
        raise ValueError(f"{path}: a test file lives in tests/<tier>/, one of {', '.join(TIERS)}")
    return relative.parts[0]


def pytest_collection_modifyitems(config, items):
    """Give every test the tier of its folder; refuse a server fixture in a fast tier.

    An xdist worker of a loadfile run also orders the files (:func:`slowest_files_first`).
    """
    for item in items:
        tier = tier_of(item.path)
        if any(m.name in TIERS for m in item.iter_markers()):
            raise pytest.UsageError(f"{item.nodeid}: remove the tier marker; its folder gives the tier")
        servers = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        if tier in FAST_TIERS and servers:
            raise pytest.UsageError(
                f"{item.nodeid} uses {sorted(servers)} (a real server): move it to tests/servers/"
            )
        item.add_marker(getattr(pytest.mark, tier))
    durations = getattr(config, "workerinput", {}).get(DURATIONS_KEY)
    if durations is not None:
        slowest_files_first(items, durations)


# ------------------------------------------------------- make test-fast: slowest files first
# Under `-n 2 --dist loadfile` a file's tests run on one worker, and xdist hands files out
# in order of their number of tests: the few slow files with few tests (a model trained per
# test, an Evidently run per case) came last, and one worker ran on alone for 10-20 s while
# the other sat idle. Each run keeps its tests' durations in pytest's cache (.pytest_cache,
# removed by `make clean`); the next loadfile run hands the slowest files out first
# (longest-processing-time first), so both workers finish together. Without a cache (a
# clean clone) each tier's typical cost stands in for the durations. Only the order
# changes: every test runs, a file's tests in their usual order.
DURATIONS_KEY = "planets/test-seconds"
# A test no run has timed yet (a clean clone: CI): its tier's typical cost. In the fast
# tiers 1 s, well above their usual, so a new file goes early; a whole pipeline, a container
# run, a server test take seconds to minutes, so a clean clone's heavy files start first too.
UNTIMED_TEST_SECONDS = {"pipeline": 20.0, "containers": 20.0, "install": 5.0, "servers": 3.0}
UNTIMED_FAST_TEST_SECONDS = 1.0
_measured: dict[str, float] | None = None  # the controller's durations of this run
_DURATIONS = pytest.StashKey[dict[str, float]]()  # the last runs' durations, read once


def pytest_configure(config):
    """Controller (or a run without xdist): read the last durations, record this run's."""
    global _measured
    if hasattr(config, "workerinput") or getattr(config, "cache", None) is None:
        return
    _measured = {}
    config.stash[_DURATIONS] = dict(config.cache.get(DURATIONS_KEY, {}))
    if getattr(config.option, "dist", "no") == "loadfile":
        config.option.loadscopereorder = False  # the workers' collection order is the queue


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which may be absent
def pytest_configure_node(node):
    """xdist controller: send each worker the durations that order its collection."""
    if getattr(node.config.option, "dist", "no") == "loadfile":
        node.workerinput[DURATIONS_KEY] = node.config.stash.get(_DURATIONS, {})


# The files whose tests import TensorFlow themselves (3.5-4 CPU s per process, whichever
# test comes first): a loadfile run hands them to one worker together, so the other never
# imports it. A file missing here only costs that import twice. (Tests that only read
# tiny_model's folder need no TensorFlow: the model is built once per run.)
TENSORFLOW_FILES = frozenset({
    "tests/component/test_train_evaluate.py",
    "tests/component/test_components.py",
    "tests/component/test_accelerators_training.py",
    "tests/pure/test_preprocess.py",
})  # fmt: skip


# Tests that are a work unit of their own, away from the rest of their file: the container
# tier runs alone at the end of `make ci` (scripts/ci_tests.sh) and is one file, so without
# this one worker ran all of it (~3 min) while the other sat idle. The retraining run (Label
# Studio, two pipelines in containers) is about half of it.
OWN_UNIT_TESTS = frozenset({
    "tests/containers/test_containers.py::test_retraining_pipeline_in_its_images",
})  # fmt: skip


def work_unit(nodeid: str) -> str:
    """What a loadfile worker takes at once: its file, all of TENSORFLOW_FILES or an OWN_UNIT_TESTS test."""
    if nodeid in OWN_UNIT_TESTS:
        return nodeid
    file = nodeid.split("::", 1)[0]
    return "tensorflow" if file in TENSORFLOW_FILES else file


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist controller, loadfile: one work unit per file, TENSORFLOW_FILES in one."""
    if getattr(config.option, "dist", "no") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LoadFileTensorFlowTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return LoadFileTensorFlowTogether(config, log)


def slowest_files_first(items, durations: dict[str, float]) -> None:
    """Sort ``items`` by their work unit's total duration, slowest first, each file's tests kept in order."""
    totals: dict[str, float] = {}
    for item in items:
        unit = work_unit(item.nodeid)
        seconds = durations.get(item.nodeid)
        if seconds is None:
            seconds = UNTIMED_TEST_SECONDS.get(tier_of(item.path), UNTIMED_FAST_TEST_SECONDS)
        totals[unit] = totals.get(unit, 0.0) + seconds
    items.sort(key=lambda item: -totals[work_unit(item.nodeid)])


def pytest_runtest_logreport(report):
    """Controller: add up each test's setup, call and teardown seconds."""
    if _measured is not None:
        _measured[report.nodeid] = _measured.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    """Controller: keep this run's durations (and the others' of files that still exist)."""
    if not _measured:
        return
    root = session.config.rootpath
    kept = {
        nodeid: seconds
        for nodeid, seconds in session.config.stash.get(_DURATIONS, {}).items()
        if (root / nodeid.split("::", 1)[0]).is_file()
    }
    kept.update({nodeid: round(seconds, 3) for nodeid, seconds in _measured.items()})
    session.config.cache.set(DURATIONS_KEY, kept)
