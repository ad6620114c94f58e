"""The relation-predictor interface and the region geometry both predictors share.

Coordinates: boxes are XYXY pixels (``core.types`` convention); depth maps are ``HxW`` float32
meters, NaN or 0 = invalid, the same size as the image.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from perception_nodes.core.types import RegionLabels, Relations, Segmentation

#: Longest side of the sub-grid on which mask overlaps and depth medians are computed.
OVERLAP_GRID = 160


class RelationInputError(ValueError):
    """Input of a relation predictor does not match what it expects."""


class RelationPredictor(ABC):
    """Predicts directed relations "subject predicate object" between the regions of a frame."""

    #: ``"learned"`` or ``"geometric"``; copied into :attr:`Relations.source`.
    source: str = "abstract"
    predicates: list[str]

    @abstractmethod
    def predict(
        self,
        segmentation: Segmentation,
        labels: RegionLabels | None,
        depth: np.ndarray | None = None,
    ) -> Relations:
        """Relations between the N regions of ``segmentation``.

        Args:
            segmentation: the frame's regions (masks ``NxHxW``, boxes XYXY pixels, tokens).
            labels: labels of the same N regions, or None (unlabelled).
            depth: optional ``HxW`` float32 depth in meters (NaN / 0 invalid), image-sized.
        """


@dataclass
class RegionGeometry:
    """Per-region and per-pair geometry of N regions (computed once per frame).

    Attributes:
        boxes: ``(N, 4)`` float64 XYXY pixels.
        areas: ``(N,)`` float64 mask areas, pixels (>= 1 to avoid division by zero).
        inter: ``(N, N)`` float64 approximate mask intersection areas, pixels (diagonal = area).
        depth: ``(N,)`` float64 median depth inside each mask, meters; NaN where unknown.
        image_size: ``(H, W)``.
    """

    boxes: np.ndarray
    areas: np.ndarray
    inter: np.ndarray
    depth: np.ndarray
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def mask_iou(self) -> np.ndarray:
        """``(N, N)`` mask IoU."""
        union = self.areas[:, None] + self.areas[None, :] - self.inter
        return self.inter / np.maximum(union, 1.0)


def check_segmentation(segmentation: Segmentation) -> None:
    """Raise :class:`RelationInputError` unless masks, boxes and tokens agree in N and size."""
    if not isinstance(segmentation, Segmentation):
        raise TypeError(f"expected a core.types.Segmentation, got {type(segmentation).__name__}")
    n = len(segmentation)
    h, w = segmentation.image_size
    if segmentation.masks.shape[1:] != (h, w):
        raise RelationInputError(
            f"masks have shape {segmentation.masks.shape}, expected (N, {h}, {w}) = image_size"
        )
    for name in ("boxes_xyxy", "areas", "tokens"):
        arr = getattr(segmentation, name)
        if arr.shape[0] != n:
            raise RelationInputError(f"segmentation.{name} has {arr.shape[0]} rows, masks have {n}")


def check_labels(labels: RegionLabels | None, n: int) -> None:
    """Raise :class:`RelationInputError` unless ``labels`` is None or covers ``n`` regions."""
    if labels is not None and labels.label_index.shape[0] != n:
        raise RelationInputError(
            f"labels cover {labels.label_index.shape[0]} regions, the segmentation has {n}"
        )


def check_depth(depth: np.ndarray | None, image_size: tuple[int, int]) -> np.ndarray | None:
    """Validate a depth map: ``HxW`` (or ``HxWx1``) float, image-sized; returns float32 ``HxW``."""
    if depth is None:
        return None
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2 or tuple(depth.shape) != tuple(image_size):
        raise RelationInputError(
            f"depth map has shape {depth.shape}, expected (H, W) = {tuple(image_size)} "
            "(meters, same size as the image; NaN or 0 = invalid)"
        )
    if not np.issubdtype(depth.dtype, np.floating):
        raise RelationInputError(
            f"depth map has dtype {depth.dtype}, expected float meters (convert mm uint16 first)"
        )
    return depth.astype(np.float32, copy=False)


def _grid(image_size: tuple[int, int], max_side: int) -> int:
    """Integer stride so that the longest side becomes <= ``max_side``."""
    return max(1, math.ceil(max(image_size) / max_side))


def _exact_rows(
    masks: np.ndarray, rows: np.ndarray, boxes: np.ndarray, inter: np.ndarray, held: list
) -> None:
    """Exact full-resolution intersections of masks ``rows`` (small ones) with all masks (only
    inside mask ``i``'s box: it holds all of mask ``i``; masks whose box (:func:`_held_boxes`)
    misses it meet it nowhere)."""
    h, w = masks.shape[1:]
    # held boxes as an (N, 4) array; a mask without one (None) meets every box
    held_xyxy = np.array([(-1, -1, w + 1, h + 1) if b is None else b for b in held], np.int64)
    corners = np.clip(np.round(boxes[rows]).astype(int), 0, [w, h, w, h]).tolist()
    for i, (x0, y0, x1, y1) in zip(rows.tolist(), corners):
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        meet = np.flatnonzero((held_xyxy[:, 0] < x1) & (x0 < held_xyxy[:, 2])
                              & (held_xyxy[:, 1] < y1) & (y0 < held_xyxy[:, 3]))  # fmt: skip
        crop = masks[meet, y0:y1, x0:x1]
        inter[i, :] = inter[:, i] = 0.0
        inter[i, meet] = inter[meet, i] = (
            (crop & masks[i, y0:y1, x0:x1]).reshape(len(meet), -1).sum(1)
        )


def _held_boxes(segmentation: Segmentation) -> list[tuple[int, int, int, int] | None]:
    """Per region, its integer box (exclusive max) when the box provably holds the whole mask
    (the mask's pixel count inside it equals the segmentation's area), else None. Reading only
    inside such boxes gives the full-mask results, at the cost of the boxes' pixels. The boxes
    are :func:`~perception_nodes.core.output.rle.pixel_box` of each, in one array operation (a
    box starting past the image starts at its edge: empty either way; int64 holds it)."""
    masks = segmentation.masks
    h, w = masks.shape[1:]
    boxes = np.asarray(segmentation.boxes_xyxy, np.float64).reshape(-1, 4)
    if not np.isfinite(boxes).all():
        raise RelationInputError("segmentation.boxes_xyxy must be finite")
    lo = np.clip(np.floor(boxes[:, :2]), 0, (w, h))
    hi = np.maximum(np.minimum(np.ceil(boxes[:, 2:]), (w, h)), lo)
    out = []
    for i, (x0, y0, x1, y1) in enumerate(np.concatenate([lo, hi], 1).astype(np.int64).tolist()):
        inside = np.count_nonzero(masks[i, y0:y1, x0:x1])
        out.append((x0, y0, x1, y1) if inside == int(segmentation.areas[i]) else None)
    return out


def _sub_grid(masks: np.ndarray, held: list, stride: int) -> np.ndarray:
    """``(N, ceil(H / stride), ceil(W / stride))`` bool ``masks[:, ::stride, ::stride]``,
    read inside each mask's held box only (the whole mask where none)."""
    n, h, w = masks.shape
    grid = np.zeros((n, -(-h // stride), -(-w // stride)), dtype=bool)
    for i, b in enumerate(held):
        if b is None:
            grid[i] = masks[i, ::stride, ::stride]
            continue
        r0, c0 = -(-b[1] // stride), -(-b[0] // stride)  # first grid row/column in the box
        part = masks[i, r0 * stride : b[3] : stride, c0 * stride : b[2] : stride]
        grid[i, r0 : r0 + part.shape[0], c0 : c0 + part.shape[1]] = part
    return grid


#: Most (pair, word) entries :func:`_grid_intersections` gathers at once (~40 bytes each)
PAIR_WORDS_MAX = 1 << 18


def _grid_intersections(grid: np.ndarray, held: list, stride: int) -> np.ndarray:
    """``(N, N)`` int64 counts of grid cells set in both masks (``grid``: :func:`_sub_grid`).

    Each mask's grid is packed into 64-bit words (row after row) and pairs are counted with
    ``bitwise_count`` (popcount) of the AND, only for pairs whose held boxes meet (no other
    pair shares a pixel) and over the words of both masks' held grid rows (outside them a
    mask's bits are all zero): the same integers as the float32 matrix product of the grids
    (exact below 2**24 cells). All pairs' words in one gather up to :data:`PAIR_WORDS_MAX`
    entries (a loop per mask costs more in calls than in counting), else mask by mask."""
    n, rows, cols = grid.shape
    bits = np.packbits(grid.reshape(n, rows * cols), axis=1)
    words = np.pad(bits, ((0, 0), (0, -bits.shape[1] % 8))).view(np.uint64)
    box = np.array([b or (-1, -1, 2**40, 2**40) for b in held], np.int64).reshape(n, 4)
    r0 = np.where(box[:, 1] < 0, 0, -(-box[:, 1] // stride))  # held grid rows, all if none
    r1 = np.minimum(-(-box[:, 3] // stride), rows)
    lo, hi = r0 * cols // 64, -(-r1 * cols // 64)  # their words
    x0, y0, x1, y1 = box.T
    meet = (x0[:, None] < x1) & (x0 < x1[:, None]) & (y0[:, None] < y1) & (y0 < y1[:, None])
    ii, jj = np.nonzero(np.triu(meet))
    start = np.maximum(lo[ii], lo[jj])
    length = np.maximum(np.minimum(hi[ii], hi[jj]) - start, 0)
    out = np.zeros((n, n), dtype=np.int64)
    if int(length.sum()) > PAIR_WORDS_MAX:
        for i in range(n):
            count = np.bitwise_count(words[i:, lo[i] : hi[i]] & words[i, lo[i] : hi[i]])
            out[i, i:] = out[i:, i] = count.sum(axis=1, dtype=np.int64)
        return out
    first = np.cumsum(length) - length
    pair = np.repeat(np.arange(ii.size), length)
    col = np.arange(pair.size) - first[pair] + start[pair]
    ones = np.bitwise_count(words[ii[pair], col] & words[jj[pair], col])
    sums = np.concatenate(([0], np.cumsum(ones, dtype=np.int64)))
    out[ii, jj] = out[jj, ii] = sums[first + length] - sums[first]
    return out


def region_geometry(
    segmentation: Segmentation, depth: np.ndarray | None = None, max_side: int = OVERLAP_GRID
) -> RegionGeometry:
    """Boxes, areas, pairwise mask intersections and median depths of the regions.

    Intersections are counted on the pixels of a regular sub-grid (every ``stride``-th row and
    column, longest side <= ``max_side``) and scaled by ``stride^2``; masks with fewer than 16
    grid pixels are intersected exactly at full resolution inside their box. Areas are the
    segmentation's exact areas. Masks are read inside their boxes where the box holds the whole
    mask (:func:`_held_boxes`): the same numbers as reading every mask in full.
    """
    check_segmentation(segmentation)
    depth = check_depth(depth, segmentation.image_size)
    masks = segmentation.masks.astype(bool, copy=False)
    n = masks.shape[0]
    areas = np.maximum(segmentation.areas.astype(np.float64).reshape(n), 1.0)
    boxes = segmentation.boxes_xyxy.astype(np.float64).reshape(n, 4)
    stride = _grid(segmentation.image_size, max_side)
    held = _held_boxes(segmentation)
    grid = _sub_grid(masks, held, stride)
    inter = _grid_intersections(grid, held, stride).astype(np.float64) * float(stride * stride)
    small = np.nonzero(np.diag(inter) < 16 * stride * stride)[0] if stride > 1 else np.zeros(0, int)
    if small.size:
        _exact_rows(masks, small, boxes, inter, held)
    inter = np.minimum(inter, np.minimum(areas[:, None], areas[None, :]))
    np.fill_diagonal(inter, areas)
    med = np.full(n, np.nan)
    if depth is not None:
        med = _median_depths(masks, grid, held, depth, stride)
    return RegionGeometry(boxes=boxes, areas=areas, inter=inter, depth=med,
                          image_size=tuple(segmentation.image_size))  # fmt: skip


def _median_depths(
    masks: np.ndarray, grid: np.ndarray, held: list, depth: np.ndarray, stride: int
) -> np.ndarray:
    """``(N,)`` median valid depth inside each mask, sampled every ``stride`` pixels (``grid``:
    :func:`_sub_grid`), at full resolution where no sampled pixel is valid; NaN if none."""
    sub_depth = depth[::stride, ::stride]
    valid = np.isfinite(sub_depth) & (sub_depth > 0)
    out = np.full(masks.shape[0], np.nan)
    h, w = masks.shape[1:]
    for i, b in enumerate(held):
        x0, y0, x1, y1 = (0, 0, w, h) if b is None else b
        r0, c0, r1, c1 = -(-y0 // stride), -(-x0 // stride), -(-y1 // stride), -(-x1 // stride)
        values = sub_depth[r0:r1, c0:c1][grid[i, r0:r1, c0:c1] & valid[r0:r1, c0:c1]]
        if values.size:
            out[i] = _median(values)
            continue
        d = depth[y0:y1, x0:x1]  # small mask: full resolution
        values = d[masks[i, y0:y1, x0:x1] & np.isfinite(d) & (d > 0)]
        if values.size:
            out[i] = _median(values)
    return out


def _median(values: np.ndarray) -> float:
    """``float(np.median(values))`` of a 1-D float32/float64 array without NaN, bit for bit:
    numpy's own steps (one partition, then the mean of the middle one or two values: their sum
    in the values' dtype, halved) without its NaN check, argument handling and ``np.mean`` call
    (most of the cost for small arrays; halving is exact, so the dtype it is done in does not
    matter). Partitions ``values`` in place (the callers' own copies), not a copy of them."""
    k = values.size // 2
    if values.size % 2:
        values.partition(k)
        return float(values[k])
    values.partition((k - 1, k))
    return float((values[k - 1] + values[k]) / 2)


#: Names of the columns of :func:`pair_features` (G = 19).
PAIR_FEATURE_NAMES: tuple[str, ...] = (
    "s_x0", "s_y0", "s_x1", "s_y1", "o_x0", "o_y0", "o_x1", "o_y1",
    "dx", "dy", "log_w_ratio", "log_h_ratio", "box_iou", "mask_iou",
    "inter_over_s", "inter_over_o", "depth_diff", "depth_rel_diff", "depth_valid",
)  # fmt: skip
PAIR_FEATURE_DIM = len(PAIR_FEATURE_NAMES)


def box_iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """``(N, N)`` IoU of XYXY boxes."""
    x0 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y0 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x1 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y1 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area[:, None] + area[None, :] - inter, 1e-9)


def pair_features(geom: RegionGeometry) -> np.ndarray:
    """``(N, N, G)`` float32 features of each ordered pair (row = subject, column = object).

    Boxes normalised by the image size; centre offsets in units of the subject's size
    (tanh-squashed), log size ratios (clipped to +-3), box IoU, mask IoU, intersection over each
    area, depth difference object - subject (meters, clipped to +-5; positive = object farther),
    relative depth difference, and a flag that is 1 where both depths are valid (0 and zeros
    otherwise, e.g. without a depth map).
    """
    n = len(geom)
    h, w = geom.image_size
    b = geom.boxes / np.array([w, h, w, h], dtype=np.float64)
    bw = np.maximum(b[:, 2] - b[:, 0], 1e-4)
    bh = np.maximum(b[:, 3] - b[:, 1], 1e-4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    f = np.zeros((n, n, PAIR_FEATURE_DIM), dtype=np.float64)
    f[:, :, 0:4] = b[:, None, :]
    f[:, :, 4:8] = b[None, :, :]
    f[:, :, 8] = np.tanh((cx[None, :] - cx[:, None]) / bw[:, None] / 2)
    f[:, :, 9] = np.tanh((cy[None, :] - cy[:, None]) / bh[:, None] / 2)
    f[:, :, 10] = np.clip(np.log(bw[None, :] / bw[:, None]), -3, 3)
    f[:, :, 11] = np.clip(np.log(bh[None, :] / bh[:, None]), -3, 3)
    f[:, :, 12] = box_iou_matrix(geom.boxes)
    f[:, :, 13] = geom.mask_iou
    f[:, :, 14] = geom.inter / geom.areas[:, None]
    f[:, :, 15] = geom.inter / geom.areas[None, :]
    d = geom.depth
    valid = np.isfinite(d[:, None]) & np.isfinite(d[None, :])
    diff = np.where(valid, d[None, :] - d[:, None], 0.0)
    f[:, :, 16] = np.clip(diff, -5, 5)
    f[:, :, 17] = np.where(
        valid, diff / np.maximum(np.abs(d[None, :]) + np.abs(d[:, None]), 1e-6), 0.0
    )
    f[:, :, 18] = valid.astype(np.float64)
    return f.astype(np.float32)


def descending_order(values: np.ndarray) -> np.ndarray:
    """``np.argsort(-values, kind="stable")`` of 1-D float32 ``values``, the same indices.

    Without NaN and negative values (scores) it is two stable sorts of 16-bit keys (numpy sorts
    those by radix, in linear time): the low then the high half of the bits of ``-0.0``-free
    values, inverted (the bit pattern of a non-negative float32 grows with it). About 3x faster
    than the comparison sort for the 28k relations of 100 regions."""
    if values.dtype != np.float32 or values.size < 2 or not bool(np.all(values >= 0)):  # or NaN
        return np.argsort(-values, kind="stable")
    key = ~(values + np.float32(0.0)).view(np.uint32)  # + 0.0: -0.0 becomes 0.0 (ties as before)
    by_low = np.argsort((key & 0xFFFF).astype(np.uint16), kind="stable")
    return by_low[np.argsort((key[by_low] >> 16).astype(np.uint16), kind="stable")]


def relations_from_scores(
    scores: np.ndarray,
    predicates: list[str],
    source: str,
    min_score: float,
    max_per_subject: int = 0,
    top_k: int = 0,
) -> Relations:
    """Turn ``(N, N, P)`` scores into :class:`Relations` (score >= ``min_score``, no self-pairs),
    sorted by descending score; optionally at most ``max_per_subject`` per subject and ``top_k``."""
    n, _, n_p = scores.shape
    # flat indices (C order, as np.nonzero of the 3-D array gives them), split into subject,
    # object and predicate by integer division: one gather of scores instead of three index
    # arrays and a 3-D gather
    flat = scores.reshape(-1)
    idx = np.flatnonzero(flat >= min_score)
    s, o = np.divmod(idx // n_p, n)
    keep = s != o
    idx, s, o = idx[keep], s[keep], o[keep]
    sc = flat[idx].astype(np.float32)
    order = descending_order(sc)
    s, o, p, sc = s[order], o[order], idx[order] % n_p, sc[order]
    if max_per_subject > 0 and s.size:
        rank = np.zeros_like(s)
        counts = np.zeros(n, dtype=np.int64)
        for k, subj in enumerate(s):
            rank[k] = counts[subj]
            counts[subj] += 1
        sel = rank < max_per_subject
        s, o, p, sc = s[sel], o[sel], p[sel], sc[sel]
    if top_k > 0:
        s, o, p, sc = s[:top_k], o[:top_k], p[:top_k], sc[:top_k]
    return Relations(
        subject=s.astype(np.int64),
        object=o.astype(np.int64),
        predicate_index=p.astype(np.int64),
        score=sc,
        predicates=list(predicates),
        source=source,
    )
