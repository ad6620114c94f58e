"""CLIP crops written into a reused buffer (issue 17): ``ClipModel.encode_image_crops`` on the
CPU builds its crops chunk by chunk into this thread's reused float32 buffer instead of a fresh
array per frame. The embeddings are those of the previous code (the whole crop batch built
fresh, then encoded in the same chunks) bit for bit, frame after frame, and a buffer is never
shared between threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from classify_fixtures import tiny_clip

from perception_nodes.core.classify.clip_crops import reused_crop_buffer
from perception_nodes.core.classify.clip_model import ClipModelError
from perception_nodes.tools.host_scenes import host_scene


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clip"))


def _previous(clip, image, boxes, masks, batch_size):
    """``encode_image_crops`` before: one fresh crop batch, encoded ``batch_size`` at a time."""
    batch = clip.crop_batch(image, boxes, masks)
    out = [F.normalize(clip.model.encode_image(batch[i : i + batch_size]).float(), dim=-1)
           for i in range(0, len(batch), batch_size)]  # fmt: skip
    return torch.cat(out).numpy()


@torch.no_grad()
def test_embeddings_equal_previous_code_frame_after_frame(clip):
    frames = [host_scene(96, 128, n, seed=n) for n in (11, 5, 9)]  # buffer grows, then shrinks
    for scene in frames + frames[:1]:  # the first frame again, after the buffer held others
        seg = scene.segmentation
        for masks in (seg.masks, None):
            for batch_size in (4, 64):
                got = clip.encode_image_crops(scene.image, seg.boxes_xyxy, masks, 0.1, batch_size)
                want = _previous(clip, scene.image, seg.boxes_xyxy, masks, batch_size)
                assert np.array_equal(got, want)
    empty = clip.encode_image_crops(frames[0].image, np.zeros((0, 4)), None)
    assert empty.shape == (0, clip.embed_dim)


def test_crop_batch_into_out_equals_fresh_and_shares_it(clip):
    scene = host_scene(96, 128, 7, seed=3)
    seg, size = scene.segmentation, clip.image_size
    out = np.full((7, 3, size, size), np.nan, np.float32)
    got = clip.crop_batch(scene.image, seg.boxes_xyxy, seg.masks, out=out)
    assert torch.equal(got, clip.crop_batch(scene.image, seg.boxes_xyxy, seg.masks))
    assert np.shares_memory(got.numpy(), out)
    for bad in (out[:6], out.astype(np.float64), out[:, :, :, ::-1]):
        with pytest.raises(ValueError, match="out must be"):
            clip.crop_batch(scene.image, seg.boxes_xyxy, seg.masks, out=bad)


def test_mismatched_masks_are_refused_before_chunking(clip):
    scene = host_scene(96, 128, 9, seed=2)
    seg = scene.segmentation
    with pytest.raises(ClipModelError, match="masks must be"):
        clip.encode_image_crops(scene.image, seg.boxes_xyxy, seg.masks[:8], 0.1, batch_size=4)
    with pytest.raises(ClipModelError, match="image must be"):  # also without regions
        clip.encode_image_crops(scene.image.astype(np.float32), np.zeros((0, 4)), None)


def test_reused_buffer_is_per_thread_and_grows():
    small = reused_crop_buffer(2, 8)
    assert small.shape == (2, 3, 8, 8) and small.dtype == np.float32
    big = reused_crop_buffer(5, 8)
    assert np.shares_memory(reused_crop_buffer(3, 8), big)  # kept and reused once grown
    other = {}
    t = threading.Thread(target=lambda: other.setdefault("buf", reused_crop_buffer(5, 8)))
    t.start()
    t.join()
    assert not np.shares_memory(other["buf"], big)
