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
    """Encode ``NxHxW`` masks; returns the counts of each (``boxes``: ``(N, 4)`` XYXY, see
    :func:`encode_mask`), the same as :func:`encode_mask` of each mask.

    All masks at once: each box crop is transposed into one shared padded buffer (as
    :func:`_counts_in_box` does for one), and the run boundaries of every mask are found by
    one pass over that buffer, so the numpy calls per frame do not grow with the masks.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"encode_masks expects NxHxW masks, got shape {masks.shape}")
    n, h, w = masks.shape
    if n == 0 or h == 0 or w == 0:
        return [[] for _ in range(n)]
    masks = masks.astype(bool, copy=False)
    if boxes is None:
        box = tight_boxes(masks)
    else:
        box = pixel_boxes(np.asarray(boxes, dtype=np.float64).reshape(n, 4), h, w)
    return _counts_in_boxes(masks, box)


def pixel_boxes(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """``(N, 4)`` int64 :func:`pixel_box` of each row of ``(N, 4)`` float64 XYXY ``boxes``."""
    lo = np.maximum(np.floor(boxes[:, :2]), 0).astype(np.int64)
    hi = np.minimum(np.ceil(boxes[:, 2:]), (w, h)).astype(np.int64)
    return np.concatenate([lo, np.maximum(lo, hi)], axis=1)


def _counts_in_boxes(masks: np.ndarray, box: np.ndarray) -> list[list[int]]:
    """:func:`_counts_in_box` of every ``(N, H, W)`` bool mask in its ``(N, 4)`` int64 box.

    Mask ``i``'s crop, transposed and each column padded with a 0 above and below, is segment
    ``i`` of one uint8 buffer; a segment starts and ends with a 0, so no change of value
    crosses two segments and each change is a run boundary of one mask.
    """
    n, h, w = masks.shape
    x0, y0, x1, y1 = box.T
    empty = (x1 <= x0) | (y1 <= y0)
    cols, col_len = np.where(empty, 0, x1 - x0), y1 - y0 + 2
    start = np.concatenate(([0], np.cumsum(cols * col_len)))
    buf = np.zeros(int(start[-1]), dtype=np.uint8)
    u8 = masks.view(np.uint8)
    starts, boxes = start.tolist(), box.tolist()
    for i in np.flatnonzero(~empty).tolist():
        a, b, c, d = boxes[i]
        inner = buf[starts[i] : starts[i + 1]].reshape(c - a, d - b + 2)[:, 1:-1]
        # OpenCV's SIMD transpose straight into the padded buffer (about twice numpy's .T copy)
        got = cv2.transpose(u8[i, b:d, a:c], dst=inner)
        if got is not inner:  # OpenCV gave a new array instead of writing in place
            inner[...] = got
    change = np.flatnonzero(buf[1:] != buf[:-1])
    # the segment of each change: changes are sorted, so counts per segment and a repeat (the
    # searchsorted of every change into the segment starts was ~10x slower)
    region = np.repeat(np.arange(n), np.diff(np.searchsorted(change, start)))
    col, row = np.divmod(change - start[region], col_len[region])
    pos = (x0[region] + col) * h + (y0[region] + row)
    # a run leaving a full-height box's column at the bottom goes on at the next column's top
    dup = np.flatnonzero((pos[1:] == pos[:-1]) & (region[1:] == region[:-1]))
    dup = dup[(y0[region[dup]] == 0) & (y1[region[dup]] == h)]
    keep = np.ones(pos.size, dtype=bool)
    keep[dup] = keep[dup + 1] = False
    pos, region = pos[keep], region[keep]
    # each mask's counts: the differences of 0, its boundaries, H * W
    per = np.bincount(region, minlength=n)
    ends = np.cumsum(per + 2)
    edges = np.full(int(ends[-1]), h * w, dtype=np.int64)
    edges[ends - per - 2] = 0
    edges[np.arange(pos.size) + 2 * region + 1] = pos
    counts = np.diff(edges)
    flat, out = counts.tolist(), []
    for first, last in zip((ends - per - 2).tolist(), (ends - 1).tolist()):
        one = flat[first:last]
        if len(one) > 1 and one[-1] == 0:  # the last 1-run reaches the last pixel
            one.pop()
        out.append(one)
    return out


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
