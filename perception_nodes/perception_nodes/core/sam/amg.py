"""Automatic ("segment everything") and prompted mask generation on any :class:`SamBackend`.

Same settings and results as ``segment_anything.SamAutomaticMaskGenerator`` (its
``utils/amg.py`` helpers and torchvision's ``batched_nms`` are reused), made faster by:
- the restructured decoder (:mod:`perception_nodes.core.sam.modules`), told the
  ``pred_iou_thresh`` so that it computes low-res logits only for prompts with a mask that
  passes it (exact: the others are filtered anyway);
- filtering by predicted IoU on the decoder's low-res output *before* upscaling (the official
  generator upscales every mask of every point first);
- upscaling only the valid (un-padded) part of the low-res logits (bit-identical, see
  :func:`upscale_logits`), in chunks, on the backend's device;
- keeping masks as boolean tensors on the device and running box NMS before anything is
  copied to the host (no RLE encode/decode round trip for discarded masks).
It also returns the decoder's output mask token of every region.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.utils.amg import (
    MaskData,
    batch_iterator,
    batched_mask_to_box,
    build_all_layer_point_grids,
    calculate_stability_score,
    generate_crop_boxes,
    is_box_near_crop_edge,
    remove_small_regions,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from segment_anything.utils.transforms import ResizeLongestSide
from torchvision.ops.boxes import batched_nms, box_area

from perception_nodes.core.cancel import raise_if_stopped
from perception_nodes.core.sam.backend import DecoderOutput, SamBackend
from perception_nodes.core.sam.decoder import pad_point_prompts
from perception_nodes.core.sam.preprocess import DEFAULT_MAX_PIXELS, preprocess_image, to_rgb_uint8
from perception_nodes.core.sam.registry import SAM_PIXEL_MEAN, SAM_PIXEL_STD, SamModelSpec
from perception_nodes.core.types import Segmentation

logger = logging.getLogger(__name__)

MASK_THRESHOLD = 0.0  # Sam.mask_threshold
_UPSCALE_CHUNK = 64


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


def _kept_logits(out: DecoderOutput, keep: torch.Tensor | None) -> torch.Tensor:
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


@dataclass
class _Embedded:
    """One encoded image (or crop): embedding and the sizes needed to map masks back."""

    key: tuple
    embedding: torch.Tensor
    original_size: tuple[int, int]
    resized_size: tuple[int, int]


@dataclass
class StageTimings:
    """Wall-clock seconds of the last call, per stage (CUDA-synchronised)."""

    preprocess: float = 0.0
    encoder: float = 0.0
    decoder: float = 0.0
    postprocess: float = 0.0
    decoder_batches: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, float]:
        return {
            "preprocess": self.preprocess,
            "encoder": self.encoder,
            "decoder": self.decoder,
            "postprocess": self.postprocess,
        }


class MaskGenerator:
    """Segment everything (grid of point prompts) or segment given boxes/points.

    The settings mean what they mean in ``SamAutomaticMaskGenerator``. Extras:
    ``max_regions`` keeps the best regions by predicted IoU; ``points_per_batch=None`` picks
    64 on CPU and 256 on CUDA; ``multimask_output`` applies to the point grid.
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
        self.backend = backend
        if isinstance(spec_or_pixel_stats, SamModelSpec):
            mean, std = spec_or_pixel_stats.pixel_mean, spec_or_pixel_stats.pixel_std
        elif spec_or_pixel_stats is None:
            mean, std = SAM_PIXEL_MEAN, SAM_PIXEL_STD
        else:
            mean, std = spec_or_pixel_stats
        self.pixel_mean, self.pixel_std = tuple(mean), tuple(std)
        self.point_grids = build_all_layer_point_grids(
            points_per_side, crop_n_layers, crop_n_points_downscale_factor
        )
        if points_per_batch is None:
            points_per_batch = 256 if backend.device.type == "cuda" else 64
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.max_regions = max_regions
        self.multimask_output = multimask_output
        self.max_pixels = max_pixels
        self.timings = StageTimings()
        self._cache: _Embedded | None = None
        self._image: np.ndarray | None = None
        # id(rgb) -> (rgb, embedding, preprocess s, encoder s) from embed_batch, used once each
        self._batched: dict[int, tuple[np.ndarray, _Embedded, float, float]] = {}
        self._resize = ResizeLongestSide(backend.input_size)
        self._should_stop: Callable[[], bool] | None = None  # of the running generate() call

    # ----------------------------------------------------------------- embedding
    def _sync(self) -> None:
        if self.backend.device.type == "cuda":
            torch.cuda.synchronize(self.backend.device)

    def _embed(self, image: np.ndarray, crop_box: Sequence[int]) -> _Embedded:
        key = (id(image), tuple(int(v) for v in crop_box))
        if self._cache is not None and self._cache.key == key and self._image is image:
            return self._cache
        batched = self._batched.pop(id(image), None)
        if batched is not None and batched[0] is image and batched[1].key == key:
            _, self._cache, pre_s, enc_s = batched
            self.timings.preprocess += pre_s
            self.timings.encoder += enc_s
            self._image = image
            return self._cache
        x0, y0, x1, y1 = crop_box
        t0 = time.perf_counter()
        pre = preprocess_image(
            image[y0:y1, x0:x1],
            self.backend.input_size,
            self.pixel_mean,
            self.pixel_std,
            device=self.backend.device,
            max_pixels=self.max_pixels,
        )
        self._sync()
        t1 = time.perf_counter()
        embedding = self.backend.encode(pre.tensor)
        self._sync()
        self.timings.preprocess += t1 - t0
        self.timings.encoder += time.perf_counter() - t1
        self._cache = _Embedded(key, embedding, pre.original_size, pre.input_size)
        self._image = image
        return self._cache

    @torch.no_grad()
    def embed_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the encoder ONCE for several whole images (e.g. frames of several cameras).

        Returns the converted ``HxWx3 uint8`` RGB images; a later :meth:`generate` (or
        ``predict_*``) on one of those exact arrays uses its embedding instead of encoding
        again. Each image's ``timings`` get an equal share of the batch's pre-processing and
        encoder time. A backend that refuses batches (e.g. an engine built for batch 1) falls
        back to one encoder call per image.
        """
        rgbs = [to_rgb_uint8(im, self.max_pixels) for im in images]
        t0 = time.perf_counter()
        pres = [
            preprocess_image(
                rgb,
                self.backend.input_size,
                self.pixel_mean,
                self.pixel_std,
                device=self.backend.device,
                max_pixels=self.max_pixels,
            )
            for rgb in rgbs
        ]
        self._sync()
        t1 = time.perf_counter()
        try:
            embeddings = self.backend.encode(torch.cat([p.tensor for p in pres]))
        except (ValueError, RuntimeError) as exc:
            logger.info(
                "batched encoding refused by the %s backend (%s); encoding one by one",
                self.backend.name,
                exc,
            )
            embeddings = torch.cat([self.backend.encode(p.tensor) for p in pres])
        self._sync()
        n = len(rgbs)
        pre_s, enc_s = (t1 - t0) / n, (time.perf_counter() - t1) / n
        self._batched = {
            id(rgb): (
                rgb,
                _Embedded(
                    (id(rgb), (0, 0, rgb.shape[1], rgb.shape[0])),
                    embeddings[i : i + 1],
                    p.original_size,
                    p.input_size,
                ),
                pre_s,
                enc_s,
            )
            for i, (rgb, p) in enumerate(zip(rgbs, pres))
        }
        return rgbs

    def set_image(self, image: np.ndarray) -> np.ndarray:
        """Validate/convert ``image`` and compute its embedding once (like ``SamPredictor``).

        Returns the ``HxWx3 uint8`` RGB image that later calls without an image will use.
        """
        self.timings = StageTimings()
        rgb = to_rgb_uint8(image, self.max_pixels)
        self._embed(rgb, (0, 0, rgb.shape[1], rgb.shape[0]))
        return rgb

    def clear_image(self) -> None:
        """Forget the image of :meth:`set_image`/:meth:`embed_batch` and the cached embeddings
        (the next call re-encodes)."""
        self._cache, self._image = None, None
        self._batched.clear()

    def _image_for(self, image: np.ndarray | None) -> np.ndarray:
        """The converted image to work on: the one from :meth:`set_image` when possible."""
        self.timings = StageTimings()
        if image is None:
            if self._image is None:
                raise ValueError("no image: pass one or call set_image(image) first")
            return self._image
        if (
            self._image is not None
            and isinstance(image, np.ndarray)
            and (
                image is self._image
                or (
                    image.shape == self._image.shape
                    and image.dtype == self._image.dtype
                    and np.array_equal(image, self._image)
                )
            )
        ):
            return self._image
        self._cache, self._image = None, None
        return to_rgb_uint8(image, self.max_pixels)

    # ----------------------------------------------------------------- automatic
    @torch.no_grad()
    def generate(
        self, image: np.ndarray | None = None, should_stop: Callable[[], bool] | None = None
    ) -> Segmentation:
        """Segment everything in ``image`` (HxWx3 uint8 RGB; see ``to_rgb_uint8`` for others).

        ``image=None`` reuses the image of :meth:`set_image`. Regions are sorted like the
        official generator's output (by NMS score). ``should_stop`` is polled between decoder
        batches: True abandons the frame with :class:`~perception_nodes.core.cancel.FrameAbandoned`.
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
            data.cat(d)
        if len(crop_boxes) > 1 and len(data["iou_preds"]) > 0:
            scores = 1 / box_area(data["crop_boxes"].float())
            keep = batched_nms(
                data["boxes"].float(),
                scores,
                torch.zeros_like(scores),
                iou_threshold=self.crop_nms_thresh,
            )
            data.filter(keep)
        seg = self._to_segmentation(data, orig_size)
        if self.min_mask_region_area > 0:
            seg = self._remove_small_regions(seg)
        if self.max_regions is not None and len(seg) > self.max_regions:
            order = np.argsort(-seg.predicted_iou, kind="stable")[: self.max_regions]
            seg = seg.select(np.sort(order))
        self._sync()
        self.timings.postprocess += time.perf_counter() - t0
        return seg

    def _process_crop(self, rgb: np.ndarray, crop_box: list[int], layer: int) -> MaskData:
        emb = self._embed(rgb, crop_box)
        crop_hw = emb.original_size
        points = self.point_grids[layer] * np.array(crop_hw)[None, ::-1]
        model_points = self._resize.apply_coords(points, crop_hw)
        data = MaskData()
        for pts, model_pts in batch_iterator(self.points_per_batch, points, model_points):
            raise_if_stopped(self._should_stop)
            data.cat(self._process_batch(emb, pts, model_pts, crop_box, rgb.shape[:2]))
        t0 = time.perf_counter()
        if len(data["iou_preds"]) > 0:
            keep = batched_nms(
                data["boxes"].float(),
                data["iou_preds"],
                torch.zeros_like(data["iou_preds"]),
                iou_threshold=self.box_nms_thresh,
            )
            data.filter(keep)
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        # full-image frame, so masks of different crops can be concatenated (after NMS: only
        # the survivors are padded)
        data["masks"] = uncrop_masks(data["masks"], crop_box, *rgb.shape[:2])
        n = len(data["iou_preds"])
        data["crop_boxes"] = torch.tensor([crop_box], device=data["boxes"].device).expand(n, 4)
        self.timings.postprocess += time.perf_counter() - t0
        return data

    def _decode(
        self,
        emb: _Embedded,
        coords: torch.Tensor,
        labels: torch.Tensor,
        multimask: bool,
        iou_threshold: float | None = None,
    ):
        t0 = time.perf_counter()
        out = self.backend.decode(
            emb.embedding, coords, labels, multimask_output=multimask, iou_threshold=iou_threshold
        )
        self._sync()
        dt = time.perf_counter() - t0
        self.timings.decoder += dt
        self.timings.decoder_batches.append(dt)
        return out

    def _process_batch(
        self,
        emb: _Embedded,
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
        data["logits"] = _kept_logits(out, keep)
        masks, stability = self._masks(data, emb)
        data["stability_score"] = stability
        data["masks"] = masks
        if self.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= self.stability_score_thresh)
        data["boxes"] = batched_mask_to_box(data["masks"])
        h, w = orig_size
        keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, w, h])
        if not torch.all(keep):
            data.filter(keep)
        self._sync()
        self.timings.postprocess += time.perf_counter() - t0
        return data

    def _masks(self, data: MaskData, emb: _Embedded) -> tuple[torch.Tensor, torch.Tensor]:
        """Upscale the surviving logits in chunks -> bool masks (N, H, W) and stability (N,)."""
        logits = data["logits"]
        del data["logits"]
        masks, stability = [], []
        for i in range(0, logits.shape[0], _UPSCALE_CHUNK):
            up = upscale_logits(
                logits[i : i + _UPSCALE_CHUNK],
                self.backend.input_size,
                emb.resized_size,
                emb.original_size,
            )
            stability.append(
                calculate_stability_score(up, MASK_THRESHOLD, self.stability_score_offset)
            )
            masks.append(up > MASK_THRESHOLD)
        if not masks:
            h, w = emb.original_size
            return (
                torch.zeros((0, h, w), dtype=torch.bool, device=logits.device),
                torch.zeros((0,), device=logits.device),
            )
        return torch.cat(masks), torch.cat(stability)

    # ----------------------------------------------------------------- output
    def _to_segmentation(self, data: MaskData, orig_size: tuple[int, int]) -> Segmentation:
        h, w = orig_size
        n = len(data["iou_preds"]) if "iou_preds" in data._stats else 0
        if n == 0:
            return Segmentation.empty((h, w), token_dim=self.backend.embedding_shape[0])
        full = data["masks"]
        boxes = data["boxes"].float()
        empty = ~full.flatten(1).any(1)
        boxes_excl = boxes + torch.tensor([0.0, 0.0, 1.0, 1.0], device=boxes.device)
        boxes_excl[empty] = 0.0
        return Segmentation(
            masks=full.cpu().numpy(),
            boxes_xyxy=boxes_excl.cpu().numpy().astype(np.float32),
            areas=full.flatten(1).sum(1).cpu().numpy().astype(np.int64),
            predicted_iou=data["iou_preds"].float().cpu().numpy(),
            stability_score=data["stability_score"].float().cpu().numpy(),
            tokens=data["tokens"].float().cpu().numpy(),
            point_coords=data["points"].float().cpu().numpy(),
            image_size=(h, w),
        )

    def _remove_small_regions(self, seg: Segmentation) -> Segmentation:
        """``SamAutomaticMaskGenerator.postprocess_small_regions`` on our masks (cv2, per mask)."""
        if len(seg) == 0:
            return seg
        changed = np.zeros(len(seg), dtype=bool)
        masks = seg.masks.copy()
        for i in range(len(seg)):
            m, c1 = remove_small_regions(masks[i], self.min_mask_region_area, mode="holes")
            m, c2 = remove_small_regions(m, self.min_mask_region_area, mode="islands")
            masks[i], changed[i] = m, c1 or c2
        tm = torch.as_tensor(masks)
        boxes = batched_mask_to_box(tm)
        keep = batched_nms(
            boxes.float(),
            torch.as_tensor((~changed).astype(np.float32)),
            torch.zeros(len(seg)),
            iou_threshold=max(self.box_nms_thresh, self.crop_nms_thresh),
        )
        keep = keep.numpy()
        seg.masks = masks
        seg.boxes_xyxy = np.where(
            changed[:, None], boxes.numpy().astype(np.float32) + [0, 0, 1, 1], seg.boxes_xyxy
        ).astype(np.float32)
        seg.areas = masks.reshape(len(seg), -1).sum(1).astype(np.int64)
        return seg.select(keep)

    # ----------------------------------------------------------------- prompted
    @torch.no_grad()
    def predict_boxes(
        self, image: np.ndarray | None, boxes_xyxy: np.ndarray, multimask_output: bool = False
    ) -> Segmentation:
        """One mask per box prompt (``(N, 4)`` XYXY pixels), in input order.

        ``multimask_output=False`` uses SAM's single-mask output (recommended for boxes);
        True picks the best of the 3 by predicted IoU. ``point_coords`` is NaN.
        """
        boxes = np.asarray(boxes_xyxy, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.all(np.isfinite(boxes)):
            raise ValueError(
                f"boxes_xyxy must be a finite (N, 4) XYXY array, got shape {boxes.shape}"
            )
        if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
            raise ValueError("boxes_xyxy must have x1 >= x0 and y1 >= y0 (XYXY, pixels)")
        rgb = self._image_for(image)
        emb = self._embed(rgb, (0, 0, rgb.shape[1], rgb.shape[0]))
        if len(boxes) == 0:
            return Segmentation.empty(rgb.shape[:2], self.backend.embedding_shape[0])
        model_boxes = self._resize.apply_boxes(boxes, emb.original_size).reshape(-1, 2, 2)
        labels = np.tile(np.array([[2.0, 3.0]]), (len(boxes), 1))
        points = np.full((len(boxes), 2), np.nan)
        return self._predict(emb, model_boxes, labels, points, multimask_output, pad=False)

    @torch.no_grad()
    def predict_points(
        self,
        image: np.ndarray | None,
        points_xy: np.ndarray,
        labels: np.ndarray | None = None,
        multimask_output: bool = True,
    ) -> Segmentation:
        """One mask per point prompt, in input order.

        ``points_xy``: ``(N, 2)`` pixels -> N prompts of one point, or ``(N, K, 2)`` -> N prompts
        of K points; ``labels`` ``(N,)`` / ``(N, K)``: 1 foreground (default), 0 background.
        With ``multimask_output`` the best of SAM's 3 masks (by predicted IoU) is kept.
        ``point_coords`` of a region is its prompt's first point.
        """
        pts = np.asarray(points_xy, dtype=np.float64)
        if pts.ndim == 2:
            pts = pts[:, None, :]
        if pts.ndim != 3 or pts.shape[-1] != 2 or not np.all(np.isfinite(pts)):
            raise ValueError(
                f"points_xy must be a finite (N, 2) or (N, K, 2) array, got shape {np.shape(points_xy)}"
            )
        lab = (
            np.ones(pts.shape[:2])
            if labels is None
            else np.asarray(labels, dtype=np.float64).reshape(pts.shape[:2])
        )
        if not np.isin(lab, (0, 1)).all():
            raise ValueError("point labels must be 0 (background) or 1 (foreground)")
        rgb = self._image_for(image)
        emb = self._embed(rgb, (0, 0, rgb.shape[1], rgb.shape[0]))
        if len(pts) == 0:
            return Segmentation.empty(rgb.shape[:2], self.backend.embedding_shape[0])
        model_pts = self._resize.apply_coords(pts.copy(), emb.original_size)
        return self._predict(emb, model_pts, lab, pts[:, 0, :], multimask_output, pad=True)

    def _predict(
        self,
        emb: _Embedded,
        model_coords: np.ndarray,
        labels: np.ndarray,
        points: np.ndarray,
        multimask: bool,
        pad: bool,
    ) -> Segmentation:
        dev = self.backend.device
        datas = []
        for c, lb, p in batch_iterator(self.points_per_batch, model_coords, labels, points):
            coords = torch.as_tensor(c, dtype=torch.float32, device=dev)
            lab = torch.as_tensor(lb, dtype=torch.float32, device=dev)
            if pad:
                coords, lab = pad_point_prompts(coords, lab)
            out = self._decode(emb, coords, lab, multimask)
            t0 = time.perf_counter()
            best = out.iou_predictions.argmax(dim=1)
            rows = torch.arange(best.shape[0], device=best.device)
            data = MaskData(
                logits=out.low_res_logits[rows, best],
                iou_preds=out.iou_predictions[rows, best],
                tokens=out.mask_tokens[rows, best],
                points=torch.as_tensor(p, dtype=torch.float32, device=best.device),
            )
            data["masks"], data["stability_score"] = self._masks(data, emb)
            data["boxes"] = batched_mask_to_box(data["masks"])
            self.timings.postprocess += time.perf_counter() - t0
            datas.append(data)
        data = datas[0]
        for d in datas[1:]:
            data.cat(d)
        return self._to_segmentation(data, emb.original_size)
