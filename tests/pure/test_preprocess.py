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
from tests.support.fixtures.data import PLANETS

RAW = Path(__file__).resolve().parents[2] / "data" / "planets" / "raw"
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


def _four_corner_resize(image: np.ndarray, size: int) -> np.ndarray:
    """The resize as first written: each neighbour gathered and interpolated on its own."""
    from planets_mlops.preprocess import _resize_axis_weights

    y_lo, y_hi, y_w = _resize_axis_weights(image.shape[0], size)
    x_lo, x_hi, x_w = _resize_axis_weights(image.shape[1], size)
    top_left, top_right = (image[y_lo][:, x].astype(np.float32) for x in (x_lo, x_hi))
    bottom_left, bottom_right = (image[y_hi][:, x].astype(np.float32) for x in (x_lo, x_hi))
    top = top_left + (top_right - top_left) * x_w[None, :, None]
    bottom = bottom_left + (bottom_right - bottom_left) * x_w[None, :, None]
    return top + (bottom - top) * y_w[:, None, None]


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 140),
    width=st.integers(1, 140),
    channels=st.sampled_from([1, 3]),
    size=st.integers(1, 64),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_one_gather_resize_gives_the_bits_of_four_separate_ones(height, width, channels, size, seed):
    image = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    expected = _four_corner_resize(image, size)
    for layout in (image, np.asfortranarray(image)):
        out = resize_bilinear(layout, size)
        assert out.dtype == np.float32 and out.shape == expected.shape
        assert out.tobytes() == expected.tobytes()


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=0, max_size=64))
def test_random_bytes_never_crash_with_anything_but_data_error(data):
    try:
        preprocess_image(data)
    except DataError:
        pass


# --- One decoder, one set of limits: high bit depth, formats, sizes ---------------------


@pytest.mark.parametrize("grayscale", [True, False], ids=["gray", "rgb"])
@pytest.mark.parametrize("path", SAMPLES[::2], ids=lambda p: p.parent.name)
def test_16_bit_pngs_give_the_tensor_of_their_8_bit_original(path, grayscale):
    """v * 257 stored as 16 bits is v: Pillow's own I;16 -> L conversion clipped it at 255."""
    from planets_mlops.app.dev import hostile_images as hostile

    config = PreprocessConfig(grayscale=grayscale)
    rgb = decode_image(path.read_bytes(), grayscale=False)
    gray = hostile.luma(path)
    cases = [
        (hostile.encode(Image.fromarray(gray, "L"), "PNG"), hostile.png16(gray.astype(np.uint16) * 257)),
        (hostile.encode(Image.fromarray(rgb, "RGB"), "PNG"), hostile.png16(rgb.astype(np.uint16) * 257)),
    ]
    for eight, sixteen in cases:
        assert np.array_equal(preprocess_image(sixteen, config), preprocess_image(eight, config))


def test_16_bit_values_are_scaled_not_clipped():
    from planets_mlops.app.dev import hostile_images as hostile

    ramp = np.arange(0, 65536, 257, dtype=np.uint16).reshape(16, 16)
    assert np.array_equal(decode_image(hostile.png16(ramp))[:, :, 0], (ramp // 257).astype(np.uint8))


@pytest.mark.parametrize(
    "build", ["corrupt_dds", "corrupt_ico", "tiff_bomb", "float_tiff"], ids=lambda name: name
)
def test_only_the_data_set_formats_are_opened(build):
    from planets_mlops.app.dev import hostile_images as hostile

    with pytest.raises(DataError, match="not a file of an accepted format"):
        preprocess_image(getattr(hostile, build)())


def test_an_image_over_the_limits_is_refused_from_its_header():
    from planets_mlops.app.dev import hostile_images as hostile
    from planets_mlops.imaging import LIMITS, read_header

    with pytest.raises(DataError, match=r"too large: 8800x8800 pixels"):
        read_header(hostile.huge_png(8800))
    with pytest.raises(DataError, match="too large"):
        preprocess_image(hostile.png_from_rows(LIMITS.max_side + 1, 1, 8, 0, b"\x00" * (LIMITS.max_side + 1)))
    header = read_header(hostile.gradient_png(2048))
    assert (header.format, header.width, header.height, header.pixels) == (
        "PNG",
        2048,
        2048,
        LIMITS.max_pixels,
    )


def test_a_progressive_jpeg_scan_bomb_is_refused_from_its_markers():
    """Issue 26, defect 1: 512x512 is few pixels, but 100,000 scans cost 100,000 passes.

    The scans are counted from the JPEG markers, before anything is decoded, by every
    step that opens images (serving, prepare_dataset, the Label Studio import).
    """
    import time

    from planets_mlops.app.dev import hostile_images as hostile
    from planets_mlops.imaging import LIMITS, check_image, read_header

    bomb = hostile.progressive_scan_bomb(512, 100_000)
    started = time.monotonic()
    with pytest.raises(DataError, match=f"more than {LIMITS.max_scans} JPEG scans"):
        read_header(bomb)
    with pytest.raises(DataError, match="JPEG scans"):
        preprocess_image(bomb)
    assert "JPEG scans" in (check_image(bomb) or "")
    # Refused from the markers: far quicker than the minutes a decode of it takes.
    assert time.monotonic() - started < 30
    photo = Image.open(sorted((PLANETS / "extra").glob("*.jpg"))[0]).convert("RGB")
    progressive = read_header(hostile.encode(photo, "JPEG", progressive=True))
    assert (progressive.progressive, progressive.scans) == (True, 10)
    assert progressive.cost == 10 * progressive.pixels
    baseline = read_header(hostile.encode(photo, "JPEG"))
    assert (baseline.progressive, baseline.scans) == (False, 1)
    # Within the limit, a few extra scans still decode (to the same pixels: they add nothing).
    assert np.array_equal(
        preprocess_image(hostile.progressive_scan_bomb(64, 50)),
        preprocess_image(hostile.progressive_scan_bomb(64, 0)),
    )


def test_jpeg_scans_stop_counting_at_the_limit_and_skip_stuffed_bytes():
    from planets_mlops.app.dev import hostile_images as hostile
    from planets_mlops.imaging import jpeg_scans

    assert jpeg_scans(hostile.progressive_scan_bomb(64, 1000), 100) == (101, True)
    # Entropy-coded data of stuffed 0xFF00 pairs hides no marker.
    sos = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    assert jpeg_scans(b"\xff\xd8" + sos + b"\xff\x00" * 100_000 + b"\xff\xd9", 100) == (1, False)
    # Thousands of tiny segments are answered as too many scans, without walking them all.
    comments = b"\xff\xfe\x00\x02" * 100_000
    assert jpeg_scans(b"\xff\xd8" + comments + sos + b"\xff\xd9", 100) == (101, False)


def test_an_animated_gif_decodes_its_first_frame():
    from planets_mlops.app.dev import hostile_images as hostile

    tensor = preprocess_image(hostile.animated_gif(300, side=32), PreprocessConfig(image_size=32))
    assert np.array_equal(tensor, np.zeros((32, 32, 1), np.float32))


def test_check_image_gives_the_decoder_s_reason(tmp_path):
    from planets_mlops.app.dev import hostile_images as hostile
    from planets_mlops.imaging import check_image

    big = tmp_path / "big.png"
    big.write_bytes(hostile.huge_png(5000))
    assert "too large" in check_image(big)
    assert check_image(SAMPLES[0]) is None


def test_import_prepare_and_serving_accept_and_refuse_the_same_files(tmp_path):
    """One decoder, one set of limits: the Label Studio import, prepare's data set check
    and the served decoder agree on every file, hostile or not."""
    from planets_mlops.app.dev import hostile_images as hostile
    from planets_mlops.dataset import check_image
    from planets_mlops.labelstudio.merge import image_extension

    files = {
        "photo.jpg": SAMPLES[1].read_bytes(),
        "16-bit.png": hostile.png16(np.full((40, 40), 3000, np.uint16)),
        "animated.gif": hostile.animated_gif(20),
        "10000x10000.png": hostile.huge_png(10000),
        "5000x5000.png": hostile.huge_png(5000),
        "truncated.png": hostile.truncated(hostile.gradient_png(256)),
        "corrupt.dds": hostile.corrupt_dds(),
        "bomb.tiff": hostile.tiff_bomb(),
    }
    for name, blob in files.items():
        path = tmp_path / name
        path.write_bytes(blob)
        served = True
        try:
            preprocess_image(blob)
        except DataError:
            served = False
        assert (image_extension(blob) is not None) == (check_image(path) is None) == served, name
    assert image_extension(files["photo.jpg"]) == ".jpg"
    assert image_extension(files["5000x5000.png"]) is None


def test_the_import_refuses_what_prepare_refuses_in_a_fresh_process(tmp_path):
    """As the import step runs it (no other module loaded first): a 97 KB PNG of
    10000x10000 must not be imported, since every later prepare would refuse it."""
    import subprocess
    import sys

    from planets_mlops.app.dev import hostile_images as hostile

    path = tmp_path / "huge.png"
    path.write_bytes(hostile.huge_png(10000))
    code = (
        "import sys; from pathlib import Path; from planets_mlops.labelstudio.merge import image_extension; "
        "print(image_extension(Path(sys.argv[1]).read_bytes()))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "None"
