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
from geometry_msgs.msg import Point
from perception_msgs.msg import SceneGraph
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import Marker, MarkerArray

from perception_nodes.core.output.draw import colour_keys, draw_overlay, region_colours
from perception_nodes.core.output.projection import intrinsics_problem
from perception_nodes.core.stream.stamps import stamp_to_ns
from perception_nodes.ros.graph_conversion import msg_to_scene_graph
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

    @staticmethod
    def _label_text(graph, i: int) -> str:
        """``#<track id> label score`` when the region is tracked, else ``label score``."""
        tid = int(graph.track_ids[i])
        return f"{'#%d ' % tid if tid else ''}{graph.labels[i]} {graph.label_scores[i]:.2f}"

    def markers(self, graph, header, k: np.ndarray | None) -> MarkerArray:
        pos = self._positions(graph, k)
        colours = region_colours(colour_keys(graph)) / 255.0
        out = MarkerArray(markers=[Marker(header=header, action=Marker.DELETEALL)])
        for i in range(graph.num_regions):
            if not np.all(np.isfinite(pos[i])):
                continue
            m = Marker(
                header=header,
                ns="labels",
                id=int(graph.region_ids[i]),
                type=Marker.TEXT_VIEW_FACING,
                action=Marker.ADD,
                text=self._label_text(graph, i),
            )
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
            arrow = Marker(
                header=header, ns="relations", id=j, type=Marker.ARROW, action=Marker.ADD
            )
            arrow.points = [
                Point(x=pos[s, 0], y=pos[s, 1], z=pos[s, 2]),
                Point(x=pos[o, 0], y=pos[o, 1], z=pos[o, 2]),
            ]
            arrow.pose.orientation.w = 1.0
            arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.01, 0.02, 0.03
            arrow.color.r, arrow.color.g, arrow.color.b, arrow.color.a = (
                1.0,
                1.0,
                1.0,
                max(0.2, float(sc)),
            )
            text = Marker(
                header=header,
                ns="relation_labels",
                id=j,
                type=Marker.TEXT_VIEW_FACING,
                action=Marker.ADD,
                text=f"{graph.predicates[p]} {sc:.2f}",
            )
            mid = (pos[s] + pos[o]) / 2
            text.pose.position = Point(x=mid[0], y=mid[1], z=mid[2])
            text.pose.orientation.w = 1.0
            text.scale.z = 0.035
            text.color.r, text.color.g, text.color.b, text.color.a = 1.0, 1.0, 0.0, 1.0
            out.markers += [arrow, text]
        return out


def main(args: list[str] | None = None) -> int:
    return run_node(VisualizationNode, args=args)


if __name__ == "__main__":
    sys.exit(main())
