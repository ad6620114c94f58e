"""Prompted mask generation: one mask per given box or point prompt (``SamPredictor.predict``).

:class:`PromptedMaskGenerator` adds ``predict_boxes`` / ``predict_points`` to the encoded image
of :class:`~perception_nodes.core.sam.image_session.SamImageSession`; many prompts go through
the decoder in batches of ``points_per_batch``. Prompts are pixels of the original image:
boxes ``(N, 4)`` XYXY, points ``(x, y)``. Results are a
:class:`~perception_nodes.core.types.Segmentation` in prompt order, carrying the decoder's
output mask token of every region.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from segment_anything.utils.amg import MaskData, batch_iterator, batched_mask_to_box

from perception_nodes.core.sam.decoder import pad_point_prompts
from perception_nodes.core.sam.image_session import EmbeddedImage, SamImageSession
from perception_nodes.core.sam.postprocess import to_segmentation
from perception_nodes.core.types import Segmentation


class PromptedMaskGenerator(SamImageSession):
    """Segment given boxes/points on an image encoded once (see :class:`SamImageSession`)."""

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
        emb = self._embed_whole(rgb)
        if len(boxes) == 0:
            return Segmentation.empty(rgb.shape[:2], self.backend.embedding_shape[0])
        model_boxes = self.to_model_coords(boxes.reshape(-1, 2, 2), emb.original_size)
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
        emb = self._embed_whole(rgb)
        if len(pts) == 0:
            return Segmentation.empty(rgb.shape[:2], self.backend.embedding_shape[0])
        model_pts = self.to_model_coords(pts, emb.original_size)
        return self._predict(emb, model_pts, lab, pts[:, 0, :], multimask_output, pad=True)

    def _predict(
        self,
        emb: EmbeddedImage,
        model_coords: np.ndarray,
        labels: np.ndarray,
        points: np.ndarray,
        multimask: bool,
        pad: bool,
    ) -> Segmentation:
        """Decode ``(N, K, 2)`` prompts (model frame; ``labels (N, K)``), keep each prompt's
        best mask by predicted IoU; ``points (N, 2)`` become the regions' ``point_coords``."""
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
                iou_preds=out.iou_predictions[rows, best],
                tokens=out.mask_tokens[rows, best],
                points=torch.as_tensor(p, dtype=torch.float32, device=best.device),
            )
            data["masks"], data["stability_score"] = self._masks(
                out.low_res_logits[rows, best], emb
            )
            data["boxes"] = batched_mask_to_box(data["masks"])
            self.timings.postprocess += time.perf_counter() - t0
            datas.append(data)
        data = datas[0]
        for d in datas[1:]:
            data.cat(d)
        return to_segmentation(data, emb.original_size, self.backend.embedding_shape[0])
