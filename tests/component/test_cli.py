"""The ``planets-mlops`` CLI.

``compile`` is real (kfp's compiler, YAML read back). ``upload``/``run``/``schedule``/
``status`` talk to a KFP API, which cannot run here: they are tested against the FAKE
v2beta1 REST API in ``tests/support/fake_kfp_api.py`` (a real HTTP server on 127.0.0.1), with
the real ``kfp.Client`` in between, asserting on the exact requests.
"""

# No `from __future__ import annotations`: kfp reads the component annotations.
import json
import os
import socket
import subprocess
import sys
import threading

import pytest
import yaml
from kfp import components, dsl

from planets_mlops import __version__
from planets_mlops.app import cli
from planets_mlops.app.cli import versions
from planets_mlops.app.dev.net import free_port
from planets_mlops.app.kfp_client import ConnectionSettings, validate_cron
from planets_mlops.components.images import RUNTIME_IMAGE
from planets_mlops.errors import InvalidParameterError
from tests.support.fake_kfp_api import FakeKfpState, serve_fake_kfp
from tests.support.helpers import load_ir

TOKEN = "s3cr3t-token-value"


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def add_numbers(a: int, b: float) -> float:
    return a + b


@dsl.pipeline(name="tiny")
def tiny(
    prepare_seed: int = 5241,
    train_lr: float = 0.001,
    data_rev: str = "main",
    prepare_grayscale: bool = True,
    prepare_image_size: int = 32,
):
    first = add_numbers(a=prepare_seed, b=train_lr)
    first.set_caching_options(False)  # a compile-time decision `run` must not undo
    add_numbers(a=prepare_image_size, b=first.output)


SOURCE = cli.PipelineSource({"tiny": tiny})

PARAMS_YAML = """\
prepare: {seed: 7, image_size: [48, 48], grayscale: false}
train: {lr: 0.01}
"""


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv), source_factory=lambda: SOURCE)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def commit(monkeypatch):
    """Pin the git commit used in version names (the checkout moves under the tests)."""
    state: dict = {"commit": "abc1234", "dirty": False}
    monkeypatch.setattr(versions, "git_short_commit", lambda cwd=None: (state["commit"], state["dirty"]))
    return state


@pytest.fixture
def fake(monkeypatch, tmp_path, commit):
    for var in ("KFP_NAMESPACE", "KFP_COOKIES", "KFP_VERIFY_SSL", "KFP_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    with serve_fake_kfp(FakeKfpState(token=TOKEN)) as (url, state):
        monkeypatch.setenv("KFP_HOST", url)
        monkeypatch.setenv("KFP_TOKEN", TOKEN)
        monkeypatch.setenv("KFP_TIMEOUT", "5")
        yield state


def compiled_spec(tmp_path) -> dict:
    return load_ir(tmp_path / "build" / "pipelines" / "tiny.yaml")[0]


# ------------------------------------------------------------------------- compile


def test_compile_writes_ir_yaml_that_reads_back(capsys, tmp_path):
    code, out, err = run_cli(capsys, "compile", "--out-dir", str(tmp_path / "b"))
    assert code == 0, err
    path = tmp_path / "b" / "pipelines" / "tiny.yaml"
    assert str(path) in out
    spec = yaml.safe_load(path.read_text())
    assert spec["pipelineInfo"]["name"] == "tiny"
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["prepare_seed"]["parameterType"] == "NUMBER_INTEGER"
    assert inputs["train_lr"]["defaultValue"] == 0.001
    assert "compiled pipeline tiny" in err


def test_compile_lists_the_images_the_ir_names_and_says_to_push_them(capsys, tmp_path):
    code, out, err = run_cli(
        capsys, "compile", "--out-dir", str(tmp_path / "b"), "--no-components", "-o", "json"
    )
    assert code == 0, err
    assert json.loads(out)["images"] == [RUNTIME_IMAGE]
    assert "the compiled pipelines name 1 image(s); build and push them before running on a cluster" in err
    assert f"  {RUNTIME_IMAGE}" in err and "ImagePullBackOff" in err


def test_compile_names_the_serving_image_of_a_pipeline_that_deploys(tmp_path):
    from planets_mlops.app.cli.compile_ import named_images
    from planets_mlops.components.images import SERVING_IMAGE, TRAINING_GPU_IMAGE
    from planets_mlops.pipelines.compile import compile_pipeline

    images = named_images([compile_pipeline("training", tmp_path)])
    assert images == sorted({RUNTIME_IMAGE, TRAINING_GPU_IMAGE, SERVING_IMAGE})


def test_compile_unknown_pipeline_is_not_found(capsys, tmp_path):
    code, _, err = run_cli(capsys, "compile", "nope", "--out-dir", str(tmp_path))
    assert code == 4
    assert "Unknown pipeline 'nope'" in err and "['tiny']" in err
    assert not (tmp_path / "pipelines").exists()


def test_components_are_discovered_and_published(tmp_path, monkeypatch):
    pkg = tmp_path / "fakecomps"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "steps.py").write_text(
        "from kfp import dsl\n"
        "@dsl.component(base_image='python:3.11-slim', install_kfp_package=False)\n"
        "def score_model(x: int) -> int:\n    return x\n"
        "NOT_A_COMPONENT = 3\n"
    )
    (pkg / "reexport.py").write_text("from fakecomps.steps import score_model\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    paths = cli.compile_components(tmp_path / "out", package="fakecomps")
    assert paths == [tmp_path / "out" / "score_model.yaml"]
    loaded = components.load_component_from_file(str(paths[0]))
    assert loaded.name == "score-model"
    for mod in ("fakecomps", "fakecomps.steps", "fakecomps.reexport"):
        sys.modules.pop(mod, None)


def test_project_components_package_compiles(tmp_path):
    # Whatever components/ holds today must compile (none is fine).
    for path in cli.compile_components(tmp_path, package="planets_mlops.components"):
        assert yaml.safe_load(path.read_text())["pipelineInfo"]["name"]


# -------------------------------------------------------------------------- upload


def test_upload_creates_pipeline_then_version_and_is_idempotent(capsys, fake):
    code, out, err = run_cli(capsys, "upload")
    assert code == 0, err
    version = f"{__version__}-abc1234"
    (create,) = fake.calls("POST", "/pipelines")
    assert create.body["display_name"] == "planets-tiny"
    assert create.body["description"].endswith("[created by planets-mlops]")
    (upload,) = fake.calls("POST", "/pipelines/upload_version")
    assert upload.query["name"] == version
    assert upload.query["pipelineid"] == "pipeline-1"
    assert yaml.safe_load(upload.body["uploadfile"])["pipelineInfo"]["name"] == "tiny"
    assert f"planets-tiny\t{version}\tpipeline_id=pipeline-1\tversion_id=version-2" in out

    code, _, err = run_cli(capsys, "upload", "tiny")
    assert code == 0 and "already uploaded" in err
    assert len(fake.calls("POST", "/pipelines/upload_version")) == 1
    assert len(fake.calls("POST", "/pipelines")) == 1


def test_upload_adds_a_version_to_an_existing_pipeline(capsys, fake, commit):
    assert run_cli(capsys, "upload")[0] == 0
    commit["commit"] = "def5678"
    assert run_cli(capsys, "upload")[0] == 0
    names = [c.query["name"] for c in fake.calls("POST", "/pipelines/upload_version")]
    assert names == [f"{__version__}-abc1234", f"{__version__}-def5678"]
    assert len(fake.calls("POST", "/pipelines")) == 1


def test_upload_refuses_a_pipeline_of_that_name_it_did_not_create(capsys, fake):
    # Another team's pipeline on a shared KFP: same name, no suite marker in its description.
    fake.pipelines["theirs"] = {
        "pipeline_id": "theirs",
        "display_name": "planets-tiny",
        "description": "ours",
    }
    code, _, err = run_cli(capsys, "upload")
    assert code == 1
    assert "Pipeline 'planets-tiny' (theirs) on the cluster was not created by planets-mlops" in err
    assert "--pipeline-prefix" in err and "PLANETS_PIPELINE_PREFIX" in err
    assert not fake.calls("POST", "/pipelines/upload_version") and not fake.calls("POST", "/pipelines")

    # The fix the message names: another prefix makes (and then reuses) the suite's own pipeline.
    assert run_cli(capsys, "upload", "--pipeline-prefix", "team-a-")[0] == 0
    assert run_cli(capsys, "upload", "--pipeline-prefix", "team-a-", "--version-name", "v2")[0] == 0
    (create,) = fake.calls("POST", "/pipelines")
    assert create.body["display_name"] == "team-a-tiny"
    assert {c.query["pipelineid"] for c in fake.calls("POST", "/pipelines/upload_version")} == {"pipeline-1"}


def test_pipeline_prefix_comes_from_the_environment_and_is_checked(capsys, fake, monkeypatch):
    monkeypatch.setenv("PLANETS_PIPELINE_PREFIX", "")
    assert run_cli(capsys, "upload")[0] == 0
    assert fake.calls("POST", "/pipelines")[0].body["display_name"] == "tiny"  # the bare name
    code, _, err = run_cli(capsys, "upload", "--pipeline-prefix", "Team A/")
    assert code == 2 and "Invalid --pipeline-prefix='Team A/'" in err
    assert len(fake.calls("POST", "/pipelines")) == 1


def test_schedule_monitoring_starts_the_retraining_pipeline_of_its_prefix(capsys, fake):
    argv = ["schedule", "monitoring", "--cron", "0 0 * * * *", "--pipeline-prefix", "team-a-"]
    argv += ["--param", "records_uri=r", "--param", "model_uri=m", "--param", "model_version=v"]
    code, _, err = cli.main(argv), *capsys.readouterr()
    assert code == 0, err
    (post,) = fake.calls("POST", "/recurringruns")
    assert post.body["runtime_config"]["parameters"]["retraining_pipeline"] == "team-a-retraining"
    assert [p["display_name"] for p in fake.pipelines.values()] == ["team-a-monitoring"]


# ----------------------------------------------------------------------------- run


def test_run_sends_params_root_and_service_account_and_keeps_caching(capsys, fake, tmp_path):
    (tmp_path / "params.yaml").write_text(PARAMS_YAML)
    code, out, err = run_cli(
        capsys,
        "run",
        "tiny",
        "--params-file",
        "params.yaml",
        "--param",
        "data_rev=v2",
        "--param",
        "train_lr=0.5",
        "--pipeline-root",
        "gs://planets-artifacts/kfp/",
        "--service-account",
        "pipeline-runner",
        "--experiment",
        "nightly",
        "--run-name",
        "r1",
    )
    assert code == 0, err
    (post,) = fake.calls("POST", "/runs")
    body = post.body
    assert body["display_name"] == "r1"
    assert body["service_account"] == "pipeline-runner"
    assert body["runtime_config"] == {
        "pipeline_root": "gs://planets-artifacts/kfp",
        "parameters": {
            "prepare_seed": 7,
            "prepare_image_size": 48,
            "prepare_grayscale": False,
            "train_lr": 0.5,
            "data_rev": "v2",
        },
    }
    assert fake.calls("POST", "/experiments")[0].body["display_name"] == "nightly"
    assert body["experiment_id"] == "experiment-1"
    # No enable_caching unless asked: the submitted spec is the compiled one, unchanged.
    assert body["pipeline_spec"] == compiled_spec(tmp_path)
    assert "run_id=run-" in out
    assert TOKEN not in out + err
    assert post.headers["authorization"] == f"Bearer {TOKEN}"


def _caching_of(spec: dict) -> dict[str, bool]:
    from planets_mlops.app.cli.caching import container_tasks
    from planets_mlops.app.kfp_client import spec_of

    spec = spec_of(spec)  # a spec with platform settings comes wrapped
    return {
        t["componentRef"]["name"]: bool(t.get("cachingOptions", {}).get("enableCache"))
        for t in container_tasks(spec)
    }


def test_caching_on_keeps_compiled_no_cache_decisions(capsys, fake, tmp_path):
    assert run_cli(capsys, "run", "tiny", "--caching", "on")[0] == 0
    body = fake.calls("POST", "/runs")[0].body
    assert body["pipeline_spec"] == compiled_spec(tmp_path)
    assert sorted(_caching_of(body["pipeline_spec"]).values()) == [False, True]


SIDE_EFFECT_STEPS = {
    "comp-pull-data",
    "comp-import-labels",
    "comp-check-new-labels",
    "comp-push-predictions",
    "comp-create-inbox-tasks",
    "comp-deploy-model",
    "comp-evaluate-model",
    "comp-register-model",
    "comp-promote-model",
}


@pytest.mark.parametrize("pipeline", ["training", "retraining"])
def test_caching_on_never_caches_steps_with_outside_effects(capsys, fake, pipeline):
    # kfp.Client(enable_caching=True) used to switch these on (data_rev=main reusing stale data).
    params = ["--param", "data_repo_url=https://example.com/data.git"]
    if pipeline == "retraining":
        params += ["--param", "label_studio_project=planets"]
    code = cli.main(["run", pipeline, *params, "--caching", "on"], source_factory=cli.pipeline_source)
    assert code == 0, capsys.readouterr().err
    cached = _caching_of(fake.calls("POST", "/runs")[0].body["pipeline_spec"])
    assert {n for n, on in cached.items() if not on} == SIDE_EFFECT_STEPS & set(cached)
    assert "comp-pull-data" in cached and cached["comp-train-model"] is True


def test_caching_off_reaches_tasks_inside_conditions(capsys, fake):
    params = ["--param", "data_repo_url=https://example.com/data.git", "--param", "label_studio_project=p"]
    code = cli.main(["run", "retraining", *params, "--caching", "off"], source_factory=cli.pipeline_source)
    assert code == 0, capsys.readouterr().err
    body = fake.calls("POST", "/runs")[0].body
    assert body["pipeline_spec"]["platform_spec"]  # the GPU and secret settings travel along
    spec = body["pipeline_spec"]["pipeline_spec"]
    root_tasks = {t["componentRef"]["name"] for t in spec["root"]["dag"]["tasks"].values()}
    assert "comp-train-model" not in root_tasks  # it sits inside a condition
    cached = _caching_of(spec)
    assert len(cached) >= 8 and not any(cached.values())


def test_caching_off_with_an_uploaded_version_uploads_an_uncached_one_once(capsys, fake):
    assert run_cli(capsys, "upload")[0] == 0
    version = f"{__version__}-abc1234"
    for _ in range(2):
        code, _, err = run_cli(capsys, "run", "tiny", "--version", version, "--caching", "off")
        assert code == 0, err
    uploads = fake.calls("POST", "/pipelines/upload_version")
    assert [u.query["name"] for u in uploads] == [version, f"{version}-caching-off"]
    assert not any(_caching_of(yaml.safe_load(uploads[1].body["uploadfile"])).values())
    refs = [r.body["pipeline_version_reference"]["pipeline_version_id"] for r in fake.calls("POST", "/runs")]
    assert len(set(refs)) == 1
    assert fake.versions[refs[0]]["display_name"] == f"{version}-caching-off"


@pytest.mark.parametrize("from_version", [False, True])
def test_schedule_honours_caching_off(capsys, fake, from_version):
    version = f"{__version__}-abc1234"
    extra = []
    if from_version:
        assert run_cli(capsys, "upload")[0] == 0
        extra = ["--version", version]
    code, _, err = run_cli(capsys, "schedule", "tiny", "--cron", "0 0 3 * * *", "--caching", "off", *extra)
    assert code == 0, err
    (post,) = fake.calls("POST", "/recurringruns")
    assert "pipeline_spec" not in post.body
    stored = fake.versions[post.body["pipeline_version_reference"]["pipeline_version_id"]]
    assert stored["display_name"] == f"{version}-caching-off"
    assert not any(_caching_of(stored["pipeline_spec"]).values())


@pytest.mark.parametrize(
    ("states", "code", "final"),
    [
        (["PENDING", "RUNNING", "SUCCEEDED"], 0, "SUCCEEDED"),
        (["RUNNING", "FAILED"], 1, "FAILED"),
        (["RUNNING", "CANCELED"], 1, "CANCELED"),
    ],
)
def test_run_wait_exits_with_the_runs_outcome(capsys, fake, states, code, final):
    fake.run_states = list(states)
    got, out, err = run_cli(capsys, "run", "tiny", "--wait", "--poll-interval", "0.01")
    assert got == code, err
    assert out.splitlines()[-1] == f"state={final}"
    assert f": {final}" in err
    if final == "FAILED":
        assert "ended FAILED: train-model: exit code 1" in err


def _task(name, state, start=None, end=None, error=None):
    task = {"task_id": f"id-{name}", "display_name": name, "state": state}
    if start:
        task["start_time"] = f"2026-01-01T00:00:{start:02d}Z"
    if end:
        task["end_time"] = f"2026-01-01T00:00:{end:02d}Z"
    if error:
        task["error"] = {"code": 2, "message": error}
    return task


def test_run_wait_says_each_step_as_it_starts_and_ends(capsys, fake):
    fake.run_states = ["RUNNING", "RUNNING", "RUNNING", "FAILED"]
    root = _task("root", "RUNNING")
    fake.run_tasks = [
        [root, _task("root-driver", "SUCCEEDED"), _task("pull-data", "RUNNING", 1)],
        [root, _task("pull-data", "SUCCEEDED", 1, 5), _task("train-model", "RUNNING", 6)],
        [root, _task("pull-data", "SUCCEEDED", 1, 5), _task("train-model", "RUNNING", 6)],
        [
            _task("pull-data", "SUCCEEDED", 1, 5),
            _task("train-model", "FAILED", 6, 20, "exit code 1"),
            _task("evaluate-model", "SKIPPED"),
        ],
    ]
    code, _, err = run_cli(capsys, "run", "tiny", "--wait", "--poll-interval", "0.01")
    assert code == 1
    steps = [
        line.split("] ", 1)[1]
        for line in err.splitlines()
        if "] " in line and line.split("] ", 1)[1][:4] in ("  > ", "  + ", "  ! ")
    ]
    assert steps == [
        "  > pull-data started",
        "  + pull-data: SUCCEEDED in 4 s",
        "  > train-model started",
        "  ! train-model: FAILED in 14 s: exit code 1",
        "  + evaluate-model: SKIPPED",
    ]


def test_run_wait_gives_up_after_its_timeout(capsys, fake):
    fake.run_states = ["RUNNING"] * 1000
    code, _, err = run_cli(
        capsys, "run", "tiny", "--wait", "--wait-timeout", "0.2", "--poll-interval", "0.05"
    )
    assert code == 1 and "still RUNNING after --wait-timeout 0.2 s" in err


def test_missing_host_or_params_file_fails_before_compiling(capsys, fake, monkeypatch, tmp_path):
    code, _, err = run_cli(capsys, "run", "tiny", "--params-file", "nope.yaml")
    assert code == 4 and "nope.yaml" in err and "compiling" not in err
    monkeypatch.delenv("KFP_HOST")
    for command in (["run", "tiny"], ["schedule", "tiny", "--cron", "@daily"], ["upload"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 2 and "KFP_HOST" in err and "compiling" not in err, command
    assert not (tmp_path / "build").exists()
    assert fake.requests == []


def test_kf_pipelines_endpoint_and_token_file_are_honoured(capsys, fake, monkeypatch, tmp_path):
    # What a Kubeflow Notebook sets (the variables kfp.Client reads).
    fake_url = os.environ["KFP_HOST"]
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", fake_url)
    monkeypatch.delenv("KFP_HOST")
    monkeypatch.delenv("KFP_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    code, _, err = run_cli(capsys, "status")
    assert code == 0, err
    assert fake_url in err and fake.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "missing"))
    code, _, err = run_cli(capsys, "status")
    assert code == 2 and "KF_PIPELINES_SA_TOKEN_PATH" in err


def test_run_compiled_file_path(capsys, fake, tmp_path):
    assert run_cli(capsys, "compile", "--no-components")[0] == 0
    code, _, err = run_cli(capsys, "run", "build/pipelines/tiny.yaml")
    assert code == 0, err
    assert fake.calls("POST", "/runs")[0].body["display_name"].startswith("tiny-")


def test_run_uploaded_version_references_it(capsys, fake):
    assert run_cli(capsys, "upload")[0] == 0
    version = f"{__version__}-abc1234"
    code, _, err = run_cli(capsys, "run", "tiny", "--version", version, "--param", "prepare_seed=3")
    assert code == 0, err
    body = fake.calls("POST", "/runs")[0].body
    assert body["pipeline_version_reference"] == {
        "pipeline_id": "pipeline-1",
        "pipeline_version_id": "version-2",
    }
    assert "pipeline_spec" not in body
    assert body["runtime_config"]["parameters"] == {"prepare_seed": 3}


def test_run_unknown_version_is_not_found(capsys, fake):
    assert run_cli(capsys, "upload")[0] == 0
    code, _, err = run_cli(capsys, "run", "tiny", "--version", "9.9.9-0000000")
    assert code == 4
    assert "no version '9.9.9-0000000'" in err and "planets-mlops upload tiny" in err


def test_unknown_parameter_fails_before_any_request(capsys, fake):
    code, _, err = run_cli(capsys, "run", "tiny", "--param", "train_epochz=3")
    assert code == 2
    assert "train_epochz" in err and "'prepare_seed'" in err and "'train_lr'" in err
    assert fake.requests == []


def test_wrongly_typed_parameter_is_bad_input(capsys, fake):
    code, _, err = run_cli(capsys, "run", "tiny", "--param", "prepare_seed=abc")
    assert code == 2 and "prepare_seed" in err and "NUMBER_INTEGER" in err


def test_every_bad_argument_is_reported_at_once_before_any_request(capsys, fake):
    code, _, err = run_cli(
        capsys,
        "run",
        "tiny",
        "--param",
        "train_lr=-1",
        "--param",
        "prepare_seed=abc",
        "--param",
        "train_epochz=3",
        "--param",
        "data_rev=main",
    )
    assert code == 2
    assert "3 invalid arguments for pipeline 'tiny'" in err
    # The value rule is the training step's own (TrainParams), named as the user typed it.
    assert "Invalid train_lr=-1.0: must be a finite positive learning rate" in err
    assert "prepare_seed" in err and "NUMBER_INTEGER" in err
    assert "Invalid parameter='train_epochz'" in err and "'prepare_seed'" in err
    assert fake.requests == []


@pytest.mark.parametrize("value", ["0", ".nan", ".inf", "-.inf"])
def test_learning_rates_the_trainer_refuses_fail_locally(capsys, fake, value):
    code, _, err = run_cli(capsys, "run", "tiny", "--param", f"train_lr={value}")
    assert code == 2 and "Invalid train_lr=" in err
    assert fake.requests == []


def test_uploaded_version_arguments_are_value_checked_before_submitting(capsys, fake):
    assert run_cli(capsys, "upload")[0] == 0
    version = f"{__version__}-abc1234"
    code, _, err = run_cli(capsys, "run", "tiny", "--version", version, "--param", "train_lr=0")
    assert code == 2 and "Invalid train_lr=0.0" in err
    assert fake.calls("POST", "/runs") == []


def test_values_are_checked_with_the_steps_rules_on_the_real_pipeline(tmp_path):
    from planets_mlops.app import params as pp
    from planets_mlops.app.cli import arguments

    source = cli.pipeline_source()
    spec = pp.read_pipeline_spec(source.compile("training", tmp_path))
    values = {
        "data_repo_url": "https://example.com/data.git",
        "prepare_split": 1.5,
        "train_epochs": 0,
        "train_batch_size": 32,
        "serving_name": "Bad_Name",
        "min_improvement": 0.01,
    }
    with pytest.raises(arguments.ParameterErrors) as caught:
        arguments.validate(values, spec, "training")
    text = str(caught.value)
    assert text.startswith("3 invalid arguments for pipeline 'training':")
    assert "Invalid prepare_split=1.5: must be a fraction strictly between 0 and 1" in text
    assert "Invalid train_epochs=0: must be a positive integer" in text
    assert "Invalid serving_name='Bad_Name': must be a DNS-1035 label" in text
    assert [e.name for e in caught.value.errors] == ["prepare_split", "train_epochs", "serving_name"]
    good = {**values, "prepare_split": 0.3, "train_epochs": 2, "serving_name": "planets"}
    assert arguments.validate(good, spec, "training")["prepare_split"] == 0.3
    # The serving pods' record store is checked before submitting, like the deploy step checks it.
    with pytest.raises(InvalidParameterError, match="serving_monitoring_uri=./records.*gs://"):
        arguments.validate({**good, "serving_monitoring_uri": "/records"}, spec, "training")
    assert arguments.validate(
        {**good, "serving_monitoring_uri": "gs://planets-bucket/monitoring"}, spec, "training"
    )
    # So is the inbox the deploy step turns on.
    with pytest.raises(InvalidParameterError, match="serving_inbox_uri='inbox/'.*gs://"):
        arguments.validate({**good, "serving_inbox_uri": "inbox/"}, spec, "training")


def test_every_pipeline_input_has_its_value_rules_mapped(tmp_path):
    from planets_mlops.app import params as pp
    from planets_mlops.app.cli import arguments
    from planets_mlops.knobs import defaults

    source = cli.pipeline_source()
    for name in source.names:
        inputs = pp.pipeline_inputs(pp.read_pipeline_spec(source.compile(name, tmp_path)))
        unmapped = set(inputs) - set(arguments.PIPELINE_KNOBS) - arguments.NOT_KNOBS
        assert not unmapped, f"{name}: map these inputs to a knob in cli/arguments.py"
    for cls, field in arguments.PIPELINE_KNOBS.values():
        assert field in defaults(cls), (cls, field)


def test_unknown_pipeline_name_for_run(capsys, fake):
    code, _, err = run_cli(capsys, "run", "retraining")
    assert code == 4 and "Unknown pipeline 'retraining'" in err
    assert fake.requests == []


def test_bad_pipeline_root_is_bad_input(capsys, fake):
    code, _, err = run_cli(capsys, "run", "tiny", "--pipeline-root", "/tmp/x")
    assert code == 2 and "--pipeline-root" in err


# ------------------------------------------------------------------------ schedule


def test_schedule_uploads_and_creates_the_exact_recurring_run(capsys, fake):
    code, out, err = run_cli(
        capsys,
        "schedule",
        "tiny",
        "--cron",
        "0  0 3 * * MON-FRI",
        "--param",
        "data_rev=main",
        "--service-account",
        "sa",
        "--pipeline-root",
        "gs://planets-artifacts/kfp",
    )
    assert code == 0, err
    (post,) = fake.calls("POST", "/recurringruns")
    body = post.body
    assert body["display_name"] == "tiny-recurring"
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * MON-FRI"}}
    assert int(body["max_concurrency"]) == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["service_account"] == "sa"
    assert body["pipeline_version_reference"] == {
        "pipeline_id": "pipeline-1",
        "pipeline_version_id": "version-2",
    }
    assert body["runtime_config"] == {
        "pipeline_root": "gs://planets-artifacts/kfp",
        "parameters": {"data_rev": "main"},
    }
    assert "recurring_run_id=recurring-" in out


def test_schedule_replaces_older_versions_of_the_same_job(capsys, fake, commit):
    assert run_cli(capsys, "schedule", "tiny", "--cron", "0 0 3 * * *")[0] == 0
    assert (
        run_cli(
            capsys,
            "schedule",
            "tiny",
            "--cron",
            "0 0 4 * * *",
            "--job-name",
            "other-job",
        )[0]
        == 0
    )
    (old_id,) = [k for k, v in fake.recurring.items() if v["display_name"] == "tiny-recurring"]
    commit["commit"] = "fedcba9"
    code, out, err = run_cli(capsys, "schedule", "tiny", "--cron", "0 0 3 * * *")
    assert code == 0, err
    assert [c.path.rsplit("/", 1)[1] for c in fake.calls("POST", r"/recurringruns/.*")] == [
        f"{old_id}:disable"
    ]
    assert [c.path.rsplit("/", 1)[1] for c in fake.calls("DELETE", r"/recurringruns/.*")] == [old_id]
    names = sorted(v["display_name"] for v in fake.recurring.values())
    assert names == ["other-job", "tiny-recurring"]
    (current,) = [v for v in fake.recurring.values() if v["display_name"] == "tiny-recurring"]
    version = fake.versions[current["pipeline_version_reference"]["pipeline_version_id"]]
    assert version["display_name"] == f"{__version__}-fedcba9"
    assert f"removed_recurring_run_id={old_id}" in out


def _schedule_in_subprocess(version: str, cron: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "planets_mlops.app.cli", "schedule", "tiny", "--version", version]
    # A held listing must not hit the client's read timeout on a loaded machine.
    env = {**os.environ, "KFP_TIMEOUT": "90"}
    return subprocess.Popen(
        [*command, "--cron", cron], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_concurrent_schedules_leave_exactly_one(capsys, fake):
    # Two `schedule` processes of one job at once: both create, then both list (the fake
    # holds each listing until both recurring runs exist), then both replace.
    assert run_cli(capsys, "upload")[0] == 0
    version = f"{__version__}-abc1234"
    fake.hold_recurring_list_until = 2
    procs = [_schedule_in_subprocess(version, cron) for cron in ("0 0 3 * * *", "0 0 4 * * *")]
    results = [(p.wait(timeout=180), *p.communicate()) for p in procs]
    left = [k for k, v in fake.recurring.items() if v["display_name"] == "tiny-recurring"]
    assert len(left) == 1, (left, results)
    assert len(fake.calls("POST", "/recurringruns")) == 2
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    (winner,) = [out for code, out, _ in results if code == 0]
    assert f"recurring_run_id={left[0]}" in winner
    (loser,) = [err for code, _, err in results if code == 1]
    assert "ran at the same time" in loser and left[0] in loser


def test_replacing_interleaved_calls_keeps_the_newest(fake):
    # The race of two `schedule` calls, interleaved by hand: A creates, B creates, A
    # replaces, B replaces. Every caller keeps the same (newest) one.
    from planets_mlops.app import kfp_client as kc

    settings = ConnectionSettings.resolve()
    client = kc.connect(settings)
    eid = kc.ensure_experiment(client, "planets", None)
    fake.pipelines["p"] = {"pipeline_id": "p", "display_name": "p"}
    fake.versions["v"] = {"pipeline_id": "p", "pipeline_version_id": "v", "display_name": "v"}
    own = [
        client.create_recurring_run(
            experiment_id=eid, job_name="job", cron_expression="0 0 3 * * *", pipeline_id="p", version_id="v"
        ).recurring_run_id
        for _ in range(2)
    ]
    first, second = (kc.replace_recurring_runs(client, eid, "job", rid) for rid in own)
    assert list(fake.recurring) == [first.kept] and first.kept == second.kept
    assert [first.superseded, second.superseded].count(True) == 1


@pytest.mark.parametrize(
    "cron",
    [
        "0 3 * * *",
        "0 0 3 * * * *",
        "61 0 3 * * *",
        "0 0 24 * * *",
        "0 0 3 0 * *",
        "0 0 3 * 13 *",
        "0 0 3 * * 8",
        "0 0 5-3 * * *",
        "*/0 * * * * *",
        "0 ? * * * *",
        "@sometimes",
        "@every soon",
        "",
    ],
)
def test_malformed_cron_is_rejected_locally(cron):
    with pytest.raises(InvalidParameterError, match="--cron"):
        validate_cron(cron)


@pytest.mark.parametrize(
    "cron",
    [
        "0 0 3 * * *",
        "*/30 * * * * *",
        "0 15 2 1,15 * ?",
        "0 0 9 ? * MON-FRI",
        "0 0 0 1 JAN-jun/2 *",
        "@daily",
        "@every 6h30m",
    ],
)
def test_valid_cron_passes(cron):
    assert validate_cron(cron) == cron


def test_schedule_bad_cron_exits_2_without_requests(capsys, fake):
    code, _, err = run_cli(capsys, "schedule", "tiny", "--cron", "0 3 * * *")
    assert code == 2
    assert "6 space-separated fields" in err and "got 5" in err
    assert fake.requests == []


def test_a_recurring_monitoring_run_with_a_fixed_window_end_is_refused(capsys, fake):
    """Issue 26, weak point: every run of such a schedule would check the same past window."""
    code, _, err = run_cli(
        capsys,
        "schedule",
        "monitoring",
        "--cron",
        "0 0 * * * *",
        "--param",
        "window_end=2026-12-04T10:00:00Z",
    )
    assert code == 2
    assert "window_end" in err and "2026-12-04" in err and "planets-mlops run monitoring" in err
    assert fake.requests == []


# -------------------------------------------------------------------------- status


def test_status_lists_runs_with_state_and_metrics(capsys, fake):
    assert run_cli(capsys, "run", "tiny")[0] == 0
    (run_id,) = fake.runs
    fake.runs[run_id].update(
        {
            "state": "SUCCEEDED",
            "finished_at": "2026-11-23T10:05:30Z",
            "run_details": {
                "task_details": [
                    {"display_name": "prepare", "state": "SUCCEEDED"},
                    {"display_name": "train", "state": "SUCCEEDED"},
                ]
            },
            "plugins_output": {
                "mlflow": {
                    "entries": {"accuracy": {"value": 0.93}},
                    "state": "PLUGIN_SUCCEEDED",
                }
            },
        }
    )
    code, out, err = run_cli(capsys, "status", "--json")
    assert code == 0, err
    import json

    (row,) = json.loads(out)
    assert row["state"] == "SUCCEEDED" and row["duration_s"] == 330.0
    assert row["tasks"] == {"SUCCEEDED": 2}
    assert row["metrics"] == {"mlflow.accuracy": 0.93}

    code, out, _ = run_cli(capsys, "status", "--experiment", "planets")
    assert code == 0
    assert "SUCCEEDED" in out and "2 succeeded" in out and "mlflow.accuracy=0.93" in out


def test_status_unknown_experiment_is_not_found(capsys, fake):
    code, _, err = run_cli(capsys, "status", "--experiment", "nope")
    assert code == 4 and "'nope'" in err


# -------------------------------------------------- connection, auth, exit codes


def test_expired_token_exits_3_and_never_prints_it(capsys, fake, monkeypatch):
    monkeypatch.setenv("KFP_TOKEN", "expired-" + TOKEN)
    code, out, err = run_cli(capsys, "status", "-v")
    assert code == 3
    assert "HTTP 401" in err and "Refresh KFP_TOKEN" in err
    assert TOKEN not in out + err
    assert "token ***" in err


def test_token_expiring_mid_command_exits_3(capsys, fake):
    fake.reject_after = 2  # healthz twice (ours, kfp.Client's), then 401
    code, _, err = run_cli(capsys, "run", "tiny")
    assert code == 3
    assert "refused to submit a run of tiny (HTTP 401)" in err
    assert TOKEN not in err


COOKIE_VALUE = "c00kie-value-0123456789"


def test_verbose_output_never_prints_echoed_credentials(capsys, fake, monkeypatch):
    # The server quotes the request's Authorization and Cookie headers in its 401 body:
    # the error line, the -v traceback (chained ApiException) and the debug log of the
    # response body must all come out scrubbed.
    monkeypatch.setenv("KFP_COOKIES", f"authservice_session={COOKIE_VALUE}; theme=dark")
    fake.echo_credentials = True
    fake.reject_after = 2
    code, out, err = run_cli(capsys, "run", "tiny", "-v")
    assert code == 3, err
    echoed = fake.requests[-1].headers
    assert echoed["authorization"] == f"Bearer {TOKEN}" and COOKIE_VALUE in echoed["cookie"]
    assert "Traceback" in err and "ApiException" in err and "response body" in err
    assert "request had Authorization: Bearer ***" in err
    assert TOKEN not in out + err and COOKIE_VALUE not in out + err


def test_log_records_are_scrubbed_in_message_args_and_traceback():
    import argparse
    import logging

    from planets_mlops.app.cli.output import ScrubSecrets

    args = argparse.Namespace(token=TOKEN, cookies=f"session={COOKIE_VALUE}")
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "sent %s", (f"Bearer {TOKEN}",), None)
    try:
        raise RuntimeError(f"echo: session={COOKIE_VALUE}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    record.stack_info = f"stack {TOKEN}"
    ScrubSecrets(cli.output.secrets_of(args)).filter(record)
    text = logging.Formatter().format(record)
    assert "sent Bearer ***" in text and "echo: ***" in text and "stack ***" in text
    assert TOKEN not in text and COOKIE_VALUE not in text


def test_unreachable_host_fails_fast_with_exit_3(capsys, fake, monkeypatch):
    monkeypatch.setenv("KFP_HOST", f"http://127.0.0.1:{free_port()}")
    code, _, err = run_cli(capsys, "status", "--timeout", "1")
    assert code == 3 and "Cannot reach Kubeflow Pipelines" in err


def test_stalled_host_times_out_with_exit_3(capsys, fake, monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts connections, never answers
    stop = threading.Event()
    monkeypatch.setenv("KFP_HOST", f"http://127.0.0.1:{server.getsockname()[1]}")
    try:
        code, _, err = run_cli(capsys, "status", "--timeout", "0.5")
        # The message names the timeout that fired (a hang would hit pytest-timeout instead).
        assert code == 3 and "within 0.5 s" in err
    finally:
        stop.set()
        server.close()


def test_api_call_stalling_after_connect_times_out(capsys, fake):
    fake.stall_after = 2  # both health checks answer, the first real call hangs
    code, _, err = run_cli(capsys, "run", "tiny", "--timeout", "0.5")
    # A read timeout, not a connection error: the stalled call is what failed.
    assert code == 3 and "Lost the connection" in err and "timed out" in err.lower()


def test_missing_host_is_bad_input(capsys, fake, monkeypatch):
    monkeypatch.delenv("KFP_HOST")
    code, _, err = run_cli(capsys, "status")
    assert code == 2 and "KFP_HOST" in err


def test_usage_errors_and_help():
    assert cli.main(["frobnicate"], source_factory=lambda: SOURCE) == 2
    assert cli.main(["schedule", "tiny"], source_factory=lambda: SOURCE) == 2
    assert cli.main(["--help"], source_factory=lambda: SOURCE) == 0


def test_option_prefixes_are_refused_and_the_closest_option_named(capsys, tmp_path):
    # argparse would take --out as --out-dir; a typo must not silently set another option.
    code, _, err = run_cli(capsys, "compile", "tiny", "--out", str(tmp_path))
    assert code == 2 and "unrecognized arguments: --out" in err
    assert "(--out: Did you mean '--out-dir' or '--output'?)" in err and "usage: planets-mlops compile" in err
    assert not (tmp_path / "pipelines").exists()


def test_unknown_command_names_the_closest(capsys):
    code, _, err = run_cli(capsys, "compiel")
    assert code == 2 and "invalid choice: 'compiel'" in err and "Did you mean 'compile'?" in err


def test_unknown_pipeline_and_parameter_name_the_closest(capsys, fake):
    code, _, err = run_cli(capsys, "run", "tinny")
    assert code == 4 and "Did you mean 'tiny'?" in err
    code, _, err = run_cli(capsys, "run", "tiny", "--param", "train_rl=0.1")
    assert code == 2 and "Did you mean 'train_lr'?" in err
    assert fake.requests == []


def test_settings_mask_secrets_and_read_env(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    settings = ConnectionSettings.resolve(
        env={
            "KFP_HOST": "https://kf.example.com/pipeline/",
            "KFP_NAMESPACE": "team-a",
            "KFP_COOKIES": "authservice_session=SECRET",
            "KFP_VERIFY_SSL": "false",
            "KFP_CA_BUNDLE": str(ca),
        }
    )
    assert settings.host == "https://kf.example.com/pipeline"
    assert settings.namespace == "team-a" and settings.verify_ssl is False
    assert "SECRET" not in repr(settings) + settings.describe()
    assert "cookies ***" in settings.describe()
    with pytest.raises(InvalidParameterError, match="KFP_VERIFY_SSL"):
        ConnectionSettings.resolve(env={"KFP_HOST": "http://h", "KFP_VERIFY_SSL": "maybe"})
    with pytest.raises(InvalidParameterError, match="http:// or https://"):
        ConnectionSettings.resolve(env={"KFP_HOST": "kf.example.com"})


def test_guide_params_fit_the_real_training_pipeline(tmp_path):
    # The project's own pipeline, compiled for real: the flattened guide params.yaml
    # must name only its inputs, with the right types.
    source = cli.pipeline_source()
    if "training" not in source.pipelines:
        pytest.skip("pipelines.PIPELINES has no 'training' yet")
    from planets_mlops.app import params as pp

    path = source.compile("training", tmp_path)
    guide = tmp_path / "params.yaml"
    guide.write_text(PARAMS_YAML.replace("{lr: 0.01}", "{lr: 0.01, epochs: 3}"))
    arguments = pp.merge_arguments(pp.load_params_file(guide), ["data_repo_url=https://example.com/data.git"])
    inputs = pp.pipeline_inputs(pp.read_pipeline_spec(path))
    assert pp.validate_arguments(arguments, inputs, "training")["train_epochs"] == 3


def test_output_json_on_every_command(capsys, fake, tmp_path):
    import json

    code, out, err = run_cli(capsys, "compile", "-o", "json")
    assert code == 0, err
    compiled = json.loads(out)
    assert compiled["pipelines"] == ["build/pipelines/tiny.yaml"]
    assert isinstance(compiled["components"], list)

    code, out, _ = run_cli(capsys, "upload", "--output", "json")
    (uploaded,) = json.loads(out)
    assert uploaded == {
        "pipeline": "planets-tiny",
        "version": f"{__version__}-abc1234",
        "pipeline_id": "pipeline-1",
        "version_id": "version-2",
        "uploaded": True,
    }

    fake.run_states = ["SUCCEEDED"]
    code, out, _ = run_cli(
        capsys, "run", "tiny", "--run-name", "r1", "--wait", "--poll-interval", "0.01", "-o", "json"
    )
    assert code == 0
    run = json.loads(out)
    assert run == {"run_id": next(iter(fake.runs)), "name": "r1", "state": "SUCCEEDED", "error": None}

    code, out, _ = run_cli(capsys, "schedule", "tiny", "--cron", "@daily", "-o", "json")
    scheduled = json.loads(out)
    assert scheduled["recurring_run_id"] in fake.recurring and scheduled["removed_recurring_run_ids"] == []
    assert scheduled["cron"] == "@daily" and scheduled["job_name"] == "tiny-recurring"

    code, out, _ = run_cli(capsys, "status", "-o", "json")
    assert [row["run_id"] for row in json.loads(out)] == [run["run_id"]]


def test_stdout_carries_only_results(capsys, fake):
    code, out, err = run_cli(capsys, "run", "tiny")
    assert code == 0
    assert out.strip().splitlines() == [f"run_id={next(iter(fake.runs))}"]
    assert "Experiment details:" in err


def test_reference_preset_gives_the_reference_arguments_and_flags_win(tmp_path):
    import argparse

    from planets_mlops.app.cli.arguments import from_flags as arguments
    from planets_mlops.knobs import PRESETS

    (tmp_path / "params.yaml").write_text("train: {epochs: 3}\n")
    args = argparse.Namespace(preset="reference", params_file=None, param=["train_lr=0.5"])
    assert arguments(args) == {**PRESETS["reference"], "train_lr": 0.5}
    args = argparse.Namespace(preset="reference", params_file=str(tmp_path / "params.yaml"), param=None)
    assert arguments(args)["train_epochs"] == 3
    assert arguments(args)["prepare_grayscale"] is True
    assert arguments(argparse.Namespace(preset="suite", params_file=None, param=None)) == {}


def test_unknown_preset_is_bad_input(capsys, fake):
    code, _, err = run_cli(capsys, "run", "tiny", "--preset", "fastest")
    assert code == 2
    assert "reference" in err


def test_schedule_monitoring_runs_the_drift_check_on_a_clock(capsys, fake):
    # The real monitoring pipeline (not the tiny test one), scheduled hourly with its inputs.
    code, out, err = (
        cli.main(
            ["schedule", "monitoring", "--cron", "0 0 * * * *"]
            + [
                "--param",
                "records_uri=gs://planets-monitoring/records",
                "--param",
                "model_uri=gs://planets/model",
            ]
            + ["--param", "model_version=planets-classifier:abc", "--param", "window_hours=1"]
        ),
        *capsys.readouterr(),
    )
    assert code == 0, err
    (post,) = fake.calls("POST", "/recurringruns")
    assert post.body["display_name"] == "monitoring-recurring"
    assert post.body["trigger"] == {"cron_schedule": {"cron": "0 0 * * * *"}}
    assert post.body["runtime_config"]["parameters"] == {
        "records_uri": "gs://planets-monitoring/records",
        "model_uri": "gs://planets/model",
        "model_version": "planets-classifier:abc",
        "window_hours": 1,
        "retraining_service_account": "planets-pipeline-runner",
    }
    (pipeline,) = fake.pipelines.values()
    assert pipeline["display_name"] == "planets-monitoring"
    from planets_mlops.app.kfp_client import spec_of

    stored = fake.versions[post.body["pipeline_version_reference"]["pipeline_version_id"]]
    spec = spec_of(stored["pipeline_spec"])  # a spec with platform settings comes wrapped
    assert spec["pipelineInfo"]["name"] == "monitoring"
    assert {"detect-drift", "condition-1"} <= set(spec["root"]["dag"]["tasks"])
    assert "recurring_run_id=recurring-" in out


# ------------------------------------------- the runs the suite starts (issue 22)


@pytest.mark.parametrize("command", ["run", "schedule"])
def test_the_documented_monitoring_commands_run_as_the_pipeline_runner_and_follow_production(
    capsys, fake, monkeypatch, command
):
    # docs/monitoring.md, as written: no --service-account, no model version (production is
    # resolved at run time). The run, and the retraining runs its alert starts, must run as
    # the Workload Identity account, never as KFP's default pipeline-runner.
    monkeypatch.delenv("KFP_SERVICE_ACCOUNT", raising=False)
    monkeypatch.delenv("KFP_PIPELINE_ROOT", raising=False)
    argv = [command, "monitoring", "--param", "records_uri=gs://planets-monitoring/records",
            "--param", "tracking=true", "--param", "start_retraining=true",
            "--pipeline-root", "gs://planets-artifacts/kfp"]  # fmt: skip
    if command == "schedule":
        argv += ["--cron", "0 0 * * * *"]
    code, _, err = cli.main(argv), *capsys.readouterr()
    assert code == 0, err
    (post,) = fake.calls("POST", "/runs" if command == "run" else "/recurringruns")
    assert post.body["service_account"] == "planets-pipeline-runner"
    assert post.body["runtime_config"]["pipeline_root"] == "gs://planets-artifacts/kfp"
    parameters = post.body["runtime_config"]["parameters"]
    assert parameters["retraining_service_account"] == "planets-pipeline-runner"
    assert parameters["retraining_pipeline_root"] == "gs://planets-artifacts/kfp"
    assert "model_version" not in parameters and parameters["tracking"] is True


def test_the_service_account_default_is_configured_and_can_be_left_to_the_server(capsys, fake, monkeypatch):
    monkeypatch.setenv("KFP_SERVICE_ACCOUNT", "team-runner")
    assert run_cli(capsys, "run", "tiny", "--run-name", "a")[0] == 0
    assert run_cli(capsys, "run", "tiny", "--run-name", "b", "--service-account", "")[0] == 0
    assert run_cli(capsys, "run", "tiny", "--run-name", "c", "--service-account", "other")[0] == 0
    accounts = [post.body.get("service_account") for post in fake.calls("POST", "/runs")]
    assert accounts[0] == "team-runner" and not accounts[1] and accounts[2] == "other"


def test_upload_from_a_dirty_checkout_never_reuses_the_version_of_the_clean_commit(capsys, fake, commit):
    from planets_mlops import __version__

    assert run_cli(capsys, "upload", "tiny")[0] == 0
    clean = {v["display_name"] for v in fake.versions.values()}
    assert clean == {f"{__version__}-abc1234"}
    commit["dirty"] = True
    code, out, err = run_cli(capsys, "upload", "tiny")
    assert code == 0, err
    versions_now = {v["display_name"] for v in fake.versions.values()}
    (dirty,) = versions_now - clean
    assert dirty.startswith(next(iter(clean)) + "-dirty-") and "uncommitted changes" in err
    # The same edits uploaded twice: one version; scheduling from them references it.
    assert run_cli(capsys, "upload", "tiny")[0] == 0 and len(fake.versions) == 2
    assert run_cli(capsys, "schedule", "tiny", "--cron", "0 0 3 * * *")[0] == 0
    (post,) = fake.calls("POST", "/recurringruns")
    referenced = fake.versions[post.body["pipeline_version_reference"]["pipeline_version_id"]]
    assert referenced["display_name"] == dirty
