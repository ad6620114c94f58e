"""Data passed between the stages of the pipeline (segmentation -> labels -> relations).

Conventions used everywhere in the core:
- Images are ``HxWx3`` ``uint8`` RGB numpy arrays (row-major, origin top-left).
- Masks are ``NxHxW`` ``bool`` arrays over the full image.
- Boxes are ``XYXY`` in pixels, float32: ``x0, y0`` inclusive top-left corner,
  ``x1, y1`` exclusive bottom-right corner (so width = x1 - x0).
- Points are ``(x, y)`` in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

UNKNOWN_LABEL = "unknown"
UNKNOWN_INDEX = -1


@dataclass
class Segmentation:
    """Regions of one image, as produced by automatic or prompted mask generation.

    Attributes (N = number of regions):
        masks: ``(N, H, W)`` bool, full-image masks; regions may overlap.
        boxes_xyxy: ``(N, 4)`` float32 tight boxes of the masks, pixels, XYXY.
        areas: ``(N,)`` int64 mask pixel counts.
        predicted_iou: ``(N,)`` float32 SAM's predicted mask quality.
        stability_score: ``(N,)`` float32 SAM stability score.
        tokens: ``(N, 256)`` float32 SAM mask-decoder output tokens (position-aware region
            features consumed by the RegionSpot and RAM heads).
        point_coords: ``(N, 2)`` float32 prompt point (x, y) that produced each mask, pixels;
            NaN for box prompts.
        image_size: ``(H, W)`` of the input image.
    """

    masks: np.ndarray
    boxes_xyxy: np.ndarray
    areas: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    tokens: np.ndarray
    point_coords: np.ndarray
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @classmethod
    def empty(cls, image_size: tuple[int, int], token_dim: int = 256) -> "Segmentation":
        h, w = image_size
        return cls(
            masks=np.zeros((0, h, w), dtype=bool),
            boxes_xyxy=np.zeros((0, 4), dtype=np.float32),
            areas=np.zeros((0,), dtype=np.int64),
            predicted_iou=np.zeros((0,), dtype=np.float32),
            stability_score=np.zeros((0,), dtype=np.float32),
            tokens=np.zeros((0, token_dim), dtype=np.float32),
            point_coords=np.zeros((0, 2), dtype=np.float32),
            image_size=(h, w),
        )

    def select(self, keep: np.ndarray) -> "Segmentation":
        """Return the regions at indices (or boolean mask) ``keep``, in that order."""
        return Segmentation(
            masks=self.masks[keep],
            boxes_xyxy=self.boxes_xyxy[keep],
            areas=self.areas[keep],
            predicted_iou=self.predicted_iou[keep],
            stability_score=self.stability_score[keep],
            tokens=self.tokens[keep],
            point_coords=self.point_coords[keep],
            image_size=self.image_size,
        )


@dataclass
class RegionLabels:
    """Labels of N regions against a vocabulary of V entries.

    Attributes:
        label_index: ``(N,)`` int64 best vocabulary index, ``UNKNOWN_INDEX`` (-1) when the best
            score is below the classifier's threshold.
        label_score: ``(N,)`` float32 calibrated score of the best entry, [0, 1].
        topk_index: ``(N, K)`` int64 best K entries (best first, including the best one).
        topk_score: ``(N, K)`` float32 their scores, [0, 1].
        labels: the vocabulary entries (``labels[i]`` is the text of index ``i``).
        vocabulary_version: version of the vocabulary the labels were computed with.
        embeddings: optional ``(N, D)`` float32 region embeddings in the text space.
        meaningful: False when the weights are generated (untrained): labels are then not
            meaningful and every output says so.
    """

    label_index: np.ndarray
    label_score: np.ndarray
    topk_index: np.ndarray
    topk_score: np.ndarray
    labels: list[str]
    vocabulary_version: int
    embeddings: np.ndarray | None = None
    meaningful: bool = True

    def label_text(self, i: int) -> str:
        idx = int(self.label_index[i])
        return UNKNOWN_LABEL if idx < 0 else self.labels[idx]


@dataclass
class Relations:
    """Directed relations "subject predicate object" between regions of one frame.

    Attributes (M = number of relations):
        subject: ``(M,)`` int64 region index (into the frame's ``Segmentation``).
        object: ``(M,)`` int64 region index.
        predicate_index: ``(M,)`` int64 index into ``predicates``.
        score: ``(M,)`` float32 confidence, [0, 1].
        predicates: the predicate list.
        source: ``"learned"`` or ``"geometric"``.
    """

    subject: np.ndarray
    object: np.ndarray
    predicate_index: np.ndarray
    score: np.ndarray
    predicates: list[str]
    source: str = "geometric"

    def __len__(self) -> int:
        return int(self.subject.shape[0])

    @classmethod
    def empty(cls, predicates: list[str], source: str = "geometric") -> "Relations":
        z = np.zeros((0,), dtype=np.int64)
        return cls(
            z, z.copy(), z.copy(), np.zeros((0,), dtype=np.float32), list(predicates), source
        )


@dataclass
class FrameResult:
    """Everything the pipeline computed for one image.

    ``centroids`` is ``(N, 3)`` float32, meters in the camera (header) frame, NaN where no
    depth is available. ``region_ids`` is ``(N,)`` uint32, unique in the frame, >= 1 (0 is the
    background value of the label image). ``timings`` maps stage name -> seconds.
    ``track_ids`` is ``(N,)`` uint64 identity across frames (0 = untracked), ``track_ages``
    ``(N,)`` uint32 frames the track was observed (0 = untracked); both zeros without tracking.
    With tracking, ``labels`` carry the tracks' voted labels and ``relations`` smoothed scores.
    """

    segmentation: Segmentation
    labels: RegionLabels | None
    relations: Relations | None
    region_ids: np.ndarray
    centroids: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    track_ids: np.ndarray | None = None
    track_ages: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = int(self.region_ids.shape[0])
        if self.track_ids is None:
            self.track_ids = np.zeros(n, np.uint64)
        if self.track_ages is None:
            self.track_ages = np.zeros(n, np.uint32)
