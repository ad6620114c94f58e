"""CompressedImage input (use_compressed): JPEG/PNG frames in, scene graphs out; a corrupt
frame is refused with a log and the node keeps going (real DDS, separate processes)."""

from __future__ import annotations

import cv2
import pytest
from e2e_fixtures import CAMERA, Spinner, photo, start_graph, wait_for

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    # 2x2 SAM prompts (small_overrides: 4x4): frames need some regions, not many
    g = start_graph(
        tmp_path_factory.mktemp("compressed"), use_compressed=True, **{"amg.points_per_side": 2}
    )
    yield g
    g.stop()


def _compressed(rgb, fmt: str, stamp_sec: int):
    from sensor_msgs.msg import CompressedImage

    ok, buf = cv2.imencode(f".{fmt}", rgb[:, :, ::-1])
    assert ok
    msg = CompressedImage(format=f"rgb8; {fmt} compressed bgr8", data=buf.tobytes())
    msg.header.stamp.sec, msg.header.frame_id = stamp_sec, "camera_optical_frame"
    return msg


def test_jpeg_and_png_frames_give_scene_graphs_and_corrupt_ones_are_refused(graph, ros_context):
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage

    from perception_nodes.tools.receiver import GraphReceiver

    cam = Node("test_compressed_camera", namespace=CAMERA, context=ros_context)
    pub = cam.create_publisher(CompressedImage, "image_raw/compressed", qos_profile_sensor_data)
    receiver = GraphReceiver(camera=CAMERA, context=ros_context)
    spinner = Spinner(ros_context, cam, receiver)
    try:
        assert wait_for(lambda: pub.get_subscription_count() >= 1, 120, graph)
        assert wait_for(lambda: receiver.diagnostics_values().get("state") == "active", 240, graph)
        rejected = lambda: int(receiver.diagnostics_values().get(f"{CAMERA}.rejected", "0"))  # noqa: E731
        corrupt = CompressedImage(format="jpeg", data=b"\xff\xd8 definitely not a jpeg")
        for _ in range(10):  # best effort: resend until counted
            pub.publish(corrupt)
            if wait_for(lambda: rejected() >= 1, 3.0, graph):
                break
        assert rejected() >= 1
        log = next(p for p in graph.processes if p.name == "perception_node").log_tail(200_000)
        assert "could not decode compressed image" in log
        for stamp, (name, fmt) in enumerate([("astronaut", "jpg"), ("rocket", "png")], start=100):
            rgb = photo(name, side=96)

            def arrived(stamp=stamp):
                with receiver.lock:
                    return next(
                        (m for _, m in receiver.data.graphs if m.header.stamp.sec == stamp), None
                    )

            for _ in range(10):
                pub.publish(_compressed(rgb, fmt, stamp))
                if wait_for(lambda: arrived() is not None, 60.0, graph):
                    break
            sg = arrived()
            assert sg is not None, f"no scene graph for the {fmt} frame"
            assert (sg.image_height, sg.image_width) == rgb.shape[:2] and len(sg.regions) >= 1
    finally:
        spinner.stop()
