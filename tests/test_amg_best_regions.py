"""``amg.max_regions`` picks the best regions before the masks are copied to the host: the
regions, masks and every per-region array equal those of selecting after the copy (the code
before), and a frame with fewer regions is untouched."""

from __future__ import annotations

import numpy as np
import pytest
from sam_fixtures import TINY, skimage_photo

from perception_nodes.core.sam.amg import MaskGenerator
from perception_nodes.core.sam.backends import create_backend
from perception_nodes.core.sam.registry import get_spec

FIELDS = ("masks", "boxes_xyxy", "areas", "predicted_iou", "stability_score", "tokens",
          "point_coords")  # fmt: skip


@pytest.fixture(scope="module")
def backend(tiny_checkpoint):
    return create_backend("torch", model=TINY, checkpoint=tiny_checkpoint)


def _generator(backend, min_area=0) -> MaskGenerator:
    """Every decoded mask survives (no thresholds, no NMS): many more regions than a cap."""
    return MaskGenerator(backend, get_spec(TINY), points_per_side=3, pred_iou_thresh=0.0,
                         stability_score_thresh=0.0, box_nms_thresh=1.0,
                         min_mask_region_area=min_area)  # fmt: skip


def _selected_after_copy(seg, k):
    """The selection as generate made it after to_segmentation (before this change)."""
    order = np.argsort(-seg.predicted_iou, kind="stable")[:k]
    return seg.select(np.sort(order))


def _assert_same(got, expected) -> None:
    assert len(got) == len(expected) and got.image_size == expected.image_size
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(got, field), getattr(expected, field), err_msg=field)


@pytest.mark.parametrize("photo", ["astronaut", "coffee"])
def test_best_regions_before_the_host_copy_equal_selection_after(backend, photo):
    gen = _generator(backend)
    gen.set_image(skimage_photo(photo, 128))  # one encoding, several generate calls
    everything = gen.generate()
    k = max(1, len(everything) // 3)
    assert len(everything) > k  # the cap really drops regions here
    gen.max_regions = k
    _assert_same(gen.generate(), _selected_after_copy(everything, k))
    gen.max_regions = len(everything)  # a cap the frame does not reach changes nothing
    _assert_same(gen.generate(), everything)


def test_small_region_cleanup_still_caps_after_it(backend):
    """With ``min_mask_region_area`` the cleanup can drop regions, so the cap stays after it."""
    gen = _generator(backend, min_area=20)
    gen.set_image(skimage_photo("astronaut", 128))
    cleaned = gen.generate()
    k = max(1, len(cleaned) // 2)
    gen.max_regions = k
    _assert_same(gen.generate(), _selected_after_copy(cleaned, k))
