"""Two cameras, one perception node (one model): both get their scene graphs, and frames that
arrive together go through the SAM encoder as one batch (real DDS, separate processes)."""

from __future__ import annotations

import time

import pytest
from e2e_fixtures import (
    multi_camera_io,
    photo,
    publish_rounds,
    start_graph,
    wait_for,
    wait_for_round,
)

from perception_nodes.tools.graph_runner import NodeGraph

pytestmark = pytest.mark.ros
CAMERAS = ["/cam_left", "/cam_right"]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    # 2x2 SAM prompts (small_overrides: 4x4): the test checks batches and routing, not regions;
    # a frame of the tiny test SAM costs half the CPU (96 px: 0.9 vs 1.8 CPU-s)
    g = start_graph(
        tmp_path_factory.mktemp("multicam"), cameras=CAMERAS, **{"amg.points_per_side": 2}
    )
    yield g
    g.stop()


def test_two_cameras_share_one_model_and_one_encoder_batch(graph: NodeGraph, ros_context):
    with multi_camera_io(ros_context, graph, CAMERAS) as (pubs, receivers):
        first = receivers[CAMERAS[0]]
        frames = {CAMERAS[0]: photo("astronaut", 96), CAMERAS[1]: photo("rocket", 96)}
        # later rounds arrive while the node is busy: both cameras wait together
        for round_ in range(3):
            publish_rounds(pubs, frames, [1000 + round_])
            time.sleep(0.05)
        # newest-frame slots: older rounds may be dropped, the last round reaches both cameras
        wait_for_round(receivers, 1002, graph)
        for cam, rec in receivers.items():
            with rec.lock:
                got = [m for _, m in rec.data.graphs]
            assert all(m.header.frame_id == cam.strip("/") for m in got)  # no cross-talk
            assert all((m.image_height, m.image_width) == frames[cam].shape[:2] for m in got)
        assert wait_for(
            lambda: int(first.diagnostics_values().get("encoder_batch_max", "0")) == 2, 60, graph
        ), first.diagnostics_values()
