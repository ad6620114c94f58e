"""The visualization node uses each frame's own CameraInfo, over real DDS (the node in its own
process): a scene graph arrives seconds after its image on a CPU, when a camera that changes
size (the demo's photos) has already sent the next frame's CameraInfo. The node took the last
CameraInfo received and warned "CameraInfo is for 600x400 but the image is 451x300" on almost
every demo frame (issue 21, item 5); it now pairs them by stamp, as it pairs images."""

from __future__ import annotations

import time

import pytest
from e2e_fixtures import CAMERA, Spinner, photo, wait_for

from perception_nodes.tools.graph_runner import NodeGraph

pytestmark = pytest.mark.ros
WARNING = "CameraInfo not used for markers"


def _info(height: int, width: int, sec: int):
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(height=height, width=width)
    info.k = [100.0, 0.0, width / 2, 0.0, 100.0, height / 2, 0.0, 0.0, 1.0]
    info.header.stamp.sec = sec
    return info


def test_markers_use_the_camera_info_of_the_graphs_own_frame(tmp_path, ros_context):
    from perception_msgs.msg import SceneGraph
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from perception_nodes.ros.image_conversion import numpy_to_image_msg
    from perception_nodes.tools.receiver import GraphReceiver

    viz = NodeGraph(log_dir=tmp_path)
    try:
        viz.start("visualization_node", extra_params={"cameras": [CAMERA]})
        node = Node("test_info_source", context=ros_context)
        image_pub = node.create_publisher(Image, f"{CAMERA}/image_raw", qos_profile_sensor_data)
        info_pub = node.create_publisher(
            CameraInfo, f"{CAMERA}/camera_info", qos_profile_sensor_data
        )
        graph_pub = node.create_publisher(SceneGraph, f"{CAMERA}/perception/scene_graph", 10)
        receiver = GraphReceiver(camera=CAMERA, context=ros_context)
        spinner = Spinner(ros_context, node, receiver)
        try:
            assert wait_for(
                lambda: (
                    min(p.get_subscription_count() for p in (image_pub, info_pub, graph_pub)) >= 1
                ),
                120,
                viz,
            ), "visualization_node never subscribed"
            rgb = photo("coffee", side=96)
            h, w = rgb.shape[:2]
            for i in range(3):
                sec = 300 + i
                image = numpy_to_image_msg(rgb, "rgb8")
                image.header.stamp.sec = sec
                graph = SceneGraph(header=image.header, image_height=h, image_width=w)
                for _ in range(20):  # best-effort topics: resend until this frame's markers come
                    for _ in range(3):  # its own CameraInfo, lost only if all three are
                        info_pub.publish(_info(h, w, sec))
                    image_pub.publish(image)
                    # the next photo (another size) is already announced when the graph comes
                    info_pub.publish(_info(2 * h, 2 * w, sec + 100))
                    time.sleep(0.2)
                    graph_pub.publish(graph)
                    if wait_for(lambda: receiver.count("markers") > i, 3.0, viz):
                        break
                assert receiver.count("markers") > i, viz.processes[0].log_tail()
            viz.check_alive()
            log = viz.processes[0].log_tail(1 << 40)
            assert WARNING not in log, log  # failed before: the last CameraInfo was 192x192
        finally:
            spinner.stop()
    finally:
        viz.stop()
