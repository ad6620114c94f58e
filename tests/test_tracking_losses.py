"""``tracking_quality.loss_counts``: where a tracker loses identity, per ground-truth detection.
The kinds on hand-made id streams, and the counts on one sequence add up to its detections."""

from __future__ import annotations

import numpy as np

from perception_nodes.core.config import PipelineConfig
from perception_nodes.tools.tracking_quality import LOSS_KINDS, _loss_kind, loss_counts
from perception_nodes.tools.tracking_sequences import SequenceRenderer


def _kinds(stream):
    """Kinds of object 1's detections: ``stream`` of (region id, or None: no region)."""
    current, owner, history = {}, {2: 2}, {}  # id 2 belongs to object 2
    out = []
    for tid in stream:
        region_of = {} if tid is None else {1: 0}
        tids = np.array([0 if tid is None else tid])
        out.append(_loss_kind(1, region_of, tids, current, owner, history))
    return out


def test_each_kind_of_loss_is_told_apart():
    stream = [0, 0, 5, 5, None, 0, 5, 6, 6, 5, 2]
    assert _kinds(stream) == [
        "late_birth", "late_birth", "ok", "ok", "segmenter_miss", "id_dropped", "ok",
        "new_id", "ok", "switch_back", "id_transfer",
    ]  # fmt: skip


class _NoIds:
    """A tracker that never gives an id."""

    def apply(self, camera, seg, labels, relations, config, **_):
        return type("R", (), {"track_ids": np.zeros(len(seg), np.uint64)})()


def test_counts_add_up_to_the_ground_truth_detections():
    config = PipelineConfig()
    gt = sum(
        len(f.gt_masks) for f in SequenceRenderer("sam_noise", 0, False, frames=12).frames_iter()
    )
    counts = loss_counts("sam_noise", 0, False, config, 12)
    assert set(counts) == set(LOSS_KINDS)
    assert sum(v for k, v in counts.items() if k != "false_id") == gt
    assert counts["ok"] > counts["late_birth"] > 0
    none = loss_counts("sam_noise", 0, False, config, 12, stage_class=_NoIds)
    assert none["ok"] == none["false_id"] == 0
    assert none["late_birth"] + none["segmenter_miss"] == gt
