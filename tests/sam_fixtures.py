"""Shared fixtures for the SAM tests: a generated ``sam_tiny_test`` checkpoint and model.

Its fixtures reach every test module through ``pytest_plugins`` in conftest.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perception_nodes.core.sam.registry import build_sam_model, make_generated_checkpoint

TINY = "sam_tiny_test"
# Mask-generator settings under which the tiny model's generated weights give masks AND some
# prompts fall below pred_iou_thresh (so skipping their upscaling is exercised).
SKIPPING_AMG_SETTINGS = dict(
    points_per_side=6,
    pred_iou_thresh=0.005,
    stability_score_thresh=0.2,
    stability_score_offset=0.05,
    box_nms_thresh=1.0,
)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Path of a seeded random ``sam_tiny_test`` state_dict (the real architecture)."""
    return make_generated_checkpoint(TINY, tmp_path_factory.mktemp("sam") / "tiny.pth", seed=0)


@pytest.fixture(scope="session")
def tiny_sam(tiny_checkpoint):
    """``segment_anything`` ``Sam`` loaded from the generated checkpoint through the loader."""
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return build_sam_model(TINY, tiny_checkpoint)


def skimage_photo(name: str, longest: int | None = None) -> np.ndarray:
    """A bundled scikit-image photo as HxWx3 uint8 RGB, optionally downscaled (longest side)."""
    import cv2
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = np.ascontiguousarray(image[:, :, :3])
    if longest is not None and max(image.shape[:2]) > longest:
        s = longest / max(image.shape[:2])
        size = (round(image.shape[1] * s), round(image.shape[0] * s))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image
