"""Scene-graph assembly: filtering, symmetric merging, JSON round trip."""

import json

import numpy as np
import pytest

from perception_nodes.core.output.scene_graph import (
    SceneGraphError,
    build_scene_graph,
    from_json,
    to_json,
)
from perception_nodes.core.types import RegionLabels, Relations, Segmentation

H, W = 30, 40
PREDS = ["on", "beside", "holding"]


def _seg(n=4):
    masks = np.zeros((n, H, W), bool)
    for i in range(n):
        masks[i, 2 + 6 * i : 6 + 6 * i, 3 + 5 * i : 12 + 5 * i] = True
    boxes = np.array([[3 + 5 * i, 2 + 6 * i, 12 + 5 * i, 6 + 6 * i] for i in range(n)], np.float32)
    return Segmentation(
        masks,
        boxes,
        masks.reshape(n, -1).sum(1).astype(np.int64),
        np.ones(n, np.float32),
        np.ones(n, np.float32),
        np.zeros((n, 256), np.float32),
        np.full((n, 2), np.nan, np.float32),
        (H, W),
    )


def _labels(n=4):
    return RegionLabels(
        np.array([0, 1, -1, 2][:n]),
        np.array([0.9, 0.8, 0.1, 0.7][:n], np.float32),
        np.zeros((n, 1), np.int64),
        np.zeros((n, 1), np.float32),
        ["cup", "table", "person"],
        7,
    )


def _rel(rows):
    a = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return Relations(
        a[:, 0].astype(np.int64),
        a[:, 1].astype(np.int64),
        a[:, 2].astype(np.int64),
        a[:, 3].astype(np.float32),
        PREDS,
        "learned",
    )


def test_filtering_self_threshold_symmetric_and_topk():
    rel = _rel([
        [0, 1, 0, 0.9],   # cup on table
        [1, 1, 0, 0.99],  # self relation: dropped
        [0, 1, 1, 0.5],   # cup beside table
        [1, 0, 1, 0.6],   # table beside cup: same symmetric fact, higher score wins
        [3, 0, 2, 0.7],   # person holding cup
        [0, 3, 2, 0.05],  # below threshold
        [0, 1, 0, 0.4],   # duplicate of the first, lower score
        [0, 2, 0, 0.3], [0, 3, 0, 0.2],
    ])  # fmt: skip
    g = build_scene_graph(
        _seg(), _labels(), rel, region_ids=np.array([11, 12, 13, 14]), score_threshold=0.1
    )
    got = [
        (int(s), PREDS[p], int(o), round(float(sc), 2))
        for s, o, p, sc in zip(g.subject, g.object, g.predicate_index, g.relation_scores)
    ]
    assert got == [
        (0, "on", 1, 0.9),
        (3, "holding", 0, 0.7),
        (1, "beside", 0, 0.6),
        (0, "on", 2, 0.3),
        (0, "on", 3, 0.2),
    ]
    assert g.subject_ids.tolist()[:2] == [11, 14]
    assert g.labels == ["cup", "table", "unknown", "person"]
    assert g.predicates == PREDS and g.relation_source == "learned" and g.vocabulary_version == 7
    per_subject = build_scene_graph(_seg(), _labels(), rel, np.arange(1, 5), top_k_per_subject=1)
    assert [int(s) for s in per_subject.subject] == [0, 3, 1]
    top2 = build_scene_graph(_seg(), _labels(), rel, np.arange(1, 5), top_k=2)
    assert top2.num_relations == 2
    no_merge = build_scene_graph(_seg(), _labels(), rel, np.arange(1, 5), merge_symmetric=False)
    assert no_merge.num_relations == 6


def test_json_round_trip_is_lossless_with_nan_centroids():
    seg = _seg()
    cent = np.array([[0.1, 0.2, 1.5], [np.nan] * 3, [1 / 3, -2.0, 7.25], [np.nan] * 3], np.float32)
    rel = _rel([[0, 1, 0, 0.123456789], [3, 0, 2, 0.7]])
    g = build_scene_graph(
        seg, _labels(), rel, np.array([5, 6, 7, 9]), centroids=cent, stamp=1712.25
    )
    text = to_json(g)
    json.loads(text)  # strict JSON: no NaN tokens
    assert "NaN" not in text
    g2 = from_json(text)
    for name in (
        "region_ids",
        "label_index",
        "label_scores",
        "boxes_xyxy",
        "areas",
        "subject",
        "object",
        "predicate_index",
        "relation_scores",
    ):
        a, b = getattr(g, name), getattr(g2, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert np.array_equal(g.centroids, g2.centroids, equal_nan=True)
    assert g2.mask_counts == g.mask_counts and g2.labels == g.labels and g2.stamp == g.stamp
    assert all(np.array_equal(g2.mask(i), seg.masks[i]) for i in range(4))
    assert to_json(g2) == text


def test_unlabelled_no_relations_and_errors():
    g = build_scene_graph(_seg(2), None, None, np.array([1, 2]))
    assert (
        g.labels == ["unknown", "unknown"] and g.num_relations == 0 and g.relation_source == "none"
    )
    assert from_json(to_json(g)).num_regions == 2
    with pytest.raises(SceneGraphError, match="unique"):
        build_scene_graph(_seg(2), None, None, np.array([1, 1]))
    with pytest.raises(SceneGraphError, match="region ids"):
        build_scene_graph(_seg(2), None, None, np.array([1, 2, 3]))
    with pytest.raises(SceneGraphError, match="centroids"):
        build_scene_graph(_seg(2), None, None, np.array([1, 2]), centroids=np.zeros((2, 2)))
    with pytest.raises(SceneGraphError):
        from_json('{"format": "other"}')
