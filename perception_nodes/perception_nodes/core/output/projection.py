"""Per-region 3D centroids from depth + camera intrinsics, and the instance label image.

Camera convention (REP 103 optical frame): x right, y down, z forward, meters; pixel (u, v)
with u to the right and v down; intrinsics ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
"""

from __future__ import annotations

import cv2
import numpy as np

from perception_nodes.core.output.rle import pixel_boxes, tight_boxes

# Largest |(u - cx) / fx| (and v/fy) a pixel of the image may have: a ray a million times wider
# than deep is ~89.99994 degrees off axis, no real camera. Smaller focal lengths (fx = 1e-300)
# would overflow the float32 centroids to inf.
MAX_RAY_SLOPE = 1e6
FLOAT32_MAX = float(np.finfo(np.float32).max)


class DepthError(ValueError):
    """Depth or intrinsics that do not fit the image."""


def intrinsics_problem(
    k, image_hw: tuple[int, int], info_hw: tuple[int, int] | None = None
) -> str | None:
    """Why intrinsics ``k`` (3x3, or its 9 row-major entries) cannot back-project the pixels of
    an ``(H, W)`` image, or None when they can.

    ``info_hw``: ``(height, width)`` of the CameraInfo; ``(0, 0)``/None = not given (not checked).
    Refused: wrong shape, non-finite entries, non-positive focal lengths, a CameraInfo for
    another image size, and focal lengths so small that pixels map to near-infinite rays.
    """
    k = np.asarray(k, dtype=np.float64)
    if k.size != 9:
        return f"K has {k.size} entries, not 9"
    k = k.reshape(3, 3)
    if not np.all(np.isfinite(k)):
        return "K has NaN or infinite entries"
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    if not (fx > 0 and fy > 0):
        return f"non-positive focal lengths fx={fx:g}, fy={fy:g}"
    h, w = int(image_hw[0]), int(image_hw[1])
    if (
        info_hw is not None
        and tuple(int(v) for v in info_hw) != (0, 0)
        and tuple(int(v) for v in info_hw) != (h, w)
    ):
        return f"CameraInfo is for {int(info_hw[1])}x{int(info_hw[0])} but the image is {w}x{h}"
    slope = max(abs(cx), abs(w - cx)) / fx, max(abs(cy), abs(h - cy)) / fy
    if not max(slope) <= MAX_RAY_SLOPE:
        return f"focal lengths fx={fx:g}, fy={fy:g} are too small for a {w}x{h} image (rays beyond {MAX_RAY_SLOPE:g}:1)"
    return None


def region_centroids(
    masks: np.ndarray,
    depth_m: np.ndarray | None,
    k: np.ndarray | None,
    boxes: np.ndarray | None = None,
) -> np.ndarray:
    """``(N, 3)`` float32 centroids (meters, camera frame) of ``(N, H, W)`` masks.

    The depth of a region is the median of its valid depth pixels (NaN = invalid); x and y
    back-project the mean pixel of those valid pixels. NaN where depth or ``k`` is missing or no
    pixel of the region has valid depth, never inf. :class:`DepthError` for depth of another
    size or intrinsics refused by :func:`intrinsics_problem`.

    ``boxes``: optional ``(N, 4)`` XYXY boxes (exclusive max) covering each mask, e.g.
    ``Segmentation.boxes_xyxy``: only the pixels inside are read (without them the tight boxes
    are found first, one pass over each mask).
    """
    n = masks.shape[0]
    out = np.full((n, 3), np.nan, dtype=np.float32)
    if depth_m is None or k is None or n == 0:
        return out
    if depth_m.shape != masks.shape[1:]:
        raise DepthError(
            f"depth is {depth_m.shape[1]}x{depth_m.shape[0]}, image is {masks.shape[2]}x{masks.shape[1]}"
        )
    problem = intrinsics_problem(k, masks.shape[1:])
    if problem:
        raise DepthError(f"camera intrinsics refused: {problem}")
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    fx, fy, cx, cy = (float(v) for v in (k[0, 0], k[1, 1], k[0, 2], k[1, 2]))
    if masks.dtype != bool:
        masks = masks.astype(bool)
    ones = masks.view(np.uint8)
    valid = (np.isfinite(depth_m) & (depth_m > 0)).view(np.uint8)
    ys, xs = np.arange(masks.shape[1]), np.arange(masks.shape[2])
    for i, (x0, y0, x1, y1) in enumerate(_boxes(masks, boxes)):
        if x1 <= x0 or y1 <= y0:
            continue
        # OpenCV on the box window's bytes (0/1): the AND, the count and the integer row and
        # column sums are SIMD passes without numpy's temporaries (numpy's were ~8x slower)
        sel = cv2.bitwise_and(ones[i, y0:y1, x0:x1], valid[y0:y1, x0:x1])
        n_valid = cv2.countNonZero(sel)
        if n_valid == 0:
            continue
        z = _median(depth_m[y0:y1, x0:x1][sel.view(bool)])
        # mean pixel: exact integer sums / count, the value np.mean of the pixel coordinates
        # gives (its float64 partial sums of integers are exact below 2**53)
        u = int(cv2.reduce(sel, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[0] @ xs[x0:x1]) / n_valid
        v = int(cv2.reduce(sel, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[:, 0] @ ys[y0:y1]) / n_valid
        xyz = ((u - cx) * z / fx, (v - cy) * z / fy, z)  # Python floats: float64 arithmetic
        if all(abs(c) <= FLOAT32_MAX for c in xyz):  # else NaN (float32 would be inf)
            out[i] = xyz
    return out


# Below this many values one partition is as fast as the selection of _kth_values.
RADIX_MIN_VALUES = 32768
SAMPLE_SIZE = 4096  # values sorted to bracket the wanted positions (every n // 4096-th)
BIN_PARTITION_MAX = 4096  # a histogram bin with at most this many values is partitioned


def _median(values: np.ndarray) -> float:
    """``np.median(values.astype(float64))`` of finite ``values``, bit for bit, without the
    float64 copy and NaN check: the middle order statistic(s) (:func:`_kth_values`), averaged in
    float64 as numpy's median does."""
    n = values.size
    k = n // 2
    if n == 1:
        return float(values[0])
    if n < RADIX_MIN_VALUES or values.dtype != np.float32:  # most regions: one partition
        part = np.partition(values, (k - 1, k))  # two positions: see _partition_at
        lo, hi = part[k - 1], part[k]
    else:
        lo, hi = _kth_values(values, (k - 1, k))
    if n % 2:
        return float(hi)
    return float((np.float64(lo) + np.float64(hi)) / 2.0)


def _kth_values(values: np.ndarray, ks: tuple[int, ...]) -> list:
    """The values at sorted positions ``ks`` (ascending, each in ``[0, size)``) of 1-D
    ``values``: exactly ``np.partition(values, ks)[ks]``.

    Large float32 arrays of non-negative values (the caller's valid depths, meters) are not
    partitioned: numpy has no radix select, and its partition slows down on repeated values,
    which depths from sensors (millimetre steps, flat walls) are full of. A sorted sample
    instead names a likely value (:func:`_repeated_kth`) or brackets the positions between two
    values (:func:`_bracket`), and inside the bracket the values are selected by counting
    (:func:`_radix_kth`); comparisons and counts only, whatever the order or repetition of the
    values. Negative values never give a wrong answer: comparisons order them, and a histogram
    that meets one raises ``ValueError`` (negative bin); -0.0 and 0.0 count as equal."""
    if values.size < RADIX_MIN_VALUES or values.dtype != np.float32:
        return _partition_at(values, list(ks))
    sample = np.sort(values[:: max(1, values.size // SAMPLE_SIZE)])
    out = _repeated_kth(values, ks, sample)
    rest = [k for k in ks if k not in out]
    if rest:
        inside, first = _bracket(values, rest, sample)
        out.update(zip(rest, _radix_kth(inside, [k - first for k in rest])))
    return [out[k] for k in ks]


def _partition_at(values: np.ndarray, ks: list[int]) -> list:
    """``np.partition(values, ks)[ks]``, always asking numpy for at least two positions: with a
    single one numpy 2.x (AVX-512) takes a select that degrades on repeated values (a region's
    depths often are: 420 us instead of 14 us for 7,081 depths of two values, measured)."""
    part = np.partition(values, ks if len(ks) > 1 else (ks[0], ks[0]))
    return [part[k] for k in ks]


def _margin(m: int) -> int:
    """Sample positions either side of a wanted one: 4 standard deviations of the position of a
    value in a sample of ``m`` (binomial, at most ``sqrt(m) / 2``)."""
    return 2 * int(np.sqrt(m)) + 1


def _repeated_kth(values: np.ndarray, ks, sample: np.ndarray) -> dict:
    """``{k: value}`` for the positions ``ks`` where the sample's value there fills more than a
    margin of the sample, and counting confirms it: ``count(< x) <= k < count(<= x)``."""
    n, m = values.size, sample.size
    out, checked = {}, {}
    for k in ks:
        x = sample[k * m // n]
        if not (np.searchsorted(sample, x, "right") - np.searchsorted(sample, x) > _margin(m)):
            continue
        if x not in checked:
            below = int(np.count_nonzero(values < x))
            checked[x] = (below, below + int(np.count_nonzero(values == x)))
        if checked[x][0] <= k < checked[x][1]:
            out[k] = x
    return out


def _bracket(values: np.ndarray, ks: list[int], sample: np.ndarray) -> tuple[np.ndarray, int]:
    """``(inside, first)``: the values between two sample values ``lo <= hi`` (both included)
    and the number of values below ``lo``, such that the values at sorted positions ``ks`` are
    those at ``k - first`` of ``inside``; ``(values, 0)`` when the sample missed (rare: the
    positions would have to lie 4 standard deviations from where the sample puts them)."""
    n, m = values.size, sample.size
    lo = sample[max(0, ks[0] * m // n - _margin(m))]
    hi = sample[min(m - 1, ks[-1] * m // n + _margin(m))]
    below = values < lo
    first = int(np.count_nonzero(below))
    keep = values <= hi
    keep &= ~below
    inside = values[keep]
    if first <= ks[0] and ks[-1] < first + inside.size:
        return inside, first
    return values, 0


def _radix_kth(values: np.ndarray, ks: list[int]) -> list:
    """The values at sorted positions ``ks`` of 1-D float32 ``values`` (non-negative) by
    counting: the bit pattern of a non-negative float32 read as int32 grows with the value, so
    a histogram of the top 16 bits gives the bin holding position k, and (unless that bin is
    small enough to partition) a histogram of the bin's low 16 bits gives the exact value."""
    bits = values.view(np.int32)
    top = bits >> 16  # 0 .. 0x7F80 (inf); NaN above, as partition sorts it
    cum = np.cumsum(np.bincount(top))
    out = {}
    for k in ks:
        if k in out:
            continue
        b = int(np.searchsorted(cum, k, side="right"))
        first = int(cum[b - 1]) if b else 0
        in_bin = bits[top == b]
        local = [j - first for j in ks if first <= j < int(cum[b])]
        if in_bin.size <= BIN_PARTITION_MAX:
            got = _partition_at(in_bin.view(np.float32), local)
        else:
            low_cum = np.cumsum(np.bincount(in_bin & 0xFFFF))
            low = np.searchsorted(low_cum, local, side="right")
            got = list(((b << 16) | low).astype(np.int32).view(np.float32))
        out.update(zip([j + first for j in local], got))
    return [out[k] for k in ks]


def _boxes(masks: np.ndarray, boxes: np.ndarray | None) -> list[tuple[int, int, int, int]]:
    """Integer boxes (exclusive max) covering each of ``(N, H, W)`` ``masks``: the tight boxes,
    or :func:`~perception_nodes.core.output.rle.pixel_box` of each of ``(N, 4)`` XYXY ``boxes``
    (all at once); ``ValueError`` for another number of boxes or a non-finite coordinate."""
    n, h, w = masks.shape
    if boxes is None:
        return [tuple(b) for b in tight_boxes(masks).tolist()]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if boxes.shape[0] != n:
        raise ValueError(f"{boxes.shape[0]} boxes for {n} masks")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes must have finite coordinates")
    return [tuple(b) for b in pixel_boxes(boxes, h, w).tolist()]


def label_image(
    masks: np.ndarray, region_ids: np.ndarray, boxes: np.ndarray | None = None
) -> np.ndarray:
    """``HxW`` uint16 instance image: 0 = background, else the region id.

    Where masks overlap, the smaller region wins (it is drawn last), so small objects on top of
    large surfaces stay visible. Ids must fit 16 bits. ``boxes``: as in
    :func:`region_centroids` (each mask is counted and drawn inside its box only).
    """
    n, h, w = masks.shape
    img = np.zeros((h, w), dtype=np.uint16)
    if n == 0:
        return img
    if int(np.max(region_ids)) > np.iinfo(np.uint16).max:
        raise ValueError("region ids above 65535 do not fit a 16UC1 label image")
    if masks.dtype != bool:
        masks = masks.astype(bool)
    px_boxes = _boxes(masks, boxes)
    crops = [masks[i, y0:y1, x0:x1].view(np.uint8) for i, (x0, y0, x1, y1) in
             enumerate(px_boxes)]  # fmt: skip
    areas = np.array([cv2.countNonZero(c) if c.size else 0 for c in crops], dtype=np.int64)
    ids, fill = np.asarray(region_ids).tolist(), np.empty((h, w), np.uint16)
    for i in np.argsort(-areas, kind="stable").tolist():
        if areas[i]:  # OpenCV's masked copy: cheaper than numpy's boolean assignment
            x0, y0, x1, y1 = px_boxes[i]
            value = fill[: y1 - y0, : x1 - x0]
            value.fill(ids[i])
            cv2.copyTo(value, crops[i], img[y0:y1, x0:x1])
    return img
