"""Box geometry, unit feature rows and the optimal one-to-one assignment used by the tracker.

Boxes are ``XYXY`` pixels (see :mod:`perception_nodes.core.types`).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

NOT_ALLOWED = 1e6  # cost of a forbidden pair (linear_sum_assignment needs finite costs)


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
    """Optimal one-to-one ``(row, col)`` pairs minimising ``cost`` among ``allowed`` pairs (the
    most pairs first, then the least cost), sorted by row.

    A pair that is the only allowed one of its row and of its column belongs to every such
    assignment: it is taken as it is; the solver sees only the rows and columns left with an
    allowed pair (in a tracker's frame most regions have one candidate track: the full ``R x T``
    problem cost ~0.8 ms at 256 regions, the rest a few microseconds)."""
    if cost.size == 0 or not allowed.any():
        return []
    per_row, per_col = allowed.sum(axis=1), allowed.sum(axis=0)
    lone = allowed & (per_row == 1)[:, None] & (per_col == 1)[None]
    out = list(zip(*(np.nonzero(lone)[k].tolist() for k in (0, 1))))
    rest = allowed & ~lone
    sub_r, sub_c = np.nonzero(rest.any(axis=1))[0], np.nonzero(rest.any(axis=0))[0]
    if sub_r.size:
        sub_allowed = rest[sub_r][:, sub_c]  # what np.ix_ picks, at half its cost
        rows, cols = linear_sum_assignment(
            np.where(sub_allowed, cost[sub_r][:, sub_c], NOT_ALLOWED)
        )
        out += [(int(sub_r[r]), int(sub_c[c])) for r, c in zip(rows, cols) if sub_allowed[r, c]]
    return sorted(out)
