"""The example params files at the repository root work with the documented commands.

``params.yaml`` is the suite's defaults (a run with it trains what a run without it and the
quickstart train); ``params.reference.yaml`` is the reference experiment. The README and
docs/kubeflow.md run ``planets-mlops run training --params-file params.yaml`` and
``planets-mlops schedule retraining --params-file params.yaml``. These tests run the
real CLI on the project's own pipelines (compiled for real) with that file. The Kubeflow
Pipelines API cannot run here, so it is the fake HTTP server of ``tests/fake_kfp_api``;
everything before the request (params loader, compile, name, type and value checks) is
the CLI's own.
"""

from pathlib import Path

import pytest
import yaml

from planets_mlops.app import cli
from planets_mlops.app.params import load_params_file
from planets_mlops.knobs import PIPELINE_KNOBS, PRESETS, defaults
from tests.support.fake_kfp_api import FakeKfpState, serve_fake_kfp
from tests.support.helpers import load_ir

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "params.yaml"
REFERENCE_PARAMS = ROOT / "params.reference.yaml"
TOKEN = "example-params-token"

# The reference experiment (the guide's chapter 2.5 settings), as the pipeline receives it.
REFERENCE = {
    "prepare_seed": 5241,
    "prepare_split": 0.2,
    "prepare_image_size": 32,
    "prepare_grayscale": True,
    "train_seed": 5241,
    "train_lr": 0.001,
    "train_epochs": 10,
    "train_conv_size": 64,
    "train_dense_size": 128,
    "train_batch_size": 32,
    "train_output_classes": 10,
    "train_augment": "none",
    "train_lr_schedule": "constant",
    "data_rev": "main",
    "data_path": "data/raw",
    "min_improvement": 0.0,
    "gate_alpha": 0.05,
}
REQUIRED = {
    "data_repo_url": "https://github.com/acme/planets-data.git",
    "label_studio_project": "7",
}


@pytest.fixture
def fake(monkeypatch, tmp_path):
    for var in ("KFP_NAMESPACE", "KFP_COOKIES", "KFP_VERIFY_SSL", "KFP_CA_BUNDLE", "KF_PIPELINES_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    with serve_fake_kfp(FakeKfpState(token=TOKEN)) as (url, state):
        monkeypatch.setenv("KFP_HOST", url)
        monkeypatch.setenv("KFP_TOKEN", TOKEN)
        monkeypatch.setenv("KFP_TIMEOUT", "5")
        yield state


def test_params_yaml_is_the_defaults():
    doc = yaml.safe_load(PARAMS.read_text())
    assert set(doc) >= {"prepare", "train", "data"}
    flat = load_params_file(PARAMS)
    for name, value in flat.items():
        cls, field = PIPELINE_KNOBS[name]
        assert value == defaults(cls)[field], (
            f"params.yaml sets {name}={value!r} but the default ({cls.__name__}.{field}) is "
            f"{defaults(cls)[field]!r}: params.yaml must train what a run without it trains"
        )
    # Every knob of the guide's sections that the training pipeline takes is spelt out.
    spelt = {k for k in REFERENCE if k.startswith(("prepare_", "train_"))} | {"train_guard_coverage"}
    assert spelt <= set(flat)


def test_example_params_has_the_guide_shape_and_the_reference_preset():
    doc = yaml.safe_load(REFERENCE_PARAMS.read_text())
    assert set(doc) >= {"prepare", "train", "data"}
    assert doc["prepare"]["image_size"] == [32, 32]
    flat = load_params_file(REFERENCE_PARAMS)
    # The file is the reference experiment: every value of the `reference` preset, as is.
    assert {k: flat[k] for k in PRESETS["reference"]} == PRESETS["reference"]
    assert {k: v for k, v in REFERENCE.items() if k in PRESETS["reference"]} == PRESETS["reference"]


@pytest.mark.parametrize("file", [PARAMS, REFERENCE_PARAMS], ids=["params", "reference"])
@pytest.mark.parametrize("pipeline", ["training", "retraining"])
def test_documented_run_accepts_the_example_params(capsys, fake, tmp_path, pipeline, file):
    source = cli.pipeline_source()
    if pipeline not in source.pipelines:
        pytest.skip(f"pipelines.PIPELINES has no {pipeline!r}")
    code = cli.main(
        [
            "run",
            pipeline,
            "--params-file",
            str(file),
            "--param",
            f"data_repo_url={REQUIRED['data_repo_url']}",
            *(
                ["--param", f"label_studio_project={REQUIRED['label_studio_project']}"]
                if pipeline == "retraining"
                else []
            ),
            "--out-dir",
            str(tmp_path / "build"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    (post,) = fake.calls("POST", "/runs")
    sent = post.body["runtime_config"]["parameters"]
    spec = load_ir(tmp_path / "build" / "pipelines" / f"{pipeline}.yaml")[0]
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    values = REFERENCE if file == REFERENCE_PARAMS else load_params_file(PARAMS)
    expected = {k: v for k, v in {**values, **REQUIRED}.items() if k in inputs}
    assert sent == expected
    # Every prepare_/train_ value of the file reached the pipeline (none was dropped).
    assert {k for k in REFERENCE if k.startswith(("prepare_", "train_"))} <= set(sent)
    assert "run_id=run-" in out


def test_a_typo_in_the_example_params_is_refused_before_any_request(capsys, fake, tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text(PARAMS.read_text().replace("  lr: 0.001", "  lr: 0"))
    code = cli.main(
        ["run", "training", "--params-file", str(bad), "--param", "data_repo_url=https://x/y.git"]
    )
    _, err = capsys.readouterr()
    assert code == 2
    assert "train_lr" in err
    assert not fake.calls("POST", "/runs")
