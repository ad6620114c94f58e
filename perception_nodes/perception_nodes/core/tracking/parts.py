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

from perception_nodes.core.tracking.masks import MaskCrop
from perception_nodes.core.tracking.motion import BoxStates, correct
from perception_nodes.core.tracking.pairs import RegionCues
from perception_nodes.core.tracking.track import Track

PART_INSIDE = 0.7  # a part: at least this share of the region inside the track's mask ...
PART_AREA = 0.7  # ... and smaller than this share of it
PARTS_COVER = 0.7  # shown as parts: the parts together cover this share of the track's mask


def follow_parts(tracks: list[Track], states: BoxStates, seen: set[int], crops: list[MaskCrop],
                 regions: RegionCues) -> set[int]:  # fmt: skip
    """The confirmed tracks (indices into ``tracks``; none of ``seen``, the tracks regions took)
    that the frame's regions show as parts (:func:`parts_boxes`; ``crops``: the tracks' placed
    masks). Their rows of ``states`` are corrected with the union box of their parts (in place):
    the object's box follows its parts while its mask stays."""
    idx = [t for t, track in enumerate(tracks) if track.confirmed and t not in seen]
    found = parts_boxes([crops[t] for t in idx], regions.masks, regions.boxes, regions.areas)
    rows = [idx[k] for k in found]
    if rows:
        states.put(rows, correct(states.select(rows), np.array(list(found.values()))))
    return set(rows)


def parts_boxes(crops: list[MaskCrop], masks: np.ndarray, boxes: np.ndarray,
                areas: np.ndarray) -> dict[int, np.ndarray]:  # fmt: skip
    """``{k: (4,) XYXY union box of the parts}`` for each placed crop ``crops[k]`` that the
    regions (``masks`` ``(R, H, W)`` bool, ``boxes`` ``(R, 4)`` XYXY, ``areas`` ``(R,)``) show
    as parts: regions each smaller than :data:`PART_AREA` of it and lying :data:`PART_INSIDE`
    inside it cover :data:`PARTS_COVER` of its pixels in the image together.

    Pixels are read only for crops whose touching small regions could reach the cover by their
    areas alone (one ``(K, R)`` numpy step for all crops)."""
    if not crops or not len(areas):
        return {}
    c_boxes = np.array([c.box for c in crops], np.float64)
    c_areas = np.array([c.area for c in crops], np.float64)
    touch = (boxes[None, :, 0] < c_boxes[:, None, 2]) & (c_boxes[:, None, 0] < boxes[None, :, 2])
    touch &= (boxes[None, :, 1] < c_boxes[:, None, 3]) & (c_boxes[:, None, 1] < boxes[None, :, 3])
    touch &= areas[None, :] < PART_AREA * c_areas[:, None]
    possible = (touch * areas[None, :]).sum(axis=1) >= PARTS_COVER * c_areas
    out = {}
    for k in np.nonzero(possible)[0].tolist():
        box = _union_of_parts(crops[k], masks, boxes, areas, np.nonzero(touch[k])[0])
        if box is not None:
            out[k] = box
    return out


def _union_of_parts(crop: MaskCrop, masks, boxes, areas, candidates) -> np.ndarray | None:
    """The union box of the ``candidates`` (region indices) that are parts of ``crop``, if
    they cover :data:`PARTS_COVER` of it; None otherwise."""
    h, w = crop.pixels.shape
    x0, y0 = max(crop.x0, 0), max(crop.y0, 0)
    x1, y1 = min(crop.x0 + w, masks.shape[2]), min(crop.y0 + h, masks.shape[1])
    if x1 <= x0 or y1 <= y0:
        return None
    inner = crop.pixels[y0 - crop.y0 : y1 - crop.y0, x0 - crop.x0 : x1 - crop.x0]
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
