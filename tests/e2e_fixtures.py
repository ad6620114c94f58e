"""A running perception graph (separate processes) with small models, for end-to-end tests."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from ros_helpers.process import answer_with_resend

from perception_nodes.launch_overrides import launch_overrides
from perception_nodes.tools.graph_runner import NodeGraph, write_params_file

CAMERA = "/camera"


def small_overrides(cache_dir: Path, **extra) -> dict:
    """Launch-file overrides plus small test models (same code, few layers), on the torch
    backend (``backend: auto``, the default, would export ONNX into each test's cache first;
    tests/test_onnx_default.py covers that path)."""
    ov = launch_overrides([CAMERA], backend="torch", model="sam_tiny_test", use_depth=True)
    ov["perception_node"].update(
        {
            "clip.model": "pn-clip-tiny-test",
            "amg.points_per_side": 4,
            "amg.pred_iou_thresh": 0.0,
            "amg.stability_score_thresh": 0.0,
            "amg.max_regions": 16,
            "relations.score_threshold": 0.0,
            "weights.cache_dir": str(cache_dir),
            "vocabulary.labels": ["person", "cup", "rocket", "cat"],
            "diagnostics_period": 0.5,
        }
    )
    ov["perception_node"].update(extra)
    return ov


def start_graph(tmp_dir: Path, **extra) -> NodeGraph:
    params = write_params_file(small_overrides(tmp_dir / "cache", **extra), folder=tmp_dir)
    graph = NodeGraph(log_dir=tmp_dir)
    graph.start("perception_node", params)
    graph.start("visualization_node", params)
    return graph


class Spinner:
    """Spins a node in a background thread (the test thread publishes and waits)."""

    def __init__(self, context, *nodes):
        from rclpy.executors import MultiThreadedExecutor

        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        for n in nodes:
            self.executor.add_node(n)
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        # our own loop: executor.shutdown() during executor.spin() races with its submit of the
        # next callback ("cannot schedule new futures after shutdown" in the spin thread)
        while not self._stopping.is_set() and self.executor.context.ok():
            self.executor.spin_once(timeout_sec=0.1)

    def stop(self):
        self._stopping.set()
        self.thread.join(timeout=10)
        self.executor.shutdown()


def wait_for(condition, timeout: float, graph: NodeGraph | None = None, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if graph is not None:
            graph.check_alive()
        time.sleep(step)
    return condition()


def call(client, request, timeout: float = 60.0):
    """Call a service from the test thread (the Spinner spins the node)."""
    assert client.wait_for_service(timeout_sec=timeout), f"service {client.srv_name} not available"
    future = client.call_async(request)
    assert wait_for(future.done, timeout), f"{client.srv_name} did not answer within {timeout} s"
    return future.result()


def first_answer(client, request, timeout: float = 30.0):
    """A freshly created client's first answer (the Spinner spins it), the request resent while
    unanswered (:func:`ros_helpers.process.answer_with_resend`; only safe-to-repeat requests)."""
    assert client.wait_for_service(timeout_sec=60), f"service {client.srv_name} not available"
    return answer_with_resend(client, request, wait_for, timeout)


def process_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


FRAME_TIMEOUT = 240.0  # s: first frames on 2 busy cores include model warm-up


@contextlib.contextmanager
def camera_io(context, graph, subscribers: int = 2, depth: bool = True):
    """Camera publishers (image, depth, CameraInfo) and a GraphReceiver in this process, spun in
    the background, once ``subscribers`` nodes subscribed and the perception node is configured.
    With ``depth`` (the perception node's ``use_depth``) its depth and CameraInfo subscriptions
    are waited for too: the camera topics are best effort, and a first CameraInfo sent before
    they matched was lost (a frame without 3D: NaN centroids, seen once in a clean-clone run).
    Yields ``(pubs, receiver)``."""
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from perception_nodes.tools.receiver import GraphReceiver

    pub_node = Node("test_camera", namespace=CAMERA, context=context)
    pubs = {
        "image": pub_node.create_publisher(Image, "image_raw", qos_profile_sensor_data),
        "depth": pub_node.create_publisher(Image, "depth/image_raw", qos_profile_sensor_data),
        "info": pub_node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data),
    }
    receiver = GraphReceiver(camera=CAMERA, context=context)
    spinner = Spinner(context, pub_node, receiver)
    try:

        def subscribed() -> bool:
            if pubs["image"].get_subscription_count() < subscribers:
                return False
            return not depth or (
                pubs["depth"].get_subscription_count() >= 1
                and pubs["info"].get_subscription_count() >= subscribers
            )

        assert wait_for(subscribed, 120, graph), "nodes never subscribed"
        assert wait_for(
            lambda: (
                receiver.count("diagnostics") > 0
                and receiver.diagnostics_values().get("state") == "active"
            ),
            240,
            graph,
        ), "node never configured"
        yield pubs, receiver
    finally:
        spinner.stop()
        receiver.destroy_node()
        pub_node.destroy_node()


@pytest.fixture
def io(graph, ros_context):
    """(publishers, receiver, graph) of :func:`camera_io` in the test's own rclpy context."""
    with camera_io(ros_context, graph) as (pubs, receiver):
        yield pubs, receiver, graph


def photo(name: str = "astronaut", side: int = 128) -> np.ndarray:
    """A scikit-image photo resized so its longer side is ``side`` pixels (HxWx3 uint8 RGB)."""
    import cv2

    rgb = getattr(skimage.data, name)()
    s = side / max(rgb.shape[:2])
    return cv2.resize(
        rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA
    )


def publish_frame(pubs, array, encoding="rgb8", stamp_sec=None, depth=None, depth_encoding="32FC1"):
    """Publish ``array`` (and optional depth + CameraInfo) on the ``io`` publishers; its header."""
    from rclpy.clock import Clock

    from perception_nodes.nodes.image_folder_publisher import pinhole_info
    from perception_nodes.ros.image_conversion import numpy_to_image_msg

    msg = numpy_to_image_msg(array, encoding)
    msg.header.frame_id = "camera_optical_frame"
    if stamp_sec is None:
        msg.header.stamp = Clock().now().to_msg()
    else:
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp_sec), 0
    if depth is not None:
        info = pinhole_info(*depth.shape[:2])
        info.header = msg.header
        pubs["info"].publish(info)
        d = numpy_to_image_msg(depth, depth_encoding)
        d.header = msg.header
        pubs["depth"].publish(d)
        time.sleep(0.05)
    pubs["image"].publish(msg)
    return msg.header


def wait_graph_for(receiver, header, graph, timeout=FRAME_TIMEOUT):
    """The SceneGraph of the frame published with ``header`` (fails after ``timeout`` s)."""

    def match():
        with receiver.lock:
            return next(
                (m for _, m in receiver.data.graphs if m.header.stamp == header.stamp), None
            )

    assert wait_for(lambda: match() is not None, timeout, graph), "no scene graph for the frame"
    return match()


@contextlib.contextmanager
def multi_camera_io(context, graph, cameras: list[str], active_timeout: float = 240):
    """One image publisher and one GraphReceiver per camera namespace in this process, spun in
    the background, once every camera's image is subscribed and the perception node is active.
    Yields ``(pubs, receivers)``: ``{camera: publisher}``, ``{camera: GraphReceiver}``."""
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from perception_nodes.tools.receiver import GraphReceiver

    cam_node = Node("test_cameras", context=context)
    pubs = {
        c: cam_node.create_publisher(Image, f"{c}/image_raw", qos_profile_sensor_data)
        for c in cameras
    }
    receivers = {c: GraphReceiver(camera=c, context=context) for c in cameras}
    spinner = Spinner(context, cam_node, *receivers.values())
    first = receivers[cameras[0]]
    try:
        assert wait_for(
            lambda: all(p.get_subscription_count() >= 1 for p in pubs.values()), 120, graph
        ), "the node never subscribed to every camera"
        assert wait_for(
            lambda: first.diagnostics_values().get("state") == "active", active_timeout, graph
        ), "node never configured"
        yield pubs, receivers
    finally:
        spinner.stop()
        for rec in receivers.values():
            rec.destroy_node()
        cam_node.destroy_node()


def publish_rounds(pubs, frames: dict, stamps) -> None:
    """For each stamp (whole seconds), one rgb8 frame per camera: ``frames[camera]`` (HxWx3),
    ``frame_id`` the camera's name without its slash."""
    from perception_nodes.ros.image_conversion import numpy_to_image_msg

    for stamp in stamps:
        for cam, rgb in frames.items():
            msg = numpy_to_image_msg(rgb, "rgb8")
            msg.header.stamp.sec, msg.header.stamp.nanosec = stamp, 0
            msg.header.frame_id = cam.strip("/")
            pubs[cam].publish(msg)


def wait_for_round(receivers, stamp: int, graph, resend=None, tries: int = 5) -> None:
    """Every camera's SceneGraph stamped ``stamp``; ``resend()`` (when given) publishes the round
    again each 60 s one is missing (best-effort camera topics may lose a frame)."""
    first = next(iter(receivers.values()))
    for cam, rec in receivers.items():

        def arrived(rec=rec):
            with rec.lock:
                return any(m.header.stamp.sec == stamp for _, m in rec.data.graphs)

        for _ in range(tries):
            if wait_for(arrived, 60, graph):
                break
            if resend is not None:
                resend()
        assert arrived(), f"{cam}: no scene graph stamped {stamp}: {first.diagnostics_values()}"
