"""One processed frame's output messages, built by the nodes' own code and serialized by rclpy.

The topics the node graph would publish for camera ``<cam>`` (``out = <cam>/<output_namespace>``,
``/<output_namespace>`` without a camera namespace): ``<out>/scene_graph`` (SceneGraph),
``<out>/regions`` (RegionArray), ``<out>/label_image`` (Image 16UC1) from the perception node;
``<out>/overlay/compressed`` (CompressedImage JPEG; the visualization node publishes it raw as
``<out>/overlay``) and ``<out>/markers`` (MarkerArray) as the visualization node draws them.
Every message carries the input frame's stamp and frame_id. Bytes are CDR from
``rclpy.serialization``: exactly what ``ros2 bag record`` stores for the live node.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from perception_msgs.msg import RegionArray
from perception_msgs.msg import SceneGraph as SceneGraphMsg
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from perception_nodes.core.output.draw import draw_overlay
from perception_nodes.core.output.projection import label_image
from perception_nodes.core.output.scene_graph import SceneGraph
from perception_nodes.core.stream.stamps import set_stamp
from perception_nodes.core.types import FrameResult
from perception_nodes.nodes.visualization_node import NOT_MEANINGFUL_BANNER, VisualizationNode
from perception_nodes.ros.graph_conversion import (
    region_array_to_msg,
    regions_to_msgs,
    scene_graph_to_msg,
)
from perception_nodes.ros.image_conversion import numpy_to_image_msg

#: output name -> (message type name in the bag, rclpy class)
OUTPUT_TYPES: dict[str, tuple[str, type]] = {
    "scene_graph": ("perception_msgs/msg/SceneGraph", SceneGraphMsg),
    "regions": ("perception_msgs/msg/RegionArray", RegionArray),
    "label_image": ("sensor_msgs/msg/Image", Image),
    "overlay/compressed": ("sensor_msgs/msg/CompressedImage", CompressedImage),
    "markers": ("visualization_msgs/msg/MarkerArray", MarkerArray),
}
OVERLAY_JPEG_QUALITY = 90
MAX_RELATIONS_DRAWN = 20  # the visualization node's default max_relations_drawn


@dataclass(frozen=True)
class OutputSwitches:
    """Which outputs to write (the node's ``publish_*`` parameters; overlay/markers: the tool's)."""

    regions: bool = True
    scene_graph: bool = True
    label_image: bool = True
    embeddings: bool = False
    overlay: bool = True
    markers: bool = True

    def names(self) -> list[str]:
        on = {
            "scene_graph": self.scene_graph,
            "regions": self.regions,
            "label_image": self.label_image,
            "overlay/compressed": self.overlay,
            "markers": self.markers,
        }
        return [name for name, wanted in on.items() if wanted]


def output_topic(camera: str, output_namespace: str, name: str) -> str:
    """``/front`` + ``perception`` + ``regions`` -> ``/front/perception/regions``."""
    parts = [p.strip("/") for p in (camera, output_namespace, name) if p.strip("/")]
    return "/" + "/".join(parts)


def _header(stamp_ns: int, frame_id: str) -> Header:
    header = Header(frame_id=frame_id)
    set_stamp(header.stamp, stamp_ns)
    return header


def _markers(graph: SceneGraph, header: Header, k: np.ndarray | None) -> MarkerArray:
    # VisualizationNode.markers only uses its static helpers (_positions, _label_text): called
    # on the class itself so the markers are exactly the visualization node's, without a node.
    return VisualizationNode.markers(VisualizationNode, graph, header, k)


def _overlay(rgb: np.ndarray, graph: SceneGraph, header) -> CompressedImage:
    # filled from the graph's RLE counts (the regions' masks, encoded once by the scene graph):
    # the same pixels as drawing the segmentation's masks, without encoding them again
    drawn = draw_overlay(
        rgb,
        graph,
        max_relations=MAX_RELATIONS_DRAWN,
        banner=None if graph.labels_meaningful else NOT_MEANINGFUL_BANNER,
    )
    ok, jpeg = cv2.imencode(
        ".jpg", drawn[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, OVERLAY_JPEG_QUALITY]
    )
    if not ok:
        raise RuntimeError("OpenCV could not encode the overlay as JPEG")
    return CompressedImage(header=header, format="rgb8; jpeg compressed bgr8", data=jpeg.tobytes())


def load_type_support() -> None:
    """Load the output messages' rclpy type support now (about a second of CPU the first time,
    measured on the 2-core VM: rosidl's generator modules and the C type support), before the
    frames rather than in the first one's time, beside the busy worker processes."""
    for _, cls in OUTPUT_TYPES.values():
        serialize_message(cls())


def frame_messages(
    rgb: np.ndarray,
    result: FrameResult,
    graph: SceneGraph,
    stamp_ns: int,
    frame_id: str,
    k: np.ndarray | None,
    switches: OutputSwitches,
) -> dict[str, bytes]:
    """``{output name: CDR bytes}`` of one frame (names of :data:`OUTPUT_TYPES` switched on)."""
    header = _header(stamp_ns, frame_id)
    regions = regions_to_msgs(result, graph, switches.embeddings)
    vocabulary = list(result.labels.labels) if result.labels is not None else []
    out: dict[str, object] = {}
    if switches.scene_graph:
        out["scene_graph"] = scene_graph_to_msg(result, graph, header, regions=regions)
    if switches.regions:
        out["regions"] = region_array_to_msg(graph, regions, header, vocabulary)
    if switches.label_image:
        ids = label_image(
            result.segmentation.masks, result.region_ids, result.segmentation.boxes_xyxy
        )
        out["label_image"] = numpy_to_image_msg(ids, "16UC1", header)
    if switches.overlay:
        out["overlay/compressed"] = _overlay(rgb, graph, header)
    if switches.markers:
        out["markers"] = _markers(graph, header, k)
    return {name: serialize_message(msg) for name, msg in out.items()}
