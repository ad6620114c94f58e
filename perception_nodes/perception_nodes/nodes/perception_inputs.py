"""The perception node's camera inputs: subscriptions, conversion, and the newest frame per camera.

For each camera namespace ``<cam>`` (sensor-data QoS, depth 1, one mutually exclusive callback
group): ``<cam>/<image_topic>`` (sensor_msgs/Image) or ``<cam>/<image_topic>/compressed``; with
``use_depth`` also ``<cam>/<depth_topic>`` (16UC1 mm or 32FC1 m) and ``<cam>/<camera_info_topic>``.

Callbacks only convert and keep: an image becomes RGB8 (HxWx3 uint8) and goes into
:attr:`CameraInputs.slots` as ``(header, rgb, received)`` (``received``: ``time.monotonic()``
s); the last few depth images (HxW float32 metres) are kept by stamp and each frame gets the one
nearest its own stamp within ``depth_slop`` s, waiting up to ``depth_wait`` s for it
(:mod:`perception_nodes.core.stream.depth_sync`); CameraInfo (K 3x3, (height, width)) is kept as last
received. Both are checked against each frame by :meth:`CameraInputs.geometry_for`. Bad input is
logged and counted (``rejected`` / ``refused_3d`` in the slot stats), never raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from perception_nodes.core.output.projection import intrinsics_problem
from perception_nodes.core.pipeline import PipelineError, check_image_size
from perception_nodes.core.stream.depth_sync import StampMatcher
from perception_nodes.core.stream.frame_slots import LatestFrameSlots
from perception_nodes.core.stream.stamps import ns_to_seconds, stamp_to_ns
from perception_nodes.ros.image_conversion import (
    ImageConversionError,
    compressed_to_rgb8,
    depth_to_meters,
    image_msg_to_numpy,
    to_rgb8,
)
from perception_nodes.ros.node_runner import join_topic

#: Depth images kept per camera for stamp matching (the frame a worker takes is the newest, so
#: its depth is among the last few; 8 covers 0.27 s of a 30 Hz depth camera).
DEPTH_IMAGES_KEPT = 8


class CameraInputs:
    """Camera subscriptions of ``node`` and what their callbacks keep (see module docstring).

    Topic names and switches are read from the node's parameters when a camera is subscribed;
    ``max_image_pixels`` at each image (it may change at runtime).
    """

    def __init__(self, node: Node) -> None:
        self._node = node
        self.slots = LatestFrameSlots()
        self.callback_group = MutuallyExclusiveCallbackGroup()
        self._subs = []
        self._depth = StampMatcher(capacity=DEPTH_IMAGES_KEPT)  # cam -> stamped HxW metres
        self._info: dict[str, tuple[np.ndarray, tuple[int, int]]] = {}  # cam -> (K, (h, w))
        self._last_stamp: dict[str, int] = {}  # ns
        self._last_3d_refusal: dict[str, str] = {}  # cam -> reason last logged
        self._depth_sync: tuple[float, float] | None = None  # (slop s, wait s) with use_depth

    def _param(self, name: str):
        return self._node.get_parameter(name).value

    def new_slots(self) -> None:
        """Fresh slots (counters from zero) for a new activation."""
        self.slots = LatestFrameSlots()

    # ------------------------------------------------------------------ subscriptions
    def subscribe(self, cam: str) -> None:
        topic = join_topic(cam, self._param("image_topic"))
        if self._param("use_compressed"):
            self._subscribe(
                CompressedImage, f"{topic}/compressed", lambda m, c=cam: self.on_image(c, m, True)
            )
        else:
            self._subscribe(Image, topic, lambda m, c=cam: self.on_image(c, m, False))
        if self._param("use_depth"):  # read-only parameters: read once
            self._depth_sync = (float(self._param("depth_slop")), float(self._param("depth_wait")))
            self._subscribe(
                Image,
                join_topic(cam, self._param("depth_topic")),
                lambda m, c=cam: self.on_depth(c, m),
            )
            self._subscribe(
                CameraInfo,
                join_topic(cam, self._param("camera_info_topic")),
                lambda m, c=cam: self.on_info(c, m),
            )

    def _subscribe(self, msg_type, topic: str, callback) -> None:
        self._subs.append(
            self._node.create_subscription(
                msg_type,
                topic,
                callback,
                qos_profile_sensor_data,
                callback_group=self.callback_group,
            )
        )

    def unsubscribe_all(self) -> None:
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        self._subs = []
        self._depth_sync = None

    # ------------------------------------------------------------------ callbacks
    def on_image(self, cam: str, msg, compressed: bool) -> None:
        try:
            rgb = (
                compressed_to_rgb8(msg)
                if compressed
                else to_rgb8(image_msg_to_numpy(msg), msg.encoding)
            )
            limit = int(self._param("max_image_pixels"))
            if rgb.shape[0] * rgb.shape[1] > limit:
                raise ImageConversionError(
                    f"{rgb.shape[1]}x{rgb.shape[0]} exceeds max_image_pixels={limit}"
                )
            check_image_size(rgb.shape[:2])
        except (ImageConversionError, PipelineError) as exc:
            self.slots.count(cam, "rejected")
            self._node.get_logger().error(f"[{cam or '/'}] frame refused: {exc}")
            return
        stamp = stamp_to_ns(msg.header.stamp)
        last = self._last_stamp.get(cam)
        if last is not None and stamp < last:
            self._node.get_logger().warning(
                f"[{cam or '/'}] timestamp went backwards ({ns_to_seconds(stamp):.3f} < {ns_to_seconds(last):.3f}); "
                "processing anyway",
                throttle_duration_sec=2.0,
            )
        self._last_stamp[cam] = stamp
        self.slots.put(cam, (msg.header, rgb, time.monotonic()))

    def on_depth(self, cam: str, msg: Image) -> None:
        try:
            depth = depth_to_meters(image_msg_to_numpy(msg), msg.encoding)
        except ImageConversionError as exc:
            self._node.get_logger().error(
                f"[{cam or '/'}] depth refused: {exc}", throttle_duration_sec=2.0
            )
            return
        self._depth.put(cam, stamp_to_ns(msg.header.stamp), depth)

    def on_info(self, cam: str, msg: CameraInfo) -> None:
        """Kept as received; checked against each frame (:meth:`_intrinsics_for`)."""
        self._info[cam] = (
            np.asarray(msg.k, dtype=np.float64).reshape(3, 3),
            (int(msg.height), int(msg.width)),
        )

    # ------------------------------------------------------------------ per frame (worker)
    def geometry_for(
        self,
        cam: str,
        shape: tuple[int, int],
        stamp_ns: int,
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[np.ndarray | None, np.ndarray | None, float | None]:
        """(depth HxW metres, K 3x3, seconds waited for the depth) for a frame of ``shape``
        (height, width) stamped ``stamp_ns`` from ``cam``; depth and K None when missing or not
        fitting (no 3D then: centroids NaN, counted and logged), K only with depth. May wait up
        to ``depth_wait`` s for the frame's depth (``should_stop`` ends the wait). Without
        ``use_depth``: (None, None, None) at once."""
        if self._depth_sync is None:
            return None, None, None
        t0 = time.perf_counter()
        depth = self._depth_for(cam, shape, stamp_ns, should_stop)
        waited = time.perf_counter() - t0
        k = self._intrinsics_for(cam, shape) if depth is not None else None
        return depth, k, waited

    def _depth_for(
        self, cam: str, shape: tuple[int, int], stamp_ns: int, should_stop
    ) -> np.ndarray | None:
        slop_s, wait_s = self._depth_sync
        found = self._depth.match(cam, stamp_ns, slop_s, wait_s, should_stop)
        if found.item is None:
            self._refuse_3d(cam, found.reason, key=found.kind)
            return None
        depth = found.item
        if depth.shape != shape:
            self._refuse_3d(
                cam,
                f"depth is {depth.shape[1]}x{depth.shape[0]} but the image is {shape[1]}x{shape[0]}: "
                "depth ignored (register depth to the colour camera)",
            )
            return None
        return depth

    def _refuse_3d(self, cam: str, reason: str, key: str | None = None) -> None:
        """Count a frame processed without 3D; log a new reason (``key``: what makes reasons
        the same, default the text) at once, a repeated one throttled."""
        self.slots.count(cam, "refused_3d")
        text = f"[{cam or '/'}] no 3D for this frame: {reason}"
        key = reason if key is None else key
        if self._last_3d_refusal.get(cam) != key:
            self._last_3d_refusal[cam] = key
            self._node.get_logger().warning(text)
        else:
            self._node.get_logger().warning(text, throttle_duration_sec=5.0)

    def _intrinsics_for(self, cam: str, shape: tuple[int, int]) -> np.ndarray | None:
        """K of the camera's CameraInfo when it fits a frame of ``shape``; else None (no 3D for
        that frame: centroids NaN), counted as ``refused_3d`` and logged (throttled) with why:
        none received yet, or one that does not fit."""
        entry = self._info.get(cam)
        if entry is None:
            topic = join_topic(cam, self._param("camera_info_topic"))
            self._refuse_3d(
                cam,
                f"no CameraInfo received on {topic} yet: depth ignored until it arrives "
                "(3D needs the camera's intrinsics)",
                key="no CameraInfo",
            )
            return None
        k, info_hw = entry
        problem = intrinsics_problem(k, shape, info_hw)
        if problem is None:
            return k
        self._refuse_3d(cam, f"CameraInfo refused: {problem}")
        return None
