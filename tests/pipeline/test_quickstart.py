"""The quickstart end to end under kfp.local with its own MLflow server (steps 1 and 2 only:
serving and the loop are covered by their own tests).

A second, weaker run with other preprocessing (``--baseline``: grayscale) is gated against the
colour production model of the first run, each with its own preprocessing on the same raw
validation images, and the quickstart ends with the gate's verdict instead of a traceback.
"""

from __future__ import annotations

import json

import pytest

from planets_mlops.app.quickstart import main


# Two whole training pipelines and an MLflow server: about 2 min here when the machine is
# idle, several times that when it is shared.
@pytest.mark.timeout(2400)
def test_a_weaker_grayscale_rerun_is_gated_against_colour_production_and_ends_with_its_verdict(
    tmp_path, capsys
):
    common = ["--workdir", str(tmp_path), "--skip-serving", "--skip-labelling"]
    assert main([*common, "--epochs", "2", "--json", str(tmp_path / "first.json")]) == 0
    first = json.loads((tmp_path / "first.json").read_text())
    assert first["promoted"] is True and first["metrics"]["val_accuracy"] > 0.5
    capsys.readouterr()

    assert main([*common, "--baseline", "--epochs", "1", "--json", str(tmp_path / "second.json")]) == 0
    out = capsys.readouterr().out
    second = json.loads((tmp_path / "second.json").read_text())
    assert second["promoted"] is False
    assert "Not promoted: the gate kept the production model" in out
    assert "# Promotion gate: **KEEP PRODUCTION**" in out
    # Production (colour) was scored with its own preprocessing: its accuracy on the same 300
    # validation images is the one it had on its own data set.
    assert second["metrics"]["production_val_accuracy"] == first["metrics"]["val_accuracy"]
    assert second["metrics"]["gate_images"] == 300
    assert "Steps 3 to 5 need a promoted model" in out
