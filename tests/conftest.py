"""Session-wide test settings and the fixtures that start real servers.

The environment below must be set before gcsfs, google.auth or google.cloud.storage are
imported anywhere: without it gcsfs probes a gRPC API over TLS on the emulator's port
and google.auth probes the GCE metadata server, and DVC operations hang for minutes.
"""

import os

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
]
