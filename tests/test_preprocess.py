"""The shared bytes-to-tensor function: exactness against TensorFlow, and bad input."""

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from planets_mlops.errors import DataError, InvalidParameterError
from planets_mlops.preprocess import PreprocessConfig, decode_image, preprocess_image, resize_bilinear

RAW = Path(__file__).resolve().parents[1] / "data" / "planets" / "raw"
SAMPLES = [sorted((RAW / c).iterdir())[i] for c in ("Earth", "Saturn", "Pluto") for i in (0, 7)]


def _png(mode: str, size=(50, 70), color=128) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color if mode in ("L", "P") else (color,) * len(mode)).save(buffer, "PNG")
    return buffer.getvalue()


def test_matches_tensorflow_reference_bit_for_bit():
    """The reference experiment's TF path: decode_jpeg(channels=1) + bilinear resize + 1/255."""
    import tensorflow as tf

    for path in SAMPLES:
        reference = tf.io.decode_jpeg(tf.io.read_file(str(path)), channels=1)
        reference = tf.image.resize(reference, (32, 32), method="bilinear", antialias=False) * (1 / 255)
        ours = preprocess_image(path)
        assert ours.dtype == np.float32 and ours.shape == (32, 32, 1)
        assert np.array_equal(ours, reference.numpy()), path


def test_bytes_path_and_file_give_identical_tensors():
    path = SAMPLES[0]
    data = path.read_bytes()
    from_path = preprocess_image(path)
    assert np.array_equal(from_path, preprocess_image(data))
    assert np.array_equal(from_path, preprocess_image(io.BytesIO(data)))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "LA"])
def test_any_colour_mode_and_size(mode):
    tensor = preprocess_image(_png(mode))
    assert tensor.shape == (32, 32, 1)
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0


def test_rgb_config_gives_three_channels():
    tensor = preprocess_image(SAMPLES[0], PreprocessConfig(image_size=16, grayscale=False))
    assert tensor.shape == (16, 16, 3)


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "0 bytes"),
        (b"this is not an image", "Cannot decode"),
        (SAMPLES[0].read_bytes()[:300], "Cannot decode"),
    ],
    ids=["empty", "not-an-image", "truncated-jpeg"],
)
def test_bad_input_names_the_problem(data, fragment):
    with pytest.raises(DataError, match=fragment):
        decode_image(data)


@pytest.mark.parametrize("size", [0, -3])
def test_image_size_must_be_positive(size):
    with pytest.raises(InvalidParameterError, match="image_size"):
        PreprocessConfig(image_size=size)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 80), width=st.integers(1, 80), size=st.integers(1, 40), value=st.integers(0, 255)
)
def test_resize_keeps_constant_images_constant(height, width, size, value):
    image = np.full((height, width, 1), value, np.uint8)
    out = resize_bilinear(image, size)
    assert out.shape == (size, size, 1)
    assert np.allclose(out, value)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=0, max_size=64))
def test_random_bytes_never_crash_with_anything_but_data_error(data):
    try:
        preprocess_image(data)
    except DataError:
        pass
