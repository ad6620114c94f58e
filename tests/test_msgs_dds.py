"""Every perception_msgs message and service crosses real DDS between separate processes intact."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
from ros_helpers.process import answer_with_resend, ros_process, spin_until

pytestmark = pytest.mark.ros

UNICODE_LABELS = ["tasse à café", "杯子", "кружка", "🙂 emoji mug", ""]


def _same(a, b) -> bool:
    """Deep equality of two ROS messages where NaN equals NaN (CDR bytes are no good for
    this: the serializer leaves alignment padding uninitialised). Sent float32 fields must hold
    float32-exact values (rclpy keeps the Python float until it serializes)."""
    if hasattr(a, "get_fields_and_field_types"):
        return type(a) is type(b) and all(
            _same(getattr(a, f), getattr(b, f)) for f in a.get_fields_and_field_types()
        )
    if isinstance(a, (list, tuple)) and a and hasattr(a[0], "get_fields_and_field_types"):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or not isinstance(a, (str, bytes, int)):
        try:
            return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
        except TypeError:
            return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def _real_mask() -> np.ndarray:
    """A real, irregular mask: the dark pixels of skimage's coffee photo."""
    gray = skimage.data.coffee().mean(axis=2)
    return gray < 80


def _region(i: int, mask: np.ndarray):
    from geometry_msgs.msg import Point
    from perception_msgs.msg import LabelScore, Region

    from perception_nodes.core.output.rle import encode_mask

    h, w, counts = encode_mask(mask)
    ys, xs = np.nonzero(mask)
    region = Region(
        id=i + 1,
        track_id=2**40 + i,
        track_age=i,
        area=int(mask.sum()),
        predicted_iou=0.875,
        stability_score=0.96875,
    )
    region.bbox.x_offset, region.bbox.y_offset = int(xs.min()), int(ys.min())
    region.bbox.width, region.bbox.height = (
        int(xs.max() - xs.min() + 1),
        int(ys.max() - ys.min() + 1),
    )
    region.label = UNICODE_LABELS[i % len(UNICODE_LABELS)]
    region.label_index = i - 1
    region.label_score = 0.5
    region.alternatives = [
        LabelScore(label=name, label_index=j, score=j / 8) for j, name in enumerate(UNICODE_LABELS)
    ]
    region.mask_height, region.mask_width, region.mask_counts = h, w, counts
    region.centroid = (
        Point(x=math.nan, y=1.5, z=float("nan")) if i % 2 == 0 else Point(x=0.25, y=-0.5, z=2.0)
    )
    region.embedding = np.random.default_rng(i).standard_normal(256).astype(np.float32).tolist()
    region.embedding_kind = "sam_token"
    return region


def _scene_graph(n_regions: int = 40):
    from perception_msgs.msg import Relation, SceneGraph

    mask = _real_mask()
    masks = [np.roll(mask, 7 * i, axis=1) for i in range(n_regions)]
    graph = SceneGraph()
    graph.header.frame_id = "camera_color_optical_frame"
    graph.header.stamp.sec, graph.header.stamp.nanosec = 1_700_000_000, 123_456_789
    graph.image_height, graph.image_width = mask.shape
    graph.regions = [_region(i, m) for i, m in enumerate(masks)]
    graph.relations = [
        Relation(subject_id=s + 1, object_id=o + 1, predicate="on", predicate_index=3, score=0.5)
        for s in range(n_regions)
        for o in range(n_regions)
        if s != o
    ]
    graph.predicates = ["over", "in front of", "beside", "on", "在……上面"]
    graph.relation_source = "geometric"
    graph.vocabulary_version = 2**40 + 7
    graph.vocabulary = UNICODE_LABELS
    graph.relations_smoothed, graph.relation_smoothing = True, 0.5
    graph.labels_meaningful = True
    return graph, masks


def _echo(ros_context, msg_type: str, message, timeout: float = 30.0):
    """Send ``message`` to the echo process and return what comes back."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from ros_helpers.echo import QOS, load_type

    cls = load_type(msg_type)
    node = Node("echo_client", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    received = []
    pub = node.create_publisher(cls, "/pn_test/in", QOS)
    node.create_subscription(cls, "/pn_test/out", received.append, QOS)
    try:
        with ros_process("echo.py", "topic", msg_type, "/pn_test/in", "/pn_test/out"):
            assert spin_until(executor, lambda: pub.get_subscription_count() > 0, timeout), (
                "echo never subscribed"
            )
            pub.publish(message)
            assert spin_until(executor, lambda: bool(received), timeout), f"no {msg_type} came back"
    finally:
        executor.shutdown()
        node.destroy_node()
    return received[0]


def test_scene_graph_round_trip_keeps_masks_labels_and_nan(ros_context):
    from perception_nodes.core.output.rle import decode_mask

    graph, masks = _scene_graph()
    back = _echo(ros_context, "perception_msgs/msg/SceneGraph", graph)

    assert back.header == graph.header
    assert len(back.regions) == len(masks) and len(back.relations) == len(graph.relations)
    for sent_mask, region in zip(masks, back.regions):
        decoded = decode_mask(region.mask_height, region.mask_width, region.mask_counts)
        assert np.array_equal(decoded, sent_mask)
        assert region.area == int(sent_mask.sum())
    assert [r.label for r in back.regions] == [r.label for r in graph.regions]
    assert [a.label for a in back.regions[0].alternatives] == UNICODE_LABELS
    assert math.isnan(back.regions[0].centroid.x) and math.isnan(back.regions[0].centroid.z)
    assert back.regions[1].centroid.z == 2.0
    np.testing.assert_array_equal(
        np.asarray(back.regions[3].embedding), np.asarray(graph.regions[3].embedding)
    )
    assert back.predicates == graph.predicates and back.vocabulary == UNICODE_LABELS
    assert back.vocabulary_version == 2**40 + 7
    assert [r.track_id for r in back.regions] == [2**40 + i for i in range(len(masks))]
    assert (
        back.regions[3].track_age == 3
        and back.relations_smoothed
        and back.relation_smoothing == 0.5
    )
    assert back.labels_meaningful is True
    assert _same(back, graph)


def test_region_array_round_trip(ros_context):
    from perception_msgs.msg import RegionArray

    graph, _ = _scene_graph(5)
    msg = RegionArray(
        header=graph.header,
        image_height=graph.image_height,
        image_width=graph.image_width,
        regions=graph.regions,
        vocabulary_version=3,
        vocabulary=UNICODE_LABELS,
    )
    assert _same(_echo(ros_context, "perception_msgs/msg/RegionArray", msg), msg)


def test_relation_and_label_score_round_trip(ros_context):
    from perception_msgs.msg import LabelScore, Relation

    rel = Relation(
        subject_id=2**31, object_id=1, predicate="looking at", predicate_index=55, score=0.125
    )
    assert _echo(ros_context, "perception_msgs/msg/Relation", rel) == rel
    ls = LabelScore(label="ручка", label_index=-1, score=1.0)
    assert _echo(ros_context, "perception_msgs/msg/LabelScore", ls) == ls


def _call(ros_context, srv_type: str, name: str, request, timeout: float = 30.0):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from ros_helpers.echo import load_type

    node = Node("srv_client", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    client = node.create_client(load_type(srv_type), name)
    server = None
    try:
        with ros_process("echo.py", "service", srv_type, name) as server:
            assert spin_until(executor, client.service_is_ready, timeout), f"{name} never appeared"
            # resent while unanswered (CI stop 15: a first answer lost for good); the echo
            # server answers deterministically, so a resend tests the same bytes
            return answer_with_resend(
                client, request, lambda cond, t: spin_until(executor, cond, t), timeout
            )
    except AssertionError as failure:
        log = server.stderr.read()[-4000:] if server is not None else ""
        raise AssertionError(f"{failure}\n--- echo server stderr ---\n{log}") from None
    finally:
        executor.shutdown()
        node.destroy_node()


def test_set_vocabulary_service_across_processes(ros_context):
    from perception_msgs.srv import SetVocabulary

    labels = [f"entry {i} ✓" for i in range(2000)] + UNICODE_LABELS
    req = SetVocabulary.Request(
        labels=labels, prompt_templates=["a photo of a {}.", "一张{}的照片"], append=True
    )
    resp = _call(ros_context, "perception_msgs/srv/SetVocabulary", "/pn_test/set_vocabulary", req)
    assert resp.success and resp.version == 1000 + len(labels)
    assert list(resp.labels) == list(reversed(labels))
    assert "一张{}的照片" in resp.message and "append=True" in resp.message


def test_get_vocabulary_service_across_processes(ros_context):
    from perception_msgs.srv import GetVocabulary

    resp = _call(
        ros_context,
        "perception_msgs/srv/GetVocabulary",
        "/pn_test/get_vocabulary",
        GetVocabulary.Request(),
    )
    assert list(resp.labels) == ["tasse", "杯子", "кружка"] and resp.version == 42


def test_query_regions_service_across_processes(ros_context):
    from perception_msgs.srv import QueryRegions

    req = QueryRegions.Request(text="the red cup ☕", top_k=7)
    resp = _call(ros_context, "perception_msgs/srv/QueryRegions", "/pn_test/query_regions", req)
    assert resp.success and resp.message == "☕ puc der eht"
    assert list(resp.region_ids) == list(range(1, 8))
    np.testing.assert_allclose(resp.scores, [1.0 / i for i in range(1, 8)], rtol=1e-6)
    assert (resp.stamp.sec, resp.stamp.nanosec) == (1234, 5678)
