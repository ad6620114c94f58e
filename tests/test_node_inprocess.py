"""The perception node in this process (real rclpy) over a stand-in pipeline: fast checks of the
lifecycle publishers and of live parameters, without models or other processes."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.live_settings import RELOAD_SETTINGS
from perception_nodes.core.output.scene_graph import build_scene_graph
from perception_nodes.core.pipeline import PipelineError
from perception_nodes.core.types import FrameResult, Segmentation
from perception_nodes.core.vocabulary.checks import check_vocabulary

pytestmark = pytest.mark.ros


class StandInPipeline:
    """Test double of :class:`~perception_nodes.core.pipeline.Pipeline` (same interface the node
    uses): every frame gives ``config.amg_max_regions`` square regions, no labels or relations;
    settings are checked like the real pipeline checks them and recorded when applied."""

    untrained_parts = ("stand-in",)
    meaningful = False
    sam_untrained = True
    sam_backend_name = "stand-in"
    generated_sam_policy = None
    generator = None
    vocabulary = None

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.applied: list[PipelineConfig] = []
        self.frames = 0

    def check_settings(self, config: PipelineConfig) -> list[str]:
        changed = [
            n for n in PipelineConfig.field_names() if getattr(config, n) != getattr(self.config, n)
        ]
        if set(changed) & RELOAD_SETTINGS:
            raise PipelineError(f"{sorted(set(changed) & RELOAD_SETTINGS)} need a reconfigure")
        check_vocabulary(list(config.vocabulary_labels), list(config.vocabulary_templates))
        return changed

    def apply_settings(self, config: PipelineConfig) -> list[str]:
        changed = self.check_settings(config)
        self.config = replace(config)
        self.applied.append(self.config)
        return changed

    def process(
        self, image, depth_m=None, k=None, stamp=0.0, stamp_ns=None, should_stop=None, stream=""
    ):
        h, w = image.shape[:2]
        n = self.config.amg_max_regions
        masks = np.zeros((n, h, w), bool)
        for i in range(n):
            masks[i, i : i + 2, i : i + 2] = True
        boxes = np.array([[i, i, i + 2, i + 2] for i in range(n)], np.float32).reshape(n, 4)
        seg = Segmentation(
            masks,
            boxes,
            masks.sum((1, 2)).astype(np.int64),
            np.ones(n, np.float32),
            np.ones(n, np.float32),
            np.zeros((n, 256), np.float32),
            boxes[:, :2].copy(),
            (h, w),
        )
        ids = np.arange(1, n + 1, dtype=np.uint32)
        centroids = np.full((n, 3), np.nan, np.float32)
        self.frames += 1
        return FrameResult(seg, None, None, ids, centroids), build_scene_graph(
            seg, None, None, ids, centroids, stamp=stamp
        )

    def vocabulary_snapshot(self):
        return None


@pytest.fixture
def node(ros_context):
    from rclpy.parameter import Parameter

    from perception_nodes.nodes.perception_node import PerceptionNode

    n = PerceptionNode(
        pipeline_loader=StandInPipeline,
        context=ros_context,
        parameter_overrides=[
            Parameter("autostart", value=False),
            Parameter("cameras", value=["/cam"]),
            Parameter("amg.max_regions", value=2),
        ],
    )
    yield n
    n._stop_worker()
    n.destroy_node()


@pytest.fixture
def sink(ros_context, node):
    """A subscriber to the node's scene graphs in the same process, and a spin helper."""
    from perception_msgs.msg import SceneGraph
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    listener = Node("sink", context=ros_context)
    got: list = []
    listener.create_subscription(SceneGraph, "/cam/perception/scene_graph", got.append, 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(listener)

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.02)

    yield got, spin
    executor.shutdown()
    listener.destroy_node()


def _frame(node, stamp_sec: int) -> None:
    from std_msgs.msg import Header

    header = Header(frame_id="cam")
    header.stamp.sec = stamp_sec
    node._process(
        "/cam", header, np.zeros((16, 16, 3), np.uint8), time.monotonic(), (None, None, 0.0)
    )


def test_outputs_are_lifecycle_publishers_that_publish_only_while_active(node, sink):
    from rclpy.lifecycle import LifecyclePublisher, TransitionCallbackReturn

    got, spin = sink
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    pubs = node._pubs["/cam"]
    assert set(pubs) == {"regions", "scene_graph", "label_image"}
    assert all(isinstance(p, LifecyclePublisher) for p in pubs.values())
    spin(0.5)  # discovery within the process
    _frame(node, 1)  # configured, not active: nothing goes out
    spin(0.5)
    assert got == []
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    _frame(node, 2)
    spin(1.0)
    assert [m.header.stamp.sec for m in got] == [2] and len(got[0].regions) == 2
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    _frame(node, 3)  # inactive again: nothing
    spin(0.5)
    assert [m.header.stamp.sec for m in got] == [2]
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert node._pubs == {} and node.pipeline is None


def test_live_parameters_reach_the_pipeline_and_bad_ones_change_nothing(node, sink):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    got, spin = sink
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    pipeline = node.pipeline
    r = node.set_parameters(
        [Parameter("amg.max_regions", value=5), Parameter("relations.top_k", value=7)]
    )
    assert all(x.successful for x in r)
    assert pipeline.config.amg_max_regions == 5 and pipeline.config.relations_top_k == 7
    spin(0.5)
    _frame(node, 10)
    spin(1.0)
    assert len(got[-1].regions) == 5  # the next frame runs with it
    n_applied = len(pipeline.applied)
    for bad in (
        Parameter("sam.model", value="vit_b"),  # read-only: needs a reload
        Parameter("vocabulary.templates", value=["{{}}"]),
        Parameter("vocabulary.labels", value=["a", "A"]),
        Parameter("amg.max_regions", value=0),
    ):  # out of its range
        (res,) = node.set_parameters([bad])
        assert not res.successful and res.reason, bad.name
    assert len(pipeline.applied) == n_applied and pipeline.config.amg_max_regions == 5
    assert node.get_parameter("vocabulary.templates").value == list(
        PipelineConfig().vocabulary_templates
    )
    (res,) = node.set_parameters([Parameter("diagnostics_period", value=0.25)])
    assert res.successful and node._diag_timer.timer_period_ns == 250_000_000
    node.trigger_deactivate()


def test_bad_vocabulary_parameters_are_refused_before_configure(node):
    from rclpy.parameter import Parameter

    (res,) = node.set_parameters([Parameter("vocabulary.templates", value=["no placeholder"])])
    assert not res.successful and "exactly once" in res.reason
    (res,) = node.set_parameters([Parameter("vocabulary.labels", value=["cup", "mug"])])
    assert res.successful
