"""CLIP crops built on CUDA in a few batched operations (issue 17): skipped without CUDA;
``pytest -m gpu`` selects it (``scripts/device_check.sh`` sets ``PN_TEST_GPU=1``).

The device path (:mod:`perception_nodes.core.classify.clip_crops_batched`) on CUDA gives the
same uint8 crops as on the CPU, which are PIL's (tests/test_host_crops_batched.py), with no
host synchronisation (``torch.cuda.set_sync_debug_mode("error")`` raises on any), TF32 on or
off (the matmuls are exact either way); ``encode_image_crops`` on CUDA uses it. Peak GPU memory
of the crops of a 1280x720 frame with 100 regions is reported.
"""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from classify_fixtures import tiny_clip
from test_gpu_pipeline import report
from test_host_clip_crops import BOXES, PHOTOS, _ellipse_masks

from perception_nodes.core.classify.clip_crops import crop_window
from perception_nodes.core.classify.clip_crops_batched import batched_crops
from perception_nodes.tools.host_scenes import host_scene

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (PN_TEST_GPU=1)"),
]

FILL = np.array([122, 116, 104], np.uint8)


@pytest.mark.parametrize("tf32", [False, True])
@pytest.mark.parametrize("masked", [True, False])
def test_device_crops_equal_cpu_crops_on_photos(masked, tf32):
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        for photo in PHOTOS:
            image = getattr(skimage.data, photo)()
            h, w = image.shape[:2]
            boxes = np.array(BOXES[photo], dtype=np.float32)
            masks = _ellipse_masks((h, w), boxes) if masked else None
            windows = [crop_window(b, 0.1, h, w) for b in boxes]
            for size in (224, 96):
                cpu = batched_crops(image, windows, masks, size, FILL, torch.device("cpu"))
                gpu = batched_crops(image, windows, masks, size, FILL, torch.device("cuda"))
                assert torch.equal(gpu.cpu(), cpu), (photo, size)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("hwn", [(480, 640, 50), (720, 1280, 100)])
def test_crop_batch_on_cuda_without_host_syncs(tmp_path, hwn):
    h, w, n = hwn
    clip = tiny_clip(tmp_path)
    native, clip.image_size = clip.image_size, 224  # ViT-B-16's crops (as pn-bench-host)
    scene = host_scene(h, w, n, seed=5)
    seg = scene.segmentation
    clip.batched_crops = True  # the device path, on the CPU: the reference
    try:
        ref = clip.crop_batch(scene.image, seg.boxes_xyxy, seg.masks)
    finally:
        clip.batched_crops = None
    clip.model.to("cuda")
    clip.device = torch.device("cuda")
    clip.crop_batch(scene.image, seg.boxes_xyxy, seg.masks)  # warm-up (pinned pool, kernels)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    torch.cuda.set_sync_debug_mode("error")  # any host synchronisation below raises
    try:
        got = clip.crop_batch(scene.image, seg.boxes_xyxy, seg.masks)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    report({"test": "clip_crops_batched", "size": f"{w}x{h}", "regions": len(seg),
            "peak_gpu_mb": round(peak_mb, 1)})  # fmt: skip
    assert torch.equal(got.cpu(), ref)
    clip.batched_crops = False  # the host path on a GPU (uint8 crops copied): <= 2 levels off
    try:
        host = clip.crop_batch(scene.image, seg.boxes_xyxy, seg.masks)
    finally:
        clip.batched_crops = None
    grey = (host - got).abs().cpu() * clip.std[None, :, None, None] * 255
    assert float(grey.max()) <= 2.01
    clip.image_size = native  # the tiny tower's own input size
    emb = clip.encode_image_crops(scene.image, seg.boxes_xyxy, seg.masks)
    assert emb.shape == (len(seg), clip.embed_dim) and np.isfinite(emb).all()
