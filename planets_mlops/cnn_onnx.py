"""The reference CNN as an ONNX graph, written from its weights without TensorFlow.

Training's CNN (:func:`planets_mlops.train.build_model`) is Conv2D(3x3, relu, valid) ->
MaxPool(valid) -> Flatten -> Dense(relu) -> Dense. :func:`cnn_graph` writes the graph that
Keras' own ONNX export (tf2onnx) writes for it, node for node in the same computing ops
(Transpose to channels-first, Conv with its bias, Relu, MaxPool, Transpose back, Reshape,
MatMul + Add, Relu, MatMul + Add), so ONNX Runtime computes the same numbers to the bit
(tests/component/test_train_evaluate.py compares both on a trained model). Only the shape
arithmetic for the Reshape is a constant here. It needs only NumPy and ``onnx``: the model
folder is finished in a process that never imports TensorFlow (``planets_mlops.train``
trains in a child process), and the converter's memory and time are not spent.

:func:`cnn_spec` reads the weights off a Keras model and says None for any other layout,
which is then exported by Keras as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

OPSET = 15
SPEC_FILE = "cnn_weights.npz"
"""The weights and layout training's child process hands over (removed once exported)."""


def cnn_spec(model: Any) -> dict[str, np.ndarray] | None:
    """The layout and weights of a Keras reference CNN, or None when ``model`` is another layout.

    Args:
        model: A built Keras model.

    Returns:
        ``input_shape`` (H, W, C), ``pool`` (the pooling window and stride) and the six
        weight arrays (``conv_kernel``, ``conv_bias``, ``dense_kernel``, ``dense_bias``,
        ``logits_kernel``, ``logits_bias``), as NumPy arrays.
    """
    kinds = [type(layer).__name__ for layer in model.layers]
    if kinds != ["Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]:
        return None
    conv, pool, _, dense, logits = model.layers
    plain_conv = (
        conv.get_config().get("activation") == "relu"
        and conv.padding == "valid"
        and tuple(conv.strides) == (1, 1)
        and tuple(conv.dilation_rate) == (1, 1)
        and conv.groups == 1
        and conv.use_bias
        and conv.data_format == "channels_last"
    )
    plain_pool = (
        pool.padding == "valid"
        and tuple(pool.strides) == tuple(pool.pool_size)
        and pool.data_format == "channels_last"
        and pool.pool_size[0] == pool.pool_size[1]
    )
    plain_dense = (
        dense.get_config().get("activation") == "relu"
        and logits.get_config().get("activation") == "linear"
        and dense.use_bias
        and logits.use_bias
    )
    if not (plain_conv and plain_pool and plain_dense):
        return None
    weights = [np.asarray(w, np.float32) for w in model.get_weights()]
    if len(weights) != 6:
        return None
    names = ("conv_kernel", "conv_bias", "dense_kernel", "dense_bias", "logits_kernel", "logits_bias")
    return {
        "input_shape": np.asarray(model.inputs[0].shape[1:], np.int64),
        "pool": np.asarray(pool.pool_size[0], np.int64),
        **dict(zip(names, weights)),
    }


def save_spec(spec: dict[str, np.ndarray], path: Path) -> None:
    """Write ``spec`` (from :func:`cnn_spec`) as one ``.npz`` file."""
    with open(path, "wb") as handle:
        np.savez(handle, **spec)  # type: ignore[arg-type]


def load_spec(path: Path) -> dict[str, np.ndarray]:
    """The spec :func:`save_spec` wrote."""
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def cnn_graph(spec: dict[str, np.ndarray], output_names: tuple[str, str], input_name: str = "image") -> Any:
    """The ONNX model of the reference CNN with ``spec``'s weights: two outputs, logits then embedding.

    Args:
        spec: From :func:`cnn_spec`.
        output_names: The names of the logits and of the embedding (the dense layer's output).
        input_name: The name of the (N, H, W, C) float input.

    Returns:
        A checked ``onnx.ModelProto`` (opset 15, a dynamic batch dimension).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    height, width, channels = (int(v) for v in spec["input_shape"])
    pool = int(spec["pool"])
    kernel = np.asarray(spec["conv_kernel"], np.float32)  # (kh, kw, C_in, C_out)
    filters = kernel.shape[3]
    flat = ((height - kernel.shape[0] + 1) // pool) * ((width - kernel.shape[1] + 1) // pool) * filters
    logits_name, embedding_name = output_names
    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), "conv_kernel"),
        numpy_helper.from_array(np.asarray(spec["conv_bias"], np.float32), "conv_bias"),
        numpy_helper.from_array(np.asarray([-1, flat], np.int64), "flat_shape"),
        numpy_helper.from_array(np.asarray(spec["dense_kernel"], np.float32), "dense_kernel"),
        numpy_helper.from_array(np.asarray(spec["dense_bias"], np.float32), "dense_bias"),
        numpy_helper.from_array(np.asarray(spec["logits_kernel"], np.float32), "logits_kernel"),
        numpy_helper.from_array(np.asarray(spec["logits_bias"], np.float32), "logits_bias"),
    ]
    nodes = [
        helper.make_node("Transpose", [input_name], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node(
            "Conv",
            ["nchw", "conv_kernel", "conv_bias"],
            ["conv"],
            kernel_shape=list(kernel.shape[:2]),
            strides=[1, 1],
            dilations=[1, 1],
            group=1,
        ),
        helper.make_node("Relu", ["conv"], ["conv_relu"]),
        helper.make_node(
            "MaxPool", ["conv_relu"], ["pooled"], kernel_shape=[pool, pool], strides=[pool, pool]
        ),
        helper.make_node("Transpose", ["pooled"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["nhwc", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "dense_kernel"], ["dense"]),
        helper.make_node("Add", ["dense", "dense_bias"], ["dense_biased"]),
        helper.make_node("Relu", ["dense_biased"], [embedding_name]),
        helper.make_node("MatMul", [embedding_name, "logits_kernel"], ["logits_product"]),
        helper.make_node("Add", ["logits_product", "logits_bias"], [logits_name]),
    ]
    classes = int(np.asarray(spec["logits_kernel"]).shape[1])
    units = int(np.asarray(spec["dense_kernel"]).shape[1])
    graph = helper.make_graph(
        nodes,
        "planets_cnn",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", height, width, channels])],
        [
            helper.make_tensor_value_info(logits_name, TensorProto.FLOAT, ["batch", classes]),
            helper.make_tensor_value_info(embedding_name, TensorProto.FLOAT, ["batch", units]),
        ],
        initializers,
    )
    model = helper.make_model(
        graph, producer_name="planets_mlops.cnn_onnx", opset_imports=[helper.make_opsetid("", OPSET)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_cnn_onnx(spec: dict[str, np.ndarray], path: Path, output_names: tuple[str, str]) -> None:
    """Write :func:`cnn_graph` of ``spec`` to ``path``."""
    import onnx

    onnx.save(cnn_graph(spec, output_names), str(path))
