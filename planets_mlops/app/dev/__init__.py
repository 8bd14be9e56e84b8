"""Developer tools no image runs: local servers, demo traffic, free ports.

- :mod:`.serve_local`: ``bentoml serve`` a packaged bento on 127.0.0.1 and classify files.
- :mod:`.traffic`: demo production traffic (benign and shifted images) for the monitoring loop.
- :mod:`.labelstudio_server`: start/stop a local Label Studio server (tests and the demo).
- :mod:`.mlflow_server`: start/stop a local MLflow tracking server (tests and the quickstart).
- :mod:`.imagechanges`: benign and hostile changes of raw images, for measuring the guard.
- :mod:`.net`: free ports and process-group shutdown for those servers.

The step logic never imports these (``tests/support/layers.py``: app is the top layer).
"""
