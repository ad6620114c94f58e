"""The perception node's messages, built from one ``Region`` template per frame with per-frame
Python lists (issue 17), equal field for field (recursively; NaN equals NaN; serialised bytes
are not compared: CDR padding bytes are not zeroed) what the previous construction gave (a
``Region(...)`` per region from numpy scalars, kept below verbatim as the reference): regions,
RegionArray and SceneGraph messages, with and without labels and embeddings, tracked and
untracked regions, NaN centroids, fractional boxes and boxes beyond the image."""

from __future__ import annotations

import array
import math

import numpy as np
import pytest

from perception_nodes.core.output.projection import region_centroids
from perception_nodes.core.output.scene_graph import build_scene_graph
from perception_nodes.core.types import UNKNOWN_LABEL, FrameResult, RegionLabels
from perception_nodes.tools.host_scenes import host_scene

pytestmark = pytest.mark.ros


def _reference_regions(result, graph, include_embeddings=False):
    """The previous ``regions_to_msgs``."""
    from geometry_msgs.msg import Point
    from perception_msgs.msg import LabelScore, Region

    def roi(region, box, width, height):
        x0, y0 = max(0, int(math.floor(box[0]))), max(0, int(math.floor(box[1])))
        x1, y1 = min(width, int(math.ceil(box[2]))), min(height, int(math.ceil(box[3])))
        region.bbox.x_offset, region.bbox.y_offset = x0, y0
        region.bbox.width, region.bbox.height = max(0, x1 - x0), max(0, y1 - y0)

    def alternatives(i, vocabulary):
        labels = result.labels
        if labels is None:
            return []
        best, out = int(labels.label_index[i]), []
        for idx, score in zip(labels.topk_index[i], labels.topk_score[i]):
            idx = int(idx)
            if idx == best or idx < 0:
                continue
            out.append(LabelScore(label=vocabulary[idx] if idx < len(vocabulary) else UNKNOWN_LABEL,
                                  label_index=idx, score=float(score)))  # fmt: skip
        return out

    seg = result.segmentation
    h, w = graph.image_size
    vocabulary = list(result.labels.labels) if result.labels is not None else []
    regions = []
    for i in range(graph.num_regions):
        r = Region(id=int(graph.region_ids[i]), track_id=int(graph.track_ids[i]),
                   track_age=int(graph.track_ages[i]), area=int(graph.areas[i]),
                   predicted_iou=float(seg.predicted_iou[i]),
                   stability_score=float(seg.stability_score[i]), label=graph.labels[i],
                   label_index=int(graph.label_index[i]), label_score=float(graph.label_scores[i]),
                   mask_height=h, mask_width=w)  # fmt: skip
        roi(r, graph.boxes_xyxy[i], w, h)
        r.alternatives = alternatives(i, vocabulary)
        r.mask_counts = graph.mask_counts[i]
        c = graph.centroids[i]
        r.centroid = Point(x=float(c[0]), y=float(c[1]), z=float(c[2]))
        if include_embeddings:
            r.embedding = np.asarray(seg.tokens[i], dtype=np.float32).tolist()
            r.embedding_kind = "sam_token"
        regions.append(r)
    return regions


def _same(a, b, where="msg") -> None:
    """Recursive equality of two ROS messages (floats: NaN equals NaN), with the path."""
    assert type(a) is type(b), where
    if hasattr(a, "get_fields_and_field_types"):
        for name in a.get_fields_and_field_types():
            _same(getattr(a, name), getattr(b, name), f"{where}.{name}")
    elif isinstance(a, (list, array.array)):
        assert len(a) == len(b), where
        if isinstance(a, array.array):
            assert a.typecode == b.typecode and a.tobytes() == b.tobytes(), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or a == b, (where, a, b)
    else:
        assert a == b, (where, a, b)


def _frame(h, w, n, seed, with_labels=True):
    scene = host_scene(h, w, n, seed=seed)
    seg = scene.segmentation
    n = len(seg)
    rng = np.random.default_rng(seed)
    # fractional boxes, some beyond the image (the published ROI covers them, inside the image)
    seg.boxes_xyxy = (seg.boxes_xyxy + rng.uniform(-3, 3, (n, 4))).astype(np.float32)
    labels = None
    if with_labels:
        vocab = [f"word {i}" for i in range(12)]
        topk = rng.integers(-1, 15, (n, 4))  # -1 and indices past the vocabulary
        best = np.where((rng.random(n) < 0.2) | (topk[:, 0] >= 12), -1, topk[:, 0])
        labels = RegionLabels(best.astype(np.int64), rng.random(n).astype(np.float32),
                              topk.astype(np.int64), rng.random((n, 4)).astype(np.float32),
                              vocab, 3, meaningful=False)  # fmt: skip
    ids = rng.permutation(np.arange(1, 3 * n + 1))[:n].astype(np.uint32)
    cent = region_centroids(seg.masks, scene.depth_m, scene.k, seg.boxes_xyxy)
    cent[0] = np.nan  # no depth on the region
    graph = build_scene_graph(seg, labels, None, ids, cent)
    graph.track_ids = np.where(rng.random(n) < 0.5, rng.integers(1, 2**63, n), 0).astype(np.uint64)
    graph.track_ages = rng.integers(0, 50, n).astype(np.uint32)
    assert np.isnan(graph.centroids).any() and np.isfinite(graph.centroids).any()
    result = FrameResult(seg, labels, None, ids, cent, {}, graph.track_ids, graph.track_ages)
    return result, graph


@pytest.mark.parametrize("with_labels", [True, False])
@pytest.mark.parametrize("embeddings", [False, True])
def test_regions_equal_the_previous_construction(with_labels, embeddings):
    from perception_nodes.ros.graph_conversion import regions_to_msgs

    for h, w, n, seed in ((96, 128, 24, 1), (61, 77, 40, 2), (40, 30, 3, 3)):
        result, graph = _frame(h, w, n, seed, with_labels)
        got = regions_to_msgs(result, graph, embeddings)
        ref = _reference_regions(result, graph, embeddings)
        assert len(got) == len(ref) == graph.num_regions
        _same(got, ref)
        if with_labels:
            assert any(r.alternatives for r in got)
    # every region has arrays of its own (the template's are not shared)
    assert len({id(r.embedding) for r in got}) == len(got)
    assert len({id(r.bbox) for r in got}) == len({id(r.centroid) for r in got}) == len(got)


def test_published_messages_equal_the_previous_construction():
    from perception_msgs.msg import RegionArray, Relation
    from perception_msgs.msg import SceneGraph as SceneGraphMsg
    from std_msgs.msg import Header

    from perception_nodes.nodes.perception_outputs import OutputSwitches, publish_frame
    from perception_nodes.ros.node_runner import PublishGate

    class Collect:
        def __init__(self):
            self.msgs = []

        def publish(self, msg):
            self.msgs.append(msg)

    result, graph = _frame(96, 128, 24, 4)
    graph.subject, graph.object = np.array([0, 3, 5]), np.array([1, 2, 0])
    graph.predicate_index, graph.relation_scores = np.array([0, 1, 0]), np.float32([0.9, 0.5, 0.3])
    graph.predicates, graph.relation_smoothing = ["on", "next to"], 0.5
    header = Header(frame_id="cam")
    header.stamp.sec = 17
    pubs = {k: Collect() for k in ("regions", "scene_graph", "label_image")}
    publish_frame(
        PublishGate(), pubs, header, result, graph, OutputSwitches(True, True, True, False)
    )
    regions = _reference_regions(result, graph)
    vocabulary = list(result.labels.labels)
    ref_array = RegionArray(header=header, image_height=96, image_width=128,
                            labels_meaningful=False, regions=regions,
                            vocabulary_version=graph.vocabulary_version, vocabulary=vocabulary)  # fmt: skip
    _same(pubs["regions"].msgs[-1], ref_array)
    ref_graph = SceneGraphMsg(header=header, image_height=96, image_width=128,
                              labels_meaningful=False, regions=regions,
                              relations=[Relation(subject_id=int(graph.region_ids[s]),
                                                  object_id=int(graph.region_ids[o]),
                                                  predicate=graph.predicates[p],
                                                  predicate_index=int(p), score=float(sc))
                                         for s, o, p, sc in zip(graph.subject, graph.object,
                                                                graph.predicate_index,
                                                                graph.relation_scores)],
                              predicates=["on", "next to"], relation_source="none",
                              vocabulary_version=graph.vocabulary_version, vocabulary=vocabulary,
                              relations_smoothed=True, relation_smoothing=0.5)  # fmt: skip
    _same(pubs["scene_graph"].msgs[-1], ref_graph)
    assert len(pubs["label_image"].msgs) == 1


def test_non_finite_boxes_are_refused():
    from perception_nodes.ros.graph_conversion import regions_to_msgs

    result, graph = _frame(40, 30, 3, 3)
    graph.boxes_xyxy[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        regions_to_msgs(result, graph)


def test_depth_to_meters_equals_the_previous_conversion():
    from perception_nodes.ros.image_conversion import depth_to_meters

    def reference(image, encoding):
        depth = image.astype(np.float32) / (1000.0 if encoding in ("16UC1", "mono16") else 1.0)
        depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
        return depth

    rng = np.random.default_rng(0)
    f = rng.uniform(-1, 10, (37, 53)).astype(np.float32)
    f[rng.random(f.shape) < 0.1] = np.nan
    f[0, :6] = [np.inf, -np.inf, 0.0, -0.0, 1e-40, 3.4e38]
    u = rng.integers(0, 65535, (37, 53)).astype(np.uint16)
    u[0, :3] = 0, 1, 65535
    for image, encoding in ((f, "32FC1"), (f.astype(np.float64), "64FC1"), (u, "16UC1"),
                            (u, "mono16")):  # fmt: skip
        before = image.copy()
        got, ref = depth_to_meters(image, encoding), reference(image, encoding)
        assert got.dtype == ref.dtype == np.float32 and got.tobytes() == ref.tobytes(), encoding
        assert np.array_equal(image, before, equal_nan=True)  # the input is left alone


def test_slot_maker_equals_the_constructors(monkeypatch):
    """``slot_maker`` gives what the constructor gives (fields and their types, also after a
    serialise/deserialise round trip); with ``ROS_PYTHON_CHECK_FIELDS=1`` it is the constructor and its
    checks; fields it cannot share or does not know are refused."""
    from geometry_msgs.msg import Point
    from perception_msgs.msg import LabelScore, Region, Relation, _label_score
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import RegionOfInterest

    from perception_nodes.ros.graph_conversion import slot_maker

    cases = [
        (LabelScore, ("label", "label_index", "score"), ("cup", -3, 0.25)),
        (Point, ("x", "y", "z"), (1.5, float("nan"), -2.0)),
        (Point, ("z",), (7.0,)),  # the others from the defaults
        (RegionOfInterest, ("x_offset", "y_offset", "width", "height"), (3, 4, 50, 60)),
        (Relation, ("subject_id", "object_id", "predicate", "predicate_index", "score"),
         (5, 9, "on", 2, 0.875)),
    ]  # fmt: skip
    for kind, fields, values in cases:
        got, ref = slot_maker(kind, fields)(*values), kind(**dict(zip(fields, values)))
        _same(got, ref, kind.__name__)
        _same(deserialize_message(serialize_message(got), kind), ref, kind.__name__)
        assert slot_maker(kind, fields)(*values) is not got  # a new message per call
    with pytest.raises(ValueError, match="no field"):
        slot_maker(Point, ("x", "w"))
    with pytest.raises(ValueError, match="immutable"):
        slot_maker(Region, ("id",))  # its bbox, arrays and lists would be shared
    monkeypatch.setattr(_label_score, "ros_python_check_fields", "1")
    checked = slot_maker.__wrapped__(LabelScore, ("label", "label_index", "score"))
    _same(checked("cup", 1, 0.5), LabelScore(label="cup", label_index=1, score=0.5))
    with pytest.raises(AssertionError):
        checked("cup", 1, "high")  # the setters' type check
