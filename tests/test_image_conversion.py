"""Image message conversion: a grid of encodings, sizes and row paddings round-trips exactly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from perception_nodes.ros.image_conversion import (
    ENCODINGS,
    ImageConversionError,
    compressed_to_rgb8,
    depth_to_meters,
    image_msg_to_numpy,
    numpy_to_image_msg,
    to_rgb8,
)

pytestmark = pytest.mark.ros


def _random(encoding: str, h: int, w: int, seed: int = 0) -> np.ndarray:
    dtype, channels = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, channels)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize(
    "encoding",
    ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1", "32FC1", "64FC1", "rgb16"],
)
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (480, 640), (7, 1)])
@pytest.mark.parametrize("padding", [0, 3, 64])
def test_round_trip_exact(encoding, shape, padding):
    arr = _random(encoding, *shape)
    msg = numpy_to_image_msg(arr, encoding, step_padding=padding)
    assert msg.step == arr[0].nbytes + padding
    back = image_msg_to_numpy(msg)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_big_endian_16bit_is_read_correctly():
    arr = np.array([[1, 256, 65535]], dtype=np.uint16)
    msg = numpy_to_image_msg(arr, "16UC1")
    msg.data = arr.astype(">u2").tobytes()
    msg.is_bigendian = 1
    np.testing.assert_array_equal(image_msg_to_numpy(msg), arr)


def test_colour_conversions_to_rgb8():
    rgb = skimage.data.astronaut()
    assert np.array_equal(to_rgb8(rgb[:, :, ::-1], "bgr8"), rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    assert np.array_equal(to_rgb8(rgba, "rgba8"), rgb)
    assert np.array_equal(to_rgb8(rgba[:, :, [2, 1, 0, 3]], "bgra8"), rgb)
    gray = rgb[:, :, 0]
    assert np.array_equal(to_rgb8(gray, "mono8")[:, :, 1], gray)
    assert np.array_equal(to_rgb8(gray.astype(np.uint16) << 8, "mono16")[:, :, 2], gray)
    with pytest.raises(ImageConversionError, match="not a colour"):
        to_rgb8(np.zeros((2, 2), np.float32), "32FC1")


def test_depth_to_meters_marks_invalid_as_nan():
    mm = np.array([[0, 1500], [65535, 250]], dtype=np.uint16)
    m = depth_to_meters(mm, "16UC1")
    assert np.isnan(m[0, 0]) and m[0, 1] == pytest.approx(1.5) and m[1, 1] == pytest.approx(0.25)
    f = np.array([[np.nan, np.inf], [-1.0, 2.0]], dtype=np.float32)
    m = depth_to_meters(f, "32FC1")
    assert np.isnan(m[0]).all() and np.isnan(m[1, 0]) and m[1, 1] == 2.0
    with pytest.raises(ImageConversionError, match="depth must be"):
        depth_to_meters(f, "rgb8")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: setattr(m, "encoding", "yuv422_yuy2_weird"), "unsupported encoding"),
        (lambda m: setattr(m, "width", 0), "empty image"),
        (lambda m: setattr(m, "step", 2), "step 2 is smaller"),
        (lambda m: setattr(m, "data", bytes(10)), "data holds 10 bytes"),
    ],
)
def test_bad_messages_raise_clear_errors(mutate, message):
    msg = numpy_to_image_msg(_random("rgb8", 4, 4), "rgb8")
    mutate(msg)
    with pytest.raises(ImageConversionError, match=message):
        image_msg_to_numpy(msg)


def test_numpy_to_image_msg_rejects_wrong_dtype_and_channels():
    with pytest.raises(ImageConversionError, match="needs dtype uint8"):
        numpy_to_image_msg(np.zeros((2, 2, 3), np.float32), "rgb8")
    with pytest.raises(ImageConversionError, match="needs HxWx3"):
        numpy_to_image_msg(np.zeros((2, 2, 4), np.uint8), "rgb8")


def test_compressed_jpeg_and_png_decode():
    from sensor_msgs.msg import CompressedImage

    rgb = skimage.data.chelsea()
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
    assert ok
    out = compressed_to_rgb8(CompressedImage(format="png", data=png.tobytes()))
    np.testing.assert_array_equal(out, rgb)
    ok, jpg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = compressed_to_rgb8(CompressedImage(format="jpeg", data=jpg.tobytes()))
    assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb).mean() < 4
    with pytest.raises(ImageConversionError, match="could not decode"):
        compressed_to_rgb8(CompressedImage(format="jpeg", data=b"not an image at all"))
    with pytest.raises(ImageConversionError, match="no data"):
        compressed_to_rgb8(CompressedImage(format="jpeg", data=b""))
