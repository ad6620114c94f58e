"""Camera-sized images reach another process over best-effort (sensor-data) QoS.

With Fast DDS's default 512 KiB shared-memory segment, every best-effort sample above it is
dropped (a 640x480 rgb8 image never arrives); scripts/env.sh points Fast DDS at
config/fastdds_large_images.xml, which this test exercises end to end.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from ros_helpers.process import ros_process

pytestmark = pytest.mark.ros
SIZES = [(480, 640), (720, 1280), (1080, 1920)]


def test_env_points_fast_dds_at_the_large_image_profile():
    path = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE", "")
    assert path.endswith("fastdds_large_images.xml") and os.path.isfile(path), path


def test_best_effort_images_up_to_1080p_cross_processes(ros_context):
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from perception_nodes.ros.image_conversion import numpy_to_image_msg

    node = Node("large_image_source", context=ros_context)
    pub = node.create_publisher(Image, "/large/image_raw", qos_profile_sensor_data)
    with ros_process("image_sink.py", "/large/image_raw") as sink:
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.extend(iter(sink.stdout.readline, "")), daemon=True
        )
        reader.start()
        deadline = time.monotonic() + 30
        while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        for h, w in SIZES:
            for _ in range(3):
                pub.publish(numpy_to_image_msg(np.full((h, w, 3), 7, np.uint8), "rgb8"))
                time.sleep(0.3)
        time.sleep(2.0)
    got = {line.split()[1] for line in lines if line.startswith("GOT")}
    assert {f"{w}x{h}" for h, w in SIZES} <= got, lines
