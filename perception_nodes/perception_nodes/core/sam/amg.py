"""Automatic ("segment everything") mask generation on any :class:`SamBackend`.

Same settings and results as ``segment_anything.SamAutomaticMaskGenerator`` (its
``utils/amg.py`` helpers and torchvision's ``batched_nms`` are reused), made faster by:
- the restructured decoder (:mod:`perception_nodes.core.sam.modules`), told the
  ``pred_iou_thresh`` so that it computes low-res logits only for prompts with a mask that
  passes it (exact: the others are filtered anyway);
- filtering by predicted IoU on the decoder's low-res output *before* upscaling (the official
  generator upscales every mask of every point first);
- upscaling only the valid (un-padded) part of the low-res logits (bit-identical, see
  :func:`~perception_nodes.core.sam.postprocess.upscale_logits`), in chunks, on the backend's
  device;
- keeping surviving masks as tight box crops on the device (the official generator keeps RLE,
  for the same reason: memory grows with the masks' boxes, not with full frames) and running
  box NMS before anything is copied to the host (no RLE encode/decode round trip).
It also returns the decoder's output mask token of every region.

:class:`MaskGenerator` also has the prompted API (``predict_boxes`` / ``predict_points``, from
:mod:`perception_nodes.core.sam.prompted`) and the image cache (``set_image``, ``embed_batch``,
``image_embedding``, ``to_model_coords``, from :mod:`perception_nodes.core.sam.image_session`);
post-processing helpers are in :mod:`perception_nodes.core.sam.postprocess`.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch
from segment_anything.utils.amg import (
    MaskData,
    batch_iterator,
    batched_mask_to_box,
    build_all_layer_point_grids,
    generate_crop_boxes,
    is_box_near_crop_edge,
    uncrop_boxes_xyxy,
    uncrop_points,
)
from torchvision.ops.boxes import batched_nms, box_area

from perception_nodes.core.sam.backend import SamBackend
from perception_nodes.core.sam.decoder import pad_point_prompts
from perception_nodes.core.sam.image_session import EmbeddedImage, StageTimings
from perception_nodes.core.sam.postprocess import (
    crop_to_boxes,
    kept_logits,
    postprocess_small_regions,
    to_segmentation,
)
from perception_nodes.core.sam.preprocess import DEFAULT_MAX_PIXELS
from perception_nodes.core.sam.prompted import PromptedMaskGenerator
from perception_nodes.core.sam.registry import SamModelSpec
from perception_nodes.core.stream.cancel import raise_if_stopped
from perception_nodes.core.types import Segmentation

__all__ = ["MaskGenerator", "StageTimings", "cat_mask_data", "filter_mask_data"]


def cat_mask_data(data: MaskData, new: MaskData) -> None:
    """``data.cat(new)`` that moves ``new``'s box crops instead of deep-copying them
    (``MaskData.cat`` deep-copies lists)."""
    crops = new._stats.pop("crops", None)
    data.cat(new)
    if crops is not None:
        data._stats["crops"] = (data._stats.get("crops") or []) + crops


def filter_mask_data(data: MaskData, keep: torch.Tensor) -> None:
    """``data.filter(keep)`` that reads ``keep`` (bool or indices) to the host ONCE for the box
    crops (``MaskData.filter`` indexes a list with each element of a device tensor: one
    synchronisation per region on CUDA)."""
    crops = data._stats.pop("crops", None)
    data.filter(keep)
    if crops is not None:
        idx = torch.nonzero(keep).flatten() if keep.dtype == torch.bool else keep
        data["crops"] = [crops[i] for i in idx.tolist()]


class MaskGenerator(PromptedMaskGenerator):
    """Segment everything (grid of point prompts) or segment given boxes/points.

    The settings mean what they mean in ``SamAutomaticMaskGenerator``. Extras:
    ``max_regions`` keeps the best regions by predicted IoU; ``points_per_batch=None`` picks
    16 on CPU and 256 on CUDA; ``multimask_output`` applies to the point grid.
    """

    def __init__(
        self,
        backend: SamBackend,
        spec_or_pixel_stats: SamModelSpec | tuple[Sequence[float], Sequence[float]] | None = None,
        points_per_side: int = 32,
        points_per_batch: int | None = None,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        min_mask_region_area: int = 0,
        max_regions: int | None = None,
        multimask_output: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if points_per_side < 1:
            raise ValueError(f"points_per_side must be >= 1, got {points_per_side}")
        for name, v in (
            ("pred_iou_thresh", pred_iou_thresh),
            ("stability_score_thresh", stability_score_thresh),
            ("box_nms_thresh", box_nms_thresh),
            ("crop_nms_thresh", crop_nms_thresh),
        ):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if max_regions is not None and max_regions < 0:
            raise ValueError(f"max_regions must be >= 0 or None, got {max_regions}")
        super().__init__(
            backend, spec_or_pixel_stats, points_per_batch, stability_score_offset, max_pixels
        )
        self.point_grids = build_all_layer_point_grids(
            points_per_side, crop_n_layers, crop_n_points_downscale_factor
        )
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.max_regions = max_regions
        self.multimask_output = multimask_output
        self._should_stop: Callable[[], bool] | None = None  # of the running generate() call

    # ----------------------------------------------------------------- automatic
    @torch.no_grad()
    def generate(
        self, image: np.ndarray | None = None, should_stop: Callable[[], bool] | None = None
    ) -> Segmentation:
        """Segment everything in ``image`` (HxWx3 uint8 RGB; see ``to_rgb_uint8`` for others).

        ``image=None`` reuses the image of :meth:`set_image`. Regions are sorted like the
        official generator's output (by NMS score). ``should_stop`` is polled between decoder
        batches: True abandons the frame with :class:`~perception_nodes.core.stream.cancel.FrameAbandoned`.
        """
        self._should_stop = should_stop
        rgb = self._image_for(image)
        orig_size = rgb.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(
            orig_size, self.crop_n_layers, self.crop_overlap_ratio
        )
        crops = [self._process_crop(rgb, box, layer) for box, layer in zip(crop_boxes, layer_idxs)]
        t0 = time.perf_counter()
        data = MaskData()
        for d in crops:
            cat_mask_data(data, d)
        if len(crop_boxes) > 1 and len(data["iou_preds"]) > 0:
            scores = 1 / box_area(data["crop_boxes"].float())
            keep = batched_nms(
                data["boxes"].float(),
                scores,
                torch.zeros_like(scores),
                iou_threshold=self.crop_nms_thresh,
            )
            filter_mask_data(data, keep)
        if self.min_mask_region_area <= 0:  # the regions kept are known before the host copy
            self._keep_best_regions(data)
        seg = to_segmentation(data, orig_size, self.backend.embedding_shape[0])
        if self.min_mask_region_area > 0:
            seg = postprocess_small_regions(
                seg, self.min_mask_region_area, max(self.box_nms_thresh, self.crop_nms_thresh)
            )
        if self.max_regions is not None and len(seg) > self.max_regions:
            order = np.argsort(-seg.predicted_iou, kind="stable")[: self.max_regions]
            seg = seg.select(np.sort(order))
        self._sync()
        self.timings.postprocess += time.perf_counter() - t0
        return seg

    def _keep_best_regions(self, data: MaskData) -> None:
        """The ``max_regions`` best regions by predicted IoU (ties: the earlier one), in their
        order, filtered in ``data`` before :func:`to_segmentation` builds full-frame host masks:
        the regions ``generate`` keeps after it, without copying the others first (at 1280x720
        a full mask is 0.9 MB)."""
        n = len(data["iou_preds"]) if "iou_preds" in data._stats else 0
        if self.max_regions is None or n <= self.max_regions:
            return
        scores = data["iou_preds"].float().cpu().numpy()  # the values to_segmentation keeps
        order = np.sort(np.argsort(-scores, kind="stable")[: self.max_regions])
        filter_mask_data(data, torch.as_tensor(order, device=data["iou_preds"].device))

    def _process_crop(self, rgb: np.ndarray, crop_box: list[int], layer: int) -> MaskData:
        emb = self._embed(rgb, crop_box)
        crop_hw = emb.original_size
        points = self.point_grids[layer] * np.array(crop_hw)[None, ::-1]
        model_points = self.to_model_coords(points, crop_hw)
        data = MaskData()
        for pts, model_pts in batch_iterator(self.points_per_batch, points, model_points):
            raise_if_stopped(self._should_stop)
            cat_mask_data(data, self._process_batch(emb, pts, model_pts, crop_box, rgb.shape[:2]))
        t0 = time.perf_counter()
        if len(data["iou_preds"]) > 0:
            keep = batched_nms(
                data["boxes"].float(),
                data["iou_preds"],
                torch.zeros_like(data["iou_preds"]),
                iou_threshold=self.box_nms_thresh,
            )
            filter_mask_data(data, keep)
        # full-image frame (the box crops stay as they are: their boxes place them)
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        n = len(data["iou_preds"])
        data["crop_boxes"] = torch.tensor([crop_box], device=data["boxes"].device).expand(n, 4)
        self.timings.postprocess += time.perf_counter() - t0
        return data

    def _process_batch(
        self,
        emb: EmbeddedImage,
        points: np.ndarray,
        model_points: np.ndarray,
        crop_box: list[int],
        orig_size: tuple[int, int],
    ) -> MaskData:
        dev = self.backend.device
        coords = torch.as_tensor(model_points, dtype=torch.float32, device=dev)[:, None, :]
        coords, labels = pad_point_prompts(coords, torch.ones(coords.shape[:2], device=dev))
        filtering = self.pred_iou_thresh > 0.0
        out = self._decode(
            emb, coords, labels, self.multimask_output, self.pred_iou_thresh if filtering else None
        )
        t0 = time.perf_counter()
        m = out.iou_predictions.shape[1]
        data = MaskData(
            iou_preds=out.iou_predictions.flatten(0, 1),
            tokens=out.mask_tokens.flatten(0, 1),
            points=torch.as_tensor(points, device=out.iou_predictions.device).repeat_interleave(
                m, 0
            ),
        )
        keep = out.iou_predictions > self.pred_iou_thresh if filtering else None
        if keep is not None:
            data.filter(keep.flatten())
        masks, stability = self._masks(kept_logits(out, keep), emb)
        data["stability_score"] = stability
        data["masks"] = masks
        if self.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= self.stability_score_thresh)
        data["boxes"] = batched_mask_to_box(data["masks"])
        h, w = orig_size
        keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, w, h])
        if not torch.all(keep):
            data.filter(keep)
        data["crops"] = crop_to_boxes(data["masks"], data["boxes"])
        del data["masks"]  # the batch's full masks are freed here
        self._sync()
        self.timings.postprocess += time.perf_counter() - t0
        return data
