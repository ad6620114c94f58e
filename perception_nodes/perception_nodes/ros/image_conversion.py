"""``sensor_msgs/Image`` and ``CompressedImage`` <-> numpy, without cv_bridge.

Every node converts images here; none uses cv_bridge (and the package does not depend on it):
ROS 2's cv_bridge is not on PyPI, the PyPI ``cv-bridge`` is a ROS 1 port that breaks under
numpy 2 (``ndarray.tostring``), and one conversion everywhere keeps a ROS install and a pip
install behaving alike. It follows cv_bridge's conventions (the encodings below, row padding:
``step`` larger than ``width * channels * itemsize``, big-endian data: ``is_bigendian``).

Arrays are ``HxW`` (one channel) or ``HxWxC``, row-major, origin top-left.
"""

from __future__ import annotations

import numpy as np

# encoding -> (dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "rgb16": (np.dtype(np.uint16), 3),
    "bgr16": (np.dtype(np.uint16), 3),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
    "64FC1": (np.dtype(np.float64), 1),
}
DEPTH_ENCODINGS = ("16UC1", "32FC1", "mono16", "64FC1")


class ImageConversionError(ValueError):
    """An image message that cannot be converted (encoding, size, step or data length)."""


def _check_layout(
    encoding: str, height: int, width: int, step: int, data_len: int
) -> tuple[np.dtype, int]:
    if encoding not in ENCODINGS:
        raise ImageConversionError(
            f"unsupported encoding {encoding!r}; supported: {', '.join(sorted(ENCODINGS))}"
        )
    dtype, channels = ENCODINGS[encoding]
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"empty image: height={height}, width={width}")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width*channels*itemsize = {row_bytes}"
        )
    if data_len < step * height:
        raise ImageConversionError(
            f"data holds {data_len} bytes, expected step*height = {step * height}"
        )
    return dtype, channels


def image_msg_to_numpy(msg) -> np.ndarray:
    """Array of a ``sensor_msgs/Image`` (a copy; HxW or HxWxC in the message's encoding)."""
    dtype, channels = _check_layout(msg.encoding, msg.height, msg.width, msg.step, len(msg.data))
    buf = np.frombuffer(memoryview(msg.data).cast("B"), dtype=np.uint8, count=msg.step * msg.height)
    rows = buf.reshape(msg.height, msg.step)[:, : msg.width * channels * dtype.itemsize]
    wire_dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    arr = np.ascontiguousarray(rows).view(wire_dtype).astype(dtype)  # native byte order
    arr = arr.reshape(msg.height, msg.width, channels)
    return arr[:, :, 0] if channels == 1 else arr


def numpy_to_image_msg(array: np.ndarray, encoding: str, header=None, step_padding: int = 0):
    """``sensor_msgs/Image`` holding ``array`` (little-endian; ``step_padding`` extra bytes per row)."""
    from sensor_msgs.msg import Image

    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported encoding {encoding!r}")
    dtype, channels = ENCODINGS[encoding]
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] != channels:
        raise ImageConversionError(
            f"{encoding} needs HxWx{channels}, got shape {np.asarray(array).shape}"
        )
    if arr.dtype != dtype:
        raise ImageConversionError(f"{encoding} needs dtype {dtype}, got {arr.dtype}")
    h, w = arr.shape[:2]
    rows = (
        np.ascontiguousarray(arr.astype(dtype.newbyteorder("<"), copy=False))
        .reshape(h, -1)
        .view(np.uint8)
    )
    if step_padding:
        rows = np.concatenate([rows, np.zeros((h, step_padding), dtype=np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=rows.shape[1])
    if header is not None:
        msg.header = header
    msg.data = rows.tobytes()
    return msg


def to_rgb8(array: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a colour or mono image array of ``encoding`` to ``HxWx3`` uint8 RGB."""
    if encoding in ("rgb8", "8UC3"):
        return array
    if encoding == "bgr8":
        return array[:, :, ::-1].copy()
    if encoding == "rgba8":
        return array[:, :, :3].copy()
    if encoding == "bgra8":
        return array[:, :, 2::-1].copy()
    if encoding in ("mono8", "8UC1"):
        return np.repeat(array[:, :, None], 3, axis=2)
    if encoding in ("mono16", "16UC1"):
        return np.repeat((array >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
    if encoding in ("rgb16", "bgr16"):
        rgb = (array >> 8).astype(np.uint8)
        return rgb if encoding == "rgb16" else rgb[:, :, ::-1].copy()
    raise ImageConversionError(f"encoding {encoding!r} is not a colour or mono image")


def depth_to_meters(array: np.ndarray, encoding: str) -> np.ndarray:
    """Depth image -> HxW float32 meters; invalid pixels (0, NaN, inf) become NaN.

    ``16UC1``/``mono16`` are millimeters (REP 118), ``32FC1``/``64FC1`` meters.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise ImageConversionError(f"depth must be one of {DEPTH_ENCODINGS}, got {encoding!r}")
    depth = array.astype(np.float32)  # a copy, changed in place from here on
    if encoding in ("16UC1", "mono16"):
        np.divide(depth, 1000.0, out=depth)
    invalid = ~np.isfinite(depth)
    invalid |= depth <= 0
    np.copyto(depth, np.float32(np.nan), where=invalid)
    return depth


def compressed_to_rgb8(msg) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (jpeg/png) to HxWx3 uint8 RGB."""
    import cv2

    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError("compressed image holds no data")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageConversionError(
            f"could not decode compressed image (format {msg.format!r}, {data.size} bytes)"
        )
    return bgr[:, :, ::-1].copy()
