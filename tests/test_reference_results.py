"""The reference experiment's numbers on the full bundled data set (1,500 images).

The original scripts give val_acc 0.9467 (ch 2.5 settings) and 0.443 (baseline) on this
kind of machine; the acceptance bands are >= 0.94 and 0.443 +- 0.01. The preprocessing is
bit-identical to theirs (see test_preprocess), the split and batch order are theirs. The
reference settings are the ``reference`` preset (planets_mlops.knobs.PRESETS); the suite's
own defaults differ (colour) and are measured by scripts/bench_recipe.py.
"""

import dataclasses
from pathlib import Path

import pytest

from planets_mlops.evaluate import evaluate_model
from planets_mlops.knobs import preset_params
from planets_mlops.prepare import prepare_dataset
from planets_mlops.train import train_model

REFERENCE_PREPARE, REFERENCE_TRAIN = preset_params("reference")

RAW = Path(__file__).resolve().parents[1] / "data" / "planets" / "raw"


@pytest.fixture(scope="module")
def full_prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "prepared"
    prepare_dataset(RAW, out, dataclasses.replace(REFERENCE_PREPARE, output_classes=10))
    return out


def _val_acc(prepared, tmp_path, name, **params):
    train_model(prepared, tmp_path / name, dataclasses.replace(REFERENCE_TRAIN, **params))
    return evaluate_model(prepared, tmp_path / name, tmp_path / f"{name}.html").metrics["val_acc"]


def test_chapter_2_5_settings_reach_094(full_prepared, tmp_path):
    val_acc = _val_acc(full_prepared, tmp_path, "ch25")  # the preset as it is
    assert val_acc >= 0.94


def test_baseline_settings_match_reference_and_repeat_exactly(full_prepared, tmp_path):
    baseline = dict(lr=0.0001, conv_size=32, dense_size=64, epochs=5)
    first = _val_acc(full_prepared, tmp_path, "a", **baseline)
    second = _val_acc(full_prepared, tmp_path, "b", **baseline)
    assert first == pytest.approx(0.443, abs=0.01)
    assert first == second
