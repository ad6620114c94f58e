"""What the tracker knows about every (region, track) pair of a frame: ``(R, T)`` matrices.

- ``iou``: exact mask IoU of the region with the track's mask placed where the motion model
  predicts it (:mod:`.masks`); ``cover``: share of the region inside that placed mask;
- ``appearance``: cosine of the region's SAM token with the track's running token, averaged
  with the cosine of the CLIP region embeddings where both have one;
- ``near``: the region lies within the track's reach: centre distance at most the predicted
  box's diagonal (at least :data:`MIN_REACH_PX`), growing by half of it per missed frame (capped),
  plus three standard deviations of the predicted centre; and a plausible size (area ratio
  within ``[1/MAX_AREA_RATIO, MAX_AREA_RATIO]``);
- ``label_agreement``: +1 same label, -1 another label, 0 where either is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception_nodes.core.tracking.association import box_centres, unit_rows
from perception_nodes.core.tracking.masks import MaskCrop, intersection, overlap_bounds

MIN_REACH_PX = 16.0
REACH_GROWTH = 0.5  # reach added per missed frame, in predicted diagonals
MAX_REACH_MISSES = 8
MAX_AREA_RATIO = 3.0
MIN_IOU_OF_INTEREST = 0.1  # pairs whose box bound is below this (and cover bound below
MIN_COVER_OF_INTEREST = 0.5  # this) are never compared pixel by pixel


@dataclass
class RegionCues:
    """The frame's ``R`` regions: ``masks`` ``(R, H, W)`` bool, ``boxes`` ``(R, 4)`` XYXY float,
    ``areas`` ``(R,)``, ``scores`` ``(R,)`` detection confidence [0, 1], ``tokens`` ``(R, D)``
    unit, ``embeddings`` ``(R, E)`` unit or None, ``labels`` ``(R,)`` index (-1 unknown) or None."""

    masks: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    scores: np.ndarray
    tokens: np.ndarray
    embeddings: np.ndarray | None
    labels: np.ndarray | None


@dataclass
class TrackCues:
    """The ``T`` tracks as predicted for this frame: placed ``crops``, ``tokens`` ``(T, D)``,
    ``embeddings`` (list, None where a track has none), ``labels`` ``(T,)`` (-1 unknown),
    ``misses`` ``(T,)``, ``position_std`` ``(T,)`` pixels."""

    crops: list[MaskCrop]
    tokens: np.ndarray
    embeddings: list[np.ndarray | None]
    labels: np.ndarray
    misses: np.ndarray
    position_std: np.ndarray


@dataclass
class PairCues:
    iou: np.ndarray
    cover: np.ndarray
    appearance: np.ndarray
    near: np.ndarray
    label_agreement: np.ndarray


def pair_cues(regions: RegionCues, tracks: TrackCues) -> PairCues:
    """``(R, T)`` cues of every pair (see the module docstring)."""
    n_r, n_t = len(regions.areas), len(tracks.crops)
    t_boxes = np.array([c.box for c in tracks.crops], np.float64).reshape(n_t, 4)
    t_areas = np.array([c.area for c in tracks.crops], np.float64)
    iou, cover = _mask_overlaps(regions, tracks.crops, t_boxes, t_areas)
    return PairCues(
        iou,
        cover,
        _appearance(regions, tracks),
        _near(regions, t_boxes, t_areas, tracks),
        _label_agreement(regions.labels, tracks.labels, n_r, n_t),
    )


def _mask_overlaps(regions: RegionCues, crops, t_boxes, t_areas):
    areas = regions.areas.astype(np.float64)
    iou_bound, cover_bound = overlap_bounds(regions.boxes, areas, t_boxes, t_areas)
    rows, cols = np.nonzero(
        (iou_bound >= MIN_IOU_OF_INTEREST) | (cover_bound >= MIN_COVER_OF_INTEREST)
    )
    iou, cover = np.zeros(iou_bound.shape), np.zeros(iou_bound.shape)
    for r, t in zip(rows.tolist(), cols.tolist()):
        inter = intersection(regions.masks[r], regions.boxes[r], crops[t])
        if inter > 0:
            iou[r, t] = inter / max(areas[r] + t_areas[t] - inter, 1.0)
            cover[r, t] = inter / max(areas[r], 1.0)
    return iou, cover


def _appearance(regions: RegionCues, tracks: TrackCues) -> np.ndarray:
    # einsum, not `@`: a BLAS product this small took ~45 ms (vs 0.3 ms) with OpenBLAS's threads on a loaded CPU
    if regions.tokens.shape[1] != tracks.tokens.shape[1]:
        cos = np.zeros((len(regions.areas), len(tracks.crops)))
    else:
        cos = np.einsum("ik,jk->ij", regions.tokens, tracks.tokens).astype(np.float64)
    if regions.embeddings is None:
        return cos
    have = [
        i
        for i, e in enumerate(tracks.embeddings)
        if e is not None and e.shape[0] == regions.embeddings.shape[1]
    ]
    if have:
        emb = unit_rows(np.stack([tracks.embeddings[i] for i in have]))
        cos[:, have] = 0.5 * (cos[:, have] + np.einsum("ik,jk->ij", regions.embeddings, emb))
    return cos


def _near(regions: RegionCues, t_boxes, t_areas, tracks: TrackCues) -> np.ndarray:
    diag = np.hypot(t_boxes[:, 2] - t_boxes[:, 0], t_boxes[:, 3] - t_boxes[:, 1])
    growth = 1.0 + REACH_GROWTH * np.minimum(tracks.misses, MAX_REACH_MISSES)
    reach = np.maximum(diag, MIN_REACH_PX) * growth + 3.0 * tracks.position_std
    dist = np.linalg.norm(box_centres(regions.boxes)[:, None] - box_centres(t_boxes)[None], axis=2)
    ratio = regions.areas.astype(np.float64)[:, None] / np.maximum(t_areas[None], 1.0)
    return (dist <= reach[None]) & (ratio <= MAX_AREA_RATIO) & (ratio >= 1.0 / MAX_AREA_RATIO)


def _label_agreement(r_labels, t_labels, n_r: int, n_t: int) -> np.ndarray:
    if r_labels is None:
        return np.zeros((n_r, n_t))
    known = (r_labels[:, None] >= 0) & (t_labels[None] >= 0)
    same = r_labels[:, None] == t_labels[None]
    return np.where(known, np.where(same, 1.0, -1.0), 0.0)


def singled_out(score: np.ndarray, margin: float, floor: float) -> np.ndarray:
    """``(R, T)`` True where ``score[r, t]`` is the best of its row and of its column, each by at
    least ``margin`` over the runner-up (a lone candidate always is); ``floor`` stands for "no
    candidate" in ``score``."""

    def clear_best(s: np.ndarray) -> np.ndarray:  # along axis 1
        if s.shape[1] == 0:
            return np.zeros(s.shape, bool)
        top2 = -np.sort(-s, axis=1)[:, :2]
        runner_up = top2[:, 1] if s.shape[1] > 1 else np.full(s.shape[0], floor)
        return (s == top2[:, :1]) & ((top2[:, 0] - runner_up) >= margin)[:, None]

    return clear_best(score) & clear_best(score.T).T
