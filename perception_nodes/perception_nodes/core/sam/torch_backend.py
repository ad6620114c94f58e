"""PyTorch SAM backend (CPU / CUDA; fp32, fp16, bf16; optional ``torch.compile``)."""

from __future__ import annotations

import contextlib
import logging

import torch
from segment_anything.modeling import Sam

from perception_nodes.core import config
from perception_nodes.core.sam.backend import DecoderOutput, SamBackend
from perception_nodes.core.sam.decoder import decode_prompts
from perception_nodes.core.sam.modules import ImageContext, PromptDecoder

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
assert tuple(PRECISIONS) == config.PRECISIONS, "torch dtypes must cover core/config.py PRECISIONS"
_CONTEXT_CACHE_SIZE = 8  # image contexts kept (crops / cameras of the current frames)


class TorchSamBackend(SamBackend):
    """Runs a segment_anything ``Sam`` with PyTorch.

    Reduced precision runs the image encoder and the mask decoder under ``torch.autocast``
    (weights stay fp32, so the decoder's small ops keep fp32 accuracy where autocast allows);
    all outputs are returned as float32. The decoder is the restructured
    :class:`~perception_nodes.core.sam.modules.PromptDecoder` on the model's own modules; its
    per-image part (:class:`ImageContext`) is computed once per embedding tensor and reused by
    every prompt batch of that image (kept for the last few embeddings; an embedding changed in
    place is recognised by its version counter).
    """

    name = "torch"

    def __init__(
        self,
        model: Sam,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(
                f"unknown precision {precision!r}; expected one of {sorted(PRECISIONS)}"
            )
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available; use device='cpu'")
        if self.device.type == "cpu" and precision == "fp16":
            logger.warning("fp16 on CPU is slow and poorly supported; consider bf16 or fp32")
        self.precision = precision
        self.model = model.to(self.device).eval()
        self.input_size = int(model.image_encoder.img_size)
        h, w = model.prompt_encoder.image_embedding_size
        self.embedding_shape = (int(model.prompt_encoder.embed_dim), int(h), int(w))
        self.untrained = bool(getattr(model, "pn_untrained", False))
        self._encoder = torch.compile(model.image_encoder) if compile else model.image_encoder
        self.prompt_decoder = PromptDecoder.from_sam(self.model)
        self._contexts: list[tuple[torch.Tensor, int, ImageContext]] = []

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=PRECISIONS[self.precision])

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` float32 embeddings of a pre-processed ``(B, 3, S, S)`` batch."""
        s = self.input_size
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-2:] != (s, s):
            raise ValueError(
                f"expected a pre-processed batch (B, 3, {s}, {s}), got {tuple(images.shape)}"
            )
        with self._autocast():
            out = self._encoder(images.to(self.device, torch.float32))
        return out.float()

    @torch.no_grad()
    def decode(
        self,
        embedding: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        multimask_output: bool = True,
        iou_threshold: float | None = None,
    ) -> DecoderOutput:
        """See :meth:`SamBackend.decode`; the restructured decoder on the model's modules,
        logits only for prompts above ``iou_threshold`` (``logit_rows``)."""
        with self._autocast():
            out = decode_prompts(
                self.prompt_decoder,
                self._context(embedding.to(self.device, torch.float32)),
                point_coords.to(self.device, torch.float32),
                point_labels.to(self.device, torch.float32),
                multimask_output,
                iou_threshold,
            )
        return DecoderOutput(
            out.low_res_logits.float(),
            out.iou_predictions.float(),
            out.mask_tokens.float(),
            out.logit_rows,
        )

    def _context(self, embedding: torch.Tensor) -> ImageContext:
        """The decoder's per-image context of ``embedding`` (cached by tensor identity)."""
        for tensor, version, ctx in self._contexts:
            if tensor is embedding and version == embedding._version:
                return ctx
        ctx = self.prompt_decoder.prepare_image(embedding)
        self._contexts = [(embedding, embedding._version, ctx)] + self._contexts[
            : _CONTEXT_CACHE_SIZE - 1
        ]
        return ctx
