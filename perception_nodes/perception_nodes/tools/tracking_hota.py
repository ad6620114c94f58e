"""HOTA of a tracker's ids on a sequence, computed by TrackEval (the metric authors' own code).

py-motmetrics gives IDF1 and MOTA at one match threshold (mask IoU >= 0.5); HOTA (Luiten et al.,
"HOTA: A Higher Order Metric for Evaluating Multi-Object Tracking", IJCV 2021) is the geometric
mean of detection accuracy (DetA) and association accuracy (AssA), averaged over the match
thresholds 0.05, 0.10, ..., 0.95, so a tracker that keeps ids but on loose masks, or finds every
object but swaps ids, both show. TrackEval's ``HOTA.eval_sequence`` is used as is; this module
only collects the frames in the form it reads (ids mapped to 0..n-1, one similarity matrix per
frame).
"""

from __future__ import annotations

import sys

import numpy as np

try:  # installed by scripts/setup.sh (--no-deps: see scripts/requirements-nodeps.txt)
    from trackeval.metrics import HOTA
except ImportError:  # only where the dependency is missing: the benchmarks say so and go on
    HOTA = None

HOTA_KEYS = ("hota", "deta", "assa")
MISSING = (
    "HOTA: TrackEval is not installed (pip install --no-deps -r scripts/requirements-nodeps.txt);"
    " the HOTA, DetA and AssA columns show nan"
)


def warn_if_missing(file=None) -> None:
    """One line on ``file`` (standard error) when TrackEval is missing (the benchmarks call it
    at start)."""
    if HOTA is None:
        print(MISSING, file=file or sys.stderr, flush=True)


class HotaAccumulator:
    """Frames of one sequence; :meth:`compute` gives HOTA, DetA and AssA (means over the
    thresholds, each in [0, 1])."""

    def __init__(self) -> None:
        self._frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def update(self, gt_ids, hyp_ids, similarity: np.ndarray) -> None:
        """One frame: ``gt_ids`` (G,) object ids, ``hyp_ids`` (H,) track ids (> 0), and
        ``similarity`` (G, H): mask IoU of each object with each hypothesis' region."""
        sim = np.asarray(similarity, np.float64).reshape(len(gt_ids), len(hyp_ids))
        self._frames.append(
            (np.asarray(gt_ids, np.int64), np.asarray(hyp_ids, np.int64), np.nan_to_num(sim))
        )

    def compute(self) -> dict[str, float]:
        """``{"hota", "deta", "assa"}``; nan each when TrackEval is missing (:data:`MISSING`)."""
        if HOTA is None:
            return dict.fromkeys(HOTA_KEYS, float("nan"))
        res = HOTA().eval_sequence(self._data())
        return {
            "hota": float(np.mean(res["HOTA"])),
            "deta": float(np.mean(res["DetA"])),
            "assa": float(np.mean(res["AssA"])),
        }

    def _data(self) -> dict:
        """The sequence as TrackEval's ``eval_sequence`` reads it (ids 0..n-1 per side)."""
        gt_index = _index([g for g, _, _ in self._frames])
        hyp_index = _index([h for _, h, _ in self._frames])
        return {
            "num_timesteps": len(self._frames),
            "num_gt_ids": len(gt_index),
            "num_tracker_ids": len(hyp_index),
            "num_gt_dets": sum(len(g) for g, _, _ in self._frames),
            "num_tracker_dets": sum(len(h) for _, h, _ in self._frames),
            "gt_ids": [_mapped(g, gt_index) for g, _, _ in self._frames],
            "tracker_ids": [_mapped(h, hyp_index) for _, h, _ in self._frames],
            "similarity_scores": [s for _, _, s in self._frames],
        }


def _index(id_lists: list[np.ndarray]) -> dict[int, int]:
    """Each id seen in ``id_lists`` -> 0..n-1 (ascending id order)."""
    ids = np.unique(np.concatenate(id_lists)) if id_lists else np.zeros(0, np.int64)
    return {int(i): k for k, i in enumerate(ids.tolist())}


def _mapped(ids: np.ndarray, index: dict[int, int]) -> np.ndarray:
    return np.array([index[int(i)] for i in ids.tolist()], np.int64)
