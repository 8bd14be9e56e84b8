"""Reference step 1: class folders of images -> a seeded train/validation split, saved.

python prepare.py RAW_FOLDER PREPARED_FOLDER   (reads ./params.yaml, section prepare)
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402
from seed import seed_everything  # noqa: E402


def preview(dataset, labels):
    """The first ten images of the first batch with their class names."""
    figure = plt.figure(figsize=(10, 5), tight_layout=True)
    images, indices = next(iter(dataset.take(1)))
    for i in range(10):
        plt.subplot(2, 5, i + 1)
        plt.imshow(images[i].numpy().astype("uint8"), cmap="gray")
        plt.title(labels[int(indices[i])])
        plt.axis("off")
    return figure


def main(raw: Path, out: Path) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())["prepare"]
    seed_everything(params["seed"])
    train, test = tf.keras.utils.image_dataset_from_directory(
        raw,
        labels="inferred",
        label_mode="int",
        color_mode="grayscale" if params["grayscale"] else "rgb",
        batch_size=32,
        image_size=tuple(params["image_size"]),
        shuffle=True,
        seed=params["seed"],
        validation_split=params["split"],
        subset="both",
    )
    labels = train.class_names
    out.mkdir(parents=True, exist_ok=True)
    preview(train, labels).savefig(out / "preview.png")
    rescale = tf.keras.layers.Rescaling(1.0 / 255)
    train = train.map(lambda x, y: (rescale(x), y))
    test = test.map(lambda x, y: (rescale(x), y))
    (out / "labels.json").write_text(json.dumps(labels))
    tf.data.Dataset.save(train, str(out / "train"))
    tf.data.Dataset.save(test, str(out / "test"))
    print(f"Dataset saved at {out.absolute()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
