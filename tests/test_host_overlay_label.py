"""The label image (core/output/projection.py ``label_image``, OpenCV's masked copy per box
crop) equals painting each mask's boolean pixels inside its box, largest region first (the
code it replaced, kept below as the reference), bit for bit: boxes that cut masks, empty
masks and boxes, equal areas, non-bool masks, strided views, the largest 16-bit id."""

from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.core.output.projection import _boxes, label_image
from perception_nodes.tools.host_scenes import host_scene


def _reference(masks, region_ids, boxes=None):
    """The previous label image: ``count_nonzero`` per box crop, boolean assignment."""
    n, h, w = masks.shape
    img = np.zeros((h, w), dtype=np.uint16)
    crops = [(x0, y0, x1, y1, masks[i, y0:y1, x0:x1]) for i, (x0, y0, x1, y1) in
             enumerate(_boxes(masks, boxes))]  # fmt: skip
    areas = np.array([np.count_nonzero(c[4]) for c in crops], dtype=np.int64)
    for i in np.argsort(-areas, kind="stable"):
        x0, y0, x1, y1, crop = crops[i]
        img[y0:y1, x0:x1][crop] = region_ids[i]
    return img


def _cut_boxes(boxes, h, w, rng):
    """Boxes shrunk or grown by a few pixels, some beyond the image, one empty."""
    out = boxes + rng.integers(-6, 7, boxes.shape).astype(np.float32)
    out[0] = [w + 5, h + 5, w + 9, h + 9]
    out[1] = [-20.5, -3.2, 4.7, 9.1]
    return out


@pytest.mark.parametrize("h, w, n, seed", [(96, 128, 24, 1), (61, 77, 40, 2), (120, 160, 100, 3)])
def test_label_image_equals_the_boolean_painting(h, w, n, seed):
    scene = host_scene(h, w, n, seed=seed)
    masks = scene.segmentation.masks
    rng = np.random.default_rng(seed)
    masks[3] = False  # an empty region
    masks[5] = masks[6]  # equal areas: the earlier one is drawn first
    ids = rng.permutation(np.arange(1, n + 1)).astype(np.uint32)
    ids[-1] = 65535
    for boxes in (
        None,
        scene.segmentation.boxes_xyxy,
        _cut_boxes(scene.segmentation.boxes_xyxy, h, w, rng),
    ):
        got = label_image(masks, ids, boxes)
        assert got.dtype == np.uint16 and got.shape == (h, w)
        assert np.array_equal(got, _reference(masks, ids, boxes))
    # uint8 masks and a strided view paint the same pixels
    boxes = scene.segmentation.boxes_xyxy
    ref = _reference(masks, ids, boxes)
    assert np.array_equal(label_image(masks.astype(np.uint8) * 3, ids, boxes), ref)
    wide = np.zeros((n, h, w + 9), bool)
    wide[:, :, 4 : 4 + w] = masks
    assert np.array_equal(label_image(wide[:, :, 4 : 4 + w], ids, boxes), ref)


def test_label_image_refuses_ids_beyond_16_bits_and_handles_no_regions():
    masks = np.ones((2, 3, 4), bool)
    with pytest.raises(ValueError, match="65535"):
        label_image(masks, np.array([1, 65536]))
    assert np.array_equal(
        label_image(masks[:0], np.array([], np.uint32)), np.zeros((3, 4), np.uint16)
    )
    assert np.array_equal(label_image(masks, np.array([7, 9])), np.full((3, 4), 9, np.uint16))
