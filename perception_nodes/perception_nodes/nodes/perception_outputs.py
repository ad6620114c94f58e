"""The perception node's outputs per camera: lifecycle publishers and one frame's messages.

For each camera ``<cam>`` and ``out = <cam>/<output_namespace>`` (``~`` without either):
``<out>/regions`` (RegionArray), ``<out>/scene_graph`` (SceneGraph) and ``<out>/label_image``
(sensor_msgs/Image 16UC1, region id per pixel, 0 = background). Every message carries the input
image's header. Lifecycle publishers: created on configure, publishing only while active.
"""

from __future__ import annotations

from dataclasses import dataclass

from perception_msgs.msg import RegionArray
from perception_msgs.msg import SceneGraph as SceneGraphMsg
from rclpy.lifecycle import LifecycleNode
from sensor_msgs.msg import Image

from perception_nodes.core.output.projection import label_image
from perception_nodes.core.output.scene_graph import SceneGraph
from perception_nodes.core.types import FrameResult
from perception_nodes.ros.graph_conversion import (
    region_array_to_msg,
    regions_to_msgs,
    scene_graph_to_msg,
)
from perception_nodes.ros.image_conversion import numpy_to_image_msg
from perception_nodes.ros.node_runner import PublishGate, output_base

CameraPublishers = dict[str, dict[str, object]]  # cam -> output name -> lifecycle publisher


@dataclass(frozen=True)
class OutputSwitches:
    """Which outputs to publish (the ``publish_*`` parameters, read for each frame)."""

    regions: bool
    scene_graph: bool
    label_image: bool
    embeddings: bool  # fill Region.embedding with the 256-d SAM token


def create_publishers(
    node: LifecycleNode, cameras: list[str], output_namespace: str
) -> CameraPublishers:
    """Lifecycle publishers (depth 10) for every camera's three outputs."""
    pubs = {}
    for cam in cameras:
        base = output_base(cam, output_namespace)
        pubs[cam] = {
            "regions": node.create_lifecycle_publisher(RegionArray, f"{base}/regions", 10),
            "scene_graph": node.create_lifecycle_publisher(
                SceneGraphMsg, f"{base}/scene_graph", 10
            ),
            "label_image": node.create_lifecycle_publisher(Image, f"{base}/label_image", 10),
        }
    return pubs


def destroy_publishers(node: LifecycleNode, pubs: CameraPublishers) -> None:
    for cam_pubs in pubs.values():
        for pub in cam_pubs.values():
            node.destroy_lifecycle_publisher(pub)


def publish_frame(
    gate: PublishGate,
    pubs: dict[str, object],
    header,
    result: FrameResult,
    graph: SceneGraph,
    switches: OutputSwitches,
) -> None:
    """Convert one frame's ``result`` and scene ``graph`` and publish the switched-on outputs
    on one camera's ``pubs`` through ``gate`` (nothing once shutdown began)."""
    regions = regions_to_msgs(result, graph, switches.embeddings)
    vocabulary = list(result.labels.labels) if result.labels is not None else []
    if switches.regions:
        gate.publish(pubs["regions"], region_array_to_msg(graph, regions, header, vocabulary))
    if switches.scene_graph:
        gate.publish(
            pubs["scene_graph"], scene_graph_to_msg(result, graph, header, regions=regions)
        )
    if switches.label_image:
        gate.publish(
            pubs["label_image"],
            numpy_to_image_msg(
                label_image(
                    result.segmentation.masks, result.region_ids, result.segmentation.boxes_xyxy
                ),
                "16UC1",
                header,
            ),
        )
