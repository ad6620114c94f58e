"""image_folder_publisher: plays still images as a camera stream (sensor_msgs/Image rgb8).

Sources: image files (png/jpg, any size) or names of scikit-image's bundled photos
(``astronaut``, ``coffee``, ``chelsea``, ``rocket``, ...), real photos that load offline.
At ``rate`` Hz, ``loops`` times through the list (0 = forever), then exits, it publishes each
photo's own ``<camera>/camera_info`` (its size, a pinhole guess with a 60 degree horizontal
field of view, the image's header), with ``depth: true`` a synthetic planar depth (32FC1,
meters, so the 3D path can be exercised without a depth camera), and then the photo on
``<camera>/image_raw``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from perception_nodes.ros.image_conversion import numpy_to_image_msg
from perception_nodes.ros.node_runner import PublishGate, run_node


def load_image(source: str, max_side: int = 0) -> np.ndarray:
    """HxWx3 uint8 RGB of a file path or a scikit-image data name; longest side <= max_side if > 0."""
    import cv2

    if Path(source).is_file():
        bgr = cv2.imread(source, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read image file {source}")
        rgb = bgr[:, :, ::-1]
    else:
        import skimage.data

        loader = getattr(skimage.data, source, None)
        if loader is None:
            raise ValueError(
                f"{source!r} is neither a file nor a scikit-image data name (astronaut, coffee, chelsea, rocket, ...)"
            )
        rgb = np.asarray(loader())
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        rgb = rgb[:, :, :3]
    if max_side and max(rgb.shape[:2]) > max_side:
        s = max_side / max(rgb.shape[:2])
        rgb = cv2.resize(
            rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA
        )
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def pinhole_info(height: int, width: int, hfov_deg: float = 60.0) -> CameraInfo:
    f = width / 2 / math.tan(math.radians(hfov_deg) / 2)
    info = CameraInfo(height=height, width=width, distortion_model="plumb_bob", d=[0.0] * 5)
    info.k = [f, 0.0, width / 2, 0.0, f, height / 2, 0.0, 0.0, 1.0]
    info.p = [f, 0.0, width / 2, 0.0, 0.0, f, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    return info


class ImageFolderPublisher(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("image_folder_publisher", **kwargs)
        self.declare_parameter("images", ["astronaut", "coffee", "chelsea", "rocket"])
        self.declare_parameter("rate", 1.0)
        self.declare_parameter("loops", 1)
        self.declare_parameter("max_side", 640)
        self.declare_parameter("frame_id", "camera_optical_frame")
        self.declare_parameter("depth", False)
        self.declare_parameter("start_delay", 0.0)
        self.frames = [
            load_image(s, int(self.get_parameter("max_side").value))
            for s in self.get_parameter("images").value
        ]
        self.image_pub = self.create_publisher(Image, "image_raw", qos_profile_sensor_data)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.depth_pub = self.create_publisher(Image, "depth/image_raw", qos_profile_sensor_data)
        self.index, self.sent = 0, 0
        self.gate = PublishGate()  # closed when shutdown begins: nothing is published after
        self.total = len(self.frames) * int(self.get_parameter("loops").value)
        self.done = False
        delay = float(self.get_parameter("start_delay").value)
        self._start = self.create_timer(max(delay, 0.001), self._begin)

    def _begin(self) -> None:
        self._start.cancel()
        self.create_timer(1.0 / float(self.get_parameter("rate").value), self._tick)

    def _tick(self) -> None:
        if self.total and self.sent >= self.total:
            self.done = True
            return
        rgb = self.frames[self.index % len(self.frames)]
        self.index += 1
        msg = numpy_to_image_msg(rgb, "rgb8")
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = str(self.get_parameter("frame_id").value)
        info = pinhole_info(*rgb.shape[:2])
        info.header = msg.header
        # this photo's CameraInfo and depth first, its image last: a node that takes the image
        # at once (the perception worker) or draws it later (the visualization node) finds the
        # photo's own CameraInfo as the last received, not the previous photo's (other size)
        if not self.gate.publish(self.info_pub, info):
            return
        if self.get_parameter("depth").value:
            rows = np.linspace(1.0, 4.0, rgb.shape[0], dtype=np.float32)[:, None]
            self.gate.publish(
                self.depth_pub,
                numpy_to_image_msg(np.repeat(rows, rgb.shape[1], axis=1), "32FC1", msg.header),
            )
        if not self.gate.publish(self.image_pub, msg):
            return
        self.sent += 1
        self.get_logger().info(
            f"published frame {self.sent}/{self.total or 'inf'} ({rgb.shape[1]}x{rgb.shape[0]})"
        )


def _spin_until_done(node: ImageFolderPublisher, shutdown) -> None:
    """Until every frame was sent (``loops``) or SIGINT/SIGTERM (``shutdown`` set)."""
    while rclpy.ok() and not node.done and not shutdown.is_set():
        rclpy.spin_once(node, timeout_sec=0.1)


def main(args: list[str] | None = None) -> int:
    return run_node(ImageFolderPublisher, _spin_until_done, args)


if __name__ == "__main__":
    sys.exit(main())
