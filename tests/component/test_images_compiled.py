"""Image names and Dockerfiles: tags from the source digest, bases as digest-pinned build arguments, no
registry stage, non-root users, the GPU driver path (no engine needed).

The component-tier tests of test_images (the rest: tests/pure/test_images.py).
"""

import yaml

from planets_mlops.components.images import ALL_IMAGES


def test_compiled_pipelines_name_exactly_the_built_images(tmp_path):
    from kfp import compiler

    from planets_mlops.pipelines.retraining import retraining
    from planets_mlops.pipelines.training import training

    named = set()
    for pipeline in (training, retraining):
        path = tmp_path / "p.yaml"
        compiler.Compiler().compile(pipeline, str(path))
        spec = next(yaml.safe_load_all(path.read_text()))
        named |= {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert named == {ALL_IMAGES["runtime"], ALL_IMAGES["train-gpu"]}
