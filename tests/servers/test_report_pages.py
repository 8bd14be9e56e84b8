"""The reports a person reads, opened in headless Chromium: they render, their images load and
are shown near full size, and no text is clipped or runs off the window.

Real pages from real steps: the evaluation report of a tiny model trained on the small data set,
the prepare preview of that data set, and a release record's Markdown as the KFP UI renders it.
"""

import re

import numpy as np
import pytest

from tests.support.browser import check_page, chromium, markdown_page

pytestmark = [
    # a real external program, like the servers
    pytest.mark.skipif(
        chromium() is None, reason="no chromium: `make setup` installs it (scripts/setup_debian_tools.sh)"
    ),
]


def assert_readable(page):
    shown = check_page(page)
    assert shown["text"] > 100, shown
    assert shown["clipped"] == [], shown["clipped"]
    assert shown["page_width"] <= shown["view"], shown
    for image in shown["images"]:
        assert image["loaded"], image
        assert image["scale"] >= 0.75, image  # squeezed further, its labels are unreadable
    return shown


def test_the_check_catches_clipped_text_and_broken_images(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(
        "<html><body><div style='width:60px;overflow:hidden;white-space:nowrap'>a long caption that is cut"
        "</div><img alt='missing' src='data:image/png;base64,AAAA'/>"
        f"<pre>{'x' * 400}</pre></body></html>"
    )
    shown = check_page(page)
    assert [c["tag"] for c in shown["clipped"]][:1] == ["DIV"]
    assert any(c["tag"] == "PRE" for c in shown["clipped"])
    assert shown["images"][0]["loaded"] is False


def test_evaluation_report_reads_in_a_browser(tmp_path, small_prepared, tiny_model):
    from planets_mlops.evaluate import evaluate_model, report_provenance

    model_meta = {
        "framework": "tensorflow",
        "parameters": 1234,
        "data_commit": "c0ffee1234",
        "data_dvc_hash": "abc123.dir",
        "train_params": {"train_epochs": 2, "train_lr": 0.01},
    }
    data_meta = {
        "train_count": 48,
        "validation_count": 12,
        "preprocess": {"image_size": 32, "grayscale": False},
    }
    report = tmp_path / "evaluation.html"
    result = evaluate_model(
        small_prepared,
        tiny_model,
        report,
        provenance=report_provenance(model_meta, data_meta, "training-run-7"),
    )
    text = report.read_text()
    for shown in (
        "training-run-7",
        "c0ffee1234",
        "abc123.dir",
        "48 train, 12 validation (3 classes)",
        "train_lr=0.01",
    ):
        assert shown in text
    assert "<th>precision</th><th>recall</th><th>F1</th><th>support</th><th>guard coverage</th>" in text
    supports = re.findall(r"<td class='num'>(\d+)</td><td class='num'>[\d.]+%</td></tr>", text)
    assert sum(map(int, supports)) == 12 == int(np.sum(result.confusion_matrix))
    page = assert_readable(report)
    assert {"Confusion matrix", "Training history"} <= {image["alt"] for image in page["images"]}


def test_prepare_preview_shows_every_class_with_counts(tmp_path, small_raw):
    from planets_mlops.knobs import PrepareParams
    from planets_mlops.prepare import prepare_dataset

    result = prepare_dataset(small_raw, tmp_path / "prepared", PrepareParams())
    page = tmp_path / "preview.html"
    page.write_text(result.preview_html())
    text = page.read_text()
    for name in ("Earth", "Jupiter", "Moon"):
        cells = r"<td class='num'>(\d+)</td><td class='num'>(\d+)</td><td class='num'>20</td>"
        row = re.search(rf"<tr><td>{name}</td>{cells}</tr>", text)
        assert row is not None, name
    assert "48</th><th class='num'>12</th><th class='num'>60</th>" in text
    assert_readable(page)


def test_release_record_reads_in_a_browser(tmp_path):
    from planets_mlops.registry.release import reproduce_command, to_markdown

    params = {
        f"train_{k}": v for k, v in {"lr": 0.001, "epochs": 10, "conv_size": 64, "dense_size": 128}.items()
    }
    params.update({"prepare_seed": 5241, "prepare_image_size": 32, "prepare_grayscale": False})
    line = {
        "data_commit": "c2612399cc38fc7dda99381ae0d46ce8c80e80f6",
        "data_repo_url": "https://github.com/example/planets-data.git",
        "data_path": "data/raw",
        "pipeline_version": "0.1.0-c0ffee1",
    }
    record = {
        "release": 4, "model": "planets-classifier", "alias": "production", "version": "7",
        "from_version": "6", "when": "2026-12-07T08:00:00Z", "by": "ci", "kfp_run_id": "run-123",
        "why": "gate passed", "gate": {"p_value": 0.0078125123456789, "delta": 0.0666666666666667},
        "data": {"commit": line["data_commit"], "dvc_hash": "b38fe6181ef7ea9ea7366cfa8af68b55.dir"},
        "code": {"git_commit": "4d63a0c"}, "bento": {"tag": "planets_classifier:abc"}, "labels": {},
        "images": {}, "mlflow_run_id": "0123456789abcdef", "deployed": None,
        "reproduce": reproduce_command(line, params),
    }  # fmt: skip
    page = tmp_path / "release.html"
    page.write_text(markdown_page(to_markdown(record), "release"))
    assert "0.007813" in page.read_text() and "0.0078125123" not in page.read_text()
    assert_readable(page)
