"""Stage D of the tracker (``RegionTracker._displaced``): a confirmed object whose region lands
off its predicted mask (IoU with it below the gate: a jolt the camera estimate missed, a motion
change) keeps its id in that very frame when nothing else claims the view, and only then: a
part of it, or another object where a missed one was expected, does not take its track."""

from __future__ import annotations

import numpy as np
from tracking_fixtures import _segmentation
from tracking_fixtures import alike_token as _alike
from tracking_fixtures import random_token as _token

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.tracking import TrackingStage
from perception_nodes.core.tracking import tracker as tracker_module

SIZE = (240, 320)  # H, W
CONFIG = PipelineConfig()  # birth_hits 2, as shipped


def _rect(x0, y0, x1, y1):
    m = np.zeros(SIZE, bool)
    m[y0:y1, x0:x1] = True
    return m


def _ids(stage, boxes, tokens):
    seg = _segmentation([_rect(*b) for b in boxes], tokens, SIZE)
    return [int(t) for t in stage.apply("cam", seg, None, None, CONFIG).track_ids]


def _jolt(stage, tokens, shift):
    """Two 40x40 look-alikes 5 px apart (each within the other's reach: appearance cannot tell
    them apart), still for 4 frames, then both ``shift`` px right (IoU with their predicted
    masks 0.43 at 16 px, 0.16 with the neighbour's) and still again."""
    still = [(40, 80, 80, 120), (85, 80, 125, 120)]
    moved = [(x0 + shift, y0, x1 + shift, y1) for x0, y0, x1, y1 in still]
    before = [_ids(stage, still, tokens) for _ in range(4)]
    after = [_ids(stage, moved, tokens) for _ in range(3)]
    return before, after


def test_look_alikes_shifted_off_their_predicted_masks_keep_their_ids_in_that_frame():
    stage = TrackingStage()
    before, after = _jolt(stage, [_alike(1), _alike(2)], 16)
    assert all(before[-1]) and len(set(before[-1])) == 2
    assert after == [before[-1]] * 3, (before, after)


def test_without_stage_d_the_shifted_frame_loses_its_ids(monkeypatch):
    """The case above fails without the stage (it is what the stage adds)."""
    monkeypatch.setattr(tracker_module, "DISPLACED_IOU", 1.01)
    before, after = _jolt(TrackingStage(), [_alike(1), _alike(2)], 16)
    assert after[0] != before[-1]


def test_a_part_of_a_confirmed_object_does_not_take_its_track():
    """Look-alikes side by side; one is seen as its left part only (27 of 60 px wide, nothing
    hides the rest; IoU 0.45 with its predicted mask): not a displaced view of it."""
    stage, toks = TrackingStage(), [_alike(1), _alike(2)]
    for _ in range(4):
        ids = _ids(stage, [(40, 80, 100, 120), (105, 80, 165, 120)], toks)
    assert all(ids)
    part = _ids(stage, [(40, 80, 67, 120), (105, 80, 165, 120)], toks)
    assert part[0] != ids[0] and part[1] == ids[1]


def test_another_object_where_a_missed_one_was_expected_does_not_take_its_id():
    """Distinct tokens: the object is missed and a different-looking one of its size appears
    shifted onto where it was (IoU 0.43): the appearance disagrees, so no id is handed over."""
    stage = TrackingStage()
    for _ in range(4):
        ids = _ids(stage, [(40, 80, 80, 120)], [_token(1)])
    assert ids[0] > 0
    assert _ids(stage, [(56, 80, 96, 120)], [_token(2)]) != ids
