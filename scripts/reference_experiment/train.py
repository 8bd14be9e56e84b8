"""Reference step 2: the one-convolution CNN trained on the prepared data, saved with its history.

python train.py PREPARED_FOLDER MODEL_FOLDER   (reads ./params.yaml, prepare and train)
"""

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
import yaml
from seed import seed_everything


def cnn(shape, conv_size, dense_size, classes):
    """Conv2D(3x3, relu) -> MaxPool(3x3) -> Flatten -> Dense(relu) -> Dense(logits)."""
    return tf.keras.Sequential(
        [
            tf.keras.Input(shape=shape),
            tf.keras.layers.Conv2D(conv_size, (3, 3), activation="relu"),
            tf.keras.layers.MaxPooling2D((3, 3)),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(dense_size, activation="relu"),
            tf.keras.layers.Dense(classes),
        ]
    )


def main(prepared: Path, out: Path) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    prepare, train = params["prepare"], params["train"]
    seed_everything(train["seed"])
    train_ds = tf.data.Dataset.load(str(prepared / "train"))
    test_ds = tf.data.Dataset.load(str(prepared / "test"))
    json.loads((prepared / "labels.json").read_text())
    shape = (*prepare["image_size"], 1 if prepare["grayscale"] else 3)
    model = cnn(shape, train["conv_size"], train["dense_size"], train["output_classes"])
    model.compile(
        optimizer=tf.keras.optimizers.Adam(train["lr"]),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
    )
    model.summary()
    model.fit(train_ds, epochs=train["epochs"], validation_data=test_ds)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    np.save(out / "history.npy", model.history.history)
    print(f"Model saved at {out.absolute()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
