"""pn-bench-tracking's scoring (tools/tracking_quality.run_sequence): the tracker under test and
both ceilings (``oracle``; ``oracle_2nd``, ids from each object's second sighting on) are scored
on the same frames, the tracker at or below the oracle, the second-sighting oracle below it by
exactly the first frames it leaves out."""

from __future__ import annotations

import pytest

from perception_nodes.core.config import PipelineConfig
from perception_nodes.tools.tracking_quality import (
    ORACLE,
    ORACLE_CONFIRMED,
    _oracle,
    new_candidate,
    region_gt_iou,
    run_sequence,
)
from perception_nodes.tools.tracking_sequences import SequenceRenderer


def test_oracles_bound_the_tracker_and_the_second_sighting_costs_each_objects_first_frame():
    frames = 6
    row = run_sequence("occlusion", 0, False, [new_candidate()], PipelineConfig(), frames)
    oracle, second, tracker = row[ORACLE], row[ORACLE_CONFIRMED], row["new"]
    assert oracle["num_objects"] == second["num_objects"] == tracker["num_objects"] > 0
    assert tracker["idf1"] <= oracle["idf1"] and second["idf1"] < oracle["idf1"]
    assert second["num_switches"] == 0 and 0.0 < second["hota"] < oracle["hota"] <= 1.0
    # IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN) with no false positives: each object the oracle
    # found loses one true positive to a false negative
    gt = oracle["num_objects"]
    found = oracle["idf1"] * gt  # IDTP of the oracle (IDF1 = 2 TP / (TP + GT) when FP = 0)
    found /= 2 - oracle["idf1"]
    found_objects = len(_objects_found("occlusion", frames))
    assert second["idf1"] == pytest.approx(
        2 * (found - found_objects) / (found - found_objects + gt)
    )


def _objects_found(family: str, frames: int) -> set[int]:
    """Objects some region shows at IoU >= 0.5 in some frame (what the oracle finds)."""
    seen = set()
    for frame in SequenceRenderer(family, 0, False, frames=frames).frames_iter():
        gt_ids, iou = region_gt_iou(frame)
        seen.update(_oracle(gt_ids, iou)[0])
    return seen
