"""What the tracker knows about every (region, track) pair of a frame: ``(R, T)`` matrices.

- ``iou``: exact mask IoU of the region with the track's mask placed where the motion model
  predicts it (:mod:`.masks`); ``cover``: share of the region inside that placed mask; both
  computed only for the pairs that need them (boxes allowing IoU >= the gate, then on demand);
- ``appearance``: cosine of the region's SAM token with the track's running token, averaged
  with the cosine of the CLIP region embeddings where both have one (0 for pairs neither
  near nor overlapping: never compared);
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
from perception_nodes.core.tracking.masks import MaskCrop, intersections, overlap_bounds
from perception_nodes.core.types import Segmentation

MIN_REACH_PX = 16.0
REACH_GROWTH = 0.5  # reach added per missed frame, in predicted diagonals
MAX_REACH_MISSES = 8
MAX_AREA_RATIO = 3.0


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

    def __post_init__(self) -> None:
        self._crop_boxes = np.round(self.boxes).astype(np.int64).tolist()
        self._int_areas = self.areas.astype(np.int64).tolist()  # int(areas[r]) of every region

    def crop(self, r: int) -> MaskCrop:
        """Region ``r``'s mask cut to its tight box rounded to pixels (a copy), as
        :func:`.masks.crop_of` does (here without per-call numpy rounding)."""
        x0, y0, x1, y1 = self._crop_boxes[r]
        return MaskCrop(self.masks[r, y0:y1, x0:x1].copy(), x0, y0, self._int_areas[r])


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
    """``iou`` and ``cover`` are exact where ``compared`` (0 elsewhere): at first for the pairs
    whose boxes allow IoU >= the gate; :meth:`compare` adds more on demand."""

    iou: np.ndarray
    cover: np.ndarray
    appearance: np.ndarray
    near: np.ndarray
    label_agreement: np.ndarray
    compared: np.ndarray
    cover_bound: np.ndarray
    regions: RegionCues
    crops: list[MaskCrop]
    t_areas: np.ndarray

    def compare(self, wanted: np.ndarray) -> None:
        """Compare the masks of the ``wanted`` ``(R, T)`` pairs not compared yet (pairs whose
        boxes leave no overlap are skipped)."""
        rows, cols = np.nonzero(wanted & ~self.compared & (self.cover_bound > 0))
        if rows.size:
            boxes = self.regions.boxes.astype(np.int64)
            inter = intersections(self.regions.masks, boxes, rows, cols, self.crops)
            areas_r = self.regions.areas[rows]
            union = np.maximum(areas_r + self.t_areas[cols] - inter, 1.0)
            self.iou[rows, cols] = inter / union
            self.cover[rows, cols] = inter / np.maximum(areas_r, 1.0)
        self.compared |= wanted


def pair_cues(regions: RegionCues, tracks: TrackCues, iou_gate: float) -> PairCues:
    """``(R, T)`` cues of every pair (see the module docstring); masks compared only for the
    pairs whose boxes allow a mask IoU >= ``iou_gate``."""
    n_r, n_t = len(regions.areas), len(tracks.crops)
    t_boxes = np.array([c.box for c in tracks.crops], np.float64).reshape(n_t, 4)
    t_areas = np.array([c.area for c in tracks.crops], np.float64)
    iou_bound, cover_bound = overlap_bounds(regions.boxes, regions.areas, t_boxes, t_areas)
    zeros = np.zeros((n_r, n_t))
    near = _near(regions, t_boxes, t_areas, tracks)
    cues = PairCues(
        zeros,
        zeros.copy(),
        zeros.copy(),
        near,
        _label_agreement(regions.labels, tracks.labels, n_r, n_t),
        np.zeros((n_r, n_t), bool),
        cover_bound,
        regions,
        tracks.crops,
        t_areas,
    )
    cues.compare(iou_bound >= min(iou_gate, 1.0) - 1e-9)
    # appearance only where it can decide: overlapping pairs (the score), and near pairs of a
    # region or a track that has no IoU candidate (re-identification)
    gated = cues.iou >= iou_gate
    open_pair = ~gated.any(axis=1)[:, None] | ~gated.any(axis=0)[None]
    rows, cols = np.nonzero((near & open_pair) | (cues.iou > 0))
    cues.appearance[rows, cols] = _appearance(regions, tracks, rows, cols)
    return cues


def _appearance(regions: RegionCues, tracks: TrackCues, rows: np.ndarray, cols: np.ndarray):
    """``(K,)`` appearance cosine of the pairs ``(rows[k], cols[k])``: only the pairs near each
    other or overlapping (all R x T of 256-d tokens cost ~10 ms at 256 regions)."""
    cos = np.zeros(rows.size)
    if not rows.size:
        return cos
    if regions.tokens.shape[1] == tracks.tokens.shape[1]:
        cos = np.einsum("ij,ij->i", regions.tokens[rows], tracks.tokens[cols]).astype(np.float64)
    if regions.embeddings is None:
        return cos
    dim = regions.embeddings.shape[1]
    have = np.array([e is not None and e.shape[0] == dim for e in tracks.embeddings], bool)
    pick = have[cols]
    if pick.any():
        used = sorted(set(cols[pick].tolist()))
        emb = np.zeros((len(tracks.embeddings), dim), np.float32)
        emb[used] = unit_rows(np.stack([tracks.embeddings[i] for i in used]))
        e_cos = np.einsum("ij,ij->i", regions.embeddings[rows[pick]], emb[cols[pick]])
        cos[pick] = 0.5 * (cos[pick] + e_cos)
    return cos


def _near(regions: RegionCues, t_boxes, t_areas, tracks: TrackCues) -> np.ndarray:
    diag = np.hypot(t_boxes[:, 2] - t_boxes[:, 0], t_boxes[:, 3] - t_boxes[:, 1])
    growth = 1.0 + REACH_GROWTH * np.minimum(tracks.misses, MAX_REACH_MISSES)
    reach = np.maximum(diag, MIN_REACH_PX) * growth + 3.0 * tracks.position_std
    rc, tc = box_centres(regions.boxes), box_centres(t_boxes)
    dx = rc[:, None, 0] - tc[None, :, 0]
    dy = rc[:, None, 1] - tc[None, :, 1]
    dx *= dx
    dy *= dy
    dx += dy
    dist = np.sqrt(dx, out=dx)  # what np.linalg.norm(axis=2) computes, on (R, T) planes
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
        # the two largest of each row (what a descending sort's first two columns hold; a
        # repeated maximum is its own runner-up), without sorting every row
        rows = np.arange(s.shape[0])
        best_at = np.argmax(s, axis=1)
        best = s[rows, best_at]
        if s.shape[1] > 1:
            rest = s.copy()
            rest[rows, best_at] = -np.inf
            runner_up = rest.max(axis=1)
        else:
            runner_up = np.full(s.shape[0], floor)
        return (s == best[:, None]) & ((best - runner_up) >= margin)[:, None]

    return clear_best(score) & clear_best(score.T).T


def region_cues(seg: Segmentation, cues, high_score: float) -> RegionCues:
    """The frame's regions as the tracker compares them (``cues``: the tracker's FrameCues;
    every region scores ``high_score`` when SAM's scores mean nothing)."""
    n = len(seg)
    scores = np.asarray(seg.predicted_iou, np.float64) * np.asarray(seg.stability_score, np.float64)
    if not cues.scores_meaningful:
        scores = np.full(n, max(high_score, 1.0))
    if not np.isfinite(scores).all():  # (nan_to_num costs ~20 us even with nothing to do)
        scores = np.nan_to_num(scores, nan=0.0)
    emb = cues.embeddings
    labels = cues.labels
    return RegionCues(
        masks=seg.masks,
        boxes=seg.boxes_xyxy.astype(np.float64),
        areas=seg.areas.astype(np.float64),
        scores=scores,
        tokens=unit_rows(seg.tokens),
        embeddings=None if emb is None or len(emb) != n else unit_rows(emb),
        labels=None if labels is None or len(labels) != n else np.asarray(labels, np.int64),
    )
