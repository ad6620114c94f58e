"""The visualization node's MarkerArray, built from one template per marker kind, equals field
for field (message equality, recursive; serialised bytes are not compared: CDR padding bytes are
not zeroed) the previous construction (a new ``Marker`` per region and relation, kept below
verbatim as the reference), on generated frames with and without CameraInfo, centroids
missing (NaN), tracked and untracked regions, and relations between them."""

from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.core.output.draw import colour_keys, region_colours
from perception_nodes.core.output.projection import region_centroids
from perception_nodes.core.output.scene_graph import build_scene_graph
from perception_nodes.tools.host_scenes import host_scene

pytestmark = pytest.mark.ros
NOMINAL_DEPTH_M = 1.0


def _reference_positions(graph, k):
    pos = graph.centroids.astype(np.float64).copy()
    if k is not None:
        for i in range(graph.num_regions):
            if not np.all(np.isfinite(pos[i])):
                u = (graph.boxes_xyxy[i, 0] + graph.boxes_xyxy[i, 2]) / 2
                v = (graph.boxes_xyxy[i, 1] + graph.boxes_xyxy[i, 3]) / 2
                pos[i] = (
                    (u - k[0, 2]) / k[0, 0] * NOMINAL_DEPTH_M,
                    (v - k[1, 2]) / k[1, 1] * NOMINAL_DEPTH_M,
                    NOMINAL_DEPTH_M,
                )
    return pos


def _reference_label_text(graph, i):
    tid = int(graph.track_ids[i])
    return f"{'#%d ' % tid if tid else ''}{graph.labels[i]} {graph.label_scores[i]:.2f}"


def _reference_markers(graph, header, k):
    """The previous ``VisualizationNode.markers`` (a new message object for every field)."""
    from geometry_msgs.msg import Point
    from visualization_msgs.msg import Marker, MarkerArray

    pos = _reference_positions(graph, k)
    colours = region_colours(colour_keys(graph)) / 255.0
    out = MarkerArray(markers=[Marker(header=header, action=Marker.DELETEALL)])
    for i in range(graph.num_regions):
        if not np.all(np.isfinite(pos[i])):
            continue
        m = Marker(header=header, ns="labels", id=int(graph.region_ids[i]),
                   type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                   text=_reference_label_text(graph, i))  # fmt: skip
        m.pose.position = Point(x=pos[i, 0], y=pos[i, 1], z=pos[i, 2])
        m.pose.orientation.w = 1.0
        m.scale.z = 0.05
        m.color.r, m.color.g, m.color.b, m.color.a = *map(float, colours[i]), 1.0
        out.markers.append(m)
    for j, (s, o, p, sc) in enumerate(
        zip(graph.subject, graph.object, graph.predicate_index, graph.relation_scores)
    ):
        if not (np.all(np.isfinite(pos[s])) and np.all(np.isfinite(pos[o]))):
            continue
        arrow = Marker(header=header, ns="relations", id=j, type=Marker.ARROW, action=Marker.ADD)
        arrow.points = [Point(x=pos[s, 0], y=pos[s, 1], z=pos[s, 2]),
                        Point(x=pos[o, 0], y=pos[o, 1], z=pos[o, 2])]  # fmt: skip
        arrow.pose.orientation.w = 1.0
        arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.01, 0.02, 0.03
        arrow.color.r, arrow.color.g, arrow.color.b, arrow.color.a = (
            1.0, 1.0, 1.0, max(0.2, float(sc)))  # fmt: skip
        text = Marker(header=header, ns="relation_labels", id=j, type=Marker.TEXT_VIEW_FACING,
                      action=Marker.ADD, text=f"{graph.predicates[p]} {sc:.2f}")  # fmt: skip
        mid = (pos[s] + pos[o]) / 2
        text.pose.position = Point(x=mid[0], y=mid[1], z=mid[2])
        text.pose.orientation.w = 1.0
        text.scale.z = 0.035
        text.color.r, text.color.g, text.color.b, text.color.a = 1.0, 1.0, 0.0, 1.0
        out.markers += [arrow, text]
    return out


def _graph(h, w, n, seed):
    scene = host_scene(h, w, n, seed=seed)
    seg = scene.segmentation
    depth = scene.depth_m.copy()
    depth[seg.masks[n // 2] | seg.masks[-1]] = np.nan  # regions without valid depth
    centroids = region_centroids(seg.masks, depth, scene.k)
    graph = build_scene_graph(seg, None, None, np.arange(1, n + 1, dtype=np.uint32), centroids)
    rng = np.random.default_rng(seed)
    m = 3 * n
    graph.subject, graph.object = rng.integers(0, n, m), rng.integers(0, n, m)
    graph.predicate_index = rng.integers(0, 3, m)
    graph.relation_scores = np.sort(rng.random(m).astype(np.float32))[::-1]
    graph.predicates = ["on", "next to", "part of"]
    graph.track_ids = np.where(rng.random(n) < 0.5, rng.integers(1, 99, n), 0).astype(np.uint64)
    assert np.isnan(graph.centroids).any() and np.isfinite(graph.centroids).any()
    return graph, scene.k


@pytest.mark.parametrize("with_k", [True, False])
def test_markers_equal_the_previous_construction(with_k):
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Header
    from visualization_msgs.msg import MarkerArray

    from perception_nodes.nodes.visualization_node import VisualizationNode

    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    for h, w, n, seed in ((96, 128, 24, 1), (72, 96, 60, 2)):
        graph, k = _graph(h, w, n, seed)
        k = k if with_k else None
        got = VisualizationNode.markers(VisualizationNode, graph, header, k)
        ref = _reference_markers(graph, header, k)
        assert len(got.markers) == len(ref.markers) > 1 + n  # labels and relations both drawn
        assert got == ref
        assert [m.pose.position for m in got.markers] == [m.pose.position for m in ref.markers]
        # the slot-built sub-messages serialise and read back as the reference
        assert deserialize_message(serialize_message(got), MarkerArray) == deserialize_message(
            serialize_message(ref), MarkerArray
        )
        pos = VisualizationNode._positions(graph, k)
        assert np.array_equal(pos, _reference_positions(graph, k), equal_nan=True)


def _reference_msg_to_scene_graph(msg):
    """The previous ``msg_to_scene_graph`` (a list comprehension per field)."""
    from perception_nodes.core.output.scene_graph import SceneGraph
    from perception_nodes.core.stream.stamps import stamp_to_seconds

    n = len(msg.regions)
    index = {r.id: i for i, r in enumerate(msg.regions)}
    rel = [(index.get(r.subject_id), index.get(r.object_id), r.predicate_index, r.score)
           for r in msg.relations]  # fmt: skip
    rel = [t for t in rel if t[0] is not None and t[1] is not None]
    boxes = np.array([[r.bbox.x_offset, r.bbox.y_offset, r.bbox.x_offset + r.bbox.width,
                       r.bbox.y_offset + r.bbox.height] for r in msg.regions],
                     dtype=np.float32).reshape(n, 4)  # fmt: skip
    return SceneGraph(
        image_size=(int(msg.image_height), int(msg.image_width)),
        region_ids=np.array([r.id for r in msg.regions], dtype=np.uint32),
        labels=[r.label for r in msg.regions],
        label_index=np.array([r.label_index for r in msg.regions], dtype=np.int64),
        label_scores=np.array([r.label_score for r in msg.regions], dtype=np.float32),
        boxes_xyxy=boxes,
        areas=np.array([r.area for r in msg.regions], dtype=np.int64),
        centroids=np.array(
            [[r.centroid.x, r.centroid.y, r.centroid.z] for r in msg.regions], dtype=np.float32
        ).reshape(n, 3),  # fmt: skip
        mask_counts=[list(r.mask_counts) for r in msg.regions],
        subject=np.array([t[0] for t in rel], dtype=np.int64),
        object=np.array([t[1] for t in rel], dtype=np.int64),
        predicate_index=np.array([t[2] for t in rel], dtype=np.int64),
        relation_scores=np.array([t[3] for t in rel], dtype=np.float32),
        predicates=list(msg.predicates),
        relation_source=msg.relation_source,
        vocabulary_version=int(msg.vocabulary_version),
        labels_meaningful=bool(msg.labels_meaningful),
        stamp=stamp_to_seconds(msg.header.stamp),
        track_ids=np.array([r.track_id for r in msg.regions], dtype=np.uint64),
        track_ages=np.array([r.track_age for r in msg.regions], dtype=np.uint32),
        relation_smoothing=float(msg.relation_smoothing) if msg.relations_smoothed else None,
    )


def _graph_msg(graph):
    """A ``perception_msgs/SceneGraph`` of ``graph`` (regions, relations, one to a missing id)."""
    from geometry_msgs.msg import Point
    from perception_msgs.msg import Region, Relation, SceneGraph

    msg = SceneGraph(image_height=graph.image_size[0], image_width=graph.image_size[1],
                     predicates=list(graph.predicates), relation_source="geometric",
                     vocabulary_version=3, labels_meaningful=False, relations_smoothed=True,
                     relation_smoothing=0.25)  # fmt: skip
    for i in range(graph.num_regions):
        x0, y0, x1, y1 = (int(v) for v in graph.boxes_xyxy[i])
        r = Region(id=int(graph.region_ids[i]), track_id=int(graph.track_ids[i]),
                   track_age=i % 7, area=int(graph.areas[i]), label=f"thing {i}",
                   label_index=i % 5 - 1, label_score=0.125 + i / 1000,
                   mask_height=graph.image_size[0], mask_width=graph.image_size[1],
                   mask_counts=[int(c) for c in graph.mask_counts[i]])  # fmt: skip
        r.bbox.x_offset, r.bbox.y_offset, r.bbox.width, r.bbox.height = x0, y0, x1 - x0, y1 - y0
        c = graph.centroids[i]
        r.centroid = Point(x=float(c[0]) / 3, y=float(c[1]), z=float(c[2]))
        msg.regions.append(r)
    for s, o, p, sc in zip(graph.subject, graph.object, graph.predicate_index,
                           graph.relation_scores):  # fmt: skip
        msg.relations.append(Relation(subject_id=int(graph.region_ids[s]),
                                      object_id=int(graph.region_ids[o]),
                                      predicate_index=int(p), score=float(sc) / 3))  # fmt: skip
    msg.relations.append(Relation(subject_id=999, object_id=1, score=0.5))  # unknown: dropped
    msg.regions[0].track_id = 2**64 - 5  # the largest track ids survive
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1700000000, 123456789
    return msg


def test_graph_from_message_equals_the_previous_conversion():
    from perception_nodes.ros.graph_conversion import msg_to_scene_graph

    graph, _ = _graph(72, 96, 60, 2)
    msg = _graph_msg(graph)
    got, ref = msg_to_scene_graph(msg), _reference_msg_to_scene_graph(msg)
    for name in ref.__dataclass_fields__:
        a, b = getattr(got, name), getattr(ref, name)
        if name == "mask_counts":
            assert [c.tolist() for c in a] == b
            assert all(c.dtype == np.uint32 for c in a)
        elif isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), name
        else:
            assert a == b, name
    assert got.num_relations == graph.num_relations  # the relation to a missing id dropped
