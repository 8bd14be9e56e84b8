"""Screenshots of the reports a person reads, for docs/images (linked from the README).

Prepares the bundled planets (10 classes, ``--per-class`` images each), trains a small model
for a few epochs and writes, with headless Chromium (scripts/setup_debian_tools.sh):

    .venv/bin/python scripts/render_reports.py --out docs/images

- evaluation-report.png: the evaluation report (provenance header, per class, confusion
  matrices, mistakes, guard);
- prepare-preview.png: the prepare step's preview (every class, its counts, samples);
- release-record.png: a release record's Markdown as the KFP UI renders it.

tests/servers/test_report_pages.py checks the same pages (they render, images load, no text clipped).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = ("Earth", "Jupiter", "Mars", "Mercury", "Moon", "Neptune", "Pluto", "Saturn", "Uranus", "Venus")


def main() -> None:
    """Write the three pages and their screenshots."""
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="output folder")
    parser.add_argument("--per-class", type=int, default=40, help="images per class (default 40)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    args = parser.parse_args()

    from planets_mlops.evaluate import evaluate_model, report_provenance
    from planets_mlops.knobs import PrepareParams, TrainParams
    from planets_mlops.prepare import prepare_dataset
    from planets_mlops.registry.release import reproduce_command, to_markdown
    from planets_mlops.train import train_model
    from tests.support.browser import markdown_page, screenshot
    from tests.support.fixtures.data import copy_subset

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="render-reports-") as scratch:
        work = Path(scratch)
        raw = copy_subset(work / "raw", CLASSES, args.per_class)
        prepared = prepare_dataset(raw, work / "prepared", PrepareParams())
        preview = work / "prepare-preview.html"
        preview.write_text(prepared.preview_html())
        params = TrainParams(epochs=args.epochs, conv_size=32, dense_size=64)
        trained = train_model(work / "prepared", work / "model", params)
        model_meta = trained.metadata({"source_commit": "c2612399cc38", "source_dvc_hash": "b38fe618.dir"})
        report = work / "evaluation-report.html"
        evaluate_model(
            work / "prepared",
            work / "model",
            report,
            provenance=report_provenance(model_meta, prepared.metadata(), "training-20261207-091500"),
        )
        line = {
            "data_commit": "c2612399cc38fc7dda99381ae0d46ce8c80e80f6",
            "data_repo_url": "https://github.com/example/planets-data.git",
            "data_path": "data/raw",
            "pipeline_version": "0.1.0-4d63a0c",
        }
        record = {
            "release": 4, "model": "planets-classifier", "alias": "production", "version": "7",
            "from_version": "6", "when": "2026-12-07T09:15:00Z", "by": "planets-pipeline-runner",
            "kfp_run_id": "6f1c0c3e", "why": "gate: promote (accuracy +0.0667, no class worse)",
            "gate": {"p_value": 0.0078125123456789, "delta": 0.0666666666666667, "promote": True},
            "data": {"commit": line["data_commit"], "dvc_hash": "b38fe6181ef7ea9ea7366cfa8af68b55.dir"},
            "code": {"git_commit": "4d63a0c", "package_version": "0.1.0"},
            "bento": {"tag": "planets_classifier:k3x2", "uri": "gs://example/bentos/planets.bento"},
            "labels": {}, "images": {}, "mlflow_run_id": "0123456789abcdef", "deployed": None,
            "reproduce": reproduce_command(line, {f"train_{k}": v for k, v in vars(params).items()}),
        }  # fmt: skip
        release = work / "release-record.html"
        release.write_text(markdown_page(to_markdown(record), "release record"))
        for page in (report, preview, release):
            print(screenshot(page, out / f"{page.stem}.png"))


if __name__ == "__main__":
    main()
