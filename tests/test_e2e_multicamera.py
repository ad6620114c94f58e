"""Two cameras, one perception node (one model): both get their scene graphs, and frames that
arrive together go through the SAM encoder as one batch (real DDS, separate processes)."""

from __future__ import annotations

import time

import pytest
from e2e_fixtures import Spinner, photo, start_graph, wait_for

from perception_nodes.tools.graph_runner import NodeGraph

pytestmark = pytest.mark.ros
CAMERAS = ["/cam_left", "/cam_right"]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    g = start_graph(tmp_path_factory.mktemp("multicam"), cameras=CAMERAS)
    yield g
    g.stop()


def test_two_cameras_share_one_model_and_one_encoder_batch(graph: NodeGraph, ros_context):
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from perception_nodes.ros.image_conversion import numpy_to_image_msg
    from perception_nodes.tools.receiver import GraphReceiver

    cam_node = Node("test_cameras", context=ros_context)
    pubs = {
        c: cam_node.create_publisher(Image, f"{c}/image_raw", qos_profile_sensor_data)
        for c in CAMERAS
    }
    receivers = {c: GraphReceiver(camera=c, context=ros_context) for c in CAMERAS}
    spinner = Spinner(ros_context, cam_node, *receivers.values())
    try:
        assert wait_for(
            lambda: all(p.get_subscription_count() >= 1 for p in pubs.values()), 120, graph
        )
        first = receivers[CAMERAS[0]]
        assert wait_for(lambda: first.diagnostics_values().get("state") == "active", 240, graph)
        frames = {CAMERAS[0]: photo("astronaut", 96), CAMERAS[1]: photo("rocket", 96)}
        for round_ in range(
            3
        ):  # later rounds arrive while the node is busy: both cameras wait together
            for cam, rgb in frames.items():
                msg = numpy_to_image_msg(rgb, "rgb8")
                msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + round_, 0
                msg.header.frame_id = cam.strip("/")
                pubs[cam].publish(msg)
            time.sleep(0.05)
        # newest-frame slots: older rounds may be dropped, the last round reaches both cameras
        for cam, rec in receivers.items():

            def last_round_arrived(rec=rec):
                with rec.lock:
                    return any(m.header.stamp.sec == 1002 for _, m in rec.data.graphs)

            assert wait_for(last_round_arrived, 300, graph), (
                f"{cam}: no scene graph for the last frame"
            )
            with rec.lock:
                got = [m for _, m in rec.data.graphs]
            assert all(m.header.frame_id == cam.strip("/") for m in got)  # no cross-talk
            assert all((m.image_height, m.image_width) == frames[cam].shape[:2] for m in got)
        assert wait_for(
            lambda: int(first.diagnostics_values().get("encoder_batch_max", "0")) == 2, 60, graph
        ), first.diagnostics_values()
    finally:
        spinner.stop()
