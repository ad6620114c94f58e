"""Binary masks <-> COCO run-length encoding (the encoding used in ``perception_msgs/Region``).

The wire format is COCO's *uncompressed* RLE: ``{"size": [H, W], "counts": [r0, r1, ...]}``
with runs over the mask in column-major (Fortran) order, alternating 0-runs and 1-runs and
starting with a 0-run (which may be 0). ``pycocotools.mask.frPyObjects`` reads it directly.
Encoding reads only the mask's box, vectorised numpy over the column-major crop (exactly
pycocotools' counts, which the tests compare against); decoding uses pycocotools, or
:func:`decode_crop` for just the columns a region touches.
"""

from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as mask_utils


def encode_mask(mask: np.ndarray, box: np.ndarray | None = None) -> tuple[int, int, list[int]]:
    """Encode one ``HxW`` mask (bool or 0/1) as ``(H, W, counts)``; counts sum to ``H*W``.

    ``box``: optional XYXY (exclusive max corner, pixels) that covers every set pixel, e.g.
    ``Segmentation.boxes_xyxy[i]``: only that part of the mask is read. Without it the tight box
    is found first (one pass over the mask).
    """
    if mask.ndim != 2:
        raise ValueError(f"encode_mask expects an HxW mask, got shape {mask.shape}")
    h, w = mask.shape
    if h == 0 or w == 0:
        return h, w, []
    mask = mask.astype(bool, copy=False)
    x0, y0, x1, y1 = tight_box(mask) if box is None else pixel_box(box, h, w)
    return h, w, _counts_in_box(mask, x0, y0, x1, y1)


def encode_masks(masks: np.ndarray, boxes: np.ndarray | None = None) -> list[list[int]]:
    """Encode ``NxHxW`` masks; returns the counts of each (``boxes``: see :func:`encode_mask`)."""
    return [encode_mask(m, None if boxes is None else boxes[i])[2] for i, m in enumerate(masks)]


def pixel_box(box, h: int, w: int) -> tuple[int, int, int, int]:
    """Integer ``x0, y0, x1, y1`` (exclusive max) covering float XYXY ``box``, inside ``h x w``."""
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    return x0, y0, max(x0, x1), max(y0, y1)


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight ``x0, y0, x1, y1`` (exclusive max) of an ``HxW`` bool mask's set pixels; all 0 when
    none is set. OpenCV's ``boundingRect`` on the bytes: one pass, several times numpy's speed."""
    u8 = np.ascontiguousarray(mask).view(np.uint8)
    x, y, bw, bh = cv2.boundingRect(u8)
    return x, y, x + bw, y + bh


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    """``(N, 4)`` int64 :func:`tight_box` of every mask of ``(N, H, W)`` bool ``masks``."""
    return np.array([tight_box(m) for m in masks], dtype=np.int64).reshape(-1, 4)


def _counts_in_box(mask: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> list[int]:
    """COCO counts of a bool ``HxW`` mask whose set pixels all lie in the box.

    Vectorised numpy over the column-major box crop (pycocotools' encoder needs a Fortran copy
    of the whole mask and its integer counts come back as a compressed string). Each column of
    the crop is padded with a 0 above and below, so every change of value inside the padded,
    flattened crop is a run boundary at pixel ``(x, y)`` = column-major index ``x * H + y``.
    """
    h, w = mask.shape
    if x1 <= x0 or y1 <= y0:
        return [h * w]
    bh = y1 - y0
    cols = np.zeros((x1 - x0, bh + 2), dtype=np.uint8)
    # OpenCV's SIMD transpose straight into the padded buffer (about twice numpy's .T copy)
    got = cv2.transpose(mask[y0:y1, x0:x1].view(np.uint8), dst=cols[:, 1:-1])
    if not np.shares_memory(got, cols):  # OpenCV gave a new array instead of writing in place
        cols[:, 1:-1] = got
    flat = cols.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1])
    col, row = np.divmod(change, bh + 2)
    pos = (x0 + col) * h + (y0 + row)
    if y0 == 0 and y1 == h and pos.size:  # a run leaving a column's bottom goes on at the next top
        dup = np.flatnonzero(pos[1:] == pos[:-1])
        keep = np.ones(pos.size, dtype=bool)
        keep[dup] = keep[dup + 1] = False
        pos = pos[keep]
    counts = np.diff(np.concatenate(([0], pos, [h * w])))
    if counts.size > 1 and counts[-1] == 0:  # the last 1-run reaches the last pixel
        counts = counts[:-1]
    return counts.tolist()


def _counts_of(fortran_mask_u8: np.ndarray) -> list[int]:
    """Integer run lengths of an HxW Fortran-ordered uint8 mask (via pycocotools; the
    reference :func:`encode_mask` is tested against)."""
    rle = mask_utils.encode(fortran_mask_u8[:, :, None])[0]
    # Decompress pycocotools' LEB128-like string into integers (the inverse of rleToString).
    return _decompress_counts(rle["counts"])


def _decompress_counts(s: bytes | str) -> list[int]:
    """Decode pycocotools' compressed counts string (``rleFrString`` in maskApi.c)."""
    if isinstance(s, str):
        s = s.encode("ascii")
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = s[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _checked_counts(height: int, width: int, counts) -> np.ndarray:
    c = np.asarray(counts, dtype=np.int64).reshape(-1)
    if np.any(c < 0):
        raise ValueError("RLE counts must be non-negative")
    if int(c.sum()) != height * width:
        raise ValueError(
            f"RLE counts sum to {int(c.sum())}, expected height*width = {height}*{width} = {height * width}"
        )
    return c


def decode_mask(height: int, width: int, counts: list[int] | np.ndarray) -> np.ndarray:
    """Decode ``counts`` back to an ``HxW`` bool mask; validates that runs cover the image."""
    c = _checked_counts(height, width, counts)
    if height == 0 or width == 0:
        return np.zeros((height, width), dtype=bool)
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": c.tolist()}, height, width)
    return mask_utils.decode(rle).astype(bool)


def decode_crop(
    height: int, width: int, counts: list[int] | np.ndarray
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Tight box ``(x0, y0, x1, y1)`` (exclusive max) of the set pixels of ``counts`` and the
    ``(y1 - y0, x1 - x0)`` bool mask inside it (box 0 and a 0x0 mask when none is set).

    Only the columns the runs touch are decoded (marks at run starts and ends, then a running
    sum), so the cost follows the region's size, not the image's. Validates like
    :func:`decode_mask`.
    """
    c = _checked_counts(height, width, counts)
    ends = np.cumsum(c)
    starts, stops = ends[0:-1:2], ends[1::2]  # 1-run i covers [starts[i], stops[i])
    starts = starts[: stops.size]
    nonempty = stops > starts
    starts, stops = starts[nonempty], stops[nonempty]
    if starts.size == 0:
        return (0, 0, 0, 0), np.zeros((0, 0), dtype=bool)
    h = height
    x0, x1 = int(starts[0] // h), int((stops[-1] - 1) // h + 1)
    marks = np.zeros((x1 - x0) * h + 1, dtype=np.int8)
    marks[starts - x0 * h] += 1
    marks[stops - x0 * h] -= 1
    band = np.cumsum(marks[:-1], dtype=np.int8).astype(bool).reshape(x1 - x0, h).T
    if np.any(starts // h != (stops - 1) // h):  # a run crosses columns: it spans whole rows
        y0, y1 = 0, h
    else:
        y0, y1 = int((starts % h).min()), int(((stops - 1) % h).max() + 1)
    return (x0, y0, x1, y1), band[y0:y1]
