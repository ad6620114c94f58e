"""The one interface every SAM backend (``torch``, ``onnxruntime``, ``tensorrt``) implements.

A backend runs the two networks of SAM; everything around them (pre-processing, the point
grid, filtering, NMS, RLE) is shared code in :mod:`perception_nodes.core.sam.amg` and works
with any backend.

Coordinate conventions:
- ``encode`` takes the *pre-processed* batch: RGB, resized so the longest side equals
  ``input_size``, normalised with the model's pixel mean/std, zero-padded bottom/right to
  ``input_size x input_size``; shape ``(B, 3, input_size, input_size)`` float32.
- Point coordinates given to ``decode`` are ``(x, y)`` in that resized input frame (the frame
  of ``segment_anything.utils.transforms.ResizeLongestSide.apply_coords``), not in the
  original image.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass
class DecoderOutput:
    """Output of SAM's mask decoder for P prompts with M masks each.

    Attributes:
        low_res_logits: ``(P, M, 256, 256)`` mask logits in the padded input frame at 1/4
            resolution (upscale x4, crop the valid region, resize to the image).
        iou_predictions: ``(P, M)`` predicted IoU of each mask.
        mask_tokens: ``(P, M, 256)`` the decoder's output mask tokens (the position-aware
            region features that RegionSpot and RAM consume).
        logit_rows: None when ``low_res_logits`` holds every prompt; else ``(R,)`` ascending
            indices of the prompts whose logits ``low_res_logits (R, M, 256, 256)`` holds (a
            superset of the prompts with a mask above ``decode``'s ``iou_threshold``).
    """

    low_res_logits: torch.Tensor
    iou_predictions: torch.Tensor
    mask_tokens: torch.Tensor
    logit_rows: torch.Tensor | None = None


class SamBackend(ABC):
    """Runs SAM's image encoder and mask decoder on one device.

    Attributes:
        name: backend name (``"torch"``, ``"onnxruntime"``, ``"tensorrt"``).
        device: torch device the outputs live on.
        input_size: side of the square encoder input, pixels (1024 for official SAM).
        embedding_shape: ``(C, h, w)`` of one image embedding, ``(256, 64, 64)`` for SAM.
        untrained: the weights are GENERATED (seeded random): masks are not meaningful. Every
            backend sets it from what it loaded (checkpoint marker, ONNX or engine metadata).
    """

    name: str = "abstract"
    untrained: bool = False
    device: torch.device = torch.device("cpu")
    input_size: int = 1024
    embedding_shape: tuple[int, int, int] = (256, 64, 64)

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``(B, C, h, w)`` float32 of a pre-processed batch ``(B, 3, S, S)``."""

    @abstractmethod
    def decode(
        self,
        embedding: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        multimask_output: bool = True,
        iou_threshold: float | None = None,
    ) -> DecoderOutput:
        """Masks for P prompts on ONE image.

        Args:
            embedding: ``(1, C, h, w)`` image embedding from :meth:`encode`.
            point_coords: ``(P, K, 2)`` float32 points (x, y) in the resized input frame. A box
                prompt is two points (top-left label 2, bottom-right label 3), as in SAM.
            point_labels: ``(P, K)`` float32 labels: 1 foreground, 0 background, 2/3 box
                corners, -1 padding.
            multimask_output: True: the 3 multimask outputs (M = 3); False: the single
                output (M = 1).
            iou_threshold: a hint that only masks with an IoU prediction ``> iou_threshold``
                will be used: a backend may skip the logits of the other prompts and say so in
                ``DecoderOutput.logit_rows``. None: logits of every prompt.
        """
