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

os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
os.environ["NO_GCE_CHECK"] = "true"
os.environ["GCE_METADATA_HOST"] = "127.0.0.1:9"
os.environ["GCE_METADATA_IP"] = "127.0.0.1:9"
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

pytest_plugins = [
    "tests.fixtures.data",
    "tests.fixtures.gcs",
    "tests.fixtures.serving",
    "tests.fixtures.labelstudio",
    "tests.fixtures.mlflow",
]

# ----------------------------------------------------------------------------- test tiers
# Each test gets exactly one tier marker (see [tool.pytest.ini_options] markers): an explicit
# one wins; otherwise the fixtures it uses decide (a real server -> servers), then its file.
TIERS = ("pure", "component", "pipeline", "servers", "install", "containers")
SERVER_FIXTURES = {
    "gcs_emulator", "label_studio", "ls_client", "ls_env", "ls_project", "label_studio_project",
    "bento_server", "served", "mlflow_server", "mlflow_env", "mlflow_client",
}  # fmt: skip
FILE_TIERS = {
    "test_components.py": "component",
    "test_compile.py": "component",
    "test_argo_retries.py": "component",
    "test_package.py": "component",
    "test_deploy_component.py": "component",
    "test_cli.py": "component",
    "test_params_example.py": "component",
    "test_train_evaluate.py": "component",
    "test_parity.py": "component",
    "test_pipeline_local.py": "pipeline",
    "test_retraining.py": "pipeline",
    "test_monitoring_pipeline.py": "pipeline",
    "test_reference_results.py": "pipeline",
    "test_quickstart.py": "pipeline",
}


def pytest_collection_modifyitems(config, items):
    """Give every test without an explicit tier marker its tier."""
    import pytest

    for item in items:
        if any(m.name in TIERS for m in item.iter_markers()):
            continue
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            tier = "servers"
        else:
            tier = FILE_TIERS.get(item.path.name, "pure")
        item.add_marker(getattr(pytest.mark, tier))
