"""Small rules of the tracker (:mod:`.tracker`): pair scores, stage bookkeeping, running
features and mask-crop geometry. Pure functions of numpy arrays and mask crops."""

from __future__ import annotations

import numpy as np

from perception_nodes.core.tracking.association import assign, unit_rows
from perception_nodes.core.tracking.masks import MaskCrop, hidden_share, in_image, placed
from perception_nodes.core.tracking.pairs import PairCues, singled_out

TOKEN_MOMENTUM = 0.5  # weight of the previous running token/embedding when a new one is merged
APPEARANCE_MARGIN = 0.05  # a match by appearance alone must beat the runner-up by this
NO_CANDIDATE = -2.0  # below any cosine
LABEL_WEIGHT = 0.1
MERGE_IOU = 0.3  # a new track whose mask overlaps a lost track's predicted mask this much is it


def reidentified(pairs: PairCues, among: np.ndarray, gate: float) -> np.ndarray:
    """``(R, T)`` pairs with tracks of ``among`` that appearance re-identifies: within reach,
    cosine >= ``gate``, and each the other's best candidate by the margin."""
    out = np.zeros(pairs.near.shape, bool)
    # only the tracks of ``among`` and the rows with a near one of them take part (the others
    # stand at NO_CANDIDATE, below the gate, and cannot be a runner-up above it)
    cols = np.nonzero(among & pairs.near.any(axis=0))[0]
    if not cols.size:
        return out
    near = pairs.near[:, cols]
    rows = np.nonzero(near.any(axis=1))[0]
    near_app = np.where(near[rows], pairs.appearance[rows][:, cols], NO_CANDIDATE)
    got = (near_app >= gate) & singled_out(near_app, APPEARANCE_MARGIN, NO_CANDIDATE)
    out[np.ix_(rows, cols)] = got
    return out


def pair_score(pairs: PairCues, w: float) -> np.ndarray:
    return (
        (1.0 - w) * pairs.iou
        + w * np.maximum(pairs.appearance, 0.0)
        + LABEL_WEIGHT * pairs.label_agreement
    )


def left(matches: dict[int, int], track_mask: np.ndarray, n_regions: int) -> np.ndarray:
    """``(R, T)`` True for pairs of regions and tracks (among ``track_mask``) not matched yet."""
    free_r = np.ones(n_regions, bool)
    free_t = track_mask.copy()
    if matches:
        free_r[list(matches)] = False
        free_t[list(matches.values())] = False
    return free_r[:, None] & free_t[None]


def assigned(cost: np.ndarray, allowed: np.ndarray, matches: dict[int, int]) -> dict[int, int]:
    out = dict(matches)
    out.update(assign(cost, allowed))
    return out


def merged(old: np.ndarray | None, new: np.ndarray) -> np.ndarray:
    """Running unit feature: ``TOKEN_MOMENTUM`` of the old one plus the new (the new one alone
    when the old is missing, of another size, or the mix is degenerate)."""
    return merged_rows([old], new[None])[0]


def merged_rows(olds: list[np.ndarray | None] | np.ndarray, new: np.ndarray) -> np.ndarray:
    """:func:`merged` of each old feature with the row of ``new`` (``(K, D)`` unit rows);
    ``olds``: a list (None where missing) or a ``(K, D)`` array."""
    out = np.array(new, np.float32, copy=True)
    if isinstance(olds, np.ndarray) and olds.shape == new.shape:
        usable, old = list(range(len(new))), olds
    else:
        usable = [k for k, o in enumerate(olds) if o is not None and o.shape == new.shape[1:]]
        old = np.stack([olds[k] for k in usable]) if usable else None
    if usable:
        mixed = unit_rows(TOKEN_MOMENTUM * old + (1.0 - TOKEN_MOMENTUM) * new[usable])
        ok = mixed.any(axis=1)
        out[np.array(usable)[ok]] = mixed[ok]
    return out


def share_inside(mask: np.ndarray, area: float, crop: MaskCrop) -> float:
    """Share of the full-image ``mask`` (``area`` pixels) lying inside the placed ``crop``."""
    window = in_image(crop, mask.shape) if area > 0 else None
    if window is None:
        return 0.0
    x0, y0, x1, y1, inner = window
    return np.count_nonzero(mask[y0:y1, x0:x1] & inner) / area


def crop_intersection(a: MaskCrop, b: MaskCrop) -> int:
    ha, wa = a.pixels.shape
    hb, wb = b.pixels.shape
    x0, y0 = max(a.x0, b.x0), max(a.y0, b.y0)
    x1, y1 = min(a.x0 + wa, b.x0 + wb), min(a.y0 + ha, b.y0 + hb)
    if x1 <= x0 or y1 <= y0:
        return 0
    pa = a.pixels[y0 - a.y0 : y1 - a.y0, x0 - a.x0 : x1 - a.x0]
    pb = b.pixels[y0 - b.y0 : y1 - b.y0, x0 - b.x0 : x1 - b.x0]
    return int(np.count_nonzero(pa & pb))


def centre_near(young_x: np.ndarray, old_x: np.ndarray, old_misses: int) -> bool:
    """The centre of the box ``young_x`` is within the reach of the lost track's box ``old_x``
    (``(1, 4)`` Kalman positions ``(cx, cy, w, h)``, pixels) after ``old_misses`` misses."""
    d = np.linalg.norm(young_x[0, :2] - old_x[0, :2])
    diag = float(np.hypot(*old_x[0, 2:]))
    return d <= max(diag, 16.0) * (1 + 0.5 * min(old_misses, 8))


def hidden_of(r: int, crop: MaskCrop, regions, inside_limit: float, objects=()) -> float:
    """Share of the placed ``crop`` outside region ``r`` that other regions or the image edge
    hide. An occluder is a region of ``objects`` (regions that other tracks took this frame:
    other objects, however much of them lies inside the crop, as when two look-alike objects
    cross) or one that is not a part of the crop's object (less than ``inside_limit`` of it
    inside the crop; ``inside_limit`` > 1: every other region)."""
    box = crop.box
    b = regions.boxes
    touch = (b[:, 0] < box[2]) & (box[0] < b[:, 2]) & (b[:, 1] < box[3]) & (box[1] < b[:, 3])
    touch[r] = False
    occluders = [
        regions.masks[q]
        for q in np.nonzero(touch)[0]
        if inside_limit > 1.0  # every region (no share exceeds 1: nothing to read)
        or q in objects
        or share_inside(regions.masks[q], regions.areas[q], crop) < inside_limit
    ]
    return hidden_share(crop, regions.masks[r], occluders)


def lost_duplicate(young_crop: MaskCrop, young_state, lost: list, lost_states,
                   lost_zooms: list[float], cos: dict[int, float], gate: float) -> int | None:  # fmt: skip
    """Index in ``lost`` of the lost track that the newly confirmed track (its mask
    ``young_crop`` and Kalman state ``young_state``, one row of :class:`.motion.BoxStates`)
    duplicates, or None.

    ``lost_states``, ``lost_zooms``: the lost tracks' states (one row each) and camera zooms
    since their crops were seen; ``cos``: ``{id(track): token cosine with the young track}`` of
    every other live track. A lost track is the young track's object when its predicted mask
    overlaps the young one's by :data:`MERGE_IOU` (the best overlap wins), or when the young
    track lies within its reach and appearance singles it out (cosine >= ``gate``,
    :data:`APPEARANCE_MARGIN` over every other track), or when the young track is where the
    motion model expects it (:func:`_where_expected`) and appearance agrees (cosine >= ``gate``)
    for exactly one lost track: tokens that look alike (untrained weights, look-alike objects)
    leave the motion to decide, and it decides only when it is unambiguous.
    """
    best, best_key = None, (MERGE_IOU, -1.0)
    in_reach = []
    y_x = young_state.x
    for i, old in enumerate(lost):
        o_x, o_pxx = lost_states.x[i : i + 1], lost_states.p_xx[i : i + 1]
        crop = placed(old.crop, o_x[0, :2], lost_zooms[i])
        inter = crop_intersection(young_crop, crop)
        iou = inter / max(young_crop.area + crop.area - inter, 1)
        c = cos.get(id(old), NO_CANDIDATE)
        runner_up = max((v for k, v in cos.items() if k != id(old)), default=NO_CANDIDATE)
        near = centre_near(y_x, o_x, old.misses)
        by_look = c >= gate and c - runner_up >= APPEARANCE_MARGIN
        if (iou, c) >= best_key or (by_look and near):
            best, best_key = i, max((iou, c), best_key)
        if c >= gate and _where_expected(y_x, o_x, o_pxx):
            in_reach.append(i)
    if best is None and len(in_reach) == 1:
        return in_reach[0]
    return best


def _where_expected(young_x, old_x, old_p_xx, ratio: float = 2.0) -> bool:
    """The box ``young_x`` is where the lost track's box ``old_x`` should be (``(1, 4)``
    ``(cx, cy, w, h)`` pixels; ``old_p_xx``: its ``(1, 4)`` position variances): centres at most
    half the predicted box's diagonal plus three standard deviations of the predicted centre
    apart (the Kalman uncertainty grows while the track is lost), box areas within ``ratio``."""
    d = float(np.linalg.norm(young_x[0, :2] - old_x[0, :2]))
    std = float(np.sqrt(max(old_p_xx[0, 0] + old_p_xx[0, 1], 0.0) / 2))
    if d > 0.5 * float(np.hypot(*old_x[0, 2:])) + 3.0 * std:
        return False
    a, b = float(np.prod(young_x[0, 2:])), float(np.prod(old_x[0, 2:]))
    return a <= ratio * b and b <= ratio * a
