"""Match predicted masks to ground-truth masks by IoU and re-target GT relations onto them (RAM).

Hungarian assignment (scipy) maximises the total IoU one-to-one; then every GT left without a
mask (or assigned one below ``min_iou``) falls back to its best mask above ``min_iou`` even if
that mask is already used by another GT (one SAM mask covering two objects). So (almost) every
GT mask gets a mask, as RAM requires.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

logger = logging.getLogger(__name__)


def mask_iou_matrix(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``(Np, Ng)`` IoU between ``(Np, H, W)`` and ``(Ng, H, W)`` bool masks."""
    if pred.shape[1:] != gt.shape[1:]:
        raise ValueError(
            f"mask sizes differ: predicted {pred.shape[1:]}, ground truth {gt.shape[1:]}"
        )
    p = pred.reshape(pred.shape[0], -1).astype(np.float32)
    g = gt.reshape(gt.shape[0], -1).astype(np.float32)
    inter = p @ g.T
    union = p.sum(1)[:, None] + g.sum(1)[None, :] - inter
    return (inter / np.maximum(union, 1.0)).astype(np.float64)


@dataclass
class MatchResult:
    """GT -> predicted mask assignment.

    Attributes:
        gt_to_pred: ``(Ng,)`` int64 predicted mask index per GT mask, -1 = unmatched.
        gt_iou: ``(Ng,)`` float64 IoU of that match (0 when unmatched).
        num_shared: GT masks whose mask is also assigned to another GT (greedy fallback).
    """

    gt_to_pred: np.ndarray
    gt_iou: np.ndarray
    num_shared: int = 0

    @property
    def num_matched(self) -> int:
        return int((self.gt_to_pred >= 0).sum())

    def pred_to_gt(self, num_pred: int) -> list[list[int]]:
        """For each predicted mask, the GT indices assigned to it (possibly several)."""
        out: list[list[int]] = [[] for _ in range(num_pred)]
        for g, p in enumerate(self.gt_to_pred):
            if p >= 0:
                out[int(p)].append(g)
        return out


def match_masks(iou: np.ndarray, min_iou: float = 0.5, allow_shared: bool = True) -> MatchResult:
    """Assign predicted masks (rows of ``iou``) to GT masks (columns).

    Args:
        iou: ``(Np, Ng)`` IoU matrix (e.g. :func:`mask_iou_matrix`).
        min_iou: a GT is matched only to a mask with IoU >= this.
        allow_shared: greedy fallback for GTs the one-to-one assignment left unmatched.
    """
    if iou.ndim != 2:
        raise ValueError(f"iou must be a (num_pred, num_gt) matrix, got shape {iou.shape}")
    n_pred, n_gt = iou.shape
    gt_to_pred = np.full(n_gt, -1, dtype=np.int64)
    gt_iou = np.zeros(n_gt, dtype=np.float64)
    if n_pred == 0 or n_gt == 0:
        return MatchResult(gt_to_pred, gt_iou)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    for r, c in zip(rows, cols):
        if iou[r, c] >= min_iou:
            gt_to_pred[c], gt_iou[c] = r, iou[r, c]
    shared = 0
    if allow_shared:
        for c in np.nonzero(gt_to_pred < 0)[0]:
            r = int(np.argmax(iou[:, c]))
            if iou[r, c] >= min_iou:
                gt_to_pred[c], gt_iou[c] = r, iou[r, c]
                shared += 1
    return MatchResult(gt_to_pred, gt_iou, shared)


@dataclass
class RetargetResult:
    """GT relations expressed on predicted masks.

    Attributes:
        triplets: ``(M, 3)`` int64 unique ``[subject_mask, object_mask, predicate]``.
        counts: ``total`` GT relations, ``dropped_unmatched`` (an end without a mask),
            ``dropped_self`` (both ends on the same mask), ``merged_duplicates``, ``kept``.
    """

    triplets: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)


def retarget_relations(relations: np.ndarray, match: MatchResult) -> RetargetResult:
    """Map GT ``[subject_gt, object_gt, predicate]`` rows onto predicted mask indices."""
    rel = np.asarray(relations, dtype=np.int64).reshape(-1, 3)
    n_gt = match.gt_to_pred.shape[0]
    if rel.size and (rel[:, :2].min() < 0 or rel[:, :2].max() >= n_gt):
        raise ValueError(f"relation references a GT segment outside 0..{n_gt - 1}")
    counts = {"total": int(rel.shape[0]), "dropped_unmatched": 0, "dropped_self": 0,
              "merged_duplicates": 0, "kept": 0}  # fmt: skip
    seen: set[tuple[int, int, int]] = set()
    out: list[tuple[int, int, int]] = []
    for s, o, p in rel:
        ms, mo = int(match.gt_to_pred[s]), int(match.gt_to_pred[o])
        if ms < 0 or mo < 0:
            counts["dropped_unmatched"] += 1
        elif ms == mo:
            counts["dropped_self"] += 1
        elif (ms, mo, int(p)) in seen:
            counts["merged_duplicates"] += 1
        else:
            seen.add((ms, mo, int(p)))
            out.append((ms, mo, int(p)))
    counts["kept"] = len(out)
    triplets = np.array(out, dtype=np.int64).reshape(-1, 3)
    return RetargetResult(triplets, counts)
