"""pn-process-bag writes a frame from the masks' RLE counts the scene graph already holds (encoded
once per frame): the COCO record (compressed RLE, XYWH box, area) and the JPEG overlay must be
exactly what encoding and drawing the segmentation's full masks gave (the code they replaced,
kept below as the reference), on generated scenes (tools/host_scenes.py) and masks on every
border, one pixel, the whole image and nested parts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from perception_nodes.bags.messages import MAX_RELATIONS_DRAWN, OVERLAY_JPEG_QUALITY, _header
from perception_nodes.bags.messages import _overlay as overlay
from perception_nodes.bags.training_data import _panoptic, _xywh, frame_record
from perception_nodes.core.output.draw import draw_overlay
from perception_nodes.core.output.scene_graph import build_scene_graph
from perception_nodes.core.types import FrameResult, Segmentation
from perception_nodes.nodes.visualization_node import NOT_MEANINGFUL_BANNER
from perception_nodes.tools.host_scenes import host_scene


def _edge_segmentation(h: int = 9, w: int = 7) -> Segmentation:
    """Full image, borders, corners, a column band, runs crossing columns, the last pixel."""
    masks = np.zeros((8, h, w), dtype=bool)
    masks[0] = True
    masks[1, 0, :] = masks[1, -1, :] = True
    masks[2, :, 0] = masks[2, :, -1] = True
    masks[3, 0, 0] = masks[3, -1, -1] = True
    masks[4, :, 2:5] = True
    masks[5, 4:, 1] = masks[5, :3, 2] = True
    masks[6, -1, -1] = True
    masks[7, 3:4, 3:4] = True
    boxes = np.array([_xyxy(m) for m in masks], dtype=np.float32)
    n = len(masks)
    return Segmentation(masks, boxes, masks.reshape(n, -1).sum(1), np.ones(n, np.float32),
                        np.ones(n, np.float32), np.zeros((n, 256), np.float32),
                        np.zeros((n, 2), np.float32), (h, w))  # fmt: skip


def _xyxy(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def _reference_xywh(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)]


def _cases():
    rng = np.random.default_rng(7)
    out = [(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8), _edge_segmentation())]
    for h, w, n, seed in ((96, 128, 24, 1), (61, 77, 40, 2)):
        scene = host_scene(h, w, n, seed=seed)
        out.append((scene.image, scene.segmentation))
    return out


def _frame(seg: Segmentation):
    ids = np.arange(1, 1 + len(seg), dtype=np.uint32)
    graph = build_scene_graph(seg, None, None, ids)
    return FrameResult(seg, None, None, ids, np.full((len(seg), 3), np.nan, np.float32)), graph


@pytest.mark.parametrize("case", range(3))
def test_coco_record_equals_encoding_the_masks(tmp_path, case):
    rgb, seg = _cases()[case]
    result, graph = _frame(seg)
    record = frame_record(tmp_path, "/c#0", "/c", 0, 1, rgb, result, graph, [])
    assert len(record["regions"]) == len(seg) > 0
    for mask, region in zip(seg.masks, record["regions"]):
        ref = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert region["rle"] == ref["counts"].decode("ascii")
        assert region["bbox"] == _reference_xywh(mask)
        assert region["area"] == int(mask.sum()) and isinstance(region["area"], int)
        assert all(isinstance(v, float) for v in region["bbox"])
    pan, visible = _panoptic(seg.masks.astype(bool))
    assert [p["bbox"] for p in record["panoptic"]] == [_reference_xywh(pan[i]) for i in visible]


@pytest.mark.parametrize("case", range(3))
def test_overlay_from_graph_counts_equals_overlay_of_masks(case):
    rgb, seg = _cases()[case]
    _, graph = _frame(seg)
    header = _header(1_000_000_123, "camera")
    reference = draw_overlay(rgb, graph, masks=seg.masks, max_relations=MAX_RELATIONS_DRAWN,
                             banner=None if graph.labels_meaningful else NOT_MEANINGFUL_BANNER)  # fmt: skip
    ok, jpeg = cv2.imencode(
        ".jpg", reference[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, OVERLAY_JPEG_QUALITY]
    )
    assert ok
    assert bytes(overlay(rgb, graph, header).data) == jpeg.tobytes()


def test_box_of_masks_with_gaps():
    mask = np.zeros((5, 6), dtype=bool)
    mask[1, 1] = mask[3, 4] = True  # rows and columns between them empty
    assert _xywh(mask) == _reference_xywh(mask) == [1.0, 1.0, 4.0, 3.0]
