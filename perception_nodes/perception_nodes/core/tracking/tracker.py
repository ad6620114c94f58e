"""Region tracker of one camera: each frame's SAM regions -> persistent track identities.

Association (per frame, regions R x live tracks T):
- overlap: mask IoU between the region and the track's last mask (coarse grid, see
  :mod:`.association`), and the cosine similarity of the region's SAM token with the track's
  running token;
- a pair may match when IoU >= ``iou_gate``; or, to bridge fast motion, dropped frames,
  occlusions and short exits, when the tokens agree (cosine >= ``similarity_gate``) and the
  region lies within reach of the track (twice its box diagonal, times one plus the frames it
  has missed), and the tokens single the pair out: each is the other's most similar candidate
  by at least :data:`APPEARANCE_MARGIN` (tokens that look alike everywhere, as with untrained
  weights, then never match without overlap); never when one mask lies inside the other with
  less than :data:`NESTED_AREA_RATIO` of its area. A part of an object (a shirt inside a person) overlaps the whole with
  IoU = area ratio, so with ``iou_gate`` >= 0.5 neither can take the other's track;
- the score ``(1 - w) * IoU + w * max(cosine, 0)`` (``w = similarity_weight``) is maximised by
  an optimal one-to-one assignment (``scipy.optimize.linear_sum_assignment``).

Life cycle: a new region opens a *tentative* track, confirmed after ``birth_hits`` consecutive
matches (tentative tracks die at their first miss); a confirmed track dies after
``death_misses`` consecutive processed frames without a match. Frames the node drops are never
seen here, so they count as nothing (neither hit nor miss). Track ids come from an id source
shared by every camera of the pipeline, so an id is never reused within a run.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

import numpy as np

from perception_nodes.core.tracking.association import (
    MaskGrids,
    assign,
    box_centres,
    grid_iou,
    grid_stride,
    intersections,
    mask_grids,
    unit_rows,
)
from perception_nodes.core.types import Segmentation

NESTED_AREA_RATIO = (
    0.35  # a mask inside another with less than this share of its area is a part of it
)
NESTED_COVER = 0.8  # "inside": this share of the smaller mask lies in the larger one
TOKEN_MOMENTUM = 0.5  # weight of the previous running token when a new one is merged
APPEARANCE_MARGIN = (
    0.05  # a match by tokens alone must beat the next-best candidate's cosine by this
)
NO_CANDIDATE = -2.0  # below any cosine


@dataclass(frozen=True)
class TrackerSettings:
    """Association and life-cycle settings (``tracking_*`` fields of PipelineConfig)."""

    iou_gate: float = 0.5
    similarity_weight: float = 0.3
    similarity_gate: float = 0.8
    birth_hits: int = 2
    death_misses: int = 30


class TrackIdSource:
    """Thread-safe increasing ids starting at 1 (0 means "untracked" on the wire)."""

    def __init__(self) -> None:
        self._next = itertools.count(1)
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            return next(self._next)


@dataclass
class Track:
    """One tracked object.

    ``grid``: last mask on the comparison grid (one row); ``box``: ``(4,)`` XYXY pixels;
    ``area``: last mask area, pixels; ``token``: ``(D,)`` unit running SAM token;
    ``hits``: frames observed; ``misses``: consecutive processed frames without a match.
    ``history``: per observed frame ``(vocabulary_version, label_index, label_score)``, newest last.
    """

    track_id: int
    grid: MaskGrids
    box: np.ndarray
    area: float
    token: np.ndarray
    hits: int = 1
    misses: int = 0
    confirmed: bool = False
    history: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def age(self) -> int:
        """Frames in which the track was observed (this one included)."""
        return self.hits


class RegionTracker:
    """Tracks of one camera stream; :meth:`update` once per processed frame."""

    def __init__(self, ids: TrackIdSource | None = None) -> None:
        self.ids = ids or TrackIdSource()
        self.tracks: list[Track] = []
        self.image_size: tuple[int, int] | None = None

    def update(self, seg: Segmentation, settings: TrackerSettings) -> list[Track]:
        """Associate the frame's regions with tracks; returns the track of each region (same order)."""
        if self.image_size != tuple(seg.image_size):
            self.tracks, self.image_size = [], tuple(seg.image_size)
        stride = grid_stride(seg.image_size)
        grids = mask_grids(seg.masks, stride)
        boxes = seg.boxes_xyxy.astype(np.float64)
        tokens = unit_rows(seg.tokens)
        pairs = self._match(grids, boxes, seg.areas.astype(np.float64), tokens, settings)
        out: list[Track | None] = [None] * len(seg)
        matched_tracks = set()
        merged = self._merged_tokens(pairs, tokens)
        for k, (r, t) in enumerate(pairs):
            track = self.tracks[t]
            self._observe(track, grids.row(r), boxes[r], float(seg.areas[r]), merged[k], settings)
            out[r] = track
            matched_tracks.add(t)
        survivors = []
        for t, track in enumerate(self.tracks):
            if t in matched_tracks:
                survivors.append(track)
                continue
            track.misses += 1
            if track.confirmed and track.misses < settings.death_misses:
                survivors.append(track)
        for r in range(len(seg)):
            if out[r] is None:
                out[r] = Track(
                    self.ids.next(),
                    grids.row(r),
                    boxes[r],
                    float(seg.areas[r]),
                    tokens[r],
                    confirmed=settings.birth_hits <= 1,
                )
                survivors.append(out[r])
        self.tracks = survivors
        return out  # type: ignore[return-value]

    def _match(
        self, grids, boxes, areas, tokens, settings: TrackerSettings
    ) -> list[tuple[int, int]]:
        if not self.tracks or len(grids) == 0:
            return []
        t_grids = MaskGrids.stack([t.grid for t in self.tracks])
        t_boxes = np.stack([t.box for t in self.tracks])
        t_areas = np.array([t.area for t in self.tracks])
        t_tokens = np.stack([t.token for t in self.tracks])
        t_misses = np.array([t.misses for t in self.tracks], dtype=np.float64)
        inter = intersections(grids, t_grids, boxes, t_boxes)
        iou = grid_iou(inter, grids, t_grids, boxes, t_boxes)
        # einsum, not `@`: a BLAS product this small took ~45 ms (vs 0.3 ms) with OpenBLAS's threads on a loaded CPU
        cos = (
            np.einsum("ik,jk->ij", tokens, t_tokens)
            if tokens.shape[1] == t_tokens.shape[1]
            else np.zeros_like(iou)
        )
        nested = _nested(inter, grids, t_grids, areas, t_areas)
        diag = np.hypot(t_boxes[:, 2] - t_boxes[:, 0], t_boxes[:, 3] - t_boxes[:, 1])
        dist = np.linalg.norm(box_centres(boxes)[:, None] - box_centres(t_boxes)[None], axis=2)
        reach = 2.0 * np.maximum(diag, 1.0) * (1.0 + t_misses)
        candidate = np.where(~nested & (dist <= reach[None]), cos, NO_CANDIDATE)
        by_appearance = (candidate >= settings.similarity_gate) & _singled_out(
            candidate, APPEARANCE_MARGIN
        )
        allowed = (iou >= settings.iou_gate) | by_appearance
        w = settings.similarity_weight
        score = (1.0 - w) * iou + w * np.maximum(cos, 0.0)
        return assign(1.0 - score, allowed)

    def _merged_tokens(self, pairs: list[tuple[int, int]], tokens: np.ndarray) -> np.ndarray:
        """``(P, D)`` unit running tokens of the matched tracks after merging the regions' tokens."""
        if not pairs:
            return tokens[:0]
        rows = [r for r, _ in pairs]
        old = np.stack([self.tracks[t].token for _, t in pairs])
        if old.shape[1] != tokens.shape[1]:
            return tokens[rows]
        merged = unit_rows(TOKEN_MOMENTUM * old + (1.0 - TOKEN_MOMENTUM) * tokens[rows])
        zero = ~np.isfinite(merged).all(axis=1) | ~merged.any(axis=1)
        merged[zero] = tokens[rows][zero]
        return merged

    @staticmethod
    def _observe(track: Track, grid, box, area: float, token, settings: TrackerSettings) -> None:
        track.grid, track.box, track.area, track.token = grid, box, area, token
        track.hits += 1
        track.misses = 0
        track.confirmed = track.confirmed or track.hits >= settings.birth_hits


def _nested(
    inter: np.ndarray, grids: MaskGrids, t_grids: MaskGrids, areas: np.ndarray, t_areas: np.ndarray
) -> np.ndarray:
    """``(R, T)`` True where one mask lies inside the other (part/whole), on the grid."""
    smaller_grid = np.minimum(grids.cells[:, None], t_grids.cells[None])
    inside = inter >= NESTED_COVER * np.maximum(smaller_grid, 1)
    ratio = np.minimum(areas[:, None], t_areas[None]) / np.maximum(
        np.maximum(areas[:, None], t_areas[None]), 1
    )
    return inside & (smaller_grid > 0) & (ratio < NESTED_AREA_RATIO)


def _singled_out(score: np.ndarray, margin: float) -> np.ndarray:
    """``(R, T)`` True where ``score[r, t]`` is the best of its row and of its column, each by at
    least ``margin`` over the runner-up (a lone candidate always is)."""

    def clear_best(s: np.ndarray) -> np.ndarray:  # along axis 1
        if s.shape[1] == 0:
            return np.zeros(s.shape, bool)
        top2 = -np.sort(-s, axis=1)[:, :2]
        runner_up = top2[:, 1] if s.shape[1] > 1 else np.full(s.shape[0], NO_CANDIDATE)
        return (s == top2[:, :1]) & ((top2[:, 0] - runner_up) >= margin)[:, None]

    return clear_best(score) & clear_best(score.T).T
