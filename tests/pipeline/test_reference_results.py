"""The reference experiment's numbers on the full bundled data set (1,500 images).

The original scripts give val_accuracy 0.9467 (ch 2.5 settings) and 0.443 (baseline) on this
kind of machine; the acceptance bands are >= 0.94 and 0.443 +- 0.01. The preprocessing is
bit-identical to theirs (see test_preprocess), the split and batch order are theirs. The
reference settings are the ``reference`` preset (planets_mlops.knobs.PRESETS); the suite's
own defaults differ (colour) and are measured by benchmarks/bench_recipe.py.
Each setting trains once on the full data (chapter 2.5 through the session's ``full_model``);
that a training repeats exactly is checked on small data in test_train_evaluate.
"""

import dataclasses

import pytest

from planets_mlops.evaluate import evaluate_model
from planets_mlops.knobs import preset_params
from planets_mlops.train import train_model

BASELINE = {"lr": 0.0001, "conv_size": 32, "dense_size": 64, "epochs": 5}


def _val_accuracy(prepared, model_dir, report):
    return evaluate_model(prepared, model_dir, report).metrics["val_accuracy"]


def test_chapter_2_5_settings_reach_094(full_prepared, full_model, tmp_path):
    assert _val_accuracy(full_prepared, full_model, tmp_path / "ch25.html") >= 0.94


def test_baseline_settings_match_reference(full_prepared, tmp_path):
    _, reference = preset_params("reference")
    train_model(full_prepared, tmp_path / "baseline", dataclasses.replace(reference, **BASELINE))
    assert _val_accuracy(full_prepared, tmp_path / "baseline", tmp_path / "baseline.html") == pytest.approx(
        0.443, abs=0.01
    )
