"""Geometric relation predictor on constructed layouts, with and without depth."""

import numpy as np
import pytest

from perception_nodes.core.relations import GeometricRelationPredictor, RelationInputError
from perception_nodes.core.relations.base import pair_features, region_geometry
from perception_nodes.core.types import Segmentation

H, W = 120, 200


def _seg(rects):
    masks = []
    for x0, y0, x1, y1 in rects:
        m = np.zeros((H, W), bool)
        m[y0:y1, x0:x1] = True
        masks.append(m)
    masks = np.stack(masks)
    n = len(masks)
    boxes = np.array(rects, dtype=np.float32)
    return Segmentation(
        masks,
        boxes,
        masks.reshape(n, -1).sum(1),
        np.ones(n, np.float32),
        np.ones(n, np.float32),
        np.zeros((n, 256), np.float32),
        np.full((n, 2), np.nan, np.float32),
        (H, W),
    )


TABLE, CUP, LAMP, LOGO, BOX = 0, 1, 2, 3, 4
LAYOUT = [
    (20, 70, 180, 110),  # table
    (60, 50, 75, 70),  # cup standing on the table's top edge
    (120, 5, 140, 20),  # lamp high above, right of the cup
    (64, 55, 70, 60),  # logo printed on the cup (inside the cup's mask)
    (150, 40, 172, 70),  # box on the table, right of the cup
]


def _triples(rel):
    return {
        (int(s), rel.predicates[p], int(o)): float(sc)
        for s, o, p, sc in zip(rel.subject, rel.object, rel.predicate_index, rel.score)
    }


def test_layout_relations_without_depth():
    pred = GeometricRelationPredictor(min_score=0.3)
    t = _triples(pred.predict(_seg(LAYOUT), None))
    assert t[(CUP, "on", TABLE)] > 0.8
    assert (TABLE, "on", CUP) not in t
    assert (LAMP, "on", TABLE) not in t
    assert t[(LAMP, "above", TABLE)] > 0.9 and t[(TABLE, "below", LAMP)] > 0.9
    assert t[(CUP, "left of", LAMP)] > 0.9 and t[(LAMP, "right of", CUP)] > 0.9
    assert t[(LOGO, "part of", CUP)] > 0.9
    assert (CUP, "part of", LOGO) not in t
    assert t[(BOX, "on", TABLE)] > 0.8
    assert not any(
        p in ("in front of", "behind") for (_, p, _) in t
    )  # no depth, no depth relations
    assert all(s != o for (s, _, o) in t)
    assert all(0.3 <= v <= 1.0 for v in t.values())


def test_scores_are_graded_not_constant():
    pred = GeometricRelationPredictor()
    near = pred.scores(region_geometry(_seg([(0, 0, 20, 20), (15, 0, 35, 20)])))
    far = pred.scores(region_geometry(_seg([(0, 0, 20, 20), (60, 0, 80, 20)])))
    left = pred.predicates.index("left of")
    nxt = pred.predicates.index("next to")
    ovl = pred.predicates.index("overlapping")
    assert 0 < near[0, 1, left] < far[0, 1, left] <= 1
    assert far[0, 1, nxt] < 0.3 < near[0, 1, nxt] or near[0, 1, ovl] > 0.5
    assert near[0, 1, ovl] > 0 and far[0, 1, ovl] == 0
    assert np.allclose(near[:, :, ovl], near[:, :, ovl].T)  # symmetric predicate


def test_depth_gives_front_and_behind():
    seg = _seg([(10, 10, 60, 60), (40, 30, 120, 100)])
    depth = np.full((H, W), 4.0, np.float32)
    depth[10:60, 10:60] = 1.5  # region 0 nearer
    depth[0:5, :] = np.nan  # invalid pixels are ignored
    depth[5:8, :] = 0.0
    t = _triples(GeometricRelationPredictor().predict(seg, None, depth))
    assert t[(0, "in front of", 1)] > 0.9 and t[(1, "behind", 0)] > 0.9
    assert (1, "in front of", 0) not in t
    same = np.full((H, W), 2.0, np.float32)
    t2 = _triples(GeometricRelationPredictor().predict(seg, None, same))
    assert not any(p in ("in front of", "behind") for (_, p, _) in t2)
    feats = pair_features(region_geometry(seg, depth))
    assert feats[0, 1, -1] == 1.0 and feats[0, 1, 16] > 2.0  # depth valid, object 2.5 m farther


def test_invalid_depth_and_inputs():
    seg = _seg(LAYOUT)
    with pytest.raises(RelationInputError, match="expected \\(H, W\\)"):
        GeometricRelationPredictor().predict(seg, None, np.zeros((H // 2, W), np.float32))
    with pytest.raises(RelationInputError, match="dtype"):
        GeometricRelationPredictor().predict(seg, None, np.zeros((H, W), np.uint16))
    with pytest.raises(ValueError):
        GeometricRelationPredictor(min_score=2.0)
    one = _seg([(0, 0, 5, 5)])
    assert len(GeometricRelationPredictor().predict(one, None)) == 0
