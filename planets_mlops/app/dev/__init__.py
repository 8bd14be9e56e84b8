"""Developer tools no image runs: local servers, demo traffic, test data, free ports.

The tests (tests/support/) and the benchmarks (benchmarks/) share these.

- :mod:`.serve_local`: ``bentoml serve`` a packaged bento on 127.0.0.1 and classify files.
- :mod:`.traffic`: demo production traffic (benign and shifted images) for the monitoring loop.
- :mod:`.labelstudio_server`: start/stop a local Label Studio server (tests and the demo).
- :mod:`.mlflow_server`: start/stop a local MLflow tracking server (tests and the quickstart).
- :mod:`.imagechanges`: benign and hostile changes of raw images, for measuring the guard.
- :mod:`.gcs_emulator`: start/stop fake-gcs-server, and the environment the Google clients need.
- :mod:`.sample_data`: the bundled data set of a checkout, or a few classes of it.
- :mod:`.hostile_images`: huge, 16-bit, corrupt and odd image files (tests, bench_hostile).
- :mod:`.net`: free ports and process-group shutdown for those servers.

The step logic never imports these (``tests/support/layers.py``: app is the top layer).
"""
