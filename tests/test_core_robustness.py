"""ROS-free core pieces behind issue 9: stamps, intrinsics checks, empty drawing, the
generated-weights policy, abandoning a frame (the DDS-level tests are test_node_inputs_dds.py
and test_shutdown_sigint.py)."""

from __future__ import annotations

import math
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from perception_nodes.core.config import PipelineConfig
from perception_nodes.core.output.draw import draw_overlay, region_colours
from perception_nodes.core.output.projection import intrinsics_problem, region_centroids
from perception_nodes.core.output.scene_graph import SceneGraph
from perception_nodes.core.stream.cancel import FrameAbandoned, WorkAbandoned, run_abandonable
from perception_nodes.core.stream.stamps import (
    ns_to_sec_nanosec,
    set_stamp,
    stamp_to_ns,
    stamp_to_seconds,
)
from perception_nodes.core.weights.generated_policy import (
    GENERATED_SAM_SETTINGS,
    apply_generated_sam_policy,
)


@pytest.mark.parametrize(
    "sec,nanosec",
    [
        (1_700_000_000, 123_456_789),
        (0, 0),
        (-1, 500_000_000),
        (-2_147_483_648, 1),
        (2_147_483_647, 999_999_999),
    ],
)
def test_stamps_round_trip_exactly(sec, nanosec):
    ns = stamp_to_ns(SimpleNamespace(sec=sec, nanosec=nanosec))
    assert ns_to_sec_nanosec(ns) == (sec, nanosec)
    out = set_stamp(SimpleNamespace(sec=7, nanosec=7), ns)
    assert (out.sec, out.nanosec) == (sec, nanosec)
    assert stamp_to_seconds(SimpleNamespace(sec=sec, nanosec=nanosec)) == pytest.approx(
        sec + nanosec * 1e-9
    )


def test_negative_stamp_is_a_second_below_zero():
    assert stamp_to_ns(SimpleNamespace(sec=-1, nanosec=750_000_000)) == -250_000_000
    assert ns_to_sec_nanosec(-250_000_000) == (-1, 750_000_000)


GOOD_K = np.array([[80.0, 0, 32], [0, 80.0, 24], [0, 0, 1]])


@pytest.mark.parametrize(
    "k,info_hw,expected",
    [
        (np.zeros((3, 3)), None, "non-positive"),
        (np.where(np.eye(3) * [1, 0, 0] > 0, math.nan, GOOD_K), None, "NaN or infinite"),
        (GOOD_K * [[-1, 1, 1], [1, 1, 1], [1, 1, 1]], None, "non-positive"),
        (np.where(np.eye(3) * [1, 0, 0] > 0, math.inf, GOOD_K), None, "NaN or infinite"),
        (np.array([[1e-300, 0, 32], [0, 1e-300, 24], [0, 0, 1]]), None, "too small"),
        (GOOD_K, (192, 256), "CameraInfo is for 256x192"),
        (np.ones(4), None, "not 9"),
    ],
)
def test_intrinsics_problem_names_the_reason(k, info_hw, expected):
    assert expected in intrinsics_problem(k, (48, 64), info_hw)


def test_good_intrinsics_and_centroids_are_finite():
    assert intrinsics_problem(GOOD_K, (48, 64), (48, 64)) is None
    assert intrinsics_problem(GOOD_K, (48, 64), (0, 0)) is None  # size not given: not checked
    masks = np.zeros((2, 48, 64), bool)
    masks[0, 10:20, 10:20] = True
    masks[1, 30:40, 40:50] = True
    depth = np.full((48, 64), 2.0, np.float32)
    c = region_centroids(masks, depth, GOOD_K)
    assert np.all(np.isfinite(c)) and np.allclose(c[:, 2], 2.0)
    depth[30:40, 40:50] = 3e38  # huge but finite depth; x = (u - cx) z / fx overflows float32
    wide = np.array([[0.5, 0, 32], [0, 0.5, 24], [0, 0, 1]])
    assert intrinsics_problem(wide, (48, 64)) is None
    c = region_centroids(masks, depth, wide)
    assert np.all(np.isfinite(c[0])) and np.all(np.isnan(c[1]))  # NaN, never inf


def _empty_graph(h=24, w=32) -> SceneGraph:
    return SceneGraph(
        image_size=(h, w),
        region_ids=np.zeros(0, np.uint32),
        labels=[],
        label_index=np.zeros(0, np.int64),
        label_scores=np.zeros(0, np.float32),
        boxes_xyxy=np.zeros((0, 4), np.float32),
        areas=np.zeros(0, np.int64),
        centroids=np.zeros((0, 3), np.float32),
        mask_counts=[],
        subject=np.zeros(0, np.int64),
        object=np.zeros(0, np.int64),
        predicate_index=np.zeros(0, np.int64),
        relation_scores=np.zeros(0, np.float32),
        predicates=["left of"],
    )


def test_drawing_accepts_a_frame_without_regions():
    assert region_colours(np.zeros(0, np.uint32)).shape == (0, 3)
    image = np.full((24, 32, 3), 77, np.uint8)
    assert np.array_equal(draw_overlay(image, _empty_graph()), image)
    assert (
        draw_overlay(image, _empty_graph(), masks=np.zeros((0, 24, 32), bool), banner="x").shape
        == image.shape
    )


def test_generated_policy_opens_defaults_and_keeps_explicit_settings():
    config, changes = apply_generated_sam_policy(PipelineConfig())
    assert {k: v for k, (_, v) in changes.items()} == GENERATED_SAM_SETTINGS
    assert config.amg_pred_iou_thresh == 0.0 and config.amg_max_regions == 12
    mine = PipelineConfig(amg_pred_iou_thresh=1.0, amg_max_regions=3)
    config, changes = apply_generated_sam_policy(mine)
    assert config.amg_pred_iou_thresh == 1.0 and config.amg_max_regions == 3
    assert set(changes) == {"amg_stability_score_thresh", "amg_box_nms_thresh"}


def test_pipeline_abandons_a_frame_between_decoder_batches(tmp_path):
    from perception_nodes.core.pipeline import Pipeline, PipelineError
    from perception_nodes.nodes.image_folder_publisher import load_image

    pipeline = Pipeline.load(
        PipelineConfig(
            sam_model="sam_tiny_test",
            clip_model="pn-clip-tiny-test",
            amg_points_per_side=2,
            amg_points_per_batch=1,
            weights_cache_dir=str(tmp_path),
        )
    )
    assert pipeline.generated_sam_policy  # generated SAM weights: the filters were opened
    image = load_image("coffee", 64)
    batches = []
    stop = threading.Event()

    def should_stop() -> bool:
        batches.append(len(pipeline.generator.timings.decoder_batches))
        if batches[-1] >= 2:
            stop.set()
        return stop.is_set()

    with pytest.raises(FrameAbandoned):
        pipeline.process(image, should_stop=should_stop, stamp_ns=5)
    assert (
        len(pipeline.generator.timings.decoder_batches) == 2
    )  # 4 prompts, stopped after 2 batches
    with pytest.raises(PipelineError, match="no frame has been processed"):
        pipeline.query("a cup")  # nothing of the abandoned frame was kept
    result, graph = pipeline.process(image, stamp=1.5, stamp_ns=1_500_000_001)
    assert graph.num_regions >= 1 and np.all(result.segmentation.areas > 0)
    assert pipeline.query("a cup")[2] == 1_500_000_001
    with pytest.raises(PipelineError, match="minimum size"):
        pipeline.process(np.zeros((2, 2, 3), np.uint8))


def test_minimum_image_size_is_the_one_the_readme_states():
    from conftest import REPO_ROOT

    from perception_nodes.core.pipeline import MIN_IMAGE_SIDE

    assert (
        f"minimum image size of {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels"
        in (REPO_ROOT / "README.md").read_text()
    )


def test_abandonable_work_returns_raises_and_is_left_behind_at_once_on_stop():
    assert run_abandonable(lambda: 42, lambda: False) == 42
    with pytest.raises(KeyError, match="bad checkpoint"):
        run_abandonable(lambda: {}["bad checkpoint"], lambda: False)
    release, stop = threading.Event(), threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(WorkAbandoned):
        run_abandonable(lambda: release.wait(30), stop.is_set)  # a load of 30 s
    assert time.monotonic() - started < 2.0
    release.set()
