"""The pipeline's tracking stage: one tracker per camera stream, settings read every frame.

Per stream it also keeps the camera-motion estimator (the image's global motion since the
previous frame, :mod:`.camera_motion`) and the frame clock (frames elapsed, from the stamps,
:mod:`.clock`), and hands the tracker the classifier's labels and CLIP region embeddings.

Settings are the ``tracking_*`` fields of :class:`~perception_nodes.core.config.PipelineConfig`,
taken from the config passed to each :meth:`TrackingStage.apply` call, so a live parameter
change applies from the next frame. Turning tracking off forgets every track (turning it on
again starts new ones; ids still never repeat).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.tracking.camera_motion import CameraMotion
from perception_nodes.core.tracking.clock import FrameClock
from perception_nodes.core.tracking.smoothing import RelationSmoother, voted_labels
from perception_nodes.core.tracking.tracker import (
    FrameCues,
    RegionTracker,
    TrackerSettings,
    TrackIdSource,
)
from perception_nodes.core.types import RegionLabels, Relations, Segmentation


@dataclass
class TrackedFrame:
    """Tracking output of one frame (N regions).

    ``track_ids``: ``(N,)`` uint64, 0 = untracked (disabled or tentative track);
    ``track_ages``: ``(N,)`` uint32 frames observed, 0 where untracked; ``labels``/``relations``:
    the voted labels and smoothed relations (the inputs unchanged when tracking is off);
    ``relation_smoothing``: EMA weight used, or None when relations were not smoothed;
    ``camera_motion_ms``: CPU milliseconds of the camera-motion estimate (0 without an image).
    """

    track_ids: np.ndarray
    track_ages: np.ndarray
    labels: RegionLabels | None
    relations: Relations | None
    relation_smoothing: float | None
    camera_motion_ms: float = 0.0


def settings_of(config: PipelineConfig) -> TrackerSettings:
    return TrackerSettings(
        iou_gate=float(config.tracking_iou_gate),
        similarity_weight=float(config.tracking_similarity_weight),
        similarity_gate=float(config.tracking_similarity_gate),
        birth_hits=int(config.tracking_birth_hits),
        death_misses=int(config.tracking_death_misses),
    )


class TrackingStage:
    """Per-stream trackers, label votes and relation smoothing (thread-safe per call)."""

    def __init__(self) -> None:
        self.ids = TrackIdSource()
        self._trackers: dict[str, RegionTracker] = {}
        self._smoothers: dict[str, RelationSmoother] = {}
        self._cameras: dict[str, tuple[CameraMotion, FrameClock]] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._trackers, self._smoothers, self._cameras = {}, {}, {}

    def apply(
        self,
        stream: str,
        seg: Segmentation,
        labels: RegionLabels | None,
        relations: Relations | None,
        config: PipelineConfig,
        image: np.ndarray | None = None,
        stamp: float | None = None,
        scores_meaningful: bool = True,
    ) -> TrackedFrame:
        """Track the regions of one frame of ``stream`` (e.g. the camera namespace).

        ``image``: the frame's ``HxWx3`` uint8 RGB image (for the camera-motion estimate; None
        leaves it out); ``stamp``: its time, seconds (frames dropped before it count in the
        motion prediction); ``scores_meaningful``: False with untrained SAM weights.
        """
        n = len(seg)
        if not config.tracking_enabled:
            self.reset()
            return TrackedFrame(
                np.zeros(n, np.uint64), np.zeros(n, np.uint32), labels, relations, None
            )
        with self._lock:
            tracker = self._trackers.setdefault(stream, RegionTracker(self.ids))
            smoother = self._smoothers.setdefault(stream, RelationSmoother())
            camera, clock = self._cameras.setdefault(stream, (CameraMotion(), FrameClock()))
        cues = FrameCues(
            camera_motion=camera.estimate(image),
            frames_elapsed=clock.elapsed(stamp),
            scores_meaningful=scores_meaningful,
        )
        if labels is not None:
            cues.embeddings = labels.embeddings
            if labels.meaningful:
                cues.labels, cues.label_version = labels.label_index, int(labels.vocabulary_version)
        tracks = tracker.update(seg, settings_of(config), cues)
        if labels is not None:
            labels = voted_labels(labels, tracks, max(1, int(config.tracking_label_window)))
        alpha = float(config.tracking_relation_smoothing)
        if relations is not None:
            alive = {t.track_id for t in tracker.tracks}
            relations = smoother.smooth(relations, tracks, alpha, alive)
        ids = np.array([t.track_id if t.confirmed else 0 for t in tracks], dtype=np.uint64)
        ages = np.array([t.age if t.confirmed else 0 for t in tracks], dtype=np.uint32)
        smoothing = alpha if relations is not None else None
        motion_ms = camera.last_ms if image is not None else 0.0
        return TrackedFrame(ids, ages, labels, relations, smoothing, motion_ms)
