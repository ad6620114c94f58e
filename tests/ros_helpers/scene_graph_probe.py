"""A separate ROS process that publishes a camera image until the perception node's SceneGraph
for it arrives, then prints ``SCENE_GRAPH <regions> <perception_msgs module file>``.

Usage: scene_graph_probe.py <camera namespace> <timeout s>
Run it in the environment under test (e.g. after ``source install/setup.bash``): it imports
perception_msgs from there.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import perception_msgs
import rclpy
from perception_msgs.msg import SceneGraph
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image


def main(camera: str, timeout: float) -> int:
    rclpy.init()
    node = rclpy.create_node("scene_graph_probe")
    got: list[SceneGraph] = []
    node.create_subscription(SceneGraph, f"{camera}/perception/scene_graph", got.append, 10)
    pub = node.create_publisher(Image, f"{camera}/image_raw", qos_profile_sensor_data)
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    msg = Image(height=64, width=64, encoding="rgb8", step=64 * 3, data=rgb.tobytes())
    msg.header.frame_id = "camera_optical_frame"
    deadline, next_pub = time.monotonic() + timeout, 0.0
    while not got and time.monotonic() < deadline:
        if time.monotonic() >= next_pub and pub.get_subscription_count() > 0:
            msg.header.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)  # best effort: resend until a scene graph comes back
            next_pub = time.monotonic() + 5.0
        rclpy.spin_once(node, timeout_sec=0.1)
    if got:
        print(f"SCENE_GRAPH {len(got[0].regions)} {perception_msgs.__file__}", flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0 if got else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2])))
