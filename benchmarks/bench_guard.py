"""Benchmark: the open-set guard keeps what the model knows and refuses what it never saw.

Everything is measured on images the models never trained on, at each seed (the seed of
the split and of training), with the default recipe (``PrepareParams``/``TrainParams``,
which train with the photometric augmentation and fit the class-wise guard):

- ``known``: train on the ten classes; on the bundled ``extra/`` images (50 per class),
  the share the guard keeps, overall (target >= 0.95) and in each class (target >= 0.90
  in every class); then, under each benign change of the raw 128 px image (Gaussian noise
  of sigma 25, Gaussian blur of radius 2, contrast x0.5; ``planets_mlops.app.dev.imagechanges``),
  the model's accuracy and the share of the images it classifies right that the guard
  keeps (target >= 0.90).
- ``loco`` (leave one class out): for each class, train on the nine others; the share of
  the left-out class's images (``raw/`` and ``extra/``, 200) the guard rejects (target:
  >= 0.95 on average over the folds, >= 0.90 in every fold), and the share of the nine
  classes' ``extra/`` images it keeps.

Each share comes with its Wilson 95 % interval. Every fold is a real training run (slow on
a small machine: about ten per seed for ``loco``), so ``--parts``, ``--seeds`` and
``--folds`` choose a subset; the output says which were run. Prints a table per part,
then JSON (``--json`` also writes it to a file).

    nice -n 10 .venv/bin/python -m benchmarks.bench_guard [--seeds 5241,1,2] [--parts known,loco]
        [--folds Earth,Moon] [--epochs N] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data" / "planets"
SEEDS = (5241, 1, 2)
PARTS = ("known", "loco")
TARGETS = {"known_kept": 0.95, "class_kept": 0.90, "benign_kept": 0.90, "loco_mean": 0.95, "loco_fold": 0.90}


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95 % by default); (0, 1) for no trials."""
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def share(mask: np.ndarray) -> dict[str, Any]:
    """A share with its count and Wilson interval."""
    mask = np.asarray(mask, bool)
    low, high = wilson(int(mask.sum()), int(mask.size))
    return {
        "share": float(mask.mean()) if mask.size else 0.0,
        "count": int(mask.size),
        "interval": [low, high],
    }


def fmt(entry: dict[str, Any]) -> str:
    low, high = entry["interval"]
    return f"{entry['share']:.3f} [{low:.2f}, {high:.2f}] n={entry['count']}"


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
    out.mkdir(parents=True)
    for folder in sorted(p for p in raw.iterdir() if p.is_dir() and p.name != left_out):
        (out / folder.name).symlink_to(folder.resolve(), target_is_directory=True)
    return out


def train(work: Path, seed: int, left_out: str, epochs: int | None) -> tuple[Path, float]:
    """Prepare and train the default recipe at ``seed`` (without ``left_out``, if any)."""
    from planets_mlops.knobs import PrepareParams, TrainParams
    from planets_mlops.prepare import prepare_dataset
    from planets_mlops.train import train_model

    name = f"{seed}-{left_out or 'all'}"
    raw = without_class(DATA / "raw", work / f"raw-{name}", left_out)
    prepared, model = work / f"prepared-{name}", work / f"model-{name}"
    prepare_dataset(raw, prepared, PrepareParams(seed=seed))
    params = TrainParams(seed=seed) if epochs is None else TrainParams(seed=seed, epochs=epochs)
    started = time.monotonic()
    train_model(prepared, model, params)
    return model, time.monotonic() - started


class Scorer:
    """A trained model folder scoring raw pixels as the service does (preprocess, ONNX, guard)."""

    def __init__(self, model: Path) -> None:
        from planets_mlops.guard import load_guard
        from planets_mlops.preprocess import PreprocessConfig

        self.model = model
        self.classes = json.loads((model / "classes.json").read_text())
        self.config = PreprocessConfig.from_dict(json.loads((model / "preprocess.json").read_text()))
        self.guard = load_guard(model)

    def __call__(self, pixels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted class names and the guard's recognised mask."""
        from planets_mlops.model_folder import predict_outputs
        from planets_mlops.preprocess import resize_bilinear

        tensors = np.stack(
            [resize_bilinear(p, self.config.image_size) * np.float32(self.config.rescale) for p in pixels]
        )
        logits, embedding = predict_outputs(self.model, tensors)
        names = np.asarray(self.classes, dtype=object)[logits.argmax(axis=1)]
        return names, self.guard.recognised(self.guard.scores(embedding, tensors))


def decode_all(paths: list[Path], grayscale: bool) -> list[np.ndarray]:
    from planets_mlops.imaging import decode

    return [decode(path, grayscale=grayscale) for path in paths]


def known_part(work: Path, seed: int, classes: list[str], epochs: int | None) -> dict[str, Any]:
    """Coverage of the known ``extra/`` images, and of benign changes of them."""
    from planets_mlops.app.dev.imagechanges import BENIGN, change_pixels

    model, seconds = train(work, seed, "", epochs)
    score = Scorer(model)
    files, labels = extra_labels(classes)
    truth = np.asarray(classes, dtype=object)[labels]
    pixels = decode_all(files, score.config.grayscale)
    predicted, kept = score(pixels)
    per_class = {name: share(kept[truth == name]) for name in classes}
    result: dict[str, Any] = {
        "seed": seed,
        "train_seconds": round(seconds, 1),
        "accuracy": share(predicted == truth),
        "known_kept": share(kept),
        "class_kept": per_class,
        "lowest_class": min(per_class, key=lambda name: per_class[name]["share"]),
        "benign": {},
    }
    for name, strength in BENIGN:
        changed = [change_pixels(p, name, strength, seed=i) for i, p in enumerate(pixels)]
        predicted, kept = score(changed)
        right = predicted == truth
        result["benign"][f"{name} {strength:g}"] = {
            "accuracy": share(right),
            "kept_of_right": share(kept[right]),
        }
    return result


def loco_part(work: Path, seed: int, left_out: str, classes: list[str], epochs: int | None) -> dict[str, Any]:
    """Train without ``left_out``; rejection of it, coverage of the nine known classes."""
    model, seconds = train(work, seed, left_out, epochs)
    score = Scorer(model)
    files, labels = extra_labels(classes)
    target = classes.index(left_out)
    unseen = sorted((DATA / "raw" / left_out).glob("*.jpg")) + [
        f for f, y in zip(files, labels) if y == target
    ]
    known = [f for f, y in zip(files, labels) if y != target]
    _, unseen_kept = score(decode_all(unseen, score.config.grayscale))
    _, known_kept = score(decode_all(known, score.config.grayscale))
    return {
        "seed": seed,
        "left_out": left_out,
        "train_seconds": round(seconds, 1),
        "unseen_rejected": share(~unseen_kept),
        "known_kept": share(known_kept),
    }


def print_known(result: dict[str, Any]) -> None:
    lowest = result["lowest_class"]
    print(
        f"seed {result['seed']:>4}  accuracy {fmt(result['accuracy'])}"
        f"  known kept {fmt(result['known_kept'])}"
        f"  lowest class {lowest} {fmt(result['class_kept'][lowest])}"
        f"  (train {result['train_seconds']:.0f} s)",
        flush=True,
    )
    for change, figures in result["benign"].items():
        print(
            f"          {change:14s} accuracy {fmt(figures['accuracy'])}"
            f"  kept of right {fmt(figures['kept_of_right'])}"
        )


def summarise(known: list[dict[str, Any]], loco: list[dict[str, Any]]) -> dict[str, Any]:
    """Targets met or not, per seed (only for the parts and folds run)."""
    summary: dict[str, Any] = {}
    for result in known:
        seed = summary.setdefault(str(result["seed"]), {})
        seed["known_kept"] = result["known_kept"]["share"]
        seed["min_class_kept"] = min(entry["share"] for entry in result["class_kept"].values())
        seed["min_benign_kept"] = min(entry["kept_of_right"]["share"] for entry in result["benign"].values())
        seed["known_targets_met"] = (
            seed["known_kept"] >= TARGETS["known_kept"]
            and seed["min_class_kept"] >= TARGETS["class_kept"]
            and seed["min_benign_kept"] >= TARGETS["benign_kept"]
        )
    for seed_value in dict.fromkeys(r["seed"] for r in loco):
        folds = [r for r in loco if r["seed"] == seed_value]
        seed = summary.setdefault(str(seed_value), {})
        seed["loco_folds"] = [r["left_out"] for r in folds]
        seed["loco_mean_rejected"] = statistics.mean(r["unseen_rejected"]["share"] for r in folds)
        seed["loco_min_rejected"] = min(r["unseen_rejected"]["share"] for r in folds)
        seed["loco_known_kept"] = statistics.mean(r["known_kept"]["share"] for r in folds)
        seed["loco_targets_met"] = (
            seed["loco_mean_rejected"] >= TARGETS["loco_mean"]
            and seed["loco_min_rejected"] >= TARGETS["loco_fold"]
        )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seeds", default=",".join(map(str, SEEDS)), help="comma-separated seeds (default: 5241,1,2)"
    )
    parser.add_argument("--parts", default=",".join(PARTS), help="known, loco or both (default: both)")
    parser.add_argument(
        "--folds", default="", help="classes to leave out in the loco part (default: all ten)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the default recipe's epochs")
    parser.add_argument("--json", default="", help="also write the JSON results to this file")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    classes = sorted(p.name for p in (DATA / "raw").iterdir() if p.is_dir())
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        parser.error(f"--seeds takes comma-separated integers, not {args.seeds!r}")
    parts = [p for p in args.parts.split(",") if p]
    if not parts or set(parts) - set(PARTS):
        parser.error(f"--parts takes {list(PARTS)}, not {args.parts!r}")
    folds = [c for c in args.folds.split(",") if c] or classes
    unknown = sorted(set(folds) - set(classes))
    if unknown:
        parser.error(f"--folds names unknown classes {unknown}; choose from {classes}")
    print(f"bench_guard: seeds {seeds}, parts {parts}, folds {folds if 'loco' in parts else '-'}", flush=True)
    known: list[dict[str, Any]] = []
    loco: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-guard-") as tmp:
        for seed in seeds:
            if "known" in parts:
                known.append(known_part(Path(tmp), seed, classes, args.epochs))
                print_known(known[-1])
            if "loco" in parts:
                for left_out in folds:
                    loco.append(loco_part(Path(tmp), seed, left_out, classes, args.epochs))
                    r = loco[-1]
                    print(
                        f"seed {seed:>4}  without {left_out:8s} unseen rejected {fmt(r['unseen_rejected'])}"
                        f"  known kept {fmt(r['known_kept'])}  (train {r['train_seconds']:.0f} s)",
                        flush=True,
                    )
    summary = summarise(known, loco)
    print(f"\nTargets: {json.dumps(TARGETS)}")
    print(
        "| seed | known kept | lowest class | lowest benign kept | loco mean rejected"
        " | loco lowest fold | met |"
    )
    print("|---|---|---|---|---|---|---|")
    for seed, s in summary.items():
        met = [s[k] for k in ("known_targets_met", "loco_targets_met") if k in s]
        cells = [
            f"{s['known_kept']:.3f}" if "known_kept" in s else "-",
            f"{s['min_class_kept']:.3f}" if "min_class_kept" in s else "-",
            f"{s['min_benign_kept']:.3f}" if "min_benign_kept" in s else "-",
            f"{s['loco_mean_rejected']:.3f} ({len(s['loco_folds'])} folds)" if "loco_folds" in s else "-",
            f"{s['loco_min_rejected']:.3f}" if "loco_folds" in s else "-",
            "yes" if all(met) else "NO",
        ]
        print(f"| {seed} | " + " | ".join(cells) + " |")
    print(f"wall time {time.monotonic() - started:.0f} s")
    document = {"targets": TARGETS, "known": known, "loco": loco, "summary": summary}
    print(json.dumps(document, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
