"""``planets-mlops serve``: a bento served here with the image's settings and command line.

A real ``bentoml serve`` started by the CLI in a subprocess (as a person types it), asked over
HTTP, then stopped; and the sources it accepts resolved to the archive.
"""

import os
import signal
import subprocess
import sys
import time
from argparse import Namespace

import httpx
import pytest

from planets_mlops.app import cli
from planets_mlops.app.cli.serve import bento_of
from planets_mlops.app.dev.net import free_port
from planets_mlops.errors import NotFoundError

EXTRA = "data/planets/extra"


def wait_ready(url, process, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout} s")


def test_serve_answers_predictions_and_stops(packaged_bento, tmp_path):
    from pathlib import Path

    port = free_port()
    env = {**os.environ, "PLANETS_WORKERS": "1", "NO_PROXY": "127.0.0.1"}
    command = [sys.executable, "-m", "planets_mlops.app.cli", "serve", str(packaged_bento["archive"])]
    command += ["--port", str(port), "--bentoml-home", str(tmp_path / "home")]
    log = tmp_path / "serve.log"
    with log.open("w") as out:  # a file, not a pipe: nobody reads a pipe while it serves
        process = subprocess.Popen(
            command, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        image = sorted(Path(EXTRA).iterdir())[0]
        with image.open("rb") as handle:
            answer = httpx.post(f"{url}/predict", files={"image": handle}, timeout=30, trust_env=False)
        assert answer.status_code == 200
        assert set(answer.json()["probabilities"]) == {"Earth", "Jupiter", "Moon"}
        assert httpx.get(f"{url}/metadata", timeout=10, trust_env=False).json()["data_revision"] == "0123abcd"
        # The API page documents what the service takes: a multipart form with an image file.
        spec = httpx.get(f"{url}/docs.json", timeout=10, trust_env=False).json()
        body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
        assert list(body) == ["multipart/form-data"]
        assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
        batch = spec["paths"]["/predict_batch"]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert batch["schema"]["properties"]["image"]["type"] == "array"
        assert "/metrics" not in spec["paths"]  # PLANETS_METRICS is off: /metrics answers 404
        assert httpx.get(f"{url}/metrics", timeout=10, trust_env=False).status_code == 404
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    assert "serving planets_classifier:" in log.read_text()


def test_sources_resolve_to_the_archive(packaged_bento, tmp_path):
    archive = packaged_bento["archive"]
    args = Namespace(tracking_uri=None, model=None)
    assert bento_of(str(archive), args, tmp_path) == archive
    assert bento_of(archive.as_uri(), args, tmp_path) == archive
    run = tmp_path / "training-run" / "package-model"
    run.mkdir(parents=True)
    (run / "bento").write_bytes(archive.read_bytes())
    assert bento_of(str(tmp_path / "training-run"), args, tmp_path) == run / "bento"
    with pytest.raises(NotFoundError, match="without package-model/bento"):
        bento_of(str(tmp_path), args, tmp_path)


def test_bad_sources_and_settings_are_refused_before_serving(capsys, tmp_path, monkeypatch):
    assert cli.main(["serve", str(tmp_path / "nope.bento")]) == 4
    assert "No bento at" in capsys.readouterr().err
    assert cli.main(["serve", "models:/planets-classifier"]) == 2
    monkeypatch.setenv("PLANETS_WORKERS", "zero")
    assert cli.main(["serve", str(tmp_path / "nope.bento")]) == 2
    assert "PLANETS_WORKERS" in capsys.readouterr().err


def test_the_serving_docs_curl_examples_run_as_written(bento_server):
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "serving.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("curl ") and "127.0.0.1:3000" in line]
    assert len(lines) == 3
    for line in lines:
        # Only the port differs: the session's server listens on a free one.
        command = line.replace("http://127.0.0.1:3000", bento_server.url) + " --fail --silent --show-error"
        done = subprocess.run(
            ["bash", "-c", command], cwd=root, capture_output=True, text=True, timeout=60,
            env={**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"},
        )  # fmt: skip
        assert done.returncode == 0, (line, done.stderr)
        answer = json.loads(done.stdout)
        assert "probabilities" in answer or len(answer["predictions"]) == 2, answer


def test_models_uri_serves_the_bento_the_alias_names(mlflow_client, model_name, packaged_bento, tmp_path):
    from planets_mlops.registry import registry as reg
    from tests.servers.test_registry import new_version

    version = new_version(mlflow_client, model_name, tmp_path, "a", "kfp-a")
    archive = packaged_bento["archive"]
    mlflow_client.set_model_version_tag(model_name, version, "planets.bento_uri", str(archive))
    reg.move_alias(mlflow_client, model_name, "production", version, expected=None, why="test")
    args = Namespace(tracking_uri=None, model=None)
    assert bento_of(f"models:/{model_name}@production", args, tmp_path) == archive
    with pytest.raises(NotFoundError, match="has the alias 'staging'"):
        bento_of(f"models:/{model_name}@staging", args, tmp_path)
