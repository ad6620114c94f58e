"""The image a SAM mask generator works on: its embedding, computed once, and decoder calls.

:class:`SamImageSession` is the part of ``segment_anything.SamPredictor`` that both the
prompted API (:mod:`perception_nodes.core.sam.prompted`) and segment-everything
(:mod:`perception_nodes.core.sam.amg`) need, on any :class:`SamBackend`:
- ``set_image`` / ``embed_batch`` / ``clear_image``: convert, pre-process and encode an image
  (or a batch of camera frames in one encoder call) and cache the embedding, per crop box;
- :meth:`~SamImageSession.image_embedding` and :meth:`~SamImageSession.to_model_coords`: the
  embedding ``(1, C, h, w)`` and the pixel -> model-input-frame transform, for callers that
  drive ``backend.decode`` themselves;
- the timed decoder call and the logits -> masks step, with per-stage :class:`StageTimings`.

Coordinates: images are ``HxWx3`` uint8 RGB; points ``(x, y)`` pixels of the original image;
the model's input frame is the image resized so its longest side is ``backend.input_size``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from perception_nodes.core.sam.backend import DecoderOutput, SamBackend
from perception_nodes.core.sam.postprocess import masks_from_logits
from perception_nodes.core.sam.preprocess import DEFAULT_MAX_PIXELS, preprocess_image, to_rgb_uint8
from perception_nodes.core.sam.registry import SAM_PIXEL_MEAN, SAM_PIXEL_STD, SamModelSpec

logger = logging.getLogger(__name__)

# Prompts per decoder call when not set. On the CPU the decoder's intermediates grow with the
# batch (each prompt carries its own copy of the image tokens through the two-way transformer
# and the upscaling): vit_t on onnxruntime, a 640 px photo, the decoder stage's peak above
# the frame's start was +1.70 GB at 64 prompts and +0.78 GB at 16, the same CPU time
# (31.3 s each on a loaded 2-core VM) and the same masks, scores and tokens.
CPU_POINTS_PER_BATCH = 16
CUDA_POINTS_PER_BATCH = 256


@dataclass
class EmbeddedImage:
    """One encoded image (or crop): embedding and the sizes needed to map masks back.

    ``key``: ``(id(rgb), crop box XYXY)``; ``embedding``: ``(1, C, h, w)`` on the backend's
    device; ``original_size``: (H, W) of the image/crop; ``resized_size``: its (h, w) in the
    model's input frame (longest side = ``input_size``).
    """

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


class SamImageSession:
    """Encode an image once and decode prompts on it (the shared base of the mask generators).

    ``spec_or_pixel_stats``: the model's spec or ``(pixel_mean, pixel_std)`` (None = SAM's);
    ``points_per_batch``: prompts per decoder call (None = :data:`CPU_POINTS_PER_BATCH` on
    CPU, :data:`CUDA_POINTS_PER_BATCH` on CUDA);
    ``stability_score_offset``: as in ``SamAutomaticMaskGenerator``; ``max_pixels``: the
    largest image accepted (see ``to_rgb_uint8``).
    """

    def __init__(
        self,
        backend: SamBackend,
        spec_or_pixel_stats: SamModelSpec | tuple[Sequence[float], Sequence[float]] | None = None,
        points_per_batch: int | None = None,
        stability_score_offset: float = 1.0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.backend = backend
        if isinstance(spec_or_pixel_stats, SamModelSpec):
            mean, std = spec_or_pixel_stats.pixel_mean, spec_or_pixel_stats.pixel_std
        elif spec_or_pixel_stats is None:
            mean, std = SAM_PIXEL_MEAN, SAM_PIXEL_STD
        else:
            mean, std = spec_or_pixel_stats
        self.pixel_mean, self.pixel_std = tuple(mean), tuple(std)
        if points_per_batch is None:
            cuda = backend.device.type == "cuda"
            points_per_batch = CUDA_POINTS_PER_BATCH if cuda else CPU_POINTS_PER_BATCH
        self.points_per_batch = int(points_per_batch)
        self.stability_score_offset = stability_score_offset
        self.max_pixels = max_pixels
        self.timings = StageTimings()
        self._cache: EmbeddedImage | None = None
        self._image: np.ndarray | None = None
        # id(rgb) -> (rgb, embedding, preprocess s, encoder s) from embed_batch, used once each
        self._batched: dict[int, tuple[np.ndarray, EmbeddedImage, float, float]] = {}
        self._resize = ResizeLongestSide(backend.input_size)

    # ----------------------------------------------------------------- public
    @torch.no_grad()
    def embed_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the encoder ONCE for several whole images (e.g. frames of several cameras).

        Returns the converted ``HxWx3 uint8`` RGB images; a later ``generate`` (or
        ``predict_*``) on one of those exact arrays uses its embedding instead of encoding
        again. Each image's ``timings`` get an equal share of the batch's pre-processing and
        encoder time. A backend that refuses batches (e.g. an engine built for batch 1) falls
        back to one encoder call per image.
        """
        rgbs = [to_rgb_uint8(im, self.max_pixels) for im in images]
        t0 = time.perf_counter()
        pres = [self._preprocess(rgb) for rgb in rgbs]
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
                EmbeddedImage(
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
        self._embed_whole(rgb)
        return rgb

    def clear_image(self) -> None:
        """Forget the image of :meth:`set_image`/:meth:`embed_batch` and the cached embeddings
        (the next call re-encodes)."""
        self._cache, self._image = None, None
        self._batched.clear()

    @torch.no_grad()
    def image_embedding(self, image: np.ndarray | None = None) -> torch.Tensor:
        """The encoder output ``(1, C, h, w)`` (backend device) of the whole ``image``.

        ``image=None`` (or the image of :meth:`set_image`) returns the cached embedding without
        encoding again (like ``SamPredictor.get_image_embedding``); another image is converted,
        encoded and becomes the cached one. Pass it to ``backend.decode`` with prompts in
        the frame of :meth:`to_model_coords`.
        """
        return self._embed_whole(self._image_for(image)).embedding

    def to_model_coords(self, points_xy: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """Pixel ``(x, y)`` points ``(..., 2)`` of an ``image_hw`` (H, W) image -> the model's
        input frame (what ``backend.decode`` takes), float64, same shape.

        ``ResizeLongestSide.apply_coords``: scaled so the longest image side becomes
        ``backend.input_size``; box corners transform the same way (``(N, 2, 2)``).
        """
        return self._resize.apply_coords(np.asarray(points_xy, dtype=np.float64), image_hw)

    # ----------------------------------------------------------------- shared steps
    def _sync(self) -> None:
        if self.backend.device.type == "cuda":
            torch.cuda.synchronize(self.backend.device)

    def _preprocess(self, rgb: np.ndarray):
        """``preprocess_image`` with this session's model input size, pixel stats and device."""
        return preprocess_image(
            rgb,
            self.backend.input_size,
            self.pixel_mean,
            self.pixel_std,
            device=self.backend.device,
            max_pixels=self.max_pixels,
        )

    def _embed_whole(self, rgb: np.ndarray) -> EmbeddedImage:
        return self._embed(rgb, (0, 0, rgb.shape[1], rgb.shape[0]))

    def _embed(self, image: np.ndarray, crop_box: Sequence[int]) -> EmbeddedImage:
        """The embedding of ``image[y0:y1, x0:x1]`` (``crop_box`` XYXY): from the cache, from
        :meth:`embed_batch`, or encoded now (and cached)."""
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
        pre = self._preprocess(image[y0:y1, x0:x1])
        self._sync()
        t1 = time.perf_counter()
        embedding = self.backend.encode(pre.tensor)
        self._sync()
        self.timings.preprocess += t1 - t0
        self.timings.encoder += time.perf_counter() - t1
        self._cache = EmbeddedImage(key, embedding, pre.original_size, pre.input_size)
        self._image = image
        return self._cache

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

    def _decode(
        self,
        emb: EmbeddedImage,
        coords: torch.Tensor,
        labels: torch.Tensor,
        multimask: bool,
        iou_threshold: float | None = None,
    ) -> DecoderOutput:
        t0 = time.perf_counter()
        out = self.backend.decode(
            emb.embedding, coords, labels, multimask_output=multimask, iou_threshold=iou_threshold
        )
        self._sync()
        dt = time.perf_counter() - t0
        self.timings.decoder += dt
        self.timings.decoder_batches.append(dt)
        return out

    def _masks(self, logits: torch.Tensor, emb: EmbeddedImage) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, h, w)`` low-res logits -> bool masks ``(N, H, W)`` over ``emb``'s image and
        stability ``(N,)``."""
        return masks_from_logits(
            logits,
            self.backend.input_size,
            emb.resized_size,
            emb.original_size,
            self.stability_score_offset,
        )
