"""Per-image training samples for the relation head: SAM regions matched to PSG ground truth.

Mode ``auto`` (as RAM): SAM segments everything, its masks are matched to the GT masks by IoU
(Hungarian + greedy fallback) and the GT relations re-targeted onto them; unmatched SAM masks
stay in the frame as negatives. Mode ``gt-boxes``: SAM is prompted with the GT boxes, mask i
belongs to GT segment i (fast; trains on clean regions; use it for quick experiments or when the
automatic generator is too slow, ``auto`` to train for the real pipeline's regions).
Samples are cached to disk as ``.npz`` (one per image).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from perception_nodes.core.relations.base import region_geometry
from perception_nodes.core.types import Segmentation
from perception_nodes.training.matching import (
    MatchResult,
    mask_iou_matrix,
    match_masks,
    retarget_relations,
)
from perception_nodes.training.psg import PsgDataset, PsgImage

logger = logging.getLogger(__name__)

MODES = ("auto", "gt-boxes")


@dataclass
class FrameSample:
    """One training/evaluation image after segmentation and matching (N regions, Ng GT segments).

    Attributes:
        image_id: PSG image id.
        image_size: ``(H, W)``.
        tokens: ``(N, T)`` float32 SAM mask tokens.
        boxes: ``(N, 4)`` float32 XYXY pixels; ``areas`` ``(N,)``; ``inter`` ``(N, N)`` float32
            approximate mask intersections (see :func:`base.region_geometry`).
        categories: ``(N,)`` int64 category id of the matched GT (-1 = none).
        gt_to_pred: ``(Ng,)`` int64 region matched to each GT segment (-1 = none).
        triplets: ``(M, 3)`` int64 [subject region, object region, predicate] (training targets).
        gt_relations: ``(M0, 3)`` int64 unique GT [subject GT, object GT, predicate] (evaluation).
    """

    image_id: str
    image_size: tuple[int, int]
    tokens: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    inter: np.ndarray
    categories: np.ndarray
    gt_to_pred: np.ndarray
    triplets: np.ndarray
    gt_relations: np.ndarray

    @property
    def num_regions(self) -> int:
        return int(self.tokens.shape[0])

    def save(self, path: Path) -> None:
        arrays = {k: getattr(self, k) for k in ("tokens", "boxes", "areas", "inter", "categories",
                                                 "gt_to_pred", "triplets", "gt_relations")}  # fmt: skip
        np.savez_compressed(
            path, image_id=np.array(self.image_id), image_size=np.array(self.image_size), **arrays
        )

    @classmethod
    def load(cls, path: Path) -> "FrameSample":
        with np.load(path, allow_pickle=False) as z:
            return cls(image_id=str(z["image_id"]), image_size=tuple(int(v) for v in z["image_size"]),
                       **{k: z[k] for k in ("tokens", "boxes", "areas", "inter", "categories",
                                            "gt_to_pred", "triplets", "gt_relations")})  # fmt: skip


#: ``segment(image, gt_boxes_xyxy) -> Segmentation``: the regions of one image.
SegmentFn = Callable[[np.ndarray, np.ndarray], Segmentation]


def gt_boxes_xyxy(image: PsgImage) -> np.ndarray:
    """``(Ng, 4)`` float32 XYXY boxes of the GT segments (from their XYWH ``bbox``)."""
    b = np.array([s.bbox_xywh for s in image.segments], dtype=np.float32).reshape(-1, 4)
    b[:, 2:] += b[:, :2]
    return b


def unique_gt_relations(image: PsgImage) -> np.ndarray:
    """``(M0, 3)`` GT relations with exact duplicates removed (order kept)."""
    seen: dict[tuple[int, int, int], None] = {}
    for r in image.relations:
        seen.setdefault(tuple(int(v) for v in r), None)
    return np.array(list(seen), dtype=np.int64).reshape(-1, 3)


def build_sample(
    dataset: PsgDataset, image: PsgImage, segment: SegmentFn, mode: str, min_iou: float = 0.5
) -> tuple[FrameSample, dict[str, int]]:
    """Segment one image, match regions to GT and re-target relations; returns counts too."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    rgb = dataset.load_image(image)
    gt_masks = dataset.load_masks(image)
    seg = segment(rgb, gt_boxes_xyxy(image))
    if mode == "gt-boxes":
        if len(seg) != len(image.segments):
            raise RuntimeError(
                f"gt-boxes mode: {len(seg)} masks for {len(image.segments)} GT boxes"
            )
        iou = mask_iou_matrix(seg.masks, gt_masks)
        gt_to_pred = np.arange(len(seg), dtype=np.int64)
        match = MatchResult(gt_to_pred, np.diag(iou).copy())
    else:
        match = match_masks(mask_iou_matrix(seg.masks, gt_masks), min_iou=min_iou)
    gt_rel = unique_gt_relations(image)
    ret = retarget_relations(gt_rel, match)
    cats = np.full(len(seg), -1, dtype=np.int64)
    for g, p in enumerate(match.gt_to_pred):
        if p >= 0 and cats[p] < 0:
            cats[p] = image.segments[g].category_id
    geom = region_geometry(seg)
    sample = FrameSample(
        image_id=image.image_id, image_size=tuple(seg.image_size), tokens=seg.tokens.astype(np.float32),
        boxes=seg.boxes_xyxy.astype(np.float32), areas=geom.areas.astype(np.float32),
        inter=geom.inter.astype(np.float32), categories=cats, gt_to_pred=match.gt_to_pred,
        triplets=ret.triplets, gt_relations=gt_rel,
    )  # fmt: skip
    counts = dict(ret.counts, gt_segments=len(image.segments), gt_matched=match.num_matched,
                  gt_shared=match.num_shared, regions=len(seg))  # fmt: skip
    return sample, counts


def cache_key(**parts: object) -> str:
    """Short stable hash of the settings that determine the cached features."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def extract_samples(
    dataset: PsgDataset,
    images: list[PsgImage],
    segment: SegmentFn,
    mode: str,
    cache_dir: Path | None,
    min_iou: float = 0.5,
    desc: str = "features",
) -> tuple[list[FrameSample], dict[str, int]]:
    """Samples of ``images`` (read from / written to ``cache_dir`` when given) + summed counts."""
    samples, totals = [], {}
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    for image in tqdm(images, desc=desc, unit="img", leave=False):
        path = cache_dir / f"{cache_key(id=image.image_id)}.npz" if cache_dir else None
        if path is not None and path.is_file():
            sample = FrameSample.load(path)
            counts = {"cached": 1}
        else:
            sample, counts = build_sample(dataset, image, segment, mode, min_iou)
            if path is not None:
                sample.save(path)
        samples.append(sample)
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + int(v)
    return samples, totals
