"""What the tracker keeps per track and is given per frame (:mod:`.tracker`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from perception_nodes.core.tracking.masks import MaskCrop

LABEL_HISTORY = 10  # newest observed frames whose labels the association's label vote counts


@dataclass(frozen=True)
class TrackerSettings:
    """Association and life-cycle settings (``tracking_*`` fields of PipelineConfig, then the
    tracker's own defaults)."""

    iou_gate: float = 0.5
    similarity_weight: float = 0.3
    similarity_gate: float = 0.8
    birth_hits: int = 2
    death_misses: int = 30
    high_score: float = 0.7  # predicted IoU x stability of a confident region
    # a region below never opens a track; below high_score it continues tentative ones by overlap
    # only (a partly hidden object SAM scored low in every frame got no id when only confident
    # regions could open tracks)
    low_score: float = 0.5
    # the birth bar's floor: a new track whose mean score reaches the bar is confirmed after
    # birth_hits (the bar rises to what the stream's confirmed objects score: .births.BirthBar)
    sure_score: float = 0.85


@dataclass
class FrameCues:
    """What the tracker uses besides the regions, for one frame.

    ``camera_motion``: 2x3 previous image -> this image (pixels); ``frames_elapsed``: frames
    since the previous processed one (> 1 after drops); ``labels``: ``(N,)`` label index per
    region (-1 unknown) or None (no classifier, or untrained weights); ``label_version``: the
    vocabulary version of ``labels``; ``embeddings``: ``(N, E)`` CLIP region embeddings or None;
    ``scores_meaningful``: False with untrained SAM weights (every region counts as confident).
    """

    camera_motion: np.ndarray = field(default_factory=lambda: np.eye(2, 3))
    frames_elapsed: float = 1.0
    labels: np.ndarray | None = None
    label_version: int = 0
    embeddings: np.ndarray | None = None
    scores_meaningful: bool = True


@dataclass(eq=False)  # tracks compare by identity
class Track:
    """One tracked object (its box's Kalman state and the camera's zoom since ``crop`` was seen
    are rows of its tracker's arrays, :attr:`RegionTracker.states` and ``zooms``).

    ``crop``: its last full view of the mask, tight box, where it was seen; ``embedding``: unit running CLIP region embedding
    or None; ``hits``: frames observed; ``misses``: consecutive processed frames unmatched;
    ``score_sum``: summed detection scores; ``gaps``: frames missed while tentative.
    ``history``: per observed frame ``(vocabulary_version, label_index, label_score)``, newest last.
    """

    track_id: int
    crop: MaskCrop
    embedding: np.ndarray | None = None
    hits: int = 1
    misses: int = 0
    confirmed: bool = False
    score_sum: float = 0.0
    gaps: int = 0
    history: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def age(self) -> int:
        """Frames in which the track was observed (this one included)."""
        return self.hits

    def label(self, version: int) -> int:
        """The label its recent frames of vocabulary ``version`` voted for (score-weighted), -1 if none."""
        totals: dict[int, float] = {}
        for v, idx, score in self.history[-LABEL_HISTORY:]:
            if v == version and idx >= 0:  # max(score, 0.0) without the call
                totals[idx] = totals.get(idx, 0.0) + (0.0 if score < 0.0 else score)
        return max(totals, key=totals.__getitem__) if totals else -1
