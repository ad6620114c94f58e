"""Bad input never takes the perception node down, and long runs stay flat (real DDS, processes)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import default_malloc
from e2e_fixtures import photo, process_rss_mb, publish_frame, start_graph, wait_for, wait_graph_for

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    # 2x2 SAM prompts (small_overrides: 4x4): these tests need some regions per frame, not
    # many, and the soak's ~40 frames cost half the CPU (tiny test SAM, 96 px: 0.9 vs 1.8 CPU-s)
    # the soak measures the node's memory as users run it: glibc's default malloc
    with default_malloc():
        g = start_graph(
            tmp_path_factory.mktemp("robust"),
            max_image_pixels=1_000_000,
            **{"amg.points_per_side": 2},
        )
    yield g
    g.stop()


def _rejected(receiver) -> int:
    return int(receiver.diagnostics_values().get("/camera.rejected", "0"))


def _log(graph) -> str:
    return next(p for p in graph.processes if p.name == "perception_node").log_tail(200_000)


def test_bad_frames_are_refused_with_a_log_and_the_node_keeps_running(io):
    from perception_nodes.ros.image_conversion import numpy_to_image_msg

    pubs, receiver, graph = io
    good = photo("rocket")
    bad = []
    m = numpy_to_image_msg(good, "rgb8")
    m.encoding = "yuv422"
    bad.append(m)  # unsupported encoding
    m = numpy_to_image_msg(good, "rgb8")
    m.height = m.width = 0
    m.data = b""
    bad.append(m)  # zero size
    m = numpy_to_image_msg(good, "rgb8")
    m.data = bytes(m.data)[:100]
    bad.append(m)  # truncated data
    huge = numpy_to_image_msg(np.zeros((1200, 1000), np.uint8), "mono8")
    bad.append(huge)  # over max_image_pixels
    for msg in bad:
        # sensor-data QoS is best effort: a large sample may be lost in transport; resend until counted
        before = _rejected(receiver)
        for _ in range(20):
            pubs["image"].publish(msg)
            if wait_for(lambda: _rejected(receiver) > before, 5.0, graph):
                break
        assert _rejected(receiver) > before, (
            msg.encoding,
            msg.height,
            receiver.diagnostics_values(),
        )
    log = _log(graph)
    for expected in (
        "unsupported encoding 'yuv422'",
        "empty image",
        "data holds 100 bytes",
        "exceeds max_image_pixels",
    ):
        assert expected in log
    # odd but valid encodings are converted, and size changes between frames are fine
    for array, enc in (
        (good[:, :, ::-1].copy(), "bgr8"),
        (good[:, :, 0].copy(), "mono8"),
        (np.dstack([good, np.full(good.shape[:2], 255, np.uint8)]), "rgba8"),
        (photo("coffee", side=96), "rgb8"),
    ):
        header = publish_frame(pubs, array, encoding=enc)
        sg = wait_graph_for(receiver, header, graph)
        assert (sg.image_height, sg.image_width) == array.shape[:2]


def test_bad_depth_and_stamps_are_survived(io):
    pubs, receiver, graph = io
    rgb = photo("astronaut")
    nan_depth = np.full(rgb.shape[:2], np.nan, np.float32)
    sg = wait_graph_for(receiver, publish_frame(pubs, rgb, depth=nan_depth), graph)
    assert all(np.isnan(r.centroid.z) for r in sg.regions)  # NaN depth -> NaN centroids
    zero_mm = np.zeros(rgb.shape[:2], np.uint16)
    sg = wait_graph_for(
        receiver, publish_frame(pubs, rgb, depth=zero_mm, depth_encoding="16UC1"), graph
    )
    assert all(np.isnan(r.centroid.z) for r in sg.regions)  # 0 = invalid in 16UC1
    small = np.ones((10, 10), np.float32)
    sg = wait_graph_for(receiver, publish_frame(pubs, rgb, depth=small), graph)
    assert len(sg.regions) >= 1  # depth of another size is ignored
    assert wait_for(lambda: "depth is 10x10 but the image is" in _log(graph), 30, graph)
    now = time.time()
    h1 = publish_frame(pubs, rgb, stamp_sec=now + 100)
    wait_graph_for(receiver, h1, graph)
    h2 = publish_frame(pubs, rgb, stamp_sec=now)  # out of order
    wait_graph_for(receiver, h2, graph)
    assert "timestamp went backwards" in _log(graph)


def test_soak_memory_and_latency_stay_flat_without_backlog(io):
    pubs, receiver, graph = io
    pid = next(p for p in graph.processes if p.name == "perception_node").process.pid
    frames = [photo(n, side=96) for n in ("astronaut", "coffee", "chelsea", "rocket")]
    start_graphs = receiver.count("graphs")
    rss, latencies = [], []
    n_frames = 150
    for i in range(n_frames):
        header = publish_frame(pubs, frames[i % 4])
        t_pub = time.monotonic()
        if i % 10 == 9:  # every 10th frame: wait for it, measure latency and memory
            wait_graph_for(receiver, header, graph)
            latencies.append(time.monotonic() - t_pub)
            rss.append(process_rss_mb(pid))
        else:
            time.sleep(0.05)  # faster than the node can process: it must drop, not queue
    processed = receiver.count("graphs") - start_graphs
    values = receiver.diagnostics_values()
    assert processed < n_frames, (
        "every frame processed although published faster than processing: no dropping?"
    )
    assert int(values.get("/camera.dropped", "0")) > 0
    # no backlog: had the node queued the frames published meanwhile (every 0.05 s, each ~0.8 s
    # of processing), the last waited-for frame would come ~100 frame-times after its
    # publication; a bound of a few frame-times plus 10 s catches that, not a loaded machine's
    # pause (CI saw one of 7.5 s with the first frames at 1.1 s)
    assert max(latencies[-2:]) <= 3 * max(latencies[:2]) + 10.0, latencies
    # memory flat once warm: with glibc's default malloc the node's RSS grows ~250 MB over its
    # first ~80 frames (arenas filling: measured 1114 -> 1349 MB by frame 89, then 1351 MB at
    # frame 239), so growth is bounded from frame 79 on, and over the whole run loosely
    assert rss[-1] - rss[7] < 80, rss
    assert rss[-1] - rss[0] < 400, rss
