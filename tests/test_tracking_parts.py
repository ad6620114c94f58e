"""SAM's whole/part ambiguity (:mod:`perception_nodes.core.tracking.parts`): SAM returns an
object whole in one frame, as its parts in the next, or both. The whole keeps its id across
frames that show it as parts only, even where its big part overlaps it at IoU >= the gate."""

from __future__ import annotations

import numpy as np
from tracking_fixtures import _segmentation
from tracking_fixtures import random_token as _token

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.tracking import TrackingStage
from perception_nodes.core.tracking.masks import MaskCrop, crop_of, overlap_bounds
from perception_nodes.core.tracking.pairs import RegionCues
from perception_nodes.core.tracking.parts import parts_boxes

SIZE = (240, 320)  # H, W
CONFIG = PipelineConfig()  # birth_hits 2, as shipped
WHOLE = (40, 80, 140, 120)  # x0, y0, x1, y1: 100 x 40 px
PARTS = [(40, 80, 100, 120), (100, 80, 140, 120)]  # its left 60 % (IoU 0.6 with it), right 40 %


def _rect(x0, y0, x1, y1):
    m = np.zeros(SIZE, bool)
    m[y0:y1, x0:x1] = True
    return m


def _ids(stage, boxes, seeds):
    seg = _segmentation([_rect(*b) for b in boxes], [_token(s) for s in seeds], SIZE)
    return [int(t) for t in stage.apply("cam", seg, None, None, CONFIG).track_ids]


def _found(boxes, shift_x=0):
    masks = np.stack([_rect(*b) for b in boxes])
    n = len(boxes)
    regions = RegionCues(
        masks, np.array(boxes, np.float64), masks.sum(axis=(1, 2)).astype(np.float64),
        np.ones(n), np.ones((n, 4), np.float32), None, None,
    )  # fmt: skip
    crop = crop_of(_rect(*WHOLE), np.array(WHOLE, np.float64), int(_rect(*WHOLE).sum()))
    crop = MaskCrop(crop.pixels, crop.x0 + shift_x, crop.y0, crop.area)  # placed elsewhere
    touch = overlap_bounds(regions.boxes, regions.areas, crop.box[None], np.array([crop.area]))
    return parts_boxes([crop], touch[1].T > 0, regions)


def test_parts_covering_a_track_are_found_with_their_union_box():
    assert set(_found(PARTS)) == {0}
    np.testing.assert_array_equal(_found(PARTS)[0], WHOLE)
    assert _found(PARTS[:1]) == {}  # one part: a partial view, not "shown as parts"
    assert _found([WHOLE, *PARTS[:1]]) == {}  # the whole itself is no part of itself
    shifted = [(x0 + 30, y0, x1 + 30, y1) for x0, y0, x1, y1 in PARTS]
    assert _found(shifted) == {}  # the right one lies mostly outside: together < 70 %


def test_parts_of_an_object_partly_outside_the_image_are_found():
    """The track's mask placed 100 px to the left: 60 of its 100 columns lie outside the image.
    The two parts seen cover its 40 columns inside (20 each, together 32 % of its whole area):
    shown as parts (the cover counts the pixels inside the image; the area bound that skips the
    pixel read must count the same, and counted the whole area before)."""
    inside = [(0, 80, 20, 120), (20, 80, 40, 120)]
    found = _found(inside, shift_x=-100)
    assert set(found) == {0}, found
    np.testing.assert_array_equal(found[0], (0, 80, 40, 120))


def test_an_object_alternating_whole_and_parts_keeps_its_whole_id():
    """Whole alone for 4 frames (confirmed at its 2nd), then its two parts only for 3 frames,
    whole and parts, parts only for 3 frames, whole and parts, whole alone: the whole region has
    one id throughout (before: in the parts-only frames the big part, IoU 0.6 with the whole,
    took its track as a full view and the mask shrank to the part's, so the whole, back, lost
    its id to the part), and no id is on two regions of a frame."""
    stage = TrackingStage()
    whole_and_parts = ([WHOLE, *PARTS], [1, 2, 3])
    parts_only = (PARTS, [2, 3])
    frames = [([WHOLE], [1])] * 4 + [parts_only] * 3 + [whole_and_parts] + [parts_only] * 3
    frames += [whole_and_parts, ([WHOLE], [1])]
    ids = [_ids(stage, boxes, seeds) for boxes, seeds in frames]
    whole = [frame[0] for frame, (boxes, _) in zip(ids[3:], frames[3:]) if boxes[0] == WHOLE]
    assert whole[0] > 0 and set(whole) == {whole[0]}, ids
    for frame in ids:
        assert len([i for i in frame if i > 0]) == len({i for i in frame if i > 0}), ids


def test_parts_only_from_the_start_keep_their_own_ids():
    """An object SAM shows only as parts (no whole ever): each part gets and keeps its own id."""
    stage = TrackingStage()
    ids = [_ids(stage, PARTS, [2, 3]) for _ in range(6)]
    assert ids[-1][0] > 0 and ids[-1][1] > 0 and ids[-1][0] != ids[-1][1], ids
    assert ids[2:] == [ids[-1]] * 4, ids
