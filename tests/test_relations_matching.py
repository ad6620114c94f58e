"""IoU matching of predicted masks to GT masks and re-targeting of GT relations (hand-made cases)."""

import numpy as np
import pytest

from perception_nodes.training.matching import (
    mask_iou_matrix,
    match_masks,
    retarget_relations,
)


def _rect(x0, y0, x1, y1, h=40, w=60):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_hungarian_one_to_one_and_unmatched_gt():
    gt = np.stack([_rect(0, 0, 10, 10), _rect(20, 0, 30, 10), _rect(40, 20, 50, 30)])
    pred = np.stack(
        [_rect(20, 0, 30, 11), _rect(0, 0, 10, 9), _rect(0, 30, 5, 35)]
    )  # nothing near GT 2
    m = match_masks(mask_iou_matrix(pred, gt), min_iou=0.5)
    assert m.gt_to_pred.tolist() == [1, 0, -1]
    assert m.num_matched == 2 and m.num_shared == 0
    assert m.gt_iou[0] == pytest.approx(0.9)
    assert m.gt_iou[2] == 0.0


def test_one_mask_covering_two_objects_is_shared_by_greedy_fallback():
    cup, saucer = _rect(10, 10, 20, 20), _rect(10, 20, 20, 24)
    gt = np.stack([cup, saucer])
    both = cup | saucer
    pred = np.stack([both])  # SAM merged the cup and the saucer
    m = match_masks(mask_iou_matrix(pred, gt), min_iou=0.25)
    assert m.gt_to_pred.tolist() == [0, 0]
    assert m.num_shared == 1
    assert m.pred_to_gt(1) == [[0, 1]]
    strict = match_masks(mask_iou_matrix(pred, gt), min_iou=0.25, allow_shared=False)
    assert strict.gt_to_pred.tolist() == [0, -1]


def test_retarget_drops_unmatched_and_self_and_merges_duplicates():
    # GT: 0 cup, 1 saucer, 2 table, 3 lamp (unmatched)
    gt = np.stack(
        [_rect(10, 10, 20, 20), _rect(10, 20, 20, 24), _rect(0, 24, 60, 40), _rect(40, 0, 50, 5)]
    )
    pred = np.stack([_rect(0, 24, 60, 40), gt[0] | gt[1], _rect(0, 0, 3, 3)])
    m = match_masks(mask_iou_matrix(pred, gt), min_iou=0.25)
    assert m.gt_to_pred.tolist() == [1, 1, 0, -1]
    on, over = 3, 0
    rel = np.array([[0, 2, on], [1, 2, on], [0, 1, on], [3, 2, over], [0, 2, on]])
    r = retarget_relations(rel, m)
    assert r.triplets.tolist() == [[1, 0, on]]
    assert r.counts == {
        "total": 5,
        "dropped_unmatched": 1,
        "dropped_self": 1,
        "merged_duplicates": 2,
        "kept": 1,
    }


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="mask sizes differ"):
        mask_iou_matrix(np.zeros((1, 4, 4), bool), np.zeros((1, 5, 4), bool))
    m = match_masks(np.ones((1, 1)))
    with pytest.raises(ValueError, match="outside"):
        retarget_relations(np.array([[0, 3, 1]]), m)
    empty = match_masks(np.zeros((0, 3)))
    assert empty.gt_to_pred.tolist() == [-1, -1, -1]
