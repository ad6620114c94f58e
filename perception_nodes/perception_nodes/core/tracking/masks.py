"""A track's last full view of its mask, moved to where the motion model puts it, and exact
mask overlaps with the frame's regions.

A track keeps its mask cut to its tight box (:class:`MaskCrop`). Each frame the crop is placed
at the predicted box centre (and resized by the camera's zoom since it was seen), and compared
with the full-image ``HxW`` region masks pixel by pixel inside the two boxes' overlap: exact for
small objects, where a coarse grid misses most (the previous tracker's every-7th-pixel grid lost
8-9 % of true IoU >= 0.5 pairs under 300 px). An overlap larger than :data:`EXACT_PIXELS` is
counted on an evenly strided subset of at most that many pixels (for objects that large the
estimate is within a fraction of a percent, and the cost stays bounded). Pairs whose boxes
cannot reach a useful IoU are never compared (:func:`overlap_bounds`).

Why not pycocotools' RLE IoU: it needs every region encoded first (~15 ms for 64 masks of
640x480), three times the tracking budget; slices of the masks the pipeline already holds
cost a few microseconds per pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

try:  # the C function behind np.count_nonzero(a) (axis None): its Python wrapper and dispatch
    # cost ~2 us a call, as much as counting a pair's pixels (hundreds of pairs a frame)
    from numpy._core.multiarray import count_nonzero as count_set
except ImportError:  # another numpy layout: the public function (same counts)
    count_set = np.count_nonzero

EXACT_PIXELS = 1024  # overlaps up to this size are counted on every pixel
RESIZE_TOLERANCE = 0.03  # camera zoom below this relative change leaves the crop as it is


@dataclass(slots=True)
class MaskCrop:
    """A bool mask cut to its tight box: ``pixels`` ``(h, w)``; ``x0``, ``y0``: image pixels of its
    top-left corner (may lie outside the image once placed); ``area``: set pixels."""

    pixels: np.ndarray
    x0: int
    y0: int
    area: int

    @property
    def box(self) -> np.ndarray:
        """``(4,)`` XYXY pixels."""
        h, w = self.pixels.shape
        return np.array([self.x0, self.y0, self.x0 + w, self.y0 + h], np.float64)


def crop_of(mask: np.ndarray, box_xyxy: np.ndarray, area: int) -> MaskCrop:
    """The full-image ``HxW`` ``mask`` cut to its tight XYXY box (a copy)."""
    x0, y0, x1, y1 = (int(v) for v in np.round(box_xyxy))
    return MaskCrop(mask[y0:y1, x0:x1].copy(), x0, y0, int(area))


def placed(crop: MaskCrop, centre_xy: np.ndarray, zoom: float) -> MaskCrop:
    """``crop`` centred on ``centre_xy`` (pixels), scaled by ``zoom`` when it changed the size."""
    pixels, area = crop.pixels, crop.area
    if abs(zoom - 1.0) > RESIZE_TOLERANCE and pixels.size:
        h, w = pixels.shape
        size = (max(1, round(w * zoom)), max(1, round(h * zoom)))
        pixels = cv2.resize(pixels.view(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        area = int(np.count_nonzero(pixels))
    h, w = pixels.shape
    return MaskCrop(pixels, round(centre_xy[0] - w / 2), round(centre_xy[1] - h / 2), area)


def placed_all(crops: list[MaskCrop], centres_xy: np.ndarray, zooms: list[float]) -> list[MaskCrop]:
    """:func:`placed` of every crop (``centres_xy``: ``(T, 2)`` pixels): the corners of the
    crops the zoom leaves as they are in one numpy step (``np.round`` rounds halves to even, as
    ``round`` does), the others one by one."""
    if not crops:
        return []
    half = np.array([c.pixels.shape for c in crops], np.float64)[:, ::-1] / 2
    corners = np.round(np.asarray(centres_xy, np.float64) - half).astype(np.int64).tolist()
    out = []
    for crop, (x0, y0), zoom, centre in zip(crops, corners, zooms, centres_xy):
        if abs(zoom - 1.0) > RESIZE_TOLERANCE and crop.pixels.size:
            out.append(placed(crop, centre, zoom))
        else:
            out.append(MaskCrop(crop.pixels, x0, y0, crop.area))
    return out


def overlap_bounds(boxes_a: np.ndarray, areas_a: np.ndarray, boxes_b: np.ndarray,
                   areas_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(N, M)`` upper bounds of the mask IoU and of the share of ``a`` covered by ``b``, from the
    boxes' overlap area and the mask areas alone (no pixel read)."""
    # per axis on (N, M) planes: half the work of (N, M, 2) arrays and a product (same values)
    ix = np.minimum(boxes_a[:, None, 2], boxes_b[None, :, 2])
    ix -= np.maximum(boxes_a[:, None, 0], boxes_b[None, :, 0])
    iy = np.minimum(boxes_a[:, None, 3], boxes_b[None, :, 3])
    iy -= np.maximum(boxes_a[:, None, 1], boxes_b[None, :, 1])
    inter = np.maximum(ix, 0.0, out=ix)
    inter *= np.maximum(iy, 0.0, out=iy)
    inter = np.minimum(inter, np.minimum(areas_a[:, None], areas_b[None, :]))
    union = areas_a[:, None] + areas_b[None, :] - inter
    iou = inter / np.maximum(union, 1.0)
    return iou, inter / np.maximum(areas_a[:, None], 1.0)


def intersection(mask: np.ndarray, box: np.ndarray, crop: MaskCrop) -> float:
    """Pixels shared by the full-image ``mask`` (tight XYXY ``box``) and the placed ``crop``."""
    bx0, by0, bx1, by1 = (int(v) for v in box)
    return intersection_at(mask, bx0, by0, bx1, by1, crop)


def intersection_at(mask: np.ndarray, bx0: int, by0: int, bx1: int, by1: int,
                    crop: MaskCrop) -> float:  # fmt: skip
    """:func:`intersection` with the box as Python ints (the hot loop of the tracker)."""
    pixels = crop.pixels
    h, w = pixels.shape
    cx0, cy0 = crop.x0, crop.y0
    x0 = bx0 if bx0 > cx0 else cx0
    y0 = by0 if by0 > cy0 else cy0
    x1 = bx1 if bx1 < cx0 + w else cx0 + w
    y1 = by1 if by1 < cy0 + h else cy0 + h
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, mask.shape[1]), min(y1, mask.shape[0])
    if x1 <= x0 or y1 <= y0:
        return 0.0
    size = (x1 - x0) * (y1 - y0)
    step = 1 if size <= EXACT_PIXELS else math.ceil(math.sqrt(size / EXACT_PIXELS))
    a = mask[y0:y1:step, x0:x1:step]
    b = pixels[y0 - cy0 : y1 - cy0 : step, x0 - cx0 : x1 - cx0 : step]
    return float(np.count_nonzero(a & b) * step * step)


def intersections(masks: np.ndarray, boxes: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  crops: list[MaskCrop]) -> np.ndarray:  # fmt: skip
    """:func:`intersection_at` of each pair ``(rows[k], cols[k])``: full-image ``masks[r]`` with
    its tight XYXY ``boxes[r]`` (``(R, 4)`` int) and the placed ``crops[t]``; ``(K,)`` float.

    The same windows and strides as :func:`intersection_at`, computed for all pairs at once in
    numpy; only the pixel count is left per pair (this is the tracker's hot loop, hundreds of
    pairs a frame, where per-pair Python arithmetic cost more than the pixels)."""
    out = np.zeros(len(rows))
    if not len(rows):
        return out
    img_h, img_w = masks.shape[1:]
    geo = np.array([(c.x0, c.y0, c.x0 + c.pixels.shape[1], c.y0 + c.pixels.shape[0])
                    for c in crops], np.int64).reshape(-1, 4)[cols]  # fmt: skip
    b = boxes[rows]
    x0 = np.maximum(np.maximum(b[:, 0], geo[:, 0]), 0)
    y0 = np.maximum(np.maximum(b[:, 1], geo[:, 1]), 0)
    x1 = np.minimum(np.minimum(b[:, 2], geo[:, 2]), img_w)
    y1 = np.minimum(np.minimum(b[:, 3], geo[:, 3]), img_h)
    ok = np.nonzero((x1 > x0) & (y1 > y0))[0]
    size = (x1[ok] - x0[ok]) * (y1[ok] - y0[ok])
    step = np.where(size <= EXACT_PIXELS, 1, np.ceil(np.sqrt(size / EXACT_PIXELS))).astype(np.int64)
    cx0, cy0 = geo[ok, 0], geo[ok, 1]
    columns = (ok, rows[ok], cols[ok], y0[ok], y1[ok], x0[ok], x1[ok], y0[ok] - cy0,
               y1[ok] - cy0, x0[ok] - cx0, x1[ok] - cx0, step)  # fmt: skip
    count = count_set
    track_px = [c.pixels for c in crops]
    for k, r, t, ya, yb, xa, xb, ta, tb, sa, sb, st in zip(*(c.tolist() for c in columns)):
        out[k] = count(masks[r, ya:yb:st, xa:xb:st] & track_px[t][ta:tb:st, sa:sb:st]) * st * st
    return out


def in_image(
    crop: MaskCrop, image_hw: tuple[int, int]
) -> tuple[int, int, int, int, np.ndarray] | None:
    """``(x0, y0, x1, y1, pixels)``: the part of the placed ``crop`` inside an image of
    ``image_hw`` (H, W), as image pixel bounds and the crop's pixels there (a view); None when
    it lies wholly outside."""
    h, w = crop.pixels.shape
    x0, y0 = max(crop.x0, 0), max(crop.y0, 0)
    x1, y1 = min(crop.x0 + w, image_hw[1]), min(crop.y0 + h, image_hw[0])
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1, crop.pixels[y0 - crop.y0 : y1 - crop.y0, x0 - crop.x0 : x1 - crop.x0]


def hidden_share(crop: MaskCrop, seen: np.ndarray, occluders: list[np.ndarray]) -> float:
    """Share of the placed ``crop`` not in the full-image mask ``seen`` that is hidden: covered by
    one of the full-image ``occluders`` masks or outside the image. 1.0 when nothing is unseen."""
    window = in_image(crop, seen.shape)
    outside = crop.area
    unseen_in, hidden_in = 0, 0
    if window is not None:
        x0, y0, x1, y1, inner = window
        outside = crop.area - int(np.count_nonzero(inner))
        unseen = inner & ~seen[y0:y1, x0:x1]
        unseen_in = int(np.count_nonzero(unseen))
        if occluders and unseen_in:
            cover = np.zeros_like(unseen)
            for m in occluders:
                cover |= m[y0:y1, x0:x1]
            hidden_in = int(np.count_nonzero(unseen & cover))
    unseen_all = unseen_in + outside
    return 1.0 if unseen_all == 0 else (hidden_in + outside) / unseen_all
