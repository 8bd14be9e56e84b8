"""Benchmark: prepare and train at 1x, 4x, 16x and 64x the bundled data set.

Each scale is the bundled 1,500 images, each repeated N times with a small change (copy k
brightens every pixel by k % 7 and is saved again as JPEG, so no two files are the same
bytes or pixels). Prepare and train each run in a child process of their own, so the peak
resident memory (``ru_maxrss`` of that child) is theirs alone; wall time is per image of
the scale. The copies are written once (not timed) under the work folder; a scale's
prepared shards are removed after its training.

Training streams its shards (memory-mapped, one batch at a time) and the guard and the
monitoring reference read them in chunks of ``planets_mlops.train.GUARD_CHUNK`` images, so
memory stays flat while the data grows.

    nice -n 10 .venv/bin/python -m benchmarks.bench_scale [--scales 1,4,16,64] [--epochs 1]
        [--conv-size 8 --dense-size 16] [--work DIR]

On a shared 2-core machine, run it in the background and keep ``--epochs 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "planets" / "raw"


def make_copies(work: Path, copies: int) -> Path:
    """``work/pool/<class>/<stem>_<k>.jpg`` for k < ``copies`` (k = 0: the file as it is)."""
    import numpy as np
    from PIL import Image

    pool = work / "pool"
    for source in sorted(DATA.glob("*/*.jpg")):
        folder = pool / source.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        first = folder / f"{source.stem}_0.jpg"
        if not first.exists():
            first.write_bytes(source.read_bytes())
        missing = [k for k in range(1, copies) if not (folder / f"{source.stem}_{k}.jpg").exists()]
        if not missing:
            continue
        pixels = np.asarray(Image.open(source).convert("RGB"), np.int16)
        for k in missing:
            changed = np.clip(pixels + k % 7 + 1, 0, 255).astype(np.uint8)
            Image.fromarray(changed).save(folder / f"{source.stem}_{k}.jpg", quality=92)
    return pool


def scale_tree(work: Path, pool: Path, scale: int) -> Path:
    """A class-per-folder tree of hard links to copies 0..scale-1 of every image."""
    root = work / f"raw-{scale}x"
    for folder in sorted(pool.iterdir()):
        target = root / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for path in folder.glob("*.jpg"):
            if int(path.stem.rsplit("_", 1)[1]) < scale and not (target / path.name).exists():
                os.link(path, target / path.name)
    return root


def child(args: list[str]) -> dict:
    """Run ``python -m benchmarks.bench_scale --child ...``; its JSON line (images, seconds, peak MB)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_scale", "--child", *args], stdout=subprocess.PIPE, text=True
    )
    if done.returncode:
        raise SystemExit(f"child {args[:2]} failed with exit code {done.returncode}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_child(kind: str, raw: str, prepared: str, model: str, epochs: int, conv: int, dense: int) -> None:
    """In the child: prepare or train, then print images, seconds and this process's peak RSS."""
    from planets_mlops.knobs import PrepareParams, TrainParams

    started = time.monotonic()
    if kind == "prepare":
        from planets_mlops.prepare import prepare_dataset

        manifest = prepare_dataset(Path(raw), Path(prepared), PrepareParams()).manifest
        images = sum(split["count"] for split in manifest["splits"].values())
    else:
        from planets_mlops.train import train_model

        result = train_model(
            Path(prepared), Path(model), TrainParams(epochs=epochs, conv_size=conv, dense_size=dense)
        )
        images = result.train_images + result.validation_images
    seconds = time.monotonic() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"images": images, "seconds": seconds, "peak_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,4,16,64")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--conv-size", type=int, default=8)
    parser.add_argument("--dense-size", type=int, default=16)
    parser.add_argument("--work", default="", help="work folder (default: a new temporary one)")
    parser.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, raw, prepared, model, epochs, conv, dense = args.child
        run_child(kind, raw, prepared, model, int(epochs), int(conv), int(dense))
        return
    scales = [int(s) for s in args.scales.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder {work}; making {max(scales)} copies of each bundled image ...", flush=True)
    pool = make_copies(work, max(scales))
    print(
        f"| scale | images | prepare s | prepare ms/image | prepare peak MB | train s "
        f"| train ms/image | train peak MB |   (epochs={args.epochs}, conv {args.conv_size}, "
        f"dense {args.dense_size})",
        flush=True,
    )
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for scale in scales:
        raw = scale_tree(work, pool, scale)
        prepared, model = work / f"prepared-{scale}x", work / f"model-{scale}x"
        common = [str(args.epochs), str(args.conv_size), str(args.dense_size)]
        prep = child(["prepare", str(raw), str(prepared), str(model), *common])
        train = child(["train", str(raw), str(prepared), str(model), *common])
        print(
            f"| {scale}x | {prep['images']} | {prep['seconds']:.1f} | "
            f"{1000 * prep['seconds'] / prep['images']:.2f} | {prep['peak_mb']:.0f} | "
            f"{train['seconds']:.1f} | {1000 * train['seconds'] / train['images']:.2f} | "
            f"{train['peak_mb']:.0f} |",
            flush=True,
        )
        subprocess.run(["rm", "-rf", str(prepared), str(model)], check=True)


if __name__ == "__main__":
    main()
