"""Benchmark: the suite's default recipe against the reference recipe, side by side.

For each seed (the split seed and the training seed both), prepares the bundled data set
and trains each recipe through the real ``prepare_dataset`` and ``train_model``, then
prints validation accuracy (300 images), accuracy on the bundled ``extra/`` images (500,
never trained on) and training time: wall seconds of the ``train_model`` call (model
folder, ONNX export and guard included) and the CPU seconds the process spent in it,
which the other programs on a shared machine do not inflate. Recipes alternate within
each seed, so a change in machine load hits both.

Recipes: ``reference`` (the ``reference`` preset: grayscale, chapter 2.5 settings),
``suite`` (the defaults) and, with ``--steps``, each change of the suite over the
reference on its own, to show what each one buys.

    nice -n 10 .venv/bin/python -m benchmarks.bench_recipe [--seeds 5241,1,2] [--steps]
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data" / "planets"
TARGETS = {"val_accuracy": 0.99, "extra_accuracy": 0.985}


def recipes(steps: bool) -> dict[str, tuple[Any, Any]]:
    """Name -> (PrepareParams, TrainParams) without seeds; ``steps`` adds each change alone."""
    from planets_mlops.knobs import PrepareParams, TrainParams, preset_params

    reference = preset_params("reference")
    suite = (PrepareParams(), TrainParams())
    chosen = {"reference": reference}
    if steps:
        for index, (ref, new) in enumerate(zip(reference, suite)):
            for field in dataclasses.fields(new):
                if field.name != "seed" and getattr(ref, field.name) != getattr(new, field.name):
                    changed = list(reference)
                    changed[index] = dataclasses.replace(ref, **{field.name: getattr(new, field.name)})
                    chosen[f"reference+{field.name}={getattr(new, field.name)}"] = (changed[0], changed[1])
    chosen["suite"] = suite
    return chosen


def extra_set(classes: list[str], config: Any) -> tuple[np.ndarray, np.ndarray]:
    """The ``extra/`` images as model input and their true labels (see the data README)."""
    from planets_mlops.preprocess import preprocess_image

    files = sorted((DATA / "extra").glob("*.jpg"))
    labels = []
    for path in files:
        stem = path.stem[::-1]
        name = base64.urlsafe_b64decode(stem + "=" * (-len(stem) % 4)).decode()
        labels.append(classes.index(name.rsplit("_", 1)[0]))
    return np.stack([preprocess_image(path, config) for path in files]), np.asarray(labels)


def one_run(work: Path, name: str, prepare: Any, train: Any, seed: int) -> dict[str, Any]:
    """Prepare, train and score one recipe at one seed."""
    from planets_mlops.model_folder import predict_outputs
    from planets_mlops.prepare import prepare_dataset
    from planets_mlops.prepared import load_manifest, load_split
    from planets_mlops.train import train_model

    prepare = dataclasses.replace(prepare, seed=seed)
    train = dataclasses.replace(train, seed=seed)
    prepared = work / f"prepared-{seed}-{prepare.grayscale}-{prepare.image_size}"
    if not (prepared / "manifest.json").is_file():
        prepare_dataset(DATA / "raw", prepared, prepare)
    model = work / f"model-{name}-{seed}"
    wall, cpu = time.monotonic(), time.process_time()
    train_model(prepared, model, train)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    images, labels = load_split(prepared, "validation")
    classes = load_manifest(prepared)["classes"]
    extra_images, extra_labels = extra_set(classes, prepare.preprocess_config())
    val_logits, _ = predict_outputs(model, images)
    extra_logits, _ = predict_outputs(model, extra_images)
    return {
        "recipe": name,
        "seed": seed,
        "val_accuracy": float(np.mean(val_logits.argmax(axis=1) == labels)),
        "extra_accuracy": float(np.mean(extra_logits.argmax(axis=1) == extra_labels)),
        "train_wall_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="5241,1,2", help="comma-separated seeds (default 5241,1,2)")
    parser.add_argument("--steps", action="store_true", help="also each change of the suite on its own")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    chosen = recipes(args.steps)
    for name, (prepare, train) in chosen.items():
        print(f"{name}: {prepare}\n    {train}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-recipe-") as tmp:
        for turn, seed in enumerate(seeds):
            names = list(chosen)
            for name in names if turn % 2 == 0 else names[::-1]:
                result = one_run(Path(tmp), name, *chosen[name], seed)
                results.append(result)
                print(
                    f"seed {seed:5d}  {name:40s} val_accuracy {result['val_accuracy']:.4f}  extra_accuracy "
                    f"{result['extra_accuracy']:.4f}  train {result['train_wall_s']:6.1f} s wall "
                    f"{result['train_cpu_s']:6.1f} s CPU",
                    flush=True,
                )
    print(f"\n{'recipe':40s} min val_accuracy  min extra_accuracy  mean wall s  mean CPU s")
    summary = {}
    for name in chosen:
        rows = [r for r in results if r["recipe"] == name]
        summary[name] = {
            "min_val_accuracy": min(r["val_accuracy"] for r in rows),
            "min_extra_accuracy": min(r["extra_accuracy"] for r in rows),
            "mean_train_wall_s": statistics.mean(r["train_wall_s"] for r in rows),
            "mean_train_cpu_s": statistics.mean(r["train_cpu_s"] for r in rows),
        }
        line = summary[name]
        print(
            f"{name:40s} {line['min_val_accuracy']:16.4f}  {line['min_extra_accuracy']:18.4f}  "
            f"{line['mean_train_wall_s']:11.1f}  {line['mean_train_cpu_s']:10.1f}"
        )
    suite, reference = summary["suite"], summary["reference"]
    print(
        f"\nsuite vs reference: val_accuracy >= {TARGETS['val_accuracy']} at every seed: "
        f"{suite['min_val_accuracy'] >= TARGETS['val_accuracy']}; "
        f"extra_accuracy >= {TARGETS['extra_accuracy']}: "
        f"{suite['min_extra_accuracy'] >= TARGETS['extra_accuracy']}; training time ratio "
        f"{suite['mean_train_wall_s'] / reference['mean_train_wall_s']:.2f} wall, "
        f"{suite['mean_train_cpu_s'] / reference['mean_train_cpu_s']:.2f} CPU"
    )
    document = {"seeds": seeds, "runs": results, "summary": summary}
    if args.json:
        args.json.write_text(json.dumps(document, indent=1))
    print(json.dumps(document, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
