"""visualization_node: overlay images and RViz markers from scene graphs, in its own process.

Kept out of the perception process so drawing never slows inference (RViz can subscribe to
anything here at any rate). For each camera namespace ``<cam>`` (``out = <cam>/<output_namespace>``):
  in:  <cam>/<image_topic> (the camera image), <out>/scene_graph, <cam>/<camera_info_topic>
  out: <out>/overlay (sensor_msgs/Image rgb8: masks, labels, relation arrows),
       <out>/markers (visualization_msgs/MarkerArray: labels and relation arrows, in 3D at the
       regions' centroids when depth was available; otherwise on a plane 1 m in front of the
       camera when CameraInfo is known)
A scene graph with ``labels_meaningful: false`` (generated weights) gets the banner
:data:`NOT_MEANINGFUL_BANNER` drawn on its overlay, and one log line.
"""

from __future__ import annotations

import sys
from collections import OrderedDict

import numpy as np
from geometry_msgs.msg import Point, Pose
from perception_msgs.msg import SceneGraph
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from perception_nodes.core.output.draw import colour_keys, draw_overlay, region_colours
from perception_nodes.core.output.projection import intrinsics_problem
from perception_nodes.core.stream.stamps import stamp_to_ns
from perception_nodes.ros.graph_conversion import msg_to_scene_graph, slot_copier
from perception_nodes.ros.image_conversion import (
    ImageConversionError,
    image_msg_to_numpy,
    numpy_to_image_msg,
    to_rgb8,
)
from perception_nodes.ros.node_runner import PublishGate, join_topic, output_base, run_node

NOMINAL_DEPTH_M = 1.0
NOT_MEANINGFUL_BANNER = "GENERATED WEIGHTS: masks/labels not meaningful"


class VisualizationNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("visualization_node", **kwargs)
        self.declare_parameter("cameras", [""])
        self.declare_parameter("image_topic", "image_raw")
        self.declare_parameter("camera_info_topic", "camera_info")
        self.declare_parameter("output_namespace", "perception")
        self.declare_parameter("image_buffer", 30)
        self.declare_parameter("max_relations_drawn", 20)
        self._images: dict[str, OrderedDict] = {}
        # cam -> {stamp ns: (K, (height, width))}, the last image_buffer CameraInfos: a scene
        # graph comes seconds after its image on a CPU, when the camera may have sent the next
        # frame's CameraInfo (photos of other sizes: a warning on almost every frame)
        self._info: dict[str, OrderedDict] = {}
        self._pubs = {}
        self._said_not_meaningful = False
        self.gate = PublishGate()  # closed when shutdown begins: nothing is published after
        out_ns = self.get_parameter("output_namespace").value
        for cam in [c.rstrip("/") for c in self.get_parameter("cameras").value] or [""]:
            base = output_base(cam, out_ns)
            self._images[cam] = OrderedDict()
            self._info[cam] = OrderedDict()
            self.create_subscription(
                Image,
                join_topic(cam, self.get_parameter("image_topic").value),
                lambda m, c=cam: self._on_image(c, m),
                qos_profile_sensor_data,
            )
            self.create_subscription(
                CameraInfo,
                join_topic(cam, self.get_parameter("camera_info_topic").value),
                lambda m, c=cam: self._on_info(c, m),
                qos_profile_sensor_data,
            )
            self.create_subscription(
                SceneGraph, f"{base}/scene_graph", lambda m, c=cam: self._on_graph(c, m), 10
            )
            self._pubs[cam] = (
                self.create_publisher(Image, f"{base}/overlay", 10),
                self.create_publisher(MarkerArray, f"{base}/markers", 10),
            )

    def _keep(self, buf: OrderedDict, stamp, value) -> None:
        """Store ``value`` under the stamp (ns), keeping the newest ``image_buffer`` entries."""
        buf[stamp_to_ns(stamp)] = value
        while len(buf) > int(self.get_parameter("image_buffer").value):
            buf.popitem(last=False)

    def _on_image(self, cam: str, msg: Image) -> None:
        self._keep(self._images[cam], msg.header.stamp, msg)

    def _on_info(self, cam: str, msg: CameraInfo) -> None:
        K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        self._keep(self._info[cam], msg.header.stamp, (K, (int(msg.height), int(msg.width))))

    def _intrinsics(
        self, cam: str, image_size: tuple[int, int], stamp_ns: int
    ) -> np.ndarray | None:
        """The camera's K for the graph's frame: the CameraInfo with the graph's stamp, else the
        latest; None when it does not fit the graph's image (no nominal-plane markers)."""
        infos = self._info[cam]
        entry = infos.get(stamp_ns) or (next(reversed(infos.values())) if infos else None)
        if entry is None:
            return None
        problem = intrinsics_problem(entry[0], image_size, entry[1])
        if problem:
            self.get_logger().warning(
                f"[{cam or '/'}] CameraInfo not used for markers: {problem}",
                throttle_duration_sec=5.0,
            )
            return None
        return entry[0]

    def _on_graph(self, cam: str, msg: SceneGraph) -> None:
        graph = msg_to_scene_graph(msg)
        if not graph.labels_meaningful and not self._said_not_meaningful:
            self._said_not_meaningful = True
            self.get_logger().warning(
                f"[{cam or '/'}] scene graphs say labels_meaningful: false (generated weights, "
                f"see the perception node's log): overlays carry the banner {NOT_MEANINGFUL_BANNER!r}"
            )
        overlay_pub, marker_pub = self._pubs[cam]
        stamp = stamp_to_ns(msg.header.stamp)
        image_msg = self._images[cam].get(stamp)
        if image_msg is not None:
            try:
                rgb = to_rgb8(image_msg_to_numpy(image_msg), image_msg.encoding)
            except ImageConversionError as exc:
                self.get_logger().warning(f"overlay skipped: {exc}", throttle_duration_sec=5.0)
            else:
                if rgb.shape[:2] == graph.image_size:
                    overlay = draw_overlay(
                        rgb,
                        graph,
                        max_relations=int(self.get_parameter("max_relations_drawn").value),
                        banner=None if graph.labels_meaningful else NOT_MEANINGFUL_BANNER,
                    )
                    self.gate.publish(overlay_pub, numpy_to_image_msg(overlay, "rgb8", msg.header))
        else:
            self.get_logger().debug(
                "no image with the scene graph's stamp in the buffer; overlay skipped"
            )
        self.gate.publish(
            marker_pub,
            self.markers(graph, msg.header, self._intrinsics(cam, graph.image_size, stamp)),
        )

    @staticmethod
    def _positions(graph, k: np.ndarray | None) -> np.ndarray:
        """``(N, 3)`` float64 marker positions (camera frame, meters): the regions' centroids;
        where one is not finite and ``k`` is known, the box centre's ray at
        :data:`NOMINAL_DEPTH_M` (the box centre in the boxes' float32, as before)."""
        pos = graph.centroids.astype(np.float64).copy()
        missing = ~np.isfinite(pos).all(axis=1)
        if k is not None and missing.any():
            box = graph.boxes_xyxy[missing]
            u, v = (box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2
            pos[missing, 0] = (u - k[0, 2]) / k[0, 0] * NOMINAL_DEPTH_M
            pos[missing, 1] = (v - k[1, 2]) / k[1, 1] * NOMINAL_DEPTH_M
            pos[missing, 2] = NOMINAL_DEPTH_M
        return pos

    @staticmethod
    def _label_text(graph, i: int) -> str:
        """``#<track id> label score`` when the region is tracked, else ``label score``."""
        tid = int(graph.track_ids[i])
        return f"{'#%d ' % tid if tid else ''}{graph.labels[i]} {graph.label_scores[i]:.2f}"

    def markers(self, graph, header, k: np.ndarray | None) -> MarkerArray:
        """Labels at the regions' positions, relation arrows and their labels (regions or
        relations without a finite position are left out). Built from one template per kind
        by slot copies (:func:`slot_copier`: the markers share the header, scale, unused
        fields and, where they are equal, pose orientation and colour sub-messages; only what
        differs is new per marker; treat the result as read-only)."""
        pos = self._positions(graph, k)
        finite = np.isfinite(pos).all(axis=1).tolist()
        xyz = pos.tolist()
        colours = (region_colours(colour_keys(graph)) / 255.0).tolist()
        ids, texts = graph.region_ids.tolist(), _label_texts(graph)
        label, arrow, rel_text = (
            _template(header, "labels", Marker.TEXT_VIEW_FACING, (0.0, 0.0, 0.05)),
            _template(header, "relations", Marker.ARROW, (0.01, 0.02, 0.03)),
            _template(header, "relation_labels", Marker.TEXT_VIEW_FACING, (0.0, 0.0, 0.035)),
        )
        rel_text.color = ColorRGBA(r=1.0, g=1.0, b=0.0, a=1.0)
        copy, turn = slot_copier(Marker), label.pose.orientation
        out = [Marker(header=header, action=Marker.DELETEALL)]
        for i in range(graph.num_regions):
            if finite[i]:
                m = copy(label)
                m._id, m._text, m._pose = ids[i], texts[i], _pose(turn, *xyz[i])
                m._color = _colour(*colours[i], 1.0)
                out.append(m)
        scores = graph.relation_scores.tolist()
        for j, (s, o, p) in enumerate(
            zip(graph.subject.tolist(), graph.object.tolist(), graph.predicate_index.tolist())
        ):
            if not (finite[s] and finite[o]):
                continue
            a = copy(arrow)
            a._id, a._points = j, [_point(*xyz[s]), _point(*xyz[o])]
            a._color = _colour(1.0, 1.0, 1.0, max(0.2, scores[j]))
            t = copy(rel_text)
            t._id, t._text = j, f"{graph.predicates[p]} {scores[j]:.2f}"
            mid = (pos[s] + pos[o]) / 2
            t._pose = _pose(turn, *mid.tolist())
            out += [a, t]
        return MarkerArray(markers=out)


def _label_texts(graph) -> list[str]:
    """:meth:`VisualizationNode._label_text` of every region (one ``tolist()`` per array, not
    a numpy scalar per region; the float32 scores format as their float64 values, as before)."""
    return [f"{'#%d ' % t if t else ''}{label} {score:.2f}" for t, label, score in
            zip(graph.track_ids.tolist(), graph.labels, graph.label_scores.tolist())]  # fmt: skip


def _template(header, ns: str, kind: int, scale: tuple[float, float, float]) -> Marker:
    """A marker of ``kind`` in namespace ``ns`` with the identity orientation and ``scale``."""
    m = Marker(header=header, ns=ns, type=kind, action=Marker.ADD)
    m.pose.orientation.w = 1.0
    m.scale.x, m.scale.y, m.scale.z = scale
    return m


_CHECK_FIELDS = Point()._check_fields  # as the messages' constructors set it (environment)


def _point(x: float, y: float, z: float) -> Point:
    """``Point(x=x, y=y, z=z)`` from Python floats, without the constructor's keyword checks."""
    p = Point.__new__(Point)
    p._x, p._y, p._z, p._check_fields = x, y, z, _CHECK_FIELDS
    return p


def _pose(orientation, x: float, y: float, z: float) -> Pose:
    """A new pose at ``(x, y, z)`` sharing the (template's) ``orientation`` sub-message."""
    pose = Pose.__new__(Pose)
    pose._position, pose._orientation, pose._check_fields = (
        _point(x, y, z),
        orientation,
        _CHECK_FIELDS,
    )
    return pose


def _colour(r: float, g: float, b: float, a: float) -> ColorRGBA:
    """``ColorRGBA(r=r, g=g, b=b, a=a)`` from Python floats, without the keyword checks."""
    c = ColorRGBA.__new__(ColorRGBA)
    c._r, c._g, c._b, c._a, c._check_fields = r, g, b, a, _CHECK_FIELDS
    return c


def main(args: list[str] | None = None) -> int:
    return run_node(VisualizationNode, args=args)


if __name__ == "__main__":
    sys.exit(main())
