"""A task's process ends as soon as its outputs are written (planets_mlops.task_exit).

The real thing: ``python -m kfp.dsl.executor_main`` runs a component module that imports
``planets_mlops.components`` as every component module does, which arms the quick exit; an
``atexit`` handler registered before it (as a module imported earlier would) marks whether
the interpreter's teardown ran.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from planets_mlops.task_exit import end_when_written, executor_output_file

COMPONENT = """
import atexit, os
from pathlib import Path
from kfp import dsl
from kfp.dsl import Artifact, Output

atexit.register(lambda: Path(os.environ["TEARDOWN_MARK"]).write_text("teardown ran"))

# As every component module of the suite does: importing the package arms the quick exit.
from planets_mlops.components.images import RUNTIME_IMAGE  # noqa: E402


@dsl.component(base_image=RUNTIME_IMAGE)
def write_it(out: Output[Artifact], fail: bool = False):
    if fail:
        raise ValueError("asked to fail")
    Path(out.path).write_text("written")
    out.metadata["n"] = 1
"""


def _run(tmp_path: Path, fail: bool) -> tuple[subprocess.CompletedProcess, Path]:
    module = tmp_path / "component.py"
    module.write_text(COMPONENT)
    executor_input = {
        "inputs": {"parameterValues": {"fail": fail}},
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
    command = [sys.executable, "-m", "kfp.dsl.executor_main", "--component_module_path", str(module)]
    command += ["--function_to_execute", "write_it", "--executor_input", json.dumps(executor_input)]
    env = {**os.environ, "TEARDOWN_MARK": str(tmp_path / "teardown")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    return done, tmp_path / "teardown"


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
