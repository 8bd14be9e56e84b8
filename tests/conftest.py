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
    """Give every test the tier of its folder; refuse a server fixture in a fast tier."""
    import pytest

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
