"""Reference step 3: validation loss and accuracy, and the three plots.

python evaluate.py MODEL_FOLDER PREPARED_FOLDER   (writes ./evaluation)
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def history_plot(history):
    """Training and validation loss per epoch."""
    epochs = range(1, len(history["loss"]) + 1)
    figure = plt.figure(figsize=(10, 4))
    plt.plot(epochs, history["loss"], label="Training loss")
    plt.plot(epochs, history["val_loss"], label="Validation loss")
    plt.xticks(epochs)
    plt.title("Training and validation loss")
    plt.xlabel("Epochs")
    plt.ylabel("Loss")
    plt.legend()
    plt.grid(True)
    return figure


def prediction_preview(model, test, labels):
    """Ten validation images framed green (right) or red (wrong), with both labels."""
    figure = plt.figure(figsize=(10, 5), tight_layout=True)
    images, truth = next(iter(test.take(1)))
    predicted = model.predict(images)
    for i in range(10):
        plt.subplot(2, 5, i + 1)
        image = (images[i].numpy() * 255).astype("uint8")
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        true_label, pred_label = labels[int(truth[i])], labels[int(np.argmax(predicted[i]))]
        image = np.pad(image, ((1, 1), (1, 1), (0, 0)))
        channel = 1 if true_label == pred_label else 0
        image[[0, -1], :, channel] = 255
        image[:, [0, -1], channel] = 255
        plt.imshow(image)
        plt.title(f"True: {true_label}\nPred: {pred_label}")
        plt.axis("off")
    return figure


def confusion_plot(model, test, labels):
    """Row-normalised confusion matrix of the validation set."""
    figure = plt.figure(figsize=(6, 6), tight_layout=True)
    predicted = model.predict(test)
    matrix = tf.math.confusion_matrix(
        labels=tf.concat([y for _, y in test], axis=0),
        predictions=tf.argmax(predicted, axis=1),
        num_classes=len(labels),
    )
    plt.imshow(matrix / tf.reduce_sum(matrix, axis=1))
    plt.colorbar()
    plt.xticks(range(len(labels)), labels, rotation=90)
    plt.yticks(range(len(labels)), labels)
    plt.xlabel("Predicted label")
    plt.ylabel("True label")
    plt.title("Confusion matrix")
    return figure


def main(model_dir: Path, prepared: Path) -> None:
    plots = Path("evaluation") / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    test = tf.data.Dataset.load(str(prepared / "test"))
    labels = json.loads((prepared / "labels.json").read_text())
    model = tf.keras.models.load_model(model_dir / "model.keras")
    history = np.load(model_dir / "history.npy", allow_pickle=True).item()
    val_loss, val_acc = model.evaluate(test)
    print(f"Validation loss: {val_loss:.2f}\nValidation accuracy: {val_acc * 100:.2f}%")
    Path("evaluation/metrics.json").write_text(json.dumps({"val_loss": val_loss, "val_acc": val_acc}))
    history_plot(history).savefig(plots / "training_history.png")
    prediction_preview(model, test, labels).savefig(plots / "pred_preview.png")
    confusion_plot(model, test, labels).savefig(plots / "confusion_matrix.png")
    print(f"Evaluation metrics and plot files saved at {Path('evaluation').absolute()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
