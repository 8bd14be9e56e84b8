"""params.yaml and --param flags -> typed pipeline arguments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planets_mlops.app.params import (
    flatten_params,
    load_params_file,
    merge_arguments,
    parse_param_flag,
    pipeline_inputs,
    square_image_size,
    validate_arguments,
)
from planets_mlops.errors import InvalidParameterError, NotFoundError

GUIDE_PARAMS = """\
prepare:
  seed: 5241
  split: 0.2
  image_size: [32, 32]
  grayscale: true
train:
  seed: 5241
  lr: 0.001
  epochs: 10
  conv_size: 64
  dense_size: 128
  output_classes: 10
"""

IR = {
    "root": {
        "inputDefinitions": {
            "parameters": {
                "prepare_seed": {
                    "parameterType": "NUMBER_INTEGER",
                    "isOptional": True,
                    "defaultValue": 5241,
                },
                "prepare_split": {"parameterType": "NUMBER_DOUBLE", "isOptional": True},
                "prepare_image_size": {
                    "parameterType": "NUMBER_INTEGER",
                    "isOptional": True,
                },
                "prepare_grayscale": {"parameterType": "BOOLEAN", "isOptional": True},
                "train_lr": {"parameterType": "NUMBER_DOUBLE", "isOptional": True},
                "data_rev": {"parameterType": "STRING", "isOptional": True},
                "data_repo_url": {"parameterType": "STRING"},
            }
        }
    }
}


def test_guide_params_file_maps_to_flat_names(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(GUIDE_PARAMS)
    assert load_params_file(path) == {
        "prepare_seed": 5241,
        "prepare_split": 0.2,
        "prepare_image_size": 32,
        "prepare_grayscale": True,
        "train_seed": 5241,
        "train_lr": 0.001,
        "train_epochs": 10,
        "train_conv_size": 64,
        "train_dense_size": 128,
        "train_output_classes": 10,
    }


def test_data_section_and_flat_top_level_keys():
    doc = {
        "data": {"repo_url": "https://git/x.git", "rev": "v1"},
        "data_path": "d",
        "dvc_remote_config": {"endpointurl": "http://127.0.0.1:1"},
    }
    assert flatten_params(doc) == {
        "data_repo_url": "https://git/x.git",
        "data_rev": "v1",
        "data_path": "d",
        "dvc_remote_config": {"endpointurl": "http://127.0.0.1:1"},
    }


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"prepare": {"sead": 1}}, r"prepare\.sead.*'grayscale', 'image_size', 'seed'"),
        ({"prepare": {"image_size": [32, 64]}}, r"square.*\[32, 32\]"),
        ({"prepare": {"image_size": [32]}}, "pair"),
        ({"prepare": {"image_size": 0}}, "at least 5"),
        ({"prepare": {"image_size": 1}}, r"prepare_image_size=1.*at least 5"),
        ({"prepare": {"image_size": [4, 4]}}, r"at least 5.*3x3 convolution"),
        ({"train": {"lr": float("inf")}}, r"train_lr=inf.*finite"),
        ({"train": {"lr": float("nan")}}, r"train_lr=nan.*finite"),
        ({"prepare": {"split": float("nan")}}, r"prepare_split=nan.*finite"),
        ({"train": {"epochs": "ten"}}, "train_epochs.*int"),
        ({"train": {"epochs": True}}, "train_epochs"),
        ({"prepare": {"grayscale": "yes"}}, "prepare_grayscale.*bool"),
        ({"train": 3}, r"section train.*'epochs'"),
        (["prepare"], "mapping"),
    ],
)
def test_bad_params_are_clear(doc, match):
    with pytest.raises(InvalidParameterError, match=match):
        flatten_params(doc)


def test_int_learning_rate_widens_to_float():
    assert flatten_params({"train": {"lr": 1}}) == {"train_lr": 1.0}


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(NotFoundError, match="nope.yaml"):
        load_params_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("prepare: [1, 2\n")
    with pytest.raises(InvalidParameterError, match="valid YAML"):
        load_params_file(bad)


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("train_lr=0.01", ("train_lr", 0.01)),
        ("prepare_grayscale=false", ("prepare_grayscale", False)),
        ("data_rev=v2", ("data_rev", "v2")),
        ("data_rev=", ("data_rev", "")),
        ("data_path=a=b", ("data_path", "a=b")),
        ("prepare_image_size=[32, 32]", ("prepare_image_size", [32, 32])),
    ],
)
def test_parse_param_flag(flag, expected):
    assert parse_param_flag(flag) == expected


@pytest.mark.parametrize("flag", ["train_lr", "=3", ""])
def test_parse_param_flag_rejects(flag):
    with pytest.raises(InvalidParameterError, match="NAME=VALUE"):
        parse_param_flag(flag)


@given(st.text(alphabet=st.characters(blacklist_characters="=\n\r"), min_size=1), st.text())
def test_parse_param_flag_never_crashes(name, raw):
    if not name.strip():
        return
    parsed_name, _ = parse_param_flag(f"{name}={raw}")
    assert parsed_name == name.strip()


def test_flags_override_file_and_reduce_image_size():
    merged = merge_arguments(
        {"train_lr": 0.001, "prepare_seed": 1},
        ["train_lr=0.1", "prepare_image_size=[48, 48]"],
    )
    assert merged == {"train_lr": 0.1, "prepare_seed": 1, "prepare_image_size": 48}


@given(st.integers(min_value=5, max_value=4096))
def test_square_image_size_accepts_int_and_square_pair(side):
    assert square_image_size(side) == side == square_image_size([side, side])


def test_validate_against_compiled_inputs():
    inputs = pipeline_inputs(IR)
    out = validate_arguments({"train_lr": 1, "data_rev": 2, "data_repo_url": "u"}, inputs, "training")
    assert out == {"train_lr": 1.0, "data_rev": "2", "data_repo_url": "u"}
    assert isinstance(out["train_lr"], float)


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("train_lr", float("inf"), r"train_lr=inf.*finite"),
        ("prepare_split", float("nan"), r"prepare_split=nan.*finite"),
        ("prepare_image_size", 1, r"prepare_image_size=1.*at least 5"),
        ("prepare_image_size", 4, r"prepare_image_size=4.*at least 5"),
    ],
)
def test_validate_rejects_values_the_run_would_fail_on(name, value, match):
    with pytest.raises(InvalidParameterError, match=match):
        validate_arguments({name: value, "data_repo_url": "u"}, pipeline_inputs(IR), "training")


def test_yaml_inf_and_nan_are_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: .inf\n")
    with pytest.raises(InvalidParameterError, match="train_lr=inf"):
        load_params_file(path)


def test_validate_unknown_name_lists_valid_ones():
    with pytest.raises(InvalidParameterError, match=r"train_epochz.*'data_repo_url'"):
        validate_arguments({"train_epochz": 3, "data_repo_url": "u"}, pipeline_inputs(IR), "training")


def test_validate_wrong_type_and_missing_required():
    with pytest.raises(InvalidParameterError, match="prepare_seed.*NUMBER_INTEGER"):
        validate_arguments({"prepare_seed": 1.5, "data_repo_url": "u"}, pipeline_inputs(IR), "training")
    with pytest.raises(InvalidParameterError, match="data_repo_url"):
        validate_arguments({}, pipeline_inputs(IR), "training")
