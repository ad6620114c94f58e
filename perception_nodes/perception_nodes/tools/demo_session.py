"""pn-demo's ROS side: this process is the camera (``/camera/image_raw`` + ``camera_info``,
sensor-data QoS) and the receiver of the nodes' ``SceneGraph`` and overlay messages.

Images are ``HxWx3`` uint8 RGB; headers are stamped with the camera node's clock and frames are
matched to their results by that stamp. Also used by ``pn-bench-e2e``.
"""

from __future__ import annotations

import time

import numpy as np

from perception_nodes.tools.graph_runner import NodeGraph

CAMERA = "/camera"


class DemoSession:
    """Camera publisher + :class:`GraphReceiver` in this process, spun in a background thread."""

    def __init__(self) -> None:
        import threading

        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image

        from perception_nodes.tools.receiver import GraphReceiver

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.camera = Node("demo_camera", namespace=CAMERA, context=self.context)
        self.image_pub = self.camera.create_publisher(Image, "image_raw", qos_profile_sensor_data)
        self.info_pub = self.camera.create_publisher(
            CameraInfo, "camera_info", qos_profile_sensor_data
        )
        self.receiver = GraphReceiver(camera=CAMERA, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.camera)
        self.executor.add_node(self.receiver)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self._rejected_before = 0

    def wait_until_ready(self, graph: NodeGraph, timeout: float, subscribers: int = 2) -> None:
        """Until the perception node reports ``configured`` and ``subscribers`` nodes take the images."""
        deadline = time.monotonic() + timeout
        last_note = 0.0
        while time.monotonic() < deadline:
            graph.check_alive()
            values = self.receiver.diagnostics_values()
            if (
                values.get("state") == "active"
                and self.image_pub.get_subscription_count() >= subscribers
            ):
                return
            if time.monotonic() - last_note > 15:
                print(
                    f"pn-demo: waiting for the perception node to load its models "
                    f"(logs: {graph.log_dir}) ...",
                    flush=True,
                )
                last_note = time.monotonic()
            time.sleep(0.2)
        raise TimeoutError(
            f"the perception node did not become ready within {timeout:.0f} s "
            f"(see {graph.log_dir}/perception_node.log)"
        )

    def publish(self, rgb: np.ndarray):
        """Publish ``rgb`` (+ CameraInfo) once, stamped now; returns the header."""
        from std_msgs.msg import Header

        header = Header(
            frame_id="camera_optical_frame", stamp=self.camera.get_clock().now().to_msg()
        )
        self.republish(rgb, header)
        return header

    def counter(self, what: str) -> int:
        """The node's per-camera frame counter ``what`` (received/dropped/rejected/processed)."""
        return int(self.receiver.diagnostics_values().get(f"{CAMERA}.{what}", "0"))

    def received_count(self) -> int:
        return self.counter("received")

    def publish_until_received(
        self, rgb: np.ndarray, graph: NodeGraph, tries: int = 10, wait_s: float = 3.0
    ):
        """Publish ``rgb`` and make sure the node got it, resending (same stamp) if not.

        The camera topic is best effort (sensor-data QoS, as real cameras publish): a large
        frame can be lost in transport, so a demo or benchmark that waits for one frame's
        result checks the node's ``received`` counter instead of waiting forever.
        """
        before = self.received_count()
        self._rejected_before = self.counter("rejected")
        header = self.publish(rgb)
        for _ in range(tries):
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if self.received_count() > before:
                    return header
                graph.check_alive()
                time.sleep(0.05)
            self.republish(rgb, header)
        raise TimeoutError(f"the perception node did not receive the frame after {tries} sends")

    def republish(self, rgb: np.ndarray, header) -> None:
        from perception_nodes.nodes.image_folder_publisher import pinhole_info
        from perception_nodes.ros.image_conversion import numpy_to_image_msg

        msg = numpy_to_image_msg(rgb, "rgb8", header)
        info = pinhole_info(*rgb.shape[:2])
        info.header = header
        self.info_pub.publish(info)
        self.image_pub.publish(msg)

    def wait_for(self, kind: str, stamp, graph: NodeGraph, timeout: float):
        """The message of ``kind`` (``graphs``/``overlays``) with header ``stamp``, and its arrival time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.receiver.lock:
                hit = next(
                    (
                        (t, m)
                        for t, m in getattr(self.receiver.data, kind)
                        if m.header.stamp == stamp
                    ),
                    None,
                )
            if hit is not None:
                return hit
            if kind == "graphs" and self.counter("rejected") > self._rejected_before:
                raise RuntimeError(
                    f"the perception node refused the frame; its log says why: "
                    f"{graph.log_dir}/perception_node.log"
                )
            graph.check_alive()
            time.sleep(0.05)
        raise TimeoutError(f"no {kind[:-1]} for the frame within {timeout:.0f} s")

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=10)
        self.camera.destroy_node()
        self.receiver.destroy_node()
        self.context.try_shutdown()
