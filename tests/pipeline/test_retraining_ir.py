"""The ``retraining`` pipeline: compiled IR, and whole runs under kfp.local against a real Label Studio
server and a real git + DVC data repository (3 classes x 20 images, tiny model).

The pipeline-tier tests of test_retraining (the rest: tests/servers/test_retraining.py).
"""

from __future__ import annotations

from planets_mlops.pipelines.platform import GpuOptions
from planets_mlops.pipelines.retraining import LABEL_STUDIO_SECRET, build_retraining, retraining
from tests.support.helpers import compile_ir


def compiled(tmp_path, pipeline=retraining):
    return compile_ir(pipeline, tmp_path / "retraining.yaml")


def test_ir_secret_caching_and_gates(tmp_path):
    spec, platform = compiled(tmp_path)
    assert spec["pipelineInfo"]["name"] == "retraining"
    tasks = spec["root"]["dag"]["tasks"]
    assert {"pull-data", "import-labels", "check-new-labels", "condition-1"} <= set(tasks)
    for name in ("pull-data", "import-labels", "check-new-labels"):
        assert tasks[name]["cachingOptions"].get("enableCache") in (None, False), name
    assert tasks["condition-1"]["triggerPolicy"]["condition"].endswith("== true")
    inner = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert {"prepare-dataset", "train-model", "evaluate-model", "condition-2"} <= set(inner)
    assert "package-model" in spec["components"]["comp-condition-2"]["dag"]["tasks"]
    (push,) = [
        c["dag"]["tasks"]["push-predictions"]
        for c in spec["components"].values()
        if "push-predictions" in c.get("dag", {}).get("tasks", {})
    ]
    assert push["cachingOptions"].get("enableCache") in (None, False)
    for executor in ("exec-import-labels", "exec-push-predictions"):
        secret = platform["deploymentSpec"]["executors"][executor]["secretAsEnv"]
        assert {s["secretName"] for s in secret} == {LABEL_STUDIO_SECRET}
        assert {(k["secretKey"], k["envVar"]) for s in secret for k in s["keyToEnv"]} == {
            ("LABEL_STUDIO_URL", "LABEL_STUDIO_URL"),
            ("LABEL_STUDIO_API_KEY", "LABEL_STUDIO_API_KEY"),
        }
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["min_new_labels"]["defaultValue"] == 1 and inputs["publish_labels"]["defaultValue"] is False


def test_ir_cpu_only_build_has_no_gpu(tmp_path):
    spec, _ = compiled(tmp_path, build_retraining(GpuOptions(count=0)))
    executor = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    assert "accelerator" not in executor.get("resources", {})
