"""Frames of several cameras that arrive together share one SAM encoder batch, with the same
result as encoding them one by one."""

from __future__ import annotations

import numpy as np
import torch
from sam_fixtures import TINY, skimage_photo

from perception_nodes.core.sam.amg import MaskGenerator
from perception_nodes.core.sam.backends import create_backend
from perception_nodes.core.sam.registry import get_spec


class CountingBackend:
    """Wraps a real backend and records the batch size of every encoder call."""

    def __init__(self, backend):
        self._backend, self.encoder_batches = backend, []

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        self.encoder_batches.append(int(images.shape[0]))
        return self._backend.encode(images)

    def __getattr__(self, name):
        return getattr(self._backend, name)


def _generator(checkpoint) -> tuple[MaskGenerator, CountingBackend]:
    backend = CountingBackend(create_backend("torch", model=TINY, checkpoint=checkpoint))
    gen = MaskGenerator(
        backend,
        get_spec(TINY),
        points_per_side=3,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        max_regions=8,
    )
    return gen, backend


def test_embed_batch_encodes_once_and_matches_one_by_one(tiny_checkpoint):
    images = [skimage_photo("astronaut", 96), skimage_photo("rocket", 80)]
    single, single_backend = _generator(tiny_checkpoint)
    expected = [single.generate(im) for im in images]
    assert single_backend.encoder_batches == [1, 1]

    batched, backend = _generator(tiny_checkpoint)
    rgbs = batched.embed_batch(images)
    got = [batched.generate(rgb) for rgb in rgbs]
    assert backend.encoder_batches == [2]  # one encoder call for both
    assert batched.timings.encoder > 0  # each frame carries its share
    for e, g in zip(expected, got):
        assert g.image_size == e.image_size and len(g) == len(e) >= 1
        np.testing.assert_allclose(g.predicted_iou, e.predicted_iou, atol=1e-4)
        agree = (g.masks == e.masks).mean()
        assert agree > 0.999, agree
    # an embedding is used once: generating again on the same array (no cache hit) re-encodes
    batched.generate(images[0].copy())
    assert backend.encoder_batches == [2, 1]
