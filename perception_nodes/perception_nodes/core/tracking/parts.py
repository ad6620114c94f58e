"""SAM's whole/part ambiguity: a frame that shows a tracked object as its parts only.

SAM's automatic mask generator returns an object whole, as its 2-3 parts, or both, and switches
between these from frame to frame. A confirmed track whose object a frame shows as parts only
keeps its whole mask: a part that takes it by overlap is a partial view whose rest its sibling
parts hide (``RegionTracker._observe``), and a track no part takes is not missed there
(:func:`follow_parts`), its box following the parts. Before, a part took the whole's track as a
full view (or, the whole missed long enough, a part's young track inherited its id), the mask
shrank to the part's, and the whole, back in a later frame, opened a new id while a part kept
the old one. A track shown only as one big part with the others missed is still taken by it
(nothing tells that view from the object itself shrunk). segment_anything keeps no part
hierarchy across frames; this is the tracker's own rule.

Coordinates: full-image ``(H, W)`` bool masks, XYXY pixel boxes, crops as in :mod:`.masks`.
"""

from __future__ import annotations

import numpy as np

from perception_nodes.core.tracking.masks import MaskCrop, in_image
from perception_nodes.core.tracking.motion import BoxStates, correct
from perception_nodes.core.tracking.pairs import PairCues, RegionCues
from perception_nodes.core.tracking.track import Track

PART_INSIDE = 0.7  # a part: at least this share of the region inside the track's mask ...
PART_AREA = 0.7  # ... and smaller than this share of it
PARTS_COVER = 0.7  # shown as parts: the parts together cover this share of the track's mask


def follow_parts(
    tracks: list[Track], states: BoxStates, seen: set[int], pairs: PairCues
) -> set[int]:
    """The confirmed tracks (indices into ``tracks``; none of ``seen``, the tracks regions took)
    that the frame's regions show as parts (:func:`parts_boxes`; ``pairs``: the frame's pair
    cues, their placed track masks and box overlaps). Their rows of ``states`` are corrected
    with the union box of their parts (in place): the object's box follows its parts while its
    mask stays."""
    idx = [t for t, track in enumerate(tracks) if track.confirmed and t not in seen]
    touch = pairs.cover_bound[:, idx].T > 0  # boxes overlap (the bound is computed per frame)
    found = parts_boxes([pairs.crops[t] for t in idx], touch, pairs.regions)
    rows = [idx[k] for k in found]
    if rows:
        states.put(rows, correct(states.select(rows), np.array(list(found.values()))))
    return set(rows)


def parts_boxes(
    crops: list[MaskCrop], touch: np.ndarray, regions: RegionCues
) -> dict[int, np.ndarray]:
    """``{k: (4,) XYXY union box of the parts}`` for each placed crop ``crops[k]`` that the
    regions show as parts: regions each smaller than :data:`PART_AREA` of it and lying
    :data:`PART_INSIDE` inside it cover :data:`PARTS_COVER` of its pixels in the image together.
    ``touch``: ``(K, R)`` True where the region's box overlaps the crop's.

    Pixels are read only for crops whose touching small regions could reach the cover by their
    areas alone (one ``(K, R)`` numpy step for all crops)."""
    areas = regions.areas
    if not crops or not len(areas):
        return {}
    c_areas = np.array([c.area for c in crops], np.float64)
    small = touch & (areas[None, :] < PART_AREA * c_areas[:, None])
    # the cover counts the crop's pixels inside the image: at least its area less the part of
    # its box outside the image
    box = np.array([c.box for c in crops], np.float64)
    h, w = regions.masks.shape[1:]
    box_in = np.clip(box[:, 2:], 0, [w, h]) - np.clip(box[:, :2], 0, [w, h])
    off_image = np.prod(box[:, 2:] - box[:, :2], axis=1) - np.prod(box_in.clip(0), axis=1)
    possible = (small * areas[None, :]).sum(axis=1) >= PARTS_COVER * (c_areas - off_image)
    out = {}
    for k in np.nonzero(possible)[0].tolist():
        box = _union_of_parts(
            crops[k], regions.masks, regions.boxes, areas, np.nonzero(small[k])[0]
        )
        if box is not None:
            out[k] = box
    return out


def _union_of_parts(crop: MaskCrop, masks, boxes, areas, candidates) -> np.ndarray | None:
    """The union box of the ``candidates`` (region indices) that are parts of ``crop``, if
    they cover :data:`PARTS_COVER` of it; None otherwise."""
    window = in_image(crop, masks.shape[1:])
    if window is None:
        return None
    x0, y0, x1, y1, inner = window
    covered = np.zeros_like(inner)
    parts = []
    for q in candidates.tolist():
        inside = masks[q, y0:y1, x0:x1] & inner
        if np.count_nonzero(inside) >= PART_INSIDE * areas[q]:
            covered |= inside
            parts.append(q)
    if len(parts) < 2 or np.count_nonzero(covered) < PARTS_COVER * np.count_nonzero(inner):
        return None
    b = boxes[parts]
    return np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()])
