"""HOTA of the tracker benchmarks (tools/tracking_hota.py, TrackEval's metric): values worked out
by hand from the metric's definition on tiny sequences, and arbitrary ids mapped correctly."""

from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.tools.tracking_hota import HotaAccumulator


def _score(frames):
    acc = HotaAccumulator()
    for gt_ids, hyp_ids, sim in frames:
        acc.update(gt_ids, hyp_ids, np.array(sim, np.float64).reshape(len(gt_ids), len(hyp_ids)))
    return acc.compute()


def test_perfect_ids_on_exact_masks_score_one():
    frames = [([3, 9], [70, 80], [[1.0, 0.0], [0.0, 1.0]])] * 5
    assert _score(frames) == pytest.approx({"hota": 1.0, "deta": 1.0, "assa": 1.0})


def test_an_id_switch_halves_association_not_detection():
    # one object seen in 4 frames on an exact mask; its id changes after frame 2. Each true
    # positive's association: TPA 2 / (TPA 2 + FNA 2 + FPA 0) = 0.5; HOTA = sqrt(1 x 0.5)
    frames = [([1], [5], [[1.0]])] * 2 + [([1], [6], [[1.0]])] * 2
    assert _score(frames) == pytest.approx({"hota": 0.5**0.5, "deta": 1.0, "assa": 0.5})


def test_a_frame_without_id_costs_detection_and_association():
    # 4 frames, the 4th without a hypothesis: DetA 3 / (3 + 1) and AssA 3 / (3 + 1 + 0)
    frames = [([1], [5], [[1.0]])] * 3 + [([1], [], [])]
    assert _score(frames) == pytest.approx({"hota": 0.75, "deta": 0.75, "assa": 0.75})


def test_a_loose_mask_counts_only_at_thresholds_below_its_iou():
    # IoU 0.52: a match at the thresholds 0.05 ... 0.50 (10 of 19), a miss and a false
    # positive above
    frames = [([1], [5], [[0.52]])] * 3
    got = _score(frames)
    assert got["deta"] == pytest.approx(10 / 19)
    assert got["assa"] == pytest.approx(10 / 19)  # AssA is 0 at thresholds with no match


def test_a_false_positive_track_costs_detection():
    # one object tracked exactly plus a blob with an id in each of 2 frames: DetA 2 / (2 + 2)
    frames = [([1], [5, 8], [[1.0, 0.0]])] * 2
    assert _score(frames)["deta"] == pytest.approx(0.5)


def test_without_trackeval_the_scores_are_nan_and_the_benchmarks_say_so(monkeypatch, capsys):
    from perception_nodes.tools import tracking_hota

    monkeypatch.setattr(tracking_hota, "HOTA", None)
    acc = HotaAccumulator()
    acc.update([1], [5], [[1.0]])
    assert all(np.isnan(v) for v in acc.compute().values())
    tracking_hota.warn_if_missing()
    assert "requirements-nodeps.txt" in capsys.readouterr().err
