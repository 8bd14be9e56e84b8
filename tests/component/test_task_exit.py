"""A task's process ends as soon as its outputs are written (planets_mlops.components.task_exit).

The real thing: a component's own container command (``sh -c`` writing the function's source
to a file and running ``python -m kfp.dsl.executor_main`` on it, as kfp.local and a cluster
run it) with an executor input naming a local output. The component registers an ``atexit``
handler before it arms the quick exit, so the handler marks whether the interpreter's
teardown ran.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kfp import dsl
from kfp.dsl import Artifact, Output

from planets_mlops.components.task_exit import end_when_written, executor_output_file


@dsl.component
def write_it(out: Output[Artifact], mark: str, fail: bool = False):
    import atexit
    from pathlib import Path

    from planets_mlops.components.task_exit import end_when_written

    atexit.register(lambda: Path(mark).write_text("teardown ran"))
    end_when_written()
    if fail:
        raise ValueError("asked to fail")
    Path(out.path).write_text("written")
    out.metadata["n"] = 1


def _run(tmp_path: Path, fail: bool) -> tuple[subprocess.CompletedProcess, Path]:
    mark = tmp_path / "teardown"
    executor_input = {
        "inputs": {"parameterValues": {"fail": fail, "mark": str(mark)}},
        "outputs": {
            "artifacts": {
                "out": {
                    "artifacts": [
                        {
                            "name": "out",
                            "type": {"schemaTitle": "system.Artifact"},
                            "uri": str(tmp_path / "out"),
                        }
                    ]
                }
            },
            "outputFile": str(tmp_path / "executor_output.json"),
        },
    }
    container = write_it.component_spec.implementation.container
    command = [part.replace("python3", sys.executable) for part in container.command[:-1]]
    command += [container.command[-1]]  # the function's source, as kfp.local leaves it
    args = [json.dumps(executor_input) if arg == "{{$}}" else arg for arg in container.args]
    done = subprocess.run(command + args, capture_output=True, text=True, env=dict(os.environ), timeout=300)
    return done, mark


def test_a_task_that_wrote_its_outputs_ends_without_teardown_and_with_every_output(tmp_path):
    done, teardown = _run(tmp_path, fail=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "out").read_text() == "written"
    output = json.loads((tmp_path / "executor_output.json").read_text())
    assert output["artifacts"]["out"]["artifacts"][0]["metadata"] == {"n": 1}
    # The executor's last log line was flushed before the process ended.
    assert "Wrote executor output file" in done.stdout
    assert not teardown.exists()


def test_a_task_that_failed_exits_as_python_does(tmp_path):
    done, teardown = _run(tmp_path, fail=True)
    assert done.returncode == 1
    assert "ValueError: asked to fail" in done.stdout + done.stderr
    assert not (tmp_path / "executor_output.json").exists()
    assert teardown.read_text() == "teardown ran"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["x", "--executor_input", json.dumps({"outputs": {"outputFile": "/o/e.json"}})], Path("/o/e.json")),
        (["--executor_input=" + json.dumps({"outputs": {"outputFile": "/o/e.json"}})], Path("/o/e.json")),
        (["--executor_input", json.dumps({"outputs": {}})], None),
        (["--executor_input", "not json"], None),
        (["--executor_input"], None),
        (["pytest", "-q"], None),
    ],
)
def test_the_output_file_is_read_off_the_executor_arguments(argv, expected):
    assert executor_output_file(argv) == expected


def test_outside_an_executor_nothing_is_armed():
    assert end_when_written(["pytest", "-q"]) is False


@pytest.mark.parametrize("name", ["pull_data", "prepare_dataset", "train_model", "evaluate_model"])
def test_the_heavy_components_arm_it_in_the_source_kfp_runs(name):
    import importlib

    component = getattr(importlib.import_module(f"planets_mlops.components.{name}"), name)
    source = component.component_spec.implementation.container.command[-1]
    assert "end_when_written()" in source
