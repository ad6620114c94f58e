"""Inputs that used to pass silently or crash a node, over real DDS with the nodes in their own
processes: empty scene graphs in the visualization node, generated-weights region filters on the
launch path, CameraInfo that cannot give 3D, images below the minimum size, exact stamps,
depth paired with its frame by stamp."""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import pytest
from e2e_fixtures import CAMERA, Spinner, call, camera_io, photo, small_overrides, wait_for

from perception_nodes.tools.graph_runner import NodeGraph, write_params_file

pytestmark = pytest.mark.ros
FRAME_TIMEOUT = 240.0
POLICY_LOG = "generated SAM weights: the default region filters would keep no region"
MIN_IMAGE_SIDE = 16  # README "Topics and services": the minimum image size is 16x16 pixels


def _log(graph, name: str = "perception_node") -> str:
    return next(p for p in graph.processes if p.name == name).log_tail(1 << 40)  # the whole log


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """perception_node + visualization_node as the launch file starts them: generated weights
    and the DEFAULT region filters (only the grid is small, for time)."""
    tmp = tmp_path_factory.mktemp("inputs")
    # 4 prompts: fast frames; a frame waits up to 1 s for its depth image (default 0.1 s: the
    # tests that send the depth after the image leave it 0.3 s behind, on a loaded CI runner)
    ov = small_overrides(tmp / "cache", **{"amg.points_per_side": 2, "depth_wait": 1.0})
    for name in ("amg.pred_iou_thresh", "amg.stability_score_thresh", "amg.max_regions"):
        del ov["perception_node"][name]
    g = NodeGraph(log_dir=tmp)
    params = write_params_file(ov, folder=tmp)
    g.start("perception_node", params)
    g.start("visualization_node", params)
    yield g
    g.stop()


@pytest.fixture(scope="module")
def io(graph):
    """(publishers, receiver) in this process (own rclpy context for the module)."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    with camera_io(context, graph) as (pubs, receiver):
        yield pubs, receiver
    context.try_shutdown()


def _counter(receiver, what: str) -> int:
    return int(receiver.diagnostics_values().get(f"{CAMERA}.{what}", "0"))


def _frame_msgs(rgb, sec: int, nanosec: int, k=None, info_hw=None, depth=None):
    from sensor_msgs.msg import CameraInfo

    from perception_nodes.ros.image_conversion import numpy_to_image_msg

    image = numpy_to_image_msg(rgb, "rgb8")
    image.header.frame_id = "camera_optical_frame"
    image.header.stamp.sec, image.header.stamp.nanosec = sec, nanosec
    out = {"image": image}
    if depth is not None:
        h, w = info_hw if info_hw is not None else rgb.shape[:2]
        out["info"] = CameraInfo(
            header=image.header, height=h, width=w, k=[float(v) for v in np.ravel(k)]
        )
        out["depth"] = numpy_to_image_msg(depth, "32FC1", image.header)
    return out


def _has_3d(sg) -> bool:
    return bool(sg.regions) and all(math.isfinite(r.centroid.z) for r in sg.regions)


def _graph_for(receiver, graph, stamp, timeout: float):
    """The SceneGraph stamped ``stamp`` once received (None after ``timeout`` s)."""

    def match():
        with receiver.lock:
            return next((m for _, m in receiver.data.graphs if m.header.stamp == stamp), None)

    return match() if wait_for(lambda: match() is not None, timeout, graph) else None


def _send_until_graph(pubs, receiver, graph, msgs, timeout=FRAME_TIMEOUT):
    """Publish (CameraInfo, depth, then the image) until the frame's SceneGraph arrives: the
    camera topics are best effort, so a lost sample is sent again (same stamp)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for kind in ("info", "depth"):
            if kind in msgs:
                pubs[kind].publish(msgs[kind])
        time.sleep(0.05)
        pubs["image"].publish(msgs["image"])
        sg = _graph_for(receiver, graph, msgs["image"].header.stamp, 15.0)
        if sg is not None:
            return sg
    raise AssertionError("no scene graph for the frame")


def test_visualization_node_draws_and_marks_an_empty_scene_graph(tmp_path, ros_context):
    """A SceneGraph with 0 regions (nothing passed the filters) gives an overlay (the image
    itself) and a marker array (only DELETEALL); the node keeps running. One that says
    labels_meaningful: false (generated weights) gets a banner over the bottom of its overlay
    (failed before: the overlay was the image itself, nothing said the labels mean nothing)."""
    from perception_msgs.msg import SceneGraph
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from perception_nodes.ros.image_conversion import image_msg_to_numpy, numpy_to_image_msg
    from perception_nodes.tools.receiver import GraphReceiver

    viz = NodeGraph(log_dir=tmp_path)
    try:
        viz.start("visualization_node", extra_params={"cameras": [CAMERA]})
        node = Node("test_graph_source", context=ros_context)
        image_pub = node.create_publisher(Image, f"{CAMERA}/image_raw", qos_profile_sensor_data)
        graph_pub = node.create_publisher(SceneGraph, f"{CAMERA}/perception/scene_graph", 10)
        receiver = GraphReceiver(camera=CAMERA, context=ros_context)
        spinner = Spinner(ros_context, node, receiver)
        try:
            assert wait_for(
                lambda: (
                    graph_pub.get_subscription_count() >= 1
                    and image_pub.get_subscription_count() >= 1
                ),
                120,
                viz,
            ), "visualization_node never subscribed"
            rgb = photo("coffee", side=96)
            for i in range(3):  # several empty frames: the node must survive each
                image = numpy_to_image_msg(rgb, "rgb8")
                image.header.stamp.sec, image.header.stamp.nanosec = 100 + i, 250
                empty = SceneGraph(
                    header=image.header,
                    image_height=rgb.shape[0],
                    image_width=rgb.shape[1],
                    labels_meaningful=i < 2,  # the last one from generated weights
                )
                for _ in range(20):
                    image_pub.publish(image)
                    time.sleep(0.1)
                    graph_pub.publish(empty)
                    if wait_for(
                        lambda: receiver.count("overlays") > i and receiver.count("markers") > i,
                        3.0,
                        viz,
                    ):
                        break
                assert receiver.count("overlays") > i and receiver.count("markers") > i, (
                    viz.processes[0].log_tail()
                )
            with receiver.lock:
                overlays = {m.header.stamp.sec: m for _, m in receiver.data.overlays}
            assert np.array_equal(image_msg_to_numpy(overlays[101]), rgb)
            banner = image_msg_to_numpy(overlays[102]) != rgb
            assert banner.any() and not banner[: rgb.shape[0] // 2].any()  # bottom only
            assert wait_for(
                lambda: "labels_meaningful: false" in viz.processes[0].log_tail(), 10, viz
            )
            markers = receiver.latest("markers").markers
            assert len(markers) == 1 and markers[0].action == markers[0].DELETEALL
            viz.check_alive()
            assert "Traceback" not in viz.processes[0].log_tail()
        finally:
            spinner.stop()
    finally:
        viz.stop()


def test_generated_weights_open_the_default_filters_on_the_launch_path(io, graph):
    """With generated SAM weights and the package's default thresholds, frames have regions (as
    in pn-demo), and the policy is logged once."""
    pubs, receiver = io
    sg = _send_until_graph(pubs, receiver, graph, _frame_msgs(photo("astronaut"), 1000, 0))
    assert 1 <= len(sg.regions) <= 12, len(sg.regions)
    assert all(r.area > 0 for r in sg.regions)
    _send_until_graph(pubs, receiver, graph, _frame_msgs(photo("rocket"), 1001, 0))
    assert _log(graph).count(POLICY_LOG) == 1


def test_query_regions_answers_the_frames_exact_stamp(io, graph):
    from perception_msgs.srv import QueryRegions

    pubs, receiver = io
    for sec, nanosec in ((1_700_000_000, 123_456_789), (-1, 500_000_000), (-3, 999_999_999)):
        _send_until_graph(pubs, receiver, graph, _frame_msgs(photo("coffee", 64), sec, nanosec))
        answer = call(receiver.query_regions, QueryRegions.Request(text="a cup", top_k=2))
        assert answer.success, answer.message
        assert (answer.stamp.sec, answer.stamp.nanosec) == (sec, nanosec)


BAD_INTRINSICS = {
    "all zero": (np.zeros(9), None, "non-positive focal lengths"),
    "NaN fx": ([math.nan, 0, 32, 0, 80, 24, 0, 0, 1], None, "NaN or infinite"),
    "negative fx": ([-80.0, 0, 32, 0, 80, 24, 0, 0, 1], None, "non-positive focal lengths"),
    "infinite fx": ([math.inf, 0, 32, 0, 80, 24, 0, 0, 1], None, "NaN or infinite"),
    "fx=1e-300": ([1e-300, 0, 32, 0, 1e-300, 24, 0, 0, 1], None, "too small"),
    "info for a 4x larger image": ([320.0, 0, 128, 0, 320, 96, 0, 0, 1], "4x", "CameraInfo is for"),
}


def _send_until_info_used(pubs, receiver, graph, rgb, sec, k, info_hw, depth, used, attempts=8):
    """The SceneGraph of a frame sent with CameraInfo ``k`` that the node paired with that
    CameraInfo (``used(graph)``): CameraInfo and image travel on separate best-effort topics, so
    a frame can meet the camera's previous CameraInfo (a lost or late sample; failed CI once:
    the 4x case's frame met the 1e-300 case's CameraInfo). Such a frame is sent again with the
    next nanosecond stamp."""
    for attempt in range(attempts):
        sg = _send_until_graph(
            pubs, receiver, graph, _frame_msgs(rgb, sec, attempt, k, info_hw, depth)
        )
        if used(sg):
            return sg
    raise AssertionError(f"{attempts} frames sent with this CameraInfo, none used it")


def test_camera_info_that_cannot_give_3d_is_refused_counted_and_logged(io, graph):
    pubs, receiver = io
    rgb = photo("astronaut", 64)
    h, w = rgb.shape[:2]
    depth = np.full((h, w), 2.0, np.float32)
    good_k = [80.0, 0, w / 2, 0, 80, h / 2, 0, 0, 1]

    sg = _send_until_info_used(pubs, receiver, graph, rgb, 2000, good_k, None, depth, _has_3d)
    assert all(r.centroid.z == pytest.approx(2.0) for r in sg.regions)
    previous_reason = None
    for i, (case, (k, size, reason)) in enumerate(BAD_INTRINSICS.items()):
        before, log_before = _counter(receiver, "refused_3d"), len(_log(graph))
        info_hw = (4 * h, 4 * w) if size == "4x" else None

        def refused_for_this_reason(_sg):  # a repeated reason is logged throttled: not again
            return reason == previous_reason or reason in _log(graph)[log_before:]

        sg = _send_until_info_used(
            pubs, receiver, graph, rgb, 2001 + i, k, info_hw, depth, refused_for_this_reason
        )
        assert sg.regions, case
        for r in sg.regions:  # no 3D for this frame: NaN, never inf
            assert all(math.isnan(v) for v in (r.centroid.x, r.centroid.y, r.centroid.z)), (
                case,
                r.centroid,
            )
        assert wait_for(lambda: _counter(receiver, "refused_3d") > before, 10, graph), case
        previous_reason = reason
    assert "no 3D for this frame: CameraInfo refused" in _log(graph)
    # a good CameraInfo again: 3D again
    sg = _send_until_info_used(pubs, receiver, graph, rgb, 2100, good_k, None, depth, _has_3d)
    assert all(r.centroid.z == pytest.approx(2.0) for r in sg.regions)


def test_a_frame_gets_the_depth_image_of_its_own_stamp_even_when_it_arrives_later(io, graph):
    """Image first, its depth 0.3 s later (separate topics; image_folder_publisher and camera
    drivers send them so): the frame waits for its own depth. Failed before: the frame took the
    depth received last, the previous frame's (z = 2.0)."""
    pubs, receiver = io
    rgb = photo("astronaut", 64)
    h, w = rgb.shape[:2]
    k = [80.0, 0, w / 2, 0, 80, h / 2, 0, 0, 1]
    sg = _send_until_info_used(
        pubs, receiver, graph, rgb, 4000, k, None, np.full((h, w), 2.0, np.float32), _has_3d
    )
    assert all(r.centroid.z == pytest.approx(2.0) for r in sg.regions)
    for attempt in range(5):  # a lost sample (best effort) is sent again, next nanosecond
        msgs = _frame_msgs(rgb, 4001, attempt, k, None, np.full((h, w), 3.0, np.float32))
        pubs["info"].publish(msgs["info"])
        pubs["image"].publish(msgs["image"])
        time.sleep(0.3)
        pubs["depth"].publish(msgs["depth"])
        sg = _graph_for(receiver, graph, msgs["image"].header.stamp, 15.0)
        if sg is None:
            continue
        zs = [r.centroid.z for r in sg.regions]
        assert not any(z == pytest.approx(2.0) for z in zs), zs  # another frame's depth
        if _has_3d(sg):
            break  # (NaN: its depth sample was lost; sent again)
    assert sg is not None and all(r.centroid.z == pytest.approx(3.0) for r in sg.regions), sg
    assert wait_for(  # the wait is reported (mean over the last frames)
        lambda: float(receiver.diagnostics_values().get("depth_wait_ms", "0")) > 1.0, 10, graph
    ), receiver.diagnostics_values()


def test_a_depth_image_stamped_1_s_away_is_not_used_counted_and_logged(io, graph):
    """A stalled depth camera: its last depth is 1 s older than the frame (or 1 s newer). No 3D
    for that frame (NaN), counted, logged with how far it was. Failed before: it was used."""
    pubs, receiver = io
    rgb = photo("astronaut", 64)
    h, w = rgb.shape[:2]
    k = [80.0, 0, w / 2, 0, 80, h / 2, 0, 0, 1]
    for sec, offset, words in ((5000, -1, "1.000 s before it"), (5100, +1, "1.000 s after it")):
        before, log_before = _counter(receiver, "refused_3d"), len(_log(graph))
        deadline = time.monotonic() + 60.0
        for attempt in range(1000):  # a lost depth sample (best effort): sent again, next ns
            msgs = _frame_msgs(rgb, sec, attempt, k, None, np.full((h, w), 4.0, np.float32))
            msgs["depth"].header = copy.deepcopy(msgs["depth"].header)  # (shared with the image's)
            msgs["depth"].header.stamp.sec = sec + offset
            sg = _send_until_graph(pubs, receiver, graph, msgs)
            assert sg.regions and all(math.isnan(r.centroid.z) for r in sg.regions), words
            # (repeated refusals are logged at most every 5 s: a retry may wait for that)
            if wait_for(lambda: words in _log(graph)[log_before:], 2.0, graph):
                break
            assert time.monotonic() < deadline, f"never logged: {words}"
        assert wait_for(lambda: _counter(receiver, "refused_3d") > before, 10, graph), words
    assert "no depth image within 0.05 s of the frame's stamp" in _log(graph)


def test_images_below_the_minimum_size_are_refused_and_counted(io, graph):
    from perception_nodes.ros.image_conversion import numpy_to_image_msg

    pubs, receiver = io
    rgb = photo("chelsea", 96)
    for h, w in ((1, 1), (2, 2), (MIN_IMAGE_SIDE - 1, 64), (64, MIN_IMAGE_SIDE - 1)):
        before = _counter(receiver, "rejected")
        msg = numpy_to_image_msg(np.ascontiguousarray(rgb[:h, :w]), "rgb8")
        msg.header.stamp.sec = 3000 + h * 100 + w
        for _ in range(20):
            pubs["image"].publish(msg)
            if wait_for(lambda: _counter(receiver, "rejected") > before, 3.0, graph):
                break
        assert _counter(receiver, "rejected") > before, (h, w)
        with receiver.lock:
            assert not any(m.header.stamp == msg.header.stamp for _, m in receiver.data.graphs), (
                h,
                w,
            )
    assert f"below the minimum size {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}" in _log(graph)
    sg = _send_until_graph(
        pubs,
        receiver,
        graph,
        _frame_msgs(np.ascontiguousarray(rgb[:MIN_IMAGE_SIDE, :MIN_IMAGE_SIDE]), 3999, 0),
    )
    assert all(
        r.area > 0 for r in sg.regions
    )  # the minimum size itself is processed, no empty region
