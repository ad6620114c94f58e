"""Pairwise similarity of tracks and regions, and their optimal one-to-one assignment.

Masks are compared on a coarse grid: every ``stride``-th pixel of the full-image ``HxW`` mask
(the stride makes the grid's long side at most :data:`GRID_LONG_SIDE` cells), packed into bits
(``uint64`` words). The intersection of a pair is an AND plus a popcount
(``np.bitwise_count``) over ~100 words, computed only for pairs whose boxes overlap.
Why not the obvious alternatives (measured on the 2-core CI machine): pycocotools' exact RLE
IoU needs the masks encoded first, ~15 ms for 64 masks of 640x480, three times the whole
tracking budget; a float matrix product of the grids goes through multi-threaded OpenBLAS,
which took ~190 ms (instead of ~1 ms on one thread) while other jobs loaded the machine.
Regions thinner than the stride can vanish from the grid; their pairs fall back to box IoU.

Boxes are ``XYXY`` pixels (see :mod:`perception_nodes.core.types`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

GRID_LONG_SIDE = 96
NOT_ALLOWED = 1e6  # cost of a forbidden pair (linear_sum_assignment needs finite costs)


def grid_stride(image_size: tuple[int, int]) -> int:
    """Pixel stride of the comparison grid for an ``(H, W)`` image (>= 1)."""
    return max(1, math.ceil(max(image_size) / GRID_LONG_SIDE))


@dataclass
class MaskGrids:
    """N masks on the comparison grid: ``bits`` ``(N, words)`` uint64, ``cells`` ``(N,)`` int64 set cells."""

    bits: np.ndarray
    cells: np.ndarray

    def __len__(self) -> int:
        return int(self.bits.shape[0])

    def row(self, i: int) -> "MaskGrids":
        return MaskGrids(self.bits[i : i + 1], self.cells[i : i + 1])

    @staticmethod
    def stack(grids: list["MaskGrids"]) -> "MaskGrids":
        return MaskGrids(
            np.concatenate([g.bits for g in grids]), np.concatenate([g.cells for g in grids])
        )


def mask_grids(masks: np.ndarray, stride: int) -> MaskGrids:
    """The ``(N, H, W)`` bool masks sampled every ``stride`` pixels, packed into bits."""
    n = masks.shape[0]
    sampled = masks[:, stride // 2 :: stride, stride // 2 :: stride]
    sampled = sampled.reshape(n, sampled.shape[1] * sampled.shape[2])
    packed = np.packbits(sampled, axis=1)
    packed = np.pad(packed, ((0, 0), (0, (-packed.shape[1]) % 8)))
    bits = np.ascontiguousarray(packed).view(np.uint64)
    return MaskGrids(bits, np.bitwise_count(bits).sum(axis=1, dtype=np.int64))


def intersections(
    a: MaskGrids, b: MaskGrids, boxes_a: np.ndarray, boxes_b: np.ndarray, chunk_pairs: int = 4096
) -> np.ndarray:
    """``(N, M)`` int64 grid cells shared by each pair; computed only where the boxes overlap
    (0 elsewhere), in chunks of pairs to bound the temporary memory."""
    out = np.zeros((len(a), len(b)), dtype=np.int64)
    if out.size == 0:
        return out
    ia, ib = np.nonzero(boxes_overlap(boxes_a, boxes_b))
    for start in range(0, ia.size, chunk_pairs):
        ra, rb = ia[start : start + chunk_pairs], ib[start : start + chunk_pairs]
        out[ra, rb] = np.bitwise_count(a.bits[ra] & b.bits[rb]).sum(axis=1, dtype=np.int64)
    return out


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` True where XYXY boxes ``a[i]`` and ``b[j]`` share area (touching counts)."""
    return (
        (a[:, None, 0] <= b[None, :, 2])
        & (b[None, :, 0] <= a[:, None, 2])
        & (a[:, None, 1] <= b[None, :, 3])
        & (b[None, :, 1] <= a[:, None, 3])
    )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU of ``(N, 4)`` and ``(M, 4)`` XYXY boxes (0 where both are empty)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def grid_iou(
    inter: np.ndarray, a: MaskGrids, b: MaskGrids, boxes_a: np.ndarray, boxes_b: np.ndarray
) -> np.ndarray:
    """``(N, M)`` mask IoU on the grid from :func:`intersections`; box IoU where a mask has no cell."""
    union = a.cells[:, None] + b.cells[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros(inter.shape, np.float64), where=union > 0)
    vanished = (a.cells[:, None] == 0) | (b.cells[None, :] == 0)
    if vanished.any():
        iou = np.where(vanished, box_iou(boxes_a, boxes_b), iou)
    return iou


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (zero rows, and rows with NaN/inf, become zero)."""
    x = np.asarray(x, dtype=np.float32)
    x = np.where(np.isfinite(x).all(axis=1, keepdims=True), x, 0.0).astype(np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def box_centres(boxes: np.ndarray) -> np.ndarray:
    """``(N, 2)`` centres ``(x, y)`` of XYXY boxes, pixels."""
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def assign(cost: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    """Optimal one-to-one ``(row, col)`` pairs minimising ``cost`` among ``allowed`` pairs."""
    if cost.size == 0 or not allowed.any():
        return []
    rows, cols = linear_sum_assignment(np.where(allowed, cost, NOT_ALLOWED))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]
