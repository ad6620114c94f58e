"""Two cameras on the default SAM backend with a full-size architecture (issue 21, item 0): the
perception node in its own process over real DDS, ``sam.backend: auto`` (onnxruntime on a
CPU, exported on first use) and MobileSAM's vit_t (generated weights). Frames that arrive
together go through the ONNX encoder as one batch of 2 (which failed before and killed the
worker: no camera got another SceneGraph), and both cameras get their graphs, repeatedly."""

from __future__ import annotations

import pytest
from e2e_fixtures import (
    multi_camera_io,
    photo,
    publish_rounds,
    start_graph,
    wait_for,
    wait_for_round,
)

from perception_nodes.core.config import DEFAULT_SAM_BACKEND
from perception_nodes.tools.graph_runner import NodeGraph

pytestmark = pytest.mark.ros
CAMERAS = ["/front", "/rear"]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    g = start_graph(
        tmp_path_factory.mktemp("multicam_default"),
        cameras=CAMERAS,
        use_depth=False,
        # 2x2 prompts (small_overrides: 4x4): the test is about the encoder's batches
        **{"sam.backend": DEFAULT_SAM_BACKEND, "sam.model": "vit_t", "amg.points_per_side": 2},
    )
    yield g
    g.stop()


def test_two_cameras_on_the_default_backend_with_vit_t(graph: NodeGraph, ros_context):
    with multi_camera_io(ros_context, graph, CAMERAS, active_timeout=600) as (pubs, receivers):
        first = receivers[CAMERAS[0]]
        assert first.diagnostics_values()["backend"] == "onnxruntime/cpu/fp32"
        assert first.diagnostics_values()["model"] == "vit_t"
        frames = {CAMERAS[0]: photo("astronaut", 128), CAMERAS[1]: photo("coffee", 128)}
        # a burst of three rounds (the later ones wait together while the node is busy: one
        # encoder batch of 2), then one more round: output goes on after batches
        publish_rounds(pubs, frames, [2000, 2001, 2002])
        again = lambda stamp: lambda: publish_rounds(pubs, frames, [stamp])  # noqa: E731
        wait_for_round(receivers, 2002, graph, again(2002))
        publish_rounds(pubs, frames, [2003])
        wait_for_round(receivers, 2003, graph, again(2003))
        values = first.diagnostics_values()
        assert wait_for(
            lambda: int(first.diagnostics_values().get("encoder_batch_max", "0")) == 2, 60, graph
        ), values
        assert first.diagnostics_values()["failed"] == "0"
        log = graph.processes[0].log_tail(2_000_000)
        assert "batched encoding" not in log and "cannot run a batch" not in log
