"""The CUDA path under test (issue 17): skipped without CUDA; ``pytest -m gpu`` selects it.

Run on a GPU machine by ``scripts/device_check.sh`` (which sets ``PN_TEST_GPU=1``: conftest
then leaves the GPU visible). Test-size models with generated weights (the real architectures,
seeded): fp32 on CUDA against the CPU (TF32 off), reduced precisions and fp32 against the
official ``SamAutomaticMaskGenerator`` on CUDA, the batched multi-camera encoder, CLIP crops on
the GPU, and no host synchronisation inside the per-region loops
(``torch.cuda.set_sync_debug_mode("error")`` raises on any). Peak GPU memory per frame is
written to ``$PN_GPU_REPORT`` (JSON lines) when set, and printed.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch
from sam_fixtures import TINY, skimage_photo
from segment_anything import SamAutomaticMaskGenerator

from perception_nodes.core.config import PRECISIONS, PipelineConfig
from perception_nodes.core.pipeline import Pipeline
from perception_nodes.core.sam.amg import MaskGenerator
from perception_nodes.core.sam.postprocess import crop_to_boxes
from perception_nodes.core.sam.registry import build_sam_model
from perception_nodes.core.sam.torch_backend import TorchSamBackend

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (PN_TEST_GPU=1)"),
]

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
PARITY = dict(  # as tests/test_sam_amg.py (generated weights: see its docstring)
    points_per_side=8,
    points_per_batch=64,
    pred_iou_thresh=0.005,
    stability_score_thresh=0.2,
    stability_score_offset=0.05,
    box_nms_thresh=1.0,
    min_mask_region_area=10,
)
SMALL_PIPELINE = {  # pn-demo --quick's models: seconds on a GPU
    "sam.model": TINY,
    "sam.backend": "torch",
    "clip.model": "pn-clip-tiny-test",
    "amg.points_per_side": 8,
    "amg.pred_iou_thresh": 0.0,
    "amg.stability_score_thresh": 0.0,
    "amg.max_regions": 32,
    "relations.score_threshold": 0.0,
}


def report(record: dict) -> None:
    """Print ``record`` and append it to ``$PN_GPU_REPORT`` (device_check.sh's summary)."""
    print(json.dumps(record))
    path = os.environ.get("PN_GPU_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


@pytest.fixture(autouse=True)
def exact_fp32():
    """fp32 means fp32 on CUDA too (TF32 matmuls would not match the CPU)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    fa = torch.from_numpy(a.reshape(len(a), -1)).float()
    fb = torch.from_numpy(b.reshape(len(b), -1)).float()
    inter = fa @ fb.T
    return (inter / (fa.sum(1)[:, None] + fb.sum(1)[None] - inter).clamp(min=1)).numpy()


def _pipeline(tmp_path, device: str, precision: str = "fp32") -> Pipeline:
    flat = dict(SMALL_PIPELINE, **{"sam.device": device, "sam.precision": precision})
    flat["weights.cache_dir"] = str(tmp_path / "cache")
    return Pipeline.load(PipelineConfig.from_flat(flat))


def test_pipeline_on_cuda_fp32_matches_cpu(tmp_path):
    cpu, cuda = _pipeline(tmp_path, "cpu"), _pipeline(tmp_path, "cuda")
    for name in PHOTOS:
        image = skimage_photo(name, longest=320)
        ref, _ = cpu.process(image)
        torch.cuda.reset_peak_memory_stats()
        got, _ = cuda.process(image)
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
        report({"test": "pipeline_fp32", "photo": name, "regions": len(got.segmentation),
                "peak_gpu_mb_per_frame": round(peak_mb, 1)})  # fmt: skip
        assert len(got.segmentation) == len(ref.segmentation) > 0
        iou = _iou(ref.segmentation.masks, got.segmentation.masks)
        match = iou.argmax(1)
        assert (iou.max(1) >= 0.99).all(), f"{name}: IoU {iou.max(1).min():.3f}"
        ref_idx, got_idx = ref.labels.label_index, got.labels.label_index[match]
        scores = np.sort(ref.labels.topk_score, axis=1)
        clear = scores[:, -1] - scores[:, -2] > 1e-3  # not a near tie on the CPU already
        assert np.array_equal(ref_idx[clear], got_idx[clear])


def _official_matched(image, ours, official) -> float:
    off = np.stack([r["segmentation"] for r in official])
    return float((_iou(off, ours.masks).max(1) >= 0.9).mean())


@pytest.mark.parametrize("precision", PRECISIONS)
def test_official_generator_parity_on_cuda(tiny_checkpoint, precision):
    """fp32: the parity of tests/test_sam_amg.py on CUDA; bf16/fp16 (autocast): the same bar,
    >= 95 % of the official fp32 masks matched at IoU 0.9."""
    sam = build_sam_model(TINY, tiny_checkpoint).to("cuda")
    official_gen = SamAutomaticMaskGenerator(sam, **PARITY)
    ours_gen = MaskGenerator(TorchSamBackend(sam, device="cuda", precision=precision), **PARITY)
    for name in PHOTOS:
        image = skimage_photo(name, longest=256)
        official = official_gen.generate(image)
        torch.cuda.reset_peak_memory_stats()
        ours = ours_gen.generate(image)
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
        matched = _official_matched(image, ours, official)
        report({"test": f"amg_parity_{precision}", "photo": name, "official": len(official),
                "ours": len(ours), "matched_iou_0.9": round(matched, 3),
                "peak_gpu_mb_per_frame": round(peak_mb, 1)})  # fmt: skip
        assert len(official) >= 10
        assert matched >= 0.95, f"{name} {precision}: matched {matched:.1%}"


def test_batched_multicamera_encoder_on_cuda(tmp_path):
    pipeline = _pipeline(tmp_path, "cuda")
    images = [skimage_photo(n, longest=320) for n in ("astronaut", "coffee")]
    alone = [pipeline.process(im)[0].segmentation for im in images]
    together = pipeline.encode_together(images)
    for seg, image in zip(alone, together):
        got = pipeline.process(image)[0].segmentation
        assert len(got) == len(seg) > 0
        assert (_iou(seg.masks, got.masks).max(1) >= 0.99).all()


def test_clip_crops_on_gpu_match_cpu_without_host_syncs(tmp_path):
    from classify_fixtures import tiny_clip

    from perception_nodes.tools.host_scenes import host_scene

    clip = tiny_clip(tmp_path)
    scene = host_scene(480, 640, 50, seed=3)
    seg = scene.segmentation
    clip.batched_crops = True  # what runs on CUDA (clip_crops_batched), here on the CPU
    ref = clip.crop_batch(scene.image, seg.boxes_xyxy, seg.masks)
    clip.batched_crops = None
    clip.model.to("cuda")
    clip.device = torch.device("cuda")
    clip.crop_batch(scene.image, seg.boxes_xyxy, seg.masks)  # warm-up (pinned pool, kernels)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host synchronisation below raises
    try:
        got = clip.crop_batch(scene.image, seg.boxes_xyxy, seg.masks)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.testing.assert_close(got.cpu(), ref, atol=2e-5, rtol=1e-5)
    emb = clip.encode_image_crops(scene.image, seg.boxes_xyxy, seg.masks)
    assert emb.shape == (len(seg), clip.embed_dim) and np.isfinite(emb).all()


def test_box_crops_of_surviving_masks_without_host_syncs():
    masks = torch.rand(64, 480, 640, device="cuda") > 0.5
    masks[:, :10] = False
    from segment_anything.utils.amg import batched_mask_to_box

    boxes = batched_mask_to_box(masks)
    coords = boxes.tolist()  # the one read per batch (crop_to_boxes does it itself otherwise)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        crops = crop_to_boxes(masks, coords)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(c.shape[0] <= 470 for c in crops)


def test_sync_count_of_a_frame_does_not_grow_with_its_regions(tmp_path):
    """Host synchronisations of one frame counted (torch's sync debug mode 'warn'): those per
    decoder batch and per frame only, so a frame with 4x the prompts (one decoder batch either
    way) and more regions has about as many syncs, not one more per region."""
    image = skimage_photo("astronaut", longest=320)
    counts = {}
    for side in (4, 8):
        flat = dict(SMALL_PIPELINE, **{"amg.points_per_side": side, "amg.points_per_batch": 256,
                                       "amg.max_regions": 0, "sam.device": "cuda"})  # fmt: skip
        flat["weights.cache_dir"] = str(tmp_path / "cache")
        pipeline = Pipeline.load(PipelineConfig.from_flat(flat))
        pipeline.process(image)  # warm-up
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                result, _ = pipeline.process(image)
            finally:
                torch.cuda.set_sync_debug_mode(0)
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        counts[side] = (syncs, len(result.segmentation))
    report({"test": "syncs_per_frame", "by_points_per_side": counts})
    (s4, n4), (s8, n8) = counts[4], counts[8]
    assert n8 > n4, counts
    assert s8 - s4 < n8 - n4, f"syncs grew with the regions: {counts}"
