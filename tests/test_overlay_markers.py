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
    from std_msgs.msg import Header

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
        pos = VisualizationNode._positions(graph, k)
        assert np.array_equal(pos, _reference_positions(graph, k), equal_nan=True)
