"""Relations from geometry alone (no weights): always available, the default predictor.

Every score is a continuous function of the pair's geometry in [0, 1] (1 = the relation clearly
holds). Image coordinates: x to the right, y downwards; "above" means smaller y.
"""

from __future__ import annotations

import logging

import numpy as np

from perception_nodes.core.relations.base import (
    RegionGeometry,
    RelationPredictor,
    check_labels,
    region_geometry,
    relations_from_scores,
)
from perception_nodes.core.relations.predicates import GEOMETRIC_PREDICATES
from perception_nodes.core.types import RegionLabels, Relations, Segmentation

logger = logging.getLogger(__name__)


def _clip01(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0)


class _PairTerms:
    """Pairwise box quantities (row = subject i, column = object j), all ``(N, N)``."""

    def __init__(self, geom: RegionGeometry) -> None:
        b = geom.boxes
        x0, y0, x1, y1 = (b[:, k] for k in range(4))
        self.w = np.maximum(x1 - x0, 1.0)
        self.h = np.maximum(y1 - y0, 1.0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        self.dcx = cx[None, :] - cx[:, None]  # > 0: object right of subject
        self.dcy = cy[None, :] - cy[:, None]  # > 0: object below subject
        self.half_w = (self.w[:, None] + self.w[None, :]) / 2
        self.half_h = (self.h[:, None] + self.h[None, :]) / 2
        ov_x = np.minimum(x1[:, None], x1[None, :]) - np.maximum(x0[:, None], x0[None, :])
        ov_y = np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :])
        self.gap_x = np.clip(-ov_x, 0, None)  # horizontal gap between boxes (0 if they overlap)
        self.gap_y = np.clip(-ov_y, 0, None)
        # Fraction of the narrower (shorter) box covered by the other in x (y).
        self.x_overlap = _clip01(ov_x / np.minimum(self.w[:, None], self.w[None, :]))
        self.y_overlap = _clip01(ov_y / np.minimum(self.h[:, None], self.h[None, :]))
        self.x_overlap_s = _clip01(ov_x / self.w[:, None])  # fraction of the subject's width
        self.s_bottom, self.o_top = y1[:, None], y0[None, :]
        self.o_h = self.h[None, :]
        self.s_h = self.h[:, None]
        self.box_in_obj = _clip01(
            np.clip(ov_x, 0, None) * np.clip(ov_y, 0, None) / (self.w * self.h)[:, None]
        )


class GeometricRelationPredictor(RelationPredictor):
    """Left of, right of, above, below, on, part of, inside, overlapping, next to; with depth also
    in front of / behind.

    Args:
        min_score: relations scoring below this are not returned.
        depth_scale: meters; a depth difference of ``depth_scale + 0.1 * depth`` gives score ~0.76.
        max_per_subject: keep at most this many relations per subject (best first), 0 = all.
    """

    source = "geometric"

    def __init__(
        self, min_score: float = 0.3, depth_scale: float = 0.15, max_per_subject: int = 0
    ) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        if depth_scale <= 0:
            raise ValueError(f"depth_scale must be > 0 meters, got {depth_scale}")
        self.min_score = float(min_score)
        self.depth_scale = float(depth_scale)
        self.max_per_subject = int(max_per_subject)
        self.predicates = list(GEOMETRIC_PREDICATES)

    def scores(self, geom: RegionGeometry) -> np.ndarray:
        """``(N, N, P)`` float32 scores in [0, 1] for the predicates in :attr:`predicates`;
        the diagonal (self-pairs) is 0; depth predicates are 0 where depth is unknown."""
        n = len(geom)
        t = _PairTerms(geom)
        inter = geom.inter
        frac_s = inter / geom.areas[:, None]  # fraction of the subject inside the object's mask
        smaller = geom.areas[:, None] < geom.areas[None, :]
        out = np.zeros((len(self.predicates), n, n), dtype=np.float64)  # contiguous planes
        part_of = _clip01((frac_s - 0.7) / 0.25) * smaller
        free = 1 - np.maximum(part_of, part_of.T)  # 0 where one of the pair contains the other
        out[0] = _clip01(t.dcx / t.half_w) * free  # left of
        out[1] = _clip01(-t.dcx / t.half_w) * free  # right of
        out[2] = _clip01(t.dcy / t.half_h) * free  # above
        out[3] = _clip01(-t.dcy / t.half_h) * free  # below
        out[4] = self._on(t, frac_s) * free
        out[5] = part_of
        out[6] = (
            t.box_in_obj
            * _clip01((0.5 - frac_s) / 0.4)
            * smaller
            * _clip01((t.box_in_obj - 0.8) / 0.15)
        )
        iou_min = inter / np.minimum(geom.areas[:, None], geom.areas[None, :])
        out[7] = _clip01(iou_min / 0.3) * free * (iou_min > 0.02)  # overlapping
        gap = np.hypot(t.gap_x, t.gap_y) / np.minimum(t.half_w, t.half_h)
        side_by_side = np.maximum(t.y_overlap, t.x_overlap)
        out[8] = np.exp(-gap / 0.5) * side_by_side * _clip01(1 - iou_min / 0.3) * free
        out[9], out[10] = self._depth_order(geom)
        idx = np.arange(n)
        out[:, idx, idx] = 0.0
        return np.ascontiguousarray(out.transpose(1, 2, 0), dtype=np.float32)

    @staticmethod
    def _on(t: _PairTerms, frac_s: np.ndarray) -> np.ndarray:
        """Subject rests on object: its bottom edge lies near the object's top part (from a bit
        above the object's top to 60 % down it), horizontal overlap, and subject higher."""
        tol = 0.1 * t.s_h + 2.0
        rel = t.s_bottom - t.o_top  # > 0: subject's bottom below the object's top edge
        contact = np.where(rel < 0, np.exp(rel / tol), _clip01(1 - (rel - 0.6 * t.o_h) / tol))
        higher = _clip01(t.dcy / (0.25 * t.half_h))  # subject's centre above the object's
        not_inside = _clip01((0.9 - frac_s) / 0.2)
        return contact * t.x_overlap_s * higher * not_inside

    def _depth_order(self, geom: RegionGeometry) -> tuple[np.ndarray, np.ndarray]:
        """(in front of, behind): subject nearer (farther) than object, from median depths."""
        d = geom.depth
        valid = np.isfinite(d[:, None]) & np.isfinite(d[None, :])
        diff = np.where(valid, d[None, :] - d[:, None], 0.0)  # > 0: subject nearer
        ref = np.where(valid, np.minimum(d[:, None], d[None, :]), 0.0)
        scale = self.depth_scale + 0.1 * ref
        front = np.tanh(np.clip(diff, 0, None) / scale) * valid
        behind = np.tanh(np.clip(-diff, 0, None) / scale) * valid
        return front, behind

    def predict(
        self,
        segmentation: Segmentation,
        labels: RegionLabels | None,
        depth: np.ndarray | None = None,
    ) -> Relations:
        """All (subject, object, predicate) with score >= ``min_score``, sorted by score."""
        geom = region_geometry(segmentation, depth)  # validates segmentation and depth
        check_labels(labels, len(segmentation))
        if len(geom) < 2:
            return Relations.empty(self.predicates, self.source)
        return relations_from_scores(
            self.scores(geom), self.predicates, self.source, self.min_score, self.max_per_subject
        )
