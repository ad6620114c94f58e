"""``encode_masks`` (all masks of a frame in one buffer; issue 17) gives pycocotools' counts for
every mask of a stack, whatever the stack holds: empty masks first, between and last, a stack of
only empty masks, full masks and full-height columns (runs that go on at the next column's top),
noise, 1-pixel masks, with tight, loose or no boxes."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from perception_nodes.core.output.rle import _decompress_counts, encode_masks, tight_boxes
from perception_nodes.tools.host_scenes import host_scene


def _coco_counts(mask: np.ndarray) -> list[int]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))[:, :, None])[0]
    return _decompress_counts(rle["counts"])


def _stack(h: int, w: int, seed: int) -> np.ndarray:
    """Scene masks with empty ones around and between, full, columns, noise, single pixels."""
    scene = host_scene(h, w, 12, seed=seed).segmentation.masks
    rng = np.random.default_rng(seed)
    empty = np.zeros((1, h, w), bool)
    full = np.ones((1, h, w), bool)
    columns = np.zeros((1, h, w), bool)
    columns[0, :, 2:5] = True
    columns[0, :, w - 1] = True
    noise = rng.random((2, h, w)) < 0.3
    pixels = np.zeros((3, h, w), bool)
    pixels[0, 0, 0] = pixels[1, h - 1, w - 1] = pixels[2, h // 2, w // 3] = True
    return np.concatenate([empty, scene[:6], empty, full, columns, noise, empty, scene[6:],
                           pixels, empty])  # fmt: skip


@pytest.mark.parametrize("h, w, seed", [(48, 64, 1), (37, 53, 2), (120, 160, 3)])
def test_encode_masks_equals_pycocotools_on_mixed_stacks(h, w, seed):
    masks = _stack(h, w, seed)
    want = [_coco_counts(m) for m in masks]
    tight = tight_boxes(masks).astype(np.float32)
    loose = tight + np.float32([-1.5, -2.25, 3.5, 0.75])
    for boxes in (None, tight, loose):
        assert encode_masks(masks, boxes) == want


def test_stacks_of_only_empty_masks_and_of_one_mask():
    empty = np.zeros((4, 9, 7), bool)
    assert encode_masks(empty) == [[63]] * 4
    assert encode_masks(empty, np.zeros((4, 4), np.float32)) == [[63]] * 4
    one = host_scene(40, 30, 3).segmentation.masks[2:3]
    assert encode_masks(one, tight_boxes(one)) == [_coco_counts(one[0])]
