"""CLIP crops built in a few batched tensor operations (issue 17; the device path of
``ClipModel.crop_batch``, here on the CPU): PIL's own uint8 resize bit for bit, so at least as
close to open_clip's ``preprocess`` as the region-by-region host path, on real photos with
realistic, tiny, huge, border-touching and masked boxes; the same CLIP embeddings as the host
path (tiny generated CLIP: the numbers say nothing about labels, only that the input barely
changed). Printed numbers (``pytest -s``) are the report's.
"""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from classify_fixtures import tiny_clip
from PIL import Image
from test_host_clip_crops import BOXES, PHOTOS, _ellipse_masks, _reference

from perception_nodes.core.classify import clip_crops_batched
from perception_nodes.core.classify.clip_crops import crop_window, fill_colour_u8, square_crops
from perception_nodes.core.classify.clip_crops_batched import batched_crops

FILL = np.array([122, 116, 104], np.uint8)


def _pil_crops(image, windows, masks, size, fill):
    """``(N, 3, size, size)`` uint8: each window's canvas as a PIL image, PIL bicubic resize
    (open_clip's ``Resize``)."""
    out = []
    for i, (sx0, sy0, s, ix0, iy0, ix1, iy1) in enumerate(windows):
        canvas = np.empty((s, s, 3), np.uint8)
        canvas[:] = fill
        if ix1 > ix0 and iy1 > iy0:
            patch = image[iy0:iy1, ix0:ix1]
            if masks is not None:
                patch = np.where(masks[i, iy0:iy1, ix0:ix1, None], patch, fill)
            canvas[iy0 - sy0 : iy1 - sy0, ix0 - sx0 : ix1 - sx0] = patch
        resized = Image.fromarray(canvas).resize((size, size), Image.BICUBIC)
        out.append(np.asarray(resized).transpose(2, 0, 1))
    return np.stack(out)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.mark.parametrize("size", [224, 96])
@pytest.mark.parametrize("masked", [True, False])
def test_batched_crops_are_pils_resize_exactly(size, masked):
    stats = {"batched": [], "host": []}
    for photo in PHOTOS:
        image = getattr(skimage.data, photo)()
        h, w = image.shape[:2]
        boxes = np.array(BOXES[photo], dtype=np.float32)
        masks = _ellipse_masks((h, w), boxes) if masked else None
        windows = [crop_window(b, 0.1, h, w) for b in boxes]
        ref = _pil_crops(image, windows, masks, size, FILL).astype(np.float32)
        got = batched_crops(image, windows, masks, size, FILL, torch.device("cpu")).numpy()
        host = square_crops(image, windows, masks, size, FILL).astype(np.float32)
        stats["batched"].append(np.abs(got - ref).ravel())
        stats["host"].append(np.abs(host - ref).ravel())
    summary = {k: (float(np.concatenate(v).max()), float(np.concatenate(v).mean())) for k, v in stats.items()}  # fmt: skip
    print(f"\nS={size} masked={masked} grey levels vs PIL (max, mean): {summary}")
    assert summary["batched"] == (0.0, 0.0)
    assert summary["host"][0] <= 2.0  # the host path: torch's uint8 filter, within 2 levels


@pytest.mark.parametrize("masked", [True, False])
def test_crop_batch_batched_vs_open_clip_preprocess_and_host_path(clip, masked):
    """Through ``ClipModel.crop_batch`` (normalised): open_clip's own ``preprocess`` of each
    crop as a PIL image gives the same floats as the batched path; the host path differs by
    at most 2 grey levels, the batched path by none."""
    diffs = {"batched": [], "host": []}
    try:
        for photo in PHOTOS:
            image = getattr(skimage.data, photo)()
            boxes = np.array(BOXES[photo], dtype=np.float32)
            masks = _ellipse_masks(image.shape[:2], boxes) if masked else None
            ref = _reference(clip, image, boxes, masks, 0.1, clip.image_size)
            for mode, name in ((True, "batched"), (None, "host")):
                clip.batched_crops = mode
                got = clip.crop_batch(image, boxes, masks, padding=0.1)
                diffs[name].append(
                    ((got - ref).abs() * clip.std[None, :, None, None] * 255).ravel()
                )
    finally:
        clip.batched_crops = None
    summary = {k: (float(torch.cat(v).max()), float(torch.cat(v).mean())) for k, v in diffs.items()}
    print(f"\nmasked={masked} vs open_clip preprocess, grey levels (max, mean): {summary}")
    assert summary["batched"][0] < 1e-3  # float rounding of ToTensor/Normalize only
    assert summary["host"][0] <= 2.01


def test_embeddings_of_batched_and_host_crops_agree(clip):
    sims = []
    for photo in PHOTOS:
        image = getattr(skimage.data, photo)()
        boxes = np.array(BOXES[photo], dtype=np.float32)
        masks = _ellipse_masks(image.shape[:2], boxes)
        host = clip.encode_image_crops(image, boxes, masks)
        clip.batched_crops = True
        try:
            batched = clip.encode_image_crops(image, boxes, masks, batch_size=4)
        finally:
            clip.batched_crops = None
        sims.append((torch.from_numpy(host) * torch.from_numpy(batched)).sum(-1))
    sims = torch.cat(sims)
    print(f"\ncosine(batched, host) of CLIP image embeddings: min {float(sims.min()):.7f}, "
          f"mean {float(sims.mean()):.7f}")  # fmt: skip
    assert float(sims.min()) >= 0.9999


def test_edges_tiny_huge_outside_and_empty_masks(clip):
    image = skimage.data.chelsea()
    h, w = image.shape[:2]
    boxes = np.array(
        [[0, 0, 0, 0], [450, 299, 451, 300], [-50, -50, 10, 10], [-400, -300, -350, -250],
         [500, 350, 700, 500], [-200, -200, 800, 600], [100, 100, 101, 250], [3, 3, 4, 4]],
        dtype=np.float32,
    )  # fmt: skip
    masks = _ellipse_masks((h, w), boxes)
    masks[0] = False
    windows = [crop_window(b, 0.1, h, w) for b in boxes]
    for m in (masks, None):
        for size in (224, 31):
            got = batched_crops(image, windows, m, size, FILL, torch.device("cpu")).numpy()
            assert np.array_equal(got, _pil_crops(image, windows, m, size, FILL))
    # nothing kept: all fill, as the host path
    empty = np.zeros((len(boxes), h, w), bool)
    clip.batched_crops = True
    try:
        got = clip.crop_batch(image, boxes, empty)
        assert clip.crop_batch(image, np.zeros((0, 4)), empty[:0]).shape == (0, 3, 96, 96)
    finally:
        clip.batched_crops = None
    fill = (torch.from_numpy(fill_colour_u8(clip.mean)).float() / 255 - clip.mean) / clip.std
    assert torch.equal(got, fill[None, :, None, None].expand_as(got))


def test_groups_split_and_order_kept(monkeypatch):
    """Many regions of a generated scene in several padded stacks (a small stack bound): the
    same crops as one region at a time, each in its region's place."""
    from perception_nodes.tools.host_scenes import host_scene

    scene = host_scene(120, 160, 14, seed=2)
    seg = scene.segmentation
    windows = [crop_window(b, 0.1, 120, 160) for b in seg.boxes_xyxy]
    cpu = torch.device("cpu")
    whole = batched_crops(scene.image, windows, seg.masks, 32, FILL, cpu)
    monkeypatch.setattr(clip_crops_batched, "STACK_ELEMENTS", 3 * 80 * 80)
    assert len(clip_crops_batched._groups(*_extents(windows))) > 3
    split = batched_crops(scene.image, windows, seg.masks, 32, FILL, cpu)
    one_by_one = [batched_crops(scene.image, [wi], seg.masks[i : i + 1], 32, FILL, cpu)
                  for i, wi in enumerate(windows)]  # fmt: skip
    assert torch.equal(whole, split) and torch.equal(whole, torch.cat(one_by_one))
    assert np.array_equal(whole.numpy(), _pil_crops(scene.image, windows, seg.masks, 32, FILL))


def _extents(windows):
    win = np.asarray(windows, dtype=np.int64)
    return win[:, 2], np.stack([win[:, 6] - win[:, 4], win[:, 5] - win[:, 3]], 1).clip(min=1)


def test_out_buffer_and_bad_input(clip):
    image = skimage.data.coffee()
    boxes = np.array(BOXES["coffee"], dtype=np.float32)
    out = np.zeros((len(boxes), 3, 96, 96), np.float32)
    clip.batched_crops = True
    try:
        got = clip.crop_batch(image, boxes, None, out=out)
        assert np.shares_memory(got.numpy(), out) and torch.equal(
            got, clip.crop_batch(image, boxes)
        )
        with pytest.raises(Exception, match="masks must be"):
            clip.crop_batch(image, boxes, np.zeros((2, 5, 5), bool))
    finally:
        clip.batched_crops = None


def test_large_downscale_in_float64_equals_pil():
    """Windows over MAX_DOWNSCALE x the output size (float32 sums could lose integers there)
    are resized in float64: still PIL's crop bit for bit."""
    image = skimage.data.coffee()
    h, w = image.shape[:2]
    boxes = np.array([[0, 0, 600, 400], [-300, -300, 900, 700], [100, 100, 120, 130]], np.float32)
    windows = [crop_window(b, 0.1, h, w) for b in boxes]
    assert max(wi[2] for wi in windows) > clip_crops_batched.MAX_DOWNSCALE * 12
    for masks in (None, _ellipse_masks((h, w), boxes)):
        got = batched_crops(image, windows, masks, 12, FILL, torch.device("cpu")).numpy()
        assert np.array_equal(got, _pil_crops(image, windows, masks, 12, FILL))


@pytest.mark.parametrize("size", [224, 97])
def test_random_windows_equal_pil(size):
    """Seeded random boxes of every scale (1 px to past the photo), random masks: PIL's
    resize bit for bit (coefficients at many downscale and upscale factors)."""
    rng = np.random.default_rng(size)
    image = skimage.data.astronaut()
    h, w = image.shape[:2]
    centre = rng.uniform(-40, 550, (40, 2))
    half = np.exp(rng.uniform(0, np.log(400), (40, 2)))
    boxes = np.concatenate([centre - half, centre + half], 1).astype(np.float32)
    masks = rng.random((40, h, w)) < rng.uniform(0.2, 1.0, (40, 1, 1))
    windows = [crop_window(b, rng.uniform(0, 0.5), h, w) for b in boxes]
    got = batched_crops(image, windows, masks, size, FILL, torch.device("cpu")).numpy()
    assert np.array_equal(got, _pil_crops(image, windows, masks, size, FILL))
