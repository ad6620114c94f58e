"""Two cameras on the default SAM backend with a full-size architecture (issue 21, item 0): the
perception node in its own process over real DDS, ``sam.backend: auto`` (onnxruntime on a
CPU, exported on first use) and MobileSAM's vit_t (generated weights). Frames that arrive
together go through the ONNX encoder as one batch of 2 (which failed before and killed the
worker: no camera got another SceneGraph), and both cameras get their graphs, repeatedly."""

from __future__ import annotations

import pytest
from e2e_fixtures import Spinner, photo, start_graph, wait_for

from perception_nodes.core.config import DEFAULT_SAM_BACKEND
from perception_nodes.tools.graph_runner import NodeGraph

pytestmark = pytest.mark.ros
CAMERAS = ["/front", "/rear"]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    g = start_graph(
        tmp_path_factory.mktemp("multicam_default"),
        cameras=CAMERAS,
        use_depth=False,
        **{"sam.backend": DEFAULT_SAM_BACKEND, "sam.model": "vit_t"},
    )
    yield g
    g.stop()


def _publish_rounds(pubs, frames, stamps) -> None:
    from perception_nodes.ros.image_conversion import numpy_to_image_msg

    for stamp in stamps:
        for cam, rgb in frames.items():
            msg = numpy_to_image_msg(rgb, "rgb8")
            msg.header.stamp.sec = stamp
            msg.header.frame_id = cam.strip("/")
            pubs[cam].publish(msg)


def _wait_for_round(receivers, stamp, graph, first, resend=None) -> None:
    """Both cameras' graphs of the round stamped ``stamp``; ``resend()`` publishes the round
    again when one is missing after 60 s (best-effort camera topics may lose a frame)."""
    for cam, rec in receivers.items():

        def arrived(rec=rec):
            with rec.lock:
                return any(m.header.stamp.sec == stamp for _, m in rec.data.graphs)

        for _ in range(5):
            if wait_for(arrived, 60, graph):
                break
            if resend is not None:
                resend()
        assert arrived(), f"{cam}: no scene graph stamped {stamp}: {first.diagnostics_values()}"


def test_two_cameras_on_the_default_backend_with_vit_t(graph: NodeGraph, ros_context):
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from perception_nodes.tools.receiver import GraphReceiver

    cam_node = Node("test_cameras", context=ros_context)
    pubs = {
        c: cam_node.create_publisher(Image, f"{c}/image_raw", qos_profile_sensor_data)
        for c in CAMERAS
    }
    receivers = {c: GraphReceiver(camera=c, context=ros_context) for c in CAMERAS}
    spinner = Spinner(ros_context, cam_node, *receivers.values())
    first = receivers[CAMERAS[0]]
    try:
        assert wait_for(
            lambda: all(p.get_subscription_count() >= 1 for p in pubs.values()), 120, graph
        )
        assert wait_for(lambda: first.diagnostics_values().get("state") == "active", 600, graph)
        assert first.diagnostics_values()["backend"] == "onnxruntime/cpu/fp32"
        assert first.diagnostics_values()["model"] == "vit_t"
        frames = {CAMERAS[0]: photo("astronaut", 128), CAMERAS[1]: photo("coffee", 128)}
        # a burst of three rounds (the later ones wait together while the node is busy: one
        # encoder batch of 2), then one more round: output goes on after batches
        _publish_rounds(pubs, frames, [2000, 2001, 2002])
        again = lambda stamp: lambda: _publish_rounds(pubs, frames, [stamp])  # noqa: E731
        _wait_for_round(receivers, 2002, graph, first, again(2002))
        _publish_rounds(pubs, frames, [2003])
        _wait_for_round(receivers, 2003, graph, first, again(2003))
        values = first.diagnostics_values()
        assert wait_for(
            lambda: int(first.diagnostics_values().get("encoder_batch_max", "0")) == 2, 60, graph
        ), values
        assert first.diagnostics_values()["failed"] == "0"
        log = graph.processes[0].log_tail(2_000_000)
        assert "batched encoding" not in log and "cannot run a batch" not in log
    finally:
        spinner.stop()
        for rec in receivers.values():
            rec.destroy_node()
        cam_node.destroy_node()
