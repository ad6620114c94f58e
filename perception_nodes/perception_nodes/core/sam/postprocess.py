"""From SAM decoder outputs to a :class:`~perception_nodes.core.types.Segmentation`.

Small pure functions shared by segment-everything (:mod:`perception_nodes.core.sam.amg`) and
the prompted API (:mod:`perception_nodes.core.sam.prompted`), in the spirit of
``segment_anything/utils/amg.py`` (whose helpers they reuse):
- :func:`upscale_logits`: ``(N, h, w)`` low-res logits -> ``(N, H, W)`` logits over the
  original image (``Sam.postprocess_masks``, upscaling only the un-padded part);
- :func:`masks_from_logits`: the same in chunks -> boolean masks and stability scores;
- :func:`kept_logits`: the low-res logits of the masks that passed the predicted-IoU filter;
- :func:`crop_to_boxes`: masks -> tight box crops (how surviving masks are kept, compact);
- :func:`to_segmentation`: a ``MaskData`` of surviving masks -> ``Segmentation`` (host numpy);
- :func:`postprocess_small_regions`: hole/island clean-up + NMS, like
  ``SamAutomaticMaskGenerator.postprocess_small_regions``.

Masks are ``(N, H, W)`` bool over the original image (H, W); boxes are XYXY pixels with an
exclusive max corner in the returned ``Segmentation`` (``batched_mask_to_box`` gives inclusive).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.utils.amg import (
    MaskData,
    batched_mask_to_box,
    calculate_stability_score,
    remove_small_regions,
)
from torchvision.ops.boxes import batched_nms

from perception_nodes.core.sam.backend import DecoderOutput
from perception_nodes.core.types import Segmentation

MASK_THRESHOLD = 0.0  # Sam.mask_threshold
UPSCALE_CHUNK = 64  # masks upscaled at once: bounds the (chunk, H, W) float peak memory
# On the CPU also at most this many upscaled logits (float32) at once: 64 masks upscaled to
# 1024x768 were 200 MB of floats plus as much again of temporaries in the stability score
# (measured: a frame's peak RSS grew by 0.4 GB for 36 prompts); 8 Mi values = 32 MB.
CPU_UPSCALE_VALUES = 8 * 2**20


def upscale_logits(
    logits: torch.Tensor, input_size: int, resized_hw: tuple[int, int], out_hw: tuple[int, int]
) -> torch.Tensor:
    """``Sam.postprocess_masks`` for ``(N, h, w)`` low-res logits -> ``(N, H, W)`` float.

    Only the rows/columns of the low-res logits that reach the un-padded region are upscaled.
    Bilinear (align_corners=False) x``f`` upscaling of pixel ``i`` reads low-res pixels
    ``floor((i + .5) / f - .5)`` and the next, so for ``i < h`` everything read lies below
    ``ceil(h / f) + 1``; cropping there first gives the same values as the full
    ``input_size`` upscale followed by the crop.
    """
    lr = logits.shape[-1]
    f = input_size // lr
    h, w = resized_hw
    hc, wc = min(lr, math.ceil(h / f) + 1), min(lr, math.ceil(w / f) + 1)
    x = logits[:, None, :hc, :wc]
    x = F.interpolate(x, size=(hc * f, wc * f), mode="bilinear", align_corners=False)[..., :h, :w]
    if (h, w) != tuple(out_hw):
        x = F.interpolate(x, size=tuple(out_hw), mode="bilinear", align_corners=False)
    return x[:, 0]


def masks_from_logits(
    logits: torch.Tensor,
    input_size: int,
    resized_hw: tuple[int, int],
    out_hw: tuple[int, int],
    stability_score_offset: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, h, w)`` low-res logits -> bool masks ``(N, H, W)`` and stability scores ``(N,)``.

    Upscales a chunk of masks at a time (:func:`_upscale_chunk`) with :func:`upscale_logits` (``resized_hw``:
    the image's size in the model's input frame, ``out_hw``: the original (H, W)), on the
    logits' device; the stability score is ``segment_anything``'s at :data:`MASK_THRESHOLD`.
    """
    masks, stability = [], []
    chunk = _upscale_chunk(logits, input_size, resized_hw)
    for i in range(0, logits.shape[0], chunk):
        up = upscale_logits(logits[i : i + chunk], input_size, resized_hw, out_hw)
        stability.append(calculate_stability_score(up, MASK_THRESHOLD, stability_score_offset))
        masks.append(up > MASK_THRESHOLD)
    if not masks:
        h, w = out_hw
        return (
            torch.zeros((0, h, w), dtype=torch.bool, device=logits.device),
            torch.zeros((0,), device=logits.device),
        )
    return torch.cat(masks), torch.cat(stability)


def _upscale_chunk(logits: torch.Tensor, input_size: int, resized_hw: tuple[int, int]) -> int:
    """Masks per upscaling call: :data:`UPSCALE_CHUNK`, fewer on the CPU for large images
    (:data:`CPU_UPSCALE_VALUES`); the values are the same whatever the chunk."""
    if logits.device.type != "cpu":
        return UPSCALE_CHUNK
    f = input_size // max(1, logits.shape[-1])
    values = (resized_hw[0] + 2 * f) * (resized_hw[1] + 2 * f)  # the cropped upscale's size
    return max(1, min(UPSCALE_CHUNK, CPU_UPSCALE_VALUES // values))


def kept_logits(out: DecoderOutput, keep: torch.Tensor | None) -> torch.Tensor:
    """``(N, h, w)`` low-res logits of the kept masks (``keep (P, M)``, None = all), in the
    prompt-major order of ``MaskData.filter``; ``out.logit_rows`` (prompts whose logits the
    backend computed) must include every prompt with a kept mask."""
    logits = out.low_res_logits
    if out.logit_rows is not None:
        covered = torch.zeros(out.iou_predictions.shape[0], dtype=torch.bool, device=logits.device)
        covered[out.logit_rows] = True
        if keep is None or bool((keep.any(1) & ~covered).any()):
            raise RuntimeError("the SAM backend skipped the logits of prompts with kept masks")
        keep = keep[out.logit_rows]
    return logits.flatten(0, 1) if keep is None else logits[keep]


def crop_to_boxes(masks: torch.Tensor, boxes: torch.Tensor | list) -> list[torch.Tensor]:
    """``(N, H, W)`` bool masks and their ``(N, 4)`` inclusive XYXY boxes (``batched_mask_to_box``)
    -> N tight crops ``masks[i, y0:y1 + 1, x0:x1 + 1]``, copied so the full masks can be freed.

    Surviving masks are kept this way until :func:`to_segmentation` (as the official generator
    keeps them as RLE): a frame's memory grows with the masks' boxes, not N full images. The
    boxes are read to the host once (one synchronisation per batch, none per region); an empty
    mask (box 0) gives a 1x1 crop of False. ``boxes`` may also be those integer boxes already
    on the host (a list of 4-lists): then nothing here synchronises with the device.
    """
    coords = boxes.to(torch.int64).tolist() if isinstance(boxes, torch.Tensor) else boxes
    return [masks[i, y0 : y1 + 1, x0 : x1 + 1].clone() for i, (x0, y0, x1, y1) in enumerate(coords)]


def _paste_crops(
    crops: list[torch.Tensor], boxes_incl: np.ndarray, h: int, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """Full ``(N, H, W)`` bool masks and ``(N,)`` int64 areas of box crops placed at the top-left
    corners of ``boxes_incl`` (N, 4). All crops come to the host in ONE copy."""
    n = len(crops)
    masks = np.zeros((n, h, w), dtype=bool)  # untouched pages stay unallocated zero pages
    areas = np.zeros(n, dtype=np.int64)
    if n == 0:
        return masks, areas
    flat = torch.cat([c.reshape(-1) for c in crops]).cpu().numpy()
    start = 0
    for i, crop in enumerate(crops):
        ch, cw = crop.shape
        x0, y0 = int(boxes_incl[i, 0]), int(boxes_incl[i, 1])
        piece = flat[start : start + ch * cw].reshape(ch, cw)
        masks[i, y0 : y0 + ch, x0 : x0 + cw] = piece
        areas[i] = np.count_nonzero(piece)
        start += ch * cw
    return masks, areas


def to_segmentation(data: MaskData, orig_size: tuple[int, int], token_dim: int) -> Segmentation:
    """Copy the surviving masks to the host as a ``Segmentation`` over ``orig_size`` (H, W).

    ``data`` holds ``boxes (N, 4)`` inclusive XYXY (from ``batched_mask_to_box``) and the masks
    either as ``crops`` (N tight box crops, :func:`crop_to_boxes`) or ``masks (N, H, W)`` bool,
    plus ``iou_preds``, ``stability_score``, ``tokens (N, token_dim)`` and ``points (N, 2)``;
    the boxes become exclusive XYXY (an empty mask gets box 0).
    """
    h, w = orig_size
    n = len(data["iou_preds"]) if "iou_preds" in data._stats else 0
    if n == 0:
        return Segmentation.empty((h, w), token_dim=token_dim)
    boxes = data["boxes"].to(torch.int64).cpu().numpy()
    if "crops" in data._stats:
        masks, areas = _paste_crops(data["crops"], boxes, h, w)
    else:
        full = data["masks"]
        masks = full.cpu().numpy()
        areas = np.count_nonzero(masks.reshape(n, -1), axis=1).astype(np.int64)
    boxes_excl = (boxes + np.array([0, 0, 1, 1])).astype(np.float32)
    boxes_excl[areas == 0] = 0.0
    return Segmentation(
        masks=masks,
        boxes_xyxy=boxes_excl,
        areas=areas,
        predicted_iou=data["iou_preds"].float().cpu().numpy(),
        stability_score=data["stability_score"].float().cpu().numpy(),
        tokens=data["tokens"].float().cpu().numpy(),
        point_coords=data["points"].float().cpu().numpy(),
        image_size=(h, w),
    )


def postprocess_small_regions(seg: Segmentation, min_area: int, nms_thresh: float) -> Segmentation:
    """``SamAutomaticMaskGenerator.postprocess_small_regions`` on our masks (cv2, per mask).

    Fills holes and removes islands smaller than ``min_area`` pixels in every mask, then NMS
    at ``nms_thresh`` preferring unchanged masks; changed masks get new boxes and areas.
    Updates ``seg``'s arrays in place and returns the surviving regions.
    """
    if len(seg) == 0:
        return seg
    changed = np.zeros(len(seg), dtype=bool)
    masks = seg.masks.copy()
    for i in range(len(seg)):
        m, c1 = remove_small_regions(masks[i], min_area, mode="holes")
        m, c2 = remove_small_regions(m, min_area, mode="islands")
        masks[i], changed[i] = m, c1 or c2
    tm = torch.as_tensor(masks)
    boxes = batched_mask_to_box(tm)
    keep = batched_nms(
        boxes.float(),
        torch.as_tensor((~changed).astype(np.float32)),
        torch.zeros(len(seg)),
        iou_threshold=nms_thresh,
    )
    keep = keep.numpy()
    seg.masks = masks
    seg.boxes_xyxy = np.where(
        changed[:, None], boxes.numpy().astype(np.float32) + [0, 0, 1, 1], seg.boxes_xyxy
    ).astype(np.float32)
    seg.areas = masks.reshape(len(seg), -1).sum(1).astype(np.int64)
    return seg.select(keep)
