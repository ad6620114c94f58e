"""A separate ROS process that subscribes to camera images like the perception node does
(sensor-data QoS: best effort, keep last) and prints the size of every image it receives.

Usage: image_sink.py <topic>
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("image_sink")
    node.create_subscription(
        Image,
        sys.argv[1],
        lambda m: print(f"GOT {m.width}x{m.height} {len(m.data)}", flush=True),
        qos_profile_sensor_data,
    )
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
