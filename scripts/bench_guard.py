"""Benchmark: the open-set guard's known-image coverage and its rejection of unseen classes.

Leave-one-class-out on the bundled data: for each of the ten classes, train the default
recipe on the other nine (the guard is fitted and calibrated by ``train_model`` itself, on
that model's training and validation images), then score

- known images it never trained on: the nine classes' ``extra/`` images (coverage: the
  share recognised, target >= 0.95), and
- the left-out class, every image of it (``raw/`` and ``extra/``; rejection: the share not
  recognised, target >= 0.95).

Beside the guard, the share of unseen images the softmax alone gives >= 0.9 (what a
classifier without a guard presents as a confident answer). Prints one line per fold
and the means, then JSON.

    nice -n 10 .venv/bin/python scripts/bench_guard.py [--folds Earth,Moon] [--epochs N]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[1] / "data" / "planets"


def extra_labels(classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """The ``extra/`` files and their true classes (decoded from the names, see data README)."""
    files = sorted((DATA / "extra").glob("*.jpg"))
    labels = []
    for path in files:
        stem = path.stem[::-1]
        name = base64.urlsafe_b64decode(stem + "=" * (-len(stem) % 4)).decode()
        labels.append(classes.index(name.rsplit("_", 1)[0]))
    return files, np.asarray(labels)


def without_class(raw: Path, out: Path, left_out: str) -> Path:
    """A class-per-folder view of ``raw`` without ``left_out`` (symbolic links)."""
    for folder in sorted(p for p in raw.iterdir() if p.is_dir() and p.name != left_out):
        (out / folder.name).symlink_to(folder.resolve(), target_is_directory=True)
    return out


def fold(work: Path, left_out: str, classes: list[str], epochs: int | None) -> dict[str, Any]:
    """Train without ``left_out``; coverage on known extra images, rejection of the class."""
    from planets_mlops.evaluate import predict_outputs, softmax
    from planets_mlops.guard import load_guard, rejection_rate
    from planets_mlops.knobs import PrepareParams, TrainParams
    from planets_mlops.prepare import prepare_dataset
    from planets_mlops.preprocess import preprocess_image
    from planets_mlops.train import train_model

    raw = work / f"raw-{left_out}"
    raw.mkdir()
    without_class(DATA / "raw", raw, left_out)
    prepared, model = work / f"prepared-{left_out}", work / f"model-{left_out}"
    prepare_params = PrepareParams()
    prepare_dataset(raw, prepared, prepare_params)
    train_params = TrainParams() if epochs is None else TrainParams(epochs=epochs)
    started = time.monotonic()
    train_model(prepared, model, train_params)
    seconds = time.monotonic() - started
    config = prepare_params.preprocess_config()
    files, labels = extra_labels(classes)
    target = classes.index(left_out)
    unseen_files = sorted((DATA / "raw" / left_out).glob("*.jpg")) + [
        f for f, y in zip(files, labels) if y == target
    ]
    known_files = [f for f, y in zip(files, labels) if y != target]
    guard = load_guard(model)

    def scores(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        logits, embedding = predict_outputs(model, np.stack([preprocess_image(p, config) for p in paths]))
        return guard.scores(embedding), softmax(logits.astype(np.float64)).max(axis=1)

    known, _ = scores(known_files)
    unseen, unseen_confidence = scores(unseen_files)
    return {
        "left_out": left_out,
        "threshold": guard.threshold,
        "validation_kept": guard.calibration.get("kept"),
        "known_coverage": float(np.mean(guard.recognised(known))),
        "unseen_rejected": rejection_rate(unseen, guard.threshold),
        "unseen_softmax_ge_0.9": float(np.mean(unseen_confidence >= 0.9)),
        "known_images": len(known_files),
        "unseen_images": len(unseen_files),
        "train_seconds": round(seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folds", default="", help="comma-separated classes to leave out (default: all)")
    parser.add_argument("--epochs", type=int, default=None, help="override the default recipe's epochs")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    classes = sorted(p.name for p in (DATA / "raw").iterdir() if p.is_dir())
    chosen = [c for c in args.folds.split(",") if c] or classes
    unknown = sorted(set(chosen) - set(classes))
    if unknown:
        parser.error(f"--folds names unknown classes {unknown}; choose from {classes}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-guard-") as tmp:
        for left_out in chosen:
            result = fold(Path(tmp), left_out, classes, args.epochs)
            results.append(result)
            print(
                f"{left_out:8s} threshold {result['threshold']:.3f}"
                f"  known kept {result['known_coverage']:.3f}"
                f"  unseen rejected {result['unseen_rejected']:.3f}"
                f"  (softmax >= 0.9 on unseen: {result['unseen_softmax_ge_0.9']:.3f})"
                f"  train {result['train_seconds']:.0f} s",
                flush=True,
            )
    summary = {
        key: statistics.mean(r[key] for r in results)
        for key in ("known_coverage", "unseen_rejected", "unseen_softmax_ge_0.9")
    }
    print(
        f"mean over {len(results)} folds: known kept {summary['known_coverage']:.3f}, "
        f"unseen rejected {summary['unseen_rejected']:.3f} (targets >= 0.95 and >= 0.95); "
        f"softmax >= 0.9 on unseen {summary['unseen_softmax_ge_0.9']:.3f}"
    )
    print(json.dumps({"folds": results, "mean": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
